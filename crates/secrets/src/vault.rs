//! The server's key holder. Starts sealed when no key was configured; while sealed every
//! secret operation fails with [`SecretsError::Sealed`]. Unsealing checks the candidate key
//! before accepting it, so a wrong key leaves the vault sealed.

use std::fmt;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use zeroize::Zeroizing;

use crate::{Kek, Result, Sealed, SecretRef, SecretsError, envelope};

/// Thread-safe holder of the optional key-encryption key.
pub struct Vault {
    kek: RwLock<Option<Kek>>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl Vault {
    /// A vault without a key.
    pub fn sealed() -> Vault {
        Vault {
            kek: RwLock::new(None),
        }
    }

    /// A vault holding `kek` (e.g. loaded from the key file at start-up).
    pub fn unsealed(kek: Kek) -> Vault {
        Vault {
            kek: RwLock::new(Some(kek)),
        }
    }

    // A panic while holding the lock cannot leave `Option<Kek>` half-written: recover.
    fn read(&self) -> RwLockReadGuard<'_, Option<Kek>> {
        self.kek
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Kek>> {
        self.kek
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Accepts `kek` after verifying it: against `check` (a stored secret, whose key id
    /// must match and which must decrypt) when given, and against the key already held if
    /// the vault is unsealed. On any failure the vault is unchanged. Returns the key id.
    pub fn unseal(&self, kek: Kek, check: Option<&(SecretRef, Sealed)>) -> Result<String> {
        if let Some((secret, sealed)) = check {
            envelope::open(&kek, secret, sealed)?;
        }
        self.install(kek, None)
    }

    /// Like [`Vault::unseal`] but checks the candidate against a stored key id (for a
    /// store that records the key id but holds no secret yet).
    pub fn unseal_expecting_id(&self, kek: Kek, expected_key_id: &str) -> Result<String> {
        self.install(kek, Some(expected_key_id))
    }

    fn install(&self, kek: Kek, expected: Option<&str>) -> Result<String> {
        let found = kek.key_id();
        let mut slot = self.write();
        let held = slot.as_ref().map(Kek::key_id);
        for expected in [expected.map(str::to_owned), held].into_iter().flatten() {
            if expected != found {
                return Err(SecretsError::WrongKey { expected, found });
            }
        }
        *slot = Some(kek);
        Ok(found)
    }

    /// Drops (and zeroizes) the key; secret operations fail until the next unseal.
    pub fn seal_now(&self) {
        *self.write() = None;
    }

    /// Whether the vault holds no key.
    pub fn is_sealed(&self) -> bool {
        self.read().is_none()
    }

    /// Fingerprint of the key held, `None` while sealed.
    pub fn key_id(&self) -> Option<String> {
        self.read().as_ref().map(Kek::key_id)
    }

    fn with_key<T>(&self, f: impl FnOnce(&Kek) -> Result<T>) -> Result<T> {
        self.read().as_ref().map_or(Err(SecretsError::Sealed), f)
    }

    /// [`crate::seal`] with the vault's key.
    pub fn seal(&self, secret: &SecretRef, plaintext: &[u8]) -> Result<Sealed> {
        self.with_key(|kek| envelope::seal(kek, secret, plaintext))
    }

    /// [`crate::open`] with the vault's key.
    pub fn open(&self, secret: &SecretRef, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
        self.with_key(|kek| envelope::open(kek, secret, sealed))
    }

    /// [`crate::rewrap`] from the vault's key to `new` (the store then writes the result
    /// and the server restarts, or calls [`Vault::seal_now`] + [`Vault::unseal`], with `new`).
    pub fn rewrap(&self, new: &Kek, secret: &SecretRef, sealed: &Sealed) -> Result<Sealed> {
        self.with_key(|kek| envelope::rewrap(kek, new, secret, sealed))
    }
}
