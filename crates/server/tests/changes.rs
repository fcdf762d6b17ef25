//! Changes made outside a `sluice.yml` commit that incidents take into account, through the
//! server over real HTTP: PagerDuty change events (deploy markers from other tools) on the
//! incident record and in the postmortem draft, for the incident's service or the whole
//! project and only within the record's window; and on-call overrides added through the API,
//! validated against the production `sluice.yml`, shown by the on-call API and page, followed
//! by escalation, removed again, each change in the event log.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::slack::SlackSink;
use common::{AlertWorld, eventually, http};
use serde_json::{Value, json};
use sluice_core::time::rfc3339_utc;
use sluice_server::engine::now_ms;

const HOUR: i64 = 3_600_000;

/// Creates an integration of project `shop`, optionally for one service: its key.
async fn integration(w: &AlertWorld, name: &str, service: Option<&str>) -> String {
    let r = http()
        .post(format!("{}/api/v1/projects/shop/integrations", w.base))
        .json(&json!({"name": name, "service": service}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Posts a PagerDuty change event; PagerDuty's 202 is expected.
async fn change(w: &AlertWorld, key: &str, summary: &str, source: &str, at_ms: Option<i64>) {
    let mut payload = json!({"summary": summary, "source": source});
    if let Some(t) = at_ms {
        payload["timestamp"] = json!(rfc3339_utc(t));
    }
    let (st, text) = w
        .post(
            "/v2/change/enqueue",
            &json!({"routing_key": key, "payload": payload, "links": [{"href": "https://ci.example/42", "text": "build"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
}

fn changes_of(record: &Value) -> Vec<String> {
    record["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "change")
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_events_are_on_the_incident_record_and_in_the_postmortem() {
    let ticket = SlackSink::start(&[]).await;
    let yml = format!(
        "project: shop\n\
         environments:\n  production:\n    branch: main\n\
         services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n  \
         api:\n    steps:\n      build:\n        run: \"true\"\n\
         alerts:\n  group_wait: 100ms\n  ticket: {{ url: \"{}\" }}\n",
        ticket.url
    );
    let w = AlertWorld::start(&yml, |_| {}).await;
    let web = integration(&w, "deployer", Some("web")).await;
    let api = integration(&w, "api-deployer", Some("api")).await;

    // Before the alert: a deploy of web by CI, a deploy of api, a project-wide flag flip,
    // and one change that happened three hours ago (out of the record's window).
    change(&w, &web, "Deploy web v42", "ci", None).await;
    change(&w, &api, "Deploy api v7", "ci", None).await;
    change(&w, &w.key, "Feature flag checkout-v2 on", "flags", None).await;
    change(&w, &web, "Deploy web v41", "ci", Some(now_ms() - 3 * HOUR)).await;

    let (st, _) = w
        .post(
            "/v2/enqueue",
            &json!({
                "routing_key": w.key,
                "event_action": "trigger",
                "dedup_key": "checkout",
                "payload": {"summary": "checkout is failing", "source": "web-1", "severity": "critical", "component": "web"},
            }),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let id = eventually("the incident", 30, || async {
        w.incidents().await.first().and_then(|i| i["id"].as_i64())
    })
    .await;
    let record = w.incident(id).await;
    assert_eq!(record["incident"]["service"], "web");
    assert_eq!(
        changes_of(&record),
        vec![
            "change: Deploy web v42 (ci)",
            "change: Feature flag checkout-v2 on (flags)"
        ],
        "{record}"
    );
    let entry = record["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "change")
        .unwrap();
    assert_eq!(entry["actor"], "integration:deployer");
    assert_eq!(entry["data"]["links"][0]["href"], "https://ci.example/42");

    // Resolved by hand: the postmortem draft lists the changes with the deploys.
    let r = http()
        .post(format!("{}/api/v1/incidents/{id}/resolve", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let post = eventually("the postmortem", 30, || async {
        ticket.delivered().into_iter().next()
    })
    .await;
    assert_eq!(post["type"], "sluice.postmortem");
    let md = post["markdown"].as_str().unwrap();
    assert!(
        md.contains("| change | integration:deployer | change: Deploy web v42 (ci) |"),
        "{md}"
    );
    assert!(
        md.contains("change: Feature flag checkout-v2 on (flags)"),
        "{md}"
    );
    assert!(
        !md.contains("Deploy api v7") && !md.contains("Deploy web v41"),
        "{md}"
    );

    // A change after the incident resolved is not part of its record.
    change(&w, &web, "Deploy web v43", "ci", Some(now_ms() + HOUR)).await;
    assert_eq!(changes_of(&w.incident(id).await).len(), 2);
    w.server.stop().await;
}

fn oncall_yml() -> &'static str {
    "project: shop\n\
     environments:\n  production:\n    branch: main\n\
     services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n\
     alerts:\n  group_wait: 100ms\n  escalation: default\n\
     oncall:\n  schedules:\n    primary:\n      time_zone: Europe/Berlin\n      layers:\n        \
     - name: week\n          users: [bob]\n          rotation: weekly\n          start: \"2026-01-05T09:00\"\n  \
     escalation:\n    default:\n      levels:\n        - notify: [schedule:primary]\n          after: 10m\n"
}

/// `POST` an override body for project `project`: status and body.
async fn add_override(w: &AlertWorld, project: &str, body: &Value) -> (StatusCode, Value) {
    let r = http()
        .post(format!(
            "{}/api/v1/projects/{project}/oncall/overrides",
            w.base
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn primary(w: &AlertWorld) -> Value {
    let rows = w.get("/api/v1/oncall").await;
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["schedule"] == "primary")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_puts_someone_on_call_for_the_api_the_page_and_escalation() {
    let w = AlertWorld::start(oncall_yml(), |_| {}).await;
    let r = http()
        .post(format!("{}/api/v1/users", w.base))
        .json(&json!({"name": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(primary(&w).await["now"]["user"], "bob");

    let now = now_ms();
    let body = |schedule: &str, user: &str, start: String, end: String| json!({"schedule": schedule, "user": user, "start": start, "end": end});
    let tonight = || (rfc3339_utc(now - 60_000), rfc3339_utc(now + HOUR));

    // Refusals say what is wrong, and store nothing.
    let (s, e) = tonight();
    let refused = [
        (
            body("secondary", "alice", s.clone(), e.clone()),
            "schedule `secondary` is not in the production sluice.yml of project `shop`: it defines primary",
        ),
        (
            body("primary", "alice", "tonight".into(), e.clone()),
            "start: `tonight` is not an RFC 3339 time",
        ),
        (
            body("primary", "alice", "2026-05-01T18:00:00".into(), e.clone()),
            "is not an RFC 3339 time",
        ),
        (
            body("primary", "alice", e.clone(), s.clone()),
            "is not after start",
        ),
        (
            body(
                "primary",
                "alice",
                rfc3339_utc(now - 2 * HOUR),
                rfc3339_utc(now - HOUR),
            ),
            "is in the past",
        ),
        (
            body("primary", "zed", s.clone(), e.clone()),
            "unknown user `zed`",
        ),
        (
            json!({"schedule": "primary", "user": "alice", "start": s, "end": e, "layer": "x"}),
            "layer",
        ),
    ];
    for (b, message) in &refused {
        let (status, v) = add_override(&w, "shop", b).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}: {v}");
        let said = v["error"]["message"].as_str().unwrap_or_default();
        assert!(said.contains(message), "{b}: {said}");
    }
    let (status, _) = add_override(&w, "nope", &body("primary", "alice", s, e)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stored = w
        .get("/api/v1/projects/shop/oncall/overrides?all=true")
        .await;
    assert_eq!(stored, json!([]));

    // Alice covers the next hour.
    let (s, e) = tonight();
    let (status, created) = add_override(&w, "shop", &body("primary", "alice", s, e)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let oid = created["id"].as_i64().unwrap();
    assert_eq!(created["user"], "alice");
    assert_eq!(created["created_by"], "user:admin");
    let row = primary(&w).await;
    assert_eq!(row["now"]["user"], "alice", "{row}");
    assert!(row["now"]["layer"].is_null(), "{row}");
    assert_eq!(row["now"]["until_ms"], created["ends_ms"], "{row}");
    assert_eq!(row["next"]["user"], "bob", "{row}");
    assert_eq!(row["overrides"][0]["id"], oid, "{row}");
    let listed = w.get("/api/v1/projects/shop/oncall/overrides").await;
    assert_eq!(listed, json!([created]));
    let page = common::fetch(&format!("{}/oncall", w.base)).await;
    assert!(page.contains("alice (override)"), "{page}");

    // Escalation pages whoever the override put on call.
    let (st, _) = w
        .post(
            "/v2/enqueue",
            &json!({
                "routing_key": w.key,
                "event_action": "trigger",
                "dedup_key": "db",
                "payload": {"summary": "db is down", "source": "db-1", "severity": "critical", "component": "web"},
            }),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let id = eventually("the incident", 30, || async {
        w.incidents().await.first().and_then(|i| i["id"].as_i64())
    })
    .await;
    let page_entry = eventually("the page", 30, || async {
        w.incident(id).await["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "page")
            .cloned()
    })
    .await;
    assert_eq!(page_entry["data"]["user"], "alice", "{page_entry}");
    assert!(
        page_entry["text"]
            .as_str()
            .unwrap()
            .starts_with("could not page alice (level 1 of policy default)"),
        "{page_entry}"
    );

    // Removed: bob is back; a second removal finds nothing.
    let url = format!("{}/api/v1/projects/shop/oncall/overrides/{oid}", w.base);
    let r = http().delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), created);
    assert_eq!(primary(&w).await["now"]["user"], "bob");
    assert_eq!(
        http().delete(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Both changes are in the event log, with who did it.
    let events = w
        .get("/api/v1/events?kind=oncall.override_added,oncall.override_removed")
        .await;
    let seen: Vec<(Value, Value, Value, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].clone(),
                e["actor"].clone(),
                e["payload"]["override"].clone(),
                e["payload"]["user"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                json!("oncall.override_added"),
                json!("user:admin"),
                json!(oid),
                json!("alice")
            ),
            (
                json!("oncall.override_removed"),
                json!("user:admin"),
                json!(oid),
                json!("alice")
            ),
        ]
    );
    w.server.stop().await;
}
