//! The topology file: every example parses, unknown keys are rejected, and every error
//! names the file, the line and the field.

use std::path::{Path, PathBuf};

use securecart_topology::{Role, ServiceKind, TopologyError, parse};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `*.toml` in the repository that is a topology: the default one and every file
/// under `examples/` and `tests/` whose first key is `name`, skipping Cargo manifests.
fn example_topologies() -> Vec<PathBuf> {
    let root = repository_root();
    let mut found = vec![root.join("securecart.toml")];
    let mut directories = vec![root.join("examples"), root.join("tests")];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|name| name != "node_modules") {
                directories.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "toml")
                && std::fs::read_to_string(&path).is_ok_and(|text| text.contains("[[regions]]"))
            {
                found.push(path);
            }
        }
    }
    found
}

fn inside(net: ipnet::Ipv4Net, address: std::net::SocketAddr) -> bool {
    matches!(address.ip(), std::net::IpAddr::V4(ip) if net.contains(&ip))
}

fn default_text() -> String {
    std::fs::read_to_string(repository_root().join("securecart.toml")).expect("securecart.toml")
}

#[test]
fn every_example_topology_in_the_repository_is_valid() {
    let examples = example_topologies();
    assert!(!examples.is_empty());
    for path in examples {
        let loaded = securecart_topology::load_file(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(!loaded.topology.regions.is_empty(), "{}", path.display());
    }
}

#[test]
fn the_default_topology_runs_two_regions_with_replicas_spread_across_zones() {
    let loaded = parse(&default_text(), "securecart.toml").expect("valid");
    assert!(loaded.advice.is_empty(), "{:?}", loaded.advice);
    let topology = loaded.topology;
    let names: Vec<&str> = topology
        .regions
        .iter()
        .map(|region| region.name.as_str())
        .collect();
    assert_eq!(names, ["us-east-1", "eu-west-1"]);
    let east = topology.region("us-east-1").expect("us-east-1");
    assert_eq!(east.cidr.to_string(), "127.1.0.0/16");
    assert_eq!(east.edge.address.to_string(), "127.1.0.1:8080");
    assert_eq!(east.edge.admin_address.to_string(), "127.1.0.1:9090");
    for kind in ServiceKind::ALL {
        let replicas: Vec<_> = east.replicas_of(kind).collect();
        assert!(replicas.len() >= 2, "{kind:?}");
        let zones: std::collections::HashSet<&str> = replicas
            .iter()
            .map(|replica| replica.zone.as_str())
            .collect();
        assert!(zones.len() >= 2, "{kind:?} replicas share one zone");
        for replica in replicas {
            assert!(
                inside(east.tiers.private, replica.address),
                "{replica:?} not in the private tier"
            );
        }
    }
    assert!(inside(east.tiers.public, east.edge.address));
    let eu = topology.region("eu-west-1").expect("eu-west-1");
    assert!(
        eu.components()
            .all(|component| inside(eu.cidr, component.address))
    );
    // Every component has its own address.
    let mut addresses: Vec<_> = topology
        .components()
        .map(|component| component.address)
        .collect();
    let count = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), count);
    assert_eq!(
        topology
            .component("eu-west-1/edge")
            .map(|component| component.role),
        Some(Role::Edge)
    );
    // The catalog's cache key leaves campaign links' tracking parameters out.
    let catalog = topology
        .edge
        .cache
        .as_ref()
        .and_then(|cache| cache.behaviors.iter().find(|each| each.name == "catalog"))
        .expect("the catalog's behaviour");
    assert_eq!(
        catalog.query_strings,
        securecart_topology::QueryStrings::AllExcept(vec![
            "utm_source".to_owned(),
            "utm_medium".to_owned(),
            "utm_campaign".to_owned()
        ])
    );
    let waf = topology.edge.waf.as_ref().expect("a web ACL");
    assert_eq!(waf.overrides.managed_priority, Some(500));
    assert!(waf.overrides.count.is_empty());
    let counting = with(
        "managed_priority = 500",
        "managed_priority = 500\ncount_rules = [\"SC-SQLI-003\"]",
    );
    let counting = parse(&counting, "securecart.toml").expect("valid");
    let waf = counting.topology.edge.waf.expect("a web ACL");
    assert_eq!(waf.overrides.count, ["SC-SQLI-003"]);
}

/// Replaces the first occurrence of `from` in the default topology.
fn with(from: &str, to: &str) -> String {
    let text = default_text();
    assert!(text.contains(from), "the default topology has no `{from}`");
    text.replacen(from, to, 1)
}

/// The diagnostic that `text`, which must not load, gets at the field `at` names.
fn diagnostic_where(text: &str, at: impl Fn(&str) -> bool) -> securecart_topology::Diagnostic {
    let error = parse(text, "bad.toml").expect_err("a topology that does not load");
    error
        .diagnostics()
        .into_iter()
        .find(|diagnostic| at(&diagnostic.field))
        .unwrap_or_else(|| panic!("no diagnostic there: {error}"))
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn an_unknown_key_is_rejected_with_its_line_and_field() {
    let text = with("admin_port = 9090", "admin_port = 9090\nadmin_prot = 1");
    let error = parse(&text, "topology.toml").expect_err("unknown key");
    let TopologyError::Syntax(diagnostic) = &error else {
        panic!("expected a syntax error, got {error:?}");
    };
    assert_eq!(diagnostic.file, "topology.toml");
    assert_eq!(diagnostic.line, Some(line_of(&text, "admin_prot")));
    assert_eq!(diagnostic.field, "telemetry.admin_prot");
    assert!(
        diagnostic.message.contains("unknown field `admin_prot`"),
        "{}",
        diagnostic.message
    );
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("topology.toml:{}:", line_of(&text, "admin_prot"))),
        "{shown}"
    );
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    let cases = [
        (
            "name = \"securecart-local\"",
            "name = \"securecart-local\"\nflavour = 1",
            "flavour",
        ),
        (
            "latitude = 38.94",
            "latitude = 38.94\nlattitude = 1.0",
            "regions[0].lattitude",
        ),
        (
            "replicas = 2",
            "replicas = 2\nreplica = 3",
            "services[0].replica",
        ),
        (
            "priority = 10",
            "priority = 10\nmethods = [\"GET\"]",
            "edge.listeners[0].rules[0].methods",
        ),
        (
            "name = \"http\"",
            "name = \"http\"\nssl_policy = \"modern\"",
            "edge.listeners[0].ssl_policy",
        ),
        (
            "healthy_threshold = 2,",
            "healthy_threshold = 2, healthy = 1,",
            "edge.target_groups[0].health_check.healthy",
        ),
    ];
    for (from, to, field) in cases {
        let error = parse(&with(from, to), "t.toml").expect_err(field);
        let diagnostics = error.diagnostics();
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].field, field, "{error}");
        assert!(diagnostics[0].line.is_some(), "{error}");
        assert!(diagnostics[0].message.contains("unknown field"), "{error}");
    }
}

#[test]
fn invalid_values_are_reported_with_field_line_and_reason() {
    // (replace, with, field, part of the message)
    let cases = [
        (
            "cidr = \"127.1.0.0/16\"",
            "cidr = \"127.1.0.0/33\"",
            "regions[0].cidr",
            "not an IPv4 block",
        ),
        (
            "cidr = \"127.1.0.0/16\"",
            "cidr = \"127.1.0.5/16\"",
            "regions[0].cidr",
            "host bits",
        ),
        (
            "cidr = \"127.2.0.0/16\"",
            "cidr = \"127.0.0.0/8\"",
            "regions[1].cidr",
            "overlaps region `us-east-1`",
        ),
        (
            "public = \"127.1.0.0/24\"",
            "public = \"127.3.0.0/24\"",
            "regions[0].tiers.public",
            "not inside the region's block",
        ),
        (
            "private = \"127.1.1.0/24\"",
            "private = \"127.1.0.0/23\"",
            "regions[0].tiers.private",
            "overlaps the public tier",
        ),
        (
            "private = \"127.1.1.0/24\"",
            "private = \"127.1.1.0/30\"",
            "regions[0].tiers.private",
            "too few addresses",
        ),
        (
            "latitude = 38.94",
            "latitude = 138.94",
            "regions[0].latitude",
            "-90 to 90",
        ),
        (
            "zones = [\"us-east-1a\", \"us-east-1b\"]",
            "zones = []",
            "regions[0].zones",
            "at least one",
        ),
        (
            "zones = [\"us-east-1a\", \"us-east-1b\"]",
            "zones = [\"us-east-1a\", \"us-east-1a\"]",
            "regions[0].zones[1]",
            "listed twice",
        ),
        (
            "name = \"eu-west-1\"",
            "name = \"us-east-1\"",
            "regions[1].name",
            "listed twice",
        ),
        (
            "name = \"eu-west-1\"",
            "name = \"EU West\"",
            "regions[1].name",
            "not a region name",
        ),
        (
            "name = \"storefront\"\nreplicas",
            "name = \"shopfront\"\nreplicas",
            "services[0].name",
            "unknown service `shopfront`",
        ),
        (
            "replicas = 2",
            "replicas = 0",
            "services[0].replicas",
            "at least 1",
        ),
        (
            "log_format = \"text\"",
            "log_format = \"xml\"",
            "telemetry.log_format",
            "not a log format",
        ),
        (
            "kind = \"sqlite\"",
            "kind = \"oracle\"",
            "store.kind",
            "not a store engine",
        ),
        (
            "path = [\"/api/cart\", \"/api/cart/*\"]",
            "path = [\"api/cart\", \"/api/cart/*\"]",
            "edge.listeners[0].rules[1].path[0]",
            "must start with `/`",
        ),
        (
            "forward = \"cart\"",
            "forward = \"carts\"",
            "edge.listeners[0].rules[1].forward",
            "no target group is named `carts`",
        ),
        (
            "priority = 20",
            "priority = 10",
            "edge.listeners[0].rules[1].priority",
            "already has priority 10",
        ),
        (
            "forward = \"cart\"",
            "forward = \"cart\"\nredirect = { status = 301 }",
            "edge.listeners[0].rules[1]",
            "exactly one action",
        ),
        (
            "status = 404, content_type",
            "status = 302, content_type",
            "edge.listeners[0].rules[3].fixed_response.status",
            "2xx, 4xx or 5xx",
        ),
        (
            "priority = 20\n",
            "priority = 20\nsource_ip = [\"10.0.0.0/33\"]\n",
            "edge.listeners[0].rules[1].source_ip[0]",
            "not a CIDR block",
        ),
        (
            "priority = 20\n",
            "priority = 20\nmethod = [\"get\"]\n",
            "edge.listeners[0].rules[1].method[0]",
            "not an HTTP method",
        ),
        (
            "forward = \"cart\"",
            "forward = { target_groups = [{ name = \"cart\", weight = 0 }] }",
            "edge.listeners[0].rules[1].forward.target_groups",
            "weight above 0",
        ),
        (
            "forward = \"cart\"",
            "forward = { target_groups = [{ name = \"cart\", weight = 1000 }] }",
            "edge.listeners[0].rules[1].forward.target_groups[0].weight",
            "0 to 999",
        ),
        (
            "default_action = { forward = \"storefront\" }",
            "default_action = { redirect = { status = 307 } }",
            "edge.listeners[0].default_action.redirect.status",
            "301 or 302",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nprotocol = \"http3\"",
            "edge.target_groups[1].protocol",
            "not a target protocol",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nslow_start_seconds = 5",
            "edge.target_groups[1].slow_start_seconds",
            "from 30 to 900",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nstickiness_app_cookie = \"sc_session\"",
            "edge.target_groups[1].stickiness_app_cookie",
            "needs stickiness_seconds",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nstickiness_seconds = 60\nstickiness_app_cookie = \"a b\"",
            "edge.target_groups[1].stickiness_app_cookie",
            "not a cookie name",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nderegistration_delay_seconds = 7200",
            "edge.target_groups[1].deregistration_delay_seconds",
            "from 0 to 3600",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nanomaly_mitigation = true",
            "edge.target_groups[1].anomaly_mitigation",
            "needs algorithm = \"weighted_random\"",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nremove_response_headers = [\"Server\", \"content-length\"]",
            "edge.listeners[0].remove_response_headers[1]",
            "frames the answer",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nresponse_headers = { x-note = \"a\" }\nremove_response_headers = [\"X-Note\"]",
            "edge.listeners[0].remove_response_headers[0]",
            "also in response_headers",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nresponse_headers = { transfer-encoding = \"chunked\" }",
            "edge.listeners[0].response_headers.transfer-encoding",
            "frames the answer",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nresponse_headers = { Set-Cookie = \"a=b\" }",
            "edge.listeners[0].response_headers.Set-Cookie",
            "belongs to each answer",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nresponse_headers = { X-Note = \"a\", x-note = \"b\" }",
            "edge.listeners[0].response_headers.x-note",
            "set twice",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nresponse_headers = { \"x frame\" = \"DENY\" }",
            "edge.listeners[0].response_headers.x frame",
            "not a header name",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nresponse_headers = { x-note = \"café\" }",
            "edge.listeners[0].response_headers.x-note",
            "not a header value",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"\nhealth_check = { path = \"/healthz\"",
            "algorithm = \"p2c_peak_ewma\"\nprotocol = \"http2\"\nhealth_check = { grpc_codes = \"12\", matcher = \"200-299\", path = \"/healthz\"",
            "edge.target_groups[1].health_check.matcher",
            "judged by grpc_codes alone",
        ),
        (
            "\n# The shield, as AWS Shield",
            "\n[[edge.waf.rules]]\nname = \"admin-paths\"\npriority = 11\naction = \"count\"\ninsert_headers = { risk_score = \"1\" }\nstatement = { byte_match = { field = \"uri_path\", position = \"starts_with\", search = \"/admin\" } }\n# The shield, as AWS Shield",
            "edge.waf.rules[2].insert_headers.risk_score",
            "letters, digits and `-`",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ngroup_overrides = { xss = { scope_down = { or = [{ label_match = \"a:b\" }, { label_match = \"a:c\" }, { label_match = \"a:d\" }, { label_match = \"a:e\" }, { label_match = \"a:f\" }, { label_match = \"a:g\" }, { label_match = \"a:h\" }, { label_match = \"a:i\" }, { label_match = \"a:j\" }, { label_match = \"a:k\" }] } } }",
            "edge.waf.group_overrides.xss.scope_down",
            "at most 10",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"\nhealth_check = { path = \"/healthz\"",
            "algorithm = \"p2c_peak_ewma\"\nhealth_check = { grpc_codes = \"12\", path = \"/healthz\"",
            "edge.target_groups[1].health_check.grpc_codes",
            "needs protocol = \"http2\"",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"\nhealth_check = { path = \"/healthz\"",
            "algorithm = \"p2c_peak_ewma\"\nprotocol = \"http2\"\nhealth_check = { grpc_codes = \"0,100\", path = \"/healthz\"",
            "edge.target_groups[1].health_check.grpc_codes",
            "not a gRPC status code from 0 to 99",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nminimum_healthy_targets = 0",
            "edge.target_groups[1].minimum_healthy_targets",
            "from 1 to 64",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\ndns_failover_minimum_healthy_targets = 65",
            "edge.target_groups[1].dns_failover_minimum_healthy_targets",
            "from 0 to 64",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\ndns_failover_minimum_healthy_targets_percent = 0",
            "edge.target_groups[1].dns_failover_minimum_healthy_targets_percent",
            "from 1 to 100",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nminimum_healthy_targets = 3",
            "edge.target_groups[1].minimum_healthy_targets",
            "more than the group's 2 targets",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\ndns_failover_minimum_healthy_targets = 3",
            "edge.target_groups[1].dns_failover_minimum_healthy_targets",
            "would always send clients to another region",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"p2c_peak_ewma\"\nminimum_healthy_targets_percent = 101",
            "edge.target_groups[1].minimum_healthy_targets_percent",
            "from 1 to 100",
        ),
        (
            "name = \"https\"\nport = 8443",
            "name = \"https\"\nport = 8443\ntls_policy = \"tls10\"",
            "edge.listeners[1].tls_policy",
            "not \"tls12\"",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\ntls_headers = true",
            "edge.listeners[0].tls_headers",
            "only an https listener",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nhttp2 = false",
            "edge.listeners[0].http2",
            "only an https listener",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nmtls = { mode = \"passthrough\" }",
            "edge.listeners[0].mtls",
            "only an https listener",
        ),
        (
            "name = \"https\"\nport = 8443",
            "name = \"https\"\nport = 8443\nmtls = { mode = \"verify\" }",
            "edge.listeners[1].mtls",
            "verify needs a trust_store",
        ),
        (
            "name = \"https\"\nport = 8443",
            "name = \"https\"\nport = 8443\nmtls = { mode = \"passthrough\", trust_store = \"ca.pem\" }",
            "edge.listeners[1].mtls.trust_store",
            "passthrough checks no certificate",
        ),
        (
            "name = \"https\"\nport = 8443",
            "name = \"https\"\nport = 8443\nmtls = { mode = \"optional\" }",
            "edge.listeners[1].mtls.mode",
            "not `verify` or `passthrough`",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nxff_header_processing = \"strip\"",
            "edge.listeners[0].xff_header_processing",
            "not a way with X-Forwarded-For",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\ndesync_mitigation_mode = \"lenient\"",
            "edge.listeners[0].desync_mitigation_mode",
            "not a desync mitigation mode",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nxff_header_processing = \"remove\"\nxff_client_port = true",
            "edge.listeners[0].xff_client_port",
            "only with xff_header_processing = \"append\"",
        ),
        (
            "origin_shield = \"us-east-1\"",
            "origin_shield = \"us-east-1\"\nerror_caching_min_ttl_seconds = 40000000",
            "edge.cache.behaviors[1].error_caching_min_ttl_seconds",
            "from 0 to 31536000",
        ),
        (
            "origin_shield = \"us-east-1\"",
            "origin_shield = \"mars-1\"",
            "edge.cache.behaviors[1].origin_shield",
            "no region is named `mars-1`",
        ),
        (
            "origin_failover = { regions = [\"us-east-1\", \"eu-west-1\"] }",
            "origin_failover = { regions = [\"us-east-1\", \"mars-1\"] }",
            "edge.cache.behaviors[0].origin_failover.regions[1]",
            "no region is named `mars-1`",
        ),
        (
            "origin_failover = { regions = [\"us-east-1\", \"eu-west-1\"] }",
            "origin_failover = { regions = [\"eu-west-1\"] }",
            "edge.cache.behaviors[0].origin_failover.regions",
            "at least two regions",
        ),
        (
            "origin_failover = { regions = [\"us-east-1\", \"eu-west-1\"] }",
            "origin_failover = { regions = [\"eu-west-1\", \"eu-west-1\"] }",
            "edge.cache.behaviors[0].origin_failover.regions[1]",
            "`eu-west-1` is listed twice",
        ),
        (
            "origin_failover = { regions = [\"us-east-1\", \"eu-west-1\"] }",
            "origin_failover = { regions = [\"us-east-1\", \"eu-west-1\"], status_codes = [503, 501] }",
            "edge.cache.behaviors[0].origin_failover.status_codes[1]",
            "501 is not one of 400, 403, 404, 416, 500, 502, 503 and 504",
        ),
        (
            "response_headers = { X-Content-Type-Options = \"nosniff\" }",
            "response_headers = { Content-Length = \"1\" }",
            "edge.cache.behaviors[0].response_headers.Content-Length",
            "frames the answer or its connection",
        ),
        (
            "response_headers = { X-Content-Type-Options = \"nosniff\" }",
            "response_headers = { X-Content-Type-Options = \"nosniff\" }\nremove_response_headers = [\"x-content-type-options\"]",
            "edge.cache.behaviors[0].remove_response_headers[0]",
            "is also in response_headers",
        ),
        (
            "error_code = 504",
            "error_code = 418",
            "edge.cache.error_responses[2].error_code",
            "418 is not one of 400, 403, 404, 405, 414, 416, 500, 501, 502, 503 and 504",
        ),
        (
            "error_code = 502",
            "error_code = 502\nresponse_code = 302",
            "edge.cache.error_responses[0].response_code",
            "302 is not 200 nor one of the error codes",
        ),
        (
            "response_page_path = \"/static/unavailable.html\"",
            "response_page_path = \"static/unavailable.html\"",
            "edge.cache.error_responses[0].response_page_path",
            "is not a path of at most 1024 characters that starts with `/`",
        ),
        (
            "paths = [\"/\", \"/products\",",
            "paths = [\"products\", \"/products\",",
            "edge.cache.error_responses[0].paths[0]",
            "`products` must start with `/`",
        ),
        (
            "paranoia_level = 1\n",
            "paranoia_level = 1\nlogging = { default_behavior = \"maybe\" }\n",
            "edge.waf.logging.default_behavior",
            "`maybe` is not \"keep\" or \"drop\"",
        ),
        (
            "paranoia_level = 1\n",
            "paranoia_level = 1\nlogging = { filters = [{ behavior = \"drop\", conditions = [{ label = \"x\" }] }] }\n",
            "edge.waf.logging",
            "needs default_behavior",
        ),
        (
            "paranoia_level = 1\n",
            "paranoia_level = 1\nlogging = { default_behavior = \"keep\", filters = [{ behavior = \"drop\", conditions = [{ action = \"block\", label = \"x\" }] }] }\n",
            "edge.waf.logging.filters[0].conditions[0]",
            "needs one of action or label",
        ),
        (
            "paranoia_level = 1\n",
            "paranoia_level = 1\nlogging = { default_behavior = \"keep\", filters = [{ behavior = \"drop\", requirement = \"meets_some\", conditions = [{ action = \"captcha\" }] }] }\n",
            "edge.waf.logging.filters[0].conditions[0].action",
            "`captcha` is not \"allow\", \"block\", \"count\" or \"challenge\"",
        ),
        (
            "oversize = \"continue\"",
            "oversize = \"maybe\"",
            "edge.waf.oversize",
            "not `continue` or `block`",
        ),
        (
            "{ byte_match = { field = \"method\", position = \"exactly\", search = \"POST\" } }",
            "{ byte_match = { field = \"method\", position = \"exactly\", search = \"POST\", oversize = \"match\" } }",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].byte_match.oversize",
            "`cookie:NAME` only, not `method`",
        ),
        (
            "{ byte_match = { field = \"method\", position = \"exactly\", search = \"POST\" } }",
            "{ sqli = { field = \"json_values\", oversize = \"sometimes\" } }",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].sqli.oversize",
            "`sometimes` is not `continue`, `match` or `no_match`",
        ),
        (
            "managed_groups = [\"core\",",
            "managed_groups = [\"core\", \"ai\",",
            "edge.waf.managed_groups[1]",
            "not a managed rule group",
        ),
        (
            "{ byte_match = { field = \"method\", position = \"exactly\", search = \"POST\" } }",
            "{ regex = { field = \"method\", pattern = \"(POST\" } }",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].regex.pattern",
            "not a regular expression",
        ),
        (
            "block_response = { status = 429, headers = { \"retry-after\" = \"300\" }",
            "block_response = { status = 429, headers = { \"content-length\" = \"3\" }",
            "edge.waf.rules[0].block_response.headers.content-length",
            "set by the edge",
        ),
        (
            "name = \"checkout-card-testing\"",
            "name = \"default\"",
            "edge.waf.rules[0].name",
            "choose another",
        ),
        (
            "name = \"checkout-card-testing\"",
            "name = \"checkout-card-testing\"\nlabels = [\"shop:card-testing:\"]",
            "edge.waf.rules[0].labels[0]",
            "not ending with `:`",
        ),
        (
            "search = \"POST\" }",
            "search = \"POST\", transforms = [\"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\", \"lowercase\"] }",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].byte_match.transforms",
            "at most 10 transformations",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 1\nredacted_fields = [\"uri_path\", \"header:bad name\"]",
            "edge.waf.redacted_fields[1]",
            "not a field the log can leave out",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 1\nredacted_fields = [\"header:X-Session\", \"header:x-session\"]",
            "edge.waf.redacted_fields[1]",
            "listed twice",
        ),
        (
            "limit = 100, window_seconds = 300",
            "limit = 100, window_seconds = 30",
            "edge.waf.rules[0].statement.rate_based.window_seconds",
            "60, 120, 300 or 600",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 1\ndefault_block_response = { status = 404 }",
            "edge.waf.default_block_response",
            "needs default_action = \"block\"",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 1\ndefault_action = \"block\"\ndefault_block_response = { status = 200 }",
            "edge.waf.default_block_response.status",
            "from 400 to 599",
        ),
        (
            "name = \"checkout-card-testing\"",
            "name = \"checkout-card-testing\"\ninsert_headers = { flagged = \"yes\" }",
            "edge.waf.rules[0].insert_headers",
            "`allow` or `count`",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 1\ndefault_insert_headers = { \"bad name\" = \"x\" }",
            "edge.waf.default_insert_headers.bad name",
            "not a header name",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 1\ndefault_action = \"block\"\ndefault_insert_headers = { checked = \"yes\" }",
            "edge.waf.default_insert_headers",
            "needs default_action = \"allow\"",
        ),
        (
            "keys = [\"ip\"]",
            "keys = [\"ip\", \"cookie:\"]",
            "edge.waf.rules[0].statement.rate_based.keys[1]",
            "`cookie:NAME`",
        ),
        (
            "keys = [\"ip\"]",
            "keys = [\"ip\"], fallback = \"match\"",
            "edge.waf.rules[0].statement.rate_based.fallback",
            "applies to a `forwarded_ip` key",
        ),
        (
            "keys = [\"ip\"]",
            "keys = [\"forwarded_ip\"], fallback = \"yes\"",
            "edge.waf.rules[0].statement.rate_based.fallback",
            "`yes` is not `match` or `no_match`",
        ),
        (
            "field = \"method\"",
            "field = \"verb\"",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].byte_match.field",
            "not a field",
        ),
        (
            "field = \"method\"",
            "field = \"json_values:items/0\"",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].byte_match.field",
            "`items/0` is not a JSON pointer",
        ),
        (
            "search = \"/api/checkout\" }",
            "search = \"/api/checkout\", transforms = [\"rot13\"] }",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[1].byte_match.transforms[0]",
            "not a transformation",
        ),
        (
            "scope_down = { and = [",
            "scope_down = { and = [{ rate_based = { limit = 10 } }, ",
            "edge.waf.rules[0].statement.rate_based.scope_down.and[0].rate_based",
            "not nested",
        ),
        (
            "action = \"block\"\nblock_response",
            "action = \"count\"\nblock_response",
            "edge.waf.rules[0].block_response",
            "only a rule whose action is `block`",
        ),
        (
            "action = \"block\"\nblock_response",
            "action = \"block\"\nimmunity_seconds = 600\nblock_response",
            "edge.waf.rules[0].immunity_seconds",
            "only a rule whose action is `challenge`",
        ),
        (
            "immunity_seconds = 300",
            "immunity_seconds = 30",
            "edge.waf.rules[1].immunity_seconds",
            "must be from 60 to 259200",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\nchallenge_immunity_seconds = 259201",
            "edge.waf.challenge_immunity_seconds",
            "must be from 60 to 259200",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ntoken_domains = [\"shop.example\", \"127.0.0.1\"]",
            "edge.waf.token_domains[1]",
            "not a domain name",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ntoken_domains = [\"shop.example\", \"Shop.Example\"]",
            "edge.waf.token_domains[1]",
            "listed twice",
        ),
        (
            "action = \"challenge\"",
            "action = \"captcha\"",
            "edge.waf.rules[1].action",
            "`count` or `challenge`",
        ),
        (
            "block_response = { status = 429,",
            "block_response = { status = 302,",
            "edge.waf.rules[0].block_response.status",
            "from 400 to 599",
        ),
        (
            "statement = { rate_based",
            "statement = { or = [{ regex = { field = \"uri_path\", pattern = \"(\" } }] }\nunused = { rate_based",
            "edge.waf.rules[0].unused",
            "unknown field",
        ),
        (
            "\n# The shield, as AWS Shield",
            "\n[[edge.waf.rules]]\nname = \"ips\"\npriority = 11\naction = \"allow\"\nstatement = { ip_set = [\"10.0.0.0/8\", \"10.0.0/8\"] }\n# The shield, as AWS Shield",
            "edge.waf.rules[2].statement.ip_set[1]",
            "not a network",
        ),
        (
            "\n# The shield, as AWS Shield",
            "\n[[edge.waf.rules]]\nname = \"ips\"\npriority = 11\naction = \"allow\"\nstatement = { forwarded_ip_set = { header = \"X-Forwarded-For\", position = \"middle\", fallback = \"no_match\", networks = [\"10.0.0.0/8\"] } }\n# The shield, as AWS Shield",
            "edge.waf.rules[2].statement.forwarded_ip_set.position",
            "not `first`, `last` or `any`",
        ),
        (
            "\n# The shield, as AWS Shield",
            "\n[[edge.waf.rules]]\nname = \"ips\"\npriority = 11\naction = \"allow\"\nstatement = { forwarded_ip_set = { header = \"X-Forwarded-For\", fallback = \"maybe\", networks = [\"10.0.0.0/8\"] } }\n# The shield, as AWS Shield",
            "edge.waf.rules[2].statement.forwarded_ip_set.fallback",
            "not `match` or `no_match`",
        ),
        (
            "\n# The shield, as AWS Shield",
            "\n[[edge.waf.rules]]\nname = \"geo\"\npriority = 11\naction = \"block\"\nstatement = { forwarded_geo_match = { header = \"X Forwarded\", fallback = \"match\", countries = [\"UK\"] } }\n# The shield, as AWS Shield",
            "edge.waf.rules[2].statement.forwarded_geo_match.countries[0]",
            "`GB`",
        ),
        (
            "\n# The shield, as AWS Shield",
            "\n[[edge.waf.rules]]\nname = \"geo\"\npriority = 11\naction = \"block\"\nstatement = { forwarded_geo_match = { header = \"X Forwarded\", fallback = \"match\", countries = [\"FR\"] } }\n# The shield, as AWS Shield",
            "edge.waf.rules[2].statement.forwarded_geo_match.header",
            "not a header name",
        ),
        (
            "paranoia_level = 1",
            "paranoia_level = 5",
            "edge.waf.paranoia_level",
            "from 1 to 4",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 1001",
            "edge.waf.managed_priority",
            "from 0 to 1000",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ncount_rules = [\"SC-SQLI-003\", \"SC-SQLI-999\"]",
            "edge.waf.count_rules[1]",
            "not a managed rule's id",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ncount_rules = [\"SC-XSS-001\", \"SC-XSS-001\"]",
            "edge.waf.count_rules[1]",
            "listed twice",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ngroup_overrides = { sqli = { count_all = true } }",
            "edge.waf.group_overrides.sqli",
            "not a managed rule group",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ngroup_overrides = { sql-injection = { rule_actions = { SC-XSS-001 = \"count\" } } }",
            "edge.waf.group_overrides.sql-injection.rule_actions.SC-XSS-001",
            "not a rule of the `sql-injection` group",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ngroup_overrides = { sql-injection = { rule_actions = { SC-SQLI-003 = \"ignore\" } } }",
            "edge.waf.group_overrides.sql-injection.rule_actions.SC-SQLI-003",
            "not `allow`, `block`, `count` or `challenge`",
        ),
        (
            "managed_priority = 500",
            "managed_priority = 500\ngroup_overrides = { sql-injection = { scope_down = { byte_match = { field = \"path\", position = \"exactly\", search = \"/\" } } } }",
            "edge.waf.group_overrides.sql-injection.scope_down.byte_match.field",
            "not a field",
        ),
        (
            "automatic_mitigation = true",
            "automatic_mitigation = true\nmitigation_factor = 1",
            "edge.shield.mitigation_factor",
            "from 2 to 100",
        ),
        (
            "requests_per_second = 50",
            "requests_per_second = 0",
            "edge.shield.requests_per_second",
            "at least 1",
        ),
        (
            "max_requests_in_flight = 1024",
            "max_requests_in_flight = 0",
            "edge.shield.max_requests_in_flight",
            "leave it out to shed nothing",
        ),
        (
            "priority_paths = [\"/healthz\",",
            "priority_paths = [\"healthz\",",
            "edge.shield.priority_paths[0]",
            "must start with `/`",
        ),
        (
            "max_requests_in_flight = 1024",
            "max_requests_in_flight = 1024\nexempt = [\"10.0.0.0/8\", \"nowhere\"]",
            "edge.shield.exempt[1]",
            "not a network",
        ),
        (
            "disk_mib = 1024",
            "disk_mib = 99999999",
            "edge.cache.disk_mib",
            "at most 16777216",
        ),
        (
            "memory_mib = 256",
            "memory_mib = 0",
            "edge.cache.memory_mib",
            "from 1 to 1048576",
        ),
        (
            "path_pattern = \"/images/*\"",
            "path_pattern = \"images/*\"",
            "edge.cache.behaviors[1].path_pattern",
            "must start with `/`",
        ),
        (
            "name = \"catalog\"\npath_pattern",
            "name = \"images\"\npath_pattern",
            "edge.cache.behaviors[2].name",
            "listed twice",
        ),
        (
            "query_strings = { all_except = [\"utm_source\", \"utm_medium\", \"utm_campaign\"] }",
            "query_strings = \"some\"",
            "edge.cache.behaviors[2].query_strings",
            "not \"all\"",
        ),
        (
            "query_strings = { all_except = [\"utm_source\", \"utm_medium\", \"utm_campaign\"] }",
            "query_strings = { all_except = [] }",
            "edge.cache.behaviors[2].query_strings.all_except",
            "write \"all\"",
        ),
        (
            "path_pattern = \"/static/*\"",
            "path_pattern = \"/static/*\"\nmin_ttl_seconds = 100\nmax_ttl_seconds = 10",
            "edge.cache.behaviors[0].min_ttl_seconds",
            "must not be above",
        ),
        (
            "path_pattern = \"/static/*\"",
            "path_pattern = \"/static/*\"\nheaders = [\"bad header\"]",
            "edge.cache.behaviors[0].headers[0]",
            "not a header name",
        ),
        (
            "path_pattern = \"/static/*\"",
            "path_pattern = \"/static/*\"\norigin_headers = [\"user-agent\", \"bad header\"]",
            "edge.cache.behaviors[0].origin_headers[1]",
            "not a header name",
        ),
        (
            "origin_cookies = \"none\"",
            "origin_cookies = \"some\"",
            "edge.cache.behaviors[0].origin_cookies",
            "not \"all\", \"none\"",
        ),
        (
            "origin_cookies = \"none\"",
            "origin_cookies = { all_except = [] }",
            "edge.cache.behaviors[0].origin_cookies.all_except",
            "leaves out none",
        ),
        (
            "algorithm = \"p2c_peak_ewma\"",
            "algorithm = \"fastest\"",
            "edge.target_groups[1].algorithm",
            "not an algorithm",
        ),
        (
            "priority = 40\n",
            "priority = 40\nmax_body_bytes = 10\n",
            "edge.listeners[0].rules[3].max_body_bytes",
            "only applies to a forward",
        ),
        (
            "priority = 40\n",
            "priority = 40\nrewrite_url = { regex = \"^/api/(.*)$\", replace = \"/$1\" }\n",
            "edge.listeners[0].rules[3].rewrite_url",
            "only applies to a forward",
        ),
        (
            "priority = 10\n",
            "priority = 10\npath_regex = [\"\"]\n",
            "edge.listeners[0].rules[0].path_regex[0]",
            "1 to 128 bytes",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nremove_response_headers = [\"Date\"]",
            "edge.listeners[0].remove_response_headers[0]",
            "dates it",
        ),
        (
            "priority = 10\n",
            "priority = 10\npath_regex = [\"^/api/v[0-9+/catalog\"]\n",
            "edge.listeners[0].rules[0].path_regex[0]",
            "not a regular expression",
        ),
        (
            "priority = 10\n",
            "priority = 10\nhost_regex = [\"(shop\"]\n",
            "edge.listeners[0].rules[0].host_regex[0]",
            "not a regular expression",
        ),
        (
            "priority = 10\n",
            "priority = 10\nhost = [\"shop.test\"]\nhost_regex = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n",
            "edge.listeners[0].rules[0].host_regex",
            "with the host patterns, lists at most 5 values",
        ),
        (
            "priority = 10\n",
            "priority = 10\nheader_regex = { \"user agent\" = [\"curl\"] }\n",
            "edge.listeners[0].rules[0].header_regex.user agent",
            "not an HTTP header name",
        ),
        (
            "priority = 10\n",
            "priority = 10\nheader_regex = { user-agent = [] }\n",
            "edge.listeners[0].rules[0].header_regex.user-agent",
            "at least one expression",
        ),
        (
            "priority = 10\n",
            "priority = 10\nheader_regex = { user-agent = [\"[\"] }\n",
            "edge.listeners[0].rules[0].header_regex.user-agent[0]",
            "not a regular expression",
        ),
        (
            "priority = 10\n",
            "priority = 10\nrewrite_url = { regex = \"^/api/(.*$\", replace = \"/$1\" }\n",
            "edge.listeners[0].rules[0].rewrite_url.regex",
            "not a regular expression",
        ),
        (
            "priority = 10\n",
            "priority = 10\nrewrite_host = { regex = \"^shop\", with = \"x\" }\n",
            "edge.listeners[0].rules[0].rewrite_host.with",
            "unknown field",
        ),
        (
            "protocol = \"https\"",
            "protocol = \"spdy\"",
            "edge.listeners[1].protocol",
            "not a listener protocol",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\ncertificates = [{ cert = \"a.pem\", key = \"a.key\" }]",
            "edge.listeners[0].certificates",
            "only an https listener",
        ),
        (
            "service = \"cart\"",
            "service = \"basket\"",
            "edge.target_groups[2].service",
            "unknown service",
        ),
        (
            "interval_ms = 1000, timeout_ms = 500",
            "interval_ms = 1000, timeout_ms = 5000",
            "edge.target_groups[0].health_check.timeout_ms",
            "not be longer than interval_ms",
        ),
        (
            "unhealthy_threshold = 2 }",
            "unhealthy_threshold = 0 }",
            "edge.target_groups[0].health_check.unhealthy_threshold",
            "from 1 to 10",
        ),
        (
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 9090",
            "edge.listeners[0].port",
            "same as telemetry.admin_port",
        ),
        (
            "zone = \"securecart.test\"",
            "zone = \"not a zone\"",
            "dns.zone",
            "not a domain name",
        ),
        (
            "latency = \"us-east-1\"",
            "latency = \"mars-1\"",
            "dns.records[0].latency",
            "not a region",
        ),
        (
            "latency = \"us-east-1\"",
            "weight = 5\nlatency = \"us-east-1\"",
            "dns.records[0].latency",
            "one routing policy",
        ),
        (
            "failover = \"primary\"",
            "failover = \"first\"",
            "dns.records[2].failover",
            "not a failover role",
        ),
        (
            "health_check = \"edge-us-east-1\"",
            "health_check = \"nope\"",
            "dns.records[0].health_check",
            "not a health check",
        ),
        (
            "set_identifier = \"eu-west-1\"",
            "set_identifier = \"us-east-1\"",
            "dns.records[1].set_identifier",
            "used twice",
        ),
        (
            "interval_ms = 1000\nfailure_threshold = 2",
            "interval_ms = 10\nfailure_threshold = 2",
            "dns.health_checks[0].interval_ms",
            "from 100 to 60000",
        ),
        (
            "edge = \"us-east-1\"\ninterval_ms = 1000",
            "host = \"*.shop.example\"\nedge = \"us-east-1\"\ninterval_ms = 1000",
            "dns.health_checks[0].host",
            "not a host name",
        ),
        (
            "edge = \"us-east-1\"\ninterval_ms = 1000",
            "type = \"tcp\"\nhost = \"shop.example\"\nedge = \"us-east-1\"\ninterval_ms = 1000",
            "dns.health_checks[0].host",
            "only an http or https check",
        ),
        (
            "edge = \"us-east-1\"\ninterval_ms = 1000",
            "type = \"calculated\"\nchildren = [\"edge-eu-west-1\"]\ninterval_ms = 1000",
            "dns.health_checks[0].interval_ms",
            "a calculated check has none",
        ),
        (
            "alias = \"www\"",
            "alias = \"nowhere\"",
            "dns.records[4].alias",
            "no A record of the zone",
        ),
        (
            "health_check = \"edge-us-east-1\"",
            "health_check = \"edge-us-east-1\"\nevaluate_target_health = true",
            "dns.records[0].evaluate_target_health",
            "either `health_check` or `evaluate_target_health`",
        ),
        (
            "edge = \"us-east-1\"\ninterval_ms",
            "edge = \"pluto\"\ninterval_ms",
            "dns.health_checks[0].edge",
            "not a region",
        ),
        (
            "latency = \"eu-west-1\"",
            "latency = \"eu-west-1\"\nttl = 30",
            "dns.records[1].ttl",
            "one TTL",
        ),
    ];
    for (from, to, field, message) in cases {
        let text = with(from, to);
        let diagnostic = diagnostic_where(&text, |at| at == field);
        assert!(
            diagnostic.message.contains(message),
            "{field}: {}",
            diagnostic.message
        );
        assert_eq!(diagnostic.file, "bad.toml");
        let line = diagnostic
            .line
            .unwrap_or_else(|| panic!("{field} has no line: {diagnostic:?}"));
        let written = text.lines().nth(line - 1).expect("line exists");
        let key = field
            .rsplit('.')
            .next()
            .expect("key")
            .split('[')
            .next()
            .expect("key");
        assert!(written.contains(key), "{field}: line {line} is `{written}`");
    }
}

#[test]
fn health_check_matchers_parse_codes_and_ranges() {
    use securecart_topology::model::parse_matcher;
    assert_eq!(parse_matcher("200"), Ok(vec![200..=200]));
    assert_eq!(parse_matcher("200,204"), Ok(vec![200..=200, 204..=204]));
    assert_eq!(
        parse_matcher("200-299, 301"),
        Ok(vec![200..=299, 301..=301])
    );
    for bad in ["", "199", "500", "299-200", "abc", "200-"] {
        assert!(parse_matcher(bad).is_err(), "{bad}");
    }
    let text = with(
        "unhealthy_threshold = 2 }",
        "unhealthy_threshold = 2, matcher = \"200-599\" }",
    );
    let error = parse(&text, "t.toml").expect_err("invalid matcher");
    let diagnostic = &error.diagnostics()[0];
    assert_eq!(
        diagnostic.field,
        "edge.target_groups[0].health_check.matcher"
    );
    assert!(
        diagnostic.message.contains("`599` is not a status code"),
        "{error}"
    );
}

#[test]
fn a_wrong_type_names_the_field() {
    let text = with("replicas = 2", "replicas = \"two\"");
    let error = parse(&text, "t.toml").expect_err("wrong type");
    let diagnostic = &error.diagnostics()[0];
    assert_eq!(diagnostic.field, "services[0].replicas");
    assert_eq!(diagnostic.line, Some(line_of(&text, "replicas = \"two\"")));
}

#[test]
fn a_missing_field_is_named() {
    let text = with("latitude = 38.94\n", "");
    let error = parse(&text, "t.toml").expect_err("missing field");
    let diagnostic = &error.diagnostics()[0];
    assert!(
        diagnostic.message.contains("missing field `latitude`"),
        "{error}"
    );
    assert!(diagnostic.line.is_some(), "{error}");
}

#[test]
fn broken_toml_is_reported_with_its_position() {
    let error = parse("name = \"x\"\n[[regions]\n", "t.toml").expect_err("broken");
    let diagnostic = &error.diagnostics()[0];
    assert_eq!(diagnostic.line, Some(2), "{error}");
}

#[test]
fn a_single_replica_or_zone_draws_advice_but_runs() {
    let text = with("replicas = 2", "replicas = 1").replacen(
        "zones = [\"us-east-1a\", \"us-east-1b\"]",
        "zones = [\"us-east-1a\"]",
        1,
    );
    let loaded = parse(&text, "t.toml").expect("runs");
    let fields: Vec<&str> = loaded
        .advice
        .iter()
        .map(|advice| advice.field.as_str())
        .collect();
    assert_eq!(fields, ["services[0].replicas", "regions[0].zones"]);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let error = securecart_topology::load_file(Path::new("/nonexistent/topology.toml"))
        .expect_err("missing");
    assert!(
        error.to_string().contains("/nonexistent/topology.toml"),
        "{error}"
    );
}

#[test]
fn each_listener_may_have_its_own_web_acl_or_none() {
    use securecart_topology::ListenerWebAcl;
    let strict = "\n[edge.web_acls.strict]\nmanaged_groups = [\"core\", \"sql-injection\"]\nparanoia_level = 2\n";
    let text = format!(
        "{}{strict}",
        with(
            "name = \"https\"\nport = 8443",
            "name = \"https\"\nport = 8443\nweb_acl = \"strict\"",
        )
        .replacen(
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nweb_acl = \"none\"",
            1,
        )
    );
    let loaded = parse(&text, "t.toml").expect("named web ACLs");
    let edge = &loaded.topology.edge;
    let by_name = |name: &str| {
        edge.listeners
            .iter()
            .find(|listener| listener.name == name)
            .expect("listener")
    };
    assert_eq!(by_name("http").web_acl, ListenerWebAcl::None);
    assert!(by_name("http").web_acl(edge).is_none());
    let https = by_name("https").web_acl(edge).expect("the strict ACL");
    assert_eq!(https.sensitivity.paranoia, 2);
    assert_eq!(https.managed_groups, ["core", "sql-injection"]);
    // The edge-wide one stays for a listener that names none.
    let default = parse(&default_text(), "t.toml").expect("default");
    let edge = &default.topology.edge;
    assert!(edge.listeners.iter().all(|listener| {
        listener.web_acl == ListenerWebAcl::Edge && listener.web_acl(edge).is_some()
    }));
    // An ACL that does not exist, and one named `none` or `edge`, are refused where they
    // are written.
    for (text, field, message) in [
        (
            with(
                "name = \"https\"\nport = 8443",
                "name = \"https\"\nport = 8443\nweb_acl = \"strcit\"",
            ),
            "edge.listeners[1].web_acl",
            "`strcit` is not a web ACL",
        ),
        (
            format!(
                "{}\n[edge.web_acls.none]\nparanoia_level = 2\n",
                default_text()
            ),
            "edge.web_acls.none",
            "another name",
        ),
        (
            format!(
                "{}\n[edge.web_acls.edge]\nparanoia_level = 2\n",
                default_text()
            ),
            "edge.web_acls.edge",
            "`edge` names [edge.waf]",
        ),
    ] {
        let diagnostic = diagnostic_where(&text, |at| at == field);
        assert!(
            diagnostic.message.contains(message),
            "{}",
            diagnostic.message
        );
    }
}

/// The default topology with `records` (TOML of `[[dns.records]]`) appended.
fn with_records(records: &str) -> String {
    format!("{}\n{records}", default_text())
}

/// An alias that leads back to its own record set, and a multivalue alias, are refused.
#[test]
fn aliases_that_loop_and_multivalue_aliases_are_refused() {
    let text = with_records(
        r#"[[dns.records]]
name = "loop-a"
type = "A"
alias = "loop-b"

[[dns.records]]
name = "loop-b"
type = "A"
alias = "loop-a"
"#,
    );
    let diagnostic = diagnostic_where(&text, |field| field.ends_with(".alias"));
    assert!(
        diagnostic.message.contains("lead back to it"),
        "{}",
        diagnostic.message
    );
    let text = with_records(
        r#"[[dns.records]]
name = "many"
type = "A"
set_identifier = "one"
multivalue = true
alias = "www"
"#,
    );
    let diagnostic = diagnostic_where(&text, |field| field.ends_with(".alias"));
    assert!(
        diagnostic.message.contains("multivalue answer is records"),
        "{}",
        diagnostic.message
    );
}

/// The apex has the zone's SOA and NS records: a CNAME there would not be alone.
#[test]
fn a_cname_at_the_apex_is_refused() {
    let text = with_records(
        r#"[[dns.records]]
name = "@"
type = "CNAME"
set_identifier = "one"
weight = 1
values = ["www"]
"#,
    );
    let error = parse(&text, "t.toml").expect_err("a CNAME at the apex");
    assert!(
        error
            .diagnostics()
            .iter()
            .any(|diagnostic| diagnostic.message.contains("apex (`@`) has its SOA and NS")),
        "{error}"
    );
}

#[test]
fn mail_service_and_certificate_authority_records_are_taken_and_checked() {
    let text = with_records(
        r#"[[dns.records]]
name = "@"
type = "MX"
values = ["10 mail", "20 backup-mx.example.net."]

[[dns.records]]
name = "_sip._tcp"
type = "SRV"
values = ["0 5 5060 sip.securecart.test."]

[[dns.records]]
name = "@"
type = "caa"
values = ["0 issue \"letsencrypt.org\"", "0 issue \"ca.example; account=42\"", "128 iodef \"mailto:security@securecart.test\""]
"#,
    );
    let loaded = parse(&text, "t.toml").expect("MX, SRV and CAA records");
    let dns = loaded.topology.dns.expect("the zone");
    let types: Vec<&str> = dns
        .records
        .iter()
        .map(|record| record.record_type.as_str())
        .collect();
    for record_type in ["MX", "SRV", "CAA"] {
        assert!(types.contains(&record_type), "{types:?}");
    }
    // A name without a final dot is within the zone, as a record's own name is.
    let mx = dns
        .records
        .iter()
        .find(|record| record.record_type == "MX")
        .expect("MX");
    assert_eq!(
        mx.values,
        ["10 mail.securecart.test.", "20 backup-mx.example.net."]
    );
    for (record, value, message) in [
        ("MX", "mail.securecart.test.", "`10 mail.example.com.`"),
        ("MX", "70000 mail.securecart.test.", "a preference"),
        (
            "SRV",
            "0 5 sip.securecart.test.",
            "a priority, a weight, a port",
        ),
        ("CAA", "0 issue", "flags, a tag and a value"),
        (
            "CAA",
            "256 issue \"ca.example\"",
            "flags, a tag and a value",
        ),
        (
            "CAA",
            "0 issue ca.example extra",
            "flags, a tag and a value",
        ),
    ] {
        let text = with_records(&format!(
            "[[dns.records]]\nname = \"x\"\ntype = \"{record}\"\nvalues = [{value:?}]\n"
        ));
        let diagnostic = diagnostic_where(&text, |at| at.ends_with("].values[0]"));
        assert!(
            diagnostic.message.contains(message) && diagnostic.message.contains(record),
            "{value}: {}",
            diagnostic.message
        );
    }
    let error = parse(
        &with_records("[[dns.records]]\nname = \"x\"\ntype = \"NS\"\nvalues = [\"ns.example.\"]\n"),
        "bad.toml",
    )
    .expect_err("an NS record");
    assert!(error.to_string().contains("SOA and NS"), "{error}");
}

#[test]
fn a_dns_health_check_may_be_https_with_a_host_name() {
    let text = with(
        "edge = \"us-east-1\"\ninterval_ms",
        "type = \"https\"\nhost = \"Shop.Example.\"\nedge = \"us-east-1\"\ninterval_ms",
    );
    let loaded = parse(&text, "t.toml").expect("an HTTPS check");
    let dns = loaded.topology.dns.expect("the zone");
    assert!(
        matches!(
            &dns.health_checks[0].kind,
            securecart_topology::dns::DnsCheckKind::Http { tls: true, host: Some(host), .. }
                if host == "shop.example"
        ),
        "{:?}",
        dns.health_checks[0].kind
    );
    // Without one, the check sends the address it checks.
    assert!(matches!(
        &dns.health_checks[1].kind,
        securecart_topology::dns::DnsCheckKind::Http { host: None, .. }
    ));
    let error = parse(
        &with(
            "edge = \"us-east-1\"\ninterval_ms",
            "type = \"ftp\"\nedge = \"us-east-1\"\ninterval_ms",
        ),
        "t.toml",
    )
    .expect_err("no such type");
    assert!(error.to_string().contains("\"https\""), "{error}");
}

#[test]
fn the_edges_limits_are_read_and_checked() {
    let loaded = parse(
        &with("upstream_timeout_ms = 30000", "upstream_timeout_ms = 2500"),
        "t.toml",
    )
    .expect("limits");
    let limits = &loaded.topology.edge.limits;
    assert_eq!(
        limits.upstream_timeout,
        std::time::Duration::from_millis(2500)
    );
    assert_eq!(
        limits.header_read_timeout,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(limits.max_header_bytes, 64 * 1024);
    assert_eq!(
        limits.client_keep_alive,
        std::time::Duration::from_secs(3600)
    );
    for (from, to, field) in [
        (
            "header_read_timeout_ms = 10000",
            "header_read_timeout_ms = 5",
            "edge.limits.header_read_timeout_ms",
        ),
        (
            "max_headers = 100",
            "max_headers = 0",
            "edge.limits.max_headers",
        ),
        (
            "max_connections = 10000",
            "max_connections = 10000\nmax_body_bytes = 0",
            "edge.limits.max_body_bytes",
        ),
        (
            "client_keep_alive_seconds = 3600",
            "client_keep_alive_seconds = 30",
            "edge.limits.client_keep_alive_seconds",
        ),
    ] {
        let text = with(from, to);
        let error = parse(&text, "t.toml").expect_err(field);
        let diagnostic = error
            .diagnostics()
            .iter()
            .find(|diagnostic| diagnostic.field == field)
            .cloned()
            .unwrap_or_else(|| panic!("no diagnostic for {field}: {error}"));
        assert!(diagnostic.line.is_some(), "{error}");
    }
}

#[test]
fn a_web_acl_may_block_by_default() {
    let text = with("[edge.waf]\n", "[edge.waf]\ndefault_action = \"block\"\n");
    let loaded = parse(&text, "t.toml").expect("a default action");
    let waf = loaded.topology.edge.waf.expect("a web ACL");
    assert!(waf.overrides.default_block);
    let text = with("[edge.waf]\n", "[edge.waf]\ndefault_action = \"deny\"\n");
    let error = parse(&text, "t.toml").expect_err("no such action");
    assert!(
        error
            .diagnostics()
            .iter()
            .any(|diagnostic| diagnostic.field == "edge.waf.default_action"
                && diagnostic.line == Some(line_of(&text, "default_action = \"deny\""))),
        "{error}"
    );
}

/// AWS WAF's oversize handling on the headers and the cookies: a statement over them
/// answers by itself for a request past their limits.
#[test]
fn a_rule_may_answer_for_headers_and_cookies_past_their_limits() {
    let post = "{ byte_match = { field = \"method\", position = \"exactly\", search = \"POST\" } }";
    for (field, handling, limited) in [
        ("cookies", "match", securecart_waf::Limited::Cookies),
        (
            "cookie:session",
            "no_match",
            securecart_waf::Limited::Cookies,
        ),
        (
            "headers_but_credentials",
            "match",
            securecart_waf::Limited::Headers,
        ),
        ("body_fields", "no_match", securecart_waf::Limited::Body),
    ] {
        let statement = format!(
            "{{ regex = {{ field = \"{field}\", pattern = \"x\", oversize = \"{handling}\" }} }}"
        );
        let text = with(post, &statement);
        let loaded = parse(&text, "t.toml").expect("an oversize handling");
        let rules = loaded.topology.edge.waf.expect("a web ACL").rules;
        let securecart_waf::Statement::RateBased {
            scope_down: Some(scope_down),
            ..
        } = &rules[0].statement
        else {
            panic!("{:?}", rules[0].statement);
        };
        let securecart_waf::Statement::And(statements) = &**scope_down else {
            panic!("{scope_down:?}");
        };
        assert!(
            matches!(
                statements[0],
                securecart_waf::Statement::OnOversize { matches, limited: read, .. }
                    if matches == (handling == "match") && read == limited
            ),
            "{field}: {:?}",
            statements[0]
        );
    }
}

/// A rate-based rule keyed by a forwarded address may match the requests whose header
/// holds none (AWS WAF's fallback `MATCH`); by default they are not counted.
#[test]
fn a_rate_rule_keyed_by_a_forwarded_address_takes_a_fallback() {
    for (fallback, matches) in [
        ("", false),
        (", fallback = \"no_match\"", false),
        (", fallback = \"match\"", true),
    ] {
        let text = with(
            "keys = [\"ip\"]",
            &format!("keys = [\"forwarded_ip:x-real-ip\"]{fallback}"),
        );
        let loaded = parse(&text, "t.toml").expect("a fallback");
        let rules = loaded.topology.edge.waf.expect("a web ACL").rules;
        let securecart_waf::Statement::RateBased { rate, .. } = &rules[0].statement else {
            panic!("{:?}", rules[0].statement);
        };
        assert_eq!(rate.forwarded_fallback_matches, matches, "{fallback}");
        assert_eq!(
            rate.keys,
            [securecart_waf::rate::AggregateKey::ForwardedIp(
                http::HeaderName::from_static("x-real-ip")
            )]
        );
    }
}

#[test]
fn a_redirect_that_keeps_every_part_is_refused() {
    let text = with(
        "default_action = { forward = \"storefront\" }",
        "default_action = { redirect = {} }",
    );
    let error = parse(&text, "t.toml").expect_err("a redirect to itself");
    assert!(
        error.diagnostics().iter().any(|diagnostic| diagnostic.field
            == "edge.listeners[0].default_action.redirect"
            && diagnostic.message.contains("at least one of")),
        "{error}"
    );
    let moved = with(
        "default_action = { forward = \"storefront\" }",
        "default_action = { redirect = { protocol = \"https\", port = \"8443\" } }",
    );
    assert!(parse(&moved, "t.toml").is_ok());
}

#[test]
fn a_health_check_may_name_its_own_port() {
    let from = "health_check = { path = \"/healthz\", interval_ms";
    let loaded = parse(
        &with(
            from,
            "health_check = { path = \"/healthz\", port = 9000, interval_ms",
        ),
        "t.toml",
    )
    .expect("a port");
    assert_eq!(
        loaded.topology.edge.target_groups[0].health_check.port,
        Some(9000)
    );
    let error = parse(
        &with(
            from,
            "health_check = { path = \"/healthz\", port = 0, interval_ms",
        ),
        "t.toml",
    )
    .expect_err("port 0");
    assert!(
        error
            .diagnostics()
            .iter()
            .any(|diagnostic| diagnostic.field == "edge.target_groups[0].health_check.port"),
        "{error}"
    );
}

#[test]
fn measured_latencies_are_read_and_checked() {
    let text = with(
        "[dns]\n",
        "[dns]\nlatencies = [{ region = \"eu-west-1\", network = \"203.0.113.7/24\", milliseconds = 12.5 }]\n",
    );
    let loaded = parse(&text, "t.toml").expect("a latency table");
    let dns = loaded.topology.dns.expect("the zone");
    assert_eq!(
        dns.latencies,
        [(
            "eu-west-1".to_owned(),
            "203.0.113.0/24".parse().expect("network"),
            12.5
        )]
    );
    let text = with(
        "[dns]\n",
        "[dns]\nlatencies = [{ region = \"mars-1\", network = \"nowhere\", milliseconds = -1 }]\n",
    );
    let error = parse(&text, "t.toml").expect_err("a bad table");
    for field in [
        "dns.latencies[0].region",
        "dns.latencies[0].network",
        "dns.latencies[0].milliseconds",
    ] {
        assert!(
            error
                .diagnostics()
                .iter()
                .any(|diagnostic| diagnostic.field == field),
            "{field}: {error}"
        );
    }
}

#[test]
fn a_listener_may_set_headers_on_its_answers() {
    let text = with(
        "name = \"https\"\nport = 8443",
        "name = \"https\"\nport = 8443\nresponse_headers = { Strict-Transport-Security = \"max-age=63072000\", x-content-type-options = \"nosniff\" }",
    );
    let loaded = parse(&text, "t.toml").expect("response headers");
    let https = &loaded.topology.edge.listeners[1];
    assert_eq!(
        https.response_headers,
        [
            (
                "strict-transport-security".to_owned(),
                "max-age=63072000".to_owned()
            ),
            ("x-content-type-options".to_owned(), "nosniff".to_owned()),
        ]
    );
    assert!(
        loaded.topology.edge.listeners[0]
            .response_headers
            .is_empty()
    );
    let text = with(
        "name = \"https\"\nport = 8443",
        "name = \"https\"\nport = 8443\nremove_response_headers = [\"Server\", \"X-Powered-By\"]",
    );
    let loaded = parse(&text, "t.toml").expect("removed headers");
    assert_eq!(
        loaded.topology.edge.listeners[1].remove_response_headers,
        ["server", "x-powered-by"]
    );
}

#[test]
fn a_listener_says_what_becomes_of_x_forwarded_for() {
    use securecart_topology::XffHeaderProcessing;
    for (lines, processing, port) in [
        ("", XffHeaderProcessing::Append, false),
        (
            "\nxff_client_port = true",
            XffHeaderProcessing::Append,
            true,
        ),
        (
            "\nxff_header_processing = \"append\"\nxff_client_port = true",
            XffHeaderProcessing::Append,
            true,
        ),
        (
            "\nxff_header_processing = \"preserve\"",
            XffHeaderProcessing::Preserve,
            false,
        ),
        (
            "\nxff_header_processing = \"remove\"",
            XffHeaderProcessing::Remove,
            false,
        ),
    ] {
        let text = with(
            "name = \"https\"\nport = 8443",
            &format!("name = \"https\"\nport = 8443{lines}"),
        );
        let loaded = parse(&text, "t.toml").expect(lines);
        let https = &loaded.topology.edge.listeners[1];
        assert!(!https.drop_invalid_header_fields);
        assert_eq!(https.xff_header_processing, processing, "{lines}");
        assert_eq!(https.xff_client_port, port, "{lines}");
        // The other listener keeps the default.
        assert_eq!(
            loaded.topology.edge.listeners[0].xff_header_processing,
            XffHeaderProcessing::Append
        );
    }
}

#[test]
fn a_listener_says_its_desync_mitigation_mode() {
    use securecart_topology::DesyncMitigationMode;
    for (lines, mode) in [
        ("", DesyncMitigationMode::Defensive),
        (
            "\ndesync_mitigation_mode = \"defensive\"",
            DesyncMitigationMode::Defensive,
        ),
        (
            "\ndesync_mitigation_mode = \"monitor\"",
            DesyncMitigationMode::Monitor,
        ),
        (
            "\ndesync_mitigation_mode = \"strictest\"",
            DesyncMitigationMode::Strictest,
        ),
    ] {
        let text = with(
            "name = \"https\"\nport = 8443",
            &format!("name = \"https\"\nport = 8443{lines}"),
        );
        let loaded = parse(&text, "t.toml").expect(lines);
        assert_eq!(
            loaded.topology.edge.listeners[1].desync_mitigation_mode, mode,
            "{lines}"
        );
        assert_eq!(
            loaded.topology.edge.listeners[0].desync_mitigation_mode,
            DesyncMitigationMode::Defensive
        );
    }
}

#[test]
fn a_target_group_says_how_few_healthy_targets_make_it_fail_open_or_fail_away_in_dns() {
    use securecart_topology::MinimumHealthy;
    let loaded = parse(&default_text(), "t.toml").expect("default");
    let group = &loaded.topology.edge.target_groups[1];
    let minimum = |count, percent| MinimumHealthy { count, percent };
    assert_eq!(group.minimum_healthy, minimum(1, None));
    assert_eq!(group.dns_failover, Some(minimum(1, None)));
    // (lines, the routing minimum, the DNS failover minimum)
    for (lines, routing, dns) in [
        (
            "\nminimum_healthy_targets = 2\nminimum_healthy_targets_percent = 50",
            minimum(2, Some(50)),
            Some(minimum(1, None)),
        ),
        (
            "\ndns_failover_minimum_healthy_targets = 2\ndns_failover_minimum_healthy_targets_percent = 70",
            minimum(1, None),
            Some(minimum(2, Some(70))),
        ),
        (
            "\ndns_failover_minimum_healthy_targets = 0",
            minimum(1, None),
            None,
        ),
        (
            "\ndns_failover_minimum_healthy_targets = 0\ndns_failover_minimum_healthy_targets_percent = 50",
            minimum(1, None),
            Some(minimum(0, Some(50))),
        ),
    ] {
        let text = with(
            "algorithm = \"p2c_peak_ewma\"",
            &format!("algorithm = \"p2c_peak_ewma\"{lines}"),
        );
        let loaded = parse(&text, "t.toml").expect(lines);
        let group = &loaded.topology.edge.target_groups[1];
        assert_eq!(group.minimum_healthy, routing, "{lines}");
        assert_eq!(group.dns_failover, dns, "{lines}");
    }
}

#[test]
fn waf_rules_may_read_the_client_address_from_a_forwarded_header() {
    use securecart_waf::{IpPosition, Statement};
    let text = with(
        "\n# The shield, as AWS Shield",
        "\n[[edge.waf.rules]]\nname = \"office\"\npriority = 11\naction = \"allow\"\nstatement = { forwarded_ip_set = { header = \"X-Forwarded-For\", position = \"last\", fallback = \"no_match\", networks = [\"10.0.0.0/8\"] } }\n\n[[edge.waf.rules]]\nname = \"embargo\"\npriority = 12\naction = \"block\"\nstatement = { forwarded_geo_match = { header = \"X-Client-IP\", fallback = \"match\", countries = [\"FR\"] } }\n# The shield, as AWS Shield",
    );
    let loaded = parse(&text, "t.toml").expect("forwarded statements");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    let statement = |name: &str| {
        &waf.rules
            .iter()
            .find(|rule| rule.id == name)
            .unwrap_or_else(|| panic!("no rule {name}"))
            .statement
    };
    match statement("office") {
        Statement::IpSet {
            networks,
            forwarded: Some(forwarded),
        } => {
            assert_eq!(networks.len(), 1);
            assert_eq!(forwarded.header, "x-forwarded-for");
            assert_eq!(forwarded.position, IpPosition::Last);
            assert!(!forwarded.fallback_matches);
        }
        other => panic!("not a forwarded IP set: {other:?}"),
    }
    match statement("embargo") {
        Statement::Geo {
            countries,
            forwarded: Some(forwarded),
        } => {
            assert_eq!(countries, &["FR"]);
            assert_eq!(forwarded.header, "x-client-ip");
            assert!(forwarded.fallback_matches);
        }
        other => panic!("not a forwarded geo match: {other:?}"),
    }
}

#[test]
fn a_forwarding_rule_may_rewrite_the_url_and_host_its_targets_are_sent() {
    use securecart_topology::RuleAction;
    let text = with(
        "priority = 10\n",
        "priority = 10\nrewrite_url = { regex = \"^/images/(.*)$\", replace = \"/api/catalog/images/$1\" }\nrewrite_host = { regex = \"^.*$\", replace = \"catalog.internal\" }\n",
    );
    let loaded = parse(&text, "t.toml").expect("rewrites");
    let rule = &loaded.topology.edge.listeners[0].rules[0];
    match &rule.action {
        RuleAction::Forward {
            url_rewrite,
            host_rewrite,
            ..
        } => {
            assert_eq!(
                url_rewrite.as_ref(),
                Some(&(
                    "^/images/(.*)$".to_owned(),
                    "/api/catalog/images/$1".to_owned()
                ))
            );
            assert_eq!(
                host_rewrite.as_ref(),
                Some(&("^.*$".to_owned(), "catalog.internal".to_owned()))
            );
        }
        other => panic!("not a forward: {other:?}"),
    }
}

#[test]
fn a_web_acl_that_blocks_by_default_may_answer_in_its_own_way() {
    let text = with(
        "paranoia_level = 1",
        "paranoia_level = 1\ndefault_action = \"block\"\ndefault_block_response = { status = 404, headers = { x-refused-by = \"allow-list\" }, content_type = \"text/plain\", body = \"Not here.\" }",
    );
    let loaded = parse(&text, "t.toml").expect("a default block response");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    assert!(waf.overrides.default_block);
    let response = waf.overrides.default_response.as_ref().expect("a response");
    assert_eq!(response.status, 404);
    assert_eq!(
        response.headers,
        [("x-refused-by".to_owned(), "allow-list".to_owned())]
    );
    assert_eq!(
        response.body,
        Some(("text/plain".to_owned(), "Not here.".to_owned()))
    );
}

#[test]
fn web_acl_rules_that_let_requests_through_may_add_headers_for_the_target() {
    let text = with(
        "paranoia_level = 1",
        "paranoia_level = 1\ndefault_insert_headers = { Checked = \"yes\" }",
    )
    .replacen(
        "\n# The shield, as AWS Shield",
        "\n[[edge.waf.rules]]\nname = \"admin-paths\"\npriority = 11\naction = \"count\"\ninsert_headers = { flagged = \"admin\" }\nstatement = { byte_match = { field = \"uri_path\", position = \"starts_with\", search = \"/admin\" } }\n# The shield, as AWS Shield",
        1,
    );
    let loaded = parse(&text, "t.toml").expect("inserted headers");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    assert_eq!(
        waf.insert_headers,
        [
            (
                "admin-paths".to_owned(),
                vec![("flagged".to_owned(), "admin".to_owned())]
            ),
            (
                "default".to_owned(),
                vec![("checked".to_owned(), "yes".to_owned())]
            ),
        ]
    );
}

#[test]
fn a_listener_may_drop_headers_of_invalid_names() {
    let text = with(
        "name = \"https\"\nport = 8443",
        "name = \"https\"\nport = 8443\ndrop_invalid_header_fields = true",
    );
    let loaded = parse(&text, "t.toml").expect("drop_invalid_header_fields");
    assert!(loaded.topology.edge.listeners[1].drop_invalid_header_fields);
    assert!(!loaded.topology.edge.listeners[0].drop_invalid_header_fields);
}

#[test]
fn a_cache_behaviour_says_what_its_misses_send_the_origin() {
    use securecart_topology::QueryStrings;
    let loaded = parse(&default_text(), "t.toml").expect("default");
    let behavior = &loaded
        .topology
        .edge
        .cache
        .as_ref()
        .expect("cache")
        .behaviors[0];
    assert_eq!(behavior.origin_headers, QueryStrings::All);
    assert!(behavior.compress, "compressed by default");
    // The shop's assets need no shopper's cookie.
    assert_eq!(behavior.origin_cookies, QueryStrings::None);
    let text = with(
        "path_pattern = \"/static/*\"",
        "path_pattern = \"/static/*\"\norigin_headers = [\"User-Agent\"]\ncompress = false",
    )
    .replacen(
        "origin_cookies = \"none\"",
        "origin_cookies = [\"lang\"]",
        1,
    );
    let loaded = parse(&text, "t.toml").expect("origin request policy");
    let behavior = &loaded
        .topology
        .edge
        .cache
        .as_ref()
        .expect("cache")
        .behaviors[0];
    assert_eq!(
        behavior.origin_headers,
        QueryStrings::Only(vec!["user-agent".to_owned()])
    );
    assert_eq!(
        behavior.origin_cookies,
        QueryStrings::Only(vec!["lang".to_owned()])
    );
    assert!(!behavior.compress);
}

#[test]
fn a_managed_group_may_be_scoped_down_counted_or_have_rules_overridden() {
    use securecart_waf::managed::Group;
    let text = with(
        "managed_priority = 500",
        "managed_priority = 500\ngroup_overrides = { sql-injection = { scope_down = { not = { byte_match = { field = \"uri_path\", position = \"starts_with\", search = \"/search\" } } }, rule_actions = { SC-SQLI-003 = \"count\" } }, xss = { count_all = true } }",
    );
    let loaded = parse(&text, "t.toml").expect("group overrides");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    let groups = &waf.overrides.groups;
    assert_eq!(groups.len(), 2);
    let (group, sqli) = &groups[0];
    assert_eq!(*group, Group::Sqli);
    assert!(sqli.scope_down.is_some() && !sqli.count_all);
    assert_eq!(
        sqli.rule_actions,
        [("SC-SQLI-003".to_owned(), securecart_waf::RuleAction::Count)]
    );
    let (group, xss) = &groups[1];
    assert_eq!(*group, Group::Xss);
    assert!(xss.count_all && xss.scope_down.is_none());
    // A group the ACL does not run cannot be tuned.
    let without = text.replacen(
        "[\"core\", \"sql-injection\", \"xss\",",
        "[\"core\", \"xss\",",
        1,
    );
    let error = parse(&without, "t.toml").expect_err("a group not run");
    assert!(
        error.diagnostics().iter().any(|diagnostic| diagnostic.field
            == "edge.waf.group_overrides.sql-injection"
            && diagnostic.message.contains("not among managed_groups")),
        "{error}"
    );
}

#[test]
fn an_https_listener_may_ask_for_client_certificates() {
    use securecart_topology::ListenerMtls;
    let loaded = parse(&default_text(), "t.toml").expect("default");
    assert_eq!(loaded.topology.edge.listeners[1].mtls, ListenerMtls::Off);
    for (mtls, expected) in [
        (
            "{ mode = \"verify\", trust_store = \"partners-ca.pem\" }",
            ListenerMtls::Verify("partners-ca.pem".to_owned()),
        ),
        ("{ mode = \"passthrough\" }", ListenerMtls::Passthrough),
    ] {
        let text = with(
            "name = \"https\"\nport = 8443",
            &format!("name = \"https\"\nport = 8443\nmtls = {mtls}"),
        );
        let loaded = parse(&text, "t.toml").expect(mtls);
        assert_eq!(loaded.topology.edge.listeners[1].mtls, expected);
    }
}

#[test]
fn an_http2_group_may_check_its_targets_with_a_grpc_call() {
    let text = with(
        "algorithm = \"p2c_peak_ewma\"\nhealth_check = { path = \"/healthz\"",
        "algorithm = \"p2c_peak_ewma\"\nprotocol = \"http2\"\nhealth_check = { grpc_codes = \"0,12\", path = \"/grpc.health.v1.Health/Check\"",
    );
    let loaded = parse(&text, "t.toml").expect("a gRPC check");
    let check = &loaded.topology.edge.target_groups[1].health_check;
    assert_eq!(check.grpc_codes, Some(vec![0..=0, 12..=12]));
    assert_eq!(check.path, "/grpc.health.v1.Health/Check");
    let loaded = parse(&default_text(), "t.toml").expect("default");
    assert_eq!(
        loaded.topology.edge.target_groups[1]
            .health_check
            .grpc_codes,
        None
    );
}

#[test]
fn an_https_listener_has_a_tls_policy() {
    let loaded = parse(&default_text(), "t.toml").expect("default");
    let https = &loaded.topology.edge.listeners[1];
    assert!(!https.tls13_only && https.http2);
    let text = with(
        "name = \"https\"\nport = 8443",
        "name = \"https\"\nport = 8443\ntls_policy = \"tls13\"\nhttp2 = false\ntls_headers = true",
    );
    let loaded = parse(&text, "t.toml").expect("a policy");
    let https = &loaded.topology.edge.listeners[1];
    assert!(https.tls13_only && !https.http2 && https.tls_headers);
}

#[test]
fn a_rule_may_match_paths_by_regular_expression() {
    let text = with(
        "priority = 10\n",
        "priority = 10\npath_regex = [\"^/api/v[0-9]+/catalog$\"]\n",
    );
    let loaded = parse(&text, "t.toml").expect("a path expression");
    let rule = &loaded.topology.edge.listeners[0].rules[0];
    assert_eq!(rule.conditions.path_regex, ["^/api/v[0-9]+/catalog$"]);
    assert_eq!(rule.conditions.path, ["/api/catalog/*", "/images/*"]);
}

#[test]
fn a_rule_may_match_hosts_and_headers_by_regular_expression() {
    let text = with(
        "priority = 10\n",
        "priority = 10\nhost_regex = [\"^[a-z]+\\\\.securecart\\\\.test$\"]\nheader_regex = { User-Agent = [\"(?i)^curl/\"] }\n",
    );
    let loaded = parse(&text, "t.toml").expect("host and header expressions");
    let rule = &loaded.topology.edge.listeners[0].rules[0];
    assert_eq!(rule.conditions.host_regex, [r"^[a-z]+\.securecart\.test$"]);
    assert_eq!(
        rule.conditions.header_regex,
        [("user-agent".to_owned(), vec!["(?i)^curl/".to_owned()])]
    );
}

#[test]
fn a_web_acls_log_may_be_filtered() {
    use securecart_topology::{WafLogCondition, WafLogFilter, WafLogging};
    let text = with(
        "paranoia_level = 1\n",
        "paranoia_level = 1\nlogging = { default_behavior = \"drop\", filters = [{ behavior = \"keep\", requirement = \"meets_all\", conditions = [{ action = \"count\" }, { label = \"shop:partner\" }] }] }\n",
    );
    let loaded = parse(&text, "t.toml").expect("a logging filter");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    assert_eq!(
        waf.logging,
        Some(WafLogging {
            keep_by_default: false,
            filters: vec![WafLogFilter {
                keep: true,
                meets_all: true,
                conditions: vec![
                    WafLogCondition::Counted,
                    WafLogCondition::Label("shop:partner".to_owned())
                ],
            }],
        })
    );
}

#[test]
fn a_challenge_rule_takes_its_immunity_time_or_aws_wafs_default() {
    use securecart_waf::RuleAction;
    let action = |text: &str| {
        let loaded = parse(text, "t.toml").expect("a challenge rule");
        let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
        waf.rules
            .iter()
            .find(|rule| rule.id == "page-scrapers")
            .expect("the default topology's challenge rule")
            .action
    };
    assert_eq!(action(&default_text()), RuleAction::Challenge(300));
    assert_eq!(
        action(&with("immunity_seconds = 300", "immunity_seconds = 3600")),
        RuleAction::Challenge(3600)
    );
    assert_eq!(
        action(&with("immunity_seconds = 300\n", "")),
        RuleAction::Challenge(securecart_waf::challenge::DEFAULT_IMMUNITY)
    );
    // A managed rule may be set to challenge, with the default immunity time.
    let text = with(
        "managed_priority = 500",
        "managed_priority = 500\ngroup_overrides = { sql-injection = { rule_actions = { SC-SQLI-003 = \"challenge\" } } }",
    );
    let loaded = parse(&text, "t.toml").expect("a challenge override");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    let (_, tuned) = waf.overrides.groups.first().expect("the group's override");
    assert_eq!(
        tuned.rule_actions,
        [("SC-SQLI-003".to_owned(), RuleAction::Challenge(300))]
    );
    // The web ACL's own immunity time, for the rules that give none.
    let text = text.replace("immunity_seconds = 300\n", "").replacen(
        "managed_priority = 500",
        "managed_priority = 500\nchallenge_immunity_seconds = 900",
        1,
    );
    assert_eq!(action(&text), RuleAction::Challenge(900));
    let loaded = parse(&text, "t.toml").expect("a web ACL's immunity time");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    assert_eq!(
        waf.overrides.groups[0].1.rule_actions,
        [("SC-SQLI-003".to_owned(), RuleAction::Challenge(900))]
    );
    // Token domains, as names compare: in lowercase.
    let text = with(
        "managed_priority = 500",
        "managed_priority = 500\ntoken_domains = [\"Shop.Example\", \"shop.test\"]",
    );
    let loaded = parse(&text, "t.toml").expect("token domains");
    let waf = loaded.topology.edge.waf.as_ref().expect("a web ACL");
    assert_eq!(waf.token_domains, ["shop.example", "shop.test"]);
}
