//! The patient app's session: onboarding, unlock and lock, settings, the clinic trust list and
//! the service the other patient modules run their flows on. The screens' concerns live in the
//! child modules: the patient's own records ([`records`]), the share at a check-up
//! ([`checkup`]), who has access and revoke ([`access`]), and the inbox ([`inbox`]).

mod access;
mod checkup;
mod inbox;
mod records;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carekey_client::patient::Patient;
use carekey_core::keys::{Card, Role};
use carekey_vault::Vault;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::clinics::{self, TrustList, TrustedClinic};
use super::settings::{self, SETTINGS, Settings};
use super::{
    AppConfig, VaultCell, create_vault_file, create_vault_file_from, derived_id, locked, no_vault,
    open_vault_file,
};
use crate::error::Result;
use crate::events::{AppEvent, EventSink, Operations};
use crate::ipc::{self, Validate};

pub use access::{
    AccessLine, AccessLogView, DelegationRow, GrantScopeView, GranteeView, ShareView,
};
use checkup::PairingSlot;
pub use checkup::{DoctorAtTheDoorView, ShareStarted};
pub use inbox::InboxNoteView;
pub use records::{ImportData, TrendsView};

/// Label of the relationship ids the patient app hands out (see [`super::derived_id`]).
const RELATIONSHIP_ID_LABEL: &[u8] = b"carekey-app/relationship-id/v1\0";

/// The patient app's state.
#[derive(Debug, Clone)]
pub struct PatientApp {
    config: AppConfig,
    vault: VaultCell,
    patient: Arc<AsyncMutex<Option<Patient>>>,
    pairings: Arc<Mutex<HashMap<String, PairingSlot>>>,
    events: Arc<dyn EventSink>,
    ops: Operations,
    /// Bumped by every change that should be backed up (see `schedule_backup`).
    backup_gen: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for dyn EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// "The device you paired with on …", "attested by `<clinic>`" only under a clinic key on this
/// device's trust list (docs/threat-model.md "Card trust").
fn trust_wording(trust: &TrustList, card: &Card, paired_at: Option<u64>) -> String {
    let seen = match paired_at {
        Some(t) => format!("the device you paired with on {}", day(t)),
        None => "the device that scanned your QR (self-asserted card)".to_owned(),
    };
    trust.wording(card, &seen)
}

/// `YYYY-MM-DD` (UTC) of a unix time, for wording; the UI formats dates itself.
/// "2026-12-01 10:32 UTC": a day and the time of day, for the access log.
pub(crate) fn day_and_time(t: u64) -> String {
    let s = t % 86_400;
    format!("{} {:02}:{:02} UTC", day(t), s / 3600, (s % 3600) / 60)
}

pub(crate) fn day(t: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one label.
    let days = (t / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

impl PatientApp {
    /// The app over `config`, reporting to `events`.
    pub fn new(config: AppConfig, events: Arc<dyn EventSink>) -> Self {
        Self {
            config,
            vault: VaultCell::default(),
            patient: Arc::new(AsyncMutex::new(None)),
            pairings: Arc::new(Mutex::new(HashMap::new())),
            events,
            ops: Operations::default(),
            backup_gen: Arc::default(),
        }
    }

    pub(super) fn config(&self) -> &AppConfig {
        &self.config
    }

    pub(super) fn vault_cell(&self) -> &VaultCell {
        &self.vault
    }

    pub(super) fn event_sink(&self) -> Arc<dyn EventSink> {
        self.events.clone()
    }

    pub(super) fn backup_generation(&self) -> &std::sync::atomic::AtomicU64 {
        &self.backup_gen
    }

    pub(super) async fn load_service_now(&self) -> Result<()> {
        self.load_service().await
    }

    /// Reports an event to the shell (background work uses it).
    pub fn emit(&self, event: AppEvent) {
        self.events.emit(event);
    }

    /// The long operations in flight (cancel by id).
    pub fn operations(&self) -> &Operations {
        &self.ops
    }

    /// Whether a vault file exists.
    pub fn vault_exists(&self) -> bool {
        self.config.vault_path.exists()
    }

    /// Whether the vault is open and unlocked.
    pub async fn is_unlocked(&self) -> bool {
        self.vault.is_unlocked().await
    }

    // ------------------------------------------------------------------ onboarding

    /// Creates the vault, the device card and the settings; returns the 24 words to show once.
    pub async fn create_vault(&self, args: ipc::CreateVault) -> Result<String> {
        args.validate()?;
        let s = Settings::new(args.name, None, args.relay_url);
        let (vault, words) =
            create_vault_file(&self.config, args.passphrase, s, Role::Patient).await?;
        self.vault.set(Some(vault)).await?;
        self.load_service().await?;
        Ok(words)
    }

    /// Onboarding with an identity the user already holds (the CLI's `--identity FILE`,
    /// docs/cli.md "Identities"): [`Self::create_vault`], but the vault's root is the one
    /// `phrase` encodes, so this device acts as that identity. Nothing is restored.
    pub async fn create_vault_with_phrase(
        &self,
        args: ipc::CreateVault,
        phrase: &carekey_vault::RecoveryPhrase,
    ) -> Result<()> {
        args.validate()?;
        let root = phrase.root()?;
        let s = Settings::new(args.name, None, args.relay_url);
        let (vault, _) =
            create_vault_file_from(&self.config, args.passphrase, s, Role::Patient, Some(root))
                .await?;
        self.vault.set(Some(vault)).await?;
        self.load_service().await
    }

    /// Unlocks the vault with the passphrase and loads the patient's state.
    pub async fn unlock(&self, args: ipc::Unlock) -> Result<()> {
        args.validate()?;
        let vault = open_vault_file(&self.config, args.passphrase).await?;
        self.vault.set(Some(vault)).await?;
        self.load_service().await?;
        // A restore whose reconciliation did not finish (offline): try again now. Until it
        // succeeds the client refuses every write, so a failure is only reported.
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

    async fn load_service(&self) -> Result<()> {
        let mut g = self.patient.lock().await;
        let p = self
            .vault
            .run(|v| {
                let s: Settings = settings::load(v, SETTINGS)?.ok_or_else(no_vault)?;
                if let Some(secs) = s.auto_lock_secs {
                    v.set_idle_timeout(Some(std::time::Duration::from_secs(secs)));
                }
                let card = v.device_card(&s.name, Role::Patient, None)?;
                let relay = settings::relay(v, &s.relay_url)?;
                let identity = v.device_identity()?;
                let loaded = Patient::load_from(v, identity, card.clone(), relay.clone())?;
                let mut p = match loaded {
                    Some(p) => p,
                    None => Patient::new(v.device_identity()?, card, relay),
                };
                p.load_links_from(v)?;
                Ok(p)
            })
            .await?;
        *g = Some(p);
        Ok(())
    }

    /// Locks now: the vault's keys and the patient's identity, keys and tokens are dropped
    /// (zeroized); pairings in progress are abandoned.
    pub async fn lock(&self) {
        let mut g = self.patient.lock().await;
        *g = None;
        if let Ok(mut p) = self.pairings.lock() {
            p.clear();
        }
        let _ = self
            .vault
            .run(|v| {
                v.lock();
                Ok(())
            })
            .await;
        self.events.emit(AppEvent::Locked);
    }

    /// Called by the background timer: locks everything when the vault's idle timeout has
    /// passed. Returns whether it locked.
    pub async fn tick(&self) -> bool {
        let was_open = self.patient.lock().await.is_some();
        if was_open && !self.vault.is_unlocked().await {
            self.lock().await;
            return true;
        }
        false
    }

    /// The current settings.
    pub async fn settings(&self) -> Result<Settings> {
        self.vault
            .run(|v| settings::load(v, SETTINGS)?.ok_or_else(no_vault))
            .await
    }

    /// Changes the auto-lock delay.
    pub async fn set_auto_lock(&self, args: ipc::SetAutoLock) -> Result<()> {
        args.validate()?;
        self.vault
            .run(move |v| {
                let mut s: Settings = settings::load(v, SETTINGS)?.ok_or_else(no_vault)?;
                s.auto_lock_secs = args.secs;
                v.set_idle_timeout(args.secs.map(std::time::Duration::from_secs));
                settings::save(v, SETTINGS, &s)
            })
            .await
    }

    /// The clinic keys this device trusts for card attestations.
    pub async fn trusted_clinics(&self) -> Result<Vec<TrustedClinic>> {
        clinics::list(&self.vault).await
    }

    /// Adds a clinic key (its `CAREKEY-CLINIC:` QR or file text) to the trust list.
    pub async fn trust_clinic(&self, args: ipc::ScanText) -> Result<Vec<TrustedClinic>> {
        args.validate()?;
        clinics::add(&self.vault, &args.text).await
    }

    /// Takes a clinic key off the trust list.
    pub async fn untrust_clinic(&self, args: ipc::ClinicRef) -> Result<Vec<TrustedClinic>> {
        args.validate()?;
        clinics::remove(&self.vault, args.key).await
    }

    /// What this device did (the vault's local signed chain, verified first), oldest first.
    pub async fn activity(&self) -> Result<Vec<carekey_vault::AuditRecord>> {
        self.vault
            .run(|v| {
                v.verify_audit()?;
                Ok(v.audit_log()?)
            })
            .await
    }

    // ------------------------------------------------------------------ internals

    /// This device's clinic trust list (the forwarding screens word cards with it).
    pub(super) async fn trust_list(&self) -> Result<TrustList> {
        clinics::load(&self.vault).await
    }

    /// The service, locked for one flow (the forwarding screens).
    pub(super) async fn service_guard(&self) -> Result<OwnedMutexGuard<Option<Patient>>> {
        self.service().await
    }

    /// Saves the patient's state and hands the service back; then backs up (debounced).
    pub(super) async fn commit_and_back_up(
        &self,
        g: OwnedMutexGuard<Option<Patient>>,
    ) -> Result<OwnedMutexGuard<Option<Patient>>> {
        let g = self.commit(g, |_| Ok(())).await?;
        self.schedule_backup();
        Ok(g)
    }

    /// The service, locked for one flow.
    async fn service(&self) -> Result<OwnedMutexGuard<Option<Patient>>> {
        let g = self.patient.clone().lock_owned().await;
        if g.is_none() {
            return Err(locked());
        }
        Ok(g)
    }

    /// Saves the patient's state and runs `also` in the same blocking call, then hands the
    /// service back.
    async fn commit<F>(
        &self,
        g: OwnedMutexGuard<Option<Patient>>,
        also: F,
    ) -> Result<OwnedMutexGuard<Option<Patient>>>
    where
        F: FnOnce(&mut Vault) -> Result<()> + Send + 'static,
    {
        self.vault.commit_with(g, also).await.map(|(g, ())| g)
    }
}
fn relationship_id(card: &Card, paired_at: u64) -> [u8; 16] {
    derived_id(
        RELATIONSHIP_ID_LABEL,
        &[&card.hash(), &paired_at.to_be_bytes()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use carekey_core::keys::{DeviceIdentity, Role, RootSecret, SigningSecret};
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn a_self_attested_card_reads_as_not_verified() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = DeviceIdentity::from_root(&RootSecret::random(&mut rng));
        let mut card = id
            .card("Dr. Mallory", Role::Doctor, None, 1_700_000_000)
            .expect("card");
        // The doctor attests their own card in the name of a clinic.
        card.attest(&SigningSecret::random(&mut rng), "St. Elsewhere")
            .expect("attest");
        let none = TrustList::default();
        for w in [
            trust_wording(&none, &card, None),
            trust_wording(&none, &card, Some(1)),
        ] {
            assert!(w.contains("not verified"), "{w}");
            assert!(!w.contains("attested by"), "{w}");
        }
    }
}
