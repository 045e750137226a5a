//! The cart service: one cart per session cookie; add, change and remove lines.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use securecart_store::{CartLine, MAX_LINE_QUANTITY};
use serde::{Deserialize, Serialize};

use crate::ShopState;
use crate::api::{
    ApiError, ApiJson, new_session_id, parse_id, session_cookie, session_of, with_header,
};

/// The cart's routes.
pub fn routes() -> Router<ShopState> {
    Router::new()
        .route("/api/cart", get(show))
        .route("/api/cart/items", post(add))
        .route("/api/cart/items/{product_id}", put(set).delete(remove))
}

/// A cart as the API shows it.
#[derive(Debug, Serialize)]
pub struct CartView {
    items: Vec<CartLineView>,
    item_count: i64,
    total_minor: i64,
    currency: String,
}

#[derive(Debug, Serialize)]
struct CartLineView {
    product_id: i64,
    name: String,
    image_url: String,
    unit_price_minor: i64,
    quantity: i64,
    line_total_minor: i64,
    stock: i64,
}

impl CartView {
    fn new(lines: Vec<CartLine>) -> Self {
        let currency = lines
            .first()
            .map_or_else(|| "USD".to_owned(), |line| line.currency.clone());
        let items: Vec<CartLineView> = lines
            .into_iter()
            .map(|line| CartLineView {
                product_id: line.product_id,
                image_url: format!("/images/products/{}.svg", line.product_id),
                name: line.name,
                unit_price_minor: line.unit_price_minor,
                quantity: line.quantity,
                line_total_minor: line.unit_price_minor * line.quantity,
                stock: line.stock,
            })
            .collect();
        Self {
            item_count: items.iter().map(|item| item.quantity).sum(),
            total_minor: items.iter().map(|item| item.line_total_minor).sum(),
            items,
            currency,
        }
    }
}

/// The session of the request, or a new one that the response must set.
struct Session {
    id: String,
    is_new: bool,
}

impl Session {
    fn of(headers: &HeaderMap) -> Self {
        match session_of(headers) {
            Some(id) => Self { id, is_new: false },
            None => Self {
                id: new_session_id(),
                is_new: true,
            },
        }
    }

    fn respond(&self, body: impl IntoResponse) -> Response {
        let mut response = body.into_response();
        // Carts are personal: never stored by a shared cache.
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("private, no-store"),
        );
        if self.is_new {
            response = with_header(response, header::SET_COOKIE, session_cookie(&self.id));
        }
        response
    }
}

fn check_quantity(quantity: i64) -> Result<(), ApiError> {
    if (1..=MAX_LINE_QUANTITY).contains(&quantity) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_quantity",
            format!("quantity must be from 1 to {MAX_LINE_QUANTITY}, not {quantity}."),
        ))
    }
}

async fn show(State(state): State<ShopState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let session = Session::of(&headers);
    let lines = if session.is_new {
        Vec::new()
    } else {
        state.store.cart(&session.id).await?
    };
    Ok(session.respond(Json(CartView::new(lines))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddItem {
    product_id: i64,
    #[serde(default = "one")]
    quantity: i64,
}

fn one() -> i64 {
    1
}

async fn add(
    State(state): State<ShopState>,
    headers: HeaderMap,
    ApiJson(item): ApiJson<AddItem>,
) -> Result<Response, ApiError> {
    if item.product_id <= 0 {
        return Err(ApiError::invalid(
            "invalid_product_id",
            format!(
                "product_id must be a positive integer, not {}.",
                item.product_id
            ),
        ));
    }
    check_quantity(item.quantity)?;
    let session = Session::of(&headers);
    state
        .store
        .add_to_cart(&session.id, item.product_id, item.quantity)
        .await?;
    let lines = state.store.cart(&session.id).await?;
    Ok(session.respond(Json(CartView::new(lines))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQuantity {
    quantity: i64,
}

async fn set(
    State(state): State<ShopState>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetQuantity>,
) -> Result<Response, ApiError> {
    let product_id = parse_id(&product_id, "product_not_found", "Product")?;
    check_quantity(body.quantity)?;
    let session = Session::of(&headers);
    state
        .store
        .set_cart_quantity(&session.id, product_id, body.quantity)
        .await?;
    let lines = state.store.cart(&session.id).await?;
    Ok(session.respond(Json(CartView::new(lines))))
}

async fn remove(
    State(state): State<ShopState>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let product_id = parse_id(&product_id, "product_not_found", "Product")?;
    let session = Session::of(&headers);
    state
        .store
        .remove_from_cart(&session.id, product_id)
        .await?;
    let lines = state.store.cart(&session.id).await?;
    Ok(session.respond(Json(CartView::new(lines))))
}
