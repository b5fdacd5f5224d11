//! Settings-screen work of the patient app: backup to the relay (now, and automatically after
//! every grant, revoke and forward answer), restore from the 24-word phrase, passphrase
//! change, relay URL with a reachability check, export (docs/vault.md "Backup", docs/protocol.md
//! "Backup").

use std::sync::atomic::Ordering;
use std::time::Duration;

use carekey_client::ClientError;
use carekey_client::relay::{Relay, RelayProbe};
use carekey_vault::{AuditEvent, CreateOptions};
use serde::Serialize;

use super::patient::PatientApp;
use super::settings::{self, SETTINGS, Settings};
use super::{locked, now};
use crate::error::{AppError, Result};
use crate::events::{AppEvent, Throttled};
use crate::ipc::{self, Validate};

/// How long after the last change an automatic backup waits (changes in a burst, such as a
/// revoke of several doctors, make one backup).
pub const AUTO_BACKUP_DELAY: Duration = Duration::from_secs(5);

/// What the Settings screen says about backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupStatus {
    /// The backup version now on the relay.
    pub version: u64,
    /// When it was made (unix seconds).
    pub at: u64,
}

/// Whether the relay answered as a Carekey relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayCheck {
    /// The URL checked.
    pub relay_url: String,
    /// `true` when it answered with its signing key.
    pub reachable: bool,
    /// A sentence for the screen.
    pub message: String,
}

impl PatientApp {
    /// Makes a backup of the vault and stores it on the relay. The snapshot is taken in one
    /// short vault call; the upload holds neither the vault nor the service.
    pub async fn backup_now(&self) -> Result<BackupStatus> {
        let op = self.operations().start();
        let sink = Throttled::new(op.id.clone(), self.event_sink());
        let (backup, key, relay) = self
            .vault_cell()
            .run(|v| {
                let s: Settings = settings::load(v, SETTINGS)?.ok_or_else(locked)?;
                let (b, k) = carekey_client::backup::prepare(v)?;
                // A closed relay needs its enrollment key for a first backup slot.
                let relay = settings::relay(v, &s.relay_url)?;
                Ok((b, k, relay))
            })
            .await?;
        let version =
            carekey_client::backup::upload(&relay, backup, key, &sink, &op.cancel).await?;
        let at = now();
        self.vault_cell()
            .run(move |v| {
                let mut s: Settings = settings::load(v, SETTINGS)?.ok_or_else(locked)?;
                s.last_backup_at = Some(at);
                settings::save(v, SETTINGS, &s)?;
                v.log_event(&AuditEvent::BackupMade { version })?;
                Ok(())
            })
            .await?;
        Ok(BackupStatus { version, at })
    }

    /// Schedules an automatic backup [`AUTO_BACKUP_DELAY`] after the last change; a failure
    /// (relay unreachable) is reported as an event, and the next change tries again.
    pub(crate) fn schedule_backup(&self) {
        let generation = self.backup_generation().fetch_add(1, Ordering::SeqCst) + 1;
        let app = self.clone();
        // Outside a runtime (never in the apps) there is nothing to schedule on.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(AUTO_BACKUP_DELAY).await;
            if app.backup_generation().load(Ordering::SeqCst) != generation {
                return;
            }
            match app.backup_now().await {
                Ok(_) => {}
                Err(e) if e.code == "locked" => {}
                Err(e) => app.emit(AppEvent::Problem {
                    code: e.code,
                    message: format!("automatic backup failed: {}", e.message),
                }),
            }
        });
    }

    /// Onboarding on a new device: restores the vault from the relay backup the 24 words point
    /// at, protected by a new passphrase. A wrong phrase finds nothing (`not_found`).
    pub async fn restore_vault(&self, args: ipc::RestoreVault) -> Result<()> {
        args.validate()?;
        if self.vault_exists() {
            return Err(AppError::new(
                "vault_exists",
                "this device already has a vault: unlock it instead",
            ));
        }
        let relay = Relay::new(&args.relay_url)?;
        let opts = CreateOptions {
            kdf: self.config().kdf,
        };
        let path = self.config().vault_path.clone();
        let mut vault = carekey_client::backup::restore_from_relay(
            &relay,
            &args.phrase,
            &path,
            &args.new_passphrase,
            &opts,
        )
        .await
        .map_err(|e| match e {
            ClientError::NotFound => AppError::new(
                "not_found",
                "no backup was found for these words on this relay: check the words and the relay",
            ),
            other => other.into(),
        })?;
        let vault = tokio::task::spawn_blocking(move || {
            // The backup holds the settings; a backup made before they existed gets fresh ones.
            if settings::load::<Settings>(&mut vault, SETTINGS)?.is_none() {
                let s = Settings::new(args.name, None, args.relay_url);
                settings::save(&mut vault, SETTINGS, &s)?;
            }
            Ok::<_, AppError>(vault)
        })
        .await
        .map_err(|_| AppError::internal())??;
        self.vault_cell().set(Some(vault)).await?;
        self.load_service_now().await?;
        // The backup may predate a revoke (or be an older one a hostile relay served): before
        // any write, every share is reconciled with the relay. The vault is restored either
        // way; a failure (offline) is reported and retried at the next unlock, and the client
        // refuses writes until then.
        if let Err(e) = self.reconcile_restored().await {
            self.emit(AppEvent::Problem {
                code: e.code,
                message: format!(
                    "the restored shares could not be checked yet: {}",
                    e.message
                ),
            });
        }
        Ok(())
    }

    /// Changes the passphrase (the root secret is re-wrapped; nothing else changes).
    pub async fn change_passphrase(&self, args: ipc::ChangePassphrase) -> Result<()> {
        args.validate()?;
        self.vault_cell()
            .run(move |v| {
                v.change_passphrase(&args.old, &args.new, None)?;
                Ok(())
            })
            .await
    }

    /// Asks a relay for its signing key: the Settings and Onboarding screens' reachability
    /// check. Never an error for an unreachable relay: the answer says so.
    pub async fn check_relay(&self, args: ipc::SetRelay) -> Result<RelayCheck> {
        args.validate()?;
        let relay = Relay::new(&args.relay_url)?;
        let (reachable, message) = match relay.probe().await {
            RelayProbe::Relay => (true, "the relay answered".to_owned()),
            RelayProbe::NotARelay(_) => (
                false,
                "something answered at this address, but it is not a Carekey relay".to_owned(),
            ),
            RelayProbe::Unreachable(e) => (false, AppError::from(e).message),
        };
        Ok(RelayCheck {
            relay_url: args.relay_url,
            reachable,
            message,
        })
    }

    /// Sets the relay for new shares and backups. Refused while shares exist: they live on
    /// the relay they were made on.
    pub async fn set_relay(&self, args: ipc::SetRelay) -> Result<()> {
        args.validate()?;
        if !self.shares().await?.is_empty() {
            return Err(AppError::new(
                "not_allowed",
                "your shares live on the current relay: revoke them or let them expire first",
            ));
        }
        let url = args.relay_url.clone();
        self.vault_cell()
            .run(move |v| {
                let mut s: Settings = settings::load(v, SETTINGS)?.ok_or_else(locked)?;
                s.relay_url = url;
                settings::save(v, SETTINGS, &s)
            })
            .await?;
        self.load_service_now().await
    }

    /// Sets (or with `key: None` removes) the operator's enrollment key of a closed relay
    /// (docs/relay.md "Enrollment"): kept sealed in the vault, sent only to that relay, so
    /// shares, pairings, mailboxes and backups can be created there.
    pub async fn set_enrollment_key(&self, args: ipc::SetEnrollmentKey) -> Result<()> {
        args.validate()?;
        let base = Relay::new(&args.relay_url)?.base().to_owned();
        let current = self
            .vault_cell()
            .run(move |v| {
                settings::set_enrollment_key(v, &base, args.key)?;
                let s: Settings = settings::load(v, SETTINGS)?.ok_or_else(locked)?;
                Ok(Relay::new(&s.relay_url)?.base() == base)
            })
            .await?;
        // The service talks to the current relay: give it the new client.
        if current {
            self.load_service_now().await?;
        }
        Ok(())
    }

    /// Writes every record as a FHIR Bundle to `path` (a file the user chose).
    pub async fn export_bundle(&self, args: ipc::ExportFile) -> Result<usize> {
        args.validate()?;
        self.vault_cell()
            .run(move |v| {
                let n = v.record_count()?;
                let bytes = zeroize::Zeroizing::new(v.export_bundle(None)?);
                std::fs::write(&args.path, &*bytes)
                    .map_err(|_| AppError::invalid_input("file: cannot be written there"))?;
                Ok(n)
            })
            .await
    }
}
