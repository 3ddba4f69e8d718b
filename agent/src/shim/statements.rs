//! A session's prepared statements (protocol `Parse`) by name, as the server may hold them,
//! so that a `Bind`/`Execute` is judged by the text it runs.
//!
//! The shim forwards a `Parse` before the server answers it, so it cannot always know which
//! text a name stands for. PostgreSQL refuses a named `Parse` whose name is taken (42P05)
//! and keeps the old statement, but accepts it if the earlier `Parse` of that name failed. A
//! name parsed again with other text therefore stands for every text it was given, and an
//! `Execute` of it is judged on all of them (the strictest decides). The unnamed statement
//! is replaced by each `Parse`, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

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

    /// What `name` stands for; `None` when the session never parsed it (e.g. SQL `PREPARE`).
    pub fn get(&self, name: &str) -> Option<Definition> {
        self.by_name.get(name).map(|c| match c {
            Candidates::Known { joined, .. } => Definition::Text(joined.clone()),
            Candidates::Unknown => Definition::Unknown,
        })
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
