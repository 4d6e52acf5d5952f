//! Concurrent identical reads share one call. The plan discovers everything at once
//! (the DNS lookup and the owned records both need the zone's record sets and its
//! managed zone); the first caller makes the call, callers that arrive while it is in
//! flight get its result, and a caller after it finished makes a new one, so nothing
//! is served older than a read that raced it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use triad_core::error::Result;

/// The reads in flight, by key.
pub(crate) struct Flights<T> {
    inflight: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Flights<T> {
    /// The result of `read` for `key`, shared with every concurrent caller.
    pub(crate) async fn share<F, Fut>(&self, key: &str, read: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cell = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let out = cell.get_or_try_init(read).await.cloned();
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if inflight.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_reads_share_one_call_later_reads_make_a_new_one() {
        let flights = Flights::<u32>::default();
        let calls = AtomicU32::new(0);
        let read = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::task::yield_now().await;
            Ok(n)
        };
        let (a, b) = tokio::join!(flights.share("k", read), flights.share("k", read));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
        assert_eq!(flights.share("k", read).await.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
