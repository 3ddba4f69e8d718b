//! [`DecisionVerifier`]: the agent's one call that accepts a decision only if it is
//! signed by the pinned approver key, bound to this request, host, session and
//! statement, not expired, and not used before.

use std::collections::HashMap;
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::decision::{DecisionError, KeyError, Outcome, SignedDecision, parse_verifying_key};
use crate::timefmt;

/// What a decision must be bound to: the held statement's identity on this host.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Request id the agent filed.
    pub request_id: Uuid,
    /// This host's name, as sent in the request.
    pub host: &'a str,
    /// Session holding the statement.
    pub session_id: &'a str,
    /// Hex SHA-256 of the held statement's exact bytes.
    pub statement_sha256: &'a str,
}

/// A decision that passed every check; use it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDecision {
    /// Approved, denied or expired.
    pub outcome: Outcome,
    /// Principals who decided.
    pub approvers: Vec<String>,
    /// The approver's comment (a denial's reason for the client's error message).
    pub reason: String,
}

/// Verifies decisions against a pinned key and remembers each used nonce and request id
/// until the decision's expiry, so a decision is accepted at most once.
#[derive(Debug)]
pub struct DecisionVerifier {
    key: VerifyingKey,
    /// Used request ids → (nonce, expiry); pruned once expired (an expired decision
    /// is refused by the expiry check anyway).
    used: Mutex<HashMap<Uuid, (String, OffsetDateTime)>>,
}

impl DecisionVerifier {
    /// A verifier pinned to `key`.
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// A verifier pinned to a base64 public key (as printed by `dbward-approver pubkey`).
    pub fn from_base64(public_key: &str) -> Result<Self, KeyError> {
        Ok(Self::new(parse_verifying_key(public_key)?))
    }

    /// The pinned key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks signature, binding, expiry (against `now`) and single use, in that order,
    /// and marks the decision used only when everything passed.
    pub fn verify(
        &self,
        decision: &SignedDecision,
        binding: &Binding<'_>,
        now: OffsetDateTime,
    ) -> Result<VerifiedDecision, DecisionError> {
        decision.verify(&self.key)?;
        check_binding(decision, binding)?;
        let request_id = decision.request_id;
        if now > decision.expires_at {
            return Err(DecisionError::Expired {
                request_id,
                expires_at: timefmt::format(decision.expires_at),
                now: timefmt::format(now),
            });
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, (_, expiry)| *expiry >= now);
        if let Some((nonce, _)) = used.get(&request_id) {
            return Err(DecisionError::Replayed {
                request_id,
                nonce: nonce.clone(),
            });
        }
        used.insert(request_id, (decision.nonce.clone(), decision.expires_at));
        Ok(VerifiedDecision {
            outcome: decision.outcome,
            approvers: decision.approvers.clone(),
            reason: decision.reason.clone(),
        })
    }
}

fn check_binding(d: &SignedDecision, b: &Binding<'_>) -> Result<(), DecisionError> {
    let request_id = d.request_id;
    if request_id != b.request_id {
        return Err(DecisionError::WrongRequest {
            expected: b.request_id,
            got: request_id,
        });
    }
    if d.host != b.host {
        return Err(DecisionError::WrongHost {
            request_id,
            expected: b.host.to_string(),
            got: d.host.clone(),
        });
    }
    if d.session_id != b.session_id {
        return Err(DecisionError::WrongSession {
            request_id,
            expected: b.session_id.to_string(),
            got: d.session_id.clone(),
        });
    }
    if !d.statement_sha256.eq_ignore_ascii_case(b.statement_sha256) {
        return Err(DecisionError::WrongStatement {
            request_id,
            expected: b.statement_sha256.to_string(),
            got: d.statement_sha256.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use time::Duration;

    const STATEMENT: &str = "DELETE FROM orders";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42; 32])
    }

    fn now() -> OffsetDateTime {
        timefmt::parse("2026-03-01T12:00:00Z").expect("time")
    }

    fn decision(outcome: Outcome) -> SignedDecision {
        let mut d = SignedDecision::new(
            Uuid::from_u128(1),
            "db1",
            "sess-9",
            crate::statement_sha256(STATEMENT),
            outcome,
            vec!["alice".into()],
            "fine",
            now(),
            now() + Duration::minutes(5),
        );
        d.sign(&key());
        d
    }

    fn binding(hash: &str) -> Binding<'_> {
        Binding {
            request_id: Uuid::from_u128(1),
            host: "db1",
            session_id: "sess-9",
            statement_sha256: hash,
        }
    }

    #[test]
    fn genuine_decision_is_accepted_once_then_refused_as_replayed() {
        let v = DecisionVerifier::new(key().verifying_key());
        let hash = crate::statement_sha256(STATEMENT);
        let d = decision(Outcome::Approved);
        let ok = v.verify(&d, &binding(&hash), now()).expect("first use");
        assert_eq!(ok.outcome, Outcome::Approved);
        assert_eq!(ok.approvers, vec!["alice".to_string()]);
        assert!(matches!(
            v.verify(&d, &binding(&hash), now()),
            Err(DecisionError::Replayed { .. })
        ));
    }

    #[test]
    fn second_decision_for_a_used_request_id_is_replayed_even_with_new_nonce() {
        let v = DecisionVerifier::new(key().verifying_key());
        let hash = crate::statement_sha256(STATEMENT);
        v.verify(&decision(Outcome::Approved), &binding(&hash), now())
            .expect("first");
        let other = decision(Outcome::Approved);
        assert!(matches!(
            v.verify(&other, &binding(&hash), now()),
            Err(DecisionError::Replayed { .. })
        ));
    }

    #[test]
    fn forged_mismatched_and_expired_decisions_are_rejected_with_precise_errors() {
        let hash = crate::statement_sha256(STATEMENT);
        let other_hash = crate::statement_sha256("DELETE FROM users");
        let mut forged = decision(Outcome::Approved);
        forged.sign(&SigningKey::from_bytes(&[1; 32]));
        let mut tampered = decision(Outcome::Denied);
        tampered.outcome = Outcome::Approved;
        let cases: Vec<(&str, SignedDecision, Binding<'_>, OffsetDateTime, &str)> = vec![
            ("forged", forged, binding(&hash), now(), "ForgedSignature"),
            (
                "tampered outcome",
                tampered,
                binding(&hash),
                now(),
                "ForgedSignature",
            ),
            (
                "other request",
                decision(Outcome::Approved),
                Binding {
                    request_id: Uuid::from_u128(2),
                    ..binding(&hash)
                },
                now(),
                "WrongRequest",
            ),
            (
                "other host",
                decision(Outcome::Approved),
                Binding {
                    host: "db2",
                    ..binding(&hash)
                },
                now(),
                "WrongHost",
            ),
            (
                "other session",
                decision(Outcome::Approved),
                Binding {
                    session_id: "sess-10",
                    ..binding(&hash)
                },
                now(),
                "WrongSession",
            ),
            (
                "other statement",
                decision(Outcome::Approved),
                binding(&other_hash),
                now(),
                "WrongStatement",
            ),
            (
                "expired",
                decision(Outcome::Approved),
                binding(&hash),
                now() + Duration::minutes(5) + Duration::seconds(1),
                "Expired",
            ),
        ];
        for (name, d, b, at, want) in cases {
            let v = DecisionVerifier::new(key().verifying_key());
            let err = v.verify(&d, &b, at).expect_err(name);
            assert!(format!("{err:?}").starts_with(want), "{name}: got {err:?}");
            let genuine = decision(Outcome::Approved);
            v.verify(&genuine, &binding(&hash), now())
                .unwrap_or_else(|e| {
                    panic!("{name}: a rejected decision must not mark the request used: {e}")
                });
        }
    }

    #[test]
    fn decision_is_valid_up_to_and_including_its_expiry_second() {
        let v = DecisionVerifier::new(key().verifying_key());
        let hash = crate::statement_sha256(STATEMENT);
        let d = decision(Outcome::Approved);
        v.verify(&d, &binding(&hash), d.expires_at)
            .expect("valid at expiry");
    }

    #[test]
    fn verifier_accepts_the_base64_public_key() {
        let pubkey = crate::verifying_key_to_base64(&key().verifying_key());
        let v = DecisionVerifier::from_base64(&pubkey).expect("key");
        assert_eq!(v.key(), &key().verifying_key());
        assert!(DecisionVerifier::from_base64("nope").is_err());
    }
}
