//! The simulated payment provider: a third party's API with deterministic outcomes by card
//! token, so that every failure path of checkout can be tested.
//!
//! | token | outcome |
//! |---|---|
//! | `tok_visa`, `tok_mastercard`, `tok_amex` | approved (201) |
//! | `tok_chargeDeclined` | declined, `card_declined` (402) |
//! | `tok_chargeDeclinedInsufficientFunds` | declined, `insufficient_funds` (402) |
//! | `tok_unavailable` | the processor is down: 503, retryable, nothing recorded |
//! | any other token | declined, `invalid_card` (402) |
//!
//! Every charge is recorded under the merchant's `Idempotency-Key`: the same key again
//! returns the same charge and charges nothing twice.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use securecart_store::Charge;
use serde::Deserialize;

use crate::ShopState;
use crate::api::{ApiError, ApiJson};

/// The header carrying the merchant's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The provider's routes.
pub fn routes() -> Router<ShopState> {
    Router::new().route("/v1/charges", post(charge))
}

/// What the provider decides for a card token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The charge succeeds.
    Approve,
    /// The charge is declined with this code.
    Decline(&'static str),
    /// The processor is unavailable; try again later.
    Unavailable,
}

/// The outcome for a token: a pure function, the provider's whole "risk engine".
pub fn decide(card_token: &str) -> Decision {
    match card_token {
        "tok_visa" | "tok_mastercard" | "tok_amex" => Decision::Approve,
        "tok_chargeDeclined" => Decision::Decline("card_declined"),
        "tok_chargeDeclinedInsufficientFunds" => Decision::Decline("insufficient_funds"),
        "tok_unavailable" => Decision::Unavailable,
        _ => Decision::Decline("invalid_card"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeRequest {
    amount_minor: i64,
    currency: String,
    card_token: String,
    #[serde(default)]
    description: Option<String>,
}

/// Whether a value is an acceptable idempotency key: 8 to 128 characters of letters,
/// digits, `_`, `-` and `:`.
pub fn is_idempotency_key(key: &str) -> bool {
    (8..=128).contains(&key.len())
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b':'))
}

async fn charge(
    State(state): State<ShopState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ChargeRequest>,
) -> Result<Response, ApiError> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .filter(|key| is_idempotency_key(key))
        .ok_or_else(|| {
            ApiError::bad_request(
                "idempotency_key_required",
                "An Idempotency-Key header of 8 to 128 letters, digits, '_', '-' or ':' is required.",
            )
        })?;
    if request.amount_minor <= 0 {
        return Err(ApiError::invalid(
            "invalid_amount",
            "amount_minor must be positive.",
        ));
    }
    if request.currency.len() != 3
        || !request
            .currency
            .bytes()
            .all(|byte| byte.is_ascii_uppercase())
    {
        return Err(ApiError::invalid(
            "invalid_currency",
            "currency must be an ISO 4217 code such as USD.",
        ));
    }
    if request
        .description
        .as_ref()
        .is_some_and(|text| text.len() > 500)
    {
        return Err(ApiError::invalid(
            "invalid_description",
            "description must be at most 500 bytes.",
        ));
    }
    let (status, decline_code) = match decide(&request.card_token) {
        Decision::Approve => ("succeeded", None),
        Decision::Decline(code) => ("declined", Some(code.to_owned())),
        Decision::Unavailable => {
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "processor_unavailable",
                "The card processor is unavailable; retry with the same Idempotency-Key.",
            );
            error.retry_after_seconds = Some(1);
            return Err(error);
        }
    };
    let charge = state
        .store
        .record_charge(Charge {
            id: String::new(),
            idempotency_key: key.to_owned(),
            amount_minor: request.amount_minor,
            currency: request.currency,
            card_token: request.card_token,
            status: status.to_owned(),
            decline_code,
            created_at: String::new(),
        })
        .await?;
    let status = if charge.status == "succeeded" {
        StatusCode::CREATED
    } else {
        StatusCode::PAYMENT_REQUIRED
    };
    Ok((status, Json(charge)).into_response())
}

#[cfg(test)]
mod tests {
    use super::{Decision, decide};

    #[test]
    fn outcomes_are_a_function_of_the_token() {
        let cases = [
            ("tok_visa", Decision::Approve),
            ("tok_mastercard", Decision::Approve),
            ("tok_chargeDeclined", Decision::Decline("card_declined")),
            (
                "tok_chargeDeclinedInsufficientFunds",
                Decision::Decline("insufficient_funds"),
            ),
            ("tok_unavailable", Decision::Unavailable),
            ("tok_unknown", Decision::Decline("invalid_card")),
            ("", Decision::Decline("invalid_card")),
        ];
        for (token, decision) in cases {
            assert_eq!(decide(token), decision, "{token}");
        }
    }
}
