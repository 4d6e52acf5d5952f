//! A time limit per call.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{Call, Layer, Op};
use crate::error::{Error, Result};

/// Fails a call that takes longer than its limit with [`Error::Timeout`] (the
/// resource, `state` saying which call, and the limit), dropping the inner call.
/// Timeouts are [retryable](Error::is_retryable), so a [`Retry`](super::Retry)
/// outside this layer tries again.
///
/// Wait ops (`wait_node`, `wait_load_balancer`, `wait_record`) carry their own
/// `timeout` argument and are not limited by default; [`Timeout::waits`] gives them a
/// limit of their own (a backstop for a provider that overruns its argument).
///
/// ```
/// use std::time::Duration;
/// use triad_core::layers::Timeout;
///
/// let t = Timeout::new(Duration::from_secs(60)).waits(Duration::from_secs(1800));
/// assert_eq!(t.per_call(), Duration::from_secs(60));
/// assert_eq!(t.wait_limit(), Some(Duration::from_secs(1800)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    per_call: Duration,
    waits: Option<Duration>,
}

impl Timeout {
    /// Limit every call but waits to `per_call`.
    pub fn new(per_call: Duration) -> Self {
        Self {
            per_call,
            waits: None,
        }
    }

    /// Limit wait ops to `limit` too.
    pub fn waits(mut self, limit: Duration) -> Self {
        self.waits = Some(limit);
        self
    }

    /// The limit of calls other than waits.
    pub fn per_call(&self) -> Duration {
        self.per_call
    }

    /// The limit of wait ops, if any.
    pub fn wait_limit(&self) -> Option<Duration> {
        self.waits
    }

    fn limit(&self, op: Op) -> Option<Duration> {
        if op.is_wait() {
            self.waits
        } else {
            Some(self.per_call)
        }
    }
}

impl Layer for Timeout {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        let Some(after) = self.limit(op) else {
            return inner();
        };
        Box::pin(async move {
            match tokio::time::timeout(after, inner()).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout {
                    resource: resource.to_owned(),
                    state: format!("done with {}", op.action()),
                    after,
                }),
            }
        })
    }
}
