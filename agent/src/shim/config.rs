//! `[shim]` configuration: listeners, upstream, TLS and limits (serde, validated by `check`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};

use crate::protocol::postgres::DEFAULT_MAX_MESSAGE_LEN;

/// The shim's configuration, embedded in agent.toml as `[shim]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    /// TCP addresses clients connect to, e.g. `["127.0.0.1:5432"]`.
    #[serde(default)]
    pub listen_tcp: Vec<SocketAddr>,
    /// Unix sockets clients connect to, e.g. `/var/run/postgresql/.s.PGSQL.5432`.
    #[serde(default)]
    pub listen_unix: Vec<UnixListen>,
    /// The real server: `host:port`, or the absolute path of its unix socket
    /// (e.g. `/var/run/postgresql/.s.PGSQL.5433`).
    pub upstream: String,
    /// TLS towards the real server, as libpq's `sslmode`: `disable` (default), `require`
    /// (encrypted, certificate not verified), `verify-ca` (signed by `upstream_ca`) or
    /// `verify-full` (also issued for the server's name).
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// PEM bundle of the CAs trusted to sign the real server's certificate; required by
    /// `verify-ca` and `verify-full` (the system's roots are never used).
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// The name `verify-full` checks the server's certificate against (and sends as SNI);
    /// default: the host of `upstream`. Required for `verify-full` to a unix socket.
    #[serde(default)]
    pub upstream_tls_server_name: Option<String>,
    /// PEM client certificate chain presented to the real server (for `cert`
    /// authentication or `clientcert=verify-full` in pg_hba.conf); with `upstream_tls_key`.
    #[serde(default)]
    pub upstream_tls_cert: Option<PathBuf>,
    /// PEM private key for `upstream_tls_cert`.
    #[serde(default)]
    pub upstream_tls_key: Option<PathBuf>,
    /// PEM certificate chain presented to clients that send SSLRequest; with `tls_key`,
    /// enables TLS termination. Without it SSLRequest is answered "N" (plain text).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs whose client certificates are accepted. With it, TLS clients
    /// are asked for a certificate; the verified certificate's subject becomes the session's
    /// `tls_subject` (policy identities can match on it).
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// `optional` (default: a TLS client without a certificate is served without a subject)
    /// or `required` (the TLS handshake fails without a valid certificate).
    #[serde(default)]
    pub tls_client_cert: ClientCert,
    /// Largest message accepted from either side, in bytes (PostgreSQL's own limit, 1 GiB,
    /// by default). A longer length field closes the connection with an error.
    #[serde(default = "default_max_message_len")]
    pub max_message_len: usize,
    /// Concurrent client connections; beyond it clients get "too many connections" (53300).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client may take to finish startup, or to finish a message it has begun,
    /// before its connection is closed.
    #[serde(default = "default_stall_timeout_secs")]
    pub stall_timeout_secs: u64,
    /// Seconds a session may sit idle (nothing from the client) before it is closed;
    /// 0 keeps idle sessions open forever.
    #[serde(default)]
    pub idle_timeout_secs: u64,
    /// This host's name in approval requests and session facts (default: the OS hostname).
    #[serde(default)]
    pub host_name: Option<String>,
}

/// One unix-socket listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnixListen {
    /// Socket path; a stale socket file there is replaced.
    pub path: PathBuf,
    /// Octal permission bits of the socket file, e.g. `"0777"` (PostgreSQL's default).
    #[serde(default = "default_unix_mode")]
    pub mode: String,
}

/// TLS mode towards the real server, named as libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Plain text.
    #[default]
    Disable,
    /// Encrypted; fail if the server refuses TLS. The certificate is not verified.
    Require,
    /// Encrypted; the certificate must chain to a CA in `upstream_ca`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must be issued for the server's name.
    VerifyFull,
}

impl UpstreamTls {
    /// The setting's value as written in agent.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether TLS clients must present a certificate (with `tls_client_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCert {
    /// Asked for, not required.
    #[default]
    Optional,
    /// The handshake fails without a certificate signed by `tls_client_ca`.
    Required,
}

/// Where the real server listens, parsed from [`ShimConfig::upstream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// `host:port`.
    Tcp(String),
    /// Unix socket path.
    Unix(PathBuf),
}

/// One problem in the `[shim]` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShimConfigError {
    /// Nothing to listen on.
    #[error("shim: no listeners; set listen_tcp and/or listen_unix")]
    NoListeners,
    /// Upstream is neither `host:port` nor an absolute path.
    #[error(
        "shim.upstream {0:?}: expected host:port (e.g. 127.0.0.1:5433) or an absolute unix socket path"
    )]
    BadUpstream(String),
    /// Bad octal mode.
    #[error("shim.listen_unix {path}: mode {mode:?} is not an octal permission like \"0777\"")]
    BadMode {
        /// The socket path.
        path: String,
        /// The mode given.
        mode: String,
    },
    /// Only one of cert/key set.
    #[error("shim: tls_cert and tls_key must be set together")]
    HalfTls,
    /// Client certificates configured without TLS termination.
    #[error(
        "shim: tls_client_ca needs tls_cert and tls_key (client certificates are only asked for in TLS sessions)"
    )]
    ClientCaWithoutTls,
    /// Limit set to zero.
    #[error("shim.{0} must be greater than 0")]
    Zero(&'static str),
    /// A configured file cannot be used.
    #[error("shim.{key} {path}: {detail}")]
    File {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: String,
        /// Why it cannot be used.
        detail: String,
    },
    /// Server certificate verification without the CAs to verify against.
    #[error(
        "shim.upstream_tls = \"{0}\" needs shim.upstream_ca, the PEM bundle of the CAs that sign the database server's certificate"
    )]
    UpstreamCaMissing(UpstreamTls),
    /// CAs given to a mode that does not verify the server's certificate.
    #[error(
        "shim.upstream_ca has no effect with upstream_tls = \"{0}\" (the server's certificate is not verified); use \"verify-ca\" or \"verify-full\""
    )]
    UpstreamCaUnused(UpstreamTls),
    /// A TLS setting for the upstream connection while it is plain text.
    #[error("shim.{0} has no effect with upstream_tls = \"disable\"")]
    UpstreamTlsOff(&'static str),
    /// Only one of the upstream client certificate and its key.
    #[error("shim.{set} needs shim.{missing}: the client certificate and its key go together")]
    HalfUpstreamCert {
        /// The one set.
        set: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// `verify-full` to a unix socket, where there is no host name to check.
    #[error(
        "shim.upstream_tls = \"verify-full\" to a unix socket needs shim.upstream_tls_server_name, the name the server's certificate must carry"
    )]
    UnixServerName,
    /// A server name a certificate cannot carry (the setting, or the upstream host).
    #[error(
        "shim.upstream_tls_server_name: {0:?} is not a DNS name or IP address a certificate can be checked against"
    )]
    BadServerName(String),
}

fn default_max_message_len() -> usize {
    DEFAULT_MAX_MESSAGE_LEN
}

fn default_max_connections() -> usize {
    4096
}

fn default_stall_timeout_secs() -> u64 {
    60
}

fn default_unix_mode() -> String {
    "0777".into()
}

impl UnixListen {
    /// The permission bits, when `mode` is valid octal.
    pub fn mode_bits(&self) -> Option<u32> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
    }
}

impl ShimConfig {
    /// A configuration with defaults, forwarding to `upstream`.
    pub fn new(upstream: impl Into<String>) -> Self {
        Self {
            listen_tcp: Vec::new(),
            listen_unix: Vec::new(),
            upstream: upstream.into(),
            upstream_tls: UpstreamTls::default(),
            upstream_ca: None,
            upstream_tls_server_name: None,
            upstream_tls_cert: None,
            upstream_tls_key: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_cert: ClientCert::default(),
            max_message_len: default_max_message_len(),
            max_connections: default_max_connections(),
            stall_timeout_secs: default_stall_timeout_secs(),
            idle_timeout_secs: 0,
            host_name: None,
        }
    }

    /// The upstream address, when valid.
    pub fn upstream_addr(&self) -> Option<UpstreamAddr> {
        let up = self.upstream.trim();
        if up.starts_with('/') {
            return Some(UpstreamAddr::Unix(PathBuf::from(up)));
        }
        let (host, port) = up.rsplit_once(':')?;
        (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| UpstreamAddr::Tcp(up.to_owned()))
    }

    /// The name the server's certificate is checked against: `upstream_tls_server_name`,
    /// else the host of a TCP `upstream`. `None` when there is none or it is not a valid
    /// DNS name or IP address.
    pub fn upstream_server_name(&self) -> Option<ServerName<'static>> {
        let name = match (&self.upstream_tls_server_name, self.upstream_addr()) {
            (Some(name), _) => name.clone(),
            (None, Some(UpstreamAddr::Tcp(addr))) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            }
            (None, Some(UpstreamAddr::Unix(_)) | None) => return None,
        };
        ServerName::try_from(name).ok()
    }

    /// Stall limit as a duration.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_secs.max(1))
    }

    /// Idle limit, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// Every problem in the section (not just the first).
    pub fn check(&self) -> Vec<ShimConfigError> {
        let mut errs = Vec::new();
        if self.listen_tcp.is_empty() && self.listen_unix.is_empty() {
            errs.push(ShimConfigError::NoListeners);
        }
        if self.upstream_addr().is_none() {
            errs.push(ShimConfigError::BadUpstream(self.upstream.clone()));
        }
        for u in &self.listen_unix {
            if u.mode_bits().is_none() {
                errs.push(ShimConfigError::BadMode {
                    path: u.path.display().to_string(),
                    mode: u.mode.clone(),
                });
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            errs.push(ShimConfigError::HalfTls);
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            errs.push(ShimConfigError::ClientCaWithoutTls);
        }
        errs.extend(self.check_upstream_tls());
        let files = [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("tls_client_ca", &self.tls_client_ca),
            ("upstream_ca", &self.upstream_ca),
            ("upstream_tls_cert", &self.upstream_tls_cert),
            ("upstream_tls_key", &self.upstream_tls_key),
        ];
        for (key, path) in files {
            if let Some(e) = path.as_deref().and_then(|p| unreadable(key, p)) {
                errs.push(e);
            }
        }
        if self.max_message_len == 0 {
            errs.push(ShimConfigError::Zero("max_message_len"));
        }
        if self.max_connections == 0 {
            errs.push(ShimConfigError::Zero("max_connections"));
        }
        errs
    }

    /// Combinations of the `upstream_*` TLS settings that cannot work as written.
    fn check_upstream_tls(&self) -> Vec<ShimConfigError> {
        let mode = self.upstream_tls;
        let mut errs = Vec::new();
        match (mode, &self.upstream_ca) {
            (UpstreamTls::VerifyCa | UpstreamTls::VerifyFull, None) => {
                errs.push(ShimConfigError::UpstreamCaMissing(mode));
            }
            (UpstreamTls::Disable | UpstreamTls::Require, Some(_)) => {
                errs.push(ShimConfigError::UpstreamCaUnused(mode));
            }
            _ => {}
        }
        if mode == UpstreamTls::Disable {
            let set = [
                (
                    "upstream_tls_server_name",
                    self.upstream_tls_server_name.is_some(),
                ),
                ("upstream_tls_cert", self.upstream_tls_cert.is_some()),
                ("upstream_tls_key", self.upstream_tls_key.is_some()),
            ];
            errs.extend(
                set.into_iter()
                    .filter(|(_, set)| *set)
                    .map(|(key, _)| ShimConfigError::UpstreamTlsOff(key)),
            );
        }
        match (&self.upstream_tls_cert, &self.upstream_tls_key) {
            (Some(_), None) => errs.push(ShimConfigError::HalfUpstreamCert {
                set: "upstream_tls_cert",
                missing: "upstream_tls_key",
            }),
            (None, Some(_)) => errs.push(ShimConfigError::HalfUpstreamCert {
                set: "upstream_tls_key",
                missing: "upstream_tls_cert",
            }),
            _ => {}
        }
        if self.upstream_server_name().is_none() {
            match (&self.upstream_tls_server_name, self.upstream_addr()) {
                (Some(name), _) => errs.push(ShimConfigError::BadServerName(name.clone())),
                (None, Some(UpstreamAddr::Unix(_))) if mode == UpstreamTls::VerifyFull => {
                    errs.push(ShimConfigError::UnixServerName);
                }
                (None, Some(UpstreamAddr::Tcp(addr))) if mode == UpstreamTls::VerifyFull => {
                    errs.push(ShimConfigError::BadServerName(addr));
                }
                _ => {}
            }
        }
        errs
    }
}

/// Why the file a setting names cannot be read, if it cannot.
fn unreadable(key: &'static str, path: &Path) -> Option<ShimConfigError> {
    let detail = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => return None,
        Ok(_) => "not a regular file".to_owned(),
        Err(e) => e.to_string(),
    };
    Some(ShimConfigError::File {
        key,
        path: path.display().to_string(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_postgres_defaults() {
        let c: ShimConfig = serde_json::from_str(
            r#"{"listen_tcp": ["127.0.0.1:5432"], "upstream": "127.0.0.1:5433"}"#,
        )
        .expect("valid");
        assert_eq!(c.max_message_len, 1 << 30);
        assert_eq!(c.upstream_tls, UpstreamTls::Disable);
        assert!(c.check().is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<ShimConfig, _> =
            serde_json::from_str(r#"{"upstream": "x:1", "listen_tpc": []}"#);
        assert!(r.is_err());
    }

    #[test]
    fn upstream_forms_are_parsed() {
        let cases = [
            (
                "127.0.0.1:5433",
                Some(UpstreamAddr::Tcp("127.0.0.1:5433".into())),
            ),
            (
                "db.local:5432",
                Some(UpstreamAddr::Tcp("db.local:5432".into())),
            ),
            (
                "/run/postgresql/.s.PGSQL.5433",
                Some(UpstreamAddr::Unix("/run/postgresql/.s.PGSQL.5433".into())),
            ),
            ("localhost", None),
            (":5432", None),
            ("h:99999", None),
        ];
        for (s, want) in cases {
            assert_eq!(ShimConfig::new(s).upstream_addr(), want, "{s}");
        }
    }

    #[test]
    fn check_collects_every_problem() {
        let mut c = ShimConfig::new("nowhere");
        c.tls_cert = Some("/x".into());
        c.max_connections = 0;
        c.listen_unix.push(UnixListen {
            path: "/tmp/s".into(),
            mode: "rwx".into(),
        });
        let errs = c.check();
        assert_eq!(errs.len(), 5, "{errs:?}");
    }

    #[test]
    fn upstream_tls_modes_are_named_as_libpq_sslmode() {
        for mode in ["disable", "require", "verify-ca", "verify-full"] {
            let c: ShimConfig = serde_json::from_str(&format!(
                r#"{{"upstream": "127.0.0.1:5433", "upstream_tls": "{mode}"}}"#
            ))
            .expect("valid mode");
            assert_eq!(c.upstream_tls.as_str(), mode);
        }
        let r: Result<ShimConfig, _> =
            serde_json::from_str(r#"{"upstream": "x:1", "upstream_tls": "verify_full"}"#);
        assert!(r.is_err());
    }

    #[test]
    fn upstream_server_name_defaults_to_the_upstream_host() {
        let name = |c: &ShimConfig| c.upstream_server_name().map(|n| n.to_str().into_owned());
        let mut c = ShimConfig::new("db.example.com:5432");
        assert_eq!(name(&c).as_deref(), Some("db.example.com"));
        c.upstream = "[::1]:5432".into();
        assert_eq!(name(&c).as_deref(), Some("::1"));
        c.upstream = "/run/postgresql/.s.PGSQL.5432".into();
        assert_eq!(name(&c), None);
        c.upstream_tls_server_name = Some("pg.internal".into());
        assert_eq!(name(&c).as_deref(), Some("pg.internal"));
    }

    #[test]
    fn bad_upstream_tls_combinations_name_their_key() {
        let ca = tempfile::NamedTempFile::new().expect("temp file");
        let ca = ca.path().to_owned();
        let base = |mode| {
            let mut c = ShimConfig::new("127.0.0.1:5433");
            c.listen_tcp = vec!["127.0.0.1:6432".parse().expect("addr")];
            c.upstream_tls = mode;
            c
        };
        let problems = |c: ShimConfig| {
            c.check()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let mut ok = base(UpstreamTls::VerifyFull);
        ok.upstream_ca = Some(ca.clone());
        assert!(problems(ok.clone()).is_empty());

        let cases: Vec<(ShimConfig, &str)> = vec![
            (
                base(UpstreamTls::VerifyFull),
                "shim.upstream_tls = \"verify-full\" needs shim.upstream_ca",
            ),
            (
                base(UpstreamTls::VerifyCa),
                "shim.upstream_tls = \"verify-ca\" needs shim.upstream_ca",
            ),
            (
                ShimConfig {
                    upstream_tls: UpstreamTls::Require,
                    ..ok.clone()
                },
                "shim.upstream_ca has no effect with upstream_tls = \"require\"",
            ),
            (
                ShimConfig {
                    upstream_ca: Some("/nonexistent/ca.pem".into()),
                    ..ok.clone()
                },
                "shim.upstream_ca /nonexistent/ca.pem: No such file",
            ),
            (
                ShimConfig {
                    upstream_tls_cert: Some(ca.clone()),
                    ..ok.clone()
                },
                "shim.upstream_tls_cert needs shim.upstream_tls_key",
            ),
            (
                ShimConfig {
                    upstream_tls_key: Some(ca.clone()),
                    ..ok.clone()
                },
                "shim.upstream_tls_key needs shim.upstream_tls_cert",
            ),
            (
                ShimConfig {
                    upstream: "/run/postgresql/.s.PGSQL.5432".into(),
                    ..ok.clone()
                },
                "shim.upstream_tls = \"verify-full\" to a unix socket needs shim.upstream_tls_server_name",
            ),
            (
                ShimConfig {
                    upstream_tls_server_name: Some("bad name!".into()),
                    ..ok.clone()
                },
                "shim.upstream_tls_server_name: \"bad name!\" is not a DNS name",
            ),
            (
                ShimConfig {
                    upstream_tls_server_name: Some("db".into()),
                    ..base(UpstreamTls::Disable)
                },
                "shim.upstream_tls_server_name has no effect with upstream_tls = \"disable\"",
            ),
        ];
        for (config, expected) in cases {
            let found = problems(config);
            assert!(
                found.len() == 1 && found[0].starts_with(expected),
                "expected {expected:?}, got {found:?}"
            );
        }
        let mut unix = ok;
        unix.upstream = "/run/postgresql/.s.PGSQL.5432".into();
        unix.upstream_tls_server_name = Some("db.example.com".into());
        assert!(problems(unix).is_empty());
    }
}
