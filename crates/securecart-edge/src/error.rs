//! The data plane's one error type: where a failure came from and whether a retry is safe.

use std::sync::Arc;

use http::StatusCode;
use securecart_waf::BlockResponse;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something the edge will not serve.
    Client,
    /// A target failed.
    Upstream,
    /// The edge itself failed.
    Internal,
}

/// Why the edge answers a request itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The target group has no target at all.
    #[error("target group {0} has no targets")]
    NoTargets(String),
    /// Connecting to the target failed; nothing was sent, so a retry is safe.
    #[error("cannot connect to target: {0}")]
    Connect(String),
    /// No TCP connection to the target was made within the connect timeout (ALB's 504 for
    /// a target that does not accept its connection in time); nothing was sent, so a retry
    /// is safe.
    #[error("no connection to target in time: {0}")]
    ConnectTimeout(String),
    /// The target failed after the request was sent.
    #[error("target failed: {0}")]
    Upstream(String),
    /// The target did not answer in time.
    #[error("target did not answer in time")]
    Timeout,
    /// The client did not send its body in time.
    #[error("the client did not send its request body in time")]
    ClientTimeout,
    /// The request's body is larger than its rule allows.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The request cannot be forwarded as it is.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request's `X-Forwarded-For` holds more addresses than the edge appends to
    /// ([`crate::forward::MAX_FORWARDED_ADDRESSES`]; ALB's 463).
    #[error("X-Forwarded-For holds more than {0} addresses")]
    TooManyForwardedAddresses(usize),
    /// The listener's web ACL blocked the request, by this rule (or its default action),
    /// with the rule's own answer if it has one.
    #[error("blocked by the web ACL ({0})")]
    Blocked(String, Option<Arc<BlockResponse>>),
    /// The client sends faster than the shield allows; it may again in this many seconds.
    #[error("rate limited for {0} s")]
    RateLimited(u64),
    /// A rule of the shield's automatic mitigation holds the client back for this many
    /// seconds.
    #[error("held back by the flood mitigation for {0} s")]
    Mitigated(u64),
    /// The edge has as many requests in flight as its shield allows.
    #[error("shed: too many requests in flight")]
    Shed,
}

impl EdgeError {
    /// Where the failure came from.
    pub fn source_kind(&self) -> ErrorSource {
        match self {
            EdgeError::BadRequest(_)
            | EdgeError::TooManyForwardedAddresses(_)
            | EdgeError::BodyTooLarge(_)
            | EdgeError::ClientTimeout
            | EdgeError::Blocked(..)
            | EdgeError::RateLimited(_)
            | EdgeError::Mitigated(_) => ErrorSource::Client,
            EdgeError::NoTargets(_) | EdgeError::Shed => ErrorSource::Internal,
            EdgeError::Connect(_)
            | EdgeError::ConnectTimeout(_)
            | EdgeError::Upstream(_)
            | EdgeError::Timeout => ErrorSource::Upstream,
        }
    }

    /// Whether sending the same request to another target is safe whatever its method:
    /// only when nothing reached the first one.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EdgeError::Connect(_) | EdgeError::ConnectTimeout(_))
    }

    /// The status the client gets, as ALB answers: 503 without targets,
    /// 502 when a target fails (or refuses the connection), 504 when it is too slow (to
    /// accept the connection, or to answer).
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::NoTargets(_) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::Connect(_) | EdgeError::Upstream(_) => StatusCode::BAD_GATEWAY,
            EdgeError::Timeout | EdgeError::ConnectTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // ALB's own status for it.
            EdgeError::TooManyForwardedAddresses(_) => {
                StatusCode::from_u16(463).unwrap_or(StatusCode::BAD_REQUEST)
            }
            EdgeError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            EdgeError::Blocked(_, None) => StatusCode::FORBIDDEN,
            EdgeError::Blocked(_, Some(response)) => {
                StatusCode::from_u16(response.status).unwrap_or(StatusCode::FORBIDDEN)
            }
            EdgeError::RateLimited(_) | EdgeError::Mitigated(_) => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::Shed => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable code for the JSON body and the logs.
    pub fn code(&self) -> &'static str {
        match self {
            EdgeError::NoTargets(_) => "no_targets",
            EdgeError::Connect(_) => "target_unreachable",
            EdgeError::ConnectTimeout(_) => "target_connect_timeout",
            EdgeError::Upstream(_) => "target_failed",
            EdgeError::Timeout => "target_timeout",
            EdgeError::BadRequest(_) => "bad_request",
            EdgeError::TooManyForwardedAddresses(_) => "too_many_forwarded_addresses",
            EdgeError::BodyTooLarge(_) => "body_too_large",
            EdgeError::ClientTimeout => "client_timeout",
            EdgeError::Blocked(..) => "blocked",
            EdgeError::RateLimited(_) => "rate_limited",
            EdgeError::Mitigated(_) => "mitigated",
            EdgeError::Shed => "shed",
        }
    }
}
