//! Signed, expiring, purpose-bound values for action links (approve from an email, reset a
//! password, confirm an unsubscribe) that must work without a session.
//!
//! Format: `<payload base64url>.<expires_ms>.<mac base64url>`, the MAC being HMAC-SHA256 over
//! the purpose, the expiry and the payload. The payload is readable by whoever has the link:
//! put ids in it, never secrets. The purpose is not in the token, so a token minted for one
//! purpose fails verification for any other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::AuthError;
use crate::csrf::hmac;
use crate::token::ct_eq;

fn mac(key: &[u8; 32], purpose: &str, payload: &str, expires_ms: i64) -> String {
    let parts: [&[u8]; 4] = [
        b"sluice-signed-v1",
        purpose.as_bytes(),
        &expires_ms.to_be_bytes(),
        payload.as_bytes(),
    ];
    URL_SAFE_NO_PAD.encode(hmac(key, &parts))
}

/// Signs `payload` for `purpose`, valid until `expires_ms` (Unix ms, exclusive).
pub fn sign(key: &[u8; 32], purpose: &str, payload: &str, expires_ms: i64) -> String {
    format!(
        "{}.{expires_ms}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        mac(key, purpose, payload, expires_ms)
    )
}

/// Checks a token from [`sign`] and returns its payload. The signature is checked before the
/// expiry, so an expired token is only reported as [`AuthError::Expired`] if it is genuine.
/// Errors: [`AuthError::Malformed`] (not three parts, bad base64 or number, not UTF-8),
/// [`AuthError::BadSignature`] (tampered, other key or other purpose), [`AuthError::Expired`].
pub fn verify(
    key: &[u8; 32],
    purpose: &str,
    token: &str,
    now_ms: i64,
) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(p), Some(e), Some(m), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| AuthError::Malformed)?;
    let payload = String::from_utf8(payload).map_err(|_| AuthError::Malformed)?;
    let expires_ms: i64 = e.parse().map_err(|_| AuthError::Malformed)?;
    if !ct_eq(&mac(key, purpose, &payload, expires_ms), m) {
        return Err(AuthError::BadSignature);
    }
    if now_ms >= expires_ms {
        return Err(AuthError::Expired);
    }
    Ok(payload)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [42; 32];

    #[test]
    fn roundtrip_expiry_and_purpose() {
        let t = sign(&KEY, "approve", "run=17;env=prod", 10_000);
        assert_eq!(
            verify(&KEY, "approve", &t, 9_999).unwrap(),
            "run=17;env=prod"
        );
        assert_eq!(verify(&KEY, "approve", &t, 10_000), Err(AuthError::Expired));
        assert_eq!(verify(&KEY, "reset", &t, 0), Err(AuthError::BadSignature));
        assert_eq!(
            verify(&[1; 32], "approve", &t, 0),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn tampering() {
        let t = sign(&KEY, "approve", "run=17", 10_000);
        let (p, rest) = t.split_once('.').unwrap();
        let (_, m) = rest.split_once('.').unwrap();
        // Longer expiry with the old MAC.
        let later = format!("{p}.99999.{m}");
        assert_eq!(
            verify(&KEY, "approve", &later, 0),
            Err(AuthError::BadSignature)
        );
        // Other payload with the old MAC.
        let other = format!("{}.10000.{m}", URL_SAFE_NO_PAD.encode("run=18"));
        assert_eq!(
            verify(&KEY, "approve", &other, 0),
            Err(AuthError::BadSignature)
        );
        // Expired and tampered reports the signature, not the expiry.
        assert_eq!(
            verify(&KEY, "approve", &later, 100_000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn malformed() {
        for bad in ["", "a.b", "a.1.c.d", "!!.1.abc", "YQ.x.abc", "_w.1.abc"] {
            assert_eq!(
                verify(&KEY, "p", bad, 0),
                Err(AuthError::Malformed),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn any_payload_roundtrips(payload in ".*", purpose in "[a-z]{1,8}", exp in 1i64..i64::MAX) {
            let t = sign(&KEY, &purpose, &payload, exp);
            proptest::prop_assert_eq!(verify(&KEY, &purpose, &t, exp - 1), Ok(payload));
        }
    }
}
