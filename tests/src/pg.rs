//! A throwaway PostgreSQL cluster: `initdb` in a temp dir as the `postgres` user, its own
//! port and unix socket directory, TLS on with a fresh self-signed certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::free_port;

/// Debian's PostgreSQL binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Options for [`Cluster::start`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `initdb --auth` (`trust`, `md5`, `scram-sha-256`).
    pub auth: &'static str,
    /// Extra `postgresql.conf` lines.
    pub settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            auth: "trust",
            settings: Vec::new(),
        }
    }
}

/// A running cluster, stopped and deleted on drop.
pub struct Cluster {
    /// Its temp directory (data dir, socket dir, log).
    pub dir: PathBuf,
    /// Data directory.
    pub data: PathBuf,
    /// Unix socket directory.
    pub socket_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Postmaster pid.
    pub pid: u32,
}

fn run_as_postgres(cmd: &str, args: &[&str]) -> Output {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--", &format!("{PG_BIN}/{cmd}")])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {cmd} as postgres (is the postgresql package installed?): {e}")
        });
    assert!(
        output.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn chown_postgres(path: &Path) {
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the postgres user does not exist: install the postgresql package");
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).expect("chown to postgres");
}

impl Cluster {
    /// Starts a cluster with default options.
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a cluster.
    pub fn start_with(options: ClusterOptions) -> Self {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("dbward-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir")
            .keep();
        chown_postgres(&dir);
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, "postgres\n").expect("write password file");
        chown_postgres(&pwfile);
        run_as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth",
                options.auth,
                "--pwfile",
                pwfile.to_str().expect("utf-8 path"),
                "-E",
                "UTF8",
                "--locale",
                "C",
            ],
        );
        write_certificate(&data);
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nmax_connections = 300\nfsync = off\n",
            dir.display()
        );
        if options.auth != "trust" {
            conf.push_str(&format!(
                "password_encryption = '{}'\n",
                if options.auth == "md5" {
                    "md5"
                } else {
                    "scram-sha-256"
                }
            ));
        }
        for line in &options.settings {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).expect("write postgresql.auto.conf");
        let mut cluster = Self {
            socket_dir: dir.clone(),
            dir,
            data,
            port,
            pid: 0,
        };
        cluster.start_server();
        cluster
    }

    /// (Re)starts the server; updates `pid`.
    pub fn start_server(&mut self) {
        let log = self.dir.join("log");
        run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        let pidfile =
            std::fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        self.pid = pidfile
            .lines()
            .next()
            .and_then(|l| l.parse().ok())
            .expect("pid in postmaster.pid");
    }

    /// Stops the server (fast shutdown).
    pub fn stop_server(&self) {
        run_as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().expect("utf-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// A libpq connection string over TCP.
    pub fn tcp_url(&self, user: &str, db: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port)
    }

    /// A libpq connection string over the unix socket.
    pub fn unix_url(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// Runs `psql` with a connection string and extra args; panics on failure.
    pub fn psql(&self, conninfo: &str, args: &[&str]) -> String {
        let output = Command::new(format!("{PG_BIN}/psql"))
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", conninfo])
            .args(args)
            .env("PGPASSWORD", "postgres")
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs SQL as the superuser over the unix socket.
    pub fn admin(&self, sql: &str) -> String {
        self.psql(&self.unix_url("postgres", "postgres"), &["-c", sql])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl")])
            .args([
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed server certificate for `localhost`/127.0.0.1 in the data dir.
fn write_certificate(data: &Path) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate certificate");
    let crt = data.join("server.crt");
    let key = data.join("server.key");
    std::fs::write(&crt, cert.cert.pem()).expect("write server.crt");
    std::fs::write(&key, cert.signing_key.serialize_pem()).expect("write server.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    chown_postgres(&crt);
    chown_postgres(&key);
}
