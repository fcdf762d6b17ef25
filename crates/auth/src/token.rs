//! Bearer tokens (API tokens, browser session ids, one-time setup tokens): generation,
//! hashing for storage, constant-time comparison, scopes and the stored record's checks.
//!
//! Format: `slc_<letter>_<43 chars>`, the tail being 32 random bytes in unpadded base64url.
//! The recognisable prefix lets secret scanners find leaked tokens. Only
//! [`hash_token`]'s output is stored; a database leak does not reveal usable tokens, and
//! since tokens carry 256 bits of entropy a fast hash (SHA-256) suffices.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;

/// Domain separation for [`hash_token`], so a token hash is never equal to another SHA-256.
const HASH_DOMAIN: &[u8] = b"sluice-token-v1\0";

/// What a token is for; encoded as one letter in the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A personal API token (`slc_a_…`), sent as `Authorization: Bearer`.
    Api,
    /// A browser session id (`slc_s_…`), sent in the HTTP-only session cookie.
    Session,
    /// A one-time token for first-time setup or a password reset (`slc_u_…`).
    Setup,
}

impl TokenKind {
    /// All kinds.
    pub const ALL: [TokenKind; 3] = [TokenKind::Api, TokenKind::Session, TokenKind::Setup];

    /// The letter after `slc_`.
    pub fn letter(self) -> char {
        match self {
            TokenKind::Api => 'a',
            TokenKind::Session => 's',
            TokenKind::Setup => 'u',
        }
    }

    /// The kind of a well-formed token (prefix, letter, 43 base64url chars), else `None`.
    /// Use it to reject garbage before touching the database.
    pub fn of(token: &str) -> Option<TokenKind> {
        let rest = token.strip_prefix("slc_")?;
        let mut chars = rest.chars();
        let letter = chars.next()?;
        let tail = chars.as_str().strip_prefix('_')?;
        let well_formed = tail.len() == 43
            && tail
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let kind = TokenKind::ALL.into_iter().find(|k| k.letter() == letter)?;
        well_formed.then_some(kind)
    }
}

/// What an API token may be used for. A token's effective permission is the intersection
/// of its owner's role and its scopes; see [`crate::Action::scope`] for the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// View projects, runs, logs and the audit log.
    Read,
    /// Start and cancel pipeline runs.
    Run,
    /// Deploy, roll back, promote, pause/resume/abort rollouts and approve.
    Deploy,
    /// Read, write and list secrets.
    Secrets,
    /// Acknowledge and resolve incidents, manage alert silences.
    Operate,
    /// Manage projects, users and tokens; unseal.
    Admin,
}

impl Scope {
    /// All scopes.
    pub const ALL: [Scope; 6] = [
        Scope::Read,
        Scope::Run,
        Scope::Deploy,
        Scope::Secrets,
        Scope::Operate,
        Scope::Admin,
    ];

    /// The scope's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Deploy => "deploy",
            Scope::Secrets => "secrets",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = AuthError;

    /// Parses a scope name, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let s = s.trim();
        Scope::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| AuthError::UnknownScope(s.to_string()))
    }
}

/// Mints a new token of `kind`: returns `(plaintext, hash)`. Show the plaintext to the user
/// once and store only the hash. Fails only if the OS random number generator fails.
pub fn generate_token(kind: TokenKind) -> Result<(String, String), AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::Random)?;
    let plaintext = format!("slc_{}_{}", kind.letter(), URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&plaintext);
    Ok((plaintext, hash))
}

/// The storage form of a token: lowercase hex SHA-256 of a domain tag and the token.
pub fn hash_token(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// Compares two strings in time that depends only on their lengths, not their contents.
pub fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A stored token as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Stable id, shown in listings and used to revoke.
    pub id: String,
    /// The owning user's name.
    pub user: String,
    /// [`hash_token`] of the plaintext.
    pub hash: String,
    /// What the token may be used for.
    pub scopes: Vec<Scope>,
    /// Expiry time (Unix ms); `None` = never expires.
    pub expires_ms: Option<i64>,
    /// Set when the owner or an admin revoked it.
    pub revoked: bool,
}

impl TokenRecord {
    /// Whether the token may be used at `now_ms`: [`AuthError::Revoked`] if revoked (checked
    /// first), [`AuthError::Expired`] from the expiry instant on.
    pub fn check(&self, now_ms: i64) -> Result<(), AuthError> {
        if self.revoked {
            return Err(AuthError::Revoked);
        }
        match self.expires_ms {
            Some(exp) if now_ms >= exp => Err(AuthError::Expired),
            _ => Ok(()),
        }
    }

    /// Whether `plaintext` is this token, compared in constant time on the hashes.
    pub fn matches(&self, plaintext: &str) -> bool {
        ct_eq(&hash_token(plaintext), &self.hash)
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_format_and_hash() {
        for kind in TokenKind::ALL {
            let (plain, hash) = generate_token(kind).unwrap();
            assert!(
                plain.starts_with(&format!("slc_{}_", kind.letter())),
                "{plain}"
            );
            assert_eq!(plain.len(), 6 + 43);
            assert_eq!(TokenKind::of(&plain), Some(kind));
            assert_eq!(hash, hash_token(&plain));
            assert_eq!(hash.len(), 64);
            assert_ne!(plain, generate_token(kind).unwrap().0);
        }
        for bad in ["", "slc_", "slc_a_", "slc_x_", "xyz_a_abc", "slc_a_short"] {
            assert_eq!(TokenKind::of(bad), None, "{bad}");
        }
        assert_eq!(TokenKind::of(&format!("slc_a_{}", "!".repeat(43))), None);
    }

    #[test]
    fn hash_is_domain_separated() {
        let plain_sha = hex::encode(Sha256::digest(b"slc_a_x"));
        assert_ne!(hash_token("slc_a_x"), plain_sha);
        assert_eq!(hash_token("slc_a_x"), hash_token("slc_a_x"));
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
    }

    #[test]
    fn record_expiry_and_revocation() {
        let (plain, hash) = generate_token(TokenKind::Api).unwrap();
        let mut rec = TokenRecord {
            id: "t1".into(),
            user: "alice".into(),
            hash,
            scopes: vec![Scope::Read],
            expires_ms: Some(1_000),
            revoked: false,
        };
        assert!(rec.matches(&plain));
        assert!(!rec.matches("slc_a_other"));
        assert!(rec.has_scope(Scope::Read) && !rec.has_scope(Scope::Deploy));
        assert_eq!(rec.check(999), Ok(()));
        assert_eq!(rec.check(1_000), Err(AuthError::Expired));
        rec.revoked = true;
        assert_eq!(rec.check(0), Err(AuthError::Revoked));
        rec.revoked = false;
        rec.expires_ms = None;
        assert_eq!(rec.check(i64::MAX), Ok(()));
    }

    #[test]
    fn scope_parse() {
        assert_eq!(" Deploy ".parse::<Scope>(), Ok(Scope::Deploy));
        let e = "root".parse::<Scope>().unwrap_err();
        assert!(e.to_string().contains("valid scopes are read, run"), "{e}");
    }
}
