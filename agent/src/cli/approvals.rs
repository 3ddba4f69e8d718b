//! `dbward approvals list|show|approve|deny|break-glass`: act on approval requests of a
//! `dbward-approver` server with an approver token (people and CI/CD pipelines).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dbward_approval_api::{ApproverClient, RequestStatus, RequestView, Vote};
use uuid::Uuid;

/// Connection options shared by every `approvals` subcommand.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Approver base URL, e.g. https://approver.example.com:8443
    #[arg(long, env = "DBWARD_APPROVER_URL", global = true)]
    pub server: Option<String>,
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
    let server = args
        .server
        .context("no approver URL: pass --server URL or set DBWARD_APPROVER_URL")?;
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
