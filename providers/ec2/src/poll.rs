//! Waiting with backoff until AWS reports a state, or a deadline passes.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use triad_core::error::{Error, Result};

/// First pause, doubling up to `max`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Poll {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(15),
        }
    }
}

impl Poll {
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
