//! Every command's argument validation: arbitrary JSON (and arbitrary bytes read as JSON) for
//! every command name never panics, and a refusal is always `invalid_input` with a message
//! that does not depend on (so cannot echo) a string given as the arguments.
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
        // No command takes a bare string: whatever string is given, the refusal is the same
        // words (so it cannot be echoing the input, even when the input is those words).
        if args.is_string() {
            let fixed = validate_json(command, &serde_json::json!("x"))
                .expect_err("a bare string is never valid arguments");
            assert_eq!(e.message, fixed.message, "message depends on the input");
        }
    }
});
