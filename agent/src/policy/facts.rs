//! Session facts a statement is evaluated with (see contracts.md), and `key=value` parsing
//! for `dbward policy explain --as` and policy test cases.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::identity::Kind;

/// What the agent knows about the session a statement came from. All optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// PostgreSQL user name.
    pub db_user: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// `application_name` sent by the client.
    pub application_name: Option<String>,
    /// Unix uid of the client process.
    pub client_uid: Option<u32>,
    /// Unix user name of the client process.
    pub client_user: Option<String>,
    /// Process id of the client.
    pub client_pid: Option<u32>,
    /// Executable path of the client process.
    pub exe: Option<String>,
    /// systemd unit of the client process (`cron.service`).
    pub unit: Option<String>,
    /// Container id of the client process.
    pub container: Option<String>,
    /// Client IP address.
    pub source_addr: Option<IpAddr>,
    /// TLS client certificate subject.
    pub tls_subject: Option<String>,
    /// This database host's name.
    pub host: Option<String>,
    /// The session did not come through the shim.
    #[serde(default)]
    pub unmediated: bool,
    /// Unique id of the session on this host.
    pub session_id: Option<String>,
    /// Asserted principal name (explain and tests only): skips identity matching and uses
    /// the identity of that name, or an ad-hoc principal when none has it.
    pub principal: Option<String>,
    /// Asserted principal kind (explain and tests only).
    pub kind: Option<Kind>,
    /// Extra groups for the principal (explain and tests only).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A `key=value` fact that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactsError {
    /// The key is not a fact.
    #[error("unknown fact `{key}`; valid facts: {}", Facts::KEYS.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// The value does not fit the fact.
    #[error("fact `{key}`: `{value}` is not {expected}")]
    BadValue {
        /// The key given.
        key: String,
        /// The value given.
        value: String,
        /// What the value should be.
        expected: &'static str,
    },
}

impl Facts {
    /// The keys [`Facts::from_pairs`] accepts.
    pub const KEYS: &'static [&'static str] = &[
        "db_user",
        "database",
        "application_name",
        "client_uid",
        "client_user",
        "client_pid",
        "exe",
        "unit",
        "container",
        "source_addr",
        "tls_subject",
        "host",
        "unmediated",
        "session_id",
        "principal",
        "kind",
        "group",
    ];

    /// Builds facts from `key=value` pairs (`kind=ai_agent`, `db_user=app`, `group=dba`
    /// (repeatable), …).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Facts, FactsError> {
        let mut facts = Facts::default();
        for (key, value) in pairs {
            facts.set(key.as_ref(), value.as_ref())?;
        }
        Ok(facts)
    }

    /// Sets one fact from its text.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), FactsError> {
        let bad = |expected| FactsError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let text = Some(value.to_string());
        match key {
            "db_user" => self.db_user = text,
            "database" => self.database = text,
            "application_name" => self.application_name = text,
            "client_uid" => self.client_uid = Some(value.parse().map_err(|_| bad("a uid"))?),
            "client_user" => self.client_user = text,
            "client_pid" => self.client_pid = Some(value.parse().map_err(|_| bad("a pid"))?),
            "exe" => self.exe = text,
            "unit" => self.unit = text,
            "container" => self.container = text,
            "source_addr" => {
                self.source_addr = Some(value.parse().map_err(|_| bad("an IP address"))?);
            }
            "tls_subject" => self.tls_subject = text,
            "host" => self.host = text,
            "unmediated" => {
                self.unmediated = value.parse().map_err(|_| bad("true or false"))?;
            }
            "session_id" => self.session_id = text,
            "principal" => self.principal = text,
            "kind" => {
                self.kind =
                    Some(Kind::from_name(value).ok_or_else(|| bad("human, ai_agent or service"))?);
            }
            "group" | "groups" => self.groups.extend(value.split(',').map(str::to_string)),
            _ => {
                return Err(FactsError::UnknownKey {
                    key: key.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_facts_and_bad_ones_are_named() {
        let facts = Facts::from_pairs(&[
            ("kind", "ai_agent"),
            ("db_user", "app"),
            ("client_uid", "1000"),
            ("source_addr", "10.1.2.3"),
            ("group", "dba,oncall"),
        ])
        .expect("valid facts");
        assert_eq!(facts.kind, Some(Kind::AiAgent));
        assert_eq!(facts.db_user.as_deref(), Some("app"));
        assert_eq!(facts.client_uid, Some(1000));
        assert_eq!(facts.groups, vec!["dba", "oncall"]);
        assert!(matches!(
            Facts::from_pairs(&[("dbuser", "x")]),
            Err(FactsError::UnknownKey { .. })
        ));
        assert!(matches!(
            Facts::from_pairs(&[("client_uid", "root")]),
            Err(FactsError::BadValue { .. })
        ));
        assert!(matches!(
            Facts::from_pairs(&[("kind", "robot")]),
            Err(FactsError::BadValue { .. })
        ));
    }
}
