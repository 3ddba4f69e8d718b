//! The web UI: pending requests, history and search, the statement with highlighting,
//! identity and context, approve/deny with a comment, break-glass and its review, the
//! per-host live event stream; approvers log in with OpenID Connect, or with their approver
//! token when no `[oidc]` is configured.
//!
//! - [`oidc`] — discovery, JWKS, code exchange, ID token checks.
//! - `token_login` — the login form for approver tokens (services without `[oidc]`).
//! - [`pages`] — HTML rendering.
//! - [`highlight`] — SQL highlighting.

pub mod highlight;
pub mod oidc;
pub mod pages;
mod token_login;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use dbward_approval_api::{PrincipalKind, RequestStatus, Vote};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::api::error::{Failure, Rejected};
use crate::api::{AppState, SESSION_COOKIE, auth, parse_id};
use crate::config::OidcConfig;
use crate::service::ServiceError;

const LOGIN_COOKIE: &str = "dbward_oidc";
const NEXT_COOKIE: &str = "dbward_next";
const SESSION_HOURS: i64 = 12;

/// Web UI state.
#[derive(Debug)]
pub struct Web {
    /// OIDC relying party, when login is configured.
    pub oidc: Option<oidc::Oidc>,
    /// Base URL of this service for redirects.
    pub base_url: String,
}

impl Web {
    /// Web state for this listener.
    pub fn new(oidc: Option<OidcConfig>, public_url: Option<String>, addr: SocketAddr) -> Self {
        Self {
            oidc: oidc.map(oidc::Oidc::new),
            base_url: public_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://{addr}")),
        }
    }

    fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.base_url)
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age: i64) -> String {
        let secure = if self.base_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }
}

/// Web UI routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/requests") }))
        .route("/ui", get(|| async { Redirect::to("/ui/requests") }))
        .route("/ui/requests", get(list))
        .route("/ui/requests/{id}", get(detail))
        .route("/ui/requests/{id}/vote", post(vote))
        .route("/ui/requests/{id}/break-glass", post(break_glass))
        .route("/ui/requests/{id}/review", post(review))
        .route("/ui/reviews", get(reviews))
        .route("/ui/events", get(events))
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", get(logout))
        .route(
            "/auth/token",
            get(token_login::form).post(token_login::submit),
        )
}

/// CSRF token of a session (forms must echo it).
pub fn csrf(session: &str) -> String {
    hex::encode(Sha256::digest(format!("dbward-csrf:{session}").as_bytes()))
}

fn html_failure(f: Failure) -> Response {
    let mut resp = (
        f.status,
        Html(pages::message(
            "Refused",
            &format!("{} ({})", f.message, f.code),
        )),
    )
        .into_response();
    resp.extensions_mut().insert(Rejected(f));
    resp
}

/// The logged-in principal and session id, or a redirect to the login.
async fn viewer(
    st: &AppState,
    headers: &HeaderMap,
    here: &str,
) -> Result<(String, String), Response> {
    if let Some(session) = auth::cookie(headers, SESSION_COOKIE) {
        let found = st
            .svc
            .store
            .session_principal(session, OffsetDateTime::now_utc())
            .await;
        if let Ok(Some(p)) = found {
            return Ok((p, session.to_string()));
        }
    }
    let next = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
    let login = if st.web.oidc.is_some() {
        "/auth/login"
    } else {
        "/auth/token"
    };
    Err(Redirect::to(&format!("{login}?{next}")).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let (who, _) = match viewer(&st, &headers, "/ui/requests").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let status_text = q.status.clone().unwrap_or_else(|| "pending".into());
    let status = RequestStatus::parse(&status_text);
    let text = q.q.clone().unwrap_or_default();
    match st.svc.list(status, Some(&text), 200).await {
        Ok(views) => Html(pages::list(&who, &views, &status_text, &text)).into_response(),
        Err(e) => html_failure(Failure::from(e).by(&who)),
    }
}

async fn detail(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (who, session) = match viewer(&st, &headers, &format!("/ui/requests/{raw}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(f) => return html_failure(f.by(&who)),
    };
    match st.svc.view(id).await {
        Ok(Some(v)) => {
            let can_break_glass = v.request.break_glass_group.as_ref().is_some_and(|g| {
                st.svc
                    .directory
                    .get(&who)
                    .is_some_and(|p| p.kind == PrincipalKind::Human && p.groups.contains(g))
            });
            Html(pages::detail(&who, &v, &csrf(&session), can_break_glass)).into_response()
        }
        Ok(None) => html_failure(Failure::from(ServiceError::UnknownRequest(id)).by(&who)),
        Err(e) => html_failure(Failure::from(e).by(&who)),
    }
}

#[derive(Deserialize)]
struct VoteForm {
    csrf: String,
    vote: String,
    #[serde(default)]
    comment: String,
}

/// The refusal for a form whose CSRF token does not match the session, if it does not.
fn csrf_refusal(given: &str, session: &str, who: &str) -> Option<Response> {
    (given != csrf(session)).then(|| {
        html_failure(
            Failure::new(
                StatusCode::FORBIDDEN,
                "bad_csrf",
                "form token does not match your session; reload the page",
            )
            .by(who),
        )
    })
}

async fn vote(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<VoteForm>,
) -> Response {
    let (who, session) = match viewer(&st, &headers, &format!("/ui/requests/{raw}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&f.csrf, &session, &who) {
        return r;
    }
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return html_failure(e.by(&who)),
    };
    let v = match f.vote.as_str() {
        "approve" => Vote::Approve,
        "deny" => Vote::Deny,
        other => {
            return html_failure(
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "bad_vote",
                    format!("vote {other:?}: approve or deny"),
                )
                .by(&who),
            );
        }
    };
    match st
        .svc
        .vote(
            id,
            &who,
            v,
            Some(&f.comment),
            "web",
            OffsetDateTime::now_utc(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/requests/{id}")).into_response(),
        Err(e) => html_failure(Failure::from(e).by(&who).on(id)),
    }
}

#[derive(Deserialize)]
struct ReasonForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn break_glass(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<ReasonForm>,
) -> Response {
    let (who, session) = match viewer(&st, &headers, &format!("/ui/requests/{raw}")).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&f.csrf, &session, &who) {
        return r;
    }
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return html_failure(e.by(&who)),
    };
    match st
        .svc
        .break_glass(id, &who, &f.reason, "web", OffsetDateTime::now_utc())
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/requests/{id}")).into_response(),
        Err(e) => html_failure(Failure::from(e).by(&who).on(id)),
    }
}

#[derive(Deserialize)]
struct CommentForm {
    csrf: String,
    #[serde(default)]
    comment: String,
}

async fn review(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Form(f): Form<CommentForm>,
) -> Response {
    let (who, session) = match viewer(&st, &headers, "/ui/reviews").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refusal(&f.csrf, &session, &who) {
        return r;
    }
    let id = match parse_id(&raw) {
        Ok(id) => id,
        Err(e) => return html_failure(e.by(&who)),
    };
    match st.svc.review(id, &who, &f.comment).await {
        Ok(()) => Redirect::to("/ui/reviews").into_response(),
        Err(e) => html_failure(Failure::from(e).by(&who).on(id)),
    }
}

async fn reviews(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let (who, session) = match viewer(&st, &headers, "/ui/reviews").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut views = Vec::new();
    match st.svc.store.unreviewed_break_glass().await {
        Ok(found) => {
            for s in found {
                if let Ok(Some(v)) = st.svc.view(s.request.request_id).await {
                    views.push(v);
                }
            }
        }
        Err(e) => return html_failure(Failure::from(ServiceError::from(e)).by(&who)),
    }
    Html(pages::reviews(&who, &views, &csrf(&session))).into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    host: String,
    #[serde(default)]
    q: String,
}

async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    match viewer(&st, &headers, "/ui/events").await {
        Ok((who, _)) => Html(pages::events(&who, &q.host, &q.q)).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/ui/requests")
        .to_string()
}

fn with_cookies(mut resp: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn login(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let Some(rp) = &st.web.oidc else {
        return html_failure(Failure::new(
            StatusCode::NOT_FOUND,
            "oidc_not_configured",
            "web login needs [oidc] in approver.toml",
        ));
    };
    let state = oidc::LoginState::new();
    match rp.authorize_url(&st.web.redirect_uri(), &state).await {
        Ok(url) => {
            let next = safe_next(q.next.as_deref());
            let next = serde_urlencoded::to_string([("n", next.as_str())]).unwrap_or_default();
            with_cookies(
                Redirect::to(&url).into_response(),
                &[
                    st.web
                        .cookie(LOGIN_COOKIE, &state.to_cookie(), "/auth", 600),
                    st.web
                        .cookie(NEXT_COOKIE, next.trim_start_matches("n="), "/auth", 600),
                ],
            )
        }
        Err(e) => html_failure(Failure::new(
            StatusCode::BAD_GATEWAY,
            "oidc_provider",
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(rp) = &st.web.oidc else {
        return html_failure(Failure::new(
            StatusCode::NOT_FOUND,
            "oidc_not_configured",
            "web login needs [oidc] in approver.toml",
        ));
    };
    let refuse = |code: &'static str, msg: String| {
        html_failure(Failure::new(StatusCode::UNAUTHORIZED, code, msg))
    };
    if let Some(e) = q.error {
        return refuse(
            "oidc_error",
            format!("identity provider refused the login: {e}"),
        );
    }
    let Some(login) = auth::cookie(&headers, LOGIN_COOKIE).and_then(oidc::LoginState::from_cookie)
    else {
        return refuse(
            "oidc_state",
            "login cookie missing or expired; start again at /auth/login".into(),
        );
    };
    if q.state.as_deref() != Some(login.state.as_str()) {
        return refuse(
            "oidc_state",
            "state does not match this browser's login (forged or replayed callback)".into(),
        );
    }
    let Some(code) = q.code else {
        return refuse("oidc_code", "callback carries no code".into());
    };
    let claims = match rp.exchange(&code, &st.web.redirect_uri(), &login).await {
        Ok(c) => c,
        Err(e) => return refuse("oidc_token", e.to_string()),
    };
    let Some(principal) = st
        .svc
        .directory
        .by_oidc(&claims.sub, claims.verified_email())
    else {
        return html_failure(Failure::new(
            StatusCode::FORBIDDEN,
            "unknown_user",
            format!(
                "identity {} is not in the approver's directory (oidc_subject or email)",
                claims.sub
            ),
        ));
    };
    if principal.kind != PrincipalKind::Human {
        return html_failure(Failure::new(
            StatusCode::FORBIDDEN,
            "not_human",
            format!("{} is not a human principal", principal.name),
        ));
    }
    let next = auth::cookie(&headers, NEXT_COOKIE)
        .and_then(|n| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("n={n}")).ok())
        .and_then(|v| v.into_iter().next().map(|(_, n)| n));
    start_session(
        &st,
        &principal.name,
        &format!("OIDC subject {}", claims.sub),
        next.as_deref(),
        &[
            st.web.cookie(LOGIN_COOKIE, "", "/auth", 0),
            st.web.cookie(NEXT_COOKIE, "", "/auth", 0),
        ],
    )
    .await
}

/// Opens a web session for a human `principal` (logged in `how`) and redirects to `next`,
/// also setting `extra_cookies`.
async fn start_session(
    st: &AppState,
    principal: &str,
    how: &str,
    next: Option<&str>,
    extra_cookies: &[String],
) -> Response {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let session = hex::encode(raw);
    let expires = OffsetDateTime::now_utc() + time::Duration::hours(SESSION_HOURS);
    if let Err(e) = st
        .svc
        .store
        .create_session(&session, principal, expires)
        .await
    {
        return html_failure(Failure::from(ServiceError::from(e)));
    }
    st.svc.audit("login", Some(principal), None, 200, how).await;
    let mut cookies = vec![
        st.web
            .cookie(SESSION_COOKIE, &session, "/", SESSION_HOURS * 3600),
    ];
    cookies.extend_from_slice(extra_cookies);
    with_cookies(Redirect::to(&safe_next(next)).into_response(), &cookies)
}

async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(session) = auth::cookie(&headers, SESSION_COOKIE)
        && let Err(e) = st.svc.store.delete_session(session).await
    {
        tracing::warn!(error = %e, "could not delete web session");
    }
    with_cookies(
        Html(pages::message("Logged out", "You are logged out.")).into_response(),
        &[st.web.cookie(SESSION_COOKIE, "", "/", 0)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_redirects_only_to_local_ui_pages() {
        let cases = [
            (Some("/ui/requests/1"), "/ui/requests/1"),
            (Some("https://evil.example/ui/"), "/ui/requests"),
            (Some("//evil.example/ui/"), "/ui/requests"),
            (Some("/api/v1/audit"), "/ui/requests"),
            (None, "/ui/requests"),
        ];
        for (next, want) in cases {
            assert_eq!(safe_next(next), want, "{next:?}");
        }
    }
}
