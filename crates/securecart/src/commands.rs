//! The subcommands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use securecart_supervisor::{ChildSpec, DeploymentState, Plan};
use securecart_telemetry::LogFormat;
use securecart_topology::{Role, Topology};

use crate::admin_client;
use crate::cli::{CacheAction, Cli, Command, DesyncModeArg, LogFormatArg, TargetChange};
use crate::settings;

/// The state file of a deployment, inside its data directory.
fn state_file(data_dir: &Path) -> PathBuf {
    data_dir.join("securecart-up.json")
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Runs `reload` on every SIGHUP; a reload that fails leaves what is in force.
async fn on_each_hangup<F, Fut>(mut reload: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP");
        return;
    };
    while hangups.recv().await.is_some() {
        match reload().await {
            Ok(()) => tracing::info!("reloaded on SIGHUP"),
            Err(error) => {
                tracing::error!("reload refused; the configuration in force stays: {error:#}")
            }
        }
    }
}

/// Runs a command; the exit code says whether it succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { file } => check(file.as_deref()),
        Command::Status { data_dir, json } => status(&data_dir, json).await,
        Command::Targets {
            data_dir,
            region,
            admin,
            change,
        } => targets(&data_dir, region.as_deref(), admin, change).await,
        Command::Reload {
            data_dir,
            region,
            admin,
        } => reload(&data_dir, region.as_deref(), admin).await,
        Command::Cache {
            action:
                CacheAction::Invalidate {
                    paths,
                    tags,
                    data_dir,
                    region,
                    admin,
                },
        } => invalidate(&paths, &tags, &data_dir, region.as_deref(), admin).await,
        Command::Up {
            config,
            data_dir,
            log_format,
        } => up(config, &data_dir, log_format).await,
        Command::Edge {
            region,
            config,
            data_dir,
            log_format,
        } => {
            securecart_supervisor::die_with_parent();
            let loaded = settings::load_topology(config.as_deref())?;
            securecart_telemetry::logging::init(
                settings::log_format(&loaded.topology, log_format),
                is_terminal(),
            );
            let region = settings::region(&loaded.topology, &region)?;
            let base = settings::topology_base(config.as_deref());
            let edge = securecart_edge::Edge::bind(settings::edge_config(
                &loaded.topology,
                region,
                &base,
                &data_dir,
            )?)
            .await
            .context("cannot start the edge")?;
            // A reload (SIGHUP, or POST /reload on the admin API) reads the topology again,
            // as at the start.
            let region_name = region.name.clone();
            let control = edge.control();
            control.set_reload_source(std::sync::Arc::new(move || {
                let loaded = settings::load_topology(config.as_deref())
                    .map_err(|error| format!("{error:#}"))?;
                let region = settings::region(&loaded.topology, &region_name)
                    .map_err(|error| format!("{error:#}"))?;
                settings::edge_config(&loaded.topology, region, &base, &data_dir)
                    .map_err(|error| format!("{error:#}"))
            }));
            tokio::spawn(on_each_hangup(move || {
                let control = std::sync::Arc::clone(&control);
                async move { control.reload().await.map_err(anyhow::Error::from) }
            }));
            edge.serve(shutdown_signal())
                .await
                .context("the edge failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy {
            listen,
            upstreams,
            upstream_ca,
            upstream_insecure,
            change_host_header,
            admin,
            health_path,
            tls_cert,
            tls_key,
            workers: _,
            cache,
            cache_memory,
            cache_set_cookie,
            cache_disk,
            cache_disk_size,
            waf,
            waf_paranoia,
            waf_anomaly_threshold,
            desync_mitigation_mode,
            log_format,
        } => {
            securecart_telemetry::logging::init(
                match log_format {
                    LogFormatArg::Json => LogFormat::Json,
                    LogFormatArg::Text => LogFormat::Text,
                },
                is_terminal(),
            );
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                _ => None,
            };
            let trust = settings::UpstreamTrust {
                ca_file: upstream_ca,
                insecure: upstream_insecure,
            };
            let mut config = settings::proxy_config(
                listen,
                admin,
                &upstreams,
                &health_path,
                tls,
                &trust,
                change_host_header,
            )
            .await?;
            for listener in &mut config.listeners {
                listener.desync_mitigation_mode = match desync_mitigation_mode {
                    DesyncModeArg::Monitor => securecart_edge::guard::DesyncMode::Monitor,
                    DesyncModeArg::Defensive => securecart_edge::guard::DesyncMode::Defensive,
                    DesyncModeArg::Strictest => securecart_edge::guard::DesyncMode::Strictest,
                };
            }
            if cache {
                let mut settings =
                    securecart_edge::CacheConfig::everything(cache_memory * 1024 * 1024);
                for behavior in &mut settings.behaviors {
                    behavior.policy.ttl.store_set_cookie = cache_set_cookie;
                }
                settings.disk = cache_disk.map(|directory| securecart_edge::CacheDisk {
                    directory,
                    capacity_bytes: cache_disk_size * 1024 * 1024,
                });
                config.cache = Some(settings);
            }
            if waf {
                let sensitivity = securecart_waf::managed::Sensitivity {
                    paranoia: waf_paranoia,
                    anomaly_threshold: waf_anomaly_threshold,
                };
                let acl = std::sync::Arc::new(securecart_waf::managed::acl_with(
                    Vec::new(),
                    &securecart_waf::managed::Group::ALL,
                    sensitivity,
                    &securecart_waf::managed::Overrides::default(),
                ));
                for listener in &mut config.listeners {
                    listener.waf = Some(securecart_edge::waf::WafConfig::with_acl(
                        std::sync::Arc::clone(&acl),
                    ));
                }
            }
            let edge = securecart_edge::Edge::bind(config)
                .await
                .context("cannot start the proxy")?;
            tracing::info!(
                listen = %edge.local_addr()?,
                admin = %edge.admin_addr()?,
                upstreams = upstreams.len(),
                "proxy ready"
            );
            edge.serve(shutdown_signal())
                .await
                .context("the proxy failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dns {
            action:
                Some(crate::cli::DnsAction::TestRecord {
                    name,
                    record_type,
                    client_subnet,
                    resolver_ip,
                    config,
                    data_dir,
                }),
            ..
        } => {
            test_record(
                &name,
                &record_type,
                client_subnet,
                resolver_ip,
                config.as_deref(),
                &data_dir,
            )
            .await
        }
        Command::Dns {
            region: Some(region),
            config,
            workers,
            udp_batch_wait,
            log_format,
            ..
        } => {
            let workers = DnsWorkers::new(workers, udp_batch_wait);
            dns_region(&region, config.as_deref(), workers, log_format).await
        }
        Command::Dns {
            zones,
            listen,
            admin,
            workers,
            udp_batch_wait,
            log_format,
            ..
        } => {
            let workers = DnsWorkers::new(workers, udp_batch_wait);
            dns_zone_files(zones, listen, admin, workers, log_format).await
        }
        Command::Shop {
            service,
            region,
            replica,
            config,
            data_dir,
            log_format,
        } => {
            securecart_supervisor::die_with_parent();
            let loaded = settings::load_topology(config.as_deref())?;
            securecart_telemetry::logging::init(
                settings::log_format(&loaded.topology, log_format),
                is_terminal(),
            );
            let region = settings::region(&loaded.topology, &region)?;
            let shop = settings::shop_config(region, service, replica, &data_dir)?;
            securecart_shop::run(shop, shutdown_signal())
                .await
                .context("the service failed")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Zone files served alone, the way `knotd` or `nsd` serves them; SIGHUP reads them again.
async fn dns_zone_files(
    zones: Vec<PathBuf>,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    workers: DnsWorkers,
    log_format: Option<LogFormatArg>,
) -> anyhow::Result<ExitCode> {
    securecart_telemetry::logging::init(
        match log_format {
            Some(LogFormatArg::Json) => LogFormat::Json,
            _ => LogFormat::Text,
        },
        is_terminal(),
    );
    let responder = load_zones(&zones)?;
    let records: usize = responder
        .catalog()
        .zones()
        .iter()
        .map(securecart_dns::Zone::record_count)
        .sum();
    let server = securecart_dns::DnsServer::bind(listen, responder)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let slot = server.responder();
    let count = zones.len();
    // One reload at a time (SIGHUP's or the admin API's, each on a blocking thread), so
    // that the files read last are those in force.
    let one_at_a_time = tokio::sync::Mutex::new(());
    let reload: DnsReload = std::sync::Arc::new(move || {
        let _one = one_at_a_time.blocking_lock();
        load_zones(&zones).map(|responder| slot.store(std::sync::Arc::new(responder)))
    });
    let admin = dns_admin(
        admin,
        server.query_counts(),
        std::sync::Arc::default(),
        std::sync::Arc::clone(&reload),
    )
    .await?;
    tracing::info!(listen = %server.local_addr()?, %admin, zones = count, records, "dns ready");
    tokio::spawn(on_each_hangup(move || {
        run_reload(std::sync::Arc::clone(&reload))
    }));
    serve_dns(server, workers).await
}

/// How a DNS server's UDP workers run: how many (one per core by default), and how long
/// each lets queries gather after a batch (`--udp-batch-wait`).
struct DnsWorkers {
    count: Option<u16>,
    batch_wait: std::time::Duration,
}

impl DnsWorkers {
    fn new(count: Option<u16>, batch_wait_micros: u64) -> Self {
        Self {
            count,
            batch_wait: std::time::Duration::from_micros(batch_wait_micros),
        }
    }
}

/// Serves DNS until SIGTERM or Ctrl-C, with `workers`' UDP threads.
async fn serve_dns(
    server: securecart_dns::DnsServer,
    workers: DnsWorkers,
) -> anyhow::Result<ExitCode> {
    let udp_workers = workers.count.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    server
        .with_udp_batch_wait(workers.batch_wait)
        .serve(udp_workers, shutdown_signal())
        .await
        .context("the DNS server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// A DNS response code by its mnemonic, as dig shows it.
fn rcode_name(code: u8) -> String {
    match code {
        0 => "NOERROR".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        16 => "BADVERS".to_owned(),
        other => other.to_string(),
    }
}

/// The health checks' states, as the DNS admin endpoint reports them (swapped on reload).
type CheckFlags =
    std::sync::Arc<arc_swap::ArcSwap<Vec<(String, std::sync::Arc<std::sync::atomic::AtomicBool>)>>>;

/// Reads a DNS server's zones again and puts them in force (a failure leaves those in
/// force), for SIGHUP and the admin API's `POST /reload`; it blocks (see [`run_reload`]).
type DnsReload = std::sync::Arc<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

/// Runs a reload on a blocking thread: it reads files, and waits for another reload.
async fn run_reload(reload: DnsReload) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || reload())
        .await
        .context("the reload stopped short")?
}

/// A DNS server's admin endpoint: `/healthz`, `/metrics` with the queries answered by
/// transport and response code, those given no answer, and each health check's state, and
/// `POST /reload` (with the admin token, as the edge's: `securecart reload` sends it).
/// Returns the address it listens on.
async fn dns_admin(
    address: std::net::SocketAddr,
    counts: std::sync::Arc<securecart_dns::server::QueryCounts>,
    checks: CheckFlags,
    reload: DnsReload,
) -> anyhow::Result<std::net::SocketAddr> {
    use std::sync::atomic::Ordering;

    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;

    let mut registry = prometheus_client::registry::Registry::with_prefix("securecart_dns");
    let queries = Family::<Vec<(String, String)>, Counter>::default();
    registry.register(
        "queries",
        "Queries answered, by transport and response code",
        queries.clone(),
    );
    let dropped = Counter::<u64>::default();
    registry.register(
        "queries_dropped",
        "Queries given no answer (responses, and messages too short to carry an id)",
        dropped.clone(),
    );
    let health = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register(
        "health_check_healthy",
        "Whether each health check passes (1) or fails (0)",
        health.clone(),
    );
    let readiness = securecart_telemetry::Readiness::default();
    readiness.set(true);
    let token = settings::admin_token();
    let reload_route = axum::routing::post(move |headers: axum::http::HeaderMap| {
        let (reload, token) = (std::sync::Arc::clone(&reload), token.clone());
        async move { dns_reload(&headers, token.as_deref(), reload).await }
    });
    let admin = securecart_telemetry::AdminServer::bind(
        address,
        securecart_telemetry::metrics::MetricsRegistry::new(registry),
        readiness,
        axum::Router::new().route("/reload", reload_route),
    )
    .await
    .with_context(|| format!("cannot listen on {address}"))?;
    let bound = admin.local_addr()?;
    tokio::spawn(admin.serve(shutdown_signal()));
    // The counters follow the server's own counts, the gauges the checks' flags.
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticks.tick().await;
            for (transport, code, count) in counts.answered() {
                let counter = queries.get_or_create(&vec![
                    (
                        "transport".to_owned(),
                        match transport {
                            securecart_dns::Transport::Udp => "udp",
                            securecart_dns::Transport::Tcp => "tcp",
                        }
                        .to_owned(),
                    ),
                    ("code".to_owned(), rcode_name(code)),
                ]);
                counter.inc_by(count.saturating_sub(counter.get()));
            }
            dropped.inc_by(counts.dropped().saturating_sub(dropped.get()));
            for (name, flag) in checks.load().iter() {
                health
                    .get_or_create(&vec![("check".to_owned(), name.clone())])
                    .set(i64::from(flag.load(Ordering::Relaxed)));
            }
        }
    });
    Ok(bound)
}

/// `POST /reload` on a DNS server's admin endpoint: 403 without an admin token in force,
/// 401 without the right one, 422 with the reason when the zones do not load (those in
/// force stay), else 200.
async fn dns_reload(
    headers: &axum::http::HeaderMap,
    token: Option<&str>,
    reload: DnsReload,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    use axum::http::StatusCode;
    let error = |status: StatusCode, code: &str, message: String| {
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        (status, axum::Json(body))
    };
    let Some(token) = token else {
        return error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "this server has no admin token, so it reloads on SIGHUP only".to_owned(),
        );
    };
    if !securecart_telemetry::admin::bears_token(headers, token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required".to_owned(),
        );
    }
    match run_reload(reload).await {
        Ok(()) => {
            tracing::info!("reloaded through the admin API");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "reloaded": true })),
            )
        }
        Err(reason) => {
            tracing::error!("reload refused; the configuration in force stays: {reason:#}");
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                format!("{reason:#}"),
            )
        }
    }
}

/// A region's DNS server of the topology's zone: its records, routing policies and health
/// checks, an admin endpoint for the supervisor (`/healthz`, `/metrics` with each health
/// check's state), and SIGHUP or the admin API's `POST /reload` to read the topology
/// again.
async fn dns_region(
    region_name: &str,
    config: Option<&Path>,
    workers: DnsWorkers,
    log_format: Option<LogFormatArg>,
) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;

    securecart_supervisor::die_with_parent();
    let loaded = settings::load_topology(config)?;
    securecart_telemetry::logging::init(
        settings::log_format(&loaded.topology, log_format),
        is_terminal(),
    );
    let region = settings::region(&loaded.topology, region_name)?;
    let component = region.dns.clone().with_context(|| {
        format!("the topology has no [dns] section, so region {region_name} runs no DNS server")
    })?;
    let (stop_checks, checks) = tokio::sync::watch::channel(false);
    let built = securecart_dns::config::build(
        &settings::dns_zone_config(&loaded.topology, &settings::topology_base(config))?,
        &checks,
    )
    .map_err(anyhow::Error::msg)?;
    let check_flags = Arc::new(arc_swap::ArcSwap::from_pointee(built.checks));
    let server = securecart_dns::DnsServer::bind(component.address, built.responder)
        .await
        .with_context(|| format!("cannot listen on {}", component.address))?;

    let slot = server.responder();
    let path = config.map(Path::to_path_buf);
    // The checks in force stop once a new zone's, started with it, are in force (one
    // reload at a time: SIGHUP's or the admin API's, each on a blocking thread).
    let stop_checks = tokio::sync::Mutex::new(stop_checks);
    let flags = Arc::clone(&check_flags);
    let reload: DnsReload = Arc::new(move || {
        let mut stop_checks = stop_checks.blocking_lock();
        let (next_stop, next_checks) = tokio::sync::watch::channel(false);
        let rebuilt = settings::load_topology(path.as_deref()).and_then(|loaded| {
            securecart_dns::config::rebuild(
                &settings::dns_zone_config(
                    &loaded.topology,
                    &settings::topology_base(path.as_deref()),
                )?,
                &next_checks,
                &flags.load(),
            )
            .map_err(anyhow::Error::msg)
        });
        match rebuilt {
            Ok(built) => {
                slot.store(Arc::new(built.responder));
                flags.store(Arc::new(built.checks));
                let _ = stop_checks.send(true);
                *stop_checks = next_stop;
                Ok(())
            }
            Err(error) => {
                let _ = next_stop.send(true);
                Err(error)
            }
        }
    });
    dns_admin(
        component.admin_address,
        server.query_counts(),
        check_flags,
        Arc::clone(&reload),
    )
    .await?;
    tracing::info!(region = region_name, listen = %server.local_addr()?, zone = %loaded.topology.dns.as_ref().map_or("", |dns| dns.zone.as_str()), "dns ready");
    tokio::spawn(on_each_hangup(move || {
        run_reload(std::sync::Arc::clone(&reload))
    }));
    serve_dns(server, workers).await
}

/// Answers one question from the topology's zone, with the reasons, like Route 53's test
/// DNS answer.
async fn test_record(
    name: &str,
    record_type: &str,
    client_subnet: Option<ipnet::IpNet>,
    resolver_ip: std::net::IpAddr,
    config: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::Ordering;

    let loaded = settings::load_topology(config)?;
    let mut zone = settings::dns_zone_config(&loaded.topology, &settings::topology_base(config))?;
    // No probing here: the checks' states come from the running deployment.
    for check in &mut zone.health_checks {
        check.disabled = true;
    }
    let (_stop, checks) = tokio::sync::watch::channel(false);
    let built = securecart_dns::config::build(&zone, &checks).map_err(anyhow::Error::msg)?;
    let live = live_health_checks(data_dir).await;
    let mut health = Vec::new();
    for (check, flag) in &built.checks {
        let healthy = live.as_ref().and_then(|(_, live)| live.get(check)).copied();
        flag.store(healthy.unwrap_or(true), Ordering::Relaxed);
        health.push(format!(
            "{check} {}",
            match healthy {
                Some(true) => "healthy",
                Some(false) => "unhealthy",
                None => "healthy (no running deployment says otherwise)",
            }
        ));
    }
    let record_type: securecart_dns::zone::RecordType = record_type
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("`{record_type}` is not a record type"))?;
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let owner = securecart_dns::zone::Name::from_ascii(&fqdn)
        .map_err(|error| anyhow::anyhow!("`{name}` is not a name: {error}"))?;
    let client = client_subnet.map_or(resolver_ip, |subnet| subnet.network());
    let catalog = built.responder.catalog();
    let answer = catalog.explain(
        &securecart_dns::zone::LowerName::new(&owner),
        record_type,
        &catalog.environment().locate(client),
        rand::random(),
    );
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{fqdn} {record_type} from {client}{}",
        client_subnet.map_or_else(String::new, |subnet| format!(" (client subnet {subnet})"))
    )?;
    writeln!(
        out,
        "response code: {}",
        rcode_name(u16::from(answer.code) as u8)
    )?;
    for record in &answer.answers {
        writeln!(out, "answer: {record}")?;
    }
    for record in &answer.authorities {
        writeln!(out, "authority: {record}")?;
    }
    for reason in &answer.reasons {
        writeln!(out, "why: {reason}")?;
    }
    if !health.is_empty() {
        let source = live.map_or_else(String::new, |(server, _)| format!(" (as {server} sees it)"));
        writeln!(out, "health{source}: {}", health.join(", "))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Each health check's state as the running deployment's DNS servers report it (the
/// first that answers), if a deployment runs from `data_dir`.
async fn live_health_checks(
    data_dir: &Path,
) -> Option<(String, std::collections::HashMap<String, bool>)> {
    let state = securecart_supervisor::state::read(&state_file(data_dir))?;
    for component in state
        .components
        .iter()
        .filter(|component| component.role == "dns")
    {
        let Ok(text) = admin_client::get_text(component.admin_address, "/metrics").await else {
            continue;
        };
        let states = text
            .lines()
            .filter_map(|line| line.strip_prefix("securecart_dns_health_check_healthy{check=\""))
            .filter_map(|rest| rest.split_once("\"} "))
            .map(|(check, value)| (check.to_owned(), value.trim() == "1"))
            .collect();
        return Some((component.id.clone(), states));
    }
    None
}

/// Reads zone files into a responder; the zone's name is the file's `$ORIGIN`, or the
/// file's name without `.zone`.
fn load_zones(files: &[PathBuf]) -> anyhow::Result<securecart_dns::Responder> {
    let zones = files
        .iter()
        .map(|file| {
            let origin = file
                .file_name()
                .and_then(|name| name.to_str())
                .map(|name| name.strip_suffix(".zone").unwrap_or(name))
                .and_then(|name| securecart_dns::zone::Name::from_ascii(name).ok());
            securecart_dns::Zone::from_file(file, origin).map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let catalog = securecart_dns::Catalog::new(zones).map_err(anyhow::Error::msg)?;
    Ok(securecart_dns::Responder::new(catalog))
}

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

fn check(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let name = file.map_or_else(
        || securecart_topology::EMBEDDED_NAME.to_owned(),
        |path| path.display().to_string(),
    );
    let loaded = match settings::load_topology(file) {
        Ok(loaded) => loaded,
        Err(error) => {
            let mut stderr = std::io::stderr().lock();
            match error.downcast_ref::<securecart_topology::TopologyError>() {
                Some(topology_error) => {
                    let diagnostics = topology_error.diagnostics();
                    for diagnostic in &diagnostics {
                        let _ = writeln!(stderr, "error: {diagnostic}");
                    }
                    let _ = writeln!(
                        stderr,
                        "{name}: {} error(s); the topology cannot run",
                        diagnostics.len()
                    );
                }
                None => {
                    let _ = writeln!(stderr, "error: {error:#}");
                }
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    // What the topology names outside itself (certificate files) is checked too, as the
    // edge will read it.
    let base = settings::topology_base(file);
    for region in &loaded.topology.regions {
        if let Err(error) =
            settings::edge_config(&loaded.topology, region, &base, Path::new("data"))
        {
            let _ = writeln!(std::io::stderr(), "error: {name}: {error:#}");
            return Ok(ExitCode::FAILURE);
        }
    }
    // The zone is built as the DNS servers will build it (its routing groups' aliases
    // too), without starting its health checks.
    if loaded.topology.dns.is_some() {
        let built = settings::dns_zone_config(&loaded.topology, &base).and_then(|config| {
            securecart_dns::config::check(&config)
                .map_err(|error| anyhow::anyhow!("[dns]: {error}"))
        });
        if let Err(error) = built {
            let _ = writeln!(std::io::stderr(), "error: {name}: {error:#}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut stdout = std::io::stdout().lock();
    for advice in &loaded.advice {
        let _ = writeln!(stdout, "advice: {advice}");
    }
    let topology = &loaded.topology;
    let _ = writeln!(
        stdout,
        "{name}: OK: `{}`, {} region(s), {} component(s), {} listener(s) with {} rule(s), {} target group(s)",
        topology.name,
        topology.regions.len(),
        topology.components().count(),
        topology.edge.listeners.len(),
        topology
            .edge
            .listeners
            .iter()
            .map(|listener| listener.rules.len())
            .sum::<usize>(),
        topology.edge.target_groups.len()
    );
    for region in &topology.regions {
        let _ = writeln!(
            stdout,
            "  {}: {} (public {}, private {}, database {}), zones {}, storefront http://{}/",
            region.name,
            region.cidr,
            region.tiers.public,
            region.tiers.private,
            region.tiers.database,
            region.zones.join(", "),
            region.edge.address
        );
    }
    if let Some(dns) = &topology.dns {
        let servers: Vec<String> = topology
            .regions
            .iter()
            .filter_map(|region| region.dns.as_ref())
            .map(|server| server.address.to_string())
            .collect();
        let _ = writeln!(
            stdout,
            "  dns: zone {}, {} record set(s), {} health check(s), servers {}",
            dns.zone,
            dns.records.len(),
            dns.health_checks.len(),
            servers.join(", ")
        );
    }
    // Each web ACL, with the listeners it is in front of.
    let acls = std::iter::once(("", topology.edge.waf.as_ref()))
        .chain(
            topology
                .edge
                .web_acls
                .iter()
                .map(|(name, waf)| (name.as_str(), Some(waf))),
        )
        .filter_map(|(name, waf)| Some((name, waf?)));
    for (name, waf) in acls {
        let listeners: Vec<&str> = topology
            .edge
            .listeners
            .iter()
            .filter(|listener| {
                listener
                    .web_acl(&topology.edge)
                    .is_some_and(|acl| std::ptr::eq(acl, waf))
            })
            .map(|listener| listener.name.as_str())
            .collect();
        let on = if listeners.len() == topology.edge.listeners.len() {
            "every listener".to_owned()
        } else if listeners.is_empty() {
            "no listener".to_owned()
        } else {
            format!("listener(s) {}", listeners.join(", "))
        };
        let named = if name.is_empty() {
            String::new()
        } else {
            format!(" {name}")
        };
        let managed_priority = waf.overrides.managed_priority.unwrap_or(u32::MAX);
        let before = waf
            .rules
            .iter()
            .filter(|rule| rule.priority < managed_priority)
            .count();
        let _ = writeln!(
            stdout,
            "  web ACL{named} on {on}: {before} rule(s) of the shop's own, then {} at paranoia level {}{}{}{}",
            waf.managed_groups.join(", "),
            waf.sensitivity.paranoia,
            waf.sensitivity
                .anomaly_threshold
                .map(|threshold| format!(", scoring anomalies (threshold {threshold})"))
                .unwrap_or_default(),
            if waf.overrides.count.is_empty() {
                String::new()
            } else {
                format!(" (only counting {})", waf.overrides.count.join(", "))
            },
            match waf.rules.len() - before {
                0 => String::new(),
                after => format!(", then {after} rule(s) of the shop's own"),
            }
        );
    }
    if let Some(shield) = &topology.edge.shield {
        let _ = writeln!(
            stdout,
            "  shield: {} requests/s per client (burst {}), {} connections per client, {}{}",
            shield.requests_per_second,
            shield.burst,
            shield.connections_per_client,
            shield.max_requests_in_flight.map_or_else(
                || "no limit on requests in flight".to_owned(),
                |limit| format!("{limit} requests in flight")
            ),
            if shield.automatic_mitigation.is_some() {
                ", automatic mitigation"
            } else {
                ""
            }
        );
    }
    if let Some(cache) = &topology.edge.cache {
        let behaviors: Vec<String> = cache
            .behaviors
            .iter()
            .map(|behavior| format!("{} ({})", behavior.name, behavior.path_pattern))
            .collect();
        let disk = if cache.disk_bytes > 0 {
            format!(" and {} MiB on disk", cache.disk_bytes / (1024 * 1024))
        } else {
            String::new()
        };
        let _ = writeln!(
            stdout,
            "  cache: {} MiB{disk} at each edge, behaviours {}",
            cache.memory_bytes / (1024 * 1024),
            behaviors.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The children of `up`: every replica of every region, then every edge, so that the edges'
/// first health checks find their targets listening, then the DNS servers, whose health
/// checks look at the edges.
fn plan(
    topology: &Topology,
    config: Option<&Path>,
    data_dir: &Path,
    log_format: LogFormat,
) -> Plan {
    let mut common = Vec::new();
    if let Some(config) = config {
        common.extend(["--config".to_owned(), config.display().to_string()]);
    }
    common.extend([
        "--log-format".to_owned(),
        match log_format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
        .to_owned(),
    ]);
    let mut children = Vec::new();
    let components = topology
        .regions
        .iter()
        .flat_map(|region| region.replicas.iter())
        .chain(topology.regions.iter().map(|region| &region.edge))
        .chain(
            topology
                .regions
                .iter()
                .filter_map(|region| region.dns.as_ref()),
        );
    for component in components {
        let mut args = match component.role {
            Role::Edge => vec![
                "edge".to_owned(),
                "--data-dir".to_owned(),
                data_dir.display().to_string(),
            ],
            Role::Dns => vec!["dns".to_owned()],
            Role::Service(kind) => {
                let replica = component.name.rsplit('-').next().unwrap_or("1").to_owned();
                vec![
                    "shop".to_owned(),
                    kind.as_str().to_owned(),
                    "--replica".to_owned(),
                    replica,
                    "--data-dir".to_owned(),
                    data_dir.display().to_string(),
                ]
            }
        };
        args.extend(["--region".to_owned(), component.region.clone()]);
        args.extend(common.iter().cloned());
        children.push(ChildSpec {
            id: component.id(),
            role: component.role.to_string(),
            region: component.region.clone(),
            zone: component.zone.clone(),
            args,
            address: component.address,
            admin_address: component.admin_address,
        });
    }
    Plan {
        name: topology.name.clone(),
        program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("securecart")),
        children,
        state_file: state_file(data_dir),
        entry_points: topology
            .regions
            .iter()
            .map(|region| {
                (
                    region.name.clone(),
                    format!("http://{}/", region.edge.address),
                )
            })
            .collect(),
        ready_timeout: Duration::from_secs(60),
        env: Vec::new(),
        admin_token: None,
    }
}

async fn up(
    config: Option<PathBuf>,
    data_dir: &Path,
    log_format: Option<LogFormatArg>,
) -> anyhow::Result<ExitCode> {
    let loaded = settings::load_topology(config.as_deref())?;
    let format = settings::log_format(&loaded.topology, log_format);
    securecart_telemetry::logging::init(format, is_terminal());
    for advice in &loaded.advice {
        tracing::warn!("{advice}");
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the data directory {}", data_dir.display()))?;
    // Children run from the same working directory, but an absolute path survives a `cd`.
    let config = match config {
        Some(path) => Some(
            path.canonicalize()
                .with_context(|| format!("cannot resolve {}", path.display()))?,
        ),
        None => None,
    };
    let mut plan = plan(&loaded.topology, config.as_deref(), &data_dir, format);
    // A fresh admin token for this run's edges, kept in the state file (mode 0600) for
    // `securecart targets` and `securecart reload`.
    let token = format!("{:032x}", rand::random::<u128>());
    plan.env
        .push((settings::ADMIN_TOKEN_VARIABLE.to_owned(), token.clone()));
    // One key for every region's edge, so that a shopper's challenge token is good at
    // whichever region DNS sends them to.
    plan.env.push((
        settings::TOKEN_KEY_VARIABLE.to_owned(),
        format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        ),
    ));
    plan.admin_token = Some(token);
    tracing::info!(components = plan.children.len(), data_dir = %data_dir.display(), "starting SecureCart");
    securecart_supervisor::run(plan, shutdown_signal()).await?;
    tracing::info!("every component stopped");
    Ok(ExitCode::SUCCESS)
}

async fn status(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let path = state_file(data_dir);
    let Some(state) = securecart_supervisor::state::read(&path) else {
        anyhow::bail!(
            "no deployment is running from {} (no {}); start one with `securecart up --data-dir {}`",
            data_dir.display(),
            path.display(),
            data_dir.display()
        );
    };
    let running = securecart_supervisor::state::is_alive(state.supervisor_pid);
    let mut probes = tokio::task::JoinSet::new();
    for (index, component) in state.components.iter().enumerate() {
        let admin = component.admin_address;
        probes.spawn(async move {
            (
                index,
                securecart_supervisor::probe_health(admin, Duration::from_secs(1)).await,
            )
        });
    }
    let mut healthy = vec![false; state.components.len()];
    while let Some(Ok((index, result))) = probes.join_next().await {
        healthy[index] = result;
    }
    let all_healthy = running && healthy.iter().all(|healthy| *healthy);
    let mut stdout = std::io::stdout().lock();
    if json {
        let report = status_json(&state, running, &healthy);
        let _ = writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?);
    } else {
        let _ = writeln!(
            stdout,
            "Deployment `{}`, supervisor pid {} ({})",
            state.name,
            state.supervisor_pid,
            if running {
                "running"
            } else {
                "not running: stale state file"
            }
        );
        let _ = writeln!(
            stdout,
            "{:<24} {:<11} {:<12} {:<22} {:>7} {:>8}  HEALTH",
            "COMPONENT", "ROLE", "ZONE", "ADDRESS", "PID", "RESTARTS"
        );
        for (component, healthy) in state.components.iter().zip(&healthy) {
            let _ = writeln!(
                stdout,
                "{:<24} {:<11} {:<12} {:<22} {:>7} {:>8}  {}",
                component.id,
                component.role,
                component.zone,
                component.address.to_string(),
                component
                    .pid
                    .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
                component.restarts,
                if *healthy { "healthy" } else { "UNHEALTHY" }
            );
        }
        for (region, url) in &state.entry_points {
            let _ = writeln!(stdout, "Storefront of {region}: {url}");
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status_json(state: &DeploymentState, running: bool, healthy: &[bool]) -> serde_json::Value {
    serde_json::json!({
        "name": state.name,
        "supervisor_pid": state.supervisor_pid,
        "running": running,
        "healthy": running && healthy.iter().all(|healthy| *healthy),
        "components": state.components.iter().zip(healthy).map(|(component, healthy)| serde_json::json!({
            "id": component.id,
            "role": component.role,
            "region": component.region,
            "zone": component.zone,
            "address": component.address.to_string(),
            "admin_address": component.admin_address.to_string(),
            "pid": component.pid,
            "restarts": component.restarts,
            "healthy": healthy,
        })).collect::<Vec<_>>(),
        "entry_points": state.entry_points.iter().map(|(region, url)| serde_json::json!({"region": region, "url": url})).collect::<Vec<_>>(),
    })
}

/// The running deployment's state, or a clear error.
fn running_state(data_dir: &Path) -> anyhow::Result<DeploymentState> {
    let path = state_file(data_dir);
    let state = securecart_supervisor::state::read(&path).with_context(|| {
        format!(
            "no deployment is running from {} (no {}); start one with `securecart up --data-dir {}`",
            data_dir.display(),
            path.display(),
            data_dir.display()
        )
    })?;
    if !securecart_supervisor::state::is_alive(state.supervisor_pid) {
        anyhow::bail!(
            "the deployment in {} is not running (stale state file)",
            data_dir.display()
        );
    }
    Ok(state)
}

/// The edges of the deployment, or of one region.
fn edges<'s>(
    state: &'s DeploymentState,
    region: Option<&str>,
) -> anyhow::Result<Vec<&'s securecart_supervisor::ComponentState>> {
    let edges: Vec<_> = state
        .components
        .iter()
        .filter(|component| {
            component.role == "edge" && region.is_none_or(|region| component.region == region)
        })
        .collect();
    if edges.is_empty() {
        anyhow::bail!(
            "the deployment has no edge in region `{}`",
            region.unwrap_or("any")
        );
    }
    Ok(edges)
}

async fn targets(
    data_dir: &Path,
    region: Option<&str>,
    admin: Option<std::net::SocketAddr>,
    change: Option<TargetChange>,
) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    if let Some(change) = change {
        if region.is_none() && admin.is_none() {
            anyhow::bail!("say which edge to change with --region (or --admin ADDR)");
        }
        let (path, target_group, address) = match &change {
            TargetChange::Register {
                target_group,
                address,
            } => ("/targets/register", target_group, address),
            TargetChange::Deregister {
                target_group,
                address,
            } => ("/targets/deregister", target_group, address),
        };
        let body =
            serde_json::json!({ "target_group": target_group, "address": address }).to_string();
        for (name, admin_address, token) in admin_addresses(data_dir, region, admin)? {
            let answer =
                admin_client::post(admin_address, path, token.as_deref(), body.clone()).await?;
            let _ = writeln!(stdout, "{name}: {path} {target_group} {address}: done");
            print_targets(&mut stdout, &name, &answer);
        }
        // The other regions' edges know the region's replicas too, as the secondary of
        // their cache behaviours' origin failover (`storefront@us-east-1`): the same
        // change there.
        if let (Some(region), None) = (region, admin) {
            let state = running_state(data_dir)?;
            let copy = settings::failover_group_name(target_group, region);
            let body = serde_json::json!({ "target_group": copy, "address": address }).to_string();
            for edge in state
                .components
                .iter()
                .filter(|component| component.role == "edge" && component.region != region)
            {
                let listed = admin_client::get(edge.admin_address, "/targets").await?;
                let known = listed["target_groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|group| group["name"] == copy.as_str());
                if known {
                    admin_client::post(
                        edge.admin_address,
                        path,
                        state.admin_token.as_deref(),
                        body.clone(),
                    )
                    .await?;
                    let _ = writeln!(stdout, "{}: {path} {copy} {address}: done", edge.id);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    for (name, address, _) in admin_addresses(data_dir, region, admin)? {
        let answer = admin_client::get(address, "/targets").await?;
        print_targets(&mut stdout, &name, &answer);
    }
    Ok(ExitCode::SUCCESS)
}

/// The edges an admin command speaks to: one by its admin address (the token from
/// SECURECART_ADMIN_TOKEN), or a running `up` deployment's (or one region's), each with
/// its name and the deployment's token.
fn admin_addresses(
    data_dir: &Path,
    region: Option<&str>,
    admin: Option<std::net::SocketAddr>,
) -> anyhow::Result<Vec<(String, std::net::SocketAddr, Option<String>)>> {
    if let Some(admin) = admin {
        return Ok(vec![(
            admin.to_string(),
            admin,
            std::env::var(settings::ADMIN_TOKEN_VARIABLE).ok(),
        )]);
    }
    let state = running_state(data_dir)?;
    Ok(edges(&state, region)?
        .into_iter()
        .map(|edge| {
            (
                edge.id.clone(),
                edge.admin_address,
                state.admin_token.clone(),
            )
        })
        .collect())
}

fn print_targets(out: &mut impl Write, edge: &str, answer: &serde_json::Value) {
    let _ = writeln!(out, "{edge}");
    for group in answer["target_groups"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {} ({} healthy{})",
            group["name"].as_str().unwrap_or(""),
            group["healthy"],
            if group["fails_open"] == true {
                ", too few: failing open to every target"
            } else {
                ""
            }
        );
        for target in group["targets"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "    {:<22} {:<10} in flight {}",
                target["address"].as_str().unwrap_or(""),
                target["state"].as_str().unwrap_or(""),
                target["in_flight"]
            );
            // A gray failure: healthy by its checks, erring more than the others.
            let anomaly = &target["anomaly_detection"];
            if anomaly["result"] == "anomalous" || anomaly["mitigation_in_effect"] == true {
                let _ = write!(
                    out,
                    "  {}{}",
                    anomaly["result"].as_str().unwrap_or(""),
                    if anomaly["mitigation_in_effect"] == true {
                        ", mitigated"
                    } else {
                        ""
                    }
                );
            }
            // Why it is not healthy, as ALB says it.
            let _ = match (target["reason"].as_str(), target["description"].as_str()) {
                (Some(reason), Some(description)) => {
                    writeln!(out, "  {reason}: {description}")
                }
                _ => writeln!(out),
            };
        }
    }
}

/// `securecart cache invalidate`: the paths and tags go to each edge's admin API.
async fn invalidate(
    paths: &[String],
    tags: &[String],
    data_dir: &Path,
    region: Option<&str>,
    admin: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    if let Some(path) = paths.iter().find(|path| !path.starts_with('/')) {
        anyhow::bail!("--path `{path}` must start with `/`, such as /images/*");
    }
    let body = serde_json::json!({ "paths": paths, "tags": tags }).to_string();
    let mut stdout = std::io::stdout().lock();
    for (name, address, token) in admin_addresses(data_dir, region, admin)? {
        let answer =
            admin_client::post(address, "/cache/invalidate", token.as_deref(), body.clone())
                .await?;
        let _ = writeln!(
            stdout,
            "{name}: {} objects invalidated",
            answer["invalidated"].as_u64().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `securecart reload`: one edge or DNS server by its admin address, or a running
/// deployment's edges and DNS servers (one region's, with `--region`), read the topology
/// again. Each is asked, whatever the others answer; a refusal (a topology one of them
/// does not take: it keeps what is in force) is reported, and fails the command.
async fn reload(
    data_dir: &Path,
    region: Option<&str>,
    admin: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let servers = match admin {
        Some(_) => admin_addresses(data_dir, region, admin)?,
        None => {
            let state = running_state(data_dir)?;
            let mut servers: Vec<_> = state
                .components
                .iter()
                .filter(|component| {
                    matches!(component.role.as_str(), "edge" | "dns")
                        && region.is_none_or(|region| component.region == region)
                })
                .map(|component| {
                    (
                        component.id.clone(),
                        component.admin_address,
                        state.admin_token.clone(),
                    )
                })
                .collect();
            if servers.is_empty() {
                anyhow::bail!(
                    "the deployment has no edge or DNS server in region `{}`",
                    region.unwrap_or("any")
                );
            }
            servers.sort_by(|a, b| a.0.cmp(&b.0));
            servers
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut refused = 0;
    for (name, address, token) in servers {
        match admin_client::post(address, "/reload", token.as_deref(), String::new()).await {
            Ok(_) => {
                let _ = writeln!(stdout, "{name}: reloaded");
            }
            Err(error) => {
                refused += 1;
                eprintln!("{name}: not reloaded, what is in force stays: {error:#}");
            }
        }
    }
    if refused > 0 {
        anyhow::bail!("{refused} server(s) did not reload");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets_print_their_state_why_and_any_anomaly() {
        let answer = serde_json::json!({"target_groups": [{
            "name": "api",
            "healthy": 2,
            "targets": [
                {"address": "127.0.0.1:9001", "state": "healthy", "in_flight": 0,
                 "anomaly_detection": {"result": "normal", "mitigation_in_effect": false}},
                {"address": "127.0.0.1:9002", "state": "healthy", "in_flight": 3,
                 "anomaly_detection": {"result": "anomalous", "mitigation_in_effect": true}},
                {"address": "127.0.0.1:9003", "state": "unhealthy", "in_flight": 0,
                 "reason": "Target.Timeout", "description": "Request timed out",
                 "anomaly_detection": {"result": "normal", "mitigation_in_effect": false}},
            ],
        }, {
            "name": "cart",
            "healthy": 1,
            "fails_open": true,
            "targets": [
                {"address": "127.0.0.1:9004", "state": "healthy", "in_flight": 1,
                 "anomaly_detection": {"result": "normal", "mitigation_in_effect": false}},
            ],
        }]});
        let mut out = Vec::new();
        super::print_targets(&mut out, "edge-us-east-1", &answer);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "edge-us-east-1\n  api (2 healthy)\n    \
             127.0.0.1:9001         healthy    in flight 0\n    \
             127.0.0.1:9002         healthy    in flight 3  anomalous, mitigated\n    \
             127.0.0.1:9003         unhealthy  in flight 0  Target.Timeout: Request timed out\n  \
             cart (1 healthy, too few: failing open to every target)\n    \
             127.0.0.1:9004         healthy    in flight 1\n"
        );
    }
}
