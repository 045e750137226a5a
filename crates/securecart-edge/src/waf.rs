//! The WAF stage (stage 3): the listener's web ACL ([`securecart_waf`]) decides on the
//! request's head and the start of its body before any rule forwards it. A body the edge
//! would buffer anyway (a declared length up to 64 KiB) is read first and inspected up to
//! the inspection limit; a longer or chunked body is not read here, and counts as
//! oversize (AWS WAF's oversize handling says whether that blocks). Every block and count
//! is logged (target `waf`, with the rule id and the matched data, shortened and redacted),
//! counted per rule, and kept among the latest [`MAX_SAMPLES`] samples that the admin API
//! lists (AWS WAF's sampled requests).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt, Either, Full};
use securecart_waf::{Inspection, RuleAction, WebAcl};

use crate::error::EdgeError;
use crate::metrics::EdgeMetrics;
use crate::server::ClientBody;
use crate::upstream::MAX_BUFFERED_BODY;

/// How many of the latest blocked or counted requests are kept for the admin API.
pub const MAX_SAMPLES: usize = 500;

/// A blocked or counted request, as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// The client's address.
    pub client: IpAddr,
    /// The method.
    pub method: String,
    /// The path (at most 256 bytes of it).
    pub path: String,
    /// The rule that matched.
    pub rule: String,
    /// `block` or `count`.
    pub action: &'static str,
    /// Whether the request was blocked (by this rule or a later one).
    pub blocked: bool,
    /// The field it matched in.
    pub field: String,
    /// What matched there, shortened and redacted.
    pub data: String,
}

/// The latest samples, newest last.
#[derive(Debug, Clone, Default)]
pub struct Samples(Arc<parking_lot::Mutex<std::collections::VecDeque<Sample>>>);

impl Samples {
    fn push(&self, sample: Sample) {
        let mut samples = self.0.lock();
        if samples.len() == MAX_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The latest samples, newest first, of one rule or of all, at most `limit`.
    pub fn latest(&self, rule: Option<&str>, limit: usize) -> Vec<Sample> {
        self.0
            .lock()
            .iter()
            .rev()
            .filter(|sample| rule.is_none_or(|rule| sample.rule == rule))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// What a log line or a sample may show of matched data: nothing of credentials (cookies,
/// `Authorization`), and card numbers masked but for their last four digits.
pub fn redact(field: &str, data: &str) -> String {
    const SECRET_FIELDS: [&str; 5] = [
        "cookies",
        "header:cookie",
        "header:authorization",
        "header:proxy-authorization",
        "header:x-api-key",
    ];
    if SECRET_FIELDS.contains(&field) {
        return "REDACTED".to_owned();
    }
    // Runs of 13 to 19 digits, spaces and dashes allowed between them: payment cards.
    let bytes = data.as_bytes();
    let mut redacted = String::with_capacity(data.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at].is_ascii_digit() {
            let mut end = at;
            let mut digits = 0;
            while end < bytes.len()
                && (bytes[end].is_ascii_digit()
                    || (matches!(bytes[end], b' ' | b'-')
                        && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)))
            {
                digits += usize::from(bytes[end].is_ascii_digit());
                end += 1;
            }
            let run = &data[at..end];
            if (13..=19).contains(&digits) {
                let mut seen = 0;
                for character in run.chars() {
                    if character.is_ascii_digit() {
                        seen += 1;
                        redacted.push(if seen > digits - 4 { character } else { '*' });
                    } else {
                        redacted.push(character);
                    }
                }
            } else {
                redacted.push_str(run);
            }
            at = end;
        } else {
            let character = data[at..].chars().next().unwrap_or('\u{fffd}');
            redacted.push(character);
            at += character.len_utf8().max(1);
        }
    }
    redacted
}

/// A request's body after the WAF stage: as it came, or read whole.
pub type InspectedBody = Either<ClientBody, Full<Bytes>>;

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
    /// far as it goes.
    pub fn managed() -> Self {
        Self::with_acl(Arc::new(securecart_waf::managed::default_acl()))
    }

    /// `acl`, with an 8 KiB body limit, oversize inspected as far as it goes: what
    /// `securecart proxy --waf` runs, with the managed groups at the paranoia level it
    /// is given.
    pub fn with_acl(acl: Arc<WebAcl>) -> Self {
        Self {
            acl,
            body_limit: 8 * 1024,
            oversize_blocks: false,
        }
    }
}

/// Runs the web ACL on a request: the request to go on with, or why it is refused.
pub async fn inspect(
    waf: &WafConfig,
    request: Request<ClientBody>,
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
            let data = redact(&evidence.field, &evidence.data);
            tracing::info!(
                target: "waf",
                rule = %rule,
                action,
                field = %evidence.field,
                data = %data.escape_debug(),
                client = %client,
                method = %parts.method,
                path = %parts.uri.path(),
                "web ACL match"
            );
            let path = parts.uri.path();
            let mut end = path.len().min(256);
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            metrics.waf_samples.push(Sample {
                time: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_secs()),
                client,
                method: parts.method.to_string(),
                path: path[..end].to_owned(),
                rule: rule.clone(),
                action,
                blocked: verdict.blocked,
                field: evidence.field.clone(),
                data,
            });
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_and_card_numbers_are_redacted() {
        for (field, data, shown) in [
            ("cookies", "session=abc' OR 1=1", "REDACTED"),
            ("header:authorization", "Bearer <script>", "REDACTED"),
            ("body_fields", "4111111111111111", "************1111"),
            (
                "body_fields",
                "card 4111-1111-1111-1111 ok",
                "card ****-****-****-1111 ok",
            ),
            ("body_fields", "4111 1111 1111 1111", "**** **** **** 1111"),
            ("query_arguments", "1' OR '1'='1", "1' OR '1'='1"),
            (
                "query_arguments",
                "order 123456789012 é",
                "order 123456789012 é",
            ),
            ("uri_path", "/a-1-2-3", "/a-1-2-3"),
        ] {
            assert_eq!(redact(field, data), shown, "{field}: {data}");
        }
    }
}
