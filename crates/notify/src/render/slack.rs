//! Slack-compatible incoming-webhook messages.
//!
//! Slack renders `blocks` (Block Kit) and uses the top-level `text` only for push
//! notifications; Mattermost and Rocket.Chat ignore `blocks` and show `text`. So `text` is
//! a complete message on its own (title, summary, links in `<url|label>` form, which both
//! translate), and `blocks` is the richer Slack layout with link buttons. Block Kit has no
//! colour bar, so severity is hinted by a coloured circle emoji in both.
//!
//! Every user-provided string is escaped for mrkdwn (`&`, `<`, `>`) and cut to Block Kit's
//! length limits, because Slack rejects the whole message when one block is too long.

use serde_json::{Value, json};

use super::{MAX_LISTED_ALERTS, links};
use crate::model::{Notification, NotificationEvent};
use crate::text::{is_http_url, mrkdwn, mrkdwn_link, one_line, severity_emoji, truncate, utc};

/// Block Kit limits (characters).
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const BUTTON_URL_MAX: usize = 3000;
const CONTEXT_MAX: usize = 2000;

/// The emoji in front of the title: a check mark once resolved, else the severity colour.
fn marker(n: &Notification) -> &'static str {
    if n.event == NotificationEvent::Resolved {
        "✅"
    } else {
        severity_emoji(&n.severity)
    }
}

/// One line saying what happened, in mrkdwn.
fn event_line(n: &Notification) -> String {
    match (n.event, &n.acknowledged_by) {
        (NotificationEvent::Triggered, _) => "Incident opened".to_string(),
        (NotificationEvent::Escalated, _) => "Escalated: still unacknowledged".to_string(),
        (NotificationEvent::Acknowledged, Some(who)) => {
            format!("Acknowledged by *{}*", mrkdwn(&one_line(who)))
        }
        (NotificationEvent::Acknowledged, None) => "Acknowledged".to_string(),
        (NotificationEvent::Resolved, _) => "Resolved".to_string(),
        (NotificationEvent::Reminder, Some(who)) => {
            format!(
                "Reminder: still open (acknowledged by *{}*)",
                mrkdwn(&one_line(who))
            )
        }
        (NotificationEvent::Reminder, None) => {
            "Reminder: still open and unacknowledged".to_string()
        }
    }
}

/// `#42 title`, linked to the incident when its URL is usable.
fn title_link(n: &Notification) -> String {
    let label = format!("#{} {}", n.incident_id, truncate(&one_line(&n.title), 200));
    if is_http_url(&n.incident_url) {
        mrkdwn_link(&n.incident_url, &label)
    } else {
        mrkdwn(&label)
    }
}

/// The plain fallback `text`, complete enough for Mattermost and Rocket.Chat.
fn fallback(n: &Notification) -> String {
    let mut out = format!(
        "{} [{}] {} {}\n{} · {} / {} · {} alert{}",
        marker(n),
        mrkdwn(&crate::text::severity_tag(&n.severity)),
        n.event.label(),
        title_link(n),
        event_line(n),
        mrkdwn(&truncate(&one_line(&n.project), 100)),
        mrkdwn(&truncate(&one_line(&n.service), 100)),
        n.alert_count,
        if n.alert_count == 1 { "" } else { "s" },
    );
    if !n.summary.trim().is_empty() {
        out.push('\n');
        out.push_str(&mrkdwn(&truncate(n.summary.trim(), 1000)));
    }
    if let Some(cause) = n
        .suspected_cause
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        out.push_str("\nSuspected cause: ");
        out.push_str(&mrkdwn(&truncate(&one_line(cause), 300)));
    }
    let links: Vec<String> = links(n)
        .into_iter()
        .filter(|(_, u)| u.chars().count() <= BUTTON_URL_MAX)
        .map(|(label, url)| mrkdwn_link(url, label))
        .collect();
    if !links.is_empty() {
        out.push('\n');
        out.push_str(&links.join(" · "));
    }
    out
}

/// A Slack date token that each reader sees in their own time zone, with a UTC fallback.
fn slack_date(ms: i64) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        ms.div_euclid(1000),
        utc(ms)
    )
}

fn alert_list(n: &Notification) -> Option<String> {
    if n.alerts.is_empty() {
        return None;
    }
    let mut lines: Vec<String> = n
        .alerts
        .iter()
        .take(MAX_LISTED_ALERTS)
        .map(|a| {
            format!(
                "{} {} _since {}_",
                severity_emoji(&a.severity),
                mrkdwn(&truncate(&one_line(&a.summary), 200)),
                slack_date(a.starts_at_ms)
            )
        })
        .collect();
    let shown = lines.len();
    let total = n.alert_count.max(n.alerts.len());
    if total > shown {
        lines.push(format!("…and {} more", total - shown));
    }
    Some(truncate(&lines.join("\n"), SECTION_MAX))
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}"), FIELD_MAX)})
}

/// Renders the incoming-webhook body `{"text": …, "blocks": […]}` for `n`.
///
/// Blocks: a header (`🔴 Triggered: title`), a section with the linked title, what happened
/// and the summary, a section of fields (severity, project, service, alerts), the alert
/// list, the suspected cause as context, and link buttons `Acknowledge` / `Resolve` /
/// `Open incident` whose `url` is the signed link from the server.
pub fn render_slack(n: &Notification) -> Value {
    let header = truncate(
        &format!("{} {}: {}", marker(n), n.event.label(), one_line(&n.title)),
        HEADER_MAX,
    );
    let mut intro = format!("*{}*\n{}", title_link(n), event_line(n));
    if !n.summary.trim().is_empty() {
        intro.push_str("\n\n");
        intro.push_str(&mrkdwn(n.summary.trim()));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&intro, SECTION_MAX)}}),
        json!({"type": "section", "fields": [
            field("Severity", &format!("{} {}", severity_emoji(&n.severity),
                mrkdwn(&truncate(&one_line(&n.severity), 100)))),
            field("Project", &mrkdwn(&one_line(&n.project))),
            field("Service", &mrkdwn(&one_line(&n.service))),
            field("Alerts", &n.alert_count.to_string()),
        ]}),
    ];
    if let Some(list) = alert_list(n) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": list}}));
    }
    if let Some(cause) = n
        .suspected_cause
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        let text = truncate(
            &format!("🔎 Suspected cause: {}", mrkdwn(&one_line(cause))),
            CONTEXT_MAX,
        );
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}));
    }
    let buttons: Vec<Value> = links(n)
        .into_iter()
        .filter(|(_, url)| url.chars().count() <= BUTTON_URL_MAX)
        .map(|(label, url)| {
            let mut b = json!({
                "type": "button",
                "text": {"type": "plain_text", "text": label},
                "url": url,
                "action_id": format!("sluice_{}", label.to_ascii_lowercase().replace(' ', "_")),
            });
            if label == "Acknowledge" {
                b["style"] = json!("primary");
            }
            b
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    json!({"text": fallback(n), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::notification;

    fn buttons(v: &Value) -> Vec<(String, String)> {
        v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .map(|e| {
                (
                    e["text"]["text"].as_str().unwrap().to_string(),
                    e["url"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn buttons_carry_the_signed_links() {
        let n = notification();
        let v = render_slack(&n);
        assert_eq!(
            buttons(&v),
            vec![
                ("Acknowledge".to_string(), n.ack_url.clone().unwrap()),
                ("Resolve".to_string(), n.resolve_url.clone().unwrap()),
                ("Open incident".to_string(), n.incident_url.clone()),
            ]
        );
        assert_eq!(v["blocks"][0]["type"], "header");
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("🔴 Triggered: ")
        );
        // The fallback text carries the links too (for Mattermost / Rocket.Chat), with `&`
        // in the query escaped as Slack asks.
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("|Acknowledge>"), "{text}");
        assert!(
            text.contains(&n.ack_url.clone().unwrap().replace('&', "&amp;")),
            "{text}"
        );
    }

    #[test]
    fn user_text_is_escaped_and_cannot_mention_or_link() {
        let mut n = notification();
        n.title = "<!channel> & <https://evil.example|click>".into();
        n.summary = "a < b > c".into();
        n.suspected_cause = Some("<@U123>".into());
        let v = render_slack(&n);
        // Everything Slack parses as mrkdwn: the fallback text and all blocks but the
        // plain_text header.
        let blocks = v["blocks"].as_array().unwrap();
        let all = format!("{} {:?}", v["text"], &blocks[1..]);
        assert!(!all.contains("<!channel>"));
        assert!(!all.contains("<https://evil.example"));
        assert!(!all.contains("<@U123>"));
        assert!(all.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
        assert!(all.contains("a &lt; b &gt; c"));
        // plain_text headers are not mrkdwn, so they stay literal.
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("<!channel>")
        );
    }

    #[test]
    fn unusable_links_are_left_out_and_limits_hold() {
        let mut n = notification();
        n.ack_url = Some("javascript:alert(1)".into());
        n.resolve_url = Some(format!("https://x.example/{}", "a".repeat(4000)));
        n.title = "t".repeat(500);
        let v = render_slack(&n);
        let labels: Vec<String> = buttons(&v).into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, vec!["Open incident".to_string()]);
        assert!(!v.to_string().contains("javascript:"));
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= HEADER_MAX
        );
    }

    #[test]
    fn alert_list_says_how_many_more() {
        let mut n = notification();
        let a = n.alerts[0].clone();
        n.alerts = vec![a; MAX_LISTED_ALERTS + 2];
        n.alert_count = 40;
        let v = render_slack(&n).to_string();
        assert!(
            v.contains(&format!("…and {} more", 40 - MAX_LISTED_ALERTS)),
            "{v}"
        );
    }

    #[test]
    fn resolved_uses_check_mark_and_event_lines_differ() {
        let mut n = notification();
        n.event = NotificationEvent::Acknowledged;
        n.acknowledged_by = Some("alice".into());
        assert!(
            render_slack(&n)
                .to_string()
                .contains("Acknowledged by *alice*")
        );
        n.event = NotificationEvent::Resolved;
        let v = render_slack(&n);
        assert!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("✅ Resolved: ")
        );
    }
}
