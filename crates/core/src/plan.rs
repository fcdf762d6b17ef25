//! The pipeline planner: a pure state machine over a DAG of steps.
//!
//! The runner feeds it what happened (a step finished with a status) and asks what to do
//! next (start these steps, skip those because something they need did not succeed). It
//! never sleeps, spawns or reads a clock, so every ordering can be tested exhaustively.

use std::collections::HashMap;

use crate::status::{RunStatus, StepStatus};

/// A step as the planner sees it: a unique name and the names it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStep {
    /// Unique within the run, e.g. `api/test`.
    pub name: String,
    /// Names of steps that must succeed first.
    pub needs: Vec<String>,
}

/// Why a set of steps cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Two steps share a name.
    #[error("step `{0}` is defined twice")]
    Duplicate(String),
    /// A step needs a step that does not exist.
    #[error("step `{step}` needs `{need}`, which is not a step of this pipeline")]
    UnknownNeed {
        /// The step with the bad need.
        step: String,
        /// The missing name.
        need: String,
    },
    /// The `needs` form a cycle; the names are in cycle order.
    #[error("steps depend on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the step with this index (the planner now counts it as running).
    Start(usize),
    /// The step will never run because the step `because` did not succeed.
    Skip {
        /// The skipped step.
        step: usize,
        /// The step whose failure caused it.
        because: usize,
    },
}

/// The state of one run's DAG.
#[derive(Debug, Clone)]
pub struct Planner {
    names: Vec<String>,
    needs: Vec<Vec<usize>>,
    status: Vec<StepStatus>,
    max_parallel: usize,
}

impl Planner {
    /// Checks the DAG (unique names, known needs, no cycle) and starts with every step pending.
    /// `max_parallel` of 0 is treated as 1.
    pub fn new(steps: &[PlanStep], max_parallel: usize) -> Result<Self, PlanError> {
        let mut index = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            if index.insert(s.name.as_str(), i).is_some() {
                return Err(PlanError::Duplicate(s.name.clone()));
            }
        }
        let mut needs = Vec::with_capacity(steps.len());
        for s in steps {
            let mut v = Vec::with_capacity(s.needs.len());
            for n in &s.needs {
                match index.get(n.as_str()) {
                    Some(&j) => v.push(j),
                    None => {
                        return Err(PlanError::UnknownNeed {
                            step: s.name.clone(),
                            need: n.clone(),
                        });
                    }
                }
            }
            needs.push(v);
        }
        let names: Vec<String> = steps.iter().map(|s| s.name.clone()).collect();
        if let Some(cycle) = find_cycle(&needs) {
            return Err(PlanError::Cycle(
                cycle.into_iter().map(|i| names[i].clone()).collect(),
            ));
        }
        Ok(Planner {
            status: vec![StepStatus::Pending; names.len()],
            names,
            needs,
            max_parallel: max_parallel.max(1),
        })
    }

    /// Step names, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Current status of every step, by index.
    pub fn statuses(&self) -> &[StepStatus] {
        &self.status
    }

    /// Index of a step by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Records that a step has reached `status` (a terminal status, or `Running` when
    /// restoring state).
    pub fn set(&mut self, step: usize, status: StepStatus) {
        if let Some(s) = self.status.get_mut(step) {
            *s = status;
        }
    }

    /// Decides what happens next: skips every pending step whose needs can no longer
    /// succeed, then starts ready steps while fewer than `max_parallel` are running.
    /// Returned steps are already marked running or skipped.
    pub fn next_actions(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        // Skips propagate: a skipped step makes its dependents skippable, so loop to a fixpoint.
        loop {
            let mut changed = false;
            for i in 0..self.names.len() {
                if self.status[i] != StepStatus::Pending {
                    continue;
                }
                if let Some(&bad) = self.needs[i]
                    .iter()
                    .find(|&&j| self.status[j].is_terminal() && !self.status[j].is_success())
                {
                    self.status[i] = StepStatus::Skipped;
                    actions.push(Action::Skip {
                        step: i,
                        because: bad,
                    });
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut running = self.running_count();
        for i in 0..self.names.len() {
            if running >= self.max_parallel {
                break;
            }
            if self.status[i] == StepStatus::Pending
                && self.needs[i].iter().all(|&j| self.status[j].is_success())
            {
                self.status[i] = StepStatus::Running;
                actions.push(Action::Start(i));
                running += 1;
            }
        }
        actions
    }

    /// Marks every pending step skipped (a cancel); returns the indexes still running, which
    /// the caller must kill and then report with [`Planner::set`].
    pub fn cancel(&mut self) -> Vec<usize> {
        let mut running = Vec::new();
        for (i, s) in self.status.iter_mut().enumerate() {
            match s {
                StepStatus::Pending => *s = StepStatus::Skipped,
                StepStatus::Running => running.push(i),
                _ => {}
            }
        }
        running
    }

    /// Number of steps running now.
    pub fn running_count(&self) -> usize {
        self.status
            .iter()
            .filter(|s| **s == StepStatus::Running)
            .count()
    }

    /// True when no step is pending or running.
    pub fn is_done(&self) -> bool {
        self.status.iter().all(|s| s.is_terminal())
    }

    /// The run's status implied by its steps: running until done, then succeeded only if
    /// every step succeeded, cancelled if any was cancelled, failed otherwise.
    pub fn outcome(&self) -> RunStatus {
        if !self.is_done() {
            return RunStatus::Running;
        }
        if self.status.iter().all(|s| s.is_success()) {
            RunStatus::Succeeded
        } else if self.status.contains(&StepStatus::Cancelled) {
            RunStatus::Cancelled
        } else {
            RunStatus::Failed
        }
    }
}

/// Returns one cycle (as step indexes in order) if the graph has any.
fn find_cycle(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; needs.len()];
    let mut path: Vec<usize> = Vec::new();
    for start in 0..needs.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next child position).
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::Open;
        path.push(start);
        while let Some(&mut (node, ref mut pos)) = stack.last_mut() {
            if let Some(&child) = needs[node].get(*pos) {
                *pos += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::Open;
                        path.push(child);
                        stack.push((child, 0));
                    }
                    Mark::Open => {
                        let from = path.iter().position(|&n| n == child).unwrap_or(0);
                        let mut cycle = path[from..].to_vec();
                        cycle.push(child);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step(name: &str, needs: &[&str]) -> PlanStep {
        PlanStep {
            name: name.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn started(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start(i) => Some(*i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn diamond_runs_in_dependency_order() {
        let steps = [
            step("build", &[]),
            step("test", &["build"]),
            step("lint", &["build"]),
            step("package", &["test", "lint"]),
        ];
        let mut p = Planner::new(&steps, 4).expect("valid dag");
        assert_eq!(started(&p.next_actions()), vec![0]);
        assert!(
            p.next_actions().is_empty(),
            "nothing else is ready while build runs"
        );
        p.set(0, StepStatus::Succeeded);
        assert_eq!(started(&p.next_actions()), vec![1, 2]);
        p.set(1, StepStatus::Succeeded);
        assert!(p.next_actions().is_empty());
        p.set(2, StepStatus::Succeeded);
        assert_eq!(started(&p.next_actions()), vec![3]);
        p.set(3, StepStatus::Succeeded);
        assert!(p.is_done());
        assert_eq!(p.outcome(), RunStatus::Succeeded);
    }

    #[test]
    fn failure_skips_dependents_transitively_but_not_siblings() {
        let steps = [
            step("a", &[]),
            step("b", &["a"]),
            step("c", &["b"]),
            step("d", &[]),
        ];
        let mut p = Planner::new(&steps, 1).expect("valid dag");
        assert_eq!(started(&p.next_actions()), vec![0]);
        p.set(0, StepStatus::Failed);
        let acts = p.next_actions();
        assert!(acts.contains(&Action::Skip {
            step: 1,
            because: 0
        }));
        assert!(acts.contains(&Action::Skip {
            step: 2,
            because: 1
        }));
        assert_eq!(started(&acts), vec![3]);
        p.set(3, StepStatus::Succeeded);
        assert!(p.is_done());
        assert_eq!(p.outcome(), RunStatus::Failed);
    }

    #[test]
    fn parallel_limit_is_respected() {
        let steps: Vec<_> = (0..5).map(|i| step(&format!("s{i}"), &[])).collect();
        let mut p = Planner::new(&steps, 2).expect("valid dag");
        assert_eq!(started(&p.next_actions()), vec![0, 1]);
        p.set(1, StepStatus::Succeeded);
        assert_eq!(started(&p.next_actions()), vec![2]);
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(
            Planner::new(&[step("a", &["b"]), step("b", &["a"])], 1).err(),
            Some(PlanError::Cycle(vec!["a".into(), "b".into(), "a".into()]))
        );
        assert_eq!(
            Planner::new(&[step("a", &["zzz"])], 1).err(),
            Some(PlanError::UnknownNeed {
                step: "a".into(),
                need: "zzz".into()
            })
        );
        assert_eq!(
            Planner::new(&[step("a", &[]), step("a", &[])], 1).err(),
            Some(PlanError::Duplicate("a".into()))
        );
        assert!(matches!(
            Planner::new(&[step("a", &["a"])], 1),
            Err(PlanError::Cycle(_))
        ));
    }

    #[test]
    fn cancel_skips_pending_and_reports_running() {
        let mut p = Planner::new(&[step("a", &[]), step("b", &["a"])], 1).expect("valid dag");
        p.next_actions();
        assert_eq!(p.cancel(), vec![0]);
        p.set(0, StepStatus::Cancelled);
        assert!(p.is_done());
        assert_eq!(p.outcome(), RunStatus::Cancelled);
    }

    proptest! {
        /// Over random acyclic graphs and random outcomes, the planner never starts a step
        /// before all its needs succeeded, never exceeds the limit, and always terminates.
        #[test]
        fn random_dags_respect_order(
            edges in proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..3), 1..12),
            fails in proptest::collection::vec(any::<bool>(), 12),
            limit in 1usize..4,
        ) {
            // Only edges to lower indexes: acyclic by construction.
            let steps: Vec<PlanStep> = edges.iter().enumerate().map(|(i, e)| PlanStep {
                name: format!("s{i}"),
                needs: if i == 0 { vec![] } else {
                    let mut v: Vec<String> = e.iter().map(|x| format!("s{}", x.index(i))).collect();
                    v.sort(); v.dedup(); v
                },
            }).collect();
            let mut p = Planner::new(&steps, limit).expect("acyclic");
            let mut rounds = 0;
            while !p.is_done() {
                rounds += 1;
                prop_assert!(rounds < 100);
                for a in p.next_actions() {
                    if let Action::Start(i) = a {
                        for n in &steps[i].needs {
                            let j = p.index_of(n).expect("known");
                            prop_assert!(p.statuses()[j].is_success());
                        }
                    }
                }
                prop_assert!(p.running_count() <= limit);
                let running: Vec<usize> = (0..steps.len()).filter(|&i| p.statuses()[i] == StepStatus::Running).collect();
                for i in running {
                    p.set(i, if fails[i] { StepStatus::Failed } else { StepStatus::Succeeded });
                }
            }
        }
    }
}
