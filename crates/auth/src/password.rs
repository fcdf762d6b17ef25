//! Local user passwords: Argon2id hashing to PHC strings, verification, a dummy verification
//! that equalises timing for unknown users, and the password policy.
//!
//! Parameters follow the OWASP Password Storage Cheat Sheet's first Argon2id option:
//! m = 19456 KiB (19 MiB), t = 2 iterations, p = 1 lane, 16-byte random salt, 32-byte
//! output. One hash takes a few tens of milliseconds on one core. Stored hashes carry their
//! own parameters, so old hashes keep verifying after the constants change;
//! [`needs_rehash`] tells the server to re-hash on the next successful login.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};

use crate::AuthError;

/// Argon2id memory cost in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Argon2id iterations.
pub const T_COST: u32 = 2;
/// Argon2id lanes (parallelism).
pub const P_COST: u32 = 1;
/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 12;
/// Longest accepted password, in characters (bounds the work an attacker can ask for).
pub const MAX_LEN: usize = 1024;

/// A well-formed hash with the current parameters whose output was chosen at random, so no
/// known password matches it. [`dummy_verify`] verifies against it so that a login for a
/// user that does not exist costs as much as a real one.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2x1aWNlLWR1bW15LXNhbHQ$\
                          pzTqqgaX1bW/jaMdZoVLVxa7rRmJo1qGDpE1NP8mJxQ";

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(32))
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with Argon2id and a fresh random salt; returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) to store. Does not apply the policy:
/// call [`check_password_policy`] first for new passwords.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(|e| match e {
            argon2::password_hash::Error::Crypto => AuthError::Random,
            e => AuthError::Hash(e.to_string()),
        })?;
    Ok(hash.to_string())
}

/// Checks `candidate` against a stored PHC string in constant time (argon2's verifier).
/// A malformed or unsupported stored hash yields `false`, never an error or a panic.
pub fn verify_password(phc: &str, candidate: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(candidate.as_bytes(), &parsed)
        .is_ok()
}

/// Verifies `candidate` against a fixed hash and discards the result. Call it when the user
/// does not exist so that the response time does not reveal which user names exist.
pub fn dummy_verify(candidate: &str) {
    let _ = verify_password(DUMMY_HASH, candidate);
}

/// True when a stored hash is not Argon2id with the current parameters (or cannot be
/// parsed); the server should re-hash the password after the next successful login.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let current = format!("m={M_COST_KIB},t={T_COST},p={P_COST}");
    parsed.algorithm.as_str() != "argon2id" || parsed.params.to_string() != current
}

/// Checks a new password against the policy: at least [`MIN_LEN`] and at most [`MAX_LEN`]
/// characters (Unicode scalar values). Length is what matters; there are no composition
/// rules, per NIST SP 800-63B.
pub fn check_password_policy(password: &str) -> Result<(), AuthError> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(AuthError::WeakPassword(format!(
            "password is too short: use at least {MIN_LEN} characters (got {len}); \
             a phrase of several words is easy to remember"
        )));
    }
    if len > MAX_LEN {
        return Err(AuthError::WeakPassword(format!(
            "password is too long: use at most {MAX_LEN} characters (got {len})"
        )));
    }
    if password.trim().is_empty() {
        return Err(AuthError::WeakPassword(
            "password must not be only whitespace".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_roundtrip_with_real_params() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapl"));
        assert!(!needs_rehash(&phc));
        // Random salt: the same password hashes differently.
        assert_ne!(phc, hash_password("correct horse battery staple").unwrap());
    }

    #[test]
    fn malformed_stored_hash_is_false() {
        for bad in [
            "",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=x$$",
            "$md5$abc$def",
        ] {
            assert!(!verify_password(bad, "anything"), "{bad}");
            assert!(needs_rehash(bad));
        }
    }

    #[test]
    fn dummy_hash_is_valid_and_current() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!needs_rehash(DUMMY_HASH));
        assert!(!verify_password(DUMMY_HASH, "guess"));
        dummy_verify("guess");
    }

    #[test]
    fn weaker_params_need_rehash_but_still_verify() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let phc = weak
            .hash_password(b"old password here")
            .unwrap()
            .to_string();
        assert!(verify_password(&phc, "old password here"));
        assert!(needs_rehash(&phc));
    }

    #[test]
    fn policy() {
        let e = check_password_policy("short").unwrap_err();
        assert!(
            e.to_string().contains("at least 12 characters (got 5)"),
            "{e}"
        );
        assert!(check_password_policy("twelve chars").is_ok());
        assert!(check_password_policy("ünïcödé-pässwörd").is_ok());
        assert!(check_password_policy(&"x".repeat(1024)).is_ok());
        let e = check_password_policy(&"x".repeat(1025)).unwrap_err();
        assert_eq!(e.code(), "weak_password");
        assert!(check_password_policy(&" ".repeat(20)).is_err());
    }
}
