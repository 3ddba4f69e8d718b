//! Policy: files → model, classifier (SQL → class, tables, functions), evaluator.

pub mod classify;
