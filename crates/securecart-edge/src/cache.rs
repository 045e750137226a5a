//! The cache stage (stage 6): CloudFront's part of the edge. A request whose path a cache
//! behaviour matches is answered from the edge's [`Cache`] when a stored response may
//! serve it, and otherwise fetched from its target group by the upstream stage, with the
//! response stored on its way to the client. What may be stored, for how long and for
//! which requests is `securecart-cache`'s decision; this module does the fetching around
//! it:
//!
//! - a **hit** answers from the store, with `Age`, and a 304 when the client's own
//!   validators match;
//! - a **miss** goes to the origin; concurrent misses of one object wait for the first
//!   one's fetch (coalescing), and the response streams to the client while its copy is
//!   stored;
//! - a **stale** response is revalidated with its validators; a 304 freshens it in place,
//!   and when the origin cannot be reached (or fails within `stale-if-error`) the stale
//!   copy answers, where the origin allowed it; within `stale-while-revalidate` it answers
//!   at once and is revalidated in the background;
//! - a fetch (a miss, a revalidation) goes through the behaviour's origin shield first if
//!   it has one, and once more, to its secondary group, when the origin fails it and the
//!   behaviour has an origin failover (CloudFront's origin groups);
//! - a successful unsafe request (POST, PUT, DELETE, ...) invalidates its URI and the
//!   same-host URIs its `Location` and `Content-Location` name.
//!
//! Responses say what happened in `X-Cache` (`Hit`, `Miss`, `Stale`, `Revalidated`) and in
//! `Server-Timing` (`cache;desc=hit`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use securecart_cache::compress::{self, Encoding};
use securecart_cache::freshness::{self, Exchange};
use securecart_cache::range::{self, Ranged};
use securecart_cache::{
    Cache, CachePolicy, FlightGuard, Generation, Join, Reuse, Stored, Variant, key, validation,
};

use crate::balancer::TargetGroup;
use crate::config::CacheConfig;
use crate::context::RequestContext;
use crate::error::EdgeError;
use crate::metrics::{CacheMetrics, EdgeMetrics};
use crate::rules::glob_match;
use crate::upstream::{self, BoxError, EdgeBody, SendOptions};

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
static SURROGATE_CAPABILITY: HeaderName = HeaderName::from_static("surrogate-capability");

/// How long a coalesced request waits for another's fetch before fetching itself.
const COALESCE_WAIT: Duration = Duration::from_secs(10);

/// What the cache did for a request, as `X-Cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    Miss,
    Stale,
    Revalidated,
}

impl Served {
    fn header(self) -> (HeaderValue, HeaderValue) {
        let (x_cache, timing) = match self {
            Served::Hit => ("Hit", "cache;desc=hit"),
            Served::Miss => ("Miss", "cache;desc=miss"),
            Served::Stale => ("Stale", "cache;desc=stale"),
            Served::Revalidated => ("Revalidated", "cache;desc=revalidated"),
        };
        (
            HeaderValue::from_static(x_cache),
            HeaderValue::from_static(timing),
        )
    }
}

/// A cache behaviour, compiled.
#[derive(Debug)]
pub struct Behavior {
    name: String,
    pattern: Vec<u8>,
    policy: CachePolicy,
    metrics: CacheMetrics,
    /// The group of the origin shield its misses go through, if any.
    shield: Option<usize>,
    /// Where its failing fetches go next, if anywhere.
    failover: Option<Failover>,
    /// Headers set on its answers.
    response_headers: Box<[(HeaderName, HeaderValue)]>,
    /// Headers removed from its answers.
    remove_response_headers: Box<[HeaderName]>,
}

impl Behavior {
    /// Edits the headers of one of its answers to a client (not to another edge fetching
    /// through this one, which stores the answer by them): the surrogates' fields out
    /// (`Surrogate-Control`, `Surrogate-Key`, `Cache-Tag`: Edge Architecture's), then
    /// CloudFront's response headers policy, its removals and the headers it sets.
    pub fn edit_response(&self, headers: &mut HeaderMap) {
        headers.remove(&freshness::SURROGATE_CONTROL);
        headers.remove(&SURROGATE_KEY);
        headers.remove(&CACHE_TAG);
        for name in &self.remove_response_headers {
            headers.remove(name);
        }
        for (name, value) in &self.response_headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Where a fetch of the request's group `group` goes when the origin fails it.
    fn secondary(&self, group: usize) -> Option<Secondary> {
        let failover = self.failover.as_ref()?;
        Some(Secondary {
            group: (*failover.secondary.get(group)?)?,
            statuses: Arc::clone(&failover.statuses),
            count: self.metrics.failovers.clone(),
        })
    }
}

/// A behaviour's origin failover, compiled.
#[derive(Debug)]
struct Failover {
    /// By the index of a request's group, the index of its secondary group.
    secondary: Box<[Option<usize>]>,
    /// The origin's answers that fail over.
    statuses: Arc<[StatusCode]>,
}

/// Where one fetch goes when its origin fails it: another group, once.
#[derive(Debug, Clone)]
struct Secondary {
    group: usize,
    statuses: Arc<[StatusCode]>,
    /// The behaviour's count of fetches that failed over.
    count: prometheus_client::metrics::counter::Counter,
}

/// A listener's cache stage: the edge's cache and the behaviours in force.
#[derive(Debug)]
pub struct CacheStage {
    cache: Arc<Cache>,
    behaviors: Vec<Behavior>,
    error_pages: Box<[ErrorPage]>,
    peers: Box<[std::net::IpAddr]>,
}

/// A custom error response (see [`crate::config::ErrorResponse`]), compiled.
#[derive(Debug)]
pub struct ErrorPage {
    status: StatusCode,
    patterns: Box<[Vec<u8>]>,
    /// The page's path.
    pub page: http::uri::PathAndQuery,
    /// The status it answers with.
    pub response_code: StatusCode,
}

impl CacheStage {
    /// The stage over `cache` with the configuration's behaviours; `Err` names a behaviour,
    /// a group that `groups` does not have, and what the behaviour named it as.
    pub fn new(
        cache: Arc<Cache>,
        config: &CacheConfig,
        metrics: &EdgeMetrics,
        groups: &[TargetGroup],
    ) -> Result<Self, (String, String, &'static str)> {
        let behaviors = config
            .behaviors
            .iter()
            .map(|behavior| {
                let index = |name: &String, role| {
                    groups
                        .iter()
                        .position(|group| &group.name == name)
                        .ok_or_else(|| (behavior.name.clone(), name.clone(), role))
                };
                let shield = match &behavior.origin_shield {
                    None => None,
                    Some(name) => Some(index(name, "origin shield")?),
                };
                let failover = match &behavior.origin_failover {
                    None => None,
                    Some(failover) => {
                        let mut secondary = vec![None; groups.len()];
                        for (primary, other) in &failover.groups {
                            secondary[index(primary, "origin failover")?] =
                                Some(index(other, "origin failover")?);
                        }
                        Some(Failover {
                            secondary: secondary.into(),
                            statuses: failover.status_codes.clone().into(),
                        })
                    }
                };
                Ok(Behavior {
                    name: behavior.name.clone(),
                    pattern: behavior.path_pattern.as_bytes().to_vec(),
                    policy: behavior.policy.clone(),
                    metrics: metrics.cache_behavior(&behavior.name),
                    shield,
                    failover,
                    response_headers: behavior.response_headers.clone().into(),
                    remove_response_headers: behavior.remove_response_headers.clone().into(),
                })
            })
            .collect::<Result<_, (String, String, &'static str)>>()?;
        let error_pages = config
            .error_responses
            .iter()
            .map(|response| ErrorPage {
                status: response.error_code,
                patterns: response
                    .paths
                    .iter()
                    .map(|pattern| pattern.as_bytes().to_vec())
                    .collect(),
                page: response.response_page_path.clone(),
                response_code: response.response_code.unwrap_or(response.error_code),
            })
            .collect();
        Ok(Self {
            cache,
            behaviors,
            error_pages,
            peers: config.peers.clone().into(),
        })
    }

    /// Whether `client` is another edge fetching through this one as its origin shield.
    pub fn is_peer(&self, client: std::net::IpAddr) -> bool {
        self.peers.contains(&client.to_canonical())
    }

    /// Whether any custom error response is configured.
    pub fn has_error_pages(&self) -> bool {
        !self.error_pages.is_empty()
    }

    /// The custom error response for an answer of `status` to a request for `path`: the
    /// first whose status it is and whose patterns match the path, unless the page is the
    /// path itself (whose own error is answered as it is).
    pub fn error_page(&self, status: StatusCode, path: &str) -> Option<&ErrorPage> {
        self.error_pages.iter().find(|page| {
            page.status == status
                && page.page.path() != path
                && page
                    .patterns
                    .iter()
                    .any(|pattern| glob_match(pattern, path.as_bytes(), false))
        })
    }

    /// The behaviour for a path: the first whose pattern matches.
    pub fn behavior(&self, path: &str) -> Option<&Behavior> {
        self.behaviors
            .iter()
            .find(|behavior| glob_match(&behavior.pattern, path.as_bytes(), false))
    }

    /// The behaviours' names, in order.
    pub fn behavior_names(&self) -> impl Iterator<Item = &str> {
        self.behaviors.iter().map(|behavior| behavior.name.as_str())
    }

    /// Drops what is stored for a URI (every variant), under the behaviour of its path.
    fn invalidate_uri(&self, host: &str, path: &str, query: Option<&str>) {
        if let Some(behavior) = self.behavior(path) {
            self.cache
                .remove(&behavior.policy.key.primary(host, path, query));
        }
    }
}

/// Where the stage fetches from: the request's target group, as the upstream stage sends,
/// or the behaviour's origin shield before it.
#[derive(Debug)]
pub struct Origin<'a> {
    /// Every group of the edge, for a fetch that outlives the request.
    pub groups: &'a Arc<[TargetGroup]>,
    /// The index of the request's group in `groups`.
    pub group_index: usize,
    /// The edge's metrics.
    pub metrics: &'a EdgeMetrics,
    /// The target the client's stickiness cookie names.
    pub sticky_target: Option<usize>,
    /// How long a target may take to answer with headers.
    pub timeout: Duration,
    /// How long the client may take to send a body the edge buffers.
    pub body_timeout: Duration,
    /// The largest request body.
    pub max_body_bytes: Option<u64>,
}

impl Origin<'_> {
    /// Passes a request the cache does not keep (with its body) to the request's group.
    async fn fetch<B>(
        &self,
        context: &mut RequestContext,
        request: Request<B>,
    ) -> Result<Response<EdgeBody>, EdgeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        upstream::send(
            &self.groups[self.group_index],
            self.metrics,
            context,
            request,
            SendOptions {
                sticky_target: self.sticky_target,
                timeout: self.timeout,
                body_timeout: self.body_timeout,
                client_upgrade: None,
                max_body_bytes: self.max_body_bytes,
            },
        )
        .await
    }

    /// Fetches what the cache may keep, through the behaviour's origin shield if it has
    /// one, and from its secondary group when the origin fails it.
    async fn fetch_head(
        &self,
        behavior: &Behavior,
        context: &mut RequestContext,
        head: &Head,
    ) -> Result<Response<EdgeBody>, EdgeError> {
        send_head(
            &Route {
                groups: self.groups,
                group: self.group_index,
                shield: behavior.shield,
                secondary: behavior.secondary(self.group_index),
                metrics: self.metrics,
                timeout: self.timeout,
                sticky_target: self.sticky_target,
            },
            context,
            head,
        )
        .await
    }
}

/// A request the cache fetches: GET or HEAD without a body, so it can be sent again.
#[derive(Debug, Clone)]
struct Head {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
}

impl Head {
    /// The head of a request the cache fetches for `policy` (its body is empty), its
    /// headers as the origin is to see them ([`for_origin`]); and the client's headers, by
    /// which the stored copy is told apart from others (its `Accept-Encoding` normalised).
    fn of<B>(request: Request<B>, policy: &CachePolicy) -> (Self, HeaderMap) {
        let (parts, _empty) = request.into_parts();
        let client = normalized(parts.headers);
        let head = Self {
            method: parts.method,
            uri: parts.uri,
            headers: for_origin(client.clone(), policy),
        };
        (head, client)
    }
}

/// A client's headers with `Accept-Encoding` normalised as the cache keys it, so that what
/// the origin is asked is what the stored copy is found by (`identity` for a client that
/// accepts none of the codings the edge knows, or sent none, where an origin might take
/// any coding as acceptable).
fn normalized(mut headers: HeaderMap) -> HeaderMap {
    let accepted = compress::normalized_accept_encoding(&headers)
        .unwrap_or_else(|| HeaderValue::from_static("identity"));
    headers.insert(header::ACCEPT_ENCODING, accepted);
    headers
}

/// Normalised headers as a behaviour's fetch sends them: only what its origin request
/// policy lets through. (The client's own stay what stored copies are told apart by: a
/// header the origin varies on but is not sent is still a variant's.)
fn for_origin(mut headers: HeaderMap, policy: &CachePolicy) -> HeaderMap {
    policy.origin.apply(&mut headers, &policy.key);
    headers
}

/// Where a cacheable request goes.
struct Route<'a> {
    groups: &'a [TargetGroup],
    group: usize,
    shield: Option<usize>,
    secondary: Option<Secondary>,
    metrics: &'a EdgeMetrics,
    timeout: Duration,
    sticky_target: Option<usize>,
}

/// Sends a cacheable request: to the origin shield (another region's edge, whose cache
/// answers for every region) when the behaviour has one, and to the request's own group
/// when it has none or when the shield cannot be reached. When that origin cannot be
/// reached, does not answer in time, or answers with a failover status, the request goes
/// once more, to the behaviour's secondary group, as CloudFront's origin groups do: its
/// answer is the request's, but when the origin could not be reached and the secondary
/// fails too, the origin's failure is (so that a stale copy may answer, as it may for an
/// origin out of reach).
async fn send_head(
    route: &Route<'_>,
    context: &mut RequestContext,
    head: &Head,
) -> Result<Response<EdgeBody>, EdgeError> {
    let answer = send_to_origin(route, context, head).await;
    let Some(secondary) = &route.secondary else {
        return answer;
    };
    if !secondary.fails(&answer) {
        return answer;
    }
    let group = &route.groups[secondary.group];
    match &answer {
        Ok(response) => {
            tracing::debug!(status = %response.status(), secondary = %group.name, "the origin failed a fetch; failing over");
        }
        Err(error) => {
            tracing::debug!(%error, secondary = %group.name, "the origin failed a fetch; failing over");
        }
    }
    secondary.count.inc();
    // The primary's answer, and its connection, go before the secondary is asked; what it
    // said of its target is not the secondary's.
    let unreachable = answer.err();
    context.target = None;
    context.target_answered = None;
    context.target_status = None;
    let second = upstream::send(
        group,
        route.metrics,
        context,
        head.request(),
        route.options(None),
    )
    .await;
    match unreachable {
        Some(error) if secondary.fails(&second) => {
            // The origin's failure answers: no target answered the request, not the
            // secondary (the access log's lists show both attempts).
            context.target = None;
            context.target_answered = None;
            context.target_status = None;
            Err(error)
        }
        _ => second,
    }
}

impl Secondary {
    /// Whether an answer fails over: an origin out of reach or too slow, or a failover
    /// status.
    fn fails(&self, answer: &Result<Response<EdgeBody>, EdgeError>) -> bool {
        match answer {
            Ok(response) => self.statuses.contains(&response.status()),
            Err(error) => matches!(
                error,
                EdgeError::NoTargets(_)
                    | EdgeError::Connect(_)
                    | EdgeError::ConnectTimeout(_)
                    | EdgeError::Upstream(_)
                    | EdgeError::Timeout
            ),
        }
    }
}

impl Route<'_> {
    /// How a cacheable request is sent, to the target `sticky_target` first if any.
    fn options(&self, sticky_target: Option<usize>) -> SendOptions {
        SendOptions {
            sticky_target,
            timeout: self.timeout,
            body_timeout: self.timeout,
            client_upgrade: None,
            max_body_bytes: None,
        }
    }
}

impl Head {
    /// The request, with an empty body, for one attempt.
    fn request(&self) -> Request<EdgeBody> {
        let mut request = Request::new(upstream::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Sends a cacheable request to the origin: through the behaviour's origin shield, if it
/// has one, else (or when the shield cannot be reached) to the request's own group. Where
/// the behaviour fails over, a shield's failing answer (one that would fail over) goes to
/// the request's own group too, before any secondary: the shield's region has failed over
/// already, to the secondary that region's own would be.
async fn send_to_origin(
    route: &Route<'_>,
    context: &mut RequestContext,
    head: &Head,
) -> Result<Response<EdgeBody>, EdgeError> {
    if let Some(shield) = route.shield {
        let answer = upstream::send(
            &route.groups[shield],
            route.metrics,
            context,
            head.request(),
            route.options(None),
        )
        .await;
        match &answer {
            Err(
                error @ (EdgeError::Connect(_)
                | EdgeError::ConnectTimeout(_)
                | EdgeError::NoTargets(_)),
            ) => {
                tracing::debug!(%error, shield = %route.groups[shield].name, "origin shield unreachable; fetching from the origin");
            }
            failed
                if route
                    .secondary
                    .as_ref()
                    .is_some_and(|secondary| secondary.fails(failed)) =>
            {
                tracing::debug!(shield = %route.groups[shield].name, "origin shield failed; fetching from the origin");
                context.target = None;
                context.target_answered = None;
                context.target_status = None;
            }
            _ => return answer,
        }
    }
    upstream::send(
        &route.groups[route.group],
        route.metrics,
        context,
        head.request(),
        route.options(route.sticky_target),
    )
    .await
}

/// Runs a request through the cache behaviour `behavior` for `host`. The answer keeps the
/// surrogates' fields, for another edge fetching through this one; what a client sees is
/// [`Behavior::edit_response`]'s.
pub async fn handle<B>(
    stage: &CacheStage,
    behavior: &Behavior,
    origin: Origin<'_>,
    context: &mut RequestContext,
    host: &str,
    request: Request<B>,
) -> Result<Response<EdgeBody>, EdgeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let method = request.method().clone();
    if method == Method::GET || method == Method::HEAD {
        if request.body().is_end_stream() {
            let mut request = request;
            if !behavior.policy.ttl.honour_client {
                // The cache answers as if the client had asked nothing of it (CloudFront's
                // way); the origin does not see the client's directives either.
                request.headers_mut().remove(header::CACHE_CONTROL);
                request.headers_mut().remove(header::PRAGMA);
            }
            return lookup(stage, behavior, origin, context, host, request).await;
        }
        behavior.metrics.bypass.inc();
        return origin.fetch(context, to_origin(request, behavior)).await;
    }
    behavior.metrics.bypass.inc();
    let request = to_origin(request, behavior);
    if matches!(method, Method::OPTIONS | Method::TRACE | Method::CONNECT) {
        return origin.fetch(context, request).await;
    }
    // An unsafe method: a success changes the resource, so what is stored of it goes
    // (RFC 9111 section 4.4), and of the resources its answer names on this host.
    let (path, query) = {
        let (path, query) = key_target(&request);
        (path.to_owned(), query.map(str::to_owned))
    };
    let response = origin.fetch(context, request).await?;
    if response.status().is_success() || response.status().is_redirection() {
        stage.invalidate_uri(host, &path, query.as_deref());
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some((path, query)) = response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|location| same_host_target(location, host, &path))
            {
                stage.invalidate_uri(host, &path, query.as_deref());
            }
        }
    }
    Ok(response)
}

/// The URL a rule's rewrite replaced, which the cache keys and invalidates by (as the
/// client's host is): two URLs rewritten to one of the origin's (by rules that may send
/// them to different groups) are two objects, and a client's URL is invalidated by the
/// name the client uses.
#[derive(Debug, Clone)]
pub struct ViewerUri(pub http::uri::PathAndQuery);

/// The path and query a request is keyed by: the client's, before any rewrite.
fn key_target<B>(request: &Request<B>) -> (&str, Option<&str>) {
    match request.extensions().get::<ViewerUri>() {
        Some(ViewerUri(viewer)) => (viewer.path(), viewer.query()),
        None => (request.uri().path(), request.uri().query()),
    }
}

/// A request the cache passes to the origin (an unsafe method, a GET with a body): what
/// the behaviour's origin request policy lets through, as for its misses.
fn to_origin<B>(mut request: Request<B>, behavior: &Behavior) -> Request<B> {
    let policy = &behavior.policy;
    policy.origin.apply(request.headers_mut(), &policy.key);
    request
}

/// A GET or HEAD: from the store if it may, else from the origin.
async fn lookup<B>(
    stage: &CacheStage,
    behavior: &Behavior,
    origin: Origin<'_>,
    context: &mut RequestContext,
    host: &str,
    request: Request<B>,
) -> Result<Response<EdgeBody>, EdgeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let request_directives = freshness::request_directives(request.headers());
    let key: Arc<str> = {
        let (path, query) = key_target(&request);
        Arc::from(behavior.policy.key.primary(host, path, query))
    };
    let mut waited = false;
    let mut guard = None;
    loop {
        let now = SystemTime::now();
        if let Some(stored) = stage.cache.lookup(&key, request.headers()).await {
            match freshness::reuse(&stored.freshness, &request_directives, now) {
                Reuse::Fresh | Reuse::StaleAllowed => {
                    let served = if stored.freshness.is_fresh(now) {
                        Served::Hit
                    } else {
                        Served::Stale
                    };
                    let stored = encoded(stage, behavior, &key, stored, &request).await;
                    return Ok(serve(&stored, &request, served, behavior, now));
                }
                Reuse::StaleWhileRevalidate => {
                    revalidate_in_background(
                        stage, behavior, &origin, context, &key, &stored, &request,
                    );
                    let stored = encoded(stage, behavior, &key, stored, &request).await;
                    return Ok(serve(&stored, &request, Served::Stale, behavior, now));
                }
                Reuse::Revalidate if request_directives.only_if_cached => {
                    return Ok(gateway_timeout());
                }
                Reuse::Revalidate => {
                    // One revalidation per object at a time: the others wait for it, then
                    // find the object freshened (or revalidate themselves, once).
                    let leader = if waited {
                        None
                    } else {
                        match stage.cache.flights.join(&key) {
                            Join::Leader(leader) => Some(leader),
                            Join::Waiter(waiter) => {
                                behavior.metrics.coalesced.inc();
                                let _ = tokio::time::timeout(COALESCE_WAIT, waiter.wait()).await;
                                waited = true;
                                continue;
                            }
                        }
                    };
                    let stale = Stale {
                        key,
                        stored,
                        leader,
                    };
                    return revalidate(stage, behavior, origin, context, stale, request).await;
                }
            }
        }
        if request_directives.only_if_cached {
            return Ok(gateway_timeout());
        }
        // A HEAD is forwarded as it is and its answer not stored: it does not fill the
        // cache, so it neither leads nor waits.
        if waited || request.method() == Method::HEAD {
            break;
        }
        match stage.cache.flights.join(&key) {
            Join::Leader(leader) => {
                guard = Some(leader);
                break;
            }
            Join::Waiter(waiter) => {
                behavior.metrics.coalesced.inc();
                let _ = tokio::time::timeout(COALESCE_WAIT, waiter.wait()).await;
                waited = true;
            }
        }
    }
    // Stored under the client's path, as its key is, which an invalidation by path
    // matches (not the one a rule's rewrite sends the origin).
    let path = key_target(&request).0.to_owned();
    let (mut head, client_headers) = Head::of(request, &behavior.policy);
    let parts_method = head.method.clone();
    // A range the cache does not hold is fetched whole, as nginx and Varnish do: the
    // origin's 206 could not be stored, and a client that only asks for ranges (a video, a
    // PDF reader) would never fill the cache.
    let ranged = parts_method == Method::GET && head.headers.contains_key(header::RANGE);
    if ranged {
        head.headers.remove(header::RANGE);
        head.headers.remove(header::IF_RANGE);
    }
    announce_capability(&mut head.headers);
    let request_time = SystemTime::now();
    let since = stage.cache.generation();
    let response = origin.fetch_head(behavior, context, &head).await;
    // A miss is counted once: here, or when the range is cut from the stored object.
    if !ranged || response.is_err() {
        behavior.metrics.answered(&behavior.metrics.miss);
    }
    let response = response?;
    if ranged {
        let fetched = Fetched {
            key: Arc::clone(&key),
            host,
            path: &path,
            method: parts_method.clone(),
            client_headers: &client_headers,
            request_time,
            guard,
            since,
        };
        return answer_range(&stage.cache, behavior, fetched, response, origin.timeout).await;
    }
    Ok(store_on_the_way(
        &stage.cache,
        behavior,
        Fetched {
            key,
            host,
            path: &path,
            method: parts_method,
            client_headers: &client_headers,
            request_time,
            guard,
            since,
        },
        response,
        Served::Miss,
    ))
}

/// Bodies up to this size are compressed on the request's own task; larger ones on the
/// blocking pool, so that a megabyte of brotli does not stall other connections.
const INLINE_COMPRESSION_BYTES: usize = 64 * 1024;

/// The stored response, with its body also in the encoding this request would be answered
/// in if it is made now (once per object and encoding: the copy is stored in its place).
async fn encoded<B>(
    stage: &CacheStage,
    behavior: &Behavior,
    key: &Arc<str>,
    stored: Arc<Stored>,
    request: &Request<B>,
) -> Arc<Stored> {
    let Some(encoding) = answer_encoding(&stored, request, behavior) else {
        return stored;
    };
    if stored.encoded(encoding).is_some() {
        return stored;
    }
    let body = stored.body.clone();
    let compressed = if body.len() <= INLINE_COMPRESSION_BYTES {
        encoding.compress(&body)
    } else {
        match tokio::task::spawn_blocking(move || encoding.compress(&body)).await {
            Ok(compressed) => compressed,
            Err(_) => return stored,
        }
    };
    let Ok(compressed) = compressed else {
        return stored;
    };
    let updated = Arc::new(stored.with_encoding(encoding, compressed));
    stage
        .cache
        .store
        .replace(Arc::clone(key), &stored, Arc::clone(&updated));
    updated
}

/// The encoding a stored response is answered in for this request: a whole 200 of a
/// compressible type to a GET that accepts one (ranges are cut from the identity), where
/// the behaviour compresses.
fn answer_encoding<B>(
    stored: &Stored,
    request: &Request<B>,
    behavior: &Behavior,
) -> Option<Encoding> {
    if !behavior.policy.compress
        || request.method() != Method::GET
        || stored.status != StatusCode::OK
        || request.headers().contains_key(header::RANGE)
        || !compress::compressible(&stored.headers, stored.body.len())
    {
        return None;
    }
    compress::negotiate(request.headers())
}

/// What a fetch needs to store its response.
struct Fetched<'a> {
    key: Arc<str>,
    host: &'a str,
    path: &'a str,
    method: Method,
    client_headers: &'a HeaderMap,
    request_time: SystemTime,
    guard: Option<FlightGuard>,
    /// The key's invalidations before the fetch: an invalidation since cancels the store.
    since: Generation,
}

/// Bytes of the copies' budget (`Cache::reserve_copy`) held by a copy being read, given
/// back when it goes.
struct Held<'c> {
    cache: &'c Cache,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.cache.release_copy(self.bytes);
    }
}

/// A stored response that a request may not use as it is, under its key, and the flight
/// guard of the requests waiting for its revalidation, if this request leads it.
struct Stale {
    key: Arc<str>,
    stored: Arc<Stored>,
    leader: Option<FlightGuard>,
}

/// Answers a ranged GET whose object was fetched whole (without the client's `Range` and
/// `If-Range`), counted a miss: stored whole where it may be, and the client's range cut
/// from the object stored (`fetched`'s flight guard let go once it is); else cut from
/// the answer as it streams, where its length is known; else the whole answer, as a
/// server may send it, stored on its way where it may be.
async fn answer_range(
    cache: &Arc<Cache>,
    behavior: &Behavior,
    fetched: Fetched<'_>,
    response: Response<EdgeBody>,
    timeout: Duration,
) -> Result<Response<EdgeBody>, EdgeError> {
    let Fetched { guard, .. } = fetched;
    let fetched = Fetched {
        guard: None,
        ..fetched
    };
    let response = match store_whole(cache, behavior, &fetched, response, timeout).await {
        Whole::Stored(stored) => {
            drop(guard);
            let mut client = Request::new(());
            *client.method_mut() = fetched.method.clone();
            *client.headers_mut() = fetched.client_headers.clone();
            return Ok(serve(
                &stored,
                &client,
                Served::Miss,
                behavior,
                SystemTime::now(),
            ));
        }
        Whole::BrokeOff => {
            behavior.metrics.answered(&behavior.metrics.miss);
            return Err(EdgeError::Upstream(
                "the origin's answer broke off".to_owned(),
            ));
        }
        Whole::Declined(response) => response,
    };
    behavior.metrics.answered(&behavior.metrics.miss);
    let (mut response, cut) = cut_range(response, fetched.client_headers);
    if cut {
        for_client(response.headers_mut(), Served::Miss);
        return Ok(response);
    }
    Ok(store_on_the_way(
        cache,
        behavior,
        Fetched { guard, ..fetched },
        response,
        Served::Miss,
    ))
}

/// Revalidates a stored response the request may not use as it is: conditionally when it
/// has validators, and falls back on it when the origin fails and that is allowed. A
/// ranged request's object is revalidated whole (its `Range` and `If-Range` are the
/// client's to ask of the object, not of the origin), and `leader`, the flight guard of
/// the requests waiting for this revalidation, goes with a new answer until it is stored.
async fn revalidate<B>(
    stage: &CacheStage,
    behavior: &Behavior,
    origin: Origin<'_>,
    context: &mut RequestContext,
    stale: Stale,
    request: Request<B>,
) -> Result<Response<EdgeBody>, EdgeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Stale {
        key,
        stored,
        leader,
    } = stale;
    let request_directives = freshness::request_directives(request.headers());
    let (mut head, client_headers) = Head::of(request, &behavior.policy);
    let ranged = head.method == Method::GET && head.headers.contains_key(header::RANGE);
    head.headers.remove(header::RANGE);
    // The client's request as it came, to answer its own conditions and to store under.
    let mut client = Request::new(());
    *client.method_mut() = head.method.clone();
    *client.headers_mut() = client_headers;
    let client_headers = client.headers();
    make_conditional(&mut head.headers, &stored);
    announce_capability(&mut head.headers);
    let request_time = SystemTime::now();
    let since = stage.cache.generation();
    let answer = origin.fetch_head(behavior, context, &head).await;
    let now = SystemTime::now();
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            return if freshness::serve_stale_on_error(
                &stored.freshness,
                &request_directives,
                false,
                now,
            ) {
                Ok(serve(&stored, &client, Served::Stale, behavior, now))
            } else {
                Err(error)
            };
        }
    };
    if response.status() == StatusCode::NOT_MODIFIED {
        let fresh = freshened(
            &stored,
            response.headers(),
            client_headers,
            request_time,
            now,
            &behavior.policy,
        );
        return Ok(match fresh {
            Some(fresh) => {
                let fresh = Arc::new(fresh);
                stage.cache.replace(key, &stored, Arc::clone(&fresh), since);
                serve(&fresh, &client, Served::Revalidated, behavior, now)
            }
            None => {
                // The origin's new headers forbid storing: answer once with them.
                stage.cache.remove(&key);
                let headers = validation::freshen(&stored.headers, response.headers());
                let once = Stored {
                    headers,
                    ..Stored::clone(&stored)
                };
                serve(&once, &client, Served::Revalidated, behavior, now)
            }
        });
    }
    if response.status().is_server_error()
        && freshness::serve_stale_on_error(&stored.freshness, &request_directives, true, now)
    {
        return Ok(serve(&stored, &client, Served::Stale, behavior, now));
    }
    let fetched = Fetched {
        key,
        host: &stored.host,
        path: &stored.path,
        method: client.method().clone(),
        client_headers,
        request_time,
        guard: leader,
        since,
    };
    if ranged {
        return answer_range(&stage.cache, behavior, fetched, response, origin.timeout).await;
    }
    behavior.metrics.answered(&behavior.metrics.miss);
    Ok(store_on_the_way(
        &stage.cache,
        behavior,
        fetched,
        response,
        Served::Miss,
    ))
}

/// Within `stale-while-revalidate`: the stale response answers now, and a request of its
/// own, with the client's headers and the stored validators, freshens or replaces it. One
/// revalidation per object at a time: it leads the object's fetch, and skips if another
/// request already does.
fn revalidate_in_background<B>(
    stage: &CacheStage,
    behavior: &Behavior,
    origin: &Origin<'_>,
    context: &RequestContext,
    key: &Arc<str>,
    stored: &Arc<Stored>,
    request: &Request<B>,
) {
    let Join::Leader(guard) = stage.cache.flights.join(key) else {
        return;
    };
    let Some(refresh) = stage.cache.begin_refresh() else {
        return;
    };
    let cache = Arc::clone(&stage.cache);
    let policy = behavior.policy.clone();
    let groups = Arc::clone(origin.groups);
    let group_index = origin.group_index;
    let shield = behavior.shield;
    let secondary = behavior.secondary(group_index);
    let metrics = origin.metrics.clone();
    let timeout = origin.timeout;
    let key = Arc::clone(key);
    let stored = Arc::clone(stored);
    let client_headers = normalized(request.headers().clone());
    let mut headers = for_origin(client_headers.clone(), &behavior.policy);
    let uri = request.uri().clone();
    let mut background = RequestContext::new(context.client, context.trace.child());
    let since = stage.cache.generation();
    tokio::spawn(async move {
        let (_guard, _refresh) = (guard, refresh);
        // The object is refreshed whole: a client's range is not the origin's to cut.
        headers.remove(header::RANGE);
        make_conditional(&mut headers, &stored);
        announce_capability(&mut headers);
        let head = Head {
            method: Method::GET,
            uri,
            headers,
        };
        let request_time = SystemTime::now();
        let route = Route {
            groups: &groups,
            group: group_index,
            shield,
            secondary,
            metrics: &metrics,
            timeout,
            sticky_target: None,
        };
        let answer = send_head(&route, &mut background, &head).await;
        let Ok(response) = answer else {
            return;
        };
        let now = SystemTime::now();
        if response.status() == StatusCode::NOT_MODIFIED {
            if let Some(fresh) = freshened(
                &stored,
                response.headers(),
                &client_headers,
                request_time,
                now,
                &policy,
            ) {
                cache.replace(key, &stored, Arc::new(fresh), since);
            }
            return;
        }
        if response.status().is_server_error() {
            return;
        }
        let exchange = Exchange {
            method: &Method::GET,
            request: &client_headers,
            status: response.status(),
            response: response.headers(),
            request_time,
            response_time: now,
        };
        let Ok(freshness) = freshness::storable(&exchange, &policy.ttl) else {
            return;
        };
        let (parts, body) = response.into_parts();
        // Read no further than the cache keeps: a body past the object limit (declared,
        // or found so as it comes) is dropped unread rather than held whole in memory.
        if body
            .size_hint()
            .exact()
            .is_some_and(|length| length > cache.max_object_bytes as u64)
        {
            return;
        }
        let limit = cache.max_object_bytes;
        let copies = Arc::clone(&cache);
        let reading = async move {
            let mut body = body;
            let mut read = bytes::BytesMut::new();
            // Its copy is held within the copies' budget, as a miss's is, and given back
            // however the reading ends (the stored object then counts in the store).
            let mut held = Held {
                cache: &copies,
                bytes: 0,
            };
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.ok()?.into_data() {
                    if read.len() + data.len() > limit || !copies.reserve_copy(data.len()) {
                        return None;
                    }
                    held.bytes += data.len();
                    read.extend_from_slice(&data);
                }
            }
            Some(read.freeze())
        };
        let Ok(Some(body)) = tokio::time::timeout(timeout, reading).await else {
            return;
        };
        let mut headers = parts.headers;
        validation::strip_unstored(&mut headers);
        let stored = Stored {
            status: parts.status,
            variant: Variant::capture(&client_headers, &key::vary_fields(&headers), &policy.key),
            tags: tags(&headers),
            headers,
            body,
            freshness,
            host: stored.host.clone(),
            path: stored.path.clone(),
            encoded: Box::new([]),
        };
        cache.insert(key, Arc::new(stored), since);
    });
}

/// The stored response freshened by a 304, if it may still be stored.
fn freshened(
    stored: &Stored,
    not_modified: &HeaderMap,
    client_headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    policy: &CachePolicy,
) -> Option<Stored> {
    let headers = validation::freshen(&stored.headers, not_modified);
    let exchange = Exchange {
        method: &Method::GET,
        request: client_headers,
        status: stored.status,
        response: &headers,
        request_time,
        response_time,
    };
    let freshness = freshness::storable(&exchange, &policy.ttl).ok()?;
    Some(Stored {
        headers,
        freshness,
        ..stored.clone()
    })
}

/// Replaces the client's validators with the stored response's: the cache answers the
/// client's conditions itself, from what it then holds.
fn make_conditional(headers: &mut HeaderMap, stored: &Stored) {
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        headers.remove(name);
    }
    for (name, value) in validation::validators(&stored.headers) {
        headers.insert(name, value);
    }
}

/// Tells the origin a surrogate cache is before it, so that it may target directives at it
/// in `Surrogate-Control` (`max-age=60;securecart`).
fn announce_capability(headers: &mut HeaderMap) {
    headers.append(
        SURROGATE_CAPABILITY.clone(),
        HeaderValue::from_static(concat!("securecart", "=\"Surrogate/1.0\"")),
    );
}

/// Passes a fetched response to the client, and stores a copy if it may be stored.
fn store_on_the_way(
    cache: &Arc<Cache>,
    behavior: &Behavior,
    fetched: Fetched<'_>,
    response: Response<EdgeBody>,
    served: Served,
) -> Response<EdgeBody> {
    let response_time = SystemTime::now();
    let exchange = Exchange {
        method: &fetched.method,
        request: fetched.client_headers,
        status: response.status(),
        response: response.headers(),
        request_time: fetched.request_time,
        response_time,
    };
    let storable = freshness::storable(&exchange, &behavior.policy.ttl).ok();
    let fits = response
        .body()
        .size_hint()
        .upper()
        .is_none_or(|length| length <= cache.max_object_bytes as u64);
    let (mut parts, body) = response.into_parts();
    let body = match storable.filter(|_| fits) {
        Some(freshness) => {
            let mut headers = parts.headers.clone();
            validation::strip_unstored(&mut headers);
            let pending = Pending {
                cache: Arc::clone(cache),
                key: Arc::clone(&fetched.key),
                since: fetched.since,
                stored: Stored {
                    status: parts.status,
                    variant: Variant::capture(
                        fetched.client_headers,
                        &key::vary_fields(&headers),
                        &behavior.policy.key,
                    ),
                    tags: tags(&headers),
                    headers,
                    body: Bytes::new(),
                    freshness,
                    host: fetched.host.into(),
                    path: fetched.path.into(),
                    encoded: Box::new([]),
                },
                _guard: fetched.guard,
            };
            StoringBody::new(body, pending, cache.max_object_bytes).boxed_unsync()
        }
        None => body,
    };
    // Later hits of this object may be compressed: caches after this one must know.
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if behavior.policy.compress
        && parts.status == StatusCode::OK
        && length.is_some_and(|length| compress::compressible(&parts.headers, length))
    {
        compress::vary_on_accept_encoding(&mut parts.headers);
    }
    for_client(&mut parts.headers, served);
    Response::from_parts(parts, body)
}

/// What [`store_whole`] did with an answer.
enum Whole {
    /// Read and stored.
    Stored(Arc<Stored>),
    /// Not to be kept (or no room for its copy now): the answer, its body unread.
    Declined(Response<EdgeBody>),
    /// The origin's body broke off or stalled: nothing to answer with.
    BrokeOff,
}

/// Reads and stores a whole answer the cache may keep, when its length is known and within
/// the object limit (and the copies in progress have room for it); each of its frames must
/// come within `timeout` of the one before.
async fn store_whole(
    cache: &Arc<Cache>,
    behavior: &Behavior,
    fetched: &Fetched<'_>,
    response: Response<EdgeBody>,
    timeout: Duration,
) -> Whole {
    let exchange = Exchange {
        method: &fetched.method,
        request: fetched.client_headers,
        status: response.status(),
        response: response.headers(),
        request_time: fetched.request_time,
        response_time: SystemTime::now(),
    };
    let length = response
        .body()
        .size_hint()
        .exact()
        .filter(|length| *length <= cache.max_object_bytes as u64);
    let (Some(freshness), Some(length)) = (
        freshness::storable(&exchange, &behavior.policy.ttl)
            .ok()
            .filter(|_| response.status() == StatusCode::OK),
        length,
    ) else {
        return Whole::Declined(response);
    };
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    if !cache.reserve_copy(length) {
        return Whole::Declined(response);
    }
    let (parts, mut body) = response.into_parts();
    let mut read = BytesMut::with_capacity(length);
    let whole = loop {
        match tokio::time::timeout(timeout, body.frame()).await {
            Ok(None) => break read.len() == length,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if read.len() + data.len() > length {
                        break false;
                    }
                    read.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(_))) | Err(_) => break false,
        }
    };
    cache.release_copy(length);
    if !whole {
        return Whole::BrokeOff;
    }
    let mut headers = parts.headers;
    validation::strip_unstored(&mut headers);
    let stored = Arc::new(Stored {
        status: parts.status,
        variant: Variant::capture(
            fetched.client_headers,
            &key::vary_fields(&headers),
            &behavior.policy.key,
        ),
        tags: tags(&headers),
        headers,
        body: read.freeze(),
        freshness,
        host: fetched.host.into(),
        path: fetched.path.into(),
        encoded: Box::new([]),
    });
    cache.insert(Arc::clone(&fetched.key), Arc::clone(&stored), fetched.since);
    Whole::Stored(stored)
}

/// The client's range cut from a whole 200 answer of known length as it streams (206, or
/// 416), and `true`; the answer as it is, and `false`, when there is nothing to cut (no
/// range the client may have, another status, a length not known).
fn cut_range(response: Response<EdgeBody>, client: &HeaderMap) -> (Response<EdgeBody>, bool) {
    let Some(length) = response
        .body()
        .size_hint()
        .exact()
        .filter(|_| response.status() == StatusCode::OK)
    else {
        return (response, false);
    };
    let (mut parts, body) = response.into_parts();
    match range::requested(client, &parts.headers, length) {
        Ranged::Whole => (Response::from_parts(parts, body), false),
        Ranged::Part(part) => {
            parts.status = StatusCode::PARTIAL_CONTENT;
            if let Ok(value) =
                HeaderValue::try_from(format!("bytes {}-{}/{length}", part.start, part.end - 1))
            {
                parts.headers.insert(header::CONTENT_RANGE, value);
            }
            parts.headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(part.end - part.start),
            );
            let cut = RangeBody {
                inner: body,
                skip: part.start,
                left: part.end - part.start,
            };
            (Response::from_parts(parts, cut.boxed_unsync()), true)
        }
        Ranged::Unsatisfiable => {
            parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(value) = HeaderValue::try_from(format!("bytes */{length}")) {
                parts.headers.insert(header::CONTENT_RANGE, value);
            }
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            (Response::from_parts(parts, upstream::empty()), true)
        }
    }
}

/// A body's bytes from `skip` on, `left` of them; the rest is not read.
struct RangeBody {
    inner: EdgeBody,
    skip: u64,
    left: u64,
}

impl Body for RangeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            let frame =
                match std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_frame(context)) {
                    None => {
                        return std::task::Poll::Ready(Some(Err(BoxError::from(
                            "the origin's answer ended before the range",
                        ))));
                    }
                    Some(Err(error)) => return std::task::Poll::Ready(Some(Err(error))),
                    Some(Ok(frame)) => frame,
                };
            let Ok(mut data) = frame.into_data() else {
                // Trailers of a whole answer: not the range's.
                continue;
            };
            let length = data.len() as u64;
            if self.skip >= length {
                self.skip -= length;
                continue;
            }
            let start = usize::try_from(self.skip).unwrap_or(usize::MAX);
            self.skip = 0;
            let take = (length - start as u64).min(self.left);
            data = data.slice(start..start + take as usize);
            self.left -= take;
            return std::task::Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The headers the client sees: what the cache did in (the surrogates' fields go in
/// [`Behavior::edit_response`], for clients that are not another edge).
fn for_client(headers: &mut HeaderMap, served: Served) {
    let (x_cache, timing) = served.header();
    headers.insert(X_CACHE.clone(), x_cache);
    headers.append(SERVER_TIMING.clone(), timing);
}

/// An answer from a stored response: the stored status, headers and body with the current
/// `Age`, or a 304 when the client's validators match it.
fn serve<B>(
    stored: &Stored,
    request: &Request<B>,
    served: Served,
    behavior: &Behavior,
    now: SystemTime,
) -> Response<EdgeBody> {
    match served {
        Served::Hit => behavior.metrics.answered(&behavior.metrics.hit),
        Served::Stale => behavior.metrics.answered(&behavior.metrics.stale),
        Served::Revalidated => behavior.metrics.answered(&behavior.metrics.revalidated),
        Served::Miss => behavior.metrics.answered(&behavior.metrics.miss),
    };
    let age = stored
        .freshness
        .age(now)
        .as_secs()
        .min(securecart_cache::Seconds::MAX);
    let mut response = if stored.status.is_success()
        && validation::client_not_modified(request.headers(), &stored.headers)
    {
        let mut response = Response::new(upstream::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        *response.headers_mut() = validation::not_modified_headers(&stored.headers);
        response
    } else {
        let length = stored.body.len() as u64;
        let ranged = if stored.status == StatusCode::OK {
            range::requested(request.headers(), &stored.headers, length)
        } else {
            Ranged::Whole
        };
        let encoding = answer_encoding(stored, request, behavior)
            .filter(|encoding| stored.encoded(*encoding).is_some());
        let (status, body, content_range) = match ranged {
            Ranged::Whole => (
                stored.status,
                encoding
                    .and_then(|encoding| stored.encoded(encoding))
                    .unwrap_or(&stored.body)
                    .clone(),
                None,
            ),
            Ranged::Part(part) => (
                StatusCode::PARTIAL_CONTENT,
                // Within the body: `requested` keeps the range inside `length`.
                stored.body.slice(part.start as usize..part.end as usize),
                Some(format!("bytes {}-{}/{length}", part.start, part.end - 1)),
            ),
            Ranged::Unsatisfiable => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Bytes::new(),
                Some(format!("bytes */{length}")),
            ),
        };
        let head = request.method() == Method::HEAD;
        if !head {
            behavior.metrics.bytes_served.inc_by(body.len() as u64);
        }
        let mut response = Response::new(if head {
            upstream::empty()
        } else {
            upstream::full(body.clone())
        });
        *response.status_mut() = status;
        *response.headers_mut() = stored.headers.clone();
        if behavior.policy.compress
            && stored.status == StatusCode::OK
            && compress::compressible(&stored.headers, stored.body.len())
        {
            compress::vary_on_accept_encoding(response.headers_mut());
        }
        if let Some(encoding) = encoding.filter(|_| status == StatusCode::OK) {
            response.headers_mut().insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            );
            compress::weaken_etag(response.headers_mut());
        }
        if let Some(content_range) = content_range
            && let Ok(value) = HeaderValue::try_from(content_range)
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        if !matches!(status.as_u16(), 204 | 304) {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        response
    };
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(age));
    for_client(response.headers_mut(), served);
    response
}

fn gateway_timeout() -> Response<EdgeBody> {
    let mut response = Response::new(upstream::empty());
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response
}

/// A response's tags, for invalidation by tag: `Surrogate-Key` (space-separated, Fastly's)
/// and `Cache-Tag` (comma-separated, Cloudflare's).
fn tags(headers: &HeaderMap) -> Box<[Box<str>]> {
    let spaced = headers
        .get_all(&SURROGATE_KEY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(str::split_whitespace);
    let listed = securecart_cache::directives::list_members(headers, &CACHE_TAG);
    spaced.chain(listed).map(Box::from).collect()
}

/// The path and query of a `Location` or `Content-Location` on the request's own host:
/// absolute on the same host, or relative to the request's path; `None` elsewhere.
fn same_host_target(
    location: &str,
    host: &str,
    request_path: &str,
) -> Option<(String, Option<String>)> {
    let split = |target: &str| match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    if location.contains("://") || location.starts_with("//") {
        let uri: http::Uri = if location.starts_with("//") {
            format!("http:{location}").parse().ok()?
        } else {
            location.parse().ok()?
        };
        if !uri.authority()?.host().eq_ignore_ascii_case(host) {
            return None;
        }
        return Some((uri.path().to_owned(), uri.query().map(str::to_owned)));
    }
    let location = location.split('#').next().unwrap_or_default();
    if location.starts_with('/') {
        return Some(split(location));
    }
    let directory = request_path
        .rsplit_once('/')
        .map_or("", |(directory, _)| directory);
    Some(split(&format!("{directory}/{location}")))
}

/// A response on its way to be stored once its body has passed whole.
struct Pending {
    cache: Arc<Cache>,
    key: Arc<str>,
    stored: Stored,
    /// The key's invalidations before the fetch (see [`Generation`]).
    since: Generation,
    /// Ends the object's fetch for coalesced requests when the copy is stored or given up
    /// (when this is dropped).
    _guard: Option<FlightGuard>,
}

/// A response body that copies what passes to the client, and stores the response when it
/// ends whole (and not over the largest object size).
struct StoringBody {
    inner: EdgeBody,
    pending: Option<Pending>,
    copy: BytesMut,
    limit: usize,
    /// What the copy took of the cache's budget for copies (`Cache::reserve_copy`).
    reserved: usize,
}

impl Drop for StoringBody {
    fn drop(&mut self) {
        self.give_up();
    }
}

impl StoringBody {
    fn new(inner: EdgeBody, pending: Pending, limit: usize) -> Self {
        let expected = inner.size_hint().exact().map_or(0, |length| {
            usize::try_from(length).unwrap_or(limit).min(limit)
        });
        // The copy's room is taken from the cache's budget for copies up front.
        let reserved = pending.cache.reserve_copy(expected);
        let mut body = Self {
            inner,
            pending: reserved.then_some(pending),
            copy: BytesMut::with_capacity(if reserved { expected } else { 0 }),
            limit,
            reserved: if reserved { expected } else { 0 },
        };
        // An empty body (a 204, say) may never be polled: it is whole already.
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    /// Gives the copy up: the answer streams on unstored.
    fn give_up(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.cache.release_copy(self.reserved);
        }
        self.reserved = 0;
        self.copy = BytesMut::new();
    }

    fn finish(&mut self) {
        if let Some(mut pending) = self.pending.take() {
            pending
                .cache
                .release_copy(std::mem::take(&mut self.reserved));
            let declared = pending
                .stored
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<usize>().ok());
            if declared.is_some_and(|declared| declared != self.copy.len()) {
                return;
            }
            pending.stored.body = std::mem::take(&mut self.copy).freeze();
            pending
                .cache
                .insert(pending.key, Arc::new(pending.stored), pending.since);
        }
    }
}

impl Body for StoringBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = std::pin::Pin::new(&mut this.inner).poll_frame(context);
        match &frame {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if this.pending.is_some() {
                    if let Some(data) = frame.data_ref() {
                        let length = this.copy.len() + data.len();
                        let beyond = length.saturating_sub(this.reserved);
                        let fits = length <= this.limit
                            && (beyond == 0
                                || this
                                    .pending
                                    .as_ref()
                                    .is_some_and(|pending| pending.cache.reserve_copy(beyond)));
                        if fits {
                            this.reserved += beyond;
                            this.copy.extend_from_slice(data);
                        } else {
                            this.give_up();
                        }
                    }
                    if this.inner.is_end_stream() {
                        this.finish();
                    }
                }
            }
            std::task::Poll::Ready(None) => this.finish(),
            std::task::Poll::Ready(Some(Err(_))) => this.give_up(),
            std::task::Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::{same_host_target, tags};

    #[test]
    fn tags_come_from_surrogate_key_and_cache_tag() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            "surrogate-key",
            "product-42  images".parse().expect("value"),
        );
        headers.append("surrogate-key", "sale".parse().expect("value"));
        headers.append(
            "cache-tag",
            "product-42,catalog, shoes".parse().expect("value"),
        );
        let found = tags(&headers);
        let found: Vec<&str> = found.iter().map(|tag| &**tag).collect();
        assert_eq!(
            found,
            [
                "product-42",
                "images",
                "sale",
                "product-42",
                "catalog",
                "shoes"
            ]
        );
        assert!(tags(&http::HeaderMap::new()).is_empty());
    }

    #[test]
    fn locations_on_the_same_host() {
        let cases = [
            ("/a/b?x=1", Some(("/a/b", Some("x=1")))),
            ("http://shop.test/c", Some(("/c", None))),
            ("http://SHOP.test:8080/c", Some(("/c", None))),
            ("http://other.test/c", None),
            ("d", Some(("/dir/d", None))),
        ];
        for (location, expected) in cases {
            let found = same_host_target(location, "shop.test", "/dir/page");
            let expected = expected.map(|(path, query): (&str, Option<&str>)| {
                (path.to_owned(), query.map(str::to_owned))
            });
            assert_eq!(found, expected, "{location}");
        }
    }
}
