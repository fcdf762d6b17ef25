//! On-call overrides: add, list by time and schedule, remove, and the events they write (a
//! conformance scenario: run on both databases by the suite).

use sluice_core::{EventKind, NewEvent};
use sluice_store::{EventFilter, NewOverride, OverrideFilter, OverrideRow, StoreError};

const HOUR: i64 = 3_600_000;

fn new(schedule: &str, user: &str, starts_ms: i64, ends_ms: i64) -> NewOverride {
    NewOverride {
        project: "shop".into(),
        schedule: schedule.into(),
        user: user.into(),
        starts_ms,
        ends_ms,
        created_by: "user:admin".into(),
    }
}

fn added() -> NewEvent {
    NewEvent::new(
        EventKind::OncallOverrideAdded,
        "user:admin",
        "oncall_override/{id}",
    )
}

pub(crate) async fn oncall_overrides(cx: &super::Ctx) {
    let store = &cx.store;
    let t0 = 1_767_225_600_000;
    let a = store
        .add_override(new("primary", "alice", t0, t0 + 8 * HOUR), added())
        .await
        .unwrap();
    let b = store
        .add_override(new("primary", "bob", t0 + 2 * HOUR, t0 + 4 * HOUR), added())
        .await
        .unwrap();
    let c = store
        .add_override(new("backup", "carol", t0, t0 + HOUR), added())
        .await
        .unwrap();
    assert!(a.id < b.id && b.id < c.id);
    assert_eq!(
        (b.user.as_str(), b.starts_ms, b.ends_ms),
        ("bob", t0 + 2 * HOUR, t0 + 4 * HOUR)
    );
    // Refused before anything is written: an empty interval, an empty user.
    for bad in [
        new("primary", "dan", t0, t0),
        new("primary", "dan", t0, t0 - 1),
        new("primary", " ", t0, t0 + 1),
    ] {
        assert!(matches!(
            store.add_override(bad, added()).await,
            Err(StoreError::Invalid(_))
        ));
    }

    // Filters: by schedule, by end, by project; oldest first.
    let all = |f: OverrideFilter| async move { store.overrides(&f).await.unwrap() };
    let ids = |v: Vec<OverrideRow>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(all(OverrideFilter::default()).await),
        vec![a.id, b.id, c.id]
    );
    let primary = OverrideFilter {
        project: Some("shop".into()),
        schedule: Some("primary".into()),
        ..OverrideFilter::default()
    };
    assert_eq!(ids(all(primary.clone()).await), vec![a.id, b.id]);
    let later = OverrideFilter {
        ends_after_ms: Some(t0 + 4 * HOUR),
        ..OverrideFilter::default()
    };
    assert_eq!(ids(all(later).await), vec![a.id]);
    let other = OverrideFilter {
        project: Some("other".into()),
        ..OverrideFilter::default()
    };
    assert!(all(other).await.is_empty());

    // Removing: only within its project, once.
    let removed = NewEvent::new(
        EventKind::OncallOverrideRemoved,
        "user:admin",
        format!("oncall_override/{}", b.id),
    );
    assert!(matches!(
        store.remove_override("other", b.id, removed.clone()).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .remove_override("shop", b.id, removed.clone())
            .await
            .unwrap(),
        b
    );
    assert!(matches!(
        store.remove_override("shop", b.id, removed).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(ids(all(primary).await), vec![a.id]);

    // One event per change, with the id filled in; none for the refusals.
    let events = store
        .events(&EventFilter {
            kinds: vec![
                EventKind::OncallOverrideAdded,
                EventKind::OncallOverrideRemoved,
            ],
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let seen: Vec<(EventKind, String, serde_json::Value, Option<String>)> = events
        .into_iter()
        .map(|e| (e.kind, e.subject, e.payload["override"].clone(), e.project))
        .collect();
    let shop = Some("shop".to_owned());
    assert_eq!(
        seen,
        vec![
            (
                EventKind::OncallOverrideAdded,
                format!("oncall_override/{}", a.id),
                a.id.into(),
                shop.clone()
            ),
            (
                EventKind::OncallOverrideAdded,
                format!("oncall_override/{}", b.id),
                b.id.into(),
                shop.clone()
            ),
            (
                EventKind::OncallOverrideAdded,
                format!("oncall_override/{}", c.id),
                c.id.into(),
                shop.clone()
            ),
            (
                EventKind::OncallOverrideRemoved,
                format!("oncall_override/{}", b.id),
                b.id.into(),
                shop
            ),
        ]
    );
}
