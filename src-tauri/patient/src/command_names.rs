// Included by build.rs (the app manifest: one `allow-<command>` permission each) and by the
// library (tests compare it with the handler list and with `carekey_app::ipc::COMMANDS`).

/// Every command this shell registers.
pub const COMMAND_NAMES: &[&str] = &[
    "app_status",
    "create_vault",
    "restore_vault",
    "unlock",
    "lock",
    "set_auto_lock",
    "change_passphrase",
    "check_relay",
    "set_relay",
    "backup_now",
    "export_bundle",
    "timeline",
    "search",
    "get_record",
    "add_record",
    "import_file",
    "start_share",
    "new_qr",
    "wait_for_doctor",
    "answer_doctor",
    "shares",
    "access_log",
    "revoke",
    "check_inbox",
    "answer_note",
    "forward_requests",
    "answer_forward",
    "cancel",
];
