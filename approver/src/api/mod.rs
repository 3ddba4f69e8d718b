//! The HTTP API (axum): routes, shared state, authentication of callers, body limits,
//! and the middleware that writes every refused call to the approver's audit table.
//!
//! - [`error`] — [`error::Failure`], the one shape of a refused call.
//! - [`auth`] — host tokens, approver tokens, web sessions.
//! - [`requests`] — filing, decisions (long-poll), listing, votes, break-glass, reviews.
//! - [`events`] — audit event ingest (gzip, dedup) and search.
//! - [`callbacks`] — Slack and Teams interactivity callbacks.
//! - [`openapi`] — the published OpenAPI document and the route table it must match.

pub mod auth;
pub mod callbacks;
pub mod error;
pub mod events;
pub mod openapi;
pub mod requests;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use self::auth::{Caller, Tokens};
use self::error::{Failure, Rejected};
use crate::config::Config;
use crate::service::Service;
use crate::tls::Peer;
use crate::web::Web;

/// Name of the web session cookie.
pub const SESSION_COOKIE: &str = "dbward_session";

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The service core.
    pub svc: Arc<Service>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Token table.
    pub tokens: Arc<Tokens>,
    /// Web UI state (OIDC).
    pub web: Arc<Web>,
}

impl AppState {
    /// Authenticates the caller by bearer token or web session cookie.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Failure> {
        if let Some(token) = auth::bearer(headers) {
            return self
                .tokens
                .lookup(token)
                .cloned()
                .ok_or_else(|| auth::unauthenticated("unknown bearer token"));
        }
        if let Some(session) = auth::cookie(headers, SESSION_COOKIE) {
            let now = time::OffsetDateTime::now_utc();
            if let Some(principal) = self
                .svc
                .store
                .session_principal(session, now)
                .await
                .map_err(crate::service::ServiceError::from)?
            {
                return Ok(Caller::Approver(principal));
            }
            return Err(auth::unauthenticated("web session expired; log in again"));
        }
        Err(auth::unauthenticated("no credentials"))
    }

    /// Authenticates an agent; returns its host name.
    pub async fn host(&self, headers: &HeaderMap) -> Result<String, Failure> {
        match self.caller(headers).await? {
            Caller::Host(h) => Ok(h),
            other => Err(auth::wrong_kind(&other, "a host token")),
        }
    }

    /// Authenticates a person or pipeline; returns its principal.
    pub async fn approver(&self, headers: &HeaderMap) -> Result<String, Failure> {
        match self.caller(headers).await? {
            Caller::Approver(p) => Ok(p),
            other => Err(auth::wrong_kind(&other, "an approver token or web login")),
        }
    }
}

/// The raw request body, with size-limit and read errors turned into [`Failure`]s.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body exceeds max_body_bytes of approver.toml",
            )),
            Err(e) => Err(Failure::new(e.status(), "unreadable_body", e.body_text())),
        }
    }
}

/// Parses JSON from a body, refusing malformed input with 400.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(Failure::malformed)
}

/// Parses a request id from the path.
pub fn parse_id(raw: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(raw).map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "bad_request_id",
            format!("{raw:?} is not a request id (UUID)"),
        )
    })
}

/// With `tls.require_host_certificates`, a host token is accepted only over a
/// connection whose client certificate is valid for that host name.
async fn host_certificates(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    let required = st
        .config
        .tls
        .as_ref()
        .is_some_and(|t| t.require_host_certificates);
    if required
        && let Some(Caller::Host(host)) =
            auth::bearer(req.headers()).and_then(|t| st.tokens.lookup(t))
    {
        match &peer.client_cert {
            None => {
                return Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "client_certificate_required",
                    format!("host {host} must present its client certificate (mTLS is required for host tokens)"),
                )
                .by(host)
                .into_response();
            }
            Some(cert) if !crate::tls::cert_valid_for(cert, host) => {
                return Failure::new(
                    StatusCode::FORBIDDEN,
                    "client_certificate_mismatch",
                    format!("the client certificate is not valid for host {host}; use that host's certificate"),
                )
                .by(host)
                .into_response();
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

async fn audit_rejections(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    let peer = peer.addr;
    let line = format!("{} {}", req.method(), req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        let (code, message, actor, request_id) = match resp.extensions().get::<Rejected>() {
            Some(Rejected(f)) => (f.code, f.message.clone(), f.actor.clone(), f.request_id),
            None => (
                "http",
                status.canonical_reason().unwrap_or("").to_string(),
                None,
                None,
            ),
        };
        let actor = actor.unwrap_or_else(|| peer.to_string());
        tracing::info!(%peer, %line, status = status.as_u16(), code, "request refused");
        st.svc
            .audit(
                "rejected",
                Some(&actor),
                request_id,
                status.as_u16(),
                &format!("{line} from {peer}: {code}: {message}"),
            )
            .await;
    }
    resp
}

async fn healthz() -> &'static str {
    "ok"
}

async fn public_key(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "public_key": dbward_approval_api::verifying_key_to_base64(&st.svc.verifying_key())
    }))
}

/// The full router: API, callbacks, OpenAPI, web UI.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/api/v1/requests", post(requests::file).get(requests::list))
        .route("/api/v1/requests/{id}", get(requests::get_one))
        .route("/api/v1/requests/{id}/decision", get(requests::decision))
        .route("/api/v1/requests/{id}/votes", post(requests::vote))
        .route(
            "/api/v1/requests/{id}/break-glass",
            post(requests::break_glass),
        )
        .route("/api/v1/requests/{id}/review", post(requests::review))
        .route("/api/v1/reviews", get(requests::reviews))
        .route("/api/v1/events", post(events::ingest).get(events::search))
        .route("/api/v1/audit", get(requests::audit))
        .route("/api/v1/public-key", get(public_key))
        .route(
            "/api/v1/channels/slack/interactivity",
            post(callbacks::slack),
        )
        .route("/api/v1/channels/teams/callback", post(callbacks::teams))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(healthz))
        .merge(crate::web::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host_certificates,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit_rejections,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}
