//! What every service's JSON API shares: the error body, extractors whose rejections are
//! JSON errors with the right status, and the session cookie.
//!
//! A client's mistake always gets a 4xx with `{"error": {"code", "message"}}`; only a failure
//! of the shop itself (the store, the payment provider) gets a 5xx.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use securecart_store::StoreError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// A stable, snake_case code a client can branch on.
    pub code: &'static str,
    /// A sentence for a person.
    pub message: String,
    /// One more top-level field of the body, such as the declined order.
    pub extra: Option<Box<(&'static str, serde_json::Value)>>,
    /// Seconds after which a retry may succeed, sent as `Retry-After`.
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
            retry_after_seconds: None,
        }
    }

    /// 404 for a missing resource.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 422 for a field whose value is not allowed.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 400 for a request that is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": { "code": self.code, "message": self.message } });
        if let (Some(extra), Some(object)) = (self.extra, body.as_object_mut()) {
            let (key, value) = *extra;
            object.insert(key.to_owned(), value);
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownProduct(id) => {
                ApiError::not_found("product_not_found", format!("Product {id} does not exist."))
            }
            StoreError::NotInCart(id) => {
                ApiError::not_found("not_in_cart", format!("Product {id} is not in the cart."))
            }
            StoreError::QuantityLimit { max } => ApiError::invalid(
                "quantity_limit",
                format!("A cart holds at most {max} of one product."),
            ),
            StoreError::CartFull { max } => ApiError::new(
                StatusCode::CONFLICT,
                "cart_full",
                format!("A cart holds at most {max} different products."),
            ),
            StoreError::CartEmpty => {
                ApiError::new(StatusCode::CONFLICT, "cart_empty", "The cart is empty.")
            }
            StoreError::OutOfStock {
                product_id,
                available,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "out_of_stock",
                format!("Only {available} of product {product_id} left in stock."),
            ),
            StoreError::IdempotencyKeyReused => ApiError::invalid(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request; use a new key.",
            ),
            StoreError::UnknownOrder(id) => {
                ApiError::not_found("order_not_found", format!("Order {id} does not exist."))
            }
            error => {
                tracing::error!(%error, "store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "The shop's database is unavailable; try again.",
                )
            }
        }
    }
}

/// 404 for any path no route serves.
pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "No such resource.")
}

/// 405 for a method the route does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This method is not allowed here.",
    )
}

/// A JSON body whose rejections are JSON errors: 400 malformed, 413 too large, 415 not
/// JSON, 422 a field of the wrong type or missing.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::invalid("invalid_body", detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed_json", detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "The body must be JSON, sent with Content-Type: application/json.",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is too large.",
        ),
        other => ApiError::new(other.status(), "invalid_body", detail),
    }
}

/// A query string whose rejection is a JSON 400.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sc_session";

/// How long a session cookie lives: 30 days.
const SESSION_MAX_AGE_SECONDS: u32 = 30 * 24 * 3600;

/// The session the request carries, if its cookie is well formed.
pub fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| is_session_id(value))
}

/// Whether a value is a session id: 32 lowercase hex digits.
pub fn is_session_id(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new session id.
pub fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The `Set-Cookie` value for a session.
pub fn session_cookie(session: &str) -> HeaderValue {
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_MAX_AGE_SECONDS}"
    );
    // A session id is hex, so the cookie is always a valid header value.
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("sc_session=; Path=/"))
}

/// Parses a numeric id from a path segment; anything but a positive integer names no
/// resource, so it is a 404 like an unknown id.
pub fn parse_id(segment: &str, code: &'static str, what: &str) -> Result<i64, ApiError> {
    segment
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::not_found(
                code,
                format!(
                    "{what} `{}` does not exist.",
                    segment.chars().take(40).collect::<String>()
                ),
            )
        })
}

/// Adds a header to a response.
pub fn with_header(
    mut response: Response,
    name: header::HeaderName,
    value: HeaderValue,
) -> Response {
    response.headers_mut().insert(name, value);
    response
}
