//! Where a notification goes: a user-configured channel. Configuration only; rendering is
//! in `render` and delivery in `send`.
//!
//! The `Debug` output of every type here hides secrets (webhook secret, Slack hook URL,
//! SMTP password), because channel configs end up in logs and error reports.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A notification channel as configured by a user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Channel {
    /// sluice's generic JSON webhook (see [`crate::render_webhook`]).
    Webhook {
        /// Where to POST.
        url: String,
        /// Shared secret; when set, every request carries `X-Sluice-Signature`.
        #[serde(default)]
        secret: Option<String>,
    },
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).
    Slack {
        /// The incoming-webhook URL (itself a secret).
        url: String,
    },
    /// Email over SMTP.
    Email {
        /// How to reach the mail server.
        smtp: SmtpConfig,
        /// Recipients, e.g. `oncall@example.com` or `On-call <oncall@example.com>`.
        to: Vec<String>,
    },
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (only sensible for a relay on localhost or a trusted network).
    None,
    /// Plain connect, then `STARTTLS`, which must succeed (usually port 587).
    #[default]
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte (implicit TLS, usually port 465).
    Tls,
}

/// SMTP server settings of an email channel.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Server port (587 for STARTTLS, 465 for TLS, 25 for plain are usual).
    pub port: u16,
    /// Transport security.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login name, if the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// Sender, e.g. `sluice <alerts@example.com>`. Its domain also names the mail ids.
    pub from: String,
}

/// A channel configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The URL is not an absolute http(s) URL.
    #[error("{kind} channel: url is not an absolute http or https url; check the channel settings")]
    BadUrl {
        /// `webhook` or `slack`.
        kind: &'static str,
    },
    /// An email address does not parse.
    #[error(
        "email channel: `{address}` is not a valid address; use `name@example.com` or `Name <name@example.com>`"
    )]
    BadAddress {
        /// The offending value.
        address: String,
    },
    /// The email channel has no recipients.
    #[error("email channel: no recipients; add at least one address to `to`")]
    NoRecipients,
    /// The SMTP host is empty.
    #[error("email channel: smtp host is empty; set `smtp.host`")]
    NoHost,
    /// A password without a user name, or the other way round.
    #[error("email channel: set both `smtp.username` and `smtp.password`, or neither")]
    HalfCredentials,
}

impl Channel {
    /// The channel kind: `webhook`, `slack` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Slack { .. } => "slack",
            Channel::Email { .. } => "email",
        }
    }

    /// Checks the configuration without any IO, so the server can reject a bad channel
    /// when it is saved rather than at the first incident.
    pub fn validate(&self) -> Result<(), ChannelError> {
        match self {
            Channel::Webhook { url, .. } => check_url("webhook", url),
            Channel::Slack { url } => check_url("slack", url),
            Channel::Email { smtp, to } => {
                if smtp.host.trim().is_empty() {
                    return Err(ChannelError::NoHost);
                }
                if smtp.username.is_some() != smtp.password.is_some() {
                    return Err(ChannelError::HalfCredentials);
                }
                parse_mailbox(&smtp.from)?;
                if to.is_empty() {
                    return Err(ChannelError::NoRecipients);
                }
                for address in to {
                    parse_mailbox(address)?;
                }
                Ok(())
            }
        }
    }
}

fn check_url(kind: &'static str, url: &str) -> Result<(), ChannelError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ChannelError::BadUrl { kind }),
    }
}

pub(crate) fn parse_mailbox(address: &str) -> Result<lettre::message::Mailbox, ChannelError> {
    address
        .trim()
        .parse::<lettre::message::Mailbox>()
        .map_err(|_| ChannelError::BadAddress {
            address: crate::text::truncate(&crate::text::one_line(address), 200),
        })
}

/// Shows only the scheme and host of a URL, for logs and error messages: Slack hook URLs
/// and many webhook URLs carry their secret in the path or query.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match u.host_str() {
            Some(host) => match u.port() {
                Some(port) => format!("{}://{host}:{port}/…", u.scheme()),
                None => format!("{}://{host}/…", u.scheme()),
            },
            None => format!("{}:…", u.scheme()),
        },
        Err(_) => "<invalid url>".to_string(),
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Webhook { url, secret } => f
                .debug_struct("Webhook")
                .field("url", &redact_url(url))
                .field("secret", &secret.as_ref().map(|_| "<redacted>"))
                .finish(),
            Channel::Slack { url } => f
                .debug_struct("Slack")
                .field("url", &redact_url(url))
                .finish(),
            Channel::Email { smtp, to } => f
                .debug_struct("Email")
                .field("smtp", smtp)
                .field("to", to)
                .finish(),
        }
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(to: Vec<&str>) -> Channel {
        Channel::Email {
            smtp: SmtpConfig {
                host: "mail.example.com".into(),
                port: 587,
                tls: SmtpTls::StartTls,
                username: Some("u".into()),
                password: Some("hunter2".into()),
                from: "sluice <alerts@example.com>".into(),
            },
            to: to.into_iter().map(String::from).collect(),
        }
    }

    #[test]
    fn config_round_trips_through_json_with_a_type_tag() {
        let json = r#"{"type":"email","smtp":{"host":"mail.example.com","port":587,
            "tls":"starttls","username":"u","password":"hunter2",
            "from":"sluice <alerts@example.com>"},"to":["a@example.com"]}"#;
        let parsed: Channel = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, email(vec!["a@example.com"]));
        let slack: Channel =
            serde_json::from_str(r#"{"type":"slack","url":"https://hooks.example/x"}"#).unwrap();
        assert_eq!(slack.kind(), "slack");
        let unknown = serde_json::from_str::<Channel>(
            r#"{"type":"slack","url":"https://hooks.example/x","colour":"red"}"#,
        );
        assert!(unknown.is_err(), "unknown fields are rejected");
    }

    #[test]
    fn validate_catches_bad_settings() {
        assert!(
            email(vec!["a@example.com", "B <b@example.com>"])
                .validate()
                .is_ok()
        );
        assert_eq!(email(vec![]).validate(), Err(ChannelError::NoRecipients));
        assert!(matches!(
            email(vec!["not an address"]).validate(),
            Err(ChannelError::BadAddress { .. })
        ));
        let bad_url = Channel::Webhook {
            url: "ftp://x/y".into(),
            secret: None,
        };
        assert_eq!(
            bad_url.validate(),
            Err(ChannelError::BadUrl { kind: "webhook" })
        );
        let ok = Channel::Slack {
            url: "https://hooks.example/services/T/B/x".into(),
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let hook = Channel::Slack {
            url: "https://hooks.example/services/T0/B0/SECRETPATH".into(),
        };
        let webhook = Channel::Webhook {
            url: "https://h.example/in?token=SECRETQ".into(),
            secret: Some("SECRETS".into()),
        };
        let all = format!("{hook:?} {webhook:?} {:?}", email(vec!["a@example.com"]));
        for secret in ["SECRETPATH", "SECRETQ", "SECRETS", "hunter2"] {
            assert!(!all.contains(secret), "{secret} leaked in {all}");
        }
        assert!(all.contains("hooks.example"));
    }
}
