//! `carekey clinic`: the clinic's side of card trust (docs/threat-model.md "Card trust",
//! docs/cli.md "Clinic attestations").
//!
//! - `clinic keygen --out FILE --name NAME` makes the clinic's Ed25519 attestation key, keeps
//!   it in FILE (created with mode 0600, never printed) and prints the public `CAREKEY-CLINIC:`
//!   text patients and doctors add to their trusted clinics.
//! - `clinic attest --key FILE --card 'CAREKEY-CARD:…'` verifies a clinician's card text (from
//!   the doctor app's Profile), shows whose it is and prints the `CAREKEY-ATTESTATION:` text the
//!   doctor app imports.
//!
//! The three public texts are the app crate's (`carekey_app::session` `ClinicKey`,
//! `parse_card`, `attestation_text`): one format for the apps and this tool.
//!
//! ## Key file
//! One line: `CAREKEY-CLINIC-SECRET:` + uppercase base32 (RFC 4648, no padding) of the 32-byte
//! Ed25519 seed followed by the clinic's name in UTF-8, the layout of the `CAREKEY-CLINIC:` text
//! with the seed in place of the public key. Like `--identity` files it is refused when other
//! users can read it: whoever holds it attests clinicians in the clinic's name until every
//! device removes the key.

use std::io::Write;
use std::path::{Path, PathBuf};

use carekey_app::session::{ClinicKey, attestation_text, card_fingerprint, parse_card};
use carekey_core::keys::{Role, SigningSecret};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Scheme of the clinic key file (see the module docs).
pub const SECRET_SCHEME: &str = "CAREKEY-CLINIC-SECRET:";
/// Largest key file read (a seed and a 200-character name fit in well under this).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The arguments of `clinic keygen`.
#[derive(Debug)]
pub struct KeygenArgs {
    /// The key file to create.
    pub out: PathBuf,
    /// The clinic's name, as devices will list it.
    pub name: String,
    /// Print the JSON summary.
    pub json: bool,
}

/// The arguments of `clinic attest`.
#[derive(Debug)]
pub struct AttestArgs {
    /// The clinic key file.
    pub key: PathBuf,
    /// The clinician's `CAREKEY-CARD:` text.
    pub card: String,
    /// The clinic name signed into the attestation (default: the key file's).
    pub name: Option<String>,
    /// Print the JSON summary.
    pub json: bool,
}

/// A clinic's signing key with its name, as the key file holds it.
struct ClinicSecret {
    secret: SigningSecret,
    name: String,
}

impl ClinicSecret {
    /// The public text devices import.
    fn public(&self) -> ClinicKey {
        ClinicKey {
            name: self.name.clone(),
            key: self.secret.public(),
        }
    }

    /// The key file's text (zeroized on drop).
    fn to_text(&self) -> Zeroizing<String> {
        let mut b = Zeroizing::new(self.secret.expose_secret().to_vec());
        b.extend_from_slice(self.name.as_bytes());
        let mut t = Zeroizing::new(String::from(SECRET_SCHEME));
        t.push_str(&data_encoding::BASE32_NOPAD.encode(&b));
        t.push('\n');
        t
    }

    /// Parses a key file's text; `None` for anything else.
    fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let body = t
            .get(..SECRET_SCHEME.len())
            .filter(|s| s.eq_ignore_ascii_case(SECRET_SCHEME))
            .and_then(|_| t.get(SECRET_SCHEME.len()..))?;
        let bytes = Zeroizing::new(
            data_encoding::BASE32_NOPAD
                .decode(body.to_ascii_uppercase().as_bytes())
                .ok()?,
        );
        let (seed, name) = bytes.split_at_checked(32)?;
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(seed.try_into().ok()?);
        let s = Self {
            secret: SigningSecret::from_seed(&seed),
            name: std::str::from_utf8(name).ok()?.to_owned(),
        };
        // The name follows the clinic text's rules (the app crate's parser decides).
        ClinicKey::parse(&s.public().to_text()).ok()?;
        Some(s)
    }
}

/// Checks a clinic name by the clinic text's rules (1 to 200 characters, no control
/// characters, no surrounding space).
fn check_name(name: &str, flag: &str) -> Result<()> {
    let probe = ClinicKey {
        name: name.to_owned(),
        key: SigningSecret::random(&mut OsRng).public(),
    };
    ClinicKey::parse(&probe.to_text()).map(drop).map_err(|_| {
        CliError::Usage(format!(
            "{flag}: the clinic's name must be 1 to 200 characters, without control characters \
             or surrounding spaces"
        ))
    })
}

/// `clinic keygen`: creates the key file (never overwriting one) and prints `CLINIC:`.
pub fn keygen(a: &KeygenArgs) -> Result<()> {
    check_name(&a.name, "--name")?;
    let key = ClinicSecret {
        secret: SigningSecret::random(&mut OsRng),
        name: a.name.clone(),
    };
    let shown = a.out.display();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&a.out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Input(format!(
                "clinic key file {shown} already exists: an existing key is never overwritten"
            ))
        } else {
            CliError::Input(format!("clinic key file {shown}: {}", e.kind()))
        }
    })?;
    f.write_all(key.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::Input(format!("clinic key file {shown}: {}", e.kind())))?;
    let text = key.public().to_text();
    outln!("CLINIC: {text}");
    errln!(
        "created the clinic signing key in {shown} (mode 0600): whoever holds it attests \
         clinicians in the name {:?}, so keep it offline and backed up",
        a.name
    );
    errln!(
        "give the CLINIC: text to patients and doctors (Settings / Profile, \"trusted clinics\") \
         through a channel they trust: the clinic's desk or website"
    );
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"ok": true, "role": "clinic", "name": a.name, "clinic": text})
        );
    }
    Ok(())
}

/// Reads the clinic key file: private (mode 0600 on Unix), bounded, and in the key format.
fn load_key(p: &Path) -> Result<ClinicSecret> {
    let shown = p.display();
    let io = |e: std::io::Error| CliError::Input(format!("clinic key file {shown}: {}", e.kind()));
    let meta = std::fs::metadata(p).map_err(io)?;
    if !meta.is_file() {
        return Err(CliError::Input(format!(
            "clinic key file {shown}: not a regular file"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CliError::Input(format!(
                "clinic key file {shown} is readable by other users: run `chmod 600 {shown}`"
            )));
        }
    }
    let wrong = || {
        CliError::Input(format!(
            "clinic key file {shown} does not hold a Carekey clinic signing key \
             (make one with `carekey clinic keygen`)"
        ))
    };
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(wrong());
    }
    let bytes = Zeroizing::new(std::fs::read(p).map_err(io)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| wrong())?;
    ClinicSecret::parse(text).ok_or_else(wrong)
}

/// `clinic attest`: verifies the card text, shows whose it is, prints `ATTESTATION:`.
pub fn attest(a: &AttestArgs) -> Result<()> {
    let key = load_key(&a.key)?;
    let name = match &a.name {
        Some(n) => {
            check_name(n, "--name")?;
            n.clone()
        }
        None => key.name.clone(),
    };
    // Verifies the card's self-signature (and any attestation it already carries): a card
    // text changed on the way is refused here, before anything is signed.
    let mut card = parse_card(&a.card)?;
    if card.body.role != Role::Doctor {
        return Err(CliError::App(carekey_app::AppError::invalid_input(
            "card: this is a patient's card; a clinic attests clinicians' cards only",
        )));
    }
    if let Some(old) = &card.attestation {
        errln!(
            "the card already carries an attestation (naming {:?}); it is replaced",
            old.clinic_name
        );
    }
    let fingerprint = card_fingerprint(&card);
    outln!("CARD: {}", card.body.name);
    outln!("FINGERPRINT: {fingerprint}");
    match &card.body.licence_id {
        Some(l) => errln!("licence as the card states it (self-asserted): {l}"),
        None => errln!("the card states no licence"),
    }
    errln!(
        "check that this is the clinician in front of you (name, licence, and the fingerprint \
         their Profile screen shows) before handing over the attestation"
    );
    card.attest(&key.secret, &name).map_err(|_| {
        CliError::Usage("--name: the clinic's name must be 1 to 200 characters".into())
    })?;
    let att = card
        .attestation
        .as_ref()
        .ok_or_else(|| CliError::Input("the attestation could not be made".into()))?;
    let text = attestation_text(att);
    outln!("ATTESTATION: {text}");
    errln!(
        "the clinician imports the ATTESTATION: text on their Profile screen; patients see \
         \"attested by {name}\" once they trust the clinic's CLINIC: text"
    );
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "ok": true,
                "role": "clinic",
                "card": card.body.name,
                "fingerprint": fingerprint,
                "clinic_name": name,
                "attestation": text,
            })
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_text_round_trips_and_junk_is_refused() {
        let k = ClinicSecret {
            secret: SigningSecret::random(&mut OsRng),
            name: "St. Mary's Clinic".into(),
        };
        let text = k.to_text();
        let back = ClinicSecret::parse(&text).expect("parses");
        assert_eq!(back.name, k.name);
        assert_eq!(back.secret.public(), k.secret.public());
        // The public text is not a key file, nor is a truncated one.
        for bad in [
            "",
            SECRET_SCHEME,
            &k.public().to_text(),
            &text[..40],
            "abandon abandon abandon",
        ] {
            assert!(ClinicSecret::parse(bad).is_none(), "{bad}");
        }
    }
}
