//! A throwaway MariaDB server: `mariadb-install-db` in a temp dir as the `mysql` user, its
//! own TCP port on 127.0.0.1 and its own unix socket; `root@localhost` authenticates by
//! `unix_socket` (as Debian's does), so root on the host is MariaDB's root.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// A running server, stopped and deleted on drop.
pub struct MariaServer {
    /// Its temp directory (data dir, socket, log).
    pub dir: tempfile::TempDir,
    /// Unix socket path.
    pub socket: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// `mariadbd`'s pid.
    pub pid: u32,
    child: Child,
}

fn checked(what: &str, output: std::io::Result<Output>) -> Output {
    let output = output.unwrap_or_else(|e| {
        panic!("cannot run {what} (is the mariadb-server package installed?): {e}")
    });
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl MariaServer {
    /// Initialises a data directory and starts `mariadbd` on it; waits until it answers.
    pub fn start() -> Self {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("dbward-mariadb")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod temp dir");
        let data = dir.path().join("data");
        checked(
            "mariadb-install-db",
            Command::new("runuser")
                .args(["-u", "mysql", "--", "mariadb-install-db", "--no-defaults"])
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
                .output(),
        );
        let socket = dir.path().join("mysqld.sock");
        let port = free_port();
        let child = Command::new("runuser")
            .args(["-u", "mysql", "--", "mariadbd", "--no-defaults"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mariadbd.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start mariadbd (is the mariadb-server package installed?)");
        let pid_file = dir.path().join("mariadbd.pid");
        let mut server = Self {
            dir,
            socket,
            port,
            pid: 0,
            child,
        };
        let pid = wait_for(Duration::from_secs(60), || {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let ping = Command::new("mariadb-admin")
                .args(["--no-defaults", "-u", "root", "--socket"])
                .arg(&server.socket)
                .arg("ping")
                .output()
                .ok()?;
            ping.status.success().then_some(pid)
        });
        server.pid = pid.unwrap_or_else(|| {
            panic!(
                "mariadbd did not come up within 60 s; its log:\n{}",
                std::fs::read_to_string(server.dir.path().join("error.log")).unwrap_or_default()
            )
        });
        server
    }

    /// Runs `sql` as root over the unix socket; returns its output.
    pub fn admin(&self, sql: &str) -> String {
        let output = checked(
            &format!("mariadb -e {sql:?}"),
            Command::new("mariadb")
                .args(["--no-defaults", "-N", "-B", "-u", "root", "--socket"])
                .arg(&self.socket)
                .args(["-e", sql])
                .output(),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A `mariadb` client command for `user`/`password` over TCP to 127.0.0.1, in `db`.
    pub fn tcp_client(&self, user: &str, password: &str, db: &str) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.args(["--no-defaults", "-N", "-B", "-h", "127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            .arg(format!("--password={password}"))
            .arg(db);
        cmd
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        if self.pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}
