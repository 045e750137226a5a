//! SecureCart's HTTP cache, the part of the edge that CloudFront plays: what may be stored
//! and for how long (RFC 9111, RFC 5861 and the CDN-targeted fields of RFC 9213), keys and
//! variants, revalidation, a memory store bounded in bytes, and request coalescing.
//!
//! It decides and stores; it does not speak to origins. The edge's cache stage
//! (`securecart-edge`'s `cache` module) asks it what to do with a request, fetches from the
//! target group, and gives it what came back.
//!
//! **API boundary:** [`Cache`] (a [`Store`] and its [`Flights`]), [`CachePolicy`], and the
//! pure functions of [`freshness`], [`key`] and [`validation`].

pub mod compress;
pub mod directives;
pub mod flights;
pub mod freshness;
pub mod key;
pub mod range;
pub mod store;
pub mod validation;

use std::sync::Arc;

pub use directives::{Directives, Seconds};
pub use flights::{FlightGuard, Flights, Join};
pub use freshness::{Freshness, NotStorable, Reuse, Ttl};
pub use key::{KeyPolicy, QueryKey, Variant};
pub use store::{Store, Stored};

/// How one cache behaviour treats what it caches: TTLs and the key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CachePolicy {
    /// Freshness bounds.
    pub ttl: Ttl,
    /// What makes the key.
    pub key: KeyPolicy,
}

/// An edge's cache: one store and its fetches under way, shared by every listener and kept
/// across reloads.
#[derive(Debug)]
pub struct Cache {
    /// The stored responses.
    pub store: Store,
    /// Fetches under way, for coalescing.
    pub flights: Arc<Flights>,
    /// The largest body stored; larger ones stream through unstored.
    pub max_object_bytes: usize,
}

impl Cache {
    /// A cache holding about `capacity_bytes`, storing bodies up to `max_object_bytes`,
    /// calling `on_eviction` for each object it evicts for room.
    pub fn new(
        capacity_bytes: u64,
        max_object_bytes: usize,
        on_eviction: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        Self {
            store: Store::with_eviction_hook(capacity_bytes, on_eviction),
            flights: Arc::new(Flights::default()),
            max_object_bytes,
        }
    }
}
