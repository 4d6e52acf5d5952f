//! Retry with capped exponential backoff and full jitter.
//!
//! Hand-written rather than `backon`: what this layer decides — which [`Op`]s are
//! retried at all ([`RetryPolicy`]: waits are not, unless asked) and which errors
//! ([`crate::Error::is_retryable`], triad's own failure taxonomy) — is triad's. `backon`
//! (whose tokio sleeper would honour the virtual-time tests' paused clock) would
//! supply only the backoff arithmetic, about fifteen lines here, so it would add a
//! dependency without removing the logic that matters.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{Call, Layer, Op};
use crate::error::Result;

/// When and how long [`Retry`] waits between attempts.
///
/// The wait before retry `n` (1-based) is drawn uniformly from
/// `[0, min(max_backoff, initial_backoff × multiplier^(n-1))]` ("full jitter", as the
/// AWS SDKs do), or is exactly that cap with `jitter` off.
///
/// ```
/// use std::time::Duration;
/// use triad_core::layers::RetryPolicy;
///
/// let p = RetryPolicy::default().max_attempts(3).jitter(false);
/// assert_eq!(p.backoff_cap(1), Duration::from_millis(200));
/// assert_eq!(p.backoff_cap(2), Duration::from_millis(400));
/// assert_eq!(RetryPolicy::default().backoff_cap(30), Duration::from_secs(20));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 5). `0` is taken as `1`.
    pub max_attempts: u32,
    /// The cap of the first wait (default 200 ms).
    pub initial_backoff: Duration,
    /// The largest wait (default 20 s).
    pub max_backoff: Duration,
    /// How much the cap grows per retry (default 2.0).
    pub multiplier: f64,
    /// Full jitter (default true): wait a random time up to the cap instead of the cap.
    pub jitter: bool,
    /// Whether wait ops (`wait_node`, `wait_load_balancer`, `wait_record`) are
    /// retried (default false). A wait is bounded by the timeout its caller passes;
    /// retrying it would stretch the caller's deadline, so by default wait calls go
    /// through this layer untouched, and a timed-out wait stays an error.
    pub retry_waits: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            multiplier: 2.0,
            jitter: true,
            retry_waits: false,
        }
    }
}

impl RetryPolicy {
    /// Set [`max_attempts`](Self::max_attempts).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Set [`initial_backoff`](Self::initial_backoff).
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Set [`max_backoff`](Self::max_backoff).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Set [`multiplier`](Self::multiplier).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }

    /// Set [`jitter`](Self::jitter).
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Set [`retry_waits`](Self::retry_waits).
    pub fn retry_waits(mut self, on: bool) -> Self {
        self.retry_waits = on;
        self
    }

    /// The longest wait before retry `retry` (1-based): `initial × multiplier^(retry-1)`,
    /// at most `max_backoff`. Odd settings (a negative or non-finite multiplier) give
    /// `max_backoff` rather than a panic.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exp);
        if !secs.is_finite() || secs < 0.0 {
            return self.max_backoff;
        }
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// The wait before retry `retry`: [`backoff_cap`](Self::backoff_cap), jittered if
    /// [`jitter`](Self::jitter) is on.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        if self.jitter {
            cap.mul_f64(fastrand::f64())
        } else {
            cap
        }
    }

    fn retries(&self, op: Op) -> bool {
        self.retry_waits || !op.is_wait()
    }
}

/// Retries calls that fail with a [retryable](crate::Error::is_retryable) error
/// (throttling, transient faults, timeouts), sleeping with `tokio::time::sleep` (so
/// virtual time works) and logging each retry at `warn`. Other errors return at once.
/// After the last attempt the last error is returned.
#[derive(Clone, Debug, Default)]
pub struct Retry {
    policy: RetryPolicy,
}

impl Retry {
    /// A retry layer with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl Layer for Retry {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        if !self.policy.retries(op) {
            return inner();
        }
        Box::pin(async move {
            let max = self.policy.max_attempts.max(1);
            let mut attempt = 1;
            loop {
                match inner().await {
                    Err(error) if error.is_retryable() && attempt < max => {
                        let wait = self.policy.backoff(attempt);
                        tracing::warn!(
                            op = op.name(),
                            resource,
                            attempt,
                            max_attempts = max,
                            error = %error,
                            backoff = ?wait,
                            "provider call failed, retrying"
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    // The last attempt's error is final: a retry layer further
                    // out must not start the attempts again.
                    Err(error) if error.is_retryable() => return Err(error.exhausted()),
                    other => return other,
                }
            }
        })
    }
}
