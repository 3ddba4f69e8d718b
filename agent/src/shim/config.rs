//! `[shim]` configuration: listeners, upstream, TLS and limits (serde, validated by `check`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// TLS towards the real server: `disable` (default) or `require` (encrypted, the
    /// server certificate is not verified, like libpq's `sslmode=require`).
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
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

/// TLS mode towards the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamTls {
    /// Plain text.
    #[default]
    Disable,
    /// Encrypted; fail if the server refuses TLS. The certificate is not verified.
    Require,
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
        if self.max_message_len == 0 {
            errs.push(ShimConfigError::Zero("max_message_len"));
        }
        if self.max_connections == 0 {
            errs.push(ShimConfigError::Zero("max_connections"));
        }
        errs
    }
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
        assert_eq!(errs.len(), 4, "{errs:?}");
    }
}
