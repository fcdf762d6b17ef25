//! The `slack:` notification channel through the server: the incoming-webhook URL comes
//! from the secret store, the body is Slack's incoming-webhook JSON (text and blocks) with
//! Acknowledge and Resolve buttons carrying signed links that work, a failing endpoint is
//! retried with every attempt on the incident's timeline, and the URL (a credential) never
//! shows on the timeline. A missing secret is said on the timeline, with what to do.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::slack::{SlackSink, buttons, set_secret};
use common::{AlertWorld, eventually};
use serde_json::{Value, json};

fn yml() -> String {
    "project: shop\n\
     environments:\n  production:\n    branch: main\n\
     services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n\
     alerts:\n  group_wait: 200ms\n  group_interval: 1s\n  \
     channels:\n    chat: { slack: SLACK_URL }\n"
        .to_owned()
}

fn trigger(key: &str, dedup: &str, summary: &str) -> Value {
    json!({
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {"summary": summary, "source": "web-1", "severity": "critical", "component": "web"},
    })
}

/// The incident's entries of `kind` by `actor`, oldest first.
async fn entries(w: &AlertWorld, id: i64, kind: &str, actor: &str) -> Vec<Value> {
    w.incident(id).await["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == kind && t["actor"] == actor)
        .cloned()
        .collect()
}

async fn newest_incident(w: &AlertWorld, count: usize) -> i64 {
    eventually(&format!("incident number {count}"), 30, || async {
        let list = w.incidents().await;
        (list.len() == count).then(|| list[0]["id"].as_i64().unwrap())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_channel_delivers_incoming_webhook_json_with_working_links_and_retries() {
    // The endpoint fails twice, as Slack can (an outage, then rate limiting).
    let sink = SlackSink::start(&[500, 429]).await;
    let w = AlertWorld::start(&yml(), |_| {}).await;

    // Without the secret nothing is sent, and the timeline says what to do.
    let (st, text) = w
        .post("/v2/enqueue", &trigger(&w.key, "disk", "disk full"))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let first = newest_incident(&w, 1).await;
    let missing = eventually("the missing secret on the timeline", 30, || async {
        entries(&w, first, "delivery", "chat")
            .await
            .into_iter()
            .next()
    })
    .await;
    let said = missing["text"].as_str().unwrap();
    assert!(
        said.starts_with("not sent:")
            && said.contains("SLACK_URL")
            && said.contains("sluice secrets set shop SLACK_URL"),
        "{said}"
    );
    let r = common::http()
        .post(format!("{}/api/v1/incidents/{first}/resolve", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // With the secret: the next incident reaches the sink on the third attempt.
    set_secret(&w, "SLACK_URL", &sink.url).await;
    let (st, _) = w
        .post(
            "/v2/enqueue",
            &trigger(&w.key, "checkout", "checkout is failing"),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let id = newest_incident(&w, 2).await;
    let body = eventually("the Slack message", 60, || async {
        sink.delivered().into_iter().next()
    })
    .await;
    let got = sink.received();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 429, 200],
        "one message, retried until it went through"
    );
    for r in &got {
        assert_eq!(r.path, "/services/T0/B0/sluice-test");
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.body, body, "every attempt sends the same message");
    }

    // Slack's incoming-webhook format: a fallback text and blocks, the first a header.
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("checkout is failing"), "{text}");
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header", "{body}");
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(header.contains("Triggered"), "{header}");
    assert!(
        blocks
            .iter()
            .all(|b| ["header", "section", "context", "actions"]
                .contains(&b["type"].as_str().unwrap_or_default())),
        "{body}"
    );
    let fields = body.to_string();
    assert!(
        fields.contains("*Project*\\nshop") && fields.contains("*Service*\\nweb"),
        "{fields}"
    );
    let links = buttons(&body);
    let link = |label: &str| {
        links
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| panic!("no {label} button in {body}"))
    };
    let ack = link("Acknowledge");
    let resolve = link("Resolve");
    assert!(
        ack.starts_with(&format!("{}/incidents/{id}/ack?sig=", w.base)),
        "{ack}"
    );
    assert!(
        resolve.starts_with(&format!("{}/incidents/{id}/resolve?sig=", w.base)),
        "{resolve}"
    );

    // Every attempt is on the timeline, in order, and the URL (a credential) is not.
    let deliveries = entries(&w, id, "delivery", "chat").await;
    let attempts: Vec<(i64, bool)> = deliveries
        .iter()
        .map(|d| {
            (
                d["data"]["attempt"].as_i64().unwrap(),
                d["data"]["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, vec![(1, false), (2, false), (3, true)]);
    let texts: Vec<&str> = deliveries
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert!(
        texts[0].contains("500") && texts[0].contains("retrying in"),
        "{texts:?}"
    );
    assert!(
        texts[1].contains("429") && texts[1].contains("retrying in"),
        "{texts:?}"
    );
    assert!(texts[2].contains("answered 200"), "{texts:?}");
    let record = w.incident(id).await.to_string();
    assert!(
        !record.contains("sluice-test"),
        "the hook URL leaked: {record}"
    );

    // The Resolve button's link works without signing in (GET shows, POST does), and the
    // resolve reaches the channel too.
    let plain = reqwest::Client::new();
    assert_eq!(
        plain.get(&resolve).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(w.incident(id).await["incident"]["status"], "triggered");
    let sig = resolve.split("sig=").nth(1).unwrap();
    let r = plain
        .post(format!("{}/incidents/{id}/resolve", w.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sig={sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(w.incident(id).await["incident"]["status"], "resolved");
    let resolved = eventually("the resolved message", 30, || async {
        sink.delivered().get(1).cloned()
    })
    .await;
    let header = resolved["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.contains("Resolved"), "{resolved}");

    // Each use of the URL is audited as a secret read by the notifier.
    let events = w.get("/api/v1/events?kind=secret.read&limit=100").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "notify:shop" && e["payload"]["name"] == "SLACK_URL"),
        "{events}"
    );
    w.server.stop().await;
}
