//! What both Carekey Tauri shells (`carekey-patient`, `carekey-doctor`) share, so each shell's
//! `lib.rs` holds only its own session, plugins and window setup:
//! - [`TauriEvents`]: the [`EventSink`] that emits every [`AppEvent`] as [`EVENT`];
//! - [`Options`]: `--data-dir` / `--relay-url` and their `CAREKEY_*` variables;
//! - [`parse`] / [`json`]: a command's argument in, its answer out, never echoing the input;
//! - [`conformance`]: the checks each shell's tests run on its handler list, capability and
//!   `tauri.conf.json` (docs/architecture.md "Apps").

use std::path::PathBuf;

use carekey_app::AppError;
use carekey_app::events::{AppEvent, EventSink};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tauri::Emitter;

pub mod conformance;

/// The event name every [`AppEvent`] is emitted under.
pub const EVENT: &str = "carekey://event";

/// Environment variable the demo sets to open its throwaway vault unlocked (scripts/demo).
/// Never set it for a real vault: a process's environment is readable by the same user.
pub const DEMO_PASSPHRASE_ENV: &str = "CAREKEY_DEMO_PASSPHRASE";

/// An [`EventSink`] that emits each event to the web view.
pub struct TauriEvents(pub tauri::AppHandle);

impl std::fmt::Debug for TauriEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TauriEvents")
    }
}

impl EventSink for TauriEvents {
    fn emit(&self, event: AppEvent) {
        // A closed window cannot receive it; nothing else to do.
        let _ = self.0.emit(EVENT, event);
    }
}

/// Start-up options read from the environment and the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Vault directory override.
    pub data_dir: Option<PathBuf>,
    /// Default relay URL for onboarding.
    pub relay_url: Option<String>,
}

impl Options {
    /// From `args` (without the program name) and the `CAREKEY_*` variables; flags win.
    pub fn from(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut o = Options {
            data_dir: env("CAREKEY_DATA_DIR")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            relay_url: env("CAREKEY_RELAY_URL").filter(|s| !s.is_empty()),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
                None => (a.clone(), None),
            };
            match flag.as_str() {
                "--data-dir" => {
                    if let Some(v) = inline.or_else(|| it.next()) {
                        o.data_dir = Some(PathBuf::from(v));
                    }
                }
                "--relay-url" => {
                    if let Some(v) = inline.or_else(|| it.next()) {
                        o.relay_url = Some(v);
                    }
                }
                _ => {}
            }
        }
        o
    }

    /// From this process's arguments and environment.
    pub fn from_process() -> Self {
        Self::from(std::env::args().skip(1), |k| std::env::var(k).ok())
    }
}

/// Parses a command's JSON argument into its IPC type; never echoes serde's message (it can
/// quote the input, e.g. a passphrase).
pub fn parse<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, AppError> {
    serde_json::from_value(args)
        .map_err(|_| AppError::invalid_input("arguments: missing, extra or wrongly typed fields"))
}

/// Serializes an answer (kept in one place so a failure reads as `internal`).
pub fn json<T: Serialize>(v: T) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(v).map_err(|_| AppError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_env_and_flags() {
        let env = |k: &str| match k {
            "CAREKEY_DATA_DIR" => Some("/env/dir".to_owned()),
            "CAREKEY_RELAY_URL" => Some("http://127.0.0.1:1".to_owned()),
            _ => None,
        };
        let o = Options::from(Vec::<String>::new(), env);
        assert_eq!(o.data_dir, Some(PathBuf::from("/env/dir")));
        assert_eq!(o.relay_url.as_deref(), Some("http://127.0.0.1:1"));
        let o = Options::from(
            ["--data-dir", "/flag", "--relay-url=http://x"].map(String::from),
            env,
        );
        assert_eq!(o.data_dir, Some(PathBuf::from("/flag")));
        assert_eq!(o.relay_url.as_deref(), Some("http://x"));
        assert_eq!(
            Options::from(Vec::<String>::new(), |_| None),
            Options::default()
        );
    }

    #[test]
    fn parse_refuses_without_echoing_the_input() {
        let e = parse::<carekey_app::ipc::Unlock>(
            serde_json::json!({"passphrase": "hunter2-secret", "x": 1}),
        )
        .expect_err("unknown field");
        assert_eq!(e.code, "invalid_input");
        assert!(!e.message.contains("hunter2"));
        let e = parse::<carekey_app::ipc::Unlock>(serde_json::json!({"passphrase": 5}))
            .expect_err("wrong type");
        assert!(!e.message.contains('5'));
    }
}
