//! Built-in functions whose call changes a statement's class (file access, backend
//! control, dynamic SQL), wherever they appear in the statement.

use super::Class;

/// What calling a function of concern means for the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Concern {
    /// The call puts the statement in this class.
    Class(Class, &'static str),
    /// `set_config(name, …)`: admin when `name` is `role` or `session_authorization`
    /// (or cannot be seen), session otherwise.
    SetConfig,
    /// The first argument is SQL executed by the function (`query_to_xml`): classified as
    /// that SQL when it is a literal, unknown otherwise.
    DynamicSql,
}

const TABLE: &[(&str, Concern)] = &[
    (
        "pg_read_file",
        Concern::Class(Class::Export, "reads a server file"),
    ),
    (
        "pg_read_binary_file",
        Concern::Class(Class::Export, "reads a server file"),
    ),
    (
        "pg_stat_file",
        Concern::Class(Class::Export, "inspects a server file"),
    ),
    (
        "pg_ls_dir",
        Concern::Class(Class::Export, "lists a server directory"),
    ),
    (
        "pg_ls_logdir",
        Concern::Class(Class::Export, "lists a server directory"),
    ),
    (
        "pg_ls_waldir",
        Concern::Class(Class::Export, "lists a server directory"),
    ),
    (
        "pg_ls_tmpdir",
        Concern::Class(Class::Export, "lists a server directory"),
    ),
    (
        "pg_ls_archive_statusdir",
        Concern::Class(Class::Export, "lists a server directory"),
    ),
    (
        "lo_export",
        Concern::Class(Class::Export, "writes a large object to a server file"),
    ),
    (
        "lo_import",
        Concern::Class(Class::Export, "reads a server file into a large object"),
    ),
    (
        "pg_file_write",
        Concern::Class(Class::Export, "writes a server file"),
    ),
    (
        "pg_file_rename",
        Concern::Class(Class::Admin, "renames a server file"),
    ),
    (
        "pg_file_unlink",
        Concern::Class(Class::Admin, "deletes a server file"),
    ),
    (
        "pg_terminate_backend",
        Concern::Class(Class::Admin, "terminates another session"),
    ),
    (
        "pg_cancel_backend",
        Concern::Class(Class::Admin, "cancels another session's query"),
    ),
    (
        "pg_reload_conf",
        Concern::Class(Class::Admin, "reloads the server configuration"),
    ),
    (
        "pg_rotate_logfile",
        Concern::Class(Class::Admin, "rotates the server log"),
    ),
    (
        "pg_promote",
        Concern::Class(Class::Admin, "promotes a standby"),
    ),
    (
        "pg_switch_wal",
        Concern::Class(Class::Admin, "switches the WAL file"),
    ),
    (
        "pg_create_restore_point",
        Concern::Class(Class::Admin, "creates a restore point"),
    ),
    (
        "pg_create_physical_replication_slot",
        Concern::Class(Class::Admin, "creates a replication slot"),
    ),
    (
        "pg_create_logical_replication_slot",
        Concern::Class(Class::Admin, "creates a replication slot"),
    ),
    (
        "pg_drop_replication_slot",
        Concern::Class(Class::Admin, "drops a replication slot"),
    ),
    (
        "pg_replication_origin_create",
        Concern::Class(Class::Admin, "creates a replication origin"),
    ),
    (
        "lo_unlink",
        Concern::Class(Class::Delete, "deletes a large object"),
    ),
    (
        "lo_put",
        Concern::Class(Class::Write, "writes a large object"),
    ),
    (
        "lo_from_bytea",
        Concern::Class(Class::Write, "creates a large object"),
    ),
    (
        "lo_create",
        Concern::Class(Class::Write, "creates a large object"),
    ),
    (
        "nextval",
        Concern::Class(Class::Write, "advances a sequence"),
    ),
    ("setval", Concern::Class(Class::Write, "sets a sequence")),
    ("set_config", Concern::SetConfig),
    ("query_to_xml", Concern::DynamicSql),
    ("query_to_xmlschema", Concern::DynamicSql),
    ("query_to_xml_and_xmlschema", Concern::DynamicSql),
];

/// The concern for a function name (schema stripped, unquoted names lower-cased), if any.
pub(super) fn concern(name: &str) -> Option<Concern> {
    if name.starts_with("dblink") {
        return Some(Concern::Class(
            Class::Export,
            "talks to another database server (dblink)",
        ));
    }
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// Settings that change who the session is or how SQL is read; setting them is `admin`.
pub(super) fn is_admin_setting(name: &str) -> bool {
    matches!(
        name,
        "role"
            | "session_authorization"
            | "standard_conforming_strings"
            | "backslash_quote"
            | "session_replication_role"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_of_concern_map_to_their_class() {
        let cases = [
            ("pg_read_file", Some(Class::Export)),
            ("lo_export", Some(Class::Export)),
            ("dblink_exec", Some(Class::Export)),
            ("pg_terminate_backend", Some(Class::Admin)),
            ("pg_cancel_backend", Some(Class::Admin)),
            ("pg_ls_dir", Some(Class::Export)),
            ("count", None),
            ("now", None),
        ];
        for (name, want) in cases {
            let got = match concern(name) {
                Some(Concern::Class(c, _)) => Some(c),
                _ => None,
            };
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(concern("set_config"), Some(Concern::SetConfig));
        assert_eq!(concern("query_to_xml"), Some(Concern::DynamicSql));
    }
}
