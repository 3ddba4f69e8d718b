//! Generic outbound webhooks: JSON `{event, delivery_id, sent_at, request}` POSTed with
//! `X-Dbward-Event` and `X-Dbward-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.

use dbward_approval_api::RequestView;
use serde_json::{Value, json};

use crate::config::WebhookConfig;

/// The delivery body.
pub fn payload(event: &str, view: &RequestView, delivery_id: &str, sent_at: &str) -> Value {
    json!({"event": event, "delivery_id": delivery_id, "sent_at": sent_at, "request": view})
}

/// Delivers one event to one webhook (two attempts).
pub async fn deliver(
    http: &reqwest::Client,
    hook: &WebhookConfig,
    event: &str,
    view: &RequestView,
) {
    let delivery_id = uuid::Uuid::new_v4().to_string();
    let sent_at = dbward_approval_api::timefmt::format(time::OffsetDateTime::now_utc());
    let body = payload(event, view, &delivery_id, &sent_at).to_string();
    let signature = super::signature::webhook_signature(&hook.secret, body.as_bytes());
    for attempt in 1..=2 {
        let sent = http
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-dbward-event", event)
            .header("x-dbward-signature", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(url = %hook.url, status = %r.status(), attempt, "webhook refused delivery")
            }
            Err(e) => tracing::warn!(url = %hook.url, error = %e, attempt, "webhook unreachable"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
