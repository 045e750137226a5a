//! The values the store keeps and returns.

use serde::{Deserialize, Serialize};

/// The largest quantity of one cart line.
pub const MAX_LINE_QUANTITY: i64 = 99;

/// The largest number of distinct products in one cart.
pub const MAX_CART_LINES: usize = 50;

/// A product category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The category's URL name, such as `kitchen`.
    pub slug: String,
    /// Its display name.
    pub name: String,
}

/// A category with the number of products in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategorySummary {
    /// The category's URL name.
    pub slug: String,
    /// Its display name.
    pub name: String,
    /// How many products it holds.
    pub product_count: i64,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Its id, from 1.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its category's slug.
    pub category: String,
    /// Its category's name.
    pub category_name: String,
    /// Its price in minor units (cents).
    pub price_minor: i64,
    /// The ISO 4217 currency of the price.
    pub currency: String,
    /// Units in stock.
    pub stock: i64,
}

/// A query of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductQuery {
    /// Words that every product found must contain (name, description or category).
    pub text: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// The page, from 1.
    pub page: u32,
    /// Products per page.
    pub per_page: u32,
}

/// One page of products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductPage {
    /// The products of this page.
    pub items: Vec<Product>,
    /// How many products match in all.
    pub total: i64,
}

/// A line of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartLine {
    /// The product.
    pub product_id: i64,
    /// Its current name.
    pub name: String,
    /// Its current price in minor units.
    pub unit_price_minor: i64,
    /// Its currency.
    pub currency: String,
    /// How many are in the cart.
    pub quantity: i64,
    /// Units in stock now.
    pub stock: i64,
}

/// What a customer asks checkout for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The session whose cart is ordered.
    pub session: String,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// A canonical text of the request's fields: the same key with another request is
    /// rejected.
    pub fingerprint: String,
    /// The new order's id, used when the key is new.
    pub order_id: String,
    /// The customer's email.
    pub email: String,
    /// The customer's name.
    pub name: String,
    /// The delivery address.
    pub address: String,
    /// The payment card's token.
    pub card_token: String,
}

/// What [`crate::Store::begin_checkout`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutStart {
    /// A new pending order; its payment is to be made.
    Created(Order),
    /// The order made earlier with the same key; if it is still pending, its payment is
    /// to be made (again: the payment provider deduplicates by key).
    Existing(Order),
}

/// The state of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created, stock reserved, payment not yet known.
    PendingPayment,
    /// Paid.
    Paid,
    /// The card was declined; the stock was released.
    PaymentDeclined,
}

impl OrderStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentDeclined => "payment_declined",
        }
    }

    /// The status with this name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            OrderStatus::PaymentDeclined,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Its id, such as `ord_5f0c…`.
    pub id: String,
    /// Its state.
    pub status: OrderStatus,
    /// The session that placed it.
    #[serde(skip)]
    pub session: String,
    /// The idempotency key it was placed with.
    #[serde(skip)]
    pub idempotency_key: String,
    /// The card token it is paid with.
    #[serde(skip)]
    pub card_token: String,
    /// The customer's email.
    pub email: String,
    /// The customer's name.
    pub name: String,
    /// The delivery address.
    pub address: String,
    /// Its lines.
    pub items: Vec<OrderLine>,
    /// The sum of its lines, in minor units.
    pub total_minor: i64,
    /// Its currency.
    pub currency: String,
    /// When it was placed, RFC 3339.
    pub created_at: String,
    /// The payment provider's charge, once paid.
    pub charge_id: Option<String>,
    /// The provider's reason for a decline.
    pub decline_code: Option<String>,
}

/// A line of an order, with the price at the time of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: i64,
    /// Its name when ordered.
    pub name: String,
    /// How many.
    pub quantity: i64,
    /// Its price when ordered.
    pub unit_price_minor: i64,
    /// `quantity × unit_price_minor`.
    pub line_total_minor: i64,
}

/// The outcome of a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Approved, with the provider's charge id.
    Approved {
        /// The charge.
        charge_id: String,
    },
    /// Declined, with the provider's reason.
    Declined {
        /// The charge.
        charge_id: String,
        /// Why, such as `card_declined`.
        decline_code: String,
    },
}

/// A charge of the simulated payment provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// Its id, such as `ch_…`.
    pub id: String,
    /// The merchant's idempotency key.
    pub idempotency_key: String,
    /// The amount in minor units.
    pub amount_minor: i64,
    /// The currency.
    pub currency: String,
    /// The card token.
    pub card_token: String,
    /// `succeeded` or `declined`.
    pub status: String,
    /// Why it was declined.
    pub decline_code: Option<String>,
    /// When it was made, RFC 3339.
    pub created_at: String,
}
