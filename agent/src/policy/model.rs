//! The policy file format as written (serde model, every key documented); [`super::load`]
//! validates it into the compiled form.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One policy file. Every key is optional; a directory's files are merged in file-name order.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Settings for what no rule decides. At most one file may set them.
    pub defaults: Option<Spanned<Defaults>>,
    /// Who is behind a session: observed facts → principal. First match wins.
    pub identities: Option<Vec<Identity>>,
    /// What each principal may do. The most restrictive matching rule wins.
    pub rules: Option<Vec<Rule>>,
}

/// `defaults:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Outcome for statements no rule matches (default `audit`).
    pub unmatched: Option<Spanned<RawOutcome>>,
    /// Class given to text the parser cannot read (default `unknown`, the highest risk).
    pub on_parse_error: Option<Spanned<String>>,
    /// Class given to statement kinds the classifier does not know and SQL it cannot see
    /// (default `unknown`).
    pub on_unknown_statement: Option<Spanned<String>>,
    /// The principal for sessions no identity matches.
    pub unidentified: Option<Unidentified>,
}

/// `defaults.unidentified:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unidentified {
    /// Principal name (default `unidentified`).
    pub name: Option<String>,
    /// Kind (default `ai_agent`: the strictest rules apply to whoever is not recognised).
    pub kind: Option<Spanned<String>>,
    /// Groups (default `[unidentified]`).
    pub groups: Option<StringList>,
}

/// `identities[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The principal's name (unique).
    pub name: Spanned<String>,
    /// `human`, `ai_agent` or `service`.
    pub kind: Spanned<String>,
    /// Groups the principal belongs to (rules match on them; approvers are groups).
    #[serde(default)]
    pub groups: StringList,
    /// The human responsible for an AI agent or service.
    pub owner: Option<String>,
    /// Observed facts that identify the principal; every key given must match.
    #[serde(rename = "match")]
    pub matches: Spanned<IdentityMatch>,
}

/// `identities[].match:` — each key is one value or a list (any may match); strings are
/// globs (`*`, `?`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMatch {
    /// PostgreSQL user name of the session.
    pub db_user: Option<Spanned<StringList>>,
    /// Database name.
    pub database: Option<Spanned<StringList>>,
    /// `application_name` the client sent.
    pub application_name: Option<Spanned<StringList>>,
    /// Unix uid of the client process (exact numbers).
    pub client_uid: Option<Spanned<StringList>>,
    /// Unix user name of the client process.
    pub client_user: Option<Spanned<StringList>>,
    /// Executable path of the client process.
    pub exe: Option<Spanned<StringList>>,
    /// systemd unit of the client process (`cron.service`).
    pub unit: Option<Spanned<StringList>>,
    /// Container id of the client process.
    pub container: Option<Spanned<StringList>>,
    /// Client address ranges (CIDR, `10.0.0.0/8`).
    pub source_cidr: Option<Spanned<StringList>>,
    /// TLS client certificate subject.
    pub tls_subject: Option<Spanned<StringList>>,
    /// This database host's name.
    pub host: Option<Spanned<StringList>>,
}

/// `rules[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name (unique); decisions and audit events cite it.
    pub name: Spanned<String>,
    /// What the rule is for, for reviewers.
    pub description: Option<String>,
    /// Conditions; every key given must hold. No `match` matches every statement.
    #[serde(rename = "match", default)]
    pub matches: Option<Spanned<RuleMatch>>,
    /// `allow`, `audit`, `{deny: {message}}` or `{require_approval: {…}}`.
    pub outcome: Spanned<RawOutcome>,
    /// What to do when the statement arrives on a session that bypassed the shim:
    /// `audit`, `hold`, `terminate` or `block`.
    pub unmediated: Option<Spanned<String>>,
}

/// `rules[].match:` — list keys take one value or a list; strings are globs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// Principal names.
    pub principal: Option<Spanned<StringList>>,
    /// Principal kinds: `human`, `ai_agent`, `service`.
    pub kind: Option<Spanned<StringList>>,
    /// Groups; the principal must be in one of them.
    pub group: Option<Spanned<StringList>>,
    /// This database host's name.
    pub host: Option<Spanned<StringList>>,
    /// Database name.
    pub database: Option<Spanned<StringList>>,
    /// Schemas of the tables touched.
    pub schema: Option<Spanned<StringList>>,
    /// Tables touched (`orders`, `payroll.*`, `*.salaries`).
    pub table: Option<Spanned<StringList>>,
    /// Columns referenced.
    pub column: Option<Spanned<StringList>>,
    /// Statement classes.
    pub class: Option<Spanned<StringList>>,
    /// Commands (`UPDATE`, `DELETE`, `COPY TO PROGRAM`, `SET ROLE`, …).
    pub command: Option<Spanned<StringList>>,
    /// Functions called.
    pub function: Option<Spanned<StringList>>,
    /// Whether every UPDATE/DELETE has a WHERE clause.
    pub has_where: Option<bool>,
    /// Whether every query and UPDATE/DELETE has a LIMIT.
    pub has_limit: Option<bool>,
    /// When the rule applies.
    pub time: Option<Spanned<TimeWindow>>,
}

/// `rules[].match.time:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Days of the week (`mon` … `sun`); default every day.
    pub days: Option<StringList>,
    /// Time of day `HH:MM-HH:MM` (may wrap midnight, `22:00-06:00`); default all day.
    pub between: Option<String>,
    /// Offset of the times from UTC (`+02:00`); default `+00:00`.
    pub utc_offset: Option<String>,
}

/// An outcome as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawOutcome {
    /// Run the statement.
    Allow,
    /// Run it and record it prominently.
    Audit,
    /// Refuse it.
    Deny {
        /// Told to the client.
        message: String,
    },
    /// Hold it until approved.
    RequireApproval(RawApproval),
}

/// `require_approval:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    /// Groups whose members may approve.
    pub approvers: StringList,
    /// How many distinct approvers must approve (default 1).
    pub quorum: Option<u32>,
    /// How long to wait before the request expires (`15m`, `1h`; default `15m`).
    pub timeout: Option<String>,
    /// Whether the requester must give a reason (default false).
    #[serde(default)]
    pub reason_required: bool,
    /// A group that may approve alone in an emergency (audited as break-glass).
    pub break_glass_group: Option<String>,
}

/// One string or a list of strings (numbers and booleans are taken as their text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringListVisitor)
    }
}

struct StringListVisitor;

impl<'de> Visitor<'de> for StringListVisitor {
    type Value = StringList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
        Ok(StringList(vec![v.to_string()]))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StringList, E> {
        Ok(StringList(vec![v.to_string()]))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StringList, E> {
        Ok(StringList(vec![v.to_string()]))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StringList, E> {
        Ok(StringList(vec![v.to_string()]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Scalar>()? {
            items.push(item.0);
        }
        Ok(StringList(items))
    }
}

/// A scalar taken as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}
