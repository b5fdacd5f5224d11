//! FHIR resources turned into the rows each screen shows.
//!
//! One function per view, each a pure function of what the vault returns
//! ([`RecordSummary`](carekey_vault::RecordSummary) from `Vault::list`, or
//! [`Record`](carekey_vault::Record) from `Vault::get_record`) and each row `serde::Serialize`
//! with stable snake_case field names, so a Tauri command returns it as JSON unchanged:
//!
//! | view | function | row |
//! |---|---|---|
//! | timeline (both apps) | [`timeline_rows`] | [`TimelineRow`] with its [`Provenance`] |
//! | category tabs | [`category_counts`] | [`CategoryCount`] in [`CATEGORY_ORDER`] |
//! | doctor's chart | [`chart_summary`] | [`ChartSummary`]: [`ProblemRow`], [`MedicationRow`], [`AllergyRow`], [`VitalRow`] |
//! | lab results | [`lab_table`] | [`LabRow`] with [`ReferenceRange`], [`Interpretation`] |
//! | vitals charts | [`vitals_series`] | [`Series`] of [`SeriesLine`]s of [`Point`]s |
//! | documents | [`documents`] | [`DocumentRow`] with [`DocumentAttachment`]s of a [`DocKind`] |
//!
//! Parsing is defensive: any field of a resource may be missing or of the wrong JSON type, and
//! such a field is skipped rather than failing the row; no function here panics, and no row is
//! dropped because of an odd field (an unknown resource type appears generically on the
//! timeline). Every text in a row is bounded: titles to [`MAX_TITLE_CHARS`] characters, other
//! texts to [`MAX_TEXT_CHARS`], cut at a character boundary with a trailing `…`.
//!
//! Dates stay the FHIR text the resource carries (`date`) next to a sortable key (`sort_key`,
//! unix seconds in UTC, from [`date_sort_key`]); rows are sorted newest first with undated rows
//! last, and the sort is stable.

mod chart;
mod date;
mod documents;
mod json;
mod labs;
mod timeline;

pub use chart::{
    AllergyRow, ChartSummary, ComponentValue, MedicationRow, ProblemRow, VitalKind, VitalRow,
    chart_reads_record, chart_summary,
};
pub use date::date_sort_key;
pub use documents::{
    DocKind, DocumentAttachment, DocumentRow, FileSource, decode_base64, document, documents, file,
};
pub use json::{MAX_TEXT_CHARS, MAX_TITLE_CHARS, clip};
pub use labs::{
    Interpretation, LabComponent, LabRow, Point, ReferenceRange, Series, SeriesLine, lab_series,
    lab_table, vitals_series,
};
pub use timeline::{
    CATEGORY_ORDER, CategoryCount, Provenance, TimelineRow, category_counts, category_label,
    timeline_rows,
};
