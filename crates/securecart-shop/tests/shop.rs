//! The shop's rules, through real HTTP requests to real services on one temporary store:
//! catalog queries, cart validation, checkout's idempotency and every payment outcome.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use securecart_shop::{ShopService, ShopState, open_store};
use securecart_telemetry::HttpMetrics;
use securecart_testkit::{Reply, TestClient, TestServer, serve};
use serde_json::Value;

/// Every service on ephemeral ports, sharing one store.
struct Shop {
    _directory: tempfile::TempDir,
    database: PathBuf,
    catalog: TestServer,
    cart: TestServer,
    checkout: TestServer,
    payments: TestServer,
    storefront: TestServer,
}

async fn start_service(service: ShopService, state: ShopState) -> TestServer {
    let metrics = HttpMetrics::register(&mut Registry::default());
    serve(
        "127.0.0.1",
        securecart_shop::router(service, state, metrics),
    )
    .await
}

async fn shop() -> Shop {
    let directory = tempfile::tempdir().expect("temporary directory");
    let database = directory.path().join("shop.sqlite");
    let store: Arc<dyn securecart_store::Store> =
        Arc::new(open_store(&database).await.expect("store"));
    let payments = start_service(
        ShopService::Payments,
        ShopState::new(Arc::clone(&store), "test-1", Vec::new()),
    )
    .await;
    let state = ShopState::new(store, "test-1", vec![payments.address]);
    Shop {
        catalog: start_service(ShopService::Catalog, state.clone()).await,
        cart: start_service(ShopService::Cart, state.clone()).await,
        checkout: start_service(ShopService::Checkout, state.clone()).await,
        storefront: start_service(ShopService::Storefront, state).await,
        payments,
        database,
        _directory: directory,
    }
}

impl Shop {
    fn url(server: &TestServer, path: &str) -> String {
        format!("http://{}{path}", server.address)
    }

    fn count(&self, sql: &str) -> i64 {
        let connection = rusqlite::Connection::open(&self.database).expect("open");
        connection
            .query_row(sql, [], |row| row.get(0))
            .expect("count")
    }

    async fn product(&self, client: &mut TestClient, id: i64) -> Value {
        let reply = client
            .get(&Self::url(
                &self.catalog,
                &format!("/api/catalog/products/{id}"),
            ))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    async fn add(&self, client: &mut TestClient, body: &str) -> Reply {
        client
            .post(&Self::url(&self.cart, "/api/cart/items"), &[], body)
            .await
    }

    async fn checkout(&self, client: &mut TestClient, key: &str, card: &str) -> Reply {
        let body = format!(
            r#"{{"email":"ada@example.com","name":"Ada Lovelace","address":"1 Main St","card_token":"{card}"}}"#
        );
        client
            .post(
                &Self::url(&self.checkout, "/api/checkout"),
                &[("idempotency-key", key)],
                &body,
            )
            .await
    }
}

fn error_code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The first product with at least `stock` units.
async fn product_in_stock(shop: &Shop, client: &mut TestClient, stock: i64) -> (i64, i64) {
    for id in 1.. {
        let product = shop.product(client, id).await;
        if product["stock"].as_i64().unwrap_or(0) >= stock {
            return (id, product["stock"].as_i64().unwrap_or(0));
        }
    }
    unreachable!()
}

#[tokio::test]
async fn the_catalog_pages_searches_and_serves_cacheable_images() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let page = client
        .get(&Shop::url(
            &shop.catalog,
            "/api/catalog/products?page=2&per_page=10",
        ))
        .await;
    assert_eq!(page.status, 200);
    let body = page.json();
    assert_eq!(body["total"], 1200);
    assert_eq!(body["total_pages"], 120);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(10));
    assert_eq!(body["items"][0]["id"], 11);
    assert!(
        page.header("cache-control")
            .is_some_and(|value| value.contains("max-age"))
    );

    let kitchen = client
        .get(&Shop::url(
            &shop.catalog,
            "/api/catalog/products?category=kitchen&per_page=100",
        ))
        .await
        .json();
    assert_eq!(kitchen["total"], 100);
    assert!(
        kitchen["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|item| item["category"] == "kitchen")
    );

    let found = client
        .get(&Shop::url(
            &shop.catalog,
            "/api/catalog/products?q=oak+lamp",
        ))
        .await
        .json();
    assert!(found["total"].as_i64().expect("total") > 0);
    for item in found["items"].as_array().expect("items") {
        let text = format!("{} {}", item["name"], item["description"]).to_lowercase();
        assert!(text.contains("oak") && text.contains("lamp"), "{text}");
    }
    let hostile = client
        .get(&Shop::url(
            &shop.catalog,
            "/api/catalog/products?q=%22%29%20OR%201%3D1%20--",
        ))
        .await;
    assert_eq!(
        hostile.status, 200,
        "search text is never SQL or FTS syntax"
    );

    let categories = client
        .get(&Shop::url(&shop.catalog, "/api/catalog/categories"))
        .await
        .json();
    assert_eq!(categories["categories"].as_array().map(Vec::len), Some(12));

    for (path, status) in [
        ("/api/catalog/products/99999", 404),
        ("/api/catalog/products/abc", 404),
        ("/api/catalog/products/-1", 404),
        ("/api/catalog/products?page=0", 400),
        ("/api/catalog/products?per_page=1000", 400),
        ("/api/catalog/products?page=x", 400),
        ("/api/catalog/products?colour=red", 400),
        ("/api/catalog/nothing", 404),
    ] {
        let reply = client.get(&Shop::url(&shop.catalog, path)).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(!error_code(&reply).is_empty(), "{path}: errors are JSON");
    }

    let image = client
        .get(&Shop::url(&shop.catalog, "/images/products/7.svg"))
        .await;
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/svg+xml"));
    assert!(image.text().starts_with("<svg"));
    let etag = image.header("etag").expect("etag").to_owned();
    let again = client
        .send(
            hyper::Method::GET,
            &Shop::url(&shop.catalog, "/images/products/7.svg"),
            &[("if-none-match", &etag)],
            "",
        )
        .await;
    assert_eq!(again.status, 304);
    assert_eq!(
        client
            .get(&Shop::url(&shop.catalog, "/images/products/7.png"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_cart_validates_quantities_products_and_bodies() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let first = shop
        .add(&mut client, r#"{"product_id": 5, "quantity": 2}"#)
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(
        first
            .header("set-cookie")
            .is_some_and(|cookie| cookie.contains("HttpOnly"))
    );
    assert_eq!(first.json()["item_count"], 2);
    let again = shop.add(&mut client, r#"{"product_id": 5}"#).await;
    assert_eq!(again.json()["items"][0]["quantity"], 3);
    assert!(again.header("set-cookie").is_none(), "the session is kept");

    let cases: &[(&str, u16, &str)] = &[
        (
            r#"{"product_id": 5, "quantity": -1}"#,
            422,
            "invalid_quantity",
        ),
        (
            r#"{"product_id": 5, "quantity": 0}"#,
            422,
            "invalid_quantity",
        ),
        (
            r#"{"product_id": 5, "quantity": 100}"#,
            422,
            "invalid_quantity",
        ),
        (
            r#"{"product_id": 5, "quantity": 97}"#,
            422,
            "quantity_limit",
        ),
        (
            r#"{"product_id": 999999, "quantity": 1}"#,
            404,
            "product_not_found",
        ),
        (
            r#"{"product_id": -4, "quantity": 1}"#,
            422,
            "invalid_product_id",
        ),
        (r#"{"product_id": "five"}"#, 422, "invalid_body"),
        (r#"{"quantity": 1}"#, 422, "invalid_body"),
        (r#"{"product_id": 5, "colour": "red"}"#, 422, "invalid_body"),
        (r#"{"product_id": 5,"#, 400, "malformed_json"),
        ("[]", 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let reply = shop.add(&mut client, body).await;
        assert_eq!(reply.status, *status, "{body}: {}", reply.text());
        assert_eq!(error_code(&reply), *code, "{body}");
    }
    let oversized = format!(r#"{{"product_id": 5, "pad": "{}"}}"#, "x".repeat(64 * 1024));
    let reply = shop.add(&mut client, &oversized).await;
    assert_eq!(reply.status, 413);
    assert_eq!(error_code(&reply), "body_too_large");
    let not_json = client
        .send(
            hyper::Method::POST,
            &Shop::url(&shop.cart, "/api/cart/items"),
            &[("content-type", "text/plain")],
            "product_id=5",
        )
        .await;
    assert_eq!(not_json.status, 415);

    let set = client
        .send(
            hyper::Method::PUT,
            &Shop::url(&shop.cart, "/api/cart/items/5"),
            &[],
            r#"{"quantity": 7}"#,
        )
        .await;
    assert_eq!(set.json()["items"][0]["quantity"], 7);
    let missing = client
        .send(
            hyper::Method::PUT,
            &Shop::url(&shop.cart, "/api/cart/items/6"),
            &[],
            r#"{"quantity": 1}"#,
        )
        .await;
    assert_eq!(
        (missing.status.as_u16(), error_code(&missing).as_str()),
        (404, "not_in_cart")
    );
    let removed = client
        .send(
            hyper::Method::DELETE,
            &Shop::url(&shop.cart, "/api/cart/items/5"),
            &[],
            "",
        )
        .await;
    assert_eq!(removed.json()["item_count"], 0);
    let wrong_method = client
        .send(
            hyper::Method::PATCH,
            &Shop::url(&shop.cart, "/api/cart"),
            &[],
            "",
        )
        .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(error_code(&wrong_method), "method_not_allowed");
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_order_and_charges_once() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let (id, stock) = product_in_stock(&shop, &mut client, 3).await;
    shop.add(
        &mut client,
        &format!(r#"{{"product_id": {id}, "quantity": 2}}"#),
    )
    .await;

    let first = shop
        .checkout(&mut client, "key-0001-aaaa", "tok_visa")
        .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let order = first.json()["order"].clone();
    assert_eq!(order["status"], "paid");
    assert_eq!(order["items"][0]["quantity"], 2);
    assert!(
        order["charge_id"]
            .as_str()
            .is_some_and(|charge| charge.starts_with("ch_"))
    );

    let replay = shop
        .checkout(&mut client, "key-0001-aaaa", "tok_visa")
        .await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json()["order"], order);

    assert_eq!(
        shop.product(&mut client, id).await["stock"],
        stock - 2,
        "stock is taken once"
    );
    assert_eq!(
        shop.count("SELECT count(*) FROM charges"),
        1,
        "charged once"
    );
    assert_eq!(shop.count("SELECT count(*) FROM orders"), 1);
    let cart = client.get(&Shop::url(&shop.cart, "/api/cart")).await.json();
    assert_eq!(cart["item_count"], 0, "a paid cart is emptied");

    let order_id = order["id"].as_str().expect("id");
    let read = client
        .get(&Shop::url(
            &shop.checkout,
            &format!("/api/orders/{order_id}"),
        ))
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), order);
    assert_eq!(
        client
            .get(&Shop::url(
                &shop.checkout,
                "/api/orders/ord_000000000000000000000000"
            ))
            .await
            .status,
        404
    );
    assert_eq!(
        client
            .get(&Shop::url(&shop.checkout, "/api/orders/..%2Fetc"))
            .await
            .status,
        404
    );

    let other_body = shop
        .checkout(&mut client, "key-0001-aaaa", "tok_mastercard")
        .await;
    assert_eq!(
        (other_body.status.as_u16(), error_code(&other_body).as_str()),
        (422, "idempotency_key_reused")
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_make_one_order() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let (id, stock) = product_in_stock(&shop, &mut client, 2).await;
    shop.add(
        &mut client,
        &format!(r#"{{"product_id": {id}, "quantity": 1}}"#),
    )
    .await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut client = client.clone();
        let url = Shop::url(&shop.checkout, "/api/checkout");
        attempts.spawn(async move {
            let body = r#"{"email":"ada@example.com","name":"Ada","address":"1 Main St","card_token":"tok_visa"}"#;
            client.post(&url, &[("idempotency-key", "same-key-for-all")], body).await
        });
    }
    let mut order_ids = std::collections::HashSet::new();
    while let Some(reply) = attempts.join_next().await {
        let reply = reply.expect("task");
        assert_eq!(reply.status, 201, "{}", reply.text());
        order_ids.insert(reply.json()["order"]["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(order_ids.len(), 1);
    assert_eq!(shop.count("SELECT count(*) FROM charges"), 1);
    assert_eq!(shop.product(&mut client, id).await["stock"], stock - 1);
}

#[tokio::test]
async fn a_declined_card_releases_the_stock_and_keeps_the_cart() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let (id, stock) = product_in_stock(&shop, &mut client, 1).await;
    shop.add(
        &mut client,
        &format!(r#"{{"product_id": {id}, "quantity": 1}}"#),
    )
    .await;
    let declined = shop
        .checkout(
            &mut client,
            "key-declined-1",
            "tok_chargeDeclinedInsufficientFunds",
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.text());
    let body = declined.json();
    assert_eq!(body["error"]["code"], "payment_declined");
    assert_eq!(body["order"]["status"], "payment_declined");
    assert_eq!(body["order"]["decline_code"], "insufficient_funds");
    assert_eq!(shop.product(&mut client, id).await["stock"], stock);
    assert_eq!(
        client.get(&Shop::url(&shop.cart, "/api/cart")).await.json()["item_count"],
        1
    );
    let replay = shop
        .checkout(
            &mut client,
            "key-declined-1",
            "tok_chargeDeclinedInsufficientFunds",
        )
        .await;
    assert_eq!(replay.status, 402);
    assert_eq!(replay.json()["order"]["id"], body["order"]["id"]);
    let paid = shop
        .checkout(&mut client, "key-declined-2", "tok_visa")
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text());
}

#[tokio::test]
async fn an_unavailable_processor_charges_nothing_and_the_key_can_be_retried() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let (id, stock) = product_in_stock(&shop, &mut client, 1).await;
    shop.add(
        &mut client,
        &format!(r#"{{"product_id": {id}, "quantity": 1}}"#),
    )
    .await;
    let down = shop
        .checkout(&mut client, "key-retry-0001", "tok_unavailable")
        .await;
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(error_code(&down), "payment_unavailable");
    assert_eq!(down.header("retry-after"), Some("1"));
    assert_eq!(shop.count("SELECT count(*) FROM orders"), 0);
    assert_eq!(shop.count("SELECT count(*) FROM charges"), 0);
    assert_eq!(shop.product(&mut client, id).await["stock"], stock);
    let retried = shop
        .checkout(&mut client, "key-retry-0001", "tok_unavailable")
        .await;
    assert_eq!(retried.status, 503, "the same key may be retried");
}

#[tokio::test]
async fn checkout_rejects_what_it_cannot_order() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let no_key = client
        .post(
            &Shop::url(&shop.checkout, "/api/checkout"),
            &[],
            r#"{"email":"a@b.example","name":"A","address":"B","card_token":"tok_visa"}"#,
        )
        .await;
    assert_eq!(
        (no_key.status.as_u16(), error_code(&no_key).as_str()),
        (400, "idempotency_key_required")
    );
    let bad_key = shop.checkout(&mut client, "short", "tok_visa").await;
    assert_eq!(bad_key.status, 400);
    let empty = shop
        .checkout(&mut client, "key-empty-cart", "tok_visa")
        .await;
    assert_eq!(
        (empty.status.as_u16(), error_code(&empty).as_str()),
        (409, "cart_empty")
    );

    shop.add(&mut client, r#"{"product_id": 1, "quantity": 1}"#)
        .await;
    for (body, code) in [
        (
            r#"{"email":"not-an-email","name":"A","address":"B","card_token":"tok_visa"}"#,
            "invalid_email",
        ),
        (
            r#"{"email":"a@b.example","name":"","address":"B","card_token":"tok_visa"}"#,
            "invalid_name",
        ),
        (
            r#"{"email":"a@b.example","name":"A","address":"   ","card_token":"tok_visa"}"#,
            "invalid_address",
        ),
        (
            r#"{"email":"a@b.example","name":"A","address":"B"}"#,
            "invalid_body",
        ),
    ] {
        let reply = client
            .post(
                &Shop::url(&shop.checkout, "/api/checkout"),
                &[("idempotency-key", "key-invalid-1")],
                body,
            )
            .await;
        assert_eq!(
            (reply.status.as_u16(), error_code(&reply).as_str()),
            (422, code),
            "{body}"
        );
    }

    // A product that is out of stock cannot be ordered.
    let sold_out = (1..=1200)
        .find(|id| securecart_shop::catalog_data::products()[*id as usize - 1].stock == 0)
        .expect("the catalog has a sold-out product");
    let mut other = TestClient::http1();
    shop.add(
        &mut other,
        &format!(r#"{{"product_id": {sold_out}, "quantity": 1}}"#),
    )
    .await;
    let reply = shop
        .checkout(&mut other, "key-sold-out-1", "tok_visa")
        .await;
    assert_eq!(
        (reply.status.as_u16(), error_code(&reply).as_str()),
        (409, "out_of_stock")
    );
}

#[tokio::test]
async fn the_payment_provider_requires_a_key_and_deduplicates_by_it() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    let url = Shop::url(&shop.payments, "/v1/charges");
    let body = r#"{"amount_minor": 1299, "currency": "USD", "card_token": "tok_visa"}"#;
    assert_eq!(client.post(&url, &[], body).await.status, 400);
    let first = client
        .post(&url, &[("idempotency-key", "merchant-key-1")], body)
        .await;
    assert_eq!(first.status, 201);
    let second = client
        .post(&url, &[("idempotency-key", "merchant-key-1")], body)
        .await;
    assert_eq!(second.json()["id"], first.json()["id"]);
    let declined = client
        .post(
            &url,
            &[("idempotency-key", "merchant-key-2")],
            r#"{"amount_minor": 1299, "currency": "USD", "card_token": "tok_chargeDeclined"}"#,
        )
        .await;
    assert_eq!(declined.status, 402);
    assert_eq!(declined.json()["decline_code"], "card_declined");
    let zero = client
        .post(
            &url,
            &[("idempotency-key", "merchant-key-3")],
            r#"{"amount_minor": 0, "currency": "USD", "card_token": "tok_visa"}"#,
        )
        .await;
    assert_eq!(zero.status, 422);
}

#[tokio::test]
async fn the_storefront_serves_pages_and_versioned_assets() {
    let shop = shop().await;
    let mut client = TestClient::http1();
    for path in [
        "/",
        "/products",
        "/products/12",
        "/cart",
        "/checkout",
        "/orders/ord_1",
    ] {
        let page = client.get(&Shop::url(&shop.storefront, path)).await;
        assert_eq!(page.status, 200, "{path}");
        let html = page.text();
        assert!(html.contains("data-region=\"test-1\""), "{path}");
        assert!(!html.contains("{{"), "{path}: every placeholder is filled");
    }
    let page = client.get(&Shop::url(&shop.storefront, "/")).await.text();
    let version = page
        .split("app.js?v=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("versioned script");
    assert_eq!(
        version,
        securecart_shop::ShopState::new(
            Arc::new(open_store(&shop.database).await.expect("store")),
            "x",
            Vec::new()
        )
        .asset_version
    );
    for (asset, kind) in [
        ("app.js", "javascript"),
        ("style.css", "css"),
        ("logo.svg", "svg"),
        ("unavailable.html", "html"),
    ] {
        let reply = client
            .get(&Shop::url(&shop.storefront, &format!("/static/{asset}")))
            .await;
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|value| value.contains(kind)),
            "{asset}"
        );
        assert!(
            reply
                .header("cache-control")
                .is_some_and(|value| value.contains("max-age")),
            "{asset}"
        );
    }
    assert_eq!(
        client
            .get(&Shop::url(&shop.storefront, "/static/secret.txt"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn an_unconfirmed_charge_keeps_the_order_pending_until_the_same_key_completes_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // A provider that fails with 500 (which may hide a charge) until told to recover, and
    // then approves; it records the idempotency keys it saw.
    let failing = Arc::new(AtomicBool::new(true));
    let keys = Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let provider = {
        let failing = Arc::clone(&failing);
        let keys = Arc::clone(&keys);
        axum::Router::new().route(
            "/v1/charges",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let failing = Arc::clone(&failing);
                let keys = Arc::clone(&keys);
                async move {
                    let key = headers.get("idempotency-key").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
                    keys.lock().await.push(key.clone());
                    if failing.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new());
                    }
                    let charge = serde_json::json!({
                        "id": "ch_recovered", "idempotency_key": key, "amount_minor": 1, "currency": "USD",
                        "card_token": "tok_visa", "status": "succeeded", "decline_code": null, "created_at": "now"
                    });
                    (axum::http::StatusCode::CREATED, charge.to_string())
                }
            }),
        )
    };
    let provider = serve("127.0.0.1", provider).await;
    let directory = tempfile::tempdir().expect("temporary directory");
    let database = directory.path().join("shop.sqlite");
    let store: Arc<dyn securecart_store::Store> =
        Arc::new(open_store(&database).await.expect("store"));
    let state = ShopState::new(store, "test-1", vec![provider.address]);
    let cart = start_service(ShopService::Cart, state.clone()).await;
    let checkout = start_service(ShopService::Checkout, state).await;
    let mut client = TestClient::http1();
    let added = client
        .post(
            &Shop::url(&cart, "/api/cart/items"),
            &[],
            r#"{"product_id": 1, "quantity": 1}"#,
        )
        .await;
    assert_eq!(added.status, 200);
    let body =
        r#"{"email":"ada@example.com","name":"Ada","address":"1 Main St","card_token":"tok_visa"}"#;
    let url = Shop::url(&checkout, "/api/checkout");
    let pending = client
        .post(&url, &[("idempotency-key", "key-unknown-01")], body)
        .await;
    assert_eq!(pending.status, 503, "{}", pending.text());
    assert_eq!(error_code(&pending), "payment_pending");
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open(&database)
            .expect("open")
            .query_row(sql, [], |row| row.get(0))
            .expect("count")
    };
    assert_eq!(
        count("SELECT count(*) FROM orders WHERE status = 'pending_payment'"),
        1,
        "the order waits"
    );

    failing.store(false, Ordering::SeqCst);
    let paid = client
        .post(&url, &[("idempotency-key", "key-unknown-01")], body)
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text());
    assert_eq!(paid.json()["order"]["charge_id"], "ch_recovered");
    assert_eq!(count("SELECT count(*) FROM orders"), 1);
    let keys = keys.lock().await;
    assert!(
        keys.len() > 1 && keys.iter().all(|key| *key == keys[0]),
        "every attempt used one provider key: {keys:?}"
    );
}
