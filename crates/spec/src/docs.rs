//! Generates the JSON Schema and the Markdown reference of `sluice.yml` from the doc
//! comments in [`crate::schema`], so the docs, editors and the parser cannot drift apart.
//! No IO: a test writes and checks the files under `docs/`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::schema::{CONFIG_FIELDS, DEFINITION_FIELDS};

/// A complete, valid `sluice.yml` using every field; shown in the reference and parsed by
/// the tests.
pub(crate) const EXAMPLE: &str = r#"project: shop

environments:
  staging:
    branch: main
  production:
    branch: release

services:
  api:
    paths: ["services/api/**", "libs/common/**"]
    env: { RUST_LOG: info }
    steps:
      lint:
        run: ./lint.sh
      test:
        run: make test
        needs: [lint]
        gate: true
        timeout: 10m
        retry:
          max: 2
          on: [failure, timeout]
          delay: 1s
        env: { CI: "true", JOBS: 4 }
        workdir: services/api
        junit: ["services/api/target/junit.xml"]
      package:
        run: npm ci && npm run build
        needs: [test]
        retry: 1
        workdir: services/api
        artifacts: ["services/api/dist/**"]
        cache:
          - paths: [services/api/node_modules]
            key_files: [services/api/package-lock.json]
        secrets: [NPM_TOKEN]
    deploy:
      start: python3 app.py
      workdir: services/api
      replicas: 2
      env: { LOG_LEVEL: info, WORKERS: 4 }
      secrets: [DATABASE_URL, { name: TLS_KEY, file: true }]
      health:
        http: /healthz
        expect: 200
        timeout: 2s
        interval: 1s
        success_threshold: 1
        failure_threshold: 3
        initial_delay: 0s
      stop_grace: 10s
      progress_deadline: 60s
      max_restarts: 3
      strategy: { rolling: { max_surge: 1, max_unavailable: 0 } }
      environments:
        staging:
          expose: 127.0.0.1:8081
        production:
          expose: 127.0.0.1:8080
          replicas: 4
          env: { LOG_LEVEL: warn }
          strategy:
            canary:
              steps: [{ weight: 10, pause: 30s }, { weight: 50, pause: 1m }, { weight: 100 }]
              analysis:
                max_error_rate: 0.02
                max_latency: 500ms
                quantile: 0.99
                min_requests: 50
                insufficient_traffic: wait
                max_wait: 5m
                interval: 5s
              sticky: { header: X-Canary, value: "1" }
  web:
    paths: [services/web]
    steps:
      build:
        run: npm ci && npm run build
        image: node:22-slim
        workdir: services/web
        artifacts: ["services/web/dist/**"]
    deploy:
      runtime: docker
      image: python:3.12-slim
      start: python3 -m http.server "$PORT" --directory services/web/dist
      health: { command: "curl -fsS http://127.0.0.1:$PORT/ >/dev/null", timeout: 3s }
      environments:
        staging:
          expose: 127.0.0.1:8091
          strategy: blue_green
        production:
          expose: 127.0.0.1:8090
          preview: 127.0.0.1:9090
          health: { tcp: true }
          strategy: { blue_green: { keep_warm: 10m, preview: true, auto_promote: false } }
  cart:
    paths: [services/cart]
    steps:
      test:
        run: cargo test --locked
        image: rust:1.88-slim
        workdir: services/cart
      image:
        build_image:
          context: services/cart
          dockerfile: docker/Dockerfile
          args: { RUST_VERSION: "1.88", FEATURES: metrics }
          target: runtime
          labels: { org.opencontainers.image.source: "https://git.example.com/shop" }
        needs: [test]
        timeout: 20m
      audit:
        scan:
          fail_on: high
          lockfiles: true
          image: true
          allow:
            - id: RUSTSEC-2023-0071
              reason: no RSA decryption with attacker-observable timing in this service
              expires: 2026-12-31
        needs: [image]
    deploy:
      runtime: docker
      resources: { cpus: 0.5, memory: 256Mi }
      health: { http: /healthz }
      autoscale:
        min: 2
        max: 10
        cpu: 70%
        memory: 80%
        interval: 15s
        cooldown: 60s
        stabilization: 5m
        scale_up_step: 4
      environments:
        staging:
          expose: 127.0.0.1:8083
          autoscale: false
        production:
          expose: 127.0.0.1:8082
          replicas: 3
"#;

/// Order of the sections after the top level; any other definition follows alphabetically.
const SECTION_ORDER: &[&str] = &[
    "Environment",
    "Service",
    "Step",
    "BuildImageForm",
    "BuildImage",
    "Scan",
    "FailOn",
    "AllowEntry",
    "RetryForm",
    "Retry",
    "RetryOn",
    "Cache",
    "EnvValue",
    "Deploy",
    "Runtime",
    "Resources",
    "MemoryForm",
    "AutoscaleForm",
    "Autoscale",
    "Percent",
    "DeploySecretForm",
    "DeploySecret",
    "DeployEnvironment",
    "Health",
    "StrategyForm",
    "StrategyName",
    "Strategy",
    "Rolling",
    "BlueGreen",
    "Canary",
    "CanaryStep",
    "Analysis",
    "InsufficientTraffic",
    "Sticky",
];

/// The schema, pretty-printed.
pub(crate) fn json_schema() -> String {
    let mut text = serde_json::to_string_pretty(&schema_value()).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema as a JSON value.
pub(crate) fn schema_value() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    generator
        .into_root_schema_for::<crate::schema::SluiceYml>()
        .to_value()
}

/// The reference, as Markdown.
pub(crate) fn reference_markdown() -> String {
    let schema = schema_value();
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = String::new();
    out.push_str(
        "<!-- Generated from crates/spec/src/schema.rs by `UPDATE_DOCS=1 cargo test -p sluice-spec`; do not edit. -->\n\n",
    );
    out.push_str("# `sluice.yml` reference\n\n");
    out.push_str(&paragraph(description(&schema)));
    out.push_str("\n\nThe JSON Schema of this file is [`sluice.schema.json`](sluice.schema.json); point your editor's YAML extension at it for completion and checks. Unknown fields are errors, so a typo never passes silently: `sluice` reports it with its position and, where it can, the field you probably meant.\n\n");
    out.push_str("## Complete example\n\n```yaml\n");
    out.push_str(EXAMPLE);
    out.push_str("```\n\n");
    out.push_str(CONVENTIONS);
    out.push_str("\n## Top level\n\n");
    object_section(&mut out, &schema, CONFIG_FIELDS);
    let mut names: Vec<&String> = defs.keys().collect();
    names.sort_by_key(|n| {
        (
            SECTION_ORDER
                .iter()
                .position(|s| s == n)
                .unwrap_or(SECTION_ORDER.len()),
            n.as_str(),
        )
    });
    for name in names {
        let Some(def) = defs.get(name.as_str()) else {
            continue;
        };
        let _ = write!(out, "\n## {name}\n\n");
        if def.get("properties").is_some() {
            let order = DEFINITION_FIELDS
                .iter()
                .find(|(def, _)| def == name)
                .map_or(&[][..], |(_, fields)| fields);
            object_section(&mut out, def, order);
        } else {
            alternatives_section(&mut out, def);
        }
    }
    out
}

/// Conventions that apply across fields.
const CONVENTIONS: &str = "## Conventions

- **Maps keep file order.** `environments`, `services`, `steps` and a service's `deploy.environments` are maps from a name to its definition; the order in the file is the order sluice shows and promotes them in. Names of environments, services and steps are lower-case letters, digits, `_` and `-` (starting with a letter or digit, at most 63 characters). A key given twice is an error.
- **Durations** are one or more numbers with a unit: `ms`, `s`, `m` or `h`, e.g. `250ms`, `90s`, `10m`, `1h30m`.
- **Paths and globs** are relative to the repository root and use `/`. They must not be absolute or leave the repository with `..`. In globs `*` and `?` stay within one directory, `**` crosses directories, `{a,b}` is either and `[ab]` a character class.
- **Environment variables** are strings; numbers and booleans are accepted and passed on as written.
- **Addresses** (`expose`, `preview`) are an IP address and a port, e.g. `127.0.0.1:8080`; host names are not accepted. Quote IPv6 addresses: `\"[::1]:8080\"`. Every address in the file must be different, and `0.0.0.0:P` or `[::]:P` takes port P on every address.
- **Deploy overrides.** `replicas`, `autoscale`, `health` and `strategy` under an environment in `deploy.environments` replace the service-level ones (an `autoscale`, `health` or `strategy` as a whole; `autoscale: false` turns it off there); `env` is merged over the service-level `env`.
- **Image references** are Docker's: `[registry[:port]/]name[:tag][@sha256:<64 hex digits>]`, e.g. `node:22`, `localhost:5000/acme/api:1.4`; names are lower-case. Images are never pulled by sluice itself: the Docker host must have them or be able to pull them.
- **Sizes and shares.** Memory is a whole number with `Ki`, `Mi`, `Gi` (powers of 1024) or `K`, `M`, `G` (powers of 1000), e.g. `256Mi`; CPUs are cores, e.g. `0.5`; utilisation targets are percentages, e.g. `70%`.
";

/// A table of the fields of an object schema, in `order` (declaration order; the schema's
/// own map is sorted by name), then any others.
fn object_section(out: &mut String, schema: &Value, order: &[&str]) {
    let intro = description(schema);
    if !intro.is_empty() {
        out.push_str(&paragraph(intro));
        out.push_str("\n\n");
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("Unknown fields are errors.\n\n");
    out.push_str("| Field | Type | Required / default | Description |\n|---|---|---|---|\n");
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let mut props: Vec<(&String, &Value)> = props.iter().collect();
        props.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(order.len()));
        for (name, prop) in props {
            let need = if required.contains(&name.as_str()) {
                "required".to_owned()
            } else {
                match prop.get("default") {
                    Some(d) => format!("default `{}`", short_json(d)),
                    None => "optional".to_owned(),
                }
            };
            let mut text = paragraph(description(prop));
            let constraints = constraints(prop);
            if !constraints.is_empty() {
                let _ = write!(text, " {constraints}");
            }
            let _ = writeln!(
                out,
                "| `{name}` | {} | {need} | {} |",
                cell(&type_name(prop)),
                cell(&text)
            );
        }
    }
}

/// A list of the alternatives of an `anyOf`/`oneOf` schema.
fn alternatives_section(out: &mut String, schema: &Value) {
    let intro = description(schema);
    if !intro.is_empty() {
        out.push_str(&paragraph(intro));
        out.push_str("\n\n");
    }
    out.push_str("One of:\n\n");
    let alternatives = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array);
    for alt in alternatives.into_iter().flatten() {
        let what = match (alt.get("const"), single_key(alt)) {
            (Some(c), _) => format!("`{}`", short_json(c)),
            (None, Some((key, value))) => format!("`{key}:` {}", type_name(value)),
            (None, None) => type_name(alt),
        };
        let mut text = paragraph(description(alt));
        let constraints = constraints(alt);
        if !constraints.is_empty() {
            let _ = write!(text, " {constraints}");
        }
        let _ = writeln!(out, "- {what}: {text}");
    }
}

/// The key and value schema of an object that has exactly one property, which is
/// required (how serde's externally tagged enum variants look, e.g. `{rolling: ...}`).
fn single_key(schema: &Value) -> Option<(&str, &Value)> {
    let props = schema.get("properties")?.as_object()?;
    let (key, value) = props.iter().next().filter(|_| props.len() == 1)?;
    let required = schema.get("required")?.as_array()?;
    (required.len() == 1 && required[0].as_str() == Some(key)).then_some((key.as_str(), value))
}

/// `text` as a Markdown code span, also when it contains a backtick.
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// How a schema's type reads in the reference, e.g. "list of string".
fn type_name(schema: &Value) -> String {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target.rsplit('/').next().unwrap_or(target);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(alts) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return alts.iter().map(type_name).collect::<Vec<_>>().join(" or ");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => match schema.get("items") {
            Some(items) => format!("list of {}", type_name(items)),
            None => "list".to_owned(),
        },
        Some("object") => match schema.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of name to {}", type_name(v)),
            _ => "mapping".to_owned(),
        },
        Some(t) => t.to_owned(),
        None => "any".to_owned(),
    }
}

/// The patterns a schema's values must match, in words. Lengths, counts and ranges are
/// left to the doc comments, which say them in prose.
fn constraints(schema: &Value) -> String {
    let mut parts = Vec::new();
    let get = |k: &str| schema.get(k);
    if let Some(p) = get("pattern").and_then(Value::as_str) {
        parts.push(format!("Pattern {}.", code(p)));
    }
    if let Some(Value::Object(names)) = get("propertyNames")
        && let Some(p) = names.get("pattern").and_then(Value::as_str)
    {
        parts.push(format!("Names match {}.", code(p)));
    }
    if let Some(Value::Object(items)) = get("items")
        && let Some(p) = items.get("pattern").and_then(Value::as_str)
    {
        parts.push(format!("Items match {}.", code(p)));
    }
    parts.join(" ")
}

fn description(schema: &Value) -> &str {
    schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Joins a doc comment's lines into one paragraph.
fn paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn short_json(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
