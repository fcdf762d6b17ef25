//! Autoscaling end to end, on both runtimes: a service whose `/burn` endpoint spends CPU is
//! deployed with `autoscale: { min: 1, max: 3, cpu: 40% }`; a client load drives it until the
//! autoscaler has scaled out to `max`, then stops, and the fleet must come back down to `min`
//! after the stabilisation window. Checked: the instance count reaches 3 and returns to 1, the
//! decisions never change direction more than once (out, then in: no flapping), every decision
//! is an event with its figures, and not one client request fails (new instances get traffic
//! only once ready, removed ones are drained). Prints the timeline of decisions and counts.

#![allow(clippy::unwrap_used)]

mod common;

use common::{APP, KillOnDrop, Repo, Rt, deployed, eventually, free_port};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_core::{DeployStatus, EventKind};
use sluice_runtime::Runtime as _;
use sluice_server::Server;
use sluice_store::EventFilter;

fn yml(rt: &Rt, port: u16) -> String {
    let runtime = rt.deploy_yaml(6);
    format!(
        r#"
project: auto
environments:
  staging: {{ branch: main }}
services:
  web:
    steps:
      package:
        run: mkdir -p out && cp app.py version.txt out/
        artifacts: ["out/**"]
    deploy:
      start: python3 out/app.py
{runtime}      health: {{ http: /healthz, interval: 100ms, timeout: 1s }}
      stop_grace: 2s
      request_timeout: 10s
      autoscale: {{ min: 1, max: 3, cpu: 40%, interval: 1s, cooldown: 2s, stabilization: 6s }}
      environments:
        staging: {{ expose: "127.0.0.1:{port}" }}
"#
    )
}

/// Instances of v1 that are ready.
fn ready(s: &Server) -> usize {
    s.engine
        .fleet
        .runtime
        .list()
        .iter()
        .filter(|i| i.version == "v1" && i.ready)
        .count()
}

async fn scales_out_under_load_and_back_in(rt: Rt) {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let repo = Repo::new(tmp.path());
    repo.write("app.py", APP);
    repo.write("sluice.yml", &yml(&rt, port));
    repo.commit_version("1");
    let mut config = common::config(tmp.path().join("data"));
    rt.configure(&mut config);
    let s = Server::start(config).await.unwrap();
    let _kill = KillOnDrop::new(&s);
    s.engine
        .add_project(&repo.path(), None, Some(0), None, "test")
        .await
        .unwrap();
    let d = deployed(&s, 1).await;
    assert_eq!(d.status, DeployStatus::Succeeded, "{:?}", d.reason);
    assert_eq!(ready(&s), 1, "autoscaled services start at min");

    // Load: 4 clients in a loop on /burn until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("http://127.0.0.1:{port}/burn");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let http = common::http();
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let t0 = Instant::now();
    let mut timeline = Vec::new();
    let note = |s: &Server, timeline: &mut Vec<(u128, usize)>| {
        let n = ready(s);
        if timeline.last().is_none_or(|(_, last)| *last != n) {
            timeline.push((t0.elapsed().as_millis(), n));
        }
        n
    };
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        peak = peak.max(note(&s, &mut timeline));
        if peak == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        peak, 3,
        "the load scaled the service out to max: {timeline:?}"
    );
    // Keep the load a little while at max: the count must hold there.
    let hold = Instant::now() + Duration::from_secs(3);
    while Instant::now() < hold {
        note(&s, &mut timeline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let load_ms = t0.elapsed().as_millis();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline && note(&s, &mut timeline) != 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("the fleet to be back at min", 5, || async {
        (s.engine
            .fleet
            .runtime
            .list()
            .iter()
            .filter(|i| i.state.is_active())
            .count()
            == 1)
            .then_some(())
    })
    .await;

    let events = s
        .engine
        .store
        .events(&EventFilter {
            kinds: vec![
                EventKind::AutoscaleScaledOut,
                EventKind::AutoscaleScaledIn,
                EventKind::AutoscaleHeld,
            ],
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let label = rt.label();
    for e in &events {
        let p = &e.payload;
        eprintln!(
            "autoscale.{label}.decision {} {}->{} cpu {}% limited_by {} ({})",
            e.kind.as_str(),
            p["current"],
            p["desired"],
            p["cpu"]["utilization_percent"]
                .as_f64()
                .map_or("-".to_owned(), |c| format!("{c:.0}")),
            p["limited_by"],
            p["reason"].as_str().unwrap_or_default()
        );
    }
    for (ms, n) in &timeline {
        eprintln!("autoscale.{label}.ready_instances t={ms}ms {n}");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("autoscale.{label}.load_ms {load_ms} ms");
    eprintln!("autoscale.{label}.requests_ok {ok} requests");
    eprintln!("autoscale.{label}.requests_failed {failed} requests");

    // Every change of the count is a decision with figures; out first, then in, never back.
    let moves: Vec<&str> = events
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| *k != "autoscale.held")
        .collect();
    assert!(
        moves.first() == Some(&"autoscale.scaled_out")
            && moves.last() == Some(&"autoscale.scaled_in"),
        "{moves:?}"
    );
    let turns = moves.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(turns, 1, "no flapping: one turn from out to in: {moves:?}");
    let first = &events[0].payload;
    assert!(
        first["cpu"]["utilization_percent"].as_f64().unwrap() > 40.0,
        "{first}"
    );
    assert_eq!(first["service"], "web");
    assert_eq!(failed, 0, "no request failed while scaling ({ok} answered)");
    assert!(ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_scales_out_under_load_and_back_in() {
    scales_out_under_load_and_back_in(Rt::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_runtime_scales_out_under_load_and_back_in() {
    if let Some(rt) = Rt::docker().await {
        scales_out_under_load_and_back_in(rt).await;
    }
}
