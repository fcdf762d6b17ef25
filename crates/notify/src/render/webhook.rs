//! The generic webhook: the notification as JSON plus signature headers.
//!
//! Wire format (version 1): a JSON object with `"version": 1` and every field of
//! [`Notification`] under its Rust name (`incident_id`, `incident_url`, `event`, `title`,
//! `severity`, `project`, `service`, `summary`, `alert_count`, `alerts` (each `summary`,
//! `severity`, `labels`, `starts_at_ms`), `suspected_cause`, `ack_url`, `resolve_url`,
//! `acknowledged_by`, `at_ms`). Absent optional values are `null`. New fields may be
//! added within version 1; removing or renaming one bumps the version.

use serde::Serialize;

use crate::model::Notification;
use crate::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook};

/// The `version` field of the webhook body.
pub const WEBHOOK_VERSION: u32 = 1;
/// Header naming the event, e.g. `incident.triggered` or `incident.postmortem`.
pub const EVENT_HEADER: &str = "X-Sluice-Event";
/// Header with a key that stays the same across retries of one delivery (for dedup).
pub const DELIVERY_HEADER: &str = "X-Sluice-Delivery";

/// A rendered webhook request: what to POST and which headers to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// The JSON body, exactly the bytes that were signed.
    pub body: String,
    /// Headers to send besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    version: u32,
    #[serde(flatten)]
    notification: &'a Notification,
}

/// Renders the webhook request for `n` as signed at `now_ms`: the body, `X-Sluice-Event`,
/// `X-Sluice-Delivery`, `X-Sluice-Timestamp` (Unix seconds) and, when `secret` is set,
/// `X-Sluice-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.
pub fn render_webhook(n: &Notification, secret: Option<&str>, now_ms: i64) -> WebhookRequest {
    let body = Body {
        version: WEBHOOK_VERSION,
        notification: n,
    };
    // Cannot fail: every map has string keys and no type has a fallible Serialize.
    let body = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_string());
    signed_json_request(
        body,
        &format!("incident.{}", n.event.as_str()),
        &n.delivery_key(),
        secret,
        now_ms,
    )
}

/// Wraps an already serialised JSON body with sluice's webhook headers, signing it when
/// `secret` is set. Shared by notifications and the postmortem ticket webhook.
pub fn signed_json_request(
    body: String,
    event: &str,
    delivery_key: &str,
    secret: Option<&str>,
    now_ms: i64,
) -> WebhookRequest {
    let timestamp = now_ms.div_euclid(1000).to_string();
    let mut headers = vec![
        (EVENT_HEADER, event.to_string()),
        (DELIVERY_HEADER, delivery_key.to_string()),
        (TIMESTAMP_HEADER, timestamp.clone()),
    ];
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        headers.push((
            SIGNATURE_HEADER,
            sign_webhook(secret.as_bytes(), &timestamp, body.as_bytes()),
        ));
    }
    WebhookRequest { body, headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::verify_webhook;
    use crate::test_support::notification;

    fn header<'a>(r: &'a WebhookRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn body_has_version_and_documented_fields() {
        let n = notification();
        let r = render_webhook(&n, None, 1_700_000_000_500);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["incident_id"], n.incident_id);
        assert_eq!(v["event"], "triggered");
        assert_eq!(v["alerts"][0]["labels"]["pod"], "api-7f9c");
        assert_eq!(v["ack_url"], n.ack_url.clone().unwrap());
        assert!(v["acknowledged_by"].is_null());
        // The body parses back into a Notification (receivers may reuse the type).
        let back: Notification = serde_json::from_str(&r.body).unwrap();
        assert_eq!(back, n);
        assert_eq!(header(&r, TIMESTAMP_HEADER), Some("1700000000"));
        assert_eq!(header(&r, EVENT_HEADER), Some("incident.triggered"));
        assert_eq!(header(&r, DELIVERY_HEADER), Some(n.delivery_key().as_str()));
        assert_eq!(
            header(&r, SIGNATURE_HEADER),
            None,
            "no secret, no signature"
        );
    }

    #[test]
    fn signature_verifies_over_timestamp_and_body() {
        let n = notification();
        let r = render_webhook(&n, Some("topsecret"), 1_700_000_000_000);
        let sig = header(&r, SIGNATURE_HEADER).unwrap();
        let ts = header(&r, TIMESTAMP_HEADER).unwrap();
        assert_eq!(
            verify_webhook(b"topsecret", ts, r.body.as_bytes(), sig, 1_700_000_010, 300),
            Ok(())
        );
        assert!(verify_webhook(b"wrong", ts, r.body.as_bytes(), sig, 1_700_000_010, 300).is_err());
        // An empty secret is treated as no secret rather than a forgeable signature.
        let r = render_webhook(&n, Some(""), 0);
        assert_eq!(header(&r, SIGNATURE_HEADER), None);
    }
}
