//! The secret store as the server uses it: the key-encryption key (KEK) loaded at start,
//! sealing and unsealing, key rotation, writing, listing and deleting secrets for the API,
//! and handing values to pipeline steps and service instances, every read audited.
//!
//! Where the key comes from, in order: the `SLUICE_KEK` environment variable (read once by
//! `Server::start`), the configured `kek_file`, `DATA_DIR/secret.key`. A missing
//! `DATA_DIR/secret.key` is generated (mode 0600) as long as no secret was ever stored (the
//! store has no key id setting); a missing configured file is not (a failed mount should
//! not mint a key). A key whose id differs from the stored setting, or no usable key at
//! all, starts the server **sealed**: everything else works, every secret operation is
//! refused until `POST /api/v1/unseal` gets the right key.
//!
//! Plaintext values exist only in memory (the masker, which hides every encoded form of
//! every stored value in every log the server keeps or shows) and in what is handed to a
//! step or an instance. A service instance gets its secrets through files in
//! `DATA_DIR/instance-secrets/<instance>/` (directory 0700, files 0600): `file: true`
//! secrets as one file each (`NAME_FILE` points to it), the others in a shell file its start
//! command sources, so no value lands in the runtime's state records. These files live as
//! long as the instance and are removed once it is gone.
//!
//! Architecture invariant: no value and no key material is ever written to the database, an
//! event, a log line or an API response; events carry names, scopes, versions and key ids.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use sluice_auth::{Action, Target};
use sluice_core::{EventKind, NewEvent};
use sluice_runner::Masker;
use sluice_runtime::Runtime as _;
use sluice_secrets::{Kek, SecretsError, Vault, Zeroizing};
use sluice_spec::{Deploy, DeploySecret};
use sluice_store::{NewSecret, SETTING_KEK_ID, SecretMeta, StoreError};

use super::access::{Caller, write_private};
use super::{Engine, EngineError, now_ms, random_hex};
use crate::config::ServerConfig;

/// The environment variable that may hold the key (`sluice-kek-v1:<base64>`).
pub const KEK_ENV: &str = "SLUICE_KEK";
/// The key file in the data directory when none is configured.
pub const DEFAULT_KEY_FILE: &str = "secret.key";
/// Where the secret files of running service instances live, under the data directory.
pub const INSTANCE_SECRETS_DIR: &str = "instance-secrets";
/// The shell file of an instance's environment-variable secrets, sourced by its command.
const ENV_FILE: &str = "env.sh";

/// Where the key-encryption key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `SLUICE_KEK` environment variable.
    Env,
    /// A key file (the configured one or `DATA_DIR/secret.key`).
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "the environment variable {KEK_ENV}"),
            KeySource::File(p) => write!(f, "the key file {}", p.display()),
        }
    }
}

/// Why a secret operation was refused. The HTTP edge maps these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No key is held.
    #[error("the server is sealed: secret operations are refused until it is unsealed{}", .0.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Sealed(Option<String>),
    /// The request cannot be done as asked (a bad name, value, environment or key text).
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// A value above the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The key offered is not the key the secrets are kept under.
    #[error("{0}")]
    WrongKey(String),
    /// Anything the engine reports (not found, refused, store failures).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A failure inside the server (a stored secret that does not decrypt, a key file that
    /// cannot be written).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        VaultError::Engine(e.into())
    }
}

fn invalid(message: impl Into<String>, hint: impl Into<Option<String>>) -> VaultError {
    VaultError::Invalid {
        message: message.into(),
        hint: hint.into(),
    }
}

/// The server's key holder and the lock that keeps rotation apart from everything else.
pub struct SecretStore {
    vault: Vault,
    source: std::sync::Mutex<KeySource>,
    /// Why the vault is sealed (shown in errors and logs), while it is.
    sealed_reason: std::sync::Mutex<Option<String>>,
    /// Rotation and unsealing take it exclusively: rotation changes the key under every
    /// stored row, so no read or write may see half of it.
    gate: tokio::sync::RwLock<()>,
}

/// What [`Engine::open_vault`] found, for the start-up log line.
#[derive(Debug, Clone, Serialize)]
pub struct VaultStatus {
    /// Whether secret operations are refused.
    pub sealed: bool,
    /// The key id in use (unsealed) or expected (sealed), if known.
    pub key_id: Option<String>,
    /// Where the key comes from.
    pub source: String,
    /// Why the server is sealed, or what happened to the key (generated, recovered).
    pub note: Option<String>,
}

/// The answer to a successful unseal.
#[derive(Debug, Clone, Serialize)]
pub struct Unsealed {
    /// The key id now held.
    pub key_id: String,
    /// Whether the vault already held that key.
    pub already: bool,
}

/// The answer to a key rotation.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// How many stored secret versions (deleted ones included) were re-wrapped.
    pub rewrapped: usize,
    /// The key id before.
    pub old_key_id: String,
    /// The key id now.
    pub new_key_id: String,
    /// The key file rewritten with the new key, if the key lives in a file.
    pub key_file: Option<String>,
    /// What the operator has to do now, if anything.
    pub message: String,
}

/// One secret of a deployed service, resolved for an environment.
pub(crate) struct InstanceSecret {
    spec: DeploySecret,
    value: Zeroizing<Vec<u8>>,
}

/// What an instance needs to receive its secrets.
pub(crate) struct InstanceSecretEnv {
    /// The start command, prefixed with sourcing the secrets' shell file when there is one.
    pub command: String,
    /// The instance's variables plus `NAME_FILE` for every `file: true` secret.
    pub env_vars: BTreeMap<String, String>,
}

impl SecretStore {
    /// A sealed store whose key would come from the configured or default key file;
    /// [`Engine::open_vault`] loads the key.
    pub fn new(config: &ServerConfig) -> SecretStore {
        SecretStore {
            vault: Vault::sealed(),
            source: std::sync::Mutex::new(KeySource::File(key_file(config))),
            sealed_reason: std::sync::Mutex::new(Some("the key has not been loaded yet".into())),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    /// Whether secret operations are refused.
    pub fn is_sealed(&self) -> bool {
        self.vault.is_sealed()
    }

    /// The id of the key held, `None` while sealed.
    pub fn key_id(&self) -> Option<String> {
        self.vault.key_id()
    }

    /// Where the key comes from.
    pub fn source(&self) -> KeySource {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_sealed_reason(&self, reason: Option<String>) {
        *self.sealed_reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    fn sealed_error(&self) -> VaultError {
        VaultError::Sealed(
            self.sealed_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// The id of the key held, or the sealed error.
    fn held_key_id(&self) -> Result<String, VaultError> {
        self.key_id().ok_or_else(|| self.sealed_error())
    }
}

/// The configured key file, or the default one; relative paths are taken from the current
/// directory, like every path of the configuration.
fn key_file(config: &ServerConfig) -> PathBuf {
    let path = config
        .kek_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(DEFAULT_KEY_FILE));
    std::path::absolute(&path).unwrap_or(path)
}

/// Where a rotation writes the new key before the database switches to it: if the server
/// dies between the two, the next start finds the new key here.
fn pending_key_file(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".new");
    path.with_file_name(name)
}

fn not_found(e: &SecretsError) -> bool {
    matches!(e, SecretsError::Io { source, .. } if source.kind() == ErrorKind::NotFound)
}

/// The text of an environment-variable name scope: the environment, or `*` for all.
fn scope(env: Option<&str>) -> &str {
    env.unwrap_or("*")
}

/// `'text'` for `sh`, with every `'` closed, escaped and reopened.
fn sh_quote(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'\'');
    for &b in text {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Checks the environment named in a secret request: `None`, empty or `*` mean every
/// environment; otherwise an environment name as `sluice.yml` allows them.
pub fn parse_env(env: Option<&str>) -> Result<Option<String>, VaultError> {
    let env = match env.map(str::trim) {
        None | Some("" | "*") => return Ok(None),
        Some(e) => e,
    };
    let valid = env.len() <= 63
        && env
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        let shown: String = env.chars().take(64).collect();
        return Err(invalid(
            format!("invalid environment name {shown:?}"),
            Some(
                "environment names are lower-case letters, digits, `_` and `-`, as in sluice.yml; \
                 leave the environment out (or use `*`) for a secret of every environment"
                    .into(),
            ),
        ));
    }
    Ok(Some(env.to_owned()))
}

impl Engine {
    /// The masker every log line passes through (configured secrets and every stored value
    /// known since the last unseal).
    pub(crate) fn masker(&self) -> Arc<Masker> {
        self.masker
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds values to the masker. Called before a value is stored, so no value is ever in
    /// the store without being in the masker.
    fn mask_also<V: AsRef<[u8]>>(&self, values: &[V]) {
        let mut m = self.masker.write().unwrap_or_else(|p| p.into_inner());
        *m = Arc::new(m.extended(values));
    }

    /// Decrypts every stored version once and masks all of them (with the configured
    /// secrets). Values that do not decrypt are skipped with a warning; reading them later
    /// fails with a clear message.
    async fn rebuild_masker(&self) -> Result<usize, VaultError> {
        let rows = self.store.all_secret_rows().await?;
        let mut values: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(rows.len());
        let mut failed = 0usize;
        for row in &rows {
            match self.vault.vault.open(&row.secret, &row.sealed) {
                Ok(v) => values.push(v),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(secret = %row.secret, error = %e, "a stored secret does not decrypt; it is not masked and cannot be used");
                }
            }
        }
        let masker = Masker::new(self.config.secrets.values().cloned()).extended(&values);
        *self.masker.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(masker);
        Ok(rows.len() - failed)
    }

    /// Loads the key at start (see the module docs), unseals the vault when the key fits
    /// and builds the masker. `env_key` is what `SLUICE_KEK` held. A key that cannot be used
    /// leaves the server sealed (recorded as `vault.sealed`); only a store failure is an
    /// error.
    pub async fn open_vault(
        &self,
        env_key: Result<Option<Kek>, SecretsError>,
    ) -> Result<VaultStatus, EngineError> {
        let expected = self.store.setting(SETTING_KEK_ID).await?;
        let mut note = None;
        let loaded: Result<Kek, String> = match env_key {
            Ok(Some(kek)) => {
                *self.vault.source.lock().unwrap_or_else(|p| p.into_inner()) = KeySource::Env;
                Ok(kek)
            }
            Err(e) => {
                *self.vault.source.lock().unwrap_or_else(|p| p.into_inner()) = KeySource::Env;
                Err(format!("{KEK_ENV} is set but cannot be used: {e}"))
            }
            Ok(None) => {
                let path = key_file(&self.config);
                let (kek, what) = self.load_key_file(&path, expected.as_deref()).await?;
                note = what;
                kek
            }
        };
        let source = self.vault.source().to_string();
        let unsealed = match loaded {
            Err(reason) => Err(reason),
            Ok(kek) => match &expected {
                Some(id) => self.vault.vault.unseal_expecting_id(kek, id).map_err(|e| {
                    format!("{source} does not hold the key of this server's secrets: {e}")
                }),
                None => self
                    .vault
                    .vault
                    .unseal(kek, None)
                    .map_err(|e| e.to_string()),
            },
        };
        match unsealed {
            Ok(key_id) => {
                self.vault.set_sealed_reason(None);
                let _ = self.rebuild_masker().await.map_err(|e| {
                    tracing::warn!(error = %e, "cannot read the stored secrets to mask them");
                });
                Ok(VaultStatus {
                    sealed: false,
                    key_id: Some(key_id),
                    source,
                    note,
                })
            }
            Err(reason) => {
                self.vault.set_sealed_reason(Some(reason.clone()));
                self.record(vec![
                    NewEvent::new(EventKind::VaultSealed, "system", "vault").payload(json!({
                        "reason": reason, "expected_key_id": expected, "source": source,
                    })),
                ])
                .await?;
                Ok(VaultStatus {
                    sealed: true,
                    key_id: expected,
                    source,
                    note: Some(reason),
                })
            }
        }
    }

    /// Loads the key file, finishing an interrupted rotation or generating the first key
    /// when the default file is missing and no secret was ever stored. The outer error is a store failure; the inner one says why no
    /// key could be loaded.
    async fn load_key_file(
        &self,
        path: &Path,
        expected: Option<&str>,
    ) -> Result<(Result<Kek, String>, Option<String>), EngineError> {
        let shown = path.display();
        let loaded = Kek::load(path);
        let fits = |k: &Kek| expected.is_none_or(|id| k.key_id() == id);
        // A rotation that wrote the new key but died before putting it in place.
        let pending = pending_key_file(path);
        if let (Some(id), true) = (expected, loaded.as_ref().map_or(true, |k| !fits(k)))
            && let Ok(new) = Kek::load(&pending)
            && new.key_id() == id
        {
            return Ok(match std::fs::rename(&pending, path) {
                Ok(()) => (
                    Ok(new),
                    Some(format!(
                        "finished an interrupted key rotation: {shown} now holds key {id}"
                    )),
                ),
                Err(e) => (
                    Err(format!("cannot move {} to {shown}: {e}", pending.display())),
                    None,
                ),
            });
        }
        match loaded {
            Ok(kek) => Ok((Ok(kek), None)),
            // Only the default file is generated: a configured one that is missing is more
            // likely a mount that failed than a first start.
            Err(e) if not_found(&e) && expected.is_none() && self.config.kek_file.is_none() => {
                if !self.store.all_secret_rows().await?.is_empty() {
                    return Ok((
                        Err(format!(
                            "{shown} does not exist but the store holds secrets; restore the key file"
                        )),
                        None,
                    ));
                }
                let generated = Kek::generate().and_then(|k| k.write_new(path).map(|()| k));
                match generated {
                    Ok(kek) => {
                        self.store
                            .set_setting(SETTING_KEK_ID, &kek.key_id())
                            .await?;
                        let note = format!(
                            "generated a new key-encryption key in {shown} (key id {}); back it up: without it no secret can be read",
                            kek.key_id()
                        );
                        Ok((Ok(kek), Some(note)))
                    }
                    Err(e) => Ok((Err(format!("cannot create the key file: {e}")), None)),
                }
            }
            Err(e) if not_found(&e) => Ok((
                Err(format!(
                    "{shown} does not exist; restore it, set {KEK_ENV}, or unseal with `sluice unseal`"
                )),
                None,
            )),
            Err(e) => Ok((Err(e.to_string()), None)),
        }
    }

    /// Unseals with `key_text` if it is the key the secrets are kept under (`vault.unsealed`);
    /// a wrong key leaves the server sealed and is an audit entry (`access.denied`).
    pub async fn unseal(&self, caller: &Caller, key_text: &str) -> Result<Unsealed, VaultError> {
        let kek = Kek::from_text(key_text).map_err(|e| {
            invalid(
                e.to_string(),
                Some(
                    "send the content of the key file, e.g. `sluice unseal --key-file secret.key`"
                        .into(),
                ),
            )
        })?;
        let offered = kek.key_id();
        let _exclusive = self.vault.gate.write().await;
        if let Some(held) = self.vault.key_id() {
            if held == offered {
                return Ok(Unsealed {
                    key_id: held,
                    already: true,
                });
            }
            return Err(self.unseal_refused(caller, &held, &offered).await);
        }
        let expected = self.store.setting(SETTING_KEK_ID).await?;
        let result = match &expected {
            Some(id) => self.vault.vault.unseal_expecting_id(kek, id),
            None => match self.store.all_secret_rows().await?.into_iter().next() {
                Some(row) => self
                    .vault
                    .vault
                    .unseal(kek, Some(&(row.secret, row.sealed))),
                None => self.vault.vault.unseal(kek, None),
            },
        };
        match result {
            Ok(key_id) => {
                self.vault.set_sealed_reason(None);
                let readable = self.rebuild_masker().await?;
                self.record(vec![
                    NewEvent::new(EventKind::VaultUnsealed, caller.actor(), "vault")
                        .payload(json!({ "key_id": key_id, "secret_versions": readable })),
                ])
                .await?;
                Ok(Unsealed {
                    key_id,
                    already: false,
                })
            }
            Err(SecretsError::WrongKey { expected, found }) => {
                Err(self.unseal_refused(caller, &expected, &found).await)
            }
            Err(e) => {
                let expected = expected.unwrap_or_else(|| "(unknown)".into());
                let err = self.unseal_refused(caller, &expected, &offered).await;
                tracing::warn!(error = %e, "unseal refused");
                Err(err)
            }
        }
    }

    async fn unseal_refused(&self, caller: &Caller, expected: &str, offered: &str) -> VaultError {
        let reason = format!(
            "wrong key: the secrets are kept under key {expected}, the key offered is {offered}"
        );
        if let Err(e) = self
            .record(vec![
                NewEvent::new(EventKind::AccessDenied, caller.actor(), "vault")
                    .payload(json!({ "action": "unseal", "reason": reason })),
            ])
            .await
        {
            return VaultError::Engine(e);
        }
        VaultError::WrongKey(format!(
            "{reason}; use the key file of this server (after a rotation, the new one)"
        ))
    }

    /// Rotates the key: every stored version is re-wrapped under `new_key` (or a generated
    /// key) in one transaction (`secrets.rekeyed`), the key file is rewritten, and the vault
    /// switches to the new key. A key from `SLUICE_KEK` cannot be stored by the server, so
    /// then `new_key` is required and the operator updates the variable.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        new_key: Option<&str>,
    ) -> Result<Rotated, VaultError> {
        let source = self.vault.source();
        let new = match (new_key, &source) {
            (Some(text), _) => Kek::from_text(text).map_err(|e| {
                invalid(
                    format!("new_key: {e}"),
                    Some("`sluice secrets rotate-key --new-key-file FILE` creates a key file and sends it".into()),
                )
            })?,
            (None, KeySource::Env) => {
                return Err(invalid(
                    format!("the key comes from {KEK_ENV}, which the server cannot change, so the new key must be given"),
                    Some(format!(
                        "run `sluice secrets rotate-key --new-key-file FILE` (it creates FILE with a new key), then set {KEK_ENV} to the content of FILE before the next start"
                    )),
                ));
            }
            (None, KeySource::File(_)) => {
                Kek::generate().map_err(|e| VaultError::Internal(e.to_string()))?
            }
        };
        let new_id = new.key_id();
        let _exclusive = self.vault.gate.write().await;
        let old_id = self.vault.held_key_id()?;
        if new_id == old_id {
            return Err(invalid(
                format!("the new key is the key in use ({old_id})"),
                Some("generate a new key: leave the new key out, or give a file that does not exist yet".into()),
            ));
        }
        let rows = self.store.all_secret_rows().await?;
        let mut updates = Vec::with_capacity(rows.len());
        for row in &rows {
            let sealed = self
                .vault
                .vault
                .rewrap(&new, &row.secret, &row.sealed)
                .map_err(|e| {
                    VaultError::Internal(format!(
                        "cannot re-wrap {}: {e}; nothing was changed",
                        row.secret
                    ))
                })?;
            updates.push((row.secret.id.clone(), sealed));
        }
        // The new key is on disk before the database needs it.
        let pending = match &source {
            KeySource::File(path) => {
                let p = pending_key_file(path);
                let mut line = new.to_text();
                line.push('\n');
                write_private(&p, line.as_bytes()).map_err(|e| {
                    VaultError::Internal(format!(
                        "cannot write the new key to {}: {e}; nothing was changed",
                        p.display()
                    ))
                })?;
                Some((p, path.clone()))
            }
            KeySource::Env => None,
        };
        let key_file = pending.as_ref().map(|(_, p)| p.display().to_string());
        let event =
            NewEvent::new(EventKind::SecretsRekeyed, caller.actor(), "vault").payload(json!({
                "secret_versions": rows.len(), "old_key_id": old_id, "new_key_id": new_id,
                "key_file": key_file, "source": source.to_string(),
            }));
        let rewrapped = match self.store.rewrap_secrets(&new_id, updates, event).await {
            Ok(n) => n,
            Err(e) => {
                if let Some((p, _)) = &pending {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e.into());
            }
        };
        self.hub.bump();
        let mut message =
            format!("re-wrapped {rewrapped} secret version(s) from key {old_id} to key {new_id}");
        if let Some((p, path)) = &pending {
            match std::fs::rename(p, path) {
                Ok(()) => message.push_str(&format!(
                    "; {} now holds the new key: back it up, the old key opens nothing any more",
                    path.display()
                )),
                Err(e) => {
                    tracing::error!(error = %e, "cannot put the new key file in place");
                    message.push_str(&format!(
                        "; WARNING: cannot replace {} ({e}); the new key is in {}: move it there before the next start",
                        path.display(),
                        p.display()
                    ));
                }
            }
        } else {
            message.push_str(&format!(
                "; set {KEK_ENV} to the new key before the next start (the old key opens nothing any more)"
            ));
        }
        self.vault.vault.seal_now();
        self.vault
            .vault
            .unseal_expecting_id(new, &new_id)
            .map_err(|e| VaultError::Internal(e.to_string()))?;
        Ok(Rotated {
            rewrapped,
            old_key_id: old_id,
            new_key_id: new_id,
            key_file,
            message,
        })
    }

    /// The environments the project's configurations define (at its branch heads); empty
    /// when none can be read.
    async fn known_envs(&self, project: &str) -> Result<Vec<String>, EngineError> {
        let mirror = self.mirror_of(project).await?;
        let mut names = Vec::new();
        for head in self.store.branch_heads(project).await? {
            let Ok((_, parsed)) = self.config_at(&mirror, project, &head.commit).await else {
                continue;
            };
            if let Ok(config) = parsed.as_ref() {
                for e in &config.environments {
                    if !names.contains(&e.name) {
                        names.push(e.name.clone());
                    }
                }
            }
        }
        Ok(names)
    }

    /// What writing and deleting share: the checks (the name, the project, the environment
    /// — one the project defines — and the caller's permission), then the shared side of
    /// the rotation gate, held by the caller while it writes, and the id of the key held
    /// (refused while sealed).
    async fn begin_secret_write(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
        env: Option<&str>,
    ) -> Result<(tokio::sync::RwLockReadGuard<'_, ()>, String), VaultError> {
        sluice_secrets::validate_name(name).map_err(|e| invalid(e.to_string(), None))?;
        self.store.project(project).await?;
        let target = match env {
            Some(env) => self.env_target(project, env, None).await?,
            None => Target::project(project),
        };
        self.authorize(caller, Action::WriteSecret, &target).await?;
        if let Some(env) = env {
            let known = self.known_envs(project).await?;
            if !known.is_empty() && !known.iter().any(|k| k == env) {
                return Err(invalid(
                    format!("project `{project}` has no environment `{env}`"),
                    Some(format!(
                        "its sluice.yml defines: {}; leave the environment out for a secret of every environment",
                        known.join(", ")
                    )),
                ));
            }
        }
        let shared = self.vault.gate.read().await;
        let key_id = self.vault.held_key_id()?;
        Ok((shared, key_id))
    }

    /// Stores a new version of a secret (`secret.written`, with the version, never the
    /// value). `env` `None` is the project-wide secret.
    pub async fn put_secret(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
        env: Option<&str>,
        value: Zeroizing<Vec<u8>>,
    ) -> Result<SecretMeta, VaultError> {
        sluice_secrets::validate_value(&value).map_err(|e| VaultError::TooLarge(e.to_string()))?;
        let (_shared, key_id) = self.begin_secret_write(caller, project, name, env).await?;
        if self.store.setting(SETTING_KEK_ID).await?.is_none() {
            self.store.set_setting(SETTING_KEK_ID, &key_id).await?;
        }
        self.mask_also(&[value.as_slice()]);
        let actor = caller.actor();
        let event = change_event(EventKind::SecretWritten, actor.clone(), project, env, name);
        let row = self
            .store
            .put_secret(
                NewSecret {
                    id: format!("sec_{}", random_hex(12)),
                    project: project.to_owned(),
                    environment: env.map(str::to_owned),
                    name: name.to_owned(),
                    created_ms: now_ms(),
                    created_by: actor,
                },
                |r| self.vault.vault.seal(r, &value),
                event,
            )
            .await
            .map_err(|e| match e {
                StoreError::Secrets(SecretsError::Sealed) => self.vault.sealed_error(),
                other => other.into(),
            })?;
        self.hub.bump();
        Ok(SecretMeta {
            id: row.secret.id,
            project: row.secret.project,
            environment: row.secret.environment,
            name: row.secret.name,
            version: row.secret.version,
            kek_id: row.sealed.kek_id,
            created_ms: row.created_ms,
            created_by: row.created_by,
        })
    }

    /// Deletes a secret (`secret.deleted`); its versions stay as sealed tombstones.
    pub async fn delete_secret(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
        env: Option<&str>,
    ) -> Result<u64, VaultError> {
        let (_shared, _) = self.begin_secret_write(caller, project, name, env).await?;
        let event = change_event(EventKind::SecretDeleted, caller.actor(), project, env, name);
        let n = self.store.delete_secret(project, env, name, event).await?;
        self.hub.bump();
        Ok(n)
    }

    /// The current version of every live secret of a project, without values.
    pub async fn list_secrets(&self, project: &str) -> Result<Vec<SecretMeta>, VaultError> {
        self.store.project(project).await?;
        Ok(self.store.secrets(project).await?)
    }

    /// The stored secret a scope sees: the environment's own, else the project-wide one.
    async fn find_stored(
        &self,
        project: &str,
        env: &str,
        name: &str,
    ) -> Result<Option<sluice_store::SecretRow>, String> {
        let cannot = |e: StoreError| format!("cannot read secret `{name}`: {e}");
        match self
            .store
            .secret(project, Some(env), name)
            .await
            .map_err(cannot)?
        {
            Some(row) => Ok(Some(row)),
            None => self.store.secret(project, None, name).await.map_err(cannot),
        }
    }

    /// Decrypts a stored secret; the error is fit for a step's log or a deployment.
    fn open_stored(&self, row: &sluice_store::SecretRow) -> Result<Zeroizing<Vec<u8>>, String> {
        let name = &row.secret.name;
        self.vault.vault.open(&row.secret, &row.sealed).map_err(|e| match e {
            SecretsError::Sealed => format!(
                "secret `{name}` is in the secret store but the server is sealed; run `sluice unseal`, then try again"
            ),
            other => format!("cannot decrypt secret `{name}`: {other}"),
        })
    }

    /// Whether a pipeline run may read its environment's own secrets (its branch must be
    /// the environment's branch); a refusal is an `access.denied` entry.
    async fn run_may_read(
        &self,
        run: &sluice_store::Run,
        step: &str,
        name: &str,
    ) -> Result<(), String> {
        let target = self
            .env_target(&run.project, &run.env, None)
            .await
            .map_err(|e| format!("cannot check access to secret `{name}`: {e}"))?;
        let pipeline = self.pipeline_of(run).await;
        let d = sluice_auth::authorize(&pipeline, Action::ReadSecret, &target);
        if d.allowed {
            return Ok(());
        }
        let denied = NewEvent::new(
            EventKind::AccessDenied,
            format!("run:{}", run.id),
            format!("env/{}/{}", run.project, run.env),
        )
        .project(&run.project)
        .payload(json!({
            "action": Action::ReadSecret, "reason": d.reason, "secret": name,
            "run": run.id, "step": step,
        }));
        if let Err(e) = self.record(vec![denied]).await {
            tracing::warn!(error = %e, "cannot record a refused secret read");
        }
        Err(format!(
            "secret `{name}` of environment `{}` is not available to this run: {}",
            run.env, d.reason
        ))
    }

    fn read_event(
        actor: &str,
        row: &sluice_store::SecretRow,
        extra: serde_json::Value,
    ) -> NewEvent {
        let s = &row.secret;
        let env = scope(s.environment.as_deref());
        let mut payload = json!({ "name": s.name, "environment": env, "version": s.version });
        if let (Some(p), serde_json::Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        NewEvent::new(
            EventKind::SecretRead,
            actor,
            format!("secret/{}/{env}/{}", s.project, s.name),
        )
        .project(&s.project)
        .payload(payload)
    }

    /// Adds a step's `secrets` to its environment: per name the run environment's own
    /// value (only for a pipeline of that environment's branch), else the project-wide one,
    /// else the server configuration's. Every stored value read is a `secret.read` event
    /// (actor `run:<id>`); the error is the line the step's log shows.
    pub(crate) async fn step_secrets(
        &self,
        run: &sluice_store::Run,
        step: &str,
        names: &[String],
        env: &mut BTreeMap<String, String>,
    ) -> Result<(), String> {
        if names.is_empty() {
            return Ok(());
        }
        let _shared = self.vault.gate.read().await;
        let actor = format!("run:{}", run.id);
        let mut events = Vec::new();
        let mut values = Vec::new();
        // The run's access to its environment's own secrets is the same for every name:
        // checked at the first one.
        let mut env_secrets_allowed = false;
        for name in names {
            let Some(row) = self.find_stored(&run.project, &run.env, name).await? else {
                match self.config.secrets.get(name) {
                    Some(v) => values.push((name.clone(), v.clone())),
                    None => {
                        return Err(format!(
                            "secret `{name}` is not set for project `{p}` in environment `{e}`; set it with `sluice secrets set {p} {name} --env {e}` (or without --env for every environment), or under `secrets:` in the server configuration",
                            p = run.project,
                            e = run.env
                        ));
                    }
                }
                continue;
            };
            if row.secret.environment.is_some() && !env_secrets_allowed {
                self.run_may_read(run, step, name).await?;
                env_secrets_allowed = true;
            }
            let value = self.open_stored(&row)?;
            let text = String::from_utf8(value.to_vec()).map_err(|_| {
                format!(
                    "secret `{name}` is not UTF-8 text, so it cannot be an environment variable; store it base64-encoded"
                )
            })?;
            events.push(Self::read_event(
                &actor,
                &row,
                json!({ "run": run.id, "step": step }),
            ));
            values.push((name.clone(), text));
        }
        if !events.is_empty() {
            self.record(events).await.map_err(|e| {
                format!("cannot record the secret reads, so no secret is given: {e}")
            })?;
        }
        env.extend(values);
        Ok(())
    }

    /// Whether the deploy secrets of a release could be read now, without reading them:
    /// the vault is unsealed and each is set for the environment or project-wide. The error
    /// is the deployment's failure reason.
    pub(crate) async fn check_deploy_secrets(
        &self,
        t: &sluice_store::Target,
        deploy: &Deploy,
    ) -> Result<(), String> {
        if deploy.secrets.is_empty() {
            return Ok(());
        }
        if self.vault.is_sealed() {
            let names: Vec<&str> = deploy.secrets.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "the server is sealed, so the secrets of this release ({}) cannot be read; run `sluice unseal`, then deploy again",
                names.join(", ")
            ));
        }
        for s in &deploy.secrets {
            if self
                .find_stored(&t.project, &t.env, &s.name)
                .await?
                .is_none()
            {
                return Err(missing_deploy_secret(t, &s.name));
            }
        }
        Ok(())
    }

    /// Reads a secret a notification channel names (a signing key, a Slack URL), from the
    /// environment `env` (the project's production one) or project-wide; one `secret.read` with actor
    /// `notify:<project>`. The error says what to do.
    pub(crate) async fn channel_secret(
        &self,
        project: &str,
        env: &str,
        name: &str,
    ) -> Result<String, String> {
        let _shared = self.vault.gate.read().await;
        if self.vault.is_sealed() {
            return Err(format!(
                "the server is sealed, so secret `{name}` cannot be read; run `sluice unseal`"
            ));
        }
        let Some(row) = self.find_stored(project, env, name).await? else {
            return Err(format!(
                "secret `{name}` is not in the secret store; add it with `sluice secrets set {project} {name}`"
            ));
        };
        let value = self.open_stored(&row)?;
        let text = String::from_utf8(value.to_vec())
            .map_err(|_| format!("secret `{name}` is not valid UTF-8 text"))?;
        self.record(vec![Self::read_event(
            &format!("notify:{project}"),
            &row,
            json!({ "purpose": "notification" }),
        )])
        .await
        .map_err(|e| format!("cannot record the secret read, so it is not used: {e}"))?;
        Ok(text)
    }

    /// Reads the deploy secrets of a release for its target environment (one `secret.read`
    /// each, actor `deploy:<project>/<service>/<env>`). The error is the failure reason.
    pub(crate) async fn deploy_secrets(
        &self,
        t: &sluice_store::Target,
        deploy: &Deploy,
    ) -> Result<Vec<InstanceSecret>, String> {
        if deploy.secrets.is_empty() {
            return Ok(Vec::new());
        }
        let _shared = self.vault.gate.read().await;
        if self.vault.is_sealed() {
            return Err(format!(
                "the server is sealed, so the secrets of {}/{} in {} cannot be read; run `sluice unseal`",
                t.project, t.service, t.env
            ));
        }
        let actor = format!("deploy:{}/{}/{}", t.project, t.service, t.env);
        let mut events = Vec::new();
        let mut out = Vec::new();
        for s in &deploy.secrets {
            let Some(row) = self.find_stored(&t.project, &t.env, &s.name).await? else {
                return Err(missing_deploy_secret(t, &s.name));
            };
            let value = self.open_stored(&row)?;
            events.push(Self::read_event(
                &actor,
                &row,
                json!({ "service": t.service }),
            ));
            out.push(InstanceSecret {
                spec: s.clone(),
                value,
            });
        }
        self.record(events)
            .await
            .map_err(|e| format!("cannot record the secret reads, so no secret is given: {e}"))?;
        Ok(out)
    }

    /// Writes an instance's secret files and returns its start command and variables.
    /// Secret files of instances that are gone are removed first.
    pub(crate) async fn instance_secret_env(
        &self,
        instance: &str,
        secrets: &[InstanceSecret],
        start: &str,
        env_vars: &BTreeMap<String, String>,
    ) -> Result<InstanceSecretEnv, String> {
        let mut out = InstanceSecretEnv {
            command: start.to_owned(),
            env_vars: env_vars.clone(),
        };
        if secrets.is_empty() {
            return Ok(out);
        }
        let root = self.config.data_dir.join(INSTANCE_SECRETS_DIR);
        let live: Vec<String> = self
            .fleet
            .runtime
            .list()
            .into_iter()
            .filter(|i| i.state.is_active())
            .map(|i| i.id)
            .collect();
        let dir = root.join(instance);
        let files: Vec<(String, bool, Zeroizing<Vec<u8>>)> = secrets
            .iter()
            .map(|s| (s.spec.name.clone(), s.spec.file, s.value.clone()))
            .collect();
        let (root2, dir2, instance2) = (root.clone(), dir.clone(), instance.to_owned());
        let written = tokio::task::spawn_blocking(move || {
            sweep_instance_secrets(&root2, &live, &instance2);
            write_instance_secrets(&root2, &dir2, &files)
        })
        .await
        .map_err(|e| format!("cannot write the instance's secret files: {e}"))?
        .map_err(|e| {
            format!(
                "cannot write the instance's secret files in {}: {e}",
                dir.display()
            )
        })?;
        for (name, path) in written.files {
            out.env_vars
                .insert(format!("{name}_FILE"), path.display().to_string());
        }
        let q = |p: &Path| {
            String::from_utf8_lossy(&sh_quote(p.display().to_string().as_bytes())).into_owned()
        };
        let source = match &written.env_file {
            Some(env_file) => format!(". {}\n", q(env_file)),
            None => String::new(),
        };
        // The instance's output reaches its log file through `sed`, which masks every form
        // of its secrets as the lines are written: the runtime appends what the process
        // group prints straight to the file, and the file is read by people and backups.
        // The FIFO and the script live in the private directory; `sed` ignores the
        // stop signals so it drains the last lines, and ends when the service has exited.
        // A sed that knows `-u` (GNU sed) writes each line at once; one without it
        // (BusyBox's, in a container image) still masks, but writes in blocks. Candidates
        // are run by path: BusyBox's shell would run its own applet for a bare `sed`.
        let (fifo, script) = (dir.join(MASK_FIFO), dir.join(MASK_SCRIPT));
        out.command = format!(
            "{source}rm -f {f} && mkfifo -m 600 {f} || exit 1\n\
             sed=sed; for c in /bin/sed /usr/bin/sed /usr/local/bin/sed; do \
             \"$c\" -u q </dev/null >/dev/null 2>&1 && {{ sed=\"$c -u\"; break; }}; done\n\
             (trap '' TERM INT HUP; LC_ALL=C exec $sed -f {s}) < {f} &\n\
             exec > {f} 2>&1\n{start}",
            f = q(&fifo),
            s = q(&script),
        );
        Ok(out)
    }
}

/// The event of writing or deleting a secret (the store adds the version of a write).
fn change_event(
    kind: EventKind,
    actor: String,
    project: &str,
    env: Option<&str>,
    name: &str,
) -> NewEvent {
    NewEvent::new(
        kind,
        actor,
        format!("secret/{project}/{}/{name}", scope(env)),
    )
    .project(project)
    .payload(json!({ "name": name, "environment": scope(env) }))
}

fn missing_deploy_secret(t: &sluice_store::Target, name: &str) -> String {
    format!(
        "secret `{name}` is not set for project `{p}` in environment `{e}`; set it with `sluice secrets set {p} {name} --env {e}` (or without --env for every environment), then deploy again",
        p = t.project,
        e = t.env
    )
}

/// What [`write_instance_secrets`] wrote.
struct Written {
    env_file: Option<PathBuf>,
    files: Vec<(String, PathBuf)>,
}

/// The FIFO an instance's output passes through on its way to the log.
const MASK_FIFO: &str = "output";
/// The `sed` script that masks the instance's secrets in its output.
const MASK_SCRIPT: &str = "mask.sed";

/// A `sed` script replacing every form of `values` (each line of a multi-line form, longest
/// first) with the masker's placeholder. Patterns are basic regular expressions with every
/// special character escaped; GNU sed reads `+?(){}|` as literals in them.
fn mask_script(values: &[&[u8]]) -> Vec<u8> {
    let mut pats: Vec<Vec<u8>> = Vec::new();
    for v in values {
        let mut forms: Vec<Vec<u8>> = sluice_secrets::encoded_forms(v)
            .into_iter()
            .map(String::into_bytes)
            .collect();
        forms.push(v.to_vec());
        for f in forms {
            for line in f.split(|b| *b == b'\n') {
                if line.len() >= 4 && !pats.iter().any(|p| p == line) {
                    pats.push(line.to_vec());
                }
            }
        }
    }
    pats.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut out = Vec::new();
    for p in pats {
        out.extend_from_slice(b"s/");
        for &b in &p {
            if b"\\/.*[]^$".contains(&b) {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.extend_from_slice(b"/");
        out.extend_from_slice(sluice_runner::mask::MASKED.as_bytes());
        out.extend_from_slice(b"/g\n");
    }
    out
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Writes an instance's secret directory anew: one 0600 file per `file: true` secret, one
/// shell file exporting the others and the `sed` script masking them all.
fn write_instance_secrets(
    root: &Path,
    dir: &Path,
    secrets: &[(String, bool, Zeroizing<Vec<u8>>)],
) -> std::io::Result<Written> {
    private_dir(root)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    private_dir(dir)?;
    let mut written = Written {
        env_file: None,
        files: Vec::new(),
    };
    let mut script = Zeroizing::new(Vec::new());
    for (name, file, value) in secrets {
        if *file {
            let path = dir.join(name);
            write_private(&path, value)?;
            written.files.push((name.clone(), path));
        } else {
            if value.contains(&0) {
                return Err(std::io::Error::other(format!(
                    "secret `{name}` contains a NUL byte, which an environment variable cannot hold; use `{{name: {name}, file: true}}`"
                )));
            }
            script.extend_from_slice(b"export ");
            script.extend_from_slice(name.as_bytes());
            script.push(b'=');
            script.extend_from_slice(&sh_quote(value));
            script.push(b'\n');
        }
    }
    if !script.is_empty() {
        let path = dir.join(ENV_FILE);
        write_private(&path, &script)?;
        written.env_file = Some(path);
    }
    let values: Vec<&[u8]> = secrets.iter().map(|(_, _, v)| v.as_slice()).collect();
    write_private(
        &dir.join(MASK_SCRIPT),
        &Zeroizing::new(mask_script(&values)),
    )?;
    Ok(written)
}

/// Removes the secret directories of instances that no longer run (`keep` is starting).
fn sweep_instance_secrets(root: &Path, live: &[String], keep: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != keep
            && !live.contains(&name)
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove the secret files of a stopped instance");
        }
    }
}

/// Reads the key environment variable once (for `Server::start`).
pub fn key_from_env() -> Result<Option<Kek>, SecretsError> {
    Kek::from_env(KEK_ENV)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_sed_script_masks_every_form_of_values_with_special_characters() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let values: [&[u8]; 3] = [
            b"a.b*c[d]^$/\\e&f+g?",
            b"line one\nline two",
            b"plain-secret-1",
        ];
        let script = tmp.path().join("mask.sed");
        std::fs::write(&script, mask_script(&values)).unwrap();
        let mut input = Vec::new();
        for v in values {
            for form in sluice_secrets::encoded_forms(v) {
                writeln!(input, "x {form} y").unwrap();
            }
            input.extend_from_slice(b"raw ");
            input.extend_from_slice(v);
            input.push(b'\n');
        }
        input.extend_from_slice(b"a_b_c_d nothing to hide\n");
        let mut child = std::process::Command::new("sed")
            .env("LC_ALL", "C")
            .arg("-u")
            .arg("-f")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        for v in values {
            for form in sluice_secrets::encoded_forms(v) {
                for line in form.split('\n').filter(|l| l.len() >= 4) {
                    assert!(!out.contains(line), "{line:?} survived:\n{out}");
                }
            }
        }
        assert!(out.contains("a_b_c_d nothing to hide"), "{out}");
        assert!(out.matches("[MASKED]").count() > 20, "{out}");
    }

    #[test]
    fn shell_quoting_survives_quotes_and_newlines() {
        assert_eq!(sh_quote(b"a'b\nc"), b"'a'\\''b\nc'".to_vec());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf %s {}",
                String::from_utf8(sh_quote(b"it's $HOME `x` \"q\"\n")).unwrap()
            ))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"it's $HOME `x` \"q\"\n");
    }

    #[test]
    fn environment_names_are_checked() {
        assert_eq!(parse_env(None).unwrap(), None);
        assert_eq!(parse_env(Some("*")).unwrap(), None);
        assert_eq!(parse_env(Some("")).unwrap(), None);
        assert_eq!(
            parse_env(Some("prod-eu")).unwrap().as_deref(),
            Some("prod-eu")
        );
        for bad in ["../x", "Prod", "-x", "a/b", "é", &"a".repeat(64)] {
            assert!(parse_env(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn instance_secret_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("instance-secrets");
        let dir = root.join("i1");
        let secrets = vec![
            ("TLS".to_owned(), true, Zeroizing::new(b"key\n".to_vec())),
            ("DB".to_owned(), false, Zeroizing::new(b"p'w".to_vec())),
        ];
        let w = write_instance_secrets(&root, &dir, &secrets).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&w.files[0].1), 0o600);
        let env_file = w.env_file.unwrap();
        assert_eq!(mode(&env_file), 0o600);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". '{}'\nprintf %s \"$DB\"", env_file.display()))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"p'w");
        sweep_instance_secrets(&root, &[], "other");
        assert!(!dir.exists());
    }
}
