//! What background work and long operations report to the shell.
//!
//! The shells implement [`EventSink`] with Tauri events (or a channel per operation); tests
//! implement it with a vector. Events are small and carry no patient datum: counts, ids the
//! app handed out, stages. Progress is throttled to at most [`PROGRESS_PER_SEC`] reports a
//! second per operation, plus the final one, so a 3,000-record import does not flood the IPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carekey_client::progress::{Cancel, Progress, ProgressSink, Stage};
use serde::Serialize;

use crate::error::{AppError, Result};

/// Most progress reports per second and operation.
pub const PROGRESS_PER_SEC: u32 = 20;

/// One event for the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AppEvent {
    /// The vault locked (the user asked, or it was idle): the UI shows the unlock screen.
    Locked,
    /// Progress of a long operation the UI started.
    Progress {
        /// The operation id the command returned (hex).
        op: String,
        /// `sealing`, `uploading`, `downloading`, `verifying`, `importing`...
        stage: String,
        /// Units done.
        done: u64,
        /// Units in all (0 when unknown).
        total: u64,
    },
    /// Notes or forward requests arrived and are kept in the vault until answered.
    InboxChanged {
        /// Notes waiting.
        notes: usize,
        /// Forward requests waiting.
        forward_requests: usize,
    },
    /// A patient's share ended on the doctor's device (revoked or expired) and its records
    /// were purged from this device.
    AccessEnded {
        /// The patient link id (hex).
        patient: String,
        /// Records removed from this device.
        purged: usize,
    },
    /// Background work failed in a way the user should see (relay unreachable...).
    Problem {
        /// The error's stable code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// Where events go.
pub trait EventSink: Send + Sync {
    /// Delivers one event; must not block for long.
    fn emit(&self, event: AppEvent);
}

/// Discards events (headless use where nobody listens).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _: AppEvent) {}
}

/// Collects events (tests).
#[derive(Debug, Default)]
pub struct Collect(pub Mutex<Vec<AppEvent>>);

impl EventSink for Collect {
    fn emit(&self, event: AppEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}

impl Collect {
    /// The events so far.
    pub fn taken(&self) -> Vec<AppEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn stage_name(s: Stage) -> String {
    // The client's stages are a closed enum; their Debug names are stable identifiers.
    format!("{s:?}").to_ascii_lowercase()
}

/// A progress sink for one operation that forwards at most [`PROGRESS_PER_SEC`] reports a
/// second (and always the last one, `done == total`) to an [`EventSink`].
pub struct Throttled {
    op: String,
    sink: Arc<dyn EventSink>,
    last: Mutex<Option<Instant>>,
    every: Duration,
}

impl std::fmt::Debug for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttled").field("op", &self.op).finish()
    }
}

impl Throttled {
    /// Progress of operation `op` (hex id) to `sink`.
    pub fn new(op: String, sink: Arc<dyn EventSink>) -> Self {
        Self {
            op,
            sink,
            last: Mutex::new(None),
            every: Duration::from_secs(1) / PROGRESS_PER_SEC,
        }
    }

    /// Reports `done` of `total` in `stage` (throttled).
    pub fn report_raw(&self, stage: &str, done: u64, total: u64) {
        let now = Instant::now();
        let finished = total > 0 && done >= total;
        let due = match self.last.lock() {
            Ok(mut last) => {
                let due = finished || last.is_none_or(|t| now.duration_since(t) >= self.every);
                if due {
                    *last = Some(now);
                }
                due
            }
            Err(_) => finished,
        };
        if due {
            self.sink.emit(AppEvent::Progress {
                op: self.op.clone(),
                stage: stage.to_owned(),
                done,
                total,
            });
        }
    }
}

impl ProgressSink for Throttled {
    fn report(&self, p: Progress) {
        self.report_raw(&stage_name(p.stage), p.done, p.total);
    }
}

/// The long operations in flight, by the id the UI cancels them with.
#[derive(Debug, Default, Clone)]
pub struct Operations(Arc<Mutex<HashMap<String, Cancel>>>);

/// An operation registered in [`Operations`]; removed again when dropped.
#[derive(Debug)]
pub struct Operation {
    /// Its id (32 hex).
    pub id: String,
    /// Its cancellation flag.
    pub cancel: Cancel,
    ops: Operations,
}

impl Drop for Operation {
    fn drop(&mut self) {
        if let Ok(mut m) = self.ops.0.lock() {
            m.remove(&self.id);
        }
    }
}

impl Operations {
    /// Registers a new operation with a fresh random id.
    pub fn start(&self) -> Operation {
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let id = data_encoding::HEXLOWER.encode(&id);
        let cancel = Cancel::new();
        if let Ok(mut m) = self.0.lock() {
            m.insert(id.clone(), cancel.clone());
        }
        Operation {
            id,
            cancel,
            ops: self.clone(),
        }
    }

    /// Cancels operation `id`; `not_found` when it already ended.
    pub fn cancel(&self, id: &str) -> Result<()> {
        let m = self.0.lock().map_err(|_| AppError::internal())?;
        match m.get(id) {
            Some(c) => {
                c.cancel();
                Ok(())
            }
            None => Err(AppError::not_found("the operation")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_throttled_but_the_end_always_arrives() {
        let sink = Arc::new(Collect::default());
        let t = Throttled::new("op".into(), sink.clone());
        for i in 0..10_000u64 {
            t.report_raw("importing", i, 10_000);
        }
        t.report_raw("importing", 10_000, 10_000);
        let got = sink.taken();
        // The loop runs in well under a second: the first report, perhaps one more per 50 ms,
        // and the final one.
        assert!(got.len() < 100, "{} reports", got.len());
        assert_eq!(
            got.last(),
            Some(&AppEvent::Progress {
                op: "op".into(),
                stage: "importing".into(),
                done: 10_000,
                total: 10_000
            })
        );
    }

    #[test]
    fn operations_cancel_and_unregister() {
        let ops = Operations::default();
        let op = ops.start();
        let id = op.id.clone();
        ops.cancel(&id).expect("running");
        assert!(op.cancel.check().is_err());
        drop(op);
        assert_eq!(ops.cancel(&id).expect_err("gone").code, "not_found");
    }
}
