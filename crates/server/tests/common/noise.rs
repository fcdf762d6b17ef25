//! Helpers of the noise-control tests (`tests/noise.rs`): a webhook sink on loopback that
//! keeps every notification it receives, the project's `sluice.yml` with optional flapping
//! settings, Alertmanager alerts firing and resolved, and reads of the alerts and the noise
//! figures through the API.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{AlertWorld, http};

/// A webhook receiver on 127.0.0.1 that answers 200 and keeps every JSON body.
pub struct NoteSink {
    /// Where it listens.
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl NoteSink {
    pub async fn start() -> NoteSink {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = bodies.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::Json<Value>| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push(body.0);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        NoteSink { url, bodies }
    }

    /// Every body received so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Project `shop` grouping by `alertname` with a short group wait, notifying `sink` in
/// sluice's webhook format; `flapping` is the `alerts.flapping` value, if any (YAML flow
/// syntax, e.g. `{window: 1h, changes: 2}`).
pub fn noise_yml(sink: &str, flapping: Option<&str>) -> String {
    let flapping = flapping.map_or_else(String::new, |f| format!("  flapping: {f}\n"));
    format!(
        "project: shop\n\
         environments:\n  production:\n    branch: main\n\
         services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n\
         alerts:\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 1s\n\
         {flapping}  channels:\n    ops:\n      webhook: {sink}\n"
    )
}

/// An Alertmanager alert that fires.
pub fn firing(name: &str, instance: &str) -> Value {
    json!({
        "labels": {"alertname": name, "instance": instance, "service": "web", "severity": "warning"},
        "annotations": {"summary": format!("{name} on {instance}")},
    })
}

/// The same alert, resolved (its end in the past).
pub fn resolved(name: &str, instance: &str) -> Value {
    let mut a = firing(name, instance);
    a["startsAt"] = json!("2019-12-31T00:00:00Z");
    a["endsAt"] = json!("2020-01-01T00:00:00Z");
    a
}

impl AlertWorld {
    /// Posts Alertmanager alerts to the integration's path, which must accept them.
    pub async fn post_am(&self, alerts: &[Value]) {
        let path = format!("/integrations/{}/api/v2/alerts", self.key);
        let (status, text) = self.post(&path, &Value::from(alerts.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }

    /// Every alert of project `shop`, newest first.
    pub async fn shop_alerts(&self) -> Vec<Value> {
        self.get("/api/v1/alerts?project=shop&limit=1000")
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    /// The alerts with this `alertname`, oldest first.
    pub async fn alerts_named(&self, name: &str) -> Vec<Value> {
        let mut alerts: Vec<Value> = self
            .shop_alerts()
            .await
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect();
        alerts.reverse();
        alerts
    }

    /// `POST /api/v1/incidents/{id}/ack` as the admin, which must work.
    pub async fn ack(&self, id: i64) {
        let r = http()
            .post(format!("{}/api/v1/incidents/{id}/ack", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "acknowledging incident {id}");
    }
}

/// The median of `values` as the noise figures define it (the mean of the middle two for an
/// even count, rounded towards zero).
pub fn median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some(values[n / 2 - 1].midpoint(values[n / 2])),
    }
}

/// How long each resolved alert of `alerts` was open (ms).
pub fn durations(alerts: &[Value]) -> Vec<i64> {
    alerts
        .iter()
        .filter(|a| a["status"] == "resolved")
        .map(|a| a["resolved_ms"].as_i64().unwrap() - a["created_ms"].as_i64().unwrap())
        .collect()
}
