//! Signed checkpoints: what a checkpoint signs and how it is made and verified. Pure logic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::event::{Checkpoint, Extra};
use super::key::key_id;
use super::record::Tip;

/// The bytes a checkpoint signs: UTF-8 of `dbward-audit-checkpoint-v1`, host, signed seq and
/// signed hash joined by `\n`.
pub fn signing_bytes(host: &str, signed_seq: u64, signed_hash: &str) -> Vec<u8> {
    format!("dbward-audit-checkpoint-v1\n{host}\n{signed_seq}\n{signed_hash}").into_bytes()
}

/// Makes a checkpoint over `tip` (the record it will follow).
pub fn make(key: &SigningKey, host: &str, tip: &Tip, reason: &str, extra: Extra) -> Checkpoint {
    let signature = key.sign(&signing_bytes(host, tip.seq, &tip.hash));
    Checkpoint {
        reason: reason.to_owned(),
        signed_seq: tip.seq,
        signed_hash: tip.hash.clone(),
        key_id: key_id(&key.verifying_key()),
        signature: BASE64.encode(signature.to_bytes()),
        extra,
    }
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint record lacks fields or has wrong types.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// It signs something other than the record just before it.
    #[error(
        "checkpoint signs seq {signed_seq} / {signed_hash} but follows seq {tip_seq} / {tip_hash}"
    )]
    WrongTarget {
        /// What it claims to sign.
        signed_seq: u64,
        /// Hash it claims to sign.
        signed_hash: String,
        /// The preceding record's seq.
        tip_seq: u64,
        /// The preceding record's hash.
        tip_hash: String,
    },
    /// Signed by another key.
    #[error("checkpoint signed by key {found}, verifying key is {expected}")]
    UnknownKey {
        /// The verifying key's id.
        expected: String,
        /// The checkpoint's key id.
        found: String,
    },
    /// The signature does not verify.
    #[error("bad checkpoint signature")]
    BadSignature,
}

/// Verifies `checkpoint`, which follows `tip`, against `key`.
pub fn verify(
    checkpoint: &Checkpoint,
    host: &str,
    tip: &Tip,
    key: &VerifyingKey,
) -> Result<(), CheckpointError> {
    if checkpoint.signed_seq != tip.seq || checkpoint.signed_hash != tip.hash {
        return Err(CheckpointError::WrongTarget {
            signed_seq: checkpoint.signed_seq,
            signed_hash: checkpoint.signed_hash.clone(),
            tip_seq: tip.seq,
            tip_hash: tip.hash.clone(),
        });
    }
    let expected = key_id(key);
    if checkpoint.key_id != expected {
        return Err(CheckpointError::UnknownKey {
            expected,
            found: checkpoint.key_id.clone(),
        });
    }
    let raw = BASE64
        .decode(&checkpoint.signature)
        .map_err(|_| CheckpointError::BadSignature)?;
    let signature = Signature::from_slice(&raw).map_err(|_| CheckpointError::BadSignature)?;
    key.verify(
        &signing_bytes(host, checkpoint.signed_seq, &checkpoint.signed_hash),
        &signature,
    )
    .map_err(|_| CheckpointError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    type Case<'a> = (
        &'a str,
        Checkpoint,
        &'a str,
        &'a Tip,
        VerifyingKey,
        fn(&CheckpointError) -> bool,
    );

    #[test]
    fn checkpoint_verifies_only_for_its_host_target_and_key() {
        let tip = Tip {
            seq: 41,
            hash: "ab".repeat(32),
        };
        let good = make(&key(1), "db1", &tip, "periodic", Extra::new());
        let vk = key(1).verifying_key();
        assert_eq!(verify(&good, "db1", &tip, &vk), Ok(()));

        let other_tip = Tip {
            seq: 41,
            hash: "cd".repeat(32),
        };
        let mut flipped = good.clone();
        flipped.signature = {
            let mut raw = BASE64.decode(&good.signature).expect("b64");
            raw[0] ^= 1;
            BASE64.encode(raw)
        };
        let mut retargeted = good.clone();
        retargeted.signed_hash = other_tip.hash.clone();
        let cases: Vec<Case<'_>> = vec![
            ("other host", good.clone(), "db2", &tip, vk, |e| {
                *e == CheckpointError::BadSignature
            }),
            ("other tip", good.clone(), "db1", &other_tip, vk, |e| {
                matches!(e, CheckpointError::WrongTarget { .. })
            }),
            ("flipped signature", flipped, "db1", &tip, vk, |e| {
                *e == CheckpointError::BadSignature
            }),
            ("retargeted", retargeted, "db1", &other_tip, vk, |e| {
                *e == CheckpointError::BadSignature
            }),
            (
                "other key",
                good,
                "db1",
                &tip,
                key(2).verifying_key(),
                |e| matches!(e, CheckpointError::UnknownKey { .. }),
            ),
        ];
        for (name, cp, host, t, k, is_expected) in cases {
            let err = verify(&cp, host, t, &k).expect_err(name);
            assert!(is_expected(&err), "{name}: {err}");
        }
    }
}
