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
pub mod disk;
pub mod flights;
pub mod freshness;
pub mod key;
pub mod range;
pub mod store;
pub mod validation;

use std::sync::Arc;

use http::HeaderMap;

pub use directives::{Directives, Seconds};
pub use disk::Disk;
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

/// An edge's cache: the memory tier, an optional disk tier behind it, and the fetches
/// under way, shared by every listener and kept across reloads.
#[derive(Debug)]
pub struct Cache {
    /// The stored responses in memory.
    pub store: Store,
    /// Fetches under way, for coalescing.
    pub flights: Arc<Flights>,
    /// The largest body stored; larger ones stream through unstored.
    pub max_object_bytes: usize,
    /// The disk tier, if any.
    disk: Option<Arc<Disk>>,
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
            disk: None,
        }
    }

    /// The same cache with a disk tier behind the memory.
    pub fn with_disk(mut self, disk: Disk) -> Self {
        self.disk = Some(Arc::new(disk));
        self
    }

    /// The stored response under `key` that `request` selects: from memory, else from
    /// disk (read on the blocking pool, and kept in memory again).
    pub async fn lookup(&self, key: &Arc<str>, request: &HeaderMap) -> Option<Arc<Stored>> {
        if let Some(stored) = self.store.lookup(key, request) {
            return Some(stored);
        }
        let disk = self.disk.as_ref().filter(|disk| disk.has(key, request))?;
        let (disk, read_key, headers) = (Arc::clone(disk), Arc::clone(key), request.clone());
        let read = tokio::task::spawn_blocking(move || disk.read(&read_key, &headers)).await;
        let stored = Arc::new(read.ok()?.ok()??);
        self.store.insert(Arc::clone(key), Arc::clone(&stored));
        Some(stored)
    }

    /// Stores a response, in memory and on disk (written on the blocking pool).
    pub fn insert(&self, key: Arc<str>, stored: Arc<Stored>) {
        self.store.insert(Arc::clone(&key), Arc::clone(&stored));
        self.persist(key, stored);
    }

    /// Replaces `old` with `new` (a response freshened by a 304), in memory and on disk.
    pub fn replace(&self, key: Arc<str>, old: &Arc<Stored>, new: Arc<Stored>) {
        self.store.replace(Arc::clone(&key), old, Arc::clone(&new));
        self.persist(key, new);
    }

    fn persist(&self, key: Arc<str>, stored: Arc<Stored>) {
        if let Some(disk) = &self.disk {
            let disk = Arc::clone(disk);
            tokio::task::spawn_blocking(move || {
                if let Err(error) = disk.write(&key, &stored) {
                    tracing::warn!(%error, key = %key, "cannot write a cached object to disk");
                }
            });
        }
    }

    /// Drops every variant stored under `key`; the disk's files go on the blocking pool.
    pub fn remove(&self, key: &str) {
        self.store.remove(key);
        if let Some(disk) = &self.disk {
            let files = disk.unindex(key);
            if !files.is_empty() {
                tokio::task::spawn_blocking(move || Disk::delete(&files));
            }
        }
    }

    /// Drops every key with a stored response `matches` selects (by host, path and tags),
    /// in memory and on disk, and says how many keys went.
    pub fn remove_where(&self, matches: impl Fn(&str, &str, &[Box<str>]) -> bool) -> usize {
        let mut keys: std::collections::HashSet<Arc<str>> = self
            .store
            .remove_where(|stored| matches(&stored.host, &stored.path, &stored.tags))
            .into_iter()
            .collect();
        if let Some(disk) = &self.disk {
            let (on_disk, files) = disk.unindex_where(&matches);
            keys.extend(on_disk);
            Disk::delete(&files);
        }
        keys.len()
    }

    /// The keys and bytes in memory, and the objects and bytes on disk.
    pub fn usage(&self) -> ((u64, u64), Option<(u64, u64)>) {
        (
            self.store.usage(),
            self.disk.as_ref().map(|disk| disk.usage()),
        )
    }
}

#[cfg(test)]
mod test_support {
    use http::{HeaderMap, HeaderName, HeaderValue};

    /// A header map from (name, value) pairs, repeated names appended in order.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                HeaderValue::from_str(value).expect("a value"),
            );
        }
        map
    }
}
