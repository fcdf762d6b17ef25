//! The webhook error contract: one table of variant, stable code, HTTP status and message.

/// Why a webhook delivery was refused.
///
/// | variant | [`code`](WebhookError::code) | [`status`](WebhookError::status) |
/// |---|---|---|
/// | `MissingSignature` | `missing_signature` | 401 |
/// | `BadSignature` | `bad_signature` | 401 |
/// | `Malformed` | `malformed` | 400 |
/// | `TooLarge` | `too_large` | 413 |
/// | `MissingDelivery` | `missing_delivery` | 400 |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature (or token) header is absent.
    #[error("missing {header} header: set the same webhook secret on the git host and in sluice")]
    MissingSignature {
        /// The header that was expected.
        header: &'static str,
    },
    /// The signature (or token) does not match the secret.
    #[error(
        "signature does not match the body: check that the webhook secret on the git host \
         equals the one in sluice"
    )]
    BadSignature,
    /// The body or a header could not be understood.
    #[error("malformed webhook: {what}")]
    Malformed {
        /// What is wrong, with serde's line and column for bad JSON.
        what: String,
    },
    /// The body is over [`crate::MAX_BODY`].
    #[error("webhook body is {size} bytes, over the {max} byte limit: send push events only")]
    TooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The delivery id header is absent.
    #[error("missing {header} header: send the webhook from the git host, which sets it")]
    MissingDelivery {
        /// The header that was expected.
        header: &'static str,
    },
}

impl WebhookError {
    /// The HTTP status to answer with: 401 for signature problems, 400 for malformed
    /// requests or a missing delivery id, 413 for an oversized body.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::MissingSignature { .. } | WebhookError::BadSignature => 401,
            WebhookError::Malformed { .. } | WebhookError::MissingDelivery { .. } => 400,
            WebhookError::TooLarge { .. } => 413,
        }
    }

    /// A stable snake_case code for API responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingSignature { .. } => "missing_signature",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::Malformed { .. } => "malformed",
            WebhookError::TooLarge { .. } => "too_large",
            WebhookError::MissingDelivery { .. } => "missing_delivery",
        }
    }

    pub(crate) fn malformed(what: impl Into<String>) -> WebhookError {
        WebhookError::Malformed { what: what.into() }
    }
}
