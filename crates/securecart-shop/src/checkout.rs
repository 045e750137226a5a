//! The checkout service: turns a session's cart into an order, paid through the payment
//! provider, exactly once per `Idempotency-Key`.
//!
//! The order is created first, in one transaction with its stock reservation and its key
//! (state `pending_payment`); then the provider is charged with the order's id as the
//! provider's own idempotency key; then the order is finished in a second transaction. If
//! checkout dies between the two, the same request again finds the pending order and
//! charges again under the same provider key, which the provider deduplicates: the order is
//! finished, and nothing is charged twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use securecart_store::sqlite::new_id;
use securecart_store::{
    Charge, CheckoutRequest, CheckoutStart, Order, OrderStatus, PaymentOutcome,
};
use securecart_telemetry::trace_context::TRACEPARENT;
use serde::Deserialize;
use serde_json::json;

use crate::ShopState;
use crate::api::{ApiError, ApiJson, session_of};
use crate::observe::RequestTrace;
use crate::payments::{IDEMPOTENCY_KEY, is_idempotency_key};

/// The checkout's routes.
pub fn routes() -> Router<ShopState> {
    Router::new()
        .route("/api/checkout", post(checkout))
        .route("/api/orders/{id}", get(order))
}

/// How many times one payment is attempted, across the provider's replicas.
const PAYMENT_ATTEMPTS: usize = 4;
/// How long one payment attempt may take.
const PAYMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the payment provider that spreads attempts over its replicas.
#[derive(Debug, Clone)]
pub struct PaymentsClient {
    client: Client<HttpConnector, Full<Bytes>>,
    targets: Arc<[SocketAddr]>,
    next: Arc<AtomicUsize>,
}

/// What a payment came to.
#[derive(Debug)]
enum PaymentError {
    /// Every attempt was refused (no connection) or answered 503 (the provider's "not
    /// processed, retry"): nothing was charged.
    Unavailable,
    /// At least one attempt reached the provider without an answer (a timeout, a broken
    /// connection, another 5xx): a charge may have been made. The order stays pending; the
    /// same key again charges under the same provider key, which the provider deduplicates.
    Unknown,
    /// The provider answered something this client does not understand.
    Protocol(String),
}

impl PaymentsClient {
    /// A client of the provider's replicas.
    pub fn new(targets: Vec<SocketAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            targets: targets.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn charge(
        &self,
        order: &Order,
        trace: Option<RequestTrace>,
    ) -> Result<PaymentOutcome, PaymentError> {
        if self.targets.is_empty() {
            return Err(PaymentError::Unavailable);
        }
        let body = Bytes::from(
            json!({
                "amount_minor": order.total_minor,
                "currency": order.currency,
                "card_token": order.card_token,
                "description": format!("SecureCart order {}", order.id),
            })
            .to_string(),
        );
        let mut backoff = Duration::from_millis(50);
        let mut maybe_charged = false;
        for attempt in 0..PAYMENT_ATTEMPTS {
            let target =
                self.targets[self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()];
            let mut request = Request::post(format!("http://{target}/v1/charges"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_KEY, format!("order:{}", order.id));
            if let Some(RequestTrace(trace)) = trace {
                request = request.header(TRACEPARENT, trace.child().to_string());
            }
            let request = request
                .body(Full::new(body.clone()))
                .map_err(|error| PaymentError::Protocol(error.to_string()))?;
            match tokio::time::timeout(PAYMENT_TIMEOUT, self.client.request(request)).await {
                Ok(Ok(response)) => {
                    let status = response.status();
                    let bytes = response
                        .into_body()
                        .collect()
                        .await
                        .map(|body| body.to_bytes())
                        .unwrap_or_default();
                    if status.is_server_error() {
                        maybe_charged |= status != StatusCode::SERVICE_UNAVAILABLE;
                        tracing::warn!(%target, %status, attempt, "payment provider unavailable");
                    } else {
                        return parse_charge(status, &bytes);
                    }
                }
                Ok(Err(error)) => {
                    // Only a refused connection proves the request never arrived.
                    maybe_charged |= !error.is_connect();
                    tracing::warn!(%target, %error, attempt, "payment provider unreachable")
                }
                Err(_) => {
                    maybe_charged = true;
                    tracing::warn!(%target, attempt, "payment provider timed out")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Err(if maybe_charged {
            PaymentError::Unknown
        } else {
            PaymentError::Unavailable
        })
    }
}

fn parse_charge(status: StatusCode, body: &[u8]) -> Result<PaymentOutcome, PaymentError> {
    let charge: Charge = serde_json::from_slice(body).map_err(|error| {
        PaymentError::Protocol(format!(
            "provider answered {status} with an unreadable body: {error}"
        ))
    })?;
    match (status, charge.status.as_str()) {
        (StatusCode::CREATED | StatusCode::OK, "succeeded") => Ok(PaymentOutcome::Approved {
            charge_id: charge.id,
        }),
        (StatusCode::PAYMENT_REQUIRED, "declined") => Ok(PaymentOutcome::Declined {
            charge_id: charge.id,
            decline_code: charge
                .decline_code
                .unwrap_or_else(|| "card_declined".to_owned()),
        }),
        (status, other) => Err(PaymentError::Protocol(format!(
            "provider answered {status} with status `{other}`"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutBody {
    email: String,
    name: String,
    address: String,
    card_token: String,
}

fn validate(body: &CheckoutBody) -> Result<(), ApiError> {
    let email = body.email.trim();
    let valid_email = (3..=254).contains(&email.len())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.contains(char::is_whitespace);
    if !valid_email {
        return Err(ApiError::invalid(
            "invalid_email",
            "email must be an address such as ada@example.com.",
        ));
    }
    for (field, value, max) in [("name", &body.name, 100), ("address", &body.address, 300)] {
        let length = value.trim().chars().count();
        if length == 0 || length > max {
            return Err(ApiError::invalid(
                if field == "name" {
                    "invalid_name"
                } else {
                    "invalid_address"
                },
                format!("{field} must be from 1 to {max} characters."),
            ));
        }
    }
    if body.card_token.is_empty() || body.card_token.len() > 64 {
        return Err(ApiError::invalid(
            "invalid_card_token",
            "card_token must be from 1 to 64 characters.",
        ));
    }
    Ok(())
}

async fn checkout(
    State(state): State<ShopState>,
    trace: Option<Extension<RequestTrace>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Response, ApiError> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "idempotency_key_required",
                "Checkout needs an Idempotency-Key header, so that a retry never orders twice.",
            )
        })?;
    if !is_idempotency_key(key) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "The Idempotency-Key must be 8 to 128 letters, digits, '_', '-' or ':'.",
        ));
    }
    validate(&body)?;
    let session = session_of(&headers)
        .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "cart_empty", "The cart is empty."))?;
    let Some(payments) = state.payments.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment_unavailable",
            "No payment provider is configured.",
        ));
    };
    let email = body.email.trim().to_owned();
    let name = body.name.trim().to_owned();
    let address = body.address.trim().to_owned();
    // The same key with another request (or from another session) is a client error.
    let fingerprint = json!([session, email, name, address, body.card_token]).to_string();
    let start = state
        .store
        .begin_checkout(CheckoutRequest {
            session,
            idempotency_key: key.to_owned(),
            fingerprint,
            order_id: new_id("ord_"),
            email,
            name,
            address,
            card_token: body.card_token,
        })
        .await?;
    let (mut order, replayed) = match start {
        CheckoutStart::Created(order) => (order, false),
        CheckoutStart::Existing(order) => (order, true),
    };
    if order.status == OrderStatus::PendingPayment {
        match payments
            .charge(&order, trace.map(|Extension(trace)| trace))
            .await
        {
            Ok(outcome) => order = state.store.complete_checkout(&order.id, outcome).await?,
            Err(error) => {
                // Only when the provider certainly charged nothing are the stock and the key
                // released; otherwise the order stays pending for a retry of the same key.
                if matches!(error, PaymentError::Unavailable) {
                    state.store.abandon_checkout(&order.id).await?;
                } else {
                    state.store.suspend_checkout(&order.id).await?;
                }
                return Err(payment_error(error));
            }
        }
    }
    tracing::info!(order = %order.id, status = order.status.as_str(), replayed, "checkout");
    Ok(order_response(order, replayed))
}

fn payment_error(error: PaymentError) -> ApiError {
    match error {
        PaymentError::Unavailable => {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_unavailable",
                "The payment provider is unavailable; nothing was charged. Try again with the same Idempotency-Key.",
            );
            error.retry_after_seconds = Some(1);
            error
        }
        PaymentError::Unknown => {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_pending",
                "The payment provider did not confirm the charge. Try again with the same Idempotency-Key to finish the order; nothing is charged twice.",
            );
            error.retry_after_seconds = Some(1);
            error
        }
        PaymentError::Protocol(detail) => {
            tracing::error!(%detail, "payment provider answered badly");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_error",
                "The payment provider gave an unexpected answer. Try again with the same Idempotency-Key to finish the order; nothing is charged twice.",
            )
        }
    }
}

fn order_response(order: Order, replayed: bool) -> Response {
    let mut response = match order.status {
        OrderStatus::PaymentDeclined => {
            let code = order
                .decline_code
                .clone()
                .unwrap_or_else(|| "card_declined".to_owned());
            let mut error = ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("The card was declined ({code}); nothing was charged."),
            );
            error.extra = Some(Box::new(("order", json!(order))));
            error.into_response()
        }
        _ => (StatusCode::CREATED, Json(json!({ "order": order }))).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn is_order_id(id: &str) -> bool {
    id.strip_prefix("ord_").is_some_and(|hex| {
        hex.len() == 24
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

async fn order(
    State(state): State<ShopState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("order_not_found", "No order has this id.");
    if !is_order_id(&id) {
        return Err(not_found());
    }
    let order = state.store.order(&id).await?.ok_or_else(not_found)?;
    let mut response = Json(order).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}
