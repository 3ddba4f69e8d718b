//! `approver.toml`: the service's configuration model, loading and validation.
//!
//! Every table rejects unknown fields, and [`Config::check`] reports *all* problems at once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dbward_approval_api::PrincipalKind;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API and web UI listen on, e.g. `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Storage: `sqlite:///var/lib/dbward-approver/approver.db` (default kind) or
    /// `postgres://user@host/db` (several replicas may share it).
    pub storage_url: String,
    /// ed25519 signing key (base64 seed); generated with mode 0600 when absent.
    pub signing_key_path: PathBuf,
    /// External base URL of this service, used in links sent to channels and as the
    /// OIDC redirect base (e.g. `https://approver.example.com`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes (default 1 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest decompressed event batch, in bytes (default 16 MiB).
    #[serde(default = "default_max_events")]
    pub max_event_batch_bytes: usize,
    /// Seconds between sweeps that expire stale pending requests (default 5).
    #[serde(default = "default_sweep")]
    pub sweep_interval_secs: u64,
    /// Milliseconds between checks for decisions made by other replicas (default 200).
    #[serde(default = "default_poll")]
    pub replica_poll_ms: u64,
    /// Longest long-poll a client may ask for, in seconds (default 60).
    #[serde(default = "default_max_wait")]
    pub max_wait_secs: u64,
    /// Agents: one entry per database host.
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
    /// Approver tokens for the CLI and pipelines.
    #[serde(default)]
    pub approver_tokens: Vec<ApproverToken>,
    /// The directory of principals (people, AI agents, services).
    #[serde(default)]
    pub principals: Vec<PrincipalEntry>,
    /// Notification channels.
    #[serde(default)]
    pub channels: ChannelsConfig,
    /// OpenID Connect login for the web UI.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// TLS on the listener (otherwise plain HTTP, e.g. behind a TLS proxy).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// TLS settings, with optional client certificates for agents (mTLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert_path: PathBuf,
    /// Server private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// CA (PEM) that client certificates must chain to; clients without a certificate
    /// are still served (browsers, Slack, Teams).
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
    /// Accept a host token only with a client certificate whose DNS name is the host.
    #[serde(default)]
    pub require_host_certificates: bool,
}

fn default_max_body() -> usize {
    1 << 20
}
fn default_max_events() -> usize {
    16 << 20
}
fn default_sweep() -> u64 {
    5
}
fn default_poll() -> u64 {
    200
}
fn default_max_wait() -> u64 {
    60
}

/// One agent host and its bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// Host name; requests and event batches must carry exactly this `host`.
    pub name: String,
    /// Bearer token the agent on that host presents.
    pub token: String,
}

/// A bearer token that acts as one principal (CLI, pipelines).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverToken {
    /// The token.
    pub token: String,
    /// Principal name it authenticates as.
    pub principal: String,
}

/// One principal of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalEntry {
    /// Unique name.
    pub name: String,
    /// `human`, `ai_agent` or `service`; only humans may approve.
    pub kind: PrincipalKind,
    /// Groups (approver groups, emergency groups).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The human accountable for this principal (never may approve its requests).
    #[serde(default)]
    pub owner: Option<String>,
    /// Slack user id (`U0123…`) for Slack buttons.
    #[serde(default)]
    pub slack_user_id: Option<String>,
    /// Microsoft Teams user (AAD object id) for Teams actions.
    #[serde(default)]
    pub teams_user_id: Option<String>,
    /// E-mail, matched against the OIDC `email` claim.
    #[serde(default)]
    pub email: Option<String>,
    /// OIDC `sub` claim.
    #[serde(default)]
    pub oidc_subject: Option<String>,
}

/// Notification channels; each is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Slack app.
    #[serde(default)]
    pub slack: Option<SlackConfig>,
    /// Microsoft Teams.
    #[serde(default)]
    pub teams: Option<TeamsConfig>,
    /// Generic outbound webhooks.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// Slack app settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Web API base (default `https://slack.com/api`); tests point it at a fake.
    #[serde(default = "default_slack_api")]
    pub api_base: String,
    /// Bot token (`xoxb-…`) with `chat:write`.
    pub bot_token: String,
    /// Channel id requests are posted to.
    pub channel: String,
    /// The app's signing secret (verifies the interactivity callbacks).
    pub signing_secret: String,
}

fn default_slack_api() -> String {
    "https://slack.com/api".to_string()
}

/// Microsoft Teams settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    /// Incoming webhook (or bot relay) URL the Adaptive Cards are posted to.
    pub webhook_url: String,
    /// Base64 HMAC secret of the Teams outgoing webhook that calls back
    /// `/api/v1/channels/teams/callback`.
    pub callback_secret: String,
}

/// A generic outbound webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URL.
    pub url: String,
    /// HMAC-SHA256 secret for the `X-Dbward-Signature` header.
    pub secret: String,
}

/// OpenID Connect settings for the web UI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL; `<issuer>/.well-known/openid-configuration` is fetched.
    pub issuer: String,
    /// Client id registered at the identity provider.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or schema error.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// Semantic problems, all of them.
    #[error("{path}: invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        /// File.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks config text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every semantic problem: duplicate names and tokens, dangling references, weak
    /// tokens, unsupported storage.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.storage_url.starts_with("sqlite:") || self.storage_url.starts_with("postgres:")) {
            problems.push(format!(
                "storage_url {:?}: use sqlite:///path/file.db or postgres://…",
                self.storage_url
            ));
        }
        let mut tokens = HashSet::new();
        let all_tokens = self
            .hosts
            .iter()
            .map(|h| (format!("host {:?}", h.name), &h.token))
            .chain(
                self.approver_tokens
                    .iter()
                    .map(|t| (format!("approver token of {:?}", t.principal), &t.token)),
            );
        for (what, token) in all_tokens {
            if token.len() < 16 {
                problems.push(format!("{what}: token shorter than 16 characters"));
            }
            if !tokens.insert(token.clone()) {
                problems.push(format!("{what}: token used twice"));
            }
        }
        let mut hosts = HashSet::new();
        for h in &self.hosts {
            if !hosts.insert(&h.name) {
                problems.push(format!("host {:?} listed twice", h.name));
            }
        }
        let mut names = HashSet::new();
        for p in &self.principals {
            if !names.insert(p.name.as_str()) {
                problems.push(format!("principal {:?} listed twice", p.name));
            }
        }
        for p in &self.principals {
            if let Some(owner) = &p.owner
                && !names.contains(owner.as_str())
            {
                problems.push(format!(
                    "principal {:?}: owner {owner:?} is not in [[principals]]",
                    p.name
                ));
            }
        }
        for t in &self.approver_tokens {
            if !names.contains(t.principal.as_str()) {
                problems.push(format!(
                    "approver token: principal {:?} is not in [[principals]]",
                    t.principal
                ));
            }
        }
        if let Some(tls) = &self.tls
            && tls.require_host_certificates
            && tls.client_ca_path.is_none()
        {
            problems.push("tls.require_host_certificates needs tls.client_ca_path (the CA of the agents' certificates)".into());
        }
        if let Some(teams) = &self.channels.teams {
            use base64::Engine;
            if base64::engine::general_purpose::STANDARD
                .decode(&teams.callback_secret)
                .is_err()
            {
                problems.push("channels.teams.callback_secret: not base64 (paste the security token Teams shows)".into());
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
listen = "127.0.0.1:0"
storage_url = "sqlite::memory:"
signing_key_path = "/tmp/k"
"#;

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = Config::parse(BASE, Path::new("a.toml")).expect("valid");
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_wait_secs, 60);
        assert!(c.channels.slack.is_none());
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../approver.example.toml");
        let c = Config::parse(text, Path::new("approver.example.toml"))
            .expect("example config is valid");
        assert_eq!(c.principals.len(), 4);
        assert!(c.channels.slack.is_some() && c.channels.teams.is_some() && c.oidc.is_some());
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let err = Config::parse(&format!("{BASE}\nlisten_addr = 1\n"), Path::new("a.toml"))
            .expect_err("unknown field");
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let text = format!(
            r#"{BASE}
[[hosts]]
name = "db1"
token = "short"
[[hosts]]
name = "db1"
token = "short"
[[approver_tokens]]
token = "0123456789abcdef0123"
principal = "ghost"
[[principals]]
name = "bot"
kind = "ai_agent"
owner = "nobody"
"#
        );
        let err = Config::parse(&text, Path::new("a.toml")).expect_err("invalid");
        let msg = err.to_string();
        for want in [
            "shorter than 16",
            "token used twice",
            "host \"db1\" listed twice",
            "\"ghost\" is not in",
            "owner \"nobody\"",
        ] {
            assert!(msg.contains(want), "missing {want:?} in {msg}");
        }
    }
}
