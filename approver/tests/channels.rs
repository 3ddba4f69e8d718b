//! Slack, Teams and webhook flows against local fakes that check the exact payloads
//! and signatures; signed callbacks from the fakes' point of view.

mod util;

use base64::Engine;
use dbward_approval_api::{Outcome, RequestStatus};
use dbward_approver::channels::signature::{slack_signature, teams_signature, webhook_signature};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use util::*;

const SLACK_SECRET: &str = "slack-signing-secret-test";
const HOOK_SECRET: &str = "webhook-secret-test";

fn teams_secret() -> String {
    base64::engine::general_purpose::STANDARD.encode(b"teams-outgoing-webhook-secret")
}

fn channels_config(fake: &Fake) -> String {
    format!(
        r#"
public_url = "https://approver.example.com"

[channels.slack]
api_base = "{0}/api"
bot_token = "xoxb-test-token"
channel = "C42"
signing_secret = "{SLACK_SECRET}"

[channels.teams]
webhook_url = "{0}/teams"
callback_secret = "{1}"

[[channels.webhooks]]
url = "{0}/hook"
secret = "{HOOK_SECRET}"
"#,
        fake.url,
        teams_secret()
    )
}

fn slack_click(user: &str, action: &str, id: uuid::Uuid) -> Vec<u8> {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase()},
        "actions": [{"action_id": action, "block_id": "dbward_actions", "value": id.to_string(), "type": "button"}],
        "container": {"type": "message", "channel_id": "C42", "message_ts": "1700000000.000100"},
    });
    serde_urlencoded::to_string([("payload", payload.to_string())])
        .expect("form")
        .into_bytes()
}

async fn post_slack(h: &Harness, body: Vec<u8>, ts: i64, secret: &str) -> (u16, Value) {
    let ts = ts.to_string();
    let sig = slack_signature(secret, &ts, &body);
    raw(
        Method::POST,
        &format!("{}/api/v1/channels/slack/interactivity", h.url()),
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &sig),
        ],
        Some(body),
    )
    .await
}

fn actions_of(blocks: &Value) -> Vec<(String, String)> {
    blocks
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap_or("").to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn slack_message_buttons_and_signed_clicks_decide_and_update_the_message() {
    let fake = Fake::start().await;
    let h = start(&channels_config(&fake)).await;
    let req = request("DELETE FROM orders WHERE id < 100", 1, 60);
    h.agent().file_request(&req).await.expect("file");
    let id = req.request_id;

    let posted = fake.wait_for("/api/chat.postMessage", 1).await;
    let msg = &posted[0];
    assert_eq!(msg.header("authorization"), "Bearer xoxb-test-token");
    assert!(msg.header("content-type").starts_with("application/json"));
    let body = msg.json();
    assert_eq!(body["channel"], "C42");
    assert_eq!(body["text"], "Approval needed: delete on db1");
    let blocks = &body["blocks"];
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[2]["text"]["text"],
        "```DELETE FROM orders WHERE id &lt; 100```"
    );
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert!(
        fields.contains(&"*Requester:*\nclaude-bot (ai_agent, owner olivia)"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"*Reason:*\ncleanup of test orders"),
        "{fields:?}"
    );
    assert_eq!(
        actions_of(blocks),
        vec![
            ("dbward_approve".to_string(), id.to_string()),
            ("dbward_deny".to_string(), id.to_string()),
            ("dbward_context".to_string(), id.to_string()),
        ]
    );
    let context = blocks[3]["elements"][0]["text"].as_str().expect("context");
    assert!(
        context.contains(&format!(
            "<https://approver.example.com/ui/requests/{id}|open in dbward>"
        )),
        "{context}"
    );

    let now = OffsetDateTime::now_utc().unix_timestamp();
    // Refused: forged signature, stale timestamp, unknown user, the requester's owner.
    let (status, answer) = post_slack(
        &h,
        slack_click("UALICE", "dbward_approve", id),
        now,
        "wrong-secret",
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("bad_signature"))
    );
    let (status, answer) = post_slack(
        &h,
        slack_click("UALICE", "dbward_approve", id),
        now - 301,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("stale_callback"))
    );
    let (status, answer) = post_slack(
        &h,
        slack_click("UNOBODY", "dbward_approve", id),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("unknown_user"))
    );
    let (status, answer) = post_slack(
        &h,
        slack_click("UOLIVIA", "dbward_approve", id),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("owner_approval"))
    );
    let unsigned = raw(
        Method::POST,
        &format!("{}/api/v1/channels/slack/interactivity", h.url()),
        None,
        &[],
        Some(slack_click("UALICE", "dbward_approve", id)),
    )
    .await;
    assert_eq!(
        (unsigned.0, unsigned.1["code"].as_str()),
        (401, Some("bad_signature"))
    );
    for code in [
        "bad_signature",
        "stale_callback",
        "unknown_user",
        "owner_approval",
    ] {
        assert!(
            audit(&h)
                .await
                .iter()
                .any(|r| r["detail"].as_str().is_some_and(|d| d.contains(code))),
            "{code} not audited"
        );
    }
    assert_eq!(
        h.approver("alice").get(id).await.expect("get").status,
        RequestStatus::Pending
    );

    // Ask for context posts in the thread.
    let (status, _) = post_slack(
        &h,
        slack_click("UBOB", "dbward_context", id),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(status, 200);
    let thread = fake.wait_for("/api/chat.postMessage", 2).await;
    let question = thread[1].json();
    assert_eq!(
        (question["channel"].as_str(), question["thread_ts"].as_str()),
        (Some("C42"), Some("1700000000.000100"))
    );
    assert!(
        question["text"]
            .as_str()
            .expect("text")
            .starts_with("bob asks claude-bot for more context")
    );

    // A genuine click approves; replaying it is refused.
    let click = slack_click("UALICE", "dbward_approve", id);
    let (status, answer) = post_slack(&h, click.clone(), now, SLACK_SECRET).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("approved")),
        "{answer}"
    );
    let (status, answer) = post_slack(&h, click, now, SLACK_SECRET).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("replayed_callback"))
    );
    let d = h
        .agent()
        .wait_decision(id, std::time::Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(
        (d.outcome, d.approvers.clone()),
        (Outcome::Approved, vec!["alice".to_string()])
    );

    let updates = fake.wait_for("/api/chat.update", 1).await;
    let update = updates[0].json();
    assert_eq!(updates[0].header("authorization"), "Bearer xoxb-test-token");
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("C42"), Some("1700000000.000100"))
    );
    assert!(
        actions_of(&update["blocks"]).is_empty(),
        "buttons are removed once decided"
    );
    let last = update["blocks"]
        .as_array()
        .and_then(|b| b.last())
        .expect("blocks");
    assert_eq!(last["text"]["text"], "*Approved by alice*");
}

#[tokio::test]
async fn teams_card_and_hmac_verified_callback_carry_the_denial_reason() {
    let fake = Fake::start().await;
    let h = start(&channels_config(&fake)).await;
    let req = request("GRANT ALL ON orders TO claude", 2, 60);
    h.agent().file_request(&req).await.expect("file");
    let id = req.request_id;

    let cards = fake.wait_for("/teams", 1).await;
    let msg = cards[0].json();
    assert_eq!(msg["type"], "message");
    let attachment = &msg["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(
        (card["type"].as_str(), card["version"].as_str()),
        (Some("AdaptiveCard"), Some("1.4"))
    );
    assert_eq!(card["body"][2]["text"], "GRANT ALL ON orders TO claude");
    assert_eq!(card["body"][4]["id"], "comment");
    let actions: Vec<(String, String)> = card["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or("").to_string(),
                a["data"]["dbward_action"]
                    .as_str()
                    .or(a["url"].as_str())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("Action.Submit".to_string(), "approve".to_string()),
            ("Action.Submit".to_string(), "deny".to_string()),
            ("Action.Submit".to_string(), "context".to_string()),
            (
                "Action.OpenUrl".to_string(),
                format!("https://approver.example.com/ui/requests/{id}")
            ),
        ]
    );
    assert!(card["actions"][0]["data"]["request_id"] == id.to_string());

    let activity = |user: &str, action: &str, comment: &str, at: OffsetDateTime| {
        json!({
            "type": "message",
            "timestamp": dbward_approval_api::timefmt::format(at),
            "from": {"id": "29:1", "name": user, "aadObjectId": user},
            "value": {"dbward_action": action, "request_id": id.to_string(), "comment": comment},
        })
        .to_string()
        .into_bytes()
    };
    let callback = format!("{}/api/v1/channels/teams/callback", h.url());
    let send = |body: Vec<u8>, secret: String| {
        let callback = callback.clone();
        async move {
            let auth = teams_signature(&secret, &body).expect("sign");
            raw(
                Method::POST,
                &callback,
                None,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Some(body),
            )
            .await
        }
    };
    let now = OffsetDateTime::now_utc();
    let other_secret = base64::engine::general_purpose::STANDARD.encode(b"other");
    let (status, answer) = send(activity("aad-bob", "deny", "no", now), other_secret).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("bad_signature"))
    );
    let (status, answer) = send(
        activity("aad-bob", "deny", "no", now - time::Duration::minutes(6)),
        teams_secret(),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("stale_callback"))
    );
    let (status, answer) = send(b"{not json".to_vec(), teams_secret()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("malformed_payload"))
    );

    let (status, answer) = send(activity("aad-alice", "approve", "", now), teams_secret()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .expect("text")
            .contains("pending (1/2 approvals)")
    );
    let denial = activity("aad-bob", "deny", "needs a change ticket", now);
    let (status, _) = send(denial.clone(), teams_secret()).await;
    assert_eq!(status, 200);
    let (status, answer) = send(denial, teams_secret()).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("replayed_callback"))
    );
    let d = h
        .agent()
        .wait_decision(id, std::time::Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(
        (d.outcome, d.reason.as_str()),
        (Outcome::Denied, "needs a change ticket")
    );
    let outcome_cards = fake.wait_for("/teams", 2).await;
    assert_eq!(
        outcome_cards[1].json()["attachments"][0]["content"]["body"][0]["text"],
        "Denied by bob: needs a change ticket"
    );
}

#[tokio::test]
async fn webhooks_are_signed_with_hmac_and_break_glass_alerts_every_channel() {
    let fake = Fake::start().await;
    let h = start(&channels_config(&fake)).await;
    let mut req = request("ALTER TABLE orders DROP COLUMN note", 1, 60);
    req.requester.principal = "oncall".into();
    req.requester.owner = None;
    h.agent().file_request(&req).await.expect("file");
    let filed = fake.wait_for("/hook", 1).await;
    let hook = &filed[0];
    assert_eq!(hook.header("x-dbward-event"), "request.filed");
    assert_eq!(
        hook.header("x-dbward-signature"),
        webhook_signature(HOOK_SECRET, &hook.body)
    );
    let body = hook.json();
    assert_eq!(body["event"], "request.filed");
    assert_eq!(
        body["request"]["request"]["request_id"],
        req.request_id.to_string()
    );
    assert_eq!(body["request"]["status"], "pending");

    h.approver("oncall")
        .break_glass(req.request_id, "prod outage, column blocks deploy")
        .await
        .expect("break glass");
    let hooks = fake.wait_for("/hook", 3).await;
    let events: Vec<&str> = hooks.iter().map(|c| c.header("x-dbward-event")).collect();
    assert_eq!(
        events,
        vec!["request.filed", "break_glass", "request.decided"]
    );
    for c in &hooks {
        assert_eq!(
            c.header("x-dbward-signature"),
            webhook_signature(HOOK_SECRET, &c.body)
        );
    }
    assert_eq!(hooks[1].json()["request"]["break_glass"], true);
    let slack = fake.wait_for("/api/chat.postMessage", 2).await;
    assert!(
        slack[1].json()["text"]
            .as_str()
            .expect("text")
            .starts_with("BREAK-GLASS")
    );
    let teams = fake.wait_for("/teams", 3).await;
    let alert = teams[1].json();
    assert!(
        alert["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .expect("title")
            .contains("BREAK-GLASS")
    );
}
