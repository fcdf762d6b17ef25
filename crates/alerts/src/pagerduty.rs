//! PagerDuty Events API v2: `POST /v2/enqueue` and `POST /v2/change/enqueue`.
//!
//! [`parse_event`] and [`parse_change_event`] take the raw request body and either return
//! the validated event or a [`PdRejection`] carrying the HTTP status and JSON body
//! PagerDuty would answer with. Every problem found is listed in `errors`, one human
//! message each, in the order: routing key, action, dedup key, payload fields, links,
//! images, client fields.
//!
//! Wire facts reproduced (from PagerDuty's documentation, its OpenAPI description and
//! answers recorded by client libraries): success is `202`
//! `{"status":"success","message":"Event processed","dedup_key":…}`; an invalid event is
//! `400` `{"status":"invalid event","message":"Event object is invalid","errors":[…]}`
//! with messages such as `'payload.severity' is missing or blank`; a body that is not a
//! JSON object is `400` `{"status":"Unrecognized object","message":"Event object format is
//! unrecognized","errors":["JSON parse error"]}`; throttling is `429`
//! `{"status":"throttle exceeded",…,"errors":["Enhance Your Calm."]}`; and an over-long
//! summary is refused (not truncated) with PagerDuty's own spelling, `maiximum`.

use serde_json::{Map, Value, json};

use crate::model::{Image, Labels, Link, SOURCE_PAGERDUTY, Severity, Signal, SignalAction};
use crate::timestamp::parse_pagerduty_timestamp;

/// The HTTP status of an accepted event (alert or change).
pub const ACCEPTED_STATUS: u16 = 202;
/// The HTTP status of an invalid or unparsable event.
pub const INVALID_STATUS: u16 = 400;
/// The HTTP status of a throttled event.
pub const THROTTLED_STATUS: u16 = 429;
/// Exact length of a routing (integration) key, in characters.
pub const ROUTING_KEY_LEN: usize = 32;
/// Longest accepted dedup key, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// Longest accepted summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;

/// A refusal in PagerDuty's shape: the HTTP status and the JSON body to send.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pagerduty event refused with status {status}: {body}")]
pub struct PdRejection {
    /// HTTP status code (400 or 429).
    pub status: u16,
    /// JSON body with `status`, `message` and `errors`.
    pub body: Value,
}

impl PdRejection {
    /// `400 invalid event` listing every problem found.
    pub fn invalid(errors: Vec<String>) -> Self {
        PdRejection {
            status: INVALID_STATUS,
            body: json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }),
        }
    }

    /// `400` for a body that is not a JSON object.
    pub fn unrecognized() -> Self {
        PdRejection {
            status: INVALID_STATUS,
            body: json!({
                "status": "Unrecognized object",
                "message": "Event object format is unrecognized",
                "errors": ["JSON parse error"],
            }),
        }
    }

    /// `429` for a routing key that sends too fast (see [`crate::RateLimiter`]).
    pub fn throttled() -> Self {
        PdRejection {
            status: THROTTLED_STATUS,
            body: json!({
                "status": "throttle exceeded",
                "message": "Requests for this service are arriving too quickly.  Please retry later.",
                "errors": ["Enhance Your Calm."],
            }),
        }
    }

    /// The messages in the body's `errors` array.
    pub fn errors(&self) -> Vec<String> {
        self.body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The `202` body for an accepted alert event.
pub fn accepted_body(dedup_key: &str) -> Value {
    json!({
        "status": "success",
        "message": "Event processed",
        "dedup_key": dedup_key,
    })
}

/// The `202` body for an accepted change event.
pub fn change_accepted_body() -> Value {
    json!({
        "status": "success",
        "message": "Change event processed",
    })
}

/// The `payload` of a trigger event.
#[derive(Debug, Clone, PartialEq)]
pub struct PdPayload {
    /// One-line summary (at most 1024 characters).
    pub summary: String,
    /// The affected system, e.g. a host name.
    pub source: String,
    /// The sender's severity.
    pub severity: Severity,
    /// When the sender saw the problem, if it said.
    pub timestamp_ms: Option<i64>,
    /// The affected component, e.g. `mysql`.
    pub component: Option<String>,
    /// A logical group of components, e.g. `prod-datapipe`.
    pub group: Option<String>,
    /// The class of event, e.g. `ping failure`.
    pub class: Option<String>,
    /// Free-form details, any JSON (`null` when absent).
    pub custom_details: Value,
}

/// A validated alert event from `POST /v2/enqueue`.
#[derive(Debug, Clone, PartialEq)]
pub struct PdEvent {
    /// The 32-character integration key that routes the event.
    pub routing_key: String,
    /// Trigger, acknowledge or resolve.
    pub action: SignalAction,
    /// The dedup key sent, or the one generated for a trigger that had none.
    pub dedup_key: String,
    /// Whether [`PdEvent::dedup_key`] came from the caller's generator.
    pub dedup_key_generated: bool,
    /// The payload; present exactly for trigger events.
    pub payload: Option<PdPayload>,
    /// Links to attach (trigger events only).
    pub links: Vec<Link>,
    /// Images to attach (trigger events only).
    pub images: Vec<Image>,
    /// Name of the monitoring client (trigger events only).
    pub client: Option<String>,
    /// URL of the monitoring client (trigger events only).
    pub client_url: Option<String>,
}

impl PdEvent {
    /// The normalised signal: key = dedup key; labels `source`, `component`, `group` and
    /// `class` from the payload when present; annotations `client` and `client_url`.
    /// Acknowledge and resolve events carry no payload, so their signal has no labels, an
    /// empty summary and severity `info`; the engine should only change the alert's state.
    pub fn into_signal(self) -> Signal {
        let mut labels = Labels::new();
        let mut annotations = Labels::new();
        if let Some(client) = &self.client {
            annotations.insert("client".to_owned(), client.clone());
        }
        if let Some(url) = &self.client_url {
            annotations.insert("client_url".to_owned(), url.clone());
        }
        let (summary, severity, starts_at_ms, details) = match self.payload {
            Some(p) => {
                labels.insert("source".to_owned(), p.source);
                let optional = [
                    ("component", p.component),
                    ("group", p.group),
                    ("class", p.class),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        labels.insert(name.to_owned(), value);
                    }
                }
                (p.summary, p.severity, p.timestamp_ms, p.custom_details)
            }
            None => (String::new(), Severity::Info, None, Value::Null),
        };
        Signal {
            key: self.dedup_key,
            action: self.action,
            labels,
            annotations,
            summary,
            severity,
            starts_at_ms,
            ends_at_ms: None,
            links: self.links,
            images: self.images,
            details,
            generator_url: self.client_url,
            source: SOURCE_PAGERDUTY.to_owned(),
        }
    }
}

/// A validated change event from `POST /v2/change/enqueue`.
#[derive(Debug, Clone, PartialEq)]
pub struct PdChangeEvent {
    /// The 32-character integration key.
    pub routing_key: String,
    /// What changed (at most 1024 characters).
    pub summary: String,
    /// Where the change happened, if said.
    pub source: Option<String>,
    /// When it happened, if said.
    pub timestamp_ms: Option<i64>,
    /// Free-form details (`null` when absent).
    pub custom_details: Value,
    /// Links to attach.
    pub links: Vec<Link>,
}

/// What a JSON member holds, as far as validation cares.
enum Field<'a> {
    /// Absent or `null`.
    Missing,
    /// A string that is empty or only white space.
    Blank,
    /// A non-blank string.
    Str(&'a str),
    /// Anything else.
    Other,
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Field<'a> {
    match obj.get(name) {
        None | Some(Value::Null) => Field::Missing,
        Some(Value::String(s)) if s.trim().is_empty() => Field::Blank,
        Some(Value::String(s)) => Field::Str(s),
        Some(_) => Field::Other,
    }
}

fn missing_or_blank(path: &str) -> String {
    format!("'{path}' is missing or blank")
}

fn not_a_string(path: &str) -> String {
    format!("'{path}' is invalid (must be a string)")
}

const SEVERITY_INVALID: &str = "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')";
const ACTION_INVALID: &str = "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')";
const SUMMARY_TOO_LONG: &str = "'summary' is too long (maiximum is 1024 characters)";
const TIMESTAMP_INVALID: &str = "'payload.timestamp' is invalid (must be an ISO 8601 timestamp)";

/// Collects validation messages while reading an event.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// An optional string member: `None` when absent or blank.
    fn optional_str(&mut self, obj: &Map<String, Value>, name: &str, path: &str) -> Option<String> {
        match field(obj, name) {
            Field::Missing | Field::Blank => None,
            Field::Str(s) => Some(s.to_owned()),
            Field::Other => {
                self.push(not_a_string(path));
                None
            }
        }
    }

    /// A required string member.
    fn required_str(&mut self, obj: &Map<String, Value>, name: &str, path: &str) -> Option<String> {
        match field(obj, name) {
            Field::Missing | Field::Blank => {
                self.push(missing_or_blank(path));
                None
            }
            Field::Str(s) => Some(s.to_owned()),
            Field::Other => {
                self.push(not_a_string(path));
                None
            }
        }
    }

    fn routing_key(&mut self, obj: &Map<String, Value>) -> Option<String> {
        match field(obj, "routing_key") {
            Field::Missing | Field::Blank => {
                self.push("'routing_key' cannot be blank");
                None
            }
            Field::Other => {
                self.push(not_a_string("routing_key"));
                None
            }
            Field::Str(key) => {
                let before = self.0.len();
                if key.chars().count() != ROUTING_KEY_LEN {
                    self.push("Length of 'routing_key' is incorrect (should be 32 characters)");
                }
                if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                    self.push("'routing_key' cannot contain non-alphanumeric characters.");
                }
                (self.0.len() == before).then(|| key.to_owned())
            }
        }
    }

    fn summary(&mut self, obj: &Map<String, Value>) -> Option<String> {
        let summary = self.required_str(obj, "summary", "payload.summary")?;
        if summary.chars().count() > MAX_SUMMARY_CHARS {
            self.push(SUMMARY_TOO_LONG);
            return None;
        }
        Some(summary)
    }

    fn timestamp(&mut self, obj: &Map<String, Value>) -> Option<i64> {
        match field(obj, "timestamp") {
            Field::Missing | Field::Blank => None,
            Field::Str(s) => match parse_pagerduty_timestamp(s) {
                Ok(ms) => Some(ms),
                Err(_) => {
                    self.push(TIMESTAMP_INVALID);
                    None
                }
            },
            Field::Other => {
                self.push(TIMESTAMP_INVALID);
                None
            }
        }
    }

    fn links(&mut self, obj: &Map<String, Value>) -> Vec<Link> {
        let mut out = Vec::new();
        for (i, item) in self.objects(obj, "links").into_iter().enumerate() {
            let Some(item) = item else {
                self.push(format!("'links[{i}]' is invalid (must be an object)"));
                continue;
            };
            let href = self.required_str(item, "href", &format!("links[{i}].href"));
            let text = self.optional_str(item, "text", &format!("links[{i}].text"));
            if let Some(href) = href {
                out.push(Link { href, text });
            }
        }
        out
    }

    fn images(&mut self, obj: &Map<String, Value>) -> Vec<Image> {
        let mut out = Vec::new();
        for (i, item) in self.objects(obj, "images").into_iter().enumerate() {
            let Some(item) = item else {
                self.push(format!("'images[{i}]' is invalid (must be an object)"));
                continue;
            };
            let src = self.required_str(item, "src", &format!("images[{i}].src"));
            let href = self.optional_str(item, "href", &format!("images[{i}].href"));
            let alt = self.optional_str(item, "alt", &format!("images[{i}].alt"));
            if let Some(src) = src {
                out.push(Image { src, href, alt });
            }
        }
        out
    }

    /// The items of an optional array; `None` marks an item that is not an object, for
    /// the caller to report in item order.
    fn objects<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        name: &str,
    ) -> Vec<Option<&'a Map<String, Value>>> {
        match obj.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(Value::as_object).collect(),
            Some(_) => {
                self.push(format!("'{name}' is invalid (must be an array)"));
                Vec::new()
            }
        }
    }

    fn into_result<T>(self, value: Option<T>) -> Result<T, PdRejection> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(PdRejection::invalid(self.0)),
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, PdRejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        _ => Err(PdRejection::unrecognized()),
    }
}

fn parse_action(problems: &mut Problems, obj: &Map<String, Value>) -> Option<SignalAction> {
    match field(obj, "event_action") {
        Field::Missing | Field::Blank => {
            problems.push(missing_or_blank("event_action"));
            None
        }
        Field::Str("trigger") => Some(SignalAction::Trigger),
        Field::Str("acknowledge") => Some(SignalAction::Acknowledge),
        Field::Str("resolve") => Some(SignalAction::Resolve),
        Field::Str(_) | Field::Other => {
            problems.push(ACTION_INVALID);
            None
        }
    }
}

fn parse_severity(problems: &mut Problems, obj: &Map<String, Value>) -> Option<Severity> {
    match field(obj, "severity") {
        Field::Missing | Field::Blank => {
            problems.push(missing_or_blank("payload.severity"));
            None
        }
        Field::Str(s) => match s.parse::<Severity>() {
            Ok(severity) => Some(severity),
            Err(_) => {
                problems.push(SEVERITY_INVALID);
                None
            }
        },
        Field::Other => {
            problems.push(SEVERITY_INVALID);
            None
        }
    }
}

fn parse_payload(problems: &mut Problems, obj: &Map<String, Value>) -> Option<PdPayload> {
    let payload = match obj.get("payload") {
        None | Some(Value::Null) => {
            problems.push(missing_or_blank("payload"));
            return None;
        }
        Some(Value::Object(payload)) => payload,
        Some(_) => {
            problems.push("'payload' is invalid (must be an object)");
            return None;
        }
    };
    let summary = problems.summary(payload);
    let source = problems.required_str(payload, "source", "payload.source");
    let severity = parse_severity(problems, payload);
    let timestamp_ms = problems.timestamp(payload);
    let component = problems.optional_str(payload, "component", "payload.component");
    let group = problems.optional_str(payload, "group", "payload.group");
    let class = problems.optional_str(payload, "class", "payload.class");
    let custom_details = payload
        .get("custom_details")
        .cloned()
        .unwrap_or(Value::Null);
    Some(PdPayload {
        summary: summary?,
        source: source?,
        severity: severity?,
        timestamp_ms,
        component,
        group,
        class,
        custom_details,
    })
}

/// Validates a `POST /v2/enqueue` body.
///
/// A trigger without a `dedup_key` (absent, `null` or blank) gets one from
/// `generate_key`, which is called at most once and only for a valid event; PagerDuty
/// uses a fresh UUID there. Acknowledge and resolve events need a `dedup_key` and ignore
/// `payload`, `links`, `images`, `client` and `client_url`, as PagerDuty does.
pub fn parse_event(
    body: &[u8],
    generate_key: &mut dyn FnMut() -> String,
) -> Result<PdEvent, PdRejection> {
    let obj = parse_object(body)?;
    let mut problems = Problems::default();
    let routing_key = problems.routing_key(&obj);
    let action = parse_action(&mut problems, &obj);

    let dedup_key = match field(&obj, "dedup_key") {
        Field::Missing | Field::Blank => None,
        Field::Str(key) if key.chars().count() > MAX_DEDUP_KEY_CHARS => {
            problems.push("'dedup_key' is too long (maximum is 255 characters)");
            None
        }
        Field::Str(key) => Some(key.to_owned()),
        Field::Other => {
            problems.push(not_a_string("dedup_key"));
            None
        }
    };
    let dedup_key_sent = !matches!(field(&obj, "dedup_key"), Field::Missing | Field::Blank);
    if matches!(
        action,
        Some(SignalAction::Acknowledge | SignalAction::Resolve)
    ) && !dedup_key_sent
    {
        problems.push(missing_or_blank("dedup_key"));
    }

    let mut payload = None;
    let (mut links, mut images, mut client, mut client_url) = (Vec::new(), Vec::new(), None, None);
    if action == Some(SignalAction::Trigger) {
        payload = parse_payload(&mut problems, &obj);
        links = problems.links(&obj);
        images = problems.images(&obj);
        client = problems.optional_str(&obj, "client", "client");
        client_url = problems.optional_str(&obj, "client_url", "client_url");
    }

    let parts = routing_key.zip(action);
    let (routing_key, action) = problems.into_result(parts)?;
    let (dedup_key, dedup_key_generated) = match dedup_key {
        Some(key) => (key, false),
        None => (generate_key(), true),
    };
    Ok(PdEvent {
        routing_key,
        action,
        dedup_key,
        dedup_key_generated,
        payload,
        links,
        images,
        client,
        client_url,
    })
}

/// Validates a `POST /v2/change/enqueue` body: `routing_key`, a `payload` with a required
/// `summary` and optional `source`, `timestamp` and `custom_details`, and `links`.
pub fn parse_change_event(body: &[u8]) -> Result<PdChangeEvent, PdRejection> {
    let obj = parse_object(body)?;
    let mut problems = Problems::default();
    let routing_key = problems.routing_key(&obj);
    let mut fields = None;
    match obj.get("payload") {
        None | Some(Value::Null) => problems.push(missing_or_blank("payload")),
        Some(Value::Object(payload)) => {
            let summary = problems.summary(payload);
            let source = problems.optional_str(payload, "source", "payload.source");
            let timestamp_ms = problems.timestamp(payload);
            let custom_details = payload
                .get("custom_details")
                .cloned()
                .unwrap_or(Value::Null);
            fields = summary.map(|summary| (summary, source, timestamp_ms, custom_details));
        }
        Some(_) => problems.push("'payload' is invalid (must be an object)"),
    }
    let links = problems.links(&obj);
    let (routing_key, (summary, source, timestamp_ms, custom_details)) =
        problems.into_result(routing_key.zip(fields))?;
    Ok(PdChangeEvent {
        routing_key,
        summary,
        source,
        timestamp_ms,
        custom_details,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789ABCDEF";

    fn no_key() -> impl FnMut() -> String {
        || "generated-key".to_owned()
    }

    #[test]
    fn full_trigger_is_accepted() {
        let body = json!({
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": "srv01/mysql",
            "payload": {
                "summary": "DISK at 99%",
                "timestamp": "2015-07-17T08:42:58.315+0000",
                "severity": "critical",
                "source": "prod-datapipe03",
                "component": "mysql",
                "group": "prod-datapipe",
                "class": "disk",
                "custom_details": {"free space": "1%"}
            },
            "links": [{"href": "https://example.com", "text": "runbook"}],
            "images": [{"src": "https://example.com/i.png", "alt": "graph"}],
            "client": "Sample Monitoring Service",
            "client_url": "https://monitoring.example.com"
        });
        let event = parse_event(body.to_string().as_bytes(), &mut no_key()).expect("valid event");
        assert_eq!(event.routing_key, KEY);
        assert_eq!(event.dedup_key, "srv01/mysql");
        assert!(!event.dedup_key_generated);
        let payload = event.payload.clone().expect("payload");
        assert_eq!(payload.severity, Severity::Critical);
        assert_eq!(payload.timestamp_ms, Some(1_437_122_578_315));
        assert_eq!(event.links.len(), 1);
        assert_eq!(event.images[0].alt.as_deref(), Some("graph"));

        let signal = event.into_signal();
        assert_eq!(signal.key, "srv01/mysql");
        assert_eq!(signal.action, SignalAction::Trigger);
        assert_eq!(
            signal.labels.get("source").map(String::as_str),
            Some("prod-datapipe03")
        );
        assert_eq!(
            signal.labels.get("component").map(String::as_str),
            Some("mysql")
        );
        assert_eq!(
            signal.labels.get("group").map(String::as_str),
            Some("prod-datapipe")
        );
        assert_eq!(signal.labels.get("class").map(String::as_str), Some("disk"));
        assert_eq!(signal.summary, "DISK at 99%");
        assert_eq!(signal.severity, Severity::Critical);
        assert_eq!(signal.starts_at_ms, Some(1_437_122_578_315));
        assert_eq!(signal.details, json!({"free space": "1%"}));
        assert_eq!(
            signal.generator_url.as_deref(),
            Some("https://monitoring.example.com")
        );
        assert_eq!(signal.source, SOURCE_PAGERDUTY);
    }

    #[test]
    fn trigger_without_dedup_key_uses_generator_once() {
        let mut calls = 0;
        let mut generate = || {
            calls += 1;
            format!("gen-{calls}")
        };
        let body = json!({
            "routing_key": KEY, "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "info"}
        });
        let event = parse_event(body.to_string().as_bytes(), &mut generate).expect("valid");
        assert_eq!(event.dedup_key, "gen-1");
        assert!(event.dedup_key_generated);
        assert_eq!(calls, 1);
        let signal = event.into_signal();
        assert_eq!(signal.labels.len(), 1);
        assert_eq!(signal.details, Value::Null);
    }

    #[test]
    fn invalid_event_does_not_consume_a_generated_key() {
        let mut calls = 0;
        let mut generate = || {
            calls += 1;
            String::new()
        };
        let body = json!({"routing_key": KEY, "event_action": "trigger"});
        let rejection = parse_event(body.to_string().as_bytes(), &mut generate)
            .expect_err("payload is required");
        assert_eq!(
            rejection.errors(),
            vec!["'payload' is missing or blank".to_owned()]
        );
        assert_eq!(calls, 0);
    }

    #[test]
    fn resolve_needs_only_key_and_dedup_key() {
        let body = json!({
            "routing_key": KEY, "event_action": "resolve", "dedup_key": "k",
            "payload": "ignored", "links": "ignored"
        });
        let event = parse_event(body.to_string().as_bytes(), &mut no_key()).expect("valid");
        assert_eq!(event.action, SignalAction::Resolve);
        assert!(event.payload.is_none());
        let signal = event.into_signal();
        assert_eq!(signal.action, SignalAction::Resolve);
        assert_eq!(signal.key, "k");
        assert!(signal.labels.is_empty());
    }

    #[test]
    fn response_bodies_match_pagerduty() {
        assert_eq!(
            accepted_body("abc"),
            json!({"status": "success", "message": "Event processed", "dedup_key": "abc"})
        );
        assert_eq!(
            change_accepted_body(),
            json!({"status": "success", "message": "Change event processed"})
        );
        let throttled = PdRejection::throttled();
        assert_eq!(throttled.status, 429);
        assert_eq!(throttled.body["status"], "throttle exceeded");
        assert_eq!(throttled.errors(), vec!["Enhance Your Calm.".to_owned()]);
        let unrecognized = PdRejection::unrecognized();
        assert_eq!(unrecognized.status, 400);
        assert_eq!(
            unrecognized.body["message"],
            "Event object format is unrecognized"
        );
    }

    #[test]
    fn change_event_round_trip() {
        let body = json!({
            "routing_key": KEY,
            "payload": {
                "summary": "Build Success",
                "timestamp": "2020-07-17T08:42:58.315+0000",
                "source": "acme-build",
                "custom_details": {"build_number": "2"}
            },
            "links": [{"href": "https://acme.example/build/2", "text": "details"}]
        });
        let event = parse_change_event(body.to_string().as_bytes()).expect("valid change");
        assert_eq!(event.summary, "Build Success");
        assert_eq!(event.source.as_deref(), Some("acme-build"));
        assert!(event.timestamp_ms.is_some());
        assert_eq!(event.links[0].text.as_deref(), Some("details"));

        let missing = parse_change_event(json!({"routing_key": KEY}).to_string().as_bytes())
            .expect_err("payload required");
        assert_eq!(
            missing.errors(),
            vec!["'payload' is missing or blank".to_owned()]
        );
    }
}
