//! Tampering with audit files is caught by `verify` at the right record; resume after a torn
//! write, rotation and retention keep a verifiable chain.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dbward_agent::audit::event::{Extra, Statement};
use dbward_agent::audit::files;
use dbward_agent::audit::key::{VERIFYING_KEY_FILE, read_verifying_key};
use dbward_agent::audit::record::{GENESIS_HASH, Header, check_line, seal};
use dbward_agent::audit::verify::{Problem, VerifyError};
use dbward_agent::audit::{AuditConfig, AuditEvent, AuditLog, AuditOptions, Summary, verify_path};
use serde_json::Value;

fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.join("audit"),
        key_file: dir.join("audit.key"),
        fsync_interval_ms: 10,
        checkpoint_every_records: 10,
        ..AuditConfig::default()
    }
}

fn statement(n: u64) -> AuditEvent {
    AuditEvent::Statement(Statement {
        session_id: format!("s{}", n % 3),
        statement: format!("DELETE FROM orders WHERE id = {n}"),
        outcome: "audit".into(),
        rule: Some("deletes".into()),
        class: Some("delete".into()),
        extra: Extra::new(),
    })
}

fn write_log(config: AuditConfig, events: u64) {
    let log = AuditLog::open(AuditOptions {
        config,
        host: "db1".into(),
    })
    .expect("open log");
    for n in 0..events {
        log.append(&statement(n)).expect("append");
    }
    log.close().expect("close");
}

fn verify(dir: &Path) -> Result<Summary, VerifyError> {
    let key = read_verifying_key(&dir.join(VERIFYING_KEY_FILE)).expect("verifying key");
    verify_path(dir, &key)
}

fn only_file(dir: &Path) -> PathBuf {
    let list = files::list(dir).expect("list");
    assert_eq!(list.len(), 1, "one file expected");
    list[0].path.clone()
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write");
}

/// Renumbers and re-seals every record from line `from` on (0-based) so seqs, hashes and
/// links are consistent again: what an attacker without the signing key can do.
fn reseal_from(lines: &mut [String], from: usize) {
    let (mut prev, mut seq) = match from {
        0 => (GENESIS_HASH.to_owned(), 0),
        _ => {
            let checked = check_line(lines[from - 1].as_bytes()).expect("valid");
            (checked.hash, checked.seq)
        }
    };
    for line in lines.iter_mut().skip(from) {
        let Value::Object(mut record) = serde_json::from_str::<Value>(line).expect("json") else {
            panic!("object")
        };
        seq += 1;
        let ts = record["ts"].as_str().expect("ts").to_owned();
        for field in ["seq", "id", "ts", "prev_hash", "hash"] {
            record.remove(field);
        }
        let sealed = seal(
            &Header {
                seq,
                host: "db1",
                ts: &ts,
                prev_hash: &prev,
            },
            record,
        );
        *line = String::from_utf8(sealed.line)
            .expect("utf8")
            .trim_end()
            .to_owned();
        prev = sealed.hash;
    }
}

fn first_checkpoint_after(lines: &[String], after: usize) -> usize {
    (after..lines.len())
        .find(|i| lines[*i].contains("\"type\":\"checkpoint\""))
        .expect("a checkpoint")
}

#[test]
fn each_kind_of_tampering_is_reported_at_the_first_bad_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_log(cfg.clone(), 40);
    let audit = cfg.dir.clone();
    let file = only_file(&audit);
    let pristine = lines(&file);
    verify(&audit).expect("untouched log verifies");

    type Tamper = fn(&mut Vec<String>);
    type Case = (&'static str, Tamper, usize, fn(&Problem) -> bool);
    let cases: [Case; 6] = [
        (
            "flip a byte in a statement",
            |l| l[4] = l[4].replacen("orders", "ordirs", 1),
            5,
            |p| {
                matches!(
                    p,
                    Problem::Line(dbward_agent::audit::record::LineError::HashMismatch { .. })
                )
            },
        ),
        (
            "delete a line",
            |l| {
                l.remove(12);
            },
            13,
            |p| {
                matches!(
                    p,
                    Problem::Link(dbward_agent::audit::record::LinkError::SeqGap { .. })
                )
            },
        ),
        (
            "swap two lines",
            |l| l.swap(20, 21),
            21,
            |p| matches!(p, Problem::Link(_)),
        ),
        (
            "insert a copied line",
            |l| {
                let copy = l[3].clone();
                l.insert(8, copy);
            },
            9,
            |p| matches!(p, Problem::Link(_)),
        ),
        (
            "delete a line and re-seal the rest without the key",
            |l| {
                l.remove(15);
                let from = 15;
                reseal_from(l, from);
            },
            0,
            |p| matches!(p, Problem::Checkpoint(_)),
        ),
        (
            "break a checkpoint signature",
            |l| {
                let cp = first_checkpoint_after(l, 5);
                let Value::Object(mut record) =
                    serde_json::from_str::<Value>(&l[cp]).expect("json")
                else {
                    panic!("object")
                };
                let sig = record["signature"].as_str().expect("signature").to_owned();
                let flipped = if sig.starts_with('A') {
                    sig.replacen('A', "B", 1)
                } else {
                    format!("A{}", &sig[1..])
                };
                record.insert("signature".into(), Value::from(flipped));
                l[cp] = serde_json::to_string(&record).expect("json");
                reseal_from(l, cp);
            },
            0,
            |p| {
                matches!(
                    p,
                    Problem::Checkpoint(
                        dbward_agent::audit::checkpoint::CheckpointError::BadSignature
                    )
                )
            },
        ),
    ];
    for (name, tamper, expected_line, is_expected) in cases {
        let mut tampered = pristine.clone();
        tamper(&mut tampered);
        write_lines(&file, &tampered);
        let finding = match verify(&audit) {
            Err(VerifyError::Bad(finding)) => finding,
            other => panic!("{name}: expected a finding, got {other:?}"),
        };
        assert!(is_expected(&finding.problem), "{name}: {finding}");
        assert_eq!(finding.path, file, "{name}");
        if expected_line > 0 {
            assert_eq!(finding.line, expected_line, "{name}: {finding}");
        }
        write_lines(&file, &pristine);
    }
    // The re-sealed cases are caught at the first checkpoint after the change.
    let mut resealed = pristine.clone();
    resealed.remove(15);
    reseal_from(&mut resealed, 15);
    write_lines(&file, &resealed);
    let Err(VerifyError::Bad(finding)) = verify(&audit) else {
        panic!("re-sealed log must fail")
    };
    assert_eq!(
        finding.line,
        first_checkpoint_after(&resealed, 15) + 1,
        "{finding}"
    );
}

#[test]
fn verify_command_exits_1_naming_file_line_and_seq() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_log(cfg.clone(), 25);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dbward"))
            .args(args)
            .output()
            .expect("run dbward")
    };
    let dir = cfg.dir.to_str().expect("utf8 path");
    let ok = run(&["audit", "verify", dir]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK: "));

    let file = only_file(&cfg.dir);
    let mut l = lines(&file);
    l.swap(9, 10);
    write_lines(&file, &l);
    let bad = run(&[
        "audit",
        "verify",
        dir,
        "--key",
        cfg.dir.join(VERIFYING_KEY_FILE).to_str().expect("utf8"),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains(&format!("{}:10: seq 11: seq gap", file.display())),
        "{out}"
    );

    let no_key = run(&["audit", "verify", dir, "--key", "/nonexistent/key"]);
    assert_eq!(no_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("--key"));
}

#[test]
fn torn_tail_is_truncated_and_the_chain_resumes_with_a_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_log(cfg.clone(), 30);
    let file = only_file(&cfg.dir);
    let before = verify(&cfg.dir).expect("verifies");
    let mut bytes = fs::read(&file).expect("read");
    bytes.extend_from_slice(br#"{"id":"db1:99","prev_hash":"ab"#);
    fs::write(&file, &bytes).expect("write torn tail");
    assert!(
        matches!(verify(&cfg.dir), Err(VerifyError::Bad(f)) if f.problem == Problem::Incomplete)
    );

    let log = AuditLog::open(AuditOptions {
        config: cfg.clone(),
        host: "db1".into(),
    })
    .expect("reopen");
    assert_eq!(log.open_report().resumed_after, before.last_seq);
    assert_eq!(log.open_report().truncated_bytes, 30);
    let seq = log.append(&statement(1)).expect("append");
    assert_eq!(
        seq,
        before.last_seq + 2,
        "resume checkpoint, then the new record"
    );
    log.close().expect("close");
    let after = verify(&cfg.dir).expect("chain verifies after resume");
    assert_eq!(after.last_seq, before.last_seq + 3);
    let resume = lines(&file)
        .into_iter()
        .find(|l| l.contains("\"reason\":\"resume\""))
        .expect("resume checkpoint");
    assert!(resume.contains("\"truncated_bytes\":30"), "{resume}");
}

#[test]
fn rotation_continues_the_chain_and_retention_leaves_a_verifiable_suffix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = AuditConfig {
        rotate_max_bytes: 8192,
        retention_max_files: 4,
        ..config(tmp.path())
    };
    write_log(cfg.clone(), 400);
    let list = files::list(&cfg.dir).expect("list");
    assert_eq!(list.len(), 4, "retention keeps 4 files");
    let summary = verify(&cfg.dir).expect("suffix verifies");
    assert!(!summary.from_genesis);
    assert_eq!(summary.first_seq, list[0].first_seq);
    assert_eq!(summary.files, 4);

    let middle = fs::read(&list[1].path).expect("read");
    fs::write(&list[1].path, b"").expect("empty a middle file");
    let Err(VerifyError::Bad(finding)) = verify(&cfg.dir) else {
        panic!("an emptied middle file must fail")
    };
    assert_eq!(
        (finding.path.clone(), finding.problem.clone()),
        (list[1].path.clone(), Problem::Empty)
    );
    fs::write(&list[1].path, middle).expect("restore");
    verify(&cfg.dir).expect("restored");

    fs::remove_file(&list[1].path).expect("remove a middle file");
    let Err(VerifyError::Bad(finding)) = verify(&cfg.dir) else {
        panic!("a gap between files must fail")
    };
    assert_eq!(finding.path, list[2].path);
    assert_eq!(finding.line, 1);
    assert!(matches!(finding.problem, Problem::Link(_)), "{finding}");
}

#[test]
fn flipping_any_byte_of_a_record_is_caught_at_that_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    write_log(cfg.clone(), 12);
    let file = only_file(&cfg.dir);
    let pristine = fs::read(&file).expect("read");
    let line_start = pristine
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(4)
        .map(|(i, _)| i + 1)
        .expect("line 6");
    let line_end = line_start
        + pristine[line_start..]
            .iter()
            .position(|b| *b == b'\n')
            .expect("line end");
    for pos in line_start..line_end {
        let mut bytes = pristine.clone();
        bytes[pos] ^= 0x01;
        fs::write(&file, &bytes).expect("write");
        match verify(&cfg.dir) {
            Err(VerifyError::Bad(finding)) => assert_eq!(finding.line, 6, "byte {pos}: {finding}"),
            other => panic!(
                "byte {pos} ({:?}) flipped: expected a finding, got {other:?}",
                pristine[pos] as char
            ),
        }
    }
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(tmp.path());
    let first = AuditLog::open(AuditOptions {
        config: cfg.clone(),
        host: "db1".into(),
    })
    .expect("open");
    let second = AuditLog::open(AuditOptions {
        config: cfg.clone(),
        host: "db1".into(),
    });
    assert!(
        matches!(second, Err(dbward_agent::audit::AuditError::Locked(_))),
        "{second:?}"
    );
    first.close().expect("close");
    drop(first);
    AuditLog::open(AuditOptions {
        config: cfg,
        host: "db1".into(),
    })
    .expect("reopen after the first closed");
}
