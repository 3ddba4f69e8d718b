//! Policy: files → model, classifier (SQL → class, tables, functions), evaluator.
//!
//! [`PolicySet::load_dir`] reads and validates a directory of YAML policy files;
//! [`PolicySet::evaluate`] classifies a statement and decides its [`Outcome`] for the
//! principal behind the session. The format is documented in `docs/policy.md`.

pub mod classify;
pub mod facts;
pub mod glob;
pub mod identity;
mod load;
pub mod memo;
pub mod model;
pub mod outcome;
mod rule;
pub mod store;
pub mod testing;
mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub use classify::{Class, ClassSet, Classification, PreparedStatements};
pub use facts::{Facts, FactsError};
pub use identity::{Kind, Principal};
pub use load::{PolicyError, PolicyErrors};
pub use outcome::{Condition, Decision, Outcome, RuleTrace, Unmediated};

use classify::NoPrepared;
use classify::fingerprint::CachedClassifier;
use classify::postgres::PostgresClassifier;
use identity::Identities;
use load::Settings;
use rule::{Rule, Subject};

/// Classifications cached per policy set (by statement fingerprint).
const CACHE_ENTRIES: usize = 10_000;

/// A loaded, validated policy: identities, rules, defaults, and the classifier.
#[derive(Debug)]
pub struct PolicySet {
    files: Vec<PathBuf>,
    content_hash: String,
    identities: Identities,
    rules: Vec<Rule>,
    settings: Settings,
    classifier: CachedClassifier,
}

/// A rule as shown to people (`dbward policy explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    /// The rule's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its outcome.
    pub outcome: Outcome,
}

impl PolicySet {
    /// Loads every `*.yaml`/`*.yml` file of `dir` (in file-name order), reporting every
    /// problem found with file:line:column.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
        let sources = load::read_dir(dir, "policy")?;
        PolicySet::from_sources(&sources)
    }

    /// Builds a policy from (file name, YAML text) pairs, in order. No I/O.
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<PolicySet, PolicyErrors> {
        let compiled = load::compile(sources)?;
        Ok(PolicySet {
            files: compiled.files,
            content_hash: compiled.content_hash,
            identities: compiled.identities,
            rules: compiled.rules,
            settings: compiled.settings,
            classifier: CachedClassifier::new(Box::new(PostgresClassifier), CACHE_ENTRIES),
        })
    }

    /// Replaces the SQL dialect's classifier (PostgreSQL by default), e.g. for MySQL hosts.
    pub fn with_classifier(mut self, classifier: Box<dyn classify::Classifier>) -> PolicySet {
        self.classifier = CachedClassifier::new(classifier, CACHE_ENTRIES);
        self
    }

    /// sha256 (hex) of the policy files' names and contents.
    pub fn content_hash(&self) -> String {
        self.content_hash.clone()
    }

    /// The files the policy was loaded from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> Vec<RuleSummary> {
        self.rules
            .iter()
            .map(|r| RuleSummary {
                name: r.name.to_string(),
                description: r.description.clone(),
                outcome: r.outcome.clone(),
            })
            .collect()
    }

    /// Whether some statement could be held or its session ended when it bypasses the shim
    /// (a rule says `unmediated: hold|terminate|block`, explicitly or by default for
    /// `require_approval` and `deny`, or the `unmatched` outcome does): those sessions are
    /// flagged in the kernel so their statements stop before they run.
    pub fn stops_unmediated(&self) -> bool {
        self.may_stop_unmediated(|_| true)
    }

    /// [`PolicySet::stops_unmediated`] for one session: only rules whose conditions on who
    /// and where (principal, kind, group, host, database) fit `facts` count.
    pub fn stops_unmediated_for(&self, facts: &Facts) -> bool {
        let principal = self.identities.resolve(facts);
        self.may_stop_unmediated(|r| r.session_failed(facts, &principal).is_none())
    }

    /// Whether a *plain* statement (no parentheses, so no function calls) of this kind — its
    /// classes and commands, any tables, columns or time — could be held or its session
    /// ended when it bypasses the shim: in any session (`facts` = `None`), or in the
    /// session described by `facts`. Kinds for which this is false run in flagged sessions
    /// without a stop.
    pub fn may_stop_plain_unmediated(
        &self,
        facts: Option<&Facts>,
        classification: &Classification,
    ) -> bool {
        let classes = self.effective_classes(classification);
        let principal = facts.map(|f| (f, self.identities.resolve(f)));
        self.may_stop_unmediated(|r| {
            principal
                .as_ref()
                .is_none_or(|(f, p)| r.session_failed(f, p).is_none())
                && r.may_match_plain(classes, &classification.commands)
        })
    }

    /// Whether the `unmatched` outcome stops unmediated statements, or some rule that does
    /// passes `may_match`.
    fn may_stop_unmediated(&self, may_match: impl Fn(&Rule) -> bool) -> bool {
        stops(Unmediated::for_outcome(&self.settings.unmatched))
            || self
                .rules
                .iter()
                .any(|r| stops(r.unmediated_effect()) && may_match(r))
    }

    /// Whether `decision` (made by this policy set) would be the same at any other time:
    /// every rule with a time window failed on another condition. A rule checks its time
    /// window last, so a rule that failed before it fails whatever the time.
    pub fn decided_regardless_of_time(&self, decision: &Decision) -> bool {
        self.rules.len() == decision.explanation.len()
            && self
                .rules
                .iter()
                .zip(&decision.explanation)
                .all(|(rule, trace)| {
                    rule.conditions.time.is_none()
                        || trace.failed.is_some_and(|c| c != Condition::Time)
                })
    }

    /// The outcome for statements no rule matches.
    pub fn unmatched_outcome(&self) -> &Outcome {
        &self.settings.unmatched
    }

    /// The statement classifier (with its fingerprint cache).
    pub fn classifier(&self) -> &CachedClassifier {
        &self.classifier
    }

    /// The principal behind a session with these facts.
    pub fn principal(&self, facts: &Facts) -> Arc<Principal> {
        self.identities.resolve(facts)
    }

    /// Classifies `sql` and decides what happens to it for the session described by
    /// `facts`. `EXECUTE` of a prepared statement counts as unknown; use
    /// [`PolicySet::evaluate_with`] to supply the session's prepared statements.
    pub fn evaluate(&self, facts: &Facts, sql: &str, now: SystemTime) -> Decision {
        self.evaluate_with(facts, sql, now, &NoPrepared)
    }

    /// [`PolicySet::evaluate`], with the session's prepared statements for `EXECUTE`.
    pub fn evaluate_with(
        &self,
        facts: &Facts,
        sql: &str,
        now: SystemTime,
        prepared: &dyn PreparedStatements,
    ) -> Decision {
        let classification = self.classifier.classify(sql, prepared);
        self.decide(facts, classification, now)
    }

    /// Decides for an already classified statement.
    pub fn decide(
        &self,
        facts: &Facts,
        classification: Arc<Classification>,
        now: SystemTime,
    ) -> Decision {
        let principal = self.identities.resolve(facts);
        let classes = self.effective_classes(&classification);
        let subject = Subject {
            facts,
            principal: &principal,
            classification: &classification,
            classes,
            now,
        };
        let mut explanation = Vec::with_capacity(self.rules.len());
        let mut decided: Option<&Rule> = None;
        for rule in &self.rules {
            let trace = rule.check(&subject);
            if trace.matched()
                && decided.is_none_or(|d| rule.outcome.severity() > d.outcome.severity())
            {
                decided = Some(rule);
            }
            explanation.push(trace);
        }
        let mut outcome =
            decided.map_or_else(|| self.settings.unmatched.clone(), |r| r.outcome.clone());
        let mut notes = Vec::new();
        if outcome == Outcome::Allow && classes.contains(Class::Unknown) {
            outcome = Outcome::Audit;
            notes.push("a statement of unknown class is never allowed silently: raised to audit");
        }
        let unmediated = decided
            .and_then(|r| r.unmediated)
            .unwrap_or_else(|| Unmediated::for_outcome(&outcome));
        Decision {
            outcome,
            rule: decided.map(|r| r.name.to_string()),
            principal,
            classification,
            effective_classes: classes,
            unmediated,
            explanation,
            notes,
        }
    }

    /// The classes rules see: `unknown` from parse errors and unknown statements replaced
    /// as `on_parse_error` / `on_unknown_statement` say.
    fn effective_classes(&self, c: &Classification) -> ClassSet {
        let mut classes = c.classes;
        if !classes.contains(Class::Unknown) {
            return classes;
        }
        let sources = c.unknown;
        if !sources.parse_error && !sources.unknown_statement {
            return classes;
        }
        let mut keep_unknown = false;
        let mut replace = |applies: bool, class: Class, classes: &mut ClassSet| {
            if applies {
                if class == Class::Unknown {
                    keep_unknown = true;
                } else {
                    classes.insert(class);
                }
            }
        };
        replace(
            sources.parse_error,
            self.settings.on_parse_error,
            &mut classes,
        );
        replace(
            sources.unknown_statement,
            self.settings.on_unknown_statement,
            &mut classes,
        );
        if !keep_unknown {
            classes.remove(Class::Unknown);
        }
        classes
    }
}

/// Whether handling an unmediated statement this way stops it in the kernel.
fn stops(unmediated: Unmediated) -> bool {
    matches!(
        unmediated,
        Unmediated::Hold | Unmediated::Terminate | Unmediated::Block
    )
}

#[cfg(test)]
mod tests;
