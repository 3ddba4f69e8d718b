//! Slack: Block Kit request messages with Approve / Deny / Ask for context buttons
//! (`chat.postMessage`), outcome updates (`chat.update`), and parsing of the
//! interactivity payloads whose signature [`super::signature::verify_slack`] checks.

use dbward_approval_api::RequestView;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::SlackConfig;
use crate::store::Store;

/// `action_id` of the Approve button.
pub const APPROVE: &str = "dbward_approve";
/// `action_id` of the Deny button.
pub const DENY: &str = "dbward_deny";
/// `action_id` of the Ask-for-context button.
pub const CONTEXT: &str = "dbward_context";

/// Slack section text limit is 3000 characters; keep room for the fences.
const MAX_STATEMENT: usize = 2800;

/// Escapes `&`, `<`, `>` as Slack mrkdwn requires.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}… (truncated)")
}

fn header(view: &RequestView) -> String {
    let r = &view.request;
    format!("Approval needed: {} on {}", r.class, r.host)
}

fn detail_blocks(view: &RequestView, link: Option<&str>) -> Vec<Value> {
    let fields: Vec<Value> = super::facts(view)
        .into_iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}:*\n{}", escape(&v))}))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&header(view), 140)}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("```{}```", escape(&clip(&view.request.statement, MAX_STATEMENT)))}}),
    ];
    let mut context = format!("request `{}`", view.request.request_id);
    if let Some(link) = link {
        context.push_str(&format!(" · <{link}|open in dbward>"));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    blocks
}

/// The `chat.postMessage` body for a pending request.
pub fn request_message(view: &RequestView, channel: &str, link: Option<&str>) -> Value {
    let id = view.request.request_id.to_string();
    let mut blocks = detail_blocks(view, link);
    blocks.push(
        json!({"type": "actions", "block_id": "dbward_actions", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": id,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY, "style": "danger", "value": id,
             "text": {"type": "plain_text", "text": "Deny"}},
            {"type": "button", "action_id": CONTEXT, "value": id,
             "text": {"type": "plain_text", "text": "Ask for context"}},
        ]}),
    );
    json!({"channel": channel, "text": header(view), "blocks": blocks})
}

/// The `chat.update` body once decided: details kept, buttons replaced by the outcome.
pub fn outcome_message(view: &RequestView, channel: &str, ts: &str) -> Value {
    let mut blocks = detail_blocks(view, None);
    let outcome = super::outcome_line(view);
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape(&outcome))}}));
    json!({"channel": channel, "ts": ts, "text": format!("{}: {outcome}", header(view)), "blocks": blocks})
}

async fn call(
    http: &reqwest::Client,
    cfg: &SlackConfig,
    method: &str,
    body: &Value,
) -> Option<Value> {
    let url = format!("{}/{method}", cfg.api_base.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .bearer_auth(&cfg.bot_token)
        .json(body)
        .send()
        .await;
    let answer: Value = match resp {
        Ok(r) => match r.json().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%url, error = %e, "Slack answered with unreadable JSON");
                return None;
            }
        },
        Err(e) => {
            tracing::warn!(%url, error = %e, "Slack unreachable");
            return None;
        }
    };
    if answer["ok"] != json!(true) {
        tracing::warn!(%url, error = %answer["error"], "Slack refused the call");
        return None;
    }
    Some(answer)
}

/// Posts a pending request and remembers the message for later updates.
pub async fn post_request(
    http: &reqwest::Client,
    cfg: &SlackConfig,
    store: &Store,
    view: &RequestView,
    link: Option<&str>,
) {
    let body = request_message(view, &cfg.channel, link);
    let Some(answer) = call(http, cfg, "chat.postMessage", &body).await else {
        return;
    };
    let (Some(channel), Some(ts)) = (answer["channel"].as_str(), answer["ts"].as_str()) else {
        tracing::warn!(
            "Slack chat.postMessage answer lacks channel/ts; the message will not be updated"
        );
        return;
    };
    if let Err(e) = store
        .set_channel_message(view.request.request_id, "slack", &format!("{channel}|{ts}"))
        .await
    {
        tracing::warn!(error = %e, "could not remember the Slack message");
    }
}

async fn message_ref(store: &Store, id: Uuid) -> Option<(String, String)> {
    let reference = store.channel_message(id, "slack").await.ok().flatten()?;
    let (channel, ts) = reference.split_once('|')?;
    Some((channel.to_string(), ts.to_string()))
}

/// Replaces the request's buttons with its outcome.
pub async fn update_outcome(
    http: &reqwest::Client,
    cfg: &SlackConfig,
    store: &Store,
    view: &RequestView,
) {
    if let Some((channel, ts)) = message_ref(store, view.request.request_id).await {
        call(
            http,
            cfg,
            "chat.update",
            &outcome_message(view, &channel, &ts),
        )
        .await;
    }
}

/// Posts a break-glass alert to the channel.
pub async fn post_alert(http: &reqwest::Client, cfg: &SlackConfig, view: &RequestView) {
    let mut blocks = detail_blocks(view, None);
    blocks.insert(
        0,
        json!({"type": "section", "text": {"type": "mrkdwn",
        "text": format!(":rotating_light: *BREAK-GLASS* {}", escape(&super::outcome_line(view)))}}),
    );
    let body = json!({"channel": cfg.channel, "text": format!("BREAK-GLASS: {}", super::outcome_line(view)), "blocks": blocks});
    call(http, cfg, "chat.postMessage", &body).await;
}

/// Posts "X asks for context" in the request's thread.
pub async fn post_context_question(
    http: &reqwest::Client,
    cfg: &SlackConfig,
    store: &Store,
    view: &RequestView,
    by: &str,
) {
    let Some((channel, ts)) = message_ref(store, view.request.request_id).await else {
        return;
    };
    let text = format!(
        "{by} asks {} for more context on this request (reason given: {})",
        view.request.requester.principal,
        view.request.reason.as_deref().unwrap_or("none")
    );
    call(
        http,
        cfg,
        "chat.postMessage",
        &json!({"channel": channel, "thread_ts": ts, "text": text}),
    )
    .await;
}

/// A button click from Slack, reduced to what dbward needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// Slack user id.
    pub user: String,
    /// `action_id` ([`APPROVE`], [`DENY`], [`CONTEXT`]).
    pub action: String,
    /// Request id from the button value.
    pub request_id: Uuid,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct Form {
    payload: String,
}

/// Parses the form-encoded interactivity body (`payload=<json>`).
pub fn parse_click(body: &[u8]) -> Result<Click, String> {
    let form: Form = serde_urlencoded::from_bytes(body)
        .map_err(|e| format!("not a Slack interactivity form: {e}"))?;
    let p: Payload = serde_json::from_str(&form.payload)
        .map_err(|e| format!("malformed Slack payload JSON: {e}"))?;
    if p.kind != "block_actions" {
        return Err(format!("unsupported Slack interaction type {:?}", p.kind));
    }
    let action = p
        .actions
        .into_iter()
        .next()
        .ok_or("Slack payload has no action")?;
    let request_id = Uuid::parse_str(&action.value)
        .map_err(|_| format!("button value {:?} is not a request id", action.value))?;
    Ok(Click {
        user: p.user.id,
        action: action.action_id,
        request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_payloads_parse_or_say_what_is_wrong() {
        let id = Uuid::from_u128(5);
        let payload = json!({"type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": APPROVE, "value": id.to_string()}]});
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        assert_eq!(
            parse_click(body.as_bytes()),
            Ok(Click {
                user: "U1".into(),
                action: APPROVE.into(),
                request_id: id
            })
        );
        let cases: &[(&str, &str)] = &[
            ("payload=%7Bnot-json", "malformed Slack payload JSON"),
            ("nothing=1", "not a Slack interactivity form"),
        ];
        for (body, want) in cases {
            let err = parse_click(body.as_bytes()).expect_err(body);
            assert!(err.contains(want), "{body}: {err}");
        }
        let bad_value = json!({"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": DENY, "value": "x"}]});
        let body = serde_urlencoded::to_string([("payload", bad_value.to_string())]).expect("form");
        assert!(
            parse_click(body.as_bytes())
                .expect_err("bad id")
                .contains("not a request id")
        );
    }

    #[test]
    fn mrkdwn_control_characters_are_escaped_and_long_text_clipped() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        let long = "x".repeat(3000);
        assert!(clip(&long, 10).starts_with("xxxxxxxxxx…"));
        assert_eq!(clip("short", 10), "short");
    }
}
