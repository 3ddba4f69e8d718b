//! Blocking direct connections (`[block]`): with the shim in front of a real cluster, the
//! kernel refuses every other connect to the server's TCP port and unix socket with
//! "Connection refused" and reports it, while the shim, allowed uids and allowed cgroups
//! still get through; once the agent stops, the server is reachable again. Clients on
//! another "host" (a network namespace behind a veth pair) are refused unless their network
//! is in `allow_remote`. Real kernel (cgroup connect hooks, sk_lookup), real PostgreSQL,
//! real psql clients.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbward_e2e::agent::{Agent, assert_audit_verifies, audit_records, dbward_bin};
use dbward_e2e::pg::{Cluster, ClusterOptions, PG_BIN};
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
    run_psql(cmd, conninfo, sql)
}

/// Runs `cmd` (psql, or what execs it) with psql's arguments for `conninfo` and `sql`.
fn run_psql(mut cmd: Command, conninfo: &str, sql: &str) -> Run {
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
    tcp_at("127.0.0.1", port)
}

fn tcp_at(host: &str, port: u16) -> String {
    format!("host={host} port={port} user=postgres dbname=postgres connect_timeout=10")
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
    agent.stop_cleanly();
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

/// Another "host": a network namespace joined to this one by a veth pair, with addresses
/// from 198.18.0.0/15 (benchmarking range) and 2001:db8::/32 (documentation); deleted on
/// drop (which also deletes the pair).
struct RemoteHost {
    netns: String,
    /// This host's end of the pair (IPv4, IPv6).
    host_addr: String,
    host_addr6: String,
    /// The other host's addresses and their networks (a /24 and a /64).
    addr: String,
    addr6: String,
    net: String,
    net6: String,
}

impl RemoteHost {
    fn create() -> Self {
        let pid = std::process::id();
        let netns = format!("dbward-blk-{pid}");
        let subnet = format!("198.18.{}", pid % 256);
        let subnet6 = format!("2001:db8:{:x}:", pid % 65536);
        let guard = Self {
            netns: netns.clone(),
            host_addr: format!("{subnet}.1"),
            host_addr6: format!("{subnet6}:1"),
            addr: format!("{subnet}.2"),
            addr6: format!("{subnet6}:2"),
            net: format!("{subnet}.0/24"),
            net6: format!("{subnet6}:/64"),
        };
        let host_if = format!("dbwb{pid}h");
        let remote_if = format!("dbwb{pid}r");
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &remote_if, "netns", &netns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", guard.host_addr),
            "dev",
            &host_if,
        ]);
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", guard.host_addr6),
            "dev",
            &host_if,
            "nodad",
        ]);
        ip(&["link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/24", guard.addr),
            "dev",
            &remote_if,
        ]);
        inside(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", guard.addr6),
            "dev",
            &remote_if,
            "nodad",
        ]);
        inside(&["link", "set", &remote_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        guard
    }

    /// Runs psql on the other host against `conninfo`; returns the run and how long it took.
    fn psql(&self, conninfo: &str, sql: &str) -> (Run, Duration) {
        let started = Instant::now();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, &format!("{PG_BIN}/psql")]);
        let run = run_psql(cmd, conninfo, sql);
        (run, started.elapsed())
    }

    /// Runs psql on the other host against `conninfo`, asserts the kernel refused it with a
    /// reset (fast, "Connection refused", not a timeout) and returns the refusal's
    /// `connection_blocked` event.
    fn refused(&self, agent: &Agent, conninfo: &str, addr: &str, what: &str) -> Value {
        let (refused, took) = self.psql(conninfo, "SELECT 1");
        assert_refused(&refused, what);
        assert!(
            took < Duration::from_secs(5),
            "{what}: the refusal took {took:?}: a timeout, not a reset"
        );
        let events = agent.wait_events(
            &format!("a connection_blocked event for {addr}"),
            WAIT,
            |events| events.iter().any(|e| is_refusal_of(e, addr)),
        );
        events
            .into_iter()
            .find(|e| is_refusal_of(e, addr))
            .expect("found above")
    }
}

/// Whether `e` reports a refused client at `addr`.
fn is_refusal_of(e: &Value, addr: &str) -> bool {
    e["type"] == "connection_blocked" && e["client"]["addr"] == addr
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn clients_on_other_hosts_are_refused_unless_their_network_is_allowed() {
    let remote = RemoteHost::create();
    let cluster = Cluster::start_with(ClusterOptions {
        settings: vec![format!(
            "listen_addresses = '127.0.0.1,{},{}'",
            remote.host_addr, remote.host_addr6
        )],
        ..ClusterOptions::default()
    });
    let hba = cluster.data.join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    rules.push_str(&format!(
        "host all all {}/32 trust\nhost all all {}/128 trust\n",
        remote.addr, remote.addr6
    ));
    std::fs::write(&hba, rules).expect("write pg_hba.conf");
    cluster.admin("SELECT pg_reload_conf()");
    let remote_conninfo = tcp_at(&remote.host_addr, cluster.port);
    let remote_conninfo6 = tcp_at(&remote.host_addr6, cluster.port);
    // The remote host reaches the server before the agent runs: the network works.
    for info in [&remote_conninfo, &remote_conninfo6] {
        let (before, _) = remote.psql(info, "SELECT 1");
        assert!(
            before.ok,
            "the remote host cannot reach the server at all ({info}): {}",
            before.out
        );
    }

    let shim_port = free_port();
    let shim = format!(
        "[shim]\nlisten_tcp = [\"127.0.0.1:{shim_port}\"]\nupstream = \"127.0.0.1:{}\"\n",
        cluster.port
    );
    let mut agent = Agent::start_with_config(
        Some(cluster.pid),
        &format!("{shim}[block]\nenabled = true\n"),
        &[],
    );

    // Refused by the kernel with a reset: fast, and "Connection refused", not a timeout.
    let event = remote.refused(
        &agent,
        &remote_conninfo,
        &remote.addr,
        "a client on another host",
    );
    assert_eq!(event["client"]["transport"], "tcp", "{event:#}");
    assert!(
        event["client"]["port"].as_u64().is_some_and(|p| p > 0),
        "{event:#}"
    );
    assert!(
        event["client"]["pid"].is_null(),
        "a remote client has no local pid: {event:#}"
    );
    assert_eq!(
        event["target"]["addr"],
        remote.host_addr.as_str(),
        "{event:#}"
    );
    assert_eq!(
        event["target"]["port"],
        u64::from(cluster.port),
        "{event:#}"
    );
    assert_eq!(event["postmaster_pid"], u64::from(cluster.pid), "{event:#}");
    assert_eq!(event["action"], "refused", "{event:#}");
    // Over IPv6 as well.
    let event = remote.refused(
        &agent,
        &remote_conninfo6,
        &remote.addr6,
        "a client on another host over IPv6",
    );
    assert_eq!(
        event["target"]["addr"],
        remote.host_addr6.as_str(),
        "{event:#}"
    );

    // A burst from the same address: every attempt refused, at most one event per second
    // for it, the rest counted as remote_blocked drops.
    let burst = 6;
    let started = Instant::now();
    for _ in 0..burst {
        let (run, _) = remote.psql(&remote_conninfo, "SELECT 1");
        assert_refused(&run, "a client on another host (burst)");
    }
    let burst_secs = started.elapsed().as_secs();
    let drops = agent.wait_events(
        "a kernel_drops event counting remote_blocked",
        WAIT,
        |events| {
            events.iter().any(|e| {
                e["type"] == "kernel_drops"
                    && e["drops"]["remote_blocked"].as_u64().unwrap_or(0) > 0
            })
        },
    );
    let reported = drops
        .iter()
        .filter(|e| is_refusal_of(e, &remote.addr))
        .count() as u64;
    assert!(
        reported <= 2 + burst_secs,
        "{reported} events for {} attempts in {burst_secs} s: not rate-limited",
        burst + 1
    );

    // The local shim path still works, and a local client of the host-side veth address is
    // judged by the connect hooks (refused, with its process), not as a remote client.
    let via_shim = psql(&tcp(shim_port), "SELECT 7", None, None);
    assert!(
        via_shim.ok,
        "psql through the shim failed: {}",
        via_shim.out
    );
    assert_eq!(via_shim.out.trim(), "7");
    let local_direct = psql(
        &tcp_at(&remote.host_addr, cluster.port),
        "SELECT 1",
        None,
        None,
    );
    assert_refused(&local_direct, "a local client of the host-side address");
    let local_event = blocked_event(&agent, local_direct.pid);
    assert_eq!(local_event["client"]["comm"], "psql", "{local_event:#}");

    let audit_dir = agent.audit_dir();
    agent.stop_cleanly();
    let records = audit_records(&audit_dir);
    let record = records
        .iter()
        .find(|r| is_refusal_of(r, &remote.addr))
        .unwrap_or_else(|| panic!("no connection_blocked audit record for {}", remote.addr));
    assert_eq!(
        record["target"]["port"],
        u64::from(cluster.port),
        "{record:#}"
    );
    assert!(
        records.iter().any(|r| r["type"] == "kernel_drops"
            && r["drops"]["remote_blocked"].as_u64().unwrap_or(0) > 0),
        "no kernel_drops audit record counts the suppressed remote refusals"
    );
    assert_audit_verifies(&audit_dir);

    // The agent is gone: so is its sk_lookup program.
    for info in [&remote_conninfo, &remote_conninfo6] {
        let (after, _) = remote.psql(info, "SELECT 1");
        assert!(
            after.ok,
            "the remote client is still refused after the agent stopped ({info}): {}",
            after.out
        );
    }

    // Its networks allowed: the remote client's queries run, and nothing is reported.
    let config = format!(
        "{shim}[block]\nenabled = true\nallow_remote = [\"192.0.2.7\", \"{}\", \"{}\"]\n",
        remote.net, remote.net6
    );
    let mut agent = Agent::start_with_config(Some(cluster.pid), &config, &[]);
    for info in [&remote_conninfo, &remote_conninfo6] {
        let (allowed, _) = remote.psql(info, "SELECT 40 + 2");
        assert!(
            allowed.ok,
            "a client of an allowed network was refused ({info}): {}",
            allowed.out
        );
        assert_eq!(allowed.out.trim(), "42");
    }
    let via_shim = psql(&tcp(shim_port), "SELECT 8", None, None);
    assert!(
        via_shim.ok,
        "psql through the shim failed: {}",
        via_shim.out
    );
    let direct = psql(&tcp(cluster.port), "SELECT 1", None, None);
    assert_refused(&direct, "a direct local connection with allow_remote set");
    blocked_event(&agent, direct.pid);
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| is_refusal_of(e, &remote.addr) || is_refusal_of(e, &remote.addr6)),
        "the allowed remote client was reported as blocked"
    );
    agent.stop_cleanly();
}
