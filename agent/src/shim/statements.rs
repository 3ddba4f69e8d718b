//! A session's prepared statements by name (protocol `Parse`, SQL `PREPARE`), as the
//! server may hold them, so that a `Bind`/`Execute` and an SQL `EXECUTE` are judged by the
//! text they run.
//!
//! SQL `PREPARE` counts once the server reported it done (its `PREPARE` command tag): the
//! name was free, so it stands for that text alone. `DEALLOCATE` and `DISCARD ALL` drop
//! names as soon as they are sent (a name the shim does not know is refused at Execute, and
//! its SQL `EXECUTE` is of class `unknown`: forgetting too early is safe).
//!
//! The shim forwards a `Parse` before the server answers it, so it cannot always know which
//! text a name stands for. PostgreSQL refuses a named `Parse` whose name is taken (42P05)
//! and keeps the old statement, but accepts it if the earlier `Parse` of that name failed. A
//! name parsed again with other text therefore stands for every text it was given, and an
//! `Execute` of it is judged on all of them (the strictest decides). The unnamed statement
//! is replaced by each `Parse`, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::classify::PreparedStatements;
use crate::policy::classify::postgres::prepared::{PreparedChange, PreparedChanges};

/// Most distinct texts one name may stand for; a name parsed again with yet another text
/// stands for an unknown statement (its `Execute` is refused).
pub const MAX_DEFINITIONS: usize = 8;

/// What a statement name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Definition {
    /// One text, or several the server may hold (joined by `;` and a newline, so policy
    /// classifies each).
    Text(Arc<str>),
    /// More than [`MAX_DEFINITIONS`] candidate texts: not judged, refused.
    Unknown,
}

/// The session's prepared statements.
#[derive(Debug, Default)]
pub struct Statements {
    by_name: HashMap<String, Candidates>,
}

#[derive(Debug)]
enum Candidates {
    Known {
        texts: Vec<Arc<str>>,
        joined: Arc<str>,
    },
    Unknown,
}

impl Statements {
    /// A client `Parse` of `sql` as `name` (empty: the unnamed statement).
    pub fn parse(&mut self, name: String, sql: Arc<str>) {
        if name.is_empty() {
            self.by_name.insert(name, Candidates::one(sql));
            return;
        }
        match self.by_name.get_mut(&name) {
            None => {
                self.by_name.insert(name, Candidates::one(sql));
            }
            Some(Candidates::Unknown) => {}
            Some(candidates @ Candidates::Known { .. }) => candidates.add(sql),
        }
    }

    /// A client `Close` of the statement `name` (or the shim's own use of the unnamed one).
    pub fn close(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// Applies what a query sends to its prepared statements before the server runs it:
    /// drops (`DEALLOCATE`, `DISCARD ALL`; every name when the query cannot be read).
    pub fn query_sent(&mut self, changes: &PreparedChanges) {
        match changes {
            PreparedChanges::None => {}
            PreparedChanges::Unreadable => self.by_name.clear(),
            PreparedChanges::Some(changes) => self.drop_named(changes),
        }
    }

    /// Applies a query's changes once the server ran it: its first `prepared` PREPAREs (as
    /// many as `PREPARE` command tags came back) define their names; drops are made again
    /// in order, so a name prepared then deallocated in one query ends dropped.
    pub fn query_done(&mut self, changes: &PreparedChanges, prepared: usize) {
        let PreparedChanges::Some(changes) = changes else {
            return;
        };
        let mut confirmed = 0;
        for change in changes {
            match change {
                PreparedChange::Prepare { name, sql } if confirmed < prepared => {
                    confirmed += 1;
                    self.by_name
                        .insert(name.clone(), Candidates::one(Arc::from(sql.as_str())));
                }
                PreparedChange::Prepare { .. } => {}
                drop => self.drop_named(std::slice::from_ref(drop)),
            }
        }
    }

    fn drop_named(&mut self, changes: &[PreparedChange]) {
        for change in changes {
            match change {
                PreparedChange::Deallocate(name) => {
                    self.by_name.remove(name);
                }
                PreparedChange::DeallocateAll => self.by_name.clear(),
                PreparedChange::Prepare { .. } => {}
            }
        }
    }

    /// What `name` stands for; `None` when the session never parsed or prepared it.
    pub fn get(&self, name: &str) -> Option<Definition> {
        self.by_name.get(name).map(|c| match c {
            Candidates::Known { joined, .. } => Definition::Text(joined.clone()),
            Candidates::Unknown => Definition::Unknown,
        })
    }
}

/// For SQL `EXECUTE name`: the text(s) `name` stands for; unknown names and names with too
/// many candidate texts have none (the classifier then counts the EXECUTE as `unknown`).
impl PreparedStatements for Statements {
    fn prepared_sql(&self, name: &str) -> Option<String> {
        match self.by_name.get(name)? {
            Candidates::Known { joined, .. } => Some(joined.to_string()),
            Candidates::Unknown => None,
        }
    }
}

impl Candidates {
    fn one(sql: Arc<str>) -> Self {
        Candidates::Known {
            texts: vec![sql.clone()],
            joined: sql,
        }
    }

    fn add(&mut self, sql: Arc<str>) {
        let Candidates::Known { texts, joined } = self else {
            return;
        };
        if texts.contains(&sql) {
            return;
        }
        if texts.len() >= MAX_DEFINITIONS {
            *self = Candidates::Unknown;
            return;
        }
        texts.push(sql);
        *joined = Arc::from(
            texts
                .iter()
                .map(|t| t.trim_end().trim_end_matches(';'))
                .collect::<Vec<_>>()
                .join(";\n"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &Statements, name: &str) -> Option<String> {
        match s.get(name)? {
            Definition::Text(t) => Some(t.to_string()),
            Definition::Unknown => Some("<unknown>".into()),
        }
    }

    #[test]
    fn a_named_statement_parsed_again_stands_for_both_texts() {
        let mut s = Statements::default();
        s.parse("s1".into(), "DELETE FROM t;".into());
        s.parse("s1".into(), "SELECT 1".into());
        assert_eq!(text(&s, "s1").as_deref(), Some("DELETE FROM t;\nSELECT 1"));
        // The same text again adds nothing.
        s.parse("s1".into(), "SELECT 1".into());
        assert_eq!(text(&s, "s1").as_deref(), Some("DELETE FROM t;\nSELECT 1"));
        s.close("s1");
        assert_eq!(text(&s, "s1"), None);
        s.parse("s1".into(), "SELECT 2".into());
        assert_eq!(text(&s, "s1").as_deref(), Some("SELECT 2"));
    }

    #[test]
    fn sql_prepare_counts_once_the_server_ran_it_and_drops_count_at_once() {
        use crate::policy::classify::postgres::prepared::prepared_changes;
        let mut s = Statements::default();
        s.parse("old".into(), "SELECT 1".into());
        let changes = prepared_changes("PREPARE a AS DELETE FROM t; PREPARE b AS SELECT 2");
        s.query_sent(&changes);
        assert_eq!(s.prepared_sql("a"), None, "not yet run");
        // The second PREPARE failed: one PREPARE tag came back.
        s.query_done(&changes, 1);
        assert_eq!(s.prepared_sql("a").as_deref(), Some("DELETE FROM t"));
        assert_eq!(s.prepared_sql("b"), None);

        let changes = prepared_changes("DEALLOCATE a");
        s.query_sent(&changes);
        assert_eq!(s.prepared_sql("a"), None, "dropped when sent");
        s.query_sent(&prepared_changes("DISCARD ALL"));
        assert_eq!(s.get("old"), None);

        s.parse("p".into(), "SELECT 1".into());
        s.query_sent(&prepared_changes("PREPARE p AS SELECT (((  "));
        assert_eq!(s.get("p"), None, "an unreadable PREPARE forgets every name");
    }

    #[test]
    fn the_unnamed_statement_is_replaced() {
        let mut s = Statements::default();
        s.parse(String::new(), "DELETE FROM t".into());
        s.parse(String::new(), "SELECT 1".into());
        assert_eq!(text(&s, "").as_deref(), Some("SELECT 1"));
    }

    #[test]
    fn too_many_candidate_texts_make_the_name_unknown_until_closed() {
        let mut s = Statements::default();
        for i in 0..=MAX_DEFINITIONS {
            s.parse("s".into(), format!("SELECT {i}").into());
        }
        assert_eq!(s.get("s"), Some(Definition::Unknown));
        s.parse("s".into(), "SELECT 1".into());
        assert_eq!(s.get("s"), Some(Definition::Unknown));
        s.close("s");
        s.parse("s".into(), "SELECT 1".into());
        assert_eq!(text(&s, "s").as_deref(), Some("SELECT 1"));
    }
}
