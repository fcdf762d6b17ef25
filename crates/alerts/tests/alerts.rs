//! Contract tests for sluice-alerts: tables of bad PagerDuty events and Alertmanager
//! bodies with the exact answers expected, property tests that no input panics or gets an
//! answer the peer would never give, and a render → parse round trip for webhooks.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_alerts::alertmanager::{OutgoingAlert, OutgoingGroup};
use sluice_alerts::timestamp::GO_ZERO_TIME_MS;
use sluice_alerts::{
    AlertStatus, Labels, RateLimiter, SignalAction, fingerprint_hex, parse_change_event,
    parse_event, parse_postable_alerts, parse_webhook, render_webhook,
};

const KEY: &str = "R0123456789abcdef0123456789ABCDE";
const NOW: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z
const RESOLVE_TIMEOUT: i64 = 300_000;

fn generator() -> impl FnMut() -> String {
    || "generated".to_owned()
}

/// One bad PagerDuty body and the answer PagerDuty gives.
struct PdCase {
    name: &'static str,
    body: String,
    status: u16,
    errors: &'static [&'static str],
}

fn pd(name: &'static str, body: Value, errors: &'static [&'static str]) -> PdCase {
    PdCase {
        name,
        body: body.to_string(),
        status: 400,
        errors,
    }
}

fn trigger_with(payload: Value) -> Value {
    json!({"routing_key": KEY, "event_action": "trigger", "payload": payload})
}

fn good_payload() -> Value {
    json!({"summary": "disk full", "source": "db1", "severity": "error"})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

const MISSING_ROUTING_KEY: &str = "'routing_key' cannot be blank";
const ROUTING_KEY_LENGTH: &str = "Length of 'routing_key' is incorrect (should be 32 characters)";
const ROUTING_KEY_CHARS: &str = "'routing_key' cannot contain non-alphanumeric characters.";
const MISSING_ACTION: &str = "'event_action' is missing or blank";
const BAD_SEVERITY: &str = "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')";

fn pd_cases() -> Vec<PdCase> {
    let long_summary = "x".repeat(1025);
    let long_dedup = "d".repeat(256);
    vec![
        pd(
            "empty object",
            json!({}),
            &[MISSING_ROUTING_KEY, MISSING_ACTION],
        ),
        pd(
            "short routing key",
            json!({"routing_key": "abc123", "event_action": "resolve", "dedup_key": "k"}),
            &[ROUTING_KEY_LENGTH],
        ),
        pd(
            "v1-style key with symbols",
            json!({"routing_key": "e+23rschqsESqk9Q6_-g", "event_action": "resolve", "dedup_key": "k"}),
            &[ROUTING_KEY_LENGTH, ROUTING_KEY_CHARS],
        ),
        pd(
            "right length, wrong characters",
            json!({"routing_key": "0123456789abcdef-0123456789abcde", "event_action": "resolve", "dedup_key": "k"}),
            &[ROUTING_KEY_CHARS],
        ),
        pd(
            "routing key is a number",
            json!({"routing_key": 12345, "event_action": "resolve", "dedup_key": "k"}),
            &["'routing_key' is invalid (must be a string)"],
        ),
        pd(
            "blank routing key and blank action",
            json!({"routing_key": "  ", "event_action": ""}),
            &[MISSING_ROUTING_KEY, MISSING_ACTION],
        ),
        pd(
            "unknown action",
            json!({"routing_key": KEY, "event_action": "explode"}),
            &[
                "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')",
            ],
        ),
        pd(
            "trigger without payload",
            json!({"routing_key": KEY, "event_action": "trigger"}),
            &["'payload' is missing or blank"],
        ),
        pd(
            "payload is a string",
            trigger_with(json!("disk full")),
            &["'payload' is invalid (must be an object)"],
        ),
        pd(
            "empty payload",
            trigger_with(json!({})),
            &[
                "'payload.summary' is missing or blank",
                "'payload.source' is missing or blank",
                "'payload.severity' is missing or blank",
            ],
        ),
        pd(
            "upper-case severity",
            trigger_with(with(good_payload(), "severity", json!("CRITICAL"))),
            &[BAD_SEVERITY],
        ),
        pd(
            "severity none",
            trigger_with(with(good_payload(), "severity", json!("none"))),
            &[BAD_SEVERITY],
        ),
        pd(
            "summary over 1024 characters",
            trigger_with(with(good_payload(), "summary", json!(long_summary))),
            &["'summary' is too long (maiximum is 1024 characters)"],
        ),
        pd(
            "blank summary",
            trigger_with(with(good_payload(), "summary", json!("   "))),
            &["'payload.summary' is missing or blank"],
        ),
        pd(
            "source is a number",
            trigger_with(with(good_payload(), "source", json!(7))),
            &["'payload.source' is invalid (must be a string)"],
        ),
        pd(
            "bad timestamp",
            trigger_with(with(good_payload(), "timestamp", json!("yesterday"))),
            &["'payload.timestamp' is invalid (must be an ISO 8601 timestamp)"],
        ),
        pd(
            "component is an object",
            trigger_with(with(good_payload(), "component", json!({"a": 1}))),
            &["'payload.component' is invalid (must be a string)"],
        ),
        pd(
            "acknowledge without dedup key",
            json!({"routing_key": KEY, "event_action": "acknowledge"}),
            &["'dedup_key' is missing or blank"],
        ),
        pd(
            "resolve with blank dedup key",
            json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": " "}),
            &["'dedup_key' is missing or blank"],
        ),
        pd(
            "dedup key over 255 characters",
            json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": long_dedup}),
            &["'dedup_key' is too long (maximum is 255 characters)"],
        ),
        pd(
            "dedup key is a number",
            with(trigger_with(good_payload()), "dedup_key", json!(42)),
            &["'dedup_key' is invalid (must be a string)"],
        ),
        pd(
            "links is not an array",
            with(trigger_with(good_payload()), "links", json!("https://x")),
            &["'links' is invalid (must be an array)"],
        ),
        pd(
            "link without href and image without src",
            with(
                with(
                    trigger_with(good_payload()),
                    "links",
                    json!([{"text": "t"}, 5]),
                ),
                "images",
                json!([{"alt": "a"}]),
            ),
            &[
                "'links[0].href' is missing or blank",
                "'links[1]' is invalid (must be an object)",
                "'images[0].src' is missing or blank",
            ],
        ),
        pd(
            "every problem is listed",
            json!({"routing_key": "short", "event_action": "trigger",
                   "payload": {"summary": "s", "source": "h"}, "client": 1}),
            &[
                ROUTING_KEY_LENGTH,
                "'payload.severity' is missing or blank",
                "'client' is invalid (must be a string)",
            ],
        ),
    ]
}

const UNRECOGNIZED: &[&str] = &["JSON parse error"];

#[test]
fn bad_pagerduty_events_get_pagerduty_answers() {
    let mut cases = pd_cases();
    for body in [
        "",
        "not json",
        "[]",
        "\"string\"",
        "{\"routing_key\":",
        "{} trailing",
    ] {
        cases.push(PdCase {
            name: "not a JSON object",
            body: body.to_owned(),
            status: 400,
            errors: UNRECOGNIZED,
        });
    }
    for case in cases {
        let rejection = parse_event(case.body.as_bytes(), &mut generator())
            .expect_err(&format!("case {:?} should be refused", case.name));
        assert_eq!(rejection.status, case.status, "case {:?}", case.name);
        assert_eq!(rejection.errors(), case.errors, "case {:?}", case.name);
        let expected_status = if case.errors == UNRECOGNIZED {
            "Unrecognized object"
        } else {
            "invalid event"
        };
        assert_eq!(
            rejection.body["status"], expected_status,
            "case {:?}",
            case.name
        );
    }
}

#[test]
fn invalid_event_body_has_pagerduty_shape() {
    let rejection = parse_event(b"{}", &mut generator()).expect_err("empty object is invalid");
    assert_eq!(
        rejection.body,
        json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": [MISSING_ROUTING_KEY, MISSING_ACTION],
        })
    );
}

#[test]
fn boundary_lengths_are_accepted() {
    let body = with(
        trigger_with(with(good_payload(), "summary", json!("é".repeat(1024)))),
        "dedup_key",
        json!("ü".repeat(255)),
    );
    let event = parse_event(body.to_string().as_bytes(), &mut generator()).expect("at the limits");
    assert_eq!(event.dedup_key.chars().count(), 255);
    let signal = event.into_signal();
    assert_eq!(signal.summary.chars().count(), 1024);
    assert_eq!(signal.action, SignalAction::Trigger);
}

#[test]
fn bad_change_events() {
    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({}),
            &[MISSING_ROUTING_KEY, "'payload' is missing or blank"],
        ),
        (
            json!({"routing_key": KEY, "payload": {"source": "ci"}}),
            &["'payload.summary' is missing or blank"],
        ),
        (
            json!({"routing_key": KEY, "payload": {"summary": "x".repeat(1025)}}),
            &["'summary' is too long (maiximum is 1024 characters)"],
        ),
        (
            json!({"routing_key": KEY, "payload": {"summary": "deploy", "timestamp": 5}}),
            &["'payload.timestamp' is invalid (must be an ISO 8601 timestamp)"],
        ),
    ];
    for (body, errors) in cases {
        let rejection = parse_change_event(body.to_string().as_bytes()).expect_err("refused");
        assert_eq!(rejection.status, 400);
        assert_eq!(rejection.errors(), errors, "body {body}");
    }
}

/// One bad Alertmanager body and the answer Alertmanager 0.25 gives.
fn am_cases() -> Vec<(&'static str, u16, Value)> {
    let parse = |reason: &str| json!({"code": 400, "message": format!("parsing alerts body from \"\" failed, because {reason}")});
    vec![
        (
            "",
            422,
            json!({"code": 602, "message": "alerts in body is required"}),
        ),
        (
            " \n\t",
            422,
            json!({"code": 602, "message": "alerts in body is required"}),
        ),
        (
            "{}",
            400,
            parse("json: cannot unmarshal object into Go value of type models.PostableAlerts"),
        ),
        ("[", 400, parse("unexpected EOF")),
        ("[{\"labels\":", 400, parse("unexpected EOF")),
        (
            "[1]",
            400,
            parse("json: cannot unmarshal number into Go value of type models.PostableAlert"),
        ),
        ("[null]", 400, parse("alert 0 is null")),
        (
            r#"[{"labels":"x"}]"#,
            400,
            parse(
                "json: cannot unmarshal string into Go struct field Alert.labels of type models.LabelSet",
            ),
        ),
        (
            r#"[{"labels":{"a":1}}]"#,
            400,
            parse("json: cannot unmarshal number into Go struct field Alert.labels of type string"),
        ),
        (
            r#"[{"labels":{"a":"b"},"annotations":[]}]"#,
            400,
            parse(
                "json: cannot unmarshal array into Go struct field .annotations of type models.LabelSet",
            ),
        ),
        (
            r#"[{"labels":{"a":"b"},"generatorURL":5}]"#,
            400,
            parse(
                "json: cannot unmarshal number into Go struct field Alert.generatorURL of type strfmt.URI",
            ),
        ),
        (
            r#"[{"labels":{"a":"b"},"startsAt":true}]"#,
            400,
            parse(
                "json: cannot unmarshal bool into Go struct field .startsAt of type strfmt.DateTime",
            ),
        ),
        (
            r#"[{"labels":{"a":"b"},"startsAt":"yesterday"}]"#,
            400,
            parse(
                "parsing time \"yesterday\" as \"2006-01-02 15:04:05\": cannot parse it as a date-time",
            ),
        ),
        (
            r#"[{"labels":{"a":"b"},"endsAt":"2024-13-01T00:00:00Z"}]"#,
            400,
            parse("parsing time \"2024-13-01T00:00:00Z\": field out of range"),
        ),
        (
            "[{}]",
            422,
            json!({"code": 602, "message": "0.labels in body is required"}),
        ),
        (
            r#"[{"labels":{"a":"b"}},{"labels":null}]"#,
            422,
            json!({"code": 602, "message": "1.labels in body is required"}),
        ),
        (
            r#"[{"labels":{"a":"b"},"generatorURL":"not a url"}]"#,
            422,
            json!({"code": 601, "message": "0.generatorURL in body must be of type uri: \"not a url\""}),
        ),
        (
            // Decoding errors win over schema errors anywhere in the array.
            r#"[{}, {"labels":{"a":"b"},"startsAt":"soon"}]"#,
            400,
            parse(
                "parsing time \"soon\" as \"2006-01-02 15:04:05\": cannot parse it as a date-time",
            ),
        ),
        (
            r#"[{"labels":{}}]"#,
            400,
            json!("at least one label pair required"),
        ),
        (
            r#"[{"labels":{"a":""}}]"#,
            400,
            json!("at least one label pair required"),
        ),
        (
            r#"[{"labels":{"1a":"b"}}]"#,
            400,
            json!("invalid label set: invalid name \"1a\""),
        ),
        (
            r#"[{"labels":{"a":"b"},"annotations":{"runbook-url":"x"}}]"#,
            400,
            json!("invalid annotations: invalid name \"runbook-url\""),
        ),
        (
            r#"[{"labels":{"a":"b"},"startsAt":"2024-05-01T12:00:00Z","endsAt":"2024-05-01T11:59:59Z"}]"#,
            400,
            json!("start time must be before end time"),
        ),
    ]
}

#[test]
fn bad_alertmanager_bodies_get_alertmanager_answers() {
    for (body, status, expected) in am_cases() {
        let rejection = parse_postable_alerts(body.as_bytes(), NOW, RESOLVE_TIMEOUT)
            .expect_err(&format!("body {body:?} should be refused"));
        assert_eq!(rejection.status, status, "body {body:?}");
        assert_eq!(rejection.body, expected, "body {body:?}");
        assert!(rejection.accepted.is_empty(), "body {body:?}");
    }
}

#[test]
fn lenient_alertmanager_bodies_are_accepted() {
    for body in ["null", "[]", "[] trailing garbage", "[]]"] {
        let alerts = parse_postable_alerts(body.as_bytes(), NOW, RESOLVE_TIMEOUT)
            .unwrap_or_else(|r| panic!("body {body:?} refused: {r}"));
        assert!(alerts.is_empty());
    }
    // Unknown fields are ignored and invalid UTF-8 is replaced, as in Go.
    let mut body = br#"[{"labels":{"a":"x"#.to_vec();
    body.push(0xff);
    body.extend_from_slice(br#""},"extra":{"deep":[1,2]}}]"#);
    let alerts = parse_postable_alerts(&body, NOW, RESOLVE_TIMEOUT).expect("accepted");
    assert_eq!(
        alerts[0].labels.get("a").map(String::as_str),
        Some("x\u{fffd}")
    );
}

#[test]
fn bad_webhooks_are_refused_clearly() {
    let cases = [
        (
            json!({"version": "3"}),
            "unsupported webhook payload version \"3\"",
        ),
        (
            json!({"groupKey": "g"}),
            "webhook payload has no \"version\"",
        ),
        (
            json!({"version": 4}),
            "webhook field \"version\" must be the string \"4\"",
        ),
        (
            json!({"version": "4"}),
            "webhook field \"alerts\" is missing",
        ),
        (json!([1]), "webhook body must be a JSON object"),
        (
            json!({"version": "4", "alerts": [{"status": "pending"}]}),
            "webhook field \"alerts[0].status\" must be \"firing\" or \"resolved\"",
        ),
        (
            json!({"version": "4", "alerts": [{"status": "firing", "startsAt": "yesterday"}]}),
            "webhook field \"alerts[0].startsAt\" is invalid",
        ),
        (
            json!({"version": "4", "alerts": [], "status": "firing", "receiver": "r"}),
            "webhook field \"groupKey\" is missing",
        ),
    ];
    for (body, prefix) in cases {
        let rejection = parse_webhook(body.to_string().as_bytes()).expect_err("refused");
        assert_eq!(rejection.status, 400, "body {body}");
        assert_eq!(rejection.body["code"], 400, "body {body}");
        assert!(
            rejection.message().starts_with(prefix),
            "body {body}: got {:?}",
            rejection.message()
        );
    }
    let not_json = parse_webhook(b"{").expect_err("refused");
    assert!(
        not_json
            .message()
            .starts_with("webhook body is not valid JSON")
    );
}

#[test]
fn real_alertmanager_webhook_payload_parses() {
    // The shape Alertmanager 0.25 sends (values invented).
    let body = r#"{
      "receiver": "sluice",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "HighLatency", "severity": "warning", "instance": "api-1"},
          "annotations": {"description": "p99 above 1s"},
          "startsAt": "2024-05-01T11:58:30.123456789+02:00",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
          "fingerprint": "0123456789abcdef"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "HighLatency", "severity": "warning", "instance": "api-2"},
          "annotations": {},
          "startsAt": "2024-05-01T09:00:00Z",
          "endsAt": "2024-05-01T10:00:00Z",
          "generatorURL": ""
        }
      ],
      "groupLabels": {"alertname": "HighLatency"},
      "commonLabels": {"alertname": "HighLatency", "severity": "warning"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"HighLatency\"}",
      "truncatedAlerts": 0
    }"#;
    let message = parse_webhook(body.as_bytes()).expect("valid payload");
    assert_eq!(message.status, AlertStatus::Firing);
    assert_eq!(message.alerts[0].starts_at_ms, NOW - 2 * 3_600_000 - 89_877);
    assert_eq!(message.alerts[0].ends_at_ms, None);
    assert_eq!(message.alerts[0].fingerprint, "0123456789abcdef");
    assert_eq!(
        message.alerts[1].fingerprint,
        fingerprint_hex(&message.alerts[1].labels)
    );
    let signals = message.into_signals();
    assert_eq!(signals.len(), 2);
    assert_eq!(signals[0].action, SignalAction::Trigger);
    assert_eq!(signals[0].summary, "p99 above 1s");
    assert_eq!(signals[1].action, SignalAction::Resolve);
    assert_eq!(signals[1].summary, "HighLatency");
    assert_eq!(signals[1].generator_url, None);
    assert_eq!(
        signals[1].details["groupKey"],
        "{}:{alertname=\"HighLatency\"}"
    );
}

#[test]
fn rendered_webhook_has_alertmanager_fields() {
    let labels: Labels = [("alertname", "Down"), ("job", "api")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut other = labels.clone();
    other.insert("instance".to_owned(), "h2".to_owned());
    let alert = |labels: &Labels, status| OutgoingAlert {
        status,
        labels: labels.clone(),
        annotations: Labels::new(),
        starts_at_ms: NOW,
        ends_at_ms: Some(NOW + 60_000),
        generator_url: String::new(),
    };
    let group = OutgoingGroup {
        receiver: "ops".to_owned(),
        group_key: "{}:{alertname=\"Down\"}".to_owned(),
        group_labels: Labels::new(),
        alerts: vec![
            alert(&labels, AlertStatus::Firing),
            alert(&other, AlertStatus::Resolved),
        ],
        external_url: "https://sluice.example/alerts".to_owned(),
        truncated_alerts: 0,
    };
    let value = render_webhook(&group);
    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "alerts",
        "commonAnnotations",
        "commonLabels",
        "externalURL",
        "groupKey",
        "groupLabels",
        "receiver",
        "status",
        "truncatedAlerts",
        "version",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(value["version"], "4");
    assert_eq!(value["status"], "firing");
    assert_eq!(
        value["commonLabels"],
        json!({"alertname": "Down", "job": "api"})
    );
    assert_eq!(value["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(value["alerts"][0]["startsAt"], "2024-05-01T12:00:00Z");
    assert_eq!(value["alerts"][1]["endsAt"], "2024-05-01T12:01:00Z");
    assert_eq!(value["alerts"][0]["fingerprint"], fingerprint_hex(&labels));
    assert_eq!(value["alerts"][1]["fingerprint"], fingerprint_hex(&other));
}

// ---------------------------------------------------------------------------
// Property tests.

const FIELD_NAMES: &[&str] = &[
    "routing_key",
    "event_action",
    "dedup_key",
    "payload",
    "summary",
    "source",
    "severity",
    "timestamp",
    "component",
    "group",
    "class",
    "custom_details",
    "links",
    "images",
    "href",
    "text",
    "src",
    "alt",
    "client",
    "client_url",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "version",
    "groupKey",
    "status",
    "receiver",
    "alerts",
    "fingerprint",
    "truncatedAlerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alertname",
    "bad-name",
];

const STRING_VALUES: &[&str] = &[
    "",
    " ",
    "trigger",
    "acknowledge",
    "resolve",
    "critical",
    "error",
    "warning",
    "info",
    "4",
    "firing",
    "resolved",
    KEY,
    "2024-05-01T12:00:00Z",
    "0001-01-01T00:00:00Z",
    "2015-07-17T08:42:58.315+0000",
    "http://prom:9090/graph",
    "not a url",
    "\u{fffd}",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{1,6}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(STRING_VALUES).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(json_key(), inner, 0..7)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Bodies shaped like the real thing with random holes, to reach deep validation paths.
fn alertish_body() -> impl Strategy<Value = Value> {
    fn alert() -> impl Strategy<Value = Value> {
        proptest::collection::btree_map(json_key(), json_value(), 0..6)
            .prop_map(|map| Value::Object(map.into_iter().collect()))
    }
    prop_oneof![
        json_value(),
        proptest::collection::vec(alert(), 0..4).prop_map(Value::Array),
        alert(),
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
}

fn labels() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(label_name(), any::<String>(), 0..5)
}

/// Times Go can marshal: years 1970 to 9999.
fn time_ms() -> impl Strategy<Value = i64> {
    0i64..253_402_300_799_999
}

fn outgoing_alert() -> impl Strategy<Value = OutgoingAlert> {
    (
        any::<bool>(),
        labels(),
        labels(),
        time_ms(),
        proptest::option::of(time_ms()),
        prop_oneof![Just(String::new()), "https?://[a-z]{1,8}/[a-z]{0,8}"],
    )
        .prop_map(
            |(resolved, labels, annotations, starts, ends, url)| OutgoingAlert {
                status: if resolved {
                    AlertStatus::Resolved
                } else {
                    AlertStatus::Firing
                },
                labels,
                annotations,
                starts_at_ms: starts,
                ends_at_ms: ends,
                generator_url: url,
            },
        )
}

fn check_pd_bytes(body: &[u8]) -> Result<(), TestCaseError> {
    match parse_event(body, &mut generator()) {
        Ok(event) => {
            prop_assert_eq!(event.routing_key.chars().count(), 32);
            prop_assert!(event.dedup_key.chars().count() <= 255);
            prop_assert_eq!(
                event.payload.is_some(),
                event.action == SignalAction::Trigger
            );
            let _ = event.into_signal();
        }
        Err(rejection) => {
            prop_assert_eq!(rejection.status, 400);
            prop_assert!(!rejection.errors().is_empty());
        }
    }
    match parse_change_event(body) {
        Ok(event) => prop_assert!(event.summary.chars().count() <= 1024),
        Err(rejection) => {
            prop_assert_eq!(rejection.status, 400);
            prop_assert!(!rejection.errors().is_empty());
        }
    }
    Ok(())
}

fn check_am_bytes(body: &[u8]) -> Result<(), TestCaseError> {
    let alerts = match parse_postable_alerts(body, NOW, RESOLVE_TIMEOUT) {
        Ok(alerts) => alerts,
        Err(rejection) => {
            prop_assert!(
                rejection.status == 400 || rejection.status == 422,
                "status {}",
                rejection.status
            );
            prop_assert!(!rejection.message().is_empty());
            rejection.accepted
        }
    };
    for alert in alerts {
        prop_assert!(!alert.labels.is_empty());
        prop_assert!(alert.labels.values().all(|v| !v.is_empty()));
        prop_assert_eq!(&alert.fingerprint, &fingerprint_hex(&alert.labels));
        prop_assert!(alert.ends_at_ms >= alert.starts_at_ms);
        prop_assert_eq!(alert.resolved, alert.ends_at_ms <= NOW);
        let _ = alert.into_signal();
    }
    match parse_webhook(body) {
        Ok(message) => {
            prop_assert_eq!(message.version.as_str(), "4");
            let _ = message.into_signals();
        }
        Err(rejection) => prop_assert_eq!(rejection.status, 400),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_pd_bytes(&body)?;
        check_am_bytes(&body)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in alertish_body()) {
        let body = value.to_string();
        check_pd_bytes(body.as_bytes())?;
        check_am_bytes(body.as_bytes())?;
    }

    #[test]
    fn deep_nesting_and_huge_numbers_are_refused_or_parsed(depth in 0usize..600, digits in 1usize..400) {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check_pd_bytes(nested.as_bytes())?;
        check_am_bytes(nested.as_bytes())?;
        let huge = format!("[{{\"labels\":{{\"a\":\"b\"}},\"startsAt\":{}e999999}}]", "9".repeat(digits));
        check_pd_bytes(huge.as_bytes())?;
        check_am_bytes(huge.as_bytes())?;
    }

    #[test]
    fn render_then_parse_round_trips(
        alerts in proptest::collection::vec(outgoing_alert(), 0..5),
        group_labels in labels(),
        receiver in any::<String>(),
        group_key in any::<String>(),
        truncated in any::<u64>(),
    ) {
        let group = OutgoingGroup {
            receiver,
            group_key,
            group_labels,
            alerts,
            external_url: "https://sluice.example".to_owned(),
            truncated_alerts: truncated,
        };
        let body = render_webhook(&group).to_string();
        let message = parse_webhook(body.as_bytes()).map_err(|r| TestCaseError::fail(r.to_string()))?;
        prop_assert_eq!(&message.receiver, &group.receiver);
        prop_assert_eq!(&message.group_key, &group.group_key);
        prop_assert_eq!(&message.group_labels, &group.group_labels);
        prop_assert_eq!(message.truncated_alerts, group.truncated_alerts);
        let any_firing = group.alerts.iter().any(|a| a.status == AlertStatus::Firing);
        prop_assert_eq!(message.status == AlertStatus::Firing, any_firing);
        prop_assert_eq!(message.alerts.len(), group.alerts.len());
        for (sent, got) in group.alerts.iter().zip(&message.alerts) {
            prop_assert_eq!(got.status, sent.status);
            prop_assert_eq!(&got.labels, &sent.labels);
            prop_assert_eq!(&got.annotations, &sent.annotations);
            prop_assert_eq!(got.starts_at_ms, sent.starts_at_ms);
            prop_assert_eq!(&got.generator_url, &sent.generator_url);
            prop_assert_eq!(&got.fingerprint, &fingerprint_hex(&sent.labels));
            let want_end = match sent.status {
                AlertStatus::Resolved => sent.ends_at_ms.filter(|&t| t != GO_ZERO_TIME_MS),
                AlertStatus::Firing => None,
            };
            prop_assert_eq!(got.ends_at_ms, want_end);
            for (k, v) in &message.common_labels {
                prop_assert_eq!(got.labels.get(k), Some(v));
            }
        }
    }

    #[test]
    fn rate_limiter_never_exceeds_burst_plus_refill(
        per_minute in 1u32..600,
        burst in 1u32..20,
        steps in proptest::collection::vec(0i64..5_000, 1..200),
    ) {
        let per_minute_nz = NonZeroU32::new(per_minute).ok_or_else(|| TestCaseError::fail("zero"))?;
        let burst_nz = NonZeroU32::new(burst).ok_or_else(|| TestCaseError::fail("zero"))?;
        let mut limiter = RateLimiter::new(per_minute_nz, burst_nz);
        let mut now = 0i64;
        let mut allowed = 0u64;
        for step in steps {
            now += step;
            if limiter.check("key", now).is_ok() {
                allowed += 1;
            }
            let refilled = (now as u64 * u64::from(per_minute)) / 60_000;
            prop_assert!(allowed <= u64::from(burst) + refilled,
                "allowed {} > burst {} + refilled {}", allowed, burst, refilled);
        }
    }
}

#[test]
fn signal_serialises_for_storage() {
    let body = json!({
        "routing_key": KEY, "event_action": "trigger", "dedup_key": "d",
        "payload": good_payload()
    });
    let signal = parse_event(body.to_string().as_bytes(), &mut generator())
        .expect("valid")
        .into_signal();
    let stored = serde_json::to_string(&signal).expect("serialise");
    let back: sluice_alerts::Signal = serde_json::from_str(&stored).expect("deserialise");
    assert_eq!(back, signal);
    let as_map: BTreeMap<String, Value> = serde_json::from_str(&stored).expect("map");
    assert_eq!(as_map["severity"], "error");
    assert_eq!(as_map["action"], "trigger");
}
