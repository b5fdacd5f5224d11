//! Wake-ups of mailbox long-polls (docs/relay.md, the long-poll limits). Its own module, below both
//! the mailbox routes that wait and the storage backends that signal (PostgreSQL `LISTEN`),
//! so storage does not import the routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Wakes long-polls when a mailbox changes.
#[derive(Debug, Default)]
pub struct MailboxNotifier {
    waiters: Mutex<HashMap<[u8; 16], Arc<Notify>>>,
}

impl MailboxNotifier {
    /// The wake-up handle of mailbox `id` (made on first use).
    pub(crate) fn handle(&self, id: &[u8; 16]) -> Arc<Notify> {
        let mut m = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(*id).or_default())
    }

    /// Wakes every waiter of `id`.
    pub fn notify(&self, id: &[u8; 16]) {
        let m = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get(id) {
            n.notify_waiters();
        }
    }

    /// Drops entries nobody waits on.
    pub fn prune(&self) {
        let mut m = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, n| Arc::strong_count(n) > 1);
    }
}
