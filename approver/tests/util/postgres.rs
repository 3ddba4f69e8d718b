//! A throwaway PostgreSQL 15 server for tests: temp data dir owned by `postgres`, free
//! loopback port, trust auth, stopped on drop.

use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL.
pub struct Postgres {
    /// Connection URL for the `postgres` database.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id -u postgres");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres uid");
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id -g postgres");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres gid");
    (uid, gid)
}

impl Postgres {
    /// Initialises and starts a server; panics with the reason when it cannot.
    pub fn start() -> Self {
        assert!(
            Path::new(BIN).join("postgres").exists(),
            "PostgreSQL 15 binaries not found in {BIN} (apt-get install postgresql-15)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (uid, gid) = postgres_ids();
        chown(dir.path(), Some(uid), Some(gid)).expect("chown data dir to postgres");
        let data = dir.path().join("data");
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/initdb"), "-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{BIN}/postgres"), "-D"])
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
                "-k",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let ready = Command::new(format!("{BIN}/pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "30"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_isready");
        assert!(ready.success(), "postgres not ready");
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            child,
            _dir: dir,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // runuser forwards SIGTERM to postgres: a "smart" shutdown; then reap it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
