//! OpenID Connect login (authorization code flow with PKCE): discovery, JWKS, code
//! exchange and ID token verification (signature by the provider's published key,
//! issuer, audience, expiry, nonce). HMAC-signed tokens are refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, RwLock};

use crate::config::OidcConfig;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Could not talk to the identity provider.
    #[error("identity provider {url}: {detail}")]
    Provider {
        /// URL called.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The ID token is not acceptable.
    #[error("ID token rejected: {0}")]
    Token(String),
}

/// Endpoints from the discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Provider {
    /// Issuer (must equal the configured one).
    pub issuer: String,
    /// Where the browser is sent to log in.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// Signing keys.
    pub jwks_uri: String,
}

/// Claims dbward reads from the ID token.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    /// Subject.
    pub sub: String,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider verified the e-mail.
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// Nonce from the authorization request.
    #[serde(default)]
    pub nonce: Option<String>,
}

impl IdClaims {
    /// The e-mail, only when the provider says it is verified.
    pub fn verified_email(&self) -> Option<&str> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified == Some(true))
    }
}

/// Per-login secrets kept in a short-lived cookie between login and callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    /// `state` parameter (CSRF of the login).
    pub state: String,
    /// `nonce` bound into the ID token.
    pub nonce: String,
    /// PKCE code verifier.
    pub verifier: String,
}

fn random() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    B64URL.encode(b)
}

impl LoginState {
    /// Fresh random secrets.
    pub fn new() -> Self {
        Self {
            state: random(),
            nonce: random(),
            verifier: random(),
        }
    }

    /// Cookie form: `state.nonce.verifier` (all base64url, no dots inside).
    pub fn to_cookie(&self) -> String {
        format!("{}.{}.{}", self.state, self.nonce, self.verifier)
    }

    /// Parses the cookie form.
    pub fn from_cookie(s: &str) -> Option<Self> {
        let mut it = s.split('.');
        let (state, nonce, verifier) = (it.next()?, it.next()?, it.next()?);
        Some(Self {
            state: state.into(),
            nonce: nonce.into(),
            verifier: verifier.into(),
        })
    }

    /// PKCE S256 challenge of the verifier.
    pub fn challenge(&self) -> String {
        B64URL.encode(Sha256::digest(self.verifier.as_bytes()))
    }
}

impl Default for LoginState {
    fn default() -> Self {
        Self::new()
    }
}

/// Verifies an ID token against a key set: asymmetric signature by the key named in
/// the header (or the only key), issuer, audience, expiry (60 s leeway) and nonce.
pub fn verify_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<IdClaims, OidcError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| OidcError::Token(format!("bad header: {e}")))?;
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(OidcError::Token(format!(
            "{:?} is symmetric; only provider-signed tokens are accepted",
            header.alg
        )));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| OidcError::Token(format!("no key {:?} in the provider's JWKS", header.kid)))?;
    let key =
        DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Token(format!("unusable JWK: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.leeway = 60;
    let data = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| OidcError::Token(e.to_string()))?;
    if data.claims.nonce.as_deref() != Some(nonce) {
        return Err(OidcError::Token("nonce does not match this login".into()));
    }
    Ok(data.claims)
}

/// An OIDC relying party.
#[derive(Debug)]
pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    provider: OnceCell<Provider>,
    jwks: RwLock<Option<JwkSet>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

impl Oidc {
    /// A relying party for `cfg`; discovery happens on first use.
    pub fn new(cfg: OidcConfig) -> Self {
        Self {
            cfg,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            provider: OnceCell::new(),
            jwks: RwLock::new(None),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let err = |detail: String| OidcError::Provider {
            url: url.to_string(),
            detail,
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("status {}", resp.status())));
        }
        resp.json().await.map_err(|e| err(e.to_string()))
    }

    /// The discovered provider (fetched once).
    pub async fn provider(&self) -> Result<&Provider, OidcError> {
        self.provider
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.cfg.issuer.trim_end_matches('/')
                );
                let p: Provider = self.get_json(&url).await?;
                if p.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
                    return Err(OidcError::Provider {
                        url,
                        detail: format!(
                            "issuer {:?} differs from the configured {:?}",
                            p.issuer, self.cfg.issuer
                        ),
                    });
                }
                Ok(p)
            })
            .await
    }

    /// The URL the browser is sent to.
    pub async fn authorize_url(
        &self,
        redirect_uri: &str,
        login: &LoginState,
    ) -> Result<String, OidcError> {
        let p = self.provider().await?;
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.cfg.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email profile"),
            ("state", login.state.as_str()),
            ("nonce", login.nonce.as_str()),
            ("code_challenge", login.challenge().as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| OidcError::Provider {
            url: p.authorization_endpoint.clone(),
            detail: e.to_string(),
        })?;
        let sep = if p.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{query}", p.authorization_endpoint))
    }

    async fn keys(&self, refresh: bool) -> Result<JwkSet, OidcError> {
        if !refresh && let Some(set) = self.jwks.read().await.clone() {
            return Ok(set);
        }
        let p = self.provider().await?;
        let set: JwkSet = self.get_json(&p.jwks_uri).await?;
        *self.jwks.write().await = Some(set.clone());
        Ok(set)
    }

    /// Exchanges the code and verifies the ID token.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        login: &LoginState,
    ) -> Result<IdClaims, OidcError> {
        let p = self.provider().await?;
        let url = p.token_endpoint.clone();
        let err = |detail: String| OidcError::Provider {
            url: url.clone(),
            detail,
        };
        let resp = self
            .http
            .post(&url)
            .basic_auth(&self.cfg.client_id, Some(&self.cfg.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", self.cfg.client_id.as_str()),
                ("code_verifier", login.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(err(format!("token request refused ({status}): {body}")));
        }
        let answer: TokenAnswer = resp.json().await.map_err(|e| err(e.to_string()))?;
        let issuer = p.issuer.clone();
        let first = verify_id_token(
            &answer.id_token,
            &self.keys(false).await?,
            &issuer,
            &self.cfg.client_id,
            &login.nonce,
        );
        match first {
            Err(OidcError::Token(msg)) if msg.starts_with("no key") => verify_id_token(
                &answer.id_token,
                &self.keys(true).await?,
                &issuer,
                &self.cfg.client_id,
                &login.nonce,
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn jwks() -> JwkSet {
        serde_json::from_value(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
            "x": B64URL.encode(key().verifying_key().as_bytes())}]}))
        .expect("jwks")
    }

    fn token(header: serde_json::Value, claims: serde_json::Value, signer: &SigningKey) -> String {
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = signer.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(sig.to_bytes()))
    }

    fn claims(iss: &str, aud: &str, nonce: &str, exp_offset: i64) -> serde_json::Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({"iss": iss, "aud": aud, "sub": "sub-bob", "nonce": nonce, "iat": now, "exp": now + exp_offset,
               "email": "bob@example.com", "email_verified": true})
    }

    #[test]
    fn id_tokens_are_accepted_only_when_every_check_passes() {
        let h = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
        let good = token(
            h.clone(),
            claims("https://idp", "dbward", "n1", 300),
            &key(),
        );
        let claims_ok =
            verify_id_token(&good, &jwks(), "https://idp", "dbward", "n1").expect("valid");
        assert_eq!(
            (claims_ok.sub.as_str(), claims_ok.verified_email()),
            ("sub-bob", Some("bob@example.com"))
        );
        let other_key = SigningKey::from_bytes(&[6; 32]);
        let cases = [
            (
                "forged",
                token(
                    h.clone(),
                    claims("https://idp", "dbward", "n1", 300),
                    &other_key,
                ),
                "InvalidSignature",
            ),
            (
                "other issuer",
                token(
                    h.clone(),
                    claims("https://evil", "dbward", "n1", 300),
                    &key(),
                ),
                "InvalidIssuer",
            ),
            (
                "other audience",
                token(
                    h.clone(),
                    claims("https://idp", "someone", "n1", 300),
                    &key(),
                ),
                "InvalidAudience",
            ),
            (
                "expired",
                token(
                    h.clone(),
                    claims("https://idp", "dbward", "n1", -3600),
                    &key(),
                ),
                "ExpiredSignature",
            ),
            (
                "replayed nonce",
                token(
                    h.clone(),
                    claims("https://idp", "dbward", "n0", 300),
                    &key(),
                ),
                "nonce",
            ),
            (
                "unknown kid",
                token(
                    json!({"alg": "EdDSA", "kid": "k9"}),
                    claims("https://idp", "dbward", "n1", 300),
                    &key(),
                ),
                "no key",
            ),
            (
                "hmac",
                token(
                    json!({"alg": "HS256", "kid": "k1"}),
                    claims("https://idp", "dbward", "n1", 300),
                    &key(),
                ),
                "symmetric",
            ),
        ];
        for (name, tok, want) in cases {
            let err = verify_id_token(&tok, &jwks(), "https://idp", "dbward", "n1")
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn login_state_round_trips_through_its_cookie_and_pkce_is_s256() {
        let s = LoginState::new();
        assert_eq!(LoginState::from_cookie(&s.to_cookie()), Some(s.clone()));
        assert_eq!(LoginState::from_cookie("only.two"), None);
        // RFC 7636 appendix B.
        let rfc = LoginState {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        };
        assert_eq!(
            rfc.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
