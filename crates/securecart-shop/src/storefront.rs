//! The storefront: the shop's HTML pages and their static assets.
//!
//! Every page is the same small HTML document naming the page; `app.js` renders it from the
//! JSON APIs, which the edge serves from the same origin. Assets carry a version derived from
//! their content, so they can be cached for a long time by browsers and by the edge.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::ShopState;

const PAGE_TEMPLATE: &str = include_str!("../assets/storefront/page.html");
const APP_JS: &str = include_str!("../assets/storefront/app.js");
const STYLE_CSS: &str = include_str!("../assets/storefront/style.css");
const LOGO_SVG: &str = include_str!("../assets/storefront/logo.svg");
/// The page the edge answers with when the shop's pages cannot be served (its custom error
/// response in the default topology): it stands alone, read from the edge's cache.
const UNAVAILABLE_HTML: &str = include_str!("../assets/storefront/unavailable.html");

/// Static assets may be cached for a day; their URLs change with their content.
const ASSET_CACHE_CONTROL: &str = "public, max-age=86400";
/// Pages are revalidated every time: they name the current asset version.
const PAGE_CACHE_CONTROL: &str = "no-cache";

/// The storefront's routes.
pub fn routes() -> Router<ShopState> {
    Router::new()
        .route("/", get(home))
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/cart", get(cart))
        .route("/checkout", get(checkout))
        .route("/orders/{id}", get(order))
        .route("/static/{file}", get(asset))
}

/// The version of the assets: a hash of their content (FNV-1a), so a deployment with new
/// assets gets new URLs.
pub fn asset_version() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [APP_JS, STYLE_CSS, LOGO_SVG, UNAVAILABLE_HTML, PAGE_TEMPLATE]
        .iter()
        .flat_map(|text| text.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(state: &ShopState, name: &str, title: &str) -> Response {
    let body = PAGE_TEMPLATE
        .replace("{{page}}", name)
        .replace("{{title}}", &html_escape(title))
        .replace("{{region}}", &html_escape(&state.region))
        .replace("{{asset_version}}", &state.asset_version);
    let mut response = Html(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PAGE_CACHE_CONTROL),
    );
    response
}

async fn home(State(state): State<ShopState>) -> Response {
    page(&state, "home", "SecureCart")
}

async fn products(State(state): State<ShopState>) -> Response {
    page(&state, "products", "Products · SecureCart")
}

async fn product(State(state): State<ShopState>, Path(_id): Path<String>) -> Response {
    page(&state, "product", "Product · SecureCart")
}

async fn cart(State(state): State<ShopState>) -> Response {
    page(&state, "cart", "Cart · SecureCart")
}

async fn checkout(State(state): State<ShopState>) -> Response {
    page(&state, "checkout", "Checkout · SecureCart")
}

async fn order(State(state): State<ShopState>, Path(_id): Path<String>) -> Response {
    page(&state, "order", "Order · SecureCart")
}

async fn asset(
    State(state): State<ShopState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "logo.svg" => (LOGO_SVG, "image/svg+xml"),
        "unavailable.html" => (UNAVAILABLE_HTML, "text/html; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    let etag = format!("\"{}-{file}\"", state.asset_version);
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"asset\""));
    let cache = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(ASSET_CACHE_CONTROL),
        ),
        (header::ETAG, etag_value),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}
