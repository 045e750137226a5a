//! The edge's control plane: the configuration in force, reloads that swap it without
//! failing a request in flight or closing a connection, and the admin API that changes it
//! (ALB's RegisterTargets, DeregisterTargets and DescribeTargetHealth).
//!
//! Each listener's pipeline sits in an [`ArcSwap`] slot that connections read once per
//! request: a reload compiles new pipelines and swaps them in; requests already running keep
//! the pipeline they started with. Targets that stay in a group across a reload keep their
//! health, load and latency state; their health checks restart with the new settings.
//!
//! A target that leaves its group (deregistered, or gone from a reloaded configuration)
//! drains, as with ALB's deregistration delay: it takes no new request, its requests in
//! flight finish, and it is forgotten as soon as none is left, or cut off when the group's
//! delay ends. DescribeTargetHealth shows it as `draining` meanwhile.
//!
//! **Invariant:** a reload that fails to compile changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use securecart_telemetry::Readiness;
use serde::Deserialize;
use tokio::sync::{Mutex, watch};

use crate::balancer::{CheckOutcome, Target, TargetGroup};
use crate::cache::CacheStage;
use crate::config::{EdgeConfig, Limits};
use crate::metrics::EdgeMetrics;
use crate::pipeline::Pipeline;
use crate::pool::Pools;
use crate::{StartError, compile_listener, health};

/// Where a reload reads the configuration from (the binary re-reads its topology file).
pub type ReloadSource = Arc<dyn Fn() -> Result<EdgeConfig, String> + Send + Sync>;

/// What the listeners' pipelines share and what a reload replaces.
pub struct Control {
    pub(crate) slots: Vec<Arc<ArcSwap<Pipeline>>>,
    config: Mutex<EdgeConfig>,
    checkers: Mutex<watch::Sender<bool>>,
    pools: Pools,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) readiness: Readiness,
    listener_ports: Vec<u16>,
    admin_token: Option<String>,
    reload_source: std::sync::OnceLock<ReloadSource>,
    draining: Arc<Mutex<Vec<Draining>>>,
    /// The cache, made by the first configuration that has one and kept across reloads
    /// (its capacity is the first configuration's).
    cache: std::sync::OnceLock<Arc<securecart_cache::Cache>>,
    /// The shield in force: kept across reloads that keep its limits (and so the clients'
    /// rates), made anew by one that changes them.
    shield: arc_swap::ArcSwapOption<crate::shield::Shield>,
    /// Each TLS listener's certificates, which a reload that changes them swaps.
    certificates: Vec<Option<crate::tls::Certificates>>,
}

/// A target that left its group and finishes its requests in flight.
#[derive(Debug, Clone)]
struct Draining {
    group: String,
    target: Arc<Target>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("listeners", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// Why a change of configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration does not compile.
    #[error(transparent)]
    Invalid(#[from] StartError),
    /// Listeners (their number, names, addresses, whether they speak TLS) cannot change
    /// without a restart; their certificates can.
    #[error("listeners cannot change on reload (restart the edge to change them)")]
    ListenersChanged,
    /// A listener's mutual TLS (its mode, or its trust store's certificates) or TLS policy
    /// changed: they are built into its handshakes, and change with a restart.
    #[error(
        "listener {0}: its mutual TLS (mode or trust store) or TLS policy changed; restart the edge to apply it"
    )]
    TlsChanged(String),
    /// No configuration source was given to reload from.
    #[error("this edge has no configuration source to reload from")]
    NoSource,
    /// The source could not produce a configuration.
    #[error("{0}")]
    Source(String),
    /// A target group named by an admin call does not exist.
    #[error("target group `{0}` does not exist")]
    UnknownTargetGroup(String),
}

/// Builds the target groups of `config`, reusing the targets of `previous` that stay.
fn build_groups(
    config: &EdgeConfig,
    previous: &[TargetGroup],
    pools: &Pools,
    metrics: &EdgeMetrics,
) -> Arc<[TargetGroup]> {
    config
        .target_groups
        .iter()
        .map(|group| {
            let mut built = TargetGroup::new(
                group,
                previous.iter().find(|old| old.name == group.name),
                pools,
            );
            built.metrics = Some(metrics.group(&group.name));
            built
        })
        .collect()
}

impl Control {
    /// Compiles the first configuration.
    pub(crate) fn new(
        config: EdgeConfig,
        listener_ports: Vec<u16>,
        pools: Pools,
        metrics: EdgeMetrics,
        readiness: Readiness,
        certificates: Vec<Option<crate::tls::Certificates>>,
    ) -> Result<Self, StartError> {
        let groups = build_groups(&config, &[], &pools, &metrics);
        let cache = std::sync::OnceLock::new();
        let shield = config
            .shield
            .clone()
            .map(|limits| Arc::new(crate::shield::Shield::new(limits)));
        let shield = arc_swap::ArcSwapOption::new(shield);
        let made = Self::cache_for(&cache, &config, &metrics)?;
        let pipelines = Self::compile(
            &config,
            &groups,
            &listener_ports,
            &metrics,
            made.as_ref(),
            shield.load_full(),
        )?;
        if let Some(made) = made {
            cache.get_or_init(|| made);
        }
        let (stop, _) = watch::channel(false);
        Ok(Self {
            slots: pipelines
                .into_iter()
                .map(|pipeline| Arc::new(ArcSwap::from(pipeline)))
                .collect(),
            admin_token: config.admin_token.clone(),
            config: Mutex::new(config),
            checkers: Mutex::new(stop),
            pools,
            metrics,
            readiness,
            listener_ports,
            reload_source: std::sync::OnceLock::new(),
            draining: Arc::default(),
            cache,
            shield,
            certificates,
        })
    }

    /// The edge's cache, made now if `config` is the first to ask for one; a cache made
    /// now is kept (in `cache`) only once its configuration compiled, so that a reload
    /// that fails leaves none behind.
    fn cache_for(
        cache: &std::sync::OnceLock<Arc<securecart_cache::Cache>>,
        config: &EdgeConfig,
        metrics: &EdgeMetrics,
    ) -> Result<Option<Arc<securecart_cache::Cache>>, StartError> {
        let Some(settings) = config.cache.as_ref() else {
            return Ok(None);
        };
        if let Some(made) = cache.get() {
            return Ok(Some(Arc::clone(made)));
        }
        let evictions = metrics.cache_evictions.clone();
        let mut made = securecart_cache::Cache::new(
            settings.capacity_bytes,
            settings.max_object_bytes,
            move || {
                evictions.inc();
            },
        );
        if let Some(disk) = &settings.disk {
            let opened = securecart_cache::Disk::open(&disk.directory, disk.capacity_bytes)
                .map_err(|source| StartError::CacheDisk {
                    directory: disk.directory.clone(),
                    source,
                })?;
            let (objects, bytes) = opened.usage();
            tracing::info!(directory = %disk.directory.display(), objects, bytes, "cache disk tier opened");
            made = made.with_disk(opened);
        }
        Ok(Some(Arc::new(made)))
    }

    /// The edge's shield, if its configuration has one.
    pub fn shield(&self) -> Option<Arc<crate::shield::Shield>> {
        self.shield.load_full()
    }

    /// The edge's cache, if its configuration has one.
    pub fn cache(&self) -> Option<&Arc<securecart_cache::Cache>> {
        self.cache.get()
    }

    fn compile(
        config: &EdgeConfig,
        groups: &Arc<[TargetGroup]>,
        listener_ports: &[u16],
        metrics: &EdgeMetrics,
        cache: Option<&Arc<securecart_cache::Cache>>,
        shield: Option<Arc<crate::shield::Shield>>,
    ) -> Result<Vec<Arc<Pipeline>>, StartError> {
        if let Some(group) = config
            .target_groups
            .iter()
            .find(|group| group.targets.len() > crate::balancer::MAX_TARGETS)
        {
            return Err(StartError::TooManyTargets(group.name.clone()));
        }
        // Whether some listener tells its targets its clients' TLS sessions.
        let tls_headers = config.listeners.iter().any(|listener| listener.tls_headers);
        // Whether some listener asks for its clients' certificates.
        let mutual_tls = config.listeners.iter().any(|listener| {
            listener
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_auth != crate::tls::ClientAuth::Off)
        });
        // Whether some web ACL adds headers for the targets.
        let inserting = config.listeners.iter().any(|listener| {
            listener
                .waf
                .as_ref()
                .is_some_and(|waf| !waf.insert_headers.is_empty())
        });
        config
            .listeners
            .iter()
            .zip(listener_ports)
            .map(|(listener, port)| {
                Ok(Arc::new(Pipeline {
                    listener: listener.name.clone(),
                    listener_port: *port,
                    port_header: http::HeaderValue::from(*port),
                    protocol: if listener.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    },
                    rules: compile_listener(listener, groups)?,
                    groups: Arc::clone(groups),
                    metrics: metrics.clone(),
                    limits: config.limits.clone(),
                    error_log: Default::default(),
                    waf: listener.waf.clone(),
                    shield: shield.clone(),
                    response_headers: listener.response_headers.clone().into(),
                    remove_response_headers: listener.remove_response_headers.clone().into(),
                    forwarded_for: listener.forwarded_for,
                    drop_invalid_header_fields: listener.drop_invalid_header_fields,
                    desync_mode: listener.desync_mitigation_mode,
                    non_compliant: metrics.desync_counters(&listener.name),
                    client_certificates: mutual_tls,
                    tls_headers: listener.tls_headers,
                    remove_tls_headers: tls_headers,
                    remove_inserted: inserting,
                    cache: cache
                        .zip(config.cache.as_ref())
                        .map(|(cache, settings)| {
                            CacheStage::new(Arc::clone(cache), settings, metrics, groups)
                        })
                        .transpose()
                        .map_err(|(behavior, group, role)| StartError::UnknownCacheGroup {
                            behavior,
                            group,
                            role,
                        })?,
                }))
            })
            .collect()
    }

    /// The target groups in force.
    pub fn groups(&self) -> Arc<[TargetGroup]> {
        self.slots.first().map_or_else(
            || Arc::from(Vec::new()),
            |slot| Arc::clone(&slot.load().groups),
        )
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> Limits {
        self.slots
            .first()
            .map_or_else(Limits::default, |slot| slot.load().limits.clone())
    }

    /// Starts the health checks of the groups in force, stopping those of the configuration
    /// before.
    pub(crate) async fn restart_health_checks(&self) {
        let (stop, stopped) = watch::channel(false);
        let previous = std::mem::replace(&mut *self.checkers.lock().await, stop);
        let _ = previous.send(true);
        let groups = self.groups();
        for group in groups.iter() {
            self.metrics.set_target_health(group);
        }
        health::spawn_checkers(&groups, &self.metrics, &self.readiness, &stopped);
    }

    /// Stops every health check.
    pub(crate) async fn stop_health_checks(&self) {
        let _ = self.checkers.lock().await.send(true);
    }

    /// Replaces the configuration: listeners keep their sockets; rules, actions and target
    /// groups are replaced. Nothing changes if the new configuration does not compile.
    pub async fn apply(&self, config: EdgeConfig) -> Result<(), ReloadError> {
        self.swap(|| Ok(config)).await
    }

    /// Applies the configuration `read` gives, read while the configuration's lock is held:
    /// of two reloads at once, the one that read the source last is the one in force.
    async fn swap(
        &self,
        read: impl FnOnce() -> Result<EdgeConfig, ReloadError>,
    ) -> Result<(), ReloadError> {
        let mut current = self.config.lock().await;
        let previous = self.apply_locked(&mut current, read()?)?;
        drop(current);
        self.drain_leavers(&previous).await;
        self.restart_health_checks().await;
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// Swaps in a configuration while the caller holds the configuration's lock, so that two
    /// changes never start from the same configuration and lose one another. Returns the
    /// groups it replaced.
    fn apply_locked(
        &self,
        current: &mut EdgeConfig,
        config: EdgeConfig,
    ) -> Result<Arc<[TargetGroup]>, ReloadError> {
        let same_listeners = current.listeners.len() == config.listeners.len()
            && current
                .listeners
                .iter()
                .zip(&config.listeners)
                .all(|(old, new)| {
                    old.name == new.name
                        && old.listen == new.listen
                        && old.tls.is_some() == new.tls.is_some()
                });
        if !same_listeners {
            return Err(ReloadError::ListenersChanged);
        }
        // Mutual TLS and the TLS policy are built into a listener's acceptor: they change
        // with a restart, as the listener's protocol does.
        if let Some(changed) = current
            .listeners
            .iter()
            .zip(&config.listeners)
            .find(|(old, new)| {
                old.tls.as_ref().map(|tls| (&tls.client_auth, tls.policy))
                    != new.tls.as_ref().map(|tls| (&tls.client_auth, tls.policy))
            })
        {
            return Err(ReloadError::TlsChanged(changed.1.name.clone()));
        }
        // New certificates are read before anything changes: one that does not load
        // refuses the reload, and the certificates in force stay.
        let mut new_certificates = Vec::new();
        for (index, (old, new)) in current.listeners.iter().zip(&config.listeners).enumerate() {
            if let Some(tls) = &new.tls
                && old.tls.as_ref() != Some(tls)
                && !tls.is_self_signed()
            {
                let certified = crate::tls::certified(tls).map_err(|source| StartError::Tls {
                    listener: new.name.clone(),
                    source,
                })?;
                new_certificates.push((index, certified));
            }
        }
        let previous = self.groups();
        let groups = build_groups(&config, &previous, &self.pools, &self.metrics);
        let shield = match (self.shield.load_full(), &config.shield) {
            (same, _) if config.shield == current.shield => same,
            (Some(old), Some(limits)) => Some(Arc::new(old.reconfigure(limits.clone()))),
            (None, Some(limits)) => Some(Arc::new(crate::shield::Shield::new(limits.clone()))),
            (_, None) => None,
        };
        let made = Self::cache_for(&self.cache, &config, &self.metrics)?;
        let pipelines = Self::compile(
            &config,
            &groups,
            &self.listener_ports,
            &self.metrics,
            made.as_ref(),
            shield.clone(),
        )?;
        if let Some(made) = made {
            self.cache.get_or_init(|| made);
        }
        self.shield.store(shield);
        for (slot, pipeline) in self.slots.iter().zip(pipelines) {
            slot.store(pipeline);
        }
        for (index, certified) in new_certificates {
            if let Some(Some(certificates)) = self.certificates.get(index) {
                certificates.store(Arc::new(certified));
            }
        }
        *current = config;
        Ok(previous)
    }

    /// Drains every target of `previous` that is in no group now: it finishes its requests
    /// in flight within its group's deregistration delay.
    async fn drain_leavers(&self, previous: &[TargetGroup]) {
        let groups = self.groups();
        let mut draining = self.draining.lock().await;
        for group in previous {
            for target in &group.targets {
                let stays = groups
                    .iter()
                    .any(|group| group.targets.iter().any(|kept| Arc::ptr_eq(kept, target)));
                if stays {
                    continue;
                }
                let entry = Draining {
                    group: group.name.clone(),
                    target: Arc::clone(target),
                };
                draining.push(entry.clone());
                let list = Arc::clone(&self.draining);
                let delay = group.deregistration_delay;
                tokio::spawn(async move {
                    let address = entry.target.address;
                    if tokio::time::timeout(delay, entry.target.drained())
                        .await
                        .is_ok()
                    {
                        tracing::info!(group = %entry.group, target = %address, "target drained");
                    } else {
                        entry.target.close();
                        tracing::warn!(group = %entry.group, target = %address, in_flight = entry.target.outstanding(), "deregistration delay ended; requests still in flight are cut off");
                    }
                    list.lock()
                        .await
                        .retain(|other| !Arc::ptr_eq(&other.target, &entry.target));
                });
            }
        }
    }

    /// The health of every target, draining ones included, like ALB's
    /// DescribeTargetHealth.
    pub async fn describe(&self) -> serde_json::Value {
        let draining = self.draining.lock().await.clone();
        describe_target_health(&self.groups(), &draining)
    }

    /// Sets where [`Control::reload`] reads the configuration from.
    pub fn set_reload_source(&self, source: ReloadSource) {
        let _ = self.reload_source.set(source);
    }

    /// Reads the configuration again from its source and applies it.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let source = self.reload_source.get().ok_or(ReloadError::NoSource)?;
        self.swap(|| source().map_err(ReloadError::Source)).await
    }

    /// Adds a target to a group (nothing if it is already there).
    pub async fn register(&self, group: &str, address: SocketAddr) -> Result<(), ReloadError> {
        self.edit_targets(group, |targets| {
            if !targets.contains(&address) {
                targets.push(address);
            }
        })
        .await
    }

    /// Removes a target from a group. New requests stop going to it at once; requests in
    /// flight to it finish within the group's deregistration delay.
    pub async fn deregister(&self, group: &str, address: SocketAddr) -> Result<(), ReloadError> {
        self.edit_targets(group, |targets| targets.retain(|target| *target != address))
            .await
    }

    /// Applies the configuration in force with one group's targets edited.
    async fn edit_targets(
        &self,
        group: &str,
        edit: impl FnOnce(&mut Vec<SocketAddr>),
    ) -> Result<(), ReloadError> {
        let mut current = self.config.lock().await;
        let mut config = current.clone();
        let target_group = config
            .target_groups
            .iter_mut()
            .find(|candidate| candidate.name == group)
            .ok_or_else(|| ReloadError::UnknownTargetGroup(group.to_owned()))?;
        edit(&mut target_group.targets);
        let previous = self.apply_locked(&mut current, config)?;
        drop(current);
        self.drain_leavers(&previous).await;
        self.restart_health_checks().await;
        Ok(())
    }
}

/// The health of every target, like ALB's DescribeTargetHealth: its state (`initial`,
/// `healthy`, `unhealthy`, or `draining` for one that left its group and still finishes
/// requests) and, but when healthy, ALB's reason code and a description; and what anomaly
/// detection found (ALB's `AnomalyDetection`: `normal` or `anomalous`, and whether
/// mitigation sends it less than its share); and per group, whether it fails open (fewer
/// healthy targets than its minimum, so that requests go to all of them) and whether it
/// meets its DNS failover minimum.
fn describe_target_health(groups: &[TargetGroup], draining: &[Draining]) -> serde_json::Value {
    // `mitigates`: whether the target's group sends anomalous targets less (a draining
    // target is sent nothing new).
    let target = |target: &Target, leaving: bool, mitigates: bool| {
        let (state, reason, description) = target_health(target, leaving);
        let anomaly = target.anomaly();
        serde_json::json!({
            "address": target.address.to_string(),
            "state": state,
            "reason": reason,
            "description": description,
            "in_flight": target.outstanding(),
            "anomaly_detection": {
                "result": if anomaly.anomalous { "anomalous" } else { "normal" },
                "mitigation_in_effect": mitigates && anomaly.mitigated(),
            },
        })
    };
    let draining_in = |name: &str| {
        draining
            .iter()
            .filter(|entry| entry.group == name)
            .map(|entry| target(&entry.target, true, false))
            .collect::<Vec<_>>()
    };
    let mut described: Vec<serde_json::Value> = groups
        .iter()
        .map(|group| {
            let mut targets: Vec<_> = group
                .targets
                .iter()
                .map(|each| target(each, false, group.mitigates()))
                .collect();
            targets.extend(draining_in(&group.name));
            serde_json::json!({
                "name": group.name,
                "healthy": group.healthy_count(),
                // Too few healthy targets: requests go to all of them.
                "fails_open": group.fails_open(),
                // Enough healthy targets for DNS to send clients here (ALB's DNS failover).
                "dns_healthy": group.dns_healthy(),
                "targets": targets,
            })
        })
        .collect();
    // Groups that a reload removed, while their targets drain.
    let mut gone: Vec<&str> = draining
        .iter()
        .map(|entry| entry.group.as_str())
        .filter(|name| !groups.iter().any(|group| group.name == *name))
        .collect();
    gone.sort_unstable();
    gone.dedup();
    for name in gone {
        described.push(serde_json::json!({
            "name": name,
            "healthy": 0,
            "targets": draining_in(name),
        }));
    }
    serde_json::json!({ "target_groups": described })
}

/// A target's state, reason code and description, as ALB's DescribeTargetHealth gives
/// them (ALB's codes; an outlier ejection, which ALB does not do, has one of its own).
fn target_health(
    target: &Target,
    leaving: bool,
) -> (&'static str, Option<&'static str>, Option<String>) {
    if leaving {
        return (
            "draining",
            Some("Target.DeregistrationInProgress"),
            Some("Target deregistration is in progress".to_owned()),
        );
    }
    if target.is_healthy() {
        return ("healthy", None, None);
    }
    if target.is_ejected() {
        return (
            "unhealthy",
            Some("Target.OutlierEjected"),
            Some("Ejected by outlier detection after errors in a row".to_owned()),
        );
    }
    let report = target.check_report();
    if !report.settled {
        return (
            "initial",
            Some("Elb.InitialHealthChecking"),
            Some("Initial health checks in progress".to_owned()),
        );
    }
    let (reason, description) = match report.outcome {
        CheckOutcome::Mismatch(status) => (
            "Target.ResponseCodeMismatch",
            format!("Health checks failed with these codes: [{status}]"),
        ),
        CheckOutcome::GrpcMismatch(code) => (
            "Target.ResponseCodeMismatch",
            format!("Health checks failed with these gRPC codes: [{code}]"),
        ),
        CheckOutcome::TimedOut => ("Target.Timeout", "Request timed out".to_owned()),
        CheckOutcome::Failed | CheckOutcome::Unchecked => (
            "Target.FailedHealthChecks",
            "Health checks failed".to_owned(),
        ),
        CheckOutcome::Passed => (
            "Target.FailedHealthChecks",
            "Health checks passing, fewer in a row than the healthy threshold".to_owned(),
        ),
    };
    ("unhealthy", Some(reason), Some(description))
}

/// The edge's own admin routes.
pub(crate) fn admin_routes(control: Arc<Control>) -> axum::Router {
    axum::Router::new()
        .route("/targets", get(describe))
        .route("/targets/register", post(register))
        .route("/targets/deregister", post(deregister))
        .route("/reload", post(reload))
        .route("/cache", get(cache_usage))
        .route("/cache/invalidate", post(invalidate))
        .route("/shield", get(shield_state))
        .route("/waf/sampled", get(waf_sampled))
        .with_state(control)
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": { "code": code, "message": message.to_string() } })),
    )
        .into_response()
}

/// Mutations need `Authorization: Bearer <token>`; an edge without a token refuses them.
/// `Some` is the refusal to send.
fn refusal(control: &Control, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &control.admin_token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "this edge has no admin token, so its configuration cannot be changed through the API",
        ));
    };
    (!securecart_telemetry::admin::bears_token(headers, token)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required",
        )
    })
}

async fn outcome(result: Result<(), ReloadError>, control: &Control) -> Response {
    match result {
        Ok(()) => Json(control.describe().await).into_response(),
        Err(ReloadError::UnknownTargetGroup(group)) => error(
            StatusCode::NOT_FOUND,
            "unknown_target_group",
            format!("target group `{group}` does not exist"),
        ),
        Err(reason) => error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", reason),
    }
}

async fn describe(State(control): State<Arc<Control>>) -> Json<serde_json::Value> {
    Json(control.describe().await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetChange {
    target_group: String,
    address: SocketAddr,
}

/// Which change an admin call asks for.
#[derive(Debug, Clone, Copy)]
enum Change {
    Register,
    Deregister,
}

async fn change_targets(
    change: Change,
    control: Arc<Control>,
    headers: HeaderMap,
    body: Result<Json<TargetChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refusal) = refusal(&control, &headers) {
        return refusal;
    }
    let Json(target) = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), "invalid_body", rejection.body_text()),
    };
    let result = match change {
        Change::Register => control.register(&target.target_group, target.address).await,
        Change::Deregister => {
            control
                .deregister(&target.target_group, target.address)
                .await
        }
    };
    outcome(result, &control).await
}

async fn register(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: Result<Json<TargetChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    change_targets(Change::Register, control, headers, body).await
}

async fn deregister(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: Result<Json<TargetChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    change_targets(Change::Deregister, control, headers, body).await
}

/// What to drop from the cache: objects whose path matches a pattern (`*` and `?`
/// wildcards, as CloudFront's invalidation paths), or that carry a tag (`Surrogate-Key`,
/// `Cache-Tag`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalidation {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

async fn invalidate(
    State(control): State<Arc<Control>>,
    headers: HeaderMap,
    body: Result<Json<Invalidation>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refusal) = refusal(&control, &headers) {
        return refusal;
    }
    let Json(invalidation) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            );
        }
    };
    if invalidation.paths.is_empty() && invalidation.tags.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name at least one path or tag to invalidate",
        );
    }
    if let Some(path) = invalidation
        .paths
        .iter()
        .find(|path| !path.starts_with('/'))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the path `{path}` must start with `/`"),
        );
    }
    let Some(cache) = control.cache() else {
        return error(StatusCode::CONFLICT, "no_cache", "this edge has no cache");
    };
    let invalidated = cache.remove_where(|_host, path, tags| {
        invalidation
            .paths
            .iter()
            .any(|pattern| crate::rules::glob_match(pattern.as_bytes(), path.as_bytes(), false))
            || tags.iter().any(|tag| {
                invalidation
                    .tags
                    .iter()
                    .any(|wanted| wanted.as_str() == tag.as_ref())
            })
    });
    tracing::info!(paths = ?invalidation.paths, tags = ?invalidation.tags, invalidated, "cache invalidated");
    Json(serde_json::json!({ "invalidated": invalidated })).into_response()
}

async fn cache_usage(State(control): State<Arc<Control>>) -> Response {
    let Some(cache) = control.cache() else {
        return error(StatusCode::NOT_FOUND, "no_cache", "this edge has no cache");
    };
    let ((keys, bytes), disk) = cache.usage();
    Json(serde_json::json!({
        "memory": { "keys": keys, "bytes": bytes, "evictions": cache.store.evictions() },
        "disk": disk.map(|(objects, bytes)| serde_json::json!({ "objects": objects, "bytes": bytes })),
        "fetches_under_way": cache.flights.len(),
    }))
    .into_response()
}

/// What `/waf/sampled` takes: one rule's samples, and how many.
#[derive(Debug, serde::Deserialize)]
struct SampledQuery {
    rule: Option<String>,
    limit: Option<usize>,
}

/// The latest requests the web ACLs blocked or counted, newest first (AWS WAF's sampled
/// requests): `?rule=ID` for one rule's, `?limit=N` for at most N (100 by default).
async fn waf_sampled(
    State(control): State<Arc<Control>>,
    query: Result<axum::extract::Query<SampledQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let axum::extract::Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            );
        }
    };
    let limit = query.limit.unwrap_or(100).min(crate::waf::MAX_SAMPLES);
    Json(serde_json::json!({
        "samples": control.metrics.waf_samples.latest(query.rule.as_deref(), limit),
    }))
    .into_response()
}

/// The shield's state: its requests in flight, the floods its automatic mitigation holds
/// back (the path, since when, the clients and the rate they are held to), and the paths'
/// baselines.
async fn shield_state(State(control): State<Arc<Control>>) -> Response {
    let Some(shield) = control.shield() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_shield",
            "this edge has no shield",
        );
    };
    Json(serde_json::json!({
        "requests_in_flight": shield.config().max_requests_in_flight.map(|_| shield.in_flight()),
        "automatic_mitigation": shield.config().mitigation.is_some(),
        "floods": shield.floods(),
        "baselines": shield.baselines(),
    }))
    .into_response()
}

async fn reload(State(control): State<Arc<Control>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refusal(&control, &headers) {
        return refusal;
    }
    outcome(control.reload().await, &control).await
}
