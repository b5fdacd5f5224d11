//! The Carekey doctor app: a thin Tauri 2 shell over [`carekey_app::session::DoctorApp`].
//!
//! Every command does three things: deserialize its JSON argument into a [`carekey_app::ipc`]
//! type (unknown fields refused, serde's message never echoed), call one session method (which
//! validates the argument itself), and return JSON or [`AppError`] (`{code, message}`).
//! Background work (auto-lock, the expiry purge) reports through [`TauriEvents`] as the
//! `carekey://event` event.
//!
//! Environment (and equivalent command-line flags) for tests and demos:
//! - `CAREKEY_DATA_DIR` / `--data-dir <dir>`: where the vault lives (default: the platform's
//!   app data directory).
//! - `CAREKEY_RELAY_URL` / `--relay-url <url>`: what onboarding's relay field starts with.
//!
//! Scanning: on Android and iOS the UI calls `tauri-plugin-barcode-scanner` (registered below
//! under `#[cfg(mobile)]`, granted by `capabilities/mobile.json` on those platforms only) and
//! hands the text to `scan_text`; on every platform "open QR image" (`scan_image`, decoded in
//! Rust) and "paste code" (`scan_text`) work.

use std::path::PathBuf;
use std::sync::Arc;

use carekey_app::AppError;
use carekey_app::events::{AppEvent, EventSink};
use carekey_app::session::{AppConfig, DoctorApp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tauri::{Emitter, Manager, State};

pub mod camera;
pub mod commands;

include!("command_names.rs");

/// Environment variable the demo sets to open its throwaway vault unlocked (see `run`).
pub const DEMO_PASSPHRASE_ENV: &str = "CAREKEY_DEMO_PASSPHRASE";

/// The event name every [`AppEvent`] is emitted under.
pub const EVENT: &str = "carekey://event";

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
}

/// The shell's state: the session and the start-up options.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The doctor session.
    pub app: DoctorApp,
    /// Start-up options.
    pub options: Options,
}

/// Parses a command's JSON argument into its IPC type; never echoes serde's message (it can
/// quote the input, e.g. a passphrase).
pub fn parse<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, AppError> {
    serde_json::from_value(args)
        .map_err(|_| AppError::invalid_input("arguments: missing, extra or wrongly typed fields"))
}

/// Serializes an answer (kept in one place so a failure reads as `internal`).
pub(crate) fn json<T: Serialize>(v: T) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(v).map_err(|_| AppError::internal())
}

pub(crate) type Cmd<'a> = State<'a, Shell>;

/// Runs the app (desktop `main` and the mobile entry point).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let options = Options::from(std::env::args().skip(1), |k| std::env::var(k).ok());
    let builder = tauri::Builder::default();
    #[cfg(mobile)]
    let builder = builder.plugin(tauri_plugin_barcode_scanner::init());
    let result = builder
        .setup(move |app| {
            let dir = match &options.data_dir {
                Some(d) => d.clone(),
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&dir)?;
            let events: Arc<dyn EventSink> = Arc::new(TauriEvents(app.handle().clone()));
            let session = DoctorApp::new(AppConfig::in_dir(&dir), events);
            // The README's demo only (scripts/demo): unlock its throwaway vault at start so
            // both windows open on the demo patient. Never set this for a real vault: the
            // environment of a process is readable by the same user.
            if let Ok(pass) = std::env::var(DEMO_PASSPHRASE_ENV)
                && session.vault_exists()
            {
                let unlocked = tauri::async_runtime::block_on(
                    session.unlock(carekey_app::ipc::Unlock { passphrase: pass }),
                );
                if let Err(e) = unlocked {
                    eprintln!("{DEMO_PASSPHRASE_ENV}: {}", e.message);
                }
            }
            let bg = session.clone();
            tauri::async_runtime::spawn(async move {
                // The loops run for the life of the process.
                let _handles = carekey_app::background::spawn_doctor(bg);
            });
            if let Some(w) = app.get_webview_window("main") {
                camera::enable(&w)?;
            }
            app.manage(Shell {
                app: session,
                options: options.clone(),
            });
            Ok(())
        })
        .invoke_handler(commands::handler())
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("carekey-doctor: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_command_is_an_app_layer_command() {
        for c in COMMAND_NAMES {
            assert!(
                carekey_app::ipc::COMMANDS.iter().any(|(n, _)| n == c),
                "{c} is not in carekey_app::ipc::COMMANDS"
            );
        }
        // The handler registers exactly the listed commands (the app manifest and the
        // capability are generated from the list).
        let src = include_str!("commands.rs");
        let start = src.find("generate_handler![").expect("handler") + 18;
        let end = start + src[start..].find(']').expect("end");
        let mut handler: Vec<&str> = src[start..end]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut listed = COMMAND_NAMES.to_vec();
        handler.sort_unstable();
        listed.sort_unstable();
        assert_eq!(handler, listed);
    }

    #[test]
    fn the_capability_grants_exactly_these_commands() {
        let cap: serde_json::Value =
            serde_json::from_str(include_str!("../capabilities/main.json")).expect("json");
        let perms: Vec<&str> = cap["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert!(!perms.iter().any(|p| p.starts_with("core:default")));
        for c in COMMAND_NAMES {
            let p = format!("allow-{}", c.replace('_', "-"));
            assert!(perms.contains(&p.as_str()), "{p} missing");
        }
        let others: Vec<&&str> = perms.iter().filter(|p| !p.starts_with("allow-")).collect();
        assert_eq!(
            others,
            [&"core:event:allow-listen", &"core:event:allow-unlisten"]
        );
        assert_eq!(perms.len(), COMMAND_NAMES.len() + 2);
    }

    #[test]
    fn the_scanner_is_granted_on_mobile_only() {
        let cap: serde_json::Value =
            serde_json::from_str(include_str!("../capabilities/mobile.json")).expect("json");
        assert_eq!(cap["platforms"], serde_json::json!(["android", "iOS"]));
        let perms: Vec<&str> = cap["permissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(
            perms,
            ["barcode-scanner:allow-scan", "barcode-scanner:allow-cancel"]
        );
        let desktop: serde_json::Value =
            serde_json::from_str(include_str!("../capabilities/main.json")).expect("json");
        assert!(!desktop.to_string().contains("barcode"));
    }

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

    #[test]
    fn the_config_is_strict() {
        let conf: serde_json::Value =
            serde_json::from_str(include_str!("../tauri.conf.json")).expect("json");
        assert_eq!(conf["identifier"], "org.carekey.doctor");
        assert!(conf["build"].get("devUrl").is_none());
        let sec = &conf["app"]["security"];
        assert_eq!(sec["freezePrototype"], true);
        let csp = &sec["csp"];
        assert_eq!(csp["script-src"], "'self'");
        assert_eq!(csp["object-src"], "'none'");
        assert_eq!(csp["connect-src"], "ipc: http://ipc.localhost");
        let all = csp.to_string();
        assert!(!all.contains("unsafe-inline") && !all.contains("unsafe-eval"));
        let w = &conf["app"]["windows"][0];
        assert_eq!(
            (w["width"].as_u64(), w["height"].as_u64()),
            (Some(390), Some(844))
        );
    }
}
