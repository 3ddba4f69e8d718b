//! `dbward policy check|test|explain`: tools for security teams to validate, test and
//! understand policy files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::policy::testing;
use crate::policy::{Decision, Facts, PolicySet};

/// Where policies live on a host.
pub const DEFAULT_POLICY_DIR: &str = "/etc/dbward/policies";

/// `dbward policy …`
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The policy tools.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate the policy files; errors name file:line:column, the key and a hint.
    Check {
        /// Directory of *.yaml policy files.
        #[arg(long, default_value = DEFAULT_POLICY_DIR)]
        policy: PathBuf,
    },
    /// Run policy test cases (SQL + identity → expected outcome and rule).
    Test {
        /// Directory of *.yaml policy files.
        #[arg(long, default_value = DEFAULT_POLICY_DIR)]
        policy: PathBuf,
        /// Directory of *.yaml test files (default: the policy directory's `tests/`).
        #[arg(long)]
        tests: Option<PathBuf>,
        /// Also list the cases that pass.
        #[arg(long)]
        show_passed: bool,
    },
    /// Show how a statement is classified and which rule decides it, and why.
    Explain {
        /// Directory of *.yaml policy files.
        #[arg(long, default_value = DEFAULT_POLICY_DIR)]
        policy: PathBuf,
        /// Print one JSON object (class, outcome, rule, principal, classification, rules).
        #[arg(long)]
        json: bool,
        /// Session facts, e.g. `--as kind=ai_agent --as db_user=app --as unit=cron.service`.
        #[arg(long = "as", value_name = "KEY=VALUE", value_parser = parse_pair)]
        facts: Vec<(String, String)>,
        /// When the statement runs (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// A statement prepared earlier in the session, for `EXECUTE name`:
        /// `--prepared 'name=DELETE FROM t WHERE id = $1'`.
        #[arg(long, value_name = "NAME=SQL", value_parser = parse_pair)]
        prepared: Vec<(String, String)>,
        /// The SQL text.
        sql: String,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE (e.g. kind=ai_agent)"))
}

/// Runs a policy subcommand: exit code 0 when all is well, 1 on invalid policy or failures.
pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Check { policy } => check(&policy),
        PolicyCommand::Test {
            policy,
            tests,
            show_passed,
        } => test(&policy, tests.as_deref(), show_passed),
        PolicyCommand::Explain {
            policy,
            json,
            facts,
            at,
            prepared,
            sql,
        } => explain(
            &policy,
            json,
            &facts,
            at.as_deref(),
            &prepared.into_iter().collect(),
            &sql,
        ),
    }
}

/// Loads a policy, printing its errors; `None` when it is invalid.
fn load(dir: &Path) -> Option<PolicySet> {
    match PolicySet::load_dir(dir) {
        Ok(set) => Some(set),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let Some(set) = load(dir) else {
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "policy OK: {} file(s), {} rule(s), sha256 {}",
        set.files().len(),
        set.rules().len(),
        set.content_hash()
    );
    Ok(ExitCode::SUCCESS)
}

fn test(dir: &Path, tests: Option<&Path>, show_passed: bool) -> anyhow::Result<ExitCode> {
    let Some(set) = load(dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let tests_dir = tests.map_or_else(|| dir.join("tests"), Path::to_path_buf);
    let files = match testing::load_tests(&tests_dir) {
        Ok(files) => files,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let results = testing::run_all(&set, &files);
    let failed = results.iter().filter(|r| !r.passed()).count();
    for result in &results {
        if !result.passed() || show_passed {
            println!("{result}");
        }
    }
    println!(
        "{} passed, {} failed ({} case(s) in {} file(s))",
        results.len() - failed,
        failed,
        results.len(),
        files.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn explain(
    dir: &Path,
    json: bool,
    pairs: &[(String, String)],
    at: Option<&str>,
    prepared: &HashMap<String, String>,
    sql: &str,
) -> anyhow::Result<ExitCode> {
    let facts = Facts::from_pairs(pairs).context("--as")?;
    let now = match at {
        Some(at) => humantime::parse_rfc3339_weak(at).with_context(|| {
            format!("--at {at}: expected an RFC 3339 time like 2026-01-05T10:00:00Z")
        })?,
        None => SystemTime::now(),
    };
    let Some(set) = load(dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let decision = set.evaluate_with(&facts, sql, now, prepared);
    if json {
        let mut value = serde_json::to_value(&decision).context("encoding the decision")?;
        value["class"] = serde_json::Value::from(decision.classification.class.name());
        value["policy_hash"] = serde_json::Value::from(set.content_hash());
        println!("{value}");
    } else {
        print!("{}", render(&set, &decision));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable explanation.
fn render(set: &PolicySet, d: &Decision) -> String {
    use std::fmt::Write;
    let c = &d.classification;
    let p = &d.principal;
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "classification");
    let _ = writeln!(out, "  class:      {}", c.class);
    let classes: Vec<&str> = c.classes.iter().map(|c| c.name()).collect();
    let effective: Vec<&str> = d.effective_classes.iter().map(|c| c.name()).collect();
    let _ = writeln!(
        out,
        "  classes:    {} (rules see: {})",
        classes.join(", "),
        effective.join(", ")
    );
    let _ = writeln!(out, "  commands:   {}", list(&c.commands));
    let _ = writeln!(out, "  tables:     {}", list(&c.tables));
    let _ = writeln!(out, "  functions:  {}", list(&c.functions));
    let _ = writeln!(
        out,
        "  has_where:  {}   has_limit: {}",
        c.has_where, c.has_limit
    );
    if let Some(err) = &c.parse_error {
        let _ = writeln!(out, "  parse error: {err}");
    }
    for note in &c.notes {
        let _ = writeln!(out, "  note:       {note}");
    }
    let _ = writeln!(out, "principal");
    let _ = writeln!(
        out,
        "  {} (kind {}, groups {}, owner {}){}",
        p.name,
        p.kind,
        list(&p.groups),
        p.owner.as_deref().unwrap_or("-"),
        if p.identified {
            ""
        } else {
            " — no identity matched"
        }
    );
    let _ = writeln!(
        out,
        "rules considered (most restrictive match wins, ties go to the first)"
    );
    for trace in &d.explanation {
        let mark = if d.rule.as_deref() == Some(&*trace.rule) {
            "=>"
        } else if trace.matched() {
            " +"
        } else {
            "  "
        };
        let _ = writeln!(out, "  {mark} {trace}");
    }
    let _ = writeln!(out, "decision");
    match &d.rule {
        Some(rule) => {
            let _ = writeln!(out, "  {} by rule {rule}", d.outcome.name());
        }
        None => {
            let _ = writeln!(
                out,
                "  {} (no rule matched: defaults.unmatched is {})",
                d.outcome.name(),
                set.unmatched_outcome().name()
            );
        }
    }
    match &d.outcome {
        crate::policy::Outcome::Deny { message } => {
            let _ = writeln!(out, "  message: {message}");
        }
        crate::policy::Outcome::RequireApproval {
            approvers,
            quorum,
            timeout,
            reason_required,
            break_glass_group,
        } => {
            let _ = writeln!(
                out,
                "  approvers: {} (quorum {quorum}, timeout {}, reason {}{})",
                approvers.join(", "),
                humantime::format_duration(*timeout),
                if *reason_required {
                    "required"
                } else {
                    "optional"
                },
                break_glass_group
                    .as_deref()
                    .map(|g| format!(", break-glass group {g}"))
                    .unwrap_or_default()
            );
        }
        _ => {}
    }
    for note in &d.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let _ = writeln!(out, "  unmediated sessions: {}", d.unmediated.name());
    out
}
