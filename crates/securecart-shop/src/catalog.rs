//! The catalog service: categories, products with search and pagination, and product
//! images.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use securecart_store::{Product, ProductQuery};
use serde::{Deserialize, Serialize};

use crate::ShopState;
use crate::api::{ApiError, ApiQuery, parse_id};
use crate::catalog_data::product_image_svg;

/// Products per page when the client does not say.
const DEFAULT_PER_PAGE: u32 = 24;
/// The most products one page may hold.
const MAX_PER_PAGE: u32 = 100;
/// The deepest page a client may ask for.
const MAX_PAGE: u32 = 10_000;
/// The longest search text.
const MAX_QUERY_LENGTH: usize = 200;

/// Catalog answers may be cached briefly by browsers and the edge.
const CATALOG_CACHE_CONTROL: &str = "public, max-age=30";
/// Product images never change for a given id and version.
const IMAGE_CACHE_CONTROL: &str = "public, max-age=86400";
/// The version of the image generator, part of every image's ETag.
const IMAGE_VERSION: &str = "v1";

/// The catalog's routes.
pub fn routes() -> Router<ShopState> {
    Router::new()
        .route("/api/catalog/categories", get(categories))
        .route("/api/catalog/products", get(products))
        .route("/api/catalog/products/{id}", get(product))
        .route("/images/products/{file}", get(image))
}

/// A product as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProductView {
    #[serde(flatten)]
    product: Product,
    image_url: String,
}

impl From<Product> for ProductView {
    fn from(product: Product) -> Self {
        let image_url = format!("/images/products/{}.svg", product.id);
        Self { product, image_url }
    }
}

fn cached(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CATALOG_CACHE_CONTROL),
    );
    response
}

async fn categories(State(state): State<ShopState>) -> Result<Response, ApiError> {
    let categories = state.store.categories().await?;
    Ok(cached(Json(
        serde_json::json!({ "categories": categories }),
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductsParams {
    q: Option<String>,
    category: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn products(
    State(state): State<ShopState>,
    ApiQuery(params): ApiQuery<ProductsParams>,
) -> Result<Response, ApiError> {
    let page = params.page.unwrap_or(1);
    let per_page = params.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("page must be from 1 to {MAX_PAGE}."),
        ));
    }
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("per_page must be from 1 to {MAX_PER_PAGE}."),
        ));
    }
    let text = params.q.filter(|text| !text.trim().is_empty());
    if text
        .as_ref()
        .is_some_and(|text| text.len() > MAX_QUERY_LENGTH)
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("q must be at most {MAX_QUERY_LENGTH} bytes."),
        ));
    }
    let category = params.category.filter(|category| !category.is_empty());
    let found = state
        .store
        .products(ProductQuery {
            text,
            category,
            page,
            per_page,
        })
        .await?;
    let total_pages = (found.total + i64::from(per_page) - 1) / i64::from(per_page);
    let items: Vec<ProductView> = found.items.into_iter().map(ProductView::from).collect();
    Ok(cached(Json(serde_json::json!({
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": found.total,
        "total_pages": total_pages,
    }))))
}

async fn product(
    State(state): State<ShopState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "product_not_found", "Product")?;
    let product = state.store.product(id).await?.ok_or_else(|| {
        ApiError::not_found("product_not_found", format!("Product {id} does not exist."))
    })?;
    Ok(cached(Json(ProductView::from(product))))
}

async fn image(
    State(state): State<ShopState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = file.strip_suffix(".svg").ok_or_else(|| {
        ApiError::not_found(
            "image_not_found",
            "Product images are SVG files named {id}.svg.",
        )
    })?;
    let id = parse_id(id, "image_not_found", "Image")?;
    let product = state.store.product(id).await?.ok_or_else(|| {
        ApiError::not_found("image_not_found", format!("Product {id} has no image."))
    })?;
    let etag = format!("\"p{id}-{IMAGE_VERSION}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let common = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(IMAGE_CACHE_CONTROL),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"p\"")),
        ),
    ];
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("image/svg+xml"),
        )],
        product_image_svg(&product),
    )
        .into_response())
}
