//! The timeline (every record, newest first) and the per-category counts of its tabs.

use std::cmp::Ordering;

use carekey_vault::{Origin, RecordGroup, RecordSummary, SignatureStatus};
use serde::Serialize;

use super::date::date_sort_key;
use super::json::{self, MAX_TEXT_CHARS, clip};

/// Where a record came from and whether its signature holds, as the timeline shows it.
///
/// [`Provenance::label`] gives the sentence shown next to the record; a [`TimelineRow`] sends
/// that sentence and [`Provenance::kind`], not the names inside (see
/// [`TimelineRow::provenance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// A signature that verifies (self-entered, a doctor's note): "signed by `<signer>`, valid".
    SignedValid {
        /// Who signed (card name; "this device" for self-entered records).
        signer: String,
    },
    /// Imported from a file, no signature: "imported, unsigned".
    ImportedUnsigned {
        /// The import's label (file name, "Synthea export"…).
        source: String,
    },
    /// A signature is present and does not verify: "signature invalid". Takes precedence over
    /// every other provenance.
    SignatureInvalid,
    /// Doctor app: received through a patient's share: "shared by `<share>`" (and the signer
    /// when the record is signed).
    Shared {
        /// The share's label (the patient's card name).
        share: String,
        /// Unix seconds after which the record is purged.
        expires_at: u64,
        /// Who signed the record, when it carries a valid signature.
        signer: Option<String>,
    },
    /// Neither imported nor signed (should not occur; shown rather than hidden): "unsigned".
    Unsigned,
}

impl Provenance {
    /// The provenance of a stored record (its origin and its signature status).
    pub fn of(summary: &RecordSummary) -> Self {
        let signer = match &summary.signature {
            SignatureStatus::Invalid => return Provenance::SignatureInvalid,
            SignatureStatus::Valid { signer, .. } => Some(clip(signer, MAX_TEXT_CHARS)),
            SignatureStatus::Unsigned => None,
        };
        match (&summary.origin, signer) {
            (
                Origin::Shared {
                    label, expires_at, ..
                },
                signer,
            ) => Provenance::Shared {
                share: clip(label, MAX_TEXT_CHARS),
                expires_at: *expires_at,
                signer,
            },
            (_, Some(signer)) => Provenance::SignedValid { signer },
            (Origin::Imported { source }, None) => Provenance::ImportedUnsigned {
                source: clip(source, MAX_TEXT_CHARS),
            },
            (Origin::SelfEntered | Origin::Received, None) => Provenance::Unsigned,
        }
    }

    /// The variant's name as the UI tests it (`signed_valid`, `imported_unsigned`,
    /// `signature_invalid`, `shared`, `unsigned`): the UI marks `signature_invalid` in red.
    pub fn kind(&self) -> &'static str {
        match self {
            Provenance::SignedValid { .. } => "signed_valid",
            Provenance::ImportedUnsigned { .. } => "imported_unsigned",
            Provenance::SignatureInvalid => "signature_invalid",
            Provenance::Shared { .. } => "shared",
            Provenance::Unsigned => "unsigned",
        }
    }

    /// The sentence shown next to the record ("signed by Dr. Ada Quinn, valid", "imported,
    /// unsigned", "signature invalid", "shared by Ann Lee"…).
    pub fn label(&self) -> String {
        match self {
            Provenance::SignedValid { signer } => format!("signed by {signer}, valid"),
            Provenance::ImportedUnsigned { .. } => "imported, unsigned".to_owned(),
            Provenance::SignatureInvalid => "signature invalid".to_owned(),
            Provenance::Shared {
                share,
                signer: Some(signer),
                ..
            } => format!("shared by {share}; signed by {signer}, valid"),
            Provenance::Shared {
                share,
                signer: None,
                ..
            } => format!("shared by {share}, unsigned"),
            Provenance::Unsigned => "unsigned".to_owned(),
        }
    }
}

/// One line of the timeline: any record, of any resource type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    /// The record id (64 hex digits), to open it with `get_record`.
    pub id: String,
    /// FHIR resource type (unknown types appear as they are, under [`RecordGroup::Other`]).
    pub fhir_type: String,
    /// UI category (snake_case string in JSON: `condition`, `vitals`, `other`…).
    pub category: RecordGroup,
    /// Title (at most [`MAX_TITLE_CHARS`](super::MAX_TITLE_CHARS) characters; the resource
    /// type when the record has none).
    pub title: String,
    /// The FHIR date text as the resource carries it.
    pub date: Option<String>,
    /// Unix seconds (UTC) of `date`, for sorting; `None` when undated or unparsable. Not sent:
    /// the rows arrive sorted, and every byte of a row is paid 3,000 times over the IPC.
    #[serde(skip)]
    pub sort_key: Option<i64>,
    /// Clinical status when present (Condition, AllergyIntolerance), else the resource's
    /// `status`.
    pub status: Option<String>,
    /// The record's value when it has one (a result: "7.5 %").
    pub detail: Option<String>,
    /// Author as the resource names it.
    pub author: Option<String>,
    /// Where the record came from and whether its signature holds. Sent as its
    /// [`kind`](Provenance::kind) alone: the signer's and the share's names are in
    /// `provenance_label`, the import's file name and the expiry in the record's detail.
    /// Repeating them on every row, with `sort_key`, was 13 % of the timeline's bytes.
    #[serde(serialize_with = "provenance_kind")]
    pub provenance: Provenance,
    /// [`Provenance::label`] of `provenance`, ready to show.
    pub provenance_label: String,
    /// Number of attachments.
    pub attachments: usize,
}

fn provenance_kind<S: serde::Serializer>(p: &Provenance, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.kind())
}

fn key_value<'a>(s: &'a RecordSummary, key: &str) -> Option<&'a str> {
    s.key_values
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

impl TimelineRow {
    /// The row of one record.
    pub fn of(s: &RecordSummary) -> Self {
        let provenance = Provenance::of(s);
        let date = s.date.as_deref().and_then(json::text);
        TimelineRow {
            id: s.id.to_string(),
            fhir_type: clip(&s.fhir_type, MAX_TEXT_CHARS),
            category: s.category,
            title: json::title(&s.title, &s.fhir_type),
            sort_key: date.as_deref().and_then(date_sort_key),
            date,
            status: key_value(s, "clinical status")
                .or_else(|| key_value(s, "status"))
                .and_then(json::text),
            detail: key_value(s, "value").and_then(json::text),
            author: s.author.as_deref().and_then(json::text),
            provenance_label: provenance.label(),
            provenance,
            attachments: s.attachments.len(),
        }
    }
}

/// Newest first, undated last (for a stable sort).
pub(crate) fn newest_first(a: Option<i64>, b: Option<i64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The timeline: one row per record (none dropped, whatever its type), newest first, undated
/// records last; records of the same date keep their input order.
pub fn timeline_rows<'a>(records: impl IntoIterator<Item = &'a RecordSummary>) -> Vec<TimelineRow> {
    let mut rows: Vec<TimelineRow> = records.into_iter().map(TimelineRow::of).collect();
    rows.sort_by(|a, b| newest_first(a.sort_key, b.sort_key));
    rows
}

/// The order of the category tabs (every [`RecordGroup`], each once).
pub const CATEGORY_ORDER: [RecordGroup; 12] = [
    RecordGroup::Condition,
    RecordGroup::Allergy,
    RecordGroup::Medication,
    RecordGroup::Immunization,
    RecordGroup::Observation,
    RecordGroup::Vitals,
    RecordGroup::Procedure,
    RecordGroup::Encounter,
    RecordGroup::Document,
    RecordGroup::Patient,
    RecordGroup::Directory,
    RecordGroup::Other,
];

/// The tab title of a category ("Problems", "Lab results"…).
pub fn category_label(c: RecordGroup) -> &'static str {
    match c {
        RecordGroup::Patient => "Personal details",
        RecordGroup::Condition => "Problems",
        RecordGroup::Allergy => "Allergies",
        RecordGroup::Medication => "Medications",
        RecordGroup::Immunization => "Immunizations",
        RecordGroup::Observation => "Lab results",
        RecordGroup::Vitals => "Vital signs",
        RecordGroup::Procedure => "Procedures",
        RecordGroup::Encounter => "Visits",
        RecordGroup::Document => "Documents",
        RecordGroup::Directory => "Care team and places",
        RecordGroup::Other => "Other records",
    }
}

/// How many records a category tab holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryCount {
    /// The category (snake_case string in JSON).
    pub category: RecordGroup,
    /// Its tab title ([`category_label`]).
    pub label: &'static str,
    /// Records in it.
    pub count: usize,
}

/// Records per category, one entry for every category (zero counts included) in
/// [`CATEGORY_ORDER`].
pub fn category_counts(records: &[RecordSummary]) -> Vec<CategoryCount> {
    let mut counts = [0usize; CATEGORY_ORDER.len()];
    for r in records {
        if let Some(i) = CATEGORY_ORDER.iter().position(|c| *c == r.category)
            && let Some(n) = counts.get_mut(i)
        {
            *n += 1;
        }
    }
    CATEGORY_ORDER
        .iter()
        .zip(counts)
        .map(|(c, count)| CategoryCount {
            category: *c,
            label: category_label(*c),
            count,
        })
        .collect()
}
