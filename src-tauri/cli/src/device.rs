//! The device a command acts as (issue 10 "One session layer for apps and CLI"): the app
//! layer's own session, `carekey_app::session::PatientApp` or `DoctorApp`, over a vault in a
//! private temporary directory that is removed when the command ends. Every flow is the
//! session's method, with its save into that vault, exactly as the apps run it; the tool only
//! parses arguments, reads files and prints.
//!
//! The vault's passphrase is 32 random bytes that never leave the process, so its Argon2id cost
//! protects nothing (the cost is there against guessable passphrases, docs/vault.md): a cheap
//! one keeps every command fast. The vault's root is the `--identity` file's phrase when one is
//! given ([`crate::identity`]), so the card and device keys are that identity's.

use std::sync::Arc;

use carekey_app::events::EventSink;
use carekey_app::ipc;
use carekey_app::session::{AppConfig, DoctorApp, PatientApp};
use carekey_vault::KdfParams;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{CliError, Result};
use crate::identity::{self, Identity};

/// Argon2id cost of the throwaway vault (see the module docs): 8 MiB, one pass.
const THROWAWAY_KDF: KdfParams = KdfParams {
    m_kib: 8 * 1024,
    t: 1,
    p: 1,
};

/// The private directory of one command's vault, removed on drop.
#[derive(Debug)]
pub struct Device {
    dir: tempfile::TempDir,
    passphrase: Zeroizing<String>,
}

/// Who the device's card says it is.
#[derive(Debug)]
pub struct Profile<'a> {
    /// The card's name.
    pub name: &'a str,
    /// The licence id (doctor only).
    pub licence: Option<&'a str>,
    /// The relay the session talks to.
    pub relay_url: &'a str,
    /// The operator's enrollment key of that relay, when it is a closed one.
    pub enrollment_key: Option<&'a str>,
}

impl Device {
    /// A fresh directory (mode 0700) for the vault.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("carekey-cli-")
            .tempdir()
            .map_err(|e| {
                CliError::Input(format!("could not make a private directory: {}", e.kind()))
            })?;
        let mut secret = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(secret.as_mut());
        let passphrase = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(secret.as_ref()));
        Ok(Self { dir, passphrase })
    }

    fn config(&self) -> AppConfig {
        AppConfig {
            vault_path: self.dir.path().join("carekey.vault"),
            kdf: THROWAWAY_KDF,
        }
    }

    fn create_args(&self, p: &Profile<'_>) -> ipc::CreateVault {
        ipc::CreateVault {
            passphrase: self.passphrase.to_string(),
            name: p.name.to_owned(),
            licence: p.licence.map(str::to_owned),
            relay_url: p.relay_url.to_owned(),
        }
    }

    /// The patient app's session over this device's new vault, for `identity`.
    pub async fn patient(
        &self,
        profile: &Profile<'_>,
        identity: Identity,
        events: Arc<dyn EventSink>,
    ) -> Result<PatientApp> {
        let app = PatientApp::new(self.config(), events);
        let args = self.create_args(profile);
        match identity {
            Identity::Phrase(phrase) => app.create_vault_with_phrase(args, &phrase).await?,
            Identity::Fresh => drop(Zeroizing::new(app.create_vault(args).await?)),
            Identity::Keep(path) => {
                let words = Zeroizing::new(app.create_vault(args).await?);
                identity::keep(&path, &words)?;
            }
        }
        // The command's own waits bound its life; the vault must not lock under them.
        app.set_auto_lock(ipc::SetAutoLock { secs: None }).await?;
        if let Some(key) = profile.enrollment_key {
            app.set_enrollment_key(ipc::SetEnrollmentKey {
                relay_url: profile.relay_url.to_owned(),
                key: Some(key.to_owned()),
            })
            .await?;
        }
        Ok(app)
    }

    /// The doctor app's session over this device's new vault, for `identity`.
    pub async fn doctor(
        &self,
        profile: &Profile<'_>,
        identity: Identity,
        events: Arc<dyn EventSink>,
    ) -> Result<DoctorApp> {
        let app = DoctorApp::new(self.config(), events);
        let args = self.create_args(profile);
        match identity {
            Identity::Phrase(phrase) => app.create_vault_with_phrase(args, &phrase).await?,
            Identity::Fresh => drop(Zeroizing::new(app.create_vault(args).await?)),
            Identity::Keep(path) => {
                let words = Zeroizing::new(app.create_vault(args).await?);
                identity::keep(&path, &words)?;
            }
        }
        app.set_auto_lock(ipc::SetAutoLock { secs: None }).await?;
        if let Some(key) = profile.enrollment_key {
            app.set_enrollment_key(ipc::SetEnrollmentKey {
                relay_url: profile.relay_url.to_owned(),
                key: Some(key.to_owned()),
            })
            .await?;
        }
        Ok(app)
    }
}
