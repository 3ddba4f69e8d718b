//! Harness for dbward's end-to-end tests: throwaway PostgreSQL clusters and MariaDB
//! servers, and the agent under test, all started by the tests themselves (own data dir,
//! own port, loopback) and stopped when dropped.
//!
//! Tests that need the kernel panic with the agent's own error (which names the missing
//! capability or feature) instead of skipping.

pub mod agent;
pub mod mariadb;
pub mod metrics;
pub mod pg;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on 127.0.0.1")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Panics unless the tests run as root (they load BPF programs and run servers as `postgres`).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "end-to-end tests must run as root: they load BPF programs (CAP_BPF, CAP_PERFMON) and start PostgreSQL as the postgres user"
    );
}
