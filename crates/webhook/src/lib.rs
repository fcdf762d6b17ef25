//! Webhook verification and parsing (stub; see the webhook helper's brief).
