//! Prometheus metrics: the agent with `[metrics] listen` serves `/metrics` over HTTP, and the
//! counters move by exactly what a real cluster's clients did (direct and through the shim,
//! a statement held and approved).

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use dbward_e2e::agent::{Agent, dbward_bin};
use dbward_e2e::metrics::{scrape, value};
use dbward_e2e::pg::{Cluster, PG_BIN};
use dbward_e2e::{free_port, wait_for};

const WAIT: Duration = Duration::from_secs(30);

const POLICY: &str = r#"
identities:
  - name: metrics-bot
    kind: ai_agent
    match:
      application_name: metrics-bot
rules:
  - name: bot-writes-are-audited
    match:
      kind: ai_agent
      class: write
    outcome: audit
  - name: bot-ddl-needs-approval
    match:
      kind: ai_agent
      class: ddl
    outcome:
      require_approval:
        approvers: [root]
        timeout: 120s
"#;

const DIRECT_WRITES: &str =
    r#"dbward_statements_total{source="kernel",class="write",outcome="audit",action="recorded"}"#;
const SHIM_DDL: &str = r#"dbward_statements_total{source="shim",class="ddl",outcome="require_approval",action="forwarded"}"#;
const SHIM_HOLDS: &str = r#"dbward_holds_total{source="shim"}"#;
const SHIM_APPROVED: &str = r#"dbward_decisions_total{source="shim",outcome="approved"}"#;
const LATENCY_COUNT: &str = "dbward_decision_latency_seconds_count";
const LATENCY_SUM: &str = "dbward_decision_latency_seconds_sum";
const AUDIT_RECORDS: &str = "dbward_audit_records_total";

#[test]
fn counters_move_by_what_clients_did() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE metered(x int)");
    let policy = tempfile::tempdir().expect("policy dir");
    std::fs::write(policy.path().join("10-metrics.yaml"), POLICY).expect("write policy");
    let metrics_port = free_port();
    let shim_port = free_port();
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n",
        cluster.port
    );
    let agent = Agent::start_with_policy(Some(cluster.pid), &config, policy.path(), &[]);
    let before = scrape(metrics_port);
    assert!(
        before.contains("# TYPE dbward_events_total counter")
            && before.contains("# TYPE dbward_decision_latency_seconds histogram"),
        "{before}"
    );

    // Five writes straight to the server: recorded by the kernel capture.
    let direct = format!(
        "{} application_name=metrics-bot",
        cluster.tcp_url("postgres", "postgres")
    );
    let writes: Vec<String> = (1..=5)
        .map(|i| format!("INSERT INTO metered VALUES ({i})"))
        .collect();
    let mut args = Vec::new();
    for sql in &writes {
        args.extend(["-c", sql.as_str()]);
    }
    cluster.psql(&direct, &args);

    // One DDL through the shim: held, approved a second later by root.
    let user = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres user")
        .expect("the postgres OS user exists");
    let client = Command::new(format!("{PG_BIN}/psql"))
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .current_dir("/")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(format!(
            "host=127.0.0.1 port={shim_port} user=postgres dbname=postgres application_name=metrics-bot"
        ))
        .args(["-c", "CREATE TABLE metered_ddl(x int)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql");
    let events = agent.wait_events("the hold of the DDL", WAIT, |events| {
        events.iter().any(|e| e["type"] == "hold")
    });
    let id = events
        .iter()
        .find(|e| e["type"] == "hold")
        .and_then(|e| e["request_id"].as_str())
        .expect("the hold has a request_id")
        .to_owned();
    let held = scrape(metrics_port);
    assert_eq!(value(&held, "dbward_holds_pending"), 1.0, "{held}");
    std::thread::sleep(Duration::from_secs(1));
    let out = Command::new(dbward_bin())
        .args(["approvals", "approve", &id, "--socket"])
        .arg(&agent.socket)
        .output()
        .expect("run dbward approvals approve");
    assert!(
        out.status.success(),
        "approve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client.wait_with_output().expect("psql output");
    assert!(
        out.status.success(),
        "the approved DDL failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let moved = |text: &str, series: &str| value(text, series) - value(&before, series);
    let after = wait_for(WAIT, || {
        let text = scrape(metrics_port);
        (moved(&text, DIRECT_WRITES) >= 5.0
            && moved(&text, SHIM_DDL) >= 1.0
            && moved(&text, AUDIT_RECORDS) >= 10.0)
            .then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the counters did not move; last scrape:\n{}\nagent stderr:\n{}",
            scrape(metrics_port),
            agent.stderr()
        )
    });
    for (series, want) in [
        (DIRECT_WRITES, 5.0),
        (SHIM_DDL, 1.0),
        (SHIM_HOLDS, 1.0),
        (SHIM_APPROVED, 1.0),
        (LATENCY_COUNT, 1.0),
    ] {
        assert_eq!(moved(&after, series), want, "{series} in\n{after}");
    }
    assert_eq!(value(&after, "dbward_holds_pending"), 0.0, "{after}");
    let latency = moved(&after, LATENCY_SUM);
    assert!(
        (1.0..WAIT.as_secs_f64()).contains(&latency),
        "decision latency {latency}s, approved after ≥ 1 s"
    );
    assert!(value(&after, "dbward_audit_bytes") > 0.0, "{after}");
}
