//! Policy reloads: an invalid new policy keeps the previous one active and reports the
//! error; a valid change activates a new content hash; SIGHUP and file changes trigger them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dbward_agent::policy::store::{PolicyStore, ReloadResult, watch};
use dbward_agent::policy::{Facts, Outcome};
use tokio::sync::mpsc;

const ALLOW_ALL: &str = "rules:\n  - name: everything\n    outcome: allow\n";
const DENY_ALL: &str = "rules:\n  - name: nothing\n    outcome: {deny: {message: frozen}}\n";
const BROKEN: &str = "rules:\n  - name: broken\n    outcome: perhaps\n";

fn write(dir: &Path, text: &str) {
    // Write then rename, like editors and config management do.
    let tmp = dir.join(".policy.yaml.tmp");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, dir.join("policy.yaml")).expect("rename policy");
}

fn outcome(store: &PolicyStore) -> Outcome {
    store
        .current()
        .evaluate(&Facts::default(), "SELECT 1", std::time::SystemTime::now())
        .outcome
}

#[test]
fn invalid_policy_keeps_the_previous_one_and_valid_change_swaps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ALLOW_ALL);
    let store = PolicyStore::open(dir.path()).expect("valid policy");
    let first = store.current().content_hash();
    assert_eq!(outcome(&store), Outcome::Allow);

    write(dir.path(), BROKEN);
    let errors = store.reload().expect_err("broken policy is rejected");
    assert!(errors.to_string().contains("policy.yaml:3:14"), "{errors}");
    assert_eq!(store.current().content_hash(), first);
    assert_eq!(outcome(&store), Outcome::Allow);

    write(dir.path(), DENY_ALL);
    let reloaded = store.reload().expect("valid policy");
    assert!(reloaded.changed);
    assert_ne!(reloaded.content_hash, first);
    assert_eq!(store.current().content_hash(), reloaded.content_hash);
    assert!(matches!(outcome(&store), Outcome::Deny { .. }));

    let again = store.reload().expect("unchanged policy");
    assert!(!again.changed);
    assert_eq!(again.content_hash, reloaded.content_hash);
}

async fn next(rx: &mut mpsc::UnboundedReceiver<ReloadResult>) -> ReloadResult {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a reload within 10 s")
        .expect("watch is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_on_file_change_and_sighup() {
    // Own SIGHUP before anything sends it, so it can never take the default action.
    let _guard = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), ALLOW_ALL);
    let store = Arc::new(PolicyStore::open(dir.path()).expect("valid policy"));
    let first = store.current().content_hash();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(watch(Arc::clone(&store), move |result| {
        let _ = tx.send(result);
    }));
    // Give the watcher a moment to start watching.
    tokio::time::sleep(Duration::from_millis(300)).await;

    write(dir.path(), BROKEN);
    let result = next(&mut rx).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        store.current().content_hash(),
        first,
        "previous policy stays active"
    );

    write(dir.path(), DENY_ALL);
    let changed = loop {
        // Several file events may arrive; wait for the one that sees the valid file.
        if let Ok(outcome) = next(&mut rx).await {
            break outcome;
        }
    };
    assert!(changed.changed);
    assert_ne!(changed.content_hash, first);
    assert_eq!(store.current().content_hash(), changed.content_hash);

    while rx.try_recv().is_ok() {}
    // SAFETY: kill(2) on our own pid with a signal this process handles.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(rc, 0);
    let hup = next(&mut rx).await.expect("reload on SIGHUP");
    assert!(!hup.changed);
    assert_eq!(hup.content_hash, changed.content_hash);
    task.abort();
}
