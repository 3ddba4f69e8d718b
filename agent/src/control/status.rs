//! `dbward status`: the agent's live state, kept up to date by the run loop and read by the
//! control socket.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// What `dbward status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// Agent version.
    pub version: String,
    /// When the agent started (RFC 3339).
    pub started: String,
    /// Server binaries the uprobes are attached to.
    pub attached_binaries: Vec<String>,
    /// Clusters followed: postmaster pid → port / data dir.
    pub clusters: BTreeMap<u32, String>,
    /// Sessions the capture currently tracks.
    pub live_sessions: usize,
    /// Statements held for a local decision.
    pub held_statements: usize,
    /// Kernel events lost to a full ring buffer, by kind.
    pub kernel_drops: BTreeMap<String, u64>,
    /// Shim events lost to a full channel.
    pub shim_events_dropped: u64,
    /// sha256 of the active policy files.
    pub policy_sha256: String,
    /// Events published since start.
    pub events: u64,
    /// Streaming to the central approver (absent when disabled).
    pub stream: Option<serde_json::Value>,
}

/// The shared, updatable status.
pub type SharedStatus = Arc<Mutex<StatusView>>;

/// One-line-per-field text for terminals.
pub fn render(status: &StatusView) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line("version", status.version.clone());
    line("started", status.started.clone());
    line("policy sha256", status.policy_sha256.clone());
    line("attached binaries", status.attached_binaries.join(", "));
    for (pid, desc) in &status.clusters {
        line("cluster", format!("postmaster {pid}: {desc}"));
    }
    line("live sessions", status.live_sessions.to_string());
    line("held statements", status.held_statements.to_string());
    let drops: u64 = status.kernel_drops.values().sum();
    line("kernel drops", format!("{drops} {:?}", status.kernel_drops));
    line(
        "shim events dropped",
        status.shim_events_dropped.to_string(),
    );
    line("events published", status.events.to_string());
    line(
        "stream",
        status
            .stream
            .as_ref()
            .map_or_else(|| "disabled".to_owned(), |s| s.to_string()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_field() {
        let mut s = StatusView {
            version: "0.1.0".into(),
            live_sessions: 3,
            held_statements: 1,
            ..StatusView::default()
        };
        s.kernel_drops.insert("statement".into(), 2);
        s.clusters.insert(42, "port 5432".into());
        let text = render(&s);
        for needle in [
            "live sessions          3",
            "held statements        1",
            "kernel drops           2",
            "postmaster 42: port 5432",
            "stream                 disabled",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
    }
}
