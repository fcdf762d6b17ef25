//! Who is asking, and may they: the first start's bootstrap (first admin, one-time setup
//! token), turning credentials (API tokens, session cookies) into a [`Caller`], logins with
//! rate limiting, users, grants and tokens, and [`Engine::authorize`], the one place the
//! server asks `sluice_auth::authorize` with the protection of an environment looked up.
//!
//! Protection, approvals and the wait timer of an environment come from `sluice.yml`. A
//! developer must not be able to lift them by pushing a commit somewhere, so the stricter
//! value wins across the configurations at the heads of all of the project's tracked
//! branches (and the release being deployed, when there is one).

use std::sync::Mutex;

use serde_json::json;
use sluice_auth::password::{dummy_verify, hash_password, needs_rehash, verify_password};
use sluice_auth::token::{generate_token, hash_token};
use sluice_auth::{
    Action, ApprovalRule, Grant, LimiterConfig, LoginLimiter, Principal, Scope, Target, TokenKind,
    authorize,
};
use sluice_core::{EventKind, NewEvent};
use sluice_store::{SessionRow, TokenRow, UserRow};

use super::{Engine, EngineError, now_ms};

/// How long a browser session lasts (from sign-in; not extended by use).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// How long a one-time setup token stays valid.
pub const SETUP_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a token made by `sluice login` lasts.
pub const LOGIN_TOKEN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// The first administrator's name.
pub const FIRST_ADMIN: &str = "admin";

/// Who made a request, resolved from its credentials.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What they may do.
    pub principal: Principal,
    /// The user's name (`None` when anonymous).
    pub user: Option<String>,
    /// The session id when signed in through the browser (CSRF tokens are bound to it).
    pub session: Option<String>,
}

impl Caller {
    /// A caller without credentials.
    pub fn anonymous() -> Caller {
        Caller {
            principal: Principal::Anonymous,
            user: None,
            session: None,
        }
    }

    /// The event actor: `user:NAME`, `pipeline:PROJECT@BRANCH`, or `anonymous`.
    pub fn actor(&self) -> String {
        match (&self.user, &self.principal) {
            (Some(u), _) => format!("user:{u}"),
            (None, Principal::Pipeline { project, branch }) => {
                format!("pipeline:{project}@{branch}")
            }
            (None, _) => "anonymous".into(),
        }
    }
}

/// Why credentials were not accepted; the message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub String);

/// An environment's protection as the configurations say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvPolicy {
    /// Deploy-type actions need releaser.
    pub protected: bool,
    /// The branch whose pipelines deploy here.
    pub branch: Option<String>,
    /// The approvals and wait timer of a manual deploy.
    pub gate: ApprovalRule,
}

/// Keys and counters of the authentication layer.
pub struct Access {
    /// HMAC key for CSRF tokens and signed action links (`DATA_DIR/auth.key`).
    pub key: [u8; 32],
    limiter: Mutex<LoginLimiter>,
}

impl Access {
    /// Loads or creates the key in the data directory.
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<Access> {
        let path = data_dir.join("auth.key");
        let key = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes);
                k
            }
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a 32-byte key; delete it to make a new one (signed-in browsers \
                     will have to sign in again)",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| std::io::Error::other(e.to_string()))?;
                write_private(&path, &k)?;
                k
            }
            Err(e) => return Err(e),
        };
        Ok(Access {
            key,
            limiter: Mutex::new(LoginLimiter::new(LimiterConfig::default())),
        })
    }
}

/// Writes a file readable by its owner only (0600), atomically: a temporary file beside it,
/// synced, then renamed over it. Keys, credentials, secret files.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Engine {
    /// On the very first start (no users yet): creates the first admin without a password,
    /// a one-time setup token (returned, to be printed) and, if configured, the admin API
    /// token. On a later start where still no one can sign in (the first setup token
    /// expired unused), a new setup token for an admin. Otherwise `None`.
    pub async fn bootstrap(&self) -> Result<Option<String>, EngineError> {
        let users = self.store.users().await?;
        if !users.is_empty() {
            let now = now_ms();
            let mut admin = None;
            for u in users.into_iter().filter(|u| !u.disabled) {
                let usable_token = self
                    .store
                    .tokens(&u.name)
                    .await?
                    .iter()
                    .any(|t| t.record().check(now).is_ok());
                if !u.password_hash.is_empty() || usable_token {
                    return Ok(None);
                }
                if u.admin && admin.is_none() {
                    admin = Some(u.name);
                }
            }
            return match admin {
                Some(a) => Ok(Some(self.new_setup_token_for(&a).await?)),
                None => Ok(None),
            };
        }
        self.store
            .create_user(
                FIRST_ADMIN,
                "",
                true,
                NewEvent::new(
                    EventKind::UserCreated,
                    "system",
                    format!("user/{FIRST_ADMIN}"),
                )
                .payload(json!({"admin": true, "first_start": true})),
            )
            .await?;
        if let Some(token) = &self.config.admin_token {
            self.store
                .create_token(
                    &TokenRow {
                        id: "bootstrap".into(),
                        user: FIRST_ADMIN.into(),
                        name: "admin token from the server configuration".into(),
                        hash: hash_token(token),
                        scopes: Scope::ALL.to_vec(),
                        created_ms: now_ms(),
                        expires_ms: None,
                        revoked_ms: None,
                        last_used_ms: None,
                    },
                    NewEvent::new(EventKind::TokenCreated, "system", "token/bootstrap")
                        .payload(json!({"user": FIRST_ADMIN, "from": "admin_token"})),
                )
                .await?;
        }
        Ok(Some(self.new_setup_token_for(FIRST_ADMIN).await?))
    }

    /// Mints a one-time setup token with which `user` sets a password (first start, a new
    /// user, a reset).
    pub async fn new_setup_token_for(&self, user: &str) -> Result<String, EngineError> {
        let (plain, hash) = minted(TokenKind::Setup)?;
        self.store
            .create_setup_token(&hash, user, now_ms() + SETUP_TTL_MS)
            .await?;
        Ok(plain)
    }

    /// Uses a setup token to set the password of the user it was made for, and returns
    /// that user. Refused if the token is unknown, used or expired, or if `user` is given
    /// and is not the token's user.
    pub async fn complete_setup(
        &self,
        setup_token: &str,
        user: Option<&str>,
        password: &str,
    ) -> Result<UserRow, EngineError> {
        sluice_auth::password::check_password_policy(password).map_err(|e| {
            EngineError::BadRequest {
                message: e.to_string(),
                hint: Some("choose a longer password".into()),
            }
        })?;
        let refused = || EngineError::Unauthorized("invalid, used or expired setup token".into());
        let used = if TokenKind::of(setup_token) == Some(TokenKind::Setup) {
            self.store
                .use_setup_token(&hash_token(setup_token), now_ms())
                .await?
        } else {
            None
        };
        let name = match used {
            Some(n) if user.is_none_or(|u| u == n) => n,
            _ => {
                self.login_failed(
                    "setup",
                    json!({"reason": "invalid, used or expired setup token", "user": user}),
                )
                .await?;
                return Err(refused());
            }
        };
        let u = self.store.user(&name).await?.ok_or_else(refused)?;
        let password = password.to_string();
        let phc = blocking(move || hash_password(&password))
            .await?
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        self.store
            .set_password(
                &name,
                &phc,
                NewEvent::new(
                    EventKind::UserUpdated,
                    format!("user:{name}"),
                    format!("user/{name}"),
                )
                .payload(json!({"password": "set with a setup token"})),
            )
            .await?;
        Ok(u)
    }

    /// Checks a user's password, with rate limiting per user name and per source address.
    /// Success and failure are audit entries. A wrong user and a wrong password are the
    /// same answer, and take the same time.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        source: &str,
    ) -> Result<UserRow, EngineError> {
        let now = now_ms();
        let keys = [format!("user:{name}"), format!("addr:{source}")];
        let limited = {
            let limiter = self
                .access
                .limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            keys.iter().find_map(|k| limiter.check(k, now).err())
        };
        if let Some(wait) = limited {
            self.login_failed(
                &format!("user/{name}"),
                json!({"reason": "rate limited", "retry_after_ms": wait.0}),
            )
            .await?;
            return Err(EngineError::RateLimited(wait.0));
        }
        let user = self.store.user(name).await?;
        // Argon2 takes tens of milliseconds of CPU: off the async workers.
        let (phc, candidate) = (
            user.as_ref()
                .map(|u| u.password_hash.clone())
                .unwrap_or_default(),
            password.to_string(),
        );
        // A hash made with older parameters is replaced by one with the current ones.
        let (ok, rehashed) = blocking(move || {
            if phc.is_empty() {
                dummy_verify(&candidate);
                (false, None)
            } else if verify_password(&phc, &candidate) {
                let fresh = needs_rehash(&phc)
                    .then(|| hash_password(&candidate).ok())
                    .flatten();
                (true, fresh)
            } else {
                (false, None)
            }
        })
        .await?;
        let user = user.filter(|u| ok && !u.disabled);
        if let (Some(u), Some(phc)) = (&user, rehashed) {
            self.store
                .set_password(
                    &u.name,
                    &phc,
                    NewEvent::new(
                        EventKind::UserUpdated,
                        format!("user:{}", u.name),
                        format!("user/{}", u.name),
                    )
                    .payload(json!({"password": "re-hashed with current parameters"})),
                )
                .await?;
        }
        {
            let mut limiter = self
                .access
                .limiter
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for k in &keys {
                if user.is_some() {
                    limiter.record_success(k);
                } else {
                    limiter.record_failure(k, now);
                }
            }
            limiter.sweep(now);
        }
        match user {
            Some(u) => Ok(u),
            None => {
                self.login_failed(
                    &format!("user/{name}"),
                    json!({"reason": "wrong user name or password"}),
                )
                .await?;
                Err(EngineError::Unauthorized(
                    "wrong user name or password".into(),
                ))
            }
        }
    }

    /// Records a refused sign-in or setup (`auth.login_failed`).
    async fn login_failed(
        &self,
        subject: &str,
        payload: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.record(vec![
            NewEvent::new(EventKind::AuthLoginFailed, "anonymous", subject).payload(payload),
        ])
        .await
    }

    /// Starts a browser session for a signed-in user; returns the session id (the cookie).
    /// Expired sessions are deleted on the way, so the table holds only live ones.
    pub async fn start_session(&self, user: &str) -> Result<String, EngineError> {
        let (plain, hash) = minted(TokenKind::Session)?;
        let now = now_ms();
        self.store.prune_sessions(now).await?;
        self.store
            .create_session(
                &SessionRow {
                    id_hash: hash,
                    user: user.to_string(),
                    created_ms: now,
                    expires_ms: now + SESSION_TTL_MS,
                    last_seen_ms: now,
                },
                vec![
                    NewEvent::new(
                        EventKind::AuthLogin,
                        format!("user:{user}"),
                        format!("user/{user}"),
                    )
                    .payload(json!({"via": "browser"})),
                ],
            )
            .await?;
        Ok(plain)
    }

    /// Ends a browser session.
    pub async fn end_session(&self, caller: &Caller) -> Result<(), EngineError> {
        if let Some(s) = &caller.session {
            self.store
                .delete_session(
                    &hash_token(s),
                    vec![NewEvent::new(
                        EventKind::AuthLogout,
                        caller.actor(),
                        format!("user/{}", caller.user.as_deref().unwrap_or("")),
                    )],
                )
                .await?;
        }
        Ok(())
    }

    /// Mints an API token for `user`; returns the stored row and the plaintext (shown once).
    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        scopes: Vec<Scope>,
        ttl_ms: Option<i64>,
        actor: &str,
    ) -> Result<(TokenRow, String), EngineError> {
        if scopes.is_empty() {
            return Err(super::bad(
                "a token needs at least one scope",
                Some("e.g. --scope read --scope deploy".to_string()),
            ));
        }
        let (plain, hash) = minted(TokenKind::Api)?;
        let now = now_ms();
        let id = super::random_hex(8);
        let row = self
            .store
            .create_token(
                &TokenRow {
                    id: id.clone(),
                    user: user.to_string(),
                    name: name.to_string(),
                    hash,
                    scopes: scopes.clone(),
                    created_ms: now,
                    expires_ms: ttl_ms.map(|t| now + t),
                    revoked_ms: None,
                    last_used_ms: None,
                },
                NewEvent::new(EventKind::TokenCreated, actor, format!("token/{id}")).payload(
                    json!({
                        "user": user, "name": name, "scopes": scopes,
                        "expires_ms": ttl_ms.map(|t| now + t),
                    }),
                ),
            )
            .await?;
        Ok((row, plain))
    }

    /// Resolves an `Authorization: Bearer` token.
    pub async fn caller_from_token(&self, token: &str) -> Result<Caller, Rejected> {
        let bad = |why: &str| Rejected(format!("the API token is {why}"));
        if TokenKind::of(token) != Some(TokenKind::Api) {
            return Err(bad("malformed (expected slc_a_…)"));
        }
        let row = self
            .store
            .token_by_hash(&hash_token(token))
            .await
            .map_err(|e| Rejected(format!("cannot check the token: {e}")))?
            .ok_or_else(|| bad("unknown"))?;
        let rec = row.record();
        if !rec.matches(token) {
            return Err(bad("unknown"));
        }
        let now = now_ms();
        rec.check(now).map_err(|e| Rejected(e.to_string()))?;
        let user = self.active_user(&row.user).await?;
        let _ = self.store.touch_token(&row.id, now).await;
        let grants = self.grants_of(&user).await?;
        Ok(Caller {
            principal: Principal::Token {
                user: user.name.clone(),
                grants,
                scopes: row.scopes,
            },
            user: Some(user.name),
            session: None,
        })
    }

    /// Resolves a session cookie.
    pub async fn caller_from_session(&self, session: &str) -> Result<Caller, Rejected> {
        let gone = || Rejected("the session has ended; sign in again".into());
        if TokenKind::of(session) != Some(TokenKind::Session) {
            return Err(gone());
        }
        let hash = hash_token(session);
        let row = self
            .store
            .session(&hash)
            .await
            .map_err(|e| Rejected(format!("cannot check the session: {e}")))?
            .ok_or_else(gone)?;
        let now = now_ms();
        if row.expires_ms <= now {
            return Err(gone());
        }
        let user = self.active_user(&row.user).await?;
        // The lifetime is absolute, like the cookie's Max-Age: a stolen cookie ends too.
        let _ = self.store.touch_session(&hash, now, row.expires_ms).await;
        Ok(Caller {
            principal: self.user_principal(&user).await?,
            user: Some(user.name),
            session: Some(session.to_string()),
        })
    }

    async fn active_user(&self, name: &str) -> Result<UserRow, Rejected> {
        match self.store.user(name).await {
            Ok(Some(u)) if !u.disabled => Ok(u),
            Ok(Some(_)) => Err(Rejected(format!("user {name} is disabled"))),
            Ok(None) => Err(Rejected(format!("user {name} no longer exists"))),
            Err(e) => Err(Rejected(format!("cannot check the user: {e}"))),
        }
    }

    /// A user's grants; an instance admin's flag counts as admin everywhere.
    async fn grants_of(&self, user: &UserRow) -> Result<Vec<Grant>, Rejected> {
        let mut grants = self
            .store
            .grants(&user.name)
            .await
            .map_err(|e| Rejected(format!("cannot read grants: {e}")))?;
        if user.admin {
            grants.push(Grant::new(sluice_auth::Role::Admin, None, None));
        }
        Ok(grants)
    }

    async fn user_principal(&self, user: &UserRow) -> Result<Principal, Rejected> {
        Ok(Principal::User {
            name: user.name.clone(),
            grants: self.grants_of(user).await?,
            admin: user.admin,
        })
    }

    /// An environment's protection: the stricter value across the configurations at the
    /// heads of the project's branches, and at `commit` if given.
    ///
    /// The environment's branch (whose pipelines deploy there without approval and read its
    /// secrets) is pinned in the store the first time all configurations agree on it. After
    /// that only the configuration at the head of the pinned branch itself can move it, so
    /// a developer's new branch whose `sluice.yml` names itself production's branch changes
    /// nothing.
    pub async fn env_policy(
        &self,
        project: &str,
        env: &str,
        commit: Option<&str>,
    ) -> Result<EnvPolicy, EngineError> {
        let mirror = self.mirror_of(project).await?;
        let heads = self.store.branch_heads(project).await?;
        let mut commits: Vec<(Option<String>, String)> = heads
            .into_iter()
            .map(|h| (Some(h.branch), h.commit))
            .collect();
        commits.extend(commit.map(|c| (None, c.to_string())));
        let mut policy = EnvPolicy::default();
        // (the branch whose head said it, the branch it names for the environment)
        let mut claims: Vec<(Option<String>, String)> = Vec::new();
        for (head_of, c) in commits {
            let Ok((_, parsed)) = self.config_at(&mirror, project, &c).await else {
                continue;
            };
            let Ok(config) = parsed.as_ref() else {
                continue;
            };
            if let Some(e) = config.environments.iter().find(|e| e.name == env) {
                policy.protected |= e.protected;
                policy.gate.required = policy.gate.required.max(e.approvals);
                let wait = i64::try_from(e.wait_timer.as_millis()).unwrap_or(i64::MAX);
                policy.gate.wait_ms = policy.gate.wait_ms.max(wait);
                claims.push((head_of, e.branch.clone()));
            }
        }
        let key = format!("env_branch/{project}/{env}");
        let pinned = self.store.setting(&key).await?;
        policy.branch = match pinned {
            Some(b) => {
                // The pinned branch's own configuration may move it.
                let moved = claims
                    .iter()
                    .find(|(head_of, _)| head_of.as_deref() == Some(b.as_str()))
                    .map(|(_, named)| named.clone())
                    .filter(|named| *named != b);
                if let Some(to) = &moved {
                    self.store.set_setting(&key, to).await?;
                }
                Some(moved.unwrap_or(b))
            }
            None => {
                let first = claims.first().map(|(_, b)| b.clone());
                match first {
                    Some(b) if claims.iter().all(|(_, named)| *named == b) => {
                        self.store.set_setting(&key, &b).await?;
                        Some(b)
                    }
                    // The configurations disagree: no branch is the environment's own.
                    _ => None,
                }
            }
        };
        Ok(policy)
    }

    /// Whom a pipeline run acts as: its project and branch. A run started by the branch
    /// moving (push, poll, webhook, registration) counts as the branch's; a run asked for
    /// by a person (manual, re-run) only while its commit is the branch's head, so a manual
    /// run of some other commit "on" production's branch is not production's pipeline.
    pub async fn pipeline_of(&self, run: &sluice_store::Run) -> Principal {
        let moved_by_branch = matches!(
            run.trigger.as_str(),
            "push" | "poll" | "webhook" | "register" | "api"
        );
        let on_branch = moved_by_branch
            || self
                .store
                .branch_heads(&run.project)
                .await
                .ok()
                .into_iter()
                .flatten()
                .any(|h| h.branch == run.branch && h.commit == run.commit);
        Principal::Pipeline {
            project: run.project.clone(),
            branch: if on_branch {
                run.branch.clone()
            } else {
                format!(
                    "{} (commit {} is not its head)",
                    run.branch,
                    super::short(&run.commit)
                )
            },
        }
    }

    /// The target of an action on an environment, with its protection looked up.
    pub async fn env_target(
        &self,
        project: &str,
        env: &str,
        commit: Option<&str>,
    ) -> Result<Target, EngineError> {
        let p = self.env_policy(project, env, commit).await?;
        Ok(Target::env(project, env, p.protected, p.branch.as_deref()))
    }

    /// Allows or refuses `action` on `target` for `caller`. A refusal is an audit entry
    /// (`access.denied`) and an [`EngineError::Forbidden`] (or `Unauthorized` when
    /// anonymous) naming the role needed.
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        target: &Target,
    ) -> Result<(), EngineError> {
        let d = authorize(&caller.principal, action, target);
        if d.allowed {
            return Ok(());
        }
        let mut ev = NewEvent::new(
            EventKind::AccessDenied,
            caller.actor(),
            match (&target.project, &target.environment) {
                (Some(p), Some(e)) => format!("env/{p}/{e}"),
                (Some(p), None) => format!("project/{p}"),
                _ => "instance".into(),
            },
        )
        .payload(json!({"action": action, "reason": d.reason}));
        if let Some(p) = &target.project {
            ev = ev.project(p);
        }
        self.record(vec![ev]).await?;
        Err(match caller.principal {
            Principal::Anonymous => EngineError::Unauthorized(d.reason),
            _ => EngineError::Forbidden(d.reason),
        })
    }

    /// Shorthand: authorize an action on an environment, its protection looked up.
    pub async fn authorize_env(
        &self,
        caller: &Caller,
        action: Action,
        project: &str,
        env: &str,
    ) -> Result<(), EngineError> {
        let target = self.env_target(project, env, None).await?;
        self.authorize(caller, action, &target).await
    }

    /// Shorthand: authorize an action on a whole project.
    pub async fn authorize_project(
        &self,
        caller: &Caller,
        action: Action,
        project: &str,
    ) -> Result<(), EngineError> {
        self.authorize(caller, action, &Target::project(project))
            .await
    }

    /// Whether `caller` may view `project` (for filtering listings; no audit entry).
    pub fn may_view(&self, caller: &Caller, project: &str) -> bool {
        self.may(caller, Action::ViewProject, Some(project))
    }

    /// Whether `caller` may see an event: those of a project with the viewer role there,
    /// the instance's own (sign-ins, users, the server) with the developer role on all
    /// projects (the audit log).
    pub fn may_see_event(&self, caller: &Caller, project: Option<&str>) -> bool {
        match project {
            Some(p) => self.may_view(caller, p),
            None => self.may(caller, Action::ViewAudit, None),
        }
    }

    /// Whether `caller` may do `action` on `project`, or instance-wide when `None` (for
    /// filtering listings; no audit entry).
    pub fn may(&self, caller: &Caller, action: Action, project: Option<&str>) -> bool {
        let target = project.map(Target::project).unwrap_or_default();
        authorize(&caller.principal, action, &target).allowed
    }
}

/// Runs CPU-bound work (password hashing) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))
}

fn minted(kind: TokenKind) -> Result<(String, String), EngineError> {
    generate_token(kind).map_err(|e| EngineError::Internal(e.to_string()))
}
