//! The request pipeline: every request goes through the same ordered stages, each in its
//! own module and each testable alone.
//!
//! 1. **context** ([`crate::context`]): the request's trace (continued or new), client
//!    address and start time.
//! 2. **guard** ([`crate::guard`]): desync mitigation: a request that does not comply
//!    with RFC 9112 is classified, and routed, routed with its connections closed after
//!    it, or refused with 400 and the connection closed, by the listener's mode; then the
//!    **shield** ([`crate::shield`]): a client past its request rate gets 429, and past
//!    the edge's requests in flight a request that is not on a priority path gets 503.
//! 3. **waf** ([`crate::waf`]): the listener's web ACL, on the head and the start of the
//!    body; a block is answered 403.
//! 4. **rules** ([`crate::rules`]): the listener's first matching rule, or its default
//!    action.
//! 5. **action** ([`crate::actions`]): a fixed response or a redirect answers here; a
//!    forward picks its target group (by weight, or by the group stickiness cookie).
//! 6. **cache** ([`crate::cache`]): where a cache behaviour matches the path, an answer
//!    from the edge's cache, or a fetch whose response is stored on its way back.
//! 7. **forward** ([`crate::forward`]): hop-by-hop headers out, `X-Forwarded-*`,
//!    `traceparent` and `X-Amzn-Trace-Id` in.
//! 8. **upstream** ([`crate::upstream`]): a target chosen by the balancer, pooled
//!    connections, retry on another target when nothing reached the first; a GET's or
//!    HEAD's error that a custom error response covers is then answered with its page
//!    (fetched through stages 4 to 8 as the edge's own request).
//! 9. **respond**: hop-by-hop headers out of the response, the stickiness cookie, metrics,
//!    access log.
//!
//! A stage that answers by itself (a 404, a 502) returns an [`EdgeError`], turned into a
//! JSON answer here, so later stages see one shape of failure.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use http_body_util::BodyExt;
use rand::Rng;
use securecart_telemetry::TraceContext;

use crate::access_log::{AccessRecord, LoggedBody};
use crate::actions::{Action, Forward, GROUP_STICKINESS_COOKIE, RequestParts, redirect_location};
use crate::balancer::TargetGroup;
use crate::cache::{self, CacheStage, ErrorPage};
use crate::config::Limits;
use crate::context::{Peer, RequestContext};
use crate::error::EdgeError;
use crate::forward;
use crate::guard;
use crate::metrics::EdgeMetrics;
use crate::rules::{RequestHead, RuleSet};
use crate::server::ClientBody;
use crate::shield::Refusal;
use crate::upstream::{self, EdgeBody};

/// One listener's pipeline: its rules, and what every listener of the edge shares.
#[derive(Debug)]
pub struct Pipeline {
    /// The listener's name, in logs.
    pub listener: String,
    /// The listener's port, for `X-Forwarded-Port` and redirects.
    pub listener_port: u16,
    /// The listener's port as a header value.
    pub port_header: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto` and redirects.
    pub protocol: &'static str,
    /// The listener's compiled rules.
    pub rules: RuleSet<Action>,
    /// The target groups, indexed by the actions.
    pub groups: Arc<[TargetGroup]>,
    /// The edge's metrics.
    pub metrics: EdgeMetrics,
    /// Timeouts.
    pub limits: Limits,
    /// Keeps the edge's own error lines to one a second.
    pub error_log: securecart_telemetry::logging::LogThrottle,
    /// The cache stage, when the edge caches.
    pub cache: Option<CacheStage>,
    /// The listener's web ACL, if it has one.
    pub waf: Option<crate::waf::WafConfig>,
    /// The edge's per-client limits, if it has them.
    pub shield: Option<Arc<crate::shield::Shield>>,
    /// Headers set on every answer (see [`crate::config::ListenerConfig`]).
    pub response_headers: Arc<[(http::HeaderName, HeaderValue)]>,
    /// Headers removed from every answer (see [`crate::config::ListenerConfig`]).
    pub remove_response_headers: Arc<[http::HeaderName]>,
    /// What becomes of `X-Forwarded-For`.
    pub forwarded_for: forward::ForwardedFor,
    /// Whether headers whose names are not letters, digits and `-` are removed before a
    /// request is forwarded (see [`crate::config::ListenerConfig`]).
    pub drop_invalid_header_fields: bool,
    /// What becomes of requests that do not comply with RFC 9112 (see [`crate::guard`]).
    pub desync_mode: guard::DesyncMode,
    /// The listener's counts of requests that do not comply, by reason.
    pub non_compliant: crate::metrics::DesyncCounters,
    /// Whether some listener of the edge has mutual TLS: then a client's own
    /// [`crate::tls::CLIENT_CERTIFICATE_HEADER`] is removed here, and a client
    /// certificate's put in its place.
    pub client_certificates: bool,
    /// Whether this listener tells its targets the client's TLS version and cipher suite.
    pub tls_headers: bool,
    /// Whether some listener of the edge does: then a client's own headers of those names
    /// go as the request comes in.
    pub remove_tls_headers: bool,
    /// Whether a client's headers of the web ACLs' prefix are removed as the request comes
    /// in: some listener's web ACL adds such headers.
    pub remove_inserted: bool,
}

/// What the request stages decided, for the respond stage.
struct Outcome<'p> {
    rule: &'p str,
    /// The target group forwarded to.
    group: Option<&'p str>,
    /// `forward`, `redirect` or `fixed-response`, as ALB names them.
    action: &'static str,
    /// A redirect's location.
    redirect_url: Option<String>,
    /// The URL and the `Host` a rule's rewrites made, if they did.
    transformed: (Option<String>, Option<String>),
    response: Result<Response<EdgeBody>, EdgeError>,
    /// The group to pin the client to with a cookie, and for how long.
    stick_to: Option<(&'p str, std::time::Duration)>,
    /// The target to pin the client to: (cookie name, target, how long).
    stick_to_target: Option<(&'static str, &'p str, std::time::Duration)>,
    /// Whether its answer keeps its own `Cache-Control` and `Content-Security-Policy`
    /// over the listener's response headers (a stage's own answer).
    keeps_policy: bool,
}

/// A request on its way through the stages: if it is dropped before its answer was ready
/// (its client closed the connection, or reset its HTTP/2 stream), it is counted and
/// logged with status 460 (ALB's: the client closed the connection first), with the
/// route `none`, since the stages' choices went with them.
struct Unanswered<'p> {
    pipeline: &'p Pipeline,
    summary: Option<RequestSummary>,
    client: std::net::SocketAddr,
    trace_id: TraceContext,
    tls: Option<(&'static str, &'static str)>,
    started: std::time::Instant,
    /// Desync mitigation's classification of the request (see `guard.rs`).
    classification: Option<guard::Reason>,
    armed: bool,
}

/// ALB's status for a request its client abandoned.
const CLIENT_CLOSED: u16 = 460;

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pipeline = self.pipeline;
        pipeline
            .metrics
            .http
            .record("none", CLIENT_CLOSED, self.started.elapsed());
        let Some(summary) = self.summary.take() else {
            return;
        };
        let kind = match (pipeline.protocol, summary.version) {
            ("https", Version::HTTP_2) => "h2",
            ("https", _) => "https",
            (_, Version::HTTP_2) => "h2c",
            _ => "http",
        };
        crate::access_log::write_now(&AccessRecord {
            kind,
            listener: pipeline.listener.clone(),
            client: self.client,
            target: None,
            request: summary.request,
            user_agent: summary.user_agent,
            tls: self.tls,
            domain_name: summary.host,
            matched_rule: String::new(),
            target_group: String::new(),
            action: "",
            redirect_url: String::new(),
            transformed_uri: String::new(),
            transformed_host: String::new(),
            error_reason: "client_closed",
            classification: self.classification,
            elb_status_code: CLIENT_CLOSED,
            target_status_code: None,
            received_bytes: None,
            trace_id: self.trace_id.trace_id_hex(),
            attempts: 0,
            tried: crate::context::Tried::default(),
            arrived: self.started,
            sent_to_target: None,
            target_answered: None,
        });
    }
}

/// Whole seconds for `Retry-After`, at least one.
fn retry_after(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The parts of a request its access log line needs, copied before the request moves on.
struct RequestSummary {
    request: String,
    user_agent: String,
    host: String,
    version: Version,
}

impl<'p> Outcome<'p> {
    /// The edge's own answer to a request, by a stage before the rules.
    fn answered(rule: &'p str, action: &'static str, response: Response<EdgeBody>) -> Self {
        Self {
            keeps_policy: true,
            ..Self::ended(rule, action, Ok(response))
        }
    }

    /// The edge refuses the request.
    fn refused(rule: &'p str, action: &'static str, error: EdgeError) -> Self {
        Self::ended(rule, action, Err(error))
    }

    /// A request that went to no target group.
    fn ended(
        rule: &'p str,
        action: &'static str,
        response: Result<Response<EdgeBody>, EdgeError>,
    ) -> Self {
        Self {
            rule,
            group: None,
            action,
            redirect_url: None,
            transformed: (None, None),
            response,
            stick_to: None,
            stick_to_target: None,
            keeps_policy: false,
        }
    }
}

impl Pipeline {
    /// Runs one request through every stage. Never fails: every failure is an answer.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of each argument it moves (rust-lang/rust#62958)"
    )]
    pub fn handle(
        self: Arc<Self>,
        request: Request<ClientBody>,
        peer: Arc<Peer>,
    ) -> impl Future<Output = Response<EdgeBody>> {
        async move {
            let mut request = request;
            // Stage 1: context.
            let (parent, amzn_trace_sent) = forward::incoming_trace(request.headers());
            let trace = parent.map_or_else(TraceContext::new_root, |parent| parent.child());
            let mut context = RequestContext::for_peer(&peer, trace);
            context.amzn_trace_sent = amzn_trace_sent;
            // The access log's fields are copied only when the access log is on.
            let logged = tracing::enabled!(target: "access", tracing::Level::INFO)
                .then(|| self.request_summary(&request));
            if logged.is_some() {
                context.tried = crate::context::Tried::recording();
            }
            // Stage 2: guard (before the request can be abandoned, so that a 460's log
            // line has its classification too).
            let refused = self.guard(&mut context, &mut request);
            // Logs and counts the request if its client goes away before the answer is
            // ready, which drops this future.
            let mut unanswered = Unanswered {
                pipeline: &self,
                summary: logged,
                client: context.client,
                trace_id: context.trace,
                tls: peer.tls,
                started: context.started,
                classification: context.desync,
                armed: true,
            };

            // Boxed: a connection's task is as large as its largest state, kept for the
            // connection's life, so the stages' state is allocated only while a request runs,
            // and an idle connection holds only this function's small future.
            let outcome = match refused {
                Some(error) => Outcome::refused("none", "", error),
                None => {
                    crate::boxed::box_future_in_place(|| self.route(&mut context, request)).await
                }
            };
            unanswered.armed = false;
            let logged = unanswered.summary.take();

            // Stage 9: respond.
            let mut response = match outcome.response {
                Ok(response) => response,
                Err(error) => {
                    self.record_error(&mut context, &error, outcome.rule, outcome.group);
                    error_response(&error)
                }
            };
            let switched_protocol = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            let switched = switched_protocol
                .then(|| response.headers().get(header::UPGRADE).cloned())
                .flatten();
            forward::remove_hop_by_hop(response.headers_mut());
            // A stage's own answer (the web ACL's challenge: a puzzle bound to one client,
            // its page's policy) keeps its caching and policy whatever the listener's
            // headers say.
            let edited = |name: &header::HeaderName| {
                !(outcome.keeps_policy
                    && (name == header::CACHE_CONTROL || name == header::CONTENT_SECURITY_POLICY))
            };
            for name in self
                .remove_response_headers
                .iter()
                .filter(|name| edited(name))
            {
                response.headers_mut().remove(name);
            }
            for (name, value) in self
                .response_headers
                .iter()
                .filter(|(name, _)| edited(name))
            {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            if let Some(protocol) = switched {
                forward::keep_upgrade(response.headers_mut(), protocol);
            }
            if (context.close_client && !switched_protocol)
                || matches!(context.error_code, Some(code) if code == EdgeError::BadRequest("").code() || code == EdgeError::ClientTimeout.code())
            {
                // After a request the edge could not frame, or an ambiguous one that
                // `defensive` desync mitigation let through, the connection is not trusted
                // for another one.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            for (name, value, duration) in [
                outcome
                    .stick_to
                    .map(|(group, duration)| (GROUP_STICKINESS_COOKIE, group, duration)),
                outcome.stick_to_target,
            ]
            .into_iter()
            .flatten()
            {
                // `Secure` on an https listener, so that the pin never goes out in clear.
                let secure = if self.protocol == "https" {
                    "; Secure"
                } else {
                    ""
                };
                if let Ok(cookie) = HeaderValue::from_str(&format!(
                    "{name}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{secure}",
                    duration.as_secs()
                )) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            let elapsed = context.started.elapsed();
            let status = response.status().as_u16();
            self.metrics.http.record(outcome.rule, status, elapsed);
            if let Some(summary) = logged {
                let kind = match (switched_protocol, self.protocol, summary.version) {
                    (true, _, _) => "ws",
                    (false, "https", Version::HTTP_2) => "h2",
                    (false, "https", _) => "https",
                    (false, _, Version::HTTP_2) => "h2c",
                    _ => "http",
                };
                let record = AccessRecord {
                    kind,
                    listener: self.listener.clone(),
                    client: context.client,
                    target: context.target,
                    request: summary.request,
                    user_agent: summary.user_agent,
                    tls: peer.tls,
                    domain_name: summary.host,
                    matched_rule: outcome.rule.to_owned(),
                    target_group: outcome.group.unwrap_or("").to_owned(),
                    action: outcome.action,
                    redirect_url: outcome.redirect_url.unwrap_or_default(),
                    transformed_uri: outcome.transformed.0.unwrap_or_default(),
                    transformed_host: outcome.transformed.1.unwrap_or_default(),
                    error_reason: context.error_code.unwrap_or(""),
                    classification: context.desync,
                    elb_status_code: status,
                    target_status_code: context.target_status,
                    received_bytes: context.received_bytes.clone(),
                    trace_id: context.trace.trace_id_hex(),
                    attempts: context.attempts,
                    tried: std::mem::take(&mut context.tried),
                    arrived: context.started,
                    sent_to_target: context.sent_to_target,
                    target_answered: context.target_answered,
                };
                response = response.map(|body| LoggedBody::new(body, record).boxed_unsync());
            }
            response
        }
    }

    /// Counts and logs an error the edge answers for (with its own answer, or a custom
    /// error response's page).
    fn record_error(
        &self,
        context: &mut RequestContext,
        error: &EdgeError,
        rule: &str,
        group: Option<&str>,
    ) {
        context.error_code = Some(error.code());
        self.metrics.edge_error(error.code(), rule, group);
        if error.status().is_server_error()
            && let Some(suppressed) = self.error_log.allow()
        {
            tracing::warn!(%error, source = ?error.source_kind(), rule, suppressed, trace_id = %context.trace.trace_id_hex(), "edge answered with an error");
        }
    }

    fn request_summary(&self, request: &Request<ClientBody>) -> RequestSummary {
        let text = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let host = request_host(request).unwrap_or("").to_owned();
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |path_and_query| path_and_query.as_str());
        RequestSummary {
            request: format!(
                "{} {}://{host}:{}{target} {:?}",
                request.method(),
                self.protocol,
                self.listener_port,
                request.version()
            ),
            user_agent: text(header::USER_AGENT),
            host,
            version: request.version(),
        }
    }

    /// Stage 2: desync mitigation (requests the targets could read differently): the
    /// request's classification in `context`; for a request it refuses, the error that
    /// answers it (`None`: the request goes on). (The error, not the outcome: an
    /// `Option<Outcome>`, 336 bytes, cost every request about 200 instructions more, as
    /// `bench/instructions.sh` counts them.)
    fn guard(
        &self,
        context: &mut RequestContext,
        request: &mut Request<ClientBody>,
    ) -> Option<EdgeError> {
        let bare_line_feeds = request
            .extensions()
            .get::<crate::server::BareLineFeeds>()
            .is_some();
        let (method, version) = (request.method().clone(), request.version());
        match guard::check(
            self.desync_mode,
            &method,
            version,
            request.headers_mut(),
            bare_line_feeds,
        ) {
            Ok(verdict) => {
                if let Some(reason) = verdict.reason {
                    self.non_compliant.count(reason);
                }
                context.desync = verdict.reason;
                context.close_client = verdict.close_client;
                context.close_target = verdict.close_target;
            }
            Err(refused) => {
                if let Some(reason) = refused.reason {
                    self.non_compliant.count(reason);
                }
                context.desync = refused.reason;
                return Some(refused.error);
            }
        }
        None
    }

    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps a second copy of each argument it moves (rust-lang/rust#62958)"
    )]
    fn route<'p>(
        &'p self,
        context: &mut RequestContext,
        request: Request<ClientBody>,
    ) -> impl Future<Output = Outcome<'p>> {
        // An async block, as for `handle`, `upstream::send` and the pool's `send` and
        // `send_http1`: each kept a second copy of the request (240 to 264 bytes) in its
        // future, and they nest. `-Zprint-type-sizes` (2026-11-27): the route's future
        // went from 4,896 to 4,328 bytes, `handle`'s from 880 to 608.
        async move {
            // Headers only the edge may send its targets: a client's own go before any
            // stage but the guard reads them (the WAF and the rules, too, see none; the
            // guard reads only framing headers and names like them).
            let mut request = request;
            if self.remove_inserted {
                crate::waf::remove_inserted(request.headers_mut());
            }
            if self.client_certificates {
                request
                    .headers_mut()
                    .remove(crate::tls::CLIENT_CERTIFICATE_HEADER);
            }
            if self.remove_tls_headers {
                request.headers_mut().remove(forward::TLS_VERSION_HEADER);
                request.headers_mut().remove(forward::TLS_CIPHER_HEADER);
            }
            // The path as servers resolve it, once for the shield and the rules (kept only
            // when it differs from the path as sent, which the request keeps).
            let resolved = match crate::rules::normalized_path(request.uri().path()) {
                std::borrow::Cow::Owned(path) => Some(path),
                std::borrow::Cow::Borrowed(_) => None,
            };

            // Stage 2: the shield (the client's request rate, the edge's requests in flight).
            // The admission is held until the answer's head is ready.
            let _admitted = match &self.shield {
                None => None,
                Some(shield) => {
                    let path = resolved.as_deref().unwrap_or(request.uri().path());
                    match shield.admit(context.client.ip(), path, request.headers()) {
                        Ok(admitted) => Some(admitted),
                        Err(Refusal::RateLimited(wait)) => {
                            let error = EdgeError::RateLimited(retry_after(wait));
                            return Outcome::refused("shield", "", error);
                        }
                        Err(Refusal::Mitigated(wait)) => {
                            let error = EdgeError::Mitigated(retry_after(wait));
                            return Outcome::refused("shield", "", error);
                        }
                        Err(Refusal::Shed) => {
                            return Outcome::refused("shield", "", EdgeError::Shed);
                        }
                    }
                }
            };

            // Stage 3: the web ACL.
            let request = match &self.waf {
                None => request.map(http_body_util::Either::Left),
                Some(waf) => match crate::waf::inspect(
                    waf,
                    request,
                    context.client.ip(),
                    context.tls.is_some(),
                    &context.trace,
                    self.limits.header_read_timeout,
                    &self.metrics,
                )
                .await
                {
                    Ok(crate::waf::Inspected::Request(request)) => request,
                    Ok(crate::waf::Inspected::Answer(action, response)) => {
                        return Outcome::answered("waf", action, response);
                    }
                    Err(error) => return Outcome::refused("waf", "", error),
                },
            };

            // Stage 4: rules.
            let Some(host) = request_host(&request) else {
                return Outcome::refused(
                    "none",
                    "",
                    EdgeError::BadRequest("an HTTP/1.1 request needs a Host header"),
                );
            };
            let path = resolved.as_deref().unwrap_or(request.uri().path());
            let matched = self.rules.find(&RequestHead {
                method: request.method(),
                host,
                path,
                query: request.uri().query(),
                headers: request.headers(),
                client: context.client.ip(),
            });
            let rule = matched.rule;

            // Stage 5: action.
            let forward = match matched.action {
                Action::Forward(forward) => forward,
                Action::FixedResponse {
                    status,
                    content_type,
                    body,
                } => {
                    let mut response = Response::new(upstream::full(body.clone()));
                    *response.status_mut() = *status;
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, content_type.clone());
                    return Outcome::ended(rule, "fixed-response", Ok(response));
                }
                Action::Redirect(redirect, status) => {
                    // An HTTP/1.0 request may come without a Host: a redirect that keeps the
                    // host has none to send the client to.
                    if host.is_empty() && redirect.host.contains("#{host}") {
                        return Outcome::refused(
                            rule,
                            "redirect",
                            EdgeError::BadRequest("a redirect to this host needs a Host header"),
                        );
                    }
                    let location = redirect_location(
                        redirect,
                        &RequestParts {
                            protocol: self.protocol,
                            host,
                            port: self.listener_port,
                            path: request.uri().path(),
                            query: request.uri().query(),
                        },
                    );
                    let mut response = Response::new(upstream::empty());
                    *response.status_mut() = *status;
                    match HeaderValue::from_str(&location) {
                        Ok(location) => {
                            response.headers_mut().insert(header::LOCATION, location);
                        }
                        Err(_) => {
                            return Outcome::refused(
                                rule,
                                "redirect",
                                EdgeError::BadRequest("the redirect target is not a valid URL"),
                            );
                        }
                    }
                    return Outcome {
                        redirect_url: Some(location),
                        ..Outcome::ended(rule, "redirect", Ok(response))
                    };
                }
            };
            let sticky = forward.sticky_group(request.headers());
            let group_index = choose_group(forward, sticky);
            let group = &self.groups[group_index];
            let sticky_target = group.sticky_target(request.headers());
            // Each answer renews the cookie (ALB's AWSALBTG), so that the duration runs from
            // the client's last request.
            let stick_to = forward
                .stickiness
                .map(|duration| (group.name.as_str(), duration));

            // Stage 6: cache, for the paths a behaviour covers (never a protocol switch).
            let upgrade = forward::upgrade_requested(request.version(), request.headers());
            // A client with a certificate is its targets' to judge: never answered from a
            // copy another client's request stored, nor stored for another.
            let cached = self
                .cache
                .as_ref()
                .filter(|_| upgrade.is_none() && context.client_certificate.is_none())
                .and_then(|stage| {
                    let behavior = stage.behavior(request.uri().path())?;
                    Some((stage, behavior, host.to_owned()))
                });

            // Where a custom error response may replace a GET's or HEAD's answer, what its
            // page is asked with: the client's host and codings; and the path as the rules
            // read it, which the responses' patterns read too.
            let error_pages = self
                .cache
                .as_ref()
                .filter(|stage| {
                    stage.has_error_pages()
                        && matches!(*request.method(), http::Method::GET | http::Method::HEAD)
                })
                .map(|stage| PageRequest {
                    stage,
                    head: request.method() == http::Method::HEAD,
                    uri: request.uri().clone(),
                    resolved: resolved.clone(),
                    host: request.headers().get(header::HOST).cloned(),
                    version: request.version(),
                    codings: request.headers().get(header::ACCEPT_ENCODING).cloned(),
                });

            // Stage 7: forward. A protocol switch (WebSocket) keeps the client's side of the
            // upgrade to join it to the target's.
            let mut request = request;
            let client_upgrade = upgrade.and_then(|_| {
                request
                    .extensions_mut()
                    .remove::<crate::server::OnUpgrade>()
            });
            let (mut parts, body) = request.into_parts();
            // (Refused with ALB's 463 if a chain of proxies longer than any a shop's
            // traffic crosses wrote its X-Forwarded-For.)
            if let Err(error) = forward::prepare_request(
                &mut parts,
                context,
                self.protocol,
                &self.port_header,
                self.forwarded_for,
            ) {
                return Outcome::refused(rule, "forward", error);
            }
            if self.drop_invalid_header_fields {
                forward::drop_invalid_header_fields(&mut parts.headers);
            }
            // The session's TLS version and cipher suite, where the listener tells them.
            if let Some((version, suite)) = context.tls.filter(|_| self.tls_headers) {
                parts.headers.insert(
                    http::HeaderName::from_static(forward::TLS_VERSION_HEADER),
                    HeaderValue::from_static(version),
                );
                parts.headers.insert(
                    http::HeaderName::from_static(forward::TLS_CIPHER_HEADER),
                    HeaderValue::from_static(suite),
                );
            }
            // The client's certificate, for its targets (a client's own header of that
            // name went at the first stage).
            if let Some(certificate) = &context.client_certificate {
                parts.headers.insert(
                    http::HeaderName::from_static(crate::tls::CLIENT_CERTIFICATE_HEADER),
                    certificate.clone(),
                );
            }
            let mut transformed = (None, None);
            if forward.url_rewrite.is_some() || forward.host_rewrite.is_some() {
                let viewer = parts.uri.path_and_query().cloned();
                match forward::rewrite(
                    &mut parts,
                    resolved.as_deref(),
                    forward.url_rewrite.as_ref(),
                    forward.host_rewrite.as_ref(),
                ) {
                    Ok(rewritten) => transformed = rewritten,
                    Err(error) => return Outcome::refused(rule, "forward", error),
                }
                // The cache keys the client's URL, not the one its target is sent.
                if let (Some(_), Some(viewer)) = (&transformed.0, viewer) {
                    parts.extensions.insert(cache::ViewerUri(viewer));
                }
            }
            let request = Request::from_parts(parts, body);
            let max_body_bytes = forward.max_body_bytes.or(self.limits.max_body_bytes);

            // Stage 8: upstream (through the cache stage when it applies).
            let response = match cached {
                Some((stage, behavior, host)) => {
                    let origin = cache::Origin {
                        groups: &self.groups,
                        group_index,
                        metrics: &self.metrics,
                        sticky_target,
                        timeout: self.limits.upstream_timeout,
                        body_timeout: self.limits.header_read_timeout,
                        max_body_bytes,
                    };
                    // Boxed: the cache stage's future is the largest of the stages' (about 7 KB),
                    // and the route future, allocated for every request, would otherwise be as
                    // large for requests that never reach it.
                    let mut answer = crate::boxed::box_future_in_place(|| {
                        cache::handle(stage, behavior, origin, context, &host, request)
                    })
                    .await;
                    // (Not for another edge fetching through this one: it stores the answer.)
                    if let Ok(response) = &mut answer
                        && !stage.is_peer(context.client.ip())
                    {
                        behavior.edit_response(response.headers_mut());
                    }
                    answer
                }
                None => {
                    upstream::send(
                        group,
                        &self.metrics,
                        context,
                        request,
                        upstream::SendOptions {
                            sticky_target,
                            timeout: self.limits.upstream_timeout,
                            body_timeout: self.limits.header_read_timeout,
                            client_upgrade,
                            max_body_bytes,
                        },
                    )
                    .await
                }
            };
            // A custom error response's page in place of an error.
            let response = match error_pages {
                Some(asked) => {
                    let status = match &response {
                        Ok(response) => response.status(),
                        Err(error) => error.status(),
                    };
                    match asked.stage.error_page(status, asked.path()) {
                        None => response,
                        // Boxed, as the cache stage above: only errors pay for its size.
                        Some(page) => {
                            crate::boxed::box_future_in_place(|| {
                                self.answer_with_page(
                                    context,
                                    &asked,
                                    page,
                                    rule,
                                    &group.name,
                                    response,
                                )
                            })
                            .await
                        }
                    }
                }
                None => response,
            };
            // Target stickiness: pin the client to the target that answered, with every
            // answer, so that the duration runs from the client's last request (ALB's AWSALB);
            // following an application cookie, whenever the target sets that cookie (and
            // only then), as ALB's app_cookie does.
            let stick_to_target = group.stickiness.and_then(|duration| {
                let answered = context.target?;
                if let Some(app_cookie) = &group.app_cookie {
                    let headers = response.as_ref().ok()?.headers();
                    if !sets_cookie(headers, app_cookie) {
                        return None;
                    }
                }
                let target = group
                    .targets
                    .iter()
                    .find(|target| target.address == answered)?;
                Some((
                    group.stickiness_cookie(),
                    target.cookie_id.as_str(),
                    duration,
                ))
            });
            Outcome {
                rule,
                group: Some(group.name.as_str()),
                action: "forward",
                redirect_url: None,
                transformed,
                response,
                stick_to,
                stick_to_target,
                keeps_policy: false,
            }
        }
    }
}

/// What a custom error response's page is asked with, kept from the client's request
/// (shared bytes, but for the resolved path of a request whose path the rules normalised,
/// which is copied).
struct PageRequest<'p> {
    stage: &'p CacheStage,
    /// Whether the client's request is a HEAD (answered with the page's head).
    head: bool,
    uri: http::Uri,
    /// The path as the rules read it, where it is not the URI's.
    resolved: Option<String>,
    host: Option<HeaderValue>,
    version: Version,
    codings: Option<HeaderValue>,
}

impl PageRequest<'_> {
    /// The path as the rules read it, which the responses' patterns read too.
    fn path(&self) -> &str {
        self.resolved.as_deref().unwrap_or(self.uri.path())
    }

    /// The client's host, as the rules read it.
    fn host(&self) -> Option<&str> {
        host_of(&self.uri, self.host.as_ref(), self.version)
    }
}

/// How long a custom error response's page may take to come (from the cache it comes at
/// once): past it, the error answers as it was, rather than keep a client whose request
/// already failed waiting on the origin that failed it.
const PAGE_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Pipeline {
    /// Answers with a custom error response's page in place of `response`, the error the
    /// request of `rule` got from `group`, with the response's status, and with the page's
    /// headers but those that would let a client or a cache keep the page as the request's
    /// URL (validators and freshness go, and `Cache-Control: no-store` comes, whatever the
    /// status); keeps `response` when the page cannot be had in time (no rule forwards its
    /// path, or its answer is not a success).
    async fn answer_with_page(
        &self,
        context: &mut RequestContext,
        asked: &PageRequest<'_>,
        page: &ErrorPage,
        rule: &str,
        group: &str,
        response: Result<Response<EdgeBody>, EdgeError>,
    ) -> Result<Response<EdgeBody>, EdgeError> {
        // The page's fetch is the edge's own: its target, attempts and bytes are not the
        // request's, in the access log.
        let mut fetch = RequestContext::new(context.client, context.trace.child());
        let fetched = tokio::time::timeout(
            PAGE_FETCH_TIMEOUT,
            self.fetch_page(&mut fetch, asked, &page.page),
        )
        .await;
        let answer = match fetched {
            Ok(Some(answer)) if answer.status().is_success() => answer,
            _ => return response,
        };
        if let Err(error) = &response {
            self.record_error(context, error, rule, Some(group));
        }
        let (mut parts, body) = answer.into_parts();
        parts.status = page.response_code;
        for name in [
            header::ETAG,
            header::LAST_MODIFIED,
            header::EXPIRES,
            header::AGE,
        ] {
            parts.headers.remove(name);
        }
        parts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The page was fetched with GET, so that it is stored for the next error; a HEAD
        // gets its head (its length too), and the body is read to its end apart, for the
        // copy the cache keeps of it.
        let body = if asked.head {
            tokio::spawn(async move {
                let mut body = body;
                let read = async { while let Some(Ok(_)) = body.frame().await {} };
                let _ = tokio::time::timeout(PAGE_FETCH_TIMEOUT, read).await;
            });
            upstream::empty()
        } else {
            body
        };
        Ok(Response::from_parts(parts, body))
    }

    /// Fetches a custom error response's page: a GET of `page` on the client's host,
    /// through the listener's rules (its rule's rewrites too), and through the cache where
    /// a behaviour covers it. Not through the web ACL or the shield, which passed the
    /// client's request.
    async fn fetch_page(
        &self,
        context: &mut RequestContext,
        asked: &PageRequest<'_>,
        page: &http::uri::PathAndQuery,
    ) -> Option<Response<EdgeBody>> {
        let body: crate::waf::InspectedBody =
            http_body_util::Either::Right(crate::waf::ReadBody::empty());
        let mut request = Request::new(body);
        *request.uri_mut() = http::Uri::from(page.clone());
        let host = asked.host()?;
        let headers = request.headers_mut();
        headers.insert(header::HOST, HeaderValue::from_str(host).ok()?);
        if let Some(codings) = &asked.codings {
            headers.insert(header::ACCEPT_ENCODING, codings.clone());
        }
        let matched = self.rules.find(&RequestHead {
            method: request.method(),
            host,
            path: page.path(),
            query: page.query(),
            headers: request.headers(),
            client: context.client.ip(),
        });
        let Action::Forward(forward) = matched.action else {
            return None;
        };
        let group_index = choose_group(forward, None);
        let (mut parts, body) = request.into_parts();
        forward::prepare_request(
            &mut parts,
            context,
            self.protocol,
            &self.port_header,
            self.forwarded_for,
        )
        .ok()?;
        if forward.url_rewrite.is_some() || forward.host_rewrite.is_some() {
            let (url, _) = forward::rewrite(
                &mut parts,
                None,
                forward.url_rewrite.as_ref(),
                forward.host_rewrite.as_ref(),
            )
            .ok()?;
            if url.is_some() {
                parts.extensions.insert(cache::ViewerUri(page.clone()));
            }
        }
        let request = Request::from_parts(parts, body);
        let answer = match asked.stage.behavior(page.path()) {
            Some(behavior) => {
                let origin = cache::Origin {
                    groups: &self.groups,
                    group_index,
                    metrics: &self.metrics,
                    sticky_target: None,
                    timeout: self.limits.upstream_timeout,
                    body_timeout: self.limits.header_read_timeout,
                    max_body_bytes: None,
                };
                let mut answer =
                    cache::handle(asked.stage, behavior, origin, context, host, request).await;
                // As the page's own URL is answered.
                if let Ok(response) = &mut answer {
                    behavior.edit_response(response.headers_mut());
                }
                answer
            }
            None => {
                upstream::send(
                    &self.groups[group_index],
                    &self.metrics,
                    context,
                    request,
                    upstream::SendOptions {
                        sticky_target: None,
                        timeout: self.limits.upstream_timeout,
                        body_timeout: self.limits.header_read_timeout,
                        client_upgrade: None,
                        max_body_bytes: None,
                    },
                )
                .await
            }
        };
        answer.ok()
    }
}

fn choose_group(forward: &Forward, sticky: Option<&str>) -> usize {
    let draw = if forward.groups.len() > 1 {
        rand::rng().random_range(0..forward.total_weight.max(1))
    } else {
        0
    };
    forward.choose(sticky, draw)
}

/// Whether a response sets a cookie of this name.
fn sets_cookie(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|cookie| cookie.split_once('='))
        .any(|(name, _)| name.trim() == wanted)
}

/// The request's host without a port: from the URI's authority (HTTP/2, absolute form) or
/// the Host header. `None` when an HTTP/1.1 request has neither, which RFC 9112 answers
/// with 400.
pub(crate) fn request_host<B>(request: &Request<B>) -> Option<&str> {
    host_of(
        request.uri(),
        request.headers().get(header::HOST),
        request.version(),
    )
}

/// A request's host, without its port: its URI's authority's (an HTTP/2 request's), else
/// its `Host`'s; none for an HTTP/1.1 request without one, empty for an HTTP/1.0 request.
pub(crate) fn host_of<'r>(
    uri: &'r http::Uri,
    host: Option<&'r HeaderValue>,
    version: Version,
) -> Option<&'r str> {
    if let Some(authority) = uri.authority() {
        return Some(authority.host());
    }
    match host.and_then(|value| value.to_str().ok()) {
        Some(host) => Some(strip_port(host)),
        None if version == Version::HTTP_11 => None,
        None => Some(""),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: keep the brackets, drop the port.
        return host
            .split_once(']')
            .map_or(host, |(address, _)| &host[..address.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// A web ACL rule's own block answer (AWS WAF's custom response); the topology checked its
/// status and headers.
fn custom_response(custom: &securecart_waf::BlockResponse) -> Response<EdgeBody> {
    let (content_type, body) = custom
        .body
        .as_ref()
        .map_or(("", ""), |(content_type, body)| {
            (content_type.as_str(), body.as_str())
        });
    let mut response = Response::new(upstream::full(Bytes::from(body.to_owned())));
    *response.status_mut() =
        http::StatusCode::from_u16(custom.status).unwrap_or(http::StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(content_type) = HeaderValue::from_str(content_type)
        && !content_type.is_empty()
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    for (name, value) in &custom.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// An answer of the edge's own: `{"error": {"code", "message"}}` with `status`, never
/// stored.
pub(crate) fn json_error(
    status: http::StatusCode,
    code: &str,
    message: &str,
) -> Response<EdgeBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(upstream::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The edge's own answer to a failure: JSON, like the shop's errors.
pub fn error_response(error: &EdgeError) -> Response<EdgeBody> {
    let message = match error {
        EdgeError::NoTargets(_) => "No target can serve this request.",
        EdgeError::Connect(_) => "No target could be reached.",
        EdgeError::ConnectTimeout(_) => "No target accepted a connection in time.",
        EdgeError::Upstream(_) => "The target failed to answer.",
        EdgeError::Timeout => "The target did not answer in time.",
        EdgeError::BadRequest(reason) => reason,
        EdgeError::TooManyForwardedAddresses(_) => {
            "X-Forwarded-For names more addresses than any chain of proxies would."
        }
        EdgeError::BodyTooLarge(_) => "The request body is too large.",
        EdgeError::ClientTimeout => "The request body did not arrive in time.",
        EdgeError::Blocked(_, Some(custom)) => return custom_response(custom),
        EdgeError::Blocked(_, None) => "The request was blocked by the web application firewall.",
        EdgeError::RateLimited(_) => "Too many requests from this address: slow down.",
        EdgeError::Shed => "The shop is very busy: try again in a moment.",
        EdgeError::Mitigated(_) => {
            "This address sends far more than shoppers do and is held back: slow down."
        }
    };
    let mut response = json_error(error.status(), error.code(), message);
    let retry_after = match error {
        EdgeError::RateLimited(seconds) | EdgeError::Mitigated(seconds) => Some(*seconds),
        EdgeError::Shed => Some(1),
        _ => None,
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn hosts_lose_their_port() {
        for (host, expected) in [
            ("shop.example", "shop.example"),
            ("shop.example:8080", "shop.example"),
            ("127.1.0.1:8080", "127.1.0.1"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
        ] {
            assert_eq!(strip_port(host), expected);
        }
    }
}
