//! Browser sessions: the session cookie header and CSRF tokens bound to the session.
//!
//! The session id is a [`crate::TokenKind::Session`] token kept in an HTTP-only,
//! `SameSite=Lax` cookie (JavaScript cannot read it; cross-site POSTs do not carry it). As a
//! second layer every state-changing form or request carries [`csrf_token`], an HMAC of the
//! session id under a server key, which a cross-site page cannot compute or read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::token::ct_eq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sluice_session";

/// HMAC-SHA256 under a 32-byte key over `parts`, each prefixed with its length so that
/// different splits of the same bytes never collide.
pub(crate) fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // A key shorter than SHA-256's 64-byte block is zero-padded by HMAC itself, so this is
    // exactly HMAC with the 32-byte key, built without a fallible constructor.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = Hmac::<Sha256>::new(&block.into());
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The CSRF token for a session: unpadded base64url of HMAC-SHA256(key, "csrf", session id).
/// Put it in a hidden form field or the `X-CSRF-Token` header.
pub fn csrf_token(key: &[u8; 32], session_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac(key, &[b"sluice-csrf-v1", session_id.as_bytes()]))
}

/// Whether `presented` is the CSRF token for `session_id`, compared in constant time.
pub fn verify_csrf(key: &[u8; 32], session_id: &str, presented: &str) -> bool {
    ct_eq(&csrf_token(key, session_id), presented)
}

/// The `Set-Cookie` value that stores a session id: `HttpOnly`, `SameSite=Lax`, `Path=/`,
/// `Max-Age` in seconds, and `Secure` when served over HTTPS (always, except plain-HTTP
/// local development).
pub fn session_cookie(session_id: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    )
}

/// The `Set-Cookie` value that deletes the session cookie (for logout).
pub fn clear_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn csrf_roundtrip_and_tampering() {
        let t = csrf_token(&KEY, "sess-1");
        assert_eq!(t.len(), 43);
        assert!(verify_csrf(&KEY, "sess-1", &t));
        assert!(!verify_csrf(&KEY, "sess-2", &t), "bound to the session");
        assert!(!verify_csrf(&[8; 32], "sess-1", &t), "bound to the key");
        assert!(!verify_csrf(&KEY, "sess-1", ""));
        let mut tampered = t.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        assert!(!verify_csrf(
            &KEY,
            "sess-1",
            &String::from_utf8_lossy(&tampered)
        ));
    }

    #[test]
    fn hmac_matches_rfc4231_style_key_padding() {
        // The zero-padded block key gives exactly HMAC with the 32-byte key.
        let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(&KEY).unwrap();
        for part in [&b"ab"[..], b"c"] {
            reference.update(&(part.len() as u64).to_be_bytes());
            reference.update(part);
        }
        let reference: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(hmac(&KEY, &[b"ab", b"c"]), reference);
        // Different length split: different MAC.
        assert_ne!(hmac(&KEY, &[b"ab", b"c"]), hmac(&KEY, &[b"a", b"bc"]));
    }

    #[test]
    fn cookies() {
        let c = session_cookie("slc_s_x", 3600, true);
        assert_eq!(
            c,
            "sluice_session=slc_s_x; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure"
        );
        assert!(clear_session_cookie(false).contains("Max-Age=0"));
        assert!(!clear_session_cookie(false).contains("Secure"));
    }
}
