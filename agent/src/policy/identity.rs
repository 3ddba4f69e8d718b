//! Principals (who is behind a session) and the identity rules that map observed session
//! facts to them.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::facts::Facts;
use super::glob::{Glob, any_matches};

/// What kind of actor a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A person at a keyboard.
    Human,
    /// An AI agent acting on someone's behalf.
    AiAgent,
    /// A service, batch job or bot.
    Service,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Human, Kind::AiAgent, Kind::Service];

    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Human => "human",
            Kind::AiAgent => "ai_agent",
            Kind::Service => "service",
        }
    }

    /// Parses a kind name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is behind a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The identity's name (`unidentified` when no identity matched).
    pub name: String,
    /// What kind of actor it is.
    pub kind: Kind,
    /// Groups it belongs to.
    pub groups: Vec<String>,
    /// The human responsible for it (AI agents, services).
    pub owner: Option<String>,
    /// Whether an identity rule matched (false for the unidentified principal and for
    /// principals asserted in explain/tests without a matching identity).
    pub identified: bool,
}

/// A compiled identity: conditions on facts → principal.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub(super) principal: Arc<Principal>,
    pub(super) conditions: IdentityConditions,
}

/// Conditions on observed facts; every present one must hold, a missing fact fails it.
#[derive(Debug, Clone, Default)]
pub(super) struct IdentityConditions {
    pub(super) db_user: Option<Vec<Glob>>,
    pub(super) database: Option<Vec<Glob>>,
    pub(super) application_name: Option<Vec<Glob>>,
    pub(super) client_uid: Option<Vec<u32>>,
    pub(super) client_user: Option<Vec<Glob>>,
    pub(super) exe: Option<Vec<Glob>>,
    pub(super) unit: Option<Vec<Glob>>,
    pub(super) container: Option<Vec<Glob>>,
    pub(super) source_cidr: Option<Vec<IpNet>>,
    pub(super) tls_subject: Option<Vec<Glob>>,
    pub(super) host: Option<Vec<Glob>>,
}

fn text_matches(globs: &Option<Vec<Glob>>, fact: &Option<String>) -> bool {
    match globs {
        None => true,
        Some(globs) => fact.as_deref().is_some_and(|f| any_matches(globs, f)),
    }
}

impl IdentityConditions {
    pub(super) fn is_empty(&self) -> bool {
        self.db_user.is_none()
            && self.database.is_none()
            && self.application_name.is_none()
            && self.client_uid.is_none()
            && self.client_user.is_none()
            && self.exe.is_none()
            && self.unit.is_none()
            && self.container.is_none()
            && self.source_cidr.is_none()
            && self.tls_subject.is_none()
            && self.host.is_none()
    }

    fn matches(&self, facts: &Facts) -> bool {
        text_matches(&self.db_user, &facts.db_user)
            && text_matches(&self.database, &facts.database)
            && text_matches(&self.application_name, &facts.application_name)
            && self
                .client_uid
                .as_ref()
                .is_none_or(|uids| facts.client_uid.is_some_and(|u| uids.contains(&u)))
            && text_matches(&self.client_user, &facts.client_user)
            && text_matches(&self.exe, &facts.exe)
            && text_matches(&self.unit, &facts.unit)
            && text_matches(&self.container, &facts.container)
            && self.source_cidr.as_ref().is_none_or(|nets| {
                facts
                    .source_addr
                    .is_some_and(|addr| nets.iter().any(|n| n.contains(&addr)))
            })
            && text_matches(&self.tls_subject, &facts.tls_subject)
            && text_matches(&self.host, &facts.host)
    }
}

/// The identities of a policy set, in order, and the principal for everyone else.
#[derive(Debug, Clone)]
pub(super) struct Identities {
    pub(super) identities: Vec<Identity>,
    pub(super) unidentified: Arc<Principal>,
}

impl Identities {
    /// The principal behind a session: the first identity whose conditions hold, else the
    /// unidentified principal; then what the facts assert (explain and tests).
    pub(super) fn resolve(&self, facts: &Facts) -> Arc<Principal> {
        let mut principal = match &facts.principal {
            Some(name) => self
                .identities
                .iter()
                .find(|i| &i.principal.name == name)
                .map(|i| Arc::clone(&i.principal))
                .unwrap_or_else(|| {
                    Arc::new(Principal {
                        name: name.clone(),
                        identified: false,
                        ..(*self.unidentified).clone()
                    })
                }),
            None => self
                .identities
                .iter()
                .find(|i| i.conditions.matches(facts))
                .map(|i| Arc::clone(&i.principal))
                .unwrap_or_else(|| Arc::clone(&self.unidentified)),
        };
        if facts.kind.is_some_and(|k| k != principal.kind) || !facts.groups.is_empty() {
            let p = Arc::make_mut(&mut principal);
            if let Some(kind) = facts.kind {
                p.kind = kind;
            }
            for group in &facts.groups {
                if !p.groups.contains(group) {
                    p.groups.push(group.clone());
                }
            }
        }
        principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, kind: Kind) -> Arc<Principal> {
        Arc::new(Principal {
            name: name.to_string(),
            kind,
            groups: vec![],
            owner: None,
            identified: true,
        })
    }

    fn identities() -> Identities {
        Identities {
            identities: vec![
                Identity {
                    principal: principal("claude", Kind::AiAgent),
                    conditions: IdentityConditions {
                        application_name: Some(vec![Glob::new("claude*")]),
                        ..Default::default()
                    },
                },
                Identity {
                    principal: principal("backup", Kind::Service),
                    conditions: IdentityConditions {
                        unit: Some(vec![Glob::new("backup*.service")]),
                        source_cidr: Some(vec!["10.0.0.0/8".parse().expect("cidr")]),
                        ..Default::default()
                    },
                },
            ],
            unidentified: Arc::new(Principal {
                name: "unidentified".to_string(),
                kind: Kind::AiAgent,
                groups: vec!["unidentified".to_string()],
                owner: None,
                identified: false,
            }),
        }
    }

    #[test]
    fn first_matching_identity_names_the_principal() {
        let ids = identities();
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Pairs, &str, Kind); 5] = [
            (
                &[("application_name", "claude-code")],
                "claude",
                Kind::AiAgent,
            ),
            (
                &[("unit", "backup-db.service"), ("source_addr", "10.2.3.4")],
                "backup",
                Kind::Service,
            ),
            (
                &[
                    ("unit", "backup-db.service"),
                    ("source_addr", "192.168.1.1"),
                ],
                "unidentified",
                Kind::AiAgent,
            ),
            (
                &[("unit", "backup-db.service")],
                "unidentified",
                Kind::AiAgent,
            ),
            (
                &[("principal", "alice"), ("kind", "human")],
                "alice",
                Kind::Human,
            ),
        ];
        for (pairs, name, kind) in cases {
            let facts = Facts::from_pairs(pairs).expect("facts");
            let p = ids.resolve(&facts);
            assert_eq!((p.name.as_str(), p.kind), (name, kind), "{pairs:?}");
        }
    }
}
