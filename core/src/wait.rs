//! Waiting until a cloud reports a state, or a deadline passes: the one poll loop
//! every provider uses (kube-runtime's `await_condition` is the model), so backoff,
//! deadlines and [`Error::Timeout`] mean the same thing everywhere.
//!
//! The schedule is shaped by what the provider expects. Without an expectation the
//! pause starts short (a fresh resource is often ready at the first or second look)
//! and doubles toward `max`, the provider's steady poll interval. With one
//! ([`Poll::expected`]: a balancer typically takes about two and a half minutes) the
//! pauses before that moment halve the time left each time (never shorter than
//! `max`), so an early resource is still seen soon while a typical one costs a
//! handful of calls; from the expected moment on the pause starts short again and
//! doubles toward `max`, which is where readiness is most likely. Either way a long
//! wait costs few calls against the cloud's request-rate limits.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use tokio::time::Instant;

/// How to poll: the first pause, doubling up to `max`, shaped by when the resource
/// is expected to be ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// The pause after the first look (and after the expected moment).
    pub initial: Duration,
    /// The longest pause: the provider's steady poll interval.
    pub max: Duration,
    /// How long the resource typically takes; zero when nothing is expected.
    pub expected: Duration,
}

/// 2 s, doubling to 15 s, nothing expected.
impl Default for Poll {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(15),
            expected: Duration::ZERO,
        }
    }
}

impl Poll {
    /// A poll that starts at `initial` and doubles up to `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            expected: Duration::ZERO,
        }
    }

    /// The same poll, for a resource that typically takes `expected`.
    pub fn expecting(mut self, expected: Duration) -> Self {
        self.expected = expected;
        self
    }

    /// The pause after a look at `elapsed` into the wait, given the last backoff
    /// pause; returns (this pause, the next backoff pause).
    fn pause(&self, elapsed: Duration, backoff: Duration) -> (Duration, Duration) {
        match self.expected.checked_sub(elapsed) {
            Some(left) if !left.is_zero() => ((left / 2).max(self.max).min(left), self.initial),
            _ => (backoff, (backoff * 2).min(self.max)),
        }
    }

    /// Call `check` until it returns `Some`, pausing with backoff between calls; an
    /// error from `check` ends the wait. After `timeout`: [`Error::Timeout`] naming
    /// `resource` and `state`.
    pub async fn until<T, F, Fut>(
        &self,
        timeout: Duration,
        resource: &str,
        state: &str,
        mut check: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let start = Instant::now();
        let mut backoff = self.initial;
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(Error::Timeout {
                    resource: resource.to_owned(),
                    state: state.to_owned(),
                    after: timeout,
                });
            }
            let (pause, next) = self.pause(elapsed, backoff);
            backoff = next;
            let wait = pause.min(timeout - elapsed);
            tracing::debug!(resource, state, ?wait, "waiting");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backs_off_and_times_out() {
        let poll = Poll::new(Duration::from_secs(1), Duration::from_secs(4));
        let mut calls = 0;
        let r: Result<()> = poll
            .until(Duration::from_secs(20), "node x", "running", || {
                calls += 1;
                async { Ok(None) }
            })
            .await;
        // Pauses 1, 2, 4, 4, 4, 4, 1 (the rest): 8 calls.
        assert_eq!(calls, 8);
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");

        let mut n = 0;
        let v = poll
            .until(Duration::from_secs(20), "node x", "running", || {
                n += 1;
                let done = n == 3;
                async move { Ok(done.then_some(7)) }
            })
            .await
            .unwrap();
        assert_eq!((v, n), (7, 3));
    }

    /// The instants (seconds into the wait) at which `poll` looks, for a resource
    /// that is never ready within `timeout`.
    async fn looks(poll: Poll, timeout: u64) -> Vec<u64> {
        let start = Instant::now();
        let mut at = Vec::new();
        let _: Result<()> = poll
            .until(Duration::from_secs(timeout), "lb x", "active", || {
                at.push(start.elapsed().as_secs());
                async { Ok(None) }
            })
            .await;
        at
    }

    #[tokio::test(start_paused = true)]
    async fn an_expected_latency_shapes_the_pauses() {
        let poll = Poll::new(Duration::from_secs(1), Duration::from_secs(10))
            .expecting(Duration::from_secs(160));
        // Halving the time left (80, 40, 20, then `max`), short again at 160.
        assert_eq!(
            looks(poll, 200).await,
            [0, 80, 120, 140, 150, 160, 161, 163, 167, 175, 185, 195, 200]
        );
        // Nothing expected: plain backoff.
        let plain = Poll::new(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(looks(plain, 30).await, [0, 1, 3, 7, 15, 25, 30]);
    }
}
