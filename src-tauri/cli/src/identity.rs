//! Device identities of the tool: fresh per invocation, or kept in an `--identity FILE` that
//! holds the 24-word recovery phrase (BIP39 English, the vault's `RecoveryPhrase` format) the
//! identity derives from. The file is created with mode 0600 and refused if others can read it.

use std::io::Write;
use std::path::Path;

use carekey_core::keys::{Card, DeviceIdentity, Role, RootSecret};
use carekey_vault::RecoveryPhrase;
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loads (or creates) the identity and makes a self-signed card for it.
pub fn identity(
    file: Option<&Path>,
    name: &str,
    role: Role,
    licence: Option<&str>,
) -> Result<(DeviceIdentity, Card)> {
    let root = match file {
        None => RootSecret::random(&mut OsRng),
        Some(p) if p.exists() => load(p)?,
        Some(p) => create(p)?,
    };
    let id = DeviceIdentity::from_root(&root);
    let card = id.card(name, role, licence, now()).map_err(|_| {
        CliError::Usage(
            "--name (and --licence) must be 1 to 200 characters without control characters".into(),
        )
    })?;
    Ok((id, card))
}

fn load(p: &Path) -> Result<RootSecret> {
    let shown = p.display();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(p)
            .map_err(|e| CliError::Input(format!("identity file {shown}: {}", e.kind())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CliError::Input(format!(
                "identity file {shown} is readable by other users: run `chmod 600 {shown}`"
            )));
        }
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(p)
            .map_err(|e| CliError::Input(format!("identity file {shown}: {}", e.kind())))?,
    );
    let phrase = RecoveryPhrase::parse(&text).map_err(|_| {
        CliError::Input(format!(
            "identity file {shown} does not hold a valid 24-word recovery phrase"
        ))
    })?;
    phrase.root().map_err(|_| {
        CliError::Input(format!(
            "identity file {shown} does not hold a valid 24-word recovery phrase"
        ))
    })
}

fn create(p: &Path) -> Result<RootSecret> {
    let shown = p.display();
    let root = RootSecret::random(&mut OsRng);
    let phrase = RecoveryPhrase::from_root(&root);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(p)
        .map_err(|e| CliError::Input(format!("identity file {shown}: {}", e.kind())))?;
    let mut text = Zeroizing::new(phrase.expose_words().to_owned());
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::Input(format!("identity file {shown}: {}", e.kind())))?;
    errln!("created a new identity in {shown} (its 24-word recovery phrase; keep the file secret)");
    Ok(root)
}
