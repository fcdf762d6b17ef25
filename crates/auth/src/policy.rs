//! Authorization: roles granted per project and environment, the actions sluice performs,
//! protected environments, and the one decision function [`authorize`].
//!
//! | action | minimum role | on a protected environment | token scope |
//! |---|---|---|---|
//! | ViewProject | viewer | — | read |
//! | ViewAudit | developer | — | read |
//! | RunPipeline | developer | — | run |
//! | CancelRun | developer | — | run |
//! | Deploy | developer | releaser | deploy |
//! | Rollback | developer | releaser | deploy |
//! | Promote | developer | releaser | deploy |
//! | PauseResumeAbort | developer | releaser | deploy |
//! | Approve | releaser | releaser | deploy |
//! | ReadSecret | developer | releaser | secrets |
//! | WriteSecret | developer | releaser | secrets |
//! | ListSecrets | developer | — | secrets |
//! | ManageProject | admin | — | admin |
//! | ManageUsers | admin on the whole instance | — | admin |
//! | ManageTokens | any signed-in user (own tokens) | — | admin |
//! | Unseal | admin on the whole instance | — | admin |
//! | AckIncident | developer | — | operate |
//! | ResolveIncident | developer | — | operate |
//! | ManageSilences | releaser | — | operate |
//!
//! The effective role is the highest role among the grants that match the target: a grant
//! field that is `None` matches anything, a named one only that project or environment. So
//! an environment-only grant counts only for targets that name that environment, and a
//! target without a project (adding a project) is matched only by all-project grants.
//! ManageUsers and Unseal ignore the target and need an admin grant on all projects and
//! environments. A user's `admin` flag allows everything. A pipeline may only Deploy and
//! ReadSecret, on its own project, on an environment whose branch is the pipeline's branch
//! (protected or not: the branch is the protection). Anonymous principals may do nothing.

use serde::{Deserialize, Serialize};

use crate::{AuthError, Scope};

/// A role, ordered by power: viewer < developer < releaser < admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees projects, runs, logs and deployments.
    Viewer,
    /// Runs pipelines, deploys unprotected environments, handles incidents.
    Developer,
    /// Also deploys protected environments, approves, uses their secrets.
    Releaser,
    /// Also manages projects; with an all-project grant, users and unsealing.
    Admin,
}

impl Role {
    /// All roles, weakest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Developer, Role::Releaser, Role::Admin];

    /// The role's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Releaser => "releaser",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;

    /// Parses a role name, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, AuthError> {
        let s = s.trim();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| AuthError::UnknownRole(s.to_string()))
    }
}

/// A role granted on a project and environment; `None` means all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The granted role.
    pub role: Role,
    /// The project, or `None` for all projects.
    pub project: Option<String>,
    /// The environment, or `None` for all environments.
    pub environment: Option<String>,
}

impl Grant {
    /// A grant of `role` on `project` and `environment` (`None` = all).
    pub fn new(role: Role, project: Option<&str>, environment: Option<&str>) -> Self {
        Grant {
            role,
            project: project.map(str::to_string),
            environment: environment.map(str::to_string),
        }
    }

    /// Whether this grant applies to the given project and environment.
    pub fn matches(&self, project: Option<&str>, environment: Option<&str>) -> bool {
        fn field(grant: &Option<String>, target: Option<&str>) -> bool {
            grant.as_deref().is_none_or(|g| Some(g) == target)
        }
        field(&self.project, project) && field(&self.environment, environment)
    }
}

/// The highest role among `grants` matching the project and environment, if any.
pub fn effective_role(
    grants: &[Grant],
    project: Option<&str>,
    environment: Option<&str>,
) -> Option<Role> {
    grants
        .iter()
        .filter(|g| g.matches(project, environment))
        .map(|g| g.role)
        .max()
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Principal {
    /// A signed-in user (password session).
    User {
        /// User name.
        name: String,
        /// The user's grants.
        grants: Vec<Grant>,
        /// Instance administrator: may do everything.
        admin: bool,
    },
    /// An API token. An admin owner's power reaches a token only through its grants.
    Token {
        /// The owning user's name.
        user: String,
        /// The owner's grants, already narrowed to what the token was created for.
        grants: Vec<Grant>,
        /// What the token may be used for.
        scopes: Vec<Scope>,
    },
    /// A pipeline run of `project` on `branch`.
    Pipeline {
        /// The project the run belongs to.
        project: String,
        /// The branch the run was started for.
        branch: String,
    },
    /// No credentials.
    Anonymous,
}

/// Something sluice does that needs permission; see the module docs for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// View a project, its runs, logs, deployments and environments.
    ViewProject,
    /// View the audit log.
    ViewAudit,
    /// Start a pipeline run.
    RunPipeline,
    /// Cancel a pipeline run.
    CancelRun,
    /// Deploy to an environment.
    Deploy,
    /// Roll an environment back to an earlier release.
    Rollback,
    /// Promote a release into an environment.
    Promote,
    /// Pause, resume or abort a rollout in progress.
    PauseResumeAbort,
    /// Approve a gated rollout.
    Approve,
    /// Have secrets injected into a deploy or run (read their values).
    ReadSecret,
    /// Create, change or delete secrets.
    WriteSecret,
    /// List secret names (never values).
    ListSecrets,
    /// Add, configure or remove projects.
    ManageProject,
    /// Add users, change their grants, remove them.
    ManageUsers,
    /// Create, list and revoke one's own API tokens.
    ManageTokens,
    /// Unseal the secret store after a restart.
    Unseal,
    /// Acknowledge an incident.
    AckIncident,
    /// Resolve an incident.
    ResolveIncident,
    /// Create and remove alert silences.
    ManageSilences,
}

impl Action {
    /// Every action, for listings and complete matrix tests.
    pub const ALL: [Action; 19] = [
        Action::ViewProject,
        Action::ViewAudit,
        Action::RunPipeline,
        Action::CancelRun,
        Action::Deploy,
        Action::Rollback,
        Action::Promote,
        Action::PauseResumeAbort,
        Action::Approve,
        Action::ReadSecret,
        Action::WriteSecret,
        Action::ListSecrets,
        Action::ManageProject,
        Action::ManageUsers,
        Action::ManageTokens,
        Action::Unseal,
        Action::AckIncident,
        Action::ResolveIncident,
        Action::ManageSilences,
    ];

    /// The least role that may perform the action on an unprotected target; `None` for
    /// [`Action::ManageTokens`], which any signed-in user may do for themselves.
    pub fn min_role(self) -> Option<Role> {
        use Action::*;
        Some(match self {
            ViewProject => Role::Viewer,
            ViewAudit | RunPipeline | CancelRun | Deploy | Rollback | Promote
            | PauseResumeAbort | ReadSecret | WriteSecret | ListSecrets | AckIncident
            | ResolveIncident => Role::Developer,
            Approve | ManageSilences => Role::Releaser,
            ManageProject | ManageUsers | Unseal => Role::Admin,
            ManageTokens => return None,
        })
    }

    /// Whether a protected environment raises the needed role to releaser.
    pub fn protectable(self) -> bool {
        use Action::*;
        matches!(
            self,
            Deploy | Rollback | Promote | PauseResumeAbort | Approve | ReadSecret | WriteSecret
        )
    }

    /// Whether the action concerns the whole instance: the target is ignored and only
    /// all-project, all-environment grants count.
    pub fn instance_level(self) -> bool {
        matches!(self, Action::ManageUsers | Action::Unseal)
    }

    /// The role needed on `target`: [`Action::min_role`], raised to releaser for protectable
    /// actions on a protected target.
    pub fn required_role(self, target: &Target) -> Option<Role> {
        let min = self.min_role()?;
        Some(if target.protected && self.protectable() {
            min.max(Role::Releaser)
        } else {
            min
        })
    }

    /// The token scope the action needs.
    pub fn scope(self) -> Scope {
        use Action::*;
        match self {
            ViewProject | ViewAudit => Scope::Read,
            RunPipeline | CancelRun => Scope::Run,
            Deploy | Rollback | Promote | PauseResumeAbort | Approve => Scope::Deploy,
            ReadSecret | WriteSecret | ListSecrets => Scope::Secrets,
            AckIncident | ResolveIncident | ManageSilences => Scope::Operate,
            ManageProject | ManageUsers | ManageTokens | Unseal => Scope::Admin,
        }
    }

    /// A short lowercase phrase for messages, e.g. `"deploy"`, `"read secrets"`.
    pub fn describe(self) -> &'static str {
        use Action::*;
        match self {
            ViewProject => "view the project",
            ViewAudit => "view the audit log",
            RunPipeline => "run pipelines",
            CancelRun => "cancel runs",
            Deploy => "deploy",
            Rollback => "roll back",
            Promote => "promote",
            PauseResumeAbort => "pause, resume or abort rollouts",
            Approve => "approve rollouts",
            ReadSecret => "read secrets",
            WriteSecret => "write secrets",
            ListSecrets => "list secrets",
            ManageProject => "manage projects",
            ManageUsers => "manage users",
            ManageTokens => "manage own tokens",
            Unseal => "unseal",
            AckIncident => "acknowledge incidents",
            ResolveIncident => "resolve incidents",
            ManageSilences => "manage silences",
        }
    }
}

/// What an action is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Target {
    /// The project, or `None` for instance-wide targets (e.g. adding a project).
    pub project: Option<String>,
    /// The environment, if the action concerns one.
    pub environment: Option<String>,
    /// Whether the environment is protected.
    pub protected: bool,
    /// The branch the environment deploys from; pipelines of other branches may not touch it.
    pub env_branch: Option<String>,
}

impl Target {
    /// A project-level target (no environment).
    pub fn project(project: &str) -> Self {
        Target {
            project: Some(project.to_string()),
            ..Target::default()
        }
    }

    /// An environment of a project, protected or not, deploying from `branch` if given.
    pub fn env(project: &str, environment: &str, protected: bool, branch: Option<&str>) -> Self {
        Target {
            project: Some(project.to_string()),
            environment: Some(environment.to_string()),
            protected,
            env_branch: branch.map(str::to_string),
        }
    }
}

/// The outcome of [`authorize`], with a reason fit for the person and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the action may proceed.
    pub allowed: bool,
    /// Why, naming the role needed and where, and what the principal has.
    pub reason: String,
}

impl Decision {
    fn new(allowed: bool, reason: String) -> Self {
        Decision { allowed, reason }
    }
}

/// Decides whether `principal` may perform `action` on `target`; see the module docs.
pub fn authorize(principal: &Principal, action: Action, target: &Target) -> Decision {
    let what = describe(action, target);
    match principal {
        Principal::Anonymous => Decision::new(
            false,
            format!("{what} needs a signed-in user or token; anonymous requests may do nothing"),
        ),
        Principal::User {
            name, admin: true, ..
        } => Decision::new(true, format!("{what}: {name} is an instance admin")),
        Principal::User { name, grants, .. } => by_role(&what, name, grants, action, target),
        Principal::Token {
            user,
            grants,
            scopes,
        } => {
            let need = action.scope();
            if scopes.contains(&need) {
                by_role(&what, &format!("token of {user}"), grants, action, target)
            } else {
                let has: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                Decision::new(
                    false,
                    format!(
                        "{what} needs token scope {need}; this token of {user} has scopes [{}]",
                        has.join(", ")
                    ),
                )
            }
        }
        Principal::Pipeline { project, branch } => pipeline(&what, project, branch, action, target),
    }
}

/// "deploy to production (protected)", "read secrets in staging", "manage users".
fn describe(action: Action, target: &Target) -> String {
    let mut s = action.describe().to_string();
    if let (Some(env), false) = (&target.environment, action.instance_level()) {
        let prep = match action {
            Action::Deploy | Action::Promote => "to",
            _ => "in",
        };
        s = format!("{s} {prep} {env}");
        if target.protected {
            s.push_str(" (protected)");
        }
    }
    s
}

fn by_role(what: &str, who: &str, grants: &[Grant], action: Action, target: &Target) -> Decision {
    let Some(need) = action.required_role(target) else {
        return Decision::new(true, format!("{what}: {who} acts on their own tokens"));
    };
    let (project, env, place) = if action.instance_level() {
        (None, None, "on the whole instance".to_string())
    } else {
        let place = match &target.project {
            Some(p) => format!("on project {p}"),
            None => "on all projects".to_string(),
        };
        (
            target.project.as_deref(),
            target.environment.as_deref(),
            place,
        )
    };
    let have = effective_role(grants, project, env);
    let has = have.map_or("no role there", Role::as_str);
    Decision::new(
        have.is_some_and(|h| h >= need),
        format!("{what} needs role {need} {place}; {who} has {has}"),
    )
}

fn pipeline(what: &str, project: &str, branch: &str, action: Action, target: &Target) -> Decision {
    let who = format!("pipeline of {project} on branch {branch}");
    let deny = |why: String| Decision::new(false, format!("{what}: {why}"));
    if !matches!(action, Action::Deploy | Action::ReadSecret) {
        return deny(format!("{who} may only deploy and read secrets"));
    }
    if target.project.as_deref() != Some(project) {
        return deny(format!("{who} may only act on its own project"));
    }
    match target.env_branch.as_deref() {
        None => deny("the environment names no branch, so no pipeline may use it".into()),
        Some(b) if b != branch => deny(format!(
            "the environment takes pipelines from branch {b}, not {branch}"
        )),
        Some(_) => Decision::new(
            true,
            format!("{what}: {who} matches the environment's branch"),
        ),
    }
}
