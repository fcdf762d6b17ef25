//! Who may do what in sluice: local users with Argon2id passwords, scoped and revocable API
//! tokens stored only as hashes, browser sessions with HTTP-only cookies and CSRF tokens,
//! signed expiring action links, login rate limiting, per-project and per-environment roles,
//! protected environments and deployment approvals.
//!
//! Pure: no IO, no async and no clock. Time is always passed in as `now_ms` (Unix epoch
//! milliseconds); randomness comes from the operating system only where a secret is minted
//! ([`password::hash_password`], [`token::generate_token`]). The server does the HTTP and
//! database wiring and asks this crate for decisions.
//!
//! Entry points: [`policy::authorize`] for every request, [`approval::evaluate`] for a gated
//! rollout, [`ratelimit::LoginLimiter`] around logins.

mod error;

pub mod approval;
pub mod csrf;
pub mod password;
pub mod policy;
pub mod ratelimit;
pub mod signed;
pub mod token;

pub use approval::{Approval, ApprovalRule, Gate};
pub use error::AuthError;
pub use policy::{Action, Decision, Grant, Principal, Role, Target, authorize};
pub use ratelimit::{LimiterConfig, LoginLimiter, RetryAfterMs};
pub use token::{Scope, TokenKind, TokenRecord};

/// Result with [`AuthError`].
pub type Result<T, E = AuthError> = std::result::Result<T, E>;
