//! Statement classification: SQL text → class, tables, functions, WHERE/LIMIT facts.
//!
//! A [`Classifier`] is one SQL dialect. [`postgres::PostgresClassifier`] is the only one
//! today; MySQL plugs in behind the same trait. Classification is pure (no I/O) and does not
//! depend on policy, so it can be cached by statement fingerprint ([`fingerprint`]).

mod fallback;
mod findings;
pub mod fingerprint;
mod functions;
pub mod postgres;
mod predicate;

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a statement (or one part of it) does, ordered from least to most dangerous.
///
/// A statement is classified by its most dangerous part: [`Classification::class`] is the
/// maximum of [`Classification::classes`].
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, SET TRANSACTION.
    Transaction,
    /// SET (harmless settings), SHOW, RESET, DISCARD, LISTEN/NOTIFY, DEALLOCATE.
    Session,
    /// SELECT, EXPLAIN (without ANALYZE), FETCH, DECLARE … CURSOR.
    Read,
    /// INSERT, UPDATE, COPY … FROM STDIN, LOCK, CALL, nextval/setval.
    Write,
    /// DELETE, TRUNCATE, MERGE.
    Delete,
    /// CREATE/ALTER/DROP of schema objects, COMMENT, SELECT … INTO a new table.
    Ddl,
    /// ALTER SYSTEM, SET ROLE, SET SESSION AUTHORIZATION, CREATE EXTENSION,
    /// pg_terminate_backend, VACUUM, CHECKPOINT, foreign servers.
    Admin,
    /// GRANT, REVOKE, CREATE/ALTER/DROP ROLE or USER, row-level security policies.
    Privilege,
    /// COPY … TO (file, program, stdout), COPY … FROM a server file or program,
    /// pg_read_file, lo_export, lo_import, dblink, SELECT … INTO OUTFILE.
    Export,
    /// Could not be read (parse error), an unknown statement kind, or SQL hidden in a
    /// value the classifier cannot see (EXECUTE of an unknown prepared statement, dynamic
    /// SQL). The highest risk: it may be anything.
    #[default]
    Unknown,
}

impl Class {
    /// Every class, least dangerous first.
    pub const ALL: [Class; 10] = [
        Class::Transaction,
        Class::Session,
        Class::Read,
        Class::Write,
        Class::Delete,
        Class::Ddl,
        Class::Admin,
        Class::Privilege,
        Class::Export,
        Class::Unknown,
    ];

    /// The lower-case name used in policy files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Class::Transaction => "transaction",
            Class::Session => "session",
            Class::Read => "read",
            Class::Write => "write",
            Class::Delete => "delete",
            Class::Ddl => "ddl",
            Class::Admin => "admin",
            Class::Privilege => "privilege",
            Class::Export => "export",
            Class::Unknown => "unknown",
        }
    }

    /// Parses a class name as written in policy files.
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of classes (a bit set; cheap to copy and intersect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ClassSet(u16);

impl ClassSet {
    /// The empty set.
    pub const EMPTY: ClassSet = ClassSet(0);

    /// Adds a class.
    pub fn insert(&mut self, class: Class) {
        self.0 |= class.bit();
    }

    /// Removes a class.
    pub fn remove(&mut self, class: Class) {
        self.0 &= !class.bit();
    }

    /// Whether the set holds `class`.
    pub fn contains(self, class: Class) -> bool {
        self.0 & class.bit() != 0
    }

    /// Whether no class is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the two sets share a class.
    pub fn intersects(self, other: ClassSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether every class of `self` is in `other`.
    pub fn is_subset(self, other: ClassSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The most dangerous class in the set, if any.
    pub fn max(self) -> Option<Class> {
        self.iter().last()
    }

    /// The classes, least dangerous first.
    pub fn iter(self) -> impl Iterator<Item = Class> {
        Class::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Class> for ClassSet {
    fn from_iter<I: IntoIterator<Item = Class>>(iter: I) -> Self {
        let mut set = ClassSet::EMPTY;
        for class in iter {
            set.insert(class);
        }
        set
    }
}

impl Serialize for ClassSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// Why part of a statement got the [`Class::Unknown`] class; the policy decides what each
/// source is treated as (`on_parse_error`, `on_unknown_statement`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnknownSources {
    /// Part of the text could not be parsed.
    pub parse_error: bool,
    /// A statement kind the classifier does not know, or SQL it cannot see (EXECUTE of an
    /// unknown prepared statement, dynamic SQL in a DO block or `query_to_xml`).
    pub unknown_statement: bool,
}

/// Everything the policy needs to know about one SQL string (which may hold several
/// statements).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// The most dangerous class of any part (`session` for an empty string).
    pub class: Class,
    /// Every class seen in any part (nested statements, CTEs, function calls included).
    pub classes: ClassSet,
    /// Commands, upper case (`SELECT`, `UPDATE`, `COPY TO PROGRAM`, `SET ROLE`, `DO`, …).
    pub commands: Vec<String>,
    /// Tables and views referenced, as written (`schema.table` or `table`); unquoted
    /// names folded to lower case like PostgreSQL does.
    pub tables: Vec<String>,
    /// Schemas named explicitly in table references.
    pub schemas: Vec<String>,
    /// Whether some table was referenced without a schema (its schema depends on the
    /// session's `search_path`).
    pub unqualified_tables: bool,
    /// Column names referenced (`*` for a wildcard).
    pub columns: Vec<String>,
    /// Functions called, without schema, unquoted names in lower case.
    pub functions: Vec<String>,
    /// Every UPDATE/DELETE has a WHERE clause (false for TRUNCATE); when the string holds
    /// no UPDATE/DELETE: every SELECT has one.
    pub has_where: bool,
    /// Every query and UPDATE/DELETE has a LIMIT/FETCH.
    pub has_limit: bool,
    /// Number of top-level statements.
    pub statements: usize,
    /// Where the [`Class::Unknown`] class came from, if present.
    pub unknown: UnknownSources,
    /// The parser's message when part of the text could not be parsed.
    pub parse_error: Option<String>,
    /// Human-readable notes on why classes were assigned (for `dbward policy explain`).
    pub notes: Vec<String>,
    /// Whether this result depends only on the statement's fingerprint (literals replaced),
    /// so it may be cached. False when a literal's value mattered (DO '…' bodies,
    /// `set_config('role', …)`) or a session's prepared statements were consulted.
    #[serde(skip)]
    pub cacheable: bool,
}

/// Supplies the text of statements prepared earlier in the session, so that `EXECUTE name`
/// can be classified as what it runs. Without it, EXECUTE counts as [`Class::Unknown`].
pub trait PreparedStatements {
    /// The SQL of the statement prepared as `name` in this session, if known.
    fn prepared_sql(&self, name: &str) -> Option<String>;
}

/// A session's prepared statements by name.
impl PreparedStatements for std::collections::HashMap<String, String> {
    fn prepared_sql(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// No prepared statements known.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrepared;

impl PreparedStatements for NoPrepared {
    fn prepared_sql(&self, _name: &str) -> Option<String> {
        None
    }
}

/// One SQL dialect's classifier.
pub trait Classifier: Send + Sync + fmt::Debug {
    /// The dialect's name (`postgresql`).
    fn dialect(&self) -> &'static str;

    /// Classifies `sql`, which may hold several statements. Never fails: what cannot be
    /// read is [`Class::Unknown`] with [`UnknownSources::parse_error`] set.
    fn classify(&self, sql: &str, prepared: &dyn PreparedStatements) -> Classification;
}
