//! Approval request endpoints: file, long-poll the decision, list, get, vote,
//! break-glass, review, and the approver's audit trail.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dbward_approval_api::{ApprovalRequest, BreakGlassBody, RequestList, RequestStatus, VoteBody};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::Failure;
use super::{AppState, Body, parse_id, parse_json};

/// `POST /api/v1/requests` (host).
pub async fn file(
    State(st): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, Failure> {
    let host = st.host(&headers).await?;
    let req: ApprovalRequest = parse_json(&body).map_err(|f| f.by(&host))?;
    let id = req.request_id;
    if req.host != host {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "host_mismatch",
            format!(
                "request names host {:?} but the token belongs to host {host:?}",
                req.host
            ),
        )
        .by(&host)
        .on(id));
    }
    let filed = st
        .svc
        .file(req, OffsetDateTime::now_utc())
        .await
        .map_err(|e| Failure::from(e).by(&host).on(id))?;
    Ok((StatusCode::CREATED, Json(filed)).into_response())
}

/// Query of the decision long-poll.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Seconds to wait at most (capped by `max_wait_secs`).
    #[serde(default)]
    wait: Option<u64>,
}

/// `GET /api/v1/requests/{id}/decision?wait=SECONDS` (host).
pub async fn decision(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Response, Failure> {
    let host = st.host(&headers).await?;
    let id = parse_id(&raw).map_err(|f| f.by(&host))?;
    let stored = st
        .svc
        .store
        .get_request(id)
        .await
        .map_err(|e| Failure::from(crate::service::ServiceError::from(e)))?;
    match stored {
        None => {
            return Err(Failure::from(crate::service::ServiceError::UnknownRequest(id)).by(&host));
        }
        Some(s) if s.request.host != host => {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "host_mismatch",
                format!("request {id} belongs to another host"),
            )
            .by(&host)
            .on(id));
        }
        Some(_) => {}
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(st.config.max_wait_secs));
    match st
        .svc
        .wait_decision(id, wait)
        .await
        .map_err(|e| Failure::from(e).by(&host).on(id))?
    {
        Some(d) => Ok(Json(d).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Query of the request list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// `pending`, `approved`, `denied` or `expired`.
    #[serde(default)]
    status: Option<String>,
    /// Free text.
    #[serde(default)]
    q: Option<String>,
    /// Most results (default 100, at most 1000).
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /api/v1/requests` (approver).
pub async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<RequestList>, Failure> {
    let who = st.approver(&headers).await?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(RequestStatus::parse(s).ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!("status {s:?}: use pending, approved, denied or expired"),
            )
            .by(&who)
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let requests = st
        .svc
        .list(status, q.q.as_deref(), limit)
        .await
        .map_err(|e| Failure::from(e).by(&who))?;
    Ok(Json(RequestList { requests }))
}

/// `GET /api/v1/requests/{id}` (approver).
pub async fn get_one(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, Failure> {
    let who = st.approver(&headers).await?;
    let id = parse_id(&raw).map_err(|f| f.by(&who))?;
    match st
        .svc
        .view(id)
        .await
        .map_err(|e| Failure::from(e).by(&who))?
    {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(Failure::from(crate::service::ServiceError::UnknownRequest(id)).by(&who)),
    }
}

/// `POST /api/v1/requests/{id}/votes` (approver).
pub async fn vote(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Body(body): Body,
) -> Result<Response, Failure> {
    let who = st.approver(&headers).await?;
    let id = parse_id(&raw).map_err(|f| f.by(&who))?;
    let v: VoteBody = parse_json(&body).map_err(|f| f.by(&who).on(id))?;
    let out = st
        .svc
        .vote(
            id,
            &who,
            v.vote,
            v.comment.as_deref(),
            "api",
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|e| Failure::from(e).by(&who).on(id))?;
    Ok(Json(out).into_response())
}

/// `POST /api/v1/requests/{id}/break-glass` (approver in the emergency group).
pub async fn break_glass(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Body(body): Body,
) -> Result<Response, Failure> {
    let who = st.approver(&headers).await?;
    let id = parse_id(&raw).map_err(|f| f.by(&who))?;
    let b: BreakGlassBody = parse_json(&body).map_err(|f| f.by(&who).on(id))?;
    let out = st
        .svc
        .break_glass(id, &who, &b.reason, "api", OffsetDateTime::now_utc())
        .await
        .map_err(|e| Failure::from(e).by(&who).on(id))?;
    Ok(Json(out).into_response())
}

/// Body of a break-glass review.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// Reviewer's conclusion.
    comment: String,
}

/// `POST /api/v1/requests/{id}/review` (approver, not the one who broke the glass).
pub async fn review(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Body(body): Body,
) -> Result<Response, Failure> {
    let who = st.approver(&headers).await?;
    let id = parse_id(&raw).map_err(|f| f.by(&who))?;
    let b: ReviewBody = parse_json(&body).map_err(|f| f.by(&who).on(id))?;
    st.svc
        .review(id, &who, &b.comment)
        .await
        .map_err(|e| Failure::from(e).by(&who).on(id))?;
    Ok(Json(serde_json::json!({"request_id": id, "reviewed_by": who})).into_response())
}

/// `GET /api/v1/reviews` (approver): break-glass approvals awaiting review.
pub async fn reviews(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<RequestList>, Failure> {
    let who = st.approver(&headers).await?;
    let mut requests = Vec::new();
    let pending = st
        .svc
        .store
        .unreviewed_break_glass()
        .await
        .map_err(|e| Failure::from(crate::service::ServiceError::from(e)).by(&who))?;
    for s in pending {
        if let Some(v) = st
            .svc
            .view(s.request.request_id)
            .await
            .map_err(|e| Failure::from(e).by(&who))?
        {
            requests.push(v);
        }
    }
    Ok(Json(RequestList { requests }))
}

/// Query of the audit listing.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// Most records (default 200).
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /api/v1/audit` (approver): the approver's own audit trail, newest first.
pub async fn audit(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Failure> {
    let who = st.approver(&headers).await?;
    let records = st
        .svc
        .store
        .list_audit(q.limit.unwrap_or(200).clamp(1, 5000))
        .await
        .map_err(|e| Failure::from(crate::service::ServiceError::from(e)).by(&who))?;
    Ok(Json(serde_json::json!({"records": records})).into_response())
}
