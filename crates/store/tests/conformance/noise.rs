//! The noise figures and the flapping changes of an alert batch (a conformance scenario:
//! run on both databases by the suite).

use std::collections::BTreeMap;

use sluice_store::{
    AlertBatch, AlertChange, AlertFilter, IncidentChange, NewAlertRow, NewIncidentRow, NoiseFilter,
    RuleNoise, Store,
};

const MIN: i64 = 60_000;

fn alert(
    id: i64,
    project: &str,
    alertname: Option<&str>,
    rule: Option<&str>,
    incident: Option<i64>,
    created_ms: i64,
) -> NewAlertRow {
    let labels: BTreeMap<String, String> = alertname
        .map(|n| ("alertname".to_owned(), n.to_owned()))
        .into_iter()
        .collect();
    NewAlertRow {
        id,
        scope: format!("test:{project}"),
        dedup_key: format!("k{id}"),
        project: project.into(),
        service: "web".into(),
        source: "pagerduty".into(),
        rule: rule.map(str::to_owned),
        severity: "warning".into(),
        summary: format!("alert {id}"),
        labels,
        details: serde_json::json!({}),
        incident_id: incident,
        silenced: incident.is_none(),
        created_ms,
        starts_ms: created_ms,
    }
}

fn incident(id: i64, project: &str, opened_ms: i64) -> NewIncidentRow {
    NewIncidentRow {
        id,
        project: project.into(),
        service: "web".into(),
        group_key: format!("{project}/web/{id}"),
        title: format!("incident {id}"),
        severity: "warning".into(),
        rule: None,
        opened_ms,
        suspected_release: None,
    }
}

async fn apply(
    store: &Store,
    alert_changes: Vec<AlertChange>,
    incident_changes: Vec<IncidentChange>,
) {
    store
        .apply_alert_batch(AlertBatch {
            alert_changes,
            incident_changes,
            ..AlertBatch::default()
        })
        .await
        .unwrap();
}

async fn alert_row(store: &Store, id: i64) -> sluice_store::AlertRow {
    store
        .alerts(&AlertFilter {
            limit: 100,
            ..AlertFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == id)
        .unwrap()
}

/// Writes the scenario, checking the flapping changes on the way, and checks the figures.
pub(crate) async fn noise_figures_and_flapping_changes(cx: &super::Ctx) {
    let store = &cx.store;
    store
        .apply_alert_batch(AlertBatch {
            new_incidents: vec![
                incident(1, "shop", 1_000),
                incident(2, "shop", 3_000),
                incident(3, "shop", 4_000),
                incident(5, "other", 1_000),
            ],
            new_alerts: vec![
                // Before the period.
                alert(10, "shop", Some("HighLatency"), None, Some(1), 500),
                // Resolves by itself after a minute.
                alert(1, "shop", Some("HighLatency"), None, Some(1), 1_000),
                // Resolved by hand with its incident.
                alert(2, "shop", Some("HighLatency"), None, Some(1), 2_000),
                // Flaps.
                alert(3, "shop", Some("HighLatency"), None, Some(2), 3_000),
                // No alertname: its source names it; lasts ten minutes.
                alert(4, "shop", None, None, Some(3), 4_000),
                // A sluice rule's name wins over its alertname; silenced, resolves at once.
                alert(5, "shop", Some("X"), Some("cpu"), None, 5_000),
                alert(6, "other", Some("HighLatency"), None, Some(5), 1_000),
            ],
            ..AlertBatch::default()
        })
        .await
        .unwrap();
    apply(
        store,
        vec![
            AlertChange::Resolved {
                id: 1,
                at_ms: 61_000,
            },
            AlertChange::Resolved {
                id: 2,
                at_ms: 100_000,
            },
            AlertChange::Resolved {
                id: 10,
                at_ms: 100_000,
            },
            AlertChange::Resolved {
                id: 4,
                at_ms: 4_000 + 10 * MIN,
            },
            AlertChange::Resolved {
                id: 5,
                at_ms: 6_000,
            },
            AlertChange::Flapping {
                id: 3,
                flapping: true,
                at_ms: 3_500,
            },
            AlertChange::ResolveHeld {
                id: 3,
                at_ms: 4_000,
            },
        ],
        vec![
            IncidentChange::Resolved {
                id: 1,
                by: Some("alice".into()),
                at_ms: 100_000,
            },
            IncidentChange::Acknowledged {
                id: 2,
                by: "bob".into(),
                at_ms: 5_000,
            },
        ],
    )
    .await;
    // A held resolve: still open, flapping, its source's resolve time kept.
    let a3 = alert_row(store, 3).await;
    assert_eq!(
        (a3.status.as_str(), a3.resolved_ms, a3.flapping, a3.flapped),
        ("firing", Some(4_000), true, true)
    );
    assert_eq!(
        store.open_alerts().await.unwrap().len(),
        2,
        "alerts 3 and 6"
    );
    // A trigger clears it.
    apply(
        store,
        vec![AlertChange::Repeated {
            id: 3,
            severity: "warning".into(),
            summary: "again".into(),
            at_ms: 5_000,
        }],
        vec![],
    )
    .await;
    let a3 = alert_row(store, 3).await;
    assert_eq!(
        (a3.resolved_ms, a3.repeats, a3.updated_ms),
        (None, 1, 5_000)
    );
    // Held again, then stable: the held resolve applies; the alert stays marked as flapped.
    apply(
        store,
        vec![
            AlertChange::ResolveHeld {
                id: 3,
                at_ms: 6_000,
            },
            AlertChange::Flapping {
                id: 3,
                flapping: false,
                at_ms: 606_000,
            },
            AlertChange::Resolved {
                id: 3,
                at_ms: 6_000,
            },
        ],
        vec![],
    )
    .await;
    let a3 = alert_row(store, 3).await;
    assert_eq!(
        (a3.status.as_str(), a3.resolved_ms, a3.flapping, a3.flapped),
        ("resolved", Some(6_000), false, true)
    );

    let shop = NoiseFilter {
        projects: Some(vec!["shop".into()]),
        since_ms: 1_000,
        quick_ms: 5 * MIN,
    };
    let figures = store.alert_noise(&shop).await.unwrap();
    let expected = vec![
        RuleNoise {
            project: "shop".into(),
            rule: "HighLatency".into(),
            alerts: 3,
            silenced: 0,
            incidents: 2,
            alerts_per_incident: Some(1.5),
            // Alerts 1 (a minute) and 3 (three seconds); 2 was resolved by hand.
            auto_resolved_quickly: 2,
            auto_resolved_share: Some(2.0 / 3.0),
            acknowledged: 1,
            acknowledged_share: Some(0.5),
            flapping: 1,
            flapping_share: Some(1.0 / 3.0),
            resolved: 3,
            // 3 s, 60 s and 98 s.
            median_resolve_ms: Some(60_000),
        },
        RuleNoise {
            project: "shop".into(),
            rule: "cpu".into(),
            alerts: 1,
            silenced: 1,
            incidents: 0,
            alerts_per_incident: None,
            auto_resolved_quickly: 1,
            auto_resolved_share: Some(1.0),
            acknowledged: 0,
            acknowledged_share: None,
            flapping: 0,
            flapping_share: Some(0.0),
            resolved: 1,
            median_resolve_ms: Some(1_000),
        },
        RuleNoise {
            project: "shop".into(),
            rule: "pagerduty".into(),
            alerts: 1,
            silenced: 0,
            incidents: 1,
            alerts_per_incident: Some(1.0),
            auto_resolved_quickly: 0,
            auto_resolved_share: Some(0.0),
            acknowledged: 0,
            acknowledged_share: Some(0.0),
            flapping: 0,
            flapping_share: Some(0.0),
            resolved: 1,
            median_resolve_ms: Some(10 * MIN),
        },
    ];
    assert_eq!(figures, expected);
    // Every project, and a period that starts before the first alert.
    let all = store
        .alert_noise(&NoiseFilter {
            projects: None,
            since_ms: 0,
            quick_ms: 5 * MIN,
        })
        .await
        .unwrap();
    let names: Vec<(&str, &str, i64)> = all
        .iter()
        .map(|r| (r.project.as_str(), r.rule.as_str(), r.alerts))
        .collect();
    assert_eq!(
        names,
        [
            ("shop", "HighLatency", 4),
            ("other", "HighLatency", 1),
            ("shop", "cpu", 1),
            ("shop", "pagerduty", 1)
        ]
    );
    // An even count's median is the mean of the middle two: 3 s, 60 s, 98 s and 99.5 s.
    assert_eq!(all[0].median_resolve_ms, Some(79_000));
    assert!(
        store
            .alert_noise(&NoiseFilter {
                projects: Some(vec![]),
                ..shop.clone()
            })
            .await
            .unwrap()
            .is_empty()
    );
    let late = NoiseFilter {
        since_ms: 10_000,
        ..shop
    };
    assert!(store.alert_noise(&late).await.unwrap().is_empty());
}
