//! Loading policy files: YAML → [`super::model`] → validated, compiled rules and identities.
//! Every problem in every file is collected and reported with file:line:column, the key and
//! a hint, never just the first.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_saphyr::{Location, Spanned};
use sha2::{Digest, Sha256};

use super::classify::{Class, ClassSet};
use super::glob::Glob;
use super::identity::{Identities, Identity, IdentityConditions, Kind, Principal};
use super::model::{self, PolicyFile, RawOutcome, StringList};
use super::outcome::{Outcome, Unmediated};
use super::rule::{Rule, RuleConditions, TimeWindow};
use super::yaml::{self, entry_key};

/// One problem in the policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or directory) at fault.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    /// The offending key (`rules[2].match.class`), empty when the whole file is at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading a policy directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
        }
        write!(f, "{} error(s) in the policy", self.0.len())
    }
}

/// Settings for what no rule decides.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) unmatched: Outcome,
    pub(super) on_parse_error: Class,
    pub(super) on_unknown_statement: Class,
}

/// A validated policy, before it gets a classifier.
#[derive(Debug)]
pub(super) struct Compiled {
    pub(super) files: Vec<PathBuf>,
    pub(super) content_hash: String,
    pub(super) identities: Identities,
    pub(super) rules: Vec<Rule>,
    pub(super) settings: Settings,
}

/// Reads every `*.yaml`/`*.yml` file of `dir` in file-name order; `what` names the files
/// (`policy`, `test`) in errors.
pub(super) fn read_dir(dir: &Path, what: &str) -> Result<Vec<(PathBuf, String)>, PolicyErrors> {
    let whole = |message: String, hint: &str| {
        PolicyErrors(vec![PolicyError {
            file: dir.to_path_buf(),
            position: None,
            key: String::new(),
            message,
            hint: Some(hint.to_string()),
        }])
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        whole(
            format!("cannot read the {what} directory: {e}"),
            &format!("create it, or pass the directory holding the *.yaml {what} files"),
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(whole(
            format!("no {what} files (*.yaml) found"),
            "copy the examples from policies/ (and policies/tests/) and adapt them",
        ));
    }
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path, text)),
            Err(e) => errors.push(PolicyError {
                file: path,
                position: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
                hint: Some("check the file's permissions and that it is UTF-8".to_string()),
            }),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// The sha256 (hex) of the files' names and contents, in order.
pub(super) fn content_hash(sources: &[(PathBuf, String)]) -> String {
    let mut hasher = Sha256::new();
    for (path, text) in sources {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Validates and compiles policy sources (file path, text), collecting every error.
pub(super) fn compile(sources: &[(PathBuf, String)]) -> Result<Compiled, PolicyErrors> {
    let mut errors = Vec::new();
    let mut identities = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let mut settings: Option<(PathBuf, Settings)> = None;
    let mut unidentified = None;
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    let mut identity_names: Vec<String> = Vec::new();
    for (path, text) in sources {
        let mut c = Checker {
            file: path,
            errors: &mut errors,
        };
        let Some(file) = parse_file(&mut c, text) else {
            continue;
        };
        if let Some(defaults) = &file.defaults {
            if let Some((first, _)) = &settings {
                c.error(
                    &defaults.referenced,
                    "defaults",
                    format!("defaults are already set in {}", first.display()),
                    "keep one `defaults:` block in one file",
                );
            } else {
                let (s, u) = c.defaults(&defaults.value);
                settings = Some((path.clone(), s));
                unidentified = Some(u);
            }
        }
        for (i, raw) in file.identities.iter().flatten().enumerate() {
            let key = entry_key(text, &raw.name.referenced, format!("identities[{i}]"));
            if identity_names.contains(&raw.name.value) {
                c.error(
                    &raw.name.referenced,
                    &format!("{key}.name"),
                    format!("identity `{}` is defined twice", raw.name.value),
                    "give every identity a unique name",
                );
            }
            identity_names.push(raw.name.value.clone());
            if let Some(identity) = c.identity(&key, raw) {
                identities.push(identity);
            }
        }
        for (i, raw) in file.rules.iter().flatten().enumerate() {
            let key = entry_key(text, &raw.name.referenced, format!("rules[{i}]"));
            if let Some((_, other)) = names.iter().find(|(n, _)| *n == raw.name.value) {
                c.error(
                    &raw.name.referenced,
                    &format!("{key}.name"),
                    format!(
                        "rule `{}` is already defined in {}",
                        raw.name.value,
                        other.display()
                    ),
                    "give every rule a unique name; decisions cite it",
                );
            }
            names.push((raw.name.value.clone(), path.clone()));
            if let Some(rule) = c.rule(&key, raw) {
                rules.push(rule);
            }
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    let settings = settings.map(|(_, s)| s).unwrap_or(Settings {
        unmatched: Outcome::Audit,
        on_parse_error: Class::Unknown,
        on_unknown_statement: Class::Unknown,
    });
    Ok(Compiled {
        files: sources.iter().map(|(p, _)| p.clone()).collect(),
        content_hash: content_hash(sources),
        identities: Identities {
            identities,
            unidentified: Arc::new(unidentified.unwrap_or_else(default_unidentified)),
        },
        rules,
        settings,
    })
}

fn default_unidentified() -> Principal {
    Principal {
        name: "unidentified".to_string(),
        kind: Kind::AiAgent,
        groups: vec!["unidentified".to_string()],
        owner: None,
        identified: false,
    }
}

fn parse_file(c: &mut Checker<'_>, text: &str) -> Option<PolicyFile> {
    let only_comments = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if only_comments {
        return Some(PolicyFile::default());
    }
    yaml::parse(c.file, text, c.errors)
}

struct Checker<'a> {
    file: &'a Path,
    errors: &'a mut Vec<PolicyError>,
}

fn valid_list<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|x| name(*x)).collect::<Vec<_>>().join(", ")
}

impl Checker<'_> {
    fn error(&mut self, at: &Location, key: &str, message: String, hint: &str) {
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            position: Some((at.line(), at.column())),
            key: key.to_string(),
            message,
            hint: Some(hint.to_string()),
        });
    }

    fn class(&mut self, at: &Location, key: &str, name: &str) -> Option<Class> {
        let class = Class::from_name(name);
        if class.is_none() {
            self.error(
                at,
                key,
                format!("unknown class `{name}`"),
                &format!("valid classes: {}", valid_list(&Class::ALL, Class::name)),
            );
        }
        class
    }

    fn kind(&mut self, at: &Location, key: &str, name: &str) -> Option<Kind> {
        let kind = Kind::from_name(name);
        if kind.is_none() {
            self.error(
                at,
                key,
                format!("unknown kind `{name}`"),
                &format!("valid kinds: {}", valid_list(&Kind::ALL, Kind::name)),
            );
        }
        kind
    }

    fn defaults(&mut self, raw: &model::Defaults) -> (Settings, Principal) {
        let unmatched = raw
            .unmatched
            .as_ref()
            .and_then(|o| self.outcome(&o.referenced, "defaults.unmatched", &o.value))
            .unwrap_or(Outcome::Audit);
        let mut class_setting = |value: &Option<Spanned<String>>, key: &str| {
            value
                .as_ref()
                .and_then(|v| self.class(&v.referenced, key, &v.value))
                .unwrap_or(Class::Unknown)
        };
        let on_parse_error = class_setting(&raw.on_parse_error, "defaults.on_parse_error");
        let on_unknown_statement =
            class_setting(&raw.on_unknown_statement, "defaults.on_unknown_statement");
        let mut unidentified = default_unidentified();
        if let Some(u) = &raw.unidentified {
            if let Some(name) = &u.name {
                unidentified.name = name.clone();
            }
            if let Some(kind) = &u.kind
                && let Some(k) =
                    self.kind(&kind.referenced, "defaults.unidentified.kind", &kind.value)
            {
                unidentified.kind = k;
            }
            if let Some(groups) = &u.groups {
                unidentified.groups = groups.0.clone();
            }
        }
        (
            Settings {
                unmatched,
                on_parse_error,
                on_unknown_statement,
            },
            unidentified,
        )
    }

    fn globs(list: &Option<Spanned<StringList>>) -> Option<Vec<Glob>> {
        list.as_ref()
            .map(|l| l.value.0.iter().map(|s| Glob::new(s)).collect())
    }

    fn identity(&mut self, key: &str, raw: &model::Identity) -> Option<Identity> {
        let kind = self.kind(
            &raw.kind.referenced,
            &format!("{key}.kind"),
            &raw.kind.value,
        );
        let m = &raw.matches.value;
        let at = &raw.matches.referenced;
        let client_uid = m.client_uid.as_ref().map(|uids| {
            uids.value
                .0
                .iter()
                .filter_map(|u| match u.parse::<u32>() {
                    Ok(uid) => Some(uid),
                    Err(_) => {
                        self.error(
                            &uids.referenced,
                            &format!("{key}.match.client_uid"),
                            format!("`{u}` is not a uid"),
                            "give numeric uids (`id -u USER` prints one)",
                        );
                        None
                    }
                })
                .collect()
        });
        let source_cidr = m.source_cidr.as_ref().map(|nets| {
            nets.value
                .0
                .iter()
                .filter_map(|n| {
                    let parsed = n
                        .parse::<IpNet>()
                        .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from));
                    match parsed {
                        Ok(net) => Some(net),
                        Err(_) => {
                            self.error(
                                &nets.referenced,
                                &format!("{key}.match.source_cidr"),
                                format!("`{n}` is not an address range"),
                                "write CIDR ranges like 10.0.0.0/8 or 2001:db8::/32",
                            );
                            None
                        }
                    }
                })
                .collect()
        });
        let conditions = IdentityConditions {
            db_user: Self::globs(&m.db_user),
            database: Self::globs(&m.database),
            application_name: Self::globs(&m.application_name),
            client_uid,
            client_user: Self::globs(&m.client_user),
            exe: Self::globs(&m.exe),
            unit: Self::globs(&m.unit),
            container: Self::globs(&m.container),
            source_cidr,
            tls_subject: Self::globs(&m.tls_subject),
            host: Self::globs(&m.host),
        };
        if conditions.is_empty() {
            self.error(
                at,
                &format!("{key}.match"),
                "an identity must match on at least one fact".to_string(),
                "add e.g. db_user, application_name, unit or source_cidr; for everyone else use defaults.unidentified",
            );
            return None;
        }
        Some(Identity {
            principal: Arc::new(Principal {
                name: raw.name.value.clone(),
                kind: kind?,
                groups: raw.groups.0.clone(),
                owner: raw.owner.clone(),
                identified: true,
            }),
            conditions,
        })
    }

    fn rule(&mut self, key: &str, raw: &model::Rule) -> Option<Rule> {
        let outcome = self.outcome(
            &raw.outcome.referenced,
            &format!("{key}.outcome"),
            &raw.outcome.value,
        );
        let unmediated = match &raw.unmediated {
            None => None,
            Some(u) => {
                let parsed = Unmediated::from_name(&u.value);
                if parsed.is_none() {
                    self.error(
                        &u.referenced,
                        &format!("{key}.unmediated"),
                        format!("unknown unmediated action `{}`", u.value),
                        &format!(
                            "valid actions: {}",
                            valid_list(&Unmediated::ALL, Unmediated::name)
                        ),
                    );
                }
                Some(parsed?)
            }
        };
        let conditions = match &raw.matches {
            None => RuleConditions::default(),
            Some(m) => self.rule_conditions(&format!("{key}.match"), &m.value)?,
        };
        Some(Rule {
            name: Arc::from(raw.name.value.as_str()),
            description: raw.description.clone(),
            conditions,
            outcome: outcome?,
            unmediated,
        })
    }

    fn rule_conditions(&mut self, key: &str, m: &model::RuleMatch) -> Option<RuleConditions> {
        let before = self.errors.len();
        let kind = m.kind.as_ref().map(|k| {
            k.value
                .0
                .iter()
                .filter_map(|name| self.kind(&k.referenced, &format!("{key}.kind"), name))
                .collect()
        });
        let class = m.class.as_ref().map(|c| {
            c.value
                .0
                .iter()
                .filter_map(|name| self.class(&c.referenced, &format!("{key}.class"), name))
                .collect::<ClassSet>()
        });
        let time = m
            .time
            .as_ref()
            .and_then(|t| self.time_window(&t.referenced, &format!("{key}.time"), &t.value));
        let conditions = RuleConditions {
            principal: Self::globs(&m.principal),
            kind,
            group: Self::globs(&m.group),
            host: Self::globs(&m.host),
            database: Self::globs(&m.database),
            schema: Self::globs(&m.schema),
            table: Self::globs(&m.table),
            column: Self::globs(&m.column),
            class,
            command: m
                .command
                .as_ref()
                .map(|c| c.value.0.iter().map(|s| s.to_uppercase()).collect()),
            function: Self::globs(&m.function),
            has_where: m.has_where,
            has_limit: m.has_limit,
            time,
        };
        (self.errors.len() == before).then_some(conditions)
    }

    fn time_window(
        &mut self,
        at: &Location,
        key: &str,
        raw: &model::TimeWindow,
    ) -> Option<TimeWindow> {
        let before = self.errors.len();
        let mut days = 0u8;
        match &raw.days {
            None => days = 0x7f,
            Some(list) => {
                for day in &list.0 {
                    match parse_days(day) {
                        Some(bits) => days |= bits,
                        None => self.error(
                            at,
                            &format!("{key}.days"),
                            format!("`{day}` is not a day"),
                            "use mon, tue, wed, thu, fri, sat, sun, weekdays or weekend",
                        ),
                    }
                }
            }
        }
        let (start, end) = match &raw.between {
            None => (0, 24 * 60),
            Some(between) => parse_between(between).unwrap_or_else(|| {
                self.error(
                    at,
                    &format!("{key}.between"),
                    format!("`{between}` is not a time range"),
                    "write HH:MM-HH:MM, e.g. 09:00-18:00 (22:00-06:00 wraps midnight)",
                );
                (0, 0)
            }),
        };
        let utc_offset_secs = match &raw.utc_offset {
            None => 0,
            Some(offset) => parse_offset(offset).unwrap_or_else(|| {
                self.error(
                    at,
                    &format!("{key}.utc_offset"),
                    format!("`{offset}` is not a UTC offset"),
                    "write +HH:MM or -HH:MM, e.g. +02:00",
                );
                0
            }),
        };
        (self.errors.len() == before).then_some(TimeWindow {
            days,
            start,
            end,
            utc_offset_secs,
        })
    }

    fn outcome(&mut self, at: &Location, key: &str, raw: &RawOutcome) -> Option<Outcome> {
        Some(match raw {
            RawOutcome::Allow => Outcome::Allow,
            RawOutcome::Audit => Outcome::Audit,
            RawOutcome::Deny { message } => Outcome::Deny {
                message: message.clone(),
            },
            RawOutcome::RequireApproval(a) => {
                let before = self.errors.len();
                if a.approvers.0.is_empty() {
                    self.error(
                        at,
                        &format!("{key}.require_approval.approvers"),
                        "no approver groups".to_string(),
                        "list the groups whose members may approve, e.g. [dba]",
                    );
                }
                let quorum = a.quorum.unwrap_or(1);
                if quorum == 0 {
                    self.error(
                        at,
                        &format!("{key}.require_approval.quorum"),
                        "quorum must be at least 1".to_string(),
                        "use 1 for a single approver, 2 for four-eyes",
                    );
                }
                let timeout = match &a.timeout {
                    None => Duration::from_secs(15 * 60),
                    Some(t) => humantime::parse_duration(t).unwrap_or_else(|_| {
                        self.error(
                            at,
                            &format!("{key}.require_approval.timeout"),
                            format!("`{t}` is not a duration"),
                            "write e.g. 90s, 15m, 1h",
                        );
                        Duration::ZERO
                    }),
                };
                if self.errors.len() != before {
                    return None;
                }
                Outcome::RequireApproval {
                    approvers: a.approvers.0.clone(),
                    quorum,
                    timeout,
                    reason_required: a.reason_required,
                    break_glass_group: a.break_glass_group.clone(),
                }
            }
        })
    }
}

fn parse_days(day: &str) -> Option<u8> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    match day.to_lowercase().as_str() {
        "weekdays" => Some(0b001_1111),
        "weekend" => Some(0b110_0000),
        d => DAYS.iter().position(|x| *x == d).map(|i| 1 << i),
    }
}

fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn parse_between(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    Some((parse_clock(a)?, parse_clock(b)?))
}

fn parse_offset(s: &str) -> Option<i64> {
    if s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let minutes = parse_clock(rest)?;
    Some(sign * i64::from(minutes) * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(files: &[(&str, &str)]) -> Vec<PolicyError> {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        match compile(&sources) {
            Ok(_) => Vec::new(),
            Err(PolicyErrors(errors)) => errors,
        }
    }

    #[test]
    fn unknown_keys_are_reported_with_position_and_valid_keys() {
        let errs = errors(&[(
            "a.yaml",
            "rules:\n  - name: r\n    match:\n      clas: [read]\n    outcome: allow\n",
        )]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].key, "rules[0].match.clas");
        assert_eq!(errs[0].position.map(|p| p.0), Some(4));
        assert!(
            errs[0].hint.as_deref().unwrap_or("").contains("class"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn every_semantic_error_in_every_file_is_reported() {
        let errs = errors(&[
            (
                "a.yaml",
                "rules:\n  - name: r1\n    match: {class: [exprot]}\n    outcome: allow\n  - name: r2\n    match: {kind: robot}\n    outcome: audit\n",
            ),
            (
                "b.yaml",
                "identities:\n  - name: x\n    kind: human\n    match: {source_cidr: 10.0.0.0/33}\nrules:\n  - name: r1\n    outcome: {require_approval: {approvers: [], quorum: 0, timeout: soon}}\n",
            ),
        ]);
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "rules[0].match.class",
                "rules[1].match.kind",
                "identities[0].match.source_cidr",
                "rules[0].name",
                "rules[0].outcome.require_approval.approvers",
                "rules[0].outcome.require_approval.quorum",
                "rules[0].outcome.require_approval.timeout",
            ],
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .all(|e| e.position.is_some() && e.hint.is_some())
        );
        assert_eq!(
            errs[0].position,
            Some((3, 20)),
            "points at the offending value"
        );
    }

    #[test]
    fn several_structure_errors_in_one_file_are_all_reported() {
        let errs = errors(&[(
            "a.yaml",
            "rules:\n  - name: r0\n    match:\n      clas: read\n    outcome: allow\n  - name: r1\n    outcome: perhaps\n  - name: r2\n    match: {class: [exprot]}\n    outcome: allow\nidentitys: []\n",
        )]);
        let found: Vec<(String, Option<u64>)> = errs
            .iter()
            .map(|e| (e.key.clone(), e.position.map(|p| p.0)))
            .collect();
        assert_eq!(
            found,
            vec![
                ("rules[0].match.clas".to_string(), Some(4)),
                ("rules[1].outcome".to_string(), Some(7)),
                ("identitys".to_string(), Some(11)),
                ("rules[2].match.class".to_string(), Some(9)),
            ],
            "{errs:#?}"
        );
    }

    #[test]
    fn valid_policy_compiles_with_defaults() {
        let sources = vec![(PathBuf::from("a.yaml"), "# only comments\n".to_string())];
        let compiled = compile(&sources).expect("valid");
        assert_eq!(compiled.settings.unmatched, Outcome::Audit);
        assert_eq!(compiled.settings.on_parse_error, Class::Unknown);
        assert_eq!(compiled.content_hash.len(), 64);
    }

    #[test]
    fn time_and_offset_formats_parse() {
        assert_eq!(parse_between("09:00-18:30"), Some((540, 1110)));
        assert_eq!(parse_between("9-18"), None);
        assert_eq!(parse_offset("+02:00"), Some(7200));
        assert_eq!(parse_offset("-05:30"), Some(-19800));
        assert_eq!(parse_days("Weekdays"), Some(0x1f));
        assert_eq!(parse_days("funday"), None);
    }
}
