//! The auth error contract: one enum with a stable code for every failure in this crate.

/// Why an authentication step failed.
///
/// Messages are safe to show to the person concerned; they never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A new password does not meet the policy; the message says what to change.
    #[error("{0}")]
    WeakPassword(String),
    /// Argon2 refused to hash (bad parameters or salt); not the user's fault.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The token, session or signed value is past its expiry time.
    #[error("expired")]
    Expired,
    /// The token was revoked.
    #[error("revoked")]
    Revoked,
    /// The signature does not match (tampered, wrong key or wrong purpose).
    #[error("bad signature")]
    BadSignature,
    /// The value is not in the expected format.
    #[error("malformed token")]
    Malformed,
    /// A role name that is not one of the four roles.
    #[error("unknown role {0:?}: valid roles are viewer, developer, releaser, admin")]
    UnknownRole(String),
    /// A token scope name that is not a known scope.
    #[error("unknown scope {0:?}: valid scopes are read, run, deploy, secrets, operate, admin")]
    UnknownScope(String),
}

impl AuthError {
    /// A stable snake_case code for API responses, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::WeakPassword(_) => "weak_password",
            AuthError::Hash(_) => "hash_failed",
            AuthError::Random => "random_failed",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
            AuthError::BadSignature => "bad_signature",
            AuthError::Malformed => "malformed",
            AuthError::UnknownRole(_) => "unknown_role",
            AuthError::UnknownScope(_) => "unknown_scope",
        }
    }
}
