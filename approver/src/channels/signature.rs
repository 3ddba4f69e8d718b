//! Signatures of channel callbacks and outbound webhooks (pure, no I/O):
//! Slack's v0 request signature, the Teams outgoing-webhook HMAC, and dbward's own
//! `X-Dbward-Signature`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Largest accepted difference between a callback's timestamp and now (Slack's own
/// recommendation: five minutes).
pub const WINDOW_SECS: i64 = 300;

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// A required header is absent.
    #[error("missing {0} header; the callback is not signed")]
    MissingHeader(&'static str),
    /// The timestamp header is not a number of seconds.
    #[error("bad timestamp {0:?}")]
    BadTimestamp(String),
    /// Outside the replay window.
    #[error(
        "timestamp is {age_secs} s away from now (window ±{WINDOW_SECS} s); replayed or clock skew"
    )]
    OutsideWindow {
        /// Age in seconds (negative: future).
        age_secs: i64,
    },
    /// The signature does not match.
    #[error("signature does not match; check the signing secret")]
    BadSignature,
    /// Same signed callback seen before inside the window.
    #[error("this exact callback was already processed (replay)")]
    Replayed,
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Slack v0 signature: `v0=` + hex HMAC-SHA256(secret, `v0:{ts}:{body}`).
pub fn slack_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(format!("v0:{timestamp}:").as_bytes());
    m.update(body);
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// Checks a Slack request: timestamp within the window of `now` (Unix seconds) and a
/// matching v0 signature (compared in constant time).
pub fn verify_slack(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), CallbackError> {
    let ts = timestamp.ok_or(CallbackError::MissingHeader("X-Slack-Request-Timestamp"))?;
    let sig = signature.ok_or(CallbackError::MissingHeader("X-Slack-Signature"))?;
    let secs: i64 = ts
        .trim()
        .parse()
        .map_err(|_| CallbackError::BadTimestamp(ts.to_string()))?;
    check_window(secs, now)?;
    let hex_sig = sig.strip_prefix("v0=").ok_or(CallbackError::BadSignature)?;
    let raw = hex::decode(hex_sig).map_err(|_| CallbackError::BadSignature)?;
    let mut m = mac(secret.as_bytes());
    m.update(format!("v0:{ts}:").as_bytes());
    m.update(body);
    m.verify_slice(&raw)
        .map_err(|_| CallbackError::BadSignature)
}

/// Checks that `secs` is within [`WINDOW_SECS`] of `now`.
pub fn check_window(secs: i64, now: i64) -> Result<(), CallbackError> {
    let age_secs = now - secs;
    if age_secs.abs() > WINDOW_SECS {
        return Err(CallbackError::OutsideWindow { age_secs });
    }
    Ok(())
}

/// Teams outgoing-webhook signature: `HMAC ` + base64 HMAC-SHA256 keyed with the
/// base64-decoded security token, over the body.
pub fn teams_signature(secret_b64: &str, body: &[u8]) -> Option<String> {
    let key = B64.decode(secret_b64.trim()).ok()?;
    let mut m = mac(&key);
    m.update(body);
    Some(format!("HMAC {}", B64.encode(m.finalize().into_bytes())))
}

/// Checks a Teams callback's `Authorization: HMAC <base64>` header.
pub fn verify_teams(
    secret_b64: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<(), CallbackError> {
    let auth = authorization.ok_or(CallbackError::MissingHeader("Authorization"))?;
    let given = auth
        .strip_prefix("HMAC ")
        .ok_or(CallbackError::BadSignature)?;
    let raw = B64
        .decode(given.trim())
        .map_err(|_| CallbackError::BadSignature)?;
    let key = B64
        .decode(secret_b64.trim())
        .map_err(|_| CallbackError::BadSignature)?;
    let mut m = mac(&key);
    m.update(body);
    m.verify_slice(&raw)
        .map_err(|_| CallbackError::BadSignature)
}

/// dbward webhook signature: `sha256=` + hex HMAC-SHA256(secret, body).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut m = mac(secret.as_bytes());
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_signature_matches_slacks_documented_example() {
        // From Slack's "Verifying requests from Slack" documentation.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let want = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(slack_signature(secret, "1531420618", body), want);
        assert_eq!(
            verify_slack(
                secret,
                Some("1531420618"),
                Some(want),
                body,
                1531420618 + 10
            ),
            Ok(())
        );
    }

    #[test]
    fn slack_callbacks_are_refused_for_each_kind_of_defect() {
        let secret = "s3cret";
        let body = b"payload=%7B%7D";
        let now = 1_700_000_000;
        let ts = now.to_string();
        let good = slack_signature(secret, &ts, body);
        let old = (now - 301).to_string();
        let old_sig = slack_signature(secret, &old, body);
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a [u8],
            Result<(), CallbackError>,
        );
        let cases: Vec<Case<'_>> = vec![
            ("genuine", Some(&ts), Some(&good), body, Ok(())),
            (
                "no timestamp",
                None,
                Some(&good),
                body,
                Err(CallbackError::MissingHeader("X-Slack-Request-Timestamp")),
            ),
            (
                "no signature",
                Some(&ts),
                None,
                body,
                Err(CallbackError::MissingHeader("X-Slack-Signature")),
            ),
            (
                "altered body",
                Some(&ts),
                Some(&good),
                b"payload=%7B%7E",
                Err(CallbackError::BadSignature),
            ),
            (
                "wrong prefix",
                Some(&ts),
                Some("v1=00"),
                body,
                Err(CallbackError::BadSignature),
            ),
            (
                "old replay",
                Some(&old),
                Some(&old_sig),
                body,
                Err(CallbackError::OutsideWindow { age_secs: 301 }),
            ),
            (
                "junk timestamp",
                Some("soon"),
                Some(&good),
                body,
                Err(CallbackError::BadTimestamp("soon".into())),
            ),
        ];
        for (name, ts, sig, body, want) in cases {
            assert_eq!(verify_slack(secret, ts, sig, body, now), want, "{name}");
        }
        assert_eq!(
            verify_slack("other", Some(&ts), Some(&good), body, now),
            Err(CallbackError::BadSignature)
        );
    }

    #[test]
    fn teams_hmac_verifies_only_with_the_shared_secret() {
        let secret = B64.encode(b"teams-shared-secret-bytes");
        let body = br#"{"type":"message"}"#;
        let header = teams_signature(&secret, body).expect("sign");
        assert_eq!(verify_teams(&secret, Some(&header), body), Ok(()));
        assert_eq!(
            verify_teams(&secret, Some(&header), b"{}"),
            Err(CallbackError::BadSignature)
        );
        assert_eq!(
            verify_teams(&secret, None, body),
            Err(CallbackError::MissingHeader("Authorization"))
        );
        assert_eq!(
            verify_teams(&secret, Some("Bearer x"), body),
            Err(CallbackError::BadSignature)
        );
        let other = B64.encode(b"other");
        assert_eq!(
            verify_teams(&other, Some(&header), body),
            Err(CallbackError::BadSignature)
        );
    }

    #[test]
    fn webhook_signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            webhook_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
