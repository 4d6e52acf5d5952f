//! Fault injection, for tests.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::{Call, Layer, Op};
use crate::error::{Error, FailureKind, Result};

/// The provider name in injected errors.
pub const FAULT_PROVIDER: &str = "fault-injection";

/// Which calls a [`FaultRule`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpMatch {
    /// Every call.
    Any,
    /// Mutating calls ([`Op::is_mutating`]).
    Mutating,
    /// Calls of one op.
    Only(Op),
}

impl OpMatch {
    /// Whether `op` is one of these.
    pub fn matches(self, op: Op) -> bool {
        match self {
            OpMatch::Any => true,
            OpMatch::Mutating => op.is_mutating(),
            OpMatch::Only(o) => o == op,
        }
    }
}

impl From<Op> for OpMatch {
    fn from(op: Op) -> Self {
        OpMatch::Only(op)
    }
}

/// When a [`FaultRule`] fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultTrigger {
    /// On the k-th matching call (1-based), once. `Nth(0)` never fires.
    Nth(u64),
    /// On each matching call with this probability, drawn from the [`Faults`]' seeded
    /// random numbers (so a seed replays the same faults). `0` or less never fires, `1`
    /// or more always does.
    Probability(f64),
}

/// Whether the inner call is made when a fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTiming {
    /// The call fails before reaching the provider: nothing happens there.
    Before,
    /// The call is made and its result dropped, as when a response is lost: the effect
    /// happens, the caller sees an error.
    After,
}

impl fmt::Display for FaultTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultTiming::Before => "before the call",
            FaultTiming::After => "after the call, response dropped",
        })
    }
}

/// One rule: which calls, when, which failure, before or after the call.
///
/// ```
/// use triad_core::layers::{FaultRule, Op, OpMatch};
/// use triad_core::FailureKind;
///
/// // The second create_node fails as throttled, without reaching the provider.
/// let r = FaultRule::nth(Op::CreateNode, 2, FailureKind::Throttled);
/// // A fifth of mutating calls succeed in the cloud but lose their response.
/// let r = FaultRule::probability(OpMatch::Mutating, 0.2, FailureKind::Transient).after();
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// Which calls.
    pub ops: OpMatch,
    /// When it fires.
    pub trigger: FaultTrigger,
    /// The failure kind of the injected error.
    pub kind: FailureKind,
    /// Before or after the inner call.
    pub timing: FaultTiming,
}

impl FaultRule {
    /// Fail the `k`-th (1-based) call matching `ops` with `kind`, before the call.
    pub fn nth(ops: impl Into<OpMatch>, k: u64, kind: FailureKind) -> Self {
        Self {
            ops: ops.into(),
            trigger: FaultTrigger::Nth(k),
            kind,
            timing: FaultTiming::Before,
        }
    }

    /// Fail each call matching `ops` with probability `p`, with `kind`, before the call.
    pub fn probability(ops: impl Into<OpMatch>, p: f64, kind: FailureKind) -> Self {
        Self {
            ops: ops.into(),
            trigger: FaultTrigger::Probability(p),
            kind,
            timing: FaultTiming::Before,
        }
    }

    /// Make the inner call and drop its result ([`FaultTiming::After`]).
    pub fn after(mut self) -> Self {
        self.timing = FaultTiming::After;
        self
    }

    /// Fail before the inner call ([`FaultTiming::Before`], the default).
    pub fn before(mut self) -> Self {
        self.timing = FaultTiming::Before;
        self
    }
}

/// Injects failures into calls by [`FaultRule`]s, for tests of what sits above a
/// provider (retries, the orchestrator's recovery, a rerun after a crash).
///
/// Each call is checked against every rule in order; each matching rule counts the
/// call (for [`FaultTrigger::Nth`]) or draws a number (for
/// [`FaultTrigger::Probability`]), and the first rule that fires decides. The error is
/// [`Error::Provider`] with provider `fault-injection`, the op's action and the
/// resource. Clones share rules, counts and random numbers.
///
/// ```
/// use triad_core::layers::{FaultRule, Faults, Op, OpMatch};
/// use triad_core::FailureKind;
///
/// let faults = Faults::new()
///     .seed(7)
///     .rule(FaultRule::nth(Op::CreateNode, 1, FailureKind::Transient))
///     .rule(FaultRule::probability(OpMatch::Any, 0.1, FailureKind::Throttled));
/// assert_eq!(faults.fired(), 0);
/// ```
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

struct State {
    rules: Vec<(FaultRule, u64)>,
    rng: fastrand::Rng,
    fired: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    /// No rules, random numbers seeded with 0.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rules: Vec::new(),
                rng: fastrand::Rng::with_seed(0),
                fired: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reseed the random numbers of probability rules.
    pub fn seed(self, seed: u64) -> Self {
        self.lock().rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// Add a rule (after the ones there).
    pub fn rule(self, rule: FaultRule) -> Self {
        self.lock().rules.push((rule, 0));
        self
    }

    /// How many faults fired so far.
    pub fn fired(&self) -> u64 {
        self.lock().fired
    }

    /// The fault for this call, if one fires.
    fn draw(&self, op: Op) -> Option<(FailureKind, FaultTiming, usize)> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut chosen = None;
        for (i, (rule, seen)) in state.rules.iter_mut().enumerate() {
            if !rule.ops.matches(op) {
                continue;
            }
            *seen += 1;
            let fires = match rule.trigger {
                FaultTrigger::Nth(k) => *seen == k,
                FaultTrigger::Probability(p) => state.rng.f64() < p,
            };
            if fires && chosen.is_none() {
                chosen = Some((rule.kind, rule.timing, i + 1));
            }
        }
        if chosen.is_some() {
            state.fired += 1;
        }
        chosen
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Faults")
            .field("rules", &s.rules.iter().map(|(r, _)| r).collect::<Vec<_>>())
            .field("fired", &s.fired)
            .finish()
    }
}

fn injected(op: Op, resource: &str, kind: FailureKind, timing: FaultTiming, rule: usize) -> Error {
    Error::provider(
        FAULT_PROVIDER,
        op.action(),
        resource,
        kind,
        format!("injected by rule {rule} ({timing})"),
    )
}

impl Layer for Faults {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        match self.draw(op) {
            None => inner(),
            Some((kind, FaultTiming::Before, rule)) => {
                tracing::debug!(
                    op = op.name(),
                    resource,
                    rule,
                    "fault injected before the call"
                );
                Box::pin(std::future::ready(Err(injected(
                    op,
                    resource,
                    kind,
                    FaultTiming::Before,
                    rule,
                ))))
            }
            Some((kind, FaultTiming::After, rule)) => Box::pin(async move {
                let dropped = inner().await;
                tracing::debug!(
                    op = op.name(),
                    resource,
                    rule,
                    inner_ok = dropped.is_ok(),
                    "fault injected after the call, response dropped"
                );
                Err(injected(op, resource, kind, FaultTiming::After, rule))
            }),
        }
    }
}
