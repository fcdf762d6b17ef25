//! Signing of outgoing webhooks and the matching check for receivers.
//!
//! The signature is `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, where
//! `<timestamp>` is the decimal Unix seconds sent in `X-Sluice-Timestamp`. Binding the
//! timestamp into the MAC lets receivers refuse replays of old deliveries.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the Unix time (seconds) at which the request was signed.
pub const TIMESTAMP_HEADER: &str = "X-Sluice-Timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Sluice-Signature";

/// Why [`verify_webhook`] refused a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The receiver's secret is empty, which would accept forgeries.
    #[error("webhook verification: the configured secret is empty; set a non-empty secret")]
    EmptySecret,
    /// The timestamp header is not a decimal integer.
    #[error("webhook verification: X-Sluice-Timestamp is not unix seconds")]
    BadTimestamp,
    /// The timestamp is further from `now` than the tolerance allows.
    #[error(
        "webhook verification: timestamp is {skew_s}s away from now (tolerance {tolerance_s}s); check clocks or reject the replay"
    )]
    Stale {
        /// Absolute difference between the timestamp and now, in seconds.
        skew_s: u64,
        /// The allowed difference.
        tolerance_s: u64,
    },
    /// The signature header is not `sha256=<hex>`.
    #[error("webhook verification: X-Sluice-Signature is not `sha256=<hex>`")]
    MalformedSignature,
    /// The signature does not match the body, timestamp and secret.
    #[error("webhook verification: signature does not match; check the shared secret")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length, so this never fails in practice.
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `X-Sluice-Signature` value for `body` sent at `timestamp` (decimal Unix seconds).
pub fn sign_webhook(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    match mac(secret, timestamp, body) {
        Some(m) => format!("sha256={}", hex::encode(m.finalize().into_bytes())),
        None => String::new(),
    }
}

/// Checks a delivery as a receiver: `timestamp` and `signature` are the raw values of
/// `X-Sluice-Timestamp` and `X-Sluice-Signature`, `body` the raw request body, `now_s` the
/// receiver's Unix time in seconds and `tolerance_s` the allowed clock difference either
/// way (300 is a good default). The MAC comparison is constant-time.
pub fn verify_webhook(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_s: i64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::EmptySecret);
    }
    let ts = timestamp.trim();
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    let sent: i64 = ts.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let skew_s = (i128::from(now_s) - i128::from(sent)).unsigned_abs();
    if skew_s > u128::from(tolerance_s) {
        return Err(VerifyError::Stale {
            skew_s: u64::try_from(skew_s).unwrap_or(u64::MAX),
            tolerance_s,
        });
    }
    let given = signature
        .trim()
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| signature.trim().get(7..))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(VerifyError::MalformedSignature)?;
    mac(secret, ts, body)
        .ok_or(VerifyError::Mismatch)?
        .verify_slice(&given)
        .map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let sig = sign_webhook(b"s3cret", "1700000000", b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(
            verify_webhook(
                b"s3cret",
                "1700000000",
                b"{\"a\":1}",
                &sig,
                1_700_000_100,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn verify_rejects_tampering_staleness_and_garbage() {
        let sig = sign_webhook(b"k", "1000", b"body");
        assert_eq!(
            verify_webhook(b"k", "1000", b"bodx", &sig, 1000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"other", "1000", b"body", &sig, 1000, 300),
            Err(VerifyError::Mismatch)
        );
        // The timestamp is covered by the MAC: moving it invalidates the signature.
        assert_eq!(
            verify_webhook(b"k", "1001", b"body", &sig, 1000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"k", "1000", b"body", &sig, 1400, 300),
            Err(VerifyError::Stale {
                skew_s: 400,
                tolerance_s: 300
            })
        );
        assert_eq!(
            verify_webhook(b"k", "1000", b"body", &sig, 600, 300),
            Err(VerifyError::Stale {
                skew_s: 400,
                tolerance_s: 300
            })
        );
        assert_eq!(
            verify_webhook(b"k", "-5", b"body", &sig, 0, 300),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify_webhook(b"k", "1000", b"body", "sha1=abc", 1000, 300),
            Err(VerifyError::MalformedSignature)
        );
        assert_eq!(
            verify_webhook(b"", "1000", b"body", &sig, 1000, 300),
            Err(VerifyError::EmptySecret)
        );
        let upper = sig.replacen("sha256=", "SHA256=", 1);
        assert_eq!(
            verify_webhook(b"k", "1000", b"body", &upper, 1000, 300),
            Ok(())
        );
    }
}
