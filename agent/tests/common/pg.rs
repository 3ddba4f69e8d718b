//! A throwaway PostgreSQL 15 server for tests: initdb'd once per build into a template,
//! copied per test, run as the `postgres` user on a free loopback port, stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// Passwords of the test roles with password authentication.
pub const SCRAM_USER: (&str, &str) = ("scram_user", "scram-secret");
/// md5-authenticated role.
pub const MD5_USER: (&str, &str) = ("md5_user", "md5-secret");

/// A running server.
pub struct Pg {
    dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

fn template() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dbward-pg15-template");
    if path.join("PG_VERSION").exists() {
        return path;
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if path.join("PG_VERSION").exists() {
        return path;
    }
    let staging = tempfile::Builder::new()
        .prefix("dbward-pg15-staging-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("staging dir")
        .keep();
    run(Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&staging));
    run(as_postgres(&format!("{BIN}/initdb"))
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&staging));
    let hba = format!(
        "local all all trust\n\
         host all {s} 127.0.0.1/32 scram-sha-256\n\
         host all {m} 127.0.0.1/32 md5\n\
         host all all 127.0.0.1/32 trust\n",
        s = SCRAM_USER.0,
        m = MD5_USER.0
    );
    std::fs::write(staging.join("pg_hba.conf"), hba).expect("pg_hba.conf");
    if std::fs::rename(&staging, &path).is_err() {
        std::fs::remove_dir_all(&staging).ok();
    }
    path
}

/// TLS for a test server: its certificate, the CA its clients' certificates must chain to,
/// and pg_hba.conf rules that use them.
pub struct PgTls {
    /// PEM certificate the server presents.
    pub cert: String,
    /// PEM private key of `cert`.
    pub key: String,
    /// PEM CA bundle for client certificates (`ssl_ca_file`), if any.
    pub client_ca: Option<String>,
    /// pg_hba.conf lines placed before the harness's own (e.g. `hostssl … cert`).
    pub hba_first: Vec<String>,
}

impl Pg {
    /// Starts a fresh server with the test roles created.
    pub fn start() -> Pg {
        Self::start_inner(None)
    }

    /// Like [`Pg::start`], with TLS enabled (self-signed certificate).
    pub fn start_with_tls() -> Pg {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        Self::start_inner(Some(PgTls {
            cert: cert.cert.pem(),
            key: cert.signing_key.serialize_pem(),
            client_ca: None,
            hba_first: Vec::new(),
        }))
    }

    /// Like [`Pg::start`], with TLS as `tls` says.
    pub fn start_with(tls: PgTls) -> Pg {
        Self::start_inner(Some(tls))
    }

    fn start_inner(tls: Option<PgTls>) -> Pg {
        let template = template();
        let dir = tempfile::Builder::new()
            .prefix("dbward-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        run(Command::new("cp").arg("-a").arg(&template).arg(&data));
        let port = free_port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c shared_buffers=16MB",
            dir.path().display()
        );
        if let Some(tls) = tls {
            std::fs::write(data.join("server.crt"), &tls.cert).expect("server.crt");
            std::fs::write(data.join("server.key"), &tls.key).expect("server.key");
            run(Command::new("chmod")
                .arg("0600")
                .arg(data.join("server.key")));
            opts.push_str(" -c ssl=on");
            if let Some(ca) = &tls.client_ca {
                std::fs::write(data.join("client_ca.crt"), ca).expect("client_ca.crt");
                opts.push_str(" -c ssl_ca_file=client_ca.crt");
            }
            if !tls.hba_first.is_empty() {
                let hba = data.join("pg_hba.conf");
                let rest = std::fs::read_to_string(&hba).expect("pg_hba.conf");
                std::fs::write(&hba, format!("{}\n{rest}", tls.hba_first.join("\n")))
                    .expect("pg_hba.conf");
            }
        }
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path()));
        run(Command::new("chmod").arg("0755").arg(dir.path()));
        run(as_postgres(&format!("{BIN}/pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.path().join("log"))
            .args(["-o", &opts, "start"]));
        let pg = Pg { dir, port };
        pg.psql_direct(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'; SET password_encryption = 'md5'; CREATE ROLE {} LOGIN PASSWORD '{}'; GRANT ALL ON SCHEMA public TO PUBLIC;",
            SCRAM_USER.0, SCRAM_USER.1, MD5_USER.0, MD5_USER.1
        ));
        pg
    }

    /// Directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's unix socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join(format!(".s.PGSQL.{}", self.port))
    }

    /// `host:port` for the shim's upstream.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A temp dir for the test's own files (sockets, certificates).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL as postgres directly against the server, returning stdout.
    pub fn psql_direct(&self, sql: &str) -> String {
        let out = run(Command::new(format!("{BIN}/psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-c", sql]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = as_postgres(&format!("{BIN}/pg_ctl"))
            .args(["-w", "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
