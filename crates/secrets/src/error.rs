//! The error type of the secret store. Every message says what went wrong and what to do
//! about it, and no message ever contains key material or a secret value.

use std::path::{Path, PathBuf};

/// Result alias for this crate.
pub type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// Everything that can go wrong while handling keys and secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The vault holds no key-encryption key, so secrets can be neither read nor written.
    #[error(
        "the server is sealed: secret operations are refused until it is unsealed; \
         run `sluice unseal` with the key file (or set the key environment variable and restart)"
    )]
    Sealed,

    /// The key offered is not the key the secret (or the vault) was sealed with.
    #[error(
        "wrong key-encryption key: the data was sealed with key {expected} but key {found} \
         was offered; use the key file that belongs to this server (after `sluice rotate-key`, the new one)"
    )]
    WrongKey {
        /// Fingerprint of the key the data needs.
        expected: String,
        /// Fingerprint of the key that was offered.
        found: String,
    },

    /// Authentication failed: the stored bytes were modified, corrupted, or moved from
    /// another secret, scope or version.
    #[error(
        "secret {secret} failed authentication: its stored ciphertext was modified, corrupted \
         or belongs to another secret or version; restore it from a backup or set the secret again"
    )]
    Tampered {
        /// Which secret, as `project/environment/NAME@version` (no value).
        secret: String,
    },

    /// Key text that is not in the `sluice-kek-v1:<base64>` format (the text itself is
    /// never included).
    #[error(
        "the key is not a valid sluice key-encryption key ({reason}); expected a single line \
         `sluice-kek-v1:<base64 of 32 bytes>` exactly as it was written when the key was generated"
    )]
    KeyFormat {
        /// What is wrong with it, without quoting it.
        reason: &'static str,
    },

    /// The key file may be read by users other than its owner.
    #[error(
        "key file {} has mode {mode:o} and is readable by group or others; \
         run `chmod 600 {}` and make sure only the sluice user owns it",
        path.display(),
        path.display()
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// `write_new` found a file already at the path.
    #[error(
        "refusing to overwrite the existing key file {}: overwriting it would make every \
         secret unreadable; move it away first or choose another path",
        path.display()
    )]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// Reading or writing the key file failed.
    #[error("cannot {action} key file {}: {source}; check the path and its permissions", path.display())]
    Io {
        /// `"read"`, `"create"` or `"write"`.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A secret name that cannot be used as an environment variable or file name.
    #[error(
        "invalid secret name {name}: {reason}; names must start with a letter or underscore and \
         contain only ASCII letters, digits and underscores (A-Z, a-z, 0-9, _), at most 128 characters"
    )]
    InvalidName {
        /// The name, quoted and escaped (shortened if very long).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A secret value above [`crate::MAX_VALUE`].
    #[error(
        "the secret value is {size} bytes but the limit is {max} bytes (64 KiB); store large \
         files elsewhere and keep only a key or token for them in a secret"
    )]
    ValueTooLarge {
        /// Size of the rejected value.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The operating system's random number generator failed.
    #[error(
        "the operating system random number generator failed ({0}); check that the kernel \
         provides getrandom(2) or /dev/urandom inside this container"
    )]
    Random(getrandom::Error),

    /// The environment variable holding the key is not valid Unicode.
    #[error(
        "the key environment variable {0} is not valid UTF-8; set it to the key text `sluice-kek-v1:<base64>`"
    )]
    KeyEnvNotUnicode(String),
}

impl SecretsError {
    /// Wraps an IO error on the key file at `path`.
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| SecretsError::Io {
            action,
            path,
            source,
        }
    }
}
