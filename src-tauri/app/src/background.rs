//! Background work of each app, run by the shell on its async runtime: the idle auto-lock
//! from a timer (not only on the next command), the inbox long-poll on the patient side, the
//! expiry purge on the doctor side. Each reports through the app's [`crate::events::EventSink`].
//!
//! The loops hold no lock between rounds; a round takes the same locks a command would, so
//! they never stall the UI longer than one command.

use std::time::Duration;

use crate::events::AppEvent;
use crate::session::{DoctorApp, PatientApp};

/// How often the timers run.
pub const TICK: Duration = Duration::from_secs(1);
/// How long one inbox long-poll waits (seconds).
pub const INBOX_WAIT_SECS: u64 = 25;

/// The patient app's background loops; returns the task handles (abort them on exit).
pub fn spawn_patient(app: PatientApp) -> Vec<tokio::task::JoinHandle<()>> {
    let locker = {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                app.tick().await;
            }
        })
    };
    let inbox = tokio::spawn(async move {
        loop {
            if !app.is_unlocked().await {
                tokio::time::sleep(TICK).await;
                continue;
            }
            match app.check_inbox(INBOX_WAIT_SECS).await {
                Ok(_) => {}
                Err(e) if e.code == "locked" => {}
                Err(e) => {
                    app.emit(AppEvent::Problem {
                        code: e.code,
                        message: e.message,
                    });
                    // An unreachable relay is retried, not hammered.
                    tokio::time::sleep(Duration::from_secs(15)).await;
                }
            }
            // No relationship yet: the poll returned at once.
            tokio::time::sleep(TICK).await;
        }
    });
    vec![locker, inbox]
}

/// The doctor app's background loop: auto-lock and expiry purge every [`TICK`].
pub fn spawn_doctor(app: DoctorApp) -> Vec<tokio::task::JoinHandle<()>> {
    vec![tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            app.tick().await;
        }
    })]
}
