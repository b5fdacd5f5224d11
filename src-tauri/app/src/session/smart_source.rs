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

/// Error code of a write-back to a SMART import: it came through a SMART Health Link or Card,
/// which has no Carekey mailbox, so nothing can be sent back (docs/shl.md "In the doctor app").
pub const NO_WRITE_BACK_CODE: &str = "no_write_back";

/// The words the doctor sees for it (the doctor UI shows the same sentence by the chart).
pub const NO_WRITE_BACK: &str =
    "this patient's records came from a SMART Health Link; there is no way to send back";

/// The refusal of a write-back to a SMART import.
pub(super) fn no_write_back() -> AppError {
    AppError::new(NO_WRITE_BACK_CODE, NO_WRITE_BACK)
}
