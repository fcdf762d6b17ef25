//! Property tests: rendering, postmortems and signature checks never panic, whatever the
//! strings and numbers, and structural guarantees hold for arbitrary text.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::model::{AlertLine, Notification, NotificationEvent};
use crate::postmortem::{IncidentRecord, SuspectedCause, TimelineEntry, markdown, ticket_json};
use crate::render::{render_email, render_slack, render_webhook};
use crate::signature::verify_webhook;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[<>&|\\\\*_`\r\n\"' a-zé✓]{0,40}",
        Just(String::new()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn alert() -> impl Strategy<Value = AlertLine> {
    (
        text(),
        text(),
        prop::collection::btree_map(text(), text(), 0..3),
        any::<i64>(),
    )
        .prop_map(|(summary, severity, labels, starts_at_ms)| AlertLine {
            summary,
            severity,
            labels,
            starts_at_ms,
        })
}

prop_compose! {
    fn notification()(
        incident_id in any::<i64>(),
        incident_url in text(),
        event in prop::sample::select(NotificationEvent::ALL.to_vec()),
        strings in prop::collection::vec(text(), 6),
        alert_count in any::<usize>(),
        alerts in prop::collection::vec(alert(), 0..14),
        opts in prop::collection::vec(opt_text(), 4),
        at_ms in any::<i64>(),
    ) -> Notification {
        Notification {
            incident_id,
            incident_url,
            event,
            title: strings[0].clone(),
            severity: strings[1].clone(),
            project: strings[2].clone(),
            service: strings[3].clone(),
            summary: strings[4].clone(),
            alert_count,
            alerts,
            suspected_cause: opts[0].clone(),
            ack_url: opts[1].clone(),
            resolve_url: opts[2].clone(),
            acknowledged_by: opts[3].clone(),
            at_ms,
        }
    }
}

prop_compose! {
    fn record()(
        id in any::<i64>(),
        strings in prop::collection::vec(text(), 6),
        times in prop::collection::vec(prop::option::of(any::<i64>()), 3),
        opened_at_ms in any::<i64>(),
        by in prop::collection::vec(opt_text(), 2),
        cause in prop::option::of((text(), text(), any::<i64>(), any::<i64>())),
        alerts in prop::collection::vec(alert(), 0..4),
        timeline in prop::collection::vec((any::<i64>(), text(), opt_text(), text()), 0..6),
    ) -> IncidentRecord {
        IncidentRecord {
            id,
            title: strings[0].clone(),
            project: strings[1].clone(),
            service: strings[2].clone(),
            severity: strings[3].clone(),
            status: strings[4].clone(),
            opened_at_ms,
            acknowledged_at_ms: times[0],
            acknowledged_by: by[0].clone(),
            resolved_at_ms: times[1],
            resolved_by: by[1].clone(),
            suspected_cause: cause.map(|(release, version, deployed_at_ms, deployment_id)| {
                SuspectedCause { release, version, deployed_at_ms, deployment_id }
            }),
            alerts,
            timeline: timeline
                .into_iter()
                .map(|(at_ms, kind, actor, text)| TimelineEntry { at_ms, kind, actor, text })
                .collect(),
        }
    }
}

/// The name after every `<` in `html`, in order.
fn tag_names(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                .collect()
        })
        .collect()
}

/// `n` with the HTML markup characters in every string replaced by `x` (same lengths).
fn defang(n: &Notification) -> Notification {
    let f = |s: &str| s.replace(['<', '>', '&', '"', '\''], "x");
    let fo = |s: &Option<String>| s.as_deref().map(f);
    Notification {
        incident_url: f(&n.incident_url),
        title: f(&n.title),
        severity: f(&n.severity),
        project: f(&n.project),
        service: f(&n.service),
        summary: f(&n.summary),
        alerts: n
            .alerts
            .iter()
            .map(|a| AlertLine {
                summary: f(&a.summary),
                severity: f(&a.severity),
                labels: a.labels.iter().map(|(k, v)| (f(k), f(v))).collect(),
                starts_at_ms: a.starts_at_ms,
            })
            .collect(),
        suspected_cause: fo(&n.suspected_cause),
        ack_url: fo(&n.ack_url),
        resolve_url: fo(&n.resolve_url),
        acknowledged_by: fo(&n.acknowledged_by),
        ..n.clone()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rendering_never_panics_and_keeps_its_shape(n in notification(), secret in opt_text(), now in any::<i64>()) {
        let w = render_webhook(&n, secret.as_deref(), now);
        let back: Notification = serde_json::from_str(&w.body).unwrap();
        prop_assert_eq!(back, n.clone());

        let s = render_slack(&n);
        prop_assert!(s["text"].is_string());
        let header = s["blocks"][0]["text"]["text"].as_str().unwrap();
        prop_assert!(header.chars().count() <= 150);
        // No raw `<` from user text survives in mrkdwn: every `<` opens a link this
        // crate wrote, and links are only made from http(s) URLs.
        let fallback = s["text"].as_str().unwrap();
        for piece in fallback.split('<').skip(1) {
            prop_assert!(piece.to_ascii_lowercase().starts_with("http"), "stray `<` in {:?}", fallback);
        }

        let e = render_email(&n, "example.com");
        prop_assert!(!e.subject.contains('\n') && !e.subject.contains('\r'));
        prop_assert!(!e.message_id.contains(char::is_whitespace));
        // User text cannot add HTML tags: the tag sequence is the same as for the same
        // notification with every markup character replaced.
        let plain = render_email(&defang(&n), "example.com");
        prop_assert_eq!(tag_names(&e.html), tag_names(&plain.html));
    }

    #[test]
    fn postmortem_never_panics(r in record()) {
        let md = markdown(&r);
        prop_assert!(md.contains("## Action items"));
        let v = ticket_json(&r);
        prop_assert_eq!(&v["markdown"], &serde_json::Value::String(md));
        prop_assert!(r.mtta_ms().is_none_or(|m| m >= 0));
        prop_assert!(r.mttr_ms().is_none_or(|m| m >= 0));
    }

    #[test]
    fn verify_never_panics(secret in any::<Vec<u8>>(), ts in text(), body in any::<Vec<u8>>(),
                           sig in text(), now in any::<i64>(), tol in any::<u64>()) {
        let _ = verify_webhook(&secret, &ts, &body, &sig, now, tol);
    }
}

#[test]
fn labels_with_odd_keys_survive_the_webhook_round_trip() {
    let mut labels = BTreeMap::new();
    labels.insert("\u{0}".to_string(), "\u{ffff}".to_string());
    let n = Notification {
        alerts: vec![AlertLine {
            summary: String::new(),
            severity: String::new(),
            labels,
            starts_at_ms: i64::MIN,
        }],
        ..crate::test_support::notification()
    };
    let w = render_webhook(&n, Some("k"), i64::MIN);
    let back: Notification = serde_json::from_str(&w.body).unwrap();
    assert_eq!(back, n);
}
