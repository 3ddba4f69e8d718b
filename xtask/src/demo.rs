//! `cargo xtask demo`: the seed scenario on a throwaway cluster, with a throwaway central
//! `dbward-approver` (web UI, API) the agent files its requests with and streams its audit
//! log to. An AI agent (`ai-reporting`) exports customer data (held, approved from the CLI
//! — or, with `--interactive`, by a person in the web UI or the CLI — then completes) and
//! tries to GRANT itself a role (denied); a human's read is audited; the audit trail is
//! printed and verified.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use dbward_e2e::free_port;
use dbward_e2e::pg::{Cluster, PG_BIN};

use crate::{build_release, cargo, root, setup};

/// The approving principal of the demo's approver (a human in `dba` and `security`).
const APPROVER: &str = "dana";

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
    crate::run(cargo().args(["build", "--release", "-p", "dbward-approver"]))?;
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

    let dir = tempfile::Builder::new()
        .prefix("dbward-demo-")
        .tempdir_in("/tmp")?;
    say("Starting the central dbward-approver (web UI, API; SQLite in a temp dir)");
    let approver = Approver::start(&dir.path().join("approver"))?;
    println!(
        "approver on {}; web UI {}/ui/requests (log in as {APPROVER} with token {})",
        approver.url, approver.url, approver.token
    );

    say("Starting the dbward agent with the shipped policies and the shim in front of it");
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
            "host = \"demo-db\"\n[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nlisten_unix = [{{ path = \"{}/.s.PGSQL.{shim_port}\", mode = \"0666\" }}]\nupstream = \"127.0.0.1:{}\"\n{}",
            socket_dir.display(),
            cluster.port,
            approver.agent_config()
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

    println!(
        "approvals go to {} (the agent's audit log streams there too: {}/ui/events?host=demo-db)",
        approver.url, approver.url
    );

    let result = scenario(&bin, &approver, &socket_dir, shim_port, interactive);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    agent.wait()?;
    drop(approver);
    result?;

    say("The audit trail");
    print_audit(&audit_dir)?;
    say("dbward audit verify");
    crate::run(Command::new(&bin).args(["audit", "verify"]).arg(&audit_dir))?;
    Ok(())
}

fn scenario(
    bin: &Path,
    approver: &Approver,
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
        if line.starts_with("ERROR") {
            bail!("the export was refused instead of held: {line}");
        }
        if let Some(id) = line.split("request ").nth(1) {
            request = id.split_whitespace().next().map(str::to_owned);
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
        "{} approvals approve {request} --server {} --token {} --comment 'ok for the Q3 report'",
        bin.display(),
        approver.url,
        approver.token
    );
    if interactive {
        println!(
            "\nDecide it yourself, either\n  in the web UI: {}/ui/requests/{request} (log in with the token {})\n  or from the CLI: {approve}\n(or deny it: `approvals deny`). Waiting for the decision…",
            approver.url, approver.token
        );
    } else {
        say(&format!(
            "A DBA ({APPROVER}) approves it at the central approver from the CLI"
        ));
        println!("{APPROVER}$ {approve}");
        crate::run(
            Command::new(bin)
                .args(["approvals", "approve", &request, "--server", &approver.url])
                .args(["--token", &approver.token])
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

/// A throwaway `dbward-approver`: its own config, SQLite database and signing key in `dir`,
/// on a free loopback port; stopped on drop.
struct Approver {
    child: Child,
    dir: std::path::PathBuf,
    /// Base URL of its API and web UI.
    url: String,
    /// The approver token of [`APPROVER`] (CLI `--token`, web UI login).
    token: String,
}

impl Approver {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let token = random_token()?;
        let host_token = random_token()?;
        let config = dir.join("approver.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:{port}"
storage_url = "sqlite://{db}"
signing_key_path = "{key}"
public_url = "{url}"

[[hosts]]
name = "demo-db"
token = "{host_token}"

[[approver_tokens]]
token = "{token}"
principal = "{APPROVER}"

[[principals]]
name = "{APPROVER}"
kind = "human"
groups = ["dba", "security"]

[[principals]]
name = "alice"
kind = "human"
groups = ["dba"]

[[principals]]
name = "ai-reporting"
kind = "ai_agent"
owner = "alice"
groups = ["automation"]
"#,
                db = dir.join("approver.db").display(),
                key = dir.join("signing.key").display(),
            ),
        )?;
        let bin = root().join("target/release/dbward-approver");
        let pubkey = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("pubkey")
            .output()
            .context("running dbward-approver pubkey")?;
        if !pubkey.status.success() {
            bail!(
                "dbward-approver pubkey failed: {}",
                String::from_utf8_lossy(&pubkey.stderr)
            );
        }
        std::fs::write(dir.join("approver.pub"), &pubkey.stdout)?;
        std::fs::write(dir.join("host-token"), &host_token)?;
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("RUST_LOG", "warn")
            .spawn()
            .context("starting dbward-approver")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("dbward-approver exited with {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("dbward-approver did not listen on {url} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            child,
            dir: dir.to_owned(),
            url,
            token,
        })
    }

    /// The `[approver]` and `[stream]` sections of the agent's configuration.
    fn agent_config(&self) -> String {
        let token_file = self.dir.join("host-token");
        format!(
            "[approver]\nurl = \"{url}\"\ntoken_file = \"{tokens}\"\npublic_key_file = \"{key}\"\n\
             [stream]\nenabled = true\nendpoint = \"{url}\"\ntoken_file = \"{tokens}\"\ncursor_file = \"{cursor}\"\n",
            url = self.url,
            tokens = token_file.display(),
            key = self.dir.join("approver.pub").display(),
            cursor = self.dir.join("stream.cursor").display(),
        )
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        // It stops on Ctrl-C (SIGINT).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
    }
}

/// 32 random hex digits from the kernel.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
