//! One delivery attempt of one notification over one channel. The server owns retries
//! (with [`crate::Backoff`]) and records each attempt's [`Delivered`] or
//! [`DeliveryError`] on the incident timeline, so both carry a short human-readable text
//! that never contains the channel's secrets (URLs are shown as scheme and host only).
//!
//! Every attempt is bounded in time: [`HTTP_TIMEOUT`] for webhooks (connect to last body
//! byte), [`SMTP_COMMAND_TIMEOUT`] per SMTP command and [`SMTP_TOTAL_TIMEOUT`] overall.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, SmtpConfig, SmtpTls, parse_mailbox, redact_url};
use crate::model::Notification;
use crate::postmortem::{IncidentRecord, ticket_json};
use crate::render::{
    WebhookRequest, render_email, render_slack, render_webhook, signed_json_request,
};
use crate::text::{one_line, truncate};

/// Limit for a whole HTTP attempt, from connecting to the last byte of the answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for connecting and for each SMTP command.
pub const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit for a whole SMTP attempt.
pub const SMTP_TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a response body is kept for the timeline.
const DETAIL_BYTES: usize = 300;
const USER_AGENT: &str = concat!("sluice-notify/", env!("CARGO_PKG_VERSION"));

/// A successful attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// HTTP status, or the SMTP reply code to the message (e.g. 250).
    pub status: Option<u16>,
    /// What the receiver said, for the timeline (e.g. `slack https://hooks.slack.com/… answered 200: ok`).
    pub detail: String,
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Whether trying again later may succeed (timeouts, refused connections, 429, 5xx,
    /// SMTP 4xx). Configuration problems and other 4xx / SMTP 5xx answers are final.
    pub retryable: bool,
    /// What went wrong, where, and what to check.
    pub message: String,
    /// HTTP status or SMTP reply code, when the receiver answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// The receiver's `Retry-After` (seconds form only), in milliseconds. The server should
    /// wait at least this long, whatever the backoff says.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl DeliveryError {
    fn retryable(message: String) -> Self {
        DeliveryError {
            retryable: true,
            message,
            status: None,
            retry_after_ms: None,
        }
    }

    fn fatal(message: String) -> Self {
        DeliveryError {
            retryable: false,
            message,
            status: None,
            retry_after_ms: None,
        }
    }
}

/// Makes one attempt to deliver `n` over `channel`. `now_ms` is the send time (webhook
/// timestamp and signature, mail `Date`). `http` is the server's shared client; its
/// redirect and proxy policy apply.
pub async fn send(
    channel: &Channel,
    n: &Notification,
    http: &reqwest::Client,
    now_ms: i64,
) -> Result<Delivered, DeliveryError> {
    match channel {
        Channel::Webhook { url, secret } => {
            post_json(
                http,
                "webhook",
                url,
                render_webhook(n, secret.as_deref(), now_ms),
            )
            .await
        }
        Channel::Slack { url } => {
            let req = WebhookRequest {
                body: render_slack(n).to_string(),
                headers: Vec::new(),
            };
            post_json(http, "slack", url, req).await
        }
        Channel::Email { smtp, to } => send_email(smtp, to, n, now_ms).await,
    }
}

/// Makes one attempt to post the postmortem record ([`ticket_json`]) to a ticket webhook,
/// with the same headers and signature as notification webhooks (`X-Sluice-Event:
/// incident.postmortem`, delivery key `postmortem-<id>`).
pub async fn send_ticket(
    url: &str,
    secret: Option<&str>,
    record: &IncidentRecord,
    http: &reqwest::Client,
    now_ms: i64,
) -> Result<Delivered, DeliveryError> {
    let req = signed_json_request(
        ticket_json(record).to_string(),
        "incident.postmortem",
        &format!("postmortem-{}", record.id),
        secret,
        now_ms,
    );
    post_json(http, "ticket webhook", url, req).await
}

async fn post_json(
    http: &reqwest::Client,
    kind: &str,
    url: &str,
    req: WebhookRequest,
) -> Result<Delivered, DeliveryError> {
    let target = format!("{kind} {}", redact_url(url));
    let mut builder = http
        .post(url)
        .timeout(HTTP_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, USER_AGENT);
    for (name, value) in req.headers {
        builder = builder.header(name, value);
    }
    let response = builder
        .body(req.body)
        .send()
        .await
        .map_err(|e| http_error(&target, e))?;
    let status = response.status();
    let retry_after_ms = retry_after_ms(response.headers());
    let snippet = body_snippet(response).await;
    let code = status.as_u16();
    let said = if snippet.is_empty() {
        String::new()
    } else {
        format!(": {snippet}")
    };
    if status.is_success() {
        return Ok(Delivered {
            status: Some(code),
            detail: format!("{target} answered {code}{said}"),
        });
    }
    let retryable = code == 408 || code == 429 || status.is_server_error();
    let hint = if retryable {
        "will retry"
    } else if code == 401 || code == 403 {
        "check the channel's url and secret"
    } else if code == 404 || code == 410 {
        "the url no longer exists; update the channel"
    } else {
        "the receiver rejected the request; check the channel settings"
    };
    Err(DeliveryError {
        retryable,
        message: format!("{target} answered {code}{said}; {hint}"),
        status: Some(code),
        retry_after_ms,
    })
}

/// Reads the start of the answer for the timeline, as one line of text.
async fn body_snippet(mut response: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < DETAIL_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    buf.truncate(DETAIL_BYTES);
    truncate(one_line(&String::from_utf8_lossy(&buf)).trim(), 200)
}

fn retry_after_ms(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Cap at a day: a hostile or broken receiver should not park a notification forever.
    Some(secs.min(86_400).saturating_mul(1000))
}

/// Error text with its causes, without the URL (which may hold a secret).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        // Many errors repeat their source in their own message; say each thing once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn http_error(target: &str, e: reqwest::Error) -> DeliveryError {
    let builder = e.is_builder();
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let e = e.without_url();
    let why = chain(&e);
    if builder {
        // A bad URL, or an https URL in a build without TLS support: retrying cannot help.
        DeliveryError::fatal(format!(
            "{target}: request could not be built ({why}); check the url (https needs a TLS-enabled build)"
        ))
    } else if connect && why.contains("scheme is not http") {
        // hyper-util's plain connector says this when the client was built without TLS
        // and is given an https URL; that will not change on retry.
        DeliveryError::fatal(format!(
            "{target}: this build of the http client has no TLS support, so https urls cannot be reached; enable a reqwest TLS feature in the server or use http"
        ))
    } else if timeout {
        DeliveryError::retryable(format!(
            "{target}: no answer within {}s; will retry",
            HTTP_TIMEOUT.as_secs()
        ))
    } else if connect {
        DeliveryError::retryable(format!("{target}: could not connect ({why}); will retry"))
    } else {
        DeliveryError::retryable(format!("{target}: request failed ({why}); will retry"))
    }
}

/// Mail `Date`: `now_ms` clamped to years 1970..=9999, which mail dates can express.
fn mail_date(now_ms: i64) -> SystemTime {
    const MAX_MS: u64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z
    let ms = u64::try_from(now_ms).unwrap_or(0).min(MAX_MS);
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

fn build_message(
    smtp: &SmtpConfig,
    to: &[String],
    n: &Notification,
    now_ms: i64,
) -> Result<Message, DeliveryError> {
    let config = |e: crate::channel::ChannelError| DeliveryError::fatal(e.to_string());
    let from: Mailbox = parse_mailbox(&smtp.from).map_err(config)?;
    if to.is_empty() {
        return Err(config(crate::channel::ChannelError::NoRecipients));
    }
    let content = render_email(n, from.email.domain());
    let mut builder = Message::builder()
        .from(from)
        .subject(content.subject)
        .message_id(Some(content.message_id))
        .date(mail_date(now_ms))
        .user_agent(USER_AGENT.to_string())
        // RFC 3834: tells vacation responders and ticket systems not to auto-reply.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ));
    for address in to {
        builder = builder.to(parse_mailbox(address).map_err(config)?);
    }
    if let Some(root) = content.in_reply_to {
        builder = builder.in_reply_to(root.clone()).references(root);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            content.text,
            content.html,
        ))
        .map_err(|e| {
            DeliveryError::fatal(format!(
                "email: message could not be built ({e}); check the addresses"
            ))
        })
}

fn transport(
    smtp: &SmtpConfig,
    target: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let host = smtp.host.trim();
    if host.is_empty() {
        return Err(DeliveryError::fatal(
            crate::channel::ChannelError::NoHost.to_string(),
        ));
    }
    let tls_error = |e: lettre::transport::smtp::Error| {
        DeliveryError::fatal(format!(
            "{target}: tls setup failed ({}); check smtp.host",
            chain(&e)
        ))
    };
    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(tls_error)?
        }
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(tls_error)?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(SMTP_COMMAND_TIMEOUT));
    match (&smtp.username, &smtp.password) {
        (Some(user), Some(password)) => {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        (None, None) => {}
        _ => {
            return Err(DeliveryError::fatal(
                crate::channel::ChannelError::HalfCredentials.to_string(),
            ));
        }
    }
    Ok(builder.build())
}

async fn send_email(
    smtp: &SmtpConfig,
    to: &[String],
    n: &Notification,
    now_ms: i64,
) -> Result<Delivered, DeliveryError> {
    let target = format!("email via {}:{}", one_line(smtp.host.trim()), smtp.port);
    let message = build_message(smtp, to, n, now_ms)?;
    let transport = transport(smtp, &target)?;
    match tokio::time::timeout(SMTP_TOTAL_TIMEOUT, transport.send(message)).await {
        Err(_) => Err(DeliveryError::retryable(format!(
            "{target}: not done within {}s; will retry",
            SMTP_TOTAL_TIMEOUT.as_secs()
        ))),
        Ok(Ok(response)) => {
            let code = u16::from(response.code());
            let said = truncate(
                &one_line(&response.message().collect::<Vec<_>>().join(" ")),
                200,
            );
            Ok(Delivered {
                status: Some(code),
                detail: format!(
                    "{target} accepted for {} recipient(s): {code} {said}",
                    to.len()
                ),
            })
        }
        Ok(Err(e)) => Err(smtp_error(&target, e)),
    }
}

/// True when the chain holds an I/O error of kind `InvalidData`, which is how rustls
/// reports a failed handshake or certificate check (for example implicit TLS against a
/// plain-text port). That will fail the same way next time.
fn tls_protocol_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(s) = cur {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        cur = s.source();
    }
    false
}

fn smtp_error(target: &str, e: lettre::transport::smtp::Error) -> DeliveryError {
    let status = e.status().map(u16::from);
    let why = chain(&e);
    let (retryable, hint) = if e.is_permanent() {
        (
            false,
            "the server refused; check the addresses and credentials",
        )
    } else if e.is_transient() || e.is_timeout() {
        (true, "will retry")
    } else if e.is_tls() || tls_protocol_error(&e) {
        (
            false,
            "tls failed; check smtp.tls, the port and the server certificate",
        )
    } else if e.is_client() {
        (false, "check the channel settings")
    } else {
        // Connection refused or reset, DNS failure, server hung up: usually temporary.
        (true, "will retry")
    };
    DeliveryError {
        retryable,
        message: format!("{target}: {why}; {hint}"),
        status,
        retry_after_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::notification;

    fn smtp() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "sluice <alerts@example.com>".into(),
        }
    }

    #[test]
    fn bad_addresses_are_final_errors_before_any_io() {
        let n = notification();
        let err = build_message(&smtp(), &["nope".into()], &n, 0).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("`nope`"), "{}", err.message);
        assert!(!build_message(&smtp(), &[], &n, 0).unwrap_err().retryable);
        let mut bad_from = smtp();
        bad_from.from = "not-an-address".into();
        assert!(
            !build_message(&bad_from, &["a@example.com".into()], &n, 0)
                .unwrap_err()
                .retryable
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after_ms(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after_ms(&h), Some(7000));
        h.insert(reqwest::header::RETRY_AFTER, "99999999".parse().unwrap());
        assert_eq!(retry_after_ms(&h), Some(86_400_000));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after_ms(&h), None);
    }

    #[test]
    fn mail_date_is_clamped() {
        assert_eq!(mail_date(-5), UNIX_EPOCH);
        assert_eq!(mail_date(1500), UNIX_EPOCH + Duration::from_millis(1500));
        assert!(mail_date(i64::MAX) < UNIX_EPOCH + Duration::from_secs(253_402_300_800));
    }
}
