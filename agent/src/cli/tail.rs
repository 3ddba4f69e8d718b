//! `dbward tail`: follow the running agent's live event stream.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::DEFAULT_CONTROL_SOCKET;
use crate::control::{Request, request};
use crate::event::{Event, EventType};

/// Arguments of `dbward tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The agent's control socket.
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET)]
    pub socket: PathBuf,
    /// One JSON object per line (the default when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Only events of this database.
    #[arg(long)]
    pub db: Option<String>,
    /// Only events of this database role.
    #[arg(long)]
    pub user: Option<String>,
    /// Only events of this type (session_start, statement, session_end, hold, …).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Only events of this policy principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only statements of this class (read, write, delete, ddl, privilege, export, admin, …).
    #[arg(long)]
    pub class: Option<String>,
    /// Only events with this outcome (allow, audit, deny, require_approval, approved, …).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-24T12:00:00Z).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<time::OffsetDateTime>,
}

fn parse_since(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2026-11-24T12:00:00Z): {e}"))
}

impl TailArgs {
    fn keeps(&self, event: &Event) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        let kind = event
            .kind
            .and_then(|k| serde_json::to_value(k).ok())
            .and_then(|v| v.as_str().map(str::to_owned));
        let recent = self.since.is_none_or(|since| {
            time::OffsetDateTime::parse(&event.ts, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|ts| ts >= since)
        });
        eq(&self.db, &event.database)
            && eq(&self.user, &event.db_user)
            && eq(&self.kind, &kind)
            && eq(&self.principal, &event.principal)
            && eq(&self.class, &event.class)
            && eq(&self.outcome, &event.outcome)
            && recent
    }
}

/// Prints the stream until the agent stops or the reader goes away.
pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut lines = request(&args.socket, &Request::Tail).await?;
        let json = args.json || !std::io::stdout().is_terminal();
        let mut out = std::io::stdout().lock();
        while let Some(line) = lines.next_line().await? {
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                eprintln!("dbward tail: {line}");
                continue;
            };
            if !args.keeps(&event) {
                continue;
            }
            let printed = if json {
                writeln!(out, "{line}")
            } else {
                writeln!(out, "{}", pretty(&event))
            };
            if printed.and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One aligned line for terminals.
fn pretty(e: &Event) -> String {
    let kind = match e.kind {
        Some(EventType::SessionStart) => "START",
        Some(EventType::Statement) => "STMT",
        Some(EventType::SessionEnd) => "END",
        Some(EventType::KernelDrops) => "DROPS",
        Some(EventType::ClusterAttached) => "CLUSTER",
        Some(EventType::Hold) => "HOLD",
        Some(EventType::Decision) => "DECIDED",
        Some(EventType::PolicyReload) => "POLICY",
        Some(EventType::ConnectionBlocked) => "BLOCKED",
        None => "?",
    };
    let who = format!(
        "{}@{}",
        e.db_user.as_deref().unwrap_or("-"),
        e.database.as_deref().unwrap_or("-")
    );
    let client = e.client.as_ref().map_or_else(String::new, |c| {
        let proc_ = c
            .comm
            .as_deref()
            .map(|comm| format!(" {comm}[{}]", c.pid.unwrap_or(0)))
            .unwrap_or_default();
        match (&c.addr, c.port) {
            (Some(a), Some(p)) => format!("{a}:{p}{proc_}"),
            _ => format!("{}{proc_}", c.transport),
        }
    });
    let detail = e
        .sql
        .as_deref()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .or_else(|| e.duration_ms.map(|d| format!("after {d:.1} ms")))
        .or_else(|| e.drops.as_ref().map(|d| format!("{d:?}")))
        .unwrap_or_default();
    let ts = e.ts.get(11..23).unwrap_or(&e.ts);
    format!(
        "{ts} {kind:<7} {:>7} {who:<24} {client:<28} {detail}",
        e.backend_pid.map(|p| p.to_string()).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        tail: TailArgs,
    }

    fn args(extra: &[&str]) -> TailArgs {
        Wrap::parse_from(std::iter::once("tail").chain(extra.iter().copied())).tail
    }

    fn event(ts: &str, class: &str, outcome: &str, principal: &str) -> Event {
        Event {
            kind: Some(EventType::Statement),
            ts: ts.into(),
            class: Some(class.into()),
            outcome: Some(outcome.into()),
            principal: Some(principal.into()),
            database: Some("shop".into()),
            ..Event::default()
        }
    }

    #[test]
    fn filters_combine() {
        let e = event(
            "2026-11-24T12:00:00Z",
            "export",
            "require_approval",
            "ai-reporting",
        );
        assert!(args(&[]).keeps(&e));
        assert!(
            args(&[
                "--class",
                "export",
                "--principal",
                "ai-reporting",
                "--db",
                "shop"
            ])
            .keeps(&e)
        );
        assert!(!args(&["--class", "read"]).keeps(&e));
        assert!(!args(&["--outcome", "deny"]).keeps(&e));
        assert!(args(&["--type", "statement", "--since", "2026-11-24T11:59:59Z"]).keeps(&e));
        assert!(!args(&["--since", "2026-11-24T12:00:01Z"]).keeps(&e));
        assert!(!args(&["--type", "hold"]).keeps(&e));
    }
}
