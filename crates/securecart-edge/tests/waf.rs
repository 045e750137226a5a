//! The WAF stage with a real upstream that counts what reaches it: blocked requests get 403
//! and never reach it, ordinary ones do, form bodies are inspected (chunked ones and those
//! past 64 KiB as far as the limit), oversize bodies follow the listener's choice, and
//! matches are counted per rule (`waf_log.rs` reads their log lines).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use securecart_edge::waf::WafConfig;
use securecart_testkit::{TestClient, TestServer, serve};

mod common;
use common::RunningEdge;

async fn start_upstream() -> (TestServer, Arc<AtomicUsize>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reached);
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "reached"
            }
        });
    (serve("127.0.0.1", router).await, reached)
}

async fn start_edge(upstream: SocketAddr, waf: WafConfig) -> RunningEdge {
    let mut config = common::one_listener("app", vec![upstream]);
    config.listeners[0].waf = Some(waf);
    RunningEdge::start(config, "http").await
}

#[tokio::test]
async fn the_managed_web_acl_blocks_attacks_before_the_target_and_lets_shoppers_through() {
    let (upstream, reached) = start_upstream().await;
    let edge = start_edge(upstream.address, WafConfig::managed()).await;
    let mut client = TestClient::http1();

    let search = client
        .get(&format!(
            "{}/api/catalog/products?q=women%27s+shoes",
            edge.url
        ))
        .await;
    assert_eq!(
        (search.status.as_u16(), search.text()),
        (200, "reached".to_owned())
    );

    let injected = client
        .get(&format!(
            "{}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271",
            edge.url
        ))
        .await;
    assert_eq!(injected.status, 403);
    assert_eq!(injected.json()["error"]["code"], "blocked");
    let posted = client
        .send(
            http::Method::POST,
            &format!("{}/api/cart/items", edge.url),
            &[("content-type", "application/x-www-form-urlencoded")],
            "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .await;
    assert_eq!(posted.status, 403, "form bodies are inspected");
    let json = client
        .post(
            &format!("{}/api/checkout", edge.url),
            &[],
            r#"{"name":"Ada O'Brien","address":"1 Main St; Apt 2","email":"ada@example.com"}"#,
        )
        .await;
    assert_eq!(json.status, 200, "{}", json.text());
    assert_eq!(
        reached.load(Ordering::SeqCst),
        2,
        "blocked requests never reached the target"
    );

    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.lines().any(
            |line| line.starts_with("securecart_edge_waf_matches_total{")
                && line.contains("rule=\"SC-SQLI-")
                && line.contains("action=\"block\"")
        ),
        "{metrics}"
    );

    // The blocked requests are listed, newest first, with what matched; an attack in a
    // cookie is listed without the cookie.
    let cookie = client
        .send(
            http::Method::GET,
            &format!("{}/", edge.url),
            &[("cookie", "session=1%27%20OR%20%271%27%3D%271")],
            "",
        )
        .await;
    assert_eq!(cookie.status, 403);
    let sampled = client
        .get(&format!("http://{}/waf/sampled", edge.admin))
        .await
        .json();
    let samples = sampled["samples"].as_array().expect("samples");
    assert_eq!(samples[0]["field"], "cookies", "{sampled}");
    assert_eq!(samples[0]["data"], "REDACTED");
    assert_eq!(samples[0]["blocked"], true);
    assert_eq!(samples[0]["path"], "/");
    assert!(
        samples
            .iter()
            .any(|sample| sample["path"] == "/api/catalog/products"
                && sample["rule"]
                    .as_str()
                    .is_some_and(|rule| rule.starts_with("SC-SQLI-"))),
        "{sampled}"
    );
    let rule = samples[0]["rule"].as_str().expect("rule").to_owned();
    let one_rule = client
        .get(&format!(
            "http://{}/waf/sampled?rule={rule}&limit=1",
            edge.admin
        ))
        .await
        .json();
    assert_eq!(one_rule["samples"].as_array().map(Vec::len), Some(1));
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn redacted_fields_are_left_out_of_the_samples() {
    let (upstream, _) = start_upstream().await;
    let waf = WafConfig {
        redaction: securecart_edge::waf::Redaction {
            headers: Vec::new(),
            query_string: true,
            uri_path: true,
            method: false,
        },
        ..WafConfig::managed()
    };
    let edge = start_edge(upstream.address, waf).await;
    let mut client = TestClient::http1();
    let blocked = client
        .get(&format!(
            "{}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271",
            edge.url
        ))
        .await;
    assert_eq!(blocked.status, 403);
    let sampled = client
        .get(&format!("http://{}/waf/sampled", edge.admin))
        .await
        .json();
    let sample = &sampled["samples"][0];
    assert_eq!(
        (&sample["path"], &sample["data"], &sample["method"]),
        (
            &serde_json::json!("REDACTED"),
            &serde_json::json!("REDACTED"),
            &serde_json::json!("GET")
        ),
        "{sampled}"
    );
    assert!(
        sample["field"]
            .as_str()
            .is_some_and(|field| field.starts_with("query_")),
        "{sampled}"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn oversize_bodies_follow_the_listeners_choice() {
    let (upstream, reached) = start_upstream().await;
    let strict = WafConfig {
        body_limit: 16,
        oversize_blocks: true,
        ..WafConfig::managed()
    };
    let edge = start_edge(upstream.address, strict).await;
    let mut client = TestClient::http1();
    let url = format!("{}/api/cart/items", edge.url);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        client
            .send(http::Method::POST, &url, &form, "a=1")
            .await
            .status,
        200
    );
    assert_eq!(
        client
            .send(http::Method::POST, &url, &form, "note=a+rather+long+note")
            .await
            .status,
        403
    );
    edge.shutdown().await;

    // Inspected as far as the limit goes: an attack past it is not seen.
    let lenient = WafConfig {
        body_limit: 16,
        oversize_blocks: false,
        ..WafConfig::managed()
    };
    let edge = start_edge(upstream.address, lenient).await;
    let url = format!("{}/api/cart/items", edge.url);
    let tail = "padding=aaaaaaaaaaaaaaaaaaaa&q=1%27+OR+%271%27%3D%271";
    assert_eq!(
        client
            .send(http::Method::POST, &url, &form, tail)
            .await
            .status,
        200
    );
    assert_eq!(reached.load(Ordering::SeqCst), 2);
    edge.shutdown().await;
    upstream.stop().await;
}

/// A rule `id` that blocks `<script` in `field`, and, with AWS WAF's oversize handling
/// `MATCH`, any request past the limit of `field`'s part.
fn script_or_oversize(id: &str, field: &str) -> securecart_waf::Rule {
    let field = securecart_waf::Field::parse(field).expect("field");
    securecart_waf::Rule {
        id: id.to_owned(),
        priority: 0,
        statement: securecart_waf::Statement::OnOversize {
            matches: true,
            limited: field.limited().expect("a field with a limit"),
            statement: Box::new(
                securecart_waf::Statement::regex(field, r"(?i)<script", &[]).expect("pattern"),
            ),
        },
        action: securecart_waf::RuleAction::Block,
        labels: Vec::new(),
        response: None,
        score: 0,
    }
}

/// A rule over the body with AWS WAF's oversize handling `MATCH` blocks a body past the
/// inspection limit, though the listener lets such bodies through, and reads a shorter
/// body as any rule does.
#[tokio::test]
async fn a_rules_oversize_handling_answers_for_a_body_past_the_limit() {
    let (upstream, reached) = start_upstream().await;
    let rule = script_or_oversize("notes-oversize", "body_fields");
    let waf = WafConfig {
        body_limit: 16,
        oversize_blocks: false,
        ..WafConfig::with_acl(Arc::new(securecart_waf::WebAcl::new(vec![rule], false)))
    };
    let edge = start_edge(upstream.address, waf).await;
    let mut client = TestClient::http1();
    let url = format!("{}/api/notes", edge.url);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for (body, status) in [
        ("note=hello", 200),
        ("note=<script>", 403),
        ("note=a+rather+long+note", 403),
    ] {
        let answer = client.send(http::Method::POST, &url, &form, body).await;
        assert_eq!(answer.status, status, "{body}");
    }
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    edge.shutdown().await;
    upstream.stop().await;
}

/// AWS WAF's oversize handling on the cookies: a rule that matches past the first 200
/// cookies blocks a request with more, though none of them is an attack, and reads the
/// cookies of any other request.
#[tokio::test]
async fn a_rules_oversize_handling_answers_for_cookies_past_the_limit() {
    let (upstream, reached) = start_upstream().await;
    let rule = script_or_oversize("cookies-oversize", "cookies");
    let waf = WafConfig::with_acl(Arc::new(securecart_waf::WebAcl::new(vec![rule], false)));
    let edge = start_edge(upstream.address, waf).await;
    let mut client = TestClient::http1();
    let url = format!("{}/", edge.url);
    let many = |count: usize| {
        (0..count)
            .map(|at| format!("c{at}=1"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (cookie, status) in [
        ("theme=dark; cart=3".to_owned(), 200),
        ("theme=<script>".to_owned(), 403),
        (many(securecart_waf::inspect::MOST_INSPECTED), 200),
        (many(securecart_waf::inspect::MOST_INSPECTED + 1), 403),
    ] {
        let answer = client
            .send(http::Method::GET, &url, &[("cookie", cookie.as_str())], "")
            .await;
        assert_eq!(answer.status, status, "{} bytes of cookies", cookie.len());
    }
    assert_eq!(reached.load(Ordering::SeqCst), 2);
    // Listed as what it is (a match in the cookies themselves would be redacted).
    let sampled = client
        .get(&format!(
            "http://{}/waf/sampled?rule=cookies-oversize",
            edge.admin
        ))
        .await
        .json();
    assert_eq!(sampled["samples"][0]["field"], "oversize", "{sampled}");
    assert_eq!(sampled["samples"][0]["data"], "cookies", "{sampled}");
    edge.shutdown().await;
    upstream.stop().await;
}

/// Sends `head` and then `body` in chunks of `chunk` bytes (`Transfer-Encoding: chunked`)
/// on a new connection, and reads the answer until the edge closes it.
async fn chunked_post(address: &str, path: &str, body: &[u8], chunk: usize) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for part in body.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        request.extend_from_slice(part);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.expect("write");
    securecart_testkit::read_to_close(&mut stream).await
}

#[tokio::test]
async fn bodies_without_a_length_or_past_64_kib_are_inspected_to_the_limit_and_sent_whole() {
    // The target answers with the body it received.
    let router = axum::Router::new().fallback(|body: axum::body::Bytes| async move { body });
    let upstream = serve("127.0.0.1", router).await;
    let edge = start_edge(upstream.address, WafConfig::managed()).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let attack = b"q=1%27+OR+%271%27%3D%271&note=";

    // Chunked: the start is read and inspected, as a body with a length is.
    let answer = chunked_post(&address, "/api/cart/items", attack, 7).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // A long chunked body reaches the target whole, the bytes read for inspection first.
    let long: Vec<u8> = b"note="
        .iter()
        .chain(b"warm+wool+coat+".iter().cycle().take(40_000))
        .copied()
        .collect();
    let answer = chunked_post(&address, "/api/cart/items", &long, 1000).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..200.min(answer.len())]
    );
    assert!(
        answer.ends_with(std::str::from_utf8(&long).expect("text")),
        "the body arrived whole"
    );

    // Past 64 KiB with a length: the start is inspected too.
    let mut client = TestClient::http1();
    let url = format!("{}/api/cart/items", edge.url);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let mut big = attack.to_vec();
    big.extend(std::iter::repeat_n(b'a', 70_000));
    let blocked = client
        .send(
            http::Method::POST,
            &url,
            &form,
            std::str::from_utf8(&big).expect("text"),
        )
        .await;
    assert_eq!(blocked.status, 403);
    let mut big = b"note=".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70_000));
    let passed = client
        .send(
            http::Method::POST,
            &url,
            &form,
            std::str::from_utf8(&big).expect("text"),
        )
        .await;
    assert_eq!(passed.status, 200);
    assert_eq!(passed.text().as_bytes(), big.as_slice());
    edge.shutdown().await;

    // Where an oversize body blocks, a chunked one past the limit does, and is listed.
    let strict = WafConfig {
        oversize_blocks: true,
        ..WafConfig::managed()
    };
    let edge = start_edge(upstream.address, strict).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let answer = chunked_post(&address, "/api/cart/items", &long, 1000).await;
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "{}",
        &answer[..200.min(answer.len())]
    );
    let answer = chunked_post(&address, "/api/cart/items", b"note=short", 4).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A body of exactly the limit whose end comes in a later packet is not oversize.
    let exact: Vec<u8> = b"note="
        .iter()
        .chain(std::iter::repeat_n(&b'a', 8 * 1024 - 5))
        .copied()
        .collect();
    let answer = {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let head = "POST /api/cart/items HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("write");
        stream
            .write_all(format!("{:x}\r\n", exact.len()).as_bytes())
            .await
            .expect("write");
        stream.write_all(&exact).await.expect("write");
        stream.write_all(b"\r\n").await.expect("write");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        stream.write_all(b"0\r\n\r\n").await.expect("write");
        securecart_testkit::read_to_close(&mut stream).await
    };
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..200.min(answer.len())]
    );
    let sampled = client
        .get(&format!("http://{}/waf/sampled?rule=oversize", edge.admin))
        .await
        .json();
    assert_eq!(sampled["samples"][0]["rule"], "oversize", "{sampled}");
    assert_eq!(sampled["samples"][0]["blocked"], true, "{sampled}");
    // As a statement's oversize handling is listed.
    assert_eq!(sampled["samples"][0]["field"], "oversize", "{sampled}");
    assert_eq!(sampled["samples"][0]["data"], "body", "{sampled}");
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn the_operators_rules_run_first_with_rate_limits_and_their_own_answers() {
    use securecart_waf::rate::{AggregateKey, RateLimit};
    use securecart_waf::statement::Position;
    use securecart_waf::{BlockResponse, Field, Rule, RuleAction, Statement};

    let (upstream, reached) = start_upstream().await;
    let checkout_posts = Statement::And(vec![
        Statement::ByteMatch {
            field: Field::Method,
            position: Position::Exactly,
            search: b"POST".to_vec(),
            transforms: Vec::new(),
        },
        Statement::ByteMatch {
            field: Field::UriPath,
            position: Position::StartsWith,
            search: b"/api/checkout".to_vec(),
            transforms: Vec::new(),
        },
    ]);
    let rules = vec![
        // An office the shop trusts skips every later rule, the managed ones too.
        Rule {
            id: "office".to_owned(),
            priority: 1,
            statement: Statement::IpSet {
                networks: vec!["127.0.40.0/24".parse().expect("network")],
                forwarded: None,
            },
            action: RuleAction::Allow,
            labels: Vec::new(),
            response: None,
            score: 0,
        },
        Rule {
            id: "card-testing".to_owned(),
            priority: 2,
            statement: Statement::RateBased {
                rate: Arc::new(RateLimit::new(
                    10,
                    std::time::Duration::from_secs(60),
                    vec![AggregateKey::ClientIp],
                )),
                scope_down: Some(Box::new(checkout_posts)),
            },
            action: RuleAction::Block,
            labels: Vec::new(),
            response: Some(Arc::new(BlockResponse {
                status: 429,
                headers: vec![("retry-after".to_owned(), "300".to_owned())],
                body: Some(("text/plain".to_owned(), "Too many checkouts.".to_owned())),
            })),
            score: 0,
        },
    ];
    let waf = WafConfig::with_acl(Arc::new(securecart_waf::managed::acl_with(
        rules,
        &securecart_waf::managed::Group::ALL,
        securecart_waf::managed::Sensitivity::default(),
        &securecart_waf::managed::Overrides::default(),
    )));
    let edge = start_edge(upstream.address, waf).await;
    let checkout = format!("{}/api/checkout", edge.url);
    let from = |address: &str| TestClient::http1_from(address.parse().expect("address"));

    // Ten checkouts from one address pass; the eleventh gets the rule's own answer.
    let mut bot = from("127.0.50.1");
    for n in 1..=10 {
        assert_eq!(
            bot.post(&checkout, &[], "{}").await.status,
            200,
            "checkout {n}"
        );
    }
    let refused = bot.post(&checkout, &[], "{}").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("300"));
    assert_eq!(refused.header("content-type"), Some("text/plain"));
    assert_eq!(refused.text(), "Too many checkouts.");
    // Only checkouts are counted, and only that address's.
    assert_eq!(bot.get(&format!("{}/products", edge.url)).await.status, 200);
    assert_eq!(
        from("127.0.50.2").post(&checkout, &[], "{}").await.status,
        200
    );

    // The office's requests are allowed before the managed rules see them.
    let injection = format!(
        "{}/api/catalog/products?q=1%27%20OR%20%271%27%3D%271",
        edge.url
    );
    assert_eq!(from("127.0.40.7").get(&injection).await.status, 200);
    assert_eq!(from("127.0.50.3").get(&injection).await.status, 403);
    assert_eq!(reached.load(Ordering::SeqCst), 13);

    let metrics = TestClient::http1()
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains(
            "securecart_edge_waf_matches_total{web_acl=\"edge\",rule=\"card-testing\",action=\"block\"} 1"
        ),
        "{metrics}"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_web_acl_that_blocks_by_default_lets_through_only_what_its_rules_allow() {
    use securecart_waf::statement::Position;
    use securecart_waf::{Field, Rule, RuleAction, Statement};

    let (upstream, reached) = start_upstream().await;
    let catalog = Rule {
        id: "catalog".to_owned(),
        priority: 1,
        statement: Statement::ByteMatch {
            field: Field::UriPath,
            position: Position::StartsWith,
            search: b"/api/catalog/".to_vec(),
            transforms: Vec::new(),
        },
        action: RuleAction::Allow,
        labels: Vec::new(),
        response: None,
        score: 0,
    };
    let waf = WafConfig::with_acl(Arc::new(securecart_waf::managed::acl_with(
        vec![catalog],
        &securecart_waf::managed::Group::ALL,
        securecart_waf::managed::Sensitivity::default(),
        &securecart_waf::managed::Overrides {
            default_block: true,
            // Its own answer, as AWS WAF's default action's custom response.
            default_response: Some(Arc::new(securecart_waf::BlockResponse {
                status: 404,
                headers: vec![("x-refused-by".to_owned(), "allow-list".to_owned())],
                body: Some(("text/plain".to_owned(), "Not here.".to_owned())),
            })),
            ..securecart_waf::managed::Overrides::default()
        },
    )));
    let edge = start_edge(upstream.address, waf).await;
    let mut client = TestClient::http1();
    let allowed = client
        .get(&format!("{}/api/catalog/products", edge.url))
        .await;
    assert_eq!(allowed.status, 200);
    let refused = client.get(&format!("{}/admin", edge.url)).await;
    assert_eq!(refused.status, 404);
    assert_eq!(refused.header("x-refused-by"), Some("allow-list"));
    assert_eq!(refused.text(), "Not here.");
    // A managed rule's block (where no rule allowed first) is still the edge's 403, not
    // the default's answer.
    let injected = client
        .get(&format!("{}/admin?q=1%27%20OR%20%271%27%3D%271", edge.url))
        .await;
    assert_eq!(injected.status, 403);
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    // The default action's blocks are listed and counted as the rule `default`.
    let sampled = client
        .get(&format!("http://{}/waf/sampled?rule=default", edge.admin))
        .await
        .json();
    assert_eq!(sampled["samples"][0]["path"], "/admin", "{sampled}");
    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    assert!(
        metrics.contains("securecart_edge_waf_matches_total{web_acl=\"edge\",rule=\"default\",action=\"block\"} 1"),
        "{metrics}"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn each_listeners_web_acl_counts_and_samples_its_matches_under_its_own_name() {
    let (upstream, _reached) = start_upstream().await;
    let mut config = common::one_listener("app", vec![upstream.address]);
    config.listeners[0].waf = Some(WafConfig::managed());
    let api_port = securecart_testkit::free_port("127.0.0.1");
    let mut api = config.listeners[0].clone();
    api.name = "api".to_owned();
    api.listen = format!("127.0.0.1:{api_port}").parse().expect("address");
    api.waf = Some(WafConfig {
        name: "api-acl".to_owned(),
        ..WafConfig::managed()
    });
    config.listeners.push(api);
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let injection = "/api/catalog/products?q=1%27%20OR%20%271%27%3D%271";
    for _ in 0..2 {
        let refused = client.get(&format!("{}{injection}", edge.url)).await;
        assert_eq!(refused.status, 403);
    }
    let refused = client
        .get(&format!("http://127.0.0.1:{api_port}{injection}"))
        .await;
    assert_eq!(refused.status, 403);
    // The same managed rule, counted once per web ACL.
    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    let counts: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("securecart_edge_waf_matches_total{"))
        .collect();
    let count_of = |acl: &str| {
        counts
            .iter()
            .filter(|line| line.contains(&format!("web_acl=\"{acl}\"")))
            .map(|line| {
                line.rsplit(' ')
                    .next()
                    .and_then(|count| count.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    };
    assert_eq!(
        (count_of("edge"), count_of("api-acl")),
        (2, 1),
        "{counts:?}"
    );
    let sampled = client
        .get(&format!("http://{}/waf/sampled?limit=1", edge.admin))
        .await
        .json();
    assert_eq!(sampled["samples"][0]["web_acl"], "api-acl", "{sampled}");
    assert_eq!(
        sampled["samples"][0]["trace_id"].as_str().map(str::len),
        Some(32),
        "{sampled}"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

#[tokio::test]
async fn rules_match_a_value_by_its_md5_digest_and_non_ascii_text_as_unicode_escapes() {
    use securecart_waf::{Field, Rule, RuleAction, Statement, Transform};

    let (upstream, reached) = start_upstream().await;
    let rule = |id: &str, statement: Statement| Rule {
        id: id.to_owned(),
        priority: 1,
        statement,
        action: RuleAction::Block,
        labels: Vec::new(),
        response: None,
        score: 0,
    };
    let rules = vec![
        // A leaked token, known only by its digest (md5 of `letmein`): the value is
        // shorter than the digest it is matched by.
        rule(
            "leaked-token",
            Statement::regex(
                Field::Header(http::HeaderName::from_static("x-token")),
                r"(?-u)^\x0d\x10\x7d\x09\xf5\xbb\xe4\x0c\xad\xe3\xde\x5c\x71\xe9\xe9\xb7$",
                &[Transform::Md5],
            )
            .expect("rule"),
        ),
        // Cyrillic `с` (U+0441) in a search, as spoofed Latin `c` in `сasino` is.
        rule(
            "cyrillic-es",
            Statement::regex(
                Field::QueryArgument("q".to_owned()),
                r"%u0441",
                &[Transform::Utf8ToUnicode],
            )
            .expect("rule"),
        ),
    ];
    let waf = WafConfig::with_acl(Arc::new(securecart_waf::managed::acl_with(
        rules,
        &securecart_waf::managed::Group::ALL,
        securecart_waf::managed::Sensitivity::default(),
        &securecart_waf::managed::Overrides::default(),
    )));
    let edge = start_edge(upstream.address, waf).await;
    let mut client = TestClient::http1();
    let products = format!("{}/products", edge.url);
    let with_token = |token: &'static str| [("x-token", token)];
    for (token, status) in [("letmein", 403), ("letmein2", 200), ("LETMEIN", 200)] {
        let reply = client
            .send(http::Method::GET, &products, &with_token(token), "")
            .await;
        assert_eq!(reply.status, status, "{token}");
    }
    for (query, status) in [
        // `сasino` with a Cyrillic `с`.
        ("q=%D1%81asino", 403),
        ("q=casino", 200),
        // Other non-ASCII text passes: `café`, `€`.
        ("q=caf%C3%A9", 200),
        ("q=%E2%82%AC5", 200),
    ] {
        let reply = client.get(&format!("{products}?{query}")).await;
        assert_eq!(reply.status, status, "{query}");
    }
    assert_eq!(reached.load(Ordering::SeqCst), 2 + 3);
    edge.shutdown().await;
    upstream.stop().await;
}

/// Rules that let a request through may tell its target what they found (AWS WAF's custom
/// request handling): a counting rule's header, the default action's; a client's own
/// header of that prefix never reaches the target.
#[tokio::test]
async fn allowed_requests_carry_the_headers_their_rules_add() {
    use securecart_waf::statement::Position;
    use securecart_waf::{Field, Rule, RuleAction, Statement};
    let upstream = serve(
        "127.0.0.1",
        axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .fallback(|headers: axum::http::HeaderMap| async move {
                let mut seen: Vec<String> = headers
                    .iter()
                    .filter(|(name, _)| name.as_str().starts_with("x-securecart-waf-"))
                    .map(|(name, value)| format!("{name}={}", value.to_str().unwrap_or("?")))
                    .collect();
                seen.sort();
                seen.join(";")
            }),
    )
    .await;
    let admin_paths = Rule {
        id: "admin-paths".to_owned(),
        priority: 1,
        statement: Statement::ByteMatch {
            field: Field::UriPath,
            position: Position::StartsWith,
            search: b"/admin".to_vec(),
            transforms: Vec::new(),
        },
        action: RuleAction::Count,
        labels: Vec::new(),
        response: None,
        score: 0,
    };
    let header = |name: &'static str, value: &'static str| {
        (
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        )
    };
    let waf = WafConfig {
        insert_headers: Arc::new([
            (
                "admin-paths".to_owned(),
                vec![header("x-securecart-waf-flagged", "admin")],
            ),
            (
                securecart_edge::waf::DEFAULT_ALLOW.to_owned(),
                vec![header("x-securecart-waf-checked", "yes")],
            ),
        ]),
        ..WafConfig::with_acl(Arc::new(securecart_waf::managed::acl_with(
            vec![admin_paths],
            &securecart_waf::managed::Group::ALL,
            securecart_waf::managed::Sensitivity::default(),
            &securecart_waf::managed::Overrides::default(),
        )))
    };
    // A second listener without a web ACL, in front of the same target.
    let mut config = common::one_listener("app", vec![upstream.address]);
    config.listeners[0].waf = Some(waf);
    let plain_port = securecart_testkit::free_port("127.0.0.1");
    let mut plain_listener = config.listeners[0].clone();
    plain_listener.name = "plain".to_owned();
    plain_listener.listen = format!("127.0.0.1:{plain_port}").parse().expect("address");
    plain_listener.waf = None;
    config.listeners.push(plain_listener);
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let plain = client.get(&format!("{}/products", edge.url)).await;
    assert_eq!(plain.text(), "x-securecart-waf-checked=yes");
    // Through the listener without a web ACL, no client passes for the WAF either.
    let spoofed = client
        .send(
            http::Method::GET,
            &format!("http://127.0.0.1:{plain_port}/admin/users"),
            &[("x-securecart-waf-flagged", "nothing")],
            "",
        )
        .await;
    assert_eq!(spoofed.status, 200);
    assert_eq!(spoofed.text(), "");
    let flagged = client
        .send(
            http::Method::GET,
            &format!("{}/admin/users", edge.url),
            &[
                ("x-securecart-waf-flagged", "nothing"),
                ("x-securecart-waf-other", "1"),
            ],
            "",
        )
        .await;
    assert_eq!(
        flagged.text(),
        "x-securecart-waf-checked=yes;x-securecart-waf-flagged=admin"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

/// AWS WAF's challenge action: a page load without a token gets 202 and a page whose
/// puzzle, solved and sent back, earns a cookie that lets the next loads through; what is
/// not a page load gets 202 alone; a wrong or foreign solution earns nothing.
#[tokio::test]
async fn a_challenge_rule_lets_through_the_clients_that_solved_its_puzzle() {
    use securecart_waf::challenge::{SOLUTION_PATH, TOKEN_COOKIE, solve};
    use securecart_waf::statement::Position;
    use securecart_waf::{Field, Rule, RuleAction, Statement, WebAcl};

    let (upstream, reached) = start_upstream().await;
    let rules = vec![Rule {
        id: "account-pages".to_owned(),
        priority: 1,
        statement: Statement::ByteMatch {
            field: Field::UriPath,
            position: Position::StartsWith,
            search: b"/account".to_vec(),
            transforms: Vec::new(),
        },
        action: RuleAction::Challenge(300),
        labels: Vec::new(),
        response: None,
        score: 0,
    }];
    // The listener's own headers would let its answers be stored and limit scripts: not
    // the challenge's.
    let mut config = common::one_listener("app", vec![upstream.address]);
    // 127.0.0.3 is another region's edge, fetching through this one as its shield.
    config.listeners[0].waf = Some(WafConfig {
        peers: Arc::new(["127.0.0.3".parse().expect("address")]),
        ..WafConfig::with_acl(Arc::new(WebAcl::new(rules, false)))
    });
    config.listeners[0].response_headers = vec![
        (
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=600"),
        ),
        (
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static("script-src 'self'"),
        ),
    ];
    let edge = RunningEdge::start(config, "http").await;
    let mut client = TestClient::http1();
    let page = format!("{}/account/orders", edge.url);
    let html = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];

    // Elsewhere, nothing is asked.
    let home = client.get(&format!("{}/", edge.url)).await;
    assert_eq!(home.status, 200);
    assert_eq!(home.header("cache-control"), Some("public, max-age=600"));
    // A page load: 202 and the page, never stored.
    let challenged = client.send(http::Method::GET, &page, &html, "").await;
    assert_eq!(challenged.status, 202);
    assert_eq!(
        challenged.header("x-securecart-waf-action"),
        Some("challenge")
    );
    assert_eq!(challenged.header("cache-control"), Some("no-store"));
    let text = challenged.text();
    let puzzle = puzzle_of(&text);
    // Its script is allowed by its hash alone.
    assert!(
        challenged
            .header("content-security-policy")
            .is_some_and(|policy| policy.contains("script-src 'sha256-")),
        "{:?}",
        challenged.headers
    );
    // A request that is no page load (an API call, a POST): 202 alone.
    let api = client.get(&page).await;
    assert_eq!((api.status.as_u16(), api.body.len()), (202, 0));
    let posted = client.send(http::Method::POST, &page, &html, "a=1").await;
    assert_eq!((posted.status.as_u16(), posted.body.len()), (202, 0));
    assert_eq!(
        reached.load(Ordering::SeqCst),
        1,
        "only the home page reached the target"
    );

    // Solutions: only a right one, by POST, for this client's puzzle earns a token.
    let solution_url = format!("{}{SOLUTION_PATH}", edge.url);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let solution = solve(&puzzle);
    let wrong = (solution.parse::<u64>().expect("number") + 1).to_string();
    for (sent, status) in [
        (format!("puzzle={puzzle}&solution={wrong}"), 403),
        (format!("puzzle={puzzle}x&solution={solution}"), 403),
        (format!("solution={solution}"), 400),
        ("x".repeat(2048), 413),
    ] {
        let refused = client
            .send(http::Method::POST, &solution_url, &form, &sent)
            .await;
        assert_eq!(refused.status, status, "{sent}: {}", refused.text());
        assert_eq!(refused.header("set-cookie"), None);
    }
    assert_eq!(client.get(&solution_url).await.status, 405);
    // The puzzle was given to this client's address: another's right solution of it
    // earns nothing.
    let solved = format!("puzzle={puzzle}&solution={solution}");
    let mut other = TestClient::http1_from("127.0.0.2".parse().expect("address"));
    let foreign = other
        .send(http::Method::POST, &solution_url, &form, &solved)
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    let redeemed = client
        .send(http::Method::POST, &solution_url, &form, &solved)
        .await;
    assert_eq!(redeemed.status, 204, "{}", redeemed.text());
    let cookie = redeemed.header("set-cookie").expect("the token").to_owned();
    assert!(
        cookie.starts_with(&format!("{TOKEN_COOKIE}="))
            && cookie.contains("Max-Age=300")
            && cookie.contains("HttpOnly")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let token = cookie
        .split(';')
        .next()
        .expect("the cookie's pair")
        .to_owned();

    // With the token, page loads and API calls go through; a forged token does not.
    let passed = client
        .send(http::Method::GET, &page, &[html[0], ("cookie", &token)], "")
        .await;
    assert_eq!(
        (passed.status.as_u16(), passed.text()),
        (200, "reached".to_owned())
    );
    let passed = client
        .send(http::Method::POST, &page, &[("cookie", &token)], "a=1")
        .await;
    assert_eq!(passed.status, 200);
    let forged = format!("{}0", token);
    let refused = client
        .send(http::Method::GET, &page, &[("cookie", &forged)], "")
        .await;
    assert_eq!(refused.status, 202);
    assert_eq!(reached.load(Ordering::SeqCst), 3);
    // Another region's edge needs no token.
    let mut peer = TestClient::http1_from("127.0.0.3".parse().expect("address"));
    let fetched = peer.send(http::Method::GET, &page, &html, "").await;
    assert_eq!(
        (fetched.status.as_u16(), fetched.text()),
        (200, "reached".to_owned())
    );
    assert_eq!(reached.load(Ordering::SeqCst), 4);

    // The rule's matches are counted: the challenges answered, and those a token passed.
    let metrics = client
        .get(&format!("http://{}/metrics", edge.admin))
        .await
        .text();
    for action in ["challenge", "challenge_passed"] {
        assert!(
            metrics
                .lines()
                .any(|line| line.contains("rule=\"account-pages\"")
                    && line.contains(&format!("action=\"{action}\""))),
            "{action}: {metrics}"
        );
    }
    edge.shutdown().await;
    upstream.stop().await;
}

/// The puzzle a challenge page holds.
fn puzzle_of(page: &str) -> String {
    page.split("<meta name=\"securecart-puzzle\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's puzzle")
        .to_owned()
}

/// A web ACL rule that challenges every request.
fn challenge_everything() -> securecart_waf::Rule {
    use securecart_waf::{Rule, RuleAction, Statement};
    Rule {
        id: "everything".to_owned(),
        priority: 1,
        statement: Statement::Not(Box::new(Statement::IpSet {
            networks: Vec::new(),
            forwarded: None,
        })),
        action: RuleAction::Challenge(300),
        labels: Vec::new(),
        response: None,
        score: 0,
    }
}

/// Over TLS, the token's cookie is `Secure`: a browser never sends it over plain http.
#[tokio::test]
async fn a_token_earned_over_tls_is_a_secure_cookie() {
    use securecart_edge::tls::{TlsConfig, self_signed};
    use securecart_waf::WebAcl;
    use securecart_waf::challenge::{SOLUTION_PATH, TOKEN_COOKIE, solve};

    let (upstream, _) = start_upstream().await;
    let certificate = self_signed(&["shop.example".to_owned()]).expect("a certificate");
    let mut config = common::one_listener("app", vec![upstream.address]);
    config.listeners[0].tls = Some(TlsConfig {
        certificates: vec![certificate.clone()],
        client_auth: Default::default(),
        policy: Default::default(),
    });
    config.listeners[0].waf = Some(WafConfig::with_acl(Arc::new(WebAcl::new(
        vec![challenge_everything()],
        false,
    ))));
    let edge = RunningEdge::start(config, "https").await;
    let address: SocketAddr = edge
        .url
        .trim_start_matches("https://")
        .parse()
        .expect("address");
    // The edge under test signs with this process's key: a puzzle made here is its own.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let puzzle = securecart_edge::challenge::process_key().puzzle(
        now,
        "127.0.0.1".parse().expect("address"),
        "shop.example",
    );
    let body = format!("puzzle={puzzle}&solution={}", solve(&puzzle));
    let answer = securecart_testkit::tls_send(
        address,
        "shop.example",
        &certificate.chain,
        securecart_testkit::TlsRequest {
            method: http::Method::POST,
            path: SOLUTION_PATH,
            headers: &[("content-type", "application/x-www-form-urlencoded")],
            body: &body,
        },
        &[b"http/1.1"],
        false,
    )
    .await
    .expect("an answer over TLS");
    assert_eq!(answer.reply.status, 204, "{}", answer.reply.text());
    let cookie = answer.reply.header("set-cookie").expect("the token");
    assert!(
        cookie.starts_with(&format!("{TOKEN_COOKIE}=")) && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    edge.shutdown().await;
    upstream.stop().await;
}

/// AWS WAF's token domains: a token earned on one host under a listed domain is good on
/// the others (its cookie names the domain), and on no other host.
#[tokio::test]
async fn a_token_is_good_on_every_host_under_its_token_domain() {
    use securecart_waf::WebAcl;
    use securecart_waf::challenge::{SOLUTION_PATH, solve};

    let (upstream, _) = start_upstream().await;
    let waf = WafConfig {
        token_domains: Arc::new(["shop.example".to_owned()]),
        ..WafConfig::with_acl(Arc::new(WebAcl::new(vec![challenge_everything()], false)))
    };
    let edge = start_edge(upstream.address, waf).await;
    let mut client = TestClient::http1();
    let page = format!("{}/", edge.url);
    let html = ("accept", "text/html");
    let challenged = client
        .send(
            http::Method::GET,
            &page,
            &[html, ("host", "www.shop.example")],
            "",
        )
        .await;
    assert_eq!(challenged.status, 202);
    let text = challenged.text();
    let puzzle = puzzle_of(&text);
    let redeemed = client
        .send(
            http::Method::POST,
            &format!("{}{SOLUTION_PATH}", edge.url),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("host", "www.shop.example"),
            ],
            &format!("puzzle={puzzle}&solution={}", solve(&puzzle)),
        )
        .await;
    assert_eq!(redeemed.status, 204, "{}", redeemed.text());
    let cookie = redeemed.header("set-cookie").expect("the token");
    assert!(cookie.contains("; Domain=shop.example;"), "{cookie}");
    let token = cookie
        .split(';')
        .next()
        .expect("the cookie's pair")
        .to_owned();
    for (host, status) in [
        ("api.shop.example", 200),
        ("SHOP.example:8080", 200),
        ("shop.example.evil", 202),
        ("elsewhere.example", 202),
    ] {
        let answer = client
            .send(
                http::Method::GET,
                &page,
                &[html, ("host", host), ("cookie", &token)],
                "",
            )
            .await;
        assert_eq!(answer.status, status, "{host}");
    }
    edge.shutdown().await;
    upstream.stop().await;
}
