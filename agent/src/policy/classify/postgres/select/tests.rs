//! The fast path answers only where its classification equals the parser's: over the
//! corpus and variants of every statement (case, comments, whitespace, each statement cut
//! short, each token dropped or doubled, another statement appended, deep nesting).

use proptest::arbitrary::Arbitrary as _;

use sqlparser::dialect::PostgreSqlDialect;

use super::super::super::{Classification, NoPrepared};
use super::super::{parse_tokens, tokenize};
use super::*;

/// (fast path, parser) classifications of `sql`, when the fast path answers.
fn both(sql: &str) -> Option<(Classification, Classification)> {
    let dialect = PostgreSqlDialect {};
    let tokens = tokenize(&dialect, sql).ok()?;
    let mut fast = Findings::new();
    if !read(&tokens, &mut fast) {
        return None;
    }
    let mut full = Findings::new();
    parse_tokens(&dialect, sql, tokens, &NoPrepared, &mut full, 0, true);
    Some((fast.finish(), full.finish()))
}

/// Checks `sql`; whether the fast path answered.
fn agrees(sql: &str) -> bool {
    match both(sql) {
        Some((fast, full)) => {
            assert_eq!(fast, full, "fast path and parser differ on: {sql}");
            true
        }
        None => false,
    }
}

#[path = "../../../../../tests/common/corpus.rs"]
mod corpus;

fn corpus() -> Vec<String> {
    corpus::entries()
        .into_iter()
        .map(|entry| entry.sql)
        .collect()
}

/// The statement's tokens as text, whitespace and comments dropped.
fn token_texts(sql: &str) -> Vec<String> {
    tokenize(&PostgreSqlDialect {}, sql)
        .map(|tokens| {
            tokens
                .iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .map(|t| t.token.to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fast_path_agrees_with_the_parser_on_the_corpus_and_its_variants() {
    let mut answered = 0;
    for sql in corpus() {
        let variants = [
            sql.clone(),
            sql.to_uppercase(),
            sql.to_lowercase(),
            sql.replace(' ', "\n\t "),
            sql.replace(' ', " /* a /* nested */ comment */ "),
            sql.replace(' ', " -- comment\n"),
            format!("{sql}; DROP TABLE t"),
            format!("{sql};;"),
            format!("WITH w AS (SELECT 1) {sql}"),
            format!("SELECT * FROM ({sql}) AS s"),
            format!("SELECT ({sql})"),
        ];
        for variant in &variants {
            agrees(variant);
        }
        if !agrees(&sql) {
            continue;
        }
        answered += 1;
        let tokens = token_texts(&sql);
        for i in 0..tokens.len() {
            let without: Vec<&str> = tokens
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, t)| t.as_str())
                .collect();
            agrees(&without.join(" "));
            let mut doubled: Vec<&str> = tokens.iter().map(String::as_str).collect();
            doubled.insert(i, &tokens[i]);
            agrees(&doubled.join(" "));
            agrees(&tokens[..i].join(" "));
        }
    }
    assert!(
        answered >= 35,
        "the fast path answered only {answered} times"
    );
}

#[test]
fn fast_path_leaves_deep_nesting_to_the_parser() {
    for depth in 0..60 {
        let open = "(".repeat(depth);
        let close = ")".repeat(depth);
        agrees(&format!("SELECT {open}a{close} FROM t"));
        agrees(&format!("SELECT {open}SELECT a FROM t{close}"));
        agrees(&format!("SELECT a FROM t WHERE {}a", "NOT ".repeat(depth)));
        agrees(&format!("SELECT {}1", "- ".repeat(depth)));
        agrees(&format!(
            "SELECT a FROM t WHERE a = 1 OR b = 2 AND c IS NULL OR d + e * f % {open}g{close} < 3"
        ));
    }
}

#[test]
fn fast_path_answers_plain_selects_and_nothing_else() {
    let answered = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
        "select a, count(*) from s.t x join u on x.id = u.id group by a order by 2 desc limit 5",
        "SELECT * FROM t",
        "SELECT 1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "SELECT * FROM users ORDER BY created_at DESC LIMIT 10 OFFSET 20",
    ];
    for sql in answered {
        assert!(agrees(sql), "{sql}");
    }
    let left_to_the_parser = [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT nextval('s')",
        "SELECT dblink('x', 'y')",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT \"A\" FROM t",
        "SELECT a::text FROM t",
        "SELECT a FROM t UNION SELECT b FROM u",
        "SELECT a INTO new_table FROM t",
        "SELECT 1; SELECT 2",
        "SELECT a FROM t FOR UPDATE",
        "SELECT E'\\x41'",
        "SELECT set_config('role', 'x', false)",
        "SELECT query_to_xml('DELETE FROM t', true, true, '')",
    ];
    for sql in left_to_the_parser {
        assert!(both(sql).is_none(), "{sql}");
    }
}

/// Words and symbols SELECTs are made of, for random statements.
const PIECES: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "AS",
    "JOIN",
    "LEFT",
    "ON",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "WITH",
    "EXISTS",
    "DISTINCT",
    "UNION",
    "date",
    "interval",
    "extract",
    "year",
    "substring",
    "for",
    "count",
    "sum",
    "pg_read_file",
    "nextval",
    "t",
    "u.v",
    "a",
    "b",
    "s.t",
    "volume",
    "part",
    "(",
    ")",
    ",",
    ";",
    "*",
    "+",
    "-",
    "/",
    "=",
    "<>",
    "<",
    ">=",
    "::",
    "1",
    "2.5",
    "'x'",
    "$1",
    "\"q\"",
    "DROP",
    "TABLE",
    "INTO",
    "--",
    "/*",
    "*/",
];

proptest::proptest! {
    // Most random statements are rejected by both; enough cases for dozens that are not.
    #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

    #[test]
    fn fast_path_agrees_with_the_parser_on_random_statements(
        pieces in proptest::collection::vec(proptest::sample::select(PIECES), 1..40)
    ) {
        agrees(&format!("SELECT {}", pieces.join(" ")));
        agrees(&format!("SELECT a FROM t WHERE {}", pieces.join(" ")));
    }

    #[test]
    fn fast_path_agrees_with_the_parser_on_corpus_selects_with_pieces_inserted(
        statement in proptest::sample::select(answered_corpus()),
        inserts in proptest::collection::vec(
            (proptest::sample::Index::arbitrary(), proptest::sample::select(PIECES)),
            1..4,
        )
    ) {
        let mut tokens = token_texts(&statement);
        for (at, piece) in inserts {
            tokens.insert(at.index(tokens.len() + 1), piece.to_string());
        }
        agrees(&tokens.join(" "));
    }
}

/// The corpus statements the fast path answers.
fn answered_corpus() -> Vec<String> {
    corpus()
        .into_iter()
        .filter(|sql| both(sql).is_some())
        .collect()
}
