//! [`SignedDecision`]: the approver's ed25519-signed answer to one request, its canonical
//! bytes, and key encoding (base64 of the raw 32 bytes).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::timefmt::{self, serde_rfc3339};

/// First line of the canonical bytes; bumps with any change of the format.
pub const CANONICAL_TAG: &str = "dbward-decision-v1";

/// Outcome carried by a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Quorum of humans approved (or break-glass).
    Approved,
    /// An approver denied.
    Denied,
    /// Nobody decided before expiry.
    Expired,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

/// The approver's signed decision for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDecision {
    /// Request it answers.
    pub request_id: Uuid,
    /// Host it is valid on.
    pub host: String,
    /// Session it is valid in.
    pub session_id: String,
    /// Hex SHA-256 of the statement it is valid for.
    pub statement_sha256: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Principals whose votes made the outcome.
    pub approvers: Vec<String>,
    /// The approver's comment (a denial's reason).
    #[serde(default)]
    pub reason: String,
    /// When it was decided.
    #[serde(with = "serde_rfc3339")]
    pub decided_at: OffsetDateTime,
    /// Until when it may be used.
    #[serde(with = "serde_rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Random hex; makes each decision unique.
    pub nonce: String,
    /// Base64 ed25519 signature over [`SignedDecision::canonical_bytes`].
    #[serde(default)]
    pub signature: String,
}

/// Why a decision was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The signature field is not base64 of 64 bytes.
    #[error(
        "decision {request_id}: signature is not base64 of 64 bytes; the decision was altered or truncated"
    )]
    MalformedSignature {
        /// Request id claimed by the decision.
        request_id: Uuid,
    },
    /// The signature does not verify under the pinned key.
    #[error(
        "decision {request_id}: signature does not verify under the pinned approver key (forged, altered, or signed by another approver); check `approval.public_key`"
    )]
    ForgedSignature {
        /// Request id claimed by the decision.
        request_id: Uuid,
    },
    /// Decision for another request.
    #[error("decision is for request {got}, expected {expected}")]
    WrongRequest {
        /// Request waited for.
        expected: Uuid,
        /// Request in the decision.
        got: Uuid,
    },
    /// Decision for another host.
    #[error("decision {request_id} is for host {got:?}, this host is {expected:?}")]
    WrongHost {
        /// Request id.
        request_id: Uuid,
        /// This host.
        expected: String,
        /// Host in the decision.
        got: String,
    },
    /// Decision for another session.
    #[error("decision {request_id} is for session {got:?}, expected session {expected:?}")]
    WrongSession {
        /// Request id.
        request_id: Uuid,
        /// Session holding the statement.
        expected: String,
        /// Session in the decision.
        got: String,
    },
    /// Decision for another statement.
    #[error(
        "decision {request_id} is for statement sha256 {got}, the held statement is {expected}"
    )]
    WrongStatement {
        /// Request id.
        request_id: Uuid,
        /// Hash of the held statement.
        expected: String,
        /// Hash in the decision.
        got: String,
    },
    /// Past its `expires_at`.
    #[error("decision {request_id} expired at {expires_at} (now {now}); file a new request")]
    Expired {
        /// Request id.
        request_id: Uuid,
        /// Its expiry.
        expires_at: String,
        /// Time of the check.
        now: String,
    },
    /// Already used once.
    #[error("decision {request_id} (nonce {nonce}) was already used; decisions are single-use")]
    Replayed {
        /// Request id.
        request_id: Uuid,
        /// Its nonce.
        nonce: String,
    },
}

impl SignedDecision {
    /// Builds an unsigned decision with a fresh random nonce; times are normalised to
    /// whole UTC seconds so they format identically everywhere.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request_id: Uuid,
        host: impl Into<String>,
        session_id: impl Into<String>,
        statement_sha256: impl Into<String>,
        outcome: Outcome,
        approvers: Vec<String>,
        reason: impl Into<String>,
        decided_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Self {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        Self {
            request_id,
            host: host.into(),
            session_id: session_id.into(),
            statement_sha256: statement_sha256.into(),
            outcome,
            approvers,
            reason: reason.into(),
            decided_at: timefmt::normalize(decided_at),
            expires_at: timefmt::normalize(expires_at),
            nonce: hex::encode(nonce),
            signature: String::new(),
        }
    }

    /// The bytes that are signed: the lines `dbward-decision-v1`, request_id, host,
    /// session_id, statement_sha256, outcome, approvers joined by ",", decided_at,
    /// expires_at, nonce, joined by "\n". The reason is deliberately not signed: it is
    /// display text only and never changes what the agent does.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        [
            CANONICAL_TAG.to_string(),
            self.request_id.to_string(),
            self.host.clone(),
            self.session_id.clone(),
            self.statement_sha256.clone(),
            self.outcome.as_str().to_string(),
            self.approvers.join(","),
            timefmt::format(self.decided_at),
            timefmt::format(self.expires_at),
            self.nonce.clone(),
        ]
        .join("\n")
        .into_bytes()
    }

    /// Signs in place with the approver's key.
    pub fn sign(&mut self, key: &SigningKey) {
        self.signature = B64.encode(key.sign(&self.canonical_bytes()).to_bytes());
    }

    /// Checks the signature only (no binding, expiry or single use: see
    /// [`crate::DecisionVerifier`]).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), DecisionError> {
        let request_id = self.request_id;
        let bytes = B64
            .decode(self.signature.as_bytes())
            .map_err(|_| DecisionError::MalformedSignature { request_id })?;
        let sig_bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| DecisionError::MalformedSignature { request_id })?;
        key.verify(&self.canonical_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| DecisionError::ForgedSignature { request_id })
    }
}

/// Error decoding a key from base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad ed25519 {what}: {detail}; expected base64 of the raw 32 key bytes")]
pub struct KeyError {
    what: &'static str,
    detail: String,
}

fn key_bytes(what: &'static str, text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = B64.decode(text.trim().as_bytes()).map_err(|e| KeyError {
        what,
        detail: e.to_string(),
    })?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError {
        what,
        detail: format!("{len} bytes"),
    })
}

/// Decodes a public key (base64 of 32 bytes), as pinned in the agent's config.
pub fn parse_verifying_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = key_bytes("public key", text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError {
        what: "public key",
        detail: e.to_string(),
    })
}

/// Decodes a private key (base64 of the 32-byte seed).
pub fn parse_signing_key(text: &str) -> Result<SigningKey, KeyError> {
    Ok(SigningKey::from_bytes(&key_bytes("private key", text)?))
}

/// Encodes a public key as base64 of its 32 bytes.
pub fn verifying_key_to_base64(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

/// Encodes a private key as base64 of its 32-byte seed.
pub fn signing_key_to_base64(key: &SigningKey) -> String {
    B64.encode(key.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SignedDecision {
        SignedDecision::new(
            Uuid::from_u128(7),
            "db1",
            "s-1",
            crate::statement_sha256("DROP TABLE t"),
            Outcome::Approved,
            vec!["alice".into(), "bob".into()],
            "ok",
            timefmt::parse("2026-01-02T03:04:05.5Z").expect("time"),
            timefmt::parse("2026-01-02T03:09:05Z").expect("time"),
        )
    }

    #[test]
    fn canonical_bytes_follow_the_documented_line_format() {
        let mut d = sample();
        d.nonce = "00ff".into();
        let want = format!(
            "dbward-decision-v1\n00000000-0000-0000-0000-000000000007\ndb1\ns-1\n{}\napproved\nalice,bob\n2026-01-02T03:04:05Z\n2026-01-02T03:09:05Z\n00ff",
            crate::statement_sha256("DROP TABLE t")
        );
        assert_eq!(String::from_utf8(d.canonical_bytes()).expect("utf8"), want);
    }

    #[test]
    fn signed_decision_survives_a_json_round_trip() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut d = sample();
        d.sign(&key);
        let json = serde_json::to_string(&d).expect("json");
        let back: SignedDecision = serde_json::from_str(&json).expect("parse");
        back.verify(&key.verifying_key())
            .expect("verifies after round trip");
    }

    #[test]
    fn any_change_to_a_signed_field_breaks_the_signature() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut signed = sample();
        signed.sign(&key);
        type Edit = fn(&mut SignedDecision);
        let edits: Vec<(&str, Edit)> = vec![
            ("request_id", |d| d.request_id = Uuid::from_u128(8)),
            ("host", |d| d.host = "db2".into()),
            ("session", |d| d.session_id = "s-2".into()),
            ("statement", |d| d.statement_sha256 = "00".into()),
            ("outcome", |d| d.outcome = Outcome::Denied),
            ("approvers", |d| d.approvers.push("mallory".into())),
            ("decided_at", |d| d.decided_at += time::Duration::seconds(1)),
            ("expires_at", |d| d.expires_at += time::Duration::hours(1)),
            ("nonce", |d| d.nonce = "beef".into()),
        ];
        for (name, edit) in edits {
            let mut d = signed.clone();
            edit(&mut d);
            assert_eq!(
                d.verify(&key.verifying_key()),
                Err(DecisionError::ForgedSignature {
                    request_id: d.request_id
                }),
                "editing {name} must break the signature"
            );
        }
    }

    #[test]
    fn signature_by_another_key_or_garbage_is_rejected() {
        let pinned = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let mut d = sample();
        d.sign(&SigningKey::from_bytes(&[10; 32]));
        assert!(matches!(
            d.verify(&pinned),
            Err(DecisionError::ForgedSignature { .. })
        ));
        d.signature = "not base64!".into();
        assert!(matches!(
            d.verify(&pinned),
            Err(DecisionError::MalformedSignature { .. })
        ));
        d.signature = String::new();
        assert!(matches!(
            d.verify(&pinned),
            Err(DecisionError::MalformedSignature { .. })
        ));
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let back = parse_signing_key(&signing_key_to_base64(&key)).expect("private");
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public =
            parse_verifying_key(&verifying_key_to_base64(&key.verifying_key())).expect("public");
        assert_eq!(public, key.verifying_key());
        assert!(parse_verifying_key("AAAA").is_err());
        assert!(parse_verifying_key("%%%").is_err());
    }
}
