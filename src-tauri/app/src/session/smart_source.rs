//! Which entries of the doctor's vault came through SMART Health Links or Cards (docs/shl.md
//! "In the doctor app"): a leaf both the doctor session and the SMART opening use.

use crate::error::AppError;

/// The prefix of a SMART import's `share` and of its records' import source label.
pub const SMART_SOURCE_PREFIX: &str = "smart:";

/// Whether a `share` text names a SMART import.
pub(super) fn is_smart_source(share: &str) -> bool {
    share.starts_with(SMART_SOURCE_PREFIX)
}

/// The error `scan_text` answers for a SMART payload (code `smart_link`).
pub(super) fn scanned_error(kind: &str) -> AppError {
    let what = if kind == "smart_health_card" {
        "a SMART Health Card"
    } else {
        "a SMART Health Link"
    };
    AppError::new(
        "smart_link",
        format!("this code is {what}: open it with open_smart_link"),
    )
}
