//! The shop's storage.
//!
//! Services talk to a [`Store`], never to a database: the SQLite implementation in
//! [`sqlite`] is the default (one database file per region, WAL, migrations), and a
//! PostgreSQL one can be added later without touching the services.
//!
//! **Invariant:** an order is written in one transaction with its lines, its stock
//! decrements and its idempotency key, and the transaction is durable (`synchronous=FULL`
//! in WAL mode) before the order is acknowledged; an acknowledged order survives `kill -9`
//! of any process.

pub mod sqlite;
mod types;

use async_trait::async_trait;

pub use sqlite::SqliteStore;
pub use types::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No product has this id.
    #[error("product {0} does not exist")]
    UnknownProduct(i64),
    /// The product is not in the cart.
    #[error("product {0} is not in the cart")]
    NotInCart(i64),
    /// A cart line would exceed the largest quantity allowed.
    #[error("a cart line holds at most {max} of one product")]
    QuantityLimit {
        /// The largest quantity of one line.
        max: i64,
    },
    /// The cart holds more distinct products than allowed.
    #[error("a cart holds at most {max} different products")]
    CartFull {
        /// The largest number of lines.
        max: usize,
    },
    /// Checkout found nothing to order.
    #[error("the cart is empty")]
    CartEmpty,
    /// A product has less stock than the cart asks for.
    #[error("only {available} of product {product_id} left in stock")]
    OutOfStock {
        /// The product.
        product_id: i64,
        /// What is left.
        available: i64,
    },
    /// An idempotency key was used before with a different request.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// The order the operation refers to no longer exists.
    #[error("order {0} does not exist")]
    UnknownOrder(String),
    /// The database failed; the operation may be retried.
    #[error("database error: {0}")]
    Database(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

/// Everything the shop's services keep.
///
/// Methods are grouped by the service that uses them; every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts the catalog if the store has no product yet; returns how many were inserted.
    async fn seed_catalog(
        &self,
        categories: Vec<Category>,
        products: Vec<Product>,
    ) -> Result<usize, StoreError>;

    /// Every category with its number of products.
    async fn categories(&self) -> Result<Vec<CategorySummary>, StoreError>;

    /// One page of products matching a query.
    async fn products(&self, query: ProductQuery) -> Result<ProductPage, StoreError>;

    /// One product.
    async fn product(&self, id: i64) -> Result<Option<Product>, StoreError>;

    /// The lines of a session's cart, with each product's current name, price and stock.
    async fn cart(&self, session: &str) -> Result<Vec<CartLine>, StoreError>;

    /// Adds `quantity` of a product to a cart (creating the line if needed).
    async fn add_to_cart(
        &self,
        session: &str,
        product_id: i64,
        quantity: i64,
    ) -> Result<(), StoreError>;

    /// Sets the quantity of a line that is in the cart.
    async fn set_cart_quantity(
        &self,
        session: &str,
        product_id: i64,
        quantity: i64,
    ) -> Result<(), StoreError>;

    /// Removes a line from the cart.
    async fn remove_from_cart(&self, session: &str, product_id: i64) -> Result<(), StoreError>;

    /// Starts a checkout: returns the order already made with this idempotency key, or
    /// creates one from the session's cart in state `pending_payment`, reserving its stock.
    async fn begin_checkout(&self, request: CheckoutRequest) -> Result<CheckoutStart, StoreError>;

    /// Finishes a pending order with the payment's outcome. An approved order is paid and
    /// the cart emptied; a declined one releases its stock. An order that is no longer
    /// pending is returned unchanged.
    async fn complete_checkout(
        &self,
        order_id: &str,
        outcome: PaymentOutcome,
    ) -> Result<Order, StoreError>;

    /// Ends a payment attempt that certainly charged nothing (the provider was down). The
    /// order is undone (its stock released, its idempotency key freed for a retry) only if
    /// it is still pending, no other attempt on it is in flight (a concurrent retry of the
    /// same key may be charging), and no attempt ended not knowing whether it charged.
    ///
    /// Every [`Store::begin_checkout`] of a pending order starts one attempt, which
    /// [`Store::complete_checkout`], this, or [`Store::suspend_checkout`] ends.
    async fn abandon_checkout(&self, order_id: &str) -> Result<(), StoreError>;

    /// Ends a payment attempt whose outcome is unknown: the order stays pending for a retry
    /// of its key, and is never undone, since the provider may have charged it.
    async fn suspend_checkout(&self, order_id: &str) -> Result<(), StoreError>;

    /// One order.
    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError>;

    /// Records a charge of the simulated payment provider, or returns the charge already
    /// recorded under the same idempotency key.
    async fn record_charge(&self, charge: Charge) -> Result<Charge, StoreError>;
}
