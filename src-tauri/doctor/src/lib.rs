//! The Carekey doctor app: a thin Tauri 2 shell over [`carekey_app::session::DoctorApp`].
//!
//! Every command does three things: deserialize its JSON argument into a [`carekey_app::ipc`]
//! type (unknown fields refused, serde's message never echoed), call one session method (which
//! validates the argument itself), and return JSON or [`carekey_app::AppError`] (`{code, message}`).
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

use std::sync::Arc;

use carekey_app::events::EventSink;
use carekey_app::session::{AppConfig, DoctorApp};
use tauri::{Manager, State};

pub(crate) use carekey_shell::json;
pub use carekey_shell::{DEMO_PASSPHRASE_ENV, EVENT, Options, TauriEvents, parse};

pub mod camera;
pub mod commands;

include!("command_names.rs");

/// The shell's state: the session and the start-up options.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The doctor session.
    pub app: DoctorApp,
    /// Start-up options.
    pub options: Options,
}

pub(crate) type Cmd<'a> = State<'a, Shell>;

/// Runs the app (desktop `main` and the mobile entry point).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let options = Options::from_process();
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
    use carekey_shell::conformance;

    #[test]
    fn the_handler_registers_exactly_the_listed_app_commands() {
        conformance::handler_matches(include_str!("commands.rs"), COMMAND_NAMES);
    }

    #[test]
    fn the_capability_grants_exactly_these_commands() {
        conformance::capability_grants_exactly(
            include_str!("../capabilities/main.json"),
            COMMAND_NAMES,
        );
    }

    #[test]
    fn the_config_is_strict() {
        conformance::config_is_strict(include_str!("../tauri.conf.json"), "org.carekey.doctor");
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
}
