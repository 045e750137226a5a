//! `securecart up` end to end: a whole two-region deployment from a topology file, a
//! purchase through the edge, replicas killed under it, and a stop that leaves nothing
//! behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use securecart_testkit::{TestClient, free_port};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_securecart");

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default topology moved to loopback blocks and ports of its own, so that the test
/// never collides with a developer's `securecart up` or another test run.
fn test_topology(directory: &Path) -> PathBuf {
    let first = 100 + (std::process::id() % 50) as u8 * 2;
    let second = first + 1;
    let edge_port = free_port(&format!("127.{first}.0.1"));
    let https_port = free_port(&format!("127.{first}.0.1"));
    let service_port = free_port(&format!("127.{first}.1.1"));
    let admin_port = free_port(&format!("127.{first}.1.2"));
    let dns_port = free_port(&format!("127.{first}.0.2"));
    let text = std::fs::read_to_string(repository_root().join("securecart.toml"))
        .expect("default topology")
        .replace("127.1.", &format!("127.{first}."))
        .replace("127.2.", &format!("127.{second}."))
        .replace("admin_port = 9090", &format!("admin_port = {admin_port}"))
        .replace(
            "name = \"http\"\nport = 8080",
            &format!("name = \"http\"\nport = {edge_port}"),
        )
        .replace(
            "name = \"https\"\nport = 8443",
            &format!("name = \"https\"\nport = {https_port}"),
        )
        .replace("port = 8080", &format!("port = {service_port}"))
        .replace("port = 5353", &format!("port = {dns_port}"))
        .replace(
            "interval_ms = 1000\nfailure_threshold = 2",
            "interval_ms = 300\nfailure_threshold = 2",
        )
        .replace(
            "interval_ms = 1000, timeout_ms = 500",
            "interval_ms = 300, timeout_ms = 250",
        );
    assert!(
        text.contains(&format!("port = {edge_port}"))
            && text.contains(&format!("port = {https_port}")),
        "the listeners moved to their test ports"
    );
    let path = directory.join("topology.toml");
    std::fs::write(&path, text).expect("write topology");
    path
}

async fn status(data_dir: &Path) -> Option<Value> {
    let output = Command::new(BINARY)
        .args(["status", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .await
        .expect("run status");
    serde_json::from_slice(&output.stdout).ok()
}

/// Waits until `status` says the deployment is healthy (and, if given, that a component
/// has restarted at least that often).
async fn wait_healthy(data_dir: &Path, up: &mut Child, restarts_of: Option<(&str, u64)>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(exit)) = up.try_wait() {
            panic!("up exited early: {exit}");
        }
        if let Some(report) = status(data_dir).await {
            let restarted = restarts_of.is_none_or(|(id, at_least)| {
                component(&report, id)["restarts"].as_u64().unwrap_or(0) >= at_least
            });
            if report["healthy"] == true && restarted {
                return report;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not healthy in time: {:?}",
            status(data_dir).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn component<'r>(report: &'r Value, id: &str) -> &'r Value {
    report["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["id"] == id)
        .unwrap_or_else(|| panic!("no component {id}"))
}

fn pids(report: &Value) -> Vec<i32> {
    report["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|component| component["pid"].as_i64())
        .map(|pid| pid as i32)
        .chain(report["supervisor_pid"].as_i64().map(|pid| pid as i32))
        .collect()
}

fn is_alive(pid: i32) -> bool {
    // A zombie is gone for our purpose: it runs nothing and holds no port.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = state
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    kill(Pid::from_raw(pid), None).is_ok() && state.is_some_and(|state| state != 'Z')
}

async fn wait_all_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|pid| is_alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "still running: {:?}",
            pids.iter()
                .filter(|pid| is_alive(**pid))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `securecart ARGS --data-dir DATA_DIR`, asserts that it succeeds, and returns its
/// standard output.
async fn securecart_ok(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .await
        .expect("run securecart");
    assert!(
        output.status.success(),
        "securecart {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `securecart ARGS`, asserts that it fails, and returns its standard error.
async fn securecart_refuses(args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .output()
        .await
        .expect("run securecart");
    assert!(!output.status.success(), "securecart {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn start_up(config: &Path, data_dir: &Path) -> Child {
    let mut child = Command::new(BINARY)
        .arg("up")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start up");
    // Keep the pipes drained; show the logs when a test fails (cargo captures them).
    for stream in [
        child
            .stdout
            .take()
            .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                #[allow(
                    clippy::print_stdout,
                    reason = "the test harness captures the deployment's logs and shows them when a test fails"
                )]
                {
                    println!("{line}");
                }
            }
        });
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_a_purchase_survives_killed_replicas_and_stops_cleanly() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = test_topology(directory.path());
    let data_dir = directory.path().join("data");
    let mut up = start_up(&config, &data_dir);
    let report = wait_healthy(&data_dir, &mut up, None).await;
    assert_eq!(report["components"].as_array().map(Vec::len), Some(24));

    // The shop's zone: each region's clients get their own region's edge (latency
    // records), from either region's DNS server.
    let dns = |region: usize| {
        component(
            &report,
            &format!("{}/dns", ["us-east-1", "eu-west-1"][region]),
        )["address"]
            .as_str()
            .expect("dns address")
            .to_owned()
    };
    let edge_ip = |region: usize| {
        let address: std::net::SocketAddr = component(
            &report,
            &format!("{}/edge", ["us-east-1", "eu-west-1"][region]),
        )["address"]
            .as_str()
            .expect("edge address")
            .parse()
            .expect("address");
        match address.ip() {
            std::net::IpAddr::V4(ip) => ip.octets(),
            std::net::IpAddr::V6(_) => unreachable!("the topology is IPv4"),
        }
    };
    let client_in = |region: usize| {
        let [a, b, _, _] = edge_ip(region);
        format!("{a}.{b}.9.9")
    };
    // The DNS servers may have started checking the edges before these listened: their
    // checks settle within interval × threshold, as `dns test-record` shows.
    let config_arg = config.to_str().expect("path").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tested = test_record(&data_dir, &config_arg, &[]).await;
        if tested.contains("edge-us-east-1 healthy, edge-eu-west-1 healthy") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edges never both passed: {tested}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for server in [dns(0), dns(1)] {
        for region in [0, 1] {
            until_answer(
                &client_in(region),
                &server,
                "www.securecart.test",
                edge_ip(region),
                &format!("www from region {region}'s block, asking {server}"),
            )
            .await;
        }
    }
    // The apex is an alias of www: the same answer under the zone's name.
    assert_eq!(
        ask_a_from(&client_in(1), &dns(0), "securecart.test").await,
        Some((0, Some(edge_ip(1))))
    );
    // checkout is active-passive: every client is sent to us-east-1, the primary, while its
    // edge's target groups are healthy.
    for region in [0, 1] {
        until_answer(
            &client_in(region),
            &dns(region),
            "checkout.securecart.test",
            edge_ip(0),
            &format!("checkout from region {region}'s block"),
        )
        .await;
    }
    // us-east-1's edge stops answering: within the health check's interval × threshold,
    // its clients are sent to eu-west-1, and every client's checkout to the secondary;
    // back once it answers again.
    let us_edge = component(&report, "us-east-1/edge")["pid"]
        .as_i64()
        .expect("edge pid") as i32;
    kill(Pid::from_raw(us_edge), Signal::SIGSTOP).expect("SIGSTOP");
    until_answer(
        &client_in(0),
        &dns(0),
        "www.securecart.test",
        edge_ip(1),
        "the stopped edge stayed in the answers",
    )
    .await;
    until_answer(
        &client_in(0),
        &dns(1),
        "checkout.securecart.test",
        edge_ip(1),
        "checkout stayed on the stopped primary",
    )
    .await;
    // Route 53's test DNS answer says the same, and why, with the live health.
    let [a, b, _, _] = edge_ip(0);
    let [c, d, _, _] = edge_ip(1);
    // (The servers' metrics, which it reads, follow the checks within a fraction of a
    // second.)
    let subnet = format!("{a}.{b}.0.0/16");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tested = test_record(&data_dir, &config_arg, &["--client-subnet", &subnet]).await;
        if tested.contains(&format!("IN A {c}.{d}.0.1"))
            && tested.contains("edge-us-east-1 unhealthy, edge-eu-west-1 healthy")
            && tested.contains("why: www.securecart.test. A: latency")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{tested}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill(Pid::from_raw(us_edge), Signal::SIGCONT).expect("SIGCONT");
    until_answer(
        &client_in(0),
        &dns(0),
        "www.securecart.test",
        edge_ip(0),
        "the edge never came back into the answers",
    )
    .await;
    until_answer(
        &client_in(1),
        &dns(0),
        "checkout.securecart.test",
        edge_ip(0),
        "checkout never came back to the primary",
    )
    .await;
    let url = report["entry_points"][0]["url"]
        .as_str()
        .expect("url")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(report["entry_points"][0]["region"], "us-east-1");

    // Browse, add to cart, check out with an idempotency key, and repeat the checkout.
    let mut shopper = TestClient::http1();
    let home = shopper.get(&format!("{url}/")).await;
    assert_eq!(home.status, 200);
    assert!(home.text().contains("data-region=\"us-east-1\""));
    let products = shopper
        .get(&format!("{url}/api/catalog/products?per_page=50"))
        .await
        .json();
    let product = products["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|product| product["stock"].as_i64().unwrap_or(0) >= 2)
        .expect("a product in stock")
        .clone();
    let image_url = format!("{url}{}", product["image_url"].as_str().expect("image url"));
    let image = shopper.get(&image_url).await;
    assert_eq!(image.status, 200);
    // The default topology caches product images at the edge (CloudFront's role).
    let image_again = shopper.get(&image_url).await;
    assert_eq!(image_again.header("x-cache"), Some("Hit"));
    assert_eq!(image_again.body, image.body);
    // The web ACL stops an injection before any service sees it.
    let injected = shopper
        .get(&format!(
            "{url}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271"
        ))
        .await;
    assert_eq!(injected.status, 403);
    assert_eq!(injected.json()["error"]["code"], "blocked");
    // eu-west-1's edge fetches images through us-east-1's (the origin shield).
    let eu_url = report["entry_points"][1]["url"]
        .as_str()
        .expect("eu-west-1's url")
        .trim_end_matches('/');
    let image_path = product["image_url"].as_str().expect("image url");
    let from_eu = shopper.get(&format!("{eu_url}{image_path}")).await;
    assert_eq!(from_eu.body, image.body);
    let eu_admin = component(&report, "eu-west-1/edge")["admin_address"]
        .as_str()
        .expect("admin address")
        .to_owned();
    let eu_metrics = shopper
        .get(&format!("http://{eu_admin}/metrics"))
        .await
        .text();
    assert!(
        eu_metrics.lines().any(|line| line.starts_with(
            "securecart_edge_target_responses_total{target_group=\"origin-shield-us-east-1\",class=\"2xx\"} 1"
        )),
        "{eu_metrics}"
    );
    let first = buy(&mut shopper, &url, &product, 2, "e2e-order-key-0001").await;
    assert_eq!(first.status, 201, "{}", first.text());
    let order = first.json()["order"].clone();
    assert_eq!(order["status"], "paid");
    let again = shopper
        .post(
            &format!("{url}/api/checkout"),
            &[("idempotency-key", "e2e-order-key-0001")],
            CHECKOUT_BODY,
        )
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(
        again.json()["order"]["id"],
        order["id"],
        "the same key returns the same order"
    );
    let order_url = format!(
        "{url}/api/orders/{}",
        order["id"].as_str().expect("order id")
    );
    assert_eq!(shopper.get(&order_url).await.json(), order);
    let after = shopper
        .get(&format!("{url}/api/catalog/products/{}", product["id"]))
        .await
        .json();
    assert_eq!(
        after["stock"],
        product["stock"].as_i64().expect("stock") - 2,
        "stock was taken once"
    );

    // A flood from 64 addresses of the region's block while another shopper buys: the
    // shield holds each flooder to its rate (50 a second after a burst of 100), the web
    // ACL challenges a flooder's page loads past 300 in 5 minutes (202: the flooder runs no
    // JavaScript), and every request of the shopper succeeds.
    let [a, b, _, _] = edge_ip(0);
    let (stop_flood, flooding) = tokio::sync::watch::channel(false);
    let flooders: Vec<_> = (1..=64)
        .map(|n| {
            let source: std::net::IpAddr = format!("{a}.{b}.60.{n}").parse().expect("address");
            tokio::spawn(flood(url.clone(), source, flooding.clone()))
        })
        .collect();
    // The flood is under way before the shopper starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut buyer = TestClient::http1();
    for path in ["/", "/static/app.js", "/api/catalog/products?per_page=50"] {
        let reply = buyer.get(&format!("{url}{path}")).await;
        assert_eq!(
            reply.status,
            200,
            "{path} during the flood: {}",
            reply.text()
        );
    }
    let bought = buy(&mut buyer, &url, &product, 1, "e2e-order-during-flood").await;
    assert_eq!(bought.status, 201, "{}", bought.text());
    assert_eq!(bought.json()["order"]["status"], "paid");
    let _ = stop_flood.send(true);
    for flooder in flooders {
        let (statuses, elapsed) = flooder.await.expect("flooder");
        let served = statuses.iter().filter(|status| **status == 200).count();
        let challenged = statuses.iter().filter(|status| **status == 202).count();
        let limited = statuses.iter().filter(|status| **status == 429).count();
        assert_eq!(
            served + challenged + limited,
            statuses.len(),
            "{statuses:?}"
        );
        // Only past 300 page loads (the window's estimate never counts more than were
        // sent).
        assert!(challenged == 0 || served >= 300, "{statuses:?}");
        // GCRA: at most the burst, and the rate over the time the flood lasted.
        let allowed = 100.0 + 50.0 * elapsed.as_secs_f64() + 1.0;
        assert!(
            (served + challenged) as f64 <= allowed && limited > 0,
            "{served} served and {challenged} challenged in {elapsed:?}, {limited} limited"
        );
    }
    let us_admin = component(&report, "us-east-1/edge")["admin_address"]
        .as_str()
        .expect("admin address")
        .to_owned();
    let shield = buyer.get(&format!("http://{us_admin}/shield")).await.json();
    assert_eq!(shield["automatic_mitigation"], true, "{shield}");

    // Kill one replica of the storefront and of the catalog, and both checkouts: the edge
    // keeps serving, and the acknowledged order is still there.
    for id in [
        "us-east-1/storefront-1",
        "us-east-1/catalog-1",
        "us-east-1/checkout-1",
        "us-east-1/checkout-2",
    ] {
        let pid = component(&report, id)["pid"].as_i64().expect("pid") as i32;
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
    }
    for round in 0..30 {
        let page = shopper.get(&format!("{url}/")).await;
        assert_eq!(page.status, 200, "round {round}: {}", page.text());
        let listing = shopper
            .get(&format!("{url}/api/catalog/products?page={}", round + 1))
            .await;
        assert_eq!(listing.status, 200, "round {round}: {}", listing.text());
    }
    let report = wait_healthy(&data_dir, &mut up, Some(("us-east-1/checkout-2", 1))).await;
    assert!(component(&report, "us-east-1/catalog-1")["restarts"].as_u64() >= Some(1));
    assert_eq!(
        shopper.get(&order_url).await.json(),
        order,
        "the order survived kill -9"
    );

    // The edge's targets can be listed, deregistered and brought back by a reload, which
    // reads the topology again.
    let storefront = component(&report, "us-east-1/storefront-2")["address"]
        .as_str()
        .expect("address")
        .to_owned();
    let listed = securecart_ok(&data_dir, &["targets"]).await;
    assert!(listed.contains(&storefront), "{listed}");
    let deregister = [
        "targets",
        "--region",
        "us-east-1",
        "deregister",
        "storefront",
        &storefront,
    ];
    let changed = securecart_ok(&data_dir, &deregister).await;
    let listed = securecart_ok(&data_dir, &["targets", "--region", "us-east-1"]).await;
    assert!(!listed.contains(&storefront), "{listed}");
    // eu-west-1's edge knows the replica as a failover target: deregistered there too.
    assert!(
        changed.contains(&format!(
            "eu-west-1/edge: /targets/deregister storefront@us-east-1 {storefront}: done"
        )),
        "{changed}"
    );
    let listed = securecart_ok(&data_dir, &["targets", "--region", "eu-west-1"]).await;
    assert!(!listed.contains(&storefront), "{listed}");
    assert_eq!(
        shopper.get(&format!("{url}/")).await.status,
        200,
        "the other replica serves"
    );
    // With no storefront replica left in us-east-1, its assets come from eu-west-1's
    // (the behaviour's origin failover), where the page itself has no target.
    let other = component(&report, "us-east-1/storefront-1")["address"]
        .as_str()
        .expect("address")
        .to_owned();
    securecart_ok(
        &data_dir,
        &[
            "targets",
            "--region",
            "us-east-1",
            "deregister",
            "storefront",
            &other,
        ],
    )
    .await;
    // The page itself is answered with the shop's "we will be right back" page (the
    // custom error response), fetched the same way.
    let page = shopper.get(&format!("{url}/")).await;
    assert_eq!(page.status, 503);
    assert!(
        page.text().contains("We will be right back"),
        "{}",
        page.text()
    );
    let asset = shopper
        .get(&format!("{url}/static/app.js?after-failover"))
        .await;
    assert_eq!(asset.status, 200, "{}", asset.text());
    assert_eq!(asset.header("x-content-type-options"), Some("nosniff"));
    let us_metrics = shopper
        .get(&format!("http://{us_admin}/metrics"))
        .await
        .text();
    for line in [
        "securecart_edge_cache_failovers_total{behavior=\"assets\"} 2",
        "securecart_edge_target_responses_total{target_group=\"storefront@eu-west-1\",class=\"2xx\"} 2",
    ] {
        assert!(
            us_metrics.lines().any(|metric| metric == line),
            "{line}: {us_metrics}"
        );
    }
    securecart_ok(&data_dir, &["reload", "--region", "us-east-1"]).await;
    let listed = securecart_ok(&data_dir, &["targets", "--region", "us-east-1"]).await;
    assert!(
        listed.contains(&storefront),
        "the reload restored the topology's targets"
    );

    // SIGHUP does the same as `securecart reload`.
    securecart_ok(&data_dir, &deregister).await;
    let edge_pid = component(&report, "us-east-1/edge")["pid"]
        .as_i64()
        .expect("edge pid") as i32;
    kill(Pid::from_raw(edge_pid), Signal::SIGHUP).expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !securecart_ok(&data_dir, &["targets", "--region", "us-east-1"])
        .await
        .contains(&storefront)
    {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the edge");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `securecart reload` reads the zone again too: one region's DNS server, then both.
    let mut text = std::fs::read_to_string(&config).expect("topology");
    text.push_str("\n[[dns.records]]\nname = \"new\"\ntype = \"A\"\nvalues = [\"192.0.2.7\"]\n");
    std::fs::write(&config, text).expect("topology");
    let new = "new.securecart.test";
    assert_eq!(
        ask_a(&dns(0), new).await,
        Some((3, None)),
        "NXDOMAIN before"
    );
    let reloaded = securecart_ok(&data_dir, &["reload", "--region", "us-east-1"]).await;
    assert!(reloaded.contains("us-east-1/dns: reloaded"), "{reloaded}");
    assert_eq!(ask_a(&dns(0), new).await, Some((0, Some([192, 0, 2, 7]))));
    assert_eq!(
        ask_a(&dns(1), new).await,
        Some((3, None)),
        "eu-west-1's stays"
    );
    let reloaded = securecart_ok(&data_dir, &["reload"]).await;
    assert!(reloaded.contains("eu-west-1/dns: reloaded"), "{reloaded}");
    assert_eq!(ask_a(&dns(1), new).await, Some((0, Some([192, 0, 2, 7]))));
    // A topology they refuse: every server is asked, each says so, the command fails, and
    // what is in force stays.
    let good = std::fs::read_to_string(&config).expect("topology");
    std::fs::write(
        &config,
        format!("{good}\n[[dns.records]]\nname = \"mx\"\ntype = \"MX\"\nvalues = [\"mail\"]\n"),
    )
    .expect("topology");
    let refused = Command::new(BINARY)
        .args(["reload", "--data-dir"])
        .arg(&data_dir)
        .output()
        .await
        .expect("run securecart");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    for server in [
        "us-east-1/edge",
        "us-east-1/dns",
        "eu-west-1/edge",
        "eu-west-1/dns",
    ] {
        assert!(said.contains(&format!("{server}: not reloaded")), "{said}");
    }
    assert_eq!(ask_a(&dns(1), new).await, Some((0, Some([192, 0, 2, 7]))));
    std::fs::write(&config, good).expect("topology");

    // Stop: every process ends, the state file goes.
    let all = pids(&report);
    stop_gracefully(&mut up, Duration::from_secs(30)).await;
    wait_all_gone(&all).await;
    assert!(!data_dir.join("securecart-up.json").exists());

    // Start again on the same data: the order is still there. Then kill -9 the supervisor
    // itself: its children stop with it.
    let mut up = start_up(&config, &data_dir);
    let report = wait_healthy(&data_dir, &mut up, None).await;
    assert_eq!(TestClient::http1().get(&order_url).await.json(), order);
    let all = pids(&report);
    up.start_kill().expect("kill -9 up");
    let _ = up.wait().await;
    wait_all_gone(&all).await;
}

/// `securecart check`, of `file` or of the embedded topology.
async fn check(file: Option<&Path>) -> std::process::Output {
    Command::new(BINARY)
        .arg("check")
        .args(file)
        .output()
        .await
        .expect("run check")
}

#[tokio::test]
async fn check_names_the_file_line_and_field_of_an_error() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("broken.toml");
    let text = std::fs::read_to_string(repository_root().join("securecart.toml"))
        .expect("default topology")
        .replacen("replicas = 2", "replicas = 0", 1);
    std::fs::write(&path, &text).expect("write");
    let output = check(Some(&path)).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .position(|line| line.contains("replicas = 0"))
        .expect("line")
        + 1;
    assert!(
        stderr.contains(&format!("{}:{line}:", path.display()))
            && stderr.contains("services[0].replicas: must be at least 1"),
        "{stderr}"
    );

    let output = check(None).await;
    assert!(output.status.success(), "the embedded topology is valid");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(
            "dns: zone securecart.test., 5 record set(s), 4 health check(s), servers 127.1.0.2:5353, 127.2.0.2:5353"
        ),
        "check describes the DNS zone"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("web ACL on every listener:"),
        "check describes the web ACL"
    );
    // A listener with a web ACL of its own, another with none.
    let own = std::fs::read_to_string(repository_root().join("securecart.toml"))
        .expect("default topology")
        .replacen(
            "name = \"https\"\nport = 8443",
            "name = \"https\"\nport = 8443\nweb_acl = \"strict\"",
            1,
        )
        .replacen(
            "name = \"http\"\nport = 8080",
            "name = \"http\"\nport = 8080\nweb_acl = \"none\"",
            1,
        )
        + "\n[edge.web_acls.strict]\nmanaged_groups = [\"sql-injection\"]\nparanoia_level = 2\n";
    std::fs::write(&path, &own).expect("write");
    let output = check(Some(&path)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("web ACL on no listener:")
            && stdout.contains(
                "web ACL strict on listener(s) https: 0 rule(s) of the shop's own, then sql-injection at paranoia level 2"
            ),
        "{stdout}"
    );
    let missing = securecart_refuses(&["check", "/nonexistent.toml"]).await;
    assert!(missing.contains("/nonexistent.toml"));
}

#[tokio::test]
async fn check_reads_the_city_database_the_dns_names() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let text = std::fs::read_to_string(repository_root().join("securecart.toml"))
        .expect("default topology")
        .replacen("[dns]\n", "[dns]\ngeoip_database = \"cities.mmdb\"\n", 1);
    let file = directory.path().join("topology.toml");
    std::fs::write(&file, text).expect("write topology");
    std::fs::write(directory.path().join("cities.mmdb"), b"not a database").expect("write");
    let output = check(Some(&file)).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dns.geoip_database") && stderr.contains("cities.mmdb"),
        "{stderr}"
    );
}

/// `check` builds the DNS zone as its servers will, without starting its health checks:
/// aliases that reach more members than a query may follow are refused there.
#[tokio::test]
async fn check_builds_the_dns_zone_as_its_servers_will() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut text = std::fs::read_to_string(repository_root().join("securecart.toml"))
        .expect("default topology");
    for (group, target) in [("fan-x", "fan-y"), ("fan-y", "www")] {
        for n in 0..40 {
            text.push_str(&format!(
                "\n[[dns.records]]\nname = \"{group}\"\ntype = \"A\"\nset_identifier = \"m{n}\"\nweight = 1\nalias = \"{target}\"\n"
            ));
        }
    }
    let file = directory.path().join("topology.toml");
    std::fs::write(&file, text).expect("write topology");
    let output = check(Some(&file)).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[dns]") && stderr.contains("fan-x") && stderr.contains("1024"),
        "{stderr}"
    );
}

#[tokio::test]
async fn status_without_a_deployment_says_so() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let data_dir = directory.path().to_str().expect("path");
    let stderr = securecart_refuses(&["status", "--data-dir", data_dir]).await;
    assert!(stderr.contains("no deployment is running"));
}

#[tokio::test]
async fn proxy_puts_the_edge_in_front_of_existing_servers() {
    let upstream = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new()
            .route(
                "/",
                axum::routing::get(|| async { "hello from the origin" }),
            )
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "late"
                }),
            ),
    )
    .await;
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut proxy = Command::new(BINARY)
        .args([
            "proxy",
            "--log-format",
            "json",
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--upstream",
            &format!("http://{}", upstream.address),
        ])
        .env("SECURECART_ADMIN_TOKEN", "proxy-token")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start proxy");
    let mut log = BufReader::new(proxy.stderr.take().expect("stderr")).lines();
    let mut client = TestClient::http1();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        if tokio::net::TcpStream::connect(&listen).await.is_ok() {
            break client
                .send(
                    hyper::Method::GET,
                    &format!("http://{listen}/?q=1"),
                    &[("user-agent", "access-log-test")],
                    "",
                )
                .await;
        }
        assert!(Instant::now() < deadline, "the proxy never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (reply.status.as_u16(), reply.text()),
        (200, "hello from the origin".to_owned())
    );

    // The access log line, in JSON, with ALB's fields.
    let access = access_line(&mut log, "user_agent", "access-log-test").await;
    assert_eq!(access["type"], "http");
    assert_eq!(access["elb_status_code"], 200);
    assert_eq!(access["target_status_code"], 200);
    assert_eq!(access["sent_bytes"], "hello from the origin".len());
    assert_eq!(access["target"], upstream.address.to_string());
    assert_eq!(access["actions_executed"], "forward");
    assert_eq!(access["target_group"], "upstreams");
    let port = listen.rsplit(':').next().expect("port");
    assert_eq!(
        access["request"],
        format!("GET http://127.0.0.1:{port}/?q=1 HTTP/1.1")
    );
    assert!(
        access["target_processing_time"]
            .as_f64()
            .is_some_and(|seconds| seconds >= 0.0),
        "{access}"
    );
    assert_eq!(access["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(access["ssl_protocol"], "-", "{access}");
    assert_eq!(access["classification"], "-", "{access}");
    assert_eq!(access["classification_reason"], "-", "{access}");
    // A GET with a body is ambiguous (desync mitigation): routed in the default mode,
    // `defensive`, and its connection closed; the access log says why.
    {
        let answer = securecart_testkit::raw_exchange(&listen, b"GET / HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: desync-test\r\nContent-Length: 5\r\n\r\nhello").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello from the origin"), "{answer}");
    }
    let ambiguous = access_line(&mut log, "user_agent", "desync-test").await;
    assert_eq!(ambiguous["classification"], "Ambiguous", "{ambiguous}");
    assert_eq!(
        ambiguous["classification_reason"], "UndefinedContentLengthSemantics",
        "{ambiguous}"
    );
    // A chunked body's bytes are counted as they pass.
    {
        let answer = securecart_testkit::raw_exchange(&listen, b"POST /echo HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: chunked-test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n").await;
        assert!(answer.ends_with("0123456789"), "{answer}");
    }
    let chunked = access_line(&mut log, "user_agent", "chunked-test").await;
    assert_eq!(chunked["received_bytes"], 10, "{chunked}");
    // A client that goes away before its answer: ALB's 460, with the request's desync
    // classification (a GET with `Content-Length: 0` is acceptable).
    for (user_agent, length, classification, reason) in [
        ("abandoned-test", "", "-", "-"),
        (
            "abandoned-classified",
            "Content-Length: 0\r\n",
            "Acceptable",
            "GetHeadZeroContentLength",
        ),
    ] {
        {
            use tokio::io::AsyncWriteExt;
            let mut stream = tokio::net::TcpStream::connect(&listen)
                .await
                .expect("connect");
            let head = format!(
                "GET /slow HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: {user_agent}\r\n{length}\r\n"
            );
            stream.write_all(head.as_bytes()).await.expect("write");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let abandoned = access_line(&mut log, "user_agent", user_agent).await;
        assert_eq!(abandoned["elb_status_code"], 460, "{abandoned}");
        assert_eq!(abandoned["error_reason"], "client_closed", "{abandoned}");
        assert_eq!(abandoned["classification"], classification, "{abandoned}");
        assert_eq!(abandoned["classification_reason"], reason, "{abandoned}");
    }
    // `securecart targets --admin` speaks to one edge (here the proxy) by its admin
    // address, with the token from the environment.
    let admin_command = |args: &[&str], token: &str| {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .args(["--admin", &admin])
            .env("SECURECART_ADMIN_TOKEN", token);
        command
    };
    let listed = admin_command(&["targets"], "").output().await.expect("run");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("upstreams") && listed.contains(&upstream.address.to_string()),
        "{listed}"
    );
    let registered = admin_command(
        &["targets", "register", "upstreams", "127.0.0.1:9"],
        "proxy-token",
    )
    .output()
    .await
    .expect("run");
    assert!(registered.status.success(), "{registered:?}");
    // Nothing listens there: the new target is in its first checks, or has failed them,
    // and the line says which, with ALB's reason code.
    let registered = String::from_utf8_lossy(&registered.stdout).into_owned();
    let line = registered
        .lines()
        .find(|line| line.contains("127.0.0.1:9 "))
        .unwrap_or_else(|| panic!("{registered}"));
    assert!(
        line.contains("initial") && line.contains("Elb.InitialHealthChecking")
            || line.contains("unhealthy") && line.contains("Target.FailedHealthChecks"),
        "{registered}"
    );
    let refused = admin_command(
        &["targets", "deregister", "upstreams", "127.0.0.1:9"],
        "wrong",
    )
    .output()
    .await
    .expect("run");
    assert!(!refused.status.success(), "a wrong token is refused");
    // Keep draining the log so the proxy never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    stop_gracefully(&mut proxy, Duration::from_secs(20)).await;

    // Over TLS, the line says the protocol version and cipher suite agreed.
    let certificate =
        securecart_edge::tls::self_signed(&["localhost".to_owned()]).expect("certificate");
    let files = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&cert, &certificate.chain).expect("write");
    std::fs::write(&key, &certificate.key).expect("write");
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut proxy = Command::new(BINARY)
        .args([
            "proxy",
            "--log-format",
            "json",
            "--listen",
            &listen,
            "--upstream",
        ])
        .arg(format!("http://{}", upstream.address))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start proxy");
    let mut log = BufReader::new(proxy.stderr.take().expect("stderr")).lines();
    let address: std::net::SocketAddr = listen.parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(reply) =
            securecart_testkit::tls_get(address, "localhost", &certificate.chain, "/", &[], false)
                .await
        {
            assert_eq!(reply.reply.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never answered over TLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let access = access_line(&mut log, "type", "https").await;
    assert_eq!(access["ssl_protocol"], "TLSv1.3", "{access}");
    assert!(
        access["ssl_cipher"]
            .as_str()
            .is_some_and(|suite| suite.starts_with("TLS13_")),
        "{access}"
    );
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    stop_gracefully(&mut proxy, Duration::from_secs(20)).await;

    for (arguments, message) in [
        (
            &["--upstream", "ftp://127.0.0.1:1"][..],
            "give an http:// or https:// URL",
        ),
        (&["--upstream", "http://127.0.0.1:1/path"], "without a path"),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1",
                "--upstream",
                "https://127.0.0.1:2",
            ],
            "or all with https://",
        ),
        (
            &[
                "--upstream",
                "https://127.0.0.1:1",
                "--upstream",
                "https://127.0.0.2:1",
                "--upstream",
                "https://localhost:2",
            ],
            "name one host in every URL",
        ),
        (
            &["--upstream", "http://127.0.0.1:1", "--upstream-insecure"],
            "apply to https:// upstreams",
        ),
        (
            &[
                "--upstream",
                "http://127.0.0.1:1",
                "--upstream",
                "http://127.0.0.1:2",
                "--change-host-header",
            ],
            "it sends one Host",
        ),
        (
            &[
                "--upstream",
                "https://127.0.0.1:1",
                "--upstream-ca",
                "/nonexistent/ca.pem",
            ],
            "cannot read --upstream-ca /nonexistent/ca.pem",
        ),
    ] {
        let output = Command::new(BINARY)
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(arguments)
            .output()
            .await
            .expect("run proxy");
        assert!(!output.status.success(), "{arguments:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(message),
            "{arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn proxy_reaches_https_upstreams_and_checks_their_certificates() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let certificate =
        securecart_edge::tls::self_signed(&["127.0.0.1".to_owned()]).expect("certificate");
    let ca = directory.path().join("ca.pem");
    std::fs::write(&ca, &certificate.chain).expect("write the CA file");
    let upstream = securecart_testkit::serve_tls(
        "127.0.0.1",
        axum::Router::new()
            .route(
                "/host",
                axum::routing::get(|headers: axum::http::HeaderMap| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or("-")
                            .to_owned()
                    };
                    format!("{} {}", header("host"), header("x-forwarded-host"))
                }),
            )
            .fallback(|| async { "from the https origin" }),
        &certificate.chain,
        &certificate.key,
    )
    .await;
    let url = format!("https://{}", upstream.address);
    // A CA file that does not hold the upstream's root.
    let other = directory.path().join("other.pem");
    let stranger =
        securecart_edge::tls::self_signed(&["127.0.0.1".to_owned()]).expect("certificate");
    std::fs::write(&other, &stranger.chain).expect("write the other CA file");
    let handshakes = || {
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    // Trusting the upstream's certificate, trusting any (ALB's way), then trusting another
    // root, whose handshakes fail (502).
    for (trust, status) in [
        (&["--upstream-ca", ca.to_str().expect("path")][..], 200),
        (&["--upstream-insecure"], 200),
        (&["--upstream-ca", other.to_str().expect("path")], 502),
    ] {
        let before = handshakes();
        let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let mut proxy = start_proxy(&listen, &[&["--upstream", &url], trust].concat()).await;
        let reply = TestClient::http1().get(&format!("http://{listen}/")).await;
        assert_eq!(reply.status.as_u16(), status, "{trust:?}");
        if status == 200 {
            assert_eq!(reply.text(), "from the https origin");
        } else {
            assert_eq!(handshakes(), before, "no handshake succeeded");
        }
        stop_gracefully(&mut proxy, Duration::from_secs(10)).await;
    }
    // The client's Host, as behind ALB; or, with --change-host-header, the upstream's,
    // the client's in X-Forwarded-Host.
    for (changed, seen) in [
        (false, "localhost:{port} -".to_owned()),
        (true, format!("{} localhost:{{port}}", upstream.address)),
    ] {
        let port = free_port("127.0.0.1");
        let listen = format!("127.0.0.1:{port}");
        let mut arguments = vec!["--upstream", &url, "--upstream-insecure"];
        arguments.extend(changed.then_some("--change-host-header"));
        let mut proxy = start_proxy(&listen, &arguments).await;
        let reply = TestClient::http1()
            .get(&format!("http://localhost:{port}/host"))
            .await;
        assert_eq!(reply.text(), seen.replace("{port}", &port.to_string()));
        stop_gracefully(&mut proxy, Duration::from_secs(10)).await;
    }
}

#[tokio::test]
async fn proxy_waf_scores_anomalies_at_the_paranoia_level_given() {
    let bad = securecart_refuses(&[
        "proxy",
        "--listen",
        "127.0.0.1:1",
        "--upstream",
        "http://127.0.0.1:2",
        "--waf",
        "--waf-paranoia",
        "5",
    ])
    .await;
    assert!(bad.contains("--waf-paranoia"));

    let upstream = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new().fallback(|| async { "from the origin" }),
    )
    .await;
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let upstream_url = format!("http://{}", upstream.address);
    let mut proxy = start_proxy(
        &listen,
        &[
            "--upstream",
            &upstream_url,
            "--waf",
            "--waf-paranoia",
            "2",
            "--waf-anomaly-threshold",
            "5",
        ],
    )
    .await;
    async fn status(listen: &str, query: &str, accept: bool) -> u16 {
        let mut headers = vec![("user-agent", "Mozilla/5.0")];
        if accept {
            headers.push(("accept", "text/html"));
        }
        TestClient::http1()
            .send(
                hyper::Method::GET,
                &format!("http://{listen}/search?{query}"),
                &headers,
                "",
            )
            .await
            .status
            .as_u16()
    }
    // Two weak signs (a chained command: 3; no Accept header: 2) reach the threshold
    // together; neither does alone. A critical finding blocks by itself.
    assert_eq!(status(&listen, "q=rock%7Croll", true).await, 200);
    assert_eq!(status(&listen, "q=shoes", false).await, 200);
    assert_eq!(status(&listen, "q=rock%7Croll", false).await, 403);
    assert_eq!(
        status(&listen, "q=1%27%20OR%20%271%27%3D%271", true).await,
        403
    );
    stop_gracefully(&mut proxy, Duration::from_secs(10)).await;
    upstream.stop().await;
}

/// `--desync-mitigation-mode` sets quick mode's listener's mode: a GET with a body (an
/// ambiguous request) is routed by `monitor` and `defensive` (the default) and refused by
/// `strictest`; a request framed by both its length and its chunks is routed by `monitor`
/// alone; a compliant request passes all three.
#[tokio::test]
async fn proxy_desync_mitigation_mode_is_the_flags() {
    let upstream = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new().fallback(|| async { "from the origin" }),
    )
    .await;
    let upstream_url = format!("http://{}", upstream.address);
    const GET_WITH_BODY: &[u8] =
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    const FRAMED_TWICE: &[u8] = b"POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
    const COMPLIANT: &[u8] = b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    for (mode, get_with_body, framed_twice) in [
        (Some("monitor"), 200, 200),
        (None, 200, 400),
        (Some("strictest"), 400, 400),
    ] {
        let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let mut arguments = vec!["--upstream", upstream_url.as_str()];
        arguments.extend(
            mode.map(|mode| ["--desync-mitigation-mode", mode])
                .iter()
                .flatten(),
        );
        let mut proxy = start_proxy(&listen, &arguments).await;
        for (request, status) in [
            (GET_WITH_BODY, get_with_body),
            (FRAMED_TWICE, framed_twice),
            (COMPLIANT, 200),
        ] {
            let answer = securecart_testkit::raw_exchange(&listen, request).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{mode:?}: {answer}"
            );
            // A refusal is the edge's own answer, not the origin's.
            assert_eq!(
                answer.ends_with("from the origin"),
                status == 200,
                "{mode:?}: {answer}"
            );
        }
        stop_gracefully(&mut proxy, Duration::from_secs(10)).await;
    }
    let bad = securecart_refuses(&[
        "proxy",
        "--upstream",
        "http://127.0.0.1:2",
        "--desync-mitigation-mode",
        "lenient",
    ])
    .await;
    assert!(bad.contains("--desync-mitigation-mode"));
    upstream.stop().await;
}

#[tokio::test]
async fn proxy_cache_answers_hits_and_is_invalidated_from_the_command_line() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetched);
    let image = move |key: &'static str| {
        let counter = Arc::clone(&counter);
        axum::routing::get(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                [("cache-control", "max-age=600"), ("surrogate-key", key)],
                "<svg/>",
            )
        })
    };
    let upstream = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "up" }))
            .route("/img/a.svg", image("product-a images"))
            .route("/img/b.svg", image("product-b images")),
    )
    .await;
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut proxy = Command::new(BINARY)
        .args([
            "proxy",
            "--cache",
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--upstream",
        ])
        .arg(format!("http://{}", upstream.address))
        .env("SECURECART_ADMIN_TOKEN", "cache-test-token")
        .env("SECURECART_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start proxy");
    wait_listening(&listen).await;
    let mut client = TestClient::http1();
    let mut get = async |path: &str| {
        let reply = client.get(&format!("http://{listen}{path}")).await;
        assert_eq!(reply.status, 200, "{path}");
        reply.header("x-cache").unwrap_or("").to_owned()
    };
    assert_eq!(get("/img/a.svg").await, "Miss");
    assert_eq!(get("/img/a.svg").await, "Hit");
    assert_eq!(get("/img/b.svg").await, "Miss");
    assert_eq!(fetched.load(Ordering::SeqCst), 2);

    let invalidate = async |args: &[&str], token: &str| {
        Command::new(BINARY)
            .args(["cache", "invalidate", "--admin", &admin])
            .args(args)
            .env("SECURECART_ADMIN_TOKEN", token)
            .output()
            .await
            .expect("run cache invalidate")
    };
    let by_tag = invalidate(&["--tag", "product-a"], "cache-test-token").await;
    assert!(by_tag.status.success(), "{by_tag:?}");
    assert!(String::from_utf8_lossy(&by_tag.stdout).contains("1 objects invalidated"));
    assert_eq!(get("/img/a.svg").await, "Miss");
    assert_eq!(get("/img/b.svg").await, "Hit");

    let by_path = invalidate(&["--path", "/img/*"], "cache-test-token").await;
    assert!(String::from_utf8_lossy(&by_path.stdout).contains("2 objects invalidated"));
    assert_eq!(get("/img/b.svg").await, "Miss");

    let refused = invalidate(&["--path", "/img/*"], "wrong").await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token"));
    let bad = invalidate(&["--path", "img/*"], "cache-test-token").await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must start with `/`"));

    stop_gracefully(&mut proxy, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn proxy_cache_on_disk_starts_warm_after_a_restart() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetched);
    let upstream = securecart_testkit::serve(
        "127.0.0.1",
        axum::Router::new()
            .route("/", axum::routing::get(|| async { "up" }))
            .route(
                "/app.js",
                axum::routing::get(move || {
                    let counter = Arc::clone(&counter);
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        (
                            [
                                ("cache-control", "max-age=600"),
                                ("content-type", "text/javascript"),
                            ],
                            "console.log('from the origin')",
                        )
                    }
                }),
            ),
    )
    .await;
    let disk = tempfile::tempdir().expect("temporary directory");
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let start = || {
        Command::new(BINARY)
            .args(["proxy", "--cache", "--cache-disk"])
            .arg(disk.path())
            .args(["--listen", &listen, "--upstream"])
            .arg(format!("http://{}", upstream.address))
            .env("SECURECART_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start proxy")
    };
    let get = async || {
        wait_listening(&listen).await;
        let reply = TestClient::http1()
            .get(&format!("http://{listen}/app.js"))
            .await;
        assert_eq!(reply.text(), "console.log('from the origin')");
        reply.header("x-cache").unwrap_or("").to_owned()
    };
    let mut proxy = start();
    assert_eq!(get().await, "Miss");
    // The copy is written to disk in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(disk.path())
        .expect("lists")
        .filter_map(Result::ok)
        .all(|entry| !entry.file_name().to_string_lossy().ends_with(".obj"))
    {
        assert!(Instant::now() < deadline, "nothing was written to disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_gracefully(&mut proxy, Duration::from_secs(20)).await;

    let mut proxy = start();
    assert_eq!(get().await, "Hit", "the restarted proxy answered from disk");
    assert_eq!(fetched.load(Ordering::SeqCst), 1);
    stop_gracefully(&mut proxy, Duration::from_secs(20)).await;
}

/// Sends SIGTERM to a child and asserts that it exits successfully within `within`.
/// What the e2e shoppers check out with.
const CHECKOUT_BODY: &str = r#"{"email":"ada@example.com","name":"Ada Lovelace","address":"1 Main St","card_token":"tok_visa"}"#;

/// Adds `quantity` of `product` to the cart (which must succeed) and checks out with the
/// idempotency key `key`: the checkout's answer.
async fn buy(
    client: &mut TestClient,
    url: &str,
    product: &Value,
    quantity: u32,
    key: &str,
) -> securecart_testkit::Reply {
    let added = client
        .post(
            &format!("{url}/api/cart/items"),
            &[],
            &format!(
                r#"{{"product_id": {}, "quantity": {quantity}}}"#,
                product["id"]
            ),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.text());
    client
        .post(
            &format!("{url}/api/checkout"),
            &[("idempotency-key", key)],
            CHECKOUT_BODY,
        )
        .await
}

/// GETs of the storefront's page from `source`, one after another on one keep-alive
/// connection, until `stop` turns true and the shield has limited it at least once (at
/// most 20,000 of them, for at most 60 s): the statuses, and how long they took.
async fn flood(
    url: String,
    source: std::net::IpAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<u16>, Duration) {
    let mut client = TestClient::http1_from(source);
    let started = Instant::now();
    let mut statuses = Vec::new();
    while !(*stop.borrow() && statuses.contains(&429))
        && statuses.len() < 20_000
        && started.elapsed() < Duration::from_secs(60)
    {
        statuses.push(client.get(&format!("{url}/")).await.status.as_u16());
    }
    (statuses, started.elapsed())
}

/// The first JSON line of a proxy's log (its access log) whose `field` is `value`.
async fn access_line(
    log: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    field: &str,
    value: &str,
) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = log.next_line().await {
            if let Ok(line) = serde_json::from_str::<Value>(&line)
                && line[field] == value
            {
                return line;
            }
        }
        panic!("the proxy's log ended without the access line");
    })
    .await
    .expect("an access log line")
}

async fn stop_gracefully(child: &mut Child, within: Duration) {
    kill(
        Pid::from_raw(child.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let exit = tokio::time::timeout(within, child.wait())
        .await
        .expect("stops in time")
        .expect("exit status");
    assert!(exit.success(), "{exit}");
}

/// `securecart proxy --listen LISTEN ARGUMENTS...`, its output dropped, once it listens.
async fn start_proxy(listen: &str, arguments: &[&str]) -> Child {
    let proxy = Command::new(BINARY)
        .args(["proxy", "--listen", listen])
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start proxy");
    wait_listening(listen).await;
    proxy
}

/// Waits until something accepts connections at `address`.
async fn wait_listening(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listened at {address}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A query for `name` A (no EDNS), built by hand.
fn a_query(name: &str) -> Vec<u8> {
    let mut query = vec![0x01, 0x02, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|label| !label.is_empty()) {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

/// The response code and the address of the last (A) record of the answer, if any.
async fn ask_a(address: &str, name: &str) -> Option<(u8, Option<[u8; 4]>)> {
    ask_a_from("127.0.0.1", address, name).await
}

/// Asks `server` from `source` until the answer is `address`, for up to 10 s (health
/// checks settle over their interval × threshold).
async fn until_answer(source: &str, server: &str, name: &str, address: [u8; 4], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask_a_from(source, server, name).await;
        if answer == Some((0, Some(address))) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `securecart dns test-record www.securecart.test A` against a running deployment.
async fn test_record(data_dir: &Path, config: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "dns",
        "test-record",
        "www.securecart.test",
        "A",
        "--config",
        config,
    ];
    args.extend_from_slice(extra);
    securecart_ok(data_dir, &args).await
}

/// [`ask_a`] from a chosen source address.
async fn ask_a_from(source: &str, address: &str, name: &str) -> Option<(u8, Option<[u8; 4]>)> {
    let socket = tokio::net::UdpSocket::bind(format!("{source}:0"))
        .await
        .ok()?;
    socket.send_to(&a_query(name), address).await.ok()?;
    let mut buffer = [0u8; 512];
    let length = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buffer))
        .await
        .ok()?
        .ok()?;
    let answer = &buffer[..length];
    let answers = u16::from_be_bytes([answer[6], answer[7]]);
    let address = (answers > 0).then(|| {
        let mut address = [0u8; 4];
        address.copy_from_slice(&answer[length - 4..]);
        address
    });
    Some((answer[3] & 0x0f, address))
}

#[tokio::test]
async fn dns_serves_a_zone_file_and_reloads_it_on_sighup() {
    let directory = tempfile::tempdir().expect("directory");
    let zone = directory.path().join("shop.test.zone");
    let text = "$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ IN NS ns1\nns1 IN A 127.0.0.53\nwww IN A 127.1.0.1\n";
    std::fs::write(&zone, text).expect("zone");
    let listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let zone_arg = zone.to_str().expect("path").to_owned();
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    // The UDP batch wait is bounded (10 ms); 0 answers each query as it comes.
    let bad = securecart_refuses(&["dns", "--zone", &zone_arg, "--udp-batch-wait", "20000"]).await;
    assert!(bad.contains("--udp-batch-wait"));
    let mut dns = Command::new(BINARY)
        .args([
            "dns",
            "--workers",
            "1",
            "--udp-batch-wait",
            "0",
            "--zone",
            &zone_arg,
            "--listen",
            &listen,
            "--admin",
            &admin,
        ])
        .env("SECURECART_ADMIN_TOKEN", "zone-token")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dns");
    let mut log = BufReader::new(dns.stderr.take().expect("stderr")).lines();
    // The zone's name comes from the file's name.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(answer) = ask_a(&listen, "www.shop.test").await {
            break answer;
        }
        assert!(Instant::now() < deadline, "the server never answered");
    };
    assert_eq!(answer, (0, Some([127, 1, 0, 1])));
    assert_eq!(
        ask_a(&listen, "nope.shop.test").await,
        Some((3, None)),
        "NXDOMAIN"
    );
    assert_eq!(
        ask_a(&listen, "www.example").await,
        Some((5, None)),
        "REFUSED"
    );
    // The admin endpoint counts them, by transport and code.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = TestClient::http1()
            .get(&format!("http://{admin}/metrics"))
            .await
            .text();
        if metrics.contains("securecart_dns_queries_total{transport=\"udp\",code=\"NXDOMAIN\"} 1")
            && metrics
                .contains("securecart_dns_queries_total{transport=\"udp\",code=\"REFUSED\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pid = Pid::from_raw(dns.id().expect("pid") as i32);
    // SIGHUP reads the file again.
    std::fs::write(&zone, text.replace("127.1.0.1", "127.2.0.1")).expect("zone");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask_a(&listen, "www.shop.test").await != Some((0, Some([127, 2, 0, 1]))) {
        assert!(Instant::now() < deadline, "the reload never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file is refused, naming its line; the zone in force stays.
    std::fs::write(&zone, format!("{text}bad IN A 300.0.0.1\n")).expect("zone");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let refusal = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("reload refused") {
                return line;
            }
        }
        panic!("the log ended without the refusal");
    })
    .await
    .expect("a refusal in the log");
    assert!(refusal.contains("shop.test.zone:6"), "{refusal}");
    assert_eq!(
        ask_a(&listen, "www.shop.test").await,
        Some((0, Some([127, 2, 0, 1])))
    );
    // The admin API reloads too (`securecart reload --admin`), with the admin token only.
    let reload = |token: &'static str| {
        let url = format!("http://{admin}/reload");
        async move {
            let bearer = format!("Bearer {token}");
            TestClient::http1()
                .send(
                    http::Method::POST,
                    &url,
                    &[("authorization", bearer.as_str())],
                    "",
                )
                .await
        }
    };
    assert_eq!(reload("guess").await.status, 401);
    let refused = reload("zone-token").await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.text().contains("shop.test.zone:6"),
        "{}",
        refused.text()
    );
    std::fs::write(&zone, text.replace("127.1.0.1", "127.3.0.1")).expect("zone");
    assert_eq!(reload("zone-token").await.status, 200);
    assert_eq!(
        ask_a(&listen, "www.shop.test").await,
        Some((0, Some([127, 3, 0, 1])))
    );
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(10), dns.wait())
        .await
        .expect("stops")
        .expect("status");
    assert!(status.success(), "{status}");

    // A broken file at the start: no server, and the line named.
    std::fs::write(&zone, format!("{text}bad IN A 300.0.0.1\n")).expect("zone");
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(BINARY)
            .args(["dns", "--zone", &zone_arg, "--listen", &listen])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a server with a broken zone stops at once")
    .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shop.test.zone:6"), "{stderr}");
}
