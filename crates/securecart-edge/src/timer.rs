//! A timer kept for a connection's life (a client's, for its request heads; a target's,
//! for its answers' heads), moved to a wait's later deadline only when it fires before
//! it. Most waits then register nothing with tokio's timer wheel (behind a lock), where a
//! `timeout_at` per wait registers a timer and removes it again: the timer is registered
//! by its first wait, when it fires (about once per timeout while the connection is
//! busy), and when a wait's deadline is earlier than the timer's.
//!
//! A timer keeps the waker of the last task that waited on it until it fires: a pooled
//! target connection's timer thus holds the last request's client task (its allocation)
//! up to the upstream timeout after that request, one task per pooled connection at most.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// Waits until `deadline` on `timer`, which stays registered at the deadline it was set
/// to: a later deadline is taken up only when the timer fires before it (an earlier one
/// at once).
pub(crate) async fn until(mut timer: Pin<&mut Sleep>, deadline: Instant) {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        timer.as_mut().await;
        if timer.deadline() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

/// A timer for a connection's waits, before its first: set far ahead, it is moved to the
/// first wait's deadline before it is polled, and so registered only then.
pub(crate) fn unset() -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep_until(
        Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600),
    ))
}
