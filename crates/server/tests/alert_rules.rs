//! Signals sluice raises itself, end to end: a real service deployed behind the proxy, the
//! alert rules of its `sluice.yml` evaluated by the server over the proxy's counters and over
//! the service's own Prometheus endpoint, and the instance health watched outside
//! deployments. Each alert must open an incident, reach the webhook receiver and resolve
//! when the service recovers.

#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;
use common::rules::RuleWorld;
use serde_json::Value;

/// The rules of the tests: 5xx through the proxy, the service's own gauge, and a gauge that
/// shows when an evaluation with data has run.
const RULES: &str = r#"    HighErrorRate:
      service: web
      expr: error_rate > 0.2
      window: 2s
      for: 500ms
      severity: critical
      labels: { team: storefront }
    DeepQueue:
      service: web
      env: production
      expr: last(queue_depth) > 5
      window: 2s
      for: 300ms
      summary: the job queue of web is backing up
    Marker:
      service: web
      expr: marker > 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_rule_fires_pages_and_resolves_when_the_service_recovers() {
    let w = RuleWorld::start(RULES).await;
    let traffic = w.traffic();
    w.set("errors=1").await;

    let alert = w.alert("HighErrorRate", "firing").await;
    assert_eq!(alert["source"], "rule");
    assert_eq!(alert["rule"], "HighErrorRate");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["dedup_key"], "HighErrorRate/web/production");
    assert_eq!(alert["labels"]["service"], "web");
    assert_eq!(alert["labels"]["env"], "production");
    assert_eq!(alert["labels"]["team"], "storefront");
    let value = alert["details"]["value"].as_f64().unwrap();
    assert!(value > 0.2, "fired at {value}");
    assert_eq!(alert["details"]["threshold"], 0.2);
    let summary = alert["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("HighErrorRate: error_rate > 0.2 (value "),
        "{summary}"
    );
    let incident = alert["incident_id"].as_i64().unwrap();
    let note = w.notified(incident, "triggered").await;
    assert_eq!(note["service"], "web");
    assert!(
        note["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "HighErrorRate"),
        "{note}"
    );

    // The service recovers: once the window holds no more failures the alert resolves, the
    // incident with it, and whoever was paged hears so.
    w.set("errors=0").await;
    let resolved = w.alert("HighErrorRate", "resolved").await;
    assert_eq!(resolved["id"], alert["id"]);
    w.notified(incident, "resolved").await;
    drop(traffic);
    // The scraped rule saw its gauge at 0 throughout.
    assert!(
        !w.alerts()
            .await
            .iter()
            .any(|a| a["labels"]["alertname"] == "DeepQueue"),
        "DeepQueue must not fire"
    );
    w.server.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_over_a_scraped_gauge_fires_and_resolves() {
    let w = RuleWorld::start(RULES).await;
    w.set("gauge=12").await;
    let alert = w.alert("DeepQueue", "firing").await;
    assert_eq!(alert["summary"], "the job queue of web is backing up");
    assert_eq!(alert["severity"], "warning", "the default severity");
    assert_eq!(alert["details"]["value"], 12.0);
    assert_eq!(alert["details"]["metrics_path"], "/metrics");
    let incident = alert["incident_id"].as_i64().unwrap();
    w.notified(incident, "triggered").await;

    w.set("gauge=1").await;
    let resolved = w.alert("DeepQueue", "resolved").await;
    assert_eq!(resolved["id"], alert["id"]);
    w.notified(incident, "resolved").await;
    // Without traffic there is no error rate: the proxy rule stayed quiet.
    assert!(
        !w.alerts()
            .await
            .iter()
            .any(|a| a["labels"]["alertname"] == "HighErrorRate")
    );
    w.server.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_unhealthy_in_steady_state_alerts_until_it_is_healthy_again() {
    let w = RuleWorld::start(RULES).await;
    let (id, _) = w.instance().await;
    w.set("healthy=0").await;
    eventually("the runtime to see the instance unhealthy", 30, || async {
        (w.instance_state(&id).as_deref() == Some("unhealthy")).then_some(())
    })
    .await;

    let alert = w.alert("InstanceUnhealthy", "firing").await;
    assert_eq!(alert["source"], "sluice");
    assert_eq!(alert["dedup_key"], format!("web/production/{id}"));
    assert_eq!(alert["labels"]["instance"], id);
    assert_eq!(alert["labels"]["version"], "v1");
    assert_eq!(alert["severity"], "error", "unhealthy in production");
    let incident = alert["incident_id"].as_i64().unwrap();
    w.notified(incident, "triggered").await;

    w.set("healthy=1").await;
    let resolved = w.alert("InstanceUnhealthy", "resolved").await;
    assert_eq!(resolved["id"], alert["id"]);
    assert_eq!(w.instance_state(&id).as_deref(), Some("ready"));
    w.notified(incident, "resolved").await;
    w.server.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_rule_survives_restarts_without_a_second_page_or_a_false_resolve() {
    let w = RuleWorld::start(RULES).await;
    let (_, instance_port) = w.instance().await;
    w.set("gauge=12").await;
    let alert = w.alert("DeepQueue", "firing").await;
    let incident = alert["incident_id"].as_i64().unwrap();
    w.notified(incident, "triggered").await;

    // A restart while the queue is still deep: once the new server has evaluated with data
    // (the marker rule fires), the alert is the same open one.
    let w = w.stop().await.start().await;
    w.set("marker=1").await;
    w.alert("Marker", "firing").await;
    let deep = |alerts: Vec<Value>| -> Vec<Value> {
        alerts
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "DeepQueue")
            .collect()
    };
    let after = deep(w.alerts().await);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["id"], alert["id"]);
    assert_eq!(after[0]["status"], "firing");

    // The queue drains while the server is down: the next server resolves the alert.
    let stopped = w.stop().await;
    stopped.set(instance_port, "gauge=0&marker=0").await;
    let w = stopped.start().await;
    let resolved = w.alert("DeepQueue", "resolved").await;
    assert_eq!(resolved["id"], alert["id"]);
    w.notified(incident, "resolved").await;
    assert_eq!(deep(w.alerts().await).len(), 1, "no second DeepQueue alert");
    let pages = w
        .sink
        .bodies()
        .iter()
        .filter(|b| b["incident_id"] == incident && b["event"] == "triggered")
        .count();
    assert_eq!(pages, 1, "paged once across both restarts");
    w.server.stop_all().await;
}
