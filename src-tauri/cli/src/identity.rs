//! Device identities of the tool: fresh per invocation, or kept in an `--identity FILE` that
//! holds the 24-word recovery phrase (BIP39 English, the vault's `RecoveryPhrase` format) the
//! identity derives from (docs/cli.md "Identities"). The file is created with mode 0600 and
//! refused if others can read it.
//!
//! The phrase is the root of the session's vault ([`crate::device`]): the device keys and the
//! card's key are the ones the patient or doctor app derives from the same words.

use std::io::Write;
use std::path::{Path, PathBuf};

use carekey_vault::RecoveryPhrase;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Which identity the session's vault is made for.
#[derive(Debug)]
pub enum Identity {
    /// A fresh one, forgotten when the command ends.
    Fresh,
    /// The one an `--identity` file holds.
    Phrase(RecoveryPhrase),
    /// A fresh one whose phrase is written to this (new) file once the vault exists.
    Keep(PathBuf),
}

/// Reads (or plans to create) the identity of `--identity FILE`.
pub fn identity(file: Option<&Path>) -> Result<Identity> {
    Ok(match file {
        None => Identity::Fresh,
        Some(p) if p.exists() => Identity::Phrase(load(p)?),
        Some(p) => Identity::Keep(p.to_owned()),
    })
}

fn load(p: &Path) -> Result<RecoveryPhrase> {
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
    let bad = || {
        CliError::Input(format!(
            "identity file {shown} does not hold a valid 24-word recovery phrase"
        ))
    };
    let phrase = RecoveryPhrase::parse(&text).map_err(|_| bad())?;
    // A phrase whose checksum holds but that yields no root is refused here, not later.
    phrase.root().map_err(|_| bad())?;
    Ok(phrase)
}

/// Writes the 24 words of a new identity to `p` (created with mode 0600, never overwritten).
pub fn keep(p: &Path, words: &str) -> Result<()> {
    let shown = p.display();
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
    let mut text = Zeroizing::new(words.to_owned());
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::Input(format!("identity file {shown}: {}", e.kind())))?;
    errln!("created a new identity in {shown} (its 24-word recovery phrase; keep the file secret)");
    Ok(())
}
