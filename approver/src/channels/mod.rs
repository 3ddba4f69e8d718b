//! Notification channels: where a held statement reaches a human (Slack, Microsoft
//! Teams, generic webhooks) and where their clicks come back from.
//!
//! - [`signature`] — callback and webhook signatures (pure).
//! - [`slack`] — Block Kit messages, `chat.postMessage` / `chat.update`, interactivity.
//! - [`teams`] — Adaptive Cards and the verified callback.
//! - [`webhook`] — generic signed JSON webhooks.

pub mod signature;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::time::Duration;

use dbward_approval_api::RequestView;

use crate::config::ChannelsConfig;
use crate::store::Store;

/// Fans request events out to every configured channel. Failures are logged and never
/// affect the request itself (the web UI and CLI always work).
#[derive(Debug, Clone)]
pub struct Notifier {
    http: reqwest::Client,
    config: ChannelsConfig,
    store: Store,
    public_url: Option<String>,
}

impl Notifier {
    /// A notifier for `config`; `public_url` makes links in messages.
    pub fn new(config: ChannelsConfig, store: Store, public_url: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            config,
            store,
            public_url,
        }
    }

    fn link(&self, view: &RequestView) -> Option<String> {
        self.public_url.as_ref().map(|base| {
            format!(
                "{}/ui/requests/{}",
                base.trim_end_matches('/'),
                view.request.request_id
            )
        })
    }

    /// A new request is pending.
    pub async fn filed(&self, view: &RequestView) {
        let link = self.link(view);
        if let Some(slack) = &self.config.slack {
            slack::post_request(&self.http, slack, &self.store, view, link.as_deref()).await;
        }
        if let Some(teams) = &self.config.teams {
            teams::post_card(
                &self.http,
                teams,
                &teams::request_card(view, link.as_deref()),
            )
            .await;
        }
        self.webhooks("request.filed", view).await;
    }

    /// A request was decided (approved, denied or expired).
    pub async fn decided(&self, view: &RequestView) {
        if let Some(slack) = &self.config.slack {
            slack::update_outcome(&self.http, slack, &self.store, view).await;
        }
        if let Some(teams) = &self.config.teams {
            teams::post_card(&self.http, teams, &teams::outcome_card(view)).await;
        }
        self.webhooks("request.decided", view).await;
    }

    /// Break-glass was used: alert on every channel.
    pub async fn break_glass(&self, view: &RequestView) {
        if let Some(slack) = &self.config.slack {
            slack::post_alert(&self.http, slack, view).await;
        }
        if let Some(teams) = &self.config.teams {
            teams::post_card(&self.http, teams, &teams::break_glass_card(view)).await;
        }
        self.webhooks("break_glass", view).await;
    }

    /// Someone asked the requester for more context.
    pub async fn context_requested(&self, view: &RequestView, by: &str) {
        if let Some(slack) = &self.config.slack {
            slack::post_context_question(&self.http, slack, &self.store, view, by).await;
        }
        self.webhooks("request.context_requested", view).await;
    }

    async fn webhooks(&self, event: &str, view: &RequestView) {
        for hook in &self.config.webhooks {
            webhook::deliver(&self.http, hook, event, view).await;
        }
    }
}

/// Slack/Teams text for a principal line: `claude-bot (ai_agent, owner olivia)`.
pub fn requester_line(view: &RequestView) -> String {
    let r = &view.request.requester;
    match &r.owner {
        Some(owner) => format!("{} ({}, owner {owner})", r.principal, r.kind.as_str()),
        None => format!("{} ({})", r.principal, r.kind.as_str()),
    }
}

/// Facts shown in every channel, in order.
pub fn facts(view: &RequestView) -> Vec<(&'static str, String)> {
    let r = &view.request;
    let mut client = Vec::new();
    if let Some(u) = &r.requester.db_user {
        client.push(format!("db user {u}"));
    }
    if let Some(u) = &r.requester.client_user {
        client.push(format!("os user {u}"));
    }
    if let Some(e) = &r.requester.exe {
        client.push(e.clone());
    }
    if let Some(u) = &r.requester.unit {
        client.push(u.clone());
    }
    vec![
        ("Requester", requester_line(view)),
        (
            "Client",
            if client.is_empty() {
                "-".into()
            } else {
                client.join(", ")
            },
        ),
        (
            "Host",
            format!("{} / {}", r.host, r.database.as_deref().unwrap_or("-")),
        ),
        (
            "Class",
            if r.tables.is_empty() {
                r.class.clone()
            } else {
                format!("{} on {}", r.class, r.tables.join(", "))
            },
        ),
        ("Rule", r.rule.clone()),
        (
            "Quorum",
            format!("{} of {}", r.quorum, r.approvers.join(", ")),
        ),
        (
            "Expires",
            dbward_approval_api::timefmt::format(r.expires_at),
        ),
        (
            "Reason",
            r.reason.clone().unwrap_or_else(|| "(none given)".into()),
        ),
    ]
}

/// One-line outcome text: `Approved by alice, bob`, `Denied by bob: reason`, `Expired`.
pub fn outcome_line(view: &RequestView) -> String {
    let Some(d) = &view.decision else {
        return "Pending".into();
    };
    match d.outcome {
        dbward_approval_api::Outcome::Approved if view.break_glass => {
            format!("BREAK-GLASS approved — {}", d.reason)
        }
        dbward_approval_api::Outcome::Approved => format!("Approved by {}", d.approvers.join(", ")),
        dbward_approval_api::Outcome::Denied => {
            format!("Denied by {}: {}", d.approvers.join(", "), d.reason)
        }
        dbward_approval_api::Outcome::Expired => "Expired without a decision".into(),
    }
}
