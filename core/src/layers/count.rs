//! Call counting.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Call, Layer, Op};
use crate::error::Result;

/// Calls and failures per [`Op`]. Clones share the counts, so keep one clone to read
/// while another sits in a [`Counting`] layer (or several: one counter may count the
/// node, balancer and DNS providers together).
///
/// ```
/// use triad_core::layers::{CallCounter, Op};
///
/// let c = CallCounter::new();
/// assert_eq!(c.total(), 0);
/// assert_eq!(c.snapshot().get("create_node"), None);
/// ```
#[derive(Clone, Default)]
pub struct CallCounter {
    inner: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    calls: [AtomicU64; Op::ALL.len()],
    failures: [AtomicU64; Op::ALL.len()],
}

impl CallCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn record_call(&self, op: Op) {
        self.inner.calls[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn record_failure(&self, op: Op) {
        self.inner.failures[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `op` (successful or not).
    pub fn count(&self, op: Op) -> u64 {
        self.inner.calls[op.index()].load(Ordering::Relaxed)
    }

    /// Calls of `op` that returned an error.
    pub fn failures(&self, op: Op) -> u64 {
        self.inner.failures[op.index()].load(Ordering::Relaxed)
    }

    /// Calls of every op.
    pub fn total(&self) -> u64 {
        Op::ALL.iter().map(|&op| self.count(op)).sum()
    }

    /// Calls of mutating ops ([`Op::is_mutating`]).
    pub fn mutating(&self) -> u64 {
        Op::ALL
            .iter()
            .filter(|op| op.is_mutating())
            .map(|&op| self.count(op))
            .sum()
    }

    /// Failed calls of every op.
    pub fn total_failures(&self) -> u64 {
        Op::ALL.iter().map(|&op| self.failures(op)).sum()
    }

    /// Calls per op name ([`Op::name`]), for the ops called at least once.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Op::ALL
            .iter()
            .map(|&op| (op.name(), self.count(op)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Failures per op name, for the ops that failed at least once.
    pub fn failure_snapshot(&self) -> BTreeMap<&'static str, u64> {
        Op::ALL
            .iter()
            .map(|&op| (op.name(), self.failures(op)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Set every count back to zero.
    pub fn reset(&self) {
        for a in self.inner.calls.iter().chain(self.inner.failures.iter()) {
            a.store(0, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCounter")
            .field("calls", &self.snapshot())
            .field("failures", &self.failure_snapshot())
            .finish()
    }
}

/// Counts every call that passes through it into a [`CallCounter`] as it starts, and
/// the ones that return an error as they end (a call dropped midway, say by an outer
/// [`Timeout`](super::Timeout), is counted as a call but not as a failure). Placed nearest the provider (first in a [`Stack`](super::Stack)), it
/// counts the attempts that reach the provider, retries included.
#[derive(Clone, Debug, Default)]
pub struct Counting {
    counter: CallCounter,
}

impl Counting {
    /// Count into `counter`.
    pub fn new(counter: CallCounter) -> Self {
        Self { counter }
    }

    /// The counter.
    pub fn counter(&self) -> &CallCounter {
        &self.counter
    }
}

impl Layer for Counting {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        _resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            self.counter.record_call(op);
            let result = inner().await;
            if result.is_err() {
                self.counter.record_failure(op);
            }
            result
        })
    }
}
