//! Prometheus label-set fingerprints and Alertmanager-style group keys.
//!
//! The fingerprint is exactly `model.LabelSet.Fingerprint()` from prometheus/common:
//! 64-bit FNV-1a over the label names in byte order, hashing for each pair the name,
//! the separator byte `0xff`, the value and `0xff` again; an empty set hashes to the FNV
//! offset basis. Alertmanager shows it as 16 lower-case hex digits, and so do we, so the
//! fingerprints sluice stores and sends match the ones Alertmanager would compute.

use crate::gotext::label_set_string;
use crate::model::Labels;

/// The FNV-1a 64-bit offset basis, which is also the fingerprint of the empty label set.
pub const FNV_OFFSET_BASIS: u64 = 14_695_981_039_346_656_037;
/// The FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 1_099_511_628_211;
/// Prometheus's separator between names and values inside a fingerprint.
pub const SEPARATOR_BYTE: u8 = 0xff;

/// The `group_by` entry that makes Alertmanager group by every label.
pub const GROUP_BY_ALL: &str = "...";

fn fnv_add(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The Prometheus fingerprint of a label set as a number.
///
/// [`Labels`] is a `BTreeMap`, so iteration is already in the byte order Go's
/// `sort.Sort(LabelNames)` produces.
pub fn fingerprint(labels: &Labels) -> u64 {
    labels.iter().fold(FNV_OFFSET_BASIS, |hash, (name, value)| {
        let hash = fnv_add(hash, name.as_bytes());
        let hash = fnv_add(hash, &[SEPARATOR_BYTE]);
        let hash = fnv_add(hash, value.as_bytes());
        fnv_add(hash, &[SEPARATOR_BYTE])
    })
}

/// Formats a fingerprint as Alertmanager does (`%016x`).
pub fn format_fingerprint(fp: u64) -> String {
    format!("{fp:016x}")
}

/// The fingerprint of a label set as 16 lower-case hex digits.
pub fn fingerprint_hex(labels: &Labels) -> String {
    format_fingerprint(fingerprint(labels))
}

/// The labels an alert is grouped by and the group's key.
///
/// The group labels are the alert's labels whose names are in `group_by` (labels the
/// alert lacks are simply absent, as in Alertmanager); `"..."` in `group_by` selects all
/// labels. The key is Alertmanager's group key for the root route, `{}:` followed by the
/// group labels rendered like `model.LabelSet.String()`, e.g. `{}:{alertname="Down"}`.
pub fn group_key(labels: &Labels, group_by: &[String]) -> (Labels, String) {
    group_key_for_route("{}", labels, group_by)
}

/// Like [`group_key`] for a route other than the root: `route_key` is the route's own
/// key (Alertmanager builds it from the matchers on the path to the route).
pub fn group_key_for_route(
    route_key: &str,
    labels: &Labels,
    group_by: &[String],
) -> (Labels, String) {
    let all = group_by.iter().any(|name| name == GROUP_BY_ALL);
    let group: Labels = labels
        .iter()
        .filter(|(name, _)| all || group_by.iter().any(|g| g == *name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let key = format!("{route_key}:{}", label_set_string(&group));
    (group, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// FNV-1a written out byte by byte from its definition, independent of `fnv_add`.
    fn fnv1a_reference(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    #[test]
    fn empty_set_is_the_offset_basis() {
        assert_eq!(fingerprint(&Labels::new()), 14_695_981_039_346_656_037);
        assert_eq!(fingerprint_hex(&Labels::new()), "cbf29ce484222325");
    }

    #[test]
    fn matches_fnv_definition_for_small_sets() {
        let set = labels(&[("b", "2"), ("a", "1")]);
        // Names sorted: a then b; each name and value followed by 0xff.
        let bytes = [b'a', 0xff, b'1', 0xff, b'b', 0xff, b'2', 0xff];
        assert_eq!(fingerprint(&set), fnv1a_reference(&bytes));

        let single = labels(&[("alertname", "")]);
        let mut bytes = b"alertname".to_vec();
        bytes.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(fingerprint(&single), fnv1a_reference(&bytes));
    }

    #[test]
    fn matches_values_documented_in_prometheus_common() {
        // Expected values from prometheus/common model/signature_test.go.
        let two = labels(&[("name", "garland, briggs"), ("fear", "love is not enough")]);
        assert_eq!(fingerprint(&two), 5_799_056_148_416_392_346);
        let one = labels(&[("first-label", "first-label-value")]);
        assert_eq!(fingerprint(&one), 5_146_282_821_936_882_169);
        let double = labels(&[
            ("first-label", "first-label-value"),
            ("second-label", "second-label-value"),
        ]);
        assert_eq!(fingerprint(&double), 3_195_800_080_984_914_717);
        let triple = labels(&[
            ("first-label", "first-label-value"),
            ("second-label", "second-label-value"),
            ("third-label", "third-label-value"),
        ]);
        assert_eq!(fingerprint(&triple), 13_843_036_195_897_128_121);
    }

    #[test]
    fn hex_is_zero_padded_to_sixteen_digits() {
        assert_eq!(format_fingerprint(0xab), "00000000000000ab");
        assert_eq!(format_fingerprint(u64::MAX), "ffffffffffffffff");
        let hex = fingerprint_hex(&labels(&[("a", "b")]));
        assert_eq!(hex.len(), 16);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn separator_prevents_concatenation_collisions() {
        let a = labels(&[("ab", "c")]);
        let b = labels(&[("a", "bc")]);
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn group_key_selects_group_by_labels() {
        let alert = labels(&[("alertname", "Down"), ("instance", "h1"), ("job", "api")]);
        let by = vec![
            "alertname".to_owned(),
            "job".to_owned(),
            "cluster".to_owned(),
        ];
        let (group, key) = group_key(&alert, &by);
        assert_eq!(group, labels(&[("alertname", "Down"), ("job", "api")]));
        assert_eq!(key, "{}:{alertname=\"Down\", job=\"api\"}");

        let (all, all_key) = group_key(&alert, &[GROUP_BY_ALL.to_owned()]);
        assert_eq!(all, alert);
        assert_eq!(
            all_key,
            "{}:{alertname=\"Down\", instance=\"h1\", job=\"api\"}"
        );

        let (none, none_key) = group_key(&alert, &[]);
        assert!(none.is_empty());
        assert_eq!(none_key, "{}:{}");
    }

    #[test]
    fn group_key_is_stable_and_distinguishes_groups() {
        let by = vec!["alertname".to_owned()];
        let a1 = labels(&[("alertname", "A"), ("instance", "1")]);
        let a2 = labels(&[("alertname", "A"), ("instance", "2")]);
        let b = labels(&[("alertname", "B")]);
        assert_eq!(group_key(&a1, &by).1, group_key(&a2, &by).1);
        assert_ne!(group_key(&a1, &by).1, group_key(&b, &by).1);
        let (_, routed) = group_key_for_route("{}/{team=\"db\"}", &b, &by);
        assert_eq!(routed, "{}/{team=\"db\"}:{alertname=\"B\"}");
    }
}
