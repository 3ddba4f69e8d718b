//! Blocking direct connections (`[block]`): with the shim in front of a real cluster, the
//! kernel refuses every other connect to the server's TCP port and unix socket with
//! "Connection refused" and reports it, while the shim, allowed uids and allowed cgroups
//! still get through; once the agent stops, the server is reachable again. Real kernel
//! (cgroup connect hooks), real PostgreSQL, real psql clients.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dbward_e2e::agent::{Agent, assert_audit_verifies, audit_records, dbward_bin};
use dbward_e2e::pg::{Cluster, PG_BIN};
use dbward_e2e::{free_port, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A cgroup v2 directory made for the test, removed on drop.
struct TestCgroup {
    /// Its path below the cgroup2 mount (`/dbward-block-…`), as agent.toml names it.
    relative: PathBuf,
    /// Its directory.
    dir: PathBuf,
}

impl TestCgroup {
    fn create() -> Self {
        let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
        let root = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .expect("no cgroup2 filesystem is mounted: [block] needs cgroup v2");
        let relative = PathBuf::from(format!("/dbward-block-test-{}", std::process::id()));
        let dir = root.join(relative.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", dir.display()));
        Self { relative, dir }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = wait_for(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.dir).ok()
        });
    }
}

/// How a psql run went: its pid, whether it succeeded, and its output.
struct Run {
    pid: u32,
    ok: bool,
    out: String,
}

/// Runs psql with `conninfo` and `sql`; `as_uid` switches user, `cgroup` moves it into a
/// cgroup (its `cgroup.procs`) before exec.
fn psql(conninfo: &str, sql: &str, as_uid: Option<u32>, cgroup: Option<&Path>) -> Run {
    let mut cmd = Command::new(format!("{PG_BIN}/psql"));
    cmd.args([
        "-X",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        sql,
    ])
    .current_dir("/")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(uid) = as_uid {
        cmd.uid(uid).gid(uid);
    }
    if let Some(dir) = cgroup {
        let procs = dir.join("cgroup.procs");
        // SAFETY: only an open + write + close between fork and exec.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
    }
    let child = cmd.spawn().expect("spawn psql");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for psql");
    Run {
        pid,
        ok: out.status.success(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn tcp(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10")
}

fn unix(cluster: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=10",
        cluster.socket_dir.display(),
        cluster.port
    )
}

fn assert_refused(run: &Run, what: &str) {
    assert!(!run.ok, "{what} was not refused: {}", run.out);
    assert!(
        run.out.contains("Connection refused"),
        "{what} failed, but not with \"Connection refused\": {}",
        run.out
    );
}

fn blocked_event(agent: &Agent, pid: u32) -> Value {
    let is_it =
        |e: &Value| e["type"] == "connection_blocked" && e["client"]["pid"] == u64::from(pid);
    let events = agent.wait_events(
        &format!("a connection_blocked event for psql {pid}"),
        WAIT,
        |events| events.iter().any(is_it),
    );
    events.into_iter().find(is_it).expect("found above")
}

#[test]
fn direct_connections_are_refused_and_audited_while_the_shim_path_works() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE block_probe(x int); INSERT INTO block_probe VALUES (7)");
    let cgroup = TestCgroup::create();
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("look up nobody")
        .expect("the nobody user exists")
        .uid
        .as_raw();
    let shim_port = free_port();
    let config = format!(
        "[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n\
         [block]\nenabled = true\nallow_uids = [{nobody}]\nallow_cgroups = [\"{}\"]\n",
        cluster.port,
        cgroup.relative.display()
    );
    let mut agent = Agent::start_with_config(Some(cluster.pid), &config, &[]);

    // Straight to the server's port, and to its socket: refused, even for root.
    let direct_tcp = psql(&tcp(cluster.port), "SELECT 1", None, None);
    assert_refused(&direct_tcp, "a direct TCP connection");
    let direct_unix = psql(&unix(&cluster), "SELECT 1", None, None);
    assert_refused(&direct_unix, "a direct unix-socket connection");

    // Through the shim: the session runs.
    let via_shim = psql(&tcp(shim_port), "SELECT x FROM block_probe", None, None);
    assert!(
        via_shim.ok,
        "psql through the shim failed: {}",
        via_shim.out
    );
    assert_eq!(via_shim.out.trim(), "7");

    // Allowed uid and allowed cgroup connect directly.
    let as_nobody = psql(&tcp(cluster.port), "SELECT 2", Some(nobody), None);
    assert!(
        as_nobody.ok,
        "allowed uid {nobody} refused: {}",
        as_nobody.out
    );
    let in_cgroup = psql(&unix(&cluster), "SELECT 3", None, Some(&cgroup.dir));
    assert!(in_cgroup.ok, "allowed cgroup refused: {}", in_cgroup.out);

    // Each refusal is an event naming the client and the server it tried.
    let tcp_event = blocked_event(&agent, direct_tcp.pid);
    assert_eq!(tcp_event["client"]["comm"], "psql", "{tcp_event:#}");
    assert_eq!(tcp_event["client"]["uid"], 0, "{tcp_event:#}");
    assert_eq!(tcp_event["target"]["transport"], "tcp", "{tcp_event:#}");
    assert_eq!(tcp_event["target"]["addr"], "127.0.0.1", "{tcp_event:#}");
    assert_eq!(
        tcp_event["target"]["port"],
        u64::from(cluster.port),
        "{tcp_event:#}"
    );
    assert_eq!(
        tcp_event["postmaster_pid"],
        u64::from(cluster.pid),
        "{tcp_event:#}"
    );
    assert_eq!(tcp_event["action"], "refused", "{tcp_event:#}");
    let unix_event = blocked_event(&agent, direct_unix.pid);
    assert_eq!(unix_event["client"]["comm"], "psql", "{unix_event:#}");
    assert_eq!(unix_event["target"]["transport"], "unix", "{unix_event:#}");
    let socket = cluster
        .socket_dir
        .join(format!(".s.PGSQL.{}", cluster.port));
    assert_eq!(
        unix_event["target"]["socket"],
        socket.display().to_string(),
        "{unix_event:#}"
    );
    let events = agent.events();
    for allowed in [via_shim.pid, as_nobody.pid, in_cgroup.pid] {
        assert!(
            !events
                .iter()
                .any(|e| e["type"] == "connection_blocked" && e["client"]["pid"] == allowed),
            "an allowed client ({allowed}) was reported as blocked"
        );
    }

    // The audit trail has both refusals and still verifies.
    let audit_dir = agent.audit_dir();
    let status = agent.stop();
    assert!(
        status.success(),
        "dbward run exited with {status}: {}",
        agent.stderr()
    );
    let records = audit_records(&audit_dir);
    for run in [&direct_tcp, &direct_unix] {
        let record = records
            .iter()
            .find(|r| r["type"] == "connection_blocked" && r["client"]["pid"] == run.pid)
            .unwrap_or_else(|| panic!("no connection_blocked audit record for psql {}", run.pid));
        assert_eq!(record["client"]["comm"], "psql", "{record:#}");
    }
    assert_audit_verifies(&audit_dir);

    // The agent is gone: so are its hooks.
    let after_tcp = psql(&tcp(cluster.port), "SELECT 4", None, None);
    assert!(
        after_tcp.ok,
        "direct TCP still refused after the agent stopped: {}",
        after_tcp.out
    );
    let after_unix = psql(&unix(&cluster), "SELECT 5", None, None);
    assert!(
        after_unix.ok,
        "unix socket still refused after the agent stopped: {}",
        after_unix.out
    );
}

#[test]
fn connects_to_other_ports_and_hosts_are_never_touched() {
    let cluster = Cluster::start();
    let other = Cluster::start();
    let shim_port = free_port();
    let config = format!(
        "[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n[block]\nenabled = true\n",
        cluster.port
    );
    let agent = Agent::start_with_config(Some(cluster.pid), &config, &[]);
    // A cluster the agent does not watch is reachable over TCP and its socket.
    let run = psql(&tcp(other.port), "SELECT 1", None, None);
    assert!(run.ok, "unwatched cluster refused over TCP: {}", run.out);
    let run = psql(&unix(&other), "SELECT 1", None, None);
    assert!(
        run.ok,
        "unwatched cluster refused over its socket: {}",
        run.out
    );
    // The protected port on an address of no interface here is another host's server: the
    // hooks let the connect go on (it fails on its own: nothing answers at TEST-NET-1).
    let run = psql(
        &format!(
            "host=192.0.2.1 port={} user=postgres dbname=postgres connect_timeout=2",
            cluster.port
        ),
        "SELECT 1",
        None,
        None,
    );
    assert!(!run.ok, "something answered at 192.0.2.1: {}", run.out);
    // Another network namespace's loopback is another server: not the agent's to refuse.
    let out = Command::new("unshare")
        .args(["--net", &format!("{PG_BIN}/psql"), "-X", "-d"])
        .arg(tcp(cluster.port))
        .args(["-c", "SELECT 1"])
        .output()
        .expect("run psql in a new network namespace (unshare)");
    assert!(
        !out.status.success(),
        "psql in an empty network namespace connected"
    );
    let events = agent.events();
    assert!(
        !events.iter().any(|e| e["type"] == "connection_blocked"),
        "unexpected connection_blocked events: {events:#?}"
    );
    // And the protected one still is refused (the hooks are live in this agent)...
    let direct = psql(&tcp(cluster.port), "SELECT 1", None, None);
    assert_refused(&direct, "a direct TCP connection");
    // ...until the agent dies without cleaning up: the kernel drops its hooks with it.
    agent.kill();
    let after = psql(&tcp(cluster.port), "SELECT 1", None, None);
    assert!(
        after.ok,
        "direct TCP refused after the agent was killed: {}",
        after.out
    );
    let after = psql(&unix(&cluster), "SELECT 1", None, None);
    assert!(
        after.ok,
        "unix socket refused after the agent was killed: {}",
        after.out
    );
}

#[test]
fn the_clusters_own_processes_and_their_children_still_connect() {
    let cluster = Cluster::start();
    cluster.admin("CREATE TABLE from_program(x int)");
    let policy = tempfile::tempdir().expect("policy dir");
    std::fs::write(
        policy.path().join("00-allow.yaml"),
        "defaults:\n  unmatched: allow\n",
    )
    .expect("write policy");
    let shim_port = free_port();
    let config = format!(
        "[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n[block]\nenabled = true\n",
        cluster.port
    );
    let agent = Agent::start_with_policy(Some(cluster.pid), &config, policy.path(), &[]);
    // A backend's shell runs psql against the backend's own server: a grandchild of the
    // postmaster, born while blocking is on.
    let inner = format!(
        "{PG_BIN}/psql -X -h {} -p {} -U postgres -d postgres -c \"INSERT INTO from_program VALUES (42)\"",
        cluster.socket_dir.display(),
        cluster.port
    );
    let run = psql(
        &tcp(shim_port),
        &format!("COPY (SELECT 1) TO PROGRAM '{inner}'"),
        None,
        None,
    );
    assert!(
        run.ok,
        "COPY TO PROGRAM with psql inside failed: {}",
        run.out
    );
    let run = psql(&tcp(shim_port), "SELECT x FROM from_program", None, None);
    assert!(run.ok, "{}", run.out);
    assert_eq!(run.out.trim(), "42");
    let events = agent.events();
    assert!(
        !events.iter().any(|e| e["type"] == "connection_blocked"),
        "the cluster's own process tree was refused: {events:#?}"
    );
}

#[test]
fn an_agent_that_cannot_block_refuses_to_run_unprotected() {
    dbward_e2e::require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[block]\nenabled = true\nallow_uids = [0]\n").expect("write config");
    // Enough to capture (CAP_BPF, CAP_PERFMON), not enough for cgroup connect hooks.
    let mut child = Command::new("setpriv")
        .arg("--bounding-set=-all,+bpf,+perfmon,+dac_read_search,+sys_ptrace")
        .arg(dbward_bin())
        .args(["run", "--pid", "1", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("agent.sock"))
        .arg("--policy")
        .arg(dbward_e2e::agent::shipped_policies())
        .arg("--audit-dir")
        .arg(dir.path().join("audit"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbward under setpriv (util-linux)");
    let status = wait_for(WAIT, || child.try_wait().expect("wait for dbward"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("dbward ran with [block] enabled although it cannot attach the connect hooks");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "dbward exited successfully: {stderr}");
    assert!(
        stderr.contains("[block] is enabled") && stderr.contains("not starting unprotected"),
        "{stderr}"
    );
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}
