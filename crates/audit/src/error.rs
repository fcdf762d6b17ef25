//! The crate's error type: key files, key and hash texts, export lines and signatures.

use std::path::PathBuf;

/// Everything that can go wrong outside of [`crate::verify()`], which reports
/// [`crate::Problem`]s instead of failing.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, creating or writing the signing key file failed.
    #[error("audit key file {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The signing key file exists but does not hold a key in the expected format.
    #[error(
        "audit key file {} is malformed: {reason} (expected one line \
         `sluice-audit-ed25519-secret <base64 of 32 bytes>`; refusing to replace it)",
        path.display()
    )]
    MalformedKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A public key text is not `sluice-audit-ed25519 <base64 of 32 bytes>`.
    #[error("invalid audit public key: {0}")]
    BadPublicKey(String),
    /// A hash text is not 64 hex digits.
    #[error("invalid hash {0}")]
    BadHash(String),
    /// An export line could not be parsed.
    #[error("{}export line {excerpt:?}: {reason}", line.map(|n| format!("line {n}: ")).unwrap_or_default())]
    BadLine {
        /// 1-based line number, when reading a whole export.
        line: Option<usize>,
        /// The start of the offending line.
        excerpt: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading an export stream failed.
    #[error("reading export at line {line}: {source}")]
    Read {
        /// 1-based number of the line being read.
        line: usize,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint's signature does not verify under the given key.
    #[error("checkpoint at seq {seq} (time {time_ms}): {reason}")]
    BadSignature {
        /// The checkpoint's seq.
        seq: i64,
        /// The checkpoint's time.
        time_ms: i64,
        /// Why it was rejected.
        reason: String,
    },
}
