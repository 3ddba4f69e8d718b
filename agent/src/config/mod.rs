//! `agent.toml`: the agent's configuration file, validated as a whole at load time.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::capture::loader::StatementPoints;

/// Where `dbward run` looks for its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/dbward/agent.toml";
/// Where the agent reads policy files by default.
pub const DEFAULT_POLICY_DIR: &str = "/etc/dbward/policies";
/// Where the agent listens for `dbward tail`, `status` and `approvals` by default.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/dbward/agent.sock";

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This host's name in events (default: the kernel's hostname).
    #[serde(default)]
    pub host: Option<String>,
    /// Unix socket for the local CLI (`dbward tail` etc.); default `/run/dbward/agent.sock`.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// What to capture.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// Policy files.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The local audit log.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// The socket shim (absent: no shim; sessions are observed, not mediated).
    #[serde(default)]
    pub shim: Option<crate::shim::config::ShimConfig>,
    /// Streaming the audit log to the central approver.
    #[serde(default)]
    pub stream: crate::stream::config::StreamConfig,
    /// The central approver for held statements (absent: approvals are local to this host,
    /// `dbward approvals approve ID`).
    #[serde(default)]
    pub approver: Option<crate::approval::remote::RemoteConfig>,
    /// Refusing direct connections to the servers (default: off).
    #[serde(default)]
    pub block: crate::block::BlockConfig,
    /// The Prometheus endpoint (absent: no metrics are served).
    #[serde(default)]
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// Holding statements of sessions that bypass the shim in the kernel (default: off).
    #[serde(default)]
    pub holds: HoldsConfig,
}

/// `[holds]`: kernel holds for sessions that bypass the shim.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HoldsConfig {
    /// Stop their statements in the kernel for a decision when policy can hold or end them
    /// (`unmediated: hold|terminate|block`), as `dbward run --hold-unmediated` does. Off,
    /// such statements are only recorded.
    #[serde(default)]
    pub unmediated: bool,
}

/// `[policy]`: where the policy files are.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `*.yaml` policy files (default `/etc/dbward/policies`); reloaded on
    /// SIGHUP and on change.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
        }
    }
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from(DEFAULT_POLICY_DIR)
}

/// `[capture]`: which PostgreSQL clusters to attach to.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Only these postmaster pids (default: every cluster on the host, including new ones).
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Extra server binaries to attach to before any cluster runs them.
    #[serde(default)]
    pub binaries: Vec<PathBuf>,
    /// Where statements are read: `auto` (one probe per statement where the binary allows,
    /// see `capture::points`) or `classic`.
    #[serde(default)]
    pub statement_points: StatementPoints,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, with the valid keys where relevant.
        message: String,
    },
}

impl AgentConfig {
    /// Parses configuration text; errors carry `path:line:column`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// Every problem of the sections that validate themselves, prefixed with the section.
    pub fn check(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .audit
            .check()
            .into_iter()
            .map(|p| format!("[audit] {p}"))
            .collect();
        if let Some(shim) = &self.shim {
            problems.extend(shim.check().into_iter().map(|p| format!("[shim] {p}")));
        }
        problems.extend(
            self.stream
                .check()
                .into_iter()
                .map(|p| format!("[stream] {p}")),
        );
        problems.extend(
            self.block
                .check(self.shim.is_some())
                .into_iter()
                .map(|p| format!("[block] {p}")),
        );
        if let Some(metrics) = &self.metrics {
            problems.extend(
                metrics
                    .check()
                    .into_iter()
                    .map(|p| format!("[metrics] {p}")),
            );
        }
        problems
    }

    /// Loads a file. A missing file at the default path means "all defaults".
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG) =>
            {
                Ok(Self::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The control socket path.
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET))
    }

    /// The host name used in events.
    pub fn host(&self) -> String {
        self.host.clone().unwrap_or_else(system_host_name)
    }

    /// The `[shim]` settings, with `shim.host_name` defaulting to [`AgentConfig::host`] (the
    /// name approval requests carry must be the host's name at the approver).
    pub fn shim_config(&self) -> Option<crate::shim::config::ShimConfig> {
        let mut shim = self.shim.clone()?;
        shim.host_name.get_or_insert_with(|| self.host());
        Some(shim)
    }
}

/// The kernel's host name (`localhost` when it cannot be read).
pub fn system_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses() {
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            "host = \"db1\"\ncontrol_socket = \"/tmp/x.sock\"\n[capture]\npids = [1, 2]\n",
        )
        .unwrap();
        assert_eq!(cfg.host(), "db1");
        assert_eq!(cfg.capture.pids, vec![1, 2]);
    }

    #[test]
    fn the_shim_names_this_host_as_the_agent_does_unless_told_otherwise() {
        let shim = "[shim]\nlisten_tcp = [\"127.0.0.1:6432\"]\nupstream = \"127.0.0.1:5432\"\n";
        let cfg = AgentConfig::parse(Path::new("a.toml"), &format!("host = \"db1\"\n{shim}"));
        let named = |cfg: AgentConfig| cfg.shim_config().and_then(|s| s.host_name);
        assert_eq!(named(cfg.unwrap()).as_deref(), Some("db1"));
        let cfg = AgentConfig::parse(
            Path::new("a.toml"),
            &format!("host = \"db1\"\n{shim}host_name = \"db1-shim\"\n"),
        );
        assert_eq!(named(cfg.unwrap()).as_deref(), Some("db1-shim"));
        let cfg = AgentConfig::parse(Path::new("a.toml"), "host = \"db1\"\n").unwrap();
        assert!(cfg.shim_config().is_none());
    }

    #[test]
    fn holds_are_off_unless_the_file_turns_them_on() {
        let off = AgentConfig::parse(Path::new("a.toml"), "").unwrap();
        assert!(!off.holds.unmediated);
        let on = AgentConfig::parse(Path::new("a.toml"), "[holds]\nunmediated = true\n").unwrap();
        assert!(on.holds.unmediated);
        let typo = AgentConfig::parse(Path::new("a.toml"), "[holds]\nunmediate = true\n");
        assert!(typo.unwrap_err().to_string().contains("unmediated"));
    }

    #[test]
    fn statement_points_are_auto_unless_the_file_says_classic() {
        let auto = AgentConfig::parse(Path::new("a.toml"), "").unwrap();
        assert_eq!(auto.capture.statement_points, StatementPoints::Auto);
        let classic = "[capture]\nstatement_points = \"classic\"\n";
        let classic = AgentConfig::parse(Path::new("a.toml"), classic).unwrap();
        assert_eq!(classic.capture.statement_points, StatementPoints::Classic);
        let bad = "[capture]\nstatement_points = \"fast\"\n";
        let err = AgentConfig::parse(Path::new("a.toml"), bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fast") && err.contains("classic"), "{err}");
    }

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let err = AgentConfig::parse(
            Path::new("a.toml"),
            "host = \"x\"\n[capture]\n  pidz = [1]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("a.toml:3:3: "), "{text}");
        assert!(text.contains("pidz") && text.contains("pids"), "{text}");
    }
}
