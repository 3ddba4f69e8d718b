//! Channel callbacks: Slack interactivity (v0 signature, five-minute window) and the
//! Teams `Action.Submit` relay (HMAC with the shared secret, five-minute window). Each
//! signed callback is processed at most once.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use dbward_approval_api::Vote;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::Failure;
use super::{AppState, Body};
use crate::channels::signature::{self, CallbackError};
use crate::channels::{slack, teams};
use crate::service::ServiceError;

fn refused(e: CallbackError) -> Failure {
    let code = match e {
        CallbackError::OutsideWindow { .. } => "stale_callback",
        CallbackError::Replayed => "replayed_callback",
        _ => "bad_signature",
    };
    let status = if e == CallbackError::Replayed {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNAUTHORIZED
    };
    Failure::new(status, code, e.to_string())
}

fn not_configured(which: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "channel_not_configured",
        format!("the {which} channel is not configured in approver.toml"),
    )
}

async fn once(st: &AppState, nonce: String, now: OffsetDateTime) -> Result<(), Failure> {
    let horizon = now - time::Duration::seconds(2 * signature::WINDOW_SECS);
    if st
        .svc
        .store
        .first_sighting(&nonce, now, horizon)
        .await
        .map_err(|e| Failure::from(ServiceError::from(e)))?
    {
        Ok(())
    } else {
        Err(refused(CallbackError::Replayed))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /api/v1/channels/slack/interactivity`.
pub async fn slack(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, Failure> {
    let cfg = st
        .config
        .channels
        .slack
        .as_ref()
        .ok_or_else(|| not_configured("Slack"))?;
    let now = OffsetDateTime::now_utc();
    let sig = header(&headers, "x-slack-signature");
    signature::verify_slack(
        &cfg.signing_secret,
        header(&headers, "x-slack-request-timestamp"),
        sig,
        &body,
        now.unix_timestamp(),
    )
    .map_err(refused)?;
    once(&st, format!("slack:{}", sig.unwrap_or_default()), now).await?;
    let click = slack::parse_click(&body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "malformed_payload", e))?;
    let id = click.request_id;
    let principal = st
        .svc
        .directory
        .by_slack(&click.user)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::FORBIDDEN,
                "unknown_user",
                format!(
                    "Slack user {} is not mapped to a principal (slack_user_id)",
                    click.user
                ),
            )
            .by(&format!("slack:{}", click.user))
            .on(id)
        })?
        .name
        .clone();
    let fail = |e: ServiceError| Failure::from(e).by(&principal).on(id);
    let status = match click.action.as_str() {
        slack::APPROVE => {
            st.svc
                .vote(id, &principal, Vote::Approve, None, "slack", now)
                .await
                .map_err(fail)?
                .status
        }
        slack::DENY => {
            st.svc
                .vote(id, &principal, Vote::Deny, None, "slack", now)
                .await
                .map_err(fail)?
                .status
        }
        slack::CONTEXT => {
            st.svc
                .ask_context(id, &principal, "slack")
                .await
                .map_err(fail)?;
            dbward_approval_api::RequestStatus::Pending
        }
        other => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "unknown_action",
                format!("unknown Slack action {other:?}"),
            )
            .by(&principal)
            .on(id));
        }
    };
    Ok(Json(
        json!({"ok": true, "request_id": id, "status": status}),
    ))
}

/// `POST /api/v1/channels/teams/callback`.
pub async fn teams(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>, Failure> {
    let cfg = st
        .config
        .channels
        .teams
        .as_ref()
        .ok_or_else(|| not_configured("Teams"))?;
    let now = OffsetDateTime::now_utc();
    let auth = header(&headers, "authorization");
    signature::verify_teams(&cfg.callback_secret, auth, &body).map_err(refused)?;
    let submit = teams::parse_submit(&body)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "malformed_payload", e))?;
    signature::check_window(submit.timestamp.unix_timestamp(), now.unix_timestamp())
        .map_err(refused)?;
    once(&st, format!("teams:{}", auth.unwrap_or_default()), now).await?;
    let id = submit.request_id;
    let principal = st
        .svc
        .directory
        .by_teams(&submit.user)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::FORBIDDEN,
                "unknown_user",
                format!(
                    "Teams user {} is not mapped to a principal (teams_user_id)",
                    submit.user
                ),
            )
            .by(&format!("teams:{}", submit.user))
            .on(id)
        })?
        .name
        .clone();
    let fail = |e: ServiceError| Failure::from(e).by(&principal).on(id);
    let comment = submit.comment.as_deref();
    let text = match submit.action.as_str() {
        "approve" | "deny" => {
            let vote = if submit.action == "approve" {
                Vote::Approve
            } else {
                Vote::Deny
            };
            let out = st
                .svc
                .vote(id, &principal, vote, comment, "teams", now)
                .await
                .map_err(fail)?;
            format!(
                "{} recorded {}; request is {} ({}/{} approvals)",
                principal,
                vote.as_str(),
                out.status.as_str(),
                out.approvals,
                out.quorum
            )
        }
        "context" => {
            st.svc
                .ask_context(id, &principal, "teams")
                .await
                .map_err(fail)?;
            format!("{principal} asked for more context")
        }
        other => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "unknown_action",
                format!("unknown Teams action {other:?}"),
            )
            .by(&principal)
            .on(id));
        }
    };
    Ok(Json(json!({"type": "message", "text": text})))
}
