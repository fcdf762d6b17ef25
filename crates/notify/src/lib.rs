//! Incident notifications: renders one [`Notification`] for a user-configured
//! [`Channel`] (sluice's signed JSON webhook, a Slack-compatible incoming webhook, or
//! email over SMTP) and makes one delivery attempt with [`send`]. It also drafts
//! postmortems ([`markdown`], [`ticket_json`]) and posts them to a ticket webhook
//! ([`send_ticket`]).
//!
//! Rendering ([`render_webhook`], [`render_slack`], [`render_email`]), signing and
//! [`verify_webhook`], [`Backoff`] and the postmortem functions are pure: no IO, no clock
//! (times are passed in). Only [`send`] and [`send_ticket`] do IO, each bounded by a
//! timeout and each reporting whether a failure is worth retrying.
//!
//! Architecture invariant: this crate does NOT retry, schedule, decide who is notified or
//! when, sign ack/resolve links, read environment variables or bind ports. The server
//! owns the retry loop (asking [`Backoff::delay_after`]), records every attempt on the
//! incident timeline, and hands in ready-made signed links. The crate knows nothing of
//! the store or of how incidents are grouped.
//!
//! TLS: email uses rustls with the *ring* provider and the Mozilla roots (webpki-roots).
//! HTTP goes through the caller's `reqwest::Client`, so whether `https://` webhook URLs
//! work depends on the TLS features that client was built with; without one, an https
//! URL fails with a non-retryable error that says so.

mod backoff;
mod channel;
mod model;
mod postmortem;
mod render;
mod send;
mod signature;
mod text;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_support;

pub use backoff::Backoff;
pub use channel::{Channel, ChannelError, SmtpConfig, SmtpTls};
pub use model::{AlertLine, Notification, NotificationEvent};
pub use postmortem::{IncidentRecord, SuspectedCause, TimelineEntry, markdown, ticket_json};
pub use render::{
    DELIVERY_HEADER, EVENT_HEADER, EmailContent, MAX_LISTED_ALERTS, WEBHOOK_VERSION,
    WebhookRequest, render_email, render_slack, render_webhook, signed_json_request,
};
pub use send::{
    Delivered, DeliveryError, HTTP_TIMEOUT, SMTP_COMMAND_TIMEOUT, SMTP_TOTAL_TIMEOUT, send,
    send_ticket,
};
pub use signature::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, VerifyError, sign_webhook, verify_webhook,
};
