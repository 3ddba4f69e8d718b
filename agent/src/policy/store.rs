//! The active policy and its reloads: an atomically swapped [`PolicySet`], reloaded on
//! SIGHUP and when a file in the policy directory changes. An invalid new policy never
//! replaces a valid one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info};

use super::{PolicyErrors, PolicySet};

/// How long file events are collected before one reload (editors write several).
const SETTLE: Duration = Duration::from_millis(150);

/// A successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// sha256 (hex) of the now active policy files.
    pub content_hash: String,
    /// Whether the files differ from the previously active ones.
    pub changed: bool,
}

/// What a reload produced: the new state, or why the previous policy stays active.
pub type ReloadResult = Result<ReloadOutcome, PolicyErrors>;

/// Watching the policy directory could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The directory could not be watched.
    #[error(
        "cannot watch policy directory {dir}: {source}; check that it exists and inotify limits (fs.inotify.max_user_watches)"
    )]
    Notify {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// Holds the active policy set of a directory.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    active: ArcSwap<PolicySet>,
}

impl PolicyStore {
    /// Loads the policy in `dir`; it must be valid.
    pub fn open(dir: &Path) -> Result<PolicyStore, PolicyErrors> {
        let set = PolicySet::load_dir(dir)?;
        Ok(PolicyStore {
            dir: dir.to_path_buf(),
            active: ArcSwap::from_pointee(set),
        })
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The active policy (cheap; hold it for one statement's evaluation).
    pub fn current(&self) -> Arc<PolicySet> {
        self.active.load_full()
    }

    /// Reloads the directory. On error the previous policy stays active.
    pub fn reload(&self) -> ReloadResult {
        let sources = super::load::read_dir(&self.dir, "policy")?;
        let hash = super::load::content_hash(&sources);
        if hash == self.active.load().content_hash {
            return Ok(ReloadOutcome {
                content_hash: hash,
                changed: false,
            });
        }
        let set = PolicySet::from_sources(&sources)?;
        self.active.store(Arc::new(set));
        Ok(ReloadOutcome {
            content_hash: hash,
            changed: true,
        })
    }
}

/// Reloads `store` on SIGHUP and whenever a file in its directory changes, calling
/// `on_reload` with every result (the caller records it as a `policy_reload` audit event);
/// file events that leave the policy's content unchanged are not reported.
/// Runs until the task is dropped; fails only if watching cannot start.
pub async fn watch(
    store: Arc<PolicyStore>,
    on_reload: impl Fn(ReloadResult) + Send + Sync + 'static,
) -> Result<(), WatchError> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(WatchError::Signal)?;
    let (tx, mut rx) = mpsc::channel::<()>(64);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload.
            let _ = tx.try_send(());
        }
    })
    .map_err(|source| WatchError::Notify {
        dir: store.dir.clone(),
        source,
    })?;
    watcher
        .watch(&store.dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Notify {
            dir: store.dir.clone(),
            source,
        })?;
    loop {
        let trigger = tokio::select! {
            _ = hangup.recv() => "sighup",
            Some(()) = rx.recv() => {
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                "file_change"
            }
        };
        let result = store.reload();
        if trigger == "file_change" && result.as_ref().is_ok_and(|r| !r.changed) {
            // Unrelated files (editor swap files) changed; the policy did not.
            continue;
        }
        match &result {
            Ok(outcome) => info!(
                trigger,
                content_hash = %outcome.content_hash,
                changed = outcome.changed,
                "policy reloaded"
            ),
            Err(errors) => error!(
                trigger,
                dir = %store.dir.display(),
                %errors,
                "policy reload failed; the previous policy stays active"
            ),
        }
        on_reload(result);
    }
}
