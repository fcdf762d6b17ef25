//! Table-driven tests of `authorize`: every role × every action × protected or not, against
//! a table written out here independently of the crate's own; plus tokens, pipelines,
//! wildcard and specific grants, admins and anonymous requests.

#![allow(clippy::unwrap_used)]

use sluice_auth::policy::effective_role;
use sluice_auth::{Action, Grant, Principal, Role, Scope, Target, authorize};

/// The documented rules: (action, least role unprotected, least role protected); `None` =
/// any signed-in user.
fn expected(action: Action) -> (Option<Role>, Option<Role>) {
    use Action::*;
    use Role::*;
    let (open, protected) = match action {
        ViewProject => (Viewer, Viewer),
        ViewAudit | RunPipeline | CancelRun | ListSecrets | AckIncident | ResolveIncident => {
            (Developer, Developer)
        }
        Deploy | Rollback | Promote | PauseResumeAbort | ReadSecret | WriteSecret => {
            (Developer, Releaser)
        }
        Approve | ManageSilences => (Releaser, Releaser),
        ManageProject | ManageUsers | Unseal => (Admin, Admin),
        ManageTokens => return (None, None),
    };
    (Some(open), Some(protected))
}

fn user(grants: Vec<Grant>) -> Principal {
    Principal::User {
        name: "alice".into(),
        grants,
        admin: false,
    }
}

#[test]
fn matrix_role_action_protection() {
    let mut cells = 0;
    for role in Role::ALL {
        for action in Action::ALL {
            for protected in [false, true] {
                let target = Target::env("shop", "production", protected, Some("main"));
                let (open, prot) = expected(action);
                let need = if protected { prot } else { open };
                let want = need.is_none_or(|n| role >= n);
                assert_eq!(action.required_role(&target), need, "{action:?}");

                let global = user(vec![Grant::new(role, None, None)]);
                let d = authorize(&global, action, &target);
                assert_eq!(
                    d.allowed, want,
                    "{role} {action:?} protected={protected}: {}",
                    d.reason
                );

                // The same through a token carrying every scope.
                let token = Principal::Token {
                    user: "alice".into(),
                    grants: vec![Grant::new(role, None, None)],
                    scopes: Scope::ALL.to_vec(),
                };
                assert_eq!(authorize(&token, action, &target).allowed, want);

                // A grant on this project and environment only: instance actions fail.
                let narrow = user(vec![Grant::new(role, Some("shop"), Some("production"))]);
                let d = authorize(&narrow, action, &target);
                assert_eq!(d.allowed, want && !action.instance_level(), "{}", d.reason);

                // Admins may do everything, anonymous nothing.
                let admin = Principal::User {
                    name: "root".into(),
                    grants: vec![],
                    admin: true,
                };
                assert!(authorize(&admin, action, &target).allowed);
                assert!(!authorize(&Principal::Anonymous, action, &target).allowed);
                cells += 1;
            }
        }
    }
    assert_eq!(cells, Role::ALL.len() * Action::ALL.len() * 2);
    println!("authorization matrix: {cells} cells (roles × actions × protection)");
}

#[test]
fn reasons_say_what_where_and_who() {
    let dev = user(vec![Grant::new(Role::Developer, Some("shop"), None)]);
    let prod = Target::env("shop", "production", true, Some("main"));
    let d = authorize(&dev, Action::Deploy, &prod);
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "deploy to production (protected) needs role releaser on project shop; alice has developer"
    );
    let d = authorize(
        &dev,
        Action::Deploy,
        &Target::env("other", "dev", false, None),
    );
    assert_eq!(
        d.reason,
        "deploy to dev needs role developer on project other; alice has no role there"
    );
    let d = authorize(&dev, Action::ManageUsers, &Target::project("shop"));
    assert!(
        d.reason.contains("needs role admin on the whole instance"),
        "{}",
        d.reason
    );
    let d = authorize(
        &Principal::Anonymous,
        Action::ViewProject,
        &Target::project("shop"),
    );
    assert!(d.reason.contains("anonymous"), "{}", d.reason);
}

#[test]
fn wildcard_and_specific_grants() {
    let grants = vec![
        Grant::new(Role::Viewer, None, None),
        Grant::new(Role::Developer, Some("shop"), None),
        Grant::new(Role::Releaser, Some("shop"), Some("production")),
        Grant::new(Role::Admin, None, Some("sandbox")),
    ];
    let role = |p: Option<&str>, e: Option<&str>| effective_role(&grants, p, e);
    assert_eq!(role(Some("blog"), None), Some(Role::Viewer));
    assert_eq!(role(Some("shop"), None), Some(Role::Developer));
    assert_eq!(role(Some("shop"), Some("staging")), Some(Role::Developer));
    assert_eq!(role(Some("shop"), Some("production")), Some(Role::Releaser));
    assert_eq!(role(Some("blog"), Some("production")), Some(Role::Viewer));
    assert_eq!(role(Some("blog"), Some("sandbox")), Some(Role::Admin));
    assert_eq!(role(None, None), Some(Role::Viewer));
    assert_eq!(effective_role(&[], Some("shop"), None), None);

    let alice = user(grants.clone());
    let prod = Target::env("shop", "production", true, None);
    assert!(authorize(&alice, Action::Deploy, &prod).allowed);
    assert!(authorize(&alice, Action::Approve, &prod).allowed);
    assert!(
        !authorize(
            &alice,
            Action::Deploy,
            &Target::env("blog", "production", true, None)
        )
        .allowed
    );
    // Adding a project (no project in the target) needs an all-project admin grant.
    assert!(!authorize(&alice, Action::ManageProject, &Target::default()).allowed);
    let boss = user(vec![Grant::new(Role::Admin, None, None)]);
    assert!(authorize(&boss, Action::ManageProject, &Target::default()).allowed);
    let shop_admin = user(vec![Grant::new(Role::Admin, Some("shop"), None)]);
    assert!(authorize(&shop_admin, Action::ManageProject, &Target::project("shop")).allowed);
    assert!(!authorize(&shop_admin, Action::ManageProject, &Target::default()).allowed);
    assert!(!authorize(&shop_admin, Action::Unseal, &Target::project("shop")).allowed);
}

#[test]
fn token_scopes_limit_grants() {
    let token = Principal::Token {
        user: "ci-bot".into(),
        grants: vec![Grant::new(Role::Admin, Some("shop"), None)],
        scopes: vec![Scope::Read, Scope::Deploy],
    };
    let prod = Target::env("shop", "production", true, None);
    assert!(authorize(&token, Action::Deploy, &prod).allowed);
    assert!(authorize(&token, Action::ViewProject, &prod).allowed);
    let d = authorize(&token, Action::ReadSecret, &prod);
    assert!(!d.allowed);
    assert!(
        d.reason.contains("needs token scope secrets"),
        "{}",
        d.reason
    );
    assert!(
        !authorize(
            &token,
            Action::Deploy,
            &Target::env("blog", "dev", false, None)
        )
        .allowed
    );
    let mine = Principal::Token {
        user: "ci-bot".into(),
        grants: vec![],
        scopes: vec![Scope::Admin],
    };
    assert!(authorize(&mine, Action::ManageTokens, &Target::default()).allowed);
}

#[test]
fn pipeline_branch_rules() {
    let main = Principal::Pipeline {
        project: "shop".into(),
        branch: "main".into(),
    };
    let cases = [
        (
            Action::Deploy,
            Target::env("shop", "production", true, Some("main")),
            true,
        ),
        (
            Action::ReadSecret,
            Target::env("shop", "production", true, Some("main")),
            true,
        ),
        (
            Action::Deploy,
            Target::env("shop", "staging", false, Some("main")),
            true,
        ),
        (
            Action::Deploy,
            Target::env("shop", "production", true, Some("release")),
            false,
        ),
        (
            Action::Deploy,
            Target::env("shop", "preview", false, None),
            false,
        ),
        (
            Action::Deploy,
            Target::env("blog", "production", true, Some("main")),
            false,
        ),
        (
            Action::Rollback,
            Target::env("shop", "production", true, Some("main")),
            false,
        ),
        (
            Action::WriteSecret,
            Target::env("shop", "production", true, Some("main")),
            false,
        ),
        (Action::ViewProject, Target::project("shop"), false),
        (Action::ManageUsers, Target::default(), false),
    ];
    for (action, target, want) in cases {
        let d = authorize(&main, action, &target);
        assert_eq!(d.allowed, want, "{action:?} {target:?}: {}", d.reason);
    }
    let feature = Principal::Pipeline {
        project: "shop".into(),
        branch: "feature-x".into(),
    };
    let d = authorize(
        &feature,
        Action::Deploy,
        &Target::env("shop", "production", true, Some("main")),
    );
    assert_eq!(
        d.reason,
        "deploy to production (protected): the environment takes pipelines from branch main, not feature-x"
    );
}

#[test]
fn role_parsing_and_serde() {
    assert_eq!(" Releaser".parse::<Role>(), Ok(Role::Releaser));
    let e = "owner".parse::<Role>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown role \"owner\": valid roles are viewer, developer, releaser, admin"
    );
    assert!(Role::Viewer < Role::Developer && Role::Releaser < Role::Admin);
    for r in Role::ALL {
        assert_eq!(r.to_string().parse::<Role>(), Ok(r));
    }
    let json = serde_json::to_string(&Grant::new(Role::Developer, Some("shop"), None)).unwrap();
    assert_eq!(
        json,
        r#"{"role":"developer","project":"shop","environment":null}"#
    );
}
