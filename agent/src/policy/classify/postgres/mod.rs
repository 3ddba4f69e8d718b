//! The PostgreSQL classifier: `sqlparser`'s PostgreSQL dialect, a walk over every node of
//! every statement (CTEs, subqueries, function arguments, PREPARE/EXPLAIN bodies), and
//! fallbacks for what the parser cannot read.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, CopyTarget, CreateFunction, CreateFunctionBody, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GrantObjects, Ident, MergeAction, MergeClause, ObjectName, ObjectNamePart,
    ObjectType, Query, Select, SelectItem, Set, SetExpr, Statement, TableFactor, Value, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, TokenizerError};

use super::fallback;
use super::findings::Findings;
use super::functions::{self, Concern};
use super::predicate;
use super::{Class, Classification, Classifier, PreparedStatements};

pub mod prepared;
mod select;

/// How deep SQL nested in SQL (EXECUTE of a prepared statement, DO bodies, dynamic SQL
/// literals) is followed before the rest counts as unknown.
const MAX_NESTING: usize = 6;

/// Classifies PostgreSQL statements.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresClassifier;

impl Classifier for PostgresClassifier {
    fn dialect(&self) -> &'static str {
        "postgresql"
    }

    fn classify(&self, sql: &str, prepared: &dyn PreparedStatements) -> Classification {
        let mut acc = Findings::new();
        classify_into(sql, prepared, &mut acc, 0, true);
        acc.finish()
    }
}

/// Classifies `sql` into `acc`. `top` says whether its statements are top-level ones
/// (counted in [`Classification::statements`]) or SQL nested in another statement.
pub(super) fn classify_into(
    sql: &str,
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
    top: bool,
) {
    if depth > MAX_NESTING {
        acc.unknown_statement("SQL nested too deeply to follow".to_string());
        return;
    }
    let dialect = PostgreSqlDialect {};
    let tokens = match tokenize(&dialect, sql) {
        Ok(tokens) => tokens,
        Err(err) => {
            acc.parse_error(ParserError::from(err).to_string());
            return;
        }
    };
    // A plain SELECT sent by a client is read without building its AST; SQL nested in
    // other SQL always goes through the parser.
    if depth == 0 && top && select::read(&tokens, acc) {
        return;
    }
    parse_tokens(&dialect, sql, tokens, prepared, acc, depth, top);
}

/// Parses `tokens` (of `sql`) and walks the statements into `acc`; statements the parser
/// rejects as a whole are read one by one.
fn parse_tokens(
    dialect: &PostgreSqlDialect,
    sql: &str,
    tokens: Vec<TokenWithSpan>,
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
    top: bool,
) {
    // The same tokens and parser options as `Parser::parse_sql`.
    match Parser::new(dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
    {
        Ok(statements) => {
            for statement in &statements {
                if top {
                    acc.statements += 1;
                }
                walk(statement, prepared, acc, depth);
            }
        }
        // The parser consumed the tokens: the statements are read one by one from a second
        // tokenization.
        Err(whole_error) => match tokenize(dialect, sql) {
            Ok(tokens) => {
                let tokens = tokens.into_iter().map(|t| t.token).collect();
                for part in split_statements(tokens) {
                    if top {
                        acc.statements += 1;
                    }
                    classify_part(part, prepared, acc, depth);
                }
            }
            Err(_) => acc.parse_error(whole_error.to_string()),
        },
    }
}

/// Tokenizes `sql` as `Parser::parse_sql` does (the fast path and the parser read the same
/// tokens).
fn tokenize(dialect: &PostgreSqlDialect, sql: &str) -> Result<Vec<TokenWithSpan>, TokenizerError> {
    Tokenizer::new(dialect, sql).tokenize_with_location()
}

/// Splits tokens at semicolons into statements, dropping empty ones.
pub(super) fn split_statements(tokens: Vec<Token>) -> Vec<Vec<Token>> {
    let mut parts = Vec::new();
    let mut current = Vec::new();
    for token in tokens {
        if token == Token::SemiColon {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(token);
        }
    }
    parts.push(current);
    parts.retain(|part| part.iter().any(|t| !matches!(t, Token::Whitespace(_))));
    parts
}

/// Classifies one statement's tokens after the whole string failed to parse.
fn classify_part(
    part: Vec<Token>,
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) {
    if super::fallback::classify_unparsed(&part, prepared, acc, depth) {
        return;
    }
    let dialect = PostgreSqlDialect {};
    match Parser::new(&dialect).with_tokens(part).parse_statements() {
        Ok(statements) => {
            for statement in &statements {
                walk(statement, prepared, acc, depth);
            }
        }
        Err(err) => acc.parse_error(err.to_string()),
    }
}

pub(super) fn walk(
    statement: &Statement,
    prepared: &dyn PreparedStatements,
    acc: &mut Findings,
    depth: usize,
) {
    let mut walker = Walker {
        acc,
        prepared,
        depth,
        not_executed: 0,
        table_function: None,
    };
    // The walker never breaks, so the result carries no information.
    let _ = statement.visit(&mut walker);
}

/// An identifier as PostgreSQL resolves it: unquoted names fold to lower case; quoted
/// names keep their case, with `\XXXX` / `\+XXXXXX` escapes decoded (PostgreSQL decodes them
/// in `U&"…"` identifiers, which the parser reads as `U & "…"`; decoding them everywhere can
/// only reveal more).
pub(super) fn ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        quoted_name(&ident.value)
    } else {
        ident.value.to_lowercase()
    }
}

/// A quoted name with unicode escapes decoded.
pub(super) fn quoted_name(value: &str) -> String {
    if !value.contains('\\') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (digits, skip) = match after.strip_prefix('+') {
            Some(plus) => (plus.get(..6), 7),
            None => (after.get(..4), 4),
        };
        match digits
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                rest = &after[skip..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

pub(super) fn name_part(part: &ObjectNamePart) -> String {
    match part {
        ObjectNamePart::Identifier(i) => ident(i),
        ObjectNamePart::Function(f) => ident(&f.name),
    }
}

/// The last part of a possibly qualified name.
fn last_name(name: &ObjectName) -> String {
    name.0.last().map(name_part).unwrap_or_default()
}

/// The string value of a literal expression, if it is one.
pub(super) fn literal_string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::NationalStringLiteral(s)
            | Value::UnicodeStringLiteral(s) => Some(s.clone()),
            Value::DollarQuotedString(d) => Some(d.value.clone()),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal_string(expr),
        _ => None,
    }
}

fn first_argument(args: &FunctionArguments) -> Option<&Expr> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    first_expr(&list.args)
}

fn first_expr(args: &[FunctionArg]) -> Option<&Expr> {
    match args.first()? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
        | FunctionArg::Named {
            arg: FunctionArgExpr::Expr(e),
            ..
        }
        | FunctionArg::ExprNamed {
            arg: FunctionArgExpr::Expr(e),
            ..
        } => Some(e),
        _ => None,
    }
}

struct Walker<'a> {
    acc: &'a mut Findings,
    prepared: &'a dyn PreparedStatements,
    depth: usize,
    /// Inside `EXPLAIN` without `ANALYZE`: the explained statement is planned, not run.
    not_executed: usize,
    /// A table function in FROM (`FROM generate_series(…)`) whose name the parser also
    /// reports as a relation: it is a function call, not a table.
    table_function: Option<ObjectName>,
}

impl Walker<'_> {
    fn statement(&mut self, statement: &Statement) {
        if self.not_executed > 0 {
            return;
        }
        let acc = &mut *self.acc;
        match statement {
            Statement::Query(query) => self.query_statement(query),
            Statement::Insert(_) => acc.add(Class::Write, "INSERT"),
            Statement::Update(update) => {
                acc.add(Class::Write, "UPDATE");
                let has_where = real_where(acc, update.selection.as_ref());
                acc.dml(has_where, update.limit.is_some());
            }
            Statement::Delete(delete) => {
                acc.add(Class::Delete, "DELETE");
                let has_where = real_where(acc, delete.selection.as_ref());
                acc.dml(has_where, delete.limit.is_some());
            }
            Statement::Merge(merge) => merge_statement(acc, &merge.clauses),
            Statement::Truncate(_) => {
                acc.add(Class::Delete, "TRUNCATE");
                acc.dml(false, false);
            }
            Statement::Copy {
                source, to, target, ..
            } => self.copy(source, *to, target),
            Statement::Set(set) => self.set(set),
            Statement::Reset(_) => acc.add(Class::Session, "RESET"),
            Statement::StartTransaction { .. } => acc.add(Class::Transaction, "BEGIN"),
            Statement::Commit { .. } => acc.add(Class::Transaction, "COMMIT"),
            Statement::Rollback { .. } => acc.add(Class::Transaction, "ROLLBACK"),
            Statement::Savepoint { .. } => acc.add(Class::Transaction, "SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => acc.add(Class::Transaction, "RELEASE"),
            Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowFunctions { .. } => acc.add(Class::Session, "SHOW"),
            Statement::Discard { .. } => acc.add(Class::Session, "DISCARD"),
            Statement::LISTEN { .. } => acc.add(Class::Session, "LISTEN"),
            Statement::UNLISTEN { .. } => acc.add(Class::Session, "UNLISTEN"),
            Statement::NOTIFY { .. } => acc.add(Class::Session, "NOTIFY"),
            Statement::Deallocate { .. } => acc.add(Class::Session, "DEALLOCATE"),
            Statement::Declare { .. } => acc.add(Class::Read, "DECLARE"),
            Statement::Fetch { .. } => acc.add(Class::Read, "FETCH"),
            Statement::Close { .. } => acc.add(Class::Read, "CLOSE"),
            Statement::ExplainTable { .. } => acc.add(Class::Read, "DESCRIBE"),
            Statement::Explain {
                analyze, options, ..
            } => {
                if explain_runs_statement(*analyze, options.as_deref()) {
                    acc.command("EXPLAIN ANALYZE");
                } else {
                    acc.add(Class::Read, "EXPLAIN");
                }
            }
            Statement::Prepare { .. } => acc.command("PREPARE"),
            Statement::Execute { name, .. } => self.execute(name.as_ref()),
            Statement::Grant(grant) => {
                acc.add(Class::Privilege, "GRANT");
                grant_objects(acc, grant.objects.as_ref());
            }
            Statement::Revoke(revoke) => {
                acc.add(Class::Privilege, "REVOKE");
                grant_objects(acc, revoke.objects.as_ref());
            }
            Statement::Deny(_) => acc.add(Class::Privilege, "DENY"),
            Statement::CreateRole(_) => acc.add(Class::Privilege, "CREATE ROLE"),
            Statement::AlterRole { .. } => acc.add(Class::Privilege, "ALTER ROLE"),
            Statement::CreateUser(_) => acc.add(Class::Privilege, "CREATE USER"),
            Statement::AlterUser(_) => acc.add(Class::Privilege, "ALTER USER"),
            Statement::CreatePolicy { .. } => acc.add(Class::Privilege, "CREATE POLICY"),
            Statement::AlterPolicy { .. } => acc.add(Class::Privilege, "ALTER POLICY"),
            Statement::DropPolicy { .. } => acc.add(Class::Privilege, "DROP POLICY"),
            Statement::Drop {
                object_type, names, ..
            } => match object_type {
                ObjectType::Role | ObjectType::User => {
                    acc.add(Class::Privilege, &format!("DROP {object_type}"));
                }
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
                    acc.add(Class::Ddl, &format!("DROP {object_type}"));
                    for name in names {
                        acc.table(name);
                    }
                }
                _ => acc.add(Class::Ddl, &format!("DROP {object_type}")),
            },
            Statement::CreateExtension { .. } => acc.add(Class::Admin, "CREATE EXTENSION"),
            Statement::DropExtension { .. } => acc.add(Class::Admin, "DROP EXTENSION"),
            Statement::CreateServer { .. } => acc.add(Class::Admin, "CREATE SERVER"),
            Statement::Load { .. } => acc.add(Class::Admin, "LOAD"),
            Statement::Install { .. } => acc.add(Class::Admin, "INSTALL"),
            Statement::Kill { .. } => acc.add(Class::Admin, "KILL"),
            Statement::Vacuum { .. } => acc.add(Class::Admin, "VACUUM"),
            Statement::Analyze { .. } => acc.add(Class::Admin, "ANALYZE"),
            Statement::Lock { .. } | Statement::LockTables { .. } => acc.add(Class::Write, "LOCK"),
            Statement::Call(_) => {
                acc.add(Class::Write, "CALL");
                acc.note("CALL runs a procedure whose body is not inspected".to_string());
            }
            Statement::CreateFunction(function) => {
                acc.add(Class::Ddl, "CREATE FUNCTION");
                self.function_body(function);
            }
            Statement::CreateView { .. }
            | Statement::CreateTable { .. }
            | Statement::CreateIndex { .. }
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateProcedure { .. }
            | Statement::CreateTrigger { .. }
            | Statement::CreateSequence { .. }
            | Statement::CreateDomain { .. }
            | Statement::CreateType { .. }
            | Statement::CreateCollation { .. }
            | Statement::CreateOperator { .. }
            | Statement::CreateOperatorFamily { .. }
            | Statement::CreateOperatorClass { .. }
            | Statement::AlterTable { .. }
            | Statement::AlterSchema { .. }
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterFunction { .. }
            | Statement::AlterType { .. }
            | Statement::AlterCollation { .. }
            | Statement::AlterOperator { .. }
            | Statement::AlterOperatorFamily { .. }
            | Statement::AlterOperatorClass { .. }
            | Statement::DropFunction { .. }
            | Statement::DropDomain { .. }
            | Statement::DropProcedure { .. }
            | Statement::DropTrigger { .. }
            | Statement::DropOperator { .. }
            | Statement::DropOperatorFamily { .. }
            | Statement::DropOperatorClass { .. }
            | Statement::RenameTable { .. }
            | Statement::Comment { .. } => {
                let command = statement_words(statement, 2);
                acc.add(Class::Ddl, &command);
            }
            other => {
                let command = statement_words(other, 2);
                acc.command(&command);
                acc.unknown_statement(format!(
                    "{command} is a statement kind dbward does not know"
                ));
            }
        }
    }

    fn query_statement(&mut self, query: &Query) {
        let acc = &mut *self.acc;
        acc.selects += 1;
        acc.limitable += 1;
        acc.limited += u32::from(query.limit_clause.is_some() || query.fetch.is_some());
        match query.body.as_ref() {
            SetExpr::Select(select) => {
                acc.selects_with_where += u32::from(select.selection.is_some());
                if let Some(into) = &select.into {
                    acc.add(Class::Ddl, "SELECT INTO");
                    acc.note("SELECT … INTO creates a table".to_string());
                    for target in &into.targets {
                        match target {
                            Expr::Identifier(i) => acc.table(&ObjectName::from(vec![i.clone()])),
                            Expr::CompoundIdentifier(parts) => {
                                acc.table(&ObjectName::from(parts.clone()));
                            }
                            other if literal_string(other).is_some() => {
                                acc.add(Class::Export, "SELECT INTO OUTFILE");
                            }
                            _ => {}
                        }
                    }
                } else {
                    acc.add(Class::Read, "SELECT");
                }
            }
            _ => acc.add(Class::Read, "SELECT"),
        }
    }

    fn copy(&mut self, source: &CopySource, to: bool, target: &CopyTarget) {
        let acc = &mut *self.acc;
        if let CopySource::Table { table_name, .. } = source {
            acc.table(table_name);
        }
        match (to, target) {
            (true, CopyTarget::Program { .. }) => {
                acc.add(Class::Export, "COPY TO PROGRAM");
                acc.note("COPY … TO PROGRAM runs a shell command on the server".to_string());
            }
            (true, CopyTarget::File { .. }) => acc.add(Class::Export, "COPY TO FILE"),
            (true, _) => acc.add(Class::Export, "COPY TO STDOUT"),
            (false, CopyTarget::Program { .. }) => {
                acc.add(Class::Write, "COPY FROM PROGRAM");
                acc.add(Class::Export, "COPY FROM PROGRAM");
                acc.note("COPY … FROM PROGRAM runs a shell command on the server".to_string());
            }
            (false, CopyTarget::File { .. }) => {
                acc.add(Class::Write, "COPY FROM FILE");
                acc.add(Class::Export, "COPY FROM FILE");
                acc.note("COPY … FROM a file reads a server file".to_string());
            }
            (false, _) => acc.add(Class::Write, "COPY FROM STDIN"),
        }
    }

    fn set(&mut self, set: &Set) {
        let acc = &mut *self.acc;
        let names: Vec<String> = match set {
            Set::SetRole { .. } => {
                acc.add(Class::Admin, "SET ROLE");
                return;
            }
            Set::SetSessionAuthorization(_) => {
                acc.add(Class::Admin, "SET SESSION AUTHORIZATION");
                return;
            }
            Set::SetTransaction { .. } => {
                acc.add(Class::Transaction, "SET TRANSACTION");
                return;
            }
            Set::SingleAssignment { variable, .. } => vec![last_name(variable)],
            Set::ParenthesizedAssignments { variables, .. } => {
                variables.iter().map(last_name).collect()
            }
            Set::MultipleAssignments { assignments } => {
                assignments.iter().map(|a| last_name(&a.name)).collect()
            }
            _ => Vec::new(),
        };
        match names.iter().find(|n| functions::is_admin_setting(n)) {
            Some(name) => {
                acc.add(Class::Admin, &format!("SET {}", name.to_uppercase()));
                acc.note(format!(
                    "setting {name} changes who the session is or how SQL is read"
                ));
            }
            None => acc.add(Class::Session, "SET"),
        }
    }

    /// A function's body does not run when the function is created, but what it would do
    /// is reported: its functions and tables join the statement's (so `function:` rules
    /// see wrappers around e.g. `pg_read_file`), its classes are noted.
    fn function_body(&mut self, function: &CreateFunction) {
        let body = match &function.function_body {
            Some(CreateFunctionBody::AsBeforeOptions { body, .. })
            | Some(CreateFunctionBody::AsAfterOptions(body)) => body,
            _ => return,
        };
        let Some(text) = literal_string(body) else {
            return;
        };
        if !matches!(body, Expr::Value(v) if matches!(v.value, Value::DollarQuotedString(_))) {
            self.acc.cacheable = false;
        }
        let language = function.language.as_ref().map(|l| l.value.to_lowercase());
        let mut inner = Findings::new();
        match language.as_deref() {
            None | Some("sql") => {
                classify_into(&text, self.prepared, &mut inner, self.depth + 1, false);
            }
            Some("plpgsql") => fallback::plpgsql(&text, self.prepared, &mut inner, self.depth + 1),
            Some(other) => {
                self.acc.note(format!(
                    "a function body in language {other} is not inspected"
                ));
                return;
            }
        }
        let classes: Vec<&str> = inner.classes.iter().map(Class::name).collect();
        self.acc.note(format!(
            "the function's body, when called, is: {}",
            if classes.is_empty() {
                "-".to_string()
            } else {
                classes.join(", ")
            }
        ));
        for name in inner.functions {
            if !self.acc.functions.contains(&name) {
                self.acc.functions.push(name);
            }
        }
        for table in inner.tables {
            if !self.acc.tables.contains(&table) {
                self.acc.tables.push(table);
            }
        }
        self.acc.cacheable &= inner.cacheable;
    }

    fn execute(&mut self, name: Option<&ObjectName>) {
        self.acc.command("EXECUTE");
        self.acc.cacheable = false;
        let name = name.map(last_name).unwrap_or_default();
        match self.prepared.prepared_sql(&name) {
            Some(sql) => {
                self.acc.note(format!("EXECUTE {name} runs: {sql}"));
                classify_into(&sql, self.prepared, self.acc, self.depth + 1, false);
            }
            None => self.acc.unknown_statement(format!(
                "EXECUTE {name}: the prepared statement's text is not known to dbward"
            )),
        }
    }

    fn function(&mut self, name: &ObjectName, first_arg: Option<&Expr>) {
        let name = last_name(name);
        let concern = functions::concern(&name);
        if !self.acc.functions.contains(&name) {
            self.acc.functions.push(name.clone());
        }
        match concern {
            None => {}
            Some(Concern::Class(class, what)) => {
                self.acc.add(class, &format!("{}()", name.to_uppercase()));
                self.acc.note(format!("{name}() {what}"));
            }
            Some(Concern::SetConfig) => {
                let setting = first_arg.and_then(literal_string);
                self.acc.cacheable = false;
                match setting {
                    Some(s) if !functions::is_admin_setting(&s.to_lowercase()) => {
                        self.acc.add(Class::Session, "SET_CONFIG()");
                    }
                    Some(s) => {
                        self.acc.add(Class::Admin, "SET_CONFIG()");
                        self.acc
                            .note(format!("set_config('{s}', …) changes who the session is"));
                    }
                    None => {
                        self.acc.add(Class::Admin, "SET_CONFIG()");
                        self.acc
                            .note("set_config() with a computed setting name".to_string());
                    }
                }
            }
            Some(Concern::DynamicSql) => {
                self.acc.command(&format!("{}()", name.to_uppercase()));
                self.acc.cacheable = false;
                match first_arg.and_then(literal_string) {
                    Some(sql) => {
                        classify_into(&sql, self.prepared, self.acc, self.depth + 1, false);
                    }
                    None => self
                        .acc
                        .unknown_statement(format!("{name}() runs SQL dbward cannot see")),
                }
            }
        }
    }

    fn column(&mut self, name: String) {
        if !self.acc.columns.contains(&name) {
            self.acc.columns.push(name);
        }
    }
}

/// Whether a DML statement has a WHERE clause that can leave rows out: `WHERE true`,
/// `WHERE 1 = 1`, `WHERE id = id` and the like count as no WHERE.
fn real_where(acc: &mut Findings, selection: Option<&Expr>) -> bool {
    if selection.is_some_and(predicate::compares_literals) {
        // `1 = 1` and `1 = 2` share a fingerprint but not this answer.
        acc.cacheable = false;
    }
    match selection {
        None => false,
        Some(expr) if predicate::always_true(expr) => {
            acc.note(format!("WHERE {expr} is always true: treated as no WHERE"));
            false
        }
        Some(_) => true,
    }
}

/// MERGE writes, and deletes when a clause says `THEN DELETE`.
fn merge_statement(acc: &mut Findings, clauses: &[MergeClause]) {
    acc.add(Class::Write, "MERGE");
    if clauses
        .iter()
        .any(|c| matches!(c.action, MergeAction::Delete { .. }))
    {
        acc.add(Class::Delete, "MERGE");
    }
}

/// The tables and views a GRANT/REVOKE is about.
fn grant_objects(acc: &mut Findings, objects: Option<&GrantObjects>) {
    if let Some(GrantObjects::Tables(names) | GrantObjects::Views(names)) = objects {
        for name in names {
            acc.table(name);
        }
    }
}

/// Whether EXPLAIN runs the statement: `ANALYZE` given as keyword or option (whatever its
/// value, to be safe).
fn explain_runs_statement(
    analyze: bool,
    options: Option<&[sqlparser::ast::UtilityOption]>,
) -> bool {
    analyze
        || options
            .unwrap_or_default()
            .iter()
            .any(|o| o.name.value.eq_ignore_ascii_case("analyze"))
}

fn is_plain_explain(statement: &Statement) -> bool {
    matches!(statement, Statement::Explain { analyze, options, .. }
        if !explain_runs_statement(*analyze, options.as_deref()))
}

/// The first `n` words of a statement as its `Display` writes it, upper case
/// (`CREATE TABLE`). Only as much of the statement is formatted as those words need.
fn statement_words(statement: &Statement, n: usize) -> String {
    let mut prefix = WordsPrefix {
        text: String::new(),
        words: n,
    };
    // `WordsPrefix` ends the formatting with an error once it holds `n` whole words.
    let _ = fmt::write(&mut prefix, format_args!("{statement}"));
    leading_words(&prefix.text, n)
}

/// A `fmt::Write` that takes text until it holds more than `words` words: the first
/// `words` of them are then complete, the same as in the whole text.
struct WordsPrefix {
    text: String,
    words: usize,
}

impl fmt::Write for WordsPrefix {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.text.push_str(s);
        if self.text.split_whitespace().nth(self.words).is_some() {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// The first `n` words of a statement's text, upper case (`CREATE TABLE`).
pub(super) fn leading_words(sql: &str, n: usize) -> String {
    sql.split_whitespace()
        .take(n)
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

impl Visitor for Walker<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.statement(statement);
        if is_plain_explain(statement) {
            self.not_executed += 1;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        if is_plain_explain(statement) {
            self.not_executed -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                if !self.acc.ctes.contains(&name) {
                    self.acc.ctes.push(name);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        }) {
            self.column("*".to_string());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => {
                self.function(name, first_expr(&args.args));
                self.table_function = Some(name.clone());
            }
            TableFactor::Function { name, args, .. } => {
                self.function(name, first_expr(args));
                self.table_function = Some(name.clone());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if self.table_function.as_ref() == Some(relation) {
            self.table_function = None;
        } else {
            self.acc.table(relation);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.function(&f.name, first_argument(&f.args)),
            Expr::Identifier(i) => self.column(ident(i)),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    self.column(ident(last));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
