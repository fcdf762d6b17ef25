//! Envelope encryption of one secret version.
//!
//! A fresh random 256-bit data key (DEK) encrypts the value with XChaCha20-Poly1305; the
//! DEK is itself encrypted ("wrapped") with the [`Kek`]. Both encryptions bind the
//! secret's identity as associated data, so a ciphertext or a wrapped key copied onto
//! another secret, scope or version fails authentication:
//!
//! ```text
//! ad = domain || u32be(len id) || id || u32be(len project) || project
//!      || 0x00                                   (no environment: project-wide)
//!       | 0x01 || u32be(len env) || env
//!      || u32be(len name) || name || i64be(version)
//! domain = "sluice/secret-value/v1\0" (value) | "sluice/secret-dek/v1\0" (wrapped DEK)
//! ```
//!
//! Stored blobs are `nonce (24 bytes) || ciphertext || tag (16 bytes)`. Rotating the KEK
//! ([`rewrap`]) replaces only the wrapped DEK; the value ciphertext stays byte-identical.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Kek, Result, SecretsError, validate_name, validate_value};

const VALUE_DOMAIN: &[u8] = b"sluice/secret-value/v1\0";
const DEK_DOMAIN: &[u8] = b"sluice/secret-dek/v1\0";
const NONCE_LEN: usize = 24;

type Secret = Zeroizing<Vec<u8>>;

/// Identity of one secret version; all fields are bound into its ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretRef {
    /// Stable id of the secret (the database row id).
    pub id: String,
    /// Project the secret belongs to.
    pub project: String,
    /// Environment it is scoped to, or `None` for every environment of the project.
    pub environment: Option<String>,
    /// Name; see [`validate_name`].
    pub name: String,
    /// Version number, increased on every change of the value.
    pub version: i64,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = self.environment.as_deref().unwrap_or("*");
        write!(
            f,
            "{}/{}/{}@v{} (id {})",
            self.project, env, self.name, self.version, self.id
        )
    }
}

impl SecretRef {
    fn associated_data(&self, domain: &[u8]) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, s: &str) {
            // Fields are bounded by the database; saturate rather than panic on absurd input.
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut ad = Vec::with_capacity(domain.len() + 64);
        ad.extend_from_slice(domain);
        field(&mut ad, &self.id);
        field(&mut ad, &self.project);
        match &self.environment {
            None => ad.push(0),
            Some(env) => {
                ad.push(1);
                field(&mut ad, env);
            }
        }
        field(&mut ad, &self.name);
        ad.extend_from_slice(&self.version.to_be_bytes());
        ad
    }

    fn tampered(&self) -> SecretsError {
        SecretsError::Tampered {
            secret: self.to_string(),
        }
    }
}

/// The stored form of one secret version. Bytes serialize as standard padded base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// [`Kek::key_id`] of the key that wrapped the DEK.
    pub kek_id: String,
    /// `nonce || XChaCha20-Poly1305(kek, dek, ad(DEK domain))`, 72 bytes.
    #[serde(with = "b64")]
    pub wrapped_dek: Vec<u8>,
    /// `nonce || XChaCha20-Poly1305(dek, value, ad(value domain))`.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

/// Encrypts `plaintext` for `secret` under a fresh data key wrapped by `kek`.
/// Checks the name and the value size first.
pub fn seal(kek: &Kek, secret: &SecretRef, plaintext: &[u8]) -> Result<Sealed> {
    validate_name(&secret.name)?;
    validate_value(plaintext)?;
    let mut dek = Zeroizing::new([0u8; 32]);
    getrandom::fill(dek.as_mut()).map_err(SecretsError::Random)?;
    let ciphertext = encrypt(&dek, plaintext, secret, VALUE_DOMAIN)?;
    let wrapped_dek = encrypt(kek.bytes(), dek.as_ref(), secret, DEK_DOMAIN)?;
    let kek_id = kek.key_id();
    Ok(Sealed {
        kek_id,
        wrapped_dek,
        ciphertext,
    })
}

/// Decrypts a sealed value. [`SecretsError::WrongKey`] if it was sealed under another
/// key, [`SecretsError::Tampered`] if any byte or any field of `secret` differs.
pub fn open(kek: &Kek, secret: &SecretRef, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
    let dek = unwrap_dek(kek, secret, sealed)?;
    decrypt(&dek, &sealed.ciphertext, secret, VALUE_DOMAIN)
}

/// Re-wraps the data key from `old` to `new` (key rotation). The value ciphertext is
/// copied unchanged; only `kek_id` and `wrapped_dek` change.
pub fn rewrap(old: &Kek, new: &Kek, secret: &SecretRef, sealed: &Sealed) -> Result<Sealed> {
    let dek = unwrap_dek(old, secret, sealed)?;
    let wrapped_dek = encrypt(new.bytes(), dek.as_ref(), secret, DEK_DOMAIN)?;
    let (kek_id, ciphertext) = (new.key_id(), sealed.ciphertext.clone());
    Ok(Sealed {
        kek_id,
        wrapped_dek,
        ciphertext,
    })
}

fn unwrap_dek(kek: &Kek, secret: &SecretRef, sealed: &Sealed) -> Result<Zeroizing<[u8; 32]>> {
    let (expected, found) = (sealed.kek_id.clone(), kek.key_id());
    if expected != found {
        return Err(SecretsError::WrongKey { expected, found });
    }
    let plain = decrypt(kek.bytes(), &sealed.wrapped_dek, secret, DEK_DOMAIN)?;
    let mut dek = Zeroizing::new([0u8; 32]);
    if plain.len() != dek.len() {
        return Err(secret.tampered());
    }
    dek.copy_from_slice(&plain);
    Ok(dek)
}

fn encrypt(key: &[u8; 32], msg: &[u8], secret: &SecretRef, domain: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = XNonce::default();
    getrandom::fill(&mut nonce).map_err(SecretsError::Random)?;
    let aad = &secret.associated_data(domain);
    let sealed = XChaCha20Poly1305::new(key.into())
        .encrypt(&nonce, Payload { msg, aad })
        // Only fails for messages far beyond MAX_VALUE.
        .map_err(|_| secret.tampered())?;
    Ok([nonce.as_slice(), &sealed].concat())
}

fn decrypt(key: &[u8; 32], blob: &[u8], secret: &SecretRef, domain: &[u8]) -> Result<Secret> {
    let (nonce, msg) = blob
        .split_at_checked(NONCE_LEN)
        .ok_or_else(|| secret.tampered())?;
    let nonce = <&XNonce>::try_from(nonce).map_err(|_| secret.tampered())?;
    let aad = &secret.associated_data(domain);
    XChaCha20Poly1305::new(key.into())
        .decrypt(nonce, Payload { msg, aad })
        .map(Zeroizing::new)
        .map_err(|_| secret.tampered())
}

/// Serde adapter: `Vec<u8>` as standard padded base64.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
