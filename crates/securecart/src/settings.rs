//! From the topology to the settings of each component: the only place that knows both the
//! topology's model and the components' configuration types.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use std::net::SocketAddr;

use securecart_edge::actions::{
    ActionConfig, FixedResponseConfig, ForwardConfig, RedirectConfig, RewriteConfig, WeightedGroup,
};
use securecart_edge::balancer::Algorithm;
use securecart_edge::config::{AnomalyDetection, MinimumHealthy, OutlierDetection};
use securecart_edge::forward::{ForwardedFor, XffMode};
use securecart_edge::guard::DesyncMode;
use securecart_edge::rules::{Conditions, Rule};
use securecart_edge::tls::{CertificatePem, ClientAuth, TlsConfig, TlsPolicy};
use securecart_edge::{
    EdgeConfig, HealthCheckConfig, Limits, ListenerConfig, TargetGroupConfig, UpstreamProtocol,
};
use securecart_shop::{ShopConfig, ShopService};
use securecart_telemetry::LogFormat;
use securecart_topology::{
    Algorithm as TopologyAlgorithm, DesyncMitigationMode, EMBEDDED_NAME, Listener, ListenerMtls,
    ListenerProtocol, Loaded, LogFormat as TopologyLogFormat, QueryStrings, Region, RuleAction,
    ServiceKind, Topology, XffHeaderProcessing,
};

use crate::cli::{LogFormatArg, ServiceArg};

/// The default topology, compiled in from the repository's `securecart.toml`.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../../../securecart.toml");

/// Loads the topology from a file, or the default one.
pub fn load_topology(file: Option<&Path>) -> anyhow::Result<Loaded> {
    match file {
        Some(path) => Ok(securecart_topology::load_file(path)?),
        None => Ok(securecart_topology::parse(DEFAULT_TOPOLOGY, EMBEDDED_NAME)?),
    }
}

/// The log format: the command line's, else the topology's.
pub fn log_format(topology: &Topology, flag: Option<LogFormatArg>) -> LogFormat {
    match flag {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => match topology.telemetry.log_format {
            TopologyLogFormat::Json => LogFormat::Json,
            TopologyLogFormat::Text => LogFormat::Text,
        },
    }
}

/// The region with this name, or an error listing the ones there are.
pub fn region<'t>(topology: &'t Topology, name: &str) -> anyhow::Result<&'t Region> {
    topology.region(name).ok_or_else(|| {
        let known: Vec<&str> = topology
            .regions
            .iter()
            .map(|region| region.name.as_str())
            .collect();
        anyhow!(
            "the topology has no region `{name}`; it has {}",
            known.join(", ")
        )
    })
}

/// The TLS settings of an https listener: its certificate files (relative to `base`, the
/// topology file's directory), or a self-signed certificate for `localhost` and the edge's
/// address.
fn tls_config(
    listener: &Listener,
    region: &Region,
    base: &Path,
) -> anyhow::Result<Option<TlsConfig>> {
    if listener.protocol != ListenerProtocol::Https {
        return Ok(None);
    }
    let client_auth = match &listener.mtls {
        ListenerMtls::Off => ClientAuth::Off,
        ListenerMtls::Passthrough => ClientAuth::Passthrough,
        ListenerMtls::Verify(file) => {
            let path = base.join(file);
            ClientAuth::Verify {
                source: path.display().to_string(),
                trust_store: std::fs::read(&path).with_context(|| {
                    format!(
                        "listener {}: cannot read the mutual TLS trust store {}",
                        listener.name,
                        path.display()
                    )
                })?,
            }
        }
    };
    let policy = TlsPolicy {
        tls13_only: listener.tls13_only,
        http2: listener.http2,
    };
    if listener.certificates.is_empty() {
        let names = vec!["localhost".to_owned(), region.edge.address.ip().to_string()];
        return Ok(Some(TlsConfig {
            certificates: vec![securecart_edge::tls::self_signed(&names)?],
            client_auth,
            policy,
        }));
    }
    let mut certificates = Vec::with_capacity(listener.certificates.len());
    for (cert, key) in &listener.certificates {
        let cert_path = base.join(cert);
        let key_path = base.join(key);
        certificates.push(CertificatePem {
            source: cert_path.display().to_string(),
            chain: std::fs::read(&cert_path).with_context(|| {
                format!(
                    "listener {}: cannot read certificate {}",
                    listener.name,
                    cert_path.display()
                )
            })?,
            key: std::fs::read(&key_path).with_context(|| {
                format!(
                    "listener {}: cannot read key {}",
                    listener.name,
                    key_path.display()
                )
            })?,
        });
    }
    Ok(Some(TlsConfig {
        certificates,
        client_auth,
        policy,
    }))
}

/// The directory that relative paths in a topology file are resolved against.
pub fn topology_base(file: Option<&Path>) -> PathBuf {
    file.and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The edge of a region; certificate files are read relative to `base`, and the cache's
/// disk tier (if the topology asks for one) lives under `data_dir`.
pub fn edge_config(
    topology: &Topology,
    region: &Region,
    base: &Path,
    data_dir: &Path,
) -> anyhow::Result<EdgeConfig> {
    let mut listeners = Vec::with_capacity(topology.edge.listeners.len());
    for listener in &topology.edge.listeners {
        listeners.push((listener, tls_config(listener, region, base)?));
    }
    // Each web ACL compiled once, for every listener that has it. Every region's edge may
    // fetch through this one as its origin shield.
    let peers: std::sync::Arc<[std::net::IpAddr]> = topology
        .regions
        .iter()
        .map(|region| region.edge.address.ip())
        .collect();
    let edge_waf = topology.edge.waf.as_ref().map(|waf| {
        waf_config(
            securecart_edge::waf::EDGE_ACL,
            waf,
            std::sync::Arc::clone(&peers),
        )
    });
    let named_wafs: Vec<(&str, securecart_edge::waf::WafConfig)> = topology
        .edge
        .web_acls
        .iter()
        .map(|(name, waf)| {
            (
                name.as_str(),
                waf_config(name, waf, std::sync::Arc::clone(&peers)),
            )
        })
        .collect();
    let waf_of = |listener: &securecart_topology::Listener| match &listener.web_acl {
        securecart_topology::ListenerWebAcl::Edge => edge_waf.clone(),
        securecart_topology::ListenerWebAcl::None => None,
        // The topology has checked the name.
        securecart_topology::ListenerWebAcl::Named(name) => named_wafs
            .iter()
            .find(|(acl, _)| acl == name)
            .map(|(_, waf)| waf.clone()),
    };
    let mut target_groups: Vec<TargetGroupConfig> = topology
        .edge
        .target_groups
        .iter()
        .map(|group| target_group_config(group, region))
        .collect();
    target_groups.extend(shield_groups(topology, region));
    target_groups.extend(failover_groups(topology, region));
    Ok(EdgeConfig {
        region: region.name.clone(),
        listeners: listeners
            .into_iter()
            .map(|(listener, tls)| ListenerConfig {
                tls,
                name: listener.name.clone(),
                listen: SocketAddr::new(region.edge.address.ip(), listener.port),
                rules: listener
                    .rules
                    .iter()
                    .map(|rule| Rule {
                        name: rule.name.clone(),
                        priority: rule.priority,
                        conditions: Conditions {
                            host: rule.conditions.host.clone(),
                            host_regex: rule.conditions.host_regex.clone(),
                            path: rule.conditions.path.clone(),
                            path_regex: rule.conditions.path_regex.clone(),
                            method: rule.conditions.method.clone(),
                            source_ip: rule.conditions.source_ip.clone(),
                            headers: rule.conditions.headers.clone(),
                            header_regex: rule.conditions.header_regex.clone(),
                            query: rule.conditions.query.clone(),
                        },
                        action: action_config(&rule.action),
                    })
                    .collect(),
                default_action: action_config(&listener.default_action),
                waf: waf_of(listener),
                remove_response_headers: header_names(&listener.remove_response_headers),
                response_headers: header_values(&listener.response_headers),
                forwarded_for: ForwardedFor {
                    mode: match listener.xff_header_processing {
                        XffHeaderProcessing::Append => XffMode::Append,
                        XffHeaderProcessing::Preserve => XffMode::Preserve,
                        XffHeaderProcessing::Remove => XffMode::Remove,
                    },
                    client_port: listener.xff_client_port,
                },
                drop_invalid_header_fields: listener.drop_invalid_header_fields,
                desync_mitigation_mode: match listener.desync_mitigation_mode {
                    DesyncMitigationMode::Monitor => DesyncMode::Monitor,
                    DesyncMitigationMode::Defensive => DesyncMode::Defensive,
                    DesyncMitigationMode::Strictest => DesyncMode::Strictest,
                },
                tls_headers: listener.tls_headers,
            })
            .collect(),
        admin: region.edge.admin_address,
        target_groups,
        limits: {
            let limits = &topology.edge.limits;
            Limits {
                header_read_timeout: limits.header_read_timeout,
                upstream_timeout: limits.upstream_timeout,
                connect_timeout: limits.connect_timeout,
                drain_timeout: limits.drain_timeout,
                max_headers: limits.max_headers,
                max_header_bytes: limits.max_header_bytes,
                max_connections: limits.max_connections,
                max_body_bytes: limits.max_body_bytes,
                idle_timeout: limits.idle_timeout,
                client_keep_alive: limits.client_keep_alive,
            }
        },
        admin_token: admin_token(),
        cache: topology
            .edge
            .cache
            .as_ref()
            .map(|cache| cache_config(topology, cache, region, data_dir, &peers)),
        shield: topology
            .edge
            .shield
            .as_ref()
            .map(|shield| shield_config(shield, topology)),
        // Connections to targets leave from the edge's own address, which the other
        // regions' shields exempt.
        upstream_source: Some(region.edge.address.ip()),
    })
}

/// The edge's shield from the topology's `[edge.shield]` (validated: its rates are not 0).
/// Every region's edge is exempt: an edge fetches through another as an origin shield, on
/// behalf of all its own clients.
fn shield_config(
    shield: &securecart_topology::EdgeShield,
    topology: &Topology,
) -> securecart_edge::shield::ShieldConfig {
    let at_least_one =
        |value: u32| std::num::NonZeroU32::new(value).unwrap_or(std::num::NonZeroU32::MIN);
    securecart_edge::shield::ShieldConfig {
        requests_per_second: at_least_one(shield.requests_per_second),
        burst: at_least_one(shield.burst),
        connections_per_client: shield.connections_per_client,
        requests_in_flight_per_client: Some(shield.requests_in_flight_per_client),
        max_requests_in_flight: shield.max_requests_in_flight,
        priority_paths: shield.priority_paths.clone(),
        mitigation: shield.automatic_mitigation.map(|(window, factor)| {
            securecart_edge::mitigation::MitigationConfig {
                window,
                factor,
                ..Default::default()
            }
        }),
        exempt: shield
            .exempt
            .iter()
            .copied()
            .chain(
                topology
                    .regions
                    .iter()
                    .map(|region| ipnet::IpNet::from(region.edge.address.ip())),
            )
            .collect(),
    }
}

fn target_group_config(
    group: &securecart_topology::TargetGroup,
    region: &Region,
) -> TargetGroupConfig {
    TargetGroupConfig {
        tls: None,
        host_header: None,
        name: group.name.clone(),
        targets: region
            .replicas_of(group.service)
            .map(|replica| replica.address)
            .collect(),
        health_check: HealthCheckConfig {
            protocol: None,
            path: group.health_check.path.clone(),
            port: group.health_check.port,
            interval: group.health_check.interval,
            timeout: group.health_check.timeout,
            healthy_threshold: group.health_check.healthy_threshold,
            unhealthy_threshold: group.health_check.unhealthy_threshold,
            matcher: group.health_check.matcher.clone(),
            grpc_codes: group.health_check.grpc_codes.clone(),
        },
        algorithm: match group.algorithm {
            TopologyAlgorithm::RoundRobin => Algorithm::RoundRobin,
            TopologyAlgorithm::LeastOutstandingRequests => Algorithm::LeastOutstandingRequests,
            TopologyAlgorithm::WeightedRandom => Algorithm::WeightedRandom,
            TopologyAlgorithm::PeakEwma => Algorithm::PeakEwma,
        },
        protocol: if group.http2 {
            UpstreamProtocol::Http2
        } else {
            UpstreamProtocol::Http1
        },
        slow_start: group.slow_start,
        stickiness: group.stickiness,
        app_cookie: group.stickiness_app_cookie.clone(),
        deregistration_delay: group.deregistration_delay,
        anomaly: AnomalyDetection {
            mitigation: group.anomaly_mitigation,
            ..AnomalyDetection::default()
        },
        minimum_healthy: minimum(group.minimum_healthy),
        dns_failover: group.dns_failover.map(minimum),
        outlier_detection: group
            .outlier_detection
            .map(|(consecutive_errors, ejection)| OutlierDetection {
                consecutive_errors,
                ejection,
            }),
    }
}

/// A behaviour's selection of headers or cookies for the origin, as the cache takes it.
fn forwarded(selection: &QueryStrings) -> securecart_cache::Forwarded {
    use securecart_cache::Forwarded;
    match selection {
        QueryStrings::All => Forwarded::All,
        QueryStrings::None => Forwarded::None,
        QueryStrings::Only(names) => Forwarded::Only(names.clone()),
        QueryStrings::AllExcept(names) => Forwarded::AllExcept(names.clone()),
    }
}

/// A topology's minimum of healthy targets, as the edge takes it.
fn minimum(minimum: securecart_topology::MinimumHealthy) -> MinimumHealthy {
    MinimumHealthy {
        count: minimum.count,
        percent: minimum.percent,
    }
}

/// The name of the target group of the origin shield in `region`.
fn shield_group_name(region: &str) -> String {
    format!("origin-shield-{region}")
}

/// One target group per origin shield region that `region`'s cache behaviours fetch
/// through: that region's edge, at its first plain-HTTP listener.
fn shield_groups(topology: &Topology, region: &Region) -> Vec<TargetGroupConfig> {
    let Some(cache) = &topology.edge.cache else {
        return Vec::new();
    };
    let Some(port) = topology
        .edge
        .listeners
        .iter()
        .find(|listener| listener.protocol == ListenerProtocol::Http)
        .map(|listener| listener.port)
    else {
        return Vec::new();
    };
    let mut shields: Vec<&str> = cache
        .behaviors
        .iter()
        .filter_map(|behavior| behavior.origin_shield.as_deref())
        .filter(|shield| *shield != region.name)
        .collect();
    shields.sort_unstable();
    shields.dedup();
    shields
        .into_iter()
        .filter_map(|shield| topology.regions.iter().find(|other| other.name == shield))
        .map(|shield| {
            let mut group = TargetGroupConfig::new(
                &shield_group_name(&shield.name),
                vec![SocketAddr::new(shield.edge.address.ip(), port)],
                HealthCheckConfig {
                    protocol: None,
                    // Answered through the shield's edge by its storefront.
                    path: "/healthz".to_owned(),
                    port: None,
                    interval: std::time::Duration::from_secs(5),
                    timeout: std::time::Duration::from_secs(2),
                    healthy_threshold: 2,
                    unhealthy_threshold: 2,
                    matcher: vec![200..=499],
                    grpc_codes: None,
                },
            );
            // A shield that fails is left for the request's own group, not ejected.
            group.outlier_detection = None;
            // Another region's edge: its health is not this region's, and DNS must not send
            // clients away from here when it fails.
            group.dns_failover = None;
            group
        })
        .collect()
}

/// Header names as the edge takes them (the topology has checked them).
fn header_names(names: &[String]) -> Vec<http::HeaderName> {
    names
        .iter()
        .filter_map(|name| http::HeaderName::from_bytes(name.as_bytes()).ok())
        .collect()
}

/// Headers as the edge takes them (the topology has checked their names and values).
fn header_values(headers: &[(String, String)]) -> Vec<(http::HeaderName, http::HeaderValue)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                http::HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect()
}

/// The name of the target group of `group`'s replicas in `region`: an origin failover's
/// secondary.
pub fn failover_group_name(group: &str, region: &str) -> String {
    format!("{group}@{region}")
}

/// The target groups `region`'s cache behaviours fail over to: for each region a behaviour's
/// origin failover sends this region's failing fetches to, each of the edge's target groups
/// of that region's replicas. They answer only what fails over, and their health is another
/// region's: it does not move this region's clients in DNS.
fn failover_groups(topology: &Topology, region: &Region) -> Vec<TargetGroupConfig> {
    let Some(cache) = &topology.edge.cache else {
        return Vec::new();
    };
    let mut secondaries: Vec<&str> = cache
        .behaviors
        .iter()
        .filter_map(|behavior| {
            behavior
                .origin_failover
                .as_ref()?
                .secondary_of(&region.name)
        })
        .collect();
    secondaries.sort_unstable();
    secondaries.dedup();
    secondaries
        .into_iter()
        .filter_map(|secondary| {
            topology
                .regions
                .iter()
                .find(|other| other.name == secondary)
        })
        .flat_map(|secondary| {
            topology.edge.target_groups.iter().map(|group| {
                let mut config = target_group_config(group, secondary);
                config.name = failover_group_name(&group.name, &secondary.name);
                config.dns_failover = None;
                config
            })
        })
        .collect()
}

/// A web ACL of the topology's (`[edge.waf]`, or one of `[edge.web_acls]`).
fn waf_config(
    name: &str,
    waf: &securecart_topology::EdgeWaf,
    peers: std::sync::Arc<[std::net::IpAddr]>,
) -> securecart_edge::waf::WafConfig {
    use securecart_waf::managed::{Group, acl_with};
    // The topology has checked the names.
    let groups: Vec<Group> = waf
        .managed_groups
        .iter()
        .filter_map(|name| Group::from_name(name))
        .collect();
    securecart_edge::waf::WafConfig {
        name: name.to_owned(),
        acl: std::sync::Arc::new(acl_with(
            waf.rules.clone(),
            &groups,
            waf.sensitivity,
            &waf.overrides,
        )),
        body_limit: waf.body_limit,
        oversize_blocks: waf.oversize_blocks,
        // The topology has checked the names.
        redaction: securecart_edge::waf::Redaction {
            headers: waf
                .redacted_fields
                .iter()
                .filter_map(|field| field.strip_prefix("header:"))
                .map(str::to_owned)
                .collect(),
            query_string: waf
                .redacted_fields
                .iter()
                .any(|field| field == "query_string"),
            uri_path: waf.redacted_fields.iter().any(|field| field == "uri_path"),
            method: waf.redacted_fields.iter().any(|field| field == "method"),
        },
        // The topology has checked the names and values.
        insert_headers: waf
            .insert_headers
            .iter()
            .map(|(rule, headers)| {
                let headers = headers
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((
                            http::HeaderName::from_bytes(
                                format!("{}{name}", securecart_edge::waf::INSERTED_PREFIX)
                                    .as_bytes(),
                            )
                            .ok()?,
                            http::HeaderValue::from_str(value).ok()?,
                        ))
                    })
                    .collect();
                (rule.clone(), headers)
            })
            .collect(),
        logging: waf
            .logging
            .as_ref()
            .map_or_else(Default::default, log_filters),
        token_key: token_key(),
        peers,
        token_domains: waf.token_domains.clone().into(),
    }
}

/// The environment variable holding the secret the edges' challenge tokens are signed
/// with: edges given the same accept each other's tokens (`up` sets one for its edges).
pub const TOKEN_KEY_VARIABLE: &str = "SECURECART_WAF_TOKEN_KEY";

/// The key challenge tokens are signed with: from [`TOKEN_KEY_VARIABLE`]'s secret if it is
/// set (the same secret makes the same key, at every reload), else this process's own
/// random key.
fn token_key() -> std::sync::Arc<securecart_waf::challenge::TokenKey> {
    match std::env::var(TOKEN_KEY_VARIABLE) {
        Ok(secret) if !secret.is_empty() => {
            std::sync::Arc::new(securecart_waf::challenge::TokenKey::new(secret.as_bytes()))
        }
        _ => securecart_edge::challenge::process_key(),
    }
}

/// A web ACL's logging filter, as the edge takes it.
fn log_filters(logging: &securecart_topology::WafLogging) -> securecart_edge::waf::LogFilters {
    use securecart_edge::waf::{LogCondition, LogFilter, LogFilters};
    use securecart_topology::WafLogCondition;
    LogFilters {
        keep_by_default: logging.keep_by_default,
        filters: logging
            .filters
            .iter()
            .map(|filter| LogFilter {
                keep: filter.keep,
                meets_all: filter.meets_all,
                conditions: filter
                    .conditions
                    .iter()
                    .map(|condition| match condition {
                        WafLogCondition::Allowed => LogCondition::Allowed,
                        WafLogCondition::Blocked => LogCondition::Blocked,
                        WafLogCondition::Counted => LogCondition::Counted,
                        WafLogCondition::Challenged => LogCondition::Challenged,
                        WafLogCondition::Label(label) => LogCondition::Label(label.clone()),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The edge's cache from the topology's `[edge.cache]`, for `region`'s edge.
/// `peers` are every region's edge, which may fetch through this one as its origin shield.
fn cache_config(
    topology: &Topology,
    cache: &securecart_topology::EdgeCache,
    region: &Region,
    data_dir: &Path,
    peers: &[std::net::IpAddr],
) -> securecart_edge::CacheConfig {
    use securecart_cache::{CachePolicy, KeyPolicy, OriginPolicy, QueryKey, Ttl};
    securecart_edge::CacheConfig {
        capacity_bytes: cache.memory_bytes,
        max_object_bytes: usize::try_from(cache.max_object_bytes).unwrap_or(usize::MAX),
        behaviors: cache
            .behaviors
            .iter()
            .map(|behavior| securecart_edge::CacheBehavior {
                name: behavior.name.clone(),
                path_pattern: behavior.path_pattern.clone(),
                policy: CachePolicy {
                    ttl: Ttl {
                        min: behavior.min_ttl,
                        default: behavior.default_ttl,
                        max: behavior.max_ttl,
                        error: behavior.error_caching_min_ttl,
                        honour_origin: behavior.honour_origin,
                        honour_client: behavior.honour_client,
                        store_set_cookie: behavior.store_set_cookie,
                    },
                    key: KeyPolicy {
                        query: match &behavior.query_strings {
                            QueryStrings::All => QueryKey::All,
                            QueryStrings::None => QueryKey::None,
                            QueryStrings::Only(names) => QueryKey::Only(names.clone()),
                            QueryStrings::AllExcept(names) => QueryKey::AllExcept(names.clone()),
                        },
                        // Validated as header names by the topology.
                        headers: behavior
                            .headers
                            .iter()
                            .filter_map(|name| {
                                hyper::header::HeaderName::from_bytes(name.as_bytes()).ok()
                            })
                            .collect(),
                        cookies: behavior.cookies.clone(),
                    },
                    origin: OriginPolicy {
                        headers: forwarded(&behavior.origin_headers),
                        cookies: forwarded(&behavior.origin_cookies),
                    },
                    compress: behavior.compress,
                },
                origin_shield: behavior
                    .origin_shield
                    .as_deref()
                    .filter(|shield| *shield != region.name)
                    .map(shield_group_name),
                response_headers: header_values(&behavior.response_headers),
                remove_response_headers: header_names(&behavior.remove_response_headers),
                origin_failover: behavior.origin_failover.as_ref().and_then(|failover| {
                    let secondary = failover.secondary_of(&region.name)?;
                    Some(securecart_edge::OriginFailover {
                        groups: topology
                            .edge
                            .target_groups
                            .iter()
                            .map(|group| {
                                (
                                    group.name.clone(),
                                    failover_group_name(&group.name, secondary),
                                )
                            })
                            .collect(),
                        // Checked by the topology.
                        status_codes: failover
                            .status_codes
                            .iter()
                            .filter_map(|code| http::StatusCode::from_u16(*code).ok())
                            .collect(),
                    })
                }),
            })
            .collect(),
        peers: peers.to_vec(),
        // Checked by the topology.
        error_responses: cache
            .error_responses
            .iter()
            .filter_map(|response| {
                Some(securecart_edge::ErrorResponse {
                    error_code: http::StatusCode::from_u16(response.error_code).ok()?,
                    paths: response.paths.clone(),
                    response_page_path: response.response_page_path.parse().ok()?,
                    response_code: response
                        .response_code
                        .and_then(|code| http::StatusCode::from_u16(code).ok()),
                })
            })
            .collect(),
        disk: (cache.disk_bytes > 0).then(|| securecart_edge::CacheDisk {
            directory: data_dir.join(&region.name).join("edge-cache"),
            capacity_bytes: cache.disk_bytes,
        }),
    }
}

/// The environment variable holding the admin token of the edges and DNS servers (`up`
/// sets it for its components).
pub const ADMIN_TOKEN_VARIABLE: &str = "SECURECART_ADMIN_TOKEN";

/// The admin token in force, if any.
pub fn admin_token() -> Option<String> {
    std::env::var(ADMIN_TOKEN_VARIABLE)
        .ok()
        .filter(|token| !token.is_empty())
}

fn rewrite_config((regex, replace): &(String, String)) -> RewriteConfig {
    RewriteConfig {
        regex: regex.clone(),
        replace: replace.clone(),
    }
}

fn action_config(action: &RuleAction) -> ActionConfig {
    match action {
        RuleAction::Forward {
            target_groups,
            stickiness,
            max_body_bytes,
            url_rewrite,
            host_rewrite,
        } => ActionConfig::Forward(ForwardConfig {
            max_body_bytes: *max_body_bytes,
            url_rewrite: url_rewrite.as_ref().map(rewrite_config),
            host_rewrite: host_rewrite.as_ref().map(rewrite_config),
            target_groups: target_groups
                .iter()
                .map(|(name, weight)| WeightedGroup {
                    name: name.clone(),
                    weight: *weight,
                })
                .collect(),
            stickiness: *stickiness,
        }),
        RuleAction::Redirect {
            status,
            protocol,
            host,
            port,
            path,
            query,
        } => ActionConfig::Redirect(RedirectConfig {
            status: *status,
            protocol: protocol.clone(),
            host: host.clone(),
            port: port.clone(),
            path: path.clone(),
            query: query.clone(),
        }),
        RuleAction::FixedResponse {
            status,
            content_type,
            body,
        } => ActionConfig::FixedResponse(FixedResponseConfig {
            status: *status,
            content_type: content_type.clone(),
            body: body.clone(),
        }),
    }
}

/// How `securecart proxy` checks the certificates of `https://` upstreams.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTrust {
    /// Trust the CA certificates of this PEM file rather than the system's.
    pub ca_file: Option<PathBuf>,
    /// Check no certificate (ALB's way with its targets): encrypted, not authenticated.
    pub insecure: bool,
}

/// The edge of `securecart proxy`: one listener that forwards everything to one target
/// group of the upstreams.
pub async fn proxy_config(
    listen: SocketAddr,
    admin: SocketAddr,
    upstreams: &[String],
    health_path: &str,
    tls_files: Option<(PathBuf, PathBuf)>,
    trust: &UpstreamTrust,
    change_host_header: bool,
) -> anyhow::Result<EdgeConfig> {
    let tls = match tls_files {
        Some((cert, key)) => Some(TlsConfig {
            certificates: vec![CertificatePem {
                source: cert.display().to_string(),
                chain: std::fs::read(&cert)
                    .with_context(|| format!("cannot read --tls-cert {}", cert.display()))?,
                key: std::fs::read(&key)
                    .with_context(|| format!("cannot read --tls-key {}", key.display()))?,
            }],
            client_auth: ClientAuth::Off,
            policy: Default::default(),
        }),
        None => None,
    };
    if !health_path.starts_with('/') {
        anyhow::bail!("--health-path `{health_path}` must start with `/`");
    }
    let mut targets = Vec::with_capacity(upstreams.len());
    let mut parsed = Vec::with_capacity(upstreams.len());
    for upstream in upstreams {
        let upstream = Upstream::parse(upstream).await?;
        targets.push(upstream.address);
        parsed.push(upstream);
    }
    let upstream_tls = upstream_tls(&parsed, trust)?;
    let upstream_host = change_host_header
        .then(|| upstream_host(&parsed))
        .transpose()?;
    Ok(EdgeConfig {
        region: "proxy".to_owned(),
        listeners: vec![ListenerConfig {
            name: "proxy".to_owned(),
            listen,
            rules: Vec::new(),
            default_action: ActionConfig::forward("upstreams"),
            tls,
            waf: None,
            response_headers: Vec::new(),
            remove_response_headers: Vec::new(),
            forwarded_for: Default::default(),
            drop_invalid_header_fields: false,
            desync_mitigation_mode: Default::default(),
            tls_headers: false,
        }],
        admin,
        target_groups: vec![TargetGroupConfig {
            tls: upstream_tls,
            host_header: upstream_host,
            name: "upstreams".to_owned(),
            targets,
            health_check: HealthCheckConfig {
                protocol: None,
                path: health_path.to_owned(),
                port: None,
                interval: std::time::Duration::from_secs(5),
                timeout: std::time::Duration::from_secs(2),
                healthy_threshold: 2,
                unhealthy_threshold: 2,
                // An existing site may answer its health path with anything; only a server
                // error (or no answer) counts against it.
                matcher: vec![200..=499],
                grpc_codes: None,
            },
            algorithm: Algorithm::RoundRobin,
            protocol: UpstreamProtocol::Http1,
            outlier_detection: Some(OutlierDetection::default()),
            slow_start: None,
            stickiness: None,
            app_cookie: None,
            deregistration_delay: std::time::Duration::from_secs(300),
            anomaly: AnomalyDetection::default(),
            minimum_healthy: MinimumHealthy::default(),
            dns_failover: Some(MinimumHealthy::default()),
        }],
        limits: Limits::default(),
        admin_token: admin_token(),
        cache: None,
        shield: None,
        upstream_source: None,
    })
}

/// An upstream of `securecart proxy`, from its URL.
struct Upstream {
    /// Given as `https://`.
    tls: bool,
    /// The host as the URL names it (a name, or an address).
    host: String,
    /// The host and port as the URL writes them (`shop.example`, `127.0.0.1:3000`).
    authority: String,
    /// Where it is.
    address: SocketAddr,
}

impl Upstream {
    /// An upstream URL such as `http://127.0.0.1:3000` or `https://shop.example:8443`.
    async fn parse(url: &str) -> anyhow::Result<Self> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            anyhow::bail!(
                "--upstream `{url}`: give an http:// or https:// URL, such as http://127.0.0.1:3000"
            );
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            anyhow::bail!("--upstream `{url}`: give a scheme, a host and a port, without a path");
        }
        // A port after the host (after the brackets of an IPv6 address), or the scheme's.
        let (host, with_port) = match authority.rsplit_once(':') {
            Some((host, port))
                if port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')) =>
            {
                (host, authority.to_owned())
            }
            _ => (
                authority,
                format!("{authority}:{}", if tls { 443 } else { 80 }),
            ),
        };
        let address = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("--upstream `{url}`: cannot resolve {with_port}"))?
            .next()
            .with_context(|| format!("--upstream `{url}`: {with_port} has no address"))?;
        Ok(Self {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            authority: authority.to_owned(),
            address,
        })
    }
}

/// The `Host` of `--change-host-header`: the host and port the upstreams' URLs write, the
/// same in every one.
fn upstream_host(upstreams: &[Upstream]) -> anyhow::Result<http::HeaderValue> {
    let Some(first) = upstreams.first() else {
        anyhow::bail!("--change-host-header needs an --upstream");
    };
    if let Some(other) = upstreams
        .iter()
        .find(|upstream| !upstream.authority.eq_ignore_ascii_case(&first.authority))
    {
        anyhow::bail!(
            "--change-host-header: the upstreams name `{}` and `{}`; it sends one Host, so name one host (and port) in every URL",
            first.authority,
            other.authority
        );
    }
    http::HeaderValue::from_str(&first.authority)
        .with_context(|| format!("--change-host-header: `{}` is not a Host", first.authority))
}

/// The TLS of `https://` upstreams: the name their URLs give sent as SNI (none for an
/// address), their certificates checked as `trust` says.
fn upstream_tls(
    upstreams: &[Upstream],
    trust: &UpstreamTrust,
) -> anyhow::Result<Option<securecart_edge::target_tls::TargetTls>> {
    use securecart_edge::target_tls::{TargetTls, TargetVerify, roots_from_pem};
    let is_address = |host: &str| host.parse::<std::net::IpAddr>().is_ok();
    let Some(first) = upstreams.first() else {
        return Ok(None);
    };
    if upstreams.iter().any(|upstream| upstream.tls != first.tls) {
        anyhow::bail!("--upstream: give all upstreams with http://, or all with https://");
    }
    if !first.tls {
        if trust.ca_file.is_some() || trust.insecure {
            anyhow::bail!("--upstream-ca and --upstream-insecure apply to https:// upstreams");
        }
        return Ok(None);
    }
    // One name for the group, every upstream's certificate checked against it: the same
    // host name in every URL, or addresses only (no SNI; each certificate names its own).
    let agrees = |upstream: &Upstream| {
        upstream.host.eq_ignore_ascii_case(&first.host)
            || (is_address(&upstream.host) && is_address(&first.host))
    };
    if let Some(other) = upstreams.iter().find(|upstream| !agrees(upstream)) {
        anyhow::bail!(
            "--upstream: https:// upstreams named `{}` and `{}`: name one host in every URL (with its port), or give addresses only",
            first.host,
            other.host
        );
    }
    let verify = if trust.insecure {
        TargetVerify::Any
    } else if let Some(file) = &trust.ca_file {
        let pem = std::fs::read(file)
            .with_context(|| format!("cannot read --upstream-ca {}", file.display()))?;
        let roots = roots_from_pem(&format!("--upstream-ca {}", file.display()), &pem)
            .map_err(|error| anyhow!(error))?;
        TargetVerify::Roots(std::sync::Arc::new(roots))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if roots.is_empty() {
            anyhow::bail!(
                "--upstream: no CA certificate found on this system to check the https:// upstreams with (install ca-certificates, or give --upstream-ca FILE, or --upstream-insecure)"
            );
        }
        TargetVerify::Roots(std::sync::Arc::new(roots))
    };
    let name = (!is_address(&first.host)).then_some(first.host.as_str());
    TargetTls::new(name, verify)
        .map(Some)
        .map_err(|error| anyhow!("--upstream: {error}"))
}

/// The service kind in the topology and in the shop.
pub fn service_kinds(service: ServiceArg) -> (ServiceKind, ShopService) {
    match service {
        ServiceArg::Catalog => (ServiceKind::Catalog, ShopService::Catalog),
        ServiceArg::Cart => (ServiceKind::Cart, ShopService::Cart),
        ServiceArg::Checkout => (ServiceKind::Checkout, ShopService::Checkout),
        ServiceArg::Payments => (ServiceKind::Payments, ShopService::Payments),
        ServiceArg::Storefront => (ServiceKind::Storefront, ShopService::Storefront),
    }
}

/// The store file of a region.
pub fn store_path(data_dir: &Path, region: &str) -> PathBuf {
    data_dir.join(region).join("shop.sqlite")
}

/// One replica of a shop service.
pub fn shop_config(
    region: &Region,
    service: ServiceArg,
    replica: u32,
    data_dir: &Path,
) -> anyhow::Result<ShopConfig> {
    let (kind, shop_service) = service_kinds(service);
    let name = format!("{}-{replica}", kind.as_str());
    let component = region
        .replicas_of(kind)
        .find(|component| component.name == name)
        .with_context(|| {
            format!(
                "region {} has no replica {name}; it runs {} of {}",
                region.name,
                region.replicas_of(kind).count(),
                kind.as_str()
            )
        })?;
    Ok(ShopConfig {
        service: shop_service,
        region: region.name.clone(),
        listen: component.address,
        admin: component.admin_address,
        store_path: store_path(data_dir, &region.name),
        payments: region
            .replicas_of(ServiceKind::Payments)
            .map(|replica| replica.address)
            .collect(),
    })
}

/// The topology's DNS zone, as the DNS servers serve it: every region's server is a name
/// server of the zone, each region's loopback block is placed at the region (so latency
/// records send a region's clients to its own edge), and the records and health checks
/// are the topology's.
/// The topology's DNS zone; a city database it names is read relative to `base`.
pub fn dns_zone_config(
    topology: &Topology,
    base: &Path,
) -> anyhow::Result<securecart_dns::config::ZoneConfig> {
    use securecart_dns::config::{RecordConfig, ZoneConfig};
    use securecart_dns::health::{HealthCheck, Probe};
    use securecart_dns::policy::{Environment, GeoLocation, Policy};
    use securecart_topology::dns::{DnsCheckKind, DnsRouting};
    let dns = topology
        .dns
        .as_ref()
        .ok_or_else(|| anyhow!("the topology has no [dns] section"))?;
    let place = |region: &Region| (region.location.latitude, region.location.longitude);
    let environment = Environment {
        regions: topology
            .regions
            .iter()
            .map(|region| (region.name.clone(), place(region)))
            .collect(),
        latencies: dns.latencies.clone(),
        cidr_locations: dns
            .cidr_locations
            .iter()
            .flat_map(|(name, networks)| {
                networks.iter().map(move |network| (*network, name.clone()))
            })
            .collect(),
        places: topology
            .regions
            .iter()
            .map(|region| (ipnet::IpNet::V4(region.cidr), place(region)))
            .collect(),
        cities: dns
            .geoip_database
            .as_ref()
            .map(|file| {
                securecart_dns::geo::CityDatabase::open(&base.join(file))
                    .map(std::sync::Arc::new)
                    .map_err(|error| anyhow!("dns.geoip_database: {error}"))
            })
            .transpose()?,
    };
    let records = dns
        .records
        .iter()
        .map(|record| RecordConfig {
            name: record.name.clone(),
            record_type: record.record_type.clone(),
            ttl: record.ttl,
            set_identifier: record.set_identifier.clone(),
            policy: match &record.routing {
                DnsRouting::Simple => None,
                DnsRouting::Weighted(weight) => Some(Policy::Weighted { weight: *weight }),
                DnsRouting::Latency(region) => Some(Policy::Latency {
                    region: region.clone(),
                }),
                DnsRouting::Failover(primary) => Some(Policy::Failover { primary: *primary }),
                DnsRouting::Geolocation {
                    continent,
                    country,
                    subdivision,
                } => Some(Policy::Geolocation {
                    location: match (continent, country, subdivision) {
                        (Some(continent), _, _) => GeoLocation::Continent(continent.clone()),
                        (None, Some(country), Some(subdivision)) => {
                            GeoLocation::Subdivision(country.clone(), subdivision.clone())
                        }
                        (None, Some(country), None) => GeoLocation::Country(country.clone()),
                        (None, None, _) => GeoLocation::Default,
                    },
                }),
                DnsRouting::Geoproximity { place, bias } => Some(Policy::Geoproximity {
                    place: *place,
                    bias: *bias,
                }),
                DnsRouting::Multivalue => Some(Policy::Multivalue),
                DnsRouting::IpBased(location) => Some(Policy::IpBased {
                    location: location.clone(),
                }),
            },
            values: record.values.clone(),
            health_check: record.health_check.clone(),
            alias: record.alias.clone(),
            evaluate_target_health: record.evaluate_target_health,
        })
        .collect();
    let health_checks = dns
        .health_checks
        .iter()
        .map(|check| HealthCheck {
            name: check.name.clone(),
            probe: match &check.kind {
                DnsCheckKind::Http {
                    address,
                    tls,
                    host,
                    path,
                    search,
                } => Probe::Http {
                    address: *address,
                    tls: *tls,
                    host: host.clone().unwrap_or_else(|| address.ip().to_string()),
                    path: path.clone(),
                    search: search.clone(),
                },
                DnsCheckKind::Tcp { address } => Probe::Tcp { address: *address },
                DnsCheckKind::EdgeTargets { address } => Probe::EdgeTargets { address: *address },
                DnsCheckKind::Calculated {
                    children,
                    threshold,
                } => Probe::Calculated {
                    children: children.clone(),
                    threshold: *threshold,
                },
            },
            interval: check.interval,
            failure_threshold: check.failure_threshold,
            inverted: check.inverted,
            disabled: check.disabled,
        })
        .collect();
    Ok(ZoneConfig {
        origin: dns.zone.clone(),
        name_servers: topology
            .regions
            .iter()
            .filter_map(|region| {
                region
                    .dns
                    .as_ref()
                    .map(|server| (format!("ns-{}", region.name), server.address.ip()))
            })
            .collect(),
        ttl: 300,
        records,
        health_checks,
        environment,
    })
}

#[cfg(test)]
mod tests {
    /// The default topology's assets and images fail over to the other region's replicas
    /// of the request's group: each region's edge has a group of them per target group,
    /// and its behaviours pair each group with its own.
    #[test]
    fn each_region_fails_over_to_the_other_regions_replicas() {
        let loaded = super::load_topology(None).expect("the embedded topology");
        let topology = &loaded.topology;
        for (region, other) in [("us-east-1", "eu-west-1"), ("eu-west-1", "us-east-1")] {
            let region = super::region(topology, region).expect("region");
            let other = super::region(topology, other).expect("region");
            let groups = super::failover_groups(topology, region);
            assert_eq!(groups.len(), topology.edge.target_groups.len());
            for (group, failover) in topology.edge.target_groups.iter().zip(&groups) {
                assert_eq!(failover.name, format!("{}@{}", group.name, other.name));
                let replicas: Vec<_> = other
                    .replicas_of(group.service)
                    .map(|replica| replica.address)
                    .collect();
                assert!(!replicas.is_empty(), "{}", group.name);
                assert_eq!(failover.targets, replicas, "{}", group.name);
            }
            let cache = topology.edge.cache.as_ref().expect("a cache");
            let config =
                super::cache_config(topology, cache, region, std::path::Path::new("."), &[]);
            let failing_over: Vec<&str> = config
                .behaviors
                .iter()
                .filter(|behavior| behavior.origin_failover.is_some())
                .map(|behavior| behavior.name.as_str())
                .collect();
            assert_eq!(failing_over, ["assets", "images"]);
            assert_eq!(
                config
                    .error_responses
                    .iter()
                    .map(|response| (
                        response.error_code.as_u16(),
                        response.response_page_path.as_str()
                    ))
                    .collect::<Vec<_>>(),
                [502, 503, 504].map(|code| (code, "/static/unavailable.html"))
            );
            for behavior in &config.behaviors[..2] {
                let failover = behavior.origin_failover.as_ref().expect("a failover");
                let pairs: Vec<(String, String)> = topology
                    .edge
                    .target_groups
                    .iter()
                    .map(|group| (group.name.clone(), format!("{}@{}", group.name, other.name)))
                    .collect();
                assert_eq!(failover.groups, pairs, "{}", behavior.name);
                assert_eq!(
                    failover.status_codes,
                    [500, 502, 503, 504]
                        .map(|code| http::StatusCode::from_u16(code).expect("status"))
                );
            }
        }
    }

    /// An origin shield's group reaches another region's edge: its health must not move
    /// this region's clients away in DNS, where the shop's own groups do.
    #[test]
    fn only_the_shops_own_groups_count_for_the_edges_health_in_dns() {
        let loaded = super::load_topology(None).expect("the embedded topology");
        let topology = &loaded.topology;
        let region = super::region(topology, "eu-west-1").expect("region");
        let shields = super::shield_groups(topology, region);
        assert_eq!(
            shields
                .iter()
                .map(|group| (group.name.as_str(), group.dns_failover))
                .collect::<Vec<_>>(),
            [("origin-shield-us-east-1", None)]
        );
        for group in super::failover_groups(topology, region) {
            assert_eq!(group.dns_failover, None, "{}", group.name);
        }
        for group in &topology.edge.target_groups {
            let config = super::target_group_config(group, region);
            assert_eq!(
                config.dns_failover,
                Some(securecart_edge::config::MinimumHealthy::default()),
                "{}",
                group.name
            );
        }
    }
}
