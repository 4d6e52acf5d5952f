//! The simulated API calls, and fault injection on them.

use std::fmt;

use triad_core::FailureKind;

/// One simulated cloud API call. Every trait method of [`SimCloud`](crate::SimCloud)
/// is made of these; each sleeps [`SimConfig::api`](crate::SimConfig::api), goes
/// through fault injection and is counted in [`SimStats`](crate::SimStats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SimApi {
    /// List the zones of a region (read).
    DescribeZones,
    /// List instances by labels or id (read).
    DescribeInstances,
    /// Launch one instance (mutating).
    RunInstance,
    /// Terminate one instance (mutating).
    TerminateInstance,
    /// List security groups by labels (read).
    DescribeSecurityGroups,
    /// Create the cluster's security group, or get it (mutating).
    CreateSecurityGroup,
    /// Delete a security group (mutating).
    DeleteSecurityGroup,
    /// List target groups by labels, with their targets (read).
    DescribeTargetGroups,
    /// Create a target group, or get it (mutating).
    CreateTargetGroup,
    /// Register targets in a target group (mutating).
    RegisterTargets,
    /// Deregister targets from a target group (mutating).
    DeregisterTargets,
    /// Delete a target group (mutating).
    DeleteTargetGroup,
    /// List balancers by labels (read).
    DescribeBalancers,
    /// Create a balancer, or get it (mutating).
    CreateBalancer,
    /// Delete a balancer (mutating).
    DeleteBalancer,
    /// List a balancer's listeners (read).
    DescribeListeners,
    /// Create a listener, or get it (mutating).
    CreateListener,
    /// Delete a listener (mutating).
    DeleteListener,
    /// List the record sets of a hosted zone (read).
    ListRecords,
    /// Apply a batch of record changes atomically (mutating).
    ChangeRecords,
    /// Whether a change is in sync (read).
    GetChange,
    /// Replace the SSH rules of a security group (mutating).
    ModifySecurityGroupRules,
    /// Replace the labels of an instance or a balancer (mutating).
    ModifyTags,
    /// Change a listener's certificate (mutating).
    ModifyListener,
    /// Change a target group's health check (mutating).
    ModifyTargetGroup,
}

impl SimApi {
    /// Every call, in declaration order.
    pub const ALL: [SimApi; 25] = [
        SimApi::DescribeZones,
        SimApi::DescribeInstances,
        SimApi::RunInstance,
        SimApi::TerminateInstance,
        SimApi::DescribeSecurityGroups,
        SimApi::CreateSecurityGroup,
        SimApi::DeleteSecurityGroup,
        SimApi::DescribeTargetGroups,
        SimApi::CreateTargetGroup,
        SimApi::RegisterTargets,
        SimApi::DeregisterTargets,
        SimApi::DeleteTargetGroup,
        SimApi::DescribeBalancers,
        SimApi::CreateBalancer,
        SimApi::DeleteBalancer,
        SimApi::DescribeListeners,
        SimApi::CreateListener,
        SimApi::DeleteListener,
        SimApi::ListRecords,
        SimApi::ChangeRecords,
        SimApi::GetChange,
        SimApi::ModifySecurityGroupRules,
        SimApi::ModifyTags,
        SimApi::ModifyListener,
        SimApi::ModifyTargetGroup,
    ];

    /// The call's name, e.g. `RunInstance`.
    pub fn as_str(self) -> &'static str {
        match self {
            SimApi::DescribeZones => "DescribeZones",
            SimApi::DescribeInstances => "DescribeInstances",
            SimApi::RunInstance => "RunInstance",
            SimApi::TerminateInstance => "TerminateInstance",
            SimApi::DescribeSecurityGroups => "DescribeSecurityGroups",
            SimApi::CreateSecurityGroup => "CreateSecurityGroup",
            SimApi::DeleteSecurityGroup => "DeleteSecurityGroup",
            SimApi::DescribeTargetGroups => "DescribeTargetGroups",
            SimApi::CreateTargetGroup => "CreateTargetGroup",
            SimApi::RegisterTargets => "RegisterTargets",
            SimApi::DeregisterTargets => "DeregisterTargets",
            SimApi::DeleteTargetGroup => "DeleteTargetGroup",
            SimApi::DescribeBalancers => "DescribeBalancers",
            SimApi::CreateBalancer => "CreateBalancer",
            SimApi::DeleteBalancer => "DeleteBalancer",
            SimApi::DescribeListeners => "DescribeListeners",
            SimApi::CreateListener => "CreateListener",
            SimApi::DeleteListener => "DeleteListener",
            SimApi::ListRecords => "ListRecords",
            SimApi::ChangeRecords => "ChangeRecords",
            SimApi::GetChange => "GetChange",
            SimApi::ModifySecurityGroupRules => "ModifySecurityGroupRules",
            SimApi::ModifyTags => "ModifyTags",
            SimApi::ModifyListener => "ModifyListener",
            SimApi::ModifyTargetGroup => "ModifyTargetGroup",
        }
    }

    /// Whether the call changes the cloud.
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            SimApi::DescribeZones
                | SimApi::DescribeInstances
                | SimApi::DescribeSecurityGroups
                | SimApi::DescribeTargetGroups
                | SimApi::DescribeBalancers
                | SimApi::DescribeListeners
                | SimApi::ListRecords
                | SimApi::GetChange
        )
    }
}

impl fmt::Display for SimApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which calls a [`SimFault`] watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// One API call.
    Call(SimApi),
    /// Every mutating call.
    AnyMutating,
    /// Every call.
    AnyCall,
}

impl FaultTarget {
    fn matches(self, api: SimApi) -> bool {
        match self {
            FaultTarget::Call(a) => a == api,
            FaultTarget::AnyMutating => api.is_mutating(),
            FaultTarget::AnyCall => true,
        }
    }
}

/// When a [`SimFault`] fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultTrigger {
    /// Once, on the k-th matching call (1-based) counted from injection.
    Nth(u64),
    /// On each matching call with this probability (0.0..=1.0), from the seeded RNG.
    Probability(f64),
    /// On every matching call (an outage), until [`SimCloud::clear_faults`](crate::SimCloud::clear_faults).
    Always,
}

/// Whether a fault stops the call or only its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTiming {
    /// The call fails before it takes effect.
    Before,
    /// The call takes effect, then the caller gets an error: a lost response.
    After,
}

/// A fault to inject with [`SimCloud::inject`](crate::SimCloud::inject).
///
/// Defaults: fires on the first matching call, before it takes effect, as a
/// [`FailureKind::Transient`] error.
///
/// ```
/// use triad_core::FailureKind;
/// use triad_sim::{SimApi, SimFault};
///
/// // The second RunInstance launches the instance but its response is lost.
/// let lost = SimFault::on(SimApi::RunInstance).nth(2).after();
/// // Every mutating call is throttled 30 % of the time.
/// let flaky = SimFault::on_any_mutating().probability(0.3).kind(FailureKind::Throttled);
/// # let _ = (lost, flaky);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SimFault {
    /// Which calls it watches.
    pub target: FaultTarget,
    /// When it fires.
    pub trigger: FaultTrigger,
    /// The error kind the caller gets.
    pub kind: FailureKind,
    /// Before or after the call takes effect.
    pub timing: FaultTiming,
}

impl SimFault {
    /// A fault on one API call.
    pub fn on(api: SimApi) -> Self {
        Self::new(FaultTarget::Call(api))
    }

    /// A fault on every mutating call.
    pub fn on_any_mutating() -> Self {
        Self::new(FaultTarget::AnyMutating)
    }

    /// A fault on every call.
    pub fn on_any_call() -> Self {
        Self::new(FaultTarget::AnyCall)
    }

    fn new(target: FaultTarget) -> Self {
        Self {
            target,
            trigger: FaultTrigger::Nth(1),
            kind: FailureKind::Transient,
            timing: FaultTiming::Before,
        }
    }

    /// Fire once, on the k-th matching call (1-based; 0 is taken as 1).
    pub fn nth(mut self, k: u64) -> Self {
        self.trigger = FaultTrigger::Nth(k.max(1));
        self
    }

    /// Fire on each matching call with probability `p` (clamped to 0.0..=1.0).
    pub fn probability(mut self, p: f64) -> Self {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self.trigger = FaultTrigger::Probability(p);
        self
    }

    /// Fire on every matching call.
    pub fn always(mut self) -> Self {
        self.trigger = FaultTrigger::Always;
        self
    }

    /// The error kind (retryable: `Transient`, `Throttled`; anything else is fatal).
    pub fn kind(mut self, kind: FailureKind) -> Self {
        self.kind = kind;
        self
    }

    /// Fail before the call takes effect (the default).
    pub fn before(mut self) -> Self {
        self.timing = FaultTiming::Before;
        self
    }

    /// Let the call take effect, then fail: the response is lost.
    pub fn after(mut self) -> Self {
        self.timing = FaultTiming::After;
        self
    }
}

/// An injected fault with its match counter.
#[derive(Debug)]
pub(crate) struct ArmedFault {
    pub(crate) fault: SimFault,
    pub(crate) seen: u64,
}

impl ArmedFault {
    /// Count a call and decide whether the fault fires on it.
    pub(crate) fn fires(&mut self, api: SimApi, rng: &mut fastrand::Rng) -> bool {
        if !self.fault.target.matches(api) {
            return false;
        }
        self.seen += 1;
        match self.fault.trigger {
            FaultTrigger::Nth(k) => self.seen == k,
            FaultTrigger::Probability(p) => rng.f64() < p,
            FaultTrigger::Always => true,
        }
    }
}

/// The message of an injected error, as a cloud would word it.
pub(crate) fn message(kind: FailureKind, timing: FaultTiming) -> String {
    let base = match kind {
        FailureKind::Throttled => "Rate exceeded",
        FailureKind::Transient => "Service unavailable, try again",
        FailureKind::Capacity => "Insufficient capacity",
        FailureKind::Permission => "Access denied",
        FailureKind::NotFound => "Resource not found",
        FailureKind::Conflict => "Conflicting operation in progress",
        FailureKind::InvalidRequest => "Invalid request",
        FailureKind::Other => "Internal error",
    };
    match timing {
        FaultTiming::Before => format!("{base} (injected fault, the call had no effect)"),
        FaultTiming::After => format!("{base} (injected fault, the call took effect)"),
    }
}
