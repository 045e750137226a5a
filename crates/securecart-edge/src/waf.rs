//! The WAF stage (stage 3): the listener's web ACL ([`securecart_waf`]) decides on the
//! request's head and the start of its body before any rule forwards it. A body the edge
//! would buffer anyway (a declared length up to 64 KiB) is read whole and inspected up to
//! the inspection limit; of any other body (chunked, without a length over HTTP/2, or
//! longer) the edge reads as far as the limit, inspects that, and sends what it read ahead
//! of the rest as it comes (AWS WAF's oversize handling says whether a body past the limit
//! blocks). Every request blocked, counted or challenged is logged once, as AWS WAF's log
//! records (target `waf`: the web ACL, the request's action and terminating rule, its trace
//! id, and every rule that matched with its field and data, shortened and redacted, as a
//! JSON array); each match is counted per web ACL and rule, and kept among the latest
//! [`MAX_SAMPLES`] samples that the admin API lists (AWS WAF's sampled requests, per rule).

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either};
use securecart_waf::{Inspection, RuleAction, WebAcl};

use crate::error::EdgeError;
use crate::metrics::EdgeMetrics;
use crate::server::ClientBody;
use crate::upstream::{EdgeBody, MAX_BUFFERED_BODY};

/// How many of the latest blocked or counted requests are kept for the admin API.
pub const MAX_SAMPLES: usize = 500;

/// A blocked or counted request, as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// When, in seconds since the Unix epoch.
    pub time: u64,
    /// The web ACL's name.
    pub web_acl: String,
    /// The client's address.
    pub client: IpAddr,
    /// The request's W3C trace id, as in its access log line.
    pub trace_id: String,
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

/// What else the operator keeps out of the WAF's log lines and samples (AWS WAF's
/// logging `RedactedFields`): headers whose values are as secret as credentials, the
/// query string (and every argument read from it), the path, the method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    /// Header names, lowercase.
    pub headers: Vec<String>,
    /// The query string and its arguments.
    pub query_string: bool,
    /// The path.
    pub uri_path: bool,
    /// The method.
    pub method: bool,
}

impl Redaction {
    /// Whether a header's value is never shown: a credential's, or one the operator named.
    fn hides_header(&self, name: &str) -> bool {
        securecart_waf::inspect::is_credential(name)
            || self.headers.iter().any(|hidden| hidden == name)
    }
}

/// Whether data matched in several headers at once may come from a hidden one: the
/// request has one, and the data is not the start of another header's value as sent.
fn hidden_among(headers: &HeaderMap, data: &str, hidden: impl Fn(&str) -> bool) -> bool {
    headers.keys().any(|name| hidden(name.as_str()))
        && !headers.iter().any(|(name, value)| {
            !hidden(name.as_str())
                && String::from_utf8_lossy(&value.as_bytes()[..value.len().min(64)]) == data
        })
}

/// What a log line or a sample shows of a redacted part.
const REDACTED: &str = "REDACTED";

/// What a log line or a sample may show of data matched in `field` of a request with
/// `headers`: nothing of credentials (cookies, `Authorization`) nor of what the operator
/// redacts, and card numbers masked but for their last four digits. A match in all the
/// headers at once shows nothing when the request carries a hidden header, unless the
/// data is the start of another header's value as sent (a rule may have read a
/// credential, decoded, and its evidence would not tell which header it came from).
pub fn redact(field: &str, data: &str, headers: &HeaderMap, redaction: &Redaction) -> String {
    let secret = match field {
        // A cookie is a credential, the one a rule names (`cookie:session`) too.
        "cookies" => true,
        _ if field.starts_with("cookie:") => true,
        "headers" => hidden_among(headers, data, |name| redaction.hides_header(name)),
        // All but the credentials leaves out only the built-in ones: a header the operator
        // hides is among them.
        "headers_but_credentials" => hidden_among(headers, data, |name| {
            redaction.headers.iter().any(|hidden| hidden == name)
        }),
        "query_string" | "query_arguments" | "query_argument_names" => redaction.query_string,
        "uri_path" => redaction.uri_path,
        "method" => redaction.method,
        // A rate-based rule's keys (the WAF never shows a cookie's, a query's or a
        // credential header's): the path, the method and a header's value are shown
        // unless the operator hides them.
        "rate" => {
            (redaction.uri_path && data.contains("uri_path:"))
                || (redaction.method && data.contains("method:"))
                || data.split(',').any(|key| {
                    key.split_once(':').is_some_and(|(name, _)| {
                        redaction.headers.iter().any(|hidden| hidden == name)
                    })
                })
        }
        _ => {
            field
                .strip_prefix("header:")
                .is_some_and(|name| redaction.hides_header(name))
                || field.starts_with("query_argument:") && redaction.query_string
        }
    };
    if secret {
        return REDACTED.to_owned();
    }
    // Runs of 13 digits or more, spaces and dashes allowed between them: payment cards
    // (13 to 19 digits), and a card with digits before it (`utf8_to_unicode` writes
    // `а4111...` as `%u04304111...`).
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
            if digits >= 13 {
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

/// A request's body after the WAF stage: as it came (no WAF, or an empty body), or read
/// in part or whole.
pub type InspectedBody = Either<ClientBody, ReadBody>;

/// A body the WAF stage read (whole, or as far as its inspection limit): the bytes read,
/// then the rest of the client's body as it comes, then the trailers if the body ended
/// with some while it was read.
#[derive(Debug)]
pub struct ReadBody {
    read: Bytes,
    rest: Option<ClientBody>,
    trailers: Option<HeaderMap>,
}

impl ReadBody {
    /// No body: that of a request the edge makes itself (a custom error response's page),
    /// of the type the stages after the WAF take.
    pub(crate) fn empty() -> Self {
        Self {
            read: Bytes::new(),
            rest: None,
            trailers: None,
        }
    }
}

impl Body for ReadBody {
    type Data = Bytes;
    type Error = <ClientBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.read.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.read)))));
        }
        if let Some(rest) = &mut this.rest {
            match Pin::new(rest).poll_frame(context) {
                Poll::Ready(None) => this.rest = None,
                other => return other,
            }
        }
        Poll::Ready(
            this.trailers
                .take()
                .map(|trailers| Ok(Frame::trailers(trailers))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.read.len() as u64;
        match &self.rest {
            None => SizeHint::with_exact(read),
            Some(rest) => crate::server::with_more(&rest.size_hint(), read),
        }
    }
}

/// Reads `body` until it ends or `enough` bytes of it are read, within `timeout`.
async fn read_start(
    mut body: ClientBody,
    enough: usize,
    timeout: Duration,
) -> Result<ReadBody, EdgeError> {
    // The first frame as it came (a body read in one frame, as most small ones are, is not
    // copied); the frames after it joined to it.
    let mut first = Bytes::new();
    let mut more = BytesMut::new();
    let mut trailers = None;
    let reading = async {
        // (`more`, once begun, holds `first` too.)
        while (if more.is_empty() {
            first.len()
        } else {
            more.len()
        }) < enough
        {
            match body.frame().await {
                None => return Ok(true),
                Some(Err(_)) => return Err(EdgeError::BadRequest("the request body ended early")),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if first.is_empty() && more.is_empty() => first = data,
                    Ok(data) => {
                        if more.is_empty() {
                            more.extend_from_slice(&first);
                        }
                        more.extend_from_slice(&data);
                    }
                    Err(frame) => {
                        // Trailers end a body.
                        trailers = frame.into_trailers().ok();
                        return Ok(true);
                    }
                },
            }
        }
        Ok(body.is_end_stream())
    };
    // A client that declares a body and then stalls is cut off, as one that stalls in its
    // headers is.
    let ended = tokio::time::timeout(timeout, reading)
        .await
        .map_err(|_| EdgeError::ClientTimeout)??;
    Ok(ReadBody {
        read: if more.is_empty() {
            first
        } else {
            more.freeze()
        },
        rest: (!ended).then_some(body),
        trailers,
    })
}

/// The name of the edge's own web ACL (`[edge.waf]`, quick mode's).
pub const EDGE_ACL: &str = "edge";

/// A listener's web ACL and how it reads bodies.
#[derive(Debug, Clone)]
pub struct WafConfig {
    /// Its name, in metrics, log lines and samples: `edge` for the edge's own
    /// (`[edge.waf]`, quick mode's), else its name in `[edge.web_acls]`.
    pub name: String,
    /// The web ACL.
    pub acl: Arc<WebAcl>,
    /// How many bytes of a body are inspected (AWS WAF's body inspection limit).
    pub body_limit: usize,
    /// Whether a body past the limit blocks the request; if not, its start is inspected
    /// (AWS WAF's `CONTINUE`).
    pub oversize_blocks: bool,
    /// What the log lines and samples leave out, besides credentials.
    pub redaction: Redaction,
    /// Headers added to a request the ACL lets through, for its target (AWS WAF's custom
    /// request handling): by the id of an `allow` or `count` rule that matched, and, with
    /// no rule's `allow`, by the default action (under [`DEFAULT_ALLOW`]). Each name is
    /// sent with [`INSERTED_PREFIX`] before it, and a client's own headers of that prefix
    /// are removed first, so that none can pass for the WAF's.
    pub insert_headers: Arc<[(String, InsertedHeaders)]>,
    /// Which requests its log keeps (AWS WAF's logging filter).
    pub logging: LogFilters,
    /// The key its challenge rules' puzzles and tokens are signed with.
    pub token_key: Arc<securecart_waf::challenge::TokenKey>,
    /// Every region's edge: one fetches through another as its origin shield, on behalf
    /// of clients its own web ACL saw, and runs no JavaScript, so challenge rules let it
    /// through (as the shield exempts it).
    pub peers: Arc<[IpAddr]>,
    /// Domains whose hosts share challenge tokens (AWS WAF's token domains), lowercase:
    /// a token earned on `www.shop.example` is good on `api.shop.example` with
    /// `shop.example` listed. Without them, a token is good on its own host only.
    pub token_domains: Arc<[String]>,
}

/// Which requests a web ACL's log keeps (AWS WAF's logging filter): the first filter whose
/// conditions a request meets says whether its line is kept; one that meets none is kept
/// as `keep_by_default` says. The default keeps the requests a rule blocked, counted or
/// challenged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilters {
    /// The filters, in order.
    pub filters: Vec<LogFilter>,
    /// Whether a request no filter speaks for is logged.
    pub keep_by_default: bool,
}

/// One logging filter: whether the requests it speaks for are logged, and what they meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    /// Whether their lines are kept (else dropped).
    pub keep: bool,
    /// Whether a request meets the filter by meeting every condition (else any).
    pub meets_all: bool,
    /// Its conditions (at least one).
    pub conditions: Vec<LogCondition>,
}

/// A logging filter's condition, as AWS WAF's action and label name conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogCondition {
    /// The request was let through (by a rule, or the default action).
    Allowed,
    /// The request was blocked.
    Blocked,
    /// A rule counted the request.
    Counted,
    /// A challenge rule answered the request with a challenge.
    Challenged,
    /// A matching rule gave the request this label (its full name), or one in this
    /// namespace (a name ending with `:`), as `label_match` reads them.
    Label(String),
}

impl Default for LogFilters {
    fn default() -> Self {
        Self {
            filters: vec![LogFilter {
                keep: true,
                meets_all: false,
                conditions: vec![
                    LogCondition::Blocked,
                    LogCondition::Counted,
                    LogCondition::Challenged,
                ],
            }],
            keep_by_default: false,
        }
    }
}

impl LogFilters {
    /// Whether a request is logged: whether it was `blocked` (or `challenged`, which
    /// stops it too), whether a rule `counted` it, and the labels its rules gave it.
    pub fn keeps(&self, blocked: bool, counted: bool, challenged: bool, labels: &[String]) -> bool {
        let meets = |condition: &LogCondition| match condition {
            LogCondition::Allowed => !blocked,
            LogCondition::Blocked => blocked && !challenged,
            LogCondition::Counted => counted,
            LogCondition::Challenged => challenged,
            LogCondition::Label(key) => labels
                .iter()
                .any(|given| securecart_waf::statement::label_matches(key, given)),
        };
        self.filters
            .iter()
            .find(|filter| {
                if filter.meets_all {
                    filter.conditions.iter().all(meets)
                } else {
                    filter.conditions.iter().any(meets)
                }
            })
            .map_or(self.keep_by_default, |filter| filter.keep)
    }
}

/// The headers one rule adds, full names and values.
pub type InsertedHeaders = Vec<(http::HeaderName, http::HeaderValue)>;

/// What the edge puts before the names of the headers its web ACL adds (AWS WAF's
/// `x-amzn-waf-`).
pub const INSERTED_PREFIX: &str = "x-securecart-waf-";

/// The key of the headers the default action adds, in [`WafConfig::insert_headers`].
pub const DEFAULT_ALLOW: &str = "default";

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
            name: EDGE_ACL.to_owned(),
            acl,
            body_limit: 8 * 1024,
            oversize_blocks: false,
            redaction: Redaction::default(),
            insert_headers: Arc::new([]),
            logging: LogFilters::default(),
            token_key: crate::challenge::process_key(),
            peers: Arc::new([]),
            token_domains: Arc::new([]),
        }
    }
}

/// What the WAF stage makes of a request it does not refuse.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "the request is what nearly every call returns: boxing it would allocate for each"
)]
pub enum Inspected {
    /// The request, to go on with.
    Request(Request<InspectedBody>),
    /// The edge's own answer, with its action for the access log: a challenge rule's
    /// (`challenge`), or the answer to a challenge's solution (`challenge-solution`).
    Answer(&'static str, Response<EdgeBody>),
}

/// Runs the web ACL on a request of `client` (over TLS if `secure`) with the trace context
/// `trace`: the request to go on with, the edge's own answer, or why it is refused.
pub async fn inspect(
    waf: &WafConfig,
    request: Request<ClientBody>,
    client: IpAddr,
    secure: bool,
    trace: &securecart_telemetry::TraceContext,
    body_timeout: Duration,
    metrics: &EdgeMetrics,
) -> Result<Inspected, EdgeError> {
    let challenge_immunity = waf.acl.challenge_immunity();
    if let Some(immunity) = challenge_immunity
        && request.uri().path() == securecart_waf::challenge::SOLUTION_PATH
    {
        let (domain, listed) = crate::challenge::token_domain(
            crate::pipeline::request_host(&request).unwrap_or_default(),
            &waf.token_domains,
        );
        // (The solution's answer takes the request: the name is kept apart.)
        let domain = domain.into_owned();
        let answer = crate::challenge::redeem(
            &waf.token_key,
            request,
            client,
            (&domain, listed),
            secure,
            immunity,
            body_timeout,
        )
        .await;
        return Ok(Inspected::Answer("challenge-solution", answer));
    }
    let (parts, body) = request.into_parts();
    let (body, read, unread) = if body.is_end_stream() {
        (Either::Left(body), Bytes::new(), false)
    } else {
        // A body the upstream stage buffers anyway (so that a retry can send it again) is
        // read whole; any other only as far as the inspection limit (and the frame that
        // passes it), the rest streaming on behind what was read.
        let whole = body
            .size_hint()
            .exact()
            .is_some_and(|length| length <= MAX_BUFFERED_BODY);
        // One byte past the limit tells a body of the limit's length (whose end may come
        // in a frame of its own) from a longer one.
        let enough = if whole {
            usize::MAX
        } else {
            waf.body_limit.saturating_add(1)
        };
        let body = read_start(body, enough, body_timeout).await?;
        let read = body.read.clone();
        let unread = body.rest.is_some();
        (Either::Right(body), read, unread)
    };
    let oversize = unread || read.len() > waf.body_limit;
    let inspected = &read[..read.len().min(waf.body_limit)];
    let mut inspection = Inspection::new(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        inspected,
        oversize,
        client,
    );
    // A token is for the host it was earned on, whatever the port, or for the token domain
    // above it. (Only a web ACL that challenges asks.)
    let mut domain = std::borrow::Cow::Borrowed("");
    if challenge_immunity.is_some() {
        let host = crate::pipeline::host_of(
            &parts.uri,
            parts.headers.get(http::header::HOST),
            parts.version,
        )
        .unwrap_or_default();
        domain = crate::challenge::token_domain(host, &waf.token_domains).0;
        inspection = inspection.with_challenge(&waf.token_key, crate::challenge::now(), &domain);
        if waf.peers.contains(&client.to_canonical()) {
            inspection = inspection.trusted();
        }
    }
    let verdict = waf.acl.evaluate(&inspection);
    // A body past the limit blocks where the listener says so, unless a rule allowed the
    // request (an operator's rule for a trusted client, say) or another blocked it.
    let oversize_blocks =
        oversize && waf.oversize_blocks && !verdict.blocked && verdict.terminating_rule.is_none();
    let blocked = verdict.blocked || oversize_blocks;
    let redaction = &waf.redaction;
    let method = if redaction.method {
        REDACTED
    } else {
        parts.method.as_str()
    };
    let path = if redaction.uri_path {
        REDACTED
    } else {
        parts.uri.path()
    };
    // Whether the logging filters keep the request's line: known before any match is
    // written out for it.
    let counted = verdict
        .matches
        .iter()
        .any(|(_, action, _)| *action == RuleAction::Count);
    let logs = waf
        .logging
        .keeps(blocked, counted, verdict.challenge, &verdict.labels);
    // Every match counted and sampled (AWS WAF's sampled requests are kept per rule); the
    // request logged once, with all of them, if the filters keep it.
    let mut logged: Vec<Logged> = Vec::new();
    let mut record = |rule: &str, action: &'static str, field: &str, data: &str| {
        metrics.waf_match(&waf.name, rule, action);
        // A rule that let the request through (an allow, or a challenge its token passed)
        // is in its log line (when the logging filters keep one), not among the samples
        // of what was blocked or counted.
        let sampled = action != "allow" && action != "challenge_passed";
        if !sampled && !logs {
            return;
        }
        let data = redact(field, data, &parts.headers, redaction);
        if !sampled {
            logged.push(Logged {
                rule: rule.to_owned(),
                action,
                field: field.to_owned(),
                data,
            });
            return;
        }
        let mut end = path.len().min(256);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        metrics.waf_samples.push(Sample {
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            web_acl: waf.name.clone(),
            client,
            trace_id: trace.trace_id_hex(),
            method: method.to_owned(),
            path: path[..end].to_owned(),
            rule: rule.to_owned(),
            action,
            blocked,
            field: field.to_owned(),
            data: data.clone(),
        });
        if logs {
            logged.push(Logged {
                rule: rule.to_owned(),
                action,
                field: field.to_owned(),
                data,
            });
        }
    };
    for (rule, action, evidence) in &verdict.matches {
        let action = match action {
            RuleAction::Allow => "allow",
            RuleAction::Block => "block",
            RuleAction::Count => "count",
            // The challenge that stopped the request, or one its token passed.
            RuleAction::Challenge(_)
                if verdict.challenge
                    && verdict.terminating_rule.as_deref() == Some(rule.as_str()) =>
            {
                "challenge"
            }
            RuleAction::Challenge(_) => "challenge_passed",
        };
        record(rule, action, &evidence.field, &evidence.data);
    }
    let terminating = if oversize_blocks {
        record("oversize", "block", "oversize", "body");
        Some("oversize".to_owned())
    } else if verdict.blocked && verdict.terminating_rule.is_none() {
        // The ACL's default action blocked: logged and listed as the rule `default`.
        record("default", "block", "", "");
        Some("default".to_owned())
    } else {
        verdict.terminating_rule.clone()
    };
    let action = if verdict.challenge {
        "challenge"
    } else if blocked {
        "block"
    } else {
        "allow"
    };
    if logs {
        log_request(
            waf,
            &logged,
            action,
            terminating.as_deref(),
            &verdict,
            client,
            method,
            path,
            trace,
        );
    }
    if oversize_blocks {
        return Err(EdgeError::Blocked("oversize".to_owned(), None));
    }
    if verdict.challenge {
        let answer = crate::challenge::answer(
            &waf.token_key,
            &parts.method,
            &parts.headers,
            client,
            &domain,
        );
        return Ok(Inspected::Answer("challenge", answer));
    }
    if verdict.blocked {
        return Err(EdgeError::Blocked(
            verdict
                .terminating_rule
                .unwrap_or_else(|| "default".to_owned()),
            verdict.response,
        ));
    }
    let mut parts = parts;
    if !waf.insert_headers.is_empty() {
        insert_headers(waf, &verdict, &mut parts.headers);
    }
    Ok(Inspected::Request(Request::from_parts(parts, body)))
}

/// Adds the headers of the `allow` and `count` rules that matched (and of the default
/// action, if no rule allowed the request), after removing the client's own headers of
/// [`INSERTED_PREFIX`].
fn insert_headers(waf: &WafConfig, verdict: &securecart_waf::Verdict, headers: &mut HeaderMap) {
    // (A client's own headers of the prefix went before the WAF stage: the pipeline
    // removes them on every listener of an edge where a web ACL adds some.)
    let matched = verdict
        .matches
        .iter()
        .filter(|(_, action, _)| *action != RuleAction::Block)
        .map(|(rule, _, _)| rule.as_str());
    let default = verdict.terminating_rule.is_none().then_some(DEFAULT_ALLOW);
    for rule in matched.chain(default) {
        if let Some((_, inserted)) = waf.insert_headers.iter().find(|(id, _)| id == rule) {
            for (name, value) in inserted {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Removes a client's headers of [`INSERTED_PREFIX`], which only a web ACL may send (on
/// every listener of an edge where one adds some: another listener may forward to the
/// same targets).
pub fn remove_inserted(headers: &mut HeaderMap) {
    let spoofed: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(INSERTED_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// One match of a logged request.
#[derive(serde::Serialize)]
struct Logged {
    rule: String,
    action: &'static str,
    field: String,
    /// Shortened and redacted.
    data: String,
}

/// The log line of a request (AWS WAF's log record: one per request, with the terminating
/// rule and every rule that matched, none for a request let through by the default action).
#[allow(clippy::too_many_arguments)]
fn log_request(
    waf: &WafConfig,
    logged: &[Logged],
    action: &str,
    terminating: Option<&str>,
    verdict: &securecart_waf::Verdict,
    client: IpAddr,
    method: &str,
    path: &str,
    trace: &securecart_telemetry::TraceContext,
) {
    // The match that decided, or the first one counted, read at a glance.
    let none = Logged {
        rule: "-".to_owned(),
        action: "allow",
        field: String::new(),
        data: String::new(),
    };
    let shown = terminating
        .and_then(|rule| logged.iter().find(|each| each.rule == rule))
        .or(logged.first())
        .unwrap_or(&none);
    // tracing's fields are flat: the list of matches is a JSON array in one field.
    let matches = serde_json::to_string(logged).unwrap_or_default();
    tracing::info!(
        target: "waf",
        web_acl = %waf.name,
        action,
        terminating_rule = terminating.unwrap_or("-"),
        rule = %shown.rule,
        field = %shown.field,
        data = %shown.data.escape_debug(),
        matches = %matches,
        labels = %verdict.labels.join(","),
        score = verdict.score,
        client = %client,
        method,
        path,
        trace_id = %trace.trace_id_hex(),
        "web ACL match"
    );
}

#[cfg(test)]
mod tests {
    use super::{LogCondition, LogFilter, LogFilters, Redaction, redact};

    /// AWS WAF's logging filters: the first filter a request meets decides, else the
    /// default; by default, what was blocked or counted.
    #[test]
    fn logging_filters_keep_what_the_first_filter_met_says() {
        let labels = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
        let default = LogFilters::default();
        // (blocked, counted, labels) to kept, by default and by the filters below.
        let filters = LogFilters {
            filters: vec![
                // A noisy rule's counts are dropped...
                LogFilter {
                    keep: false,
                    meets_all: true,
                    conditions: vec![
                        LogCondition::Counted,
                        LogCondition::Label("shop:noisy".to_owned()),
                    ],
                },
                // ...and the rest of what was counted or blocked, and the partners', kept.
                LogFilter {
                    keep: true,
                    meets_all: false,
                    conditions: vec![
                        LogCondition::Blocked,
                        LogCondition::Counted,
                        LogCondition::Label("shop:partner".to_owned()),
                        LogCondition::Label("shop:partner:".to_owned()),
                    ],
                },
            ],
            keep_by_default: false,
        };
        let everything = LogFilters {
            filters: Vec::new(),
            keep_by_default: true,
        };
        for (blocked, counted, given, by_default, filtered) in [
            (false, false, labels(&[]), false, false),
            (true, false, labels(&[]), true, true),
            (false, true, labels(&[]), true, true),
            (false, true, labels(&["shop:noisy"]), true, false),
            (true, true, labels(&["shop:noisy"]), true, false),
            (false, false, labels(&["shop:noisy"]), false, false),
            (false, false, labels(&["shop:partner"]), false, true),
            // A namespace, as `label_match` reads it.
            (false, false, labels(&["shop:partner:eu"]), false, true),
        ] {
            let given: Vec<String> = given;
            assert_eq!(
                default.keeps(blocked, counted, false, &given),
                by_default,
                "{blocked} {counted} {given:?}"
            );
            assert_eq!(
                filters.keeps(blocked, counted, false, &given),
                filtered,
                "{blocked} {counted} {given:?}"
            );
            assert!(everything.keeps(blocked, counted, false, &given));
        }
        // A challenge answered is kept by default, and is no block to a filter (AWS WAF's
        // CHALLENGE action, apart from BLOCK).
        let none: Vec<String> = Vec::new();
        assert!(default.keeps(true, false, true, &none));
        assert!(!filters.keeps(true, false, true, &none));
        let challenges = LogFilters {
            filters: vec![LogFilter {
                keep: true,
                meets_all: false,
                conditions: vec![LogCondition::Challenged],
            }],
            keep_by_default: false,
        };
        assert!(challenges.keeps(true, false, true, &none));
        assert!(!challenges.keeps(true, false, false, &none));
    }

    #[test]
    fn credentials_and_card_numbers_are_redacted() {
        let none = http::HeaderMap::new();
        for (field, data, shown) in [
            ("cookies", "session=abc' OR 1=1", "REDACTED"),
            ("cookie:session", "abc' OR 1=1", "REDACTED"),
            ("header:authorization", "Bearer <script>", "REDACTED"),
            ("body_fields", "4111111111111111", "************1111"),
            (
                "body_fields",
                "card 4111-1111-1111-1111 ok",
                "card ****-****-****-1111 ok",
            ),
            ("body_fields", "4111 1111 1111 1111", "**** **** **** 1111"),
            (
                "body_fields",
                "%u04304111111111111111",
                "%u****************1111",
            ),
            ("query_arguments", "1' OR '1'='1", "1' OR '1'='1"),
            (
                "query_arguments",
                "order 123456789012 é",
                "order 123456789012 é",
            ),
            ("uri_path", "/a-1-2-3", "/a-1-2-3"),
        ] {
            assert_eq!(
                redact(field, data, &none, &Redaction::default()),
                shown,
                "{field}: {data}"
            );
        }
        // A match in all the headers at once, of a request with a cookie: the cookie's
        // value (as read, or decoded) shows nothing; another header's value as sent shows.
        let mut headers = http::HeaderMap::new();
        headers.insert("cookie", "session=${jndi:ldap://x}".parse().expect("value"));
        headers.insert(
            "user-agent",
            "curl ${jndi:ldap://y}".parse().expect("value"),
        );
        for (data, shown) in [
            ("session=${jndi:ldap://x}", "REDACTED"),
            ("session=${jndi:ldap:%2f%2fx}", "REDACTED"),
            ("curl ${jndi:ldap://y}", "curl ${jndi:ldap://y}"),
        ] {
            assert_eq!(
                redact("headers", data, &headers, &Redaction::default()),
                shown,
                "{data}"
            );
        }
        assert_eq!(
            redact("headers", "a <script>", &none, &Redaction::default()),
            "a <script>"
        );
    }

    #[test]
    fn the_operators_redacted_fields_show_nothing() {
        let redaction = Redaction {
            headers: vec!["x-session".to_owned()],
            query_string: true,
            uri_path: true,
            method: false,
        };
        let mut headers = http::HeaderMap::new();
        headers.insert("x-session", "s-1' OR 1=1".parse().expect("value"));
        headers.insert("user-agent", "sqlmap/1.7".parse().expect("value"));
        headers.insert("cookie", "a=b".parse().expect("value"));
        for (field, data, shown) in [
            ("header:x-session", "s-1' OR 1=1", "REDACTED"),
            ("header:user-agent", "sqlmap/1.7", "sqlmap/1.7"),
            ("query_string", "q=1' OR '1'='1", "REDACTED"),
            ("query_argument:q", "1' OR '1'='1", "REDACTED"),
            ("query_arguments", "1' OR '1'='1", "REDACTED"),
            ("uri_path", "/../etc/passwd", "REDACTED"),
            ("method", "TRACE", "TRACE"),
            // A rate-based rule's keys: the path hidden, the method shown.
            ("rate", "127.0.0.1,uri_path:/api/login", "REDACTED"),
            ("rate", "127.0.0.1,method:POST", "127.0.0.1,method:POST"),
            // A header the operator hides, as a rate key: not shown either.
            (
                "rate",
                "127.0.0.1,x-session:s-1 past 100 in 300 s",
                "REDACTED",
            ),
            (
                "rate",
                "user-agent:sqlmap/1.7 past 100 in 300 s",
                "user-agent:sqlmap/1.7 past 100 in 300 s",
            ),
            ("body_fields", "<script>", "<script>"),
            // All the headers of a request with a redacted one: only another header's
            // value as sent shows.
            ("headers", "s-1' OR 1=1", "REDACTED"),
            ("headers", "sqlmap/1.7", "sqlmap/1.7"),
            ("headers_but_credentials", "s-1' OR 1=1", "REDACTED"),
            ("headers_but_credentials", "sqlmap/1.7", "sqlmap/1.7"),
            ("headers_but_credentials", "sqlmap/1.7 decoded", "REDACTED"),
        ] {
            assert_eq!(
                redact(field, data, &headers, &redaction),
                shown,
                "{field}: {data}"
            );
        }
        // A cookie is not among all the headers but the credentials: data matched there,
        // even decoded, shows when the request has no header the operator hides.
        headers.remove("x-session");
        assert_eq!(
            redact(
                "headers_but_credentials",
                "sqlmap decoded",
                &headers,
                &redaction
            ),
            "sqlmap decoded"
        );
        assert_eq!(
            redact("headers", "sqlmap decoded", &headers, &redaction),
            "REDACTED"
        );
    }
}
