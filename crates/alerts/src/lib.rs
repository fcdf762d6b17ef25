//! Incoming alert signals and outgoing Alertmanager webhooks, wire-compatible with the
//! real systems.
//!
//! sluice receives alerts from tools that already speak PagerDuty's Events API v2
//! ([`pagerduty`]) or Alertmanager's `POST /api/v2/alerts` and webhook formats
//! ([`alertmanager`]). This crate turns a raw request body into either a validated event,
//! convertible into the normalised [`Signal`], or a rejection carrying the exact HTTP
//! status and JSON body the real peer would answer with, so existing clients keep their
//! retry and error handling. It also renders the version-4 webhook payload sluice sends,
//! computes Prometheus label fingerprints and group keys ([`fingerprint`]), and offers a
//! token-bucket [`RateLimiter`] for PagerDuty's `429`.
//!
//! Architecture invariant: the crate is pure. It does no IO, reads no clock, draws no
//! random numbers and knows nothing of HTTP servers or storage: the receive time, the
//! resolve timeout and the dedup-key generator are passed in, and the server writes the
//! returned status and body. Body size limits are the caller's job; the parsers never
//! panic, and nesting deeper than `serde_json`'s limit of 128 is refused as malformed.
//!
//! Where behaviour deliberately differs from the peers:
//! - Times are kept to the millisecond; finer digits are truncated.
//! - PagerDuty messages for problems no public record shows (a wrong JSON type, an unknown
//!   `event_action`, a dedup key that is too long or missing on acknowledge/resolve, bad
//!   links or images, an invalid `payload.timestamp`) follow the shape of PagerDuty's
//!   known messages (`'x' is missing or blank`, `'x' is invalid (…)`) but are sluice's
//!   wording. Any body that is not a JSON object gets the "Unrecognized object" answer.
//! - Alertmanager decoding errors carry the go-swagger prefix, status and code, but the
//!   text after `because` only approximates Go's `encoding/json` and `time` messages.
//! - Where Alertmanager checks alerts in Go's random map order, the first invalid label
//!   is reported in name order, so answers are deterministic.
//! - A `null` entry in the alerts array crashes Alertmanager 0.25's handler (no answer);
//!   here it is a `400` parse error. Lone UTF-16 surrogates in JSON strings, which Go
//!   replaces, are refused as malformed JSON.
//! - The rate limiter is a plain token bucket per routing key; PagerDuty's real limits
//!   are adaptive and per account as well.

pub mod alertmanager;
pub mod fingerprint;
pub mod gotext;
pub mod model;
pub mod pagerduty;
pub mod ratelimit;
pub mod timestamp;

pub use alertmanager::{
    AlertStatus, AmAlert, AmRejection, OutgoingAlert, OutgoingGroup, WebhookAlert, WebhookMessage,
    parse_postable_alerts, parse_webhook, render_webhook,
};
pub use fingerprint::{fingerprint, fingerprint_hex, group_key};
pub use model::{Image, Labels, Link, Severity, Signal, SignalAction, UnknownSeverity};
pub use pagerduty::{
    PdChangeEvent, PdEvent, PdPayload, PdRejection, accepted_body, change_accepted_body,
    parse_change_event, parse_event,
};
pub use ratelimit::{RateLimiter, RetryAfterMs};
pub use timestamp::TimeError;
