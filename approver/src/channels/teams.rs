//! Microsoft Teams: Adaptive Cards posted to a webhook (or bot relay) URL, and parsing
//! of the `Action.Submit` callback, which [`super::signature::verify_teams`] verifies
//! with the shared HMAC secret (the Teams outgoing-webhook scheme).

use dbward_approval_api::RequestView;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::TeamsConfig;

fn envelope(card: Value) -> Value {
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": null,
        "content": card,
    }]})
}

fn body(view: &RequestView, title: String) -> Vec<Value> {
    let facts: Vec<Value> = super::facts(view)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    vec![
        json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": title}),
        json!({"type": "FactSet", "facts": facts}),
        json!({"type": "TextBlock", "fontType": "Monospace", "wrap": true, "text": view.request.statement}),
        json!({"type": "TextBlock", "isSubtle": true, "wrap": true, "text": format!("request {}", view.request.request_id)}),
    ]
}

fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": actions,
    })
}

/// The message with the Adaptive Card for a pending request: details, a comment box,
/// and Approve / Deny / Ask for context submit actions (plus a link when known).
pub fn request_card(view: &RequestView, link: Option<&str>) -> Value {
    let r = &view.request;
    let id = r.request_id.to_string();
    let mut b = body(view, format!("Approval needed: {} on {}", r.class, r.host));
    b.push(
        json!({"type": "Input.Text", "id": "comment", "isMultiline": true,
        "placeholder": "Comment (a denial's reason reaches the client)"}),
    );
    let submit = |title: &str, action: &str| json!({"type": "Action.Submit", "title": title, "data": {"dbward_action": action, "request_id": id}});
    let mut actions = vec![
        submit("Approve", "approve"),
        submit("Deny", "deny"),
        submit("Ask for context", "context"),
    ];
    if let Some(link) = link {
        actions.push(json!({"type": "Action.OpenUrl", "title": "Open in dbward", "url": link}));
    }
    envelope(card(b, actions))
}

/// The message announcing a request's outcome.
pub fn outcome_card(view: &RequestView) -> Value {
    envelope(card(body(view, super::outcome_line(view)), vec![]))
}

/// The break-glass alert message.
pub fn break_glass_card(view: &RequestView) -> Value {
    envelope(card(
        body(
            view,
            format!("🚨 BREAK-GLASS: {}", super::outcome_line(view)),
        ),
        vec![],
    ))
}

/// Posts a message to the configured Teams URL.
pub async fn post_card(http: &reqwest::Client, cfg: &TeamsConfig, message: &Value) {
    match http.post(&cfg.webhook_url).json(message).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(status = %r.status(), "Teams refused the card"),
        Err(e) => tracing::warn!(error = %e, "Teams unreachable"),
    }
}

/// An `Action.Submit` from Teams, reduced to what dbward needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// AAD object id of the clicking user.
    pub user: String,
    /// `approve`, `deny` or `context`.
    pub action: String,
    /// Request id.
    pub request_id: Uuid,
    /// Comment typed in the card.
    pub comment: Option<String>,
    /// Activity timestamp (RFC 3339), checked against the replay window.
    pub timestamp: time::OffsetDateTime,
}

#[derive(Deserialize)]
struct Activity {
    timestamp: String,
    from: From,
    value: SubmitValue,
}

#[derive(Deserialize)]
struct From {
    #[serde(rename = "aadObjectId")]
    aad_object_id: String,
}

#[derive(Deserialize)]
struct SubmitValue {
    dbward_action: String,
    request_id: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Parses the callback activity JSON.
pub fn parse_submit(body: &[u8]) -> Result<Submit, String> {
    let a: Activity =
        serde_json::from_slice(body).map_err(|e| format!("malformed Teams activity JSON: {e}"))?;
    let request_id = Uuid::parse_str(&a.value.request_id)
        .map_err(|_| format!("request_id {:?} is not a request id", a.value.request_id))?;
    let timestamp = dbward_approval_api::timefmt::parse(&a.timestamp)
        .map_err(|e| format!("activity timestamp {:?}: {e}", a.timestamp))?;
    Ok(Submit {
        user: a.from.aad_object_id,
        action: a.value.dbward_action,
        request_id,
        comment: a.value.comment.filter(|c| !c.trim().is_empty()),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_activities_parse_or_say_what_is_wrong() {
        let id = Uuid::from_u128(3);
        let ok = json!({"type": "message", "timestamp": "2026-01-01T00:00:00.123Z",
            "from": {"id": "29:x", "aadObjectId": "aad-1"},
            "value": {"dbward_action": "deny", "request_id": id.to_string(), "comment": "not now"}});
        let s = parse_submit(ok.to_string().as_bytes()).expect("valid");
        assert_eq!(
            (s.user.as_str(), s.action.as_str(), s.request_id),
            ("aad-1", "deny", id)
        );
        assert_eq!(s.comment.as_deref(), Some("not now"));
        for (body, want) in [
            ("{", "malformed Teams activity JSON"),
            (
                r#"{"timestamp":"2026-01-01T00:00:00Z","from":{"aadObjectId":"a"},"value":{"dbward_action":"approve","request_id":"zz"}}"#,
                "not a request id",
            ),
        ] {
            assert!(
                parse_submit(body.as_bytes())
                    .expect_err(body)
                    .contains(want),
                "{body}"
            );
        }
    }
}
