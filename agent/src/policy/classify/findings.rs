//! What the walk over a SQL string has found so far (classes, commands, tables, WHERE and
//! LIMIT counts), and how it becomes a [`Classification`].

use sqlparser::ast::ObjectName;

use super::postgres::name_part;
use super::{Class, ClassSet, Classification, UnknownSources};

/// What the walk over a SQL string has found so far.
#[derive(Debug)]
pub(super) struct Findings {
    pub(super) classes: ClassSet,
    pub(super) commands: Vec<String>,
    pub(super) tables: Vec<(Option<String>, String)>,
    pub(super) ctes: Vec<String>,
    pub(super) columns: Vec<String>,
    pub(super) functions: Vec<String>,
    pub(super) dml: u32,
    pub(super) dml_with_where: u32,
    pub(super) selects: u32,
    pub(super) selects_with_where: u32,
    pub(super) limitable: u32,
    pub(super) limited: u32,
    pub(super) statements: usize,
    pub(super) unknown: UnknownSources,
    pub(super) parse_error: Option<String>,
    pub(super) notes: Vec<String>,
    pub(super) cacheable: bool,
}

impl Findings {
    pub(super) fn new() -> Findings {
        Findings {
            classes: ClassSet::EMPTY,
            commands: Vec::new(),
            tables: Vec::new(),
            ctes: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            dml: 0,
            dml_with_where: 0,
            selects: 0,
            selects_with_where: 0,
            limitable: 0,
            limited: 0,
            statements: 0,
            unknown: UnknownSources::default(),
            parse_error: None,
            notes: Vec::new(),
            cacheable: true,
        }
    }

    /// Records a command and the class it puts the statement in.
    pub(super) fn add(&mut self, class: Class, command: &str) {
        self.classes.insert(class);
        self.command(command);
    }

    pub(super) fn command(&mut self, command: &str) {
        if !self.commands.iter().any(|c| c == command) {
            self.commands.push(command.to_string());
        }
    }

    pub(super) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    pub(super) fn parse_error(&mut self, message: String) {
        self.classes.insert(Class::Unknown);
        self.unknown.parse_error = true;
        self.note(format!("could not parse: {message}"));
        self.parse_error.get_or_insert(message);
    }

    pub(super) fn unknown_statement(&mut self, why: String) {
        self.classes.insert(Class::Unknown);
        self.unknown.unknown_statement = true;
        self.note(why);
    }

    pub(super) fn table(&mut self, name: &ObjectName) {
        let parts: Vec<String> = name.0.iter().map(name_part).collect();
        let Some((table, qualifiers)) = parts.split_last() else {
            return;
        };
        self.table_name(qualifiers.last().cloned(), table.clone());
    }

    /// Records a table by its schema (the qualifier closest to it, if any) and name.
    pub(super) fn table_name(&mut self, schema: Option<String>, table: String) {
        let entry = (schema, table);
        if !self.tables.contains(&entry) {
            self.tables.push(entry);
        }
    }

    pub(super) fn dml(&mut self, has_where: bool, has_limit: bool) {
        self.dml += 1;
        self.dml_with_where += u32::from(has_where);
        self.limitable += 1;
        self.limited += u32::from(has_limit);
    }

    pub(super) fn finish(self) -> Classification {
        let mut tables = Vec::new();
        let mut schemas: Vec<String> = Vec::new();
        let mut unqualified_tables = false;
        for (schema, table) in self.tables {
            match schema {
                Some(schema) => {
                    tables.push(format!("{schema}.{table}"));
                    if !schemas.contains(&schema) {
                        schemas.push(schema);
                    }
                }
                None if self.ctes.contains(&table) => {}
                None => {
                    unqualified_tables = true;
                    tables.push(table);
                }
            }
        }
        let has_where = if self.dml > 0 {
            self.dml_with_where == self.dml
        } else {
            self.selects > 0 && self.selects_with_where == self.selects
        };
        let mut commands = self.commands;
        if self.statements == 0 && self.classes.is_empty() {
            commands.push("EMPTY".to_string());
        }
        Classification {
            class: self.classes.max().unwrap_or(Class::Session),
            classes: if self.classes.is_empty() {
                [Class::Session].into_iter().collect()
            } else {
                self.classes
            },
            commands,
            tables,
            schemas,
            unqualified_tables,
            columns: self.columns,
            functions: self.functions,
            has_where,
            has_limit: self.limitable > 0 && self.limited == self.limitable,
            statements: self.statements,
            unknown: self.unknown,
            parse_error: self.parse_error,
            notes: self.notes,
            cacheable: self.cacheable,
        }
    }
}
