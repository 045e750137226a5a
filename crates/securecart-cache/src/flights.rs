//! Request coalescing: while one request fetches an object from the origin, others for the
//! same primary key wait for it instead of going to the origin too (Varnish's waiting
//! list, nginx's `proxy_cache_lock`). The fetch ends when its response is stored or known
//! not to be storable; the waiters then look again, and those that still miss go to the
//! origin themselves.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

/// The fetches under way, by primary key.
#[derive(Debug, Default)]
pub struct Flights {
    under_way: Mutex<HashMap<Arc<str>, watch::Receiver<()>>>,
}

/// What a request that missed does.
#[derive(Debug)]
pub enum Join {
    /// Nobody fetches this key: this request does, and ends the fetch when the guard drops.
    Leader(FlightGuard),
    /// Another request fetches it: wait for it with [`Waiter::wait`].
    Waiter(Waiter),
}

/// Ends a fetch when dropped: the response was stored, or will not be.
#[derive(Debug)]
pub struct FlightGuard {
    flights: Arc<Flights>,
    key: Arc<str>,
    _done: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights.under_way.lock().remove(&self.key);
    }
}

/// A request waiting for another's fetch.
#[derive(Debug)]
pub struct Waiter(watch::Receiver<()>);

impl Waiter {
    /// Returns when the fetch has ended.
    pub async fn wait(mut self) {
        // The sender never sends: it is dropped when the fetch ends, which ends this wait.
        while self.0.changed().await.is_ok() {}
    }
}

impl Flights {
    /// Joins the fetch of `key`, or starts it.
    pub fn join(self: &Arc<Self>, key: &Arc<str>) -> Join {
        let mut under_way = self.under_way.lock();
        if let Some(receiver) = under_way.get(key) {
            return Join::Waiter(Waiter(receiver.clone()));
        }
        let (done, receiver) = watch::channel(());
        under_way.insert(Arc::clone(key), receiver);
        Join::Leader(FlightGuard {
            flights: Arc::clone(self),
            key: Arc::clone(key),
            _done: done,
        })
    }

    /// How many fetches are under way.
    pub fn len(&self) -> usize {
        self.under_way.lock().len()
    }

    /// Whether no fetch is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_the_fetch_ends() {
        let flights = Arc::new(Flights::default());
        let key: Arc<str> = Arc::from("shop.test/a");
        let Join::Leader(guard) = flights.join(&key) else {
            panic!("the first request leads");
        };
        let Join::Waiter(waiter) = flights.join(&key) else {
            panic!("the second request waits");
        };
        let other: Arc<str> = Arc::from("shop.test/b");
        assert!(matches!(flights.join(&other), Join::Leader(_)));
        let waiting = tokio::spawn(waiter.wait());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(guard);
        waiting.await.expect("the waiter ends");
        assert!(flights.is_empty());
        assert!(matches!(flights.join(&key), Join::Leader(_)));
    }
}
