// Included by build.rs (the app manifest: one `allow-<command>` permission each) and by the
// library (tests compare it with the handler list and with `carekey_app::ipc::COMMANDS`).

/// Every command this shell registers.
pub const COMMAND_NAMES: &[&str] = &[
    "app_status",
    "create_vault",
    "unlock",
    "lock",
    "profile",
    "scan_text",
    "scan_image",
    "scan_frame",
    "open_smart_link",
    "wait_for_grant",
    "refresh_patient",
    "patients",
    "chart",
    "get_chart_record",
    "open_attachment",
    "write_back",
    "sent_notes",
    "colleague_invite",
    "set_enrollment_key",
    "wait_for_introduction",
    "read_invite",
    "forward",
    "purge_expired",
    "trusted_clinics",
    "trust_clinic",
    "untrust_clinic",
    "import_attestation",
    "cancel",
];
