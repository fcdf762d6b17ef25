//! Ed25519 checkpoints: the server's signing key (kept in a 0600 file), its public half
//! in a one-line text form, and signing/verifying a [`Checkpoint`] of the chain head.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{AuditError, Hash, put_str};

const CHECKPOINT_DOMAIN: &[u8] = b"sluice-audit-checkpoint-v1\0";
const KEY_ID_DOMAIN: &[u8] = b"sluice-audit-key-v1\0";
const SECRET_PREFIX: &str = "sluice-audit-ed25519-secret ";
const PUBLIC_PREFIX: &str = "sluice-audit-ed25519 ";

/// A signed statement "at `time_ms` the log ended at `seq`, whose entry hash is `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last entry covered; 0 when the log was empty.
    pub seq: i64,
    /// That entry's hash; [`Hash::GENESIS`] when the log was empty.
    pub hash: Hash,
    /// When the checkpoint was signed, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// [`PublicKey::key_id`] of the signing key.
    pub key_id: String,
    /// Base64 of the 64-byte Ed25519 signature over [`Checkpoint`]'s canonical message.
    pub signature: String,
}

/// The canonical signed message of a checkpoint (see the crate docs).
fn checkpoint_message(seq: i64, hash: &Hash, time_ms: i64, key_id: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 64 + key_id.len());
    buf.extend_from_slice(CHECKPOINT_DOMAIN);
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&hash.0);
    buf.extend_from_slice(&time_ms.to_be_bytes());
    put_str(&mut buf, key_id);
    buf
}

/// The server's checkpoint signing key. `Debug` shows only the key id.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(seed);
        let key_id = PublicKey(key.verifying_key()).key_id();
        Signer { key, key_id }
    }

    /// A fresh random key (from the operating system's generator).
    pub fn generate() -> Result<Signer, std::io::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Signer::from_seed(&seed))
    }

    /// Loads the key at `path`, or creates it (mode 0600, parent directories as needed)
    /// when the file does not exist. An existing file that does not hold a key is refused,
    /// never overwritten.
    pub fn load_or_create(path: &Path) -> Result<Signer, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Signer::parse_file(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(AuditError::MalformedKeyFile {
                    path: path.to_path_buf(),
                    reason: "not UTF-8 text".into(),
                });
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let signer = Signer::generate().map_err(io)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = match opts.open(path) {
            Ok(f) => f,
            // Someone else created it between our read and our create: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io)?;
                return Signer::parse_file(path, &text);
            }
            Err(e) => return Err(io(e)),
        };
        let line = format!("{SECRET_PREFIX}{}\n", B64.encode(signer.key.to_bytes()));
        if let Err(e) = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
        {
            // Leave no half-written key behind: it would be refused as malformed next time.
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        Ok(signer)
    }

    fn parse_file(path: &Path, text: &str) -> Result<Signer, AuditError> {
        let bad = |reason: &str| AuditError::MalformedKeyFile {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| bad("missing the `sluice-audit-ed25519-secret ` prefix"))?;
        let bytes = B64
            .decode(b64.trim())
            .map_err(|e| bad(&format!("bad base64: {e}")))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(&format!("key is {} bytes, want 32", b.len())))?;
        Ok(Signer::from_seed(&seed))
    }

    /// The public half, for verifiers.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The key's id (see [`PublicKey::key_id`]).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs "at `time_ms` the log ended at `seq` with entry hash `hash`".
    pub fn sign(&self, seq: i64, hash: Hash, time_ms: i64) -> Checkpoint {
        let msg = checkpoint_message(seq, &hash, time_ms, &self.key_id);
        let signature = B64.encode(self.key.sign(&msg).to_bytes());
        Checkpoint {
            seq,
            hash,
            time_ms,
            key_id: self.key_id.clone(),
            signature,
        }
    }
}

/// An Ed25519 public key that verifies checkpoints. Displays and parses as
/// `sluice-audit-ed25519 <base64 of the 32 key bytes>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Short fingerprint: 16 hex digits of a domain-separated SHA-256 of the key bytes.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(KEY_ID_DOMAIN);
        h.update(self.0.as_bytes());
        hex::encode(&h.finalize()[..8])
    }

    /// The raw 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Checks that `cp` was signed by this key: its key id and its signature.
    pub fn verify(&self, cp: &Checkpoint) -> Result<(), AuditError> {
        let fail = |reason: String| AuditError::BadSignature {
            seq: cp.seq,
            time_ms: cp.time_ms,
            reason,
        };
        let id = self.key_id();
        if cp.key_id != id {
            return Err(fail(format!(
                "signed by unknown key {:?}, expected key {id}",
                cp.key_id
            )));
        }
        let bytes = B64
            .decode(&cp.signature)
            .map_err(|e| fail(format!("signature is not base64: {e}")))?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| fail(format!("signature is {} bytes, want 64", b.len())))?;
        let msg = checkpoint_message(cp.seq, &cp.hash, cp.time_ms, &cp.key_id);
        self.0
            .verify_strict(&msg, &Signature::from_bytes(&bytes))
            .map_err(|_| {
                fail(format!(
                    "signature does not verify under key {id} (forged or altered)"
                ))
            })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl FromStr for PublicKey {
    type Err = AuditError;

    fn from_str(s: &str) -> Result<PublicKey, AuditError> {
        let bad = |r: String| AuditError::BadPublicKey(r);
        let b64 = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| bad(format!("missing the `{}` prefix", PUBLIC_PREFIX.trim_end())))?;
        let bytes = B64
            .decode(b64.trim())
            .map_err(|e| bad(format!("bad base64: {e}")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| bad(format!("key is {} bytes, want 32", b.len())))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|e| bad(format!("not an Ed25519 point: {e}")))
    }
}
