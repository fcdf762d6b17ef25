//! A Slack incoming-webhook stand-in on loopback for the notification tests: it keeps every
//! JSON body posted to it (with the path and content type) and answers like Slack, `200 ok`,
//! after answering a given list of failure statuses first. Plus setting a project secret
//! through the API, which is where a `slack:` channel's URL comes from.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

use super::{AlertWorld, http};

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path, e.g. `/services/T0/B0/X`.
    pub path: String,
    /// Its `content-type` header.
    pub content_type: String,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    /// The status the sink answered.
    pub status: u16,
}

/// The incoming-webhook sink.
pub struct SlackSink {
    /// Where to post: `http://127.0.0.1:PORT/services/T0/B0/sluice-test`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SlackSink {
    /// Starts a sink that answers `failures` in order (e.g. `[500, 429]`, with Slack's own
    /// error bodies), then `200 ok` to every request.
    pub async fn start(failures: &[u16]) -> SlackSink {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let plan: Arc<Mutex<Vec<u16>>> =
            Arc::new(Mutex::new(failures.iter().rev().copied().collect()));
        let log = received.clone();
        let app =
            axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
                let (log, plan) = (log.clone(), plan.clone());
                async move {
                    let status = plan.lock().unwrap().pop().unwrap_or(200);
                    log.lock().unwrap().push(Received {
                        path: uri.path().to_owned(),
                        content_type: headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        body: serde_json::from_str(&body).unwrap_or(Value::Null),
                        status,
                    });
                    let text = match status {
                        200 => "ok",
                        429 => "rate_limited",
                        404 => "no_service",
                        _ => "internal_error",
                    };
                    (StatusCode::from_u16(status).unwrap(), text)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/services/T0/B0/sluice-test",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SlackSink { url, received }
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies the sink accepted (answered 200), oldest first.
    pub fn delivered(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body)
            .collect()
    }
}

/// Sets the project-wide secret `name` of project `shop` through the API.
pub async fn set_secret(w: &AlertWorld, name: &str, value: &str) {
    let r = http()
        .put(format!("{}/api/v1/projects/shop/secrets/{name}", w.base))
        .json(&serde_json::json!({ "value": value }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "setting secret {name}: {}",
        r.text().await.unwrap()
    );
}

/// The link buttons of a Slack body: `(label, url)` of every button in its actions blocks.
pub fn buttons(body: &Value) -> Vec<(String, String)> {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["text"]["text"].as_str().unwrap_or_default().to_owned(),
                e["url"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
