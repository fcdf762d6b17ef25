//! Tamper-evident audit chain over sluice's event log, and Ed25519-signed checkpoints.
//!
//! Pure logic: no database, no clock, no async. The store hashes each event as it is written
//! ([`entry_hash`] over the previous entry's hash and the event's fields), the server signs a
//! [`Checkpoint`] of the chain head at a fixed interval (also when nothing happened), and
//! [`verify()`] replays an exported log against the checkpoints and names the first bad entry.
//!
//! # Entry hash (version 1)
//!
//! `hash = SHA-256(M)`, where `M` is the concatenation of, in this order:
//!
//! 1. the 21 ASCII bytes `sluice-audit-entry-v1` followed by one `0x00` byte;
//! 2. `prev`: the previous entry's hash, 32 raw bytes ([`Hash::GENESIS`], 32 zero bytes, for
//!    the first entry);
//! 3. `seq`, then `time_ms`: each a signed 64-bit integer, 8 bytes, big-endian
//!    (two's complement);
//! 4. `kind`, `actor`, `subject` as *strings*;
//! 5. `project` as an *optional string*;
//! 6. `payload` as a *string* (the exact JSON text stored, not re-serialised);
//! 7. `source`, then `request_id` as *optional strings*.
//!
//! A *string* is its UTF-8 byte length as an unsigned 64-bit big-endian integer followed by
//! the bytes. An *optional string* is the single byte `0x00` when absent, or `0x01` followed
//! by the string when present (so `None` and `Some("")` differ). Every field is therefore
//! self-delimiting and the encoding is injective. Test vector: `prev` = GENESIS, seq 1,
//! time_ms 2, kind `k`, actor `a`, subject `s`, payload `{}`, all options `None` hash to
//! `71fedf0e630a56c1918bc51cd1b44e302663c4912f2e3aef2d779377d0ef586f`.
//!
//! # Checkpoint signature (version 1)
//!
//! The Ed25519 (RFC 8032, pure, no context) signature covers the concatenation of the 26
//! ASCII bytes `sluice-audit-checkpoint-v1` plus one `0x00` byte, `seq` (i64 big-endian),
//! the 32 raw hash bytes, `time_ms` (i64 big-endian) and `key_id` as a *string* (above).
//! The signature is stored as standard base64 (with padding) of its 64 bytes.
//!
//! A key's id is the first 8 bytes, as 16 lowercase hex digits, of
//! `SHA-256("sluice-audit-key-v1" || 0x00 || public key bytes)`. Key texts are
//! `sluice-audit-ed25519 <base64 of the 32-byte public key>` and, for the secret key file,
//! `sluice-audit-ed25519-secret <base64 of the 32-byte seed>` (one line).
//!
//! Architecture invariant: this crate knows the event log's columns but not the store. The
//! chain covers exactly the fields of [`EntryFields`]; anything else is not tamper-evident.

mod chain;
mod error;
mod key;
mod verify;

pub use chain::{EntryFields, StoredEntry, entry_hash, export_line, parse_line, read_export};
pub use error::AuditError;
pub use key::{Checkpoint, PublicKey, Signer};
pub use verify::{Problem, VerifyOptions, VerifyReport, verify};

use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest in the chain: an entry's hash or the hash a checkpoint signs.
///
/// Displays and parses as 64 lowercase hex digits; serialises as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev` of the first entry and the hash of an empty log: 32 zero bytes.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl FromStr for Hash {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<Hash, AuditError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| AuditError::BadHash(format!("{s:?}: {e} (want 64 hex digits)")))?;
        Ok(Hash(out))
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Appends `s` as a length-prefixed *string* (u64 big-endian length, then UTF-8 bytes).
fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends an *optional string*: `0x00`, or `0x01` then the string.
fn put_opt(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            put_str(buf, s);
        }
    }
}
