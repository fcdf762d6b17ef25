//! Alerts and incidents through the server: Alertmanager and PagerDuty ingest with their
//! own answers, deduplication and grouping into incidents, notifications delivered to a real
//! HTTP receiver with every attempt on the timeline, acknowledge and resolve through the API
//! and through signed links, and recovery of the journal after a restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use common::{AlertWorld, Repo, eventually, http};
use serde_json::{Value, json};
use sluice_server::Server;

/// A webhook receiver on loopback that keeps every body it gets; answers `status`.
struct Sink {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Sink {
    async fn start(fail_first: u32) -> Sink {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let fail = Arc::new(Mutex::new(fail_first));
        let (b, f) = (bodies.clone(), fail);
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::Json<Value>| {
                let (b, f) = (b.clone(), f.clone());
                async move {
                    let mut left = f.lock().unwrap();
                    if *left > 0 {
                        *left -= 1;
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    b.lock().unwrap().push(body.0);
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink { url, bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

fn yml(sink: &str, format: &str) -> String {
    format!(
        "project: shop\n\
         environments:\n  production:\n    branch: main\n\
         services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n\
         alerts:\n  group_by: [alertname]\n  group_wait: 300ms\n  group_interval: 1s\n  \
         channels:\n    ops:\n      webhook: {sink}\n      format: {format}\n"
    )
}

fn am_alert(name: &str, instance: &str, severity: &str) -> Value {
    json!({
        "labels": {"alertname": name, "instance": instance, "severity": severity, "service": "web"},
        "annotations": {"summary": format!("{name} on {instance}")},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_group_into_incidents_and_reach_the_receiver() {
    let sink = Sink::start(0).await;
    let w = AlertWorld::start(&yml(&sink.url, "alertmanager"), |_| {}).await;
    let path = format!("/integrations/{}/api/v2/alerts", w.key);
    let batch = json!([
        am_alert("HighLatency", "a", "warning"),
        am_alert("HighLatency", "b", "warning"),
        am_alert("DiskFull", "a", "critical"),
    ]);
    assert_eq!(w.post(&path, &batch).await.0, StatusCode::OK);
    // The same alerts again are duplicates, not new alerts.
    assert_eq!(w.post(&path, &batch).await.0, StatusCode::OK);

    let notes = eventually("two grouped notifications", 20, || async {
        let b = sink.bodies();
        (b.len() >= 2).then_some(b)
    })
    .await;
    let mut groups: Vec<(String, usize)> = notes
        .iter()
        .map(|n| {
            (
                n["groupLabels"]["alertname"].as_str().unwrap().to_owned(),
                n["alerts"].as_array().unwrap().len(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [("DiskFull".to_owned(), 1), ("HighLatency".to_owned(), 2)]
    );
    assert_eq!(notes[0]["version"], "4");
    let incidents = w.incidents().await;
    assert_eq!(incidents.len(), 2);
    let all: i64 = incidents
        .iter()
        .map(|i| i["alert_count"].as_i64().unwrap())
        .sum();
    assert_eq!(all, 3, "{incidents:?}");

    // A bearer key works as well; a wrong key is refused and stores nothing.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", w.base))
        .bearer_auth("0000000000000000000000000000dead")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Alertmanager's own answer to a body that does not parse.
    let (st, text) = w.post(&path, &json!({"not": "a list"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("\"code\":400"), "{text}");
    assert_eq!(w.incidents().await.len(), 2);

    // Resolving every alert of an incident resolves it, and the receiver hears it.
    let resolved = json!([{
        "labels": {"alertname": "DiskFull", "instance": "a", "severity": "critical", "service": "web"},
        "endsAt": "2020-01-01T00:00:00Z",
        "startsAt": "2019-12-31T00:00:00Z",
    }]);
    assert_eq!(w.post(&path, &resolved).await.0, StatusCode::OK);
    let disk = incidents
        .iter()
        .find(|i| i["title"].as_str().unwrap().starts_with("DiskFull"))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let shown = eventually("the incident resolved", 20, || async {
        let v = w.incident(disk).await;
        (v["incident"]["status"] == "resolved").then_some(v)
    })
    .await;
    assert!(shown["incident"]["resolved_by"].is_null());
    eventually("the resolve notification", 20, || async {
        sink.bodies()
            .iter()
            .any(|n| n["status"] == "resolved")
            .then_some(())
    })
    .await;
    w.server.stop().await;
}

fn pd_event(key: &str, action: &str, dedup: &str) -> Value {
    json!({
        "routing_key": key,
        "event_action": action,
        "dedup_key": dedup,
        "payload": {"summary": "checkout is failing", "source": "web-1", "severity": "critical", "component": "web"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_events_trigger_acknowledge_and_resolve_with_pagerdutys_answers() {
    let sink = Sink::start(1).await;
    let w = AlertWorld::start(&yml(&sink.url, "sluice"), |_| {}).await;
    let (st, text) = w
        .post("/v2/enqueue", &pd_event(&w.key, "trigger", "checkout"))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["dedup_key"], "checkout");

    // A wrong routing key and a bad severity: PagerDuty's 400, nothing stored.
    let (st, text) = w
        .post(
            "/v2/enqueue",
            &pd_event("0123456789abcdef0123456789abcdef", "trigger", "x"),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let mut bad = pd_event(&w.key, "trigger", "y");
    bad["payload"]["severity"] = json!("apocalyptic");
    let (st, text) = w.post("/v2/enqueue", &bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"],
        "invalid event"
    );

    let inc = eventually("one incident", 20, || async {
        let i = w.incidents().await;
        (i.len() == 1).then(|| i[0].clone())
    })
    .await;
    let id = inc["id"].as_i64().unwrap();
    // The receiver failed once; the retry delivered, and both attempts are on the timeline.
    let first = eventually("the triggered notification", 30, || async {
        sink.bodies().first().cloned()
    })
    .await;
    assert_eq!(first["event"], "triggered", "{first}");
    let ack_url = first["ack_url"].as_str().unwrap().to_owned();
    let timeline = w.incident(id).await["timeline"].clone();
    let deliveries: Vec<&Value> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "delivery")
        .collect();
    assert_eq!(deliveries.len(), 2, "{timeline}");
    assert_eq!(deliveries[0]["data"]["ok"], false);
    assert_eq!(deliveries[1]["data"]["ok"], true);

    // The signed link: GET only shows a button; a forged signature is refused.
    let plain = reqwest::Client::new();
    let page = plain.get(&ack_url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(w.incident(id).await["incident"]["status"], "triggered");
    let forged = ack_url.replace("sig=", "sig=x");
    let r = plain
        .post(format!("{}/incidents/{id}/ack", w.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sig={}", forged.split("sig=").nth(1).unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let sig = ack_url.split("sig=").nth(1).unwrap();
    let r = plain
        .post(format!("{}/incidents/{id}/ack", w.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sig={sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let acked = w.incident(id).await;
    assert_eq!(acked["incident"]["status"], "acknowledged");
    assert_eq!(acked["incident"]["acked_by"], "signed link");

    // Resolve through the PagerDuty API; an unknown key's resolve is dropped (still 202).
    let (st, _) = w
        .post("/v2/enqueue", &pd_event(&w.key, "resolve", "nope"))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, _) = w
        .post("/v2/enqueue", &pd_event(&w.key, "resolve", "checkout"))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    eventually("the incident resolved", 20, || async {
        (w.incident(id).await["incident"]["status"] == "resolved").then_some(())
    })
    .await;
    // A trigger after the resolve opens a new alert and a new incident.
    w.post("/v2/enqueue", &pd_event(&w.key, "trigger", "checkout"))
        .await;
    eventually("a second incident", 20, || async {
        (w.incidents().await.len() == 2).then_some(())
    })
    .await;
    // The API acknowledges and resolves by hand, with the caller as actor.
    let second = w.incidents().await[0]["id"].as_i64().unwrap();
    let r = http()
        .post(format!("{}/api/v1/incidents/{second}/resolve", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again = http()
        .post(format!("{}/api/v1/incidents/{second}/resolve", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    w.server.stop().await;
}

/// The aiosmtpd sink of sluice-notify's tests: prints its port, writes each mail as JSON.
const SMTP_SINK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../notify/tests/support/smtp_sink.py"
);

/// A real SMTP server (Debian's python3-aiosmtpd) on loopback; killed on drop.
struct Smtp {
    port: u16,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Smtp {
    async fn start() -> Option<Smtp> {
        use tokio::io::AsyncBufReadExt;
        let ok = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let msg = "python3-aiosmtpd is not installed (`apt-get install python3-aiosmtpd`)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{msg}: the email test cannot run"
            );
            eprintln!("\n!!! SKIPPING the end-to-end incident test: {msg} !!!\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(SMTP_SINK)
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        Some(Smtp {
            port: line.trim().parse().unwrap(),
            dir,
            _child: child,
        })
    }

    /// The server's SMTP settings for this sink.
    fn config(&self) -> sluice_notify::SmtpConfig {
        sluice_notify::SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: sluice_notify::SmtpTls::None,
            username: Some("sluice".into()),
            password: Some("s3cret".into()),
            from: "sluice <alerts@example.com>".into(),
        }
    }

    fn mails(&self) -> Vec<Value> {
        let mut out: Vec<(String, Value)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    serde_json::from_str(&text).unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }
}

fn e2e_yml(port: u16, hook: &str, ticket: &str) -> String {
    format!(
        r#"
project: shop
environments:
  production:
    branch: main
services:
  web:
    steps:
      package:
        run: mkdir -p out && cp app.py version.txt out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py
      health: {{ http: /healthz, interval: 100ms, timeout: 1s }}
      stop_grace: 2s
      progress_deadline: 15s
      max_restarts: 1
      environments:
        production: {{ expose: "127.0.0.1:{port}" }}
alerts:
  group_wait: 200ms
  channels:
    hook:
      webhook: {hook}
    mail:
      email: [oncall@example.com]
  ticket:
    url: {ticket}
"#
    )
}

/// Faulty release -> automatic rollback -> incident with the deploy and the rollback on its
/// timeline and the release as suspected cause -> webhook and email delivered ->
/// acknowledged through the signed link -> resolved -> postmortem posted to the ticket sink
/// -> the DORA change failure rate and recovery time reflect it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_release_becomes_an_incident_with_its_record_and_dora_figures() {
    let Some(smtp) = Smtp::start().await else {
        return;
    };
    let hook = Sink::start(0).await;
    let ticket = Sink::start(0).await;
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let port = common::free_port();
    repo.write("app.py", common::APP);
    repo.write("sluice.yml", &e2e_yml(port, &hook.url, &ticket.url));
    repo.commit_version("1");
    let mut config = common::config(tmp.path().join("data"));
    config.smtp = Some(smtp.config());
    let s = Server::start(config).await.unwrap();
    let _kill = common::KillOnDrop::new(&s);
    let base = format!("http://{}", s.addr);
    s.engine
        .add_project(&repo.path(), None, Some(0), None, "test")
        .await
        .unwrap();
    let good = common::deployed(&s, 1).await;
    assert_eq!(good.status, sluice_core::DeployStatus::Succeeded);

    repo.commit_version("crash");
    s.engine.sync_project("shop", "push", "test").await.unwrap();
    let bad = common::deployed(&s, 2).await;
    assert_eq!(bad.status, sluice_core::DeployStatus::RolledBack);
    assert_eq!(
        common::served(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{port}/")
        )
        .await
        .as_deref(),
        Some("version=1\n"),
        "the good release serves again"
    );

    // The incident, linked to the faulty release.
    let list: Vec<Value> = eventually("the incident", 30, || async {
        let v: Value = http()
            .get(format!("{base}/api/v1/incidents"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let a = v.as_array()?.clone();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_i64().unwrap();
    let rec: Value = http()
        .get(format!("{base}/api/v1/incidents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inc = &rec["incident"];
    assert_eq!(inc["severity"], "critical", "production");
    assert_eq!(inc["suspected_release"]["version"], 2);
    assert_eq!(inc["suspected_release"]["deployment"], bad.id);
    let kinds: Vec<&str> = rec["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    for k in ["deploy", "rollback", "opened", "alert"] {
        assert!(
            kinds.contains(&k),
            "{k} missing from the timeline {kinds:?}"
        );
    }

    // Webhook and email, each with the signed links.
    let note = eventually("the webhook notification", 30, || async {
        hook.bodies()
            .into_iter()
            .find(|b| b["event"] == "triggered")
    })
    .await;
    assert_eq!(note["incident_id"], id);
    let mail = eventually("the email", 30, || async {
        smtp.mails().into_iter().next()
    })
    .await;
    assert_eq!(mail["to"], json!(["oncall@example.com"]));
    let subject = mail["subject"].as_str().unwrap();
    assert!(subject.contains(&format!("#{id}")), "{subject}");
    let ack_url = note["ack_url"].as_str().unwrap().to_owned();
    assert!(mail["plain"].as_str().unwrap().contains(&ack_url), "{mail}");

    // Acknowledged through the signed link (the page, then its button).
    let plain = reqwest::Client::new();
    assert_eq!(
        plain.get(&ack_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let sig = ack_url.split("sig=").nth(1).unwrap();
    let r = plain
        .post(format!("{base}/incidents/{id}/ack"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sig={sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Resolved; the postmortem reaches the ticket sink.
    let r = http()
        .post(format!("{base}/api/v1/incidents/{id}/resolve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let post = eventually("the postmortem", 30, || async {
        ticket.bodies().into_iter().next()
    })
    .await;
    assert_eq!(post["type"], "sluice.postmortem");
    assert_eq!(post["incident"]["acknowledged_by"], "signed link");
    assert!(post["incident"]["mtta_ms"].as_i64().unwrap() >= 0);
    assert!(post["incident"]["mttr_ms"].as_i64().unwrap() > 0);
    let md = post["markdown"].as_str().unwrap();
    assert!(md.contains("rolled back"), "{md}");

    // DORA: two production deployments, one failed and recovered by its rollback.
    let dora: Value = http()
        .get(format!("{base}/api/v1/dora?project=shop"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &dora["metrics"];
    assert_eq!(m["deployments"], 2, "{m}");
    assert_eq!(m["change_failure_rate"], 0.5, "{m}");
    assert_eq!(m["recovery"]["samples"], 1, "{m}");
    let recovery = m["recovery"]["median_ms"].as_i64().unwrap();
    assert_eq!(recovery, bad.finished_ms.unwrap() - bad.created_ms);
    assert!(m["lead_time"]["samples"].as_u64().unwrap() >= 1, "{m}");
    let page = http()
        .get(format!("{base}/dora"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<svg"), "the DORA page draws its charts");
    s.stop_all().await;
}

/// An escalation policy pages whoever the schedule has on call, then the next level when
/// nobody acknowledges; the page's link acknowledges in the paged user's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_pages_the_on_call_user_then_the_next_level() {
    let Some(smtp) = Smtp::start().await else {
        return;
    };
    let yml = "project: shop\n\
         environments:\n  production:\n    branch: main\n\
         services:\n  web:\n    steps:\n      build:\n        run: \"true\"\n\
         alerts:\n  group_wait: 100ms\n  escalation: default\n\
         oncall:\n  schedules:\n    primary:\n      time_zone: Europe/Berlin\n      layers:\n        \
         - name: week\n          users: [alice]\n          rotation: weekly\n          start: \"2026-01-05T09:00\"\n  \
         escalation:\n    default:\n      levels:\n        - notify: [schedule:primary]\n          after: 1s\n        \
         - notify: [user:carol]\n          after: 1s\n";
    let w = AlertWorld::start(yml, |c| c.smtp = Some(smtp.config())).await;
    let base = w.base.as_str();
    for user in ["alice", "carol"] {
        let r = http()
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": user}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = http()
            .patch(format!("{base}/api/v1/users/{user}"))
            .json(&json!({"email": format!("{user}@example.com")}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let (status, _) = w
        .post("/v2/enqueue", &pd_event(&w.key, "trigger", "db"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Level 1: alice, on call in the schedule; then level 2: carol.
    let mails = eventually("pages to alice and then carol", 30, || async {
        let m = smtp.mails();
        (m.len() >= 2).then_some(m)
    })
    .await;
    assert_eq!(mails[0]["to"], json!(["alice@example.com"]));
    assert_eq!(mails[1]["to"], json!(["carol@example.com"]));
    let text = mails[0]["plain"].as_str().unwrap();
    let ack_url = text
        .split_whitespace()
        .find(|w| w.contains("/ack?sig="))
        .unwrap()
        .trim_matches(|c: char| c == '<' || c == '>' || c == '(' || c == ')');
    let (id, sig) = ack_url
        .split("/incidents/")
        .nth(1)
        .and_then(|rest| rest.split_once("/ack?sig="))
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{base}/incidents/{id}/ack"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("sig={sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v = w.incident(id.parse().unwrap()).await;
    assert_eq!(v["incident"]["acked_by"], "alice (signed link)");
    let pages: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "page")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(
        pages.iter().any(|p| p.starts_with("paged alice")),
        "{pages:?}"
    );
    assert!(
        pages.iter().any(|p| p.starts_with("paged carol")),
        "{pages:?}"
    );
    w.server.stop().await;
}

/// Fuzz both ingest endpoints over HTTP: arbitrary bytes and alert-shaped JSON get the
/// peer's statuses, never a 5xx, and a refused PagerDuty event stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_endpoints_survive_garbage_with_the_peers_answers() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let sink = Sink::start(0).await;
    let w = AlertWorld::start(&yml(&sink.url, "sluice"), |_| {}).await;
    let key = w.key.clone();
    let json_leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(|s| json!(s)),
        Just(json!("critical")),
        Just(json!("trigger")),
        Just(json!(key.clone())),
        Just(json!("2015-07-17T08:42:58.315+0000")),
    ];
    let field = prop_oneof![
        Just("routing_key"),
        Just("event_action"),
        Just("dedup_key"),
        Just("payload"),
        Just("summary"),
        Just("source"),
        Just("severity"),
        Just("timestamp"),
        Just("labels"),
        Just("annotations"),
        Just("startsAt"),
        Just("endsAt"),
        Just("links"),
        Just("x"),
    ];
    let value = json_leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(field.clone().prop_map(str::to_owned), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let body = prop_oneof![
        value.prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..200),
    ];
    let mut runner = TestRunner::deterministic();
    let client = reqwest::Client::new();
    let before = w.server.engine.incidents.journal_committed();
    let mut accepted_pd = 0;
    for case in 0..300 {
        let b = body.new_tree(&mut runner).unwrap().current();
        let (path, allowed): (String, &[u16]) = if case % 2 == 0 {
            ("/v2/enqueue".into(), &[202, 400, 429])
        } else {
            (
                format!("/integrations/{}/api/v2/alerts", w.key),
                &[200, 400, 422],
            )
        };
        let r = client
            .post(format!("{}{path}", w.base))
            .header("content-type", "application/json")
            .body(b.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            allowed.contains(&status),
            "{path} answered {status} {text} to {:?}",
            String::from_utf8_lossy(&b)
        );
        if case % 2 == 0 && status == 202 {
            accepted_pd += 1;
        }
        if case % 2 == 0 && status != 202 {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["status"].is_string(), "PagerDuty's error body: {text}");
        }
    }
    // Alertmanager batches may be partly kept, PagerDuty events never: the journal holds at
    // most the accepted PagerDuty events plus the Alertmanager requests.
    let after = w.server.engine.incidents.journal_committed();
    assert!(after - before <= accepted_pd + 150, "{before} -> {after}");
    w.server.stop().await;
}

/// A NUL character, which PostgreSQL cannot store in text, in an alert's labels and summary
/// must not stop the incident engine: it becomes U+FFFD, and alerts behind it are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_an_alert_does_not_stop_the_engine_on_postgres() {
    let Some(db) = common::PgDatabase::create("the NUL test") else {
        return;
    };
    let sink = Sink::start(0).await;
    let w = AlertWorld::start(&yml(&sink.url, "alertmanager"), |c| {
        c.database = Some(db.url.clone());
    })
    .await;
    let path = format!("/integrations/{}/api/v2/alerts", w.key);
    let nul = json!([{
        "labels": {"alertname": "Nul\u{0}Name", "instance": "a\u{0}", "service": "web"},
        "annotations": {"summary": "half\u{0}way"},
    }]);
    assert_eq!(w.post(&path, &nul).await.0, StatusCode::OK);
    let fine = json!([am_alert("Fine", "b", "warning")]);
    assert_eq!(w.post(&path, &fine).await.0, StatusCode::OK);
    let incidents = eventually("both alerts in incidents", 20, || async {
        let v = w.incidents().await;
        (v.len() == 2).then_some(v)
    })
    .await;
    let mut titles: Vec<&str> = incidents
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    titles.sort();
    assert!(titles[0].starts_with("Fine"), "{titles:?}");
    assert!(titles[1].contains("\u{FFFD}"), "{titles:?}");
    w.server.stop().await;
}

/// Alerts the database refuses on every try (here a trigger of its own refuses one summary)
/// are set aside as an `alerts.rejected` event, whole, and the alerts behind them are applied:
/// one such request does not stop incidents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_the_database_always_refuses_are_set_aside_not_retried_forever() {
    let Some(db) = common::PgDatabase::create("the set-aside test") else {
        return;
    };
    let sink = Sink::start(0).await;
    let w = AlertWorld::start(&yml(&sink.url, "alertmanager"), |c| {
        c.database = Some(db.url.clone());
    })
    .await;
    db.run(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.summary = 'poison' THEN RAISE EXCEPTION 'this database refuses poison'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON alerts FOR EACH ROW \
         EXECUTE FUNCTION refuse_poison();",
    );
    let path = format!("/integrations/{}/api/v2/alerts", w.key);
    let poison = json!([{
        "labels": {"alertname": "Poison", "instance": "p", "service": "web"},
        "annotations": {"summary": "poison"},
    }]);
    assert_eq!(w.post(&path, &poison).await.0, StatusCode::OK);
    let fine = json!([am_alert("Fine", "b", "warning")]);
    assert_eq!(w.post(&path, &fine).await.0, StatusCode::OK);
    let incidents = eventually("the alert behind the refused one applied", 30, || async {
        let v = w.incidents().await;
        (!v.is_empty()).then_some(v)
    })
    .await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(
        incidents[0]["title"].as_str().unwrap().starts_with("Fine"),
        "{incidents:?}"
    );
    let events = common::fetch_json(&format!(
        "{}/api/v1/events?kind=alerts.rejected&limit=10",
        w.base
    ))
    .await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let payload = &events[0]["payload"];
    assert!(
        payload["error"]
            .as_str()
            .unwrap()
            .contains("this database refuses poison"),
        "{payload}"
    );
    assert_eq!(payload["signals"][0]["summary"], "poison", "{payload}");
    assert_eq!(events[0]["project"], "shop");
    w.server.stop().await;
}
