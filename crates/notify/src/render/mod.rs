//! Pure rendering of a [`Notification`](crate::Notification) for each channel kind: no
//! IO and no clock (the send time is passed in). `send` turns these into requests.

mod email;
mod slack;
mod webhook;

pub use email::{EmailContent, render_email};
pub use slack::render_slack;
pub use webhook::{
    DELIVERY_HEADER, EVENT_HEADER, WEBHOOK_VERSION, WebhookRequest, render_webhook,
    signed_json_request,
};

/// How many alerts a message lists before it says "and N more".
pub const MAX_LISTED_ALERTS: usize = 10;

/// The labelled links a message offers (acknowledge, resolve, the incident page), only those
/// that are usable http(s) URLs.
fn links(n: &crate::Notification) -> Vec<(&'static str, &str)> {
    [
        ("Acknowledge", n.ack_url.as_deref()),
        ("Resolve", n.resolve_url.as_deref()),
        ("Open incident", Some(n.incident_url.as_str())),
    ]
    .into_iter()
    .filter_map(|(label, url)| {
        url.filter(|u| crate::text::is_http_url(u))
            .map(|u| (label, u))
    })
    .collect()
}
