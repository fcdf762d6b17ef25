//! Incident management from the command line: `incidents`, `incident`, `ack`, `resolve`,
//! `alerts` (and `alerts --noise`, the noise figures per rule), `silence add|list|expire`,
//! `oncall` (and `oncall override add|list|rm`), `dora` and `integrations add|list|rm`.
//!
//! Every command is a thin client of the server's API (`/api/v1/incidents`, `/alerts`,
//! `/alerts/noise`, `/silences`, `/oncall`, `/projects/{p}/oncall/overrides`, `/dora`,
//! `/projects/{p}/integrations`): it checks its arguments
//! (times, durations, weekly windows) before sending anything, prints tables in UTC or the
//! server's JSON unchanged with `--output json`, and leaves every decision (grouping,
//! silencing, who may do what) to the server.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice_core::time::{rfc3339_utc, utc_parts};

use crate::client::{Client, enc, query};
use crate::exit::{CliError, Exit};
use crate::table::{self, cell, print_json};
use crate::{ClientOpts, Output};

/// `sluice incidents` options.
#[derive(Args)]
pub struct IncidentsArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// Only incidents that are not resolved.
    #[arg(long)]
    open: bool,
    /// How many (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
    limit: i64,
    #[command(flatten)]
    c: ClientOpts,
}

/// Options of the commands that take one incident.
#[derive(Args)]
pub struct IncidentArgs {
    /// The incident's id (see `sluice incidents`).
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: i64,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice alerts` options.
#[derive(Args)]
pub struct AlertsArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only the alerts of this incident.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    incident: Option<i64>,
    /// Only alerts still firing.
    #[arg(long)]
    firing: bool,
    /// How many (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
    limit: i64,
    /// Instead of alerts, the noise figures per rule: alerts, incidents, alerts per incident, share auto-resolved quickly, share of incidents acknowledged, share flapping, median time to resolve.
    #[arg(long, conflicts_with_all = ["incident", "firing"])]
    noise: bool,
    /// With --noise: the period, back from now: e.g. `30d` (the default), `12w`, `24h`.
    #[arg(long, requires = "noise", value_parser = check_since)]
    since: Option<String>,
    /// With --noise: an alert resolved by its source within this long of opening counts as auto-resolved quickly, e.g. `5m` (the default), `90s`.
    #[arg(long, requires = "noise", value_parser = check_within)]
    within: Option<String>,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice silence ...`
#[derive(Subcommand)]
pub enum SilenceCmd {
    /// Mute the alerts that match, for a while or in a weekly maintenance window.
    Add(Box<SilenceAddArgs>),
    /// List silences, with whether each mutes alerts right now.
    List {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// End a silence now.
    Expire {
        /// The silence's id (see `sluice silence list`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
}

/// `sluice silence add` options.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("end").required(true).args(["duration", "until"])))]
pub struct SilenceAddArgs {
    /// Label matchers, e.g. `alertname="DiskFull",service=~"web|api"` (`project`, `service` and `severity` are labels too).
    #[arg(long)]
    matchers: String,
    /// How long from the start, e.g. `2h` or `90m` (units ms, s, m, h).
    #[arg(long, value_parser = check_duration)]
    duration: Option<String>,
    /// The end, RFC 3339, e.g. `2026-05-01T06:00:00Z`.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    until: Option<i64>,
    /// The start, RFC 3339; default now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    start: Option<i64>,
    /// Only this project's alerts; without it, every project's (needs the role everywhere).
    #[arg(long)]
    project: Option<String>,
    /// Mute only within a weekly window on these days, e.g. `sat,sun` (full or three-letter names); the silence's start and end bound the window's repetitions.
    #[arg(long, value_name = "DAYS", value_parser = parse_days, requires_all = ["window", "tz"])]
    weekly: Option<Days>,
    /// The weekly window's local times, `HH:MM-HH:MM` (an end at or before the start ends the next day).
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = parse_window, requires = "weekly")]
    window: Option<(String, String)>,
    /// The IANA time zone the weekly window is read in, e.g. `Europe/Berlin`.
    #[arg(long, value_name = "ZONE", requires = "weekly")]
    tz: Option<String>,
    /// Why, for the people who will wonder where their alerts went.
    #[arg(long, short = 'm')]
    comment: String,
    #[command(flatten)]
    c: ClientOpts,
}

/// Weekday names, full and lower-case (one clap value, so not a `Vec`).
#[derive(Clone, Debug, PartialEq)]
pub struct Days(Vec<String>);

/// `sluice oncall` options: without a subcommand, who is on call now and next.
#[derive(Args)]
pub struct OncallArgs {
    #[command(subcommand)]
    cmd: Option<OncallCmd>,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice oncall ...`
#[derive(Subcommand)]
pub enum OncallCmd {
    /// Add, list and remove overrides: someone covers a schedule for a while, without a commit.
    #[command(subcommand)]
    Override(OverrideCmd),
}

/// `sluice oncall override ...`
#[derive(Subcommand)]
pub enum OverrideCmd {
    /// Put a user on call in a schedule from one time to another, over every layer of the schedule.
    Add(OverrideAddArgs),
    /// List overrides that have not ended (with --all, ended ones too).
    List {
        /// Only this project; without it, every project with schedules.
        #[arg(long)]
        project: Option<String>,
        /// Only this schedule.
        #[arg(long)]
        schedule: Option<String>,
        /// Ended overrides too.
        #[arg(long)]
        all: bool,
    },
    /// Remove an override; the schedule's layers apply again.
    Rm {
        /// The override's id (see `sluice oncall override list`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        /// The override's project; without it, the project that has an override with this id.
        #[arg(long)]
        project: Option<String>,
    },
}

/// `sluice oncall override add` options.
#[derive(Args)]
pub struct OverrideAddArgs {
    /// The schedule, as named under `oncall.schedules` in the production sluice.yml.
    schedule: String,
    /// Who is on call during the override (a sluice user; pages go to their email).
    #[arg(long)]
    user: String,
    /// The start, RFC 3339, e.g. `2026-05-01T18:00:00+02:00`; default now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    from: Option<i64>,
    /// The end, RFC 3339, e.g. `2026-05-02T08:00:00+02:00`.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    to: i64,
    /// The schedule's project; without it, the one project whose schedules include SCHEDULE.
    #[arg(long)]
    project: Option<String>,
}

/// `sluice dora` options.
#[derive(Args)]
pub struct DoraArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this service.
    #[arg(long)]
    service: Option<String>,
    /// The window, back from now: e.g. `30d`, `12w`, `24h`.
    #[arg(long, default_value = "30d")]
    since: String,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice integrations ...`
#[derive(Subcommand)]
pub enum IntegrationsCmd {
    /// Create an integration: a key that PagerDuty-style senders and Alertmanager use; it is printed once.
    Add {
        /// Project its alerts belong to.
        project: String,
        /// Name, unique in the project (lower-case letters, digits, `-`, `_`), e.g. `prometheus`.
        name: String,
        /// The service its alerts are about; without it, taken from each alert's `service` label.
        #[arg(long)]
        service: Option<String>,
        /// Keep this key (32 letters or digits, e.g. a routing key senders already use) instead of generating one.
        #[arg(long, value_parser = check_key)]
        key: Option<String>,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// List a project's integrations (keys are never shown, only their last characters).
    List {
        /// Project.
        project: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Remove an integration; senders using its key are refused from then on.
    Rm {
        /// Project.
        project: String,
        /// The integration's id (see `sluice integrations list`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        #[command(flatten)]
        c: ClientOpts,
    },
}

/// `sluice incidents`.
pub async fn incidents(a: IncidentsArgs) -> Result<i32, CliError> {
    let path = format!(
        "/incidents{}",
        query(&[
            ("project", a.project),
            ("service", a.service),
            ("open", a.open.then(|| "true".to_string())),
            ("limit", Some(a.limit.to_string())),
        ])
    );
    let list: Vec<Value> = Client::new(&a.c.server).get(&path).await?;
    if a.c.output == Output::Json {
        print_json(&list);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let opened = i["opened_ms"].as_i64();
            vec![
                format!("#{}", cell(&i["id"])),
                cell(&i["status"]),
                cell(&i["severity"]),
                format!("{}/{}", cell(&i["project"]), cell(&i["service"])),
                cell(&i["title"]),
                cell(&i["alert_count"]),
                utc(opened),
                since(opened, i["acked_ms"].as_i64()),
                since(opened, i["resolved_ms"].as_i64()),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "STATUS",
            "SEVERITY",
            "SERVICE",
            "TITLE",
            "ALERTS",
            "OPENED (UTC)",
            "TO ACK",
            "TO RESOLVE",
        ],
        &rows,
    );
    Ok(0)
}

/// `sluice incident ID`.
pub async fn incident(a: IncidentArgs) -> Result<i32, CliError> {
    let v: Value = Client::new(&a.c.server)
        .get(&format!("/incidents/{}", a.id))
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let i = &v["incident"];
    println!(
        "incident #{}  {}  {}",
        cell(&i["id"]),
        cell(&i["status"]),
        cell(&i["severity"])
    );
    println!("title:      {}", cell(&i["title"]));
    println!(
        "service:    {}/{}",
        cell(&i["project"]),
        cell(&i["service"])
    );
    println!("alerts:     {}", cell(&i["alert_count"]));
    println!("opened:     {} UTC", utc(i["opened_ms"].as_i64()));
    println!(
        "acked:      {}",
        by_whom(
            i["acked_ms"].as_i64(),
            &i["acked_by"],
            v["mtta_ms"].as_i64()
        )
    );
    println!(
        "resolved:   {}",
        by_whom(
            i["resolved_ms"].as_i64(),
            &i["resolved_by"],
            v["mttr_ms"].as_i64()
        )
    );
    println!("suspected:  {}", suspected(&i["suspected_release"]));
    let rows: Vec<Vec<String>> = v["timeline"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|t| {
            vec![
                utc(t["at_ms"].as_i64()),
                cell(&t["kind"]),
                cell(&t["actor"]),
                cell(&t["text"]),
            ]
        })
        .collect();
    println!();
    table::print(&["TIME (UTC)", "KIND", "ACTOR", "TEXT"], &rows);
    Ok(0)
}

/// `sluice ack ID`.
pub async fn ack(a: IncidentArgs) -> Result<i32, CliError> {
    act(a, "ack", "acknowledged").await
}

/// `sluice resolve ID`.
pub async fn resolve(a: IncidentArgs) -> Result<i32, CliError> {
    act(a, "resolve", "resolved").await
}

/// Posts `action` for an incident; a conflict (already acknowledged or resolved) is the
/// server's 409, which the client turns into exit 1 with the server's message.
async fn act(a: IncidentArgs, action: &str, done: &str) -> Result<i32, CliError> {
    let v: Value = Client::new(&a.c.server)
        .post(&format!("/incidents/{}/{action}", a.id), &json!({}))
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
    } else {
        println!(
            "{done} incident #{} ({}/{}: {})",
            a.id,
            cell(&v["project"]),
            cell(&v["service"]),
            cell(&v["title"])
        );
    }
    Ok(0)
}

/// `sluice alerts`.
pub async fn alerts(a: AlertsArgs) -> Result<i32, CliError> {
    if a.noise {
        return noise(a).await;
    }
    let path = format!(
        "/alerts{}",
        query(&[
            ("project", a.project),
            ("incident", a.incident.map(|i| i.to_string())),
            ("firing", a.firing.then(|| "true".to_string())),
            ("limit", Some(a.limit.to_string())),
        ])
    );
    let list: Vec<Value> = Client::new(&a.c.server).get(&path).await?;
    if a.c.output == Output::Json {
        print_json(&list);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|al| {
            let mut flags = Vec::new();
            if al["silenced"].as_bool() == Some(true) {
                flags.push("silenced".to_string());
            }
            if al["flapping"].as_bool() == Some(true) {
                flags.push("flapping".to_string());
            }
            if let Some(n) = al["repeats"].as_i64().filter(|n| *n > 0) {
                flags.push(format!("repeated {n}x"));
            }
            vec![
                format!("#{}", cell(&al["id"])),
                cell(&al["status"]),
                cell(&al["severity"]),
                format!("{}/{}", cell(&al["project"]), cell(&al["service"])),
                cell(&al["source"]),
                cell(&al["summary"]),
                al["incident_id"]
                    .as_i64()
                    .map_or_else(|| "-".to_string(), |i| format!("#{i}")),
                if flags.is_empty() {
                    "-".to_string()
                } else {
                    flags.join(",")
                },
                utc(al["created_ms"].as_i64()),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "STATUS",
            "SEVERITY",
            "SERVICE",
            "SOURCE",
            "SUMMARY",
            "INCIDENT",
            "FLAGS",
            "CREATED (UTC)",
        ],
        &rows,
    );
    Ok(0)
}

/// `sluice alerts --noise`: the server's figures, a row per rule.
async fn noise(a: AlertsArgs) -> Result<i32, CliError> {
    let path = format!(
        "/alerts/noise{}",
        query(&[
            ("project", a.project),
            ("since", a.since.or_else(|| Some("30d".to_string()))),
            ("within", a.within),
        ])
    );
    let v: Value = Client::new(&a.c.server).get(&path).await?;
    if a.c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let percent = |share: &Value, n: &Value| match share.as_f64() {
        Some(s) => format!("{:.0}% ({})", s * 100.0, cell(n)),
        None => "-".to_string(),
    };
    let rules = v["rules"]
        .as_array()
        .map(|r| r.as_slice())
        .unwrap_or_default();
    println!(
        "alerts opened since {} UTC; auto-resolved: by their source within {}",
        utc(v["since_ms"].as_i64()),
        human_opt(v["within_ms"].as_i64())
    );
    if rules.is_empty() {
        println!("no alerts in this period");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                cell(&r["project"]),
                cell(&r["rule"]),
                cell(&r["alerts"]),
                cell(&r["incidents"]),
                r["alerts_per_incident"]
                    .as_f64()
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.1}")),
                percent(&r["auto_resolved_share"], &r["auto_resolved_quickly"]),
                percent(&r["acknowledged_share"], &r["acknowledged"]),
                percent(&r["flapping_share"], &r["flapping"]),
                human_opt(r["median_resolve_ms"].as_i64()),
            ]
        })
        .collect();
    table::print(
        &[
            "PROJECT",
            "RULE",
            "ALERTS",
            "INCIDENTS",
            "PER INCIDENT",
            "AUTO-RESOLVED",
            "ACKED",
            "FLAPPING",
            "MEDIAN TO RESOLVE",
        ],
        &rows,
    );
    Ok(0)
}

/// Checks a `--since` window (`30d`, `12w`, `24h`) before anything is sent.
fn check_since(s: &str) -> Result<String, String> {
    sluice_dora::parse_since(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

/// Checks a `--within` duration: positive, e.g. `5m`.
fn check_within(s: &str) -> Result<String, String> {
    let d = sluice_server::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("--within must be longer than 0s, e.g. `5m`".into());
    }
    Ok(s.trim().to_string())
}

/// `sluice silence ...`
pub async fn silence(cmd: SilenceCmd) -> Result<i32, CliError> {
    match cmd {
        SilenceCmd::Add(a) => silence_add(*a).await,
        SilenceCmd::List { c } => {
            let list: Vec<Value> = Client::new(&c.server).get("/silences").await?;
            if c.output == Output::Json {
                print_json(&list);
                return Ok(0);
            }
            let now = sluice_server::engine::now_ms();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        format!("#{}", cell(&s["id"])),
                        silence_state(s, now).to_string(),
                        s["project"].as_str().unwrap_or("(all)").to_string(),
                        cell(&s["matchers"]),
                        utc(s["starts_ms"].as_i64()),
                        utc(s["expired_ms"].as_i64().or(s["ends_ms"].as_i64())),
                        recurrence_text(&s["recurrence"]),
                        cell(&s["created_by"]),
                        cell(&s["comment"]),
                    ]
                })
                .collect();
            table::print(
                &[
                    "ID",
                    "STATE",
                    "PROJECT",
                    "MATCHERS",
                    "STARTS (UTC)",
                    "ENDS (UTC)",
                    "WEEKLY",
                    "BY",
                    "COMMENT",
                ],
                &rows,
            );
            Ok(0)
        }
        SilenceCmd::Expire { id, c } => {
            Client::new(&c.server)
                .delete(&format!("/silences/{id}"))
                .await?;
            if c.output == Output::Text {
                println!("expired silence #{id}");
            }
            Ok(0)
        }
    }
}

/// The JSON body of `POST /api/v1/silences` for these options.
fn silence_body(a: &SilenceAddArgs) -> Value {
    let mut body = json!({
        "project": a.project,
        "matchers": a.matchers,
        "comment": a.comment,
    });
    if let Some(start) = a.start {
        body["starts_ms"] = json!(start);
    }
    match (&a.duration, a.until) {
        (Some(d), _) => body["duration"] = json!(d),
        (None, Some(until)) => body["ends_ms"] = json!(until),
        // clap's `end` group makes one of them required.
        (None, None) => {}
    }
    if let (Some(days), Some((start, end)), Some(tz)) = (&a.weekly, &a.window, &a.tz) {
        body["recurrence"] = json!({
            "days": days.0,
            "start": start,
            "end": end,
            "time_zone": tz,
        });
    }
    body
}

async fn silence_add(a: SilenceAddArgs) -> Result<i32, CliError> {
    if let (Some(start), Some(until)) = (a.start, a.until)
        && until <= start
    {
        return Err(CliError::new(
            Exit::Usage,
            "--until must be later than --start",
        ));
    }
    let v: Value = Client::new(&a.c.server)
        .post("/silences", &silence_body(&a))
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    println!(
        "silence #{} mutes {} ({}) from {} until {} UTC",
        cell(&v["id"]),
        cell(&v["matchers"]),
        v["project"].as_str().unwrap_or("every project"),
        utc(v["starts_ms"].as_i64()),
        utc(v["ends_ms"].as_i64())
    );
    if !v["recurrence"].is_null() {
        println!("only within: {}", recurrence_text(&v["recurrence"]));
    }
    Ok(0)
}

/// `active`, `expired` (ended by hand), `ended`, `pending` (not started) or `waiting`
/// (a weekly window that is closed right now).
fn silence_state(s: &Value, now: i64) -> &'static str {
    if !s["expired_ms"].is_null() {
        "expired"
    } else if s["active"].as_bool() == Some(true) {
        "active"
    } else if s["ends_ms"].as_i64().is_some_and(|e| e <= now) {
        "ended"
    } else if s["starts_ms"].as_i64().is_some_and(|b| b > now) {
        "pending"
    } else {
        "waiting"
    }
}

fn recurrence_text(r: &Value) -> String {
    if r.is_null() {
        return "-".into();
    }
    let days: Vec<String> = r["days"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(cell)
        .collect();
    format!(
        "{} {}-{} {}",
        days.join(","),
        cell(&r["start"]),
        cell(&r["end"]),
        cell(&r["time_zone"])
    )
}

/// `sluice oncall`, and `sluice oncall override ...`.
pub async fn oncall(a: OncallArgs) -> Result<i32, CliError> {
    match a.cmd {
        None => oncall_now(&a.c).await,
        Some(OncallCmd::Override(cmd)) => oncall_override(cmd, &a.c).await,
    }
}

/// The projects whose production sluice.yml defines on-call schedules (named `schedule`, if
/// given), from `GET /oncall`, in the server's order without repeats.
async fn schedule_projects(
    client: &Client,
    schedule: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let rows: Vec<Value> = client.get("/oncall").await?;
    let mut out: Vec<String> = Vec::new();
    for r in &rows {
        if schedule.is_some_and(|s| r["schedule"].as_str() != Some(s)) {
            continue;
        }
        if let Some(p) = r["project"].as_str()
            && !out.iter().any(|o| o == p)
        {
            out.push(p.to_owned());
        }
    }
    Ok(out)
}

/// The path of a project's overrides.
fn overrides_path(project: &str) -> String {
    format!("/projects/{}/oncall/overrides", enc(project))
}

/// `sluice oncall override ...`
async fn oncall_override(cmd: OverrideCmd, c: &ClientOpts) -> Result<i32, CliError> {
    let client = Client::new(&c.server);
    match cmd {
        OverrideCmd::Add(a) => {
            let from = a.from.unwrap_or_else(sluice_server::engine::now_ms);
            if a.to <= from {
                return Err(CliError::new(
                    Exit::Usage,
                    "--to must be later than --from (or than now, without --from)",
                ));
            }
            let project = match a.project {
                Some(p) => p,
                None => {
                    let found = schedule_projects(&client, Some(&a.schedule)).await?;
                    match found.as_slice() {
                        [one] => one.clone(),
                        [] => {
                            return Err(CliError::new(
                                Exit::Usage,
                                format!(
                                    "no project you can see has a schedule named `{}`; check `sluice oncall`, or name the project with --project",
                                    a.schedule
                                ),
                            ));
                        }
                        many => {
                            return Err(CliError::new(
                                Exit::Usage,
                                format!(
                                    "schedule `{}` exists in several projects ({}); name one with --project",
                                    a.schedule,
                                    many.join(", ")
                                ),
                            ));
                        }
                    }
                }
            };
            let body = json!({
                "schedule": a.schedule,
                "user": a.user,
                "start": rfc3339_utc(from),
                "end": rfc3339_utc(a.to),
            });
            let v: Value = client.post(&overrides_path(&project), &body).await?;
            if c.output == Output::Json {
                print_json(&v);
                return Ok(0);
            }
            println!(
                "override #{}: {} is on call in {}/{} from {} until {} UTC",
                cell(&v["id"]),
                cell(&v["user"]),
                cell(&v["project"]),
                cell(&v["schedule"]),
                utc(v["starts_ms"].as_i64()),
                utc(v["ends_ms"].as_i64())
            );
            Ok(0)
        }
        OverrideCmd::List {
            project,
            schedule,
            all,
        } => {
            let projects = match project {
                Some(p) => vec![p],
                None => schedule_projects(&client, schedule.as_deref()).await?,
            };
            let q = query(&[
                ("schedule", schedule),
                ("all", all.then(|| "true".to_string())),
            ]);
            let mut list: Vec<Value> = Vec::new();
            for p in &projects {
                let rows: Vec<Value> = client.get(&format!("{}{q}", overrides_path(p))).await?;
                list.extend(rows);
            }
            if c.output == Output::Json {
                print_json(&list);
                return Ok(0);
            }
            if list.is_empty() {
                eprintln!(
                    "no overrides{}: add one with `sluice oncall override add SCHEDULE --user U --to T`",
                    if all { "" } else { " that have not ended" }
                );
                return Ok(0);
            }
            let now = sluice_server::engine::now_ms();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|o| {
                    let state = match (o["starts_ms"].as_i64(), o["ends_ms"].as_i64()) {
                        (_, Some(end)) if end <= now => "ended",
                        (Some(start), _) if start > now => "pending",
                        _ => "active",
                    };
                    vec![
                        format!("#{}", cell(&o["id"])),
                        state.to_string(),
                        format!("{}/{}", cell(&o["project"]), cell(&o["schedule"])),
                        cell(&o["user"]),
                        utc(o["starts_ms"].as_i64()),
                        utc(o["ends_ms"].as_i64()),
                        cell(&o["created_by"]),
                    ]
                })
                .collect();
            table::print(
                &[
                    "ID",
                    "STATE",
                    "SCHEDULE",
                    "USER",
                    "FROM (UTC)",
                    "TO (UTC)",
                    "BY",
                ],
                &rows,
            );
            Ok(0)
        }
        OverrideCmd::Rm { id, project } => {
            let project = match project {
                Some(p) => p,
                None => {
                    let mut owner = None;
                    for p in schedule_projects(&client, None).await? {
                        let rows: Vec<Value> = client
                            .get(&format!("{}?all=true", overrides_path(&p)))
                            .await?;
                        if rows.iter().any(|o| o["id"].as_i64() == Some(id)) {
                            owner = Some(p);
                            break;
                        }
                    }
                    owner.ok_or_else(|| {
                        CliError::new(
                            Exit::NotFound,
                            format!("no on-call override #{id} in the projects you can see (`sluice oncall override list --all`)"),
                        )
                    })?
                }
            };
            Client::new(&c.server)
                .delete(&format!("{}/{id}", overrides_path(&project)))
                .await?;
            if c.output == Output::Text {
                println!("removed override #{id} of {project}");
            }
            Ok(0)
        }
    }
}

/// `sluice oncall` without a subcommand: who is on call now and next.
async fn oncall_now(c: &ClientOpts) -> Result<i32, CliError> {
    let list: Vec<Value> = Client::new(&c.server).get("/oncall").await?;
    if c.output == Output::Json {
        print_json(&list);
        return Ok(0);
    }
    let who = |o: &Value| match o["user"].as_str() {
        Some(u) => match o["layer"].as_str() {
            Some(l) => format!("{u} ({l})"),
            None => format!("{u} (override)"),
        },
        None => "nobody".to_string(),
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let next = &s["next"];
            vec![
                cell(&s["project"]),
                format!("{} ({})", cell(&s["schedule"]), cell(&s["time_zone"])),
                who(&s["now"]),
                utc(s["now"]["until_ms"].as_i64()),
                if next.is_null() {
                    "-".to_string()
                } else {
                    format!("{} from {}", who(next), utc(next["since_ms"].as_i64()))
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        eprintln!("no on-call schedules: add them under `oncall.schedules` in sluice.yml");
        return Ok(0);
    }
    table::print(
        &["PROJECT", "SCHEDULE", "ON CALL NOW", "UNTIL (UTC)", "NEXT"],
        &rows,
    );
    Ok(0)
}

/// `sluice dora`.
pub async fn dora(a: DoraArgs) -> Result<i32, CliError> {
    let path = format!(
        "/dora{}",
        query(&[
            ("project", a.project.clone()),
            ("service", a.service.clone()),
            ("since", Some(a.since.clone())),
        ])
    );
    let v: Value = Client::new(&a.c.server).get(&path).await?;
    if a.c.output == Output::Json {
        print_json(&v);
        return Ok(0);
    }
    let m = &v["metrics"];
    let lv = &m["levels"];
    let cfr = m["change_failure_rate"]
        .as_f64()
        .map_or_else(|| "-".to_string(), |r| format!("{:.1} %", r * 100.0));
    let rows = vec![
        vec![
            "deployment frequency".to_string(),
            format!("{:.2}/day", m["deploys_per_day"].as_f64().unwrap_or(0.0)),
            level(&lv["deployment_frequency"]),
            format!(
                "{} deployments, {}",
                cell(&m["deployments"]),
                cell(&m["deployment_frequency_label"])
            ),
        ],
        vec![
            "lead time for changes".to_string(),
            human_opt(m["lead_time"]["median_ms"].as_i64()),
            level(&lv["lead_time"]),
            format!(
                "median of {} changes, p90 {}",
                cell(&m["lead_time"]["samples"]),
                human_opt(m["lead_time"]["p90_ms"].as_i64())
            ),
        ],
        vec![
            "change failure rate".to_string(),
            cfr,
            level(&lv["change_failure_rate"]),
            format!(
                "{} of {} deployments failed",
                cell(&m["failed_deploys"]),
                cell(&m["deployments"])
            ),
        ],
        vec![
            "failed deployment recovery time".to_string(),
            human_opt(m["recovery"]["median_ms"].as_i64()),
            level(&lv["recovery"]),
            format!(
                "median of {} recoveries, {} unrecovered",
                cell(&m["recovery"]["samples"]),
                cell(&m["unrecovered_failures"])
            ),
        ],
    ];
    println!("production, last {}", a.since);
    table::print(&["METRIC", "VALUE", "LEVEL", "DETAIL"], &rows);
    println!("overall: {}", level(&lv["overall"]));
    Ok(0)
}

/// `sluice integrations ...`
pub async fn integrations(cmd: IntegrationsCmd) -> Result<i32, CliError> {
    match cmd {
        IntegrationsCmd::Add {
            project,
            name,
            service,
            key,
            c,
        } => {
            let v: Value = Client::new(&c.server)
                .post(
                    &format!("/projects/{}/integrations", enc(&project)),
                    &json!({ "name": name, "service": service, "key": key }),
                )
                .await?;
            if c.output == Output::Json {
                print_json(&v);
                return Ok(0);
            }
            println!("key: {}", cell(&v["key"]));
            println!("PagerDuty Events API v2:  {}", cell(&v["pagerduty_url"]));
            println!("Alertmanager (v2 API):    {}", cell(&v["alertmanager_url"]));
            println!(
                "Alertmanager webhook:     {}",
                cell(&v["alertmanager_webhook_url"])
            );
            eprintln!(
                "integration #{} ({name}) of {project} created; this is the only time its key is shown",
                cell(&v["integration"]["id"])
            );
            Ok(0)
        }
        IntegrationsCmd::List { project, c } => {
            let list: Vec<Value> = Client::new(&c.server)
                .get(&format!("/projects/{}/integrations", enc(&project)))
                .await?;
            if c.output == Output::Json {
                print_json(&list);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|i| {
                    vec![
                        format!("#{}", cell(&i["id"])),
                        cell(&i["name"]),
                        i["service"].as_str().unwrap_or("(from labels)").to_string(),
                        format!("…{}", cell(&i["key_hint"])),
                        cell(&i["created_by"]),
                        utc(i["created_ms"].as_i64()),
                    ]
                })
                .collect();
            table::print(
                &["ID", "NAME", "SERVICE", "KEY", "BY", "CREATED (UTC)"],
                &rows,
            );
            Ok(0)
        }
        IntegrationsCmd::Rm { project, id, c } => {
            Client::new(&c.server)
                .delete(&format!("/projects/{}/integrations/{id}", enc(&project)))
                .await?;
            if c.output == Output::Text {
                println!("removed integration #{id} of {project}");
            }
            Ok(0)
        }
    }
}

/// `when by whom (after D)`, or `-`.
fn by_whom(at: Option<i64>, who: &Value, after: Option<i64>) -> String {
    let Some(at) = at else {
        return "-".into();
    };
    let mut out = format!("{} UTC", utc(Some(at)));
    match who.as_str() {
        Some(w) => out.push_str(&format!(" by {w}")),
        None => out.push_str(" (its alerts resolved)"),
    }
    if let Some(d) = after {
        out.push_str(&format!(", after {}", human(d)));
    }
    out
}

/// The suspected cause (the release last deployed to the service before the incident).
fn suspected(s: &Value) -> String {
    if s.is_null() {
        return "no deployment of this service before the incident".into();
    }
    format!(
        "version {} deployed to {} ({}) at {} UTC, deployment #{}",
        cell(&s["version"]),
        cell(&s["env"]),
        cell(&s["status"]),
        utc(s["deployed_ms"].as_i64()),
        cell(&s["deployment"])
    )
}

/// A DORA level as people read it: `Elite`, `High`, `Medium`, `Low`, or `-`.
fn level(l: &Value) -> String {
    let Some(name) = l.as_str() else {
        return "-".into();
    };
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "-".into(),
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` in UTC, or `-`.
fn utc(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => {
            let (y, mo, d, h, mi, s) = utc_parts(ms);
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
        }
        None => "-".into(),
    }
}

/// The time from `start` to `end` for humans, `-` when either is missing.
fn since(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => human(e.saturating_sub(s)),
        _ => "-".into(),
    }
}

fn human_opt(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), human)
}

/// A duration for humans, to the two largest units: `850ms`, `42s`, `5m 3s`, `3h 20m`,
/// `2d 4h`. Negative durations (clock skew) count as zero.
fn human(ms: i64) -> String {
    if ms <= 0 {
        return "0ms".into();
    }
    sluice_dora::human_duration(ms)
}

/// Checks a duration (`2h`, `90m`, `1h30m`) as the server will read it; keeps the text.
fn check_duration(s: &str) -> Result<String, String> {
    let d = sluice_server::config::parse_duration(s)?;
    if d.is_zero() {
        return Err("a silence must last longer than 0s".into());
    }
    Ok(s.trim().to_string())
}

/// Checks an integration key: 32 ASCII letters or digits.
fn check_key(s: &str) -> Result<String, String> {
    if s.len() == 32 && s.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(s.to_string())
    } else {
        Err("an integration key is exactly 32 letters or digits; leave --key out to have one generated".into())
    }
}

/// Weekday names, full or three letters, comma-separated: `sat,sun`, `monday,friday`;
/// answers full lower-case names.
fn parse_days(s: &str) -> Result<Days, String> {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        let found = DAYS.iter().find(|d| {
            lower.len() >= 3
                && d.starts_with(lower.as_str())
                && (lower.len() == 3 || lower.len() == d.len())
        });
        match found {
            Some(d) if !out.iter().any(|o| o == d) => out.push((*d).to_string()),
            Some(_) => {}
            None => {
                return Err(format!(
                    "unknown day `{part}`: write days like `sat,sun` or `monday,tuesday`"
                ));
            }
        }
    }
    Ok(Days(out))
}

/// `HH:MM-HH:MM` into its two local times.
fn parse_window(s: &str) -> Result<(String, String), String> {
    let bad = || format!("`{s}` is not a window: write `HH:MM-HH:MM`, e.g. `02:00-04:00`");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let hhmm = |t: &str| -> Option<String> {
        let (h, m) = t.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then(|| format!("{h:02}:{m:02}"))
    };
    Ok((hhmm(a).ok_or_else(bad)?, hhmm(b).ok_or_else(bad)?))
}

/// Parses RFC 3339 (`2026-05-01T06:00:00Z`, `2026-05-01T08:00:00+02:00`, with optional
/// fractions of a second; a space may stand for the `T`) into Unix milliseconds.
fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let text = match (s.get(..10), s.get(10..11), s.get(11..)) {
        (Some(date), Some(" "), Some(time)) => format!("{date}T{time}"),
        _ => s.to_owned(),
    };
    sluice_alerts::timestamp::parse_rfc3339(&text)
        .map_err(|_| format!("`{s}` is not an RFC 3339 time: write e.g. `2026-05-01T06:00:00Z`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_with_the_formatter_and_offsets_shift_them() {
        // Every 37 hours and 13 seconds across 1969..2101, so leap days and month ends come up.
        let mut ms = -86_400_000 * 400;
        while ms < 4_102_444_800_000 {
            let text = rfc3339_utc(ms);
            assert_eq!(parse_time(&text), Ok(ms), "{text}");
            ms += (37 * 3600 + 13) * 1000;
        }
        let z = parse_time("2026-05-01T06:00:00Z").unwrap_or_default();
        assert_eq!(parse_time("2026-05-01T08:00:00+02:00"), Ok(z));
        assert_eq!(parse_time("2026-05-01T01:30:00-04:30"), Ok(z));
        assert_eq!(parse_time("2026-05-01t06:00:00.250z"), Ok(z + 250));
        assert_eq!(parse_time("2026-05-01 06:00:00.1234Z"), Ok(z + 123));
        assert_eq!(utc(Some(z)), "2026-05-01 06:00:00");
    }

    #[test]
    fn bad_times_are_refused_without_panicking() {
        for bad in [
            "",
            "2026-05-01",
            "2026-05-01T06:00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-05-01T24:00:00Z",
            "2026-05-01T06:00:00+24:00",
            "2026-05-01T06:00:00.Z",
            "2026-05-01T06:00:00Zjunk",
            "+026-05-01T06:00:00Z",
            "2026-05-01T06:00:00+0200",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert!(parse_time("2024-02-29T00:00:00Z").is_ok());
        // Every truncation and every one-byte substitution of a valid time: an answer, never a panic.
        let good = "2026-05-01T08:00:00.5+02:00";
        for cut in 0..good.len() {
            let _ = parse_time(&good[..cut]);
        }
        for i in 0..good.len() {
            for c in ['0', '9', ':', '-', '+', 'T', 'Z', '.', 'é', ' ', '\0'] {
                let mut s: Vec<char> = good.chars().collect();
                s[i] = c;
                let s: String = s.into_iter().collect();
                // What parses means the same instant when written back in UTC.
                if let Ok(ms) = parse_time(&s) {
                    assert_eq!(
                        parse_time(&rfc3339_utc(ms)),
                        Ok(ms.div_euclid(1000) * 1000),
                        "{s}"
                    );
                }
            }
        }
    }

    #[test]
    fn days_windows_durations_and_keys_are_checked() {
        assert_eq!(
            parse_days("Sat, sunday,sat"),
            Ok(Days(vec!["saturday".to_string(), "sunday".to_string()]))
        );
        for bad in ["", "funday", "sa", "sunda", "mon,,tue"] {
            assert!(parse_days(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_window("2:00-04:30"),
            Ok(("02:00".to_string(), "04:30".to_string()))
        );
        assert_eq!(
            parse_window("22:00-02:00"),
            Ok(("22:00".to_string(), "02:00".to_string()))
        );
        for bad in [
            "",
            "02:00",
            "02:00-",
            "25:00-04:00",
            "02:00-04:60",
            "2-4",
            "-",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        assert_eq!(check_duration("2h"), Ok("2h".to_string()));
        for bad in ["2d", "", "0s", "h"] {
            assert!(check_duration(bad).is_err(), "{bad}");
        }
        assert!(check_key("0123456789abcdef0123456789ABCDEF").is_ok());
        assert!(check_key("0123456789abcdef").is_err());
        assert!(check_key("0123456789abcdef0123456789abcde!").is_err());
    }

    #[test]
    fn durations_read_to_two_units() {
        assert_eq!(human(-5), "0ms");
        assert_eq!(human(850), "850ms");
        assert_eq!(human(42_000), "42s");
        assert_eq!(human(303_000), "5m 3s");
        assert_eq!(human(3_600_000), "1h");
        assert_eq!(human(12_000_000), "3h 20m");
        assert_eq!(human(187_200_000), "2d 4h");
        assert_eq!(since(Some(1_000), Some(61_000)), "1m");
        assert_eq!(since(Some(1_000), None), "-");
    }

    #[test]
    fn oncall_keeps_working_alone_and_takes_override_subcommands() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let cli = crate::Cli::try_parse_from(
                ["sluice", "oncall"].into_iter().chain(args.iter().copied()),
            )
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            match cli.command {
                crate::Command::Oncall(a) => a,
                _ => panic!("{args:?}: not `oncall`"),
            }
        };
        let plain = parse(&["--output", "json", "--server", "http://x:1"]);
        assert!(plain.cmd.is_none());
        assert!(plain.c.output == Output::Json && plain.c.server == "http://x:1");
        // The client options are global: accepted after the subcommands too.
        let add = parse(&[
            "override",
            "add",
            "primary",
            "--user",
            "alice",
            "--from",
            "2026-05-01T18:00:00+02:00",
            "--to",
            "2026-05-02T08:00:00+02:00",
            "-o",
            "json",
            "--server",
            "http://y:2",
        ]);
        assert!(add.c.output == Output::Json && add.c.server == "http://y:2");
        let Some(OncallCmd::Override(OverrideCmd::Add(a))) = add.cmd else {
            panic!("not `override add`");
        };
        assert_eq!((a.schedule.as_str(), a.user.as_str()), ("primary", "alice"));
        assert_eq!(a.from, parse_time("2026-05-01T16:00:00Z").ok());
        assert_eq!(Some(a.to), parse_time("2026-05-02T06:00:00Z").ok());
        assert!(a.project.is_none());
        let rm = parse(&["override", "rm", "7", "--project", "shop"]);
        assert!(matches!(
            rm.cmd,
            Some(OncallCmd::Override(OverrideCmd::Rm { id: 7, project: Some(ref p) })) if p == "shop"
        ));
        let list = parse(&["override", "list", "--all", "--schedule", "primary"]);
        assert!(matches!(
            list.cmd,
            Some(OncallCmd::Override(OverrideCmd::List { all: true, project: None, schedule: Some(ref s) })) if s == "primary"
        ));
        // Refused before anything is sent: no --to, a time without a zone, a bad id.
        for bad in [
            &["override", "add", "primary", "--user", "a"][..],
            &[
                "override",
                "add",
                "primary",
                "--user",
                "a",
                "--to",
                "2026-05-02T08:00:00",
            ],
            &["override", "rm", "0"],
        ] {
            let args = ["sluice", "oncall"].into_iter().chain(bad.iter().copied());
            assert!(crate::Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_weekly_silence_sends_its_recurrence_and_an_end() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: SilenceAddArgs,
        }
        let parse =
            |args: &[&str]| T::try_parse_from(std::iter::once("t").chain(args.iter().copied()));
        let t = parse(&[
            "--matchers",
            "service=\"web\"",
            "--duration",
            "24h",
            "--weekly",
            "sun",
            "--window",
            "02:00-04:00",
            "--tz",
            "Europe/Berlin",
            "--comment",
            "db maintenance",
            "--project",
            "shop",
        ]);
        let body = silence_body(&t.map(|t| t.a).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(body["duration"], "24h");
        assert_eq!(body["project"], "shop");
        assert_eq!(
            body["recurrence"],
            json!({"days": ["sunday"], "start": "02:00", "end": "04:00", "time_zone": "Europe/Berlin"})
        );
        assert!(body.get("ends_ms").is_none() && body.get("starts_ms").is_none());
        let t = parse(&[
            "--matchers",
            "a=\"b\"",
            "--until",
            "2026-05-01T06:00:00Z",
            "--start",
            "2026-05-01T04:00:00Z",
            "-m",
            "x",
        ]);
        let body = silence_body(&t.map(|t| t.a).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            body["ends_ms"].as_i64(),
            parse_time("2026-05-01T06:00:00Z").ok()
        );
        assert_eq!(
            body["starts_ms"].as_i64(),
            parse_time("2026-05-01T04:00:00Z").ok()
        );
        assert!(body["recurrence"].is_null() && body["project"].is_null());
        // No end, both ends, a window without days, days without a window: usage errors.
        for args in [
            &["--matchers", "a=\"b\"", "--comment", "x"][..],
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "x",
                "--duration",
                "1h",
                "--until",
                "2026-05-01T06:00:00Z",
            ],
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "x",
                "--duration",
                "1h",
                "--window",
                "02:00-03:00",
                "--tz",
                "UTC",
            ],
            &[
                "--matchers",
                "a=\"b\"",
                "--comment",
                "x",
                "--duration",
                "1h",
                "--weekly",
                "sun",
            ],
            &["--matchers", "a=\"b\"", "--duration", "1h"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
