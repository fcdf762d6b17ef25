//! Noise control through the server: an Alertmanager alert that flaps reaches the webhook
//! receiver once and is marked flapping in the API, its resolves held while it flaps; and
//! the noise figures per rule (alerts, incidents, alerts per incident, share auto-resolved
//! quickly, share acknowledged, share flapping, median time to resolve) from the API and the
//! page, with exactly the values the posted alerts call for.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::noise::{NoteSink, durations, firing, median, noise_yml, resolved};
use common::{AlertWorld, eventually, http};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_alert_notifies_once_and_is_marked_flapping() {
    let sink = NoteSink::start().await;
    // Two changes within an hour: its first resolve already makes it flap.
    let yml = noise_yml(&sink.url, Some("{window: 1h, changes: 2}"));
    let w = AlertWorld::start(&yml, |_| {}).await;
    w.post_am(&[firing("Flappy", "a")]).await;
    let first = eventually("the first notification", 20, || async {
        let b = sink.bodies();
        (!b.is_empty()).then_some(b)
    })
    .await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["event"], "triggered");
    let incident = first[0]["incident_id"].as_i64().unwrap();
    let notified = w.incident(incident).await["incident"]["notified_ms"].clone();
    assert!(notified.is_i64(), "{notified}");

    // Three resolves and two triggers, one request each.
    for (i, a) in [
        resolved("Flappy", "a"),
        firing("Flappy", "a"),
        resolved("Flappy", "a"),
        firing("Flappy", "a"),
        resolved("Flappy", "a"),
    ]
    .into_iter()
    .enumerate()
    {
        w.post_am(&[a]).await;
        // The journal applies them in order; wait for the last one to be applied.
        if i == 4 {
            eventually("the five signals applied", 20, || async {
                let alerts = w.alerts_named("Flappy").await;
                (alerts.len() == 1
                    && alerts[0]["repeats"] == 2
                    && alerts[0]["resolved_ms"].is_i64())
                .then_some(())
            })
            .await;
        }
    }
    // One alert, still open, flapping, its last resolve held; its incident still open,
    // notified once: no resolve/trigger notifications, no new incident.
    let alerts = w.alerts_named("Flappy").await;
    let a = &alerts[0];
    assert_eq!(
        (
            &a["status"],
            &a["flapping"],
            &a["flapped"],
            &a["incident_id"]
        ),
        (
            &json!("firing"),
            &json!(true),
            &json!(true),
            &json!(incident)
        ),
        "{a}"
    );
    let record = w.incident(incident).await;
    assert_eq!(record["incident"]["status"], "triggered");
    assert_eq!(record["incident"]["notified_ms"], notified);
    assert_eq!(w.incidents().await.len(), 1);
    let timeline = record["timeline"].as_array().unwrap();
    let flapping: Vec<&Value> = timeline
        .iter()
        .filter(|t| t["kind"] == "flapping")
        .collect();
    assert_eq!(flapping.len(), 1, "{timeline:?}");
    assert!(
        flapping[0]["text"]
            .as_str()
            .unwrap()
            .contains("is flapping (2 state changes within 1h"),
        "{}",
        flapping[0]["text"]
    );

    // Another alert's notification comes after anything the flapping one could have caused:
    // the receiver then holds exactly those two.
    w.post_am(&[firing("Sentinel", "a")]).await;
    let all = eventually("the sentinel's notification", 20, || async {
        let b = sink.bodies();
        (b.len() >= 2).then_some(b)
    })
    .await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["incident_id"], incident);
    assert!(
        all[1]["title"].as_str().unwrap().starts_with("Sentinel"),
        "{}",
        all[1]
    );
    w.server.stop().await;
}

/// The figures of one rule in the API's answer.
fn rule<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_figures_per_rule_from_the_api_and_the_page() {
    let sink = NoteSink::start().await;
    // Default flap detection: four changes within ten minutes.
    let w = AlertWorld::start(&noise_yml(&sink.url, None), |_| {}).await;
    // Blip: three alerts in one incident that resolve by themselves at once. Slow: one
    // alert, acknowledged, then a second joins; neither resolves. A PagerDuty event without
    // an alertname: its source names the rule.
    w.post_am(&[
        firing("Blip", "a"),
        firing("Blip", "b"),
        firing("Blip", "c"),
        firing("Slow", "a"),
    ])
    .await;
    let event = json!({
        "routing_key": w.key, "event_action": "trigger", "dedup_key": "db",
        "payload": {"summary": "db is slow", "source": "db-1", "severity": "error"},
    });
    let (st, text) = w.post("/v2/enqueue", &event).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let slow = eventually("three incidents", 20, || async {
        let i = w.incidents().await;
        (i.len() == 3).then(|| {
            i.iter()
                .find(|x| x["title"].as_str().unwrap().starts_with("Slow"))
                .unwrap()["id"]
                .as_i64()
                .unwrap()
        })
    })
    .await;
    w.ack(slow).await;
    w.post_am(&[firing("Slow", "b")]).await;
    w.post_am(&[
        resolved("Blip", "a"),
        resolved("Blip", "b"),
        resolved("Blip", "c"),
    ])
    .await;
    // Flappy: fires, resolves (an ordinary alert), fires again (a new alert and incident, as
    // in PagerDuty), resolves: the fourth change, so that alert flaps and stays open.
    for a in [
        firing("Flappy", "a"),
        resolved("Flappy", "a"),
        firing("Flappy", "a"),
        resolved("Flappy", "a"),
    ] {
        w.post_am(&[a]).await;
    }
    let flappy = eventually("the flapping alert", 20, || async {
        let alerts = w.alerts_named("Flappy").await;
        (alerts.len() == 2 && alerts[1]["flapping"] == true && alerts[1]["resolved_ms"].is_i64())
            .then_some(alerts)
    })
    .await;
    let blip = eventually("Blip's alerts resolved", 20, || async {
        let alerts = w.alerts_named("Blip").await;
        alerts
            .iter()
            .all(|a| a["status"] == "resolved")
            .then_some(alerts)
    })
    .await;
    assert_eq!(w.alerts_named("Slow").await.len(), 2);

    let report = w.get("/api/v1/alerts/noise?project=shop&since=30d").await;
    assert_eq!(report["within_ms"], 300_000);
    assert_eq!(
        report["until_ms"].as_i64().unwrap() - report["since_ms"].as_i64().unwrap(),
        30 * 86_400_000
    );
    let order: Vec<&str> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["Blip", "Flappy", "Slow", "pagerduty-events-v2"]);
    assert_eq!(
        rule(&report, "Blip"),
        &json!({
            "project": "shop", "rule": "Blip", "alerts": 3, "silenced": 0, "incidents": 1,
            "alerts_per_incident": 3.0, "auto_resolved_quickly": 3, "auto_resolved_share": 1.0,
            "acknowledged": 0, "acknowledged_share": 0.0, "flapping": 0, "flapping_share": 0.0,
            "resolved": 3, "median_resolve_ms": median(durations(&blip)),
        })
    );
    assert_eq!(
        rule(&report, "Flappy"),
        &json!({
            "project": "shop", "rule": "Flappy", "alerts": 2, "silenced": 0, "incidents": 2,
            "alerts_per_incident": 1.0, "auto_resolved_quickly": 1, "auto_resolved_share": 0.5,
            "acknowledged": 0, "acknowledged_share": 0.0, "flapping": 1, "flapping_share": 0.5,
            "resolved": 1, "median_resolve_ms": median(durations(&flappy)),
        })
    );
    assert_eq!(
        rule(&report, "Slow"),
        &json!({
            "project": "shop", "rule": "Slow", "alerts": 2, "silenced": 0, "incidents": 1,
            "alerts_per_incident": 2.0, "auto_resolved_quickly": 0, "auto_resolved_share": 0.0,
            "acknowledged": 1, "acknowledged_share": 1.0, "flapping": 0, "flapping_share": 0.0,
            "resolved": 0, "median_resolve_ms": null,
        })
    );
    assert_eq!(
        rule(&report, "pagerduty-events-v2"),
        &json!({
            "project": "shop", "rule": "pagerduty-events-v2", "alerts": 1, "silenced": 0,
            "incidents": 1, "alerts_per_incident": 1.0, "auto_resolved_quickly": 0,
            "auto_resolved_share": 0.0, "acknowledged": 0, "acknowledged_share": 0.0,
            "flapping": 0, "flapping_share": 0.0, "resolved": 0, "median_resolve_ms": null,
        })
    );

    // Nothing counts as quick within a millisecond; a project the caller cannot see or that
    // does not exist has no rules; bad periods are the API's 400.
    let strict = w.get("/api/v1/alerts/noise?within=1ms").await;
    assert_eq!(rule(&strict, "Blip")["auto_resolved_quickly"], 0);
    let none = w.get("/api/v1/alerts/noise?project=nope").await;
    assert_eq!(none["rules"], json!([]));
    for bad in ["since=forever", "within=0s", "bogus=1"] {
        let r = http()
            .get(format!("{}/api/v1/alerts/noise?{bad}", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // The page: a row per rule, linked from the incident list.
    let page = common::fetch(&format!("{}/alerts/noise", w.base)).await;
    for name in ["Blip", "Flappy", "Slow", "pagerduty-events-v2"] {
        assert!(page.contains(&format!("data-rule=\"{name}\"")), "{page}");
    }
    assert!(page.contains("auto-resolved within 5m"), "{page}");
    let list = common::fetch(&format!("{}/incidents", w.base)).await;
    assert!(list.contains("href=\"/alerts/noise\""), "{list}");
    w.server.stop().await;
}
