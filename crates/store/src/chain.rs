//! The event log as a tamper-evident hash chain, and the audit reads.
//!
//! Every event's `hash` is [`sluice_audit::entry_hash`] over the previous event's hash and the
//! event's fields; it is computed in [`insert_events`], inside the write transaction that
//! appends the event, so the chain follows commit order exactly as `seq` does. Events written
//! before schema version 3 (or by an older sluice sharing the database) have an empty hash;
//! [`Store::backfill`] chains them at open, and [`insert_events`] before appending after them.
//! Stored hashes are never recomputed, so chaining cannot launder an edited entry.
//! Signed checkpoints of the chain head are kept in `audit_checkpoints`; they are made and
//! checked by the server with `sluice-audit`, the store only keeps them.

use sluice_audit::{Checkpoint, EntryFields, Hash, StoredEntry, entry_hash};
use sluice_core::NewEvent;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::rows::{self, EVENT_COLS, stored_hash, to_json};
use crate::{Event, Result, Store, conflict_on_unique, limit_or, now_ms};

/// Columns read by [`checkpoint`].
const CHECKPOINT_COLS: &str = "seq, hash, time_ms, key_id, signature";

/// Entries per page of [`Store::audit_entries`] when no limit is given.
const DEFAULT_AUDIT_LIMIT: i64 = 10_000;

/// Events re-read per query while backfilling.
const BACKFILL_PAGE: i64 = 1000;

/// The last event's seq and hash, `(0, GENESIS)` for an empty log. If the last events have
/// no hash yet (written by an older sluice sharing the database), they are chained first:
/// the caller holds the write lock, so this is the same as [`Store::backfill`] at open.
async fn head(conn: &mut AnyConnection) -> Result<(i64, Hash)> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    match row {
        None => Ok((0, Hash::GENESIS)),
        Some((seq, hash)) if hash.is_empty() => Ok((seq, chain_pending(conn).await?)),
        Some((seq, hash)) => Ok((seq, stored_hash(&hash))),
    }
}

/// Appends events inside the caller's write transaction: `seq` continues from the highest
/// stored one, so the log is gap-free and ordered as transactions commit, and each event is
/// chained to the one before it.
pub(crate) async fn insert_events(
    conn: &mut AnyConnection,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let (last, mut prev) = head(conn).await?;
    let time_ms = now_ms();
    let mut out = Vec::with_capacity(events.len());
    let origin = crate::origin::current();
    for (seq, mut e) in (last + 1..).zip(events) {
        if let Some(o) = &origin {
            if e.source.is_none() {
                e.source = o.source.clone();
            }
            if e.request_id.is_none() {
                e.request_id = Some(o.request_id.clone());
            }
        }
        let payload = to_json(&e.payload, "event payload")?;
        let hash = entry_hash(
            &prev,
            &EntryFields {
                seq,
                time_ms,
                kind: e.kind.as_str(),
                actor: &e.actor,
                subject: &e.subject,
                project: e.project.as_deref(),
                payload: &payload,
                source: e.source.as_deref(),
                request_id: e.request_id.as_deref(),
            },
        );
        sqlx::query(
            "INSERT INTO events (seq, time_ms, kind, actor, subject, project, payload, source, \
             request_id, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(seq)
        .bind(time_ms)
        .bind(e.kind.as_str())
        .bind(e.actor.as_str())
        .bind(e.subject.as_str())
        .bind(e.project.as_deref())
        .bind(payload)
        .bind(e.source.as_deref())
        .bind(e.request_id.as_deref())
        .bind(prev.to_string())
        .bind(hash.to_string())
        .execute(&mut *conn)
        .await?;
        out.push(Event {
            seq,
            time_ms,
            kind: e.kind,
            actor: e.actor,
            subject: e.subject,
            project: e.project,
            payload: e.payload,
            source: e.source,
            request_id: e.request_id,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    Ok(out)
}

impl Store {
    /// Chains the events that have no hash yet (written before schema version 3), in seq
    /// order, in one write transaction. A no-op (one indexed query) once everything is
    /// chained.
    pub(crate) async fn backfill(&self) -> Result<()> {
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM events WHERE hash = '' LIMIT 1")
                .fetch_optional(&self.inner.pool)
                .await?;
        if pending.is_none() {
            return Ok(());
        }
        let mut w = self.write(true).await?;
        chain_pending(w.conn()).await?;
        w.commit().await
    }
}

/// Inside a write transaction: chains every event without a hash, from the first one on, in
/// seq order; returns the hash of the last event. Stored hashes are never rewritten (that
/// would hide tampering): an unchained event after a chained one links to its stored hash.
async fn chain_pending(conn: &mut AnyConnection) -> Result<Hash> {
    let first: Option<i64> =
        sqlx::query_scalar("SELECT CAST(MIN(seq) AS BIGINT) FROM events WHERE hash = ''")
            .fetch_one(&mut *conn)
            .await?;
    let before: Option<String> = match first {
        Some(first) => {
            sqlx::query_scalar("SELECT hash FROM events WHERE seq < $1 ORDER BY seq DESC LIMIT 1")
                .bind(first)
                .fetch_optional(&mut *conn)
                .await?
        }
        // Nothing to chain: the head's hash is the answer.
        None => {
            sqlx::query_scalar("SELECT hash FROM events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let mut prev = before.as_deref().map_or(Hash::GENESIS, stored_hash);
    let Some(first) = first else {
        return Ok(prev);
    };
    let mut after = first - 1;
    loop {
        let page = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after)
        .bind(BACKFILL_PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.try_get("seq")?;
        for row in &page {
            prev = chain_row(conn, row, prev).await?;
        }
    }
    Ok(prev)
}

/// Chains one row during [`chain_pending`] if it has no hash yet; returns its hash.
async fn chain_row(conn: &mut AnyConnection, row: &AnyRow, prev: Hash) -> Result<Hash> {
    let stored: String = row.try_get("hash")?;
    if !stored.is_empty() {
        return Ok(stored_hash(&stored));
    }
    let e = rows::audit_entry(row)?;
    let hash = entry_hash(&prev, &e.fields());
    sqlx::query("UPDATE events SET prev_hash = $2, hash = $3 WHERE seq = $1")
        .bind(e.seq)
        .bind(prev.to_string())
        .bind(hash.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(hash)
}

fn checkpoint(row: &AnyRow) -> Result<Checkpoint> {
    // A malformed hash reads as all zeros: its signature then fails to verify, which
    // verification reports, instead of this read failing.
    Ok(Checkpoint {
        seq: row.try_get("seq")?,
        hash: stored_hash(&row.try_get::<String, _>("hash")?),
        time_ms: row.try_get("time_ms")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

impl Store {
    /// The audit chain's entries with `seq > after_seq`, in seq order, at most `limit`
    /// (0 means 10000): each event's fields as hashed (the payload as its exact stored
    /// text) with its stored `prev_hash` and `hash`, ready for [`sluice_audit::verify`].
    /// A stored hash that is not 64 hex digits reads as all zeros, so tampering with it is
    /// reported by verification rather than failing this read.
    pub async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredEntry>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after_seq)
        .bind(limit_or(limit, DEFAULT_AUDIT_LIMIT))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(rows::audit_entry).collect()
    }

    /// The chain head: the last event's seq and hash, `None` when the log is empty. Sign this
    /// for a checkpoint (an empty log is checkpointed as seq 0, [`Hash::GENESIS`]).
    pub async fn last_event(&self) -> Result<Option<(i64, Hash)>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.inner.pool)
                .await?;
        Ok(row.map(|(seq, hash)| (seq, stored_hash(&hash))))
    }

    /// Keeps a signed checkpoint. Writes no event (an event per checkpoint would move the
    /// head it signs). `Conflict` if the key already signed one at that time.
    pub async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        let mut w = self.write(false).await?;
        let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, time_ms, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(cp.seq)
        .bind(cp.hash.to_string())
        .bind(cp.time_ms)
        .bind(cp.key_id.as_str())
        .bind(cp.signature.as_str())
        .execute(w.conn())
        .await;
        conflict_on_unique(inserted, || {
            format!("checkpoint by key {} at {}", cp.key_id, cp.time_ms)
        })?;
        w.commit().await
    }

    /// Every stored checkpoint, by seq then time.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq, time_ms, key_id"
        )))
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter().map(checkpoint).collect()
    }

    /// The newest checkpoint (by time), if any.
    pub async fn last_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY time_ms DESC, seq DESC \
             LIMIT 1"
        )))
        .fetch_optional(&self.inner.pool)
        .await?;
        row.as_ref().map(checkpoint).transpose()
    }
}
