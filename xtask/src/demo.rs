//! `cargo xtask demo`: the seed scenario on a throwaway cluster. An AI agent (`ai-reporting`)
//! exports customer data (held, approved from the CLI, completes) and tries to GRANT itself
//! a role (denied); a human's read is audited; the audit trail is printed and verified.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dbward_e2e::free_port;
use dbward_e2e::pg::{Cluster, PG_BIN};

use crate::{build_release, root, setup};

/// OS accounts the scenario uses: `alice` (a DBA, the human, owner of the AI agent) and the
/// approver `root`, who must be in an approver group of the rule (`dba`).
fn accounts() -> anyhow::Result<()> {
    let group = Command::new("getent").args(["group", "dba"]).output()?;
    if !group.status.success() {
        crate::run(Command::new("groupadd").arg("dba"))?;
    }
    let user = Command::new("id").arg("alice").output()?;
    if !user.status.success() {
        crate::run(Command::new("useradd").args(["--no-create-home", "-G", "dba", "alice"]))?;
    }
    let root_groups =
        String::from_utf8_lossy(&Command::new("id").args(["-nG", "root"]).output()?.stdout)
            .into_owned();
    if !root_groups.split_whitespace().any(|g| g == "dba") {
        crate::run(Command::new("gpasswd").args(["-a", "root", "dba"]))?;
    }
    Ok(())
}

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

/// `psql` through the shim's unix socket, as OS user `user`.
fn psql(user: &str, socket_dir: &Path, port: u16, app: &str, sql: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args([
        "-u",
        user,
        "--",
        &format!("{PG_BIN}/psql"),
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
    ])
    .arg(format!(
        "host={} port={port} user=postgres dbname=postgres application_name={app}",
        socket_dir.display()
    ))
    .args(["-c", sql]);
    cmd
}

/// Runs the demo; `interactive` waits for a person to approve.
pub fn run(interactive: bool) -> anyhow::Result<()> {
    setup::run_all()?;
    build_release()?;
    accounts()?;
    let bin = root().join("target/release/dbward");

    say("Starting a throwaway PostgreSQL with sample customer data");
    let cluster = Cluster::start();
    cluster.admin(
        "CREATE TABLE customers(id int PRIMARY KEY, name text, email text);
         INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 1000) i;
         CREATE ROLE reporting;",
    );
    println!(
        "cluster on 127.0.0.1:{} (pid {})",
        cluster.port, cluster.pid
    );

    say("Starting the dbward agent with the shipped policies and the shim in front of it");
    let dir = tempfile::Builder::new()
        .prefix("dbward-demo-")
        .tempdir_in("/tmp")?;
    let shim_port = free_port();
    let socket_dir = dir.path().join("shim");
    std::fs::create_dir_all(&socket_dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755))?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "host = \"demo-db\"\n[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nlisten_unix = [{{ path = \"{}/.s.PGSQL.{shim_port}\", mode = \"0666\" }}]\nupstream = \"127.0.0.1:{}\"\n",
            socket_dir.display(),
            cluster.port
        ),
    )?;
    let control = dir.path().join("agent.sock");
    let audit_dir = dir.path().join("audit");
    let mut agent = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&control)
        .arg("--policy")
        .arg(root().join("policies"))
        .arg("--audit-dir")
        .arg(&audit_dir)
        .args(["--pid", &cluster.pid.to_string()])
        .env("RUST_LOG", "warn")
        .spawn()
        .context("starting dbward run")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !control.exists() || !socket_dir.join(format!(".s.PGSQL.{shim_port}")).exists() {
        if let Some(status) = agent.try_wait()? {
            bail!("dbward run exited with {status}");
        }
        if Instant::now() > deadline {
            bail!("dbward run did not come up within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "shim: {}/.s.PGSQL.{shim_port} and 127.0.0.1:{shim_port}; policies: policies/",
        socket_dir.display()
    );

    let result = scenario(&bin, &control, &socket_dir, shim_port, interactive);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    agent.wait()?;
    result?;

    say("The audit trail");
    print_audit(&audit_dir)?;
    say("dbward audit verify");
    crate::run(Command::new(&bin).args(["audit", "verify"]).arg(&audit_dir))?;
    Ok(())
}

fn scenario(
    bin: &Path,
    control: &Path,
    socket_dir: &Path,
    port: u16,
    interactive: bool,
) -> anyhow::Result<()> {
    say("A human (alice, a DBA) reads customer data: allowed and audited");
    let out = psql(
        "alice",
        socket_dir,
        port,
        "psql",
        "SELECT count(*) AS customers FROM customers",
    )
    .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!(
            "the human read failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    say("The AI agent ai-reporting exports the customer table: held for a human");
    let export =
        "/* dbward-reason: quarterly churn report */ COPY customers TO STDOUT WITH (FORMAT csv)";
    println!("ai-reporting> {export}");
    let mut held: Child = psql("postgres", socket_dir, port, "ai-reporting", export)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = held.stderr.take().context("psql stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut request = None;
    for line in lines.by_ref() {
        let line = line?;
        println!("ai-reporting (client sees)> {line}");
        if let Some(id) = line.split("request ").nth(1) {
            request = Some(id.trim().to_owned());
            break;
        }
    }
    let request =
        request.context("the export was not held: no request id in the client's notices")?;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("ai-reporting (client sees)> {line}");
        }
    });
    let approve = format!(
        "{} approvals approve {request} --socket {} --comment 'ok for the Q3 report'",
        bin.display(),
        control.display()
    );
    if interactive {
        println!(
            "\nApprove it yourself (as root, a member of group dba):\n  {approve}\nor deny it with `approvals deny`. Waiting for the decision…"
        );
    } else {
        say("A DBA approves it from the CLI");
        println!("root# {approve}");
        crate::run(
            Command::new(bin)
                .args(["approvals", "approve", &request, "--socket"])
                .arg(control)
                .args(["--comment", "ok for the Q3 report"]),
        )?;
    }
    let out = held.wait_with_output()?;
    let rows = String::from_utf8_lossy(&out.stdout).lines().count();
    println!(
        "the export completed: {rows} rows reached the client (exit {})",
        out.status
    );

    say(
        "The AI agent tries to GRANT itself a role: denied (the rule requires two approvers and a reason)",
    );
    let grant = "GRANT pg_read_all_data TO reporting";
    println!("ai-reporting> {grant}");
    let out = psql("postgres", socket_dir, port, "ai-reporting", grant).output()?;
    print!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        bail!("the GRANT was not refused");
    }
    Ok(())
}

/// One line per audit record: seq, type, outcome, action, rule, source, statement.
fn print_audit(dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for file in files {
        for line in std::fs::read_to_string(&file)?.lines() {
            let r: serde_json::Value = serde_json::from_str(line)?;
            let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            let sql = text("statement");
            let sql = if sql.is_empty() { text("sql") } else { sql };
            println!(
                "{:>4} {:<14} {:<17} {:<10} {:<33} {:<7} {}",
                r["seq"],
                text("type"),
                text("outcome"),
                text("action"),
                text("rule"),
                text("source"),
                sql.chars().take(60).collect::<String>()
            );
        }
    }
    Ok(())
}
