//! Payload parsing per provider: from a verified body to [`Push`] changes.
//!
//! Only the fields sluice needs are read; everything else in the payload is ignored, so
//! new fields added by the git hosts do not break parsing.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{Provider, Push, WebhookError};

/// The all-zero sha git hosts send for "no commit" (branch created or deleted).
fn is_zero(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// A commit sha from a payload: None when absent, empty or all zeros; Malformed when not
/// hexadecimal (it will reach git, so nothing else may pass).
fn sha(field: &str, value: Option<String>) -> Result<Option<String>, WebhookError> {
    let Some(value) = value.filter(|v| !v.is_empty() && !is_zero(v)) else {
        return Ok(None);
    };
    if (4..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(value.to_ascii_lowercase()))
    } else {
        Err(WebhookError::malformed(format!(
            "{field} is not a commit sha: {:?}",
            value.chars().take(80).collect::<String>()
        )))
    }
}

/// A branch name from a payload, refused if empty or containing control characters.
fn branch(value: &str) -> Result<String, WebhookError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(WebhookError::malformed(format!(
            "branch name {:?} is empty or has control characters",
            value.chars().take(80).collect::<String>()
        )));
    }
    Ok(value.to_string())
}

/// Splits a full ref into a branch name (None for tags and other refs).
fn branch_of_ref(git_ref: &str) -> Result<Option<String>, WebhookError> {
    match git_ref.strip_prefix("refs/heads/") {
        Some(name) => branch(name).map(Some),
        None => Ok(None),
    }
}

fn json<T: DeserializeOwned>(provider: Provider, body: &[u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(body)
        .map_err(|e| WebhookError::malformed(format!("{} payload: {e}", provider.as_str())))
}

#[derive(Deserialize)]
struct GitHubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    repository: Option<GitHubRepo>,
}

#[derive(Deserialize)]
struct GitHubRepo {
    clone_url: Option<String>,
    full_name: Option<String>,
}

pub(crate) fn github(body: &[u8]) -> Result<Vec<Push>, WebhookError> {
    let p: GitHubPush = json(Provider::GitHub, body)?;
    let after = if p.deleted {
        None
    } else {
        sha("after", p.after)?
    };
    Ok(vec![Push {
        branch: branch_of_ref(&p.git_ref)?,
        before: sha("before", p.before)?,
        after,
        repository: p.repository.and_then(|r| r.clone_url.or(r.full_name)),
    }])
}

#[derive(Deserialize)]
struct GitLabPush {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: Option<String>,
    checkout_sha: Option<String>,
    project: Option<GitLabProject>,
    repository: Option<GitLabProject>,
}

#[derive(Deserialize)]
struct GitLabProject {
    git_http_url: Option<String>,
    path_with_namespace: Option<String>,
}

pub(crate) fn gitlab(body: &[u8]) -> Result<Vec<Push>, WebhookError> {
    let p: GitLabPush = json(Provider::GitLab, body)?;
    // `after` is the pushed head (all zeros when the ref was deleted); `checkout_sha` is
    // only a fallback for payloads without `after`.
    let after = match p.after {
        Some(after) => sha("after", Some(after))?,
        None => sha("checkout_sha", p.checkout_sha)?,
    };
    let repository = [p.project, p.repository]
        .into_iter()
        .flatten()
        .find_map(|r| r.git_http_url.or(r.path_with_namespace));
    Ok(vec![Push {
        branch: branch_of_ref(&p.git_ref)?,
        before: sha("before", p.before)?,
        after,
        repository,
    }])
}

#[derive(Deserialize)]
struct CloudPush {
    push: CloudChanges,
    repository: Option<CloudRepo>,
}

#[derive(Deserialize)]
struct CloudChanges {
    changes: Vec<CloudChange>,
}

#[derive(Deserialize)]
struct CloudChange {
    new: Option<CloudRef>,
    old: Option<CloudRef>,
}

#[derive(Deserialize)]
struct CloudRef {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    target: Option<CloudTarget>,
}

#[derive(Deserialize)]
struct CloudTarget {
    hash: Option<String>,
}

#[derive(Deserialize)]
struct CloudRepo {
    full_name: Option<String>,
    links: Option<CloudLinks>,
}

#[derive(Deserialize)]
struct CloudLinks {
    html: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    href: Option<String>,
}

/// Bitbucket Cloud `repo:push`.
pub(crate) fn bitbucket_cloud(body: &[u8]) -> Result<Vec<Push>, WebhookError> {
    let p: CloudPush = json(Provider::Bitbucket, body)?;
    let repository = p.repository.and_then(|r| {
        r.full_name
            .or_else(|| r.links.and_then(|l| l.html).and_then(|h| h.href))
    });
    let hash = |r: &Option<CloudRef>| {
        r.as_ref()
            .and_then(|r| r.target.as_ref())
            .and_then(|t| t.hash.clone())
    };
    let mut pushes = Vec::new();
    for change in p.push.changes {
        // A deleted ref has no `new`, a created one no `old`; the name is on either.
        let Some(named) = change.new.as_ref().or(change.old.as_ref()) else {
            continue;
        };
        let is_branch = named.kind.eq_ignore_ascii_case("branch")
            || named.kind.eq_ignore_ascii_case("named_branch");
        pushes.push(Push {
            branch: if is_branch {
                Some(branch(&named.name)?)
            } else {
                None
            },
            before: sha("old.target.hash", hash(&change.old))?,
            after: sha("new.target.hash", hash(&change.new))?,
            repository: repository.clone(),
        });
    }
    Ok(pushes)
}

#[derive(Deserialize)]
struct ServerPush {
    changes: Vec<ServerChange>,
    repository: Option<ServerRepo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerChange {
    #[serde(rename = "ref")]
    git_ref: Option<ServerRef>,
    ref_id: Option<String>,
    from_hash: Option<String>,
    to_hash: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerRef {
    id: Option<String>,
    display_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ServerRepo {
    slug: Option<String>,
    project: Option<ServerProject>,
    links: Option<ServerLinks>,
}

#[derive(Deserialize)]
struct ServerProject {
    key: Option<String>,
}

#[derive(Deserialize)]
struct ServerLinks {
    #[serde(default)]
    clone: Vec<ServerClone>,
}

#[derive(Deserialize)]
struct ServerClone {
    href: Option<String>,
    name: Option<String>,
}

/// Bitbucket Server / Data Center `repo:refs_changed`.
pub(crate) fn bitbucket_server(body: &[u8]) -> Result<Vec<Push>, WebhookError> {
    let p: ServerPush = json(Provider::Bitbucket, body)?;
    let repository = p.repository.and_then(|r| {
        let clone = r.links.map(|l| l.clone).unwrap_or_default();
        let http = clone
            .iter()
            .find(|c| c.name.as_deref() == Some("http"))
            .or(clone.first())
            .and_then(|c| c.href.clone());
        http.or_else(|| match (r.project.and_then(|p| p.key), r.slug) {
            (Some(key), Some(slug)) => Some(format!("{key}/{slug}")),
            (_, slug) => slug,
        })
    });
    let mut pushes = Vec::new();
    for change in p.changes {
        let full_ref = change
            .git_ref
            .as_ref()
            .and_then(|r| r.id.clone())
            .or(change.ref_id.clone())
            .unwrap_or_default();
        let kind = change.git_ref.as_ref().and_then(|r| r.kind.clone());
        let is_branch = match kind.as_deref() {
            Some(k) => k.eq_ignore_ascii_case("branch"),
            None => full_ref.starts_with("refs/heads/"),
        };
        let name = change
            .git_ref
            .as_ref()
            .and_then(|r| r.display_id.clone())
            .or_else(|| full_ref.strip_prefix("refs/heads/").map(str::to_string));
        let deleted = change
            .kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("delete"));
        let branch_name = match (is_branch, name) {
            (true, Some(name)) => Some(branch(&name)?),
            (true, None) => {
                return Err(WebhookError::malformed(
                    "bitbucket payload: a branch change has no ref name",
                ));
            }
            (false, _) => None,
        };
        pushes.push(Push {
            branch: branch_name,
            before: sha("fromHash", change.from_hash)?,
            after: if deleted {
                None
            } else {
                sha("toHash", change.to_hash)?
            },
            repository: repository.clone(),
        });
    }
    Ok(pushes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    before: Option<String>,
    repository: Option<String>,
}

/// sluice's own format: `{"ref": "refs/heads/main" or "main", "after"?, "before"?,
/// "repository"?}`.
pub(crate) fn generic(body: &[u8]) -> Result<Vec<Push>, WebhookError> {
    let p: GenericPush = json(Provider::Generic, body)?;
    let branch_name = if p.git_ref.starts_with("refs/") {
        branch_of_ref(&p.git_ref)?
    } else {
        Some(branch(&p.git_ref)?)
    };
    Ok(vec![Push {
        branch: branch_name,
        before: sha("before", p.before)?,
        after: sha("after", p.after)?,
        repository: p.repository,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shas() {
        assert_eq!(sha("x", None), Ok(None));
        assert_eq!(sha("x", Some("0".repeat(40))), Ok(None));
        assert_eq!(sha("x", Some("ABCDEF1".into())), Ok(Some("abcdef1".into())));
        assert!(sha("x", Some("--all".into())).is_err());
        assert!(sha("x", Some("g".repeat(40))).is_err());
    }

    #[test]
    fn refs() {
        assert_eq!(branch_of_ref("refs/heads/a/b"), Ok(Some("a/b".into())));
        assert_eq!(branch_of_ref("refs/tags/v1"), Ok(None));
        assert!(branch_of_ref("refs/heads/").is_err());
        assert!(branch_of_ref("refs/heads/a\nb").is_err());
    }
}
