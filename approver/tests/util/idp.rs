//! A tiny local OpenID Connect identity provider for tests: discovery, JWKS (Ed25519),
//! an authorize endpoint that logs in a chosen subject at once, and a token endpoint
//! that checks client credentials and PKCE and issues EdDSA-signed ID tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Client id registered at the IdP.
pub const CLIENT_ID: &str = "dbward-web";
/// Client secret.
pub const CLIENT_SECRET: &str = "dbward-web-secret";

/// What a code was issued for: nonce, PKCE challenge, subject, e-mail.
type Grant = (String, String, String, String);

#[derive(Clone)]
struct IdpState {
    issuer: String,
    key: Arc<SigningKey>,
    user: Arc<Mutex<(String, String)>>,
    codes: Arc<Mutex<HashMap<String, Grant>>>,
}

/// The running IdP.
pub struct Idp {
    /// Issuer URL.
    pub issuer: String,
    user: Arc<Mutex<(String, String)>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Idp {
    /// Starts on a free loopback port, logging in `sub-bob` until told otherwise.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind idp");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let user = Arc::new(Mutex::new((
            "sub-bob".to_string(),
            "bob@example.com".to_string(),
        )));
        let state = IdpState {
            issuer: issuer.clone(),
            key: Arc::new(SigningKey::from_bytes(&[77; 32])),
            user: user.clone(),
            codes: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("idp");
        });
        Self {
            issuer,
            user,
            _task: task,
        }
    }

    /// The subject and e-mail the next login gets.
    pub fn log_in_as(&self, sub: &str, email: &str) {
        *self.user.lock().expect("lock") = (sub.to_string(), email.to_string());
    }

    /// `[oidc]` config for the approver.
    pub fn config(&self) -> String {
        format!(
            "\n[oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n",
            self.issuer
        )
    }
}

async fn discovery(State(s): State<IdpState>) -> Json<serde_json::Value> {
    Json(json!({
        "issuer": s.issuer,
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "jwks_uri": format!("{}/jwks", s.issuer),
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }))
}

async fn jwks(State(s): State<IdpState>) -> Json<serde_json::Value> {
    Json(
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "test-key", "alg": "EdDSA", "use": "sig",
        "x": B64URL.encode(s.key.verifying_key().as_bytes())}]}),
    )
}

async fn authorize(
    State(s): State<IdpState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID
        || get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || !get("scope").contains("openid")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let (sub, email) = s.user.lock().expect("lock").clone();
    s.codes.lock().expect("lock").insert(
        code.clone(),
        (get("nonce"), get("code_challenge"), sub, email),
    );
    let target = format!(
        "{}?{}",
        get("redirect_uri"),
        serde_urlencoded::to_string([("code", code.as_str()), ("state", get("state").as_str())])
            .expect("query")
    );
    Redirect::to(&target).into_response()
}

async fn token(
    State(s): State<IdpState>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some((nonce, challenge, sub, email)) = f
        .get("code")
        .and_then(|c| s.codes.lock().expect("lock").remove(c))
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    if B64URL.encode(Sha256::digest(verifier.as_bytes())) != challenge {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "PKCE"})),
        )
            .into_response();
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "test-key"});
    let claims = json!({"iss": s.issuer, "aud": CLIENT_ID, "sub": sub, "email": email, "email_verified": true,
        "nonce": nonce, "iat": now, "exp": now + 300});
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig = s.key.sign(input.as_bytes());
    let id_token = format!("{input}.{}", B64URL.encode(sig.to_bytes()));
    Json(json!({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token})).into_response()
}
