//! Signature and token checks, all constant-time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Headers, Provider, WebhookError};

type HmacSha256 = Hmac<Sha256>;

/// The header carrying the signature or token for `provider`.
pub fn signature_header(provider: Provider) -> &'static str {
    match provider {
        Provider::GitHub => "X-Hub-Signature-256",
        Provider::GitLab => "X-Gitlab-Token",
        Provider::Bitbucket => "X-Hub-Signature",
        Provider::Generic => "X-Sluice-Signature",
    }
}

fn mac(secret: &[u8], body: &[u8]) -> Result<HmacSha256, WebhookError> {
    // HMAC accepts keys of any length; the error branch is unreachable in practice.
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    Ok(mac)
}

/// Computes the signature header value a sender would use: `sha256=<hex HMAC-SHA256>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    match mac(secret, body) {
        Ok(mac) => format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        Err(_) => String::new(),
    }
}

/// Checks `sha256=<hex>` against the HMAC of `body`.
fn check_hmac(value: &str, secret: &[u8], body: &[u8]) -> Result<(), WebhookError> {
    let Some(hex_part) = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256="))
        .and_then(|_| value.get(7..))
    else {
        return Err(WebhookError::BadSignature);
    };
    let Ok(given) = hex::decode(hex_part) else {
        return Err(WebhookError::BadSignature);
    };
    mac(secret, body)?
        .verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature)
}

/// Compares a shared token without leaking where it differs or how long the secret is:
/// both sides are hashed first, then compared in constant time.
fn check_token(value: &str, secret: &[u8]) -> Result<(), WebhookError> {
    let a = Sha256::digest(value.as_bytes());
    let b = Sha256::digest(secret);
    if bool::from(a.as_slice().ct_eq(b.as_slice())) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Checks the signature or token of a delivery (not its size or body).
pub(crate) fn check(
    provider: Provider,
    headers: &Headers,
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    let header = signature_header(provider);
    let Some(value) = headers.get(header) else {
        return Err(WebhookError::MissingSignature { header });
    };
    // An empty secret would make the signature forgeable by anyone: never accept it.
    if secret.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    match provider {
        Provider::GitLab => check_token(value, secret),
        Provider::GitHub | Provider::Bitbucket | Provider::Generic => {
            check_hmac(value, secret, body)
        }
    }
}
