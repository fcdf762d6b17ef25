//! Delivery tests against real servers on loopback: an axum HTTP receiver that checks
//! signatures with `verify_webhook` the way a user's receiver would, and an aiosmtpd SMTP
//! server (Debian's python3-aiosmtpd) that parses what it receives with Python's own
//! email parser. All IO tests of the crate live in this one binary.

// Test helpers outside #[test] fns may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use sluice_notify::{
    AlertLine, Channel, IncidentRecord, Notification, NotificationEvent, SmtpConfig, SmtpTls,
    SuspectedCause, TimelineEntry, send, send_ticket, verify_webhook,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const SECRET: &str = "receiver-shared-secret";

fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(d.as_millis()).unwrap()
}

fn notification(event: NotificationEvent, at_ms: i64) -> Notification {
    Notification {
        incident_id: 42,
        incident_url: "https://sluice.example.com/incidents/42".into(),
        event,
        title: "API error rate above 5% — Größe ✓".into(),
        severity: "critical".into(),
        project: "shop".into(),
        service: "api".into(),
        summary: "5xx ratio <7.2%> & rising".into(),
        alert_count: 1,
        alerts: vec![AlertLine {
            summary: "error rate 7.2% on api".into(),
            severity: "critical".into(),
            labels: BTreeMap::from([("pod".to_string(), "api-7f9c".to_string())]),
            starts_at_ms: at_ms - 60_000,
        }],
        suspected_cause: Some("release v1.4.2 deployed 3 min before".into()),
        ack_url: Some("https://sluice.example.com/i/42/ack?exp=1700003600&sig=abc123".into()),
        resolve_url: Some(
            "https://sluice.example.com/i/42/resolve?exp=1700003600&sig=def456".into(),
        ),
        acknowledged_by: None,
        at_ms,
    }
}

// ---------------------------------------------------------------------------------------
// HTTP receiver

/// What the receiver saw for one request.
#[derive(Debug)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
    /// `Some(true)` when a signature was present and `verify_webhook` accepted it.
    verified: Option<bool>,
}

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<Seen>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Accepts the request when it carries no signature or a valid one, 401 otherwise.
async fn accept(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let verified = header(&headers, "x-sluice-signature").map(|sig| {
        let ts = header(&headers, "x-sluice-timestamp").unwrap_or_default();
        let now_s = now_ms() / 1000;
        verify_webhook(SECRET.as_bytes(), &ts, &body, &sig, now_s, 300).is_ok()
    });
    let status = if verified == Some(false) {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    r.tx.send(Seen {
        headers,
        body,
        verified,
    })
    .unwrap();
    (
        status,
        if status.is_success() {
            "ok"
        } else {
            "bad signature"
        },
    )
}

/// Answers with the status in the path (and `Retry-After: 3` for 429).
async fn answer(UrlPath(code): UrlPath<u16>) -> (StatusCode, HeaderMap, &'static str) {
    let mut headers = HeaderMap::new();
    if code == 429 {
        headers.insert("retry-after", "3".parse().unwrap());
    }
    (
        StatusCode::from_u16(code).unwrap(),
        headers,
        "invalid_payload",
    )
}

async fn start_receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hook", post(accept))
        .route("/status/{code}", post(answer))
        .with_state(Receiver { tx });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

#[tokio::test]
async fn signed_webhook_is_delivered_and_verifies() {
    let (addr, mut rx) = start_receiver().await;
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Triggered, now_ms());
    let channel = Channel::Webhook {
        url: format!("http://{addr}/hook"),
        secret: Some(SECRET.into()),
    };

    let delivered = send(&channel, &n, &http, now_ms()).await.unwrap();
    assert_eq!(delivered.status, Some(200));
    assert!(
        delivered.detail.contains("answered 200: ok"),
        "{}",
        delivered.detail
    );

    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.verified, Some(true));
    assert_eq!(
        header(&seen.headers, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&seen.headers, "x-sluice-event").as_deref(),
        Some("incident.triggered")
    );
    assert_eq!(
        header(&seen.headers, "x-sluice-delivery"),
        Some(n.delivery_key())
    );
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["incident_id"], 42);
    assert_eq!(body["title"], n.title);
    assert_eq!(body["ack_url"], n.ack_url.clone().unwrap());
}

#[tokio::test]
async fn wrong_secret_is_refused_by_the_receiver_and_not_retried() {
    let (addr, mut rx) = start_receiver().await;
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Triggered, now_ms());
    let channel = Channel::Webhook {
        url: format!("http://{addr}/hook"),
        secret: Some("not-the-secret".into()),
    };
    let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
    assert!(!err.retryable);
    assert_eq!(err.status, Some(401));
    assert_eq!(rx.recv().await.unwrap().verified, Some(false));
}

#[tokio::test]
async fn answers_decide_whether_to_retry() {
    let (addr, _rx) = start_receiver().await;
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Escalated, now_ms());
    for (code, retryable) in [
        (500, true),
        (503, true),
        (429, true),
        (400, false),
        (404, false),
    ] {
        let channel = Channel::Webhook {
            url: format!("http://{addr}/status/{code}?token=SECRET-IN-QUERY"),
            secret: None,
        };
        let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
        assert_eq!(err.retryable, retryable, "{code}: {}", err.message);
        assert_eq!(err.status, Some(code));
        assert!(
            err.message
                .contains(&format!("answered {code}: invalid_payload")),
            "{}",
            err.message
        );
        assert!(
            !err.message.contains("SECRET-IN-QUERY"),
            "url leaked: {}",
            err.message
        );
        assert_eq!(err.retry_after_ms, (code == 429).then_some(3000));
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // Bind and drop to get a loopback port with (almost certainly) nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Triggered, now_ms());
    let channel = Channel::Slack {
        url: format!("http://127.0.0.1:{port}/services/T0/B0/SECRETPATH"),
    };
    let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert_eq!(err.status, None);
    assert!(err.message.contains("could not connect"), "{}", err.message);
    assert!(
        !err.message.contains("SECRETPATH"),
        "url leaked: {}",
        err.message
    );
}

#[tokio::test]
async fn slack_message_has_blocks_buttons_and_escaped_text() {
    let (addr, mut rx) = start_receiver().await;
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Triggered, now_ms());
    let channel = Channel::Slack {
        url: format!("http://{addr}/hook"),
    };
    assert_eq!(
        send(&channel, &n, &http, now_ms()).await.unwrap().status,
        Some(200)
    );

    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.verified, None, "slack messages are not signed");
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("5xx ratio &lt;7.2%&gt; &amp; rising"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    let buttons: Vec<(&str, &str)> = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["text"]["text"].as_str().unwrap(),
                e["url"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(buttons[0], ("Acknowledge", n.ack_url.as_deref().unwrap()));
    assert_eq!(buttons[1], ("Resolve", n.resolve_url.as_deref().unwrap()));
}

#[tokio::test]
async fn postmortem_ticket_is_signed_and_complete() {
    let (addr, mut rx) = start_receiver().await;
    let http = reqwest::Client::new();
    let t0 = now_ms() - 3_600_000;
    let record = IncidentRecord {
        id: 42,
        title: "API error rate above 5%".into(),
        project: "shop".into(),
        service: "api".into(),
        severity: "critical".into(),
        status: "resolved".into(),
        opened_at_ms: t0,
        acknowledged_at_ms: Some(t0 + 60_000),
        acknowledged_by: Some("alice".into()),
        resolved_at_ms: Some(t0 + 600_000),
        resolved_by: None,
        suspected_cause: Some(SuspectedCause {
            release: "api".into(),
            version: "v1.4.2".into(),
            deployed_at_ms: t0 - 180_000,
            deployment_id: 17,
        }),
        alerts: vec![],
        timeline: vec![TimelineEntry {
            at_ms: t0,
            kind: "opened".into(),
            actor: None,
            text: "opened".into(),
        }],
    };
    let url = format!("http://{addr}/hook");
    let delivered = send_ticket(&url, Some(SECRET), &record, &http, now_ms())
        .await
        .unwrap();
    assert_eq!(delivered.status, Some(200));
    let seen = rx.recv().await.unwrap();
    assert_eq!(seen.verified, Some(true));
    assert_eq!(
        header(&seen.headers, "x-sluice-event").as_deref(),
        Some("incident.postmortem")
    );
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["type"], "sluice.postmortem");
    assert_eq!(body["incident"]["mttr_ms"], 600_000);
    assert!(
        body["markdown"]
            .as_str()
            .unwrap()
            .contains("## Action items")
    );
}

// ---------------------------------------------------------------------------------------
// SMTP

const PYTHON: &str = "/usr/bin/python3";
const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");

/// A running aiosmtpd sink; killed when dropped.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl SmtpSink {
    /// Starts the sink, or returns `None` (after a loud message) when aiosmtpd is not
    /// installed and `CI` is unset. In CI a missing aiosmtpd fails the test.
    async fn start() -> Option<SmtpSink> {
        let available = std::process::Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            let msg = "python3-aiosmtpd is not installed (`apt-get install python3-aiosmtpd`)";
            if std::env::var_os("CI").is_some() {
                panic!("{msg}; the email delivery tests cannot run");
            }
            eprintln!(
                "\n!!!!!!!!!!!!!!!!\n!!! SKIPPING email delivery test: {msg}\n!!!!!!!!!!!!!!!!\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(PYTHON)
            .arg(SINK)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The sink prints its port once it is listening: no polling, no port race.
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("smtp sink did not report its port within 30s")
        .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("smtp sink said {line:?}"));
        Some(SmtpSink {
            port,
            dir,
            _child: child,
        })
    }

    fn config(&self, password: &str) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: SmtpTls::None,
            username: Some("sluice".into()),
            password: Some(password.into()),
            from: "sluice alerts <alerts@example.com>".into(),
        }
    }

    fn message(&self, n: usize) -> Value {
        let path: PathBuf = self.dir.path().join(format!("{n}.json"));
        read_json(&path)
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_and_threads_per_incident() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let http = reqwest::Client::new();
    let to = vec![
        "oncall@example.com".to_string(),
        "Bob <bob@example.org>".to_string(),
    ];
    let channel = Channel::Email {
        smtp: sink.config("s3cret"),
        to,
    };
    let t0 = 1_700_000_000_000;

    let first = notification(NotificationEvent::Triggered, t0);
    let delivered = send(&channel, &first, &http, t0 + 1_000).await.unwrap();
    assert_eq!(delivered.status, Some(250));
    assert!(
        delivered.detail.contains("OK stored"),
        "{}",
        delivered.detail
    );

    // The sink wrote the message before answering 250, so it is on disk now.
    let m = sink.message(1);
    assert_eq!(
        m["subject"],
        format!("[sluice] [CRITICAL] Triggered #42: {}", first.title)
    );
    assert_eq!(m["mail_from"], "alerts@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "bob@example.org"])
    );
    assert_eq!(m["to"].as_array().unwrap().len(), 2);
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["parts"], serde_json::json!(["text/plain", "text/html"]));
    assert_eq!(m["message_id"], "<incident-42@example.com>");
    assert!(m["in_reply_to"].is_null());
    assert_eq!(m["auto_submitted"], "auto-generated");
    assert_eq!(m["date_s"], (t0 + 1_000) / 1000);
    let plain = m["plain"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    let ack = first.ack_url.as_deref().unwrap();
    let resolve = first.resolve_url.as_deref().unwrap();
    assert!(plain.contains(&format!("Acknowledge: {ack}")), "{plain}");
    assert!(plain.contains(&format!("Resolve: {resolve}")), "{plain}");
    assert!(plain.contains("5xx ratio <7.2%> & rising"), "{plain}");
    assert!(
        html.contains(&format!("href=\"{}\"", ack.replace('&', "&amp;"))),
        "{html}"
    );
    assert!(
        html.contains("5xx ratio &lt;7.2%&gt; &amp; rising"),
        "{html}"
    );
    assert!(html.contains("Größe ✓"), "{html}");

    let mut resolved = notification(NotificationEvent::Resolved, t0 + 600_000);
    resolved.ack_url = None;
    resolved.resolve_url = None;
    send(&channel, &resolved, &http, t0 + 601_000)
        .await
        .unwrap();
    let m2 = sink.message(2);
    assert!(
        m2["subject"]
            .as_str()
            .unwrap()
            .starts_with("[sluice] [CRITICAL] Resolved #42: ")
    );
    assert_eq!(m2["in_reply_to"], "<incident-42@example.com>");
    assert_eq!(m2["references"], "<incident-42@example.com>");
    assert_ne!(m2["message_id"], m["message_id"]);
    assert!(!m2["plain"].as_str().unwrap().contains("Acknowledge:"));
}

#[tokio::test]
async fn email_rejections_are_classified() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Triggered, now_ms());

    // A wrong password gets a permanent 535: retrying cannot help.
    let channel = Channel::Email {
        smtp: sink.config("wrong"),
        to: vec!["a@example.com".into()],
    };
    let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
    assert!(!err.retryable, "{}", err.message);
    assert_eq!(err.status, Some(535), "{}", err.message);
    assert!(
        !err.message.contains("wrong"),
        "password leaked: {}",
        err.message
    );

    // A server without STARTTLS must not get the mail (or the password) in plain text
    // when the channel asks for STARTTLS; neither may implicit TLS fall back.
    for tls in [SmtpTls::StartTls, SmtpTls::Tls] {
        let mut smtp = sink.config("s3cret");
        smtp.tls = tls;
        let channel = Channel::Email {
            smtp,
            to: vec!["a@example.com".into()],
        };
        let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
        assert!(!err.retryable, "{tls:?}: {}", err.message);
    }

    // Nobody listening: retryable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut smtp = sink.config("s3cret");
    smtp.port = port;
    let channel = Channel::Email {
        smtp,
        to: vec!["a@example.com".into()],
    };
    let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert!(!sink.dir.path().join("1.json").exists());
}

#[tokio::test]
async fn https_without_tls_support_is_a_final_error_that_says_so() {
    // Nothing listens on port 9 (discard). With a TLS-enabled client this is a plain,
    // retryable connection failure; without TLS (this crate's own build) the attempt must
    // fail for good and name the missing TLS support rather than retry forever.
    let http = reqwest::Client::new();
    let n = notification(NotificationEvent::Triggered, now_ms());
    let channel = Channel::Webhook {
        url: "https://127.0.0.1:9/hook".into(),
        secret: None,
    };
    let err = send(&channel, &n, &http, now_ms()).await.unwrap_err();
    if err.retryable {
        assert!(err.message.contains("could not connect"), "{}", err.message);
        assert!(
            !err.message.contains("scheme is not http"),
            "{}",
            err.message
        );
    } else {
        assert!(err.message.contains("no TLS support"), "{}", err.message);
    }
}
