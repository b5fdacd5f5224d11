//! The arguments the apps' commands take, as the UIs send them (JSON, stable snake_case field
//! names, unknown fields refused), each with its [`Validate`] rule.
//!
//! A Tauri command deserializes its argument into one of these, calls
//! [`Validate::validate`], then one session function. [`validate_json`] does the same from a
//! command name and raw JSON: the fuzz target drives every command through it, and the
//! shells' tests check that each command they register is listed in [`COMMANDS`].

use serde::{Deserialize, Serialize};

use crate::error::{AppError, Result};
use crate::validate;

/// Checks an argument before any work.
pub trait Validate {
    /// `Ok` when every field is within its rule; else `invalid_input` naming the field.
    fn validate(&self) -> Result<()>;
}

/// Forwarding policy as the share screen offers it (docs/protocol.md "Grants, scope, delegation": never / ask me / allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChoice {
    /// The doctor cannot forward.
    Never,
    /// The doctor asks; the patient approves each colleague.
    Ask,
    /// The doctor may delegate down to `depth` levels without asking.
    Allowed,
}

/// The categories a patient shares by (the grant's scope categories, docs/protocol.md
/// "Scope"); [`crate::share::grant_category`] maps the vault's record categories onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareCategory {
    /// AllergyIntolerance.
    Allergies,
    /// Condition.
    Conditions,
    /// Medication*.
    Medications,
    /// Immunization.
    Immunizations,
    /// Procedure.
    Procedures,
    /// Labs and vitals: Observation, DiagnosticReport.
    Observations,
    /// DocumentReference, Binary, Media, Composition.
    Documents,
    /// Encounter.
    Encounters,
    /// Notes doctors wrote back.
    Notes,
    /// The Patient resource.
    Demographics,
    /// Anything else.
    Other,
}

/// `create_vault`: onboarding, a new vault.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVault {
    /// The new passphrase.
    pub passphrase: String,
    /// The name on this device's card.
    pub name: String,
    /// Licence id (doctor app only).
    #[serde(default)]
    pub licence: Option<String>,
    /// The relay this device talks to.
    pub relay_url: String,
}

impl Validate for CreateVault {
    fn validate(&self) -> Result<()> {
        validate::new_passphrase(&self.passphrase)?;
        validate::name("name", &self.name)?;
        if let Some(l) = &self.licence {
            validate::text("licence", l, validate::NAME_MAX_CHARS)?;
        }
        validate::relay_url(&self.relay_url)
    }
}

/// `restore_vault`: onboarding from the 24-word phrase.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreVault {
    /// The 24 words, separated by spaces.
    pub phrase: String,
    /// The passphrase for this device.
    pub new_passphrase: String,
    /// The name on this device's card.
    pub name: String,
    /// The relay holding the backup.
    pub relay_url: String,
}

impl Validate for RestoreVault {
    fn validate(&self) -> Result<()> {
        let words = self.phrase.split_whitespace().count();
        if words != 24 || self.phrase.len() > 24 * 12 {
            return Err(AppError::invalid_input(
                "recovery phrase: must be the 24 words you wrote down",
            ));
        }
        validate::new_passphrase(&self.new_passphrase)?;
        validate::name("name", &self.name)?;
        validate::relay_url(&self.relay_url)
    }
}

/// `unlock`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    /// The passphrase.
    pub passphrase: String,
}

impl Validate for Unlock {
    fn validate(&self) -> Result<()> {
        validate::passphrase(&self.passphrase)
    }
}

/// `change_passphrase`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassphrase {
    /// The current passphrase.
    pub old: String,
    /// The new one.
    pub new: String,
}

impl Validate for ChangePassphrase {
    fn validate(&self) -> Result<()> {
        validate::passphrase(&self.old)?;
        validate::new_passphrase(&self.new)
    }
}

/// `set_relay`: the relay URL setting.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetRelay {
    /// The URL.
    pub relay_url: String,
}

impl Validate for SetRelay {
    fn validate(&self) -> Result<()> {
        validate::relay_url(&self.relay_url)
    }
}

/// `set_enrollment_key`: the operator's enrollment key of the closed relay at `relay_url`
/// (docs/relay.md "Enrollment"); `key: null` removes it. `Debug` never shows the key.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetEnrollmentKey {
    /// The relay the key is for (it is sent to no other).
    pub relay_url: String,
    /// The key, or `None` to remove it.
    #[serde(default)]
    pub key: Option<String>,
}

impl std::fmt::Debug for SetEnrollmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetEnrollmentKey")
            .field("relay_url", &self.relay_url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Validate for SetEnrollmentKey {
    fn validate(&self) -> Result<()> {
        validate::relay_url(&self.relay_url)?;
        match &self.key {
            Some(k) => validate::enrollment_key(k),
            None => Ok(()),
        }
    }
}

/// `set_auto_lock`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetAutoLock {
    /// Seconds of inactivity before the vault locks; `None` = never.
    pub secs: Option<u64>,
}

impl Validate for SetAutoLock {
    fn validate(&self) -> Result<()> {
        validate::auto_lock(self.secs)
    }
}

/// `search`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// What the user typed.
    pub query: String,
}

impl Validate for Search {
    fn validate(&self) -> Result<()> {
        validate::query(&self.query)
    }
}

/// `get_record` / `delete_record`: one vault record.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    /// The record id (64 hex).
    pub id: String,
}

impl Validate for RecordRef {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<32>("record", &self.id).map(drop)
    }
}

/// Most files one record carries that a viewer can ask for; FHIR sets no limit, so this only
/// bounds the index a caller may send.
pub const MAX_FILES_PER_RECORD: u32 = 1024;

/// `open_attachment`: file `index` of a record, numbered as its document row lists them
/// (`DocumentRow::attachments`, `record_files`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    /// The record id (64 hex).
    pub record_id: String,
    /// Which of its files, from 0.
    pub index: u32,
}

impl Validate for AttachmentRef {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<32>("record", &self.record_id)?;
        if self.index >= MAX_FILES_PER_RECORD {
            return Err(AppError::invalid_input("file: no such file in this record"));
        }
        Ok(())
    }
}

/// `import_file`: a FHIR Bundle or NDJSON file the user picked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFile {
    /// Absolute path from the file dialog.
    pub path: String,
}

impl Validate for ImportFile {
    fn validate(&self) -> Result<()> {
        if self.path.is_empty()
            || self.path.len() > 4096
            || self.path.contains('\0')
            || !std::path::Path::new(&self.path).is_absolute()
        {
            return Err(AppError::invalid_input("file: choose a file to import"));
        }
        Ok(())
    }
}

/// `export_bundle`: where to write the FHIR Bundle (a path from the save dialog).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    /// Absolute path.
    pub path: String,
}

impl Validate for ExportFile {
    fn validate(&self) -> Result<()> {
        ImportFile {
            path: self.path.clone(),
        }
        .validate()
        .map_err(|_| AppError::invalid_input("file: choose where to save the export"))
    }
}

/// A record entered by hand (the add-record form; the app builds the FHIR resource).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum ManualRecord {
    /// A condition / problem.
    Condition {
        /// What it is ("Asthma").
        text: String,
        /// When it started (YYYY-MM-DD), if known.
        onset: Option<String>,
    },
    /// A medication taken.
    Medication {
        /// Name ("Salbutamol 100 µg inhaler").
        text: String,
        /// How it is taken ("2 puffs when needed").
        dosage: Option<String>,
    },
    /// An allergy.
    Allergy {
        /// To what ("Penicillin").
        text: String,
        /// Reaction, if known.
        reaction: Option<String>,
    },
    /// A vaccination.
    Immunization {
        /// Which vaccine.
        text: String,
        /// Date given (YYYY-MM-DD).
        date: String,
    },
    /// A measurement (weight, blood pressure...).
    Measurement {
        /// What was measured ("Body weight").
        text: String,
        /// The value.
        value: f64,
        /// Its unit ("kg").
        unit: String,
        /// When (YYYY-MM-DD).
        date: String,
    },
}

/// A calendar date `YYYY-MM-DD` with a plausible year.
fn date(field: &str, v: &str) -> Result<()> {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 10 && b[4] == b'-' && b[7] == b'-' && digits(0..4) && digits(5..7);
    let ok = ok && digits(8..10) && {
        let y: u32 = v[0..4].parse().unwrap_or(0);
        let m: u32 = v[5..7].parse().unwrap_or(0);
        let d: u32 = v[8..10].parse().unwrap_or(0);
        (1900..=2200).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid_input(format!(
            "{field}: must be a date such as 2026-12-01"
        )))
    }
}

impl Validate for ManualRecord {
    fn validate(&self) -> Result<()> {
        let opt = |field: &str, v: &Option<String>| match v {
            Some(s) => validate::text(field, s, validate::NAME_MAX_CHARS),
            None => Ok(()),
        };
        match self {
            ManualRecord::Condition { text, onset } => {
                validate::name("text", text)?;
                onset.as_deref().map_or(Ok(()), |d| date("onset", d))
            }
            ManualRecord::Medication { text, dosage } => {
                validate::name("text", text)?;
                opt("dosage", dosage)
            }
            ManualRecord::Allergy { text, reaction } => {
                validate::name("text", text)?;
                opt("reaction", reaction)
            }
            ManualRecord::Immunization { text, date: d } => {
                validate::name("text", text)?;
                date("date", d)
            }
            ManualRecord::Measurement {
                text,
                value,
                unit,
                date: d,
            } => {
                validate::name("text", text)?;
                if !value.is_finite() || value.abs() > 1e9 {
                    return Err(AppError::invalid_input("value: must be a number"));
                }
                validate::text("unit", unit, 32)?;
                date("date", d)
            }
        }
    }
}

/// `start_share`: what to share, until when, and the forwarding policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StartShare {
    /// Whole categories.
    #[serde(default)]
    pub categories: Vec<ShareCategory>,
    /// Single records (vault record ids, 64 hex), in addition to the categories.
    #[serde(default)]
    pub records: Vec<String>,
    /// Seconds from now until access ends.
    pub expires_in_secs: u64,
    /// Forwarding policy.
    pub policy: PolicyChoice,
    /// Delegation depth under `allowed` (0 otherwise).
    #[serde(default)]
    pub depth: u8,
}

impl Validate for StartShare {
    fn validate(&self) -> Result<()> {
        if self.categories.is_empty() && self.records.is_empty() {
            return Err(AppError::invalid_input(
                "selection: choose at least one category or record",
            ));
        }
        if self.categories.len() + self.records.len() > validate::SHARE_MAX_SELECTED {
            return Err(AppError::invalid_input("selection: too many records"));
        }
        for r in &self.records {
            validate::hex_id::<32>("record", r)?;
        }
        validate::share_duration(self.expires_in_secs)?;
        validate::delegation_depth(self.policy == PolicyChoice::Allowed, self.depth)
    }
}

/// An id the app handed out (share, relationship, pairing, scan, note, request), 32 hex.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdRef {
    /// The id.
    pub id: String,
}

impl Validate for IdRef {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("id", &self.id).map(drop)
    }
}

/// `wait_for_doctor` / `wait_for_grant`: a long-poll on a pairing or a scan.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// The pairing or scan id.
    pub id: String,
    /// Seconds to wait at most.
    pub wait_secs: u64,
}

impl Validate for Wait {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("id", &self.id)?;
        validate::wait_secs(self.wait_secs)
    }
}

/// `answer_forward` (approve or decline), `answer_note` (accept into the vault or dismiss).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The pairing, request or note id.
    pub id: String,
    /// Yes or no.
    pub accept: bool,
}

impl Validate for Answer {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("id", &self.id).map(drop)
    }
}

/// `answer_doctor`: confirm or reject the doctor at the door after comparing check codes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerDoctor {
    /// The pairing id.
    pub id: String,
    /// Confirm (`true`) or reject.
    pub accept: bool,
    /// On a confirm, the only categories this doctor gets (a non-empty subset of the share's
    /// categories, checked against the share by the session); absent: the whole share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<ShareCategory>>,
}

impl Validate for AnswerDoctor {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("id", &self.id)?;
        match &self.categories {
            None => Ok(()),
            Some(_) if !self.accept => Err(AppError::invalid_input(
                "categories: only a confirm takes categories",
            )),
            Some(c) => validate::confirm_categories(c),
        }
    }
}

/// `revoke`: one grantee of one share.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The share (32 hex).
    pub share: String,
    /// The relationship of the doctor to revoke (32 hex).
    pub relationship: String,
}

impl Validate for Revoke {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("share", &self.share)?;
        validate::hex_id::<16>("relationship", &self.relationship).map(drop)
    }
}

/// `scan_text`: a QR code's text (pasted, or decoded by the shell's scanner).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScanText {
    /// The text.
    pub text: String,
}

impl Validate for ScanText {
    fn validate(&self) -> Result<()> {
        if self.text.trim().is_empty() || self.text.len() > 8192 {
            return Err(AppError::invalid_input(
                "code: paste the text of the patient's QR code",
            ));
        }
        Ok(())
    }
}

/// `open_smart_link` (doctor app): a SMART Health Link or Card to open (docs/shl.md "In the
/// doctor app").
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSmartLink {
    /// `shlink:/…`, a viewer URL `…#shlink:/…`, or `shc:/…` (chunks one per line); empty for
    /// the code the last scan recognised.
    pub text: String,
    /// The passcode of a `P`-flag link, when the user typed one.
    #[serde(default)]
    pub passcode: Option<String>,
}

/// Longest `open_smart_link` text: every chunk of a chunked `shc:/` code, one per line.
pub const MAX_SMART_TEXT_LEN: usize =
    carekey_shl::limits::MAX_SHC_CHUNKS * (carekey_shl::limits::MAX_SHC_TEXT_LEN + 2);

impl core::fmt::Debug for OpenSmartLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpenSmartLink")
            .field("text_len", &self.text.len())
            .field("passcode", &self.passcode.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Validate for OpenSmartLink {
    fn validate(&self) -> Result<()> {
        if self.text.len() > MAX_SMART_TEXT_LEN {
            return Err(AppError::invalid_input(
                "code: longer than any SMART Health Link or Card",
            ));
        }
        if let Some(p) = &self.passcode
            && (p.is_empty()
                || p.len() > carekey_shl::limits::MAX_PASSCODE_LEN
                || p.chars().any(char::is_control))
        {
            return Err(AppError::invalid_input(
                "passcode: 1 to 256 bytes, no control characters",
            ));
        }
        Ok(())
    }
}

/// `send_note`: a FHIR resource the doctor wrote, for one patient.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendNote {
    /// The patient link (32 hex).
    pub patient: String,
    /// The resource.
    pub resource: serde_json::Value,
}

impl Validate for SendNote {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("patient", &self.patient)?;
        validate::note_resource(&self.resource)
    }
}

/// Longest colleague invite text accepted.
pub const MAX_INVITE_TEXT: usize = 8192;

/// Most categories a forward's scope names (there are fewer kinds; more is a bad request).
pub const MAX_SCOPE_CATEGORIES: usize = 16;

/// `forward`: one patient's share to the colleague of an invite.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// The patient link (32 hex).
    pub patient: String,
    /// The colleague's invite text.
    pub invite: String,
    /// Why (shown to the patient under `ask`).
    pub reason: String,
    /// What the colleague may see: these categories of what this doctor holds. Empty means
    /// all of it (docs/protocol.md "Forwarding": a delegate's scope is within the delegator's).
    #[serde(default)]
    pub categories: Vec<ShareCategory>,
}

impl Validate for Forward {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("patient", &self.patient)?;
        if self.invite.is_empty() || self.invite.len() > MAX_INVITE_TEXT {
            return Err(AppError::invalid_input(
                "invite: paste or scan the colleague's invite",
            ));
        }
        if self.categories.len() > MAX_SCOPE_CATEGORIES {
            return Err(AppError::invalid_input("categories: too many"));
        }
        validate::text("reason", &self.reason, validate::NAME_MAX_CHARS)
    }
}

/// `publish_link`: a share published as a SMART Health Link (docs/shl.md "Publishing").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishLink {
    /// The share (32 hex).
    pub share: String,
    /// Protect it with a passcode (the SHL `P` flag; a fresh 8-digit one is made). On by
    /// default: without one, whoever has the code reads the records.
    pub passcode: bool,
    /// Seconds until the link stops answering (at most the share's own expiry).
    pub expires_in_secs: u64,
    /// The label a viewer shows (at most 80 characters).
    pub label: Option<String>,
}

/// Longest life of a SMART Health Link (a share lasts at most this long too).
pub const MAX_LINK_SECS: u64 = 365 * 86_400;
/// Longest SHL label (SHL specification: 80 characters).
pub const MAX_LINK_LABEL_CHARS: usize = 80;

impl Validate for PublishLink {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("share", &self.share)?;
        if !(60..=MAX_LINK_SECS).contains(&self.expires_in_secs) {
            return Err(AppError::invalid_input(
                "expires: between a minute and a year",
            ));
        }
        match &self.label {
            Some(l) => validate::text("label", l, MAX_LINK_LABEL_CHARS),
            None => Ok(()),
        }
    }
}

/// `delete_link`: a published link to stop.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRef {
    /// The link (64 hex), as `links` lists it.
    pub id: String,
}

impl Validate for LinkRef {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<32>("link", &self.id).map(drop)
    }
}

/// `untrust_clinic`: a clinic key to take off this device's trust list.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicRef {
    /// The clinic's key (64 hex), as `trusted_clinics` lists it.
    pub key: String,
}

impl Validate for ClinicRef {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<32>("key", &self.key).map(drop)
    }
}

/// `revoke_delegation`: one colleague (and everyone they passed the records on to) loses
/// access to one share.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeDelegation {
    /// The share (32 hex).
    pub share: String,
    /// The delegation (32 hex), as `delegations` lists it.
    pub delegation: String,
}

impl Validate for RevokeDelegation {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("share", &self.share)?;
        validate::hex_id::<16>("delegation", &self.delegation).map(drop)
    }
}

/// `scan_image`: an image holding a QR code ("open QR image"), base64 of the file's bytes
/// (PNG or JPEG).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScanImage {
    /// Standard base64 of the image file.
    pub image_base64: String,
}

impl Validate for ScanImage {
    fn validate(&self) -> Result<()> {
        // 4 base64 characters per 3 bytes.
        if self.image_base64.is_empty()
            || self.image_base64.len() > crate::qr::MAX_IMAGE_BYTES / 3 * 4 + 4
        {
            return Err(AppError::invalid_input(
                "image: choose a PNG or JPEG image of a QR code (at most 20 MiB)",
            ));
        }
        Ok(())
    }
}

/// `scan_frame`: one camera frame, 8-bit grey (the desktop camera scanner: the UI takes the
/// luma of each video frame and the app decodes it, docs/architecture.md "Apps").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScanFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Standard base64 of `width × height` bytes, row-major.
    pub luma_base64: String,
}

/// Largest camera frame the scanner takes (1920 × 1080).
pub const MAX_FRAME_PIXELS: u64 = 1920 * 1080;

impl Validate for ScanFrame {
    fn validate(&self) -> Result<()> {
        let px = u64::from(self.width) * u64::from(self.height);
        if px == 0 || px > MAX_FRAME_PIXELS {
            return Err(AppError::invalid_input(
                "frame: between 1 and 1920 × 1080 pixels",
            ));
        }
        // 4 base64 characters per 3 bytes, padded.
        if self.luma_base64.len() as u64 != px.div_ceil(3) * 4 {
            return Err(AppError::invalid_input(
                "frame: the data is not width × height grey bytes",
            ));
        }
        Ok(())
    }
}

/// Longest free text of a write-back (a clinical note).
pub const WRITE_BACK_TEXT_MAX_CHARS: usize = 20_000;

/// `write_back`: what the doctor composes for the patient; the app builds the FHIR resource
/// (docs/architecture.md "App layer": no FHIR is built in the UI).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WriteBack {
    /// A clinical note (FHIR `Communication`).
    Note {
        /// The patient link (32 hex).
        patient: String,
        /// The note.
        text: String,
    },
    /// A blood pressure reading with both components (FHIR `Observation`, LOINC 85354-9).
    BloodPressure {
        /// The patient link (32 hex).
        patient: String,
        /// Systolic, mmHg.
        systolic: f64,
        /// Diastolic, mmHg.
        diastolic: f64,
        /// When measured (`YYYY-MM-DD`).
        date: String,
    },
    /// A prescribed medication (FHIR `MedicationRequest`).
    Medication {
        /// The patient link (32 hex).
        patient: String,
        /// The medication.
        text: String,
        /// How to take it.
        dosage: Option<String>,
    },
}

impl WriteBack {
    /// The patient link it is for.
    pub fn patient(&self) -> &str {
        match self {
            WriteBack::Note { patient, .. }
            | WriteBack::BloodPressure { patient, .. }
            | WriteBack::Medication { patient, .. } => patient,
        }
    }
}

impl Validate for WriteBack {
    fn validate(&self) -> Result<()> {
        validate::hex_id::<16>("patient", self.patient())?;
        match self {
            WriteBack::Note { text, .. } => validate::text("note", text, WRITE_BACK_TEXT_MAX_CHARS),
            WriteBack::BloodPressure {
                systolic,
                diastolic,
                date: day,
                ..
            } => {
                let ok = |v: f64, lo: f64, hi: f64| v.is_finite() && (lo..=hi).contains(&v);
                if !ok(*systolic, 40.0, 300.0) {
                    return Err(AppError::invalid_input(
                        "systolic: must be between 40 and 300 mmHg",
                    ));
                }
                if !ok(*diastolic, 20.0, 200.0) || diastolic >= systolic {
                    return Err(AppError::invalid_input(
                        "diastolic: must be between 20 and 200 mmHg and below the systolic",
                    ));
                }
                date("date", day)
            }
            WriteBack::Medication { text, dosage, .. } => {
                validate::text("medication", text, validate::NAME_MAX_CHARS)?;
                match dosage {
                    Some(d) => validate::text("dosage", d, validate::NAME_MAX_CHARS),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Commands with no argument.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl Validate for NoArgs {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// Every command of both apps and the argument type it takes.
pub const COMMANDS: &[(&str, &str)] = &[
    ("app_status", "NoArgs"),
    ("create_vault", "CreateVault"),
    ("restore_vault", "RestoreVault"),
    ("unlock", "Unlock"),
    ("lock", "NoArgs"),
    ("change_passphrase", "ChangePassphrase"),
    ("set_relay", "SetRelay"),
    ("check_relay", "SetRelay"),
    ("set_enrollment_key", "SetEnrollmentKey"),
    ("set_auto_lock", "SetAutoLock"),
    ("timeline", "NoArgs"),
    ("search", "Search"),
    ("get_record", "RecordRef"),
    ("delete_record", "RecordRef"),
    ("add_record", "ManualRecord"),
    ("import_file", "ImportFile"),
    ("start_share", "StartShare"),
    ("new_qr", "IdRef"),
    ("activity", "NoArgs"),
    ("wait_for_doctor", "Wait"),
    ("answer_doctor", "AnswerDoctor"),
    ("shares", "NoArgs"),
    ("access_log", "IdRef"),
    ("revoke", "Revoke"),
    ("check_inbox", "NoArgs"),
    ("answer_note", "Answer"),
    ("answer_forward", "Answer"),
    ("backup_now", "NoArgs"),
    ("export_bundle", "ExportFile"),
    ("scan_text", "ScanText"),
    ("wait_for_grant", "Wait"),
    ("patients", "NoArgs"),
    ("chart", "IdRef"),
    ("refresh_patient", "IdRef"),
    ("send_note", "SendNote"),
    ("scan_image", "ScanImage"),
    ("scan_frame", "ScanFrame"),
    ("write_back", "WriteBack"),
    ("sent_notes", "NoArgs"),
    ("profile", "NoArgs"),
    ("get_chart_record", "RecordRef"),
    ("purge_expired", "NoArgs"),
    ("colleague_invite", "SetRelay"),
    ("wait_for_introduction", "Wait"),
    ("read_invite", "ScanText"),
    ("forward", "Forward"),
    ("forward_requests", "NoArgs"),
    ("cancel", "IdRef"),
    ("open_smart_link", "OpenSmartLink"),
    ("delegations", "IdRef"),
    ("revoke_delegation", "RevokeDelegation"),
    ("trusted_clinics", "NoArgs"),
    ("trust_clinic", "ScanText"),
    ("untrust_clinic", "ClinicRef"),
    ("import_attestation", "ScanText"),
    ("publish_link", "PublishLink"),
    ("links", "IdRef"),
    ("delete_link", "LinkRef"),
    ("record_files", "RecordRef"),
    ("open_attachment", "AttachmentRef"),
    ("trends", "NoArgs"),
];

fn parse<T: for<'de> Deserialize<'de> + Validate>(args: &serde_json::Value) -> Result<T> {
    // serde's message can quote the input: say only that the arguments do not fit.
    let v: T = serde_json::from_value(args.clone()).map_err(|_| {
        AppError::invalid_input("arguments: missing, extra or wrongly typed fields")
    })?;
    v.validate()?;
    Ok(v)
}

/// Deserializes and validates the arguments of `command` (as a shell receives them). Unknown
/// commands are `invalid_input`.
pub fn validate_json(command: &str, args: &serde_json::Value) -> Result<()> {
    let ty = COMMANDS
        .iter()
        .find(|(c, _)| *c == command)
        .map(|(_, t)| *t)
        .ok_or_else(|| AppError::invalid_input("command: unknown"))?;
    match ty {
        "NoArgs" => parse::<NoArgs>(args).map(drop),
        "CreateVault" => parse::<CreateVault>(args).map(drop),
        "RestoreVault" => parse::<RestoreVault>(args).map(drop),
        "Unlock" => parse::<Unlock>(args).map(drop),
        "ChangePassphrase" => parse::<ChangePassphrase>(args).map(drop),
        "SetRelay" => parse::<SetRelay>(args).map(drop),
        "SetEnrollmentKey" => parse::<SetEnrollmentKey>(args).map(drop),
        "SetAutoLock" => parse::<SetAutoLock>(args).map(drop),
        "Search" => parse::<Search>(args).map(drop),
        "RecordRef" => parse::<RecordRef>(args).map(drop),
        "AttachmentRef" => parse::<AttachmentRef>(args).map(drop),
        "ManualRecord" => parse::<ManualRecord>(args).map(drop),
        "ImportFile" => parse::<ImportFile>(args).map(drop),
        "ExportFile" => parse::<ExportFile>(args).map(drop),
        "StartShare" => parse::<StartShare>(args).map(drop),
        "Wait" => parse::<Wait>(args).map(drop),
        "Answer" => parse::<Answer>(args).map(drop),
        "AnswerDoctor" => parse::<AnswerDoctor>(args).map(drop),
        "IdRef" => parse::<IdRef>(args).map(drop),
        "Revoke" => parse::<Revoke>(args).map(drop),
        "ScanImage" => parse::<ScanImage>(args).map(drop),
        "ScanFrame" => parse::<ScanFrame>(args).map(drop),
        "WriteBack" => parse::<WriteBack>(args).map(drop),
        "ScanText" => parse::<ScanText>(args).map(drop),
        "SendNote" => parse::<SendNote>(args).map(drop),
        "OpenSmartLink" => parse::<OpenSmartLink>(args).map(drop),
        "Forward" => parse::<Forward>(args).map(drop),
        "RevokeDelegation" => parse::<RevokeDelegation>(args).map(drop),
        "ClinicRef" => parse::<ClinicRef>(args).map(drop),
        "PublishLink" => parse::<PublishLink>(args).map(drop),
        "LinkRef" => parse::<LinkRef>(args).map(drop),
        _ => Err(AppError::internal()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_listed_type_is_dispatched() {
        for (cmd, _) in COMMANDS {
            let e = validate_json(cmd, &json!({"__nope": 1})).err();
            // Either refused as bad arguments, or NoArgs refusing the extra field: never the
            // `internal` fallthrough of an unlisted type.
            assert_eq!(e.map(|e| e.code).as_deref(), Some("invalid_input"), "{cmd}");
        }
        assert_eq!(
            validate_json("rm_rf", &json!({}))
                .expect_err("unknown")
                .code,
            "invalid_input"
        );
    }

    #[test]
    fn open_smart_link_rules() {
        let ok = |v: serde_json::Value| validate_json("open_smart_link", &v);
        assert!(ok(json!({"text": "shlink:/abc"})).is_ok());
        assert!(ok(json!({"text": "", "passcode": "1234"})).is_ok());
        assert!(ok(json!({"text": "x", "passcode": null})).is_ok());
        let long = "1".repeat(MAX_SMART_TEXT_LEN + 1);
        assert_eq!(
            ok(json!({ "text": long })).expect_err("too long").code,
            "invalid_input"
        );
        for bad in ["", "a\nb", &"p".repeat(257)] {
            let e = ok(json!({"text": "x", "passcode": bad})).expect_err("bad passcode");
            assert_eq!(e.code, "invalid_input");
            assert!(!e.message.contains("pp"), "the passcode is not repeated");
        }
        let a = OpenSmartLink {
            text: "shlink:/secret".into(),
            passcode: Some("1234".into()),
        };
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("secret") && !dbg.contains("1234"));
    }

    #[test]
    fn scan_frame_and_image_rules() {
        let b64 = |n: usize| data_encoding::BASE64.encode(&vec![0u8; n]);
        assert!(
            validate_json(
                "scan_frame",
                &json!({"width": 4, "height": 3, "luma_base64": b64(12)})
            )
            .is_ok()
        );
        for bad in [
            json!({"width": 4, "height": 3, "luma_base64": b64(9)}),
            json!({"width": 0, "height": 3, "luma_base64": ""}),
            json!({"width": 4000, "height": 4000, "luma_base64": "AAAA"}),
            json!({"width": 4, "height": 3}),
        ] {
            assert_eq!(
                validate_json("scan_frame", &bad).expect_err("refused").code,
                "invalid_input",
                "{bad}"
            );
        }
        assert!(validate_json("scan_image", &json!({"image_base64": "iVBORw0KGgo="})).is_ok());
        assert_eq!(
            validate_json("scan_image", &json!({"image_base64": ""}))
                .expect_err("empty")
                .code,
            "invalid_input"
        );
    }

    #[test]
    fn start_share_rules() {
        let ok = json!({"categories": ["conditions", "allergies"], "expires_in_secs": 86400,
            "policy": "allowed", "depth": 1});
        assert!(validate_json("start_share", &ok).is_ok());
        for bad in [
            json!({"expires_in_secs": 86400, "policy": "never"}),
            json!({"categories": ["secrets"], "expires_in_secs": 86400, "policy": "never"}),
            json!({"categories": ["conditions"], "expires_in_secs": 10, "policy": "never"}),
            json!({"categories": ["conditions"], "expires_in_secs": 86400, "policy": "never",
                "depth": 2}),
            json!({"records": ["ZZ"], "expires_in_secs": 86400, "policy": "ask"}),
            json!({"categories": ["conditions"], "expires_in_secs": -1, "policy": "ask"}),
        ] {
            assert_eq!(
                validate_json("start_share", &bad)
                    .expect_err("refused")
                    .code,
                "invalid_input",
                "{bad}"
            );
        }
    }

    #[test]
    fn answer_doctor_rules() {
        let id = "ab".repeat(16);
        for ok in [
            json!({"id": id, "accept": true}),
            json!({"id": id, "accept": false}),
            json!({"id": id, "accept": true, "categories": ["allergies", "conditions"]}),
        ] {
            assert!(validate_json("answer_doctor", &ok).is_ok(), "{ok}");
        }
        for bad in [
            json!({"id": id, "accept": true, "categories": []}),
            json!({"id": id, "accept": true, "categories": ["allergies", "allergies"]}),
            json!({"id": id, "accept": true, "categories": ["secrets"]}),
            json!({"id": id, "accept": false, "categories": ["allergies"]}),
            json!({"id": "zz", "accept": true}),
        ] {
            assert_eq!(
                validate_json("answer_doctor", &bad)
                    .expect_err("refused")
                    .code,
                "invalid_input",
                "{bad}"
            );
        }
    }

    #[test]
    fn manual_records() {
        let ok = json!({"kind": "measurement", "text": "Body weight", "value": 71.5,
            "unit": "kg", "date": "2026-11-30"});
        assert!(validate_json("add_record", &ok).is_ok());
        for bad in [
            json!({"kind": "measurement", "text": "Body weight", "value": 71.5, "unit": "kg",
                "date": "30/11/2026"}),
            json!({"kind": "immunization", "text": "Flu", "date": "2026-13-01"}),
            json!({"kind": "condition", "text": ""}),
            json!({"kind": "surgery", "text": "x"}),
        ] {
            assert_eq!(
                validate_json("add_record", &bad).expect_err("refused").code,
                "invalid_input",
                "{bad}"
            );
        }
    }

    #[test]
    fn round_trips() {
        let s = StartShare {
            categories: vec![ShareCategory::Observations],
            records: vec!["ab".repeat(32)],
            expires_in_secs: 3600,
            policy: PolicyChoice::Ask,
            depth: 0,
        };
        let v = serde_json::to_value(&s).expect("serializes");
        assert_eq!(v["policy"], "ask");
        assert_eq!(v["categories"][0], "observations");
        let back: StartShare = serde_json::from_value(v).expect("parses");
        assert_eq!(back.records, s.records);
        let m = ManualRecord::Allergy {
            text: "Penicillin".into(),
            reaction: None,
        };
        let v = serde_json::to_value(&m).expect("serializes");
        assert_eq!(v["kind"], "allergy");
        assert!(serde_json::from_value::<ManualRecord>(v).is_ok());
    }
}
