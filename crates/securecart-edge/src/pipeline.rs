//! The request pipeline: every request goes through the same ordered stages, each in its
//! own module and each testable alone.
//!
//! 1. **context** ([`crate::context`]): the request's trace (continued or new), client
//!    address and start time.
//! 2. *(shield: per-client limits — a later stage)*
//! 3. *(waf: web ACL verdict — a later stage)*
//! 4. **router** ([`crate::router`]): the rule, and so the target group, by longest path
//!    prefix; no rule is a 404.
//! 5. *(cache: lookup, and store on the way back — a later stage)*
//! 6. **forward** ([`crate::forward`]): hop-by-hop headers out, `X-Forwarded-*` and
//!    `traceparent` in.
//! 7. **upstream** ([`crate::upstream`]): a target chosen by the balancer, pooled
//!    connections, retry on another target when nothing reached the first.
//! 8. **respond**: hop-by-hop headers out of the response, metrics, access log.
//!
//! A stage that answers by itself (a 404, a 502) returns an [`EdgeError`], turned into a
//! JSON answer here, so later stages see one shape of failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use securecart_telemetry::TraceContext;

use crate::balancer::TargetGroup;
use crate::config::Limits;
use crate::context::RequestContext;
use crate::error::EdgeError;
use crate::forward;
use crate::metrics::EdgeMetrics;
use crate::router::PathRouter;
use crate::upstream::{self, EdgeBody, UpstreamClient};

/// Everything the stages share; built once per configuration.
#[derive(Debug)]
pub struct Pipeline {
    /// The region, in logs.
    pub region: String,
    /// The listener's port, for `X-Forwarded-Port`.
    pub listener_port: u16,
    /// The path rules.
    pub router: PathRouter,
    /// The target groups, indexed by the router.
    pub groups: Arc<[TargetGroup]>,
    /// The pooled upstream client.
    pub client: UpstreamClient,
    /// The edge's metrics.
    pub metrics: EdgeMetrics,
    /// Timeouts.
    pub limits: Limits,
}

impl Pipeline {
    /// Runs one request through every stage. Never fails: every failure is an answer.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<EdgeBody>, Infallible> {
        // Stage 1: context.
        let trace = forward::incoming_trace(request.headers())
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let mut context = RequestContext::new(client, trace);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();

        let response = match self.proxy(&mut context, request).await {
            Ok(response) => response,
            Err(error) => {
                context.error_code = Some(error.code());
                if error.status().is_server_error() {
                    tracing::warn!(%error, %path, trace_id = %context.trace.trace_id_hex(), "edge answered with an error");
                }
                error_response(&error)
            }
        };

        // Stage 8: respond.
        let mut response = response;
        forward::remove_hop_by_hop(response.headers_mut());
        let elapsed = context.started.elapsed();
        let route = context
            .rule
            .map_or("unmatched", |rule| self.router.prefix(rule));
        let status = response.status().as_u16();
        self.metrics.http.record(route, status, elapsed);
        tracing::info!(
            target: "access",
            client = %context.client,
            %method,
            %path,
            status,
            route,
            target = context.target.map(|target| target.to_string()).unwrap_or_default(),
            attempts = context.attempts,
            error = context.error_code.unwrap_or(""),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            trace_id = %context.trace.trace_id_hex(),
        );
        Ok(response)
    }

    async fn proxy(
        &self,
        context: &mut RequestContext,
        request: Request<Incoming>,
    ) -> Result<Response<EdgeBody>, EdgeError> {
        // Stage 4: router.
        let (rule, group) = self
            .router
            .route(request.uri().path())
            .ok_or(EdgeError::NoRoute)?;
        context.rule = Some(rule);
        let group = &self.groups[group];

        // Stage 6: forward.
        let (mut parts, body) = request.into_parts();
        forward::prepare_request(&mut parts, context, self.listener_port);

        // Stage 7: upstream.
        upstream::send(
            &self.client,
            group,
            &self.metrics,
            context,
            parts,
            body,
            self.limits.upstream_timeout,
        )
        .await
    }
}

/// The edge's own answer to a failure: JSON, like the shop's errors.
pub fn error_response(error: &EdgeError) -> Response<EdgeBody> {
    let message = match error {
        EdgeError::NoRoute => "No route serves this path.",
        EdgeError::NoTargets(_) => "No target can serve this request.",
        EdgeError::Connect(_) => "No target could be reached.",
        EdgeError::Upstream(_) => "The target failed to answer.",
        EdgeError::Timeout => "The target did not answer in time.",
        EdgeError::BadRequest(reason) => reason,
    };
    let body =
        serde_json::json!({ "error": { "code": error.code(), "message": message } }).to_string();
    let mut response = Response::new(upstream::full(Bytes::from(body)));
    *response.status_mut() = error.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
