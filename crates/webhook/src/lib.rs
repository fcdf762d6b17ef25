//! Verification and parsing of git-host webhooks (GitHub, GitLab, Bitbucket Cloud and
//! Server/Data Center, and sluice's own generic format).
//!
//! Pure: no IO, no async, no clock. The server hands in the request's headers and raw
//! body with the project's secret and gets back a [`Verified`] delivery (its id and a
//! [`WebhookEvent`]) or a [`WebhookError`] that carries its HTTP status and a stable code.
//! Signatures are checked in constant time before any byte of the body is parsed.
//!
//! Architecture invariant: this crate does not know about projects, pipelines or git. It
//! only says "a push to branch X, now at sha Y" and leaves what to do with it to the engine.

mod error;
mod parse;
mod signature;

pub use error::WebhookError;
pub use signature::{sign, signature_header};

/// Bodies above this many bytes are rejected with [`WebhookError::TooLarge`] (1 MiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Longest accepted delivery id, in bytes.
pub const MAX_DELIVERY_ID: usize = 200;

/// The git host that sent a webhook, which decides the headers and payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// GitHub (github.com and Enterprise Server).
    GitHub,
    /// GitLab (gitlab.com and self-managed).
    GitLab,
    /// Bitbucket Cloud and Bitbucket Server / Data Center.
    Bitbucket,
    /// sluice's own format, for scripts and other hosts.
    Generic,
}

impl Provider {
    /// All providers, for listings and tests.
    pub const ALL: [Provider; 4] = [
        Provider::GitHub,
        Provider::GitLab,
        Provider::Bitbucket,
        Provider::Generic,
    ];

    /// Parses `"github"`, `"gitlab"`, `"bitbucket"` or `"generic"` (case-insensitive).
    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// The provider's name as used in URLs and configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Bitbucket => "bitbucket",
            Provider::Generic => "generic",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request headers as (name, value) pairs; lookups ignore the case of names and trim
/// surrounding whitespace from values.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Headers<'a> {
    /// Wraps the request's header pairs.
    pub fn new(pairs: &'a [(String, String)]) -> Self {
        Headers { pairs }
    }

    /// The value of the first header called `name` (any case), trimmed.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// What a verified delivery announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// Refs were pushed (the first branch change when a delivery has several).
    Push(Push),
    /// The host checks that the hook works.
    Ping,
    /// Any other event, by the host's event name: accepted but ignored.
    Other(String),
}

/// One ref change announced by a push event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Branch name without `refs/heads/`; None for tags and other refs.
    pub branch: Option<String>,
    /// The ref's previous sha; None when the ref was created.
    pub before: Option<String>,
    /// The ref's new sha; None when the ref was deleted.
    pub after: Option<String>,
    /// Clone URL or full name of the repository, if the payload has one.
    pub repository: Option<String>,
}

/// A delivery whose signature matched, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The host's id for this delivery (stable across redeliveries on most hosts), for
    /// de-duplication and the audit log.
    pub delivery_id: String,
    /// What the delivery announces.
    pub event: WebhookEvent,
}

/// The header carrying the delivery id for `provider`, first choice first. GitLab's
/// `X-Gitlab-Webhook-UUID` and Bitbucket Cloud's `X-Hook-UUID` identify the hook, not the
/// delivery, so they are not used.
pub fn delivery_headers(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::GitHub => &["X-GitHub-Delivery"],
        Provider::GitLab => &["X-Gitlab-Event-UUID", "Idempotency-Key"],
        // Cloud sends X-Request-UUID, Server / Data Center X-Request-Id.
        Provider::Bitbucket => &["X-Request-UUID", "X-Request-Id"],
        Provider::Generic => &["X-Sluice-Delivery"],
    }
}

/// The header naming the event for `provider` (None for the generic format, which is
/// always a push).
pub fn event_header(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::GitHub => Some("X-GitHub-Event"),
        Provider::GitLab => Some("X-Gitlab-Event"),
        Provider::Bitbucket => Some("X-Event-Key"),
        Provider::Generic => None,
    }
}

fn check_size(body: &[u8]) -> Result<(), WebhookError> {
    if body.len() > MAX_BODY {
        return Err(WebhookError::TooLarge {
            size: body.len(),
            max: MAX_BODY,
        });
    }
    Ok(())
}

/// Checks the size and the signature (or token) of a delivery with `secret`, in constant
/// time. An empty secret never verifies.
pub fn verify(
    provider: Provider,
    headers: &Headers,
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    check_size(body)?;
    signature::check(provider, headers, body, secret)
}

/// Checks the signature/token with `secret` (constant-time), then parses. Order: size,
/// signature, delivery id, then body.
pub fn verify_and_parse(
    provider: Provider,
    headers: &Headers,
    body: &[u8],
    secret: &[u8],
) -> Result<Verified, WebhookError> {
    verify(provider, headers, body, secret)?;
    parse(provider, headers, body)
}

/// The delivery id, required and sane (printable ASCII, at most [`MAX_DELIVERY_ID`]).
fn delivery_id(provider: Provider, headers: &Headers) -> Result<String, WebhookError> {
    let names = delivery_headers(provider);
    let Some(id) = names
        .iter()
        .find_map(|n| headers.get(n))
        .filter(|v| !v.is_empty())
    else {
        return Err(WebhookError::MissingDelivery { header: names[0] });
    };
    if id.len() > MAX_DELIVERY_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WebhookError::malformed(format!(
            "delivery id in {} must be at most {MAX_DELIVERY_ID} printable ASCII characters",
            names[0]
        )));
    }
    Ok(id.to_string())
}

/// Parses a delivery without checking its signature (use [`verify_and_parse`] for
/// requests from the network). Checks the size, the delivery id, then the body.
pub fn parse(provider: Provider, headers: &Headers, body: &[u8]) -> Result<Verified, WebhookError> {
    check_size(body)?;
    let delivery_id = delivery_id(provider, headers)?;
    let first = |pushes: Vec<Push>| first_branch_change(provider, pushes).map(WebhookEvent::Push);
    let event = match provider {
        Provider::Generic => first(parse::generic(body)?)?,
        _ => {
            let header = event_header(provider).unwrap_or_default();
            let Some(name) = headers.get(header).filter(|n| !n.is_empty()) else {
                return Err(WebhookError::malformed(format!(
                    "missing {header} header: send the webhook from the git host, which sets it"
                )));
            };
            match (provider, name) {
                (Provider::GitHub, "push") => first(parse::github(body)?)?,
                (Provider::GitHub, "ping") => WebhookEvent::Ping,
                (Provider::GitLab, "Push Hook" | "Tag Push Hook") => first(parse::gitlab(body)?)?,
                (Provider::Bitbucket, "repo:push") => first(parse::bitbucket_cloud(body)?)?,
                (Provider::Bitbucket, "repo:refs_changed") => {
                    first(parse::bitbucket_server(body)?)?
                }
                (Provider::Bitbucket, "diagnostics:ping") => WebhookEvent::Ping,
                (_, other) => WebhookEvent::Other(other.chars().take(100).collect()),
            }
        }
    };
    Ok(Verified { delivery_id, event })
}

/// All ref changes of a push delivery, in payload order (Bitbucket may send several in one
/// delivery; the other hosts send one). Does not check the signature: call [`verify`]
/// first. Returns an empty list for events that are not pushes.
pub fn push_changes(
    provider: Provider,
    headers: &Headers,
    body: &[u8],
) -> Result<Vec<Push>, WebhookError> {
    check_size(body)?;
    let event = event_header(provider).and_then(|h| headers.get(h));
    match (provider, event) {
        (Provider::Generic, _) => parse::generic(body),
        (Provider::GitHub, Some("push")) => parse::github(body),
        (Provider::GitLab, Some("Push Hook" | "Tag Push Hook")) => parse::gitlab(body),
        (Provider::Bitbucket, Some("repo:push")) => parse::bitbucket_cloud(body),
        (Provider::Bitbucket, Some("repo:refs_changed")) => parse::bitbucket_server(body),
        _ => Ok(Vec::new()),
    }
}

/// The first branch change, else the first change (a tag), else Malformed.
fn first_branch_change(provider: Provider, pushes: Vec<Push>) -> Result<Push, WebhookError> {
    let index = pushes.iter().position(|p| p.branch.is_some()).unwrap_or(0);
    pushes.into_iter().nth(index).ok_or_else(|| {
        WebhookError::malformed(format!("{provider} push payload has no ref changes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provider::parse("GitHub"), Some(Provider::GitHub));
        assert_eq!(Provider::parse("gitea"), None);
    }

    #[test]
    fn headers_are_case_insensitive_and_trimmed() {
        let pairs = vec![
            ("x-github-event".to_string(), " push ".to_string()),
            ("X-GitHub-Event".to_string(), "ping".to_string()),
        ];
        let h = Headers::new(&pairs);
        assert_eq!(h.get("X-GITHUB-EVENT"), Some("push"));
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn error_table() {
        let cases = [
            (
                WebhookError::MissingSignature { header: "X" },
                401,
                "missing_signature",
            ),
            (WebhookError::BadSignature, 401, "bad_signature"),
            (WebhookError::malformed("x"), 400, "malformed"),
            (WebhookError::TooLarge { size: 2, max: 1 }, 413, "too_large"),
            (
                WebhookError::MissingDelivery { header: "X" },
                400,
                "missing_delivery",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status(), err.code()), (status, code));
            let msg = err.to_string();
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
        }
    }

    #[test]
    fn github_test_vector() {
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
