//! The classification corpus (`tests/data/policy/corpus/*.sql`): every statement gets its
//! expected class, WHERE flag, tables and functions, cached or not.
//!
//! Format: a line `-- expect: CLASS [where=BOOL] [tables=a,b] [functions=f,g]` followed by
//! the statement text up to the next `-- expect:` line.

#[path = "common/corpus.rs"]
mod corpus;

use dbward_agent::policy::classify::fingerprint::CachedClassifier;
use dbward_agent::policy::classify::postgres::PostgresClassifier;
use dbward_agent::policy::classify::{Class, Classification, Classifier, NoPrepared};

struct Case {
    file: String,
    line: usize,
    sql: String,
    class: Class,
    has_where: Option<bool>,
    tables: Vec<String>,
    functions: Vec<String>,
}

fn parse_expect(
    spec: &str,
    file: &str,
    line: usize,
) -> (Class, Option<bool>, Vec<String>, Vec<String>) {
    let mut words = spec.split_whitespace();
    let class_name = words
        .next()
        .unwrap_or_else(|| panic!("{file}:{line}: no class"));
    let class = Class::from_name(class_name)
        .unwrap_or_else(|| panic!("{file}:{line}: unknown class {class_name}"));
    let (mut has_where, mut tables, mut functions) = (None, Vec::new(), Vec::new());
    for word in words {
        let (key, value) = word
            .split_once('=')
            .unwrap_or_else(|| panic!("{file}:{line}: `{word}` is not key=value"));
        let list = || value.split(',').map(str::to_string).collect::<Vec<_>>();
        match key {
            "where" => has_where = Some(value == "true"),
            "tables" => tables = list(),
            "functions" => functions = list(),
            _ => panic!("{file}:{line}: unknown expectation {key}"),
        }
    }
    (class, has_where, tables, functions)
}

fn load_corpus() -> Vec<Case> {
    corpus::entries()
        .into_iter()
        .map(|entry| {
            assert!(
                !entry.sql.is_empty(),
                "{}:{}: empty statement",
                entry.file,
                entry.line
            );
            let (class, has_where, tables, functions) =
                parse_expect(&entry.expect, &entry.file, entry.line);
            Case {
                file: entry.file,
                line: entry.line,
                sql: entry.sql,
                class,
                has_where,
                tables,
                functions,
            }
        })
        .collect()
}

fn mismatches(case: &Case, got: &Classification) -> Vec<String> {
    let mut out = Vec::new();
    if got.class != case.class {
        out.push(format!("class {} (expected {})", got.class, case.class));
    }
    if let Some(w) = case.has_where
        && got.has_where != w
    {
        out.push(format!("has_where {} (expected {w})", got.has_where));
    }
    for t in &case.tables {
        if !got.tables.contains(t) {
            out.push(format!("table {t} missing from {:?}", got.tables));
        }
    }
    for f in &case.functions {
        if !got.functions.contains(f) {
            out.push(format!("function {f} missing from {:?}", got.functions));
        }
    }
    out
}

#[test]
fn corpus_has_at_least_300_statements_of_every_class() {
    let cases = load_corpus();
    assert!(cases.len() >= 300, "only {} statements", cases.len());
    for class in Class::ALL {
        assert!(
            cases.iter().any(|c| c.class == class),
            "no corpus statement of class {class}"
        );
    }
}

#[test]
fn every_corpus_statement_gets_its_expected_classification() {
    let failures: Vec<String> = load_corpus()
        .iter()
        .filter_map(|case| {
            let got = PostgresClassifier.classify(&case.sql, &NoPrepared);
            let problems = mismatches(case, &got);
            (!problems.is_empty()).then(|| {
                format!(
                    "{}:{}: {}\n    {}\n    notes: {:?}",
                    case.file,
                    case.line,
                    case.sql.replace('\n', " "),
                    problems.join("; "),
                    got.notes
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn cached_classification_equals_fresh_classification_for_the_corpus() {
    let cached = CachedClassifier::new(Box::new(PostgresClassifier), 4096);
    let cases = load_corpus();
    for round in 0..2 {
        for case in &cases {
            let fresh = PostgresClassifier.classify(&case.sql, &NoPrepared);
            let got = cached.classify(&case.sql, &NoPrepared);
            assert_eq!(
                (
                    got.class,
                    got.classes,
                    &got.tables,
                    &got.functions,
                    got.has_where,
                    got.has_limit
                ),
                (
                    fresh.class,
                    fresh.classes,
                    &fresh.tables,
                    &fresh.functions,
                    fresh.has_where,
                    fresh.has_limit
                ),
                "round {round}, {}:{}",
                case.file,
                case.line
            );
        }
    }
    let (hits, _) = cached.stats();
    assert!(hits > 0, "the second round must hit the cache");
}
