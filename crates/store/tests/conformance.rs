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
use sluice_audit::{
    Checkpoint, Hash, Problem, Signer, StoredEntry, VerifyOptions, VerifyReport, verify,
};
use sluice_auth::{Grant, Role, Scope, TokenKind};
use sluice_core::{EventKind, NewEvent, RunStatus, StepStatus};
use sluice_secrets::{Kek, Sealed};
use sluice_store::{
    Backend, BranchHead, EventFilter, LogFilter, LogLine, NewProject, NewRelease, NewRun,
    NewSecret, NewStep, ReleaseFilter, RunFilter, SETTING_KEK_ID, SecretRow, SessionRow,
    StepUpdate, Store, StoreError, TestSummary, TokenRow,
};
use sqlx::{AnyPool, AssertSqlSafe, Connection, Row};

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
    /// Further PostgreSQL databases made by [`Ctx::blank`], dropped at the end.
    extra: std::sync::Mutex<Vec<String>>,
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
            extra: Default::default(),
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
            extra: Default::default(),
        })
    }

    async fn reopen(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }

    async fn raw_pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.raw_url).await.unwrap()
    }

    /// Runs `statements` on the database behind the store's back, in order.
    async fn raw_exec(&self, statements: &[&str]) {
        let pool = self.raw_pool().await;
        for sql in statements {
            sqlx::query(AssertSqlSafe(*sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }

    /// A second, empty database of the same backend that no store has opened yet:
    /// `(url for Store::open, url for a raw pool)`.
    async fn blank(&self, label: &str) -> (String, String) {
        match &self.pg {
            None => {
                let dir = self._dir.as_ref().unwrap();
                let path = dir.path().join(format!("{label}.db"));
                let url = path.to_str().unwrap().to_owned();
                (url.clone(), format!("sqlite://{url}?mode=rwc"))
            }
            Some((admin, name)) => {
                let extra = format!("{name}_{label}");
                let mut conn = sqlx::postgres::PgConnection::connect(admin).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {extra}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                self.extra.lock().unwrap().push(extra.clone());
                let url = with_database(admin, &extra);
                (url.clone(), url)
            }
        }
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some((admin, name)) = self.pg {
            let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.unwrap();
            let extra = self.extra.lock().unwrap().clone();
            for db in extra.iter().chain([&name]) {
                // FORCE can fail while a background worker (autovacuum) that the test role
                // may not terminate is connected to the database; it leaves soon, so retry.
                let mut attempt = 0;
                loop {
                    let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    match dropped {
                        Ok(_) => break,
                        Err(_) if attempt < 20 => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                        }
                        Err(e) => panic!("cannot drop test database {db}: {e}"),
                    }
                }
            }
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

#[path = "conformance/noise.rs"]
mod noise;
#[path = "conformance/oncall.rs"]
mod oncall;
use noise::noise_figures_and_flapping_changes;
use oncall::oncall_overrides;

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
    images_and_vulnerability_reports,
    state_change_and_events_are_atomic,
    reopening_keeps_data,
    deploy_targets_and_deployments,
    chain_is_continuous_across_appends_and_reopen,
    chain_covers_request_context,
    backfill_chains_events_of_an_old_database,
    events_of_an_older_writer_are_chained,
    tamper_edited_payload_is_found,
    tamper_deleted_middle_row_is_found,
    tamper_reordered_rows_are_found,
    tamper_truncated_tail_is_found,
    tamper_rehashed_rewrite_is_found,
    checkpoints_are_kept,
    users_and_grants,
    api_tokens,
    sessions,
    setup_tokens_are_single_use,
    approvals,
    secrets_are_versioned,
    secrets_rewrap_in_one_transaction,
    no_plaintext_credentials_are_stored,
    alert_batches_write_alerts_incidents_and_timeline,
    integrations_and_silences,
    noise_figures_and_flapping_changes,
    oncall_overrides,
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
        image_id: None,
        image_tag: None,
        vuln_report: None,
    }
}

/// Creates release of `service` at `commit` for `env`, which must be new.
async fn released(s: &Store, service: &str, commit: &str, env: &str) -> sluice_store::Release {
    s.create_release(new_release(service, commit, env), release_event())
        .await
        .unwrap()
        .unwrap()
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
    assert_eq!(cx.store.schema_version().await.unwrap(), 8);
    cx.store
        .add_project(project("shop"), ev(EventKind::ProjectAdded, "project/shop"))
        .await
        .unwrap();
    for _ in 0..2 {
        let again = cx.reopen().await;
        assert_eq!(again.schema_version().await.unwrap(), 8);
        assert_eq!(again.projects().await.unwrap().len(), 1);
        again.close().await;
    }
    let pool = cx.raw_pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM schema_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    let latest = cx.store.schema_version().await.unwrap();
    assert_eq!(rows, latest, "each migration is recorded once");
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
    cx.raw_exec(&[
        "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (999, 'future', 0)",
    ])
    .await;
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
    // Concurrent writers still form one unbroken chain.
    assert_chain_ok(&cx.store).await;
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
        since_ms: None,
    };
    assert_eq!(seqs(s.events(&combined).await.unwrap()), vec![2]);
    let since = |t| EventFilter {
        since_ms: Some(t),
        ..Default::default()
    };
    let from_fourth: Vec<i64> = all
        .iter()
        .filter(|e| e.time_ms >= all[3].time_ms)
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        seqs(s.events(&since(all[3].time_ms)).await.unwrap()),
        from_fourth
    );
    assert_eq!(
        seqs(s.events(&since(all[4].time_ms + 1)).await.unwrap()),
        Vec::<i64>::new()
    );
    assert_eq!(
        seqs(s.events(&since(0)).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
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

    // An on-call override of the project goes with it.
    let shop_overrides = sluice_store::OverrideFilter {
        project: Some("shop".into()),
        ..Default::default()
    };
    s.add_override(
        sluice_store::NewOverride {
            project: "shop".into(),
            schedule: "primary".into(),
            user: "alice".into(),
            starts_ms: 1,
            ends_ms: 2,
            created_by: "user:admin".into(),
        },
        ev(EventKind::OncallOverrideAdded, "oncall_override/{id}"),
    )
    .await
    .unwrap();
    assert_eq!(s.overrides(&shop_overrides).await.unwrap().len(), 1);
    s.remove_project("shop", ev(EventKind::ProjectRemoved, "project/shop"))
        .await
        .unwrap();
    assert!(matches!(
        s.project("shop").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.overrides(&shop_overrides).await.unwrap().is_empty());
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
            EventKind::OncallOverrideAdded,
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
            image_id: None,
            vuln_report: None,
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
    let a1 = released(s, "api", "c1", "staging").await;
    let w1 = released(s, "web", "c1", "staging").await;
    let a2 = released(s, "api", "c2", "staging").await;
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
    assert_eq!(
        s.release_version("shop", "api", 2).await.unwrap(),
        Some(a2.clone())
    );
    assert_eq!(s.release_version("shop", "api", 3).await.unwrap(), None);
    assert_eq!(s.release_version("shop", "web", 2).await.unwrap(), None);
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
    let next = released(s, "api", "c2", "staging").await;
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
    let r = released(s, "api", "c1", "staging").await;
    let other = released(s, "api", "c2", "staging").await;
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

async fn images_and_vulnerability_reports(cx: &Ctx) {
    let s = &cx.store;
    // Steps: a build step records its image, a scan step its report (failed ones too).
    let run = s
        .create_run(new_run("shop", "staging", "c1"), vec![])
        .await
        .unwrap();
    let report = json!({"passed": false, "findings": [{"package": "regex", "advisory_id": "RUSTSEC-2022-0013"}]});
    s.update_step(
        StepUpdate {
            run_id: run.id,
            name: "api/build".into(),
            image_id: Some("sha256:abc".into()),
            ..Default::default()
        },
        vec![],
    )
    .await
    .unwrap();
    s.update_step(
        StepUpdate {
            run_id: run.id,
            name: "api/test".into(),
            vuln_report: Some(report.clone()),
            ..Default::default()
        },
        vec![],
    )
    .await
    .unwrap();
    // A later update that does not name them keeps them.
    s.update_step(
        StepUpdate {
            run_id: run.id,
            name: "api/build".into(),
            status: Some(StepStatus::Succeeded),
            ..Default::default()
        },
        vec![],
    )
    .await
    .unwrap();
    let steps = s.steps(run.id).await.unwrap();
    let by = |n: &str| steps.iter().find(|st| st.name == n).unwrap().clone();
    assert_eq!(by("api/build").image_id.as_deref(), Some("sha256:abc"));
    assert_eq!(by("api/build").vuln_report, None);
    assert_eq!(by("api/test").vuln_report, Some(report.clone()));
    assert_eq!(by("web/build").image_id, None);

    // Releases carry the image and the reports; a release without them reads back as None.
    let reports = json!({"audit": report});
    let with = s
        .create_release(
            NewRelease {
                image_id: Some("sha256:abc".into()),
                image_tag: Some("sluice/shop-api:c1".into()),
                vuln_report: Some(reports.clone()),
                ..new_release("api", "c1", "staging")
            },
            release_event(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(with.image_id.as_deref(), Some("sha256:abc"));
    assert_eq!(s.release(with.id).await.unwrap(), with);
    let read = s
        .release_for_commit("shop", "api", "c1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.image_tag.as_deref(), Some("sluice/shop-api:c1"));
    assert_eq!(read.vuln_report, Some(reports));
    let without = released(s, "web", "c1", "staging").await;
    assert_eq!(
        (without.image_id, without.image_tag, without.vuln_report),
        (None, None, None)
    );
    let listed = s.releases(&ReleaseFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], with);
    // Survives a reopen (the columns exist after migrating, on both backends).
    let again = cx.reopen().await;
    assert_eq!(again.release(with.id).await.unwrap(), with);
    again.close().await;
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
    let rel = released(s, "api", "c1", "staging").await;
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
    // A later change of an ended deployment keeps its end time and the fields it leaves out.
    s.update_deployment(
        DeploymentUpdate {
            id: d2.id,
            phase: Some("rolled_back".into()),
            now_ms: 60,
            ..Default::default()
        },
        vec![],
    )
    .await
    .unwrap();
    let ended = s.deployment(d2.id).await.unwrap();
    assert_eq!(
        (ended.status, ended.finished_ms, ended.updated_ms),
        (DeployStatus::RolledBack, Some(50), 60)
    );
    assert_eq!(ended.state, d2.state);
    let err = s
        .update_deployment(
            DeploymentUpdate {
                id: 999,
                now_ms: 70,
                ..Default::default()
            },
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
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

// ---- audit chain ----

const KEY_SEED: [u8; 32] = [7; 32];

fn signer() -> Signer {
    Signer::from_seed(&KEY_SEED)
}

async fn entries(store: &Store) -> Vec<StoredEntry> {
    store.audit_entries(0, 1_000_000).await.unwrap()
}

/// Verifies the whole stored log against the stored checkpoints.
async fn verify_store(store: &Store) -> VerifyReport {
    verify_against(store, &store.checkpoints().await.unwrap()).await
}

/// Verifies the whole stored log against `checkpoints`, without the time checks.
async fn verify_against(store: &Store, checkpoints: &[Checkpoint]) -> VerifyReport {
    verify(
        entries(store).await,
        checkpoints,
        &signer().public_key(),
        VerifyOptions {
            now_ms: 0,
            checkpoint_interval_ms: 0,
        },
    )
}

async fn assert_chain_ok(store: &Store) {
    let report = verify_store(store).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    let all = entries(store).await;
    assert_eq!(report.entries_checked, all.len() as u64);
    // The events API shows the same chain as the audit read.
    let events = all_events(store).await;
    assert_eq!(events.len(), all.len());
    for (e, a) in events.iter().zip(&all) {
        assert_eq!((e.seq, e.prev_hash, e.hash), (a.seq, a.prev_hash, a.hash));
    }
    let head = all.last().map(|e| (e.seq, e.hash));
    assert_eq!(store.last_event().await.unwrap(), head);
}

/// Signs and stores a checkpoint of the current head.
async fn checkpoint_now(store: &Store, time_ms: i64) -> Checkpoint {
    let (seq, hash) = store
        .last_event()
        .await
        .unwrap()
        .unwrap_or((0, Hash::GENESIS));
    let cp = signer().sign(seq, hash, time_ms);
    store.add_checkpoint(&cp).await.unwrap();
    cp
}

/// Ten events of assorted shapes, then a checkpoint of seq 10.
async fn ten_events_and_checkpoint(store: &Store) {
    for i in 0..10 {
        let mut e = ev(EventKind::ServerStarted, &format!("thing/{i}"))
            .payload(json!({"i": i, "text": "grüße \"quoted\""}));
        if i % 2 == 0 {
            e = e
                .project("shop")
                .source("192.0.2.1")
                .request_id(format!("req-{i}"));
        }
        store.append_events(vec![e]).await.unwrap();
    }
    checkpoint_now(store, 1_000).await;
    assert!(verify_store(store).await.is_ok());
}

/// [`ten_events_and_checkpoint`], then `statements` run behind the store's back; returns
/// the verification of what is left.
async fn tampered(cx: &Ctx, statements: &[&str]) -> VerifyReport {
    ten_events_and_checkpoint(&cx.store).await;
    cx.raw_exec(statements).await;
    verify_store(&cx.store).await
}

fn first_problem(report: &VerifyReport) -> Problem {
    report
        .first_problem()
        .cloned()
        .expect("a problem is reported")
}

async fn chain_is_continuous_across_appends_and_reopen(cx: &Ctx) {
    let s = &cx.store;
    assert_eq!(s.last_event().await.unwrap(), None);
    assert!(entries(s).await.is_empty());
    // Every kind of writer appends to the one chain.
    let first = s
        .append_events(vec![
            ev(EventKind::ServerStarted, "server"),
            ev(EventKind::ServerStarted, "server"),
        ])
        .await
        .unwrap();
    assert_eq!(first[0].prev_hash, Hash::GENESIS);
    assert_eq!(first[1].prev_hash, first[0].hash);
    s.add_project(project("shop"), ev(EventKind::ProjectAdded, "project/shop"))
        .await
        .unwrap();
    let run = s
        .create_run(
            new_run("shop", "staging", "c1"),
            vec![ev(EventKind::RunQueued, "run/{id}")],
        )
        .await
        .unwrap();
    s.set_run_status(
        run.id,
        RunStatus::Running,
        5,
        vec![ev(EventKind::RunStarted, "run/1")],
    )
    .await
    .unwrap();
    s.create_release(new_release("api", "c1", "staging"), release_event())
        .await
        .unwrap();
    for i in 0..50 {
        s.append_events(vec![
            ev(EventKind::ServerStarted, "server").payload(json!({"i": i})),
        ])
        .await
        .unwrap();
    }
    assert_chain_ok(s).await;
    // The returned hashes are the stored ones and recompute from the fields.
    let stored = entries(s).await;
    assert_eq!(stored.len(), 56);
    assert_eq!(stored[0].hash, first[0].hash);
    for e in &stored {
        assert_eq!(e.recompute(), e.hash, "seq {}", e.seq);
    }
    checkpoint_now(s, 100).await;
    s.close().await;

    let again = cx.reopen().await;
    assert_eq!(entries(&again).await, stored, "reopening changes nothing");
    let next = again
        .append_events(vec![ev(EventKind::ServerStarted, "server")])
        .await
        .unwrap();
    assert_eq!(next[0].seq, 57);
    assert_eq!(next[0].prev_hash, stored[55].hash);
    let report = verify_store(&again).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    again.close().await;
}

async fn chain_covers_request_context(cx: &Ctx) {
    let s = &cx.store;
    let out = s
        .append_events(vec![
            ev(EventKind::AccessDenied, "project/shop")
                .project("shop")
                .source("203.0.113.7")
                .request_id("req-1")
                .payload(json!({"action": "deploy"})),
            ev(EventKind::ServerStarted, "server"),
        ])
        .await
        .unwrap();
    assert_eq!(out[0].source.as_deref(), Some("203.0.113.7"));
    assert_eq!(out[0].request_id.as_deref(), Some("req-1"));
    let read = all_events(s).await;
    assert_eq!(read, out);
    assert_eq!(read[1].source, None);
    let e = &entries(s).await[0];
    assert_eq!(
        (e.source.as_deref(), e.request_id.as_deref()),
        (Some("203.0.113.7"), Some("req-1"))
    );
    assert_chain_ok(s).await;
    // The context is covered by the hash: changing the address is tampering.
    cx.raw_exec(&["UPDATE events SET source = '198.51.100.1' WHERE seq = 1"])
        .await;
    assert!(matches!(
        first_problem(&verify_store(s).await),
        Problem::EntryAltered { seq: 1, .. }
    ));
}

async fn backfill_chains_events_of_an_old_database(cx: &Ctx) {
    // A database as sluice left it at schema version 2, built from the old scripts.
    let (url, raw) = cx.blank("old").await;
    let (v1, v2) = match cx.store.backend() {
        Backend::Sqlite => (
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_deploys.sql"),
        ),
        Backend::Postgres => (
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_deploys.sql"),
        ),
    };
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&raw).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         applied_ms BIGINT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(AssertSqlSafe(v1))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(v2))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_ms) \
         VALUES (1, 'init', 0), (2, 'deploys', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Payload texts exactly as stored, including spacing serde would not produce.
    let old: Vec<(i64, &str, Option<&str>, &str)> = (1..=1500)
        .map(|seq| match seq % 3 {
            0 => (seq, "run.queued", Some("shop"), r#"{"env":"staging"}"#),
            1 => (seq, "server.started", None, r#"{ "version" : "0.1.0" }"#),
            _ => (
                seq,
                "project.added",
                Some("blog"),
                r#"{"source":"/src/blög"}"#,
            ),
        })
        .collect();
    for (seq, kind, project, payload) in &old {
        sqlx::query(
            "INSERT INTO events (seq, time_ms, kind, actor, subject, project, payload) \
             VALUES ($1, $2, $3, 'system', 'server', $4, $5)",
        )
        .bind(*seq)
        .bind(1_000 + seq)
        .bind(*kind)
        .bind(*project)
        .bind(*payload)
        .execute(&pool)
        .await
        .unwrap();
    }

    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 8);
    let chained = entries(&store).await;
    assert_eq!(chained.len(), old.len());
    for (e, (seq, kind, project, payload)) in chained.iter().zip(&old) {
        // Contents unchanged, byte for byte.
        assert_eq!(
            (
                e.seq,
                e.time_ms,
                e.kind.as_str(),
                e.project.as_deref(),
                e.payload.as_str()
            ),
            (*seq, 1_000 + seq, *kind, *project, *payload)
        );
        assert_eq!((e.source.as_deref(), e.request_id.as_deref()), (None, None));
    }
    assert_eq!(chained[0].prev_hash, Hash::GENESIS);
    assert_chain_ok(&store).await;
    let unchained: i64 =
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM events WHERE hash = ''")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unchained, 0);
    store.close().await;

    // Idempotent: a second open changes nothing.
    let again = Store::open(&url).await.unwrap();
    assert_eq!(entries(&again).await, chained);
    // New events continue the chain.
    let next = again
        .append_events(vec![ev(EventKind::ServerStarted, "server")])
        .await
        .unwrap();
    assert_eq!(next[0].seq, 1501);
    assert_eq!(next[0].prev_hash, chained[1499].hash);
    assert_chain_ok(&again).await;
    again.close().await;
    pool.close().await;
}

async fn tamper_edited_payload_is_found(cx: &Ctx) {
    let report = tampered(
        cx,
        &[r#"UPDATE events SET payload = '{"i":4,"text":"nothing to see"}' WHERE seq = 4"#],
    )
    .await;
    assert!(
        matches!(first_problem(&report), Problem::EntryAltered { seq: 4, .. }),
        "{:?}",
        report.problems
    );
    assert_eq!(first_problem(&report).seq(), 4);
}

async fn tamper_deleted_middle_row_is_found(cx: &Ctx) {
    let report = tampered(cx, &["DELETE FROM events WHERE seq = 5"]).await;
    assert!(
        matches!(
            first_problem(&report),
            Problem::Missing {
                from: 5,
                to: 5,
                next_seq: 6,
                ..
            }
        ),
        "{:?}",
        report.problems
    );
}

async fn tamper_reordered_rows_are_found(cx: &Ctx) {
    // Swap the positions of events 3 and 6 (their contents and hashes move with them).
    let report = tampered(
        cx,
        &[
            "UPDATE events SET seq = -1 WHERE seq = 3",
            "UPDATE events SET seq = 3 WHERE seq = 6",
            "UPDATE events SET seq = 6 WHERE seq = -1",
        ],
    )
    .await;
    assert_eq!(first_problem(&report).seq(), 3, "{:?}", report.problems);
    assert!(matches!(
        first_problem(&report),
        Problem::EntryAltered { seq: 3, .. }
    ));
}

async fn tamper_truncated_tail_is_found(cx: &Ctx) {
    let report = tampered(cx, &["DELETE FROM events WHERE seq >= 8"]).await;
    // The chain left is intact; only the signed checkpoint proves the tail existed.
    assert!(verify_against(&cx.store, &[]).await.is_ok());
    assert!(
        matches!(
            first_problem(&report),
            Problem::Truncated {
                last_seq: 7,
                checkpoint_seq: 10,
                ..
            }
        ),
        "{:?}",
        report.problems
    );
    assert_eq!(first_problem(&report).seq(), 8);
}

async fn tamper_rehashed_rewrite_is_found(cx: &Ctx) {
    let s = &cx.store;
    for i in 0..3 {
        s.append_events(vec![ev(EventKind::ServerStarted, &format!("a/{i}"))])
            .await
            .unwrap();
    }
    checkpoint_now(s, 500).await; // covers seq 3
    ten_events_and_checkpoint(s).await; // seqs 4..=13, checkpoint at 13
    // Someone who knows the algorithm edits seq 6 and re-hashes everything after it.
    let pool = cx.raw_pool().await;
    sqlx::query("UPDATE events SET actor = 'nobody' WHERE seq = 6")
        .execute(&pool)
        .await
        .unwrap();
    let mut prev = Hash::GENESIS;
    for mut e in entries(s).await {
        if e.seq >= 6 {
            e.prev_hash = prev;
            e.hash = e.recompute();
            sqlx::query("UPDATE events SET prev_hash = $2, hash = $3 WHERE seq = $1")
                .bind(e.seq)
                .bind(e.prev_hash.to_string())
                .bind(e.hash.to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
        prev = e.hash;
    }
    pool.close().await;
    // The chain itself is consistent again, but the signed checkpoint disagrees.
    let report = verify_store(s).await;
    assert!(
        matches!(
            first_problem(&report),
            Problem::CheckpointMismatch {
                seq: 13,
                last_good_seq: 3,
                ..
            }
        ),
        "{:?}",
        report.problems
    );
    assert_eq!(first_problem(&report).seq(), 4);
}

async fn checkpoints_are_kept(cx: &Ctx) {
    let s = &cx.store;
    assert!(s.checkpoints().await.unwrap().is_empty());
    assert_eq!(s.last_checkpoint().await.unwrap(), None);
    // An empty log is checkpointed as seq 0.
    let empty = checkpoint_now(s, 10).await;
    assert_eq!((empty.seq, empty.hash), (0, Hash::GENESIS));
    s.append_events(vec![ev(EventKind::ServerStarted, "server")])
        .await
        .unwrap();
    let before = s.last_event_seq().await.unwrap();
    let one = checkpoint_now(s, 20).await;
    assert_eq!(s.last_event_seq().await.unwrap(), before, "no event");
    let err = s.add_checkpoint(&one).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(s.checkpoints().await.unwrap(), vec![empty, one.clone()]);
    assert_eq!(s.last_checkpoint().await.unwrap(), Some(one));
    let report = verify(
        entries(s).await,
        &s.checkpoints().await.unwrap(),
        &signer().public_key(),
        VerifyOptions {
            now_ms: 25,
            checkpoint_interval_ms: 10,
        },
    );
    assert!(report.is_ok(), "{:?}", report.problems);
    // A checkpoint under another key is stored but fails verification.
    let other = Signer::from_seed(&[9; 32]).sign(1, s.last_event().await.unwrap().unwrap().1, 30);
    s.add_checkpoint(&other).await.unwrap();
    assert!(matches!(
        first_problem(&verify_store(s).await),
        Problem::BadCheckpoint { seq: 1, .. }
    ));
}

// ---- who may do what ----

/// A PHC string shaped like Argon2id output (hashing for real is slow in debug builds).
const PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

fn token_hash(kind: TokenKind) -> String {
    sluice_auth::token::generate_token(kind).unwrap().1
}

async fn user(s: &Store, name: &str) -> sluice_store::UserRow {
    s.create_user(
        name,
        PHC,
        false,
        ev(EventKind::UserCreated, &format!("user/{name}")),
    )
    .await
    .unwrap()
}

async fn users_and_grants(cx: &Ctx) {
    let s = &cx.store;
    assert_eq!(s.user_count().await.unwrap(), 0);
    let ann = s
        .create_user("ann", PHC, true, ev(EventKind::UserCreated, "user/ann"))
        .await
        .unwrap();
    assert!(ann.admin && !ann.disabled);
    assert_eq!(s.user("ann").await.unwrap(), Some(ann.clone()));
    assert_eq!(s.user("nobody").await.unwrap(), None);
    let seq = s.last_event_seq().await.unwrap();
    let err = s
        .create_user("ann", PHC, false, ev(EventKind::UserCreated, "user/ann"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    for bad_password in ["hunter2hunter2", "slc_a_plaintext"] {
        let err = s
            .create_user(
                "bob",
                bad_password,
                false,
                ev(EventKind::UserCreated, "user/bob"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    for bad_name in ["", "*"] {
        let err = s
            .create_user(bad_name, PHC, false, ev(EventKind::UserCreated, "user/"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    assert_eq!(
        s.last_event_seq().await.unwrap(),
        seq,
        "refusals write nothing"
    );
    user(s, "bob").await;
    assert_eq!(s.user_count().await.unwrap(), 2);
    let names: Vec<String> = s
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ann", "bob"]);
    // Serialised users never carry the password hash.
    assert!(!serde_json::to_string(&ann).unwrap().contains("argon2"));

    // Updates.
    let other_phc = PHC.replace("c2Fsd", "b3RoZ");
    s.set_password("bob", &other_phc, ev(EventKind::UserUpdated, "user/bob"))
        .await
        .unwrap();
    assert_eq!(
        s.user("bob").await.unwrap().unwrap().password_hash,
        other_phc
    );
    s.set_user_admin("bob", true, ev(EventKind::UserUpdated, "user/bob"))
        .await
        .unwrap();
    assert!(s.user("bob").await.unwrap().unwrap().admin);
    let sid = token_hash(TokenKind::Session);
    s.create_session(&session_row(&sid, "bob", 10_000), vec![])
        .await
        .unwrap();
    s.set_user_disabled("bob", true, ev(EventKind::UserUpdated, "user/bob"))
        .await
        .unwrap();
    assert!(s.user("bob").await.unwrap().unwrap().disabled);
    assert_eq!(
        s.session(&sid).await.unwrap(),
        None,
        "disabling ends sessions"
    );
    s.set_user_disabled("bob", false, ev(EventKind::UserUpdated, "user/bob"))
        .await
        .unwrap();
    assert!(!s.user("bob").await.unwrap().unwrap().disabled);
    for err in [
        s.set_password("zed", PHC, ev(EventKind::UserUpdated, "user/zed"))
            .await
            .unwrap_err(),
        s.set_user_disabled("zed", true, ev(EventKind::UserUpdated, "user/zed"))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    // Grants: None (all) is one value for uniqueness, like any name.
    let all = Grant::new(Role::Viewer, None, None);
    let shop = Grant::new(Role::Developer, Some("shop"), None);
    let shop_prod = Grant::new(Role::Releaser, Some("shop"), Some("production"));
    let prod = Grant::new(Role::Developer, None, Some("production"));
    for g in [&all, &shop, &shop_prod, &prod] {
        s.grant("bob", g, ev(EventKind::GrantAdded, "user/bob"))
            .await
            .unwrap();
    }
    let seq = s.last_event_seq().await.unwrap();
    for g in [&all, &shop, &shop_prod, &prod] {
        let err = s
            .grant("bob", g, ev(EventKind::GrantAdded, "user/bob"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
    let err = s
        .grant("zed", &all, ev(EventKind::GrantAdded, "user/zed"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = s
        .grant(
            "bob",
            &Grant::new(Role::Admin, Some("*"), None),
            ev(EventKind::GrantAdded, "user/bob"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(s.last_event_seq().await.unwrap(), seq);
    // The same role on all projects and on one project are different grants.
    s.grant(
        "bob",
        &Grant::new(Role::Viewer, Some("shop"), None),
        ev(EventKind::GrantAdded, "user/bob"),
    )
    .await
    .unwrap();
    let grants = s.grants("bob").await.unwrap();
    assert_eq!(grants.len(), 5);
    for g in [&all, &shop, &shop_prod, &prod] {
        assert!(grants.contains(g), "{g:?} in {grants:?}");
    }
    assert!(s.grants("ann").await.unwrap().is_empty());
    s.revoke_grant("bob", &shop_prod, ev(EventKind::GrantRemoved, "user/bob"))
        .await
        .unwrap();
    let err = s
        .revoke_grant("bob", &shop_prod, ev(EventKind::GrantRemoved, "user/bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(s.grants("bob").await.unwrap().len(), 4);

    // Deleting a user takes their grants, tokens and sessions along, in one go.
    let t = token_row("t1", "bob", &token_hash(TokenKind::Api));
    s.create_token(&t, ev(EventKind::TokenCreated, "token/t1"))
        .await
        .unwrap();
    s.create_session(&session_row(&sid, "bob", 10_000), vec![])
        .await
        .unwrap();
    s.delete_user("bob", ev(EventKind::UserDeleted, "user/bob"))
        .await
        .unwrap();
    assert_eq!(s.user("bob").await.unwrap(), None);
    assert!(s.grants("bob").await.unwrap().is_empty());
    assert_eq!(s.token_by_hash(&t.hash).await.unwrap(), None);
    assert_eq!(s.session(&sid).await.unwrap(), None);
    let err = s
        .delete_user("bob", ev(EventKind::UserDeleted, "user/bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // A new user of the same name starts with nothing.
    user(s, "bob").await;
    assert!(s.grants("bob").await.unwrap().is_empty());
    assert!(s.tokens("bob").await.unwrap().is_empty());

    let kinds: Vec<EventKind> = all_events(s).await.iter().map(|e| e.kind).collect();
    let count = |k| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(count(EventKind::UserCreated), 3);
    assert_eq!(count(EventKind::UserUpdated), 4);
    assert_eq!(count(EventKind::GrantAdded), 5);
    assert_eq!(count(EventKind::GrantRemoved), 1);
    assert_eq!(count(EventKind::UserDeleted), 1);
    assert_chain_ok(s).await;
}

fn token_row(id: &str, user: &str, hash: &str) -> TokenRow {
    TokenRow {
        id: id.into(),
        user: user.into(),
        name: format!("{id} laptop"),
        hash: hash.into(),
        scopes: vec![Scope::Read, Scope::Deploy],
        created_ms: 1_000,
        expires_ms: Some(100_000),
        revoked_ms: None,
        last_used_ms: None,
    }
}

fn session_row(id_hash: &str, user: &str, expires_ms: i64) -> SessionRow {
    SessionRow {
        id_hash: id_hash.into(),
        user: user.into(),
        created_ms: 1_000,
        expires_ms,
        last_seen_ms: 1_000,
    }
}

async fn api_tokens(cx: &Ctx) {
    let s = &cx.store;
    user(s, "ann").await;
    let (plain, hash) = sluice_auth::token::generate_token(TokenKind::Api).unwrap();
    let t = token_row("tok1", "ann", &hash);
    assert_eq!(
        s.create_token(&t, ev(EventKind::TokenCreated, "token/tok1"))
            .await
            .unwrap(),
        t
    );
    let seq = s.last_event_seq().await.unwrap();
    // Same id, same hash, plaintext instead of hash, unknown owner: refused, nothing written.
    let same_id = token_row("tok1", "ann", &token_hash(TokenKind::Api));
    let same_hash = token_row("tok2", "ann", &hash);
    for (row, conflict) in [(&same_id, true), (&same_hash, true)] {
        let err = s
            .create_token(row, ev(EventKind::TokenCreated, "token"))
            .await
            .unwrap_err();
        assert_eq!(matches!(err, StoreError::Conflict(_)), conflict, "{err}");
    }
    let err = s
        .create_token(
            &token_row("tok3", "ann", &plain),
            ev(EventKind::TokenCreated, "token"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = s
        .create_token(
            &token_row("tok4", "zed", &token_hash(TokenKind::Api)),
            ev(EventKind::TokenCreated, "token"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(s.last_event_seq().await.unwrap(), seq);

    // Look-up by the hash of what a client presents.
    let found = s
        .token_by_hash(&sluice_auth::token::hash_token(&plain))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, t);
    assert!(found.record().matches(&plain));
    assert!(found.record().check(50_000).is_ok());
    assert!(found.record().has_scope(Scope::Deploy));
    assert!(found.record().check(100_000).is_err(), "expired");
    assert_eq!(s.token("tok1").await.unwrap(), Some(t.clone()));
    assert_eq!(
        s.token_by_hash(&token_hash(TokenKind::Api)).await.unwrap(),
        None
    );

    // Last use is recorded, at most once a minute.
    s.touch_token("tok1", 10_000).await.unwrap();
    assert_eq!(
        s.token("tok1").await.unwrap().unwrap().last_used_ms,
        Some(10_000)
    );
    s.touch_token("tok1", 30_000).await.unwrap();
    assert_eq!(
        s.token("tok1").await.unwrap().unwrap().last_used_ms,
        Some(10_000)
    );
    s.touch_token("tok1", 70_000).await.unwrap();
    assert_eq!(
        s.token("tok1").await.unwrap().unwrap().last_used_ms,
        Some(70_000)
    );
    s.touch_token("nope", 70_000).await.unwrap();
    assert_eq!(
        s.last_event_seq().await.unwrap(),
        seq,
        "touching writes no event"
    );

    // Revocation: once, with its event; the record then refuses the token.
    let t2 = token_row("tok2", "ann", &token_hash(TokenKind::Api));
    s.create_token(&t2, ev(EventKind::TokenCreated, "token/tok2"))
        .await
        .unwrap();
    assert!(
        s.revoke_token("tok1", 80_000, ev(EventKind::TokenRevoked, "token/tok1"))
            .await
            .unwrap()
    );
    let seq = s.last_event_seq().await.unwrap();
    assert!(
        !s.revoke_token("tok1", 90_000, ev(EventKind::TokenRevoked, "token/tok1"))
            .await
            .unwrap()
    );
    assert_eq!(s.last_event_seq().await.unwrap(), seq);
    let err = s
        .revoke_token("nope", 1, ev(EventKind::TokenRevoked, "token/nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let revoked = s.token_by_hash(&t.hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(80_000));
    assert_eq!(
        revoked.record().check(50_000),
        Err(sluice_auth::AuthError::Revoked)
    );
    let listed = s.tokens("ann").await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["tok1", "tok2"]
    );
    assert_eq!(listed[1].scopes, [Scope::Read, Scope::Deploy]);
    // Serialised tokens never carry the hash.
    assert!(
        !serde_json::to_string(&listed[1])
            .unwrap()
            .contains(&t2.hash)
    );
    assert_chain_ok(s).await;
}

async fn sessions(cx: &Ctx) {
    let s = &cx.store;
    user(s, "ann").await;
    user(s, "bob").await;
    let a1 = token_hash(TokenKind::Session);
    let a2 = token_hash(TokenKind::Session);
    let b1 = token_hash(TokenKind::Session);
    s.create_session(
        &session_row(&a1, "ann", 50_000),
        vec![ev(EventKind::AuthLogin, "user/ann")],
    )
    .await
    .unwrap();
    s.create_session(&session_row(&a2, "ann", 5_000), vec![])
        .await
        .unwrap();
    s.create_session(&session_row(&b1, "bob", 50_000), vec![])
        .await
        .unwrap();
    let err = s
        .create_session(&session_row(&a1, "ann", 50_000), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = s
        .create_session(
            &session_row(&token_hash(TokenKind::Session), "zed", 1),
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(
        s.session(&a1).await.unwrap(),
        Some(session_row(&a1, "ann", 50_000))
    );

    // Sliding expiry, throttled.
    s.touch_session(&a1, 30_000, 90_000).await.unwrap();
    let now = s.session(&a1).await.unwrap().unwrap();
    assert_eq!(
        (now.last_seen_ms, now.expires_ms),
        (1_000, 50_000),
        "too soon"
    );
    s.touch_session(&a1, 61_000, 121_000).await.unwrap();
    let now = s.session(&a1).await.unwrap().unwrap();
    assert_eq!((now.last_seen_ms, now.expires_ms), (61_000, 121_000));
    s.touch_session("nope", 61_000, 1).await.unwrap();

    // Pruning removes only expired sessions.
    assert_eq!(s.prune_sessions(10_000).await.unwrap(), 1);
    assert_eq!(s.session(&a2).await.unwrap(), None);

    // Logout.
    let seq = s.last_event_seq().await.unwrap();
    assert!(
        s.delete_session(&b1, vec![ev(EventKind::AuthLogout, "user/bob")])
            .await
            .unwrap()
    );
    assert!(
        !s.delete_session(&b1, vec![ev(EventKind::AuthLogout, "user/bob")])
            .await
            .unwrap()
    );
    assert_eq!(s.last_event_seq().await.unwrap(), seq + 1);
    // Every session of a user.
    s.create_session(&session_row(&a2, "ann", 500_000), vec![])
        .await
        .unwrap();
    assert_eq!(
        s.delete_sessions_of("ann", vec![ev(EventKind::AuthLogout, "user/ann")])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.delete_sessions_of("ann", vec![ev(EventKind::AuthLogout, "user/ann")])
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.last_event_seq().await.unwrap(), seq + 2);
    assert_eq!(s.session(&a1).await.unwrap(), None);
}

async fn setup_tokens_are_single_use(cx: &Ctx) {
    let s = &cx.store;
    let (plain, hash) = sluice_auth::token::generate_token(TokenKind::Setup).unwrap();
    let err = s
        .create_setup_token(&plain, "alice", 10_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    s.create_setup_token(&hash, "alice", 10_000).await.unwrap();
    let err = s
        .create_setup_token(&hash, "alice", 10_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        s.use_setup_token(&token_hash(TokenKind::Setup), 1)
            .await
            .unwrap(),
        None
    );
    // Many at once: exactly one wins.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (store, hash) = (s.clone(), hash.clone());
        handles.push(tokio::spawn(async move {
            store.use_setup_token(&hash, 5_000).await.unwrap()
        }));
    }
    let mut wins = Vec::new();
    for h in handles {
        wins.extend(h.await.unwrap());
    }
    assert_eq!(wins, ["alice"], "exactly one use, naming the token's user");
    assert_eq!(s.use_setup_token(&hash, 5_001).await.unwrap(), None);
    // Expired tokens are refused.
    let late = token_hash(TokenKind::Setup);
    s.create_setup_token(&late, "bob", 10_000).await.unwrap();
    assert_eq!(s.use_setup_token(&late, 10_000).await.unwrap(), None);
    assert_eq!(s.last_event_seq().await.unwrap(), 0);
}

async fn approvals(cx: &Ctx) {
    use sluice_store::NewDeployment;
    let s = &cx.store;
    let d = s
        .create_deployment(
            NewDeployment {
                project: "shop".into(),
                service: "api".into(),
                env: "production".into(),
                version: 1,
                from_version: None,
                strategy: "rolling".into(),
                phase: "awaiting_approval".into(),
                state: json!({}),
                trigger: "manual".into(),
                actor: "user:ann".into(),
                created_ms: 1,
            },
            vec![],
        )
        .await
        .unwrap();
    let approved = |user: &str| {
        ev(
            EventKind::DeploymentApproved,
            &format!("deployment/{}", d.id),
        )
        .project("shop")
        .payload(json!({"user": user}))
    };
    let a = s
        .approve(d.id, "bob", 20, "looks good", approved("bob"))
        .await
        .unwrap();
    assert_eq!(
        (
            a.deployment_id,
            a.user.as_str(),
            a.at_ms,
            a.comment.as_str()
        ),
        (d.id, "bob", 20, "looks good")
    );
    let seq = s.last_event_seq().await.unwrap();
    let err = s
        .approve(d.id, "bob", 30, "again", approved("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = s
        .approve(d.id + 100, "bob", 30, "", approved("bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(s.last_event_seq().await.unwrap(), seq);
    s.approve(d.id, "cyd", 10, "", approved("cyd"))
        .await
        .unwrap();
    let list = s.approvals(d.id).await.unwrap();
    assert_eq!(
        list.iter().map(|a| a.user.as_str()).collect::<Vec<_>>(),
        ["cyd", "bob"]
    );
    assert_eq!(list[1].approval().by, "bob");
    assert!(s.approvals(d.id + 1).await.unwrap().is_empty());
    let kinds: Vec<EventKind> = all_events(s).await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::DeploymentApproved)
            .count(),
        2
    );
}

// ---- secrets ----

fn new_secret(id: &str, env: Option<&str>, name: &str) -> NewSecret {
    NewSecret {
        id: id.into(),
        project: "shop".into(),
        environment: env.map(str::to_owned),
        name: name.into(),
        created_ms: 1_000,
        created_by: "user:ann".into(),
    }
}

fn written(name: &str) -> NewEvent {
    ev(
        EventKind::SecretWritten,
        &format!("secret/shop/{name}/{{version}}"),
    )
    .project("shop")
    .payload(json!({"name": name}))
}

async fn put(
    s: &Store,
    kek: &Kek,
    id: &str,
    env: Option<&str>,
    name: &str,
    value: &str,
) -> SecretRow {
    s.put_secret(
        new_secret(id, env, name),
        |r| sluice_secrets::seal(kek, r, value.as_bytes()),
        written(name),
    )
    .await
    .unwrap()
}

fn open(kek: &Kek, row: &SecretRow) -> String {
    let value = sluice_secrets::open(kek, &row.secret, &row.sealed).unwrap();
    String::from_utf8(value.to_vec()).unwrap()
}

async fn secrets_are_versioned(cx: &Ctx) {
    let s = &cx.store;
    let kek = Kek::generate().unwrap();
    assert_eq!(s.secret("shop", None, "DB_URL").await.unwrap(), None);
    let v1 = put(s, &kek, "s1", None, "DB_URL", "postgres://one").await;
    assert_eq!(v1.secret.version, 1);
    let v2 = put(s, &kek, "s2", None, "DB_URL", "postgres://two").await;
    assert_eq!(v2.secret.version, 2);
    // Environments are separate secrets with their own versions.
    let p1 = put(
        s,
        &kek,
        "s3",
        Some("production"),
        "DB_URL",
        "postgres://prod",
    )
    .await;
    assert_eq!(p1.secret.version, 1);
    put(s, &kek, "s4", None, "API_KEY", "k-1").await;

    let current = s.secret("shop", None, "DB_URL").await.unwrap().unwrap();
    assert_eq!(current, v2);
    assert_eq!(open(&kek, &current), "postgres://two");
    let prod = s
        .secret("shop", Some("production"), "DB_URL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open(&kek, &prod), "postgres://prod");
    assert_eq!(
        s.secret("shop", Some("staging"), "DB_URL").await.unwrap(),
        None
    );
    assert_eq!(s.secret("blog", None, "DB_URL").await.unwrap(), None);
    // The version is bound into the ciphertext: v1's blob under v2's identity fails.
    let mut swapped = v1.secret.clone();
    swapped.version = 2;
    assert!(sluice_secrets::open(&kek, &swapped, &v1.sealed).is_err());

    // Events carry the version; never the value.
    let events: Vec<_> = all_events(s)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::SecretWritten)
        .collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[1].subject, "secret/shop/DB_URL/2");
    assert_eq!(events[1].payload["version"], 2);
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("postgres://")
    );

    // Listing: current versions only, no values.
    let meta = s.secrets("shop").await.unwrap();
    let listed: Vec<(Option<&str>, &str, i64)> = meta
        .iter()
        .map(|m| (m.environment.as_deref(), m.name.as_str(), m.version))
        .collect();
    assert_eq!(
        listed,
        [
            (None, "API_KEY", 1),
            (None, "DB_URL", 2),
            (Some("production"), "DB_URL", 1)
        ]
    );
    assert_eq!(meta[1].id, "s2");
    assert_eq!(meta[1].kek_id, kek.key_id());

    // Refusals write nothing.
    let seq = s.last_event_seq().await.unwrap();
    let refuse =
        |n: NewSecret| s.put_secret(n, |r| sluice_secrets::seal(&kek, r, b"x"), written("X"));
    let err = refuse(new_secret("s1", None, "OTHER")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = refuse(new_secret("s9", None, "bad-name"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Secrets(_)), "{err}");
    let err = refuse(new_secret("s9", Some("*"), "X")).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = s
        .put_secret(
            new_secret("s9", None, "X"),
            |_| Err(sluice_secrets::SecretsError::Sealed),
            written("X"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Secrets(sluice_secrets::SecretsError::Sealed)
        ),
        "{err}"
    );
    // Once the expected key is recorded, values under another key are refused.
    s.set_setting(SETTING_KEK_ID, &kek.key_id()).await.unwrap();
    let other = Kek::generate().unwrap();
    let err = s
        .put_secret(
            new_secret("s9", None, "X"),
            |r| sluice_secrets::seal(&other, r, b"x"),
            written("X"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(s.last_event_seq().await.unwrap(), seq);
    assert_eq!(s.secret("shop", None, "X").await.unwrap(), None);

    // Delete: tombstones every version; the count continues afterwards.
    let n = s
        .delete_secret(
            "shop",
            None,
            "DB_URL",
            ev(EventKind::SecretDeleted, "secret/shop/DB_URL").project("shop"),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(s.secret("shop", None, "DB_URL").await.unwrap(), None);
    assert!(
        s.secret("shop", Some("production"), "DB_URL")
            .await
            .unwrap()
            .is_some()
    );
    let err = s
        .delete_secret("shop", None, "DB_URL", ev(EventKind::SecretDeleted, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(s.secrets("shop").await.unwrap().len(), 2);
    let v3 = put(s, &kek, "s5", None, "DB_URL", "postgres://three").await;
    assert_eq!(v3.secret.version, 3);
    let rows = s.all_secret_rows().await.unwrap();
    assert_eq!(rows.len(), 5, "tombstones are kept");
    assert_eq!(rows.iter().filter(|r| r.deleted_ms.is_some()).count(), 2);
    assert_chain_ok(s).await;
}

async fn secrets_rewrap_in_one_transaction(cx: &Ctx) {
    let s = &cx.store;
    let old = Kek::generate().unwrap();
    let new = Kek::generate().unwrap();
    s.set_setting(SETTING_KEK_ID, &old.key_id()).await.unwrap();
    assert_eq!(s.setting(SETTING_KEK_ID).await.unwrap(), Some(old.key_id()));
    assert_eq!(s.setting("nothing").await.unwrap(), None);
    put(s, &old, "a1", None, "A", "alpha-1").await;
    put(s, &old, "a2", None, "A", "alpha-2").await;
    put(s, &old, "b1", Some("staging"), "B", "beta").await;
    s.delete_secret(
        "shop",
        Some("staging"),
        "B",
        ev(EventKind::SecretDeleted, "x"),
    )
    .await
    .unwrap();
    let rewrap_all = |rows: &[SecretRow]| -> Vec<(String, Sealed)> {
        rows.iter()
            .map(|r| {
                let sealed = sluice_secrets::rewrap(&old, &new, &r.secret, &r.sealed).unwrap();
                (r.secret.id.clone(), sealed)
            })
            .collect()
    };
    let rekeyed = || ev(EventKind::SecretsRekeyed, "secrets");
    let before_rows = s.all_secret_rows().await.unwrap();
    let updates = rewrap_all(&before_rows);

    // A secret written after the rows were read would stay under the old key: refused,
    // and nothing at all changes.
    put(s, &old, "c1", None, "C", "gamma").await;
    let seq = s.last_event_seq().await.unwrap();
    let err = s
        .rewrap_secrets(&new.key_id(), updates.clone(), rekeyed())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let unchanged = s.all_secret_rows().await.unwrap();
    assert!(unchanged.iter().all(|r| r.sealed.kek_id == old.key_id()));
    let mut untouched: Vec<_> = unchanged.iter().filter(|r| r.secret.id != "c1").collect();
    untouched.sort_by(|a, b| a.secret.id.cmp(&b.secret.id));
    let mut before: Vec<_> = before_rows.iter().collect();
    before.sort_by(|a, b| a.secret.id.cmp(&b.secret.id));
    assert_eq!(untouched, before, "no row was half rotated");
    assert_eq!(s.setting(SETTING_KEK_ID).await.unwrap(), Some(old.key_id()));
    assert_eq!(s.last_event_seq().await.unwrap(), seq);

    // Updates that change a ciphertext, or are under another key, are refused too.
    let mut bad = rewrap_all(&unchanged);
    bad[1].1.ciphertext[30] ^= 1;
    let err = s
        .rewrap_secrets(&new.key_id(), bad, rekeyed())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = s
        .rewrap_secrets("someotherkey", rewrap_all(&unchanged), rekeyed())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(s.all_secret_rows().await.unwrap(), unchanged);

    // Read again, retry: every row (tombstones too) moves to the new key at once.
    let n = s
        .rewrap_secrets(&new.key_id(), rewrap_all(&unchanged), rekeyed())
        .await
        .unwrap();
    assert_eq!(n, 4);
    let after = s.all_secret_rows().await.unwrap();
    for (a, b) in after.iter().zip(&unchanged) {
        assert_eq!(a.sealed.kek_id, new.key_id());
        assert_eq!(a.sealed.ciphertext, b.sealed.ciphertext, "values untouched");
        assert_ne!(a.sealed.wrapped_dek, b.sealed.wrapped_dek);
        assert_eq!(a.secret, b.secret);
        assert!(sluice_secrets::open(&old, &a.secret, &a.sealed).is_err());
    }
    assert_eq!(open(&new, &after[1]), "alpha-2");
    assert_eq!(s.setting(SETTING_KEK_ID).await.unwrap(), Some(new.key_id()));
    assert_eq!(s.last_event_seq().await.unwrap(), seq + 1);
    // New writes must now use the new key.
    let err = s
        .put_secret(
            new_secret("d1", None, "D"),
            |r| sluice_secrets::seal(&old, r, b"x"),
            written("D"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    put(s, &new, "d1", None, "D", "delta").await;
    assert_chain_ok(s).await;
}

async fn no_plaintext_credentials_are_stored(cx: &Ctx) {
    let s = &cx.store;
    let password = "correct horse battery staple";
    let phc = sluice_auth::password::hash_password(password).unwrap();
    s.create_user("ann", &phc, true, ev(EventKind::UserCreated, "user/ann"))
        .await
        .unwrap();
    let mut plaintexts = vec![password.to_owned()];
    let (api, api_hash) = sluice_auth::token::generate_token(TokenKind::Api).unwrap();
    s.create_token(
        &token_row("t1", "ann", &api_hash),
        ev(EventKind::TokenCreated, "token/t1").payload(json!({"user": "ann"})),
    )
    .await
    .unwrap();
    let (session, session_hash) = sluice_auth::token::generate_token(TokenKind::Session).unwrap();
    s.create_session(
        &session_row(&session_hash, "ann", i64::MAX),
        vec![ev(EventKind::AuthLogin, "user/ann")],
    )
    .await
    .unwrap();
    let (setup, setup_hash) = sluice_auth::token::generate_token(TokenKind::Setup).unwrap();
    s.create_setup_token(&setup_hash, "admin", i64::MAX)
        .await
        .unwrap();
    let kek = Kek::generate().unwrap();
    put(s, &kek, "s1", None, "PASSWORD", "sekrit-value-123").await;
    plaintexts.extend([api.clone(), session.clone(), setup.clone()]);
    plaintexts.push("sekrit-value-123".into());

    // Every plaintext is refused where its hash belongs.
    let refusals = [
        s.create_user("bob", password, false, ev(EventKind::UserCreated, "u"))
            .await
            .unwrap_err(),
        s.create_token(
            &token_row("t2", "ann", &api),
            ev(EventKind::TokenCreated, "t"),
        )
        .await
        .unwrap_err(),
        s.create_session(&session_row(&session, "ann", 1), vec![])
            .await
            .unwrap_err(),
        s.create_setup_token(&setup, "admin", 1).await.unwrap_err(),
    ];
    for err in refusals {
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }

    // Scan every text column of every table.
    let pool = cx.raw_pool().await;
    let tables: Vec<String> = match s.backend() {
        Backend::Sqlite => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        ),
        Backend::Postgres => sqlx::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema()",
        ),
    }
    .fetch_all(&pool)
    .await
    .unwrap();
    for t in [
        "users",
        "api_tokens",
        "sessions",
        "setup_tokens",
        "secrets",
        "events",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    let mut texts = 0;
    for table in &tables {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in &rows {
            for i in 0..row.columns().len() {
                let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) else {
                    continue;
                };
                texts += 1;
                for p in &plaintexts {
                    assert!(
                        !text.contains(p.as_str()),
                        "table {table} stores a plaintext credential or secret"
                    );
                }
            }
        }
    }
    assert!(texts > 20, "the scan read the text columns ({texts})");
    pool.close().await;
    // The stored forms are exactly the hashes.
    assert_eq!(s.user("ann").await.unwrap().unwrap().password_hash, phc);
    assert!(sluice_auth::password::verify_password(&phc, password));
    assert!(s.token_by_hash(&api_hash).await.unwrap().is_some());
    assert!(s.session(&session_hash).await.unwrap().is_some());
    assert!(s.use_setup_token(&setup_hash, 1).await.unwrap().is_some());
}

/// An event as a pre-chain sluice writes it (no context, no hash), behind the store's back.
async fn insert_unchained(pool: &AnyPool, seq: i64) {
    sqlx::query(
        "INSERT INTO events (seq, time_ms, kind, actor, subject, project, payload) \
         VALUES ($1, 5, 'server.started', 'old', 'server', NULL, '{}')",
    )
    .bind(seq)
    .execute(pool)
    .await
    .unwrap();
}

async fn events_of_an_older_writer_are_chained(cx: &Ctx) {
    // An older sluice sharing the database appends without hashes; the next write (or the
    // next open) chains them after the stored chain, without rewriting any stored hash.
    let s = &cx.store;
    s.append_events(vec![ev(EventKind::ServerStarted, "server")])
        .await
        .unwrap();
    let pool = cx.raw_pool().await;
    insert_unchained(&pool, 2).await;
    insert_unchained(&pool, 3).await;
    let next = s
        .append_events(vec![ev(EventKind::ServerStarted, "server")])
        .await
        .unwrap();
    assert_eq!(next[0].seq, 4);
    assert_chain_ok(s).await;
    let chained = entries(s).await;
    assert_eq!(chained[1].actor, "old");
    assert_eq!(next[0].prev_hash, chained[2].hash);

    insert_unchained(&pool, 5).await;
    s.close().await;
    let again = cx.reopen().await;
    let reopened = entries(&again).await;
    assert_eq!(&reopened[..4], &chained[..], "stored hashes are kept");
    assert_eq!(reopened[4].prev_hash, chained[3].hash);
    assert_chain_ok(&again).await;
    again.close().await;
    pool.close().await;
}

// ---- alerts and incidents ----

fn new_alert(id: i64, key: &str, incident: Option<i64>) -> sluice_store::NewAlertRow {
    sluice_store::NewAlertRow {
        id,
        scope: "i1".into(),
        dedup_key: key.into(),
        project: "shop".into(),
        service: "web".into(),
        source: "alertmanager-api".into(),
        rule: None,
        severity: "warning".into(),
        summary: format!("alert {key}"),
        labels: [("alertname".to_owned(), "X".to_owned())].into(),
        details: serde_json::json!({"k": 1}),
        incident_id: incident,
        silenced: incident.is_none(),
        created_ms: 100 + id,
        starts_ms: 50,
    }
}

async fn alert_batches_write_alerts_incidents_and_timeline(cx: &Ctx) {
    use sluice_store::{
        AlertBatch, AlertChange, AlertFilter, IncidentChange, IncidentFilter, NewIncidentRow,
        NewTimelineEntry,
    };
    let s = &cx.store;
    let seq = 1;
    let batch = AlertBatch {
        applied_seq: Some(seq),
        new_incidents: vec![NewIncidentRow {
            id: 7,
            project: "shop".into(),
            service: "web".into(),
            group_key: "shop/web".into(),
            title: "alert a".into(),
            severity: "warning".into(),
            rule: None,
            opened_ms: 100,
            suspected_release: Some(serde_json::json!({"version": 3})),
        }],
        new_alerts: vec![
            new_alert(1, "a", Some(7)),
            new_alert(2, "b", Some(7)),
            new_alert(3, "c", None),
        ],
        incident_changes: vec![IncidentChange::AlertsJoined {
            id: 7,
            n: 2,
            at_ms: 101,
        }],
        timeline: vec![NewTimelineEntry {
            incident_id: 7,
            at_ms: 100,
            kind: "opened".into(),
            actor: None,
            text: "opened".into(),
            data: serde_json::json!({}),
        }],
        events: vec![ev(EventKind::IncidentOpened, "incident/7").project("shop")],
        ..AlertBatch::default()
    };
    s.apply_alert_batch(batch).await.unwrap();
    assert_eq!(s.alerts_applied_seq().await.unwrap(), seq);
    assert_eq!(s.alert_max_ids().await.unwrap(), (3, 7));
    let open = s.open_alerts().await.unwrap();
    assert_eq!(open.len(), 3);
    assert_eq!(open[2].labels["alertname"], "X");
    assert!(open[2].silenced);
    let inc = s.incident(7).await.unwrap();
    assert_eq!((inc.alert_count, inc.status.as_str()), (2, "triggered"));
    assert_eq!(inc.suspected_release.unwrap()["version"], 3);

    // A second open alert with the same key in the same scope breaks the open-key rule.
    let dup = AlertBatch {
        new_alerts: vec![new_alert(4, "a", Some(7))],
        ..AlertBatch::default()
    };
    assert!(s.apply_alert_batch(dup).await.is_err());
    assert_eq!(
        s.alert_max_ids().await.unwrap().0,
        3,
        "nothing of a failed batch is kept"
    );

    let changes = AlertBatch {
        alert_changes: vec![
            AlertChange::Repeated {
                id: 1,
                severity: "critical".into(),
                summary: "worse".into(),
                at_ms: 110,
            },
            AlertChange::Resolved { id: 2, at_ms: 120 },
            AlertChange::Unsilenced {
                id: 3,
                incident_id: 7,
                at_ms: 130,
            },
        ],
        incident_changes: vec![
            IncidentChange::Severity {
                id: 7,
                severity: "critical".into(),
                at_ms: 110,
            },
            IncidentChange::Notified { id: 7, at_ms: 111 },
            IncidentChange::Acknowledged {
                id: 7,
                by: "alice".into(),
                at_ms: 140,
            },
            IncidentChange::Acknowledged {
                id: 7,
                by: "bob".into(),
                at_ms: 150,
            },
        ],
        ..AlertBatch::default()
    };
    s.apply_alert_batch(changes).await.unwrap();
    let inc = s.incident(7).await.unwrap();
    assert_eq!(inc.status, "acknowledged");
    assert_eq!(
        (inc.acked_by.as_deref(), inc.acked_ms),
        (Some("alice"), Some(140)),
        "the first acknowledgement is kept"
    );
    assert_eq!(inc.severity, "critical");
    assert_eq!(inc.notified_ms, Some(111));
    let firing = s
        .alerts(&AlertFilter {
            firing: true,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<i64> = firing.iter().map(|a| a.id).collect();
    assert_eq!(ids, [3, 1]);
    assert_eq!(firing[1].repeats, 1);
    assert_eq!(firing[0].incident_id, Some(7));
    // A resolved key may open again.
    s.apply_alert_batch(AlertBatch {
        new_alerts: vec![new_alert(5, "b", Some(7))],
        ..AlertBatch::default()
    })
    .await
    .unwrap();
    // Within one batch a key may close and open again, twice: an alert that existed before
    // the batch (1, key "a") resolves and a new one (6) opens; a new one (7, key "d") opens,
    // resolves and is followed by 8. Only the last of each key is open afterwards.
    s.apply_alert_batch(AlertBatch {
        new_alerts: vec![
            new_alert(6, "a", Some(7)),
            new_alert(7, "d", Some(7)),
            new_alert(8, "d", Some(7)),
        ],
        alert_changes: vec![
            AlertChange::Resolved { id: 1, at_ms: 160 },
            AlertChange::Repeated {
                id: 7,
                severity: "warning".into(),
                summary: "again".into(),
                at_ms: 161,
            },
            AlertChange::Resolved { id: 7, at_ms: 162 },
        ],
        ..AlertBatch::default()
    })
    .await
    .unwrap();
    let open: Vec<(i64, String)> = s
        .open_alerts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.dedup_key))
        .collect();
    assert_eq!(
        open,
        [
            (3, "c".to_owned()),
            (5, "b".into()),
            (6, "a".into()),
            (8, "d".into())
        ]
    );
    s.apply_alert_batch(AlertBatch {
        incident_changes: vec![IncidentChange::Resolved {
            id: 7,
            by: None,
            at_ms: 200,
        }],
        ..AlertBatch::default()
    })
    .await
    .unwrap();
    assert!(s.open_incidents().await.unwrap().is_empty());
    let listed = s
        .incidents(&IncidentFilter {
            projects: Some(vec!["shop".into()]),
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let none = s
        .incidents(&IncidentFilter {
            projects: Some(vec![]),
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    s.add_timeline(vec![NewTimelineEntry {
        incident_id: 7,
        at_ms: 150,
        kind: "delivery".into(),
        actor: Some("ops".into()),
        text: "delivered".into(),
        data: serde_json::json!({"ok": true}),
    }])
    .await
    .unwrap();
    let t = s.incident_timeline(7).await.unwrap();
    let kinds: Vec<&str> = t.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "delivery"]);
}

async fn integrations_and_silences(cx: &Ctx) {
    use sluice_store::{NewIntegration, NewSilence};
    let s = &cx.store;
    let new = |name: &str, hash: &str| NewIntegration {
        name: name.into(),
        project: "shop".into(),
        service: Some("web".into()),
        key_hash: hash.into(),
        key_hint: "abcd".into(),
        created_by: "alice".into(),
    };
    let i = s
        .add_integration(
            new("prom", "h1"),
            ev(EventKind::IntegrationCreated, "integration/shop/prom"),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.add_integration(new("prom", "h2"), ev(EventKind::IntegrationCreated, "x"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.add_integration(new("other", "h1"), ev(EventKind::IntegrationCreated, "x"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.integration_by_key("h1").await.unwrap().unwrap().id, i.id);
    assert!(s.integration_by_key("nope").await.unwrap().is_none());
    assert_eq!(s.integrations(Some("shop")).await.unwrap().len(), 1);
    s.remove_integration(i.id, ev(EventKind::IntegrationRemoved, "x"))
        .await
        .unwrap();
    assert!(s.integration_by_key("h1").await.unwrap().is_none());

    let sil = s
        .add_silence(
            NewSilence {
                project: None,
                matchers: "alertname=\"X\"".into(),
                starts_ms: 0,
                ends_ms: 1000,
                recurrence: None,
                comment: "deploy".into(),
                created_by: "alice".into(),
            },
            ev(EventKind::SilenceCreated, "silence/{id}"),
        )
        .await
        .unwrap();
    assert_eq!(s.live_silences(500).await.unwrap().len(), 1);
    assert!(s.live_silences(1000).await.unwrap().is_empty());
    s.expire_silence(sil.id, 600, ev(EventKind::SilenceExpired, "x"))
        .await
        .unwrap();
    assert!(s.live_silences(500).await.unwrap().is_empty());
    assert!(matches!(
        s.expire_silence(sil.id, 700, ev(EventKind::SilenceExpired, "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let events = s
        .events(&EventFilter {
            kinds: vec![EventKind::SilenceCreated],
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events[0].subject, format!("silence/{}", sil.id));
}
