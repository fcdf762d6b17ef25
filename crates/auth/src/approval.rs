//! Deployment gates on protected environments: N approvals from people other than the
//! requester, and a wait timer counted from the request. Both must hold before the rollout
//! proceeds. Whether an approver may approve at all is [`crate::authorize`]'s job
//! ([`crate::Action::Approve`] needs releaser); this module only counts.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// An environment's gate: how many distinct approvals and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// Distinct approvers needed, the requester not counting (0 = none).
    pub required: u32,
    /// Milliseconds to wait after the request before proceeding (0 or less = none).
    pub wait_ms: i64,
}

/// One approval of a pending rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approving user's name.
    pub by: String,
    /// When they approved (Unix ms).
    pub at_ms: i64,
}

/// Whether a gated rollout may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Gate {
    /// All conditions hold.
    Ready,
    /// Not enough distinct approvals from people other than the requester. Reported before
    /// the timer, as it needs someone to act.
    NeedsApprovals {
        /// Counted approvals.
        have: u32,
        /// Required approvals.
        need: u32,
    },
    /// Approved, but the wait timer runs until this time (Unix ms).
    Waiting {
        /// When the rollout may proceed.
        until_ms: i64,
    },
}

/// Decides the gate at `now_ms` for a rollout `requested_by` at `requested_at_ms`.
/// Approvals by the requester (no self-approval), repeated approvals by one person and
/// approvals with an empty name are not counted.
pub fn evaluate(
    rule: &ApprovalRule,
    requested_by: &str,
    requested_at_ms: i64,
    approvals: &[Approval],
    now_ms: i64,
) -> Gate {
    let distinct: BTreeSet<&str> = approvals
        .iter()
        .map(|a| a.by.as_str())
        .filter(|by| !by.is_empty() && *by != requested_by)
        .collect();
    let have = u32::try_from(distinct.len()).unwrap_or(u32::MAX);
    if have < rule.required {
        return Gate::NeedsApprovals {
            have,
            need: rule.required,
        };
    }
    let until_ms = requested_at_ms.saturating_add(rule.wait_ms.max(0));
    if now_ms < until_ms {
        return Gate::Waiting { until_ms };
    }
    Gate::Ready
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gate::Ready => f.write_str("ready: all approvals and the wait timer are satisfied"),
            Gate::NeedsApprovals { have, need } => write!(
                f,
                "waiting for approval: {have} of {need} approvals from someone other than \
                 the requester"
            ),
            Gate::Waiting { until_ms } => write!(
                f,
                "approved; waiting for the wait timer until {}",
                sluice_core::time::rfc3339_utc(*until_ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(by: &str, at_ms: i64) -> Approval {
        Approval {
            by: by.into(),
            at_ms,
        }
    }

    const RULE: ApprovalRule = ApprovalRule {
        required: 2,
        wait_ms: 10_000,
    };

    #[test]
    fn self_approval_and_duplicates_are_ignored() {
        let approvals = [ap("alice", 1), ap("bob", 2), ap("bob", 3), ap("", 4)];
        let gate = evaluate(&RULE, "alice", 0, &approvals, 20_000);
        assert_eq!(gate, Gate::NeedsApprovals { have: 1, need: 2 });
        assert!(gate.to_string().contains("1 of 2 approvals"), "{gate}");
        let approvals = [ap("bob", 2), ap("carol", 3)];
        assert_eq!(evaluate(&RULE, "alice", 0, &approvals, 20_000), Gate::Ready);
    }

    #[test]
    fn timer_counts_from_request_and_both_must_hold() {
        let two = [ap("bob", 1), ap("carol", 2)];
        let gate = evaluate(&RULE, "alice", 5_000, &two, 14_999);
        assert_eq!(gate, Gate::Waiting { until_ms: 15_000 });
        assert_eq!(evaluate(&RULE, "alice", 5_000, &two, 15_000), Gate::Ready);
        // Timer over but approvals missing: still blocked.
        let gate = evaluate(&RULE, "alice", 5_000, &two[..1], 99_000);
        assert_eq!(gate, Gate::NeedsApprovals { have: 1, need: 2 });
    }

    #[test]
    fn empty_rule_is_ready_and_display() {
        assert_eq!(
            evaluate(&ApprovalRule::default(), "a", 0, &[], 0),
            Gate::Ready
        );
        let g = Gate::Waiting {
            until_ms: 1_764_000_000_000,
        };
        assert_eq!(
            g.to_string(),
            "approved; waiting for the wait timer until 2025-11-24T16:00:00Z"
        );
    }
}
