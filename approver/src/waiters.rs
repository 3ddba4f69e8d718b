//! Long-poll wake-ups: one watch channel per request that someone waits on, so a
//! decision wakes only the agents waiting for that request (no thundering herd with a
//! thousand pending requests).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;
use uuid::Uuid;

/// Registry of waiting long-polls.
#[derive(Debug, Default)]
pub struct Waiters {
    map: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
}

/// A registration; dropping it forgets the request when nobody else waits on it.
pub struct Waiter<'a> {
    owner: &'a Waiters,
    id: Uuid,
    /// Changes whenever the request may have been decided.
    pub rx: watch::Receiver<u64>,
}

impl Waiters {
    /// Registers interest in `id` (before checking its state, so no wake-up is lost).
    pub fn subscribe(&self, id: Uuid) -> Waiter<'_> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let rx = map
            .entry(id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Waiter {
            owner: self,
            id,
            rx,
        }
    }

    /// Wakes the waiters of `id`, if any.
    pub fn wake(&self, id: Uuid) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Number of requests being waited on.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.map.lock().unwrap_or_else(|p| p.into_inner());
        // Our receiver still counts until this drop finishes: 1 means "only us".
        if map.get(&self.id).is_some_and(|tx| tx.receiver_count() <= 1) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_only_that_requests_waiters_and_registrations_are_cleaned_up() {
        let w = Waiters::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut wa = w.subscribe(a);
        let mut wa2 = w.subscribe(a);
        let mut wb = w.subscribe(b);
        w.wake(a);
        assert!(wa.rx.has_changed().expect("open"));
        assert!(wa2.rx.has_changed().expect("open"));
        assert!(!wb.rx.has_changed().expect("open"));
        wa.rx.mark_unchanged();
        wa2.rx.mark_unchanged();
        wb.rx.mark_unchanged();
        drop(wa);
        assert_eq!(w.len(), 2, "a is still awaited by its second waiter");
        drop(wa2);
        drop(wb);
        assert!(w.is_empty());
        w.wake(a);
    }
}
