//! The patient and doctor sessions: every command of an app is one method here, and every
//! method that changes state is the client flow plus its save into the vault (crash-safe: a
//! process killed after a method returns loses nothing it reported).
//!
//! ## Locks (docs/architecture.md "App layer")
//! - The vault is synchronous (SQLite): it sits in a `std::sync::Mutex` and every use runs on
//!   a blocking thread ([`tokio::task::spawn_blocking`]); it is never held across an await.
//! - The client service (`Patient` / `Doctor`) sits in a `tokio::sync::Mutex`, taken for a
//!   flow and its save. Long waits (a doctor's reply, a grant, the inbox) run on a relay
//!   handle and a pairing/scan object outside that lock, then take it only for the short
//!   commit, so every other command answers during a wait.
//! - Lock order: service, then vault. Nothing takes them the other way round.
//!
//! ## Lock means locked
//! [`PatientApp::lock`] / [`DoctorApp::lock`] lock the vault (its keys zeroized) and drop the
//! service (identity, epoch keys, tokens and share items, all zeroizing types); unlocking
//! loads them again from the vault. The idle timer runs from [`crate::background`].

mod clinics;
mod doctor;
mod files;
mod forwarding;
mod health_link;
mod patient;
mod recovery;
mod settings;
mod smart;
mod smart_source;
mod writeback;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use carekey_core::keys::Role;
use carekey_vault::{AuditEvent, CreateOptions, KdfParams, Vault};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::error::{AppError, Result};

pub use clinics::{
    ATTESTATION_SCHEME, CARD_SCHEME, CLINIC_SCHEME, ClinicKey, TrustList, TrustedClinic,
    attestation_text, card_fingerprint, card_text, parse_attestation, parse_card,
};
pub use doctor::{ChartView, DoctorApp, PatientLinkView, ProfileView, ReceivedFile, ScanView};
pub use files::FileBytes;
pub use forwarding::{
    ColleagueView, ForwardOutcome, ForwardRequestRow, INVITE_CODE_LABEL, INVITE_SCHEME, InviteView,
    invite_code, invite_text, parse_invite,
};
pub use health_link::{LinkRow, PublishedLinkView};
pub use patient::{
    AccessLine, AccessLogView, DelegationRow, DoctorAtTheDoorView, GrantScopeView, GranteeView,
    ImportData, InboxNoteView, PatientApp, ShareStarted, ShareView, TrendsView,
};
pub use recovery::{AUTO_BACKUP_DELAY, BackupStatus, RelayCheck};
pub use settings::Settings;
pub use smart::{SmartFile, SmartFileContent, SmartOpenView, SmartOpened};
pub use smart_source::SMART_SOURCE_PREFIX;
pub use smart_source::{NO_WRITE_BACK, NO_WRITE_BACK_CODE};
pub use writeback::{SentNoteView, resource as write_back_resource};

/// Where an app keeps its files, and the vault's key-derivation cost.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The vault file.
    pub vault_path: PathBuf,
    /// Argon2id cost for new vaults (tests use a cheap one).
    pub kdf: KdfParams,
}

impl AppConfig {
    /// The default configuration for a data directory (`<dir>/carekey.vault`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            vault_path: dir.join("carekey.vault"),
            kdf: KdfParams::default(),
        }
    }
}

/// The vault of an app, usable from async code.
#[derive(Debug, Clone, Default)]
pub(crate) struct VaultCell(Arc<Mutex<Option<Vault>>>);

impl VaultCell {
    /// Runs `f` on the vault on a blocking thread. `locked` when no vault is open.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vault) -> Result<T> + Send + 'static,
    {
        let cell = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = cell.lock().map_err(|_| AppError::internal())?;
            let v = g.as_mut().ok_or_else(locked)?;
            f(v)
        })
        .await
        .map_err(|_| AppError::internal())?
    }

    /// Replaces the open vault (on a blocking thread: dropping a vault closes SQLite).
    pub(crate) async fn set(&self, v: Option<Vault>) -> Result<()> {
        let cell = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = cell.lock().map_err(|_| AppError::internal())?;
            *g = v;
            Ok(())
        })
        .await
        .map_err(|_| AppError::internal())?
    }

    /// Saves the service's state and runs `also` in the same blocking call, then hands the
    /// service back (the `commit` of every mutating command: lock order service, then vault).
    pub(crate) async fn commit_with<S, T, F>(
        &self,
        mut g: OwnedMutexGuard<Option<S>>,
        also: F,
    ) -> Result<(OwnedMutexGuard<Option<S>>, T)>
    where
        S: SavedService,
        T: Send + 'static,
        F: FnOnce(&mut Vault) -> Result<T> + Send + 'static,
    {
        let cell = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let r = cell
                .lock()
                .map_err(|_| AppError::internal())
                .and_then(|mut v| {
                    let v = v.as_mut().ok_or_else(locked)?;
                    if let Some(s) = g.as_mut() {
                        s.save(v)?;
                    }
                    also(v)
                });
            r.map(|t| (g, t))
        })
        .await
        .map_err(|_| AppError::internal())?
    }

    /// Whether a vault is open and unlocked (checks the idle timeout too).
    pub(crate) async fn is_unlocked(&self) -> bool {
        self.run(|v| Ok(v.is_unlocked())).await.unwrap_or(false)
    }
}

/// A client service whose state is saved in the vault after every change.
pub(crate) trait SavedService: Send + 'static {
    /// `save_to` of the service.
    fn save(&mut self, v: &mut Vault) -> carekey_client::Result<()>;
}

impl SavedService for carekey_client::patient::Patient {
    fn save(&mut self, v: &mut Vault) -> carekey_client::Result<()> {
        self.save_to(v)?;
        // Published SMART Health Links live in their own vault record (docs/shl.md).
        self.save_links_to(v)
    }
}

impl SavedService for carekey_client::doctor::Doctor {
    fn save(&mut self, v: &mut Vault) -> carekey_client::Result<()> {
        self.save_to(v)
    }
}

/// Onboarding: a new vault at `config.vault_path` with its settings, this device's card for
/// `role` and the first audit entry. Returns the vault and the 24 words to show once.
pub(crate) async fn create_vault_file(
    config: &AppConfig,
    passphrase: String,
    s: Settings,
    role: Role,
) -> Result<(Vault, String)> {
    create_vault_file_from(config, passphrase, s, role, None).await
}

/// [`create_vault_file`] for an identity the user already holds: the vault's root is `root`
/// (a recovery phrase's), so the device keys and the card's key are that identity's; `None`
/// makes a fresh root. Nothing is restored from a backup (that is `restore_vault`).
pub(crate) async fn create_vault_file_from(
    config: &AppConfig,
    passphrase: String,
    s: Settings,
    role: Role,
    root: Option<carekey_core::keys::RootSecret>,
) -> Result<(Vault, String)> {
    if config.vault_path.exists() {
        return Err(AppError::new(
            "vault_exists",
            "this device already has a vault: unlock it or restore",
        ));
    }
    let (path, kdf) = (config.vault_path.clone(), config.kdf);
    tokio::task::spawn_blocking(move || {
        let opts = CreateOptions { kdf };
        let (mut v, phrase) = match root {
            Some(root) => {
                let phrase = carekey_vault::RecoveryPhrase::from_root(&root);
                (
                    Vault::create_with_root(&path, &passphrase, root, &opts)?,
                    phrase,
                )
            }
            None => Vault::create(&path, &passphrase, &opts)?,
        };
        settings::save(&mut v, settings::SETTINGS, &s)?;
        v.device_card(&s.name, role, s.licence.as_deref())?;
        v.log_event(&AuditEvent::Created)?;
        Ok::<_, AppError>((v, phrase.expose_words().to_owned()))
    })
    .await
    .map_err(|_| AppError::internal())?
}

/// Opens the vault file and unlocks it (Argon2id on a blocking thread).
pub(crate) async fn open_vault_file(config: &AppConfig, passphrase: String) -> Result<Vault> {
    if !config.vault_path.exists() {
        return Err(no_vault());
    }
    let path = config.vault_path.clone();
    tokio::task::spawn_blocking(move || {
        let mut v = Vault::open(&path)?;
        v.unlock(&passphrase)?;
        Ok::<_, AppError>(v)
    })
    .await
    .map_err(|_| AppError::internal())?
}

/// The error of a command that needs a vault when there is none yet.
/// A record id from a validated IPC field (64 hex).
pub(crate) fn record_id(text: &str) -> Result<carekey_vault::RecordId> {
    text.parse()
        .map_err(|_| AppError::invalid_input("record: not a record id"))
}

pub(crate) fn no_vault() -> AppError {
    AppError::new("no_vault", "there is no vault on this device yet")
}

/// A random 16-byte id (pairings, scans, notes: handles the app hands out).
pub(crate) fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    id
}

/// The error of a command that needs the unlocked vault.
pub(crate) fn locked() -> AppError {
    AppError::new(
        "locked",
        "the vault is locked: unlock it with your passphrase",
    )
}

/// Lower-case hex of an id.
pub(crate) fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// A 16-byte id derived under `label` from `parts`: the stable ids the IPC hands out for
/// relationships and patient links (the client indexes them by position, which is not stable
/// across a restart that reorders nothing but is not meant for other processes either).
pub(crate) fn derived_id(label: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(label);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
