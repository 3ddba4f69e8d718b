//! The principal directory: who is who, by name, Slack id, Teams id or OIDC identity.

use std::collections::HashMap;

use crate::config::PrincipalEntry;

/// Lookup tables over the configured principals.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    by_name: HashMap<String, PrincipalEntry>,
    by_slack: HashMap<String, String>,
    by_teams: HashMap<String, String>,
    by_subject: HashMap<String, String>,
    by_email: HashMap<String, String>,
}

impl Directory {
    /// Builds the tables (names are unique after config check).
    pub fn new(principals: &[PrincipalEntry]) -> Self {
        let mut d = Self::default();
        for p in principals {
            let name = p.name.clone();
            if let Some(id) = &p.slack_user_id {
                d.by_slack.insert(id.clone(), name.clone());
            }
            if let Some(id) = &p.teams_user_id {
                d.by_teams.insert(id.clone(), name.clone());
            }
            if let Some(sub) = &p.oidc_subject {
                d.by_subject.insert(sub.clone(), name.clone());
            }
            if let Some(email) = &p.email {
                d.by_email.insert(email.to_ascii_lowercase(), name.clone());
            }
            d.by_name.insert(name, p.clone());
        }
        d
    }

    /// The principal called `name`.
    pub fn get(&self, name: &str) -> Option<&PrincipalEntry> {
        self.by_name.get(name)
    }

    /// The principal with this Slack user id.
    pub fn by_slack(&self, id: &str) -> Option<&PrincipalEntry> {
        self.by_slack.get(id).and_then(|n| self.get(n))
    }

    /// The principal with this Teams (AAD object) id.
    pub fn by_teams(&self, id: &str) -> Option<&PrincipalEntry> {
        self.by_teams.get(id).and_then(|n| self.get(n))
    }

    /// The principal for an OIDC identity: by `sub` first, then by verified e-mail.
    pub fn by_oidc(&self, subject: &str, email: Option<&str>) -> Option<&PrincipalEntry> {
        self.by_subject
            .get(subject)
            .or_else(|| email.and_then(|e| self.by_email.get(&e.to_ascii_lowercase())))
            .and_then(|n| self.get(n))
    }
}
