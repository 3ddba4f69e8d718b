//! CancelRequest routing: each session gets a shim-issued BackendKeyData; a cancel carrying
//! it reaches that session's real backend (and withdraws a held statement).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::protocol::postgres::BackendKeyData;

/// A registered session: its real backend key and a way to interrupt its hold.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// The real server's key for the session.
    pub upstream: BackendKeyData,
    /// Woken when the client asks to cancel.
    pub notify: Arc<Notify>,
}

/// Shim-issued keys → sessions.
#[derive(Debug)]
pub struct CancelRegistry {
    next_pid: AtomicI32,
    map: Mutex<HashMap<(i32, i32), CancelTarget>>,
}

impl Default for CancelRegistry {
    fn default() -> Self {
        Self {
            next_pid: AtomicI32::new(1),
            map: Mutex::new(HashMap::new()),
        }
    }
}

fn random_key() -> i32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), CancelTarget>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a session whose backend key is `upstream`; returns the key to give the
    /// client and the notifier the session listens on.
    pub fn register(&self, upstream: BackendKeyData) -> (BackendKeyData, Arc<Notify>) {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let ours = BackendKeyData {
            pid,
            key: random_key(),
        };
        let notify = Arc::new(Notify::new());
        self.lock().insert(
            (ours.pid, ours.key),
            CancelTarget {
                upstream,
                notify: Arc::clone(&notify),
            },
        );
        (ours, notify)
    }

    /// Forgets a session.
    pub fn remove(&self, ours: BackendKeyData) {
        self.lock().remove(&(ours.pid, ours.key));
    }

    /// The session a cancel is for; `None` for unknown or forged keys.
    pub fn lookup(&self, pid: i32, key: i32) -> Option<CancelTarget> {
        self.lock().get(&(pid, key)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_keys_map_to_the_right_backend_and_forged_keys_do_not() {
        let reg = CancelRegistry::default();
        let a = BackendKeyData { pid: 100, key: 1 };
        let b = BackendKeyData { pid: 200, key: 2 };
        let (ka, _) = reg.register(a);
        let (kb, _) = reg.register(b);
        assert_ne!(ka.pid, kb.pid);
        assert_eq!(reg.lookup(ka.pid, ka.key).map(|t| t.upstream), Some(a));
        assert_eq!(reg.lookup(kb.pid, kb.key).map(|t| t.upstream), Some(b));
        assert!(reg.lookup(ka.pid, ka.key.wrapping_add(1)).is_none());
        reg.remove(ka);
        assert!(reg.lookup(ka.pid, ka.key).is_none());
    }
}
