//! The web UI: pending requests, history and search, approve/deny with a comment,
//! break-glass review, per-host live event stream; OpenID Connect login.

use std::net::SocketAddr;

use axum::Router;

use crate::api::AppState;
use crate::config::OidcConfig;

/// Web UI state.
#[derive(Debug)]
pub struct Web {
    /// OIDC settings, when login is configured.
    pub oidc: Option<OidcConfig>,
    /// Base URL of this service for redirects.
    pub base_url: String,
}

impl Web {
    /// Web state for this listener.
    pub fn new(oidc: Option<OidcConfig>, public_url: Option<String>, addr: SocketAddr) -> Self {
        Self {
            oidc,
            base_url: public_url.unwrap_or_else(|| format!("http://{addr}")),
        }
    }
}

/// Web UI routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
