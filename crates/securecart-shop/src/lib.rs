//! The shop: five services that each run as their own process (`securecart shop <service>`),
//! share their region's store, and speak JSON over HTTP.
//!
//! - **catalog**: products, categories, search, pagination, product images.
//! - **cart**: one cart per session cookie.
//! - **checkout**: cart to order, once per `Idempotency-Key`; pays through payments.
//! - **payments**: a simulated third-party payment provider.
//! - **storefront**: HTML pages and static assets over the JSON APIs.
//!
//! **API boundary:** a service knows its own address, its store and (for checkout) the
//! payment provider's addresses, through [`ShopConfig`]; it knows nothing of topology files,
//! regions other than its own name, or the edge in front of it.

pub mod api;
mod cart;
mod catalog;
pub mod catalog_data;
mod checkout;
mod observe;
pub mod payments;
mod storefront;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use prometheus_client::registry::Registry;
use securecart_store::{SqliteStore, Store, StoreError};
use securecart_telemetry::{AdminServer, HttpMetrics, MetricsRegistry, Readiness};
use tokio::net::TcpListener;

pub use checkout::PaymentsClient;

/// The largest request body a shop API accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One of the shop's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShopService {
    /// Products, categories, search and images.
    Catalog,
    /// Carts.
    Cart,
    /// Orders.
    Checkout,
    /// The simulated payment provider.
    Payments,
    /// Pages and assets.
    Storefront,
}

impl ShopService {
    /// The service's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShopService::Catalog => "catalog",
            ShopService::Cart => "cart",
            ShopService::Checkout => "checkout",
            ShopService::Payments => "payments",
            ShopService::Storefront => "storefront",
        }
    }
}

impl fmt::Display for ShopService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ShopService {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            ShopService::Catalog,
            ShopService::Cart,
            ShopService::Checkout,
            ShopService::Payments,
            ShopService::Storefront,
        ]
        .into_iter()
        .find(|service| service.as_str() == name)
        .ok_or_else(|| format!("unknown service `{name}`"))
    }
}

/// What one service process needs to run.
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// Which service.
    pub service: ShopService,
    /// The region's name, shown in pages and logs.
    pub region: String,
    /// Where the service listens.
    pub listen: SocketAddr,
    /// Where `/metrics` and `/healthz` are served.
    pub admin: SocketAddr,
    /// The region's database file.
    pub store_path: PathBuf,
    /// The payment provider's replicas (checkout only).
    pub payments: Vec<SocketAddr>,
}

/// Why a service could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShopError {
    /// The store could not be opened or seeded.
    #[error("store {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// The store's error.
        source: StoreError,
    },
    /// An address could not be bound or served.
    #[error("{address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// What every handler shares.
#[derive(Clone)]
pub struct ShopState {
    /// The region's store.
    pub store: Arc<dyn Store>,
    /// The region's name.
    pub region: String,
    /// The payment provider (checkout only).
    pub payments: Option<PaymentsClient>,
    /// The storefront's asset version.
    pub asset_version: String,
}

impl fmt::Debug for ShopState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopState")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ShopState {
    /// The state of a service on a store.
    pub fn new(store: Arc<dyn Store>, region: &str, payments: Vec<SocketAddr>) -> Self {
        Self {
            store,
            region: region.to_owned(),
            payments: (!payments.is_empty()).then(|| PaymentsClient::new(payments)),
            asset_version: storefront::asset_version(),
        }
    }
}

/// The router of one service, with the request middleware; `metrics` records its requests.
pub fn router(service: ShopService, state: ShopState, metrics: HttpMetrics) -> Router {
    let routes = match service {
        ShopService::Catalog => catalog::routes(),
        ShopService::Cart => cart::routes(),
        ShopService::Checkout => checkout::routes(),
        ShopService::Payments => payments::routes(),
        ShopService::Storefront => storefront::routes(),
    };
    routes
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            observe::observe,
        ))
}

/// Opens a region's store and makes sure it holds the generated catalog.
pub async fn open_store(path: &std::path::Path) -> Result<SqliteStore, StoreError> {
    let opened_path = path.to_owned();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&opened_path))
        .await
        .map_err(|error| StoreError::Database(error.to_string()))??;
    let inserted = store
        .seed_catalog(catalog_data::categories(), catalog_data::products())
        .await?;
    if inserted > 0 {
        tracing::info!(products = inserted, path = %path.display(), "seeded the catalog");
    }
    Ok(store)
}

/// Runs a service until `shutdown` completes, then drains its connections.
pub async fn run(
    config: ShopConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ShopError> {
    let store = open_store(&config.store_path)
        .await
        .map_err(|source| ShopError::Store {
            path: config.store_path.display().to_string(),
            source,
        })?;
    let mut registry = Registry::with_prefix_and_labels(
        "securecart_shop",
        [(
            std::borrow::Cow::Borrowed("service"),
            std::borrow::Cow::Borrowed(config.service.as_str()),
        )]
        .into_iter(),
    );
    let metrics = HttpMetrics::register(&mut registry);
    let state = ShopState::new(Arc::new(store), &config.region, config.payments.clone());
    let app = router(config.service, state, metrics);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ShopError::Listen {
            address: config.listen,
            source,
        })?;
    let readiness = Readiness::default();
    let admin = AdminServer::bind(
        config.admin,
        MetricsRegistry::new(registry),
        readiness.clone(),
        Router::new(),
    )
    .await
    .map_err(|source| ShopError::Listen {
        address: config.admin,
        source,
    })?;

    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let mut admin_stop = stop.clone();
    let admin_task = tokio::spawn(admin.serve(async move {
        let _ = admin_stop.wait_for(|stopped| *stopped).await;
    }));
    readiness.set(true);
    tracing::info!(service = %config.service, listen = %config.listen, admin = %config.admin, "serving");
    let mut serve_stop = stop.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                _ = serve_stop.wait_for(|stopped| *stopped) => {}
            }
        })
        .await;
    readiness.set(false);
    let _ = stop_sender.send(true);
    let _ = admin_task.await;
    served.map_err(|source| ShopError::Listen {
        address: config.listen,
        source,
    })
}
