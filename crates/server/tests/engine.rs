//! End-to-end tests of the engine and the HTTP edge against real git repositories, real
//! processes and a real SQLite store: pushes start the right pipelines, monorepo change
//! detection (including a new branch and a force-push), webhooks with real signatures,
//! gates and JUnit, retries and timeouts, cancellation, masking, releases and bad input.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Repo, eventually, fetch, fetch_json};

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_core::{EventKind, RunStatus, StepStatus};
use sluice_server::{Server, ServerConfig};
use sluice_store::{EventFilter, LogFilter, Run, RunFilter};

const MONOREPO: &str = r#"
project: mono
environments:
  staging:
    branch: main
  production:
    branch: release
services:
  api:
    paths: ["api/**"]
    steps:
      test:
        run: cat api/code.txt
        gate: true
      package:
        run: mkdir -p out && cp api/code.txt out/
        needs: [test]
        artifacts: ["out/**"]
  web:
    paths: ["web/**"]
    steps:
      build:
        run: cat web/page.txt && test "$(cat web/page.txt)" != broken
        gate: true
"#;

async fn server(root: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut c = common::config(root.join("data"));
    c.kill_grace = Duration::from_millis(500);
    tweak(&mut c);
    Server::start(c).await.expect("server starts")
}

/// Registers a project without polling and waits until its first sync has finished.
async fn add(s: &Server, repo: &Repo, secret: Option<&str>) -> String {
    let p = s
        .engine
        .add_project(
            &repo.path(),
            None,
            Some(0),
            secret.map(str::to_string),
            "test",
        )
        .await
        .expect("project added");
    // The first sync runs in the background; a second one waits for it (same lock).
    s.engine
        .sync_project(&p.name, "poll", "test")
        .await
        .unwrap();
    p.name
}

async fn runs(s: &Server, project: &str) -> Vec<Run> {
    let mut r = s
        .engine
        .store
        .runs(&RunFilter {
            project: Some(project.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    r.reverse();
    r
}

async fn finish(s: &Server, run: &Run) -> Run {
    let r = s
        .engine
        .wait_run(run.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        r.status.is_terminal(),
        "run {} did not finish: {:?}",
        r.id,
        r.status
    );
    r
}

async fn finish_all(s: &Server, project: &str) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs(s, project).await {
        out.push(finish(s, &r).await);
    }
    out
}

async fn sync(s: &Server, project: &str) -> Vec<Run> {
    let started = s
        .engine
        .sync_project(project, "poll", "test")
        .await
        .unwrap();
    let mut out = Vec::new();
    for r in started {
        out.push(finish(s, &r).await);
    }
    out
}

async fn events(s: &Server, kind: EventKind) -> Vec<sluice_store::Event> {
    s.engine
        .store
        .events(&EventFilter {
            kinds: vec![kind],
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn mono_repo(root: &Path) -> Repo {
    let repo = Repo::new(root);
    repo.write("sluice.yml", MONOREPO);
    repo.write("api/code.txt", "api v1");
    repo.write("web/page.txt", "page v1");
    repo.write("README.md", "root file outside every service");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_start_the_right_pipelines_and_monorepo_detection_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = mono_repo(tmp.path());
    let c1 = repo.commit("first");
    let s = server(tmp.path(), |_| {}).await;
    let project = add(&s, &repo, None).await;

    // Registration runs the pipeline of the environment branch: both services, staging.
    let first = finish_all(&s, &project).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, RunStatus::Succeeded);
    assert_eq!(first[0].env, "staging");
    assert_eq!(first[0].commit, c1);
    assert_eq!(first[0].services, vec!["api", "web"]);

    // A push that only touches a root file outside every service starts nothing.
    repo.write("README.md", "still outside");
    repo.commit("docs only");
    assert!(sync(&s, &project).await.is_empty());

    // A push to web only runs web.
    repo.write("web/page.txt", "page v2");
    let c3 = repo.commit("web change");
    let r = sync(&s, &project).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].services, vec!["web"]);
    assert_eq!(r[0].commit, c3);

    // A branch that is no environment's starts nothing.
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("api/code.txt", "api feature");
    repo.commit("feature work");
    assert!(sync(&s, &project).await.is_empty());
    repo.git(&["checkout", "-q", "main"]);

    // A new branch for production cut from main: nothing changed since the releases built
    // on main, so nothing runs (not "everything because the branch is new").
    repo.git(&["branch", "release", "main"]);
    assert!(
        sync(&s, &project).await.is_empty(),
        "a new branch must not rebuild unchanged services"
    );
    // A change on it runs only the changed service, in production.
    repo.git(&["checkout", "-q", "release"]);
    repo.write("api/code.txt", "api v2");
    repo.commit("api fix for production");
    let r = sync(&s, &project).await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].env.as_str(), r[0].services.clone()),
        ("production", vec!["api".to_string()])
    );
    repo.git(&["checkout", "-q", "main"]);

    // Unchanged services are recorded as such.
    let unchanged = events(&s, EventKind::ServiceUnchanged).await;
    assert!(unchanged.iter().any(|e| e.payload["service"] == "web"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_push_is_measured_against_the_last_release_not_the_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = mono_repo(tmp.path());
    let c1 = repo.commit("first");
    let s = server(tmp.path(), |_| {}).await;
    let project = add(&s, &repo, None).await;
    finish_all(&s, &project).await;

    // web changes and is released at c2.
    repo.write("web/page.txt", "page v2");
    repo.commit("web v2");
    let r = sync(&s, &project).await;
    assert_eq!(r[0].services, vec!["web"]);

    // Force-push main to c1 + an api change. Against the parent (c1) web looks unchanged,
    // but its last release (c2) differs from what is now on main: web must run too.
    repo.git(&["reset", "-q", "--hard", &c1]);
    repo.write("api/code.txt", "api v2");
    let c3 = repo.commit("api v2 (history rewritten)");
    let r = sync(&s, &project).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].commit, c3);
    assert_eq!(
        r[0].services,
        vec!["api", "web"],
        "nothing may be skipped after a force-push"
    );
    assert_eq!(r[0].status, RunStatus::Succeeded);

    // A second force-push that only rewrites the message: both released at c3's content,
    // measured against c3's releases nothing changed.
    repo.git(&["commit", "-q", "--amend", "-m", "api v2, reworded"]);
    assert!(
        sync(&s, &project).await.is_empty(),
        "a rewrite without content changes runs nothing"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_notices_new_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = mono_repo(tmp.path());
    repo.commit("first");
    let s = server(tmp.path(), |_| {}).await;
    let p = s
        .engine
        .add_project(&repo.path(), None, Some(1), None, "test")
        .await
        .unwrap();
    eventually("the first run", 20, || async {
        (runs(&s, &p.name).await.len() == 1).then_some(())
    })
    .await;
    repo.write("api/code.txt", "polled");
    let c2 = repo.commit("polled change");
    let run = eventually("a run for the polled commit", 20, || {
        let c2 = c2.clone();
        let s = &s;
        let name = p.name.clone();
        async move { runs(s, &name).await.into_iter().find(|r| r.commit == c2) }
    })
    .await;
    assert_eq!(run.trigger, "poll");
    assert_eq!(finish(&s, &run).await.status, RunStatus::Succeeded);
    s.stop().await;
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    sluice_webhook::sign(secret.as_bytes(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_verify_signatures_record_rejections_and_ignore_redeliveries() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = mono_repo(tmp.path());
    repo.commit("first");
    let s = server(tmp.path(), |_| {}).await;
    let secret = "webhook-secret-123";
    let project = add(&s, &repo, Some(secret)).await;
    finish_all(&s, &project).await;
    let http = common::http();
    let url = format!("{}/hooks/github/{project}", s.url());

    repo.write("api/code.txt", "via webhook");
    let c2 = repo.commit("hooked");
    let body = json!({ "ref": "refs/heads/main", "before": "0".repeat(40), "after": c2,
                       "repository": { "clone_url": repo.path() } })
    .to_string();
    let send = |sig: String, delivery: &str| {
        http.post(&url)
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", sig)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };

    // A bad signature: 401, recorded, nothing runs.
    let bad = send("sha256=".to_string() + &"0".repeat(64), "d-bad")
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let err: Value = bad.json().await.unwrap();
    assert_eq!(err["error"]["code"], "bad_signature");
    let rejected = events(&s, EventKind::WebhookRejected).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].payload["reason"], "bad_signature");
    assert!(
        rejected[0].payload["remote"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    // A good one: 202 and a run for the pushed commit.
    let ok = send(hmac_hex(secret, body.as_bytes()), "d-1")
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let run = eventually("a run started by the webhook", 20, || {
        let (s, p, c) = (&s, project.clone(), c2.clone());
        async move { runs(s, &p).await.into_iter().find(|r| r.commit == c) }
    })
    .await;
    assert_eq!(run.trigger, "webhook");
    finish(&s, &run).await;

    // Redelivery of the same delivery id: acknowledged, starts nothing.
    let again = send(hmac_hex(secret, body.as_bytes()), "d-1")
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(events(&s, EventKind::WebhookDuplicate).await.len(), 1);
    let before = runs(&s, &project).await.len();
    // Even with a new commit waiting, the duplicate delivery does not sync.
    repo.write("api/code.txt", "not yet");
    repo.commit("waiting");
    let again = send(hmac_hex(secret, body.as_bytes()), "d-1")
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        runs(&s, &project).await.len(),
        before,
        "a redelivery must start nothing"
    );

    // GitLab token, Bitbucket signature and the generic endpoint.
    let gl = http
        .post(format!("{}/hooks/gitlab/{project}", s.url()))
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "wrong-token-value")
        .header("X-Gitlab-Event-UUID", "gl-1")
        .body(
            json!({"ref": "refs/heads/main", "before": "0".repeat(40), "after": "a".repeat(40)})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(gl.status(), 401);
    let gbody = json!({ "ref": "refs/heads/main" }).to_string();
    let generic = http
        .post(format!("{}/hooks/generic/{project}", s.url()))
        .header("X-Sluice-Delivery", "g-1")
        .header("X-Sluice-Signature", hmac_hex(secret, gbody.as_bytes()))
        .body(gbody)
        .send()
        .await
        .unwrap();
    assert_eq!(generic.status(), 202);

    // Malformed, oversized, unknown project, unknown provider: precise statuses, no panic.
    let malformed = "{not json";
    let r = http
        .post(&url)
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "d-m")
        .header(
            "X-Hub-Signature-256",
            hmac_hex(secret, malformed.as_bytes()),
        )
        .body(malformed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let big = vec![b'x'; 3 * 1024 * 1024];
    // Its own connection: the server answers before reading the whole body and closes it.
    let r = common::http()
        .post(&url)
        .header("X-GitHub-Delivery", "d-big")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = http
        .post(format!("{}/hooks/github/nope", s.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(format!("{}/hooks/svn/{project}", s.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rejected = events(&s, EventKind::WebhookRejected).await;
    assert!(
        rejected.len() >= 5,
        "every refused webhook is recorded: {rejected:?}"
    );
    s.stop().await;
}

const GATED: &str = r#"
project: gated
environments:
  staging:
    branch: main
services:
  app:
    steps:
      flaky:
        run: n=$(cat $COUNTER 2>/dev/null || echo 0); echo $((n+1)) > $COUNTER; [ $n -ge 1 ]
        env: { COUNTER: "@COUNTER@" }
        retry: { max: 2 }
      test:
        run: printf '%s' "$REPORT" > report.xml; test "$(cat verdict.txt)" = pass
        needs: [flaky]
        gate: true
        junit: ["report.xml"]
        env:
          REPORT: '<testsuite><testcase classname="t" name="ok"/><testcase classname="t" name="broken"><failure message="no"/></testcase><testcase classname="t" name="later"><skipped/></testcase></testsuite>'
      package:
        run: echo packaging
        needs: [test]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_junit_and_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let counter = tmp.path().join("counter");
    repo.write(
        "sluice.yml",
        &GATED.replace("@COUNTER@", &counter.display().to_string()),
    );
    repo.write("verdict.txt", "fail");
    repo.commit("failing gate");
    let s = server(tmp.path(), |_| {}).await;
    let project = add(&s, &repo, None).await;
    let run = finish_all(&s, &project).await.pop().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let steps = s.engine.store.steps(run.id).await.unwrap();
    let get = |n: &str| steps.iter().find(|x| x.name == n).unwrap().clone();
    // The flaky step failed once and succeeded on its retry.
    assert_eq!(get("app/flaky").status, StepStatus::Succeeded);
    assert_eq!(get("app/flaky").attempt, 2);
    assert_eq!(events(&s, EventKind::StepRetrying).await.len(), 1);
    // The gate failed; its JUnit results are stored; what needed it was skipped.
    let test = get("app/test");
    assert_eq!(test.status, StepStatus::Failed);
    let t = test.tests.unwrap();
    assert_eq!((t.passed, t.failed, t.skipped), (1, 1, 1));
    assert_eq!(t.failing, vec!["t.broken"]);
    assert_eq!(get("app/package").status, StepStatus::Skipped);
    let gate_failed = events(&s, EventKind::GateFailed).await;
    assert_eq!(gate_failed.len(), 1);
    assert_eq!(gate_failed[0].payload["tests"]["failing"][0], "t.broken");
    // A failed gate blocks the release.
    assert!(
        s.engine
            .store
            .releases(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Fixed: the gate passes, a release appears with the gate results on it.
    repo.write("verdict.txt", "pass");
    repo.commit("fixed");
    let run = sync(&s, &project).await.pop().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    let rels = s.engine.store.releases(&Default::default()).await.unwrap();
    assert_eq!(rels.len(), 1);
    assert_eq!(rels[0].version, 1);
    assert_eq!(rels[0].gates["app/test"]["status"], "succeeded");
    assert!(
        s.engine
            .paths
            .artifacts
            .join(format!("{}.tar", rels[0].artifact_sha256))
            .is_file()
    );
    assert_eq!(events(&s, EventKind::GatePassed).await.len(), 1);

    // A manual re-run of the same commit runs again but never makes a second release.
    let again = s
        .engine
        .request_run(sluice_server::engine::RunRequest {
            project: project.clone(),
            trigger: "manual".into(),
            actor: "test".into(),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(finish(&s, &again).await.status, RunStatus::Succeeded);
    assert_eq!(
        s.engine
            .store
            .releases(&Default::default())
            .await
            .unwrap()
            .len(),
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_everywhere_in_every_form() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let secret = "s3cr3t/p@ss word+tail";
    repo.write(
        "sluice.yml",
        r#"
project: masked
environments: { staging: { branch: main } }
services:
  app:
    steps:
      leak:
        secrets: [DEPLOY_TOKEN]
        run: |
          echo "plain: $DEPLOY_TOKEN"
          echo "inline:$DEPLOY_TOKEN;"
          printf '%s' "$DEPLOY_TOKEN" | base64 -w0; echo
          python3 -c 'import os,urllib.parse;print("url: " + urllib.parse.quote(os.environ["DEPLOY_TOKEN"], safe=""))'
          python3 -c 'import os,urllib.parse;print("form: " + urllib.parse.quote_plus(os.environ["DEPLOY_TOKEN"]))'
          echo "to stderr: $DEPLOY_TOKEN" >&2
          exit 3
"#,
    );
    repo.commit("leaky step");
    let s = server(tmp.path(), |c| {
        c.secrets.insert("DEPLOY_TOKEN".into(), secret.into());
    })
    .await;
    let project = add(&s, &repo, None).await;
    let run = finish_all(&s, &project).await.pop().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let lines = s
        .engine
        .store
        .logs(&LogFilter {
            run_id: run.id,
            ..Default::default()
        })
        .await
        .unwrap();
    let text: Vec<String> = lines.iter().map(|l| l.line.clone()).collect();
    let all = text.join("\n");
    let b64 = base64_std(secret.as_bytes());
    let url = "s3cr3t%2Fp%40ss%20word%2Btail";
    let form = "s3cr3t%2Fp%40ss+word%2Btail";
    for form_ in [secret, b64.as_str(), url, form] {
        assert!(
            !all.contains(form_),
            "`{form_}` leaked into the log:\n{all}"
        );
    }
    assert!(text.contains(&"plain: [MASKED]".to_string()), "{all}");
    assert!(text.contains(&"inline:[MASKED];".to_string()), "{all}");
    assert!(text.contains(&"[MASKED]".to_string()), "base64 line: {all}");
    assert!(text.contains(&"url: [MASKED]".to_string()), "{all}");
    assert!(text.contains(&"form: [MASKED]".to_string()), "{all}");
    assert!(
        lines
            .iter()
            .any(|l| l.stream == "err" && l.line == "to stderr: [MASKED]")
    );
    // Nor anywhere in the API: events and the run view.
    let body = fetch(&format!("{}/api/v1/events", s.url())).await;
    let run_body = fetch(&format!("{}/api/v1/runs/{}/logs", s.url(), run.id)).await;
    for b in [&body, &run_body] {
        assert!(!b.contains(secret) && !b.contains(&b64));
    }
    s.stop().await;
}

fn base64_std(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_kill_the_process_group_and_cancel_stops_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.write(
        "sluice.yml",
        r#"
project: slow
environments: { staging: { branch: main } }
services:
  app:
    steps:
      hang:
        run: sleep 300 & sleep 300
        timeout: 300ms
"#,
    );
    repo.commit("hangs");
    let s = server(tmp.path(), |_| {}).await;
    let project = add(&s, &repo, None).await;
    let run = finish_all(&s, &project).await.pop().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let step = s.engine.store.steps(run.id).await.unwrap().pop().unwrap();
    assert_eq!(step.status, StepStatus::TimedOut);
    assert!(
        sluice_runner::processes_with_token(s.engine.token_prefix()).is_empty(),
        "the whole group died"
    );

    // Cancel: a long step is killed and the run ends cancelled.
    repo.write(
        "sluice.yml",
        "project: slow\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n      long:\n        run: echo started; sleep 300\n      after:\n        run: 'true'\n        needs: [long]\n",
    );
    repo.commit("long");
    let started = s
        .engine
        .sync_project(&project, "poll", "test")
        .await
        .unwrap();
    let run = started.into_iter().next().unwrap();
    eventually("the long step to start", 20, || async {
        let st = s.engine.store.steps(run.id).await.unwrap();
        (st[0].status == StepStatus::Running).then_some(())
    })
    .await;
    let r = common::http()
        .post(format!("{}/api/v1/runs/{}/cancel", s.url(), run.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let done = finish(&s, &run).await;
    assert_eq!(done.status, RunStatus::Cancelled);
    let st = s.engine.store.steps(run.id).await.unwrap();
    assert_eq!(st[0].status, StepStatus::Cancelled);
    assert_eq!(st[1].status, StepStatus::Skipped);
    assert!(sluice_runner::processes_with_token(s.engine.token_prefix()).is_empty());
    // Cancelling a finished run is a conflict with a clear message.
    let r = common::http()
        .post(format!("{}/api/v1/runs/{}/cancel", s.url(), run.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_steps_run_in_parallel_up_to_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    let mut yml = String::from(
        "project: par\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n",
    );
    for i in 0..4 {
        yml.push_str(&format!("      s{i}:\n        run: sleep 0.3\n"));
    }
    repo.write("sluice.yml", &yml);
    repo.commit("four independent steps");
    let s = server(tmp.path(), |c| c.max_parallel_steps = 2).await;
    let project = add(&s, &repo, None).await;
    let run = finish_all(&s, &project).await.pop().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    let steps = s.engine.store.steps(run.id).await.unwrap();
    let spans: Vec<(i64, i64)> = steps
        .iter()
        .map(|s| (s.started_ms.unwrap(), s.finished_ms.unwrap()))
        .collect();
    let max_overlap = spans
        .iter()
        .map(|&(a, _)| spans.iter().filter(|&&(b, e)| b <= a && a < e).count())
        .max()
        .unwrap();
    assert_eq!(max_overlap, 2, "two at a time: {spans:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_errors_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.write("sluice.yml", "project: broken\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n      t:\n        run: 'true'\n        nedds: [x]\n");
    repo.commit("typo");
    let s = server(tmp.path(), |_| {}).await;
    let http = common::http();
    let api = format!("{}/api/v1", s.url());
    let seq_before = s.engine.store.last_event_seq().await.unwrap();

    // A repository whose sluice.yml is invalid: 422 with the positioned message.
    let r = http
        .post(format!("{api}/projects"))
        .json(&json!({ "source": repo.path() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let msg = r.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("sluice.yml:8:9") && msg.contains("did you mean `needs`"),
        "{msg}"
    );
    // An unreachable repository.
    let r = http
        .post(format!("{api}/projects"))
        .json(&json!({ "source": "/does/not/exist" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Malformed bodies and unknown fields.
    let r = http
        .post(format!("{api}/projects"))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["hint"].is_string());
    let r = http
        .post(format!("{api}/projects"))
        .json(&json!({ "sorce": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown run ids and projects.
    for path in [
        "/runs/999",
        "/runs/abc",
        "/runs/-1",
        "/runs/999/logs",
        "/projects/none",
    ] {
        let r = http.get(format!("{api}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "not_found"
        );
    }
    let r = http
        .get(format!("{api}/runs?status=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{api}/projects/none/runs"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nothing was recorded by any of it.
    assert!(s.engine.store.projects().await.unwrap().is_empty());
    assert_eq!(s.engine.store.last_event_seq().await.unwrap(), seq_before);

    // An invalid sluice.yml pushed to a registered project: a config.invalid event, no run.
    repo.write("sluice.yml", "project: later\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n      t:\n        run: 'true'\n");
    repo.commit("fixed");
    let project = add(&s, &repo, None).await;
    finish_all(&s, &project).await;
    repo.write("sluice.yml", "project: later\nenvironments: { staging: { branch: main } }\nservices:\n  app:\n    steps:\n      t:\n        run: 'true'\n        needs: [t]\n");
    repo.commit("cycle");
    assert!(sync(&s, &project).await.is_empty());
    let invalid = events(&s, EventKind::ConfigInvalid).await;
    assert_eq!(invalid.len(), 1);
    assert!(
        invalid[0].payload["error"]
            .as_str()
            .unwrap()
            .contains("needs")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_metrics_health_and_openapi() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = mono_repo(tmp.path());
    repo.commit("first");
    let s = server(tmp.path(), |_| {}).await;
    let project = add(&s, &repo, None).await;
    let run = finish_all(&s, &project).await.pop().unwrap();
    let base = s.url();
    assert_eq!(fetch(&format!("{base}/healthz")).await, "ok\n");
    let metrics = fetch(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("sluice_runs{status=\"succeeded\"} 1"),
        "{metrics}"
    );
    let doc = fetch_json(&format!("{base}/api/v1/openapi.json")).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let detail = fetch_json(&format!("{base}/api/v1/runs/{}", run.id)).await;
    assert_eq!(detail["steps"].as_array().unwrap().len(), 3);
    assert_eq!(detail["releases"].as_array().unwrap().len(), 2);
    // SSE: the event stream replays from a cursor and the log stream ends with the status.
    let text = fetch(&format!("{base}/api/v1/runs/{}/logs/stream", run.id)).await;
    assert!(
        text.contains("event: log") && text.contains("api v1") && text.contains("event: end"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_retention_prunes_old_files_but_keeps_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = mono_repo(tmp.path());
    repo.commit("first");
    let s = server(tmp.path(), |c| c.keep_artifacts = 1).await;
    let project = add(&s, &repo, None).await;
    finish_all(&s, &project).await;
    for i in 2..=3 {
        repo.write("api/code.txt", &format!("api v{i}"));
        repo.commit(&format!("api v{i}"));
        sync(&s, &project).await;
    }
    let api = s
        .engine
        .store
        .releases(&sluice_store::ReleaseFilter {
            project: Some(project.clone()),
            service: Some("api".into()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        api.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    let file = |sha: &str| s.engine.paths.artifacts.join(format!("{sha}.tar"));
    assert!(!api[0].artifact_pruned && file(&api[0].artifact_sha256).is_file());
    for old in &api[1..] {
        assert!(old.artifact_pruned, "v{} should be pruned", old.version);
        assert!(!file(&old.artifact_sha256).exists());
    }
    assert_eq!(events(&s, EventKind::ArtifactsPruned).await.len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_filter_that_matches_nothing_is_refused_at_registration() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.write("services/api/main.py", "print('hi')");
    repo.write(
        "sluice.yml",
        "project: typo\nenvironments: { staging: { branch: main } }\nservices:\n  api:\n    paths: [\"servces/api/**\"]\n    steps:\n      t:\n        run: 'true'\n",
    );
    repo.commit("typo in paths");
    let s = server(tmp.path(), |_| {}).await;
    let err = s
        .engine
        .add_project(&repo.path(), None, Some(0), None, "test")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sluice.yml:5:13")
            && msg.contains("servces/api/**")
            && msg.contains("matches no file"),
        "{msg}"
    );
    assert!(s.engine.store.projects().await.unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(&s.engine.paths.mirrors).unwrap().count(),
        0,
        "no probe left behind"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_are_restored_by_key_and_renewed_when_key_files_change() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path());
    repo.write(
        "sluice.yml",
        r#"
project: cached
environments: { staging: { branch: main } }
services:
  app:
    steps:
      deps:
        run: |
          if [ -f deps/installed ]; then echo "deps from cache: $(cat deps/installed)"
          else mkdir -p deps && echo "run $SLUICE_RUN_ID" > deps/installed && echo "deps installed"; fi
        cache:
          - paths: [deps]
            key_files: [lock.txt]
"#,
    );
    repo.write("lock.txt", "v1");
    repo.commit("first");
    let s = server(tmp.path(), |_| {}).await;
    let project = add(&s, &repo, None).await;
    let log_of = |run: i64| {
        let s = &s;
        async move {
            s.engine
                .store
                .logs(&LogFilter {
                    run_id: run,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.line)
                .collect::<Vec<_>>()
        }
    };
    let r1 = finish_all(&s, &project).await.pop().unwrap();
    assert!(log_of(r1.id).await.contains(&"deps installed".to_string()));

    let manual = || sluice_server::engine::RunRequest {
        project: project.clone(),
        trigger: "manual".into(),
        actor: "test".into(),
        force: true,
        ..Default::default()
    };
    let r2 = finish(&s, &s.engine.request_run(manual()).await.unwrap()).await;
    let l2 = log_of(r2.id).await;
    assert!(
        l2.contains(&format!("deps from cache: run {}", r1.id)),
        "{l2:?}"
    );
    assert!(
        l2.iter()
            .any(|l| l.starts_with("cache ") && l.ends_with("restored")),
        "{l2:?}"
    );

    // A changed key file means a new key: a miss, and a fresh install.
    repo.write("lock.txt", "v2");
    repo.commit("bump lock");
    let r3 = sync(&s, &project).await.pop().unwrap();
    let l3 = log_of(r3.id).await;
    assert!(l3.contains(&"deps installed".to_string()), "{l3:?}");
    assert!(
        l3.iter()
            .any(|l| l.starts_with("cache ") && l.ends_with("miss")),
        "{l3:?}"
    );
    s.stop().await;
}
