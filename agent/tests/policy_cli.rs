//! `dbward policy check|test|explain` as a security team runs them: exit codes, error
//! positions, test diffs, JSON; and the shipped policies pass their shipped tests.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use dbward_agent::policy::{PolicySet, testing};

fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn dbward() -> Command {
    Command::cargo_bin("dbward").expect("the dbward binary is built")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("create dir");
    std::fs::write(dir.join(name), text).expect("write file");
}

#[test]
fn shipped_policies_pass_their_shipped_tests() {
    let policy = PolicySet::load_dir(&shipped_policies()).unwrap_or_else(|e| panic!("{e}"));
    let files =
        testing::load_tests(&shipped_policies().join("tests")).unwrap_or_else(|e| panic!("{e}"));
    let results = testing::run_all(&policy, &files);
    assert!(
        results.len() >= 20,
        "only {} shipped test cases",
        results.len()
    );
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.to_string())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_accepts_the_shipped_policies() {
    let output = dbward()
        .args(["policy", "check", "--policy"])
        .arg(shipped_policies())
        .output()
        .expect("run dbward");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("policy OK"));
}

#[test]
fn check_names_file_line_column_key_and_hint_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "10-broken.yaml",
        "rules:\n  - name: oops\n    match:\n      clas: read\n    outcome: allow\n",
    );
    write(
        dir.path(),
        "20-bad-kind.yaml",
        "identities:\n  - name: bot\n    kind: robot\n    match: {db_user: bot}\n",
    );
    let output = dbward()
        .args(["policy", "check", "--policy"])
        .arg(dir.path())
        .output()
        .expect("run dbward");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("10-broken.yaml:4:7: rules[0].match.clas: unknown key"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: valid keys here:"), "{stderr}");
    assert!(
        stderr.contains("20-bad-kind.yaml:3:11: identities[0].kind: unknown kind `robot`"),
        "{stderr}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn check_fails_on_a_missing_directory() {
    dbward()
        .args([
            "policy",
            "check",
            "--policy",
            "/nonexistent/dbward/policies",
        ])
        .assert()
        .code(1);
}

#[test]
fn test_passes_on_shipped_policies_and_fails_with_a_diff() {
    let output = dbward()
        .args(["policy", "test", "--policy"])
        .arg(shipped_policies())
        .output()
        .expect("run dbward");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains(" 0 failed"));

    let tests = tempfile::tempdir().expect("tempdir");
    write(
        tests.path(),
        "wrong.yaml",
        "tests:\n  - name: copy to program is fine (it is not)\n    as: {kind: human}\n    sql: COPY t TO PROGRAM 'id'\n    expect: {outcome: allow, rule: humans-audited}\n",
    );
    let output = dbward()
        .args(["policy", "test", "--policy"])
        .arg(shipped_policies())
        .arg("--tests")
        .arg(tests.path())
        .output()
        .expect("run dbward");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(
        stdout.contains("- outcome: allow\n  + outcome: deny"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- rule: humans-audited\n  + rule: deny-copy-program"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn explain_json_has_class_outcome_and_rule() {
    let output = dbward()
        .args([
            "policy",
            "explain",
            "--json",
            "--as",
            "kind=ai_agent",
            "--as",
            "db_user=app",
            "--policy",
        ])
        .arg(shipped_policies())
        .arg("DELETE FROM orders")
        .output()
        .expect("run dbward");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(json["class"], "delete");
    assert_eq!(json["outcome"], "require_approval");
    assert_eq!(json["rule"], "ai-dml-without-where-needs-approval");
    assert_eq!(json["approvers"], serde_json::json!(["dba"]));
    assert!(
        json["explanation"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
}

#[test]
fn explain_shows_every_rule_and_the_deciding_one() {
    let output = dbward()
        .args([
            "policy",
            "explain",
            "--as",
            "application_name=claude-code",
            "--policy",
        ])
        .arg(shipped_policies())
        .arg("SELECT 1; GRANT ALL ON orders TO mallory")
        .output()
        .expect("run dbward");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("class:      privilege"), "{stdout}");
    assert!(
        stdout.contains("=> ai-privilege-needs-two-approvers (require_approval): matched"),
        "{stdout}"
    );
    assert!(
        stdout.contains("humans-audited (audit): `kind` does not match"),
        "{stdout}"
    );
    assert!(stdout.contains("claude-code (kind ai_agent"), "{stdout}");
}

#[test]
fn explain_follows_execute_to_the_prepared_statement() {
    let run = |extra: &[&str]| {
        let output = dbward()
            .args([
                "policy",
                "explain",
                "--json",
                "--as",
                "kind=ai_agent",
                "--policy",
            ])
            .arg(shipped_policies())
            .args(extra)
            .arg("EXECUTE wipe")
            .output()
            .expect("run dbward");
        assert!(output.status.success());
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON")
    };
    assert_eq!(run(&[])["class"], "unknown");
    let known = run(&["--prepared", "wipe=DELETE FROM orders"]);
    assert_eq!(known["class"], "delete");
    assert_eq!(known["rule"], "ai-dml-without-where-needs-approval");
}

#[test]
fn explain_rejects_unknown_facts() {
    dbward()
        .args(["policy", "explain", "--as", "dbuser=app", "--policy"])
        .arg(shipped_policies())
        .arg("SELECT 1")
        .assert()
        .code(1);
}
