//! Progress reporting and cancellation for long work (uploads, downloads, re-keys).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{ClientError, Result};

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is happening.
    pub stage: Stage,
    /// Units done (bytes for transfers, items otherwise).
    pub done: u64,
    /// Units in total (0 when unknown).
    pub total: u64,
}

/// Stages of the flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Sealing records.
    Sealing,
    /// Uploading blobs.
    Uploading,
    /// Downloading and verifying blobs.
    Downloading,
    /// Re-sealing under a new epoch.
    Rekeying,
}

/// A progress sink; the apps forward it to the UI as events.
pub trait ProgressSink: Send + Sync {
    /// Called after each unit of work.
    fn report(&self, p: Progress);
}

impl<F: Fn(Progress) + Send + Sync> ProgressSink for F {
    fn report(&self, p: Progress) {
        self(p)
    }
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: Progress) {}
}

/// Cancels long work between units; clone it to the UI's cancel button.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, not-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// The flag itself, for code that polls an `AtomicBool` (the vault's import control).
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
    /// Errors with [`ClientError::Cancelled`] if cancellation was requested.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            Err(ClientError::Cancelled)
        } else {
            Ok(())
        }
    }
}
