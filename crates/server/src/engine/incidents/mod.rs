//! Alerts and incidents in the server: the ingest path, the engine loop and notifications.
//!
//! Three tasks, connected by the store:
//! - **ingest** ([`Incidents::accept`]): an HTTP handler normalises a request's signals and
//!   hands them to the journal writer (a thread of its own), which appends everything waiting
//!   to the alert journal (`sluice-journal`, a file in the data directory) with one
//!   `fdatasync` (group commit) and only then lets the handlers answer. An accepted alert is
//!   therefore on disk before its sender hears "accepted", many concurrent senders share one
//!   sync, and no append waits for the database.
//! - **the engine loop** ([`run`]): applies journal entries in order to the pure
//!   [`sluice_incident::Engine`], writes the resulting alerts, incidents, timeline and events
//!   with the applied journal position in one transaction, and fires notifications once that
//!   committed. After a crash it restores the engine from the open rows and continues from
//!   the recorded position: level-based, like the rest of sluice.
//! - **notifications** ([`notifier`]): one task per notification, retrying with backoff and
//!   writing every attempt on the incident's timeline.
//!
//! Architecture invariant: HTTP handlers never write alerts or incidents; they journal
//! signals or send commands to the loop, which is the only writer of those rows.

mod apply;
pub mod config;
mod escalation;
pub mod notifier;
pub mod record;
mod signals;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_core::{EventKind, NewEvent};
use sluice_incident::{
    AlertSignal, Effect, Engine as Core, NotifyKind, RestoredAlert, RestoredIncident,
};
use tokio::sync::{Notify, mpsc, oneshot};

use sluice_journal::{Journal, Reader};

use super::{Engine, EngineError, now_ms};
use config::AlertSettings;

/// Requests waiting for the journal writer at most; senders beyond it wait (backpressure).
const INGEST_QUEUE: usize = 4096;
/// Requests the writer puts in one transaction at most.
const GROUP_COMMIT_MAX: usize = 512;
/// Journal entries read at once.
const READ_PAGE: usize = 64;
/// Signals the loop applies per engine step at most (an entry's signals are not split):
/// steps stay short, so due notifications are not late behind a backlog, and commands and
/// other writers of the store do not wait long behind one step.
const APPLY_SIGNALS: usize = 512;
/// How often silences are re-read and muted alerts re-checked.
const SILENCE_RECHECK: Duration = Duration::from_secs(5);
/// Settings older than this are re-read before signals are applied.
const SETTINGS_MAX_AGE: Duration = Duration::from_secs(1);
/// New journal entries are applied once the journal has been quiet this long: while a burst
/// is arriving, accepting it has the CPU, and what it brought is applied afterwards in a few
/// large transactions instead of many small ones. Entries carry their arrival time, so
/// group waits and incident times do not move; a due deadline or a command cuts the wait
/// short.
const APPLY_QUIET: Duration = Duration::from_millis(10);
/// ... but an entry waits at most this long to be applied, however busy ingest is.
const APPLY_MAX_DELAY: Duration = Duration::from_millis(200);
/// After this many steps in a row failed, entries are applied one per transaction, and an
/// entry whose transaction fails alone is set aside (`alerts.rejected`) when the database
/// still accepts writes: one request the database always refuses must not stop the engine.
const ISOLATE_AFTER: u32 = 3;
/// How often due escalations are advanced.
const ESCALATION_TICK: Duration = Duration::from_secs(1);
/// Journal entries applied between two prunings of the journal's sealed segments.
const JOURNAL_PRUNE_EVERY: i64 = 10_000;

/// One accepted request: its signals already encoded, and who waits for the commit.
struct Ingest {
    received_ms: i64,
    body: Vec<u8>,
    done: oneshot::Sender<Result<i64, String>>,
}

/// A command for the engine loop.
enum Command {
    /// Someone acknowledges (`resolve: false`) or resolves an incident.
    Respond {
        incident: i64,
        by: String,
        resolve: bool,
        reply: oneshot::Sender<bool>,
    },
    /// Silences changed: re-read them now.
    Silences,
}

/// The alert subsystem's handle, part of the engine.
pub struct Incidents {
    ingest: mpsc::Sender<Ingest>,
    ingest_rx: std::sync::Mutex<Option<mpsc::Receiver<Ingest>>>,
    commands: mpsc::UnboundedSender<Command>,
    commands_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    /// The journal grew.
    journal_grew: Arc<Notify>,
    /// A reader of the journal, for its committed position (set when the writer starts).
    journal: std::sync::OnceLock<Reader>,
    /// Per project and routing key limiters of the PagerDuty-compatible endpoint.
    pub(crate) limiters:
        std::sync::Mutex<std::collections::HashMap<u32, sluice_alerts::RateLimiter>>,
    /// Keeps each incident's notifications in order.
    pub(crate) order: notifier::Order,
    /// Each project's `alerts.rate_limit`, refreshed with the settings (ingest reads it per
    /// request without touching git or the store).
    pub(crate) rate_limits: std::sync::RwLock<std::collections::HashMap<String, u32>>,
    /// Integrations by key hash, briefly, so a busy sender costs no store read per request.
    pub(crate) keys: std::sync::RwLock<
        std::collections::HashMap<String, (sluice_store::Integration, std::time::Instant)>,
    >,
    /// Client for webhooks.
    pub(crate) http: reqwest::Client,
}

impl Incidents {
    /// A new handle; [`run`] and the journal writer are started by the server.
    pub fn new() -> Incidents {
        let (ingest, ingest_rx) = mpsc::channel(INGEST_QUEUE);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        Incidents {
            ingest,
            ingest_rx: std::sync::Mutex::new(Some(ingest_rx)),
            commands,
            commands_rx: std::sync::Mutex::new(Some(commands_rx)),
            journal_grew: Arc::new(Notify::new()),
            journal: std::sync::OnceLock::new(),
            limiters: std::sync::Mutex::new(std::collections::HashMap::new()),
            order: notifier::Order::default(),
            rate_limits: std::sync::RwLock::default(),
            keys: std::sync::RwLock::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Makes `signals` durable and returns their journal position. Answers only after the
    /// commit.
    pub async fn accept(&self, signals: &[AlertSignal]) -> Result<i64, EngineError> {
        let body = serde_json::to_vec(signals)
            .map_err(|e| EngineError::Internal(format!("cannot encode signals: {e}")))?;
        let (done, wait) = oneshot::channel();
        self.ingest
            .send(Ingest {
                received_ms: now_ms(),
                body,
                done,
            })
            .await
            .map_err(|_| EngineError::Internal("the alert journal is not running".into()))?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(EngineError::Internal(format!("alert journal: {e}"))),
            Err(_) => Err(EngineError::Internal("the alert journal stopped".into())),
        }
    }

    /// Acknowledges an open incident; false when it is not open or already acknowledged.
    pub async fn acknowledge(&self, incident: i64, by: &str) -> Result<bool, EngineError> {
        self.respond(incident, by, false).await
    }

    /// Resolves an open incident; false when it is not open.
    pub async fn resolve(&self, incident: i64, by: &str) -> Result<bool, EngineError> {
        self.respond(incident, by, true).await
    }

    async fn respond(&self, incident: i64, by: &str, resolve: bool) -> Result<bool, EngineError> {
        let (reply, wait) = oneshot::channel();
        self.command(Command::Respond {
            incident,
            by: by.to_owned(),
            resolve,
            reply,
        })?;
        wait.await
            .map_err(|_| EngineError::Internal("the incident engine stopped".into()))
    }

    /// The position of the last entry appended to the journal (0: none, or not started).
    pub fn journal_committed(&self) -> u64 {
        self.journal.get().map_or(0, Reader::committed)
    }

    /// Tells the loop that silences changed.
    pub fn silences_changed(&self) {
        let _ = self.command(Command::Silences);
    }

    fn command(&self, c: Command) -> Result<(), EngineError> {
        self.commands
            .send(c)
            .map_err(|_| EngineError::Internal("the incident engine is not running".into()))
    }
}

impl Default for Incidents {
    fn default() -> Self {
        Incidents::new()
    }
}

/// Starts the journal writer and the engine loop.
pub async fn start(engine: Arc<Engine>) -> Result<(), EngineError> {
    let ingest_rx = engine
        .incidents
        .ingest_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let commands_rx = engine
        .incidents
        .commands_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let (Some(ingest_rx), Some(commands_rx)) = (ingest_rx, commands_rx) else {
        return Err(EngineError::Internal(
            "the incident engine already runs".into(),
        ));
    };
    let applied = engine.store.alerts_applied_seq().await?;
    let dir = engine.config.data_dir.join("alert-journal");
    // Numbering continues after what the store says is applied, even if the files are gone.
    let min_next = u64::try_from(applied).unwrap_or(0) + 1;
    let journal = tokio::task::spawn_blocking(move || Journal::open(&dir, min_next))
        .await
        .map_err(|e| EngineError::Internal(format!("alert journal: {e}")))?
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let _ = engine.incidents.journal.set(journal.reader());
    let state = Loop::new(engine.clone(), journal.reader()).await?;
    let grew = engine.incidents.journal_grew.clone();
    std::thread::Builder::new()
        .name("alert-journal".into())
        .spawn(move || journal_writer(journal, ingest_rx, &grew))
        .map_err(|e| EngineError::Internal(format!("cannot start the alert journal: {e}")))?;
    tokio::spawn(state.run(commands_rx));
    tokio::spawn(signals::run(engine.clone()));
    Ok(())
}

/// Appends everything waiting with one sync, then releases the waiting senders. Runs on a
/// thread of its own until the ingest side is gone.
fn journal_writer(mut journal: Journal, mut rx: mpsc::Receiver<Ingest>, grew: &Notify) {
    let mut batch: Vec<Ingest> = Vec::with_capacity(GROUP_COMMIT_MAX);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < GROUP_COMMIT_MAX
            && let Ok(more) = rx.try_recv()
        {
            batch.push(more);
        }
        let entries: Vec<(i64, &[u8])> = batch
            .iter()
            .map(|i| (i.received_ms, i.body.as_slice()))
            .collect();
        match journal.append(&entries) {
            Ok(first) => {
                grew.notify_one();
                for (i, seq) in batch.drain(..).zip(first..) {
                    let _ = i.done.send(Ok(i64::try_from(seq).unwrap_or(i64::MAX)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "alert journal append failed");
                for i in batch.drain(..) {
                    let _ = i.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Waits until the journal has not grown for [`APPLY_QUIET`], or until `latest`, or until a
/// command arrives (returned, to be run before the journal is applied).
async fn quiet(
    grew: &Notify,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    latest: tokio::time::Instant,
) -> Option<Command> {
    loop {
        tokio::select! {
            _ = grew.notified() => {}
            c = commands.recv(), if !commands.is_closed() => return c,
            _ = tokio::time::sleep(APPLY_QUIET) => return None,
            _ = tokio::time::sleep_until(latest) => return None,
        }
    }
}

/// The engine loop's state.
struct Loop {
    engine: Arc<Engine>,
    /// The journal, read in order; shared with the blocking reads.
    reader: Arc<std::sync::Mutex<Reader>>,
    /// Entries read but not applied yet.
    pending: std::collections::VecDeque<sluice_journal::Entry>,
    core: Core,
    settings: AlertSettings,
    settings_loaded: std::time::Instant,
    escalated: std::time::Instant,
    applied: i64,
    pruned: i64,
    /// Steps that failed in a row.
    failures: u32,
    /// In isolation (after [`ISOLATE_AFTER`] failures): the entry applied alone right now.
    isolating: Option<sluice_journal::Entry>,
    /// The entry that last failed alone, and how many times in a row: it is set aside on
    /// its second failure, the store having answered in between (a database that was
    /// merely down for a moment does not get an entry set aside).
    suspect: Option<(u64, u32)>,
}

impl Loop {
    /// The loop over `reader`, restored from the store.
    async fn new(engine: Arc<Engine>, reader: Reader) -> Result<Loop, EngineError> {
        let settings = AlertSettings::load(&engine).await;
        let mut state = Loop {
            engine,
            reader: Arc::new(std::sync::Mutex::new(reader)),
            pending: std::collections::VecDeque::new(),
            core: Core::new(1, 1),
            settings,
            settings_loaded: std::time::Instant::now(),
            escalated: std::time::Instant::now(),
            applied: 0,
            pruned: 0,
            failures: 0,
            isolating: None,
            suspect: None,
        };
        state.restore().await?;
        Ok(state)
    }

    /// Rebuilds the engine from the open rows and the applied journal position: whatever
    /// was not committed is applied again from the journal.
    async fn restore(&mut self) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let (max_alert, max_incident) = store.alert_max_ids().await?;
        let mut core = Core::new(max_alert + 1, max_incident + 1);
        let settings = AlertSettings::load(&self.engine).await;
        for inc in store.open_incidents().await? {
            let grouping = settings.grouping_of(&inc.project);
            core.restore_incident(
                RestoredIncident {
                    id: inc.id,
                    project: inc.project,
                    group_key: inc.group_key,
                    severity: apply::severity(&inc.severity),
                    opened_ms: inc.opened_ms,
                    last_alert_ms: inc.updated_ms,
                    notified_ms: inc.notified_ms,
                    acked: inc.acked_ms.is_some(),
                },
                grouping,
            );
        }
        for a in store.open_alerts().await? {
            let severity = apply::severity(&a.severity);
            let alert = RestoredAlert {
                id: a.id,
                incident: a.incident_id,
                severity,
                silenced: a.silenced,
                opened_ms: a.created_ms,
                flapping: a.flapping,
                last_change_ms: a.updated_ms,
                // An open alert's `resolved_ms` is the resolve held while it flaps.
                held_resolve_ms: a.resolved_ms.filter(|_| a.flapping),
                signal: AlertSignal {
                    scope: a.scope,
                    key: a.dedup_key,
                    action: sluice_incident::Action::Trigger,
                    project: a.project,
                    service: a.service,
                    source: a.source,
                    summary: a.summary,
                    severity,
                    labels: a.labels,
                    details: a.details,
                    starts_ms: a.starts_ms,
                    rule: a.rule,
                },
            };
            core.restore_alert(alert, &settings);
        }
        let applied = store.alerts_applied_seq().await?;
        self.core = core;
        self.pending.clear();
        self.settings = settings;
        self.settings_loaded = std::time::Instant::now();
        self.applied = applied;
        self.pruned = applied;
        Ok(())
    }

    /// Up to [`READ_PAGE`] journal entries after position `after`.
    async fn read_journal(&self, after: i64) -> Result<Vec<sluice_journal::Entry>, EngineError> {
        let reader = self.reader.clone();
        let after = u64::try_from(after).unwrap_or(0);
        tokio::task::spawn_blocking(move || {
            reader
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(after, READ_PAGE)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("alert journal: {e}")))?
        .map_err(|e| EngineError::Internal(e.to_string()))
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let grew = self.engine.incidents.journal_grew.clone();
        let mut shutdown = self.engine.shutdown_signal();
        let mut next_silence_check = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.step(&mut commands, &mut next_silence_check).await {
                tracing::error!(error = %e, "incident engine step failed; retrying");
                self.failures = self.failures.saturating_add(1);
                let alone = self.isolating.take();
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(e) = self.restore().await {
                    tracing::error!(error = %e, "incident engine restore failed");
                } else if let Some(entry) = alone {
                    let tries = match self.suspect {
                        Some((seq, n)) if seq == entry.seq => n + 1,
                        _ => 1,
                    };
                    self.suspect = Some((entry.seq, tries));
                    if tries >= 2 {
                        self.suspect = None;
                        self.set_aside(entry, &e.to_string()).await;
                    }
                }
                continue;
            }
            self.failures = 0;
            let deadline = self.core.next_deadline().map(|at| {
                let wait = u64::try_from(at - now_ms()).unwrap_or(0);
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let wake_at = deadline
                .unwrap_or(far)
                .min(next_silence_check)
                .min(tokio::time::Instant::now() + ESCALATION_TICK);
            tokio::select! {
                _ = grew.notified() => {
                    let latest = tokio::time::Instant::now() + APPLY_MAX_DELAY;
                    if let Some(c) = quiet(&grew, &mut commands, latest.min(wake_at)).await
                        && let Err(e) = self.command(c).await
                    {
                        tracing::error!(error = %e, "incident command failed");
                    }
                }
                c = commands.recv(), if !commands.is_closed() => {
                    if let Some(c) = c
                        && let Err(e) = self.command(c).await
                    {
                        tracing::error!(error = %e, "incident command failed");
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    /// Applies everything pending: journal entries, due deadlines, silence changes.
    async fn step(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        next_silence_check: &mut tokio::time::Instant,
    ) -> Result<(), EngineError> {
        while let Ok(c) = commands.try_recv() {
            self.command(c).await?;
        }
        // Only what was committed when the step began: entries arriving meanwhile wait for
        // the next step, so a steady stream is applied in large batches, not chased in
        // small ones.
        let target = self.engine.incidents.journal_committed();
        loop {
            let mut effects = Vec::new();
            // The last entry taken: what is read next follows it.
            let mut last = self.applied;
            let mut decoded = Vec::new();
            let mut signals_taken = 0;
            // Up to APPLY_SIGNALS signals go into one transaction, however many entries
            // carry them (one alert per request gives one signal per entry).
            let isolate = self.failures >= ISOLATE_AFTER;
            let limit = if isolate { 1 } else { APPLY_SIGNALS };
            while signals_taken < limit {
                if self.pending.is_empty() {
                    let entries = self.read_journal(last).await?;
                    self.pending.extend(entries);
                }
                if self.pending.front().is_none_or(|e| e.seq > target) {
                    break;
                }
                let Some(entry) = self.pending.pop_front() else {
                    break;
                };
                last = i64::try_from(entry.seq).unwrap_or(i64::MAX);
                if isolate {
                    self.isolating = Some(entry.clone());
                }
                let mut signals: Vec<AlertSignal> = match serde_json::from_slice(&entry.body) {
                    Ok(s) => s,
                    Err(e) => {
                        // Written by this code, so only corruption gets here; skip the entry
                        // rather than stop every incident behind it.
                        tracing::error!(seq = entry.seq, error = %e, "unreadable alert journal entry skipped");
                        continue;
                    }
                };
                for s in &mut signals {
                    s.scrub_nul();
                }
                signals_taken += signals.len().max(1);
                decoded.push((entry.received_ms, signals));
            }
            if last == self.applied {
                break;
            }
            // Settings are re-read at most every second, and at once for a project added
            // since, so its grouping applies from its first alert.
            let unknown = decoded
                .iter()
                .flat_map(|(_, s)| s.iter())
                .any(|s| !self.settings.knows(&s.project));
            if unknown || self.settings_loaded.elapsed() >= SETTINGS_MAX_AGE {
                self.reload().await;
            }
            for (received_ms, signals) in decoded {
                for s in signals {
                    effects.extend(self.core.apply(s, received_ms, &self.settings));
                }
            }
            let now = now_ms();
            effects.extend(self.core.tick(now, &self.settings));
            self.commit(effects, Some(last)).await?;
            self.isolating = None;
        }
        if tokio::time::Instant::now() >= *next_silence_check {
            *next_silence_check = tokio::time::Instant::now() + SILENCE_RECHECK;
            self.reload().await;
            let effects = self.core.recheck_silenced(now_ms(), &self.settings);
            self.commit(effects, None).await?;
        }
        let effects = self.core.tick(now_ms(), &self.settings);
        self.commit(effects, None).await?;
        if self.escalated.elapsed() >= ESCALATION_TICK {
            self.escalated = std::time::Instant::now();
            escalation::tick(&self.engine).await?;
        }
        if self.applied - self.pruned >= JOURNAL_PRUNE_EVERY {
            let reader = self.reader.clone();
            let upto = u64::try_from(self.applied).unwrap_or(0);
            let pruned = tokio::task::spawn_blocking(move || {
                reader.lock().unwrap_or_else(|p| p.into_inner()).prune(upto)
            })
            .await;
            match pruned {
                Ok(Ok(_)) => self.pruned = self.applied,
                Ok(Err(e)) => tracing::warn!(error = %e, "alert journal not pruned"),
                Err(e) => tracing::warn!(error = %e, "alert journal not pruned"),
            }
        }
        Ok(())
    }

    async fn reload(&mut self) {
        self.settings = AlertSettings::load(&self.engine).await;
        *self
            .engine
            .incidents
            .rate_limits
            .write()
            .unwrap_or_else(|p| p.into_inner()) = self.settings.rate_limits();
        self.settings_loaded = std::time::Instant::now();
    }

    async fn command(&mut self, c: Command) -> Result<(), EngineError> {
        match c {
            Command::Respond {
                incident,
                by,
                resolve,
                reply,
            } => {
                let effects = if resolve {
                    self.core.resolve(incident, &by, now_ms())
                } else {
                    self.core.acknowledge(incident, &by, now_ms())
                };
                let done = !effects.is_empty();
                self.commit(effects, None).await?;
                let _ = reply.send(done);
            }
            Command::Silences => {
                self.reload().await;
                let effects = self.core.recheck_silenced(now_ms(), &self.settings);
                self.commit(effects, None).await?;
            }
        }
        Ok(())
    }

    /// Records `entry`, whose transaction failed alone (`error`), as `alerts.rejected` and
    /// moves the applied position past it in one transaction. When even that fails the
    /// database is not writable at all: nothing is set aside and the entry is tried again.
    async fn set_aside(&mut self, entry: sluice_journal::Entry, error: &str) {
        let seq = i64::try_from(entry.seq).unwrap_or(i64::MAX);
        if seq <= self.applied {
            return;
        }
        let signals: serde_json::Value = serde_json::from_slice(&entry.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&entry.body).into_owned().into());
        let mut event = NewEvent::new(
            EventKind::AlertsRejected,
            "system",
            format!("journal/{seq}"),
        )
        .payload(json!({
            "seq": seq,
            "received_ms": entry.received_ms,
            "error": error,
            "signals": signals,
        }));
        event.project = signals
            .pointer("/0/project")
            .and_then(|p| p.as_str())
            .map(str::to_owned);
        let batch = sluice_store::AlertBatch {
            applied_seq: Some(seq),
            events: vec![event],
            ..Default::default()
        };
        match self.engine.store.apply_alert_batch(batch).await {
            Ok(()) => {
                tracing::error!(
                    seq,
                    error,
                    "alerts the database refused on every try were set aside (event alerts.rejected)"
                );
                self.applied = seq;
                self.engine.hub.bump();
            }
            Err(e) => tracing::error!(seq, error = %e, "alerts could not be set aside; retrying"),
        }
    }

    /// Writes the effects with the journal position, then starts their notifications.
    async fn commit(
        &mut self,
        effects: Vec<Effect>,
        applied: Option<i64>,
    ) -> Result<(), EngineError> {
        if effects.is_empty() && applied.is_none() {
            return Ok(());
        }
        let (batch, notifications, resolved) =
            apply::to_batch(&self.engine, effects, applied).await?;
        let changed = !batch.events.is_empty();
        self.engine.store.apply_alert_batch(batch).await?;
        if let Some(seq) = applied {
            self.applied = seq;
        }
        if changed {
            self.engine.hub.bump();
        }
        for n in notifications {
            if matches!(n.kind, NotifyKind::Triggered | NotifyKind::SeverityRaised) {
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    if let Err(e) = escalation::start(&engine, n.incident).await {
                        tracing::warn!(incident = n.incident, error = %e, "escalation did not start");
                    }
                });
            }
            notifier::dispatch(self.engine.clone(), n);
        }
        for id in resolved {
            notifier::post_ticket(self.engine.clone(), id);
        }
        Ok(())
    }
}

impl Engine {
    /// Raises the alert of a deployment that was rolled back or failed by itself: it opens
    /// (or joins) an incident of the service, whose suspected cause is that release.
    pub(crate) async fn deploy_signal(
        &self,
        t: &sluice_store::Target,
        d: &sluice_store::Deployment,
        status: sluice_core::DeployStatus,
        reason: &str,
    ) -> Result<i64, EngineError> {
        let what = match status {
            sluice_core::DeployStatus::RolledBack => "rolled back",
            _ => "failed",
        };
        let production = self
            .production_config(&t.project)
            .await
            .and_then(|c| c.environments.last().map(|e| e.name == t.env))
            .unwrap_or(false);
        let labels: sluice_alerts::Labels = [
            (
                "alertname",
                if status == sluice_core::DeployStatus::RolledBack {
                    "DeployRolledBack"
                } else {
                    "DeployFailed"
                },
            ),
            ("env", t.env.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([
            ("version".to_owned(), d.version.to_string()),
            ("deployment".to_owned(), d.id.to_string()),
        ])
        .collect();
        let signal = AlertSignal {
            scope: format!("deploy:{}", t.project),
            key: format!("{}/{}/{}", t.service, t.env, d.id),
            action: sluice_incident::Action::Trigger,
            project: t.project.clone(),
            service: t.service.clone(),
            source: "sluice".into(),
            summary: format!(
                "version {} of {} was {what} in {}: {reason}",
                d.version, t.service, t.env
            ),
            severity: if production {
                sluice_incident::Severity::Critical
            } else {
                sluice_incident::Severity::Error
            },
            labels,
            details: json!({ "deployment": d.id, "version": d.version, "from_version": d.from_version, "reason": reason }),
            starts_ms: d.created_ms,
            rule: None,
        };
        self.incidents.accept(&[signal]).await
    }
}

/// The event recorded when an integration is created or removed.
pub(crate) fn integration_event(
    kind: EventKind,
    actor: &str,
    project: &str,
    name: &str,
) -> NewEvent {
    NewEvent::new(kind, actor, format!("integration/{project}/{name}"))
        .project(project)
        .payload(json!({ "name": name }))
}
