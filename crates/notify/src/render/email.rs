//! Email rendering: subject, a plain-text part and a simple HTML part (the two halves of
//! a `multipart/alternative` message), plus the ids that thread all mails of one incident.
//!
//! Threading: the first mail of an incident (`Triggered`) has the Message-ID
//! `<incident-<id>@<domain>>`; every later mail has its own id and names that root in
//! `In-Reply-To` and `References`. Clients that thread by references (Thunderbird, Apple
//! Mail, Outlook) group them even when the first mail never arrived; Gmail additionally
//! wants the same subject, which this format does not keep (the event is in the subject).

use super::{MAX_LISTED_ALERTS, links};
use crate::model::{Notification, NotificationEvent};
use crate::text::{html, one_line, severity_color, severity_emoji, severity_tag, truncate, utc};

/// A rendered email, independent of any mail library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContent {
    /// One line, e.g. `[sluice] [CRITICAL] Triggered #42: API error rate high`.
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part (all user text escaped).
    pub html: String,
    /// This mail's `Message-ID`, with angle brackets.
    pub message_id: String,
    /// The incident's thread root, for `In-Reply-To` and `References` (absent on the
    /// first mail, which is the root).
    pub in_reply_to: Option<String>,
}

/// The incident thread root id, e.g. `<incident-42@example.com>`.
fn root_id(n: &Notification, domain: &str) -> String {
    format!("<incident-{}@{}>", n.incident_id, id_domain(domain))
}

/// Keeps a Message-ID domain to letters, digits, dots and dashes (anything else could
/// break the header), falling back to `sluice.invalid`.
fn id_domain(domain: &str) -> String {
    let d: String = domain
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .take(200)
        .collect();
    let d = d.trim_matches('.').to_string();
    if d.is_empty() {
        "sluice.invalid".to_string()
    } else {
        d
    }
}

fn what_happened(n: &Notification) -> String {
    let who = n
        .acknowledged_by
        .as_deref()
        .map(|w| truncate(&one_line(w), 100));
    match (n.event, who) {
        (NotificationEvent::Triggered, _) => "A new incident was opened.".to_string(),
        (NotificationEvent::Escalated, _) => {
            "The incident was escalated: nobody has acknowledged it yet.".to_string()
        }
        (NotificationEvent::Acknowledged, Some(who)) => format!("Acknowledged by {who}."),
        (NotificationEvent::Acknowledged, None) => "The incident was acknowledged.".to_string(),
        (NotificationEvent::Resolved, _) => "The incident is resolved.".to_string(),
        (NotificationEvent::Reminder, Some(who)) => {
            format!("Reminder: the incident is still open (acknowledged by {who}).")
        }
        (NotificationEvent::Reminder, None) => {
            "Reminder: the incident is still open and unacknowledged.".to_string()
        }
    }
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{}={}", one_line(k), one_line(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the mail for `n`. `domain` names the Message-IDs (use the sender's domain).
pub fn render_email(n: &Notification, domain: &str) -> EmailContent {
    let title = truncate(&one_line(&n.title), 200);
    let subject = format!(
        "[sluice] [{}] {} #{}: {}",
        severity_tag(&n.severity),
        n.event.label(),
        n.incident_id,
        title
    );
    let cause = n
        .suspected_cause
        .as_deref()
        .map(one_line)
        .filter(|c| !c.trim().is_empty());
    let total = n.alert_count.max(n.alerts.len());
    let listed = n.alerts.iter().take(MAX_LISTED_ALERTS);
    let more = total.saturating_sub(n.alerts.len().min(MAX_LISTED_ALERTS));

    // Plain text.
    let mut t = format!(
        "{} #{}: {}\n{}\n\nSeverity: {}\nProject:  {}\nService:  {}\nAlerts:   {}\nAt:       {}\n",
        n.event.label(),
        n.incident_id,
        title,
        what_happened(n),
        one_line(&n.severity),
        one_line(&n.project),
        one_line(&n.service),
        n.alert_count,
        utc(n.at_ms),
    );
    if let Some(cause) = &cause {
        t.push_str(&format!("Suspected cause: {cause}\n"));
    }
    if !n.summary.trim().is_empty() {
        t.push_str(&format!("\n{}\n", n.summary.trim()));
    }
    if total > 0 {
        t.push_str("\nAlerts:\n");
        for a in listed.clone() {
            t.push_str(&format!(
                "- [{}] {} (since {})",
                one_line(&a.severity),
                one_line(&a.summary),
                utc(a.starts_at_ms)
            ));
            if !a.labels.is_empty() {
                t.push_str(&format!("\n  {}", labels_text(&a.labels)));
            }
            t.push('\n');
        }
        if more > 0 {
            t.push_str(&format!("- …and {more} more\n"));
        }
    }
    t.push('\n');
    for (label, url) in links(n) {
        t.push_str(&format!("{label}: {url}\n"));
    }
    t.push_str("\n-- \nSent by sluice. Anyone with these links can acknowledge or resolve the incident; do not forward this mail.\n");

    // HTML: one table, inline styles only (mail clients drop <style>).
    let color = severity_color(&n.severity);
    let mut h = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family:sans-serif;font-size:14px;color:#1f2328\">\n",
    );
    h.push_str(&format!(
        "<div style=\"border-left:6px solid {color};padding:4px 12px\">\n\
         <h2 style=\"margin:4px 0\">{} {} #{}: {}</h2>\n<p>{}</p>\n",
        severity_emoji(&n.severity),
        n.event.label(),
        n.incident_id,
        html(&title),
        html(&what_happened(n)),
    ));
    h.push_str("<table cellpadding=\"4\" style=\"border-collapse:collapse\">\n");
    let mut row = |k: &str, v: &str| {
        h.push_str(&format!(
            "<tr><th align=\"left\">{k}</th><td>{}</td></tr>\n",
            html(v)
        ));
    };
    row("Severity", &one_line(&n.severity));
    row("Project", &one_line(&n.project));
    row("Service", &one_line(&n.service));
    row("Alerts", &n.alert_count.to_string());
    row("At", &utc(n.at_ms));
    if let Some(cause) = &cause {
        row("Suspected cause", cause);
    }
    h.push_str("</table>\n");
    if !n.summary.trim().is_empty() {
        h.push_str(&format!(
            "<p style=\"white-space:pre-wrap\">{}</p>\n",
            html(n.summary.trim())
        ));
    }
    if total > 0 {
        h.push_str("<ul>\n");
        for a in listed {
            h.push_str(&format!(
                "<li><b>[{}]</b> {} <i>(since {})</i>",
                html(&one_line(&a.severity)),
                html(&one_line(&a.summary)),
                utc(a.starts_at_ms)
            ));
            if !a.labels.is_empty() {
                h.push_str(&format!(
                    "<br><small>{}</small>",
                    html(&labels_text(&a.labels))
                ));
            }
            h.push_str("</li>\n");
        }
        if more > 0 {
            h.push_str(&format!("<li>…and {more} more</li>\n"));
        }
        h.push_str("</ul>\n");
    }
    let buttons: Vec<String> = links(n)
        .into_iter()
        .map(|(label, url)| {
            format!(
                "<a href=\"{}\" style=\"display:inline-block;padding:6px 14px;margin-right:8px;\
                 border:1px solid {color};border-radius:4px;text-decoration:none\">{label}</a>",
                html(url)
            )
        })
        .collect();
    if !buttons.is_empty() {
        h.push_str(&format!("<p>{}</p>\n", buttons.join("\n")));
    }
    h.push_str(
        "</div>\n<p style=\"color:#6e7781;font-size:12px\">Sent by sluice. Anyone with these \
         links can acknowledge or resolve the incident; do not forward this mail.</p>\n</body></html>\n",
    );

    let root = root_id(n, domain);
    let (message_id, in_reply_to) = if n.event == NotificationEvent::Triggered {
        (root, None)
    } else {
        (
            format!(
                "<incident-{}-{}-{}@{}>",
                n.incident_id,
                n.event.as_str(),
                n.at_ms,
                id_domain(domain)
            ),
            Some(root),
        )
    };
    EmailContent {
        subject,
        text: t,
        html: h,
        message_id,
        in_reply_to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::notification;

    #[test]
    fn subject_and_parts_carry_the_incident_and_links() {
        let n = notification();
        let e = render_email(&n, "example.com");
        assert_eq!(
            e.subject,
            format!("[sluice] [CRITICAL] Triggered #42: {}", n.title)
        );
        let ack = n.ack_url.clone().unwrap();
        assert!(e.text.contains(&format!("Acknowledge: {ack}")));
        assert!(
            e.html
                .contains(&format!("href=\"{}\"", ack.replace('&', "&amp;")))
        );
        assert!(e.text.contains("Suspected cause: release v1.4.2"));
        assert!(e.text.contains("pod=api-7f9c"));
    }

    #[test]
    fn html_escapes_user_text_and_subject_stays_one_line() {
        let mut n = notification();
        n.title = "<script>x</script>\r\nBcc: victim@example.com".into();
        n.summary = "\"quoted\" & <b>bold</b>".into();
        n.ack_url = Some("javascript:alert(1)".into());
        let e = render_email(&n, "example.com");
        assert!(!e.subject.contains('\n') && !e.subject.contains('\r'));
        assert!(!e.html.contains("<script>"));
        assert!(e.html.contains("&lt;script&gt;"));
        assert!(
            e.html
                .contains("&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;")
        );
        assert!(!e.html.contains("javascript:") && !e.text.contains("javascript:"));
    }

    #[test]
    fn mails_of_one_incident_share_a_thread_root() {
        let mut n = notification();
        let first = render_email(&n, "example.com");
        assert_eq!(first.message_id, "<incident-42@example.com>");
        assert_eq!(first.in_reply_to, None);
        n.event = NotificationEvent::Resolved;
        n.at_ms += 60_000;
        let last = render_email(&n, "example.com");
        assert_ne!(last.message_id, first.message_id);
        assert_eq!(last.in_reply_to.as_deref(), Some(first.message_id.as_str()));
        assert!(
            last.subject
                .starts_with("[sluice] [CRITICAL] Resolved #42: ")
        );
        // A hostile or empty domain cannot break the header.
        assert_eq!(
            render_email(&n, "").in_reply_to.as_deref(),
            Some("<incident-42@sluice.invalid>")
        );
        let id = render_email(&n, "a>\r\nX: y").message_id;
        assert_eq!(id.matches('>').count(), 1, "{id}");
        assert!(!id.contains(['\r', '\n', ' ', ':']), "{id}");
    }
}
