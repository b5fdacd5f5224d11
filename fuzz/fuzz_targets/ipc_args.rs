//! Every command's argument validation: arbitrary JSON (and arbitrary bytes read as JSON) for
//! every command name never panics, and a refusal is always `invalid_input` with a message
//! that does not echo the input.
#![no_main]

use carekey_app::ipc::{COMMANDS, validate_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(args) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    let (command, _) = COMMANDS[usize::from(which) % COMMANDS.len()];
    if let Err(e) = validate_json(command, &args) {
        assert_eq!(e.code, "invalid_input", "{command}");
        if let Some(s) = args.as_str().filter(|s| s.len() >= 12) {
            assert!(!e.message.contains(s), "message echoes the input");
        }
    }
});
