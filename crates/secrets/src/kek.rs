//! The key-encryption key (KEK): 32 random bytes kept outside the database, in a key file
//! (mode 0600) or an environment variable, as one line of text `sluice-kek-v1:<base64>`.
//! It only ever wraps per-secret data keys. Its bytes are zeroized on drop and never shown
//! by `Debug`; [`Kek::key_id`] is the non-secret fingerprint that may be stored and logged.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Result, SecretsError};

/// Prefix of the text form of a key; the version lets the format change later.
pub const KEK_PREFIX: &str = "sluice-kek-v1:";

/// Domain separation for [`Kek::key_id`], so the fingerprint is never a hash used elsewhere.
const KEY_ID_DOMAIN: &[u8] = b"sluice/kek-id/v1\0";

/// A 256-bit key-encryption key. Cloning copies the key; every copy is zeroized on drop.
#[derive(Clone)]
pub struct Kek {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Kek> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(SecretsError::Random)?;
        Ok(Kek { bytes })
    }

    /// Parses `sluice-kek-v1:<standard base64 of exactly 32 bytes>`; surrounding whitespace
    /// (a trailing newline) is ignored. Errors never include the text.
    pub fn from_text(text: &str) -> Result<Kek> {
        let bad = |reason| SecretsError::KeyFormat { reason };
        let body = text
            .trim()
            .strip_prefix(KEK_PREFIX)
            .ok_or(bad("it does not start with `sluice-kek-v1:`"))?;
        let decoded = Zeroizing::new(
            STANDARD
                .decode(body)
                .map_err(|_| bad("the part after the prefix is not valid base64"))?,
        );
        let mut bytes = Zeroizing::new([0u8; 32]);
        if decoded.len() != bytes.len() {
            return Err(bad("it does not decode to exactly 32 bytes"));
        }
        bytes.copy_from_slice(&decoded);
        Ok(Kek { bytes })
    }

    /// The text form accepted by [`Kek::from_text`], without a newline.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(KEK_PREFIX.len() + 44));
        text.push_str(KEK_PREFIX);
        STANDARD.encode_string(self.bytes.as_ref(), &mut text);
        text
    }

    /// Reads the key from the environment variable `var`; `Ok(None)` when it is unset or
    /// empty, an error when it is set to something that is not a key.
    pub fn from_env(var: &str) -> Result<Option<Kek>> {
        match std::env::var(var) {
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => Kek::from_text(&Zeroizing::new(text)).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(SecretsError::KeyEnvNotUnicode(var.to_owned()))
            }
        }
    }

    /// Loads a key file. On unix, refuses a file any group or other user may read or write.
    pub fn load(path: &Path) -> Result<Kek> {
        let mut file = std::fs::File::open(path).map_err(SecretsError::io("read", path))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = file.metadata().map_err(SecretsError::io("read", path))?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                let path = path.to_owned();
                return Err(SecretsError::InsecureKeyFile { path, mode });
            }
        }
        let mut text = Zeroizing::new(String::new());
        // A key line is ~60 bytes; cap the read so a wrong path cannot eat memory.
        let read = (&mut file).take(4096).read_to_string(&mut text);
        read.map_err(|e| match e.kind() {
            ErrorKind::InvalidData => SecretsError::KeyFormat {
                reason: "the file is not UTF-8 text",
            },
            _ => SecretsError::io("read", path)(e),
        })?;
        Kek::from_text(&text)
    }

    /// Writes this key to a new file created with mode 0600 (on unix); refuses to replace
    /// an existing file. A file left half-written by a failed write is removed.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => SecretsError::KeyFileExists {
                path: path.to_owned(),
            },
            _ => SecretsError::io("create", path)(e),
        })?;
        let mut line = self.to_text();
        line.push('\n');
        let written = file
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_all());
        if written.is_err() {
            drop(file);
            // Best effort: the write error below is what the caller needs to see.
            let _ = std::fs::remove_file(path);
        }
        written.map_err(SecretsError::io("write", path))
    }

    /// Short non-secret fingerprint: the first 8 bytes of
    /// SHA-256(`"sluice/kek-id/v1\0"` || key), as 16 lowercase hex digits.
    pub fn key_id(&self) -> String {
        let digest = Sha256::new_with_prefix(KEY_ID_DOMAIN).chain_update(self.bytes.as_ref());
        let digest = digest.finalize();
        hex::encode(&digest[..8])
    }

    /// The raw key, for the envelope code only.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}
