//! The patient app's session: onboarding, records, share at check-up, access, inbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carekey_client::note::Note;
use carekey_client::patient::{ForwardRequestId, PairingSession, Patient, ShareOptions};
use carekey_client::relay::Relay;
use carekey_core::grant::Policy;
use carekey_core::keys::{Card, Role};
use carekey_vault::{AuditEvent, ImportControl, ImportOptions, ImportReport, NdjsonFile, Vault};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::clinics::{self, TrustList, TrustedClinic};
use super::files::{self, FileBytes};
use super::settings::{self, SETTINGS, Settings};
use super::{
    AppConfig, VaultCell, create_vault_file, create_vault_file_from, derived_id, hex, locked,
    no_vault, now, open_vault_file, random_id,
};
use crate::display::{self, TimelineRow};
use crate::error::{AppError, Result};
use crate::events::{AppEvent, EventSink, Operations, Throttled};
use crate::ipc::{self, PolicyChoice, ShareCategory, Validate};
use crate::qr;
use crate::share::{self, Selection};
use crate::validate;

/// Label of the relationship ids the patient app hands out (see [`super::derived_id`]).
const RELATIONSHIP_ID_LABEL: &[u8] = b"carekey-app/relationship-id/v1\0";
/// State name of the shares this device made.
const SHARES: &str = "carekey/app/patient/shares/v1";
/// State name of the notes received and not yet answered.
const INBOX: &str = "carekey/app/patient/inbox/v1";
/// Most search results shown.
const SEARCH_LIMIT: usize = 500;

/// The trend charts of the Records screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendsView {
    /// One chart per vital sign (blood pressure with two lines).
    pub vitals: Vec<display::Series>,
    /// One chart per lab test measured at least twice, shaded with its reference range.
    pub labs: Vec<display::Series>,
}

/// A share this device made, as the Access screen lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareView {
    /// Share id (hex).
    pub id: String,
    /// When it was made (unix seconds).
    pub created_at: u64,
    /// Until when access lasts.
    pub expires_at: u64,
    /// Forwarding policy.
    pub policy: PolicyChoice,
    /// Delegation depth under `allowed`.
    pub depth: u8,
    /// Categories present in it.
    pub categories: Vec<ShareCategory>,
    /// FHIR records in it.
    pub records: usize,
    /// Attachments in it.
    pub attachments: usize,
    /// Everyone who was granted access, active or not.
    #[serde(default)]
    pub grantees: Vec<GranteeView>,
}

/// One grantee of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GranteeView {
    /// The relationship id (hex), for revoke.
    pub relationship: String,
    /// The name their card states.
    pub name: String,
    /// Honest trust wording ("the device you paired with on …" unless attested).
    pub trust: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// Until when.
    pub expires_at: u64,
}

/// One line of the access log ("Dr. X fetched 12 records").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLine {
    /// Who (the card name of a grantee or verified delegate, or "unaccounted-for reader").
    pub who: String,
    /// How many objects (manifest reads and records) they fetched.
    pub records: usize,
}

/// A share's verified access log as the Access screen shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogView {
    /// Who fetched how much, in order of first fetch.
    pub lines: Vec<AccessLine>,
    /// SMART Health Link downloads in words ("`<recipient>` downloaded the link at …"; the
    /// name is what the viewer typed, nobody checked it).
    pub downloads: Vec<String>,
    /// Security warnings in words (shown in red): each means the relay or someone it let in
    /// did something the patient did not allow, or the log does not add up.
    pub alerts: Vec<String>,
}

/// One warning of the access log in words.
fn warning_words(
    e: &carekey_client::patient::AccessEvent,
    w: &carekey_client::patient::AccessWarning,
) -> String {
    use carekey_client::patient::AccessWarning as W;
    match w {
        W::RepeatedReceipt { first_seq } => format!(
            "The relay logged a fetch by {} a second time (first logged as entry {first_seq}); \
             it is counted once.",
            e.who
        ),
        W::ClockSkew { .. } => format!(
            "{}'s device clock was far from the relay's at {}: the time shown is the one their \
             device signed.",
            e.who,
            day(e.time)
        ),
        W::UnaccountedReader => format!(
            "Someone you did not give access to fetched records on {} (a reader key no doctor \
             or colleague of this share holds). Revoke this share's doctors to be sure.",
            day(e.time)
        ),
        W::UnnoticedDelegation => "The relay registered a colleague you were not told about \
             (or under a different chain than you were shown). Revoke this share's doctors to \
             be sure."
            .to_owned(),
    }
}

/// One colleague in a share's delegation tree (docs/protocol.md "Forwarding"), as the
/// Access screen lists it under the doctor it hangs from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegationRow {
    /// Handle for `revoke_delegation` (hex); `None` for a delegation saved before it could
    /// be revoked alone (revoking the doctor it hangs from revokes it).
    pub id: Option<String>,
    /// Who passed the records on (their card's name).
    pub by: String,
    /// To whom (the name the colleague's card states).
    pub colleague: String,
    /// The relationship (hex, as [`GranteeView`] lists it) of the doctor the chain hangs from.
    pub root: String,
    /// 1 = passed on by the doctor you paired with, 2 = one further down.
    pub level: usize,
    /// Until when.
    pub expires_at: u64,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SharesState {
    version: u32,
    shares: Vec<ShareView>,
}

/// A note kept sealed in the vault until the patient accepts or dismisses it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredNote {
    id: String,
    relationship: String,
    received_at: u64,
    /// `carekey_client::note::Note::to_bytes`, base64.
    note: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InboxState {
    version: u32,
    notes: Vec<StoredNote>,
}

/// What the Inbox lists for one note.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxNoteView {
    /// Note id (hex) for `answer_note`.
    pub id: String,
    /// Author's card name.
    pub author: String,
    /// "signature valid, from the device you paired with on …".
    pub signature: String,
    /// FHIR resource type.
    pub resource_type: String,
    /// A title for the list.
    pub title: String,
    /// When it arrived (unix seconds).
    pub received_at: u64,
    /// The resource (for the detail view).
    pub resource: serde_json::Value,
}

/// What `start_share` returns: the QR to show full screen. Its `Debug` leaves out the QR,
/// which carries the pairing's one-time secret.
#[derive(Clone, PartialEq, Serialize)]
pub struct ShareStarted {
    /// The share (hex).
    pub share: String,
    /// The pairing to wait on (hex).
    pub pairing: String,
    /// The QR as SVG.
    pub qr_svg: String,
    /// The QR text (for "copy code").
    pub qr_text: String,
    /// When the QR stops working (unix seconds).
    pub qr_expires_at: u64,
    /// Until when access lasts.
    pub expires_at: u64,
    /// FHIR records shared.
    pub records: usize,
    /// Attachments shared.
    pub attachments: usize,
    /// Categories present.
    pub categories: Vec<ShareCategory>,
}

impl std::fmt::Debug for ShareStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareStarted")
            .field("share", &self.share)
            .field("pairing", &self.pairing)
            .field("qr_expires_at", &self.qr_expires_at)
            .field("expires_at", &self.expires_at)
            .field("records", &self.records)
            .field("attachments", &self.attachments)
            .finish_non_exhaustive()
    }
}

/// The doctor who scanned, as the confirm screen shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorAtTheDoorView {
    /// The pairing (hex).
    pub pairing: String,
    /// The name their card states.
    pub name: String,
    /// Their licence id as stated.
    pub licence: Option<String>,
    /// The check code, `123-4567`.
    pub check_code: String,
    /// Whether the card's attestation is under a clinic key on this device's trust list (an
    /// attestation checked only against the key the card itself names proves nothing: anyone
    /// can attest their own card).
    pub attested: bool,
    /// Honest wording of that.
    pub trust: String,
}

/// FHIR data handed to [`PatientApp::import_data`].
#[derive(Debug)]
pub enum ImportData {
    /// A FHIR Bundle (JSON).
    Bundle(zeroize::Zeroizing<Vec<u8>>),
    /// One patient's FHIR bulk-export NDJSON files (`carekey_vault::route_by_patient`).
    Ndjson(Vec<NdjsonFile>),
}

/// A pairing in progress: its session while nobody waits on it.
#[derive(Debug)]
enum PairingSlot {
    Waiting(Box<PairingSession>),
    /// Taken by a running wait.
    Busy,
    /// Answered: the doctor's card is known, the patient compares codes.
    Answered(Box<PairingSession>, Box<Card>),
}

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
                let relay = Relay::new(&s.relay_url)?;
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

    // ------------------------------------------------------------------ records

    /// Every record as a timeline row, newest first.
    pub async fn timeline(&self) -> Result<Vec<TimelineRow>> {
        self.vault
            .run(|v| Ok(display::timeline_rows(&v.list()?.records)))
            .await
    }

    /// The trend charts of the patient's own measurements: vital signs, and lab results
    /// measured more than once with their reference ranges.
    pub async fn trends(&self) -> Result<TrendsView> {
        self.vault
            .run(|v| {
                let summaries = v.list()?.records;
                let mut records = Vec::new();
                for s in summaries.iter().filter(|s| {
                    matches!(
                        s.category,
                        carekey_vault::RecordGroup::Observation
                            | carekey_vault::RecordGroup::Vitals
                    )
                }) {
                    records.push(v.get_record(&s.id)?);
                }
                let labs = display::lab_table(&records);
                Ok(TrendsView {
                    vitals: display::vitals_series(&records),
                    labs: display::lab_series(&labs),
                })
            })
            .await
    }

    /// Search as the user types.
    pub async fn search(&self, args: ipc::Search) -> Result<Vec<TimelineRow>> {
        args.validate()?;
        self.vault
            .run(move |v| {
                if args.query.trim().is_empty() {
                    return Ok(display::timeline_rows(&v.list()?.records));
                }
                Ok(display::timeline_rows(
                    &v.search(&args.query, SEARCH_LIMIT)?,
                ))
            })
            .await
    }

    /// One record with its resource and provenance.
    pub async fn record(&self, args: ipc::RecordRef) -> Result<carekey_vault::Record> {
        args.validate()?;
        let id = super::record_id(&args.id)?;
        self.vault.run(move |v| Ok(v.get_record(&id)?)).await
    }

    /// The files of one record (attachments of a document, a report's presented form, an
    /// image), numbered as [`PatientApp::attachment`] takes them; empty for a record without
    /// files.
    pub async fn record_files(
        &self,
        args: ipc::RecordRef,
    ) -> Result<Vec<display::DocumentAttachment>> {
        args.validate()?;
        let id = super::record_id(&args.id)?;
        self.vault
            .run(move |v| {
                let rec = v.get_record(&id)?;
                Ok(display::document(&rec)
                    .map(|d| d.attachments)
                    .unwrap_or_default())
            })
            .await
    }

    /// The bytes of one file of a record, for the viewer.
    pub async fn attachment(&self, args: ipc::AttachmentRef) -> Result<FileBytes> {
        args.validate()?;
        let id = super::record_id(&args.record_id)?;
        self.vault
            .run(move |v| {
                let rec = v.get_record(&id)?;
                files::read(v, &rec, args.index)
            })
            .await
    }

    /// Adds a record entered by hand (signed by this device) and returns its id.
    pub async fn add_record(&self, args: ipc::ManualRecord) -> Result<String> {
        args.validate()?;
        let resource = manual_resource(&args);
        self.vault
            .run(move |v| {
                let id = v.add_record(resource)?;
                v.log_event(&AuditEvent::RecordAdded { record: id })?;
                Ok(id.to_string())
            })
            .await
    }

    /// Imports a FHIR Bundle or NDJSON file in one transaction (all or nothing), reporting
    /// progress under `op` and cancellable with it.
    pub async fn import_file(&self, args: ipc::ImportFile) -> Result<ImportReport> {
        args.validate()?;
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let cancel = op.cancel.clone();
        let path = std::path::PathBuf::from(&args.path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "import".to_owned());
        let report = self
            .vault
            .run(move |v| {
                let meta = std::fs::metadata(&path)
                    .map_err(|_| AppError::invalid_input("file: cannot be read"))?;
                if !meta.is_file() || meta.len() > validate::IMPORT_MAX_BYTES {
                    return Err(AppError::invalid_input(
                        "file: must be a FHIR file of at most 512 MiB",
                    ));
                }
                let bytes = zeroize::Zeroizing::new(
                    std::fs::read(&path)
                        .map_err(|_| AppError::invalid_input("file: cannot be read"))?,
                );
                let kind = validate::import_file(&bytes)?;
                let mut progress = |p: carekey_vault::ImportProgress| {
                    sink.report_raw("importing", p.done as u64, p.total as u64);
                };
                let mut ctl = ImportControl {
                    progress: Some(&mut progress),
                    cancel: Some(cancel.flag()),
                };
                let opts = ImportOptions {
                    source: Some(name.clone()),
                    share: None,
                };
                let report = match kind {
                    validate::ImportKind::Bundle => v.import_bundle(&bytes, &opts, &mut ctl)?,
                    validate::ImportKind::Ndjson => v.import_ndjson(
                        &[NdjsonFile {
                            name: name.clone(),
                            data: bytes.to_vec(),
                        }],
                        &opts,
                        &mut ctl,
                    )?,
                };
                Ok(report)
            })
            .await?;
        drop(op);
        Ok(report)
    }

    /// Imports FHIR data already read into memory (the CLI reads its files itself, to report a
    /// bad one by file and position) in one transaction, like [`Self::import_file`]. `source`
    /// labels the records' provenance ("imported from …").
    pub async fn import_data(&self, source: String, data: ImportData) -> Result<ImportReport> {
        validate::text("source", &source, validate::NAME_MAX_CHARS)?;
        if let ImportData::Bundle(bytes) = &data
            && validate::import_file(bytes)? != validate::ImportKind::Bundle
        {
            return Err(AppError::invalid_input("file: not a FHIR Bundle"));
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let cancel = op.cancel.clone();
        let report = self
            .vault
            .run(move |v| {
                let mut progress = |p: carekey_vault::ImportProgress| {
                    sink.report_raw("importing", p.done as u64, p.total as u64);
                };
                let mut ctl = ImportControl {
                    progress: Some(&mut progress),
                    cancel: Some(cancel.flag()),
                };
                let opts = ImportOptions {
                    source: Some(source),
                    share: None,
                };
                Ok(match &data {
                    ImportData::Bundle(bytes) => v.import_bundle(bytes, &opts, &mut ctl)?,
                    ImportData::Ndjson(files) => v.import_ndjson(files, &opts, &mut ctl)?,
                })
            })
            .await?;
        drop(op);
        Ok(report)
    }

    // ------------------------------------------------------------------ share at check-up

    /// Seals the chosen records into a new share, opens a pairing and returns the QR.
    pub async fn start_share(&self, args: ipc::StartShare) -> Result<ShareStarted> {
        args.validate()?;
        let mut sel = Selection {
            categories: args
                .categories
                .iter()
                .map(|c| share::category_of(*c))
                .collect(),
            ..Selection::default()
        };
        for r in &args.records {
            sel.records.insert(super::record_id(r)?);
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let items = self
            .vault
            .run(move |v| share::items_from_vault(v, &sel))
            .await?;
        let expires_at = now().saturating_add(args.expires_in_secs);
        let policy = match args.policy {
            PolicyChoice::Never => Policy::Never,
            PolicyChoice::Ask => Policy::Ask,
            PolicyChoice::Allowed => Policy::Allowed,
        };
        let p = g.as_mut().ok_or_else(locked)?;
        let (records, attachments) = (items.records, items.attachments);
        let categories: Vec<ShareCategory> = items
            .categories
            .iter()
            .map(|c| share::share_category(*c))
            .collect();
        let share_id = p
            .create_share(
                items.items,
                ShareOptions {
                    expires_at,
                    policy,
                    delegation_depth: args.depth,
                },
                &sink,
                &op.cancel,
            )
            .await?;
        let session = p.start_pairing(&share_id).await?;
        let view = ShareView {
            id: hex(share_id.as_bytes()),
            created_at: now(),
            expires_at,
            policy: args.policy,
            depth: args.depth,
            categories,
            records,
            attachments,
            grantees: Vec::new(),
        };
        let stored = view.clone();
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                st.version = settings::APP_STATE_VERSION;
                st.shares.push(stored);
                settings::save(v, SHARES, &st)
            })
            .await?;
        drop(g);
        self.show_qr(session, &view)
    }

    /// A fresh QR for a share made earlier ("new QR" on the QR screen, or a second doctor at
    /// the same check-up): a new pairing, the same records, expiry and policy.
    pub async fn new_qr(&self, args: ipc::IdRef) -> Result<ShareStarted> {
        args.validate()?;
        let view = self
            .shares()
            .await?
            .into_iter()
            .find(|s| s.id == args.id)
            .ok_or_else(|| AppError::not_found("that share"))?;
        if view.expires_at <= now() {
            return Err(AppError::new(
                "expired",
                "this share has expired: make a new one",
            ));
        }
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let session = {
            let mut g = self.service().await?;
            let p = g.as_mut().ok_or_else(locked)?;
            p.start_pairing(&share_id).await?
        };
        self.show_qr(session, &view)
    }

    /// Keeps a pairing for `wait_for_doctor` and renders its QR.
    fn show_qr(&self, session: PairingSession, view: &ShareView) -> Result<ShareStarted> {
        let qr_text = session.qr_text();
        let svg = qr::render_svg(&qr_text, "QR code to show the doctor")?;
        let pairing = hex(&random_id());
        let qr_expires_at = carekey_core::pairing::QrPayload::parse(&qr_text)
            .map(|q| u64::from(q.expires_at))
            .unwrap_or(view.expires_at);
        self.pairings
            .lock()
            .map_err(|_| AppError::internal())?
            .insert(pairing.clone(), PairingSlot::Waiting(Box::new(session)));
        Ok(ShareStarted {
            share: view.id.clone(),
            pairing,
            qr_svg: svg.svg,
            qr_text,
            qr_expires_at,
            expires_at: view.expires_at,
            records: view.records,
            attachments: view.attachments,
            categories: view.categories.clone(),
        })
    }

    /// Waits up to `wait_secs` for the doctor's scan, holding no lock of the service: every
    /// other command answers meanwhile.
    pub async fn wait_for_doctor(&self, args: ipc::Wait) -> Result<DoctorAtTheDoorView> {
        args.validate()?;
        let mut session = {
            let mut m = self.pairings.lock().map_err(|_| AppError::internal())?;
            match m.insert(args.id.clone(), PairingSlot::Busy) {
                Some(PairingSlot::Waiting(s)) => *s,
                Some(other) => {
                    m.insert(args.id.clone(), other);
                    return Err(AppError::new(
                        "busy",
                        "this QR is already being waited on or was answered",
                    ));
                }
                None => {
                    m.remove(&args.id);
                    return Err(AppError::not_found("the pairing"));
                }
            }
        };
        let relay = self
            .patient
            .lock()
            .await
            .as_ref()
            .map(Patient::relay)
            .ok_or_else(locked)?;
        let op = self.ops.start();
        let got = session
            .wait_for_doctor(&relay, args.wait_secs, &op.cancel)
            .await;
        let trust = clinics::load(&self.vault).await?;
        let mut m = self.pairings.lock().map_err(|_| AppError::internal())?;
        match got {
            Ok(door) => {
                m.insert(
                    args.id.clone(),
                    PairingSlot::Answered(Box::new(session), Box::new(door.card.clone())),
                );
                Ok(DoctorAtTheDoorView {
                    pairing: args.id,
                    name: door.card.body.name.clone(),
                    licence: door.card.body.licence_id.clone(),
                    check_code: door.check_code.to_string(),
                    attested: trust.vouches_for(&door.card).is_some(),
                    trust: trust_wording(&trust, &door.card, None),
                })
            }
            Err(e) => {
                // Nobody answered yet: the QR stays valid for another wait. Anything else
                // (expired, closed) ends the pairing.
                if matches!(e, carekey_client::ClientError::NoAnswer) {
                    m.insert(args.id, PairingSlot::Waiting(Box::new(session)));
                } else {
                    m.remove(&args.id);
                }
                Err(e.into())
            }
        }
    }

    /// After comparing check codes: confirm (the doctor gets the grant) or reject (the doctor
    /// is told the patient declined). Returns the relationship id on confirm.
    pub async fn answer_doctor(&self, args: ipc::Answer) -> Result<Option<String>> {
        args.validate()?;
        let slot = self
            .pairings
            .lock()
            .map_err(|_| AppError::internal())?
            .remove(&args.id);
        let Some(PairingSlot::Answered(session, card)) = slot else {
            return Err(AppError::not_found("a doctor's answer to this QR"));
        };
        let (session, card) = (*session, *card);
        let share_id = session.share_id();
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        if !args.accept {
            // The doctor's app is told at once ("the patient declined"), not left to time out.
            p.decline(session).await?;
            let (share_id, doctor) = (hex(share_id.as_bytes()), card.body.name.clone());
            let g = self
                .commit(g, move |v| {
                    Ok(v.log_event(&AuditEvent::Declined { share_id, doctor })?)
                })
                .await?;
            drop(g);
            return Ok(None);
        }
        let trust = clinics::load(&self.vault).await?;
        let index = p.confirm(session).await?;
        let paired_at = p
            .relationship(&index)
            .map(|r| r.paired_at)
            .unwrap_or_else(now);
        let rel = relationship_id(&card, paired_at);
        let expires = p
            .active_grants(&share_id)
            .into_iter()
            .find(|g| g.relationship == index)
            .map(|g| g.expires_at)
            .unwrap_or(0);
        let grantee = GranteeView {
            relationship: hex(&rel),
            name: card.body.name.clone(),
            trust: trust_wording(&trust, &card, Some(paired_at)),
            status: "active".to_owned(),
            expires_at: expires,
        };
        let share_hex = hex(share_id.as_bytes());
        let name = card.body.name.clone();
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                let records = st
                    .shares
                    .iter_mut()
                    .find(|s| s.id == share_hex)
                    .map(|s| {
                        s.grantees.push(grantee);
                        s.records
                    })
                    .unwrap_or(0);
                settings::save(v, SHARES, &st)?;
                v.log_event(&AuditEvent::Shared {
                    share_id: share_hex,
                    grantee: name,
                    records,
                })?;
                Ok(())
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(Some(hex(&rel)))
    }

    // ------------------------------------------------------------------ access

    /// Every share with its grantees and their status now.
    pub async fn shares(&self) -> Result<Vec<ShareView>> {
        let mut st: SharesState = self
            .vault
            .run(|v| Ok(settings::load(v, SHARES)?.unwrap_or_default()))
            .await?;
        let t = now();
        for s in &mut st.shares {
            for g in &mut s.grantees {
                if g.status == "active" && g.expires_at <= t {
                    g.status = "expired".to_owned();
                }
            }
        }
        Ok(st.shares)
    }

    /// After a restore (or an unlock of a restored vault not reconciled yet): reconciles the
    /// patient's state with the relay (carekey_client `Patient::reconcile`, docs/protocol.md
    /// "Restore and reconciliation"), so a doctor revoked after the backup stays revoked, and
    /// marks such grantees `revoked` on the Shares screen. Nothing to do for a state that was
    /// never restored. The reconciled state is backed up at once (debounced like any change).
    pub(super) async fn reconcile_restored(&self) -> Result<()> {
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        if !p.needs_reconcile() {
            return Ok(());
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let done = p.reconcile(&sink, &op.cancel).await?;
        // The grantees still active, by the screen's relationship handles.
        let rels = p.relationships();
        let active: HashMap<String, Vec<String>> = done
            .iter()
            .map(|d| {
                let ids = p
                    .active_grants(&d.share_id)
                    .iter()
                    .filter_map(|gv| rels.iter().find(|r| r.id == gv.relationship))
                    .map(|r| hex(&relationship_id(&r.card, r.paired_at)))
                    .collect();
                (hex(d.share_id.as_bytes()), ids)
            })
            .collect();
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                for s in &mut st.shares {
                    let Some(ids) = active.get(&s.id) else {
                        continue;
                    };
                    for gr in s
                        .grantees
                        .iter_mut()
                        .filter(|g| g.status == "active" && !ids.contains(&g.relationship))
                    {
                        gr.status = "revoked".to_owned();
                    }
                }
                settings::save(v, SHARES, &st)
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
    }

    /// Revokes one grantee of one share (token revoked at once, then a re-key; docs/protocol.md
    /// "Revocation"). They keep what they already fetched; new versions are under a new key
    /// they do not have.
    pub async fn revoke(&self, args: ipc::Revoke) -> Result<()> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.share)?);
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let index = find_relationship(p, &args.relationship)
            .ok_or_else(|| AppError::not_found("that doctor"))?;
        let name = p
            .relationship(&index)
            .map(|r| r.card.body.name.clone())
            .unwrap_or_default();
        p.revoke(&share_id, &index, &sink, &op.cancel).await?;
        let (share_hex, rel) = (args.share, args.relationship);
        let g = self
            .commit(g, move |v| {
                let mut st: SharesState = settings::load(v, SHARES)?.unwrap_or_default();
                if let Some(s) = st.shares.iter_mut().find(|s| s.id == share_hex) {
                    for gr in s.grantees.iter_mut().filter(|g| g.relationship == rel) {
                        gr.status = "revoked".to_owned();
                    }
                }
                settings::save(v, SHARES, &st)?;
                v.log_event(&AuditEvent::Revoked {
                    share_id: share_hex,
                    grantee: name,
                })?;
                Ok(())
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
    }

    /// Everyone a doctor of this share passed the records on to, verified against the
    /// patient's own grants (docs/protocol.md "Forwarding"). A delegation the relay registered
    /// that the patient cannot account for is the error (a tamper alert), after the good ones
    /// are saved.
    pub async fn delegations(&self, args: ipc::IdRef) -> Result<Vec<DelegationRow>> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let found = p.delegations(&share_id).await;
        let t = now();
        let rows = found.map(|tree| {
            tree.into_iter()
                .map(|d| DelegationRow {
                    id: d.id.map(|id| id.to_string()),
                    by: d.by,
                    colleague: d.colleague,
                    root: p
                        .relationship(&d.root_relationship)
                        .map(|r| hex(&relationship_id(&r.card, r.paired_at)))
                        .unwrap_or_default(),
                    level: d.level,
                    expires_at: d.expires_at,
                    status: if d.revoked {
                        "revoked"
                    } else if d.expires_at <= t {
                        "expired"
                    } else {
                        "active"
                    }
                    .to_owned(),
                })
                .collect::<Vec<_>>()
        });
        // The verified notices are kept either way.
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        Ok(rows?)
    }

    /// Revokes one colleague (and everyone they passed the records on to) on one share: their
    /// reader token at once, then a re-key the others receive (docs/protocol.md "Revocation
    /// and expiry"). They keep what they already fetched.
    pub async fn revoke_delegation(&self, args: ipc::RevokeDelegation) -> Result<()> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.share)?);
        let id = carekey_client::patient::DelegationId(validate::hex_id(
            "delegation",
            &args.delegation,
        )?);
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let name = p
            .delegations(&share_id)
            .await?
            .into_iter()
            .find(|d| d.id == Some(id))
            .map(|d| d.colleague)
            .ok_or_else(|| AppError::not_found("that colleague"))?;
        p.revoke_delegation(&share_id, &id, &sink, &op.cancel)
            .await?;
        let share_hex = args.share;
        let g = self
            .commit(g, move |v| {
                Ok(v.log_event(&AuditEvent::Revoked {
                    share_id: share_hex,
                    grantee: name,
                })?)
            })
            .await?;
        drop(g);
        self.schedule_backup();
        Ok(())
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

    /// The verified access log of a share in words ("Dr. X fetched 12 records"), with every
    /// security warning the reading raised (docs/protocol.md "Audit chains": a repeated
    /// receipt, a reader nobody granted, a delegation without its notice, a far-off clock).
    pub async fn access_log(&self, args: ipc::IdRef) -> Result<AccessLogView> {
        args.validate()?;
        let share_id = carekey_client::ShareId(validate::hex_id("share", &args.id)?);
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let events = p.access_log(&share_id).await?;
        let lines = carekey_client::patient::summarize(&events)
            .into_iter()
            .map(|s| AccessLine {
                who: s.who,
                records: s.fetched,
            })
            .collect();
        let downloads = events
            .iter()
            .filter(|e| {
                matches!(
                    e.what,
                    carekey_client::patient::AccessKind::LinkDownloaded { .. }
                )
            })
            .map(|e| e.sentence(&day_and_time(e.time)))
            .collect();
        let mut alerts: Vec<String> = events
            .iter()
            .flat_map(|e| e.warnings.iter().map(move |w| warning_words(e, w)))
            .collect();
        for e in p.take_alerts() {
            let msg = AppError::from(e).message;
            if !alerts.contains(&msg) {
                alerts.push(msg);
            }
        }
        alerts.dedup();
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        Ok(AccessLogView {
            lines,
            downloads,
            alerts,
        })
    }

    // ------------------------------------------------------------------ inbox

    /// Polls every relationship's mailbox once (up to `wait_secs` for the first), keeps each
    /// verified note sealed in the vault, and only then deletes it at the relay: a crash
    /// between receive and accept loses nothing. Returns the notes waiting.
    pub async fn check_inbox(&self, wait_secs: u64) -> Result<Vec<InboxNoteView>> {
        let waiters = {
            let g = self.patient.lock().await;
            let p = g.as_ref().ok_or_else(locked)?;
            let mut w = Vec::new();
            for r in p.relationships() {
                w.push((
                    r.id,
                    relationship_id(&r.card, r.paired_at),
                    p.inbox_waiter(&r.id)?,
                ));
            }
            w
        };
        for (n, (index, rel, waiter)) in waiters.into_iter().enumerate() {
            // Only the first mailbox long-polls; the rest are read as they are.
            let wait = if n == 0 { wait_secs } else { 0 };
            let msgs = waiter.wait(wait).await?;
            if msgs.is_empty() {
                continue;
            }
            let mut g = self.service().await?;
            let p = g.as_mut().ok_or_else(locked)?;
            let received = p.open_inbox(&index, msgs)?;
            let mut stored = Vec::new();
            for note in &received.notes {
                let bytes = note.to_bytes()?;
                stored.push(StoredNote {
                    id: hex(&random_id()),
                    relationship: hex(&rel),
                    received_at: now(),
                    note: data_encoding::BASE64.encode(&bytes),
                });
            }
            let requests = p.forward_requests().len();
            // Save notes and the advanced cursor first, then acknowledge at the relay.
            let mut g = self
                .commit(g, move |v| {
                    let mut st: InboxState = settings::load(v, INBOX)?.unwrap_or_default();
                    st.version = settings::APP_STATE_VERSION;
                    st.notes.extend(stored);
                    settings::save(v, INBOX, &st)
                })
                .await?;
            let p = g.as_mut().ok_or_else(locked)?;
            p.ack_inbox(&index).await?;
            let g = self.commit(g, |_| Ok(())).await?;
            drop(g);
            let notes = self.inbox().await?.len();
            self.events.emit(AppEvent::InboxChanged {
                notes,
                forward_requests: requests,
            });
            if let Some(e) = received.rejected {
                let e = AppError::from(e);
                self.events.emit(AppEvent::Problem {
                    code: e.code,
                    message: e.message,
                });
            }
        }
        self.inbox().await
    }

    /// The notes waiting in the vault (signatures re-verified as they are read).
    pub async fn inbox(&self) -> Result<Vec<InboxNoteView>> {
        let st: InboxState = self
            .vault
            .run(|v| Ok(settings::load(v, INBOX)?.unwrap_or_default()))
            .await?;
        let trust = clinics::load(&self.vault).await?;
        let mut out = Vec::new();
        for s in st.notes {
            let note = decode_note(&s.note)?;
            let ty = note
                .resource
                .get("resourceType")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("Resource")
                .to_owned();
            let title = note
                .resource
                .pointer("/code/text")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(&ty)
                .to_owned();
            out.push(InboxNoteView {
                id: s.id,
                author: note.author.body.name.clone(),
                signature: format!(
                    "signature valid, from {}",
                    trust_wording(&trust, &note.author, Some(s.received_at))
                ),
                resource_type: ty,
                title,
                received_at: s.received_at,
                resource: note.resource,
            });
        }
        Ok(out)
    }

    /// Accepts a note into the vault (kept with its signature) or dismisses it.
    pub async fn answer_note(&self, args: ipc::Answer) -> Result<()> {
        args.validate()?;
        self.vault
            .run(move |v| {
                let mut st: InboxState = settings::load(v, INBOX)?.unwrap_or_default();
                let at = st
                    .notes
                    .iter()
                    .position(|n| n.id == args.id)
                    .ok_or_else(|| AppError::not_found("the note"))?;
                if args.accept {
                    let note = decode_note(&st.notes[at].note)?;
                    let record = carekey_client::note::accept(v, &note)?;
                    v.log_event(&AuditEvent::NoteAccepted {
                        record,
                        author: note.author.body.name.clone(),
                    })?;
                }
                st.notes.remove(at);
                settings::save(v, INBOX, &st)
            })
            .await
    }

    /// Approves or declines a doctor's request to forward to a colleague.
    pub async fn answer_forward(&self, args: ipc::Answer) -> Result<()> {
        args.validate()?;
        let id = ForwardRequestId(validate::hex_id("request", &args.id)?);
        let mut g = self.service().await?;
        let p = g.as_mut().ok_or_else(locked)?;
        let request = p
            .forward_requests()
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::not_found("the forward request"))?;
        p.answer_forward(&id, args.accept).await?;
        let event = AuditEvent::ForwardAnswered {
            share_id: hex(request.share_id.as_bytes()),
            doctor: request.from_name,
            colleague: request.colleague.body.name.clone(),
            approved: args.accept,
        };
        let g = self.commit(g, move |v| Ok(v.log_event(&event)?)).await?;
        drop(g);
        self.schedule_backup();
        Ok(())
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

fn decode_note(b64: &str) -> Result<Note> {
    let bytes = data_encoding::BASE64
        .decode(b64.as_bytes())
        .map_err(|_| AppError::new("tampered", "a stored note cannot be read"))?;
    Ok(Note::from_bytes(&bytes)?)
}

fn relationship_id(card: &Card, paired_at: u64) -> [u8; 16] {
    derived_id(
        RELATIONSHIP_ID_LABEL,
        &[&card.hash(), &paired_at.to_be_bytes()],
    )
}

fn find_relationship(p: &Patient, id: &str) -> Option<carekey_client::RelationshipId> {
    p.relationships()
        .into_iter()
        .find(|r| hex(&relationship_id(&r.card, r.paired_at)) == id)
        .map(|r| r.id)
}

/// The FHIR R4 resource of a hand-entered record (the form's fields, nothing invented).
fn manual_resource(r: &ipc::ManualRecord) -> serde_json::Value {
    use serde_json::json;
    match r {
        ipc::ManualRecord::Condition { text, onset } => {
            let mut v = json!({"resourceType": "Condition", "code": {"text": text},
                "clinicalStatus": {"coding": [{"system":
                    "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}});
            if let Some(d) = onset {
                v["onsetDateTime"] = json!(d);
            }
            v
        }
        ipc::ManualRecord::Medication { text, dosage } => {
            let mut v = json!({"resourceType": "MedicationStatement", "status": "active",
                "medicationCodeableConcept": {"text": text}});
            if let Some(d) = dosage {
                v["dosage"] = json!([{"text": d}]);
            }
            v
        }
        ipc::ManualRecord::Allergy { text, reaction } => {
            let mut v = json!({"resourceType": "AllergyIntolerance", "code": {"text": text}});
            if let Some(x) = reaction {
                v["reaction"] = json!([{"manifestation": [{"text": x}]}]);
            }
            v
        }
        ipc::ManualRecord::Immunization { text, date } => json!({
            "resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": text}, "occurrenceDateTime": date}),
        ipc::ManualRecord::Measurement {
            text,
            value,
            unit,
            date,
        } => json!({"resourceType": "Observation", "status": "final",
            "code": {"text": text}, "effectiveDateTime": date,
            "valueQuantity": {"value": value, "unit": unit}}),
    }
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
