//! The `dbward` agent under test, run as a child process whose JSON event stream
//! (`--stdout`) is collected for assertions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// Path of the `dbward` binary: `$DBWARD_BIN`, else the workspace's debug build.
pub fn dbward_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DBWARD_BIN") {
        return PathBuf::from(bin);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/dbward");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p dbward-agent`, or run `cargo xtask test`) or set DBWARD_BIN",
        bin.display()
    );
    bin
}

/// Every record of the audit log in `dir` (its `.jsonl` files), parsed.
pub fn audit_records(dir: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).expect("audit dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).expect("read audit file");
            records.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<Value>(l).expect("audit line is JSON")),
            );
        }
    }
    records
}

/// Asserts that `dbward audit verify` accepts the audit log in `dir`.
pub fn assert_audit_verifies(dir: &Path) {
    let out = Command::new(dbward_bin())
        .args(["audit", "verify"])
        .arg(dir)
        .output()
        .expect("dbward audit verify");
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped example policies (`policies/`).
pub fn shipped_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The `statement` events whose SQL contains `marker`.
pub fn statements_containing<'a>(events: &'a [Value], marker: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["type"] == "statement" && e["sql"].as_str().is_some_and(|s| s.contains(marker))
        })
        .collect()
}

/// A running agent; killed on drop.
pub struct Agent {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// Its control socket.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `dbward run --stdout` with `args` and waits until it attached to `postmaster`
    /// (a `cluster_attached` event; a MariaDB server's pid works too). Panics with the agent's stderr if it fails to start.
    pub fn start(postmaster: Option<u32>, args: &[&str]) -> Self {
        Self::start_with_config(postmaster, "", args)
    }

    /// [`Agent::start`] with `config` as the contents of agent.toml.
    pub fn start_with_config(postmaster: Option<u32>, config_text: &str, args: &[&str]) -> Self {
        Self::start_with_policy(postmaster, config_text, &shipped_policies(), args)
    }

    /// [`Agent::start_with_config`] with the policy files in `policy` instead of the
    /// shipped ones.
    pub fn start_with_policy(
        postmaster: Option<u32>,
        config_text: &str,
        policy: &std::path::Path,
        args: &[&str],
    ) -> Self {
        crate::require_root();
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, config_text).expect("write agent.toml");
        let mut cmd = Command::new(dbward_bin());
        cmd.args(["run", "--stdout", "--config"])
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--policy")
            .arg(policy)
            .arg("--audit-dir")
            .arg(dir.path().join("audit"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(pid) = postmaster {
            cmd.args(["--pid", &pid.to_string()]);
        }
        let mut child = cmd.spawn().expect("spawn dbward");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("agent printed a line that is not JSON ({e}): {line}")
                });
                sink.lock().expect("events lock").push(value);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("stderr lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut agent = Self {
            child,
            events,
            stderr,
            socket,
            _dir: dir,
        };
        let ready = crate::wait_for(Duration::from_secs(30), || {
            if let Ok(Some(status)) = agent.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "dbward run exited with {status} before attaching; its stderr:\n{}",
                    agent.stderr()
                );
            }
            let attached = agent.events().iter().any(|e| {
                e["type"] == "cluster_attached"
                    && postmaster
                        .is_none_or(|pid| e["postmaster_pid"] == pid || e["server_pid"] == pid)
            });
            let socket_up = agent.socket.exists();
            (attached && socket_up).then_some(())
        });
        if ready.is_none() {
            panic!(
                "dbward run did not attach within 30 s; its stderr:\n{}",
                agent.stderr()
            );
        }
        agent
    }

    /// Events printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events lock").clone()
    }

    /// The agent's stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until `pred` holds for the collected events; panics with context otherwise.
    pub fn wait_events(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        crate::wait_for(timeout, || {
            let events = self.events();
            pred(&events).then_some(events)
        })
        .unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; {} events collected; agent stderr:\n{}",
                self.events().len(),
                self.stderr()
            )
        })
    }

    /// The agent's audit log directory.
    pub fn audit_dir(&self) -> PathBuf {
        self._dir.path().join("audit")
    }

    /// Pid of the agent process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the agent with SIGTERM and waits for it (its files stay until drop).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().expect("wait for dbward")
    }

    /// [`Agent::stop`], asserting the agent exited successfully (its stderr in the message).
    pub fn stop_cleanly(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "dbward run exited with {status}: {}",
            self.stderr()
        );
    }

    /// Kills the agent with SIGKILL and waits for it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
