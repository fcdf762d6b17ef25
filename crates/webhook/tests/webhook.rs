//! Integration tests for sluice-webhook: realistic payloads per provider (files under
//! `tests/fixtures/`), signatures good, bad and missing, and no panics on random input.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sluice_webhook::{
    Headers, MAX_BODY, Provider, Push, Verified, WebhookError, WebhookEvent, delivery_headers,
    event_header, parse, push_changes, sign, signature_header, verify, verify_and_parse,
};

const SECRET: &[u8] = b"s3cret-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The headers a provider would send with `body` signed by `secret` and event `event`.
fn signed(provider: Provider, event: &str, body: &[u8], secret: &[u8]) -> Vec<(String, String)> {
    let mut h = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            delivery_headers(provider)[0].to_lowercase(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string(),
        ),
    ];
    let signature = match provider {
        Provider::GitLab => String::from_utf8(secret.to_vec()).unwrap(),
        _ => sign(secret, body),
    };
    h.push((signature_header(provider).to_string(), signature));
    if let Some(name) = event_header(provider) {
        h.push((name.to_string(), event.to_string()));
    }
    h
}

fn push(
    branch: Option<&str>,
    before: Option<&str>,
    after: Option<&str>,
    repo: &str,
) -> WebhookEvent {
    WebhookEvent::Push(Push {
        branch: branch.map(str::to_string),
        before: before.map(str::to_string),
        after: after.map(str::to_string),
        repository: Some(repo.to_string()),
    })
}

const OLD: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const NEW: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
const GONE: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

/// Signs `fixture` as `provider` would, verifies and parses it, and compares the event.
fn check(provider: Provider, event: &str, fixture_name: &str, expected: WebhookEvent) {
    let body = fixture(fixture_name);
    let headers = signed(provider, event, &body, SECRET);
    let got = verify_and_parse(provider, &Headers::new(&headers), &body, SECRET)
        .unwrap_or_else(|e| panic!("{fixture_name}: {e}"));
    assert_eq!(
        got,
        Verified {
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string(),
            event: expected
        },
        "{fixture_name}"
    );
}

#[test]
fn realistic_payloads() {
    use Provider::*;
    let gh = "https://github.com/acme/shop-api.git";
    let gl = "https://gitlab.example.com/acme/shop-api.git";
    let bbs = "https://bitbucket.example.com/scm/acme/shop-api.git";
    let cases = [
        (
            GitHub,
            "push",
            "github_push.json",
            push(Some("main"), Some(OLD), Some(NEW), gh),
        ),
        (
            GitHub,
            "push",
            "github_push_tag.json",
            push(None, None, Some(NEW), gh),
        ),
        (
            GitHub,
            "push",
            "github_push_delete.json",
            push(Some("feature/old-checkout"), Some(GONE), None, gh),
        ),
        (GitHub, "ping", "github_ping.json", WebhookEvent::Ping),
        (
            GitHub,
            "pull_request",
            "github_ping.json",
            WebhookEvent::Other("pull_request".into()),
        ),
        (
            GitLab,
            "Push Hook",
            "gitlab_push.json",
            push(
                Some("main"),
                Some("95790bf891e76fee5e1747ab589903a6a1f80f22"),
                Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
                gl,
            ),
        ),
        (
            GitLab,
            "Tag Push Hook",
            "gitlab_tag_push.json",
            push(
                None,
                None,
                Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"),
                gl,
            ),
        ),
        (
            GitLab,
            "Push Hook",
            "gitlab_push_delete.json",
            push(Some("feature/old-checkout"), Some(GONE), None, gl),
        ),
        (
            GitLab,
            "Merge Request Hook",
            "gitlab_push.json",
            WebhookEvent::Other("Merge Request Hook".into()),
        ),
        // The tag change comes first in the payload; the branch change is returned.
        (
            Bitbucket,
            "repo:push",
            "bitbucket_cloud_push.json",
            push(Some("main"), Some(OLD), Some(NEW), "acme/shop-api"),
        ),
        (
            Bitbucket,
            "repo:push",
            "bitbucket_cloud_push_delete.json",
            push(
                Some("feature/old-checkout"),
                Some(GONE),
                None,
                "acme/shop-api",
            ),
        ),
        (
            Bitbucket,
            "repo:refs_changed",
            "bitbucket_server_refs_changed.json",
            push(Some("main"), Some(OLD), Some(NEW), bbs),
        ),
        (
            Bitbucket,
            "repo:refs_changed",
            "bitbucket_server_delete.json",
            push(
                Some("feature/old-checkout"),
                Some(GONE),
                None,
                "ACME/shop-api",
            ),
        ),
        (
            Bitbucket,
            "diagnostics:ping",
            "bitbucket_server_ping.json",
            WebhookEvent::Ping,
        ),
        (
            Generic,
            "",
            "generic_push.json",
            WebhookEvent::Push(Push {
                branch: Some("main".into()),
                before: Some(OLD.into()),
                after: Some(NEW.into()),
                repository: None,
            }),
        ),
        (
            Generic,
            "",
            "generic_push_short.json",
            push(Some("release/2025-05"), None, None, "/srv/git/shop-api.git"),
        ),
    ];
    for (provider, event, name, expected) in cases {
        check(provider, event, name, expected);
    }
}

#[test]
fn all_changes_of_a_bitbucket_push() {
    let body = fixture("bitbucket_server_delete.json");
    let headers = signed(Provider::Bitbucket, "repo:refs_changed", &body, SECRET);
    let changes = push_changes(Provider::Bitbucket, &Headers::new(&headers), &body).unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].branch, None, "a tag");
    assert_eq!(changes[0].before, None, "created");
    assert_eq!(changes[1].branch.as_deref(), Some("feature/old-checkout"));
    assert_eq!(changes[1].after, None, "deleted");
}

#[test]
fn github_published_test_vector() {
    // From GitHub's "Validating webhook deliveries" documentation.
    let secret = b"It's a Secret to Everybody";
    let body = b"Hello, World!";
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(secret, body), expected);
    let headers = vec![("X-Hub-Signature-256".to_string(), expected.to_string())];
    verify(Provider::GitHub, &Headers::new(&headers), body, secret).unwrap();
    // The hex is accepted in upper case too.
    let headers = vec![(
        "x-hub-signature-256".to_string(),
        format!("sha256={}", expected[7..].to_uppercase()),
    )];
    verify(Provider::GitHub, &Headers::new(&headers), body, secret).unwrap();
}

#[test]
fn signatures_good_bad_missing_and_tampered() {
    let fixtures = [
        (Provider::GitHub, "push", "github_push.json"),
        (Provider::GitLab, "Push Hook", "gitlab_push.json"),
        (
            Provider::Bitbucket,
            "repo:push",
            "bitbucket_cloud_push.json",
        ),
        (
            Provider::Bitbucket,
            "repo:refs_changed",
            "bitbucket_server_refs_changed.json",
        ),
        (Provider::Generic, "", "generic_push.json"),
    ];
    for (provider, event, name) in fixtures {
        let body = fixture(name);
        let good = signed(provider, event, &body, SECRET);
        verify(provider, &Headers::new(&good), &body, SECRET).unwrap();

        // Signed with another secret.
        let other = signed(provider, event, &body, b"another secret");
        let err = verify_and_parse(provider, &Headers::new(&other), &body, SECRET).unwrap_err();
        assert_eq!(err, WebhookError::BadSignature, "{name}");
        assert_eq!((err.status(), err.code()), (401, "bad_signature"));

        // Missing signature header.
        let header = signature_header(provider);
        let missing: Vec<_> = good
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(header))
            .cloned()
            .collect();
        assert_eq!(
            verify_and_parse(provider, &Headers::new(&missing), &body, SECRET).unwrap_err(),
            WebhookError::MissingSignature { header },
            "{name}"
        );

        // An empty configured secret never verifies, even against an empty token.
        let empty = signed(provider, event, &body, b"");
        assert_eq!(
            verify(provider, &Headers::new(&empty), &body, b"").unwrap_err(),
            WebhookError::BadSignature
        );

        // Garbage in the signature header.
        let mut garbage = good.clone();
        for (n, v) in &mut garbage {
            if n.eq_ignore_ascii_case(header) {
                *v = "sha256=zz".to_string();
            }
        }
        assert_eq!(
            verify(provider, &Headers::new(&garbage), &body, SECRET).unwrap_err(),
            WebhookError::BadSignature
        );

        // Tampered body: GitLab's token does not cover the body; the HMACs do.
        let mut tampered = body.clone();
        let at = tampered.iter().position(|&b| b == b'6').unwrap();
        tampered[at] = b'7';
        let result = verify(provider, &Headers::new(&good), &tampered, SECRET);
        if provider == Provider::GitLab {
            result.unwrap();
        } else {
            assert_eq!(result.unwrap_err(), WebhookError::BadSignature, "{name}");
        }
    }
}

#[test]
fn order_size_signature_delivery_body() {
    // Too large wins over everything, even with no headers at all.
    let big = vec![b'x'; MAX_BODY + 1];
    let err = verify_and_parse(Provider::GitHub, &Headers::new(&[]), &big, SECRET).unwrap_err();
    assert_eq!(
        err,
        WebhookError::TooLarge {
            size: MAX_BODY + 1,
            max: MAX_BODY
        }
    );
    assert_eq!((err.status(), err.code()), (413, "too_large"));
    // Exactly MAX_BODY is accepted as far as size goes.
    let at_limit = vec![b' '; MAX_BODY];
    let h = signed(Provider::Generic, "", &at_limit, SECRET);
    assert!(matches!(
        verify_and_parse(Provider::Generic, &Headers::new(&h), &at_limit, SECRET),
        Err(WebhookError::Malformed { .. })
    ));

    // A bad signature is reported before a missing delivery id or a bad body.
    let body = b"{not json";
    let no_delivery = vec![("X-Sluice-Signature".to_string(), "sha256=00".to_string())];
    assert_eq!(
        verify_and_parse(Provider::Generic, &Headers::new(&no_delivery), body, SECRET).unwrap_err(),
        WebhookError::BadSignature
    );

    // With a good signature, a missing delivery id is reported before the body.
    for provider in Provider::ALL {
        let mut h = signed(provider, "push", body, SECRET);
        h.retain(|(n, _)| {
            !delivery_headers(provider)
                .iter()
                .any(|d| n.eq_ignore_ascii_case(d))
        });
        let err = verify_and_parse(provider, &Headers::new(&h), body, SECRET).unwrap_err();
        assert_eq!(
            err,
            WebhookError::MissingDelivery {
                header: delivery_headers(provider)[0]
            }
        );
        assert_eq!((err.status(), err.code()), (400, "missing_delivery"));
    }
}

#[test]
fn malformed_bodies_say_where() {
    let body = b"{\n  \"ref\": \"refs/heads/main\",\n  \"after\": 12\n}";
    let h = signed(Provider::Generic, "", body, SECRET);
    match verify_and_parse(Provider::Generic, &Headers::new(&h), body, SECRET) {
        Err(e @ WebhookError::Malformed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("line 3"), "{msg}");
            assert!(msg.contains("column"), "{msg}");
            assert_eq!((e.status(), e.code()), (400, "malformed"));
        }
        other => panic!("{other:?}"),
    }
    let cases: [(Provider, &str, &[u8]); 6] = [
        (Provider::GitHub, "push", b"{\"before\": \"abc\"}"),
        (Provider::GitHub, "push", b"not json"),
        (Provider::GitLab, "Push Hook", b"[]"),
        (
            Provider::Bitbucket,
            "repo:push",
            b"{\"push\": {\"changes\": []}}",
        ),
        (
            Provider::Generic,
            "",
            b"{\"ref\": \"main\", \"after\": \"--upload-pack=x\"}",
        ),
        (
            Provider::Generic,
            "",
            b"{\"ref\": \"main\", \"unknown\": 1}",
        ),
    ];
    for (provider, event, body) in cases {
        let h = signed(provider, event, body, SECRET);
        let err = verify_and_parse(provider, &Headers::new(&h), body, SECRET).unwrap_err();
        assert!(matches!(err, WebhookError::Malformed { .. }), "{err:?}");
    }
    // No event header.
    let body = fixture("github_push.json");
    let mut h = signed(Provider::GitHub, "push", &body, SECRET);
    h.retain(|(n, _)| n != "X-GitHub-Event");
    let err = parse(Provider::GitHub, &Headers::new(&h), &body).unwrap_err();
    assert!(err.to_string().contains("X-GitHub-Event"), "{err}");
}

#[test]
fn alternative_delivery_headers() {
    let body = fixture("bitbucket_server_refs_changed.json");
    let h = vec![
        ("X-Request-Id".to_string(), "8e3bd8a0-1b4c-4d3e".to_string()),
        ("X-Event-Key".to_string(), "repo:refs_changed".to_string()),
        ("X-Hub-Signature".to_string(), sign(SECRET, &body)),
    ];
    let v = verify_and_parse(Provider::Bitbucket, &Headers::new(&h), &body, SECRET).unwrap();
    assert_eq!(v.delivery_id, "8e3bd8a0-1b4c-4d3e");

    let body = fixture("gitlab_push.json");
    let h = vec![
        ("Idempotency-Key".to_string(), "908a6d9e-45fd".to_string()),
        ("X-Gitlab-Event".to_string(), "Push Hook".to_string()),
        ("X-Gitlab-Token".to_string(), "s3cret-for-tests".to_string()),
    ];
    let v = verify_and_parse(Provider::GitLab, &Headers::new(&h), &body, SECRET).unwrap();
    assert_eq!(v.delivery_id, "908a6d9e-45fd");

    // A delivery id with control characters is refused.
    let h = vec![
        ("X-Sluice-Delivery".to_string(), "a\u{7}b".to_string()),
        ("X-Sluice-Signature".to_string(), sign(SECRET, b"{}")),
    ];
    assert!(matches!(
        verify_and_parse(Provider::Generic, &Headers::new(&h), b"{}", SECRET),
        Err(WebhookError::Malformed { .. })
    ));
}

/// Header names worth mixing into random requests.
const NAMES: &[&str] = &[
    "X-Hub-Signature-256",
    "X-Hub-Signature",
    "X-Gitlab-Token",
    "X-Sluice-Signature",
    "X-GitHub-Delivery",
    "X-GitHub-Event",
    "X-Gitlab-Event",
    "X-Gitlab-Event-UUID",
    "X-Event-Key",
    "X-Request-UUID",
    "X-Sluice-Delivery",
];

const EVENTS: &[&str] = &[
    "push",
    "ping",
    "Push Hook",
    "Tag Push Hook",
    "repo:push",
    "repo:refs_changed",
    "diagnostics:ping",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_input_never_panics(
        provider in 0usize..4,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        headers in proptest::collection::vec((0usize..NAMES.len(), 0usize..EVENTS.len(), ".{0,40}"), 0..6),
        use_event in any::<bool>(),
    ) {
        let provider = Provider::ALL[provider];
        let pairs: Vec<(String, String)> = headers
            .into_iter()
            .map(|(n, e, v)| (NAMES[n].to_string(), if use_event { EVENTS[e].to_string() } else { v }))
            .collect();
        let h = Headers::new(&pairs);
        let _ = verify_and_parse(provider, &h, &body, SECRET);
        let _ = parse(provider, &h, &body);
        let _ = push_changes(provider, &h, &body);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let (provider, event, name) = [
            (Provider::GitHub, "push", "github_push.json"),
            (Provider::GitLab, "Push Hook", "gitlab_push.json"),
            (Provider::Bitbucket, "repo:push", "bitbucket_cloud_push.json"),
            (Provider::Bitbucket, "repo:refs_changed", "bitbucket_server_delete.json"),
            (Provider::Generic, "", "generic_push.json"),
            (Provider::GitLab, "Tag Push Hook", "gitlab_tag_push.json"),
        ][which];
        let mut body = fixture(name);
        for (at, byte) in flips {
            let len = body.len();
            body[at % len] = byte;
        }
        let h = signed(provider, event, &body, SECRET);
        // Correctly signed, so every mutation reaches the parser.
        match verify_and_parse(provider, &Headers::new(&h), &body, SECRET) {
            Ok(_) | Err(WebhookError::Malformed { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
