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
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

pub use directives::{Directives, Seconds};
pub use disk::Disk;
pub use flights::{FlightGuard, Flights, Join};
pub use freshness::{Freshness, NotStorable, Reuse, Ttl};
pub use key::{Forwarded, KeyPolicy, OriginPolicy, QueryKey, Variant};
pub use store::{Store, Stored};

/// How one cache behaviour treats what it caches: TTLs, the key, what of a client's request
/// the origin sees, and whether text is answered compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness bounds.
    pub ttl: Ttl,
    /// What makes the key.
    pub key: KeyPolicy,
    /// Which of the client's headers and cookies go to the origin.
    pub origin: OriginPolicy,
    /// Whether stored text is answered compressed where the client accepts it
    /// (CloudFront's "compress objects automatically", on by default).
    pub compress: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            ttl: Ttl::default(),
            key: KeyPolicy::default(),
            origin: OriginPolicy::default(),
            compress: true,
        }
    }
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
    /// Invalidations so far, for the stores under way (see [`Generation`]).
    invalidations: Arc<Invalidations>,
    /// Bytes held by the copies of answers being stored as they stream (see
    /// [`Cache::reserve_copy`]), and the most they may hold.
    copies: AtomicU64,
    copies_limit: u64,
    /// Background refreshes under way (see [`Cache::begin_refresh`]).
    refreshes: Arc<std::sync::atomic::AtomicUsize>,
    /// Disk writes and deletions queued or under way, for [`Cache::flush`].
    disk_tasks: Arc<DiskTasks>,
}

/// The disk tier's tasks on the blocking pool: a stop waits for them, since the pool drops
/// the queued ones at shutdown (a write lost leaves the restarted cache colder; a deletion
/// lost would bring an invalidated object back).
#[derive(Debug, Default)]
struct DiskTasks {
    count: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

/// Counts a disk task until it ends, run or dropped unrun.
struct DiskTask(Arc<DiskTasks>);

impl Drop for DiskTask {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

/// The most background refreshes under way at once ([`Cache::begin_refresh`]).
pub const MAX_REFRESHES: usize = 64;

/// A background refresh's place ([`Cache::begin_refresh`]), given back when it goes.
#[derive(Debug)]
pub struct Refresh(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Refresh {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many keys' latest invalidations are remembered; past it, the oldest are forgotten
/// and every store under way is given up (as after a removal by pattern).
const REMEMBERED_INVALIDATIONS: usize = 100_000;

/// How long a key's invalidation is remembered: longer than a fetch lasts.
const INVALIDATION_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// The invalidations of a cache, numbered in order: the latest removal by pattern or tag
/// (which may touch any key, fetched or not) and each key's latest removal, so that a
/// store under way is given up exactly when its own key (or possibly any) was invalidated
/// after its fetch began.
#[derive(Debug)]
struct Invalidations {
    /// The number of the latest invalidation.
    latest: AtomicU64,
    /// The number of the latest removal by pattern or tag.
    everything: AtomicU64,
    /// Each key's latest invalidation: its number, and when.
    keys: parking_lot::Mutex<std::collections::HashMap<Arc<str>, (u64, std::time::Instant)>>,
}

impl Invalidations {
    fn new() -> Self {
        Self {
            latest: AtomicU64::new(0),
            everything: AtomicU64::new(0),
            keys: parking_lot::Mutex::default(),
        }
    }

    fn now(&self) -> Generation {
        Generation(self.latest.load(Ordering::Acquire))
    }

    /// Whether `key` was invalidated (or possibly was) since `since`. An invalidation is
    /// written (`everything`, or its key's entry) before `latest` moves, so a `latest` seen
    /// moved shows what moved it.
    fn since(&self, key: &str, since: Generation) -> bool {
        if self.latest.load(Ordering::Acquire) == since.0 {
            return false;
        }
        self.everything.load(Ordering::Acquire) > since.0
            || self
                .keys
                .lock()
                .get(key)
                .is_some_and(|(number, _)| *number > since.0)
    }

    fn key(&self, key: &str) {
        let mut keys = self.keys.lock();
        let number = self.latest.load(Ordering::Acquire) + 1;
        if keys.len() >= REMEMBERED_INVALIDATIONS {
            // Forget what is old; if that frees little, forget everything (and give up
            // every store under way), so that the next ones are cheap again.
            let now = std::time::Instant::now();
            keys.retain(|_, (_, when)| now.duration_since(*when) < INVALIDATION_MEMORY);
            if keys.len() >= REMEMBERED_INVALIDATIONS / 2 {
                keys.clear();
                self.everything.store(number, Ordering::Release);
            }
        }
        keys.insert(Arc::from(key), (number, std::time::Instant::now()));
        self.latest.store(number, Ordering::Release);
    }

    fn everything(&self) {
        // (Under the lock, as `key`, so that the two never give one number twice.)
        let _keys = self.keys.lock();
        let number = self.latest.load(Ordering::Acquire) + 1;
        self.everything.store(number, Ordering::Release);
        self.latest.store(number, Ordering::Release);
    }
}

/// Where the cache's invalidations stood when a fetch began: a response fetched across an
/// invalidation of its key (or of all keys) is not stored, so that what was invalidated
/// does not come back when a fetch under way ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

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
            invalidations: Arc::new(Invalidations::new()),
            copies: AtomicU64::new(0),
            // A quarter of the memory tier, or one object at least.
            copies_limit: (capacity_bytes / 4).max(max_object_bytes as u64),
            refreshes: Arc::default(),
            disk_tasks: Arc::default(),
        }
    }

    /// Runs `task` (file I/O) on the blocking pool, counted until it ends.
    fn on_disk(&self, task: impl FnOnce() + Send + 'static) {
        self.disk_tasks.count.fetch_add(1, Ordering::AcqRel);
        let counted = DiskTask(Arc::clone(&self.disk_tasks));
        tokio::task::spawn_blocking(move || {
            let _counted = counted;
            task();
        });
    }

    /// Waits, at most `within`, for the disk writes and deletions queued or under way;
    /// `false` if some were still left (an edge's stop calls it after draining).
    pub async fn flush(&self, within: std::time::Duration) -> bool {
        let tasks = &self.disk_tasks;
        tokio::time::timeout(within, async {
            loop {
                let done = tasks.done.notified();
                if tasks.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                done.await;
            }
        })
        .await
        .is_ok()
    }

    /// Takes `bytes` more for a copy of an answer being stored as it streams; `false` when
    /// the copies in progress would hold more than a quarter of the memory tier (the copy
    /// is then given up and the answer streams on unstored), so that many large misses at
    /// once stay within the cache's memory.
    pub fn reserve_copy(&self, bytes: usize) -> bool {
        let bytes = bytes as u64;
        self.copies
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes)
                    .filter(|total| *total <= self.copies_limit)
            })
            .is_ok()
    }

    /// Gives back what [`Cache::reserve_copy`] took.
    pub fn release_copy(&self, bytes: usize) {
        self.copies.fetch_sub(bytes as u64, Ordering::AcqRel);
    }

    /// A place for one more background refresh (`stale-while-revalidate`), or `None` when
    /// [`MAX_REFRESHES`] are under way: the stale copy answers all the same, and a later
    /// request starts the refresh, so that a spray of requests for many stale objects
    /// sends the origin a bounded number of fetches at once. The place is given back when
    /// the [`Refresh`] goes.
    pub fn begin_refresh(&self) -> Option<Refresh> {
        self.refreshes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |under_way| {
                (under_way < MAX_REFRESHES).then_some(under_way + 1)
            })
            .ok()
            .map(|_| Refresh(Arc::clone(&self.refreshes)))
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
        let since = self.generation();
        let (disk, read_key, headers) = (Arc::clone(disk), Arc::clone(key), request.clone());
        let read = tokio::task::spawn_blocking(move || disk.read(&read_key, &headers)).await;
        let stored = Arc::new(read.ok()?.ok()??);
        // Invalidated while it was read: not brought back.
        if self.invalidations.since(key, since) {
            return None;
        }
        self.store.insert(Arc::clone(key), Arc::clone(&stored));
        if self.invalidations.since(key, since) {
            self.store.remove(key);
            return None;
        }
        Some(stored)
    }

    /// Where the cache's invalidations stand, taken before a fetch whose response may be
    /// stored (whether its key was invalidated since is asked when it is stored).
    pub fn generation(&self) -> Generation {
        self.invalidations.now()
    }

    /// Stores a response, in memory and on disk (written on the blocking pool), unless its
    /// key was invalidated since `since` (the fetch then began before the invalidation);
    /// whether it was stored.
    pub fn insert(&self, key: Arc<str>, stored: Arc<Stored>, since: Generation) -> bool {
        if self.invalidations.since(&key, since) {
            return false;
        }
        self.store.insert(Arc::clone(&key), Arc::clone(&stored));
        // An invalidation between the look and the store: undone.
        if self.invalidations.since(&key, since) {
            self.store.remove(&key);
            return false;
        }
        self.persist(key, stored, since);
        true
    }

    /// Replaces `old` with `new` (a response freshened by a 304), in memory and on disk,
    /// unless its key was invalidated since `since`.
    pub fn replace(&self, key: Arc<str>, old: &Arc<Stored>, new: Arc<Stored>, since: Generation) {
        if self.invalidations.since(&key, since) {
            return;
        }
        self.store.replace(Arc::clone(&key), old, Arc::clone(&new));
        if self.invalidations.since(&key, since) {
            self.store.remove(&key);
            return;
        }
        self.persist(key, new, since);
    }

    fn persist(&self, key: Arc<str>, stored: Arc<Stored>, since: Generation) {
        if let Some(disk) = &self.disk {
            let disk = Arc::clone(disk);
            let invalidations = Arc::clone(&self.invalidations);
            self.on_disk(move || {
                // Invalidated while the write waited: not written.
                if invalidations.since(&key, since) {
                    return;
                }
                if let Err(error) = disk.write(&key, &stored) {
                    tracing::warn!(%error, key = %key, "cannot write a cached object to disk");
                }
                // Invalidated while it was written (the invalidation found no file yet):
                // removed again.
                if invalidations.since(&key, since) {
                    Disk::delete(&disk.unindex(&key));
                }
            });
        }
    }

    /// Drops every variant stored under `key`; the disk's files go on the blocking pool.
    /// Stores of it under way are given up (see [`Generation`]).
    pub fn remove(&self, key: &str) {
        self.invalidations.key(key);
        self.store.remove(key);
        if let Some(disk) = &self.disk {
            let files = disk.unindex(key);
            if !files.is_empty() {
                self.on_disk(move || Disk::delete(&files));
            }
        }
    }

    /// Drops every key with a stored response `matches` selects (by host, path and tags),
    /// in memory and on disk, and says how many keys went.
    pub fn remove_where(&self, matches: impl Fn(&str, &str, &[Box<str>]) -> bool) -> usize {
        // Any key may match: every store under way is given up.
        self.invalidations.everything();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Cache, Disk};
    use crate::disk::tests::{asking, stored};

    #[tokio::test]
    async fn a_store_under_way_when_its_key_is_invalidated_is_given_up() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let cache = Cache::new(1 << 20, 1 << 20, || {})
            .with_disk(Disk::open(directory.path(), 1 << 20).expect("disk"));
        let key: Arc<str> = Arc::from("shop.test/a");
        // A fetch begins; its key is invalidated before the answer is stored: the
        // answer is not stored, in memory or on disk.
        let since = cache.generation();
        cache.remove(&key);
        assert!(!cache.insert(Arc::clone(&key), Arc::new(stored("/a", "old", "en")), since));
        assert!(cache.lookup(&key, &asking("en")).await.is_none());
        // A fetch begun after the invalidation stores.
        let since = cache.generation();
        assert!(cache.insert(Arc::clone(&key), Arc::new(stored("/a", "new", "en")), since));
        let found = cache.lookup(&key, &asking("en")).await.expect("stored");
        assert_eq!(&found.body[..], b"new");
        // Another key's invalidation leaves this store alone.
        let third: Arc<str> = Arc::from("shop.test/c");
        let since = cache.generation();
        cache.remove("shop.test/elsewhere");
        assert!(cache.insert(
            Arc::clone(&third),
            Arc::new(stored("/c", "kept", "en")),
            since
        ));
        // A removal by pattern (or tag), which may touch any key, gives up every store.
        let other: Arc<str> = Arc::from("shop.test/b");
        let since = cache.generation();
        cache.remove_where(|_, _, _| false);
        assert!(!cache.insert(
            Arc::clone(&other),
            Arc::new(stored("/b", "old", "en")),
            since
        ));
    }

    #[tokio::test]
    async fn a_flush_waits_for_the_disk_writes_and_deletions_queued() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let cache = Cache::new(1 << 20, 1 << 20, || {})
            .with_disk(Disk::open(directory.path(), 1 << 20).expect("disk"));
        for n in 0..50 {
            let key: Arc<str> = Arc::from(format!("shop.test/{n}"));
            let since = cache.generation();
            assert!(cache.insert(key, Arc::new(stored(&format!("/{n}"), "x", "en")), since));
        }
        cache.remove("shop.test/7");
        assert!(cache.flush(std::time::Duration::from_secs(30)).await);
        // Every write and the deletion are on disk: a restarted tier finds 49 objects.
        let reopened = Disk::open(directory.path(), 1 << 20).expect("disk");
        assert_eq!(reopened.usage().0, 49);
        // With nothing queued, a flush ends at once.
        assert!(cache.flush(std::time::Duration::ZERO).await);
    }

    #[test]
    fn copies_of_answers_being_stored_hold_at_most_a_quarter_of_the_memory() {
        let cache = Cache::new(4096, 512, || {});
        assert!(cache.reserve_copy(600));
        assert!(cache.reserve_copy(424));
        assert!(!cache.reserve_copy(1), "1,024 bytes held already");
        cache.release_copy(600);
        assert!(cache.reserve_copy(600));
        // One object at least, however small the memory.
        let small = Cache::new(100, 512, || {});
        assert!(small.reserve_copy(512));
    }

    #[test]
    fn background_refreshes_are_bounded_and_give_their_places_back() {
        let cache = Cache::new(4096, 512, || {});
        let places: Vec<_> = (0..super::MAX_REFRESHES)
            .map(|_| cache.begin_refresh().expect("a place"))
            .collect();
        assert!(cache.begin_refresh().is_none(), "every place is taken");
        drop(places);
        assert!(cache.begin_refresh().is_some());
    }
}
