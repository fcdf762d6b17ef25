//! The append-only event log's vocabulary.
//!
//! Every state change in sluice is recorded as an event: a kind, an actor (who or what
//! caused it), a subject (what it is about, e.g. `run/42`), the project it belongs to and a
//! JSON payload with the figures. The store assigns the sequence number and time. The audit
//! trail, timelines, metrics and the live UI are all views of this log, so an event kind's
//! string form and payload fields are a public, stable contract.

use serde::{Deserialize, Serialize};

use crate::status::string_enum;

string_enum! {
    /// What happened. The string form is stable: the API, SSE and stored rows use it.
    EventKind {
        /// The server started (payload: version, store backend).
        ServerStarted => "server.started",
        /// A project was registered (payload: source).
        ProjectAdded => "project.added",
        /// A project was removed.
        ProjectRemoved => "project.removed",
        /// A branch moved to a new commit (payload: branch, before, after, via).
        PushReceived => "push.received",
        /// A webhook was accepted (payload: provider, delivery).
        WebhookAccepted => "webhook.accepted",
        /// A webhook was refused: bad signature, malformed body, unknown project (payload: provider, reason, remote).
        WebhookRejected => "webhook.rejected",
        /// A webhook with an already-seen delivery id was ignored (payload: provider, delivery).
        WebhookDuplicate => "webhook.duplicate",
        /// `sluice.yml` at a commit could not be used (payload: commit, error).
        ConfigInvalid => "config.invalid",
        /// A service was left out of a run because none of its paths changed (payload: service, base, commit).
        ServiceUnchanged => "service.unchanged",
        /// A run was created (payload: env, branch, commit, trigger, services).
        RunQueued => "run.queued",
        /// A run's first step started.
        RunStarted => "run.started",
        /// A run reached a terminal status (payload: status, duration_ms).
        RunFinished => "run.finished",
        /// A run was found in progress at start-up and handled by the recovery policy (payload: policy, rerun).
        RunInterrupted => "run.interrupted",
        /// A run was cancelled (payload: reason).
        RunCancelled => "run.cancelled",
        /// A step's process started (payload: step, attempt).
        StepStarted => "step.started",
        /// A step ended (payload: step, status, exit_code, duration_ms, attempt).
        StepFinished => "step.finished",
        /// A step failed and will be tried again (payload: step, attempt, reason).
        StepRetrying => "step.retrying",
        /// A step was skipped (payload: step, reason).
        StepSkipped => "step.skipped",
        /// A gate step succeeded (payload: step, tests).
        GatePassed => "gate.passed",
        /// A gate step failed and blocks the release (payload: step, tests, failing).
        GateFailed => "gate.failed",
        /// An immutable release was created (payload: service, version, commit, artifact).
        ReleaseCreated => "release.created",
        /// Old artifacts were deleted by the retention setting (payload: releases, bytes).
        ArtifactsPruned => "artifacts.pruned",
        /// Orphaned step processes from before a restart were killed (payload: pids).
        OrphansKilled => "orphans.killed",
        /// The desired release of a service in an environment changed (payload: service, env, version, from).
        TargetDesired => "target.desired",
        /// A deployment started (payload: service, env, version, from_version, strategy).
        DeployStarted => "deploy.started",
        /// A deployment strategy decided something, with the figures behind it (payload: deployment, what, figures).
        DeployDecision => "deploy.decision",
        /// A deployment ended (payload: deployment, status, reason, duration_ms).
        DeployFinished => "deploy.finished",
        /// An instance was started (payload: instance, service, env, version, port).
        InstanceStarted => "instance.started",
        /// An instance was stopped (payload: instance, reason).
        InstanceStopped => "instance.stopped",
        /// An instance failed its health check, crashed or crash-loops (payload: instance, state, restarts, error).
        InstanceUnhealthy => "instance.unhealthy",
        /// Instances of a previous control plane were re-adopted at start-up (payload: adopted, lost).
        InstancesAdopted => "instances.adopted",
        /// The proxy daemon had died and was restarted.
        ProxyRestarted => "proxy.restarted",
        /// The runtime drifted from the desired state and was healed (payload: service, env, what).
        DriftHealed => "drift.healed",
        /// The autoscaler started instances (payload: service, env, version, and the decision: current, desired, recommended, cpu, memory, limited_by, reason).
        AutoscaleScaledOut => "autoscale.scaled_out",
        /// The autoscaler stopped instances, drained first (payload as for scaled_out).
        AutoscaleScaledIn => "autoscale.scaled_in",
        /// The autoscaler wanted a change but a rule held it back (payload as for scaled_out; limited_by names the rule).
        AutoscaleHeld => "autoscale.held",
        /// A user signed in with a password (payload: user, session).
        AuthLogin => "auth.login",
        /// A sign-in was refused: unknown user, wrong password, disabled, rate limited (payload: user, reason).
        AuthLoginFailed => "auth.login_failed",
        /// A user signed out or a session was ended (payload: user, reason).
        AuthLogout => "auth.logout",
        /// A user was created (payload: user, admin, via).
        UserCreated => "user.created",
        /// A user's password, admin flag or disabled flag changed (payload: user, what).
        UserUpdated => "user.updated",
        /// A user was deleted with their grants, tokens and sessions (payload: user).
        UserDeleted => "user.deleted",
        /// A role was granted (payload: user, role, project, environment).
        GrantAdded => "grant.added",
        /// A grant was removed (payload: user, role, project, environment).
        GrantRemoved => "grant.removed",
        /// An API token was created (payload: token, user, name, scopes, expires_ms); never the token itself.
        TokenCreated => "token.created",
        /// An API token was revoked (payload: token, user).
        TokenRevoked => "token.revoked",
        /// A secret got a new version (payload: secret, environment, name, version); never the value.
        SecretWritten => "secret.written",
        /// A secret's value was read or injected (payload: secret, environment, name, version, purpose).
        SecretRead => "secret.read",
        /// A secret was deleted (payload: environment, name, versions).
        SecretDeleted => "secret.deleted",
        /// Every secret's data key was re-wrapped under a new key-encryption key (payload: from, to, secrets).
        SecretsRekeyed => "secrets.rekeyed",
        /// The secret store was unsealed (payload: kek_id).
        VaultUnsealed => "vault.unsealed",
        /// The secret store was sealed (payload: reason).
        VaultSealed => "vault.sealed",
        /// A deployment was approved (payload: deployment, user, comment, approvals).
        DeploymentApproved => "deployment.approved",
        /// A request was refused for lack of permission (payload: action, project, environment, reason).
        AccessDenied => "access.denied",
        /// An incident opened (payload: incident, service, title, severity, suspected_release).
        IncidentOpened => "incident.opened",
        /// An incident was acknowledged (payload: incident).
        IncidentAcknowledged => "incident.acknowledged",
        /// An incident resolved (payload: incident, auto).
        IncidentResolved => "incident.resolved",
        /// An alert integration was created (payload: name, service).
        IntegrationCreated => "integration.created",
        /// An alert integration was removed (payload: name).
        IntegrationRemoved => "integration.removed",
        /// A silence was created (payload: silence, matchers, starts_ms, ends_ms, comment).
        SilenceCreated => "silence.created",
        /// A silence was ended early (payload: silence).
        SilenceExpired => "silence.expired",
        /// A change event arrived (PagerDuty change events; payload: summary, source, links).
        ChangeReceived => "change.received",
        /// A journal entry of alerts the database refused again and again was set aside so
        /// that the alerts behind it are applied (payload: seq, received_ms, error, signals).
        AlertsRejected => "alerts.rejected",
        /// An on-call override was added through the API (payload: override, schedule, user, starts_ms, ends_ms).
        OncallOverrideAdded => "oncall.override_added",
        /// An on-call override was removed (payload: override, schedule, user, starts_ms, ends_ms).
        OncallOverrideRemoved => "oncall.override_removed",
    }
}

/// An event about to be appended; the store gives it its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// Who or what caused it: `user:NAME`, `system`, `webhook:github`, `poller`, ...
    pub actor: String,
    /// What it is about: `run/42`, `project/shop`, `release/shop/api/3`, ...
    pub subject: String,
    /// The project it belongs to, if any.
    pub project: Option<String>,
    /// Figures and details; a JSON object.
    pub payload: serde_json::Value,
    /// The client address of the request that caused it (e.g. `203.0.113.7`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The id of the request that caused it, if any; ties the event to the server's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl NewEvent {
    /// An event with an empty payload.
    pub fn new(kind: EventKind, actor: impl Into<String>, subject: impl Into<String>) -> Self {
        NewEvent {
            kind,
            actor: actor.into(),
            subject: subject.into(),
            project: None,
            payload: serde_json::Value::Object(Default::default()),
            source: None,
            request_id: None,
        }
    }

    /// Sets the project.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Sets the client address of the request that caused the event.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the id of the request that caused the event.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_context_is_optional_and_round_trips() {
        let plain = NewEvent::new(EventKind::ServerStarted, "system", "server");
        assert_eq!(
            (plain.source.as_deref(), plain.request_id.as_deref()),
            (None, None)
        );
        // Absent context is left out of the JSON, and old JSON without it still reads.
        let text = serde_json::to_string(&plain).unwrap_or_default();
        assert!(
            !text.contains("source") && !text.contains("request_id"),
            "{text}"
        );
        let old = r#"{"kind":"server.started","actor":"system","subject":"server","project":null,"payload":{}}"#;
        assert_eq!(serde_json::from_str::<NewEvent>(old).ok(), Some(plain));
        let e = NewEvent::new(EventKind::AccessDenied, "user:ann", "project/shop")
            .source("203.0.113.7")
            .request_id("r-1");
        assert_eq!(e.source.as_deref(), Some("203.0.113.7"));
        assert_eq!(e.request_id.as_deref(), Some("r-1"));
        let back: Option<NewEvent> = serde_json::to_string(&e)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        assert_eq!(back, Some(e));
    }

    #[test]
    fn every_kind_is_documented() {
        let doc = include_str!("../../../docs/events.md");
        for k in EventKind::ALL {
            assert!(
                doc.contains(&format!("| `{}` |", k.as_str())),
                "docs/events.md does not document `{}`",
                k.as_str()
            );
        }
    }
}
