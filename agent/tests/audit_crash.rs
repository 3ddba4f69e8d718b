//! SIGKILL of a process appending to the audit log: after restart the chain resumes from the
//! last valid record and the whole log verifies.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbward_agent::audit::files;
use dbward_agent::audit::key::{VERIFYING_KEY_FILE, read_verifying_key};
use dbward_agent::audit::verify::{Problem, VerifyError};
use dbward_agent::audit::{Summary, verify_path};

fn writer(dir: &Path, count: Option<u64>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbward"));
    cmd.args([
        "audit",
        "stress-writer",
        "--host",
        "crash",
        "--fsync-interval-ms",
        "5",
        "--rotate-max-bytes",
        "400000",
    ])
    .arg("--dir")
    .arg(dir.join("audit"))
    .arg("--key-file")
    .arg(dir.join("audit.key"))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(n) = count {
        cmd.args(["--count", &n.to_string()]);
    }
    cmd.spawn().expect("spawn the stress writer")
}

fn bytes_on_disk(dir: &Path) -> u64 {
    files::list(dir)
        .map(|l| {
            l.iter()
                .filter_map(|f| std::fs::metadata(&f.path).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn verify(dir: &Path) -> Result<Summary, VerifyError> {
    let key = read_verifying_key(&dir.join(VERIFYING_KEY_FILE)).expect("verifying key");
    verify_path(dir, &key)
}

#[test]
fn sigkill_mid_write_leaves_a_chain_that_resumes_and_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let audit = tmp.path().join("audit");
    let mut last_seq = 0;
    for round in 1..=3 {
        let target = bytes_on_disk(&audit) + 600_000;
        let mut child = writer(tmp.path(), None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while bytes_on_disk(&audit) < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: the writer made no progress"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap");
        match verify(&audit) {
            Ok(summary) => assert!(summary.last_seq > last_seq, "round {round}: no progress"),
            // A kill in the middle of a write leaves a torn last line, which is all that may be
            // wrong (a kill right after rotation leaves an empty newest file, which verifies).
            Err(VerifyError::Bad(finding)) => assert_eq!(
                finding.problem,
                Problem::Incomplete,
                "round {round}: {finding}"
            ),
            Err(e) => panic!("round {round}: {e}"),
        }

        let resumed = writer(tmp.path(), Some(100))
            .wait_with_output()
            .expect("restart");
        assert!(resumed.status.success(), "round {round}: restart failed");
        let summary = verify(&audit)
            .unwrap_or_else(|e| panic!("round {round}: chain does not verify after restart: {e}"));
        assert!(summary.from_genesis);
        assert_eq!(
            summary.last_type, "checkpoint",
            "a clean stop ends with a checkpoint"
        );
        let report = String::from_utf8_lossy(&resumed.stdout);
        let resumed_after: u64 = report
            .split_whitespace()
            .find_map(|w| w.strip_prefix("resumed_after="))
            .and_then(|v| v.parse().ok())
            .expect("the writer reports where it resumed");
        assert!(
            resumed_after > last_seq,
            "round {round}: resumed after {resumed_after}, previous end {last_seq}"
        );
        // resume checkpoint + 100 statements + stop checkpoint (+ periodic ones) follow the resume point.
        assert!(
            summary.last_seq >= resumed_after + 102,
            "round {round}: {summary:?}"
        );
        last_seq = summary.last_seq;
    }
}
