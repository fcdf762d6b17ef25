//! Validation of the `alerts` and `oncall` sections: grouping, channels, the ticket webhook,
//! alert rules, schedules and escalation policies. Schedules are read into
//! `sluice-oncall`'s types and checked by its own validation, whose messages are reported at
//! the schedule's position.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::{Entry, Validator, is_secret_name};
use crate::alerting::{
    AlertRule, Alerts, Channel, ChannelKind, DEFAULT_METRICS_PATH, EscalationPolicy, Flapping,
    OnCall, Schedule, Webhook, WebhookFormat,
};
use crate::node::{Node, Pos, Value};
use crate::schema::{
    ALERT_RULE_FIELDS, ALERTS_FIELDS, CHANNEL_FIELDS, CHANNEL_KINDS, ESCALATION_FIELDS,
    ESCALATION_LEVEL_FIELDS, FLAPPING_FIELDS, ONCALL_FIELDS, SEVERITY_VALUES, TICKET_FIELDS,
    WEBHOOK_FORMATS,
};

/// Most levels of an escalation policy.
const MAX_LEVELS: usize = 20;
/// Highest accepted `rate_limit`.
const MAX_RATE_LIMIT: i128 = 1_000_000;
/// Most state changes `alerts.flapping.changes` accepts.
const MAX_FLAP_CHANGES: i128 = 1_000;

impl Validator<'_> {
    /// The `alerts` section.
    pub(super) fn alerts(&mut self, node: &Node, anchor: Pos) -> Option<Alerts> {
        let path = "alerts";
        let fields = self.fields(node, anchor, path, ALERTS_FIELDS, &[])?;
        let mut a = Alerts::default();
        let mut ok = true;
        if let Some(n) = fields.get("group_by") {
            match self.string_list(n, "alerts.group_by") {
                Some(items) => {
                    for (i, (name, item)) in items.into_iter().enumerate() {
                        if sluice_alerts::gotext::is_valid_label_name(&name) {
                            a.group_by.push(name);
                        } else {
                            self.error(
                                item.pos,
                                &format!("alerts.group_by[{i}]"),
                                format!("invalid label name `{name}`"),
                                Some("label names are letters, digits and `_`, not starting with a digit".into()),
                            );
                            ok = false;
                        }
                    }
                }
                None => ok = false,
            }
        }
        for (field, slot) in [
            ("group_wait", &mut a.group_wait),
            ("group_interval", &mut a.group_interval),
            ("group_window", &mut a.group_window),
        ] {
            if let Some(n) = fields.get(field) {
                let zero_ok = field == "group_wait";
                match self.duration(n, &format!("alerts.{field}"), zero_ok) {
                    Some(d) => *slot = d,
                    None => ok = false,
                }
            }
        }
        if let Some(n) = fields.get("escalation") {
            match self.string(n, "alerts.escalation") {
                Some(s) => a.escalation = Some(s),
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("channels") {
            match self.channels(n) {
                Some(c) => a.channels = c,
                None => ok = false,
            }
        }
        if let Some((key, n)) = fields.entry("ticket") {
            match self.webhook(n, key.pos, "alerts.ticket", TICKET_FIELDS) {
                Some(w) => a.ticket = Some(w),
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("rules") {
            match self.rules(n) {
                Some(r) => a.rules = r,
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("rate_limit") {
            match self.count(
                n,
                "alerts.rate_limit",
                1..=MAX_RATE_LIMIT,
                "use 1 to 1000000 events per minute",
            ) {
                Some(v) => a.rate_limit = v,
                None => ok = false,
            }
        }
        if let Some((key, n)) = fields.entry("flapping") {
            match self.flapping(n, key.pos) {
                Some(f) => a.flapping = f,
                None => ok = false,
            }
        }
        ok.then_some(a)
    }

    /// `alerts.flapping`: `window` (a positive duration) and `changes` (2 or more).
    fn flapping(&mut self, node: &Node, anchor: Pos) -> Option<Flapping> {
        let path = "alerts.flapping";
        let fields = self.fields(node, anchor, path, FLAPPING_FIELDS, &[])?;
        let mut f = Flapping::default();
        let mut ok = true;
        if let Some(n) = fields.get("window") {
            match self.duration(n, "alerts.flapping.window", false) {
                Some(d) => f.window = d,
                None => ok = false,
            }
        }
        if let Some(n) = fields.get("changes") {
            match self.count(
                n,
                "alerts.flapping.changes",
                2..=MAX_FLAP_CHANGES,
                "use 2 to 1000 state changes (an alert's opening is one: 4 is two fire/resolve cycles)",
            ) {
                Some(v) => f.changes = v,
                None => ok = false,
            }
        }
        ok.then_some(f)
    }

    fn channels(&mut self, node: &Node) -> Option<Vec<Channel>> {
        let entries = self.entries(node, "alerts.channels")?;
        let mut ok = true;
        let mut out = Vec::new();
        for entry in entries {
            match self.channel(&entry) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn channel(&mut self, entry: &Entry<'_>) -> Option<Channel> {
        let path = format!("alerts.channels.{}", entry.name);
        let fields = self.fields(entry.value, entry.key.pos, &path, CHANNEL_FIELDS, &[])?;
        let kinds: Vec<&str> = CHANNEL_KINDS
            .iter()
            .copied()
            .filter(|k| fields.get(k).is_some())
            .collect();
        if kinds.len() != 1 {
            self.error(
                entry.key.pos,
                &path,
                if kinds.is_empty() {
                    "a channel needs one of `webhook`, `slack` or `email`".to_owned()
                } else {
                    format!("a channel has exactly one kind, found {}", kinds.join(" and "))
                },
                Some("e.g. `webhook: https://ops.example/hook`, `slack: SLACK_URL` (a secret) or `email: [oncall@example.com]`".into()),
            );
            return None;
        }
        let kind = match kinds[0] {
            "webhook" => {
                let w = self.webhook(entry.value, entry.key.pos, &path, CHANNEL_FIELDS)?;
                ChannelKind::Webhook(w)
            }
            "slack" => {
                let n = fields.get("slack")?;
                let name = self.string(n, &format!("{path}.slack"))?;
                if !is_secret_name(&name) {
                    self.error(
                        n.pos,
                        &format!("{path}.slack"),
                        format!("`{name}` is not a secret name"),
                        Some("Slack webhook URLs are secrets: store it with `sluice secrets set PROJECT SLACK_URL` and write `slack: SLACK_URL`".into()),
                    );
                    return None;
                }
                for f in ["format", "secret"] {
                    if let Some((k, _)) = fields.entry(f) {
                        self.error(
                            k.pos,
                            &format!("{path}.{f}"),
                            format!("`{f}` applies to webhook channels only"),
                            None,
                        );
                        return None;
                    }
                }
                ChannelKind::Slack { url_secret: name }
            }
            _ => {
                let n = fields.get("email")?;
                let to = self.string_list(n, &format!("{path}.email"))?;
                let mut ok = true;
                for (i, (addr, item)) in to.iter().enumerate() {
                    if !looks_like_email(addr) {
                        self.error(
                            item.pos,
                            &format!("{path}.email[{i}]"),
                            format!("`{addr}` is not an email address"),
                            Some("write it as `name@example.com`".into()),
                        );
                        ok = false;
                    }
                }
                if to.is_empty() {
                    self.error(
                        n.pos,
                        &format!("{path}.email"),
                        "no recipients",
                        Some("list at least one address".into()),
                    );
                    ok = false;
                }
                if !ok {
                    return None;
                }
                ChannelKind::Email {
                    to: to.into_iter().map(|(a, _)| a).collect(),
                }
            }
        };
        Some(Channel {
            name: entry.name.clone(),
            kind,
        })
    }

    /// A webhook object: `webhook` (or `url` in `ticket`), `format`, `secret`.
    fn webhook(
        &mut self,
        node: &Node,
        anchor: Pos,
        path: &str,
        allowed: &[&'static str],
    ) -> Option<Webhook> {
        let url_field = if allowed.contains(&"url") {
            "url"
        } else {
            "webhook"
        };
        let required: &[&'static str] = if url_field == "url" { &["url"] } else { &[] };
        let fields = self.fields(node, anchor, path, allowed, required)?;
        let url_node = fields.get(url_field)?;
        let url = self.string(url_node, &format!("{path}.{url_field}"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            self.error(
                url_node.pos,
                &format!("{path}.{url_field}"),
                format!("`{url}` is not an http(s) URL"),
                Some("write the full URL, e.g. `https://ops.example/hooks/sluice`".into()),
            );
            return None;
        }
        let format = match fields.get("format") {
            None => WebhookFormat::Sluice,
            Some(n) => {
                let f = self.string(n, &format!("{path}.format"))?;
                match f.as_str() {
                    "sluice" => WebhookFormat::Sluice,
                    "alertmanager" => WebhookFormat::Alertmanager,
                    _ => {
                        self.error(
                            n.pos,
                            &format!("{path}.format"),
                            format!("unknown webhook format `{f}`"),
                            Some(format!(
                                "expected one of {}",
                                super::list(WEBHOOK_FORMATS.iter().copied())
                            )),
                        );
                        return None;
                    }
                }
            }
        };
        let secret = match fields.get("secret") {
            None => None,
            Some(n) => {
                let s = self.string(n, &format!("{path}.secret"))?;
                if !is_secret_name(&s) {
                    self.error(
                        n.pos,
                        &format!("{path}.secret"),
                        format!("invalid secret name `{s}`"),
                        Some(
                            "name a secret of the secret store, e.g. `WEBHOOK_SIGNING_KEY`".into(),
                        ),
                    );
                    return None;
                }
                Some(s)
            }
        };
        Some(Webhook {
            url,
            format,
            secret,
        })
    }

    fn rules(&mut self, node: &Node) -> Option<Vec<AlertRule>> {
        let entries = self.entries(node, "alerts.rules")?;
        let mut ok = true;
        let mut out = Vec::new();
        for entry in entries {
            match self.rule(&entry) {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn rule(&mut self, entry: &Entry<'_>) -> Option<AlertRule> {
        let path = format!("alerts.rules.{}", entry.name);
        let fields = self.fields(
            entry.value,
            entry.key.pos,
            &path,
            ALERT_RULE_FIELDS,
            &["service", "expr"],
        )?;
        let mut ok = sluice_alerts::gotext::is_valid_label_name(&entry.name);
        if !ok {
            self.error(
                entry.key.pos,
                &path,
                format!("invalid rule name `{}`", entry.name),
                Some("the name becomes the `alertname` label: letters, digits and `_`, e.g. `HighErrorRate`".into()),
            );
        }
        let service = fields
            .get("service")
            .and_then(|n| self.string(n, &format!("{path}.service")));
        let env = match fields.get("env") {
            Some(n) => self.string(n, &format!("{path}.env")).map(Some),
            None => Some(None),
        };
        let expr = fields.get("expr").and_then(|n| {
            let text = self.string(n, &format!("{path}.expr"))?;
            match sluice_rules::Condition::parse(&text) {
                Ok(c) => Some((text, c.reads_scraped())),
                Err(e) => {
                    self.error(
                        n.pos,
                        &format!("{path}.expr"),
                        format!("invalid rule expression `{text}`: {e}"),
                        Some("e.g. `error_rate > 0.05`, `p99_latency > 0.5`, `request_rate < 1` or `rate(http_requests_total{code=~\"5..\"}) > 2`".into()),
                    );
                    None
                }
            }
        });
        let window = match fields.get("window") {
            Some(n) => self.duration(n, &format!("{path}.window"), false),
            None => Some(Duration::from_secs(5 * 60)),
        };
        let hold = match fields.get("for") {
            Some(n) => self.duration(n, &format!("{path}.for"), true),
            None => Some(Duration::ZERO),
        };
        let severity = match fields.get("severity") {
            None => Some("warning".to_owned()),
            Some(n) => self.string(n, &format!("{path}.severity")).and_then(|s| {
                if SEVERITY_VALUES.contains(&s.as_str()) {
                    Some(s)
                } else {
                    self.error(
                        n.pos,
                        &format!("{path}.severity"),
                        format!("unknown severity `{s}`"),
                        Some(format!(
                            "expected one of {}",
                            super::list(SEVERITY_VALUES.iter().copied())
                        )),
                    );
                    None
                }
            }),
        };
        let labels = match fields.get("labels") {
            Some(n) => self.labels(n, &format!("{path}.labels")),
            None => Some(BTreeMap::new()),
        };
        let summary = match fields.get("summary") {
            Some(n) => self.string(n, &format!("{path}.summary")).map(Some),
            None => Some(None),
        };
        let metrics_path = match fields.entry("metrics_path") {
            None => Some(DEFAULT_METRICS_PATH.to_owned()),
            Some((key, n)) => self.metrics_path(key.pos, n, &path, expr.as_ref()),
        };
        ok &= service.is_some() && env.is_some() && expr.is_some();
        let (expr, _) = expr?;
        let rule = AlertRule {
            name: entry.name.clone(),
            service: service?,
            env: env?,
            expr,
            window: window?,
            hold: hold?,
            severity: severity?,
            labels: labels?,
            summary: summary?,
            metrics_path: metrics_path?,
        };
        ok.then_some(rule)
    }

    /// A rule's `metrics_path`: an absolute path without blanks or fragment, on a rule whose
    /// expression (`expr`: its text and whether it reads scraped metrics) scrapes.
    fn metrics_path(
        &mut self,
        key: Pos,
        node: &Node,
        rule: &str,
        expr: Option<&(String, bool)>,
    ) -> Option<String> {
        let path = format!("{rule}.metrics_path");
        let text = self.string(node, &path)?;
        if let Some((expr, false)) = expr {
            self.error(
                key,
                &path,
                format!("`metrics_path` is set but `{expr}` reads only the proxy's metrics"),
                Some("remove `metrics_path`, or write an expression over the service's own metrics, e.g. `last(queue_depth) > 100`".into()),
            );
            return None;
        }
        let valid = text.starts_with('/')
            && text.len() <= 1024
            && text.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if !valid {
            self.error(
                node.pos,
                &path,
                format!("`{text}` is not a path on the service"),
                Some(
                    "write an absolute path without blanks, e.g. `/metrics` or `/admin/prometheus`"
                        .into(),
                ),
            );
            return None;
        }
        Some(text)
    }

    fn labels(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let entries = self.entries(node, path)?;
        let mut ok = true;
        let mut out = BTreeMap::new();
        for e in entries {
            if !sluice_alerts::gotext::is_valid_label_name(&e.name) {
                self.error(
                    e.key.pos,
                    &format!("{path}.{}", e.name),
                    format!("invalid label name `{}`", e.name),
                    None,
                );
                ok = false;
                continue;
            }
            match e.value.scalar_text(self.source) {
                Some(v)
                    if !matches!(e.value.value, Value::Seq(_) | Value::Map(_) | Value::Null) =>
                {
                    out.insert(e.name, v);
                }
                _ => {
                    self.wrong_type(e.value, &format!("{path}.{}", e.name), "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Names the alert settings refer to must exist: the escalation policy, each rule's
    /// service and environment.
    pub(super) fn check_alert_refs(
        &mut self,
        fields: &super::Fields<'_>,
        alerts: &Alerts,
        oncall: &OnCall,
        services: &[crate::Service],
    ) {
        let Some(node) = fields.get("alerts") else {
            return;
        };
        let field = |name: &str| -> Pos {
            match &node.value {
                Value::Map(items) => items
                    .iter()
                    .find(|(k, _)| matches!(&k.value, Value::Str(s) if s == name))
                    .map_or(node.pos, |(_, v)| v.pos),
                _ => node.pos,
            }
        };
        if let Some(p) = &alerts.escalation
            && !oncall.escalation.iter().any(|e| &e.name == p)
        {
            self.error(
                field("escalation"),
                "alerts.escalation",
                format!("unknown escalation policy `{p}`"),
                Some("define it under `oncall.escalation`".into()),
            );
        }
        let envs = self.env_names.clone().unwrap_or_default();
        for r in &alerts.rules {
            if !services.iter().any(|s| s.name == r.service) {
                self.error(
                    field("rules"),
                    &format!("alerts.rules.{}.service", r.name),
                    format!("unknown service `{}`", r.service),
                    Some(format!(
                        "expected one of {}",
                        super::list(services.iter().map(|s| s.name.as_str()))
                    )),
                );
            }
            if let Some(e) = &r.env
                && !envs.iter().any(|n| n == e)
            {
                self.error(
                    field("rules"),
                    &format!("alerts.rules.{}.env", r.name),
                    format!("unknown environment `{e}`"),
                    Some(format!(
                        "expected one of {}",
                        super::list(envs.iter().map(String::as_str))
                    )),
                );
            }
        }
    }

    /// The `oncall` section.
    pub(super) fn oncall(&mut self, node: &Node, anchor: Pos) -> Option<OnCall> {
        let fields = self.fields(node, anchor, "oncall", ONCALL_FIELDS, &[])?;
        let mut out = OnCall::default();
        let mut ok = true;
        if let Some(n) = fields.get("schedules") {
            for e in self.entries(n, "oncall.schedules")? {
                match self.schedule(&e) {
                    Some(s) => out.schedules.push(s),
                    None => ok = false,
                }
            }
        }
        if let Some(n) = fields.get("escalation") {
            for e in self.entries(n, "oncall.escalation")? {
                match self.escalation(&e) {
                    Some(p) => out.escalation.push(p),
                    None => ok = false,
                }
            }
        }
        if !ok {
            return None;
        }
        // Every schedule an escalation level names must exist.
        let names: HashSet<&str> = out.schedules.iter().map(|s| s.name.as_str()).collect();
        for p in &out.escalation {
            for level in &p.levels {
                for t in &level.targets {
                    if let sluice_oncall::Target::Schedule(s) = t
                        && !names.contains(s.as_str())
                    {
                        let pos = fields.get("escalation").map_or(anchor, |n| n.pos);
                        self.error(
                            pos,
                            &format!("oncall.escalation.{}", p.name),
                            format!("unknown schedule `{s}`"),
                            Some("define it under `oncall.schedules`".into()),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(out)
    }

    fn schedule(&mut self, entry: &Entry<'_>) -> Option<Schedule> {
        let path = format!("oncall.schedules.{}", entry.name);
        let mut value = to_json(entry.value, self.source);
        match &mut value {
            serde_json::Value::Object(map) => {
                map.insert("name".into(), serde_json::Value::String(entry.name.clone()));
            }
            _ => {
                self.wrong_type(
                    entry.value,
                    &path,
                    "a mapping with `time_zone` and `layers`",
                );
                return None;
            }
        }
        let schedule: Schedule = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => {
                self.error(
                    entry.key.pos,
                    &path,
                    format!("invalid schedule: {e}"),
                    Some("a schedule has `time_zone` and `layers` (each with `name`, `users`, `rotation` (daily, weekly or `{hours: N}`), `start` such as `2026-01-05T09:00` and optional `restrictions`); see docs/oncall.md".into()),
                );
                return None;
            }
        };
        if let Err(errors) = schedule.validate() {
            for e in errors.errors {
                self.error(entry.key.pos, &path, e.to_string(), None);
            }
            return None;
        }
        Some(schedule)
    }

    fn escalation(&mut self, entry: &Entry<'_>) -> Option<EscalationPolicy> {
        let path = format!("oncall.escalation.{}", entry.name);
        let fields = self.fields(
            entry.value,
            entry.key.pos,
            &path,
            ESCALATION_FIELDS,
            &["levels"],
        )?;
        let levels_node = fields.get("levels")?;
        let items = self.items(levels_node, &format!("{path}.levels"), "a list of levels")?;
        if items.is_empty() || items.len() > MAX_LEVELS {
            self.error(
                levels_node.pos,
                &format!("{path}.levels"),
                format!("a policy needs 1 to {MAX_LEVELS} levels"),
                None,
            );
            return None;
        }
        let mut levels = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let lp = format!("{path}.levels[{i}]");
            let Some(f) = self.fields(item, item.pos, &lp, ESCALATION_LEVEL_FIELDS, &["notify"])
            else {
                ok = false;
                continue;
            };
            let mut targets = Vec::new();
            if let Some(n) = f.get("notify") {
                match self.string_list(n, &format!("{lp}.notify")) {
                    Some(list) if !list.is_empty() => {
                        for (j, (t, node)) in list.into_iter().enumerate() {
                            match t.split_once(':') {
                                Some(("user", u)) if !u.is_empty() => {
                                    targets.push(sluice_oncall::Target::User(u.to_owned()));
                                }
                                Some(("schedule", s)) if !s.is_empty() => {
                                    targets.push(sluice_oncall::Target::Schedule(s.to_owned()));
                                }
                                _ => {
                                    self.error(
                                        node.pos,
                                        &format!("{lp}.notify[{j}]"),
                                        format!("`{t}` is not a target"),
                                        Some("write `user:NAME` or `schedule:NAME`".into()),
                                    );
                                    ok = false;
                                }
                            }
                        }
                    }
                    Some(_) => {
                        self.error(
                            n.pos,
                            &format!("{lp}.notify"),
                            "no one to notify",
                            Some("list `user:NAME` or `schedule:NAME` targets".into()),
                        );
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            let delay = match f.get("after") {
                Some(n) => self.duration(n, &format!("{lp}.after"), false),
                None => Some(Duration::from_secs(15 * 60)),
            };
            match delay {
                Some(d) => levels.push(sluice_oncall::Level {
                    targets,
                    delay_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                }),
                None => ok = false,
            }
        }
        let repeat = match fields.get("repeat") {
            Some(n) => self.count(
                n,
                &format!("{path}.repeat"),
                0..=i128::from(sluice_oncall::escalation::MAX_REPEAT),
                "use 0 to 100",
            ),
            None => Some(0),
        };
        let policy = EscalationPolicy {
            name: entry.name.clone(),
            levels,
            repeat: repeat?,
        };
        if !ok {
            return None;
        }
        if let Err(e) = policy.validate() {
            self.error(entry.key.pos, &path, e.to_string(), None);
            return None;
        }
        Some(policy)
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
        }
        None => false,
    }
}

/// A node as JSON, scalars in their source spelling where it matters (numbers stay numbers).
fn to_json(node: &Node, source: &str) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => i64::try_from(*n)
            .map(J::from)
            .unwrap_or_else(|_| J::String(n.to_string())),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(|n| to_json(n, source)).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match &k.value {
                        Value::Str(s) => s.clone(),
                        _ => k.scalar_text(source).unwrap_or_default(),
                    };
                    (key, to_json(v, source))
                })
                .collect(),
        ),
    }
}
