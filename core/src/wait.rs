//! Waiting until a cloud reports a state, or a deadline passes: the one poll loop
//! every provider uses (kube-runtime's `await_condition` is the model), so backoff,
//! deadlines and [`Error::Timeout`] mean the same thing everywhere.
//!
//! The pause starts short (a fresh resource is often ready at the first or second
//! look) and doubles toward `max`, the provider's steady poll interval, so a long
//! wait costs few calls against the cloud's request-rate limits.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};
use tokio::time::Instant;

/// How to poll: the first pause, doubling up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// The pause after the first look.
    pub initial: Duration,
    /// The longest pause: the provider's steady poll interval.
    pub max: Duration,
}

/// 2 s, doubling to 15 s.
impl Default for Poll {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(15),
        }
    }
}

impl Poll {
    /// A poll that starts at `initial` and doubles up to `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
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
        let mut pause = self.initial;
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
            let wait = pause.min(timeout - elapsed);
            tracing::debug!(resource, state, ?wait, "waiting");
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backs_off_and_times_out() {
        let poll = Poll {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        };
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
}
