//! What a query string does to its session's prepared statements: SQL `PREPARE name AS …`
//! defines one, `DEALLOCATE [PREPARE] name|ALL` and `DISCARD ALL` drop them. The shim
//! tracks these so that `EXECUTE name` and a protocol Bind of `name` are judged by the
//! statement they run.

use sqlparser::ast::{DiscardObject, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::ident;

/// One change to the session's prepared statements, in the order the query makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreparedChange {
    /// `PREPARE name AS sql` (it takes effect only if the server runs it).
    Prepare {
        /// The statement name, folded as PostgreSQL folds identifiers.
        name: String,
        /// The prepared statement's text.
        sql: String,
    },
    /// `DEALLOCATE name`.
    Deallocate(String),
    /// `DEALLOCATE ALL` or `DISCARD ALL`.
    DeallocateAll,
}

/// What a query string does to the session's prepared statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PreparedChanges {
    /// Nothing (the common case, found without parsing).
    #[default]
    None,
    /// These changes, in order.
    Some(Vec<PreparedChange>),
    /// It names PREPARE, DEALLOCATE or DISCARD but cannot be parsed: any prepared
    /// statement may have changed.
    Unreadable,
}

/// The changes `sql` makes to its session's prepared statements.
pub fn prepared_changes(sql: &str) -> PreparedChanges {
    let mentions = |word: &str| {
        sql.as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    if !mentions("prepare") && !mentions("deallocate") && !mentions("discard") {
        return PreparedChanges::None;
    }
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return PreparedChanges::Unreadable;
    };
    let changes: Vec<PreparedChange> = statements
        .iter()
        .filter_map(|statement| match statement {
            Statement::Prepare {
                name, statement, ..
            } => Some(PreparedChange::Prepare {
                name: ident(name),
                sql: statement.to_string(),
            }),
            Statement::Deallocate { name, .. }
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") =>
            {
                Some(PreparedChange::DeallocateAll)
            }
            Statement::Deallocate { name, .. } => Some(PreparedChange::Deallocate(ident(name))),
            Statement::Discard {
                object_type: DiscardObject::ALL,
            } => Some(PreparedChange::DeallocateAll),
            _ => None,
        })
        .collect();
    if changes.is_empty() {
        PreparedChanges::None
    } else {
        PreparedChanges::Some(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_deallocate_and_discard_in_order() {
        let got = prepared_changes(
            "PREPARE Del(int) AS DELETE FROM t WHERE id = $1; DEALLOCATE PREPARE \"Q\"; \
             SELECT 1; DEALLOCATE ALL; DISCARD ALL; DISCARD PLANS",
        );
        assert_eq!(
            got,
            PreparedChanges::Some(vec![
                PreparedChange::Prepare {
                    name: "del".into(),
                    sql: "DELETE FROM t WHERE id = $1".into(),
                },
                PreparedChange::Deallocate("Q".into()),
                PreparedChange::DeallocateAll,
                PreparedChange::DeallocateAll,
            ])
        );
    }

    #[test]
    fn statements_that_do_not_name_them_change_nothing() {
        assert_eq!(prepared_changes("SELECT 1"), PreparedChanges::None);
        assert_eq!(
            prepared_changes("SELECT 'prepare' AS word"),
            PreparedChanges::None
        );
    }

    #[test]
    fn unreadable_text_that_names_them_may_change_anything() {
        assert_eq!(
            prepared_changes("PREPARE p AS DELETE FROM ((("),
            PreparedChanges::Unreadable
        );
    }
}
