//! `dbward config check` as an operator runs it before a reload: exit codes and
//! `file:line:column` positions; the packaged default configuration is valid.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn dbward() -> Command {
    Command::cargo_bin("dbward").expect("the dbward binary is built")
}

/// Runs `dbward config check --config FILE` on `text`; returns (exit code, stdout, stderr).
fn check(text: &str) -> (Option<i32>, String, String, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).expect("write config");
    let output = dbward()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .expect("run dbward");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        path,
    )
}

#[test]
fn packaged_default_config_is_valid() {
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.toml");
    let text = std::fs::read_to_string(&packaged).expect("packaging/agent.toml exists");
    let (code, stdout, stderr, _) = check(&text);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("config OK"), "{stdout}");
}

#[test]
fn valid_file_with_every_section_passes() {
    let (code, stdout, stderr, _) = check(
        "host = \"db1\"\n[capture]\npids = [42]\n[policy]\ndir = \"/etc/dbward/policies\"\n\
         [audit]\ndir = \"/var/lib/dbward/audit\"\nrotate_max_bytes = 1048576\n\
         [shim]\nlisten_tcp = [\"127.0.0.1:6432\"]\nupstream = \"127.0.0.1:5432\"\n",
    );
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("config OK"), "{stdout}");
}

#[test]
fn unknown_key_is_reported_at_its_line_and_column() {
    let (code, _, stderr, path) = check("host = \"db1\"\n[audit]\n  rotate_max_byte = 4096\n");
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("{}:3:3: ", path.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("rotate_max_byte") && stderr.contains("rotate_max_bytes"),
        "the error names the wrong key and the valid ones: {stderr}"
    );
}

#[test]
fn bad_audit_value_is_reported_at_its_key() {
    let (code, _, stderr, path) =
        check("[audit]\ndir = \"/var/lib/dbward/audit\"\nrotate_max_bytes = 10\n");
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("{}:3:1: [audit] audit.rotate_max_bytes", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn bad_shim_values_are_all_reported() {
    let (code, _, stderr, path) = check(
        "host = \"db1\"\n[shim]\nlisten_tcp = [\"127.0.0.1:6432\"]\nupstream = \"nowhere\"\n\
         max_connections = 0\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        format!("{}:4:1: [shim] shim.upstream", path.display()),
        format!("{}:5:1: [shim] shim.max_connections", path.display()),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in {stderr}"
        );
    }
}

#[test]
fn missing_file_outside_the_default_path_fails() {
    let output = dbward()
        .args(["config", "check", "--config", "/nonexistent/agent.toml"])
        .output()
        .expect("run dbward");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/agent.toml"));
}

#[test]
fn bad_metrics_addresses_are_reported_at_their_key() {
    let (code, stdout, stderr, _) = check("[metrics]\nlisten = \"127.0.0.1:9187\"\n");
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    for (text, at) in [
        (
            "[metrics]\nlisten = \"localhost:x\"\n",
            ":2:10: invalid socket address",
        ),
        (
            "host = \"db1\"\n[metrics]\n  listen = \"127.0.0.1:0\"\n",
            ":3:3: [metrics] metrics.listen",
        ),
        (
            "[metrics]\nlisten = \"127.0.0.1:9187\"\nport = 1\n",
            ":3:1: unknown field `port`",
        ),
    ] {
        let (code, _, stderr, path) = check(text);
        assert_eq!(code, Some(1), "{text}: {stderr}");
        let expected = format!("{}{at}", path.display());
        assert!(stderr.contains(&expected), "{text}: {stderr}");
    }
}
