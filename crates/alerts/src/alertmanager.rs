//! Alertmanager wire formats: alerts posted to `POST /api/v2/alerts` (what Prometheus
//! sends), the webhook receiver payload (version 4) and the webhooks sluice sends.
//!
//! [`parse_postable_alerts`] reproduces Alertmanager 0.25 in three stages, because each
//! stage answers differently:
//!
//! 1. Decoding (go-swagger binding, Go's `encoding/json`): an empty body is `422`
//!    `{"code":602,"message":"alerts in body is required"}`; malformed JSON, a wrong JSON
//!    type or an unparsable time is `400` `{"code":400,"message":"parsing alerts body from
//!    \"\" failed, because …"}`. Only the first JSON value of the body is read.
//! 2. Schema validation (go-swagger models): the first failing alert answers `422`, e.g.
//!    `{"code":602,"message":"0.labels in body is required"}` or `{"code":601,"message":
//!    "1.generatorURL in body must be of type uri: \"…\""}`.
//! 3. The handler: missing `startsAt` becomes `endsAt` when that is set, else `now`;
//!    missing `endsAt` becomes `now + resolve_timeout` (a "timeout" alert); empty label
//!    values are dropped; then each alert is validated (`start time must be before end
//!    time`, `invalid label set: invalid name "…"`, `at least one label pair required`,
//!    `invalid annotations: …`). Valid alerts are kept even when others fail; failures are
//!    joined with `"; "` and answered `400` with the message as a bare JSON string, and
//!    the valid alerts travel in [`AmRejection::accepted`] so the caller can store them
//!    exactly as Alertmanager would. Success is `200` with an empty body.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::fingerprint::{fingerprint_hex, format_fingerprint};
use crate::gotext::{is_valid_label_name, quote};
use crate::model::{
    Labels, SOURCE_ALERTMANAGER_API, SOURCE_ALERTMANAGER_WEBHOOK, Severity, Signal, SignalAction,
};
use crate::timestamp::{
    GO_ZERO_TIME_MS, TimeError, format_rfc3339, parse_alertmanager_datetime, parse_rfc3339,
};

/// The HTTP status of an accepted `POST /api/v2/alerts` (the body is empty).
pub const ACCEPTED_STATUS: u16 = 200;
/// The webhook payload version this crate reads and writes.
pub const WEBHOOK_VERSION: &str = "4";

/// A refusal in Alertmanager's shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("alertmanager request refused with status {status}: {body}")]
pub struct AmRejection {
    /// HTTP status code (400 or 422).
    pub status: u16,
    /// JSON body: `{"code":…,"message":…}` or, for alert validation failures, a string.
    pub body: Value,
    /// Alerts that were valid and that Alertmanager would have stored despite the error.
    pub accepted: Vec<AmAlert>,
}

impl AmRejection {
    /// A go-openapi error: codes of 600 and above (validation) are sent as `422`.
    fn swagger(code: u16, message: String) -> Self {
        AmRejection {
            status: if code >= 600 { 422 } else { code },
            body: json!({ "code": code, "message": message }),
            accepted: Vec::new(),
        }
    }

    fn parse(reason: &str) -> Self {
        AmRejection::swagger(
            400,
            format!("parsing alerts body from \"\" failed, because {reason}"),
        )
    }

    /// The human message, whichever body shape was used.
    pub fn message(&self) -> String {
        match &self.body {
            Value::String(message) => message.clone(),
            other => other
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// Whether an alert is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Still happening.
    Firing,
    /// Over.
    Resolved,
}

impl AlertStatus {
    /// The wire name (`firing` or `resolved`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// An alert accepted from `POST /api/v2/alerts`, with Alertmanager's defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmAlert {
    /// Identifying labels (empty values removed).
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// Start, in milliseconds since the epoch.
    pub starts_at_ms: i64,
    /// End, in milliseconds since the epoch; `now + resolve_timeout` for timeout alerts.
    pub ends_at_ms: i64,
    /// Link back to the rule, if sent.
    pub generator_url: Option<String>,
    /// The label fingerprint, 16 hex digits.
    pub fingerprint: String,
    /// Whether `endsAt` was missing and set from the resolve timeout.
    pub timeout: bool,
    /// Whether `endsAt <= now` at parse time.
    pub resolved: bool,
}

impl AmAlert {
    /// Firing or resolved, as seen at parse time.
    pub fn status(&self) -> AlertStatus {
        if self.resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        }
    }

    /// The normalised signal: key = fingerprint, resolve when resolved, severity from the
    /// `severity` label, summary from the `summary` or `description` annotation or else
    /// the `alertname` label.
    pub fn into_signal(self) -> Signal {
        let action = if self.resolved {
            SignalAction::Resolve
        } else {
            SignalAction::Trigger
        };
        Signal {
            key: self.fingerprint,
            action,
            severity: severity_of(&self.labels),
            summary: summary_of(&self.labels, &self.annotations),
            labels: self.labels,
            annotations: self.annotations,
            starts_at_ms: Some(self.starts_at_ms),
            ends_at_ms: Some(self.ends_at_ms),
            links: Vec::new(),
            images: Vec::new(),
            details: Value::Null,
            generator_url: self.generator_url,
            source: SOURCE_ALERTMANAGER_API.to_owned(),
        }
    }
}

fn severity_of(labels: &Labels) -> Severity {
    Severity::from_label(labels.get("severity").map_or("", String::as_str))
}

fn summary_of(labels: &Labels, annotations: &Labels) -> String {
    ["summary", "description"]
        .iter()
        .find_map(|name| annotations.get(*name).filter(|v| !v.is_empty()))
        .or_else(|| labels.get("alertname"))
        .cloned()
        .unwrap_or_default()
}

/// The JSON kind name Go's `encoding/json` uses in type errors.
fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(value: &Value, target: &str) -> String {
    format!("json: cannot unmarshal {} into {target}", go_kind(value))
}

/// An alert as decoded, before validation and defaults.
struct RawAlert {
    /// `None` when `labels` was absent or `null` (the schema says it is required).
    labels: Option<Labels>,
    annotations: Labels,
    starts_at: Option<i64>,
    ends_at: Option<i64>,
    generator_url: String,
}

/// Decodes a label map like Go does into `map[string]string`: `null` values become "".
fn decode_label_map(value: &Value, field: &str) -> Result<Option<Labels>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Object(map) => {
            let mut labels = Labels::new();
            for (name, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => {
                        return Err(type_error(
                            other,
                            &format!("Go struct field {field} of type string"),
                        ));
                    }
                };
                labels.insert(name.clone(), v);
            }
            Ok(Some(labels))
        }
        other => Err(type_error(
            other,
            &format!("Go struct field {field} of type models.LabelSet"),
        )),
    }
}

fn decode_time(value: Option<&Value>, field: &str) -> Result<Option<i64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match parse_alertmanager_datetime(s) {
            Ok(ms) => Ok(Some(ms)),
            Err(TimeError::Format(_)) => Err(format!(
                "parsing time {} as \"2006-01-02 15:04:05\": cannot parse it as a date-time",
                quote(s)
            )),
            Err(TimeError::Range(_)) => {
                Err(format!("parsing time {}: field out of range", quote(s)))
            }
        },
        Some(other) => Err(type_error(
            other,
            &format!("Go struct field .{field} of type strfmt.DateTime"),
        )),
    }
}

fn decode_alert(index: usize, value: &Value) -> Result<RawAlert, String> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Null => return Err(format!("alert {index} is null")),
        other => return Err(type_error(other, "Go value of type models.PostableAlert")),
    };
    let annotations = match obj.get("annotations") {
        Some(v) => decode_label_map(v, ".annotations")?.unwrap_or_default(),
        None => Labels::new(),
    };
    let ends_at = decode_time(obj.get("endsAt"), "endsAt")?;
    let starts_at = decode_time(obj.get("startsAt"), "startsAt")?;
    let generator_url = match obj.get("generatorURL") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(type_error(
                other,
                "Go struct field Alert.generatorURL of type strfmt.URI",
            ));
        }
    };
    let labels = match obj.get("labels") {
        Some(v) => decode_label_map(v, "Alert.labels")?,
        None => None,
    };
    Ok(RawAlert {
        labels,
        annotations,
        starts_at,
        ends_at,
        generator_url,
    })
}

/// Reads the first JSON value of a body the way Go's `json.Decoder` does: invalid UTF-8 is
/// replaced, anything after the first value is ignored. `Ok(None)` means no value at all.
fn first_json_value(body: &[u8]) -> Result<Option<Value>, serde_json::Error> {
    let text = String::from_utf8_lossy(body);
    let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
    stream.next().transpose()
}

fn describe_json_error(err: &serde_json::Error) -> String {
    if err.is_eof() {
        "unexpected EOF".to_owned()
    } else {
        err.to_string()
    }
}

/// Validates a `POST /api/v2/alerts` body as Alertmanager 0.25 does (see the module
/// documentation for the stages and answers).
///
/// `now_ms` is the receive time and `resolve_timeout_ms` Alertmanager's
/// `global.resolve_timeout` (5 minutes by default). A body of `null` or `[]` is accepted
/// with no alerts.
pub fn parse_postable_alerts(
    body: &[u8],
    now_ms: i64,
    resolve_timeout_ms: i64,
) -> Result<Vec<AmAlert>, AmRejection> {
    let value = match first_json_value(body) {
        Ok(Some(value)) => value,
        Ok(None) => {
            return Err(AmRejection::swagger(
                602,
                "alerts in body is required".to_owned(),
            ));
        }
        Err(err) => return Err(AmRejection::parse(&describe_json_error(&err))),
    };
    let items = match &value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(AmRejection::parse(&type_error(
                other,
                "Go value of type models.PostableAlerts",
            )));
        }
    };

    // Stage 1: decoding, where the first error aborts the request.
    let raws = items
        .iter()
        .enumerate()
        .map(|(i, item)| decode_alert(i, item))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| AmRejection::parse(&reason))?;

    // Stage 2: schema validation, where the first failing alert answers.
    for (i, raw) in raws.iter().enumerate() {
        if !raw.generator_url.is_empty() && !is_request_uri(&raw.generator_url) {
            return Err(AmRejection::swagger(
                601,
                format!(
                    "{i}.generatorURL in body must be of type uri: {}",
                    quote(&raw.generator_url)
                ),
            ));
        }
        if raw.labels.is_none() {
            return Err(AmRejection::swagger(
                602,
                format!("{i}.labels in body is required"),
            ));
        }
    }

    // Stage 3: defaults and per-alert validation, keeping the valid alerts.
    let mut accepted = Vec::with_capacity(raws.len());
    let mut failures = Vec::new();
    for raw in raws {
        match normalise(raw, now_ms, resolve_timeout_ms) {
            Ok(alert) => accepted.push(alert),
            Err(message) => failures.push(message),
        }
    }
    if failures.is_empty() {
        Ok(accepted)
    } else {
        Err(AmRejection {
            status: 400,
            body: Value::String(failures.join("; ")),
            accepted,
        })
    }
}

fn is_zero(time: Option<i64>) -> bool {
    time.is_none_or(|ms| ms == GO_ZERO_TIME_MS)
}

fn normalise(raw: RawAlert, now_ms: i64, resolve_timeout_ms: i64) -> Result<AmAlert, String> {
    let starts_at_ms = match (is_zero(raw.starts_at), is_zero(raw.ends_at), raw.ends_at) {
        (false, _, _) => raw.starts_at.unwrap_or(now_ms),
        (true, false, Some(ends)) => ends,
        _ => now_ms,
    };
    let timeout = is_zero(raw.ends_at);
    let ends_at_ms = match raw.ends_at {
        Some(ends) if !timeout => ends,
        _ => now_ms.saturating_add(resolve_timeout_ms),
    };
    let mut labels = raw.labels.unwrap_or_default();
    labels.retain(|_, value| !value.is_empty());

    if starts_at_ms == GO_ZERO_TIME_MS {
        return Err("start time missing".to_owned());
    }
    if ends_at_ms < starts_at_ms {
        return Err("start time must be before end time".to_owned());
    }
    if let Some(name) = labels.keys().find(|name| !is_valid_label_name(name)) {
        return Err(format!("invalid label set: invalid name {}", quote(name)));
    }
    if labels.is_empty() {
        return Err("at least one label pair required".to_owned());
    }
    if let Some(name) = raw
        .annotations
        .keys()
        .find(|name| !is_valid_label_name(name))
    {
        return Err(format!("invalid annotations: invalid name {}", quote(name)));
    }
    Ok(AmAlert {
        fingerprint: fingerprint_hex(&labels),
        labels,
        annotations: raw.annotations,
        starts_at_ms,
        ends_at_ms,
        generator_url: (!raw.generator_url.is_empty()).then_some(raw.generator_url),
        timeout,
        resolved: ends_at_ms <= now_ms,
    })
}

/// Go's `url.ParseRequestURI` succeeding, which is what strfmt's `uri` format checks.
///
/// Reproduced: control characters, a scheme that starts with a non-letter, a relative
/// reference without a scheme, an invalid port, characters not allowed in a host and
/// malformed `%` escapes in the host or path are refused.
fn is_request_uri(url: &str) -> bool {
    if url.is_empty() || url.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if url == "*" {
        return true;
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return false;
    };
    let rest = match rest.strip_suffix('?') {
        Some(stripped) if rest.matches('?').count() == 1 => stripped,
        _ => rest.split_once('?').map_or(rest, |(before, _)| before),
    };
    if !rest.starts_with('/') {
        // A rootless path after a scheme is opaque (e.g. `mailto:x`); without a scheme it
        // is not a request URI.
        return !scheme.is_empty();
    }
    let mut path = rest;
    if !scheme.is_empty()
        && let Some(after) = rest.strip_prefix("//")
    {
        let (authority, tail) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        if !valid_authority(authority) {
            return false;
        }
        path = tail;
    }
    valid_escapes(path)
}

/// Splits off a scheme like Go's `getScheme`; `None` when the URL is malformed there.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    for (i, b) in url.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((&url[..i], &url[i + 1..])),
            _ => return Some(("", url)),
        }
    }
    Some(("", url))
}

fn valid_authority(authority: &str) -> bool {
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let port_ok = |port: &str| {
        port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    };
    let host_part = if let Some(inner) = host.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return false;
        };
        if !port_ok(&inner[end + 1..]) {
            return false;
        }
        &inner[..end]
    } else {
        if let Some(i) = host.rfind(':')
            && !port_ok(&host[i..])
        {
            return false;
        }
        host
    };
    host_part
        .bytes()
        .all(|b| b >= 0x80 || b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"%".contains(&b))
        && valid_escapes(host_part)
}

fn valid_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// One alert in a webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookAlert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// Start, in milliseconds since the epoch.
    pub starts_at_ms: i64,
    /// End, or `None` when sent as Go's zero time.
    pub ends_at_ms: Option<i64>,
    /// Link back to the rule ("" when none).
    pub generator_url: String,
    /// Fingerprint as sent, or computed from the labels when the sender left it out.
    pub fingerprint: String,
}

/// A webhook notification, payload version 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookMessage {
    /// Always "4".
    pub version: String,
    /// The group's key, identifying the aggregation group.
    pub group_key: String,
    /// How many alerts were left out because of `max_alerts`.
    pub truncated_alerts: u64,
    /// Firing if any alert fires.
    pub status: AlertStatus,
    /// The receiver's name.
    pub receiver: String,
    /// Labels the group is keyed by.
    pub group_labels: Labels,
    /// Labels all alerts share.
    pub common_labels: Labels,
    /// Annotations all alerts share.
    pub common_annotations: Labels,
    /// Link to the sending Alertmanager.
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<WebhookAlert>,
}

impl WebhookMessage {
    /// One signal per alert (key = fingerprint); `details` records the group key,
    /// receiver and external URL.
    pub fn into_signals(self) -> Vec<Signal> {
        let details = json!({
            "groupKey": self.group_key,
            "receiver": self.receiver,
            "externalURL": self.external_url,
        });
        self.alerts
            .into_iter()
            .map(|alert| Signal {
                key: alert.fingerprint,
                action: match alert.status {
                    AlertStatus::Firing => SignalAction::Trigger,
                    AlertStatus::Resolved => SignalAction::Resolve,
                },
                severity: severity_of(&alert.labels),
                summary: summary_of(&alert.labels, &alert.annotations),
                labels: alert.labels,
                annotations: alert.annotations,
                starts_at_ms: Some(alert.starts_at_ms),
                ends_at_ms: alert.ends_at_ms,
                links: Vec::new(),
                images: Vec::new(),
                details: details.clone(),
                generator_url: (!alert.generator_url.is_empty()).then_some(alert.generator_url),
                source: SOURCE_ALERTMANAGER_WEBHOOK.to_owned(),
            })
            .collect()
    }
}

fn webhook_error(message: String) -> AmRejection {
    AmRejection::swagger(400, message)
}

fn wh_string(
    obj: &Map<String, Value>,
    name: &str,
    path: &str,
    required: bool,
) -> Result<String, AmRejection> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(webhook_error(format!(
            "webhook field \"{path}\" is missing: send a complete Alertmanager webhook payload"
        ))),
        Some(_) => Err(webhook_error(format!(
            "webhook field \"{path}\" must be a string"
        ))),
    }
}

fn wh_labels(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Labels, AmRejection> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(Labels::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(webhook_error(format!(
                    "webhook field \"{path}.{k}\" must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(webhook_error(format!(
            "webhook field \"{path}\" must be an object of strings"
        ))),
    }
}

fn wh_status(obj: &Map<String, Value>, path: &str) -> Result<AlertStatus, AmRejection> {
    match obj.get("status").and_then(Value::as_str) {
        Some("firing") => Ok(AlertStatus::Firing),
        Some("resolved") => Ok(AlertStatus::Resolved),
        _ => Err(webhook_error(format!(
            "webhook field \"{path}\" must be \"firing\" or \"resolved\""
        ))),
    }
}

fn wh_time(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Option<i64>, AmRejection> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_rfc3339(s)
            .map(|ms| (ms != GO_ZERO_TIME_MS).then_some(ms))
            .map_err(|err| webhook_error(format!("webhook field \"{path}\" is invalid: {err}"))),
        Some(_) => Err(webhook_error(format!(
            "webhook field \"{path}\" must be an RFC 3339 time string"
        ))),
    }
}

fn wh_alert(index: usize, value: &Value) -> Result<WebhookAlert, AmRejection> {
    let path = format!("alerts[{index}]");
    let Value::Object(obj) = value else {
        return Err(webhook_error(format!(
            "webhook field \"{path}\" must be an object"
        )));
    };
    let status = wh_status(obj, &format!("{path}.status"))?;
    let labels = wh_labels(obj, "labels", &format!("{path}.labels"))?;
    let annotations = wh_labels(obj, "annotations", &format!("{path}.annotations"))?;
    let starts_at_ms = wh_time(obj, "startsAt", &format!("{path}.startsAt"))?.ok_or_else(|| {
        webhook_error(format!(
            "webhook field \"{path}.startsAt\" is missing: send the alert's start time"
        ))
    })?;
    let ends_at_ms = wh_time(obj, "endsAt", &format!("{path}.endsAt"))?;
    let generator_url = wh_string(obj, "generatorURL", &format!("{path}.generatorURL"), false)?;
    let sent = wh_string(obj, "fingerprint", &format!("{path}.fingerprint"), false)?;
    let fingerprint = if sent.is_empty() {
        fingerprint_hex(&labels)
    } else {
        sent
    };
    Ok(WebhookAlert {
        status,
        labels,
        annotations,
        starts_at_ms,
        ends_at_ms,
        generator_url,
        fingerprint,
    })
}

/// Parses an Alertmanager webhook notification (payload version 4).
///
/// `version`, `groupKey`, `status`, `receiver` and `alerts` (with each alert's `status`
/// and `startsAt`) are required; other members default to empty. A version other than
/// "4" is refused, since the meaning of the fields depends on it. Errors are `400`
/// `{"code":400,"message":…}`.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookMessage, AmRejection> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        webhook_error(format!(
            "webhook body is not valid JSON ({err}): send the payload as JSON"
        ))
    })?;
    let Value::Object(obj) = value else {
        return Err(webhook_error(
            "webhook body must be a JSON object: send an Alertmanager webhook payload".to_owned(),
        ));
    };
    let version = match obj.get("version") {
        Some(Value::String(v)) if v == WEBHOOK_VERSION => v.clone(),
        Some(Value::String(v)) => {
            return Err(webhook_error(format!(
                "unsupported webhook payload version {}: only version \"4\" is accepted, upgrade the sender",
                quote(v)
            )));
        }
        Some(_) => {
            return Err(webhook_error(
                "webhook field \"version\" must be the string \"4\"".to_owned(),
            ));
        }
        None => {
            return Err(webhook_error(
                "webhook payload has no \"version\": send payload version \"4\"".to_owned(),
            ));
        }
    };
    let truncated_alerts = match obj.get("truncatedAlerts") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            webhook_error(
                "webhook field \"truncatedAlerts\" must be a non-negative integer".to_owned(),
            )
        })?,
    };
    let alerts = match obj.get("alerts") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| wh_alert(i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(webhook_error(
                "webhook field \"alerts\" must be an array".to_owned(),
            ));
        }
        None => {
            return Err(webhook_error(
                "webhook field \"alerts\" is missing: send the group's alerts".to_owned(),
            ));
        }
    };
    Ok(WebhookMessage {
        version,
        group_key: wh_string(&obj, "groupKey", "groupKey", true)?,
        truncated_alerts,
        status: wh_status(&obj, "status")?,
        receiver: wh_string(&obj, "receiver", "receiver", true)?,
        group_labels: wh_labels(&obj, "groupLabels", "groupLabels")?,
        common_labels: wh_labels(&obj, "commonLabels", "commonLabels")?,
        common_annotations: wh_labels(&obj, "commonAnnotations", "commonAnnotations")?,
        external_url: wh_string(&obj, "externalURL", "externalURL", false)?,
        alerts,
    })
}

/// One alert of a notification sluice sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingAlert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Labels (the fingerprint is computed from them).
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// Start, in milliseconds since the epoch.
    pub starts_at_ms: i64,
    /// End; only rendered for resolved alerts, as Alertmanager hides it while firing.
    pub ends_at_ms: Option<i64>,
    /// Link back to the rule ("" when none).
    pub generator_url: String,
}

impl From<&AmAlert> for OutgoingAlert {
    fn from(alert: &AmAlert) -> Self {
        OutgoingAlert {
            status: alert.status(),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at_ms: alert.starts_at_ms,
            ends_at_ms: Some(alert.ends_at_ms),
            generator_url: alert.generator_url.clone().unwrap_or_default(),
        }
    }
}

/// A group notification sluice sends to a webhook receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingGroup {
    /// The receiver's name.
    pub receiver: String,
    /// The group key (see [`crate::group_key`]).
    pub group_key: String,
    /// The labels the group is keyed by.
    pub group_labels: Labels,
    /// The alerts to send (already cut to the receiver's `max_alerts`).
    pub alerts: Vec<OutgoingAlert>,
    /// Link to sluice's alert view.
    pub external_url: String,
    /// How many alerts were left out.
    pub truncated_alerts: u64,
}

fn common(maps: &mut dyn Iterator<Item = &Labels>) -> Labels {
    let Some(first) = maps.next() else {
        return Labels::new();
    };
    let mut shared = first.clone();
    for map in maps {
        if shared.is_empty() {
            break;
        }
        shared.retain(|k, v| map.get(k) == Some(v));
    }
    shared
}

/// Renders a notification as an Alertmanager webhook payload, version 4.
///
/// The group status is `firing` when any alert fires; `commonLabels` and
/// `commonAnnotations` are the pairs every alert shares; each alert carries its
/// fingerprint; times are RFC 3339 and firing alerts (or resolved ones without an end)
/// show `endsAt` as `0001-01-01T00:00:00Z`, exactly as Alertmanager does.
pub fn render_webhook(group: &OutgoingGroup) -> Value {
    let firing = group.alerts.iter().any(|a| a.status == AlertStatus::Firing);
    let status = if firing {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    };
    let alerts: Vec<Value> = group
        .alerts
        .iter()
        .map(|alert| {
            let ends = match (alert.status, alert.ends_at_ms) {
                (AlertStatus::Resolved, Some(ends)) => ends,
                _ => GO_ZERO_TIME_MS,
            };
            json!({
                "status": alert.status.as_str(),
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": format_rfc3339(alert.starts_at_ms),
                "endsAt": format_rfc3339(ends),
                "generatorURL": alert.generator_url,
                "fingerprint": format_fingerprint(crate::fingerprint::fingerprint(&alert.labels)),
            })
        })
        .collect();
    json!({
        "receiver": group.receiver,
        "status": status.as_str(),
        "alerts": alerts,
        "groupLabels": group.group_labels,
        "commonLabels": common(&mut group.alerts.iter().map(|a| &a.labels)),
        "commonAnnotations": common(&mut group.alerts.iter().map(|a| &a.annotations)),
        "externalURL": group.external_url,
        "version": WEBHOOK_VERSION,
        "groupKey": group.group_key,
        "truncatedAlerts": group.truncated_alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z
    const FIVE_MIN: i64 = 300_000;

    fn parse(body: &str) -> Result<Vec<AmAlert>, AmRejection> {
        parse_postable_alerts(body.as_bytes(), NOW, FIVE_MIN)
    }

    #[test]
    fn prometheus_style_alert_gets_defaults() {
        let alerts = parse(
            r#"[{"labels":{"alertname":"Down","severity":"page","empty":""},
                 "annotations":{"summary":"api is down"},
                 "generatorURL":"http://prom:9090/graph?g0.expr=up+%3D%3D+0"}]"#,
        )
        .expect("valid");
        let alert = &alerts[0];
        assert_eq!(alert.starts_at_ms, NOW);
        assert_eq!(alert.ends_at_ms, NOW + FIVE_MIN);
        assert!(alert.timeout);
        assert!(!alert.resolved);
        assert!(!alert.labels.contains_key("empty"));
        assert_eq!(alert.fingerprint, fingerprint_hex(&alert.labels));
        let signal = alert.clone().into_signal();
        assert_eq!(signal.action, SignalAction::Trigger);
        assert_eq!(signal.severity, Severity::Critical);
        assert_eq!(signal.summary, "api is down");
        assert_eq!(signal.key, alert.fingerprint);
    }

    #[test]
    fn missing_start_takes_end_and_past_end_resolves() {
        let alerts =
            parse(r#"[{"labels":{"a":"b"},"endsAt":"2024-05-01T11:00:00Z"}]"#).expect("valid");
        assert_eq!(alerts[0].starts_at_ms, NOW - 3_600_000);
        assert_eq!(alerts[0].ends_at_ms, NOW - 3_600_000);
        assert!(alerts[0].resolved);
        assert!(!alerts[0].timeout);
        assert_eq!(
            alerts[0].clone().into_signal().action,
            SignalAction::Resolve
        );
    }

    #[test]
    fn go_zero_times_count_as_unset() {
        let alerts = parse(
            r#"[{"labels":{"a":"b"},"startsAt":"0001-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]"#,
        )
        .expect("valid");
        assert_eq!(alerts[0].starts_at_ms, NOW);
        assert!(alerts[0].timeout);
    }

    #[test]
    fn partial_failure_keeps_valid_alerts() {
        let rejection = parse(
            r#"[{"labels":{"a":"b"}},
                {"labels":{"bad-name":"x"}},
                {"labels":{"x":""}},
                {"labels":{"a":"c"},"startsAt":"2024-05-01T12:00:00Z","endsAt":"2024-05-01T11:00:00Z"}]"#,
        )
        .expect_err("two invalid alerts");
        assert_eq!(rejection.status, 400);
        assert_eq!(
            rejection.body,
            Value::String(
                "invalid label set: invalid name \"bad-name\"; at least one label pair required; \
                 start time must be before end time"
                    .to_owned()
            )
        );
        assert_eq!(rejection.accepted.len(), 1);
        assert_eq!(
            rejection.accepted[0].labels.get("a").map(String::as_str),
            Some("b")
        );
    }

    #[test]
    fn request_uri_rules() {
        for ok in [
            "http://prom:9090/graph?g0.expr=up",
            "https://[::1]:9090/x",
            "/relative/path",
            "mailto:someone",
            "*",
            "http://host/%41",
        ] {
            assert!(is_request_uri(ok), "{ok}");
        }
        for bad in [
            "relative",
            "1http://x",
            ":x",
            "http://host:port/",
            "http://ho st/",
            "http://host/%zz",
            "http://[::1/",
            "http://x/\u{1}",
        ] {
            assert!(!is_request_uri(bad), "{bad}");
        }
    }

    #[test]
    fn webhook_round_trip_keeps_fields() {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), "Down".into());
        labels.insert("job".into(), "api".into());
        let group = OutgoingGroup {
            receiver: "team".into(),
            group_key: "{}:{alertname=\"Down\"}".into(),
            group_labels: labels.clone(),
            alerts: vec![OutgoingAlert {
                status: AlertStatus::Resolved,
                labels: labels.clone(),
                annotations: Labels::new(),
                starts_at_ms: NOW,
                ends_at_ms: Some(NOW + 1_500),
                generator_url: String::new(),
            }],
            external_url: "https://sluice.example".into(),
            truncated_alerts: 2,
        };
        let rendered = render_webhook(&group);
        assert_eq!(rendered["status"], "resolved");
        assert_eq!(rendered["alerts"][0]["endsAt"], "2024-05-01T12:00:01.5Z");
        let message = parse_webhook(rendered.to_string().as_bytes()).expect("parses");
        assert_eq!(message.truncated_alerts, 2);
        assert_eq!(message.alerts[0].ends_at_ms, Some(NOW + 1_500));
        assert_eq!(message.alerts[0].fingerprint, fingerprint_hex(&labels));
        assert_eq!(message.common_labels, labels);
    }
}
