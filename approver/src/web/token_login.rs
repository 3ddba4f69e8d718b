//! Web login with an approver token (`[[approver_tokens]]`), for services without `[oidc]`
//! (a trial, the demo, a site without an identity provider): the credential the CLI already
//! uses is exchanged for the same session an OIDC login gives, for human principals only.
//! With `[oidc]` configured the form is refused, so the identity provider stays the only
//! way in.

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use dbward_approval_api::PrincipalKind;
use serde::Deserialize;

use super::{LoginQuery, html_failure, pages, safe_next, start_session};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::Failure;

fn oidc_only() -> Response {
    html_failure(Failure::new(
        StatusCode::NOT_FOUND,
        "token_login_disabled",
        "this service logs in with OpenID Connect: use /auth/login",
    ))
}

/// `GET /auth/token`: the login form.
pub(super) async fn form(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    if st.web.oidc.is_some() {
        return Redirect::to("/auth/login").into_response();
    }
    Html(pages::token_login(&safe_next(q.next.as_deref()))).into_response()
}

/// The login form's fields.
#[derive(Deserialize)]
pub(super) struct TokenForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /auth/token`: a session for the human principal of an approver token.
pub(super) async fn submit(State(st): State<AppState>, Form(f): Form<TokenForm>) -> Response {
    if st.web.oidc.is_some() {
        return oidc_only();
    }
    let Some(Caller::Approver(name)) = st.tokens.lookup(f.token.trim()).cloned() else {
        return html_failure(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "not an approver token of this service ([[approver_tokens]] in approver.toml)",
        ));
    };
    let human = st
        .svc
        .directory
        .get(&name)
        .is_some_and(|p| p.kind == PrincipalKind::Human);
    if !human {
        return html_failure(Failure::new(
            StatusCode::FORBIDDEN,
            "not_human",
            format!("{name} is not a human principal"),
        ));
    }
    start_session(&st, &name, "approver token", f.next.as_deref(), &[]).await
}
