//! `dbward approvals list|show|approve|deny|break-glass`: act on approval requests, either
//! of a `dbward-approver` server with an approver token (`--server`; people and CI/CD
//! pipelines) or of the local agent over its control socket (the caller's OS user decides).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dbward_approval_api::{ApproverClient, RequestStatus, RequestView, Vote};
use uuid::Uuid;

use crate::config::DEFAULT_CONTROL_SOCKET;
use crate::control::{ApprovalReply, PendingView, Request};

/// Connection options shared by every `approvals` subcommand.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Approver base URL, e.g. https://approver.example.com:8443; without it the local
    /// agent is asked over `--socket`.
    #[arg(long, env = "DBWARD_APPROVER_URL", global = true)]
    pub server: Option<String>,
    /// The local agent's control socket (used when no `--server` is given).
    #[arg(long, default_value = DEFAULT_CONTROL_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Approver token (from `[[approver_tokens]]` of approver.toml).
    #[arg(
        long,
        env = "DBWARD_APPROVER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an approver with a private CA.
    #[arg(long, env = "DBWARD_APPROVER_CA", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub action: ApprovalsAction,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum ApprovalsAction {
    /// List requests (default: pending).
    List {
        /// pending, approved, denied, expired or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Free-text search in statement, requester, host, id.
        #[arg(long)]
        search: Option<String>,
    },
    /// Show one request with its votes.
    Show {
        /// Request id.
        id: Uuid,
    },
    /// Approve a request.
    Approve {
        /// Request id.
        id: Uuid,
        /// Comment recorded with the vote.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request; the reason reaches the client's error message.
    Deny {
        /// Request id.
        id: Uuid,
        /// Why (shown to the requester).
        #[arg(long)]
        reason: String,
    },
    /// Self-authorise as a member of the rule's emergency group (flagged and reviewed).
    BreakGlass {
        /// Request id.
        id: Uuid,
        /// Why this cannot wait for approval.
        #[arg(long)]
        reason: String,
    },
}

fn summary(v: &RequestView) -> String {
    let r = &v.request;
    let statement: String = r.statement.chars().take(80).collect();
    format!(
        "{}  {:<8}  {}/{}  {} ({})  rule {}  {} vote(s)/{}  expires {}\n    {}",
        r.request_id,
        v.status.as_str(),
        r.host,
        r.database.as_deref().unwrap_or("-"),
        r.requester.principal,
        r.requester.kind.as_str(),
        r.rule,
        v.votes.len(),
        r.quorum,
        dbward_approval_api::timefmt::format(r.expires_at),
        statement.replace('\n', " "),
    )
}

/// Runs an `approvals` subcommand.
pub fn run(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let Some(server) = args.server.clone() else {
        return run_local(args);
    };
    let token = args
        .token
        .context("no approver token: pass --token or set DBWARD_APPROVER_TOKEN")?;
    let client = match &args.ca_cert {
        None => ApproverClient::new(&server, token)?,
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("--ca-cert {}: not a PEM certificate", path.display()))?;
            let http = reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .context("building the HTTPS client")?;
            ApproverClient::with_http(&server, token, http)?
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match args.action {
            ApprovalsAction::List { status, search } => {
                let status = match status.as_str() {
                    "all" => None,
                    s => Some(RequestStatus::parse(s).with_context(|| {
                        format!("--status {s:?}: use pending, approved, denied, expired or all")
                    })?),
                };
                let list = client.list(status, search.as_deref()).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no requests");
                } else {
                    for v in &list {
                        println!("{}", summary(v));
                    }
                }
            }
            ApprovalsAction::Show { id } => {
                let v = client.get(id).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("{}", summary(&v));
                    println!("statement:\n{}", v.request.statement);
                    println!(
                        "reason: {}",
                        v.request.reason.as_deref().unwrap_or("(none)")
                    );
                    for vote in &v.votes {
                        println!(
                            "vote: {} {} via {}: {}",
                            vote.principal,
                            vote.vote.as_str(),
                            vote.channel,
                            vote.comment.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            ApprovalsAction::Approve { id, comment } => {
                let out = client.vote(id, Vote::Approve, comment.as_deref()).await?;
                print_outcome(args.json, &out)?;
            }
            ApprovalsAction::Deny { id, reason } => {
                let out = client.vote(id, Vote::Deny, Some(&reason)).await?;
                print_outcome(args.json, &out)?;
            }
            ApprovalsAction::BreakGlass { id, reason } => {
                let out = client.break_glass(id, &reason).await?;
                print_outcome(args.json, &out)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_outcome(json: bool, out: &dbward_approval_api::VoteOutcome) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(out)?);
    } else {
        println!(
            "{}: {} ({}/{} approvals)",
            out.request_id,
            out.status.as_str(),
            out.approvals,
            out.quorum
        );
    }
    Ok(())
}

fn local_summary(p: &PendingView) -> String {
    let statement: String = p.statement.chars().take(80).collect();
    let who = p
        .principal
        .as_deref()
        .or(p.client_user.as_deref())
        .unwrap_or("-");
    format!(
        "{}  pending   {}/{}  {} ({})  client {}  rule {}  {} vote(s)/{}  expires {}\n    {}",
        p.request_id,
        p.host,
        p.database.as_deref().unwrap_or("-"),
        who,
        p.kind.as_deref().unwrap_or("-"),
        p.client_user.as_deref().unwrap_or("-"),
        p.rule,
        p.approved_by.len(),
        p.quorum,
        p.expires_at,
        statement.replace('\n', " "),
    )
}

fn matches_search(p: &PendingView, q: &str) -> bool {
    let q = q.to_lowercase();
    [
        Some(p.request_id.to_string()),
        Some(p.statement.clone()),
        Some(p.host.clone()),
        p.principal.clone(),
        p.client_user.clone(),
        p.db_user.clone(),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.to_lowercase().contains(&q))
}

/// Asks the local agent over its control socket; the caller's OS user is the approver.
fn run_local(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let request = match &args.action {
        ApprovalsAction::List { status, .. } if status != "pending" && status != "all" => {
            anyhow::bail!(
                "--status {status:?}: the local agent keeps only pending requests; use --server URL for decided ones"
            )
        }
        ApprovalsAction::List { .. } | ApprovalsAction::Show { .. } => Request::ApprovalsList,
        ApprovalsAction::Approve { id, comment } => Request::ApprovalsApprove {
            id: *id,
            comment: comment.clone(),
        },
        ApprovalsAction::Deny { id, reason } => Request::ApprovalsDeny {
            id: *id,
            comment: Some(reason.clone()),
        },
        ApprovalsAction::BreakGlass { .. } => anyhow::bail!(
            "break-glass is decided by the central approver: pass --server URL (and --token)"
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reply = runtime.block_on(async {
        let mut lines = crate::control::request(&args.socket, &request).await?;
        let line = lines
            .next_line()
            .await
            .with_context(|| format!("reading the agent's answer on {}", args.socket.display()))?
            .with_context(|| {
                format!(
                    "the agent at {} closed the connection without answering",
                    args.socket.display()
                )
            })?;
        serde_json::from_str::<ApprovalReply>(&line)
            .with_context(|| format!("the agent answered {line:?}; is it an older dbward?"))
    })?;
    match reply {
        ApprovalReply::Refused { code, message } => {
            anyhow::bail!("{message} ({code})")
        }
        ApprovalReply::Pending { requests } => {
            let shown: Vec<_> = match &args.action {
                ApprovalsAction::Show { id } => vec![
                    requests
                        .into_iter()
                        .find(|p| p.request_id == *id)
                        .with_context(|| {
                            format!("no pending approval request {id} on this host")
                        })?,
                ],
                ApprovalsAction::List { search, .. } => requests
                    .into_iter()
                    .filter(|p| search.as_deref().is_none_or(|q| matches_search(p, q)))
                    .collect(),
                _ => requests,
            };
            print_pending(&args, shown)?;
        }
        reply if args.json => println!("{}", serde_json::to_string_pretty(&reply)?),
        ApprovalReply::Recorded {
            request_id,
            have,
            need,
        } => println!("{request_id}: pending ({have}/{need} approvals)"),
        ApprovalReply::Approved { request_id, by } => {
            println!("{request_id}: approved by {by}")
        }
        ApprovalReply::Denied { request_id, by } => println!("{request_id}: denied by {by}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_pending(args: &ApprovalsArgs, shown: Vec<PendingView>) -> anyhow::Result<()> {
    if args.json {
        let reply = ApprovalReply::Pending { requests: shown };
        println!("{}", serde_json::to_string_pretty(&reply)?);
        return Ok(());
    }
    if let (ApprovalsAction::Show { .. }, [p]) = (&args.action, shown.as_slice()) {
        println!("{}", local_summary(p));
        println!("statement:\n{}", p.statement);
        println!("reason: {}", p.reason.as_deref().unwrap_or("(none)"));
        println!(
            "approvers: {} (approved by: {})",
            p.approvers.join(", "),
            p.approved_by.join(", ")
        );
        return Ok(());
    }
    if shown.is_empty() {
        println!("no requests");
    }
    for p in &shown {
        println!("{}", local_summary(p));
    }
    Ok(())
}
