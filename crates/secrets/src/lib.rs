//! Secret store primitives: per-project and per-environment secrets with envelope
//! encryption (a random data key per secret version, XChaCha20-Poly1305, wrapped by a
//! key-encryption key that lives outside the database).
//!
//! Pure library: no database, no async. The store keeps [`SecretRef`] + [`Sealed`] rows;
//! the server keeps one [`Vault`], which is sealed (refusing every secret operation) until
//! it is given the [`Kek`] from the key file or the environment. `rotate-key` is
//! [`rewrap`] over every row. Names follow [`validate_name`]; [`encoded_forms`] lists what
//! a log masker must hide for a value.

mod envelope;
mod error;
mod kek;
mod vault;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

pub use envelope::{Sealed, SecretRef, open, rewrap, seal};
pub use error::{Result, SecretsError};
pub use kek::{KEK_PREFIX, Kek};
pub use vault::Vault;
pub use zeroize::Zeroizing;

/// Largest secret value, in bytes (64 KiB).
pub const MAX_VALUE: usize = 64 * 1024;

/// Longest secret name, in characters.
pub const MAX_NAME: usize = 128;

/// Checks a secret name: `[A-Za-z_][A-Za-z0-9_]{0,127}`. Names become environment
/// variable names and file names, so nothing else (no `/`, `.`, `-`, spaces, NUL or
/// non-ASCII) is allowed.
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it starts with a digit")
    } else if name.contains(['/', '\\', '.']) {
        Some("it contains a path character (`/`, `\\` or `.`)")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Some("it contains a character other than a letter, digit or underscore")
    } else if name.len() > MAX_NAME {
        Some("it is longer than 128 characters")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => {
            let shown: String = name.chars().take(64).collect();
            let ellipsis = if shown.len() < name.len() { "…" } else { "" };
            Err(SecretsError::InvalidName {
                name: format!("{shown:?}{ellipsis}"),
                reason,
            })
        }
    }
}

/// Checks a secret value's size (at most [`MAX_VALUE`] bytes; any bytes are allowed).
pub fn validate_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE {
        return Err(SecretsError::ValueTooLarge {
            size: value.len(),
            max: MAX_VALUE,
        });
    }
    Ok(())
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded
/// (as JavaScript's `encodeURIComponent` minus `!'()*`).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The forms of `value` a log masker must hide, and a leak test must search for: the
/// value itself (if UTF-8), standard base64 (padded and unpadded), URL-safe base64
/// (padded and unpadded), base64 of the padded base64 (padded and unpadded), lowercase
/// and uppercase hex, and percent-encoding (space as `%20` and as `+`). Deduplicated, in
/// that order; forms shorter than 4 characters are left out (too short to mask without
/// hiding everything).
pub fn encoded_forms(value: &[u8]) -> Vec<String> {
    let b64 = STANDARD.encode(value);
    let double = STANDARD.encode(&b64);
    let percent = percent_encoding::percent_encode(value, URL_COMPONENT).to_string();
    let form_plus = percent.replace("%20", "+");
    let candidates = [
        std::str::from_utf8(value).ok().map(str::to_owned),
        Some(b64),
        Some(STANDARD_NO_PAD.encode(value)),
        Some(URL_SAFE.encode(value)),
        Some(URL_SAFE_NO_PAD.encode(value)),
        Some(double.clone()),
        Some(double.trim_end_matches('=').to_owned()),
        Some(hex::encode(value)),
        Some(hex::encode_upper(value)),
        Some(percent),
        Some(form_plus),
    ];
    let mut forms: Vec<String> = Vec::new();
    for form in candidates.into_iter().flatten() {
        if form.len() >= 4 && !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}
