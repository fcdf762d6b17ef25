//! The rolling arithmetic: one batch decision from the observed pools, used forwards
//! (stable → candidate) and, for a rolling rollback, backwards (candidate → stable).

use crate::observe::PoolObs;
use crate::spec::RollingParams;

/// The limits of one rolling replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub replicas: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
}

impl Limits {
    /// The limits of `params` for `replicas` instances.
    pub fn new(replicas: u32, params: &RollingParams) -> Limits {
        Limits {
            replicas,
            max_surge: params.max_surge,
            max_unavailable: params.max_unavailable,
        }
    }

    /// Fewest ready instances the machine may leave by stopping instances.
    pub fn min_available(self) -> u32 {
        self.replicas.saturating_sub(self.max_unavailable)
    }

    /// Most instances that may exist at once.
    pub fn max_total(self) -> u32 {
        self.replicas.saturating_add(self.max_surge)
    }
}

/// One rolling decision: returns the new `(old_target, new_target)`.
///
/// Scale-down first: the old pool's not-ready instances may always go (the control plane
/// stops not-ready instances first, so stopping them cannot lower the ready count); ready
/// ones only while `new ready + old ready left >= min_available`. Then scale-up: the new
/// pool may grow to `replicas` as long as `new + max(old target, old running) + new pool's
/// instances still stopping <= max_total`, so instances count against the surge until they
/// are gone. Applying it twice to the same observation gives the same targets. The new target
/// never shrinks and the old one never grows.
pub(crate) fn roll(
    limits: Limits,
    old_target: u32,
    old: &PoolObs,
    new_target: u32,
    new: &PoolObs,
) -> (u32, u32) {
    // Capped by a constant (not by `new_target`) so that a second call with the same
    // observation decides the same.
    let new_ready = new.ready.min(limits.replicas);
    let old_ready = old.ready.min(old_target);
    let free = old_target - old_ready;
    let by_availability = (new_ready + old_target).saturating_sub(limits.min_available());
    let down = old_target.min(free.max(by_availability));
    let old_next = old_target - down;
    // The new pool's own instances still stopping (after a reversal) count too.
    let new_stopping = new.stopping.min(new.running);
    let room = limits
        .max_total()
        .saturating_sub(old_next.max(old.running))
        .saturating_sub(new_stopping);
    let new_next = new_target.max(room.min(limits.replicas));
    (old_next, new_next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(running: u32, ready: u32) -> PoolObs {
        PoolObs {
            running,
            ready,
            ..PoolObs::default()
        }
    }

    #[test]
    fn batches_table() {
        // (replicas, surge, unavailable, old target, old running, old ready,
        //  new target, new ready) -> (old, new)
        #[allow(clippy::type_complexity)]
        let table: &[((u32, u32, u32), (u32, u32, u32), (u32, u32), (u32, u32))] = &[
            // surge 1: start one extra first
            ((3, 1, 0), (3, 3, 3), (0, 0), (3, 1)),
            // the extra is ready: one old may go; the next new waits for it to stop
            ((3, 1, 0), (3, 3, 3), (1, 1), (2, 1)),
            ((3, 1, 0), (2, 2, 2), (1, 1), (2, 2)),
            // unavailable 1, no surge: stop one first
            ((3, 0, 1), (3, 3, 3), (0, 0), (2, 0)),
            ((3, 0, 1), (2, 2, 2), (0, 0), (2, 1)),
            // a new instance not ready yet: nothing more may stop
            ((3, 0, 1), (2, 2, 2), (1, 0), (2, 1)),
            // crashed old instances may always go
            ((3, 1, 0), (3, 3, 0), (1, 1), (0, 1)),
            ((3, 1, 0), (0, 0, 0), (1, 1), (0, 3)),
            // first deploy: nothing old
            ((4, 1, 0), (0, 0, 0), (0, 0), (0, 4)),
            // done
            ((3, 1, 0), (0, 0, 0), (3, 3), (0, 3)),
        ];
        for &((replicas, max_surge, max_unavailable), (ot, orun, ordy), (nt, nrdy), want) in table {
            let limits = Limits {
                replicas,
                max_surge,
                max_unavailable,
            };
            let got = roll(limits, ot, &pool(orun, ordy), nt, &pool(nt, nrdy));
            assert_eq!(
                got, want,
                "limits {limits:?}, old {ot}/{orun}/{ordy}, new {nt}/{nrdy}"
            );
        }
    }
}
