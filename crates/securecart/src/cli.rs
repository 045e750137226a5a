//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// SecureCart: the network of a global shop (edge, load balancing, DNS, the shop itself)
/// in one binary and one topology file.
#[derive(Debug, Parser)]
#[command(name = "securecart", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole deployment on this machine: every component of every region.
    Up {
        /// The topology file; without it, the default topology compiled into the binary.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where the stores and the state file live.
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The log format of every component; overrides the topology's.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Show every component of the deployment running from a data directory.
    Status {
        /// The data directory `up` was started with.
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the targets of a running deployment's edges and their health, or change them
    /// (like ALB's DescribeTargetHealth, RegisterTargets and DeregisterTargets).
    Targets {
        /// The data directory `up` was started with.
        #[arg(long, value_name = "DIR", default_value = "data", global = true)]
        data_dir: PathBuf,
        /// Only this region's edge (required to change targets, unless --admin names one).
        #[arg(long, global = true, conflicts_with = "admin")]
        region: Option<String>,
        /// One edge's admin address instead of a deployment's edges (`securecart edge` on
        /// its own host, `securecart proxy`), with the token in SECURECART_ADMIN_TOKEN.
        #[arg(long, value_name = "ADDR", global = true)]
        admin: Option<std::net::SocketAddr>,
        /// What to change; without it, show.
        #[command(subcommand)]
        change: Option<TargetChange>,
    },
    /// Work with the edges' caches.
    Cache {
        /// What to do.
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Make a running deployment's edges and DNS servers read their topology again (as
    /// SIGHUP does).
    Reload {
        /// The data directory `up` was started with.
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
        /// Only this region's edge and DNS server.
        #[arg(long, conflicts_with = "admin")]
        region: Option<String>,
        /// One edge's or DNS server's admin address instead of a deployment's, with the
        /// token in SECURECART_ADMIN_TOKEN.
        #[arg(long, value_name = "ADDR")]
        admin: Option<std::net::SocketAddr>,
    },
    /// Validate a topology file and say what is wrong with it.
    Check {
        /// The file; without it, the default topology compiled into the binary.
        file: Option<PathBuf>,
    },
    /// Run one region's edge.
    Edge {
        /// The region whose edge to run.
        #[arg(long)]
        region: String,
        /// The topology file; without it, the default topology.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The data directory (the cache's disk tier lives under it).
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The log format; overrides the topology's.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Put the edge in front of existing HTTP servers without a topology file, the way
    /// `caddy reverse-proxy` does: round robin over the upstreams, with health checks.
    Proxy {
        /// Where to accept clients.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// An upstream server, such as http://127.0.0.1:3000 or https://shop.example;
        /// repeat for several (all http://, or all https:// naming one host).
        #[arg(long = "upstream", value_name = "URL", required = true)]
        upstreams: Vec<String>,
        /// Check https:// upstreams' certificates against the CA certificates of this PEM
        /// file, rather than the system's.
        #[arg(long, value_name = "FILE", conflicts_with = "upstream_insecure")]
        upstream_ca: Option<PathBuf>,
        /// Check no certificate of https:// upstreams (as ALB does with its targets): the
        /// traffic is encrypted, but the upstream is not authenticated.
        #[arg(long)]
        upstream_insecure: bool,
        /// Send the upstreams the Host their URLs name (Caddy's flag), the client's in
        /// X-Forwarded-Host, rather than the client's Host (ALB's way), for a site that
        /// answers only its own name.
        #[arg(long)]
        change_host_header: bool,
        /// Where to serve /metrics, /healthz and /targets (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        admin: std::net::SocketAddr,
        /// The path the health checks request on every upstream; any answer below 500
        /// passes.
        #[arg(long, default_value = "/")]
        health_path: String,
        /// Terminate TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Worker threads (default: one per core); 1 runs everything on one thread.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
        /// Cache what the upstreams allow (RFC 9111: their Cache-Control, Expires,
        /// Surrogate-Control and CDN-Cache-Control decide), in memory.
        #[arg(long)]
        cache: bool,
        /// The cache's memory, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 256, requires = "cache",
              value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        cache_memory: u64,
        /// Also keep cached objects in files in this directory (created if missing), so
        /// that a restarted proxy starts warm.
        #[arg(long, value_name = "DIR", requires = "cache")]
        cache_disk: Option<PathBuf>,
        /// Also store answers that set cookies, and hand their cookies to every client they
        /// answer, as RFC 9111 allows (the conformance suite asks for it); by default they
        /// are not stored, as nginx and Varnish do not store them.
        #[arg(long, requires = "cache")]
        cache_set_cookie: bool,
        /// Put the managed web ACL in front of the upstreams (SQL injection, XSS, command
        /// injection, path traversal, Log4Shell and the rest), blocking with 403.
        #[arg(long)]
        waf: bool,
        /// The managed rules' paranoia level, 1 to 4 (CRS's): each level adds stricter
        /// rules, which stop more attacks and block more ordinary requests.
        #[arg(long, value_name = "LEVEL", default_value_t = 1, requires = "waf",
              value_parser = clap::value_parser!(u8).range(1..=4))]
        waf_paranoia: u8,
        /// Score anomalies as CRS does, blocking a request whose score reaches this (5: one
        /// critical finding, or several weaker signs); without it each rule blocks.
        #[arg(long, value_name = "SCORE", requires = "waf",
              value_parser = clap::value_parser!(u32).range(1..=100))]
        waf_anomaly_threshold: Option<u32>,
        /// What to do with requests that do not comply with RFC 9112 (ALB's desync
        /// mitigation mode): route them all, classified and counted (monitor); route
        /// ambiguous ones and close the connections after them, refusing those framed two
        /// ways (defensive); or route compliant requests only (strictest). Severe ones are
        /// refused in every mode.
        #[arg(long, value_enum, default_value = "defensive")]
        desync_mitigation_mode: DesyncModeArg,
        /// The disk tier's size, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024, requires = "cache_disk",
              value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
        cache_disk_size: u64,
        /// The log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
    },
    /// Run an authoritative DNS server over UDP and TCP: zone files alone (`--zone`), the
    /// way `knotd` or `nsd` serves them, or a region's server of the topology's `[dns]`
    /// zone (`--region`), with its routing policies and health checks. SIGHUP reads the
    /// files again; one that does not load leaves the zones in force.
    #[command(args_conflicts_with_subcommands = true)]
    Dns {
        /// Ask the topology's zone a question instead of serving it.
        #[command(subcommand)]
        action: Option<DnsAction>,
        /// A zone file (RFC 1035); repeat for several zones. The zone's name comes from its
        /// `$ORIGIN`, or from the file's name without `.zone`.
        #[arg(long = "zone", value_name = "FILE", required_unless_present = "region")]
        zones: Vec<PathBuf>,
        /// Serve the topology's zone as this region's DNS server.
        #[arg(long, conflicts_with = "zones")]
        region: Option<String>,
        /// The topology file for `--region`; without it, the default topology.
        #[arg(long, value_name = "FILE", requires = "region")]
        config: Option<PathBuf>,
        /// Where to answer, UDP and TCP (zone files; a region answers at its address).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
        listen: std::net::SocketAddr,
        /// Where to serve /metrics and /healthz (zone files; port 0: any free port; a
        /// region's server uses its topology address).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        admin: std::net::SocketAddr,
        /// Worker threads (default: one per core); 1 runs everything on one thread.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
        /// How long, in microseconds, a UDP worker lets queries gather after answering
        /// several at once, so that under load they are answered in larger batches (less
        /// CPU per query, that much more latency at most; a long wait at a high rate can
        /// fill the socket's receive buffer, whose overflow the kernel drops); 0 answers
        /// each as soon as it comes.
        #[arg(long, value_name = "MICROSECONDS", default_value_t = 100,
              value_parser = clap::value_parser!(u64).range(0..=10_000))]
        udp_batch_wait: u64,
        /// The log format; overrides the topology's.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Run one replica of one of the shop's services.
    Shop {
        /// The service.
        #[arg(value_enum)]
        service: ServiceArg,
        /// The region the replica belongs to.
        #[arg(long)]
        region: String,
        /// Which replica, from 1.
        #[arg(long, default_value_t = 1)]
        replica: u32,
        /// The topology file; without it, the default topology.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where the region's store lives.
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The log format; overrides the topology's.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
}

/// What `securecart dns` can do besides serving.
#[derive(Debug, Subcommand)]
pub enum DnsAction {
    /// Answer a question from the topology's zone the way a DNS server of the deployment
    /// would, and say why (Route 53's "test DNS answer"). Health comes from the running
    /// deployment's DNS servers; without one, every health check counts as healthy.
    TestRecord {
        /// The name, such as www.securecart.test.
        name: String,
        /// The record type, such as A.
        #[arg(value_name = "TYPE")]
        record_type: String,
        /// The client's network, as EDNS Client Subnet gives it, such as 127.2.0.0/16.
        #[arg(long, value_name = "CIDR")]
        client_subnet: Option<ipnet::IpNet>,
        /// The resolver's address, used when no client subnet is given.
        #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
        resolver_ip: std::net::IpAddr,
        /// The topology file; without it, the default topology.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The data directory of the running deployment, for the health checks' states.
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
    },
}

/// A change to a target group.
#[derive(Debug, Subcommand)]
pub enum TargetChange {
    /// Add a target to a group.
    Register {
        /// The target group.
        target_group: String,
        /// The target's address, such as 127.1.1.20:8080.
        address: std::net::SocketAddr,
    },
    /// Remove a target from a group; its requests in flight finish.
    Deregister {
        /// The target group.
        target_group: String,
        /// The target's address.
        address: std::net::SocketAddr,
    },
}

/// What `securecart cache` does.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Drop objects from the edges' caches by path or by tag, as CloudFront's invalidations
    /// do: every edge of a running `up` deployment (or one region's), or one edge by its
    /// admin address (`securecart proxy --cache`), with the token in SECURECART_ADMIN_TOKEN.
    Invalidate {
        /// A path pattern, such as /images/* (`*` and `?` wildcards); repeat for several.
        #[arg(
            long = "path",
            value_name = "PATTERN",
            required_unless_present = "tags"
        )]
        paths: Vec<String>,
        /// A tag the origin gave objects in Surrogate-Key or Cache-Tag; repeat for several.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// The data directory `up` was started with.
        #[arg(long, value_name = "DIR", default_value = "data")]
        data_dir: PathBuf,
        /// Only this region's edge.
        #[arg(long, conflicts_with = "admin")]
        region: Option<String>,
        /// One edge's admin address instead of a deployment's edges.
        #[arg(long, value_name = "ADDR")]
        admin: Option<std::net::SocketAddr>,
    },
}

/// A log format on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// A desync mitigation mode on the command line (the topology's
/// `desync_mitigation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DesyncModeArg {
    /// Route every request the edge can frame but severe ones; classify and count them.
    Monitor,
    /// Route ambiguous requests, then close both connections; refuse severe ones and
    /// those framed two ways.
    Defensive,
    /// Route compliant requests only.
    Strictest,
}

/// A shop service on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceArg {
    /// Products, categories, search, images.
    Catalog,
    /// Carts.
    Cart,
    /// Orders.
    Checkout,
    /// The simulated payment provider.
    Payments,
    /// Pages and assets.
    Storefront,
}

impl Command {
    /// The worker threads the command asked for, if it did.
    pub fn workers(&self) -> Option<usize> {
        match self {
            Command::Proxy { workers, .. } | Command::Dns { workers, .. } => {
                workers.map(usize::from)
            }
            _ => None,
        }
    }
}
