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
    Cache, Config, Environment, Retry, Service, Step, check_paths, parse, path_matches,
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

/// Every invalid case: (snapshot name, file). The snapshot is the full positioned output.
fn invalid_cases() -> Vec<(&'static str, String)> {
    vec![
        ("malformed_yaml", "project: shop\nenvironments: [staging\nservices: {}\n".into()),
        ("malformed_yaml_indentation", "project: shop\nenvironments:\n  staging:\n    branch: main\n   oops: 1\n".into()),
        ("tab_indentation", "project: shop\nenvironments:\n\tstaging: {}\n".into()),
        ("unknown_field_did_you_mean", with_steps("      lint:\n        run: ./lint.sh\n      test:\n        run: make test\n        nedds: [lint]\n")),
        ("unknown_field_no_suggestion", with_steps("      lint:\n        run: ./lint.sh\n        image: node:22\n")),
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
        run: run.into(),
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
                    branch: "release".into()
                },
                Environment {
                    name: "staging".into(),
                    branch: "main".into()
                },
            ],
            services: vec![Service {
                name: "web".into(),
                paths: vec![],
                steps: vec![step("test", "make test"), step("build", "make")],
            }],
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
    assert_eq!(services, ["api", "web"]);
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
    ] {
        assert!(
            md.contains(&format!("| `{field}` |")),
            "{field} is not documented"
        );
    }
    assert!(md.contains("default `30m`"));
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

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
