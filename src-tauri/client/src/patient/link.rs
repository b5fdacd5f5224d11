//! Publishing a share's records as a SMART Health Link (issue 15; docs/shl.md "Publishing";
//! docs/relay.md "SMART Health Links"; HL7 SMART Health Cards and Links IG STU1, "SMART
//! Health Links", cited as SHL), for a clinic that does not run Carekey.
//!
//! The device encrypts each selected FHIR record as one JWE (`dir`, `A256GCM`) under a fresh
//! 32-byte key per link (SHL "Encrypting and Decrypting Files"); the relay gets the ciphertext,
//! the Argon2id hash of the passcode, the allowed attempts and `exp`, and answers the SHL
//! manifest at a 256-bit URL. The key goes only into the `shlink:/` text the patient shows.
//! This is outside Carekey's own protocol (docs/protocol.md): whoever holds the link and the
//! passcode reads the records, the relay cannot tell who that is, and deleting the link stops
//! new downloads only (docs/threat-model.md "SMART Health Links").

use argon2::{Algorithm, Argon2, Params, Version};
use carekey_relay_api as api;
use carekey_shl::{EncryptOptions, Flags, ShlKey, Shlink, jwe};
use carekey_vault::Vault;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
use crate::ids::ShareId;
use crate::now;
use crate::relay::b64;

use super::{AccessEvent, AccessKind, LoggedEvent, Patient};

/// The honest sentence the share screen shows next to a link (issue 15), `<date>` replaced by
/// [`link_warning`].
pub const LINK_WARNING: &str = "Anyone with this code and passcode can read these records until <date>. We cannot tell who opened it. Deleting it stops new downloads, not copies.";
/// Relay audit kind of a manifest request (relay-formats.md "Relay audit chain": body =
/// outcome u8 (0 served, 1 wrong passcode) || the self-asserted recipient).
pub(super) const AUDIT_KIND_LINK_REQUESTED: u8 = 9;
/// Vault state record holding the links (apart from the main patient state).
pub const LINKS_RECORD: &str = "patient-shl-links";
/// Domain label of the relay's name for a link id (relay-formats.md "SMART Health Link").
const LINK_HASH_LABEL: &[u8] = b"carekey/v1/shl-link-id";
/// Failed passcode attempts a link allows unless told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Digits of a generated passcode.
const GENERATED_PASSCODE_DIGITS: usize = 8;
/// Shortest passcode the patient may choose.
const MIN_PASSCODE_LEN: usize = 4;
/// Format version of the [`LINKS_RECORD`] record.
const LINKS_RECORD_VERSION: u32 = 1;
/// `objects[0]` of a logged manifest request that was served.
const SERVED: &str = "served";
/// `objects[0]` of a logged manifest request refused for its passcode.
const WRONG_PASSCODE: &str = "wrong_passcode";

/// [`LINK_WARNING`] with the date filled in (the UI formats the date for its locale).
pub fn link_warning(date: &str) -> String {
    LINK_WARNING.replace("<date>", date)
}

/// The passcode of a new link. SHL "P" flag: on by default.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum LinkPasscode {
    /// A random 8-digit passcode, answered in [`PublishedLink::passcode`].
    #[default]
    Generated,
    /// The patient's own (at least 4 characters).
    Chosen(String),
    /// No passcode: whoever has the link reads the records.
    Off,
}

/// What the patient chose for a new link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkOptions {
    /// The passcode.
    #[serde(default)]
    pub passcode: LinkPasscode,
    /// Unix seconds after which the link answers 404 (at most the share's own expiry).
    pub expires_at: u64,
    /// Failed passcode attempts before the link dies.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The link's `label` (SHL: at most 80 characters), shown by the viewer.
    #[serde(default)]
    pub label: Option<String>,
    /// Record ids to publish (the share's items); empty: every FHIR record of the share.
    #[serde(default)]
    pub records: Vec<[u8; 16]>,
}

fn default_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

/// A link just published: what the patient shows (QR of `shlink`, the passcode, the warning).
/// `Debug` leaves out the link and the passcode (whoever has both reads the records).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedLink {
    /// Its handle for [`Patient::delete_link`] (64 hex characters; names no secret).
    pub id: String,
    /// The `shlink:/…` text: render it as the QR code. It holds the key.
    pub shlink: String,
    /// The passcode to tell the clinic (`None`: the link has none).
    pub passcode: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Files published.
    pub files: usize,
    /// [`link_warning`]'s sentence, with the date as Unix seconds (the UI formats its own).
    pub warning: String,
}

/// One of the patient's links, as the share screen lists it. `Debug` leaves out the link and
/// the passcode.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkView {
    /// Handle for [`Patient::delete_link`].
    pub id: String,
    /// The share it was published from.
    pub share: String,
    /// The `shlink:/…` text (to show the QR again).
    pub shlink: String,
    /// The passcode (`None`: none).
    pub passcode: Option<String>,
    /// Unix seconds.
    pub expires_at: u64,
    /// Whether `now` is past `expires_at`.
    pub expired: bool,
    /// Files published.
    pub files: usize,
    /// The label.
    pub label: Option<String>,
}

/// A link as the device keeps it (vault record [`LINKS_RECORD`]).
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct LinkRecord {
    id: String,
    share: [u8; 16],
    shlink: String,
    passcode: Option<String>,
    expires_at: u64,
    files: usize,
    label: Option<String>,
}

impl LinkRecord {
    fn view(&self, now: u64) -> LinkView {
        LinkView {
            id: self.id.clone(),
            share: ShareId(self.share).to_string(),
            shlink: self.shlink.clone(),
            passcode: self.passcode.clone(),
            expires_at: self.expires_at,
            expired: now >= self.expires_at,
            files: self.files,
            label: self.label.clone(),
        }
    }
}

impl Drop for LinkRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.shlink.zeroize();
        if let Some(p) = &mut self.passcode {
            p.zeroize();
        }
    }
}

// Debug without the secrets: the link text holds the key (docs/shl.md "What is refused":
// no Debug output holds a key or a passcode).
impl std::fmt::Debug for LinkPasscode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Generated => "Generated",
            Self::Chosen(_) => "Chosen(<redacted>)",
            Self::Off => "Off",
        })
    }
}

impl std::fmt::Debug for PublishedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedLink")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LinkView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkView")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("expired", &self.expired)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRecord")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct LinksFile {
    version: u32,
    links: Vec<LinkRecord>,
}

/// The relay's name of a link id: SHA-256 of the label, 0x00 and the id (relay-formats.md
/// "SMART Health Link"), in hex.
fn link_hash_hex(link_id: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(LINK_HASH_LABEL);
    h.update([0]);
    h.update(link_id);
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// Argon2id of the passcode with the relay's fixed parameters (relay-formats.md "SMART Health
/// Link passcode"): the relay recomputes it for each passcode a viewer offers.
fn passcode_hash(passcode: &str) -> Result<api::ShlPasscodeHash> {
    let mut salt = [0u8; api::SHL_PASSCODE_SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let params = Params::new(
        api::SHL_PASSCODE_M_KIB,
        api::SHL_PASSCODE_T,
        api::SHL_PASSCODE_P,
        Some(api::SHL_PASSCODE_HASH_LEN),
    )
    .map_err(|_| ClientError::InvalidInput("passcode hash parameters"))?;
    let mut out = Zeroizing::new([0u8; api::SHL_PASSCODE_HASH_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passcode.as_bytes(), &salt, out.as_mut())
        .map_err(|_| ClientError::InvalidInput("passcode hash"))?;
    Ok(api::ShlPasscodeHash {
        salt: b64(&salt),
        hash: b64(out.as_ref()),
    })
}

fn generated_passcode() -> String {
    (0..GENERATED_PASSCODE_DIGITS)
        .map(|_| {
            // Rejection sampling: uniform digits.
            loop {
                let b = (OsRng.next_u32() & 0xff) as u8;
                if b < 250 {
                    break char::from(b'0' + b % 10);
                }
            }
        })
        .collect()
}

/// Whether `data` is a FHIR resource (JSON with a `resourceType`): what SHL's
/// `application/fhir+json` holds.
fn is_fhir_resource(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("resourceType").map(serde_json::Value::is_string))
        .unwrap_or(false)
}

/// The plaintext files of a link: one per record while they fit the relay's file count
/// ([`api::MAX_SHL_FILES`]), so a viewer lists them one by one; past that, the records in
/// order, grouped into FHIR `collection` Bundles of equal size (one Bundle per file, SHL
/// "application/fhir+json"), so a share of thousands of records still fits one link.
fn link_files(records: &[&[u8]]) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    if records.len() <= api::MAX_SHL_FILES {
        return Ok(records.iter().map(|r| Zeroizing::new(r.to_vec())).collect());
    }
    let per_file = records.len().div_ceil(api::MAX_SHL_FILES);
    records
        .chunks(per_file)
        .map(|group| {
            let mut out = Zeroizing::new(Vec::with_capacity(
                group.iter().map(|r| r.len() + 16).sum::<usize>() + 64,
            ));
            out.extend_from_slice(br#"{"resourceType":"Bundle","type":"collection","entry":["#);
            for (i, r) in group.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Each record is already checked FHIR JSON: it goes in as it is.
                out.extend_from_slice(br#"{"resource":"#);
                out.extend_from_slice(r);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
            Ok(out)
        })
        .collect()
}

impl Patient {
    /// Publishes records of `share_id` as a SMART Health Link: one JWE per FHIR record (a
    /// Bundle stays one file; past [`api::MAX_SHL_FILES`] records, grouped into Bundles) under
    /// a fresh key, uploaded with the passcode hash through an
    /// owner-signed write of the share (so its audit log records every download). Attachments
    /// (PDFs, images) are not published: SHL files are FHIR JSON or health cards.
    pub async fn publish_link(
        &mut self,
        share_id: &ShareId,
        opts: LinkOptions,
    ) -> Result<PublishedLink> {
        if opts.expires_at <= now() {
            return Err(ClientError::InvalidInput(
                "the link must expire in the future",
            ));
        }
        if opts.max_attempts == 0 || opts.max_attempts > api::MAX_SHL_ATTEMPTS {
            return Err(ClientError::InvalidInput("attempts must be 1 to 100"));
        }
        let passcode = match &opts.passcode {
            LinkPasscode::Generated => Some(generated_passcode()),
            LinkPasscode::Chosen(p) if p.chars().count() >= MIN_PASSCODE_LEN => Some(p.clone()),
            LinkPasscode::Chosen(_) => {
                return Err(ClientError::InvalidInput(
                    "a passcode has at least 4 characters",
                ));
            }
            LinkPasscode::Off => None,
        };
        let passcode = passcode.map(Zeroizing::new);
        let st = self
            .shares
            .get_mut(share_id)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        if opts.expires_at > st.options.expires_at {
            return Err(ClientError::InvalidInput("a link cannot outlive its share"));
        }
        let key = ShlKey::generate();
        let records: Vec<&[u8]> = st
            .items
            .iter()
            .filter(|it| {
                !it.attachment && (opts.records.is_empty() || opts.records.contains(&it.record_id))
            })
            .map(|it| it.data.as_slice())
            .filter(|d| is_fhir_resource(d))
            .collect();
        if records.is_empty() {
            return Err(ClientError::InvalidInput(
                "no FHIR record of the share was selected",
            ));
        }
        let mut files = Vec::new();
        for plain in link_files(&records)? {
            let jwe = jwe::encrypt(
                &plain,
                &key,
                &EncryptOptions {
                    cty: Some("application/fhir+json"),
                    zip: true,
                },
            )
            .map_err(|_| ClientError::InvalidInput("a record is too large for a link"))?;
            files.push(api::ShlFileUpload {
                content_type: "application/fhir+json".into(),
                jwe,
            });
        }
        let n = files.len();
        let req = api::CreateShlRequest {
            files,
            passcode: passcode.as_deref().map(|p| passcode_hash(p)).transpose()?,
            max_attempts: opts.max_attempts,
            expires_at: opts.expires_at,
        };
        let made = self
            .relay
            .create_link(&mut st.owner, share_id, &req)
            .await?;
        let link_id = data_encoding::BASE64URL_NOPAD
            .decode(made.link_id.as_bytes())
            .ok()
            .filter(|v| v.len() == api::SHL_LINK_ID_LEN)
            .ok_or(ClientError::BadResponse { what: "link id" })?;
        // The URL must be this relay's own manifest route (a relay answering another URL
        // would send the clinic elsewhere).
        if made.url != format!("{}/shl/{}", self.relay.base(), made.link_id) {
            return Err(ClientError::BadResponse { what: "link url" });
        }
        let flags = Flags {
            passcode: passcode.is_some(),
            ..Flags::default()
        };
        let link = Shlink::new(
            &made.url,
            key,
            flags,
            opts.label.as_deref(),
            Some(opts.expires_at),
        )
        .map_err(|_| ClientError::InvalidInput("link label or relay URL not usable in a link"))?;
        let rec = LinkRecord {
            id: link_hash_hex(&link_id),
            share: share_id.to_bytes(),
            shlink: link.to_text().to_string(),
            passcode: passcode.as_deref().cloned(),
            expires_at: opts.expires_at,
            files: n,
            label: opts.label,
        };
        let out = PublishedLink {
            id: rec.id.clone(),
            shlink: rec.shlink.clone(),
            passcode: rec.passcode.clone(),
            expires_at: rec.expires_at,
            files: n,
            warning: link_warning(&rec.expires_at.to_string()),
        };
        self.links.push(rec);
        Ok(out)
    }

    /// The links of `share_id` (every share's when `None`), newest last.
    pub fn links(&self, share_id: Option<&ShareId>) -> Vec<LinkView> {
        let t = now();
        self.links
            .iter()
            .filter(|l| share_id.is_none_or(|s| l.share == s.to_bytes()))
            .map(|l| l.view(t))
            .collect()
    }

    /// Deletes link `id` at the relay (its manifest answers 404 from now on; copies already
    /// downloaded stay readable by whoever has the key) and forgets it.
    pub async fn delete_link(&mut self, id: &str) -> Result<()> {
        let pos = self
            .links
            .iter()
            .position(|l| l.id == id)
            .ok_or(ClientError::InvalidInput("unknown link"))?;
        let share = ShareId(self.links[pos].share);
        let st = self
            .shares
            .get_mut(&share)
            .ok_or(ClientError::InvalidInput("unknown share"))?;
        match self.relay.delete_link(&mut st.owner, &share, id).await {
            // Already gone at the relay (expired and swept, or died of failed attempts).
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e),
        }
        self.links.remove(pos);
        Ok(())
    }

    /// Saves the links into `vault` as their own sealed record ([`LINKS_RECORD`]), apart from
    /// the main patient state.
    pub fn save_links_to(&self, vault: &mut Vault) -> Result<()> {
        let file = LinksFile {
            version: LINKS_RECORD_VERSION,
            links: self.links.clone(),
        };
        let bytes = Zeroizing::new(
            serde_json::to_vec(&file).map_err(|_| ClientError::InvalidInput("links"))?,
        );
        vault.put_state(LINKS_RECORD, &bytes)?;
        Ok(())
    }

    /// Loads the links saved by [`Patient::save_links_to`] (none saved: none).
    pub fn load_links_from(&mut self, vault: &mut Vault) -> Result<()> {
        let Some(bytes) = vault.get_state(LINKS_RECORD)? else {
            return Ok(());
        };
        let file: LinksFile = serde_json::from_slice(&bytes)
            .map_err(|_| ClientError::InvalidInput("the saved links are unreadable"))?;
        if file.version != LINKS_RECORD_VERSION {
            return Err(ClientError::InvalidInput(
                "the saved links are of an unknown version",
            ));
        }
        self.links = file.links;
        Ok(())
    }
}

/// A verified audit entry of kind [`AUDIT_KIND_LINK_REQUESTED`], as the session keeps it.
pub(super) fn logged_request(seq: u64, time: u64, body: &[u8]) -> LoggedEvent {
    let (outcome, recipient) = match body.split_first() {
        Some((0, r)) => (SERVED, r),
        Some((_, r)) => (WRONG_PASSCODE, r),
        None => (WRONG_PASSCODE, &[][..]),
    };
    // The relay capped it; shown as text whatever it is.
    let recipient: String = String::from_utf8_lossy(recipient)
        .chars()
        .filter(|c| !c.is_control())
        .take(api::SHL_RECIPIENT_LOGGED_MAX)
        .collect();
    LoggedEvent {
        seq,
        time,
        kind: AUDIT_KIND_LINK_REQUESTED,
        reader: None,
        nonce: None,
        objects: vec![outcome.to_owned(), recipient],
        warnings: Vec::new(),
    }
}

/// "`<recipient>` downloaded the link at `<time>`": the line of the access log.
pub(super) fn access_event(e: &LoggedEvent) -> AccessEvent {
    let who = e
        .objects
        .get(1)
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| "someone (no name given)".to_owned());
    AccessEvent {
        time: e.time,
        who,
        what: AccessKind::LinkDownloaded {
            served: e.objects.first().is_some_and(|o| o == SERVED),
        },
        warnings: e.warnings.clone(),
    }
}

impl AccessEvent {
    /// The sentence the access log shows, `time` formatted by the caller: "`<recipient>`
    /// downloaded the link at 10:32" (or "tried a wrong passcode for the link").
    pub fn sentence(&self, time: &str) -> String {
        match &self.what {
            AccessKind::LinkDownloaded { served: true } => {
                format!("{} downloaded the link at {time}", self.who)
            }
            AccessKind::LinkDownloaded { served: false } => {
                format!("{} tried a wrong passcode for the link at {time}", self.who)
            }
            AccessKind::Fetched { objects } => {
                format!("{} fetched {} objects at {time}", self.who, objects.len())
            }
            AccessKind::Relay(k) => format!("relay event {k} at {time}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_is_the_issue_text() {
        assert_eq!(
            link_warning("1 March"),
            "Anyone with this code and passcode can read these records until 1 March. We cannot tell who opened it. Deleting it stops new downloads, not copies."
        );
    }

    #[test]
    fn debug_hides_link_and_passcode() {
        let l = PublishedLink {
            id: "ab".into(),
            shlink: "shlink:/SECRET".into(),
            passcode: Some("12345678".into()),
            expires_at: 1,
            files: 1,
            warning: String::new(),
        };
        let d = format!("{l:?} {:?}", LinkPasscode::Chosen("hunter2".into()));
        assert!(!d.contains("SECRET") && !d.contains("12345678") && !d.contains("hunter2"));
    }

    #[test]
    fn generated_passcodes_are_digits() {
        let p = generated_passcode();
        assert_eq!(p.len(), GENERATED_PASSCODE_DIGITS);
        assert!(p.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(p, generated_passcode());
    }

    #[test]
    fn logged_requests_read_back() {
        let e = logged_request(1, 7, b"\x00Dr. B");
        let a = access_event(&e);
        assert_eq!(a.who, "Dr. B");
        assert_eq!(a.sentence("10:32"), "Dr. B downloaded the link at 10:32");
        let w = access_event(&logged_request(2, 7, b"\x01\x07"));
        assert_eq!(w.what, AccessKind::LinkDownloaded { served: false });
        assert_eq!(w.who, "someone (no name given)");
    }
}
