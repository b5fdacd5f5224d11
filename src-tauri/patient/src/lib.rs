//! The Carekey patient app: a thin Tauri 2 shell over [`carekey_app::session::PatientApp`].
//!
//! Every command does three things: deserialize its JSON argument into a [`carekey_app::ipc`]
//! type (unknown fields refused, serde's message never echoed), call one session method (which
//! validates the argument itself), and return JSON or [`carekey_app::AppError`] (`{code, message}`).
//! Background work (auto-lock, inbox long-poll) reports through [`TauriEvents`] as the
//! `carekey://event` event.
//!
//! Environment (and equivalent command-line flags) for tests and demos:
//! - `CAREKEY_DATA_DIR` / `--data-dir <dir>`: where the vault lives (default: the platform's
//!   app data directory).
//! - `CAREKEY_RELAY_URL` / `--relay-url <url>`: what onboarding's relay field starts with.

use std::sync::Arc;

use carekey_app::events::EventSink;
use carekey_app::session::{AppConfig, PatientApp};
use tauri::{Manager, State};

pub(crate) use carekey_shell::json;
pub use carekey_shell::{DEMO_PASSPHRASE_ENV, EVENT, Options, TauriEvents, parse};

pub mod commands;

include!("command_names.rs");

/// The shell's state: the session and the start-up options.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The patient session.
    pub app: PatientApp,
    /// Start-up options.
    pub options: Options,
}

pub(crate) type Cmd<'a> = State<'a, Shell>;

/// Runs the app (desktop `main` and the mobile entry point).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let options = Options::from_process();
    let result = tauri::Builder::default()
        .setup(move |app| {
            let dir = match &options.data_dir {
                Some(d) => d.clone(),
                None => app.path().app_data_dir()?,
            };
            std::fs::create_dir_all(&dir)?;
            let events: Arc<dyn EventSink> = Arc::new(TauriEvents(app.handle().clone()));
            let session = PatientApp::new(AppConfig::in_dir(&dir), events);
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
                let _handles = carekey_app::background::spawn_patient(bg);
            });
            app.manage(Shell {
                app: session,
                options: options.clone(),
            });
            Ok(())
        })
        .invoke_handler(commands::handler())
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("carekey-patient: {e}");
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
        conformance::config_is_strict(include_str!("../tauri.conf.json"), "org.carekey.patient");
    }
}
