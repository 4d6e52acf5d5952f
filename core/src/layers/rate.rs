//! A token-bucket rate limit.
//!
//! Hand-written rather than `governor`: governor's limiters read a clock of their own
//! (`quanta`, or a `Clock` the caller implements), so the simulated cloud's paused
//! tokio time — which every schedule test and the benchmark run in — would need an
//! adapter clock that is longer than this bucket; it also rejects a call it cannot
//! admit (`until_ready` waits with its own timer), while this layer must queue calls
//! in arrival order with `tokio::time::sleep` and share one bucket across the three
//! provider stacks. The bucket is ~60 lines with its own tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{Call, Layer, Op};
use crate::error::{Error, Result};

/// A token bucket: `burst` calls at once, then `rate` calls per second. Clones share
/// one bucket, so one `RateLimit` cloned into the node, balancer and DNS stacks limits
/// them together (one cloud account's API quota).
///
/// Calls reserve their token in arrival order and sleep (`tokio::time::sleep`, so
/// virtual time works) until it is due; a call dropped while it waits does not give
/// its token back.
///
/// ```
/// use triad_core::layers::RateLimit;
///
/// let all_calls = RateLimit::per_second(10.0, 20)?;
/// let writes_only = RateLimit::per_second(2.0, 5)?.mutating_only();
/// assert!(RateLimit::per_second(0.0, 1).is_err());
/// # Ok::<(), triad_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit {
    bucket: Arc<Mutex<Bucket>>,
    rate: f64,
    burst: u32,
    mutating_only: bool,
}

#[derive(Debug)]
struct Bucket {
    /// Tokens at `at`; negative when calls are queued for tokens not yet made.
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `rate` calls per second on average, up to `burst` at once. A rate that is not
    /// a positive finite number, or a burst of 0, is an
    /// [`InvalidSpec`](Error::InvalidSpec) error.
    pub fn per_second(rate: f64, burst: u32) -> Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::invalid(
                "rate_limit.rate",
                format!("the rate must be a positive number of calls per second, not {rate}"),
                "give a rate above 0, e.g. 10.0",
            ));
        }
        if burst == 0 {
            return Err(Error::invalid(
                "rate_limit.burst",
                "the burst must be at least 1",
                "give a burst of 1 or more",
            ));
        }
        Ok(Self {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            })),
            rate,
            burst,
            mutating_only: false,
        })
    }

    /// Limit only mutating calls ([`Op::is_mutating`]); reads pass freely. This
    /// handle only: clones made before keep their setting, and all share the bucket.
    pub fn mutating_only(mut self) -> Self {
        self.mutating_only = true;
        self
    }

    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Calls allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn limits(&self, op: Op) -> bool {
        !self.mutating_only || op.is_mutating()
    }

    /// Take a token; how long to wait before it is due.
    fn reserve(&self) -> Duration {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(f64::from(self.burst));
        b.at = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-b.tokens / self.rate).unwrap_or(Duration::MAX)
        }
    }

    /// Wait until a call may go, taking a token. Returns at once when a token is free.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Layer for RateLimit {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        _resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        if !self.limits(op) {
            return inner();
        }
        Box::pin(async move {
            self.acquire().await;
            inner().await
        })
    }
}
