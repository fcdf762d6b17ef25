//! Run and step statuses, with their stable string forms (stored in the database, shown in
//! the API and the UI; never rename one).

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),+ }

        // Serialised as the stable string form, so JSON, SQL and SSE all agree.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} `{}`", stringify!($name), s))
                })
            }
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The stable string form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }

            /// Parses the stable string form.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Where a pipeline run is in its life.
    RunStatus {
        /// Created, waiting for a runner slot.
        Queued => "queued",
        /// At least one step has started.
        Running => "running",
        /// Every step succeeded.
        Succeeded => "succeeded",
        /// A step failed (gate or not) or timed out.
        Failed => "failed",
        /// Cancelled by a person or a newer push.
        Cancelled => "cancelled",
        /// The server stopped while the run was in progress (see the recovery policy).
        Interrupted => "interrupted",
    }
}

impl RunStatus {
    /// True once the run can change no more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

string_enum! {
    /// Where one step of a run is in its life.
    StepStatus {
        /// Waiting for its `needs` or a free slot.
        Pending => "pending",
        /// Its process is running.
        Running => "running",
        /// Exited 0.
        Succeeded => "succeeded",
        /// Exited non-zero (after its retries).
        Failed => "failed",
        /// Killed after its timeout (after its retries).
        TimedOut => "timed_out",
        /// Not run because a step it needs did not succeed, or the run was cancelled first.
        Skipped => "skipped",
        /// Killed because the run was cancelled.
        Cancelled => "cancelled",
        /// The server stopped while it ran.
        Interrupted => "interrupted",
    }
}

impl StepStatus {
    /// True once the step can change no more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }

    /// True if the step ended well.
    pub fn is_success(self) -> bool {
        self == StepStatus::Succeeded
    }
}

string_enum! {
    /// Where a deployment is in its life.
    DeployStatus {
        /// Progressing, paused or analysing.
        Running => "running",
        /// The new release serves all traffic.
        Succeeded => "succeeded",
        /// Stopped and the previous release serves all traffic again.
        RolledBack => "rolled_back",
        /// Stopped with nothing to roll back to (a first deploy).
        Failed => "failed",
        /// Replaced by a newer deployment of the same target before it finished.
        Superseded => "superseded",
    }
}

impl DeployStatus {
    /// True once the deployment can change no more.
    pub fn is_terminal(self) -> bool {
        self != DeployStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
        }
        for s in StepStatus::ALL {
            assert_eq!(StepStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(RunStatus::parse("bogus"), None);
        let json = serde_json::to_string(&crate::EventKind::RunFinished).unwrap();
        assert_eq!(json, "\"run.finished\"");
        let back: crate::EventKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, crate::EventKind::RunFinished);
        assert!(serde_json::from_str::<RunStatus>("\"nope\"").is_err());
    }
}
