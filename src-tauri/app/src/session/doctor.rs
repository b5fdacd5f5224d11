//! The doctor app's session: scan, wait for the grant, fetch into the vault, chart, notes,
//! access ended and purge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carekey_client::ClientError;
use carekey_client::doctor::{Doctor, ScanSession};
use carekey_core::keys::{Card, Role};
use carekey_vault::{PurgeReason, Record, Vault};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::clinics::{self, TrustList, TrustedClinic};
use super::files::{self, FileBytes};
use super::patient::day;
use super::settings::{self, SETTINGS, Settings};
use super::{
    AppConfig, VaultCell, create_vault_file, create_vault_file_from, derived_id, hex, locked,
    no_vault, now, open_vault_file, random_id,
};
use crate::display::{self, ChartSummary, TimelineRow};
use crate::error::{AppError, Result};
use crate::events::{AppEvent, EventSink, Operations, Throttled};
use crate::ipc::{self, ShareCategory, Validate};
use crate::qr;
use crate::share;

/// Label of the patient-link ids the doctor app hands out.
const LINK_ID_LABEL: &[u8] = b"carekey-app/patient-link-id/v1\0";
/// State name of the doctor's patient list.
const LINKS: &str = "carekey/app/doctor/links/v1";

/// A scan waiting for the patient's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanView {
    /// The scan id (hex) to wait on.
    pub scan: String,
    /// The check code to show, large.
    pub check_code: String,
}

/// One patient who shared with this doctor, as the Patients screen lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientLinkView {
    /// The link id (hex).
    pub id: String,
    /// The patient's card name.
    pub name: String,
    /// "the device you paired with on …".
    pub trust: String,
    /// The share (hex).
    pub share: String,
    /// Until when access lasts.
    pub expires_at: u64,
    /// `active`, `expired` or `ended` (revoked, purged from this device).
    pub status: String,
    /// Records of this share held on this device.
    pub records: usize,
    /// When they were last fetched (unix seconds).
    pub fetched_at: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LinksState {
    version: u32,
    links: Vec<PatientLinkView>,
}

/// One patient's chart: everything the screens show of the records of one share held on this
/// device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartView {
    /// The patient link.
    pub patient: PatientLinkView,
    /// Every record, newest first, with its provenance.
    pub rows: Vec<TimelineRow>,
    /// Active problems, medications, allergies, latest vitals.
    pub summary: ChartSummary,
    /// Lab results with reference ranges.
    pub labs: Vec<display::LabRow>,
    /// Vital-sign series for the trend charts.
    pub vitals: Vec<display::Series>,
    /// Lab results measured more than once, for the trend charts.
    pub lab_trends: Vec<display::Series>,
    /// Documents and their attachments.
    pub documents: Vec<display::DocumentRow>,
    /// The kinds of records held (what a narrower forward can pick from).
    pub categories: Vec<ShareCategory>,
}

/// How this device appears to patients (the Profile screen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileView {
    /// The card's name.
    pub name: String,
    /// `doctor`.
    pub role: String,
    /// The licence id the card claims, if any.
    pub licence: Option<String>,
    /// The card's fingerprint (first 16 bytes of its hash, hex, in groups of 4).
    pub fingerprint: String,
    /// What a patient's phone says about this device.
    pub appears_as: String,
    /// This device's card as text (`CAREKEY-CARD:`), for a clinic's tool to attest.
    pub card_text: String,
    /// The relay this device uses.
    pub relay_url: String,
    /// The closed relays this device holds an operator's enrollment key for (base URLs; the
    /// keys are never shown).
    pub enrolled_relays: Vec<String>,
}

/// One record or attachment of a received share, as [`DoctorApp::received_files`] hands it
/// out. Its `Debug` leaves out the bytes (patient data).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The FHIR resource type, or the attachment's file name.
    pub title: String,
    /// An attachment (raw bytes) rather than a FHIR resource (JSON).
    pub attachment: bool,
    /// The bytes.
    pub data: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ReceivedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedFile")
            .field("title", &self.title)
            .field("attachment", &self.attachment)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The doctor app's state.
#[derive(Debug, Clone)]
pub struct DoctorApp {
    config: AppConfig,
    vault: VaultCell,
    doctor: Arc<AsyncMutex<Option<Doctor>>>,
    scans: Arc<Mutex<HashMap<String, Option<ScanSession>>>>,
    events: Arc<dyn EventSink>,
    ops: Operations,
    /// The SMART Health Link or Card text the last scan recognised, kept until it opens, the
    /// next scan, or lock (`open_smart_link` with an empty text opens it; docs/shl.md).
    smart_scanned: Arc<Mutex<Option<zeroize::Zeroizing<String>>>>,
}

fn link_id(patient: &Card, share: &[u8; 16]) -> String {
    hex(&derived_id(LINK_ID_LABEL, &[&patient.hash(), share]))
}

fn find_link(d: &Doctor, id: &str) -> Option<carekey_client::LinkId> {
    d.links()
        .into_iter()
        .find(|l| link_id(&l.patient, l.share.share_id.as_bytes()) == id)
        .map(|l| l.id)
}

impl DoctorApp {
    /// The app over `config`, reporting to `events`.
    pub fn new(config: AppConfig, events: Arc<dyn EventSink>) -> Self {
        Self {
            config,
            vault: VaultCell::default(),
            doctor: Arc::new(AsyncMutex::new(None)),
            scans: Arc::new(Mutex::new(HashMap::new())),
            events,
            ops: Operations::default(),
            smart_scanned: Arc::new(Mutex::new(None)),
        }
    }

    /// The long operations in flight.
    pub fn operations(&self) -> &Operations {
        &self.ops
    }

    /// Whether a vault file exists.
    pub fn vault_exists(&self) -> bool {
        self.config.vault_path.exists()
    }

    /// Whether the vault is open and unlocked (and the doctor's state loaded).
    pub async fn is_unlocked(&self) -> bool {
        self.doctor.lock().await.is_some() && self.vault.is_unlocked().await
    }

    /// Creates the doctor's vault and clinician card; returns the 24 words.
    pub async fn create_vault(&self, args: ipc::CreateVault) -> Result<String> {
        args.validate()?;
        let s = Settings::new(args.name, args.licence, args.relay_url);
        let (vault, words) =
            create_vault_file(&self.config, args.passphrase, s, Role::Doctor).await?;
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
        let s = Settings::new(args.name, args.licence, args.relay_url);
        let (vault, _) =
            create_vault_file_from(&self.config, args.passphrase, s, Role::Doctor, Some(root))
                .await?;
        self.vault.set(Some(vault)).await?;
        self.load_service().await
    }

    /// Unlocks and loads the doctor's state; purges what expired while the app was closed.
    pub async fn unlock(&self, args: ipc::Unlock) -> Result<()> {
        args.validate()?;
        let vault = open_vault_file(&self.config, args.passphrase).await?;
        self.vault.set(Some(vault)).await?;
        self.load_service().await?;
        self.purge_expired().await.map(drop)
    }

    async fn load_service(&self) -> Result<()> {
        let mut g = self.doctor.lock().await;
        let d = self
            .vault
            .run(|v| {
                let s: Settings = settings::load(v, SETTINGS)?.ok_or_else(no_vault)?;
                if let Some(secs) = s.auto_lock_secs {
                    v.set_idle_timeout(Some(std::time::Duration::from_secs(secs)));
                }
                let card = v.device_card(&s.name, Role::Doctor, s.licence.as_deref())?;
                let identity = v.device_identity()?;
                let loaded = Doctor::load_from(v, identity, card.clone())?;
                let mut d = match loaded {
                    Some(d) => d,
                    None => Doctor::new(v.device_identity()?, card),
                };
                for (url, key) in settings::enrollment_keys(v)? {
                    d.set_enrollment_key(&url, Some(&key))?;
                }
                Ok(d)
            })
            .await?;
        *g = Some(d);
        Ok(())
    }

    /// Sets (or with `key: None` removes) the operator's enrollment key of a closed relay
    /// (docs/relay.md "Enrollment"): kept sealed in the vault and sent only to that relay, when
    /// this device opens a mailbox there (answering a patient's QR, a colleague invite).
    pub async fn set_enrollment_key(&self, args: ipc::SetEnrollmentKey) -> Result<()> {
        args.validate()?;
        let mut g = self.doctor.lock().await;
        let d = g.as_mut().ok_or_else(locked)?;
        d.set_enrollment_key(&args.relay_url, args.key.as_deref())?;
        let base = carekey_client::relay::Relay::new(&args.relay_url)?
            .base()
            .to_owned();
        self.vault
            .run(move |v| settings::set_enrollment_key(v, &base, args.key))
            .await
    }

    /// Locks now: vault keys and the doctor's identity, keys and tokens dropped (zeroized).
    pub async fn lock(&self) {
        let mut g = self.doctor.lock().await;
        *g = None;
        if let Ok(mut s) = self.scans.lock() {
            s.clear();
        }
        if let Ok(mut s) = self.smart_scanned.lock() {
            *s = None;
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

    /// Background tick: idle auto-lock, then the expiry purge.
    pub async fn tick(&self) -> bool {
        let was_open = self.doctor.lock().await.is_some();
        if was_open && !self.vault.is_unlocked().await {
            self.lock().await;
            return true;
        }
        if was_open {
            let _ = self.purge_expired().await;
        }
        false
    }

    /// Changes the auto-lock delay (as the patient app's Settings does; the CLI turns it off
    /// for its throwaway vault, whose life its own `--wait` bounds).
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

    /// How this device appears to patients (its card).
    pub async fn card(&self) -> Result<Card> {
        let g = self.doctor.lock().await;
        let _ = g.as_ref().ok_or_else(locked)?;
        drop(g);
        self.vault.run(|v| v.card()?.ok_or_else(no_vault)).await
    }

    // ------------------------------------------------------------------ scan

    /// Answers a scanned or pasted code: a Carekey QR starts the pairing and returns the
    /// check code to show. A SMART Health Link or Card is kept (in memory, until lock) and
    /// answered with the error code `smart_link`: the UI then calls `open_smart_link` with an
    /// empty text to open it (docs/shl.md "In the doctor app").
    pub async fn scan_text(&self, args: ipc::ScanText) -> Result<ScanView> {
        args.validate()?;
        let payload = qr::classify(&args.text)?;
        if !matches!(payload, qr::ScannedPayload::Carekey(_)) {
            if self.doctor.lock().await.is_none() {
                return Err(locked());
            }
            let kind = payload.kind();
            *self
                .smart_scanned
                .lock()
                .map_err(|_| AppError::internal())? =
                Some(zeroize::Zeroizing::new(payload.text().to_owned()));
            return Err(super::smart_source::scanned_error(kind));
        }
        self.clear_smart_scanned();
        let text = payload.into_carekey()?;
        let session = {
            let g = self.doctor.lock().await;
            let d = g.as_ref().ok_or_else(locked)?;
            d.scan(&text).await?
        };
        let view = ScanView {
            scan: hex(&random_id()),
            check_code: session.check_code().to_string(),
        };
        self.scans
            .lock()
            .map_err(|_| AppError::internal())?
            .insert(view.scan.clone(), Some(session));
        Ok(view)
    }

    /// Waits for the patient's confirmation holding no lock of the service, then stores the
    /// grant. Returns the patient link id.
    pub async fn wait_for_grant(&self, args: ipc::Wait) -> Result<String> {
        args.validate()?;
        let mut session = {
            let mut m = self.scans.lock().map_err(|_| AppError::internal())?;
            match m.get_mut(&args.id) {
                Some(slot) => slot.take().ok_or_else(|| {
                    AppError::new("busy", "this scan is already waiting for the patient")
                })?,
                None => return Err(AppError::not_found("the scan")),
            }
        };
        let op = self.ops.start();
        let got = session
            .wait_for_confirmation(args.wait_secs, &op.cancel)
            .await;
        let confirmation = match got {
            Ok(c) => c,
            Err(e) => {
                let mut m = self.scans.lock().map_err(|_| AppError::internal())?;
                if matches!(e, ClientError::NoAnswer) {
                    m.insert(args.id, Some(session));
                } else {
                    m.remove(&args.id);
                }
                return Err(e.into());
            }
        };
        if let Ok(mut m) = self.scans.lock() {
            m.remove(&args.id);
        }
        let mut g = self.service().await?;
        let d = g.as_mut().ok_or_else(locked)?;
        let link = d.accept_grant(session, confirmation).await?;
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        self.record_link(&link).await
    }

    /// Adds a new patient link (from a grant or an introduction) to the Patients list and
    /// returns its id.
    pub(super) async fn record_link(&self, link: &carekey_client::LinkId) -> Result<String> {
        let view = {
            let g = self.service().await?;
            let d = g.as_ref().ok_or_else(locked)?;
            let l = d
                .links()
                .into_iter()
                .find(|l| l.id == *link)
                .ok_or_else(AppError::internal)?;
            let share = l.share.share_id.to_bytes();
            PatientLinkView {
                id: link_id(&l.patient, &share),
                name: l.patient.body.name.clone(),
                trust: match (&l.patient.attestation, l.delegated) {
                    // No clinic trust list yet: an attestation is shown, not believed.
                    (Some(a), _) => format!(
                        "the device you paired with on {} (its card names {}; not verified)",
                        day(now()),
                        a.clinic_name
                    ),
                    (None, true) => "shared with you through a colleague".to_owned(),
                    (None, false) => format!("the device you paired with on {}", day(now())),
                },
                share: hex(&share),
                expires_at: l.share.expires_at,
                status: "active".to_owned(),
                records: 0,
                fetched_at: None,
            }
        };
        let id = view.id.clone();
        self.vault
            .run(move |v| {
                let mut st: LinksState = settings::load(v, LINKS)?.unwrap_or_default();
                st.version = settings::APP_STATE_VERSION;
                st.links.retain(|l| l.id != view.id);
                st.links.push(view);
                settings::save(v, LINKS, &st)
            })
            .await?;
        Ok(id)
    }

    /// Adds (or replaces) an entry of the Patients list in the open vault.
    pub(super) fn save_link_view(v: &mut Vault, view: PatientLinkView) -> Result<()> {
        let mut st: LinksState = settings::load(v, LINKS)?.unwrap_or_default();
        st.version = settings::APP_STATE_VERSION;
        st.links.retain(|l| l.id != view.id);
        st.links.push(view);
        settings::save(v, LINKS, &st)
    }

    /// The SMART text the last scan kept (see [`Self::scan_text`]).
    pub(super) fn smart_scanned(&self) -> Result<Option<zeroize::Zeroizing<String>>> {
        Ok(self
            .smart_scanned
            .lock()
            .map_err(|_| AppError::internal())?
            .clone())
    }

    /// Forgets the kept SMART text (it opened).
    pub(super) fn clear_smart_scanned(&self) {
        if let Ok(mut s) = self.smart_scanned.lock() {
            *s = None;
        }
    }

    /// The client's link behind an IPC patient id.
    pub(super) fn link_of(&self, d: &Doctor, id: &str) -> Option<carekey_client::LinkId> {
        find_link(d, id)
    }

    /// This device's clinic trust list (the forwarding screens word cards with it).
    pub(super) async fn trust_list(&self) -> Result<TrustList> {
        clinics::load(&self.vault).await
    }

    /// The clinic keys this device trusts for colleagues' card attestations.
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

    /// The service, locked for one flow (the forwarding screens).
    pub(super) async fn service_guard(&self) -> Result<OwnedMutexGuard<Option<Doctor>>> {
        self.service().await
    }

    /// Saves the doctor's state and hands the service back.
    pub(super) async fn commit_guard(
        &self,
        g: OwnedMutexGuard<Option<Doctor>>,
    ) -> Result<OwnedMutexGuard<Option<Doctor>>> {
        self.commit(g, |_| Ok(())).await
    }

    // ------------------------------------------------------------------ records

    /// Fetches and verifies a patient's share, then stores it in one short vault transaction
    /// (the records of the previous copy are replaced). On "access ended" the share's records
    /// are purged from this device and the link says so.
    ///
    /// A SMART Health Link import has no share to fetch: `not_supported`, saying so.
    pub async fn refresh_patient(&self, args: ipc::IdRef) -> Result<PatientLinkView> {
        args.validate()?;
        if self
            .patients()
            .await?
            .iter()
            .any(|l| l.id == args.id && super::smart_source::is_smart_source(&l.share))
        {
            return Err(AppError::not_supported(
                "this chart is a copy imported from a SMART Health Link or Card: \
                 open the link again for newer records",
            ));
        }
        let op = self.ops.start();
        let sink = Throttled::new(op.id.clone(), self.events.clone());
        let mut g = self.service().await?;
        let d = g.as_mut().ok_or_else(locked)?;
        let index = find_link(d, &args.id).ok_or_else(|| AppError::not_found("that patient"))?;
        let card = d.patient(&index).cloned().ok_or_else(AppError::internal)?;
        let (share, expires_at) = d
            .share_of(&index)
            .map(|s| (s.share_id.to_bytes(), s.expires_at))
            .ok_or_else(AppError::internal)?;
        let fetched = d.fetch(&index, &sink, &op.cancel).await;
        let id = args.id.clone();
        let (g, view) = match fetched {
            Ok(records) => {
                self.commit_with(g, move |v| {
                    let n = carekey_client::store::store_share(
                        v,
                        &card,
                        carekey_client::ShareId(share),
                        expires_at,
                        &records,
                    )?
                    .records;
                    update_link(v, &id, |l| {
                        l.records = n;
                        l.fetched_at = Some(now());
                        l.status = "active".to_owned();
                    })
                })
                .await?
            }
            Err(ClientError::AccessEnded) => {
                let (g, view) = self
                    .commit_with(g, move |v| {
                        let purged = v.purge_source(&share, PurgeReason::Revoked)?;
                        let view = update_link(v, &id, |l| {
                            l.status = "ended".to_owned();
                            l.records = 0;
                        })?;
                        Ok((view, purged))
                    })
                    .await
                    .map(|(g, (view, purged))| {
                        self.events.emit(AppEvent::AccessEnded {
                            patient: args.id.clone(),
                            purged,
                        });
                        (g, view)
                    })?;
                (g, view)
            }
            Err(e) => return Err(e.into()),
        };
        drop(g);
        Ok(view)
    }

    /// Everyone who shared with this doctor, with status now.
    pub async fn patients(&self) -> Result<Vec<PatientLinkView>> {
        let mut st: LinksState = self
            .vault
            .run(|v| Ok(settings::load(v, LINKS)?.unwrap_or_default()))
            .await?;
        let t = now();
        for l in &mut st.links {
            // SMART imports are copies the sender does not take back: they do not expire.
            if l.status == "active"
                && l.expires_at <= t
                && !super::smart_source::is_smart_source(&l.share)
            {
                l.status = "expired".to_owned();
            }
        }
        Ok(st.links)
    }

    /// Patient link `id`, refused with `access_ended` unless its share is still active.
    async fn active_link(&self, id: &str) -> Result<PatientLinkView> {
        let link = self
            .patients()
            .await?
            .into_iter()
            .find(|l| l.id == id)
            .ok_or_else(|| AppError::not_found("that patient"))?;
        if link.status != "active" {
            return Err(AppError::new(
                "access_ended",
                "access to this patient's records has ended; they were removed from this device",
            ));
        }
        Ok(link)
    }

    /// The records of one patient's share held on this device: rows, summary, labs, vitals
    /// series and documents.
    pub async fn chart(&self, args: ipc::IdRef) -> Result<ChartView> {
        args.validate()?;
        let link = self.active_link(&args.id).await?;
        let share_hex = link.share.clone();
        self.vault
            .run(move |v| {
                // The rows and kinds come from the summaries, borrowed from the index; only
                // the records the summary, labs, vitals and documents read are opened.
                let (rows, held, wanted) = {
                    let mine: Vec<_> = v
                        .summaries()?
                        .filter(|r| in_share(&r.origin, &share_hex))
                        .collect();
                    let held: Vec<_> = mine.iter().map(|s| share::grant_category(s)).collect();
                    let wanted: Vec<_> = mine
                        .iter()
                        .filter(|s| display::chart_reads_record(s))
                        .map(|s| s.id)
                        .collect();
                    (display::timeline_rows(mine), held, wanted)
                };
                let mut records: Vec<Record> = Vec::with_capacity(wanted.len());
                for id in &wanted {
                    records.push(v.get_record(id)?);
                }
                let categories = carekey_core::grant::Category::ALL
                    .iter()
                    .filter(|c| held.contains(c))
                    .map(|c| share::share_category(*c))
                    .collect();
                let labs = display::lab_table(&records);
                Ok(ChartView {
                    categories,
                    patient: link,
                    rows,
                    summary: display::chart_summary(&records),
                    lab_trends: display::lab_series(&labs),
                    labs,
                    vitals: display::vitals_series(&records),
                    documents: display::documents(&records),
                })
            })
            .await
    }

    /// One record of a chart (the detail view with its provenance). Only records that came
    /// through a share are answered: the doctor's vault holds nothing else a screen shows.
    pub async fn chart_record(&self, args: ipc::RecordRef) -> Result<Record> {
        args.validate()?;
        self.shared_record(&args.id, |_, r| Ok(r)).await
    }

    /// The bytes of one file of a shared record, for the viewer (same rule as
    /// [`DoctorApp::chart_record`]: only records of an active share).
    pub async fn attachment(&self, args: ipc::AttachmentRef) -> Result<FileBytes> {
        args.validate()?;
        let index = args.index;
        self.shared_record(&args.record_id, move |v, r| files::read(v, &r, index))
            .await
    }

    /// Runs `f` on record `id` when it came through a share that is still active.
    async fn shared_record<T, F>(&self, id: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vault, Record) -> Result<T> + Send + 'static,
    {
        let id = super::record_id(id)?;
        let active: Vec<String> = self
            .patients()
            .await?
            .into_iter()
            .filter(|l| l.status == "active")
            .map(|l| l.share)
            .collect();
        self.vault
            .run(move |v| {
                let r = v.get_record(&id)?;
                if active.iter().any(|s| in_share(&r.summary.origin, s)) {
                    f(v, r)
                } else {
                    Err(AppError::not_found("that record"))
                }
            })
            .await
    }

    /// The records of one patient's share held on this device as files, in the vault's
    /// timeline order (newest first, as the chart lists them), each FHIR resource (without
    /// inline attachment bytes) followed by its attachments: what the CLI's `doctor scan
    /// --out` writes (docs/cli.md "Doctor: scan"). A screen uses [`Self::chart`]. Like `chart`,
    /// only for a share whose access is active.
    pub async fn received_files(&self, args: ipc::IdRef) -> Result<Vec<ReceivedFile>> {
        args.validate()?;
        let link = self.active_link(&args.id).await?;
        self.vault
            .run(move |v| {
                let summaries: Vec<_> = v
                    .list()?
                    .records
                    .into_iter()
                    .filter(|r| in_share(&r.origin, &link.share))
                    .collect();
                let mut out = Vec::with_capacity(summaries.len());
                for s in &summaries {
                    let mut resource = v.get_record(&s.id)?.resource;
                    // The attachments follow as their own files, as they were shared.
                    share::strip_inline_data(&mut resource);
                    let data = serde_json::to_vec(&resource).map_err(|_| AppError::internal())?;
                    out.push(ReceivedFile {
                        title: s.fhir_type.clone(),
                        attachment: false,
                        data: zeroize::Zeroizing::new(data),
                    });
                    for (n, a) in s.attachments.iter().enumerate() {
                        out.push(ReceivedFile {
                            title: share::attachment_title(
                                s,
                                a.title.as_deref(),
                                a.content_type.as_deref(),
                                n,
                            ),
                            attachment: true,
                            data: v.attachment(&a.id)?,
                        });
                    }
                }
                Ok(out)
            })
            .await
    }

    /// How this device appears to patients.
    pub async fn profile(&self) -> Result<ProfileView> {
        let card = self.card().await?;
        let s: Settings = self
            .vault
            .run(|v| settings::load(v, SETTINGS)?.ok_or_else(no_vault))
            .await?;
        let fingerprint = clinics::card_fingerprint(&card);
        Ok(ProfileView {
            name: card.body.name.clone(),
            role: "doctor".to_owned(),
            licence: card.body.licence_id.clone(),
            fingerprint,
            card_text: clinics::card_text(&card),
            appears_as: match &card.attestation {
                Some(a) => format!(
                    "\"the device you paired with, attested by {}\" on a phone that trusts that \
                     clinic's key; elsewhere \"the device you paired with\", the clinic shown \
                     as not verified",
                    a.clinic_name
                ),
                None => "\"the device you paired with\": patients see your name and licence \
                         as you entered them, with no clinic attestation"
                    .to_owned(),
            },
            relay_url: s.relay_url,
            enrolled_relays: s.enrolled_relays,
        })
    }

    /// Imports a clinic's attestation of this device's card ("signed elsewhere": the clinic's
    /// tool signs the card text the Profile shows). Refused unless it is a valid signature over
    /// this very card; the card's hash, which patients pinned, does not change.
    pub async fn import_attestation(&self, args: ipc::ScanText) -> Result<ProfileView> {
        args.validate()?;
        let a = clinics::parse_attestation(&args.text)?;
        let mut check = self.card().await?;
        check.attestation = Some(a.clone());
        check.verify().map_err(|_| {
            AppError::invalid_input("attestation: it was signed for another card, or changed")
        })?;
        let mut g = self.service().await?;
        let card = self
            .vault
            .run(move |v| Ok(v.set_card_attestation(a)?))
            .await?;
        let d = g.as_mut().ok_or_else(locked)?;
        d.set_card(card)?;
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        self.profile().await
    }

    /// "Open QR image": decodes the image and answers its first code like [`Self::scan_text`].
    pub async fn scan_image(&self, args: ipc::ScanImage) -> Result<ScanView> {
        args.validate()?;
        let bytes = data_encoding::BASE64
            .decode(args.image_base64.trim().as_bytes())
            .map_err(|_| AppError::invalid_input("image: not a readable image file"))?;
        let texts = tokio::task::spawn_blocking(move || qr::decode_image(&bytes))
            .await
            .map_err(|_| AppError::internal())??;
        let text = texts
            .into_iter()
            .next()
            .ok_or_else(|| AppError::new("no_qr", "no QR code was found in that image"))?;
        self.scan_text(ipc::ScanText { text }).await
    }

    /// One camera frame: decodes it and, when it holds a code, answers it like
    /// [`Self::scan_text`]. A frame without a code is `no_qr` (the UI sends the next one).
    pub async fn scan_frame(&self, args: ipc::ScanFrame) -> Result<ScanView> {
        args.validate()?;
        let luma = data_encoding::BASE64
            .decode(args.luma_base64.as_bytes())
            .map_err(|_| AppError::invalid_input("frame: the data is not base64"))?;
        let (w, h) = (args.width, args.height);
        let texts = tokio::task::spawn_blocking(move || qr::decode_luma(w, h, &luma))
            .await
            .map_err(|_| AppError::internal())??;
        let text = texts
            .into_iter()
            .next()
            .ok_or_else(|| AppError::new("no_qr", "no QR code in this frame"))?;
        self.scan_text(ipc::ScanText { text }).await
    }

    /// Runs `f` on the open vault (for the sibling modules).
    pub(super) async fn vault_run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vault) -> Result<T> + Send + 'static,
    {
        self.vault.run(f).await
    }

    /// Signs a FHIR resource and sends it to the patient as a note.
    pub async fn send_note(&self, args: ipc::SendNote) -> Result<()> {
        args.validate()?;
        let mut g = self.service().await?;
        let d = g.as_mut().ok_or_else(locked)?;
        let index =
            find_link(d, &args.patient).ok_or_else(|| AppError::not_found("that patient"))?;
        d.send_note(&index, &args.resource).await?;
        let g = self.commit(g, |_| Ok(())).await?;
        drop(g);
        Ok(())
    }

    /// Purges every share whose expiry passed on this device's clock. Returns the count.
    pub async fn purge_expired(&self) -> Result<usize> {
        let mut g = self.service().await?;
        let (g2, n) = {
            let cell = self.vault.clone();
            tokio::task::spawn_blocking(move || {
                let r = cell
                    .0
                    .lock()
                    .map_err(|_| AppError::internal())
                    .and_then(|mut v| {
                        let v = v.as_mut().ok_or_else(locked)?;
                        let d = g.as_mut().ok_or_else(locked)?;
                        let n = d.purge_expired(v)?;
                        d.save_to(v)?;
                        Ok(n)
                    });
                r.map(|n| (g, n))
            })
            .await
            .map_err(|_| AppError::internal())??
        };
        drop(g2);
        Ok(n)
    }

    // ------------------------------------------------------------------ internals

    async fn service(&self) -> Result<OwnedMutexGuard<Option<Doctor>>> {
        let g = self.doctor.clone().lock_owned().await;
        if g.is_none() {
            return Err(locked());
        }
        Ok(g)
    }

    async fn commit<F>(
        &self,
        g: OwnedMutexGuard<Option<Doctor>>,
        also: F,
    ) -> Result<OwnedMutexGuard<Option<Doctor>>>
    where
        F: FnOnce(&mut Vault) -> Result<()> + Send + 'static,
    {
        self.commit_with(g, also).await.map(|(g, ())| g)
    }

    /// Saves the doctor's state and runs `also` in the same blocking call.
    async fn commit_with<T, F>(
        &self,
        g: OwnedMutexGuard<Option<Doctor>>,
        also: F,
    ) -> Result<(OwnedMutexGuard<Option<Doctor>>, T)>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vault) -> Result<T> + Send + 'static,
    {
        self.vault.commit_with(g, also).await
    }
}

fn update_link(
    v: &mut Vault,
    id: &str,
    f: impl FnOnce(&mut PatientLinkView),
) -> Result<PatientLinkView> {
    let mut st: LinksState = settings::load(v, LINKS)?.unwrap_or_default();
    let l = st
        .links
        .iter_mut()
        .find(|l| l.id == id)
        .ok_or_else(|| AppError::not_found("that patient"))?;
    f(l);
    let out = l.clone();
    settings::save(v, LINKS, &st)?;
    Ok(out)
}

/// Whether a stored record belongs to the Patients entry whose `share` is `share_hex`: a
/// Carekey share's records by their share id, a SMART import's (`share` = `smart:<id>`) by
/// their import source label, which is that same text (docs/shl.md "In the doctor app").
fn in_share(origin: &carekey_vault::Origin, share_hex: &str) -> bool {
    match origin {
        carekey_vault::Origin::Shared { share_id, .. } => share_id == share_hex,
        carekey_vault::Origin::Imported { source } => {
            super::smart_source::is_smart_source(share_hex) && source == share_hex
        }
        _ => false,
    }
}
