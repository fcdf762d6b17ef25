//! Integration tests of `sluice-spec`: every invalid-file message as a snapshot, valid files
//! to the expected model, path filters, generated docs kept current, and no panics on junk.
//!
//! Snapshots live in `tests/snapshots/`; create or accept new ones with
//! `INSTA_UPDATE=always cargo test -p sluice-spec` and review the files by eye.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sluice_spec::{
    AllowEntry, AnalysisSpec, Autoscale, BuildImage, Cache, CanaryStepSpec, Config, ContainerImage,
    Date, Deploy, DeployTarget, Environment, Health, HealthCheckSpec, InsufficientTraffic,
    Resources, Retry, RuntimeSpec, ScanSpec, Service, Step, StepKind, StickySpec, StrategySpec,
    VulnSeverity, check_paths, parse, path_matches,
};

/// Parses a file that must be invalid and returns all messages, one a line.
fn errors(source: &str) -> String {
    match parse(source, "sluice.yml") {
        Ok(config) => panic!("expected errors, parsed {config:#?}"),
        Err(diags) => diags.to_string(),
    }
}

/// A valid file with one service `api`; `steps` is spliced in under `steps:`.
fn with_steps(steps: &str) -> String {
    format!(
        "project: shop\nenvironments:\n  staging:\n    branch: main\nservices:\n  api:\n    steps:\n{steps}"
    )
}

/// A valid file with environments `staging` and `production` and one service `api`;
/// `deploy` (indented by six spaces) is spliced in under `deploy:`.
fn with_deploy(deploy: &str) -> String {
    format!(
        "project: shop\nenvironments:\n  staging:\n    branch: main\n  production:\n    branch: release\nservices:\n  api:\n    steps: {{lint: {{run: x}}}}\n    deploy:\n{deploy}"
    )
}

/// Like [`with_deploy`], with `strategy` (indented by ten spaces) under the `staging`
/// environment's `strategy:`.
fn with_strategy(strategy: &str) -> String {
    with_deploy(&format!(
        "      start: ./server\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          strategy:\n{strategy}"
    ))
}

/// A valid file with one service `api` and `rules` (indented by four spaces) under
/// `alerts.rules`.
fn with_rules(rules: &str) -> String {
    format!(
        "project: shop\nenvironments:\n  staging:\n    branch: main\nservices:\n  api:\n    steps: {{lint: {{run: x}}}}\nalerts:\n  rules:\n{rules}"
    )
}

/// A valid file with environments `staging` and `production` and one service `api` whose
/// body (indented by four spaces) is `service`.
fn with_service(service: &str) -> String {
    format!(
        "project: shop\nenvironments:\n  staging:\n    branch: main\n  production:\n    branch: release\nservices:\n  api:\n{service}"
    )
}

/// Every invalid container and autoscaling case: (snapshot name, file).
fn invalid_container_cases() -> Vec<(&'static str, String)> {
    vec![
        (
            "step_kind_conflicts",
            with_steps(
                "      a:\n        run: make\n        build_image: .\n      b:\n        scan: {}\n        build_image: {context: x}\n      c:\n        gate: true\n",
            ),
        ),
        (
            "step_image_errors",
            with_steps(
                "      a:\n        run: x\n        image: Node:22\n      b:\n        run: x\n        image: \"node: 22\"\n      c:\n        run: x\n        image: node@sha256:abc\n      d:\n        run: x\n        image: 22\n      e:\n        run: x\n        image: ghcr.io//tools:1\n",
            ),
        ),
        (
            "build_image_errors",
            with_steps(
                "      img:\n        build_image:\n          context: ../outside\n          dockerfile: ../Dockerfile\n          args: {1X: a, OK: [1], GOOD: 2}\n          target: 1st\n          labels: {sluice.commit: x, \"a b\": y}\n          file: Dockerfile\n",
            ),
        ),
        (
            "build_image_bad_paths",
            with_steps("      a:\n        build_image: /srv/app\n"),
        ),
        (
            "build_step_command_fields",
            with_steps(
                "      img:\n        build_image: .\n        image: node:22\n        workdir: app\n        env: {A: b}\n        secrets: [NPM_TOKEN]\n        junit: [a.xml]\n        artifacts: [dist]\n        cache: [{paths: [x]}]\n      audit:\n        scan: {}\n        needs: [img]\n        artifacts: [report.json]\n",
            ),
        ),
        (
            "two_build_steps",
            with_steps(
                "      a:\n        build_image: services/a\n      b:\n        build_image: services/b\n",
            ),
        ),
        (
            "scan_errors",
            with_steps(
                "      audit:\n        scan:\n          fail_on: severe\n          lockfiles: \"yes\"\n          allow:\n            - {reason: x, expires: 2026-01-01}\n            - {id: RUSTSEC-2020-0001, reason: \" \", expires: 2026-02-30}\n            - {id: RUSTSEC-2020-0001, reason: ok, expires: 2026}\n            - {id: RUSTSEC-2020-0001, reason: ok, expires: 2026-03-01}\n            - {id: \"GHSA x\", reason: ok, expires: 2026-03-01, until: x}\n            - RUSTSEC-2020-0002\n",
            ),
        ),
        (
            "scan_image_without_build",
            with_steps("      audit:\n        scan: {image: true}\n"),
        ),
        (
            "scan_without_need",
            with_steps(
                "      test:\n        run: x\n      img:\n        build_image: .\n        needs: [test]\n      audit:\n        scan: {fail_on: critical}\n        needs: [test]\n      lockfiles:\n        scan: {image: false}\n",
            ),
        ),
        (
            "scan_nothing",
            with_service(
                "    steps:\n      audit:\n        scan: {lockfiles: false}\n  web:\n    steps:\n      img:\n        build_image: .\n      audit:\n        scan: {lockfiles: false, image: false}\n        image: node:22\n",
            ),
        ),
        (
            "deploy_runtime_errors",
            with_service(
                "    steps: {lint: {run: x}}\n    deploy:\n      start: ./server\n      runtime: dockr\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n  web:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./server\n      image: python:3.12\n      environments:\n        staging: {expose: 127.0.0.1:8081}\n",
            ),
        ),
        (
            "deploy_image_with_build_step",
            with_service(
                "    steps:\n      img: {build_image: .}\n    deploy:\n      runtime: docker\n      image: python:3.12\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n",
            ),
        ),
        (
            "deploy_built_image_workdir",
            with_service(
                "    steps:\n      img: {build_image: .}\n    deploy:\n      runtime: docker\n      workdir: app\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n",
            ),
        ),
        (
            "deploy_docker_needs_start",
            with_service(
                "    steps: {lint: {run: x}}\n    deploy:\n      runtime: docker\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n",
            ),
        ),
        (
            "resources_errors",
            with_service(
                "    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      resources: {cpus: 0, memory: 256mb}\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n  web:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      resources: {cpus: half, memory: 1Mi, disk: 1Gi}\n      environments:\n        staging: {expose: 127.0.0.1:8081}\n  db:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      resources: {cpus: 65, memory: 2048Gi}\n      environments:\n        staging: {expose: 127.0.0.1:8082}\n",
            ),
        ),
        (
            "autoscale_errors",
            with_service(
                "    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      autoscale: {min: 2, cpu: 0%, memory: 80%, interval: 0s, scale_up_step: 0}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          autoscale: {min: 5, max: 3, cpu: 0.7}\n        production:\n          expose: 127.0.0.1:8081\n          autoscale: true\n  web:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      autoscale: {max: 4, cooldown: soon}\n      environments:\n        staging: {expose: 127.0.0.1:8082, autoscale: {max: 65, cpu: 101%, memory: 50}}\n",
            ),
        ),
        (
            "autoscale_replicas_outside",
            with_service(
                "    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      replicas: 1\n      autoscale: {min: 2, max: 4, cpu: 70%}\n      environments:\n        staging: {expose: 127.0.0.1:8080, replicas: 20}\n  web:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./s\n      replicas: 2\n      environments:\n        staging: {expose: 127.0.0.1:8081}\n        production:\n          expose: 127.0.0.1:8082\n          autoscale: {min: 3, max: 6, cpu: 60%}\n",
            ),
        ),
    ]
}

/// Every invalid `deploy` case: (snapshot name, file).
fn invalid_deploy_cases() -> Vec<(&'static str, String)> {
    vec![
        ("deploy_unknown_fields", with_deploy("      start: ./server\n      replica: 2\n      helth: {http: /}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          exposed: 127.0.0.1:8081\n          healthcheck: {}\n")),
        ("deploy_missing_start_and_environments", with_deploy("      replicas: 2\n")),
        ("deploy_missing_expose", with_deploy("      start: ./server\n      environments:\n        staging:\n          replicas: 2\n        production:\n")),
        ("deploy_empty_start_and_environments", with_deploy("      start: \"  \"\n      environments: {}\n")),
        ("deploy_unknown_environment", with_deploy("      start: ./server\n      environments:\n        prod:\n          expose: 127.0.0.1:8080\n        stagin:\n          expose: 127.0.0.1:8081\n        qa:\n          expose: 127.0.0.1:8082\n")),
        ("deploy_bad_addresses", with_deploy("      start: ./server\n      environments:\n        staging:\n          expose: localhost:8080\n          preview: 127.0.0.1\n        production:\n          expose: 8080\n          preview: 127.0.0.1:0\n")),
        ("deploy_bad_addresses_more", with_deploy("      start: ./server\n      environments:\n        staging:\n          expose: 127.0.0.1:70000\n          preview: \"::1:8080\"\n        production:\n          expose: [127.0.0.1]\n          preview: \":9000\"\n")),
        ("deploy_duplicate_addresses", "project: shop\nenvironments:\n  staging: {branch: main}\n  production: {branch: release}\nservices:\n  api:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./api\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n        production: {expose: 127.0.0.1:9000, preview: 127.0.0.1:9000}\n  web:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./web\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n        production: {expose: 0.0.0.0:9000}\n".into()),
        ("deploy_counts_out_of_range", with_deploy("      start: ./server\n      replicas: 0\n      max_restarts: -1\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          replicas: 65\n        production:\n          expose: 127.0.0.1:8081\n          replicas: 1.5\n")),
        ("deploy_env_errors", with_deploy("      start: ./server\n      env: {PORT: 80, 1X: y, OK: [a]}\n      workdir: ../other\n      stop_grace: soon\n      progress_deadline: 0s\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          env: {PORT: \"81\"}\n")),
        ("deploy_secret_errors", with_deploy("      start: ./server\n      secrets: [DB_URL, db_url, {name: TLS, file: \"yes\"}, {file: true}, {name: DB_URL}, {name: X, fille: true}, [A]]\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n")),
        ("deploy_secrets_not_a_list", with_deploy("      start: ./server\n      secrets: DB_URL\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n")),
        ("health_both_kinds", with_deploy("      start: ./server\n      health:\n        http: /healthz\n        tcp: true\n        command: ./check\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n")),
        ("health_no_kind", with_deploy("      start: ./server\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          health: {timeout: 5s}\n        production:\n          expose: 127.0.0.1:8081\n          health:\n")),
        ("health_http_errors", with_deploy("      start: ./server\n      health: {http: healthz, expect: 700}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          health: {http: \"/health check\", expect: \"200\"}\n")),
        ("health_zero_durations_and_thresholds", with_deploy("      start: ./server\n      health:\n        tcp: false\n        timeout: 0s\n        interval: 0ms\n        success_threshold: 0\n        failure_threshold: 101\n        initial_delay: 1\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n")),
        ("health_expect_without_http", with_deploy("      start: ./server\n      health: {tcp: true, expect: 200}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          health: {command: \"\", expect: 204}\n")),
        ("canary_weights", with_strategy("            canary:\n              steps:\n                - weight: 10\n                - weight: 50\n                  pause: 1m\n                - weight: 50\n                - weight: 30\n                - weight: 101\n                - {pause: 1m}\n                - {weight: 0}\n")),
        ("canary_empty_steps", with_strategy("            canary: {steps: []}\n")),
        ("canary_missing_steps", with_strategy("            canary:\n              analysis: {max_error_rate: 0.1}\n")),
        ("canary_analysis_out_of_range", with_strategy("            canary:\n              steps: [{weight: 100}]\n              analysis:\n                max_error_rate: 1.5\n                max_latency: 0s\n                quantile: 1\n                min_requests: -1\n                insufficient_traffic: wiat\n                max_wait: 0s\n                interval: 0s\n                max_errors: 3\n")),
        ("canary_quantile_zero_and_bad_policy", with_strategy("            canary:\n              steps: [{weight: 100}]\n              analysis: {quantile: 0, max_error_rate: -0.1, insufficient_traffic: skip}\n")),
        ("sticky_header_and_cookie", with_strategy("            canary:\n              steps: [{weight: 100}]\n              sticky: {header: X-Canary, cookie: canary, value: \"1\"}\n")),
        ("sticky_neither_and_bad_names", "project: shop\nenvironments:\n  staging: {branch: main}\n  production: {branch: release}\nservices:\n  api:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./server\n      strategy: {canary: {steps: [{weight: 100}], sticky: {value: \"1\"}}}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          strategy: {canary: {steps: [{weight: 100}], sticky: {header: X Canary, value: \"\"}}}\n        production:\n          expose: 127.0.0.1:8081\n          strategy: {canary: {steps: [{weight: 100}], sticky: {cookie: \"a;b\"}}}\n".into()),
        ("rolling_deadlock", "project: shop\nenvironments:\n  staging: {branch: main}\n  production: {branch: release}\nservices:\n  api:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./server\n      strategy: {rolling: {max_surge: 0}}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          strategy: {rolling: {max_unavailable: 0, max_surge: 0}}\n        production:\n          expose: 127.0.0.1:8081\n          strategy: {rolling: {max_surge: 65, max_unavailable: x}}\n".into()),
        ("unknown_strategy", "project: shop\nenvironments:\n  staging: {branch: main}\n  production: {branch: release}\nservices:\n  api:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./server\n      strategy: rollin\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          strategy: {blue-green: {preview: false}}\n        production:\n          expose: 127.0.0.1:8081\n          strategy: recreate\n".into()),
        ("strategy_forms", "project: shop\nenvironments:\n  staging: {branch: main}\n  production: {branch: release}\nservices:\n  api:\n    steps: {lint: {run: x}}\n    deploy:\n      start: ./server\n      strategy: canary\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          strategy:\n            rolling: {max_surge: 2}\n            canary: {steps: [{weight: 100}]}\n        production:\n          expose: 127.0.0.1:8081\n          strategy: {}\n".into()),
        ("strategy_wrong_types", with_deploy("      start: ./server\n      strategy: [rolling]\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n          strategy: {blue_green: {keep_warm: 5, preview: yes, auto_promote: 1}}\n")),
        ("blue_green_preview_without_address", with_deploy("      start: ./server\n      strategy: {blue_green: {preview: true}}\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n        production:\n          expose: 127.0.0.1:8081\n          preview: 127.0.0.1:9081\n")),
    ]
}

/// Every invalid case: (snapshot name, file). The snapshot is the full positioned output.
fn invalid_cases() -> Vec<(&'static str, String)> {
    let mut cases = invalid_pipeline_cases();
    cases.extend(invalid_deploy_cases());
    cases.extend(invalid_container_cases());
    cases
}

/// Invalid cases outside `deploy`.
fn invalid_pipeline_cases() -> Vec<(&'static str, String)> {
    vec![
        ("malformed_yaml", "project: shop\nenvironments: [staging\nservices: {}\n".into()),
        ("malformed_yaml_indentation", "project: shop\nenvironments:\n  staging:\n    branch: main\n   oops: 1\n".into()),
        ("tab_indentation", "project: shop\nenvironments:\n\tstaging: {}\n".into()),
        ("unknown_field_did_you_mean", with_steps("      lint:\n        run: ./lint.sh\n      test:\n        run: make test\n        nedds: [lint]\n")),
        ("unknown_field_no_suggestion", with_steps("      lint:\n        run: ./lint.sh\n        tags: [docker]\n")),
        ("unknown_top_level_field", "projekt: shop\nenvironments:\n  staging: {branch: main}\nservices:\n  api:\n    steps: {lint: {run: x}}\nnotify: ops\n".into()),
        ("cycle_two_steps", with_steps("      a:\n        run: x\n        needs: [b]\n      b:\n        run: y\n        needs: [a]\n")),
        ("cycle_three_steps", with_steps("      lint:\n        run: x\n      a:\n        run: x\n        needs: [lint, c]\n      b:\n        run: y\n        needs: [a]\n      c:\n        run: z\n        needs: [b]\n")),
        ("missing_run", with_steps("      lint:\n        gate: true\n      test:\n")),
        ("empty_run", with_steps("      lint:\n        run: \"  \"\n")),
        ("run_is_a_number", with_steps("      lint:\n        run: 123\n")),
        ("unknown_need", with_steps("      lint:\n        run: x\n      test:\n        run: y\n        needs: [lnt]\n")),
        ("self_need", with_steps("      test:\n        run: y\n        needs: [test]\n")),
        ("needs_is_a_string", with_steps("      lint:\n        run: x\n      test:\n        run: y\n        needs: lint\n")),
        ("duplicate_step", with_steps("      lint:\n        run: x\n      lint:\n        run: y\n")),
        ("duplicate_field", with_steps("      lint:\n        run: x\n        run: y\n")),
        ("duplicate_top_level_key", "project: shop\nproject: shop2\nenvironments: {staging: {branch: main}}\nservices: {api: {steps: {lint: {run: x}}}}\n".into()),
        ("bad_duration", with_steps("      lint:\n        run: x\n        timeout: 10 minutes\n")),
        ("duration_without_unit", with_steps("      lint:\n        run: x\n        timeout: 600\n")),
        ("duration_zero", with_steps("      lint:\n        run: x\n        timeout: 0s\n")),
        ("duration_too_long", with_steps("      lint:\n        run: x\n        timeout: 25h\n")),
        ("bad_project_name", "project: Shop_1\nenvironments: {staging: {branch: main}}\nservices: {api: {steps: {lint: {run: x}}}}\n".into()),
        ("project_name_too_long", format!("project: {}\nenvironments: {{staging: {{branch: main}}}}\nservices: {{api: {{steps: {{lint: {{run: x}}}}}}}}\n", "a".repeat(64))),
        ("bad_service_and_step_names", "project: shop\nenvironments: {staging: {branch: main}}\nservices:\n  Api:\n    steps:\n      -lint:\n        run: x\n".into()),
        ("empty_services", "project: shop\nenvironments:\n  staging:\n    branch: main\nservices: {}\n".into()),
        ("empty_environments_and_steps", "project: shop\nenvironments:\nservices:\n  api:\n    steps: {}\n".into()),
        ("wrong_type_gate", with_steps("      lint:\n        run: x\n        gate: \"yes\"\n")),
        ("wrong_type_service", "project: shop\nenvironments: {staging: {branch: main}}\nservices:\n  api: [lint]\n".into()),
        ("bad_glob", "project: shop\nenvironments: {staging: {branch: main}}\nservices:\n  api:\n    paths: [\"services/{api\", \"ok/**\", \"libs/[a\"]\n    steps: {lint: {run: x}}\n".into()),
        ("glob_escapes_root", with_steps("      lint:\n        run: x\n        artifacts: [\"../secrets/**\", \"/etc/passwd\"]\n")),
        ("workdir_escape", with_steps("      lint:\n        run: x\n        workdir: services/../../other\n")),
        ("workdir_absolute", with_steps("      lint:\n        run: x\n        workdir: /srv/api\n")),
        ("duplicate_branch", "project: shop\nenvironments:\n  staging:\n    branch: main\n  production:\n    branch: main\nservices: {api: {steps: {lint: {run: x}}}}\n".into()),
        ("bad_env_var_name", "project: shop\nenvironments: {staging: {branch: main}}\nservices:\n  api:\n    env: { 1BAD: x, GOOD: y }\n    steps:\n      lint:\n        run: x\n        env:\n          MY-VAR: z\n".into()),
        ("env_value_missing", with_steps("      lint:\n        run: x\n        env:\n          TOKEN:\n          LIST: [a]\n")),
        ("retry_out_of_range", with_steps("      lint:\n        run: x\n        retry: 11\n")),
        ("retry_long_form_errors", with_steps("      lint:\n        run: x\n        retry:\n          max: -1\n          on: [failures]\n          delay: soon\n")),
        ("retry_missing_max", with_steps("      lint:\n        run: x\n        retry: {on: [timeout]}\n")),
        ("retry_wrong_type", with_steps("      lint:\n        run: x\n        retry: always\n")),
        ("bad_secret_name", with_steps("      lint:\n        run: x\n        secrets: [NPM_TOKEN, npm_token]\n")),
        ("cache_errors", with_steps("      lint:\n        run: x\n        cache:\n          - key_files: [package-lock.json]\n          - paths: [\"..\"]\n            keyfiles: [a]\n")),
        ("protection_errors", "project: shop\nenvironments:\n  staging:\n    branch: main\n    approvals: 1\n  production:\n    branch: release\n    protected: \"yes\"\n    approvals: 11\n    wait_timer: 25h\n  qa:\n    branch: qa\n    wait_timer: 5m\nservices: {api: {steps: {lint: {run: x}}}}\n".into()),
        ("rule_metrics_path_errors", with_rules("    proxy_only:\n      service: api\n      expr: error_rate > 0.1\n      metrics_path: /metrics\n    relative:\n      service: api\n      expr: last(queue_depth) > 5\n      metrics_path: metrics\n    blank:\n      service: api\n      expr: last(queue_depth) > 5\n      metrics_path: \"/my metrics\"\n")),
        ("not_a_mapping", "- project: shop\n- services: {}\n".into()),
        ("scalar_document", "just some text\n".into()),
        ("empty_file", "".into()),
        ("only_comments", "# sluice.yml\n\n# nothing yet\n".into()),
        ("missing_top_level_fields", "project: shop\n".into()),
        ("many_errors_at_once", "project: Shop\nenvironments:\n  staging:\n    brnch: main\nservices:\n  api:\n    steps:\n      lint:\n        run: ''\n        timeout: 1x\n      test:\n        run: make\n        needs: [lint, build]\n".into()),
    ]
}

#[test]
fn invalid_files_snapshots() {
    let cases = invalid_cases();
    assert!(cases.len() >= 20);
    assert!(invalid_deploy_cases().len() >= 15);
    for (name, source) in cases {
        let output = errors(&source);
        insta::with_settings!({ description => source.clone(), omit_expression => true }, {
            insta::assert_snapshot!(name, output);
        });
    }
}

#[test]
fn every_message_is_positioned_and_styled() {
    for (name, source) in invalid_cases() {
        let Err(diags) = parse(&source, "sluice.yml") else {
            panic!("{name} parsed")
        };
        let lines = source.lines().count().max(1);
        let mut last = (0, 0);
        for d in &diags.0 {
            assert!(d.line >= 1 && d.line <= lines + 1, "{name}: {d}");
            assert!(d.column >= 1, "{name}: {d}");
            assert!((d.line, d.column) >= last, "{name}: not in file order: {d}");
            last = (d.line, d.column);
            assert!(!d.message.ends_with('.'), "{name}: {d}");
            assert!(
                !d.message.starts_with(|c: char| c.is_uppercase()),
                "{name}: {d}"
            );
        }
    }
}

/// The line/column point at the offending token, not just somewhere near.
#[test]
fn positions_point_at_the_token() {
    let at = |source: &str| {
        let diags = parse(source, "f").unwrap_err().0;
        let d = &diags[0];
        let line = source.lines().nth(d.line - 1).unwrap();
        line[d.column - 1..].to_owned()
    };
    let src = with_steps(
        "      lint:\n        run: x\n      test:\n        run: y\n        nedds: [lint]\n",
    );
    assert!(at(&src).starts_with("nedds"));
    let src = with_steps(
        "      lint:\n        run: x\n        needs: [a, lnt]\n      a:\n        run: y\n",
    );
    assert!(at(&src).starts_with("lnt]"));
    let src = with_steps("      lint:\n        run: x\n        timeout: 5 min\n");
    assert!(at(&src).starts_with("5 min"));
    let src = with_steps("      lint:\n        run: x\n      lint:\n        run: y\n");
    let d = &parse(&src, "f").unwrap_err().0[0];
    assert_eq!((d.line, d.column), (10, 7), "{d}");
    let src = "project: shop\nenvironments:\n  a: {branch: main}\n  b: {branch: main}\nservices: {api: {steps: {l: {run: x}}}}\n";
    assert!(at(src).starts_with("main}"));
    assert_eq!(parse(src, "f").unwrap_err().0[0].line, 4);
}

fn step(name: &str, run: &str) -> Step {
    Step {
        name: name.into(),
        kind: StepKind::Run {
            run: run.into(),
            image: None,
        },
        needs: vec![],
        env: BTreeMap::new(),
        workdir: None,
        timeout: Duration::from_secs(30 * 60),
        retry: Retry::default(),
        gate: false,
        junit: vec![],
        artifacts: vec![],
        cache: vec![],
        secrets: vec![],
    }
}

#[test]
fn minimal_file_gets_defaults() {
    let src = "project: shop\nenvironments:\n  production:\n    branch: release\n  staging:\n    branch: main\nservices:\n  web:\n    steps:\n      test:\n        run: make test\n      build:\n        run: make\n";
    let config = parse(src, "sluice.yml").unwrap();
    assert_eq!(
        config,
        Config {
            project: "shop".into(),
            environments: vec![
                Environment {
                    name: "production".into(),
                    branch: "release".into(),
                    protected: false,
                    approvals: 0,
                    wait_timer: Duration::ZERO,
                },
                Environment {
                    name: "staging".into(),
                    branch: "main".into(),
                    protected: false,
                    approvals: 0,
                    wait_timer: Duration::ZERO,
                },
            ],
            services: vec![Service {
                name: "web".into(),
                paths: vec![],
                steps: vec![step("test", "make test"), step("build", "make")],
                deploy: None,
            }],
            alerts: sluice_spec::Alerts::default(),
            oncall: sluice_spec::OnCall::default(),
        }
    );
}

#[test]
fn full_example_parses_to_the_model() {
    let config = parse(sluice_spec::example(), "sluice.yml").unwrap();
    assert_eq!(config.project, "shop");
    let envs: Vec<_> = config
        .environments
        .iter()
        .map(|e| (e.name.as_str(), e.branch.as_str()))
        .collect();
    assert_eq!(envs, [("staging", "main"), ("production", "release")]);
    let services: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(services, ["api", "web", "cart"]);
    let api = &config.services[0];
    assert_eq!(api.paths, ["services/api/**", "libs/common/**"]);
    let names: Vec<_> = api.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["lint", "test", "package"]);

    let lint = &api.steps[0];
    assert_eq!(
        lint.env,
        BTreeMap::from([("RUST_LOG".into(), "info".into())])
    );
    assert_eq!(lint.timeout, Duration::from_secs(1800));

    let test = &api.steps[1];
    let mut expected = step("test", "make test");
    expected.needs = vec!["lint".into()];
    expected.gate = true;
    expected.timeout = Duration::from_secs(600);
    expected.retry = Retry {
        max: 2,
        on_failure: true,
        on_timeout: true,
        delay: Duration::from_secs(1),
    };
    expected.env = BTreeMap::from([
        ("CI".into(), "true".into()),
        ("JOBS".into(), "4".into()),
        ("RUST_LOG".into(), "info".into()),
    ]);
    expected.workdir = Some("services/api".into());
    expected.junit = vec!["services/api/target/junit.xml".into()];
    assert_eq!(test, &expected);

    let package = &api.steps[2];
    assert_eq!(
        package.retry,
        Retry {
            max: 1,
            ..Retry::default()
        }
    );
    assert_eq!(package.artifacts, ["services/api/dist/**"]);
    assert_eq!(
        package.cache,
        [Cache {
            paths: vec!["services/api/node_modules".into()],
            key_files: vec!["services/api/package-lock.json".into()],
        }]
    );
    assert_eq!(package.secrets, ["NPM_TOKEN"]);
    assert_eq!(config.services[1].paths, ["services/web"]);
}

#[test]
fn retry_forms_env_values_and_workdir_normalization() {
    let src = with_steps(concat!(
        "      a:\n        run: x\n        retry: {max: 3, on: [timeout], delay: 250ms}\n",
        "        env: {PRICE: 1.50, ON: yes, FLAG: true, EMPTY: \"\", N: 0x1F}\n",
        "        workdir: ./services/api/\n",
        "      b:\n        run: y\n        retry: 0\n        workdir: .\n        needs:\n",
    ));
    let config = parse(&src, "sluice.yml").unwrap();
    let [a, b] = &config.services[0].steps[..] else {
        panic!()
    };
    assert_eq!(
        a.retry,
        Retry {
            max: 3,
            on_failure: false,
            on_timeout: true,
            delay: Duration::from_millis(250)
        }
    );
    assert_eq!(a.env["PRICE"], "1.50");
    assert_eq!(a.env["ON"], "yes");
    assert_eq!(a.env["FLAG"], "true");
    assert_eq!(a.env["EMPTY"], "");
    assert_eq!(a.env["N"], "0x1F");
    assert_eq!(a.workdir.as_deref(), Some("services/api"));
    assert_eq!(b.retry, Retry::default());
    assert_eq!(b.workdir, None);
    assert!(b.needs.is_empty());
}

#[test]
fn step_env_wins_over_service_env() {
    let src = "project: p\nenvironments: {s: {branch: main}}\nservices:\n  api:\n    env: {A: service, B: service}\n    steps:\n      t:\n        run: x\n        env: {B: step}\n";
    let config = parse(src, "f").unwrap();
    let env = &config.services[0].steps[0].env;
    assert_eq!(env["A"], "service");
    assert_eq!(env["B"], "step");
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn addr(text: &str) -> std::net::SocketAddr {
    text.parse().unwrap()
}

/// The smallest deploy section: every default filled in.
#[test]
fn minimal_deploy_gets_defaults() {
    let src = with_deploy(
        "      start: ./server\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n",
    );
    let config = parse(&src, "sluice.yml").unwrap();
    assert_eq!(
        config.services[0].deploy,
        Some(Deploy {
            start: Some("./server".into()),
            workdir: None,
            runtime: RuntimeSpec::Process,
            resources: Resources::default(),
            stop_grace: SECS(10),
            progress_deadline: SECS(60),
            max_restarts: 3,
            request_timeout: SECS(30),
            secrets: vec![],
            targets: vec![DeployTarget {
                env: "staging".into(),
                expose: addr("127.0.0.1:8080"),
                preview: None,
                replicas: 1,
                env_vars: BTreeMap::new(),
                health: Health {
                    check: HealthCheckSpec::Tcp { timeout: SECS(2) },
                    interval: SECS(1),
                    success_threshold: 1,
                    failure_threshold: 3,
                    initial_delay: Duration::ZERO,
                },
                strategy: StrategySpec::Rolling {
                    max_surge: 1,
                    max_unavailable: 0,
                },
                autoscale: None,
            }],
        })
    );
    // Without `deploy` a service is built and released, never deployed.
    let plain = parse(&with_steps("      lint:\n        run: x\n"), "f").unwrap();
    assert_eq!(plain.services[0].deploy, None);
}

/// `deploy.secrets`: short and long forms, in file order.
#[test]
fn deploy_secrets_short_and_long_forms() {
    let src = with_deploy(
        "      start: ./server\n      secrets: [DATABASE_URL, {name: TLS_KEY, file: true}, {name: API_KEY, file: false}]\n      environments:\n        staging:\n          expose: 127.0.0.1:8080\n",
    );
    let config = parse(&src, "sluice.yml").unwrap();
    let deploy = config.services[0].deploy.as_ref().unwrap();
    let got: Vec<(&str, bool)> = deploy
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.file))
        .collect();
    assert_eq!(
        got,
        [
            ("DATABASE_URL", false),
            ("TLS_KEY", true),
            ("API_KEY", false)
        ]
    );
}

/// Service-level values with per-environment overrides: `env` merged, `replicas`,
/// `health` and `strategy` replaced; defaults inside every long form.
#[test]
fn deploy_overrides_per_environment() {
    let src = "project: shop
environments:
  staging: {branch: main}
  production: {branch: release}
  perf: {branch: perf}
services:
  api:
    steps: {lint: {run: x}}
    deploy:
      start: python3 app.py
      workdir: ./services/api/
      replicas: 2
      env: {A: service, B: 1.50, C: yes}
      health: {http: /healthz, initial_delay: 250ms}
      stop_grace: 0s
      progress_deadline: 2m
      max_restarts: 0
      strategy: blue_green
      environments:
        staging:
          expose: 127.0.0.1:8081
        production:
          expose: 0.0.0.0:8080
          preview: \"[::1]:9080\"
          replicas: 4
          env: {B: production, D: true}
          health: {command: ./check.sh, timeout: 5s, interval: 2s, success_threshold: 2, failure_threshold: 5}
          strategy:
            canary:
              steps: [{weight: 5, pause: 1m}, {weight: 50}]
              analysis: {max_latency: 300ms, insufficient_traffic: pass}
              sticky: {cookie: canary, value: 1}
        perf:
          expose: 127.0.0.2:8082
          health: {http: /ready?full=1, expect: 204, timeout: 500ms}
          strategy: {rolling: }
";
    let config = parse(src, "sluice.yml").unwrap();
    let deploy = config.services[0].deploy.clone().unwrap();
    assert_eq!(deploy.start.as_deref(), Some("python3 app.py"));
    assert_eq!(deploy.workdir.as_deref(), Some("services/api"));
    assert_eq!(deploy.stop_grace, Duration::ZERO);
    assert_eq!(deploy.progress_deadline, SECS(120));
    assert_eq!(deploy.max_restarts, 0);
    let service_health = Health {
        check: HealthCheckSpec::Http {
            path: "/healthz".into(),
            expect: 200,
            timeout: SECS(2),
        },
        interval: SECS(1),
        success_threshold: 1,
        failure_threshold: 3,
        initial_delay: Duration::from_millis(250),
    };
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        deploy.targets,
        vec![
            DeployTarget {
                env: "staging".into(),
                expose: addr("127.0.0.1:8081"),
                preview: None,
                replicas: 2,
                env_vars: env(&[("A", "service"), ("B", "1.50"), ("C", "yes")]),
                health: service_health.clone(),
                strategy: StrategySpec::BlueGreen {
                    keep_warm: SECS(300),
                    preview: false,
                    auto_promote: true,
                },
                autoscale: None,
            },
            DeployTarget {
                env: "production".into(),
                expose: addr("0.0.0.0:8080"),
                preview: Some(addr("[::1]:9080")),
                replicas: 4,
                env_vars: env(&[
                    ("A", "service"),
                    ("B", "production"),
                    ("C", "yes"),
                    ("D", "true")
                ]),
                health: Health {
                    check: HealthCheckSpec::Command {
                        run: "./check.sh".into(),
                        timeout: SECS(5),
                    },
                    interval: SECS(2),
                    success_threshold: 2,
                    failure_threshold: 5,
                    initial_delay: Duration::ZERO,
                },
                strategy: StrategySpec::Canary {
                    steps: vec![
                        CanaryStepSpec {
                            weight: 5,
                            pause: SECS(60),
                        },
                        CanaryStepSpec {
                            weight: 50,
                            pause: Duration::ZERO,
                        },
                    ],
                    analysis: AnalysisSpec {
                        max_error_rate: 0.05,
                        max_latency: Some(Duration::from_millis(300)),
                        quantile: 0.99,
                        min_requests: 20,
                        insufficient_traffic: InsufficientTraffic::Pass,
                        max_wait: SECS(300),
                        interval: SECS(5),
                    },
                    sticky: Some(StickySpec {
                        header: None,
                        cookie: Some("canary".into()),
                        value: "1".into(),
                    }),
                },
                autoscale: None,
            },
            DeployTarget {
                env: "perf".into(),
                expose: addr("127.0.0.2:8082"),
                preview: None,
                replicas: 2,
                env_vars: env(&[("A", "service"), ("B", "1.50"), ("C", "yes")]),
                health: Health {
                    check: HealthCheckSpec::Http {
                        path: "/ready?full=1".into(),
                        expect: 204,
                        timeout: Duration::from_millis(500),
                    },
                    interval: SECS(1),
                    success_threshold: 1,
                    failure_threshold: 3,
                    initial_delay: Duration::ZERO,
                },
                strategy: StrategySpec::Rolling {
                    max_surge: 1,
                    max_unavailable: 0,
                },
                autoscale: None,
            },
        ]
    );
}

#[test]
fn example_deploy_sections_parse_to_the_model() {
    let config = parse(sluice_spec::example(), "sluice.yml").unwrap();
    let api = config.services[0].deploy.as_ref().unwrap();
    assert_eq!(api.start.as_deref(), Some("python3 app.py"));
    assert_eq!(api.workdir.as_deref(), Some("services/api"));
    let envs: Vec<_> = api.targets.iter().map(|t| t.env.as_str()).collect();
    assert_eq!(envs, ["staging", "production"]);
    let (staging, production) = (&api.targets[0], &api.targets[1]);
    assert_eq!(staging.replicas, 2);
    assert_eq!(production.replicas, 4);
    assert_eq!(production.env_vars["LOG_LEVEL"], "warn");
    assert_eq!(production.env_vars["WORKERS"], "4");
    assert_eq!(staging.env_vars["LOG_LEVEL"], "info");
    assert_eq!(staging.health, production.health);
    assert_eq!(
        staging.strategy,
        StrategySpec::Rolling {
            max_surge: 1,
            max_unavailable: 0
        }
    );
    let StrategySpec::Canary {
        steps,
        analysis,
        sticky,
    } = &production.strategy
    else {
        panic!("production should be canary: {:?}", production.strategy)
    };
    let weights: Vec<u32> = steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [10, 50, 100]);
    assert_eq!(analysis.max_error_rate, 0.02);
    assert_eq!(analysis.min_requests, 50);
    assert_eq!(sticky.as_ref().unwrap().header.as_deref(), Some("X-Canary"));

    let web = config.services[1].deploy.as_ref().unwrap();
    assert!(matches!(
        web.targets[0].health.check,
        HealthCheckSpec::Command { timeout, .. } if timeout == SECS(3)
    ));
    assert_eq!(
        web.targets[1].health.check,
        HealthCheckSpec::Tcp { timeout: SECS(2) }
    );
    assert_eq!(
        web.targets[1].strategy,
        StrategySpec::BlueGreen {
            keep_warm: SECS(600),
            preview: true,
            auto_promote: false
        }
    );
    assert_eq!(web.targets[1].preview, Some(addr("127.0.0.1:9090")));
}

#[test]
fn deploy_target_looks_up_service_and_environment() {
    let src = "project: shop\nenvironments: {staging: {branch: main}, production: {branch: release}}\nservices:\n  api:\n    steps: {lint: {run: x}}\n    deploy: {start: ./api, environments: {production: {expose: 127.0.0.1:8080}}}\n  worker:\n    steps: {lint: {run: x}}\n";
    let config = parse(src, "f").unwrap();
    let (service, deploy, target) = config.deploy_target("api", "production").unwrap();
    assert_eq!(service.name, "api");
    assert_eq!(deploy.start.as_deref(), Some("./api"));
    assert_eq!(target.expose, addr("127.0.0.1:8080"));
    assert!(
        config.deploy_target("api", "staging").is_none(),
        "not deployed there"
    );
    assert!(
        config.deploy_target("worker", "production").is_none(),
        "no deploy"
    );
    assert!(config.deploy_target("nope", "production").is_none());
    assert!(config.deploy_target("api", "nope").is_none());
}

/// A canary whose last weight is below 100 is valid (full promotion is implicit), and
/// IPv6 addresses work when quoted.
#[test]
fn canary_last_weight_may_be_below_100_and_ipv6() {
    let src =
        with_strategy("            canary: {steps: [{weight: 1}, {weight: 2}, {weight: 99}]}\n")
            .replace("127.0.0.1:8080", "\"[::1]:8080\"");
    let config = parse(&src, "f").unwrap();
    let (_, _, target) = config.deploy_target("api", "staging").unwrap();
    assert_eq!(target.expose, addr("[::1]:8080"));
    let StrategySpec::Canary { steps, .. } = &target.strategy else {
        panic!()
    };
    assert_eq!(steps.last().unwrap().weight, 99);
}

#[test]
fn deploy_positions_point_at_the_token() {
    let first = |source: &str| {
        let diags = parse(source, "f").unwrap_err().0;
        let d = diags[0].clone();
        let line = source.lines().nth(d.line - 1).unwrap();
        (line[d.column - 1..].to_owned(), d)
    };
    let (at, _) = first(&with_deploy(
        "      start: x\n      environments:\n        staging: {expose: \"localhost:80\"}\n",
    ));
    assert!(at.starts_with("\"localhost:80\""), "{at}");
    let (at, d) = first(&with_strategy(
        "            canary: {steps: [{weight: 50}, {weight: 20}]}\n",
    ));
    assert!(at.starts_with("20}"), "{at}");
    assert_eq!(
        d.field,
        "services.api.deploy.environments.staging.strategy.canary.steps[1].weight"
    );
    let (at, _) = first(&with_strategy("            {rolling: {}, canary: {}}\n"));
    assert!(at.starts_with("canary"), "{at}");
}

/// The containerised `cart` service of the example: a step in a container, the image build,
/// the scan, the Docker runtime with resources and autoscaling; and `web`'s named image.
#[test]
fn example_container_sections_parse_to_the_model() {
    let config = parse(sluice_spec::example(), "sluice.yml").unwrap();
    let cart = &config.services[2];
    let names: Vec<_> = cart.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["test", "image", "audit"]);
    assert_eq!(
        cart.steps[0].kind,
        StepKind::Run {
            run: "cargo test --locked".into(),
            image: Some("rust:1.88-slim".into())
        }
    );
    assert_eq!(cart.steps[0].image(), Some("rust:1.88-slim"));
    assert_eq!(cart.steps[0].command(), Some("cargo test --locked"));

    let (step, build) = cart.build_step().unwrap();
    assert_eq!(step.name, "image");
    assert_eq!((step.command(), step.image()), (None, None));
    assert_eq!(step.timeout, SECS(20 * 60));
    assert!(!step.gate);
    assert_eq!(
        build,
        &BuildImage {
            context: Some("services/cart".into()),
            dockerfile: "docker/Dockerfile".into(),
            args: BTreeMap::from([
                ("FEATURES".into(), "metrics".into()),
                ("RUST_VERSION".into(), "1.88".into())
            ]),
            target: Some("runtime".into()),
            labels: BTreeMap::from([(
                "org.opencontainers.image.source".into(),
                "https://git.example.com/shop".into()
            )]),
        }
    );
    assert_eq!(build.dockerfile_path(), "services/cart/docker/Dockerfile");

    let audit = &cart.steps[2];
    assert!(audit.gate, "a scan is a gate by default");
    assert_eq!(
        audit.kind,
        StepKind::Scan(ScanSpec {
            fail_on: VulnSeverity::High,
            lockfiles: true,
            image: true,
            allow: vec![AllowEntry {
                id: "RUSTSEC-2023-0071".into(),
                reason: "no RSA decryption with attacker-observable timing in this service".into(),
                expires: Date::new(2026, 12, 31).unwrap(),
            }],
        })
    );

    let deploy = cart.deploy.as_ref().unwrap();
    assert_eq!(deploy.start, None, "the built image's own command runs");
    assert_eq!(
        deploy.runtime,
        RuntimeSpec::Docker {
            image: ContainerImage::Built {
                step: "image".into()
            }
        }
    );
    assert_eq!(
        deploy.resources,
        Resources {
            cpus: Some(0.5),
            memory_bytes: Some(256 << 20)
        }
    );
    let autoscale = Autoscale {
        min: 2,
        max: 10,
        cpu_percent: Some(70),
        memory_percent: Some(80),
        interval: SECS(15),
        cooldown: SECS(60),
        stabilization: SECS(300),
        scale_up_step: Some(4),
    };
    let (staging, production) = (&deploy.targets[0], &deploy.targets[1]);
    assert_eq!((staging.autoscale.as_ref(), staging.replicas), (None, 1));
    assert_eq!(
        (production.autoscale.as_ref(), production.replicas),
        (Some(&autoscale), 3)
    );

    let web = &config.services[1];
    assert_eq!(web.steps[0].image(), Some("node:22-slim"));
    let web = web.deploy.as_ref().unwrap();
    assert_eq!(
        web.runtime,
        RuntimeSpec::Docker {
            image: ContainerImage::Named("python:3.12-slim".into())
        }
    );
    assert!(web.start.is_some());
    // Services without the new fields keep today's meaning.
    let api = config.services[0].deploy.as_ref().unwrap();
    assert_eq!(api.runtime, RuntimeSpec::Process);
    assert_eq!(api.resources, Resources::default());
    assert!(api.targets.iter().all(|t| t.autoscale.is_none()));
}

/// Defaults of the container fields and of autoscaling, and the short forms.
#[test]
fn container_defaults_and_short_forms() {
    let src = with_service(concat!(
        "    env: {SERVICE: x}\n",
        "    steps:\n",
        "      img: {build_image: ./services/api/}\n",
        "      audit: {scan: , needs: [img]}\n",
        "      deps: {scan: {image: false, fail_on: critical}}\n",
        "    deploy:\n",
        "      runtime: docker\n",
        "      start: /app/server\n",
        "      resources: {memory: 512M}\n",
        "      replicas: 3\n",
        "      autoscale: {max: 5, memory: 75}\n",
        "      environments:\n",
        "        staging: {expose: 127.0.0.1:8080}\n",
        "        production:\n",
        "          expose: 127.0.0.1:8081\n",
        "          replicas: 5\n",
        "          autoscale: {min: 4, max: 8, cpu: 50%, cooldown: 0s, stabilization: 0s}\n",
    ));
    let config = parse(&src, "sluice.yml").unwrap();
    let api = &config.services[0];
    let (img, build) = api.build_step().unwrap();
    assert_eq!(build.context.as_deref(), Some("services/api"));
    assert_eq!(build.dockerfile, "Dockerfile");
    assert!(
        img.env.is_empty(),
        "the service env does not apply to a build"
    );
    let scan = |i: usize| match &api.steps[i].kind {
        StepKind::Scan(s) => s.clone(),
        other => panic!("not a scan: {other:?}"),
    };
    assert_eq!(
        scan(1),
        ScanSpec {
            fail_on: VulnSeverity::High,
            lockfiles: true,
            image: true,
            allow: vec![]
        }
    );
    assert_eq!(
        (scan(2).image, scan(2).fail_on),
        (false, VulnSeverity::Critical)
    );
    assert!(api.steps[1].gate && api.steps[2].gate);
    let deploy = api.deploy.as_ref().unwrap();
    assert_eq!(deploy.start.as_deref(), Some("/app/server"));
    assert_eq!(deploy.resources.memory_bytes, Some(512_000_000));
    let staging = deploy.targets[0].autoscale.clone().unwrap();
    assert_eq!(
        staging,
        Autoscale {
            min: 1,
            max: 5,
            cpu_percent: None,
            memory_percent: Some(75),
            interval: SECS(15),
            cooldown: SECS(60),
            stabilization: SECS(300),
            scale_up_step: None,
        }
    );
    assert_eq!(deploy.targets[0].replicas, 3);
    let production = &deploy.targets[1];
    assert_eq!(production.replicas, 5);
    let a = production.autoscale.as_ref().unwrap();
    assert_eq!(
        (a.min, a.max, a.cpu_percent, a.memory_percent),
        (4, 8, Some(50), None)
    );
    assert_eq!(
        (a.cooldown, a.stabilization),
        (Duration::ZERO, Duration::ZERO)
    );

    // Docker without an image or a build: the server's base image, and `start` is needed.
    let src = with_deploy(
        "      runtime: docker\n      start: ./server\n      environments:\n        staging: {expose: 127.0.0.1:8080}\n",
    );
    let config = parse(&src, "f").unwrap();
    assert_eq!(
        config.services[0].deploy.as_ref().unwrap().runtime,
        RuntimeSpec::Docker {
            image: ContainerImage::ServerDefault
        }
    );
    // Lockfile scans need no build; a scan that is not a gate is allowed.
    let src = with_steps("      audit:\n        scan: {allow: []}\n        gate: false\n");
    let config = parse(&src, "f").unwrap();
    assert!(!config.services[0].steps[0].gate);
    assert!(
        matches!(&config.services[0].steps[0].kind, StepKind::Scan(s) if !s.image && s.lockfiles)
    );
}

/// A service-level `replicas` outside an environment's own autoscale range is an error only
/// for that environment; without a written `replicas` the count starts at `min`.
#[test]
fn autoscale_start_count_per_environment() {
    let src = with_deploy(concat!(
        "      start: ./s\n",
        "      autoscale: {min: 2, max: 4, cpu: 80%}\n",
        "      environments:\n",
        "        staging: {expose: 127.0.0.1:8080}\n",
        "        production: {expose: 127.0.0.1:8081, replicas: 4, autoscale: false}\n",
    ));
    let config = parse(&src, "f").unwrap();
    let t = &config.services[0].deploy.as_ref().unwrap().targets;
    assert_eq!(
        (t[0].replicas, t[0].autoscale.as_ref().map(|a| a.min)),
        (2, Some(2))
    );
    assert_eq!((t[1].replicas, t[1].autoscale.as_ref()), (4, None));
}

#[test]
fn path_matching() {
    let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(path_matches(&[], "anything/at/all.rs"));
    let api = p(&["services/api/**", "libs/common/*.rs"]);
    assert!(path_matches(&api, "services/api/src/main.rs"));
    assert!(path_matches(&api, "libs/common/lib.rs"));
    assert!(
        !path_matches(&api, "libs/common/sub/lib.rs"),
        "`*` must not cross `/`"
    );
    assert!(!path_matches(&api, "services/web/index.html"));
    assert!(!path_matches(&api, "services/api2/x"));
    // A pattern naming a directory covers everything under it.
    for dir in ["services/api", "services/api/", "./services/api"] {
        assert!(
            path_matches(&p(&[dir]), "services/api/src/deep/file.rs"),
            "{dir}"
        );
        assert!(!path_matches(&p(&[dir]), "services/apix/file.rs"), "{dir}");
    }
    assert!(path_matches(&p(&["*.md"]), "README.md"));
    assert!(!path_matches(&p(&["*.md"]), "docs/README.md"));
    assert!(path_matches(&p(&["**/*.md"]), "docs/README.md"));
    assert!(path_matches(&p(&["{a,b}/x"]), "b/x"));
    assert!(
        !path_matches(&p(&["[bad"]), "[bad"),
        "invalid patterns match nothing"
    );

    let config = parse(sluice_spec::example(), "f").unwrap();
    let api = &config.services[0];
    assert!(api.matches("libs/common/src/lib.rs"));
    assert!(!api.matches("services/web/Makefile"));
    assert!(config.services[1].matches("services/web/Makefile"));

    let filter = sluice_spec::PathFilter::new(&p(&["services/web"])).unwrap();
    assert!(filter.matches("services/web/a") && !filter.matches("services/api/a"));
}

#[test]
fn check_paths_reports_filters_matching_nothing() {
    let src = "project: shop\nenvironments: {staging: {branch: main}}\nservices:\n  api:\n    paths:\n      - services/api/**\n      - servces/api/**\n    steps: {lint: {run: x}}\n  web:\n    paths: [services/web, libs/ui]\n    steps: {lint: {run: x}}\n  all:\n    steps: {lint: {run: x}}\n";
    let config = parse(src, "sluice.yml").unwrap();
    let files: Vec<String> = [
        "services/api/main.rs",
        "services/web/index.html",
        "README.md",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let diags = check_paths(src, "sluice.yml", &config, &files);
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    insta::assert_snapshot!("check_paths", text.join("\n"));
    assert_eq!((diags[0].line, diags[0].column), (7, 9));
    assert_eq!((diags[1].line, diags[1].column), (10, 27));
    assert!(
        check_paths(
            src,
            "sluice.yml",
            &config,
            &[
                "servces/api/x".into(),
                "services/api/x".into(),
                "services/web/y".into(),
                "libs/ui/z".into()
            ]
        )
        .is_empty()
    );
}

/// The generated docs under `docs/` must match the doc comments.
#[test]
fn generated_docs_are_current() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let files = [
        ("sluice-yml.md", sluice_spec::reference_markdown()),
        ("sluice.schema.json", sluice_spec::json_schema()),
    ];
    for (name, generated) in files {
        let path = docs.join(name);
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/{name} is out of date with crates/spec/src/schema.rs; regenerate it with `UPDATE_DOCS=1 cargo test -p sluice-spec`"
        );
    }
}

#[test]
fn reference_documents_every_field() {
    let md = sluice_spec::reference_markdown();
    for field in [
        "project",
        "environments",
        "services",
        "branch",
        "paths",
        "env",
        "steps",
        "run",
        "needs",
        "gate",
        "timeout",
        "retry",
        "workdir",
        "junit",
        "artifacts",
        "cache",
        "secrets",
        "max",
        "on",
        "delay",
        "key_files",
        "deploy",
        "start",
        "replicas",
        "health",
        "stop_grace",
        "progress_deadline",
        "max_restarts",
        "strategy",
        "expose",
        "preview",
        "http",
        "tcp",
        "command",
        "expect",
        "interval",
        "success_threshold",
        "failure_threshold",
        "initial_delay",
        "max_surge",
        "max_unavailable",
        "keep_warm",
        "auto_promote",
        "analysis",
        "sticky",
        "weight",
        "pause",
        "max_error_rate",
        "max_latency",
        "quantile",
        "min_requests",
        "insufficient_traffic",
        "max_wait",
        "header",
        "cookie",
        "value",
        "image",
        "build_image",
        "scan",
        "context",
        "dockerfile",
        "args",
        "target",
        "labels",
        "fail_on",
        "lockfiles",
        "allow",
        "id",
        "reason",
        "expires",
        "runtime",
        "resources",
        "cpus",
        "memory",
        "autoscale",
        "min",
        "cpu",
        "cooldown",
        "stabilization",
        "scale_up_step",
    ] {
        assert!(
            md.contains(&format!("| `{field}` |")),
            "{field} is not documented"
        );
    }
    assert!(md.contains("default `30m`"));
    for default in [
        "default `10s`",
        "default `60s`",
        "default `rolling`",
        "default `0.05`",
        "default `0.99`",
        "default `wait`",
        "default `5m`",
        "default `200`",
        "default `process`",
        "default `high`",
        "default `15s`",
        "default `Dockerfile`",
    ] {
        assert!(md.contains(default), "{default} is not documented");
    }
    assert!(md.contains("the final promotion is implicit"));
    let schema: serde_json::Value = serde_json::from_str(&sluice_spec::json_schema()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["$defs"]["Step"]["additionalProperties"], false);
    assert_eq!(
        schema["$defs"]["RetryForm"]["anyOf"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// Text edits that tend to break YAML in interesting ways.
fn mutate(source: &str, ops: &[(u8, usize, usize, char)]) -> String {
    let mut text: Vec<char> = source.chars().collect();
    for &(op, a, b, c) in ops {
        let len = text.len();
        if len == 0 {
            text.push(c);
            continue;
        }
        let (a, b) = (a % len, b % len);
        match op % 5 {
            0 => text.truncate(a),
            1 => {
                let (lo, hi) = (a.min(b), a.max(b));
                text.drain(lo..hi.min(lo + 20));
            }
            2 => text.insert(a, c),
            3 => text.swap(a, b),
            _ => {
                let piece: Vec<char> = text[a.min(b)..a.max(b).min(a.min(b) + 40)].to_vec();
                let at = a.max(b).min(text.len());
                text.splice(at..at, piece);
            }
        }
    }
    text.into_iter().collect()
}

/// A second mutation seed: a deploy-heavy file in flow style, where a single edit lands
/// in a strategy, a health check or an address more often than in the example.
const DEPLOY_SEED: &str = "project: p
environments: {staging: {branch: main}, production: {branch: release}}
services:
  api:
    steps: {lint: {run: x}}
    deploy:
      start: ./s
      env: {A: 1}
      health: {http: /h, expect: 200, timeout: 2s}
      strategy: {rolling: {max_surge: 1, max_unavailable: 0}}
      environments:
        staging: {expose: 127.0.0.1:8081, replicas: 2, strategy: blue_green}
        production:
          expose: 127.0.0.1:8080
          preview: \"[::1]:9080\"
          health: {tcp: true}
          strategy: {canary: {steps: [{weight: 10, pause: 1s}, {weight: 60}], analysis: {max_error_rate: 0.1, quantile: 0.5, insufficient_traffic: fail}, sticky: {cookie: c, value: v}}}
  web:
    steps: {b: {run: y}}
    deploy: {start: ./w, strategy: {blue_green: {preview: true}}, environments: {production: {expose: 0.0.0.0:80, preview: 127.0.0.1:81}}}
";

#[test]
fn deploy_seed_is_valid() {
    let config = parse(DEPLOY_SEED, "f").unwrap();
    assert!(config.deploy_target("web", "production").is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_deploy_mutations(
        ops in prop::collection::vec(
            (any::<u8>(), any::<usize>(), any::<usize>(),
             prop::sample::select(vec![':', '-', ' ', '\n', '[', ']', '{', '}', '"', ',', '0', '9', '.', '/', 'x'])),
            1..6,
        )
    ) {
        let source = mutate(DEPLOY_SEED, &ops);
        match parse(&source, "f") {
            Ok(config) => {
                for service in &config.services {
                    for target in service.deploy.iter().flat_map(|d| &d.targets) {
                        prop_assert!(config.deploy_target(&service.name, &target.env).is_some());
                        prop_assert!((1..=64).contains(&target.replicas));
                    }
                }
            }
            Err(diags) => {
                prop_assert!(!diags.0.is_empty());
                for d in &diags.0 {
                    prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
                }
            }
        }
    }

    /// Random values, good and bad, in every slot of a deploy section.
    #[test]
    fn parse_never_panics_on_deploy_values(
        values in prop::collection::vec(
            prop::sample::select(vec![
                "0", "1", "-1", "65", "100", "101", "0.5", "1.5", "true", "false", "''", "~",
                "0s", "5s", "25h", "x", "/h", "h", "[]", "{}", "[{weight: 10}]",
                "127.0.0.1:8080", "127.0.0.1:8081", "0.0.0.0:8080", "'[::1]:80'", "localhost:1",
                "rolling", "canary", "blue_green", "{canary: {steps: [{weight: 100}]}}",
                "{rolling: {max_surge: 0}}", "{http: /}", "{tcp: true, http: /}", "wait", "nan",
            ]),
            12,
        )
    ) {
        let v = |i: usize| values[i];
        let source = format!(
            "project: p\nenvironments: {{staging: {{branch: main}}}}\nservices:\n  api:\n    steps: {{l: {{run: x}}}}\n    deploy:\n      start: {}\n      replicas: {}\n      health: {}\n      strategy: {}\n      max_restarts: {}\n      environments:\n        staging:\n          expose: {}\n          preview: {}\n          replicas: {}\n          strategy: {{canary: {{steps: [{{weight: {}, pause: {}}}], analysis: {{quantile: {}, max_error_rate: {}}}}}}}\n",
            v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7), v(8), v(9), v(10), v(11),
        );
        if let Err(diags) = parse(&source, "f") {
            for d in &diags.0 {
                prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
                prop_assert!(!d.message.ends_with('.'), "{}", d);
            }
        }
    }

    /// Random values, good and bad, in every slot of the container and autoscaling fields.
    #[test]
    fn parse_never_panics_on_container_values(
        values in prop::collection::vec(
            prop::sample::select(vec![
                "0", "1", "2", "65", "0.5", "70%", "101%", "0%", "true", "false", "''", "~", "x",
                "0s", "15s", "25h", "[]", "{}", ".", "..", "/abs", "a/../..", "node:22",
                "Node:22", "'a b'", "docker", "process", "256Mi", "1Mi", "2048Gi", "5Gi", "-1",
                "2026-12-31", "2026-02-30", "high", "severe", "[img]", "[test]", "{image: true}",
                "{lockfiles: false}", "[{id: A, reason: r, expires: 2026-01-01}]", "[{id: A}]",
            ]),
            20,
        )
    ) {
        let v = |i: usize| values[i];
        let source = format!(
            "project: p\nenvironments: {{staging: {{branch: main}}}}\nservices:\n  api:\n    steps:\n      test: {{run: x, image: {}}}\n      img: {{build_image: {{context: {}, dockerfile: {}, target: {}}}, needs: {}}}\n      audit: {{scan: {{fail_on: {}, lockfiles: {}, image: {}, allow: {}}}, needs: {}}}\n    deploy:\n      runtime: {}\n      image: {}\n      start: {}\n      resources: {{cpus: {}, memory: {}}}\n      replicas: {}\n      autoscale: {{min: {}, max: {}, cpu: {}, cooldown: {}}}\n      environments:\n        staging: {{expose: 127.0.0.1:8080}}\n",
            v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7), v(8), v(9), v(10), v(11), v(12),
            v(13), v(14), v(15), v(16), v(17), v(18), v(19),
        );
        match parse(&source, "f") {
            Ok(config) => {
                for target in config.services[0].deploy.iter().flat_map(|d| &d.targets) {
                    if let Some(a) = &target.autoscale {
                        prop_assert!(a.min <= a.max && (a.min..=a.max).contains(&target.replicas));
                    }
                }
            }
            Err(diags) => {
                for d in &diags.0 {
                    prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
                    prop_assert!(!d.message.ends_with('.'), "{}", d);
                }
            }
        }
    }

    #[test]
    fn parse_never_panics_on_mutations(
        ops in prop::collection::vec(
            (any::<u8>(), any::<usize>(), any::<usize>(),
             prop::sample::select(vec![':', '-', ' ', '\n', '\t', '[', ']', '{', '}', '"', '\'', '*', '&', '#', '!', '|', '>', ',', '?', '%', '@', 'a', '0', '.', '/', 'é'])),
            1..6,
        )
    ) {
        let source = mutate(sluice_spec::example(), &ops);
        match parse(&source, "f") {
            Ok(config) => {
                let _ = check_paths(&source, "f", &config, &["services/api/x".into()]);
            }
            Err(diags) => {
                prop_assert!(!diags.0.is_empty());
                for d in &diags.0 {
                    prop_assert!(d.line >= 1 && d.column >= 1, "{}", d);
                }
            }
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(source in "\\PC{0,200}") {
        let _ = parse(&source, "f");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for src in [
        "[".repeat(100_000),
        "a:\n".repeat(0) + &"- ".repeat(10_000),
        "{a: ".repeat(50_000),
    ] {
        assert!(parse(&src, "f").is_err());
    }
}

#[test]
fn rules_over_scraped_metrics_get_a_metrics_path() {
    let config = parse(
        &with_rules("    queue:\n      service: api\n      expr: last(queue_depth) > 5\n    admin:\n      service: api\n      expr: rate(jobs_failed_total) > 1\n      metrics_path: /admin/prometheus?format=text\n    errors:\n      service: api\n      expr: error_rate > 0.1\n"),
        "sluice.yml",
    )
    .unwrap();
    let paths: Vec<(&str, &str)> = config
        .alerts
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.metrics_path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("queue", sluice_spec::DEFAULT_METRICS_PATH),
            ("admin", "/admin/prometheus?format=text"),
            ("errors", sluice_spec::DEFAULT_METRICS_PATH),
        ]
    );
}
