//! The memory tier: stored responses under their primary keys, bounded in bytes. Eviction
//! and admission are moka's (TinyLFU admission with an LRU window), weighed by each
//! object's size, so one large object does not push out many popular small ones unless it
//! is itself popular.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use moka::notification::RemovalCause;

use crate::compress::Encoding;
use crate::freshness::Freshness;
use crate::key::Variant;

/// The most variants kept under one primary key; the oldest goes first.
pub const MAX_VARIANTS: usize = 16;

/// One stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its status.
    pub status: StatusCode,
    /// Its headers, without hop-by-hop ones.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
    /// Its freshness.
    pub freshness: Freshness,
    /// The request values it answers.
    pub variant: Variant,
    /// The host and path it was stored under, for invalidation by path.
    pub host: Box<str>,
    /// See `host`.
    pub path: Box<str>,
    /// Its tags (`Surrogate-Key`, `Cache-Tag`), for invalidation by tag.
    pub tags: Box<[Box<str>]>,
    /// Its body compressed, in the encodings clients asked for so far.
    pub encoded: Box<[(Encoding, Bytes)]>,
}

impl Stored {
    /// Bytes it takes, roughly: bodies, headers and bookkeeping.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let encoded: usize = self.encoded.iter().map(|(_, body)| body.len()).sum();
        (self.body.len() + encoded + headers + self.host.len() + self.path.len() + 256) as u64
    }

    /// Its body in `encoding`, if made already.
    pub fn encoded(&self, encoding: Encoding) -> Option<&Bytes> {
        self.encoded
            .iter()
            .find(|(made, _)| *made == encoding)
            .map(|(_, body)| body)
    }

    /// A copy with its body also in `encoding`.
    pub fn with_encoding(&self, encoding: Encoding, body: Bytes) -> Self {
        let mut encoded = self.encoded.to_vec();
        encoded.push((encoding, body));
        Self {
            encoded: encoded.into(),
            ..self.clone()
        }
    }
}

/// The variants stored under one primary key, newest first. Replaced whole on change, so
/// that its weight is known when it goes in.
#[derive(Debug, Clone)]
struct Variants(Arc<[Arc<Stored>]>);

impl Variants {
    fn weight(&self) -> u32 {
        let total: u64 = self.0.iter().map(|stored| stored.weight()).sum();
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// Stored responses by primary key.
#[derive(Debug)]
pub struct Store {
    entries: moka::sync::Cache<Arc<str>, Variants>,
    evictions: Arc<AtomicU64>,
}

impl Store {
    /// A store holding about `capacity_bytes` of responses.
    pub fn new(capacity_bytes: u64) -> Self {
        Self::with_eviction_hook(capacity_bytes, || {})
    }

    /// A store that also calls `on_eviction` for each object it evicts for room.
    pub fn with_eviction_hook(
        capacity_bytes: u64,
        on_eviction: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evictions);
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|_key: &Arc<str>, variants: &Variants| variants.weight())
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                    on_eviction();
                }
            })
            .build();
        Self { entries, evictions }
    }

    /// The newest stored response under `key` whose variant `request` selects.
    pub fn lookup(&self, key: &str, request: &HeaderMap) -> Option<Arc<Stored>> {
        let variants = self.entries.get(key)?;
        variants
            .0
            .iter()
            .find(|stored| stored.variant.matches(request))
            .cloned()
    }

    /// Stores a response, in place of the one of the same variant.
    pub fn insert(&self, key: Arc<str>, stored: Arc<Stored>) {
        self.entries.entry(key).and_upsert_with(|existing| {
            let mut variants = vec![Arc::clone(&stored)];
            if let Some(existing) = existing {
                variants.extend(
                    existing
                        .value()
                        .0
                        .iter()
                        .filter(|old| !old.variant.same_as(&stored.variant))
                        .take(MAX_VARIANTS - 1)
                        .cloned(),
                );
            }
            Variants(variants.into())
        });
    }

    /// Replaces `old` (as found by [`Store::lookup`]) with `new`, if `old` is still stored;
    /// a 304 that freshened a response does this.
    pub fn replace(&self, key: Arc<str>, old: &Arc<Stored>, new: Arc<Stored>) {
        self.entries.entry(key).and_compute_with(|existing| {
            let Some(existing) = existing else {
                return moka::ops::compute::Op::Nop;
            };
            let variants = &existing.value().0;
            if !variants.iter().any(|stored| Arc::ptr_eq(stored, old)) {
                return moka::ops::compute::Op::Nop;
            }
            let replaced: Vec<Arc<Stored>> = variants
                .iter()
                .map(|stored| {
                    if Arc::ptr_eq(stored, old) {
                        Arc::clone(&new)
                    } else {
                        Arc::clone(stored)
                    }
                })
                .collect();
            moka::ops::compute::Op::Put(Variants(replaced.into()))
        });
    }

    /// Drops every variant under `key`; whether there was any.
    pub fn remove(&self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Drops every primary key with a stored response `matches` selects, and returns them.
    /// It visits every entry: an operator's invalidation, not a request's.
    pub fn remove_where(&self, matches: impl Fn(&Stored) -> bool) -> Vec<Arc<str>> {
        let doomed: Vec<Arc<str>> = self
            .entries
            .iter()
            .filter(|(_, variants)| variants.0.iter().any(|stored| matches(stored)))
            .map(|(key, _)| Arc::clone(key.as_ref()))
            .collect();
        doomed
            .into_iter()
            .filter(|key| self.entries.remove(key.as_ref()).is_some())
            .collect()
    }

    /// Objects evicted for room since the start.
    pub fn evictions(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.evictions.load(Ordering::Relaxed)
    }

    /// The primary keys stored and their total weight in bytes.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}
