//! The WAF stage (stage 3): the listener's web ACL ([`securecart_waf`]) decides on the
//! request's head and the start of its body before any rule forwards it. A body the edge
//! would buffer anyway (a declared length up to 64 KiB) is read first and inspected up to
//! the inspection limit; a longer or chunked body is not read here, and counts as
//! oversize (AWS WAF's oversize handling says whether that blocks). Every match is logged
//! (target `waf`, with the rule ids and the matched data, shortened) and counted per rule.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use securecart_waf::{Inspection, RuleAction, WebAcl};

use crate::error::EdgeError;
use crate::metrics::EdgeMetrics;
use crate::upstream::MAX_BUFFERED_BODY;

/// A request's body after the WAF stage: as it came, or read whole.
pub type InspectedBody = Either<Incoming, Full<Bytes>>;

/// A listener's web ACL and how it reads bodies.
#[derive(Debug, Clone)]
pub struct WafConfig {
    /// The web ACL.
    pub acl: Arc<WebAcl>,
    /// How many bytes of a body are inspected (AWS WAF's body inspection limit).
    pub body_limit: usize,
    /// Whether a body past the limit (or one not read: chunked, or over 64 KiB) blocks the
    /// request; if not, its start is inspected (or nothing of it).
    pub oversize_blocks: bool,
}

impl WafConfig {
    /// The default ACL (every managed group), an 8 KiB body limit, oversize inspected as
    /// far as it goes: what `securecart proxy --waf` runs.
    pub fn managed() -> Self {
        Self {
            acl: Arc::new(securecart_waf::managed::default_acl()),
            body_limit: 8 * 1024,
            oversize_blocks: false,
        }
    }
}

/// Runs the web ACL on a request: the request to go on with, or why it is refused.
pub async fn inspect(
    waf: &WafConfig,
    request: Request<Incoming>,
    client: IpAddr,
    body_timeout: Duration,
    metrics: &EdgeMetrics,
) -> Result<Request<InspectedBody>, EdgeError> {
    let (parts, body) = request.into_parts();
    let (body, read, unread) = if body.is_end_stream() {
        (Either::Left(body), Bytes::new(), false)
    } else {
        match body.size_hint().exact() {
            Some(length) if length <= MAX_BUFFERED_BODY => {
                let bytes = tokio::time::timeout(body_timeout, body.collect())
                    .await
                    .map_err(|_| EdgeError::ClientTimeout)?
                    .map_err(|_| EdgeError::BadRequest("the request body ended early"))?
                    .to_bytes();
                (Either::Right(Full::new(bytes.clone())), bytes, false)
            }
            // Streams through unread: none of it is inspected.
            _ => (Either::Left(body), Bytes::new(), true),
        }
    };
    let oversize = unread || read.len() > waf.body_limit;
    if oversize && waf.oversize_blocks {
        metrics.waf_match("oversize", "block");
        return Err(EdgeError::Blocked("oversize".to_owned(), None));
    }
    let inspected = &read[..read.len().min(waf.body_limit)];
    let inspection = Inspection::new(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        inspected,
        oversize,
        client,
    );
    let verdict = waf.acl.evaluate(&inspection);
    for (rule, action, evidence) in &verdict.matches {
        let action = match action {
            RuleAction::Allow => "allow",
            RuleAction::Block => "block",
            RuleAction::Count => "count",
        };
        metrics.waf_match(rule, action);
        if action != "allow" {
            tracing::info!(
                target: "waf",
                rule = %rule,
                action,
                field = %evidence.field,
                data = %evidence.data.escape_debug(),
                client = %client,
                method = %parts.method,
                path = %parts.uri.path(),
                "web ACL match"
            );
        }
    }
    if verdict.blocked {
        return Err(EdgeError::Blocked(
            verdict
                .terminating_rule
                .unwrap_or_else(|| "default".to_owned()),
            verdict.response,
        ));
    }
    Ok(Request::from_parts(parts, body))
}
