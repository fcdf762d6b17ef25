//! The store conformance suite: every scenario runs against SQLite (a file in a temp dir) and
//! PostgreSQL, so the two backends cannot drift.
//!
//! PostgreSQL comes from `SLUICE_TEST_POSTGRES_URL` (see `.ci/postgres.sh`); every test gets
//! its own freshly created database, so tests are independent and run in parallel. Without
//! the variable the PostgreSQL tests are skipped with a notice, except under `CI`, where they
//! fail: CI must never skip them silently.

// A failed unwrap is a failed test, with the value in the message.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice_core::{EventKind, NewEvent, RunStatus, StepStatus};
use sluice_store::{
    Backend, BranchHead, EventFilter, LogFilter, LogLine, NewProject, NewRelease, NewRun, NewStep,
    ReleaseFilter, RunFilter, StepUpdate, Store, StoreError, TestSummary,
};
use sqlx::{AnyPool, AssertSqlSafe, Connection};

/// One test's database, with what is needed to reopen it and clean it up.
struct Ctx {
    store: Store,
    /// The URL given to [`Store::open`].
    url: String,
    /// A URL sqlx can open directly, for poking at the database behind the store's back.
    raw_url: String,
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the admin URL and the database to drop at the end.
    pg: Option<(String, String)>,
}

impl Ctx {
    async fn sqlite() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        // A nested, not yet existing directory: open must create it.
        let path = dir.path().join("data").join("sluice.db");
        let url = path.to_str().unwrap().to_owned();
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        Ctx {
            store,
            raw_url: format!("sqlite://{url}"),
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres(test: &str) -> Option<Ctx> {
        let Ok(admin) = std::env::var("SLUICE_TEST_POSTGRES_URL") else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "SLUICE_TEST_POSTGRES_URL is not set but CI is: run \
                     `eval \"$(.ci/postgres.sh)\"` first so the PostgreSQL tests run"
                );
            }
            // Written to stderr directly, not through `eprintln!`, so the test harness does not
            // swallow it: a skipped backend must be visible.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "notice: skipping the PostgreSQL conformance tests (first: `{test}`): set \
                     SLUICE_TEST_POSTGRES_URL (e.g. `eval \"$(.ci/postgres.sh)\"`) to run them"
                );
            });
            return None;
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "sluice_t_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to SLUICE_TEST_POSTGRES_URL: {e}"));
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = with_database(&admin, &name);
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        Some(Ctx {
            store,
            raw_url: url.clone(),
            url,
            _dir: None,
            pg: Some((admin, name)),
        })
    }

    async fn reopen(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }

    async fn raw_pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.raw_url).await.unwrap()
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some((admin, name)) = self.pg {
            let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// `postgres://u:p@h:port/db?x` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let cx = super::Ctx::sqlite().await;
                    super::$name(&cx).await;
                    cx.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(cx) = super::Ctx::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&cx).await;
                    cx.finish().await;
                }
            )+
        }
    };
}

conformance!(
    placeholders_bind_by_number,
    migrations_are_idempotent,
    newer_schema_is_refused,
    event_seq_is_gap_free_under_concurrency,
    event_filters,
    project_crud,
    branch_head_compare_and_set,
    delivery_dedup,
    run_lifecycle,
    run_listing_and_paging,
    logs_cursor_paging,
    release_versions_per_service,
    release_dedup_per_commit,
    last_release_in_env,
    mark_artifact_pruned,
    state_change_and_events_are_atomic,
    reopening_keeps_data,
    deploy_targets_and_deployments,
);

// ---- helpers ----

fn ev(kind: EventKind, subject: &str) -> NewEvent {
    NewEvent::new(kind, "test", subject)
}

fn project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        source: format!("/src/{name}"),
        poll_interval_s: 30,
        webhook_secret: "s3cret".into(),
    }
}

fn new_run(project: &str, env: &str, commit: &str) -> NewRun {
    NewRun {
        project: project.into(),
        env: env.into(),
        branch: "main".into(),
        commit: commit.into(),
        trigger: "push".into(),
        actor: "user:ann".into(),
        rerun_of: None,
        config: "services: {}\n".into(),
        services: vec!["api".into(), "web".into()],
        steps: vec![
            NewStep {
                name: "api/build".into(),
                service: "api".into(),
                needs: vec![],
                gate: false,
            },
            NewStep {
                name: "api/test".into(),
                service: "api".into(),
                needs: vec!["api/build".into()],
                gate: true,
            },
            NewStep {
                name: "web/build".into(),
                service: "web".into(),
                needs: vec![],
                gate: false,
            },
        ],
        created_ms: 1_000,
    }
}

fn new_release(service: &str, commit: &str, env: &str) -> NewRelease {
    NewRelease {
        project: "shop".into(),
        service: service.into(),
        commit: commit.into(),
        branch: "main".into(),
        env: env.into(),
        run_id: 1,
        artifact_sha256: format!("sha-{commit}"),
        artifact_bytes: 1234,
        gates: json!({"api/test": {"status": "succeeded"}}),
        created_ms: 5_000,
    }
}

fn release_event() -> NewEvent {
    ev(EventKind::ReleaseCreated, "release/shop/api/{version}")
        .project("shop")
        .payload(json!({"service": "api"}))
}

async fn all_events(store: &Store) -> Vec<sluice_store::Event> {
    store
        .events(&EventFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

// ---- scenarios ----

async fn placeholders_bind_by_number(cx: &Ctx) {
    // The store writes `$N` placeholders for both backends; on SQLite they must bind to
    // argument N (not in order of appearance), including when one is used twice.
    let pool = cx.raw_pool().await;
    let (a, b): (i64, i64) = sqlx::query_as("SELECT CAST($2 AS BIGINT), CAST($1 + $1 AS BIGINT)")
        .bind(5_i64)
        .bind(40_i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((a, b), (40, 10));
    pool.close().await;
}

async fn migrations_are_idempotent(cx: &Ctx) {
    assert_eq!(cx.store.schema_version().await.unwrap(), 2);
    cx.store
        .add_project(project("shop"), ev(EventKind::ProjectAdded, "project/shop"))
        .await
        .unwrap();
    for _ in 0..2 {
        let again = cx.reopen().await;
        assert_eq!(again.schema_version().await.unwrap(), 2);
        assert_eq!(again.projects().await.unwrap().len(), 1);
        again.close().await;
    }
    let pool = cx.raw_pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM schema_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "each migration is recorded once");
    if cx.store.backend() == Backend::Sqlite {
        // WAL is a property of the file, so a plain connection sees what open set.
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
    pool.close().await;
}

async fn newer_schema_is_refused(cx: &Ctx) {
    let pool = cx.raw_pool().await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (999, 'future', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let err = Store::open(&cx.url).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("999") && msg.contains("newer"), "{msg}");
}

async fn event_seq_is_gap_free_under_concurrency(cx: &Ctx) {
    const TASKS: usize = 12;
    const ROUNDS: usize = 8;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = cx.store.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for r in 0..ROUNDS {
                let subject = format!("task/{t}");
                // Mix batch sizes and other writers that append events too.
                let batch: Vec<NewEvent> = (0..=(r % 3))
                    .map(|i| {
                        ev(EventKind::ServerStarted, &subject).payload(json!({"r": r, "i": i}))
                    })
                    .collect();
                let out = store.append_events(batch).await.unwrap();
                seqs.extend(out.iter().map(|e| e.seq));
                if r == 0 {
                    let name = format!("p{t}");
                    store
                        .add_project(project(&name), ev(EventKind::ProjectAdded, &subject))
                        .await
                        .unwrap();
                }
            }
            seqs
        }));
    }
    let mut returned = Vec::new();
    for h in handles {
        let seqs = h.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "per-task order kept");
        returned.extend(seqs);
    }
    let stored = all_events(&cx.store).await;
    let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "seq is 1..=n with no gaps");
    let per_task: usize = (0..ROUNDS).map(|r| r % 3 + 1).sum::<usize>() + 1;
    assert_eq!(stored.len(), TASKS * per_task);
    assert_eq!(
        cx.store.last_event_seq().await.unwrap(),
        stored.len() as i64
    );
    // Times never go backwards along the log.
    assert!(stored.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    // Every seq handed back to a caller is in the log with its payload.
    returned.sort_unstable();
    let appended: Vec<i64> = stored
        .iter()
        .filter(|e| e.kind == EventKind::ServerStarted)
        .map(|e| e.seq)
        .collect();
    assert_eq!(returned, appended);
}

async fn event_filters(cx: &Ctx) {
    let s = &cx.store;
    assert_eq!(s.last_event_seq().await.unwrap(), 0);
    assert!(s.append_events(vec![]).await.unwrap().is_empty());
    let out = s
        .append_events(vec![
            ev(EventKind::ServerStarted, "server").payload(json!({"version": "0.1.0"})),
            ev(EventKind::RunQueued, "run/1").project("shop"),
            ev(EventKind::RunStarted, "run/1").project("shop"),
            ev(EventKind::RunQueued, "run/2").project("blog"),
            ev(EventKind::RunFinished, "run/1")
                .project("shop")
                .payload(json!({"status": "succeeded", "duration_ms": 42})),
        ])
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(out.iter().all(|e| e.time_ms > 1_600_000_000_000));

    let all = all_events(s).await;
    assert_eq!(all, out, "stored events read back exactly as returned");
    assert_eq!(all[0].payload, json!({"version": "0.1.0"}));
    assert_eq!(all[0].project, None);

    let f = |after, limit| EventFilter {
        after,
        limit,
        ..Default::default()
    };
    let seqs = |v: Vec<sluice_store::Event>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.events(&f(2, 0)).await.unwrap()), vec![3, 4, 5]);
    assert_eq!(seqs(s.events(&f(0, 2)).await.unwrap()), vec![1, 2]);
    assert_eq!(seqs(s.events(&f(5, 0)).await.unwrap()), Vec::<i64>::new());
    let by_project = EventFilter {
        project: Some("shop".into()),
        ..Default::default()
    };
    assert_eq!(seqs(s.events(&by_project).await.unwrap()), vec![2, 3, 5]);
    let by_kinds = EventFilter {
        kinds: vec![EventKind::RunQueued, EventKind::RunFinished],
        ..Default::default()
    };
    assert_eq!(seqs(s.events(&by_kinds).await.unwrap()), vec![2, 4, 5]);
    let by_subject = EventFilter {
        subject: Some("run/1".into()),
        after: 2,
        ..Default::default()
    };
    assert_eq!(seqs(s.events(&by_subject).await.unwrap()), vec![3, 5]);
    let combined = EventFilter {
        project: Some("shop".into()),
        kinds: vec![EventKind::RunQueued],
        subject: Some("run/1".into()),
        after: 0,
        limit: 10,
    };
    assert_eq!(seqs(s.events(&combined).await.unwrap()), vec![2]);
}

async fn project_crud(cx: &Ctx) {
    let s = &cx.store;
    assert!(s.projects().await.unwrap().is_empty());
    let shop = s
        .add_project(
            project("shop"),
            ev(EventKind::ProjectAdded, "project/shop").project("shop"),
        )
        .await
        .unwrap();
    assert_eq!(shop.name, "shop");
    assert_eq!(shop.source, "/src/shop");
    assert_eq!(shop.poll_interval_s, 30);
    assert_eq!(shop.webhook_secret, "s3cret");
    assert!(shop.created_ms > 0);
    s.add_project(project("blog"), ev(EventKind::ProjectAdded, "project/blog"))
        .await
        .unwrap();

    assert_eq!(s.project("shop").await.unwrap(), shop);
    let names: Vec<String> = s
        .projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["blog", "shop"], "sorted by name");

    let err = s
        .add_project(project("shop"), ev(EventKind::ProjectAdded, "project/shop"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(err.to_string(), "project `shop` already exists");

    let err = s.project("nope").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)));
    assert_eq!(err.to_string(), "project `nope` not found");

    s.remove_project("shop", ev(EventKind::ProjectRemoved, "project/shop"))
        .await
        .unwrap();
    assert!(matches!(
        s.project("shop").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.remove_project("shop", ev(EventKind::ProjectRemoved, "project/shop"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // The name is free again.
    s.add_project(project("shop"), ev(EventKind::ProjectAdded, "project/shop"))
        .await
        .unwrap();

    let kinds: Vec<EventKind> = all_events(s).await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::ProjectAdded,
            EventKind::ProjectAdded,
            EventKind::ProjectRemoved,
            EventKind::ProjectAdded
        ],
        "failed calls wrote no events"
    );
}

async fn branch_head_compare_and_set(cx: &Ctx) {
    let s = &cx.store;
    let head = |commit: &str, ms| BranchHead {
        project: "shop".into(),
        branch: "main".into(),
        commit: commit.into(),
        updated_ms: ms,
    };
    let push = || ev(EventKind::PushReceived, "project/shop").project("shop");
    assert!(s.branch_heads("shop").await.unwrap().is_empty());

    // First sighting: expected None.
    assert!(
        s.set_branch_head(&head("aaa", 1), None, push())
            .await
            .unwrap()
    );
    // A second "first sighting" lost the race.
    assert!(
        !s.set_branch_head(&head("bbb", 2), None, push())
            .await
            .unwrap()
    );
    // Wrong expectation.
    assert!(
        !s.set_branch_head(&head("bbb", 2), Some("zzz"), push())
            .await
            .unwrap()
    );
    // Same commit again: nothing changes.
    assert!(
        !s.set_branch_head(&head("aaa", 2), Some("aaa"), push())
            .await
            .unwrap()
    );
    // Right expectation moves it.
    assert!(
        s.set_branch_head(&head("bbb", 3), Some("aaa"), push())
            .await
            .unwrap()
    );
    let other = BranchHead {
        branch: "dev".into(),
        ..head("ccc", 4)
    };
    assert!(s.set_branch_head(&other, None, push()).await.unwrap());

    assert_eq!(
        s.branch_heads("shop").await.unwrap(),
        vec![other.clone(), head("bbb", 3)],
        "sorted by branch"
    );
    assert!(s.branch_heads("blog").await.unwrap().is_empty());
    assert_eq!(all_events(s).await.len(), 3, "one event per successful set");
}

async fn delivery_dedup(cx: &Ctx) {
    let s = &cx.store;
    let accepted = || ev(EventKind::WebhookAccepted, "project/shop");
    assert!(
        s.record_delivery("github", "d-1", accepted())
            .await
            .unwrap()
    );
    assert!(
        !s.record_delivery("github", "d-1", accepted())
            .await
            .unwrap()
    );
    // The same id from another provider is a different delivery.
    assert!(
        s.record_delivery("gitlab", "d-1", accepted())
            .await
            .unwrap()
    );
    assert!(
        s.record_delivery("github", "d-2", accepted())
            .await
            .unwrap()
    );
    assert_eq!(all_events(s).await.len(), 3, "duplicates wrote no events");
}

async fn run_lifecycle(cx: &Ctx) {
    let s = &cx.store;
    let run = s
        .create_run(
            new_run("shop", "staging", "c1"),
            vec![
                ev(EventKind::RunQueued, "run/{id}")
                    .project("shop")
                    .payload(json!({"env": "staging"})),
            ],
        )
        .await
        .unwrap();
    assert!(run.id > 0);
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.services, vec!["api", "web"]);
    assert_eq!(run.started_ms, None);
    assert_eq!(s.run(run.id).await.unwrap(), run);
    let events = all_events(s).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject, format!("run/{}", run.id));

    let steps = s.steps(run.id).await.unwrap();
    assert_eq!(
        steps.iter().map(|st| st.name.as_str()).collect::<Vec<_>>(),
        vec!["api/build", "api/test", "web/build"]
    );
    assert_eq!(
        steps.iter().map(|st| st.position).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(steps.iter().all(|st| st.status == StepStatus::Pending
        && st.attempt == 0
        && st.started_ms.is_none()
        && st.tests.is_none()));
    assert_eq!(steps[1].needs, vec!["api/build"]);
    assert!(steps[1].gate && !steps[0].gate);

    assert_eq!(s.unfinished_runs().await.unwrap(), vec![run.clone()]);

    // Running: started_ms set once.
    s.set_run_status(
        run.id,
        RunStatus::Running,
        2_000,
        vec![ev(EventKind::RunStarted, "run")],
    )
    .await
    .unwrap();
    s.set_run_status(run.id, RunStatus::Running, 2_500, vec![])
        .await
        .unwrap();
    let r = s.run(run.id).await.unwrap();
    assert_eq!(
        (r.status, r.started_ms, r.finished_ms),
        (RunStatus::Running, Some(2_000), None)
    );

    // Step updates: started_ms only if unset; pgid set and cleared; tests stored.
    s.update_step(
        StepUpdate {
            run_id: run.id,
            name: "api/test".into(),
            status: Some(StepStatus::Running),
            attempt: Some(1),
            pgid: Some(Some(4242)),
            started_ms: Some(2_100),
            ..Default::default()
        },
        vec![ev(EventKind::StepStarted, "run")],
    )
    .await
    .unwrap();
    let tests = TestSummary {
        passed: 10,
        failed: 1,
        skipped: 2,
        failing: vec!["suite.case".into()],
    };
    s.update_step(
        StepUpdate {
            run_id: run.id,
            name: "api/test".into(),
            status: Some(StepStatus::Failed),
            attempt: Some(2),
            exit_code: Some(1),
            pgid: Some(None),
            started_ms: Some(9_999),
            finished_ms: Some(3_000),
            tests: Some(tests.clone()),
        },
        vec![ev(EventKind::StepFinished, "run")],
    )
    .await
    .unwrap();
    let st = &s.steps(run.id).await.unwrap()[1];
    assert_eq!(st.status, StepStatus::Failed);
    assert_eq!(st.attempt, 2);
    assert_eq!(st.exit_code, Some(1));
    assert_eq!(st.pgid, None);
    assert_eq!(
        st.started_ms,
        Some(2_100),
        "started_ms kept from the first start"
    );
    assert_eq!(st.finished_ms, Some(3_000));
    assert_eq!(st.tests.as_ref(), Some(&tests));
    // An update with nothing set changes nothing.
    s.update_step(
        StepUpdate {
            run_id: run.id,
            name: "api/test".into(),
            ..Default::default()
        },
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(&s.steps(run.id).await.unwrap()[1], st);

    let err = s
        .update_step(
            StepUpdate {
                run_id: run.id,
                name: "nope".into(),
                ..Default::default()
            },
            vec![ev(EventKind::StepStarted, "run")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    // Terminal: finished_ms set.
    s.set_run_status(
        run.id,
        RunStatus::Failed,
        3_100,
        vec![ev(EventKind::RunFinished, "run")],
    )
    .await
    .unwrap();
    let r = s.run(run.id).await.unwrap();
    assert_eq!(
        (r.status, r.started_ms, r.finished_ms),
        (RunStatus::Failed, Some(2_000), Some(3_100))
    );
    assert!(s.unfinished_runs().await.unwrap().is_empty());

    // A run cancelled while queued never started.
    let second = s
        .create_run(new_run("shop", "staging", "c2"), vec![])
        .await
        .unwrap();
    s.set_run_status(second.id, RunStatus::Cancelled, 4_000, vec![])
        .await
        .unwrap();
    let r = s.run(second.id).await.unwrap();
    assert_eq!((r.started_ms, r.finished_ms), (None, Some(4_000)));
    let third = s
        .create_run(
            NewRun {
                rerun_of: Some(second.id),
                ..new_run("shop", "prod", "c2")
            },
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(s.run(third.id).await.unwrap().rerun_of, Some(second.id));
    assert!(third.id > second.id && second.id > run.id);

    let counts = s.run_counts().await.unwrap();
    assert_eq!(counts.len(), RunStatus::ALL.len());
    let count = |st: RunStatus| counts.iter().find(|(s, _)| *s == st).unwrap().1;
    assert_eq!(count(RunStatus::Failed), 1);
    assert_eq!(count(RunStatus::Cancelled), 1);
    assert_eq!(count(RunStatus::Queued), 1);
    assert_eq!(count(RunStatus::Succeeded), 0);

    let err = s.run(999_999).await.unwrap_err();
    assert_eq!(err.to_string(), "run 999999 not found");
    assert!(matches!(
        s.set_run_status(999_999, RunStatus::Running, 1, vec![])
            .await,
        Err(StoreError::NotFound(_))
    ));
    // run.queued, run.started, step.started, step.finished, run.finished.
    assert_eq!(all_events(s).await.len(), 5);
}

async fn run_listing_and_paging(cx: &Ctx) {
    let s = &cx.store;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (project, env) = if i % 2 == 0 {
            ("shop", "staging")
        } else {
            ("blog", "prod")
        };
        ids.push(
            s.create_run(new_run(project, env, &format!("c{i}")), vec![])
                .await
                .unwrap()
                .id,
        );
    }
    s.set_run_status(ids[6], RunStatus::Running, 10, vec![])
        .await
        .unwrap();
    let listed = |f: RunFilter| async move {
        s.runs(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(listed(RunFilter::default()).await, newest_first);
    let page1 = listed(RunFilter {
        limit: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(page1, newest_first[..3]);
    let page2 = listed(RunFilter {
        limit: 3,
        before_id: page1.last().copied(),
        ..Default::default()
    })
    .await;
    assert_eq!(page2, newest_first[3..6]);
    let shop = listed(RunFilter {
        project: Some("shop".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(shop, vec![ids[6], ids[4], ids[2], ids[0]]);
    let prod = listed(RunFilter {
        env: Some("prod".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(prod, vec![ids[5], ids[3], ids[1]]);
    let running = listed(RunFilter {
        status: Some(RunStatus::Running),
        project: Some("shop".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(running, vec![ids[6]]);
    let unfinished: Vec<i64> = s
        .unfinished_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(unfinished, ids, "oldest first");
}

async fn logs_cursor_paging(cx: &Ctx) {
    let s = &cx.store;
    let line = |run_id, step: &str, seq, stream: &str| LogLine {
        id: 0,
        run_id,
        step: step.into(),
        seq,
        time_ms: 100 + seq,
        stream: stream.into(),
        line: format!("{step} line {seq} 'quoted' $1 ?"),
    };
    // A batch bigger than one multi-row INSERT, interleaving two steps and another run.
    let mut batch = Vec::new();
    for seq in 1..=700 {
        batch.push(line(1, "api/build", seq, "out"));
        if seq <= 300 {
            batch.push(line(1, "api/test", seq, "err"));
        }
        if seq <= 10 {
            batch.push(line(2, "api/build", seq, "sys"));
        }
    }
    s.append_logs(&batch).await.unwrap();
    s.append_logs(&[]).await.unwrap();

    let all = s
        .logs(&LogFilter {
            run_id: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1000);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
    let expected: Vec<&LogLine> = batch.iter().filter(|l| l.run_id == 1).collect();
    for (got, want) in all.iter().zip(expected) {
        assert_eq!(
            (&got.step, got.seq, got.time_ms, &got.stream, &got.line),
            (&want.step, want.seq, want.time_ms, &want.stream, &want.line)
        );
    }

    // Page through one step with the cursor.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = s
            .logs(&LogFilter {
                run_id: 1,
                step: Some("api/test".into()),
                after,
                limit: 128,
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 128);
        after = page.last().unwrap().id;
        seen.extend(page.into_iter().map(|l| l.seq));
    }
    assert_eq!(seen, (1..=300).collect::<Vec<_>>());

    // New lines after the cursor show up; old ones do not repeat.
    let cursor = all.last().unwrap().id;
    s.append_logs(&[line(1, "api/build", 701, "out")])
        .await
        .unwrap();
    let tail = s
        .logs(&LogFilter {
            run_id: 1,
            after: cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].seq, 701);
    let other = s
        .logs(&LogFilter {
            run_id: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(other.len(), 10);
    assert_eq!(all_events(s).await.len(), 0, "logs are not events");
}

async fn release_versions_per_service(cx: &Ctx) {
    let s = &cx.store;
    let a1 = s
        .create_release(new_release("api", "c1", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    let w1 = s
        .create_release(new_release("web", "c1", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    let a2 = s
        .create_release(new_release("api", "c2", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a1.version, w1.version, a2.version), (1, 1, 2));
    assert!(!a1.artifact_pruned);
    assert_eq!(a1.gates, json!({"api/test": {"status": "succeeded"}}));
    assert_eq!(s.release(a2.id).await.unwrap(), a2);

    let events = all_events(s).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].subject, "release/shop/api/2");
    assert_eq!(events[2].payload, json!({"service": "api", "version": 2}));

    let listed = s.releases(&ReleaseFilter::default()).await.unwrap();
    assert_eq!(
        listed,
        vec![a2.clone(), w1.clone(), a1.clone()],
        "newest first"
    );
    let api = s
        .releases(&ReleaseFilter {
            project: Some("shop".into()),
            service: Some("api".into()),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(api, vec![a2.clone()]);
    assert!(
        s.releases(&ReleaseFilter {
            project: Some("blog".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        s.release_for_commit("shop", "api", "c1").await.unwrap(),
        Some(a1)
    );
    assert_eq!(
        s.release_for_commit("shop", "api", "c9").await.unwrap(),
        None
    );
    assert!(matches!(
        s.release(999_999).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn release_dedup_per_commit(cx: &Ctx) {
    let s = &cx.store;
    let first = s
        .create_release(new_release("api", "c1", "staging"), release_event())
        .await
        .unwrap();
    assert!(first.is_some());
    let before = s.last_event_seq().await.unwrap();
    // The same commit again, even from another environment's pipeline: no new release.
    let again = s
        .create_release(new_release("api", "c1", "prod"), release_event())
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(
        s.last_event_seq().await.unwrap(),
        before,
        "no event written"
    );
    assert_eq!(
        s.releases(&ReleaseFilter::default()).await.unwrap().len(),
        1
    );
    // The next commit still gets version 2 (no version was burnt).
    let next = s
        .create_release(new_release("api", "c2", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.version, 2);
}

async fn last_release_in_env(cx: &Ctx) {
    let s = &cx.store;
    assert_eq!(
        s.last_release_in_env("shop", "api", "staging")
            .await
            .unwrap(),
        None
    );
    for (commit, env) in [
        ("c1", "staging"),
        ("c2", "prod"),
        ("c3", "staging"),
        ("c4", "prod"),
    ] {
        s.create_release(new_release("api", commit, env), release_event())
            .await
            .unwrap()
            .unwrap();
    }
    s.create_release(new_release("web", "c5", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    let staging = s
        .last_release_in_env("shop", "api", "staging")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((staging.commit.as_str(), staging.version), ("c3", 3));
    let prod = s
        .last_release_in_env("shop", "api", "prod")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((prod.commit.as_str(), prod.version), ("c4", 4));
    let web = s
        .last_release_in_env("shop", "web", "staging")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(web.version, 1);
    assert_eq!(
        s.last_release_in_env("shop", "web", "prod").await.unwrap(),
        None
    );
}

async fn mark_artifact_pruned(cx: &Ctx) {
    let s = &cx.store;
    let r = s
        .create_release(new_release("api", "c1", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    let other = s
        .create_release(new_release("api", "c2", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    s.mark_artifact_pruned(r.id, ev(EventKind::ArtifactsPruned, "release"))
        .await
        .unwrap();
    assert!(s.release(r.id).await.unwrap().artifact_pruned);
    assert!(!s.release(other.id).await.unwrap().artifact_pruned);
    let before = s.last_event_seq().await.unwrap();
    let err = s
        .mark_artifact_pruned(999_999, ev(EventKind::ArtifactsPruned, "release"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(s.last_event_seq().await.unwrap(), before);
    let kinds: Vec<EventKind> = all_events(s).await.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.last(), Some(&EventKind::ArtifactsPruned));
}

async fn state_change_and_events_are_atomic(cx: &Ctx) {
    let s = &cx.store;
    // A run whose steps break a uniqueness rule fails half-way: neither the run, its first
    // steps nor its events may remain.
    let mut bad = new_run("shop", "staging", "c1");
    let dup = bad.steps[0].clone();
    bad.steps.push(dup);
    let err = s
        .create_run(bad, vec![ev(EventKind::RunQueued, "run/{id}")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(s.runs(&RunFilter::default()).await.unwrap().is_empty());
    assert_eq!(s.last_event_seq().await.unwrap(), 0);

    // The next successful write continues the log at 1: the failed one burnt no seq.
    let run = s
        .create_run(
            new_run("shop", "staging", "c1"),
            vec![
                ev(EventKind::RunQueued, "run/{id}"),
                ev(EventKind::ServiceUnchanged, "run/{id}"),
            ],
        )
        .await
        .unwrap();
    let events = all_events(s).await;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(s.steps(run.id).await.unwrap().len(), 3);

    // Failed lookups inside a write leave the log alone too.
    assert!(
        s.set_run_status(
            run.id + 100,
            RunStatus::Running,
            1,
            vec![ev(EventKind::RunStarted, "x")]
        )
        .await
        .is_err()
    );
    assert_eq!(s.last_event_seq().await.unwrap(), 2);
}

async fn reopening_keeps_data(cx: &Ctx) {
    let s = &cx.store;
    s.add_project(project("shop"), ev(EventKind::ProjectAdded, "project/shop"))
        .await
        .unwrap();
    let run = s
        .create_run(new_run("shop", "staging", "c1"), vec![])
        .await
        .unwrap();
    s.append_logs(&[LogLine {
        id: 0,
        run_id: run.id,
        step: "api/build".into(),
        seq: 1,
        time_ms: 1,
        stream: "out".into(),
        line: "hello".into(),
    }])
    .await
    .unwrap();
    let rel = s
        .create_release(new_release("api", "c1", "staging"), release_event())
        .await
        .unwrap()
        .unwrap();
    let events = all_events(s).await;
    s.close().await;

    let again = cx.reopen().await;
    assert_eq!(again.project("shop").await.unwrap().name, "shop");
    assert_eq!(again.run(run.id).await.unwrap(), run);
    assert_eq!(again.steps(run.id).await.unwrap().len(), 3);
    let logs = again
        .logs(&LogFilter {
            run_id: run.id,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].line, "hello");
    assert_eq!(again.release(rel.id).await.unwrap(), rel);
    assert_eq!(all_events(&again).await, events);
    // The log continues where it left off.
    let next = again
        .append_events(vec![ev(EventKind::ServerStarted, "server")])
        .await
        .unwrap();
    assert_eq!(next[0].seq, events.len() as i64 + 1);
    again.close().await;
}

async fn deploy_targets_and_deployments(cx: &Ctx) {
    use sluice_core::DeployStatus;
    use sluice_store::{DeploymentFilter, DeploymentUpdate, NewDeployment};
    let s = &cx.store;
    assert!(s.target("shop", "api", "staging").await.unwrap().is_none());
    let t = s
        .set_desired(
            "shop",
            "api",
            "staging",
            3,
            10,
            ev(EventKind::TargetDesired, "target/shop/api/staging"),
        )
        .await
        .unwrap();
    assert_eq!((t.desired_version, t.stable_version), (Some(3), None));
    let new = |version: i64| NewDeployment {
        project: "shop".into(),
        service: "api".into(),
        env: "staging".into(),
        version,
        from_version: None,
        strategy: "blue_green".into(),
        phase: "starting".into(),
        state: json!({"machine": {"step": 0}}),
        trigger: "pipeline".into(),
        actor: "system".into(),
        created_ms: 20,
    };
    let d = s
        .create_deployment(
            new(3),
            vec![ev(EventKind::DeployStarted, "deployment/{id}").project("shop")],
        )
        .await
        .unwrap();
    assert_eq!(d.status, DeployStatus::Running);
    assert_eq!(d.state["machine"]["step"], 0);
    // One running deployment per target: a second is refused and writes nothing.
    let before = all_events(s).await.len();
    let err = s
        .create_deployment(
            new(4),
            vec![ev(EventKind::DeployStarted, "deployment/{id}")],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(all_events(s).await.len(), before);
    let started = all_events(s)
        .await
        .into_iter()
        .find(|e| e.kind == EventKind::DeployStarted)
        .unwrap();
    assert_eq!(started.subject, format!("deployment/{}", d.id));
    assert_eq!(started.payload["deployment"], d.id);

    // Progress, then success moves the target's stable version.
    s.update_deployment(
        DeploymentUpdate {
            id: d.id,
            phase: Some("switching".into()),
            state: Some(json!({"machine": {"step": 2}})),
            now_ms: 30,
            ..Default::default()
        },
        vec![ev(
            EventKind::DeployDecision,
            &format!("deployment/{}", d.id),
        )],
    )
    .await
    .unwrap();
    let mid = s.deployment(d.id).await.unwrap();
    assert_eq!(
        (
            mid.phase.as_str(),
            mid.state["machine"]["step"].as_i64(),
            mid.finished_ms
        ),
        ("switching", Some(2), None)
    );
    s.update_deployment(
        DeploymentUpdate {
            id: d.id,
            status: Some(DeployStatus::Succeeded),
            phase: Some("done".into()),
            stable_version: Some(Some(3)),
            now_ms: 40,
            ..Default::default()
        },
        vec![ev(
            EventKind::DeployFinished,
            &format!("deployment/{}", d.id),
        )],
    )
    .await
    .unwrap();
    let done = s.deployment(d.id).await.unwrap();
    assert_eq!(
        (done.status, done.finished_ms),
        (DeployStatus::Succeeded, Some(40))
    );
    let t = s.target("shop", "api", "staging").await.unwrap().unwrap();
    assert_eq!((t.desired_version, t.stable_version), (Some(3), Some(3)));

    // Now a new one may start; listing and filters.
    let d2 = s.create_deployment(new(4), vec![]).await.unwrap();
    s.update_deployment(
        DeploymentUpdate {
            id: d2.id,
            status: Some(DeployStatus::RolledBack),
            reason: Some("error rate 0.2 > 0.05".into()),
            now_ms: 50,
            ..Default::default()
        },
        vec![],
    )
    .await
    .unwrap();
    let all = s
        .deployments(&DeploymentFilter {
            project: Some("shop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|d| d.version).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(all[0].reason.as_deref(), Some("error rate 0.2 > 0.05"));
    assert!(
        s.deployments(&DeploymentFilter {
            running: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(s.targets(Some("shop")).await.unwrap().len(), 1);
    assert!(matches!(
        s.deployment(999).await,
        Err(StoreError::NotFound(_))
    ));
}
