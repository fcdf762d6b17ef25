//! `/metrics` in the Prometheus text exposition format (version 0.0.4). The figures are read
//! from the store at scrape time, so they survive restarts and agree with the API.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::engine::Engine;

pub(super) async fn metrics(State(e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let mut out = String::new();
    let counts = e.store.run_counts().await?;
    let projects = e.store.projects().await?.len();
    let seq = e.store.last_event_seq().await?;
    let _ = writeln!(
        out,
        "# HELP sluice_build_info Version of the running sluice."
    );
    let _ = writeln!(out, "# TYPE sluice_build_info gauge");
    let _ = writeln!(
        out,
        "sluice_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "# HELP sluice_runs Pipeline runs by status.");
    let _ = writeln!(out, "# TYPE sluice_runs gauge");
    for s in sluice_core::RunStatus::ALL {
        let n = counts
            .iter()
            .find(|(st, _)| st == s)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let _ = writeln!(out, "sluice_runs{{status=\"{s}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP sluice_projects Registered projects.");
    let _ = writeln!(out, "# TYPE sluice_projects gauge");
    let _ = writeln!(out, "sluice_projects {projects}");
    let _ = writeln!(
        out,
        "# HELP sluice_events_total Events appended to the log."
    );
    let _ = writeln!(out, "# TYPE sluice_events_total counter");
    let _ = writeln!(out, "sluice_events_total {seq}");
    let _ = writeln!(
        out,
        "# HELP sluice_steps_running Step processes running now."
    );
    let _ = writeln!(out, "# TYPE sluice_steps_running gauge");
    let _ = writeln!(out, "sluice_steps_running {}", e.steps_running());
    Ok((
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response())
}
