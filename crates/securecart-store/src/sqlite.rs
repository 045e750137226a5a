//! The SQLite store: one database file per region, in WAL mode, shared by every service
//! process of the region.
//!
//! Every call runs on tokio's blocking pool. Writes go through one connection per process
//! and use `BEGIN IMMEDIATE`, so that a transaction that reads and then writes waits for
//! another process's write (busy timeout) instead of failing; reads use a small pool of
//! connections, which WAL lets run beside a writer.
#![allow(
    clippy::disallowed_types,
    reason = "the connections' std mutexes are locked only inside spawn_blocking, never across an .await"
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::{
    CartLine, Category, CategorySummary, Charge, CheckoutRequest, CheckoutStart, MAX_CART_LINES,
    MAX_LINE_QUANTITY, Order, OrderLine, OrderStatus, PaymentOutcome, Product, ProductPage,
    ProductQuery, Store, StoreError,
};

/// The schema, one migration per entry; `PRAGMA user_version` counts the ones applied.
/// Append only: a migration that has shipped is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: catalog, carts, orders and the payment provider's ledger.
    r#"
    CREATE TABLE categories (
        slug TEXT PRIMARY KEY,
        name TEXT NOT NULL
    ) STRICT;
    CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        category TEXT NOT NULL REFERENCES categories(slug),
        price_minor INTEGER NOT NULL CHECK (price_minor >= 0),
        currency TEXT NOT NULL,
        stock INTEGER NOT NULL CHECK (stock >= 0)
    ) STRICT;
    CREATE INDEX products_by_category ON products(category, id);
    CREATE VIRTUAL TABLE products_search USING fts5(
        name, description, category, content='products', content_rowid='id'
    );
    CREATE TABLE cart_items (
        session TEXT NOT NULL,
        product_id INTEGER NOT NULL REFERENCES products(id),
        quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 99),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        PRIMARY KEY (session, product_id)
    ) STRICT;
    CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        email TEXT NOT NULL,
        name TEXT NOT NULL,
        address TEXT NOT NULL,
        card_token TEXT NOT NULL,
        total_minor INTEGER NOT NULL,
        currency TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        charge_id TEXT,
        decline_code TEXT
    ) STRICT;
    CREATE TABLE order_items (
        order_id TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
        product_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        unit_price_minor INTEGER NOT NULL,
        PRIMARY KEY (order_id, product_id)
    ) STRICT;
    CREATE TABLE charges (
        id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        amount_minor INTEGER NOT NULL,
        currency TEXT NOT NULL,
        card_token TEXT NOT NULL,
        status TEXT NOT NULL,
        decline_code TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    ) STRICT;
    "#,
    // 2: payment attempts in flight on a pending order, and whether one ended not knowing
    // if it charged; an order is undone only when neither holds.
    r#"
    ALTER TABLE orders ADD COLUMN payment_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE orders ADD COLUMN maybe_charged INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many idle read connections a process keeps.
const MAX_IDLE_READERS: usize = 8;

/// The SQLite store of one region.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers run beside the writer; FULL makes every commit durable before it
    // returns, so an acknowledged order survives a crash of the process or the machine.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(connection)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    /// Several processes may open the same file at once: migrations run in an immediate
    /// transaction, so exactly one process applies each.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Database(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let mut writer = open_connection(path)?;
        migrate(&mut writer)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn read<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let connection = match idle {
                Some(connection) => connection,
                None => open_connection(&inner.path)?,
            };
            let result = operation(&connection);
            let mut readers = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(connection);
            }
            result
        })
        .await
    }

    async fn write<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(move || {
            let mut connection = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = operation(&transaction)?;
            transaction.commit()?;
            Ok(value)
        })
        .await
    }
}

async fn run_blocking<T, F>(operation: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(operation)
        .await
        .map_err(|error| StoreError::Database(format!("store task failed: {error}")))?
}

fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: i64 = transaction.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the database has schema version {applied}, newer than this build knows ({}); run a newer securecart",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", (index + 1) as i64)?;
        tracing::info!(version = index + 1, "applied store migration");
    }
    transaction.commit()?;
    Ok(())
}

const PRODUCT_COLUMNS: &str =
    "p.id, p.name, p.description, p.category, c.name, p.price_minor, p.currency, p.stock";

fn product_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        category: row.get(3)?,
        category_name: row.get(4)?,
        price_minor: row.get(5)?,
        currency: row.get(6)?,
        stock: row.get(7)?,
    })
}

/// Turns free text into an FTS5 query in which every word must match as a prefix. Only
/// letters and digits survive, so no FTS5 syntax can come from the client.
fn search_expression(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(8)
        .map(|word| format!("\"{}\"*", word.chars().take(40).collect::<String>()))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn load_order(connection: &Connection, id: &str) -> Result<Option<Order>, StoreError> {
    let order = connection
        .query_row(
            "SELECT id, status, session, idempotency_key, card_token, email, name, address, total_minor, currency, created_at, charge_id, decline_code
             FROM orders WHERE id = ?1",
            [id],
            |row| {
                let status: String = row.get(1)?;
                Ok(Order {
                    id: row.get(0)?,
                    status: OrderStatus::parse(&status).unwrap_or(OrderStatus::PendingPayment),
                    session: row.get(2)?,
                    idempotency_key: row.get(3)?,
                    card_token: row.get(4)?,
                    email: row.get(5)?,
                    name: row.get(6)?,
                    address: row.get(7)?,
                    items: Vec::new(),
                    total_minor: row.get(8)?,
                    currency: row.get(9)?,
                    created_at: row.get(10)?,
                    charge_id: row.get(11)?,
                    decline_code: row.get(12)?,
                })
            },
        )
        .optional()?;
    let Some(mut order) = order else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT product_id, name, quantity, unit_price_minor FROM order_items WHERE order_id = ?1 ORDER BY product_id",
    )?;
    order.items = statement
        .query_map([id], |row| {
            let quantity: i64 = row.get(2)?;
            let unit_price_minor: i64 = row.get(3)?;
            Ok(OrderLine {
                product_id: row.get(0)?,
                name: row.get(1)?,
                quantity,
                unit_price_minor,
                line_total_minor: quantity * unit_price_minor,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(order))
}

fn cart_lines(connection: &Connection, session: &str) -> Result<Vec<CartLine>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT ci.product_id, p.name, p.price_minor, p.currency, ci.quantity, p.stock
         FROM cart_items ci JOIN products p ON p.id = ci.product_id
         WHERE ci.session = ?1 ORDER BY ci.rowid",
    )?;
    let lines = statement
        .query_map([session], |row| {
            Ok(CartLine {
                product_id: row.get(0)?,
                name: row.get(1)?,
                unit_price_minor: row.get(2)?,
                currency: row.get(3)?,
                quantity: row.get(4)?,
                stock: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(lines)
}

fn product_exists(connection: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(connection
        .query_row("SELECT 1 FROM products WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Ends one payment attempt on an order; `maybe_charged` when it cannot tell whether the
/// provider charged.
fn end_payment_attempt(
    transaction: &rusqlite::Transaction<'_>,
    order_id: &str,
    maybe_charged: bool,
) -> Result<(), StoreError> {
    transaction.execute(
        "UPDATE orders SET payment_attempts = max(payment_attempts - 1, 0), maybe_charged = maybe_charged OR ?2 WHERE id = ?1",
        params![order_id, maybe_charged],
    )?;
    Ok(())
}

fn release_stock(
    transaction: &rusqlite::Transaction<'_>,
    order_id: &str,
) -> Result<(), StoreError> {
    transaction.execute(
        "UPDATE products SET stock = stock + (SELECT quantity FROM order_items oi WHERE oi.order_id = ?1 AND oi.product_id = products.id)
         WHERE id IN (SELECT product_id FROM order_items WHERE order_id = ?1)",
        [order_id],
    )?;
    Ok(())
}

/// A new random id with a prefix, such as `ord_…`: 96 random bits in 24 hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:024x}", rand::random::<u128>() >> 32)
}

#[async_trait]
impl Store for SqliteStore {
    async fn seed_catalog(
        &self,
        categories: Vec<Category>,
        products: Vec<Product>,
    ) -> Result<usize, StoreError> {
        self.write(move |transaction| {
            let existing: i64 = transaction.query_row("SELECT count(*) FROM products", [], |row| row.get(0))?;
            if existing > 0 {
                return Ok(0);
            }
            for category in &categories {
                transaction.execute(
                    "INSERT INTO categories (slug, name) VALUES (?1, ?2)",
                    params![category.slug, category.name],
                )?;
            }
            let mut insert = transaction.prepare_cached(
                "INSERT INTO products (id, name, description, category, price_minor, currency, stock)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for product in &products {
                insert.execute(params![
                    product.id,
                    product.name,
                    product.description,
                    product.category,
                    product.price_minor,
                    product.currency,
                    product.stock
                ])?;
            }
            transaction.execute("INSERT INTO products_search(products_search) VALUES ('rebuild')", [])?;
            Ok(products.len())
        })
        .await
    }

    async fn categories(&self) -> Result<Vec<CategorySummary>, StoreError> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT c.slug, c.name, count(p.id) FROM categories c LEFT JOIN products p ON p.category = c.slug
                 GROUP BY c.slug ORDER BY c.name",
            )?;
            let categories = statement
                .query_map([], |row| {
                    Ok(CategorySummary {
                        slug: row.get(0)?,
                        name: row.get(1)?,
                        product_count: row.get(2)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(categories)
        })
        .await
    }

    async fn products(&self, query: ProductQuery) -> Result<ProductPage, StoreError> {
        self.read(move |connection| {
            let search = query.text.as_deref().and_then(search_expression);
            let limit = i64::from(query.per_page.max(1));
            let offset = i64::from(query.page.max(1) - 1) * limit;
            let (from, filter) = if search.is_some() {
                (
                    "products p JOIN categories c ON c.slug = p.category JOIN products_search s ON s.rowid = p.id",
                    "products_search MATCH ?1 AND (?2 IS NULL OR p.category = ?2)",
                )
            } else {
                (
                    "products p JOIN categories c ON c.slug = p.category",
                    "?1 IS NULL AND (?2 IS NULL OR p.category = ?2)",
                )
            };
            let order = if search.is_some() { "s.rank, p.id" } else { "p.id" };
            let total: i64 = connection.query_row(
                &format!("SELECT count(*) FROM {from} WHERE {filter}"),
                params![search, query.category],
                |row| row.get(0),
            )?;
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM {from} WHERE {filter} ORDER BY {order} LIMIT ?3 OFFSET ?4"
            ))?;
            let items = statement
                .query_map(params![search, query.category, limit, offset], product_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(ProductPage { items, total })
        })
        .await
    }

    async fn product(&self, id: i64) -> Result<Option<Product>, StoreError> {
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    &format!(
                        "SELECT {PRODUCT_COLUMNS} FROM products p JOIN categories c ON c.slug = p.category WHERE p.id = ?1"
                    ),
                    [id],
                    product_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn cart(&self, session: &str) -> Result<Vec<CartLine>, StoreError> {
        let session = session.to_owned();
        self.read(move |connection| cart_lines(connection, &session))
            .await
    }

    async fn add_to_cart(
        &self,
        session: &str,
        product_id: i64,
        quantity: i64,
    ) -> Result<(), StoreError> {
        let session = session.to_owned();
        self.write(move |transaction| {
            if !product_exists(transaction, product_id)? {
                return Err(StoreError::UnknownProduct(product_id));
            }
            let current: Option<i64> = transaction
                .query_row(
                    "SELECT quantity FROM cart_items WHERE session = ?1 AND product_id = ?2",
                    params![session, product_id],
                    |row| row.get(0),
                )
                .optional()?;
            let lines: i64 = transaction.query_row(
                "SELECT count(*) FROM cart_items WHERE session = ?1",
                [&session],
                |row| row.get(0),
            )?;
            if current.is_none() && lines >= MAX_CART_LINES as i64 {
                return Err(StoreError::CartFull {
                    max: MAX_CART_LINES,
                });
            }
            let total = current.unwrap_or(0) + quantity;
            if total > MAX_LINE_QUANTITY {
                return Err(StoreError::QuantityLimit {
                    max: MAX_LINE_QUANTITY,
                });
            }
            transaction.execute(
                "INSERT INTO cart_items (session, product_id, quantity) VALUES (?1, ?2, ?3)
                 ON CONFLICT (session, product_id) DO UPDATE SET quantity = excluded.quantity,
                 updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                params![session, product_id, total],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_cart_quantity(
        &self,
        session: &str,
        product_id: i64,
        quantity: i64,
    ) -> Result<(), StoreError> {
        let session = session.to_owned();
        self.write(move |transaction| {
            if quantity > MAX_LINE_QUANTITY {
                return Err(StoreError::QuantityLimit { max: MAX_LINE_QUANTITY });
            }
            let changed = transaction.execute(
                "UPDATE cart_items SET quantity = ?3, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
                 WHERE session = ?1 AND product_id = ?2",
                params![session, product_id, quantity],
            )?;
            if changed == 0 {
                if !product_exists(transaction, product_id)? {
                    return Err(StoreError::UnknownProduct(product_id));
                }
                return Err(StoreError::NotInCart(product_id));
            }
            Ok(())
        })
        .await
    }

    async fn remove_from_cart(&self, session: &str, product_id: i64) -> Result<(), StoreError> {
        let session = session.to_owned();
        self.write(move |transaction| {
            let removed = transaction.execute(
                "DELETE FROM cart_items WHERE session = ?1 AND product_id = ?2",
                params![session, product_id],
            )?;
            if removed == 0 {
                if !product_exists(transaction, product_id)? {
                    return Err(StoreError::UnknownProduct(product_id));
                }
                return Err(StoreError::NotInCart(product_id));
            }
            Ok(())
        })
        .await
    }

    async fn begin_checkout(&self, request: CheckoutRequest) -> Result<CheckoutStart, StoreError> {
        self.write(move |transaction| {
            let existing: Option<(String, String)> = transaction
                .query_row(
                    "SELECT id, fingerprint FROM orders WHERE idempotency_key = ?1",
                    [&request.idempotency_key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            if let Some((order_id, fingerprint)) = existing {
                if fingerprint != request.fingerprint {
                    return Err(StoreError::IdempotencyKeyReused);
                }
                // A retry of a pending order makes a payment attempt of its own.
                transaction.execute(
                    "UPDATE orders SET payment_attempts = payment_attempts + 1 WHERE id = ?1 AND status = ?2",
                    params![order_id, OrderStatus::PendingPayment.as_str()],
                )?;
                let order = load_order(transaction, &order_id)?.ok_or(StoreError::UnknownOrder(order_id))?;
                return Ok(CheckoutStart::Existing(order));
            }

            let lines = cart_lines(transaction, &request.session)?;
            let Some(first) = lines.first() else {
                return Err(StoreError::CartEmpty);
            };
            let currency = first.currency.clone();
            for line in &lines {
                if line.stock < line.quantity {
                    return Err(StoreError::OutOfStock {
                        product_id: line.product_id,
                        available: line.stock,
                    });
                }
                transaction.execute(
                    "UPDATE products SET stock = stock - ?2 WHERE id = ?1",
                    params![line.product_id, line.quantity],
                )?;
            }
            let total_minor: i64 = lines.iter().map(|line| line.unit_price_minor * line.quantity).sum();
            transaction.execute(
                "INSERT INTO orders (id, session, idempotency_key, fingerprint, status, email, name, address, card_token, total_minor, currency, payment_attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1)",
                params![
                    request.order_id,
                    request.session,
                    request.idempotency_key,
                    request.fingerprint,
                    OrderStatus::PendingPayment.as_str(),
                    request.email,
                    request.name,
                    request.address,
                    request.card_token,
                    total_minor,
                    currency
                ],
            )?;
            for line in &lines {
                transaction.execute(
                    "INSERT INTO order_items (order_id, product_id, name, quantity, unit_price_minor) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![request.order_id, line.product_id, line.name, line.quantity, line.unit_price_minor],
                )?;
            }
            let order = load_order(transaction, &request.order_id)?
                .ok_or_else(|| StoreError::UnknownOrder(request.order_id.clone()))?;
            Ok(CheckoutStart::Created(order))
        })
        .await
    }

    async fn complete_checkout(
        &self,
        order_id: &str,
        outcome: PaymentOutcome,
    ) -> Result<Order, StoreError> {
        let order_id = order_id.to_owned();
        self.write(move |transaction| {
            end_payment_attempt(transaction, &order_id, false)?;
            let order = load_order(transaction, &order_id)?.ok_or_else(|| StoreError::UnknownOrder(order_id.clone()))?;
            if order.status != OrderStatus::PendingPayment {
                return Ok(order);
            }
            match &outcome {
                PaymentOutcome::Approved { charge_id } => {
                    transaction.execute(
                        "UPDATE orders SET status = ?2, charge_id = ?3 WHERE id = ?1",
                        params![order_id, OrderStatus::Paid.as_str(), charge_id],
                    )?;
                    // The cart loses what the order took: a line raised since the order was
                    // made (a retry of a pending checkout) keeps the rest.
                    // (Lines it took whole go first: a line's quantity is at least 1.)
                    let ordered = "(SELECT quantity FROM order_items WHERE order_id = ?2 AND order_items.product_id = cart_items.product_id)";
                    transaction.execute(
                        &format!("DELETE FROM cart_items WHERE session = ?1 AND quantity <= {ordered}"),
                        params![order.session, order_id],
                    )?;
                    transaction.execute(
                        &format!("UPDATE cart_items SET quantity = quantity - {ordered}
                         WHERE session = ?1 AND product_id IN (SELECT product_id FROM order_items WHERE order_id = ?2)"),
                        params![order.session, order_id],
                    )?;
                }
                PaymentOutcome::Declined { charge_id, decline_code } => {
                    transaction.execute(
                        "UPDATE orders SET status = ?2, charge_id = ?3, decline_code = ?4 WHERE id = ?1",
                        params![order_id, OrderStatus::PaymentDeclined.as_str(), charge_id, decline_code],
                    )?;
                    release_stock(transaction, &order_id)?;
                }
            }
            load_order(transaction, &order_id)?.ok_or(StoreError::UnknownOrder(order_id))
        })
        .await
    }

    async fn abandon_checkout(&self, order_id: &str) -> Result<(), StoreError> {
        let order_id = order_id.to_owned();
        self.write(move |transaction| {
            end_payment_attempt(transaction, &order_id, false)?;
            // Only an order no other attempt is charging, and that no attempt may have
            // charged, is undone.
            let undo: Option<bool> = transaction
                .query_row(
                    "SELECT status = ?2 AND payment_attempts = 0 AND maybe_charged = 0 FROM orders WHERE id = ?1",
                    params![order_id, OrderStatus::PendingPayment.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            if undo != Some(true) {
                return Ok(());
            }
            release_stock(transaction, &order_id)?;
            transaction.execute("DELETE FROM orders WHERE id = ?1", [&order_id])?;
            Ok(())
        })
        .await
    }

    async fn suspend_checkout(&self, order_id: &str) -> Result<(), StoreError> {
        let order_id = order_id.to_owned();
        self.write(move |transaction| end_payment_attempt(transaction, &order_id, true))
            .await
    }

    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        let id = id.to_owned();
        self.read(move |connection| load_order(connection, &id))
            .await
    }

    async fn record_charge(&self, charge: Charge) -> Result<Charge, StoreError> {
        self.write(move |transaction| {
            let id = if charge.id.is_empty() { new_id("ch_") } else { charge.id.clone() };
            transaction.execute(
                "INSERT INTO charges (id, idempotency_key, amount_minor, currency, card_token, status, decline_code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (idempotency_key) DO NOTHING",
                params![
                    id,
                    charge.idempotency_key,
                    charge.amount_minor,
                    charge.currency,
                    charge.card_token,
                    charge.status,
                    charge.decline_code
                ],
            )?;
            let stored = transaction.query_row(
                "SELECT id, idempotency_key, amount_minor, currency, card_token, status, decline_code, created_at
                 FROM charges WHERE idempotency_key = ?1",
                [&charge.idempotency_key],
                |row| {
                    Ok(Charge {
                        id: row.get(0)?,
                        idempotency_key: row.get(1)?,
                        amount_minor: row.get(2)?,
                        currency: row.get(3)?,
                        card_token: row.get(4)?,
                        status: row.get(5)?,
                        decline_code: row.get(6)?,
                        created_at: row.get(7)?,
                    })
                },
            )?;
            Ok(stored)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::search_expression;

    #[test]
    fn search_text_becomes_a_safe_prefix_query() {
        let cases = [
            ("lamp", Some("\"lamp\"*")),
            ("oak  lamp", Some("\"oak\"* \"lamp\"*")),
            (
                "\"); DROP TABLE products; --",
                Some("\"DROP\"* \"TABLE\"* \"products\"*"),
            ),
            ("NEAR(a b)", Some("\"NEAR\"* \"a\"* \"b\"*")),
            ("   ", None),
            ("*", None),
        ];
        for (text, expected) in cases {
            assert_eq!(search_expression(text).as_deref(), expected, "{text}");
        }
    }
}
