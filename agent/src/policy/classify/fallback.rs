//! Statements `sqlparser` cannot parse but PostgreSQL accepts: `DO` blocks (their PL/pgSQL
//! body is read statement by statement), `TABLE name`, COPY with options the parser does
//! not know, and commands whose leading words fix their class (GRANT, CREATE ROLE, VACUUM,
//! …). Functions of concern called anywhere in such a statement still count.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::findings::Findings;
use super::functions::{self, Concern};
use super::postgres::{classify_into, quoted_name, split_statements, walk};
use super::{Class, PreparedStatements};

/// Commands recognised by their leading words: (words, class, command). Longer prefixes
/// come first; none of these can contain another statement.
const UTILITY: &[(&[&str], Class, &str)] = &[
    (
        &["CREATE", "USER", "MAPPING"],
        Class::Admin,
        "CREATE USER MAPPING",
    ),
    (
        &["CREATE", "OR", "REPLACE", "FUNCTION"],
        Class::Ddl,
        "CREATE FUNCTION",
    ),
    (
        &["CREATE", "OR", "REPLACE", "PROCEDURE"],
        Class::Ddl,
        "CREATE PROCEDURE",
    ),
    (&["CREATE", "FUNCTION"], Class::Ddl, "CREATE FUNCTION"),
    (&["CREATE", "PROCEDURE"], Class::Ddl, "CREATE PROCEDURE"),
    (&["ALTER", "TABLE"], Class::Ddl, "ALTER TABLE"),
    (&["GRANT"], Class::Privilege, "GRANT"),
    (&["REVOKE"], Class::Privilege, "REVOKE"),
    (&["CREATE", "ROLE"], Class::Privilege, "CREATE ROLE"),
    (&["CREATE", "USER"], Class::Privilege, "CREATE USER"),
    (&["ALTER", "ROLE"], Class::Privilege, "ALTER ROLE"),
    (&["ALTER", "USER"], Class::Privilege, "ALTER USER"),
    (&["DROP", "ROLE"], Class::Privilege, "DROP ROLE"),
    (&["DROP", "USER"], Class::Privilege, "DROP USER"),
    (&["VACUUM"], Class::Admin, "VACUUM"),
    (&["ANALYZE"], Class::Admin, "ANALYZE"),
    (&["ALTER", "SYSTEM"], Class::Admin, "ALTER SYSTEM"),
    (&["CHECKPOINT"], Class::Admin, "CHECKPOINT"),
    (&["REINDEX"], Class::Admin, "REINDEX"),
    (&["CLUSTER"], Class::Admin, "CLUSTER"),
    (&["LOAD"], Class::Admin, "LOAD"),
    (
        &["IMPORT", "FOREIGN", "SCHEMA"],
        Class::Admin,
        "IMPORT FOREIGN SCHEMA",
    ),
    (
        &["CREATE", "FOREIGN", "DATA", "WRAPPER"],
        Class::Admin,
        "CREATE FOREIGN DATA WRAPPER",
    ),
    (&["REASSIGN", "OWNED"], Class::Privilege, "REASSIGN OWNED"),
    (&["DROP", "OWNED"], Class::Privilege, "DROP OWNED"),
    (&["SECURITY", "LABEL"], Class::Privilege, "SECURITY LABEL"),
    (
        &["ALTER", "DEFAULT", "PRIVILEGES"],
        Class::Privilege,
        "ALTER DEFAULT PRIVILEGES",
    ),
    (&["ALTER", "GROUP"], Class::Privilege, "ALTER GROUP"),
    (&["CREATE", "GROUP"], Class::Privilege, "CREATE GROUP"),
    (&["DROP", "GROUP"], Class::Privilege, "DROP GROUP"),
    (
        &["REFRESH", "MATERIALIZED", "VIEW"],
        Class::Write,
        "REFRESH MATERIALIZED VIEW",
    ),
];

/// Classifies a statement the parser rejected, if it is one this module knows. Returns
/// false when it is not (the caller then records a parse error).
pub(super) fn classify_unparsed(
    tokens: &[Token],
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) -> bool {
    let words = leading_words(tokens, 4);
    match words.first().map(String::as_str) {
        Some("DO") => {
            do_block(tokens, prepared, acc, depth);
            return true;
        }
        Some("TABLE") => return table_statement(tokens, prepared, acc, depth),
        Some("COPY") => {
            if copy_without_options(tokens, prepared, acc, depth) {
                functions_of_concern(tokens, acc);
                return true;
            }
            return false;
        }
        _ => {}
    }
    for (prefix, class, command) in UTILITY {
        if words.len() >= prefix.len() && prefix.iter().zip(&words).all(|(p, w)| p == w) {
            acc.add(*class, command);
            acc.note(format!("{command} classified by its leading words"));
            functions_of_concern(tokens, acc);
            return true;
        }
    }
    false
}

/// `TABLE name` is `SELECT * FROM name`.
fn table_statement(
    tokens: &[Token],
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) -> bool {
    let rest = drop_words(tokens, 1);
    let sql = format!("SELECT * FROM {}", text(&rest));
    let dialect = PostgreSqlDialect {};
    if Parser::parse_sql(&dialect, &sql).is_err() {
        return false;
    }
    classify_into(&sql, prepared, acc, depth, false);
    true
}

/// COPY whose trailing option list the parser rejects (`WITH (FREEZE on)`): options never
/// change what COPY does, so the statement is read without them.
fn copy_without_options(
    tokens: &[Token],
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) -> bool {
    let Some(last) = tokens
        .iter()
        .rposition(|t| !matches!(t, Token::Whitespace(_)))
    else {
        return false;
    };
    if tokens[last] != Token::RParen {
        return false;
    }
    let mut level = 0usize;
    let mut open = None;
    for (i, token) in tokens[..=last].iter().enumerate().rev() {
        match token {
            Token::RParen => level += 1,
            Token::LParen => {
                level -= 1;
                if level == 0 {
                    open = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(open) = open else {
        return false;
    };
    let mut kept: Vec<Token> = tokens[..open].to_vec();
    if let Some(with) = kept
        .iter()
        .rposition(|t| !matches!(t, Token::Whitespace(_)))
        && matches!(&kept[with], Token::Word(w) if w.value.eq_ignore_ascii_case("with"))
    {
        kept.truncate(with);
    }
    let dialect = PostgreSqlDialect {};
    let Ok(statements) = Parser::new(&dialect).with_tokens(kept).parse_statements() else {
        return false;
    };
    for statement in &statements {
        walk(statement, prepared, acc, depth);
    }
    acc.note("COPY options the parser does not know were ignored".to_string());
    true
}

/// Adds the classes of functions of concern called anywhere in `tokens` (`name (`).
fn functions_of_concern(tokens: &[Token], acc: &mut Findings) {
    let significant: Vec<&Token> = significant(tokens).collect();
    for pair in significant.windows(2) {
        let (Token::Word(w), Token::LParen) = (pair[0], pair[1]) else {
            continue;
        };
        let name = if w.quote_style.is_some() {
            quoted_name(&w.value)
        } else {
            w.value.to_lowercase()
        };
        match functions::concern(&name) {
            Some(Concern::Class(class, what)) => {
                acc.add(class, &format!("{}()", name.to_uppercase()));
                acc.note(format!("{name}() {what}"));
            }
            Some(Concern::SetConfig | Concern::DynamicSql) => {
                acc.unknown_statement(format!("{name}() in a statement the parser cannot read"));
            }
            None => {}
        }
    }
}

fn significant(tokens: &[Token]) -> impl Iterator<Item = &Token> {
    tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_)))
}

/// The first `n` tokens, upper-case, as long as they are unquoted words.
fn leading_words(tokens: &[Token], n: usize) -> Vec<String> {
    significant(tokens)
        .take(n)
        .map_while(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
            _ => None,
        })
        .collect()
}

fn string_literal(token: &Token) -> Option<(String, bool)> {
    match token {
        Token::DollarQuotedString(d) => Some((d.value.clone(), true)),
        Token::SingleQuotedString(s)
        | Token::EscapedStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some((s.clone(), false)),
        _ => None,
    }
}

/// `DO [LANGUAGE l] body [LANGUAGE l]`: the body's statements decide the class.
fn do_block(tokens: &[Token], prepared: &dyn PreparedStatements, acc: &mut Findings, depth: usize) {
    acc.command("DO");
    let rest: Vec<&Token> = significant(tokens).skip(1).collect();
    let mut body = None;
    let mut language = None;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            Token::Word(w) if w.value.eq_ignore_ascii_case("language") => {
                language = rest.get(i + 1).map(|t| t.to_string().to_lowercase());
                i += 2;
            }
            token => {
                body = string_literal(token);
                i += 1;
            }
        }
    }
    let Some((body, dollar_quoted)) = body else {
        acc.parse_error("DO without a body".to_string());
        return;
    };
    if !dollar_quoted {
        // The body is a plain string: the fingerprint replaces it, so the result must not
        // be cached under it.
        acc.cacheable = false;
    }
    match language.as_deref() {
        None | Some("plpgsql") | Some("'plpgsql'") => plpgsql(&body, prepared, acc, depth + 1),
        Some(other) => acc.unknown_statement(format!(
            "DO block in language {other}: its body cannot be inspected"
        )),
    }
}

/// Reads a PL/pgSQL body statement by statement. What it cannot follow (loops over
/// queries, dynamic SQL from expressions, exception handlers) is unknown.
pub(super) fn plpgsql(
    body: &str,
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) {
    let dialect = PostgreSqlDialect {};
    let tokens = match Tokenizer::new(&dialect, body).tokenize() {
        Ok(tokens) => tokens,
        Err(err) => {
            acc.parse_error(format!("DO body: {err}"));
            return;
        }
    };
    let mut in_declare = false;
    for part in split_statements(tokens) {
        let mut rest: Vec<Token> = part
            .into_iter()
            .skip_while(|t| matches!(t, Token::Whitespace(_)))
            .collect();
        loop {
            let words = leading_words(&rest, 1);
            match words.first().map(String::as_str) {
                Some("DECLARE") => {
                    in_declare = true;
                    rest = drop_words(&rest, 1);
                }
                Some("BEGIN") => {
                    in_declare = false;
                    rest = drop_words(&rest, 1);
                }
                Some("ELSE") | Some("LOOP") => rest = drop_words(&rest, 1),
                Some("IF") | Some("ELSIF") | Some("WHILE") => {
                    let Some((condition, body)) = split_at_word(&rest, &["THEN", "LOOP"]) else {
                        break;
                    };
                    sql_expression(&drop_words(&condition, 1), prepared, acc, depth);
                    rest = body;
                }
                _ => break,
            }
        }
        if in_declare {
            if let Some((_, init)) = split_at_assignment(&rest) {
                sql_expression(&init, prepared, acc, depth);
            }
            continue;
        }
        plpgsql_statement(&rest, prepared, acc, depth);
    }
}

fn plpgsql_statement(
    tokens: &[Token],
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) {
    let words = leading_words(tokens, 1);
    match words.first().map(String::as_str) {
        None if significant(tokens).next().is_none() => {}
        Some("END") | Some("NULL") | Some("RETURN") | Some("EXIT") | Some("CONTINUE") => {}
        Some("PERFORM") => sql_expression(&drop_words(tokens, 1), prepared, acc, depth),
        Some("RAISE") => {
            if let Some(at) = tokens.iter().position(|t| *t == Token::Comma) {
                sql_expression(&tokens[at + 1..], prepared, acc, depth);
            }
        }
        Some("EXECUTE") => {
            let args: Vec<&Token> = significant(tokens).skip(1).collect();
            match args.first().and_then(|t| string_literal(t)) {
                Some((sql, dollar_quoted)) => {
                    if !dollar_quoted {
                        acc.cacheable = false;
                    }
                    classify_into(&sql, prepared, acc, depth + 1, false);
                }
                None => acc.unknown_statement(
                    "EXECUTE in a DO block runs SQL built at run time".to_string(),
                ),
            }
        }
        Some("FOR") | Some("FOREACH") | Some("EXCEPTION") | Some("CASE") | Some("WHEN") => {
            acc.unknown_statement(format!(
                "PL/pgSQL {} is not followed by the classifier",
                words[0]
            ));
        }
        _ => match split_at_assignment(tokens) {
            Some((_, value)) => sql_expression(&value, prepared, acc, depth),
            None => classify_into(&text(tokens), prepared, acc, depth, false),
        },
    }
}

/// Classifies a PL/pgSQL expression as `SELECT <expression>`.
fn sql_expression(
    tokens: &[Token],
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) {
    if significant(tokens).next().is_some() {
        let sql = format!("SELECT {}", text(tokens));
        let before = acc.statements;
        classify_into(&sql, prepared, acc, depth, false);
        acc.statements = before;
    }
}

fn text(tokens: &[Token]) -> String {
    tokens.iter().map(ToString::to_string).collect()
}

fn drop_words(tokens: &[Token], n: usize) -> Vec<Token> {
    let mut seen = 0;
    tokens
        .iter()
        .skip_while(|t| {
            if seen >= n {
                return matches!(t, Token::Whitespace(_));
            }
            if !matches!(t, Token::Whitespace(_)) {
                seen += 1;
            }
            true
        })
        .cloned()
        .collect()
}

/// Splits at the first of `words` (e.g. `IF cond THEN stmt` → `IF cond`, `stmt`).
fn split_at_word(tokens: &[Token], words: &[&str]) -> Option<(Vec<Token>, Vec<Token>)> {
    let at = tokens.iter().position(|t| {
        matches!(t, Token::Word(w) if w.quote_style.is_none()
            && words.iter().any(|k| w.value.eq_ignore_ascii_case(k)))
    })?;
    Some((tokens[..at].to_vec(), tokens[at + 1..].to_vec()))
}

/// Splits `target := value` (or `target = value`, `name type DEFAULT value`) at the
/// assignment.
fn split_at_assignment(tokens: &[Token]) -> Option<(Vec<Token>, Vec<Token>)> {
    let at = tokens.iter().position(|t| {
        matches!(t, Token::Assignment | Token::Eq)
            || matches!(t, Token::Word(w) if w.quote_style.is_none()
                && w.value.eq_ignore_ascii_case("default"))
    })?;
    let before = significant(&tokens[..at]).count();
    (before >= 1).then(|| (tokens[..at].to_vec(), tokens[at + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::super::{Classifier, NoPrepared, postgres::PostgresClassifier};
    use super::*;

    #[test]
    fn do_blocks_are_classified_by_their_body() {
        let cases = [
            ("DO $$BEGIN DELETE FROM t; END$$", Class::Delete),
            (
                "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
                Class::Export,
            ),
            ("DO 'BEGIN GRANT ALL ON t TO bob; END'", Class::Privilege),
            (
                "DO $x$DECLARE n int := pg_terminate_backend(1); BEGIN NULL; END$x$",
                Class::Admin,
            ),
            (
                "DO $$BEGIN IF true THEN DROP TABLE t; END IF; END$$",
                Class::Ddl,
            ),
            (
                "DO $$BEGIN EXECUTE 'DROP TABLE ' || 't'; END$$",
                Class::Unknown,
            ),
            ("DO $$BEGIN EXECUTE 'TRUNCATE t'; END$$", Class::Delete),
            ("DO $$BEGIN RAISE NOTICE '%', 1; END$$", Class::Read),
            ("DO LANGUAGE plpython3u $$import os$$", Class::Unknown),
            (
                "DO $$BEGIN FOR r IN SELECT 1 LOOP NULL; END LOOP; END$$",
                Class::Unknown,
            ),
        ];
        for (sql, want) in cases {
            let c = PostgresClassifier.classify(sql, &NoPrepared);
            assert_eq!(c.class, want, "{sql}: {c:?}");
            assert!(c.commands.contains(&"DO".to_string()), "{sql}");
        }
    }

    #[test]
    fn utility_commands_are_known_by_their_leading_words() {
        let cases = [
            ("ALTER SYSTEM SET work_mem = '1GB'", Class::Admin),
            ("checkpoint", Class::Admin),
            ("REASSIGN OWNED BY a TO b", Class::Privilege),
            (
                "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob",
                Class::Privilege,
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(
                PostgresClassifier.classify(sql, &NoPrepared).class,
                want,
                "{sql}"
            );
        }
    }

    #[test]
    fn single_quoted_do_bodies_are_not_cached() {
        let c = PostgresClassifier.classify("DO 'BEGIN NULL; END'", &NoPrepared);
        assert!(!c.cacheable);
        let c = PostgresClassifier.classify("DO $$BEGIN NULL; END$$", &NoPrepared);
        assert!(c.cacheable);
    }
}
