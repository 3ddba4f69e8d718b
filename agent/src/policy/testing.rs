//! Policy test cases (`policies/tests/*.yaml`: SQL + session facts → expected outcome and
//! rule), run against a policy like `opa test`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use super::facts::Facts;
use super::model::StringList;
use super::{PolicyErrors, PolicySet};

/// A file of test cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The cases, run in order.
    pub tests: Vec<TestCase>,
}

/// One test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case shows (`ai agent cannot export without approval`).
    pub name: String,
    /// Session facts, as for `explain --as` (`kind: ai_agent`, `db_user: app`, …).
    #[serde(rename = "as", default)]
    pub facts: BTreeMap<String, StringList>,
    /// The statement.
    pub sql: String,
    /// When it runs (RFC 3339, e.g. `2026-01-05T10:00:00Z`); default now.
    pub at: Option<String>,
    /// What the policy must decide.
    pub expect: Expectation,
}

/// The expected decision; only the keys given are checked (`outcome` always).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `allow`, `audit`, `deny` or `require_approval`.
    pub outcome: String,
    /// The rule that must decide.
    pub rule: Option<String>,
    /// `true`: no rule may match (the `unmatched` default decides).
    #[serde(default)]
    pub unmatched: bool,
    /// The statement's class.
    pub class: Option<String>,
    /// The principal's name.
    pub principal: Option<String>,
}

/// A difference between expected and actual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Which field (`outcome`, `rule`, `class`, `principal`, `as`, `at`).
    pub field: &'static str,
    /// Expected value.
    pub expected: String,
    /// Actual value.
    pub actual: String,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The file the case is in.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// The statement.
    pub sql: String,
    /// Empty when the case passed.
    pub differences: Vec<Difference>,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.differences.is_empty()
    }
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return write!(f, "PASS {}: {}", self.file.display(), self.name);
        }
        writeln!(f, "FAIL {}: {}", self.file.display(), self.name)?;
        writeln!(f, "  sql: {}", self.sql)?;
        for d in &self.differences {
            writeln!(f, "  - {}: {}", d.field, d.expected)?;
            writeln!(f, "  + {}: {}", d.field, d.actual)?;
        }
        Ok(())
    }
}

/// Reads every `*.yaml`/`*.yml` test file in `dir` (file-name order); every file's errors
/// are reported with their position.
pub fn load_tests(dir: &Path) -> Result<Vec<(PathBuf, TestFile)>, PolicyErrors> {
    let sources = super::load::read_dir(dir, "test")?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in sources {
        if let Some(file) = super::yaml::parse::<TestFile>(&path, &text, &mut errors) {
            files.push((path, file));
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(PolicyErrors(errors))
    }
}

/// Runs one case against `policy`.
pub fn run_case(policy: &PolicySet, file: &Path, case: &TestCase) -> CaseResult {
    let mut differences = Vec::new();
    let pairs: Vec<(&str, &str)> = case
        .facts
        .iter()
        .flat_map(|(k, values)| values.0.iter().map(move |v| (k.as_str(), v.as_str())))
        .collect();
    let facts = Facts::from_pairs(&pairs).unwrap_or_else(|err| {
        differences.push(Difference {
            field: "as",
            expected: "valid facts".to_string(),
            actual: err.to_string(),
        });
        Facts::default()
    });
    let now = match &case.at {
        None => SystemTime::now(),
        Some(at) => humantime::parse_rfc3339_weak(at).unwrap_or_else(|err| {
            differences.push(Difference {
                field: "at",
                expected: "an RFC 3339 time like 2026-01-05T10:00:00Z".to_string(),
                actual: format!("{at}: {err}"),
            });
            SystemTime::now()
        }),
    };
    let decision = policy.evaluate(&facts, &case.sql, now);
    let actual_rule = decision
        .rule
        .clone()
        .unwrap_or_else(|| "(none)".to_string());
    let mut check = |field, expected: &str, actual: &str| {
        if expected != actual {
            differences.push(Difference {
                field,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    };
    check("outcome", &case.expect.outcome, decision.outcome.name());
    if let Some(rule) = &case.expect.rule {
        check("rule", rule, &actual_rule);
    }
    if case.expect.unmatched {
        check("rule", "(none)", &actual_rule);
    }
    if let Some(class) = &case.expect.class {
        check("class", class, decision.classification.class.name());
    }
    if let Some(principal) = &case.expect.principal {
        check("principal", principal, &decision.principal.name);
    }
    CaseResult {
        file: file.to_path_buf(),
        name: case.name.clone(),
        sql: case.sql.clone(),
        differences,
    }
}

/// Runs every case of every file.
pub fn run_all(policy: &PolicySet, files: &[(PathBuf, TestFile)]) -> Vec<CaseResult> {
    files
        .iter()
        .flat_map(|(path, file)| {
            file.tests
                .iter()
                .map(move |case| run_case(policy, path, case))
        })
        .collect()
}
