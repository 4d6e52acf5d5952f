//! Layers: wrappers that implement the provider traits around any provider, the way
//! OpenDAL's layers and object_store's `ThrottledStore` / `LimitStore` do.
//!
//! There is one mechanism. A [`Layer`] wraps one provider call — it is told which
//! [`Op`] it is and on which resource, and gets a closure that makes the inner call
//! (as often as it likes: [`Retry`] calls it again). [`Layered`] implements
//! [`NodeProvider`], [`LoadBalancerProvider`] and [`DnsProvider`] (each one when the
//! inner provider does) by sending every async method through its layer. `name`,
//! `check_spec` and `capabilities` are forwarded untouched.
//!
//! The layers here:
//!
//! - [`Retry`]: retries [retryable](crate::Error::is_retryable) errors with capped
//!   exponential backoff and full jitter ([`RetryPolicy`]). Every trait method is
//!   idempotent by contract, so every call may be retried.
//! - [`RateLimit`]: a token bucket shared by its clones, for all calls or only
//!   mutating ones.
//! - [`Timeout`]: a time limit per call.
//! - [`Counting`]: counts calls and failures per [`Op`] into a shareable
//!   [`CallCounter`].
//! - [`Faults`]: injects failures before or after the inner call, for tests.
//!
//! Layers nest: `Layered::new(Layered::new(p, a), b)` sends each call through `b`,
//! then `a`, then `p`. [`Stack`] builds the same thing fluently; each method wraps
//! what is built so far, so **the first layer added sits nearest the provider**. A
//! good order is count → timeout → rate limit → retry: every attempt is counted,
//! limited in time and takes a token, and the retry loop sits outside them all.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use triad_core::layers::{CallCounter, Op, RateLimit, RetryPolicy, Stack, Timeout};
//! use triad_core::{ClusterRef, NodeProvider, Result};
//! # use triad_core::model::{Node, NodeRequest};
//! # struct MyCloud;
//! # #[async_trait::async_trait]
//! # impl NodeProvider for MyCloud {
//! #     fn name(&self) -> &str { "my-cloud" }
//! #     async fn zones(&self, _: &ClusterRef) -> Result<Vec<String>> { Ok(vec!["a".into()]) }
//! #     async fn discover_nodes(&self, _: &ClusterRef) -> Result<Vec<Node>> { Ok(vec![]) }
//! #     async fn create_node(&self, _: &ClusterRef, _: &NodeRequest) -> Result<Node> { unimplemented!() }
//! #     async fn wait_node(&self, _: &ClusterRef, n: &Node, _: Duration) -> Result<Node> { Ok(n.clone()) }
//! #     async fn delete_node(&self, _: &ClusterRef, _: &Node) -> Result<()> { Ok(()) }
//! #     async fn cleanup(&self, _: &ClusterRef) -> Result<Vec<String>> { Ok(vec![]) }
//! # }
//! # fn main() -> Result<()> {
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # rt.block_on(async {
//! // Any provider, including one already behind `Arc<dyn NodeProvider>`.
//! let cloud: Arc<dyn NodeProvider> = Arc::new(MyCloud);
//! let counter = CallCounter::new();
//!
//! let nodes: Arc<dyn NodeProvider> = Arc::new(
//!     Stack::new(cloud)
//!         .count(counter.clone())
//!         .timeout(Timeout::new(Duration::from_secs(60)))
//!         .rate_limit(RateLimit::per_second(10.0, 20)?)
//!         .retry(RetryPolicy::default())
//!         .build(),
//! );
//!
//! let cluster = ClusterRef::new("rancher", "eu-west-1");
//! assert_eq!(nodes.zones(&cluster).await?, ["a"]);
//! assert_eq!(nodes.name(), "my-cloud");
//! assert_eq!(counter.count(Op::Zones), 1);
//! # Ok(())
//! # })
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::model::{LoadBalancer, LoadBalancerRequest, Node, NodeRequest, Record, RecordRequest};
use crate::provider::{DnsCapabilities, DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::spec::{ClusterRef, LbMode, ValidSpec};

mod count;
mod faults;
mod rate;
mod retry;
mod timeout;

#[cfg(test)]
mod tests;

pub use count::{CallCounter, Counting};
pub use faults::{FaultRule, FaultTiming, FaultTrigger, Faults, OpMatch, FAULT_PROVIDER};
pub use rate::RateLimit;
pub use retry::{Retry, RetryPolicy};
pub use timeout::Timeout;

/// One async method of the three provider traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`NodeProvider::zones`].
    Zones,
    /// [`NodeProvider::network_cidrs`].
    NetworkCidrs,
    /// [`NodeProvider::discover_nodes`].
    DiscoverNodes,
    /// [`NodeProvider::create_node`].
    CreateNode,
    /// [`NodeProvider::wait_node`].
    WaitNode,
    /// [`NodeProvider::wait_nodes`].
    WaitNodes,
    /// [`NodeProvider::delete_node`].
    DeleteNode,
    /// [`NodeProvider::cleanup`].
    Cleanup,
    /// [`LoadBalancerProvider::discover_load_balancer`].
    DiscoverLoadBalancer,
    /// [`LoadBalancerProvider::create_load_balancer`].
    CreateLoadBalancer,
    /// [`LoadBalancerProvider::wait_load_balancer`].
    WaitLoadBalancer,
    /// [`LoadBalancerProvider::set_targets`].
    SetTargets,
    /// [`LoadBalancerProvider::delete_load_balancer`].
    DeleteLoadBalancer,
    /// [`DnsProvider::lookup`].
    LookupRecord,
    /// [`DnsProvider::owned_records`].
    OwnedRecords,
    /// [`DnsProvider::upsert_record`].
    UpsertRecord,
    /// [`DnsProvider::wait_record`].
    WaitRecord,
    /// [`DnsProvider::delete_record`].
    DeleteRecord,
    /// [`NodeProvider::update_node`].
    UpdateNode,
    /// [`LoadBalancerProvider::update_load_balancer`].
    UpdateLoadBalancer,
    /// [`DnsProvider::read_txt`].
    ReadTxt,
    /// [`DnsProvider::swap_txt`].
    SwapTxt,
}

impl Op {
    /// Every op, in declaration order.
    pub const ALL: [Op; 22] = [
        Op::Zones,
        Op::NetworkCidrs,
        Op::DiscoverNodes,
        Op::CreateNode,
        Op::WaitNode,
        Op::WaitNodes,
        Op::DeleteNode,
        Op::Cleanup,
        Op::DiscoverLoadBalancer,
        Op::CreateLoadBalancer,
        Op::WaitLoadBalancer,
        Op::SetTargets,
        Op::DeleteLoadBalancer,
        Op::LookupRecord,
        Op::OwnedRecords,
        Op::UpsertRecord,
        Op::WaitRecord,
        Op::DeleteRecord,
        Op::UpdateNode,
        Op::UpdateLoadBalancer,
        Op::ReadTxt,
        Op::SwapTxt,
    ];

    /// A stable snake_case identifier (`create_node`), for counters, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Op::Zones => "zones",
            Op::NetworkCidrs => "network_cidrs",
            Op::DiscoverNodes => "discover_nodes",
            Op::CreateNode => "create_node",
            Op::WaitNode => "wait_node",
            Op::WaitNodes => "wait_nodes",
            Op::DeleteNode => "delete_node",
            Op::Cleanup => "cleanup",
            Op::DiscoverLoadBalancer => "discover_load_balancer",
            Op::CreateLoadBalancer => "create_load_balancer",
            Op::WaitLoadBalancer => "wait_load_balancer",
            Op::SetTargets => "set_targets",
            Op::DeleteLoadBalancer => "delete_load_balancer",
            Op::LookupRecord => "lookup_record",
            Op::OwnedRecords => "owned_records",
            Op::UpsertRecord => "upsert_record",
            Op::WaitRecord => "wait_record",
            Op::DeleteRecord => "delete_record",
            Op::UpdateNode => "update_node",
            Op::UpdateLoadBalancer => "update_load_balancer",
            Op::ReadTxt => "read_txt",
            Op::SwapTxt => "swap_txt",
        }
    }

    /// What the op does, in words (`create node`), for error messages.
    pub fn action(self) -> &'static str {
        match self {
            Op::Zones => "list zones",
            Op::NetworkCidrs => "list network CIDRs",
            Op::DiscoverNodes => "discover nodes",
            Op::CreateNode => "create node",
            Op::WaitNode => "wait for node",
            Op::WaitNodes => "wait for nodes",
            Op::DeleteNode => "delete node",
            Op::Cleanup => "clean up",
            Op::DiscoverLoadBalancer => "discover load balancer",
            Op::CreateLoadBalancer => "create load balancer",
            Op::WaitLoadBalancer => "wait for load balancer",
            Op::SetTargets => "set targets of",
            Op::DeleteLoadBalancer => "delete load balancer",
            Op::LookupRecord => "look up",
            Op::OwnedRecords => "list owned records",
            Op::UpsertRecord => "upsert",
            Op::WaitRecord => "wait for",
            Op::DeleteRecord => "delete",
            Op::UpdateNode => "update node",
            Op::UpdateLoadBalancer => "update load balancer",
            Op::ReadTxt => "read TXT",
            Op::SwapTxt => "change TXT",
        }
    }

    /// Whether the op changes the cloud: create, delete, set targets, upsert, cleanup.
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Op::CreateNode
                | Op::DeleteNode
                | Op::Cleanup
                | Op::CreateLoadBalancer
                | Op::SetTargets
                | Op::DeleteLoadBalancer
                | Op::UpsertRecord
                | Op::DeleteRecord
                | Op::UpdateNode
                | Op::UpdateLoadBalancer
                | Op::SwapTxt
        )
    }

    /// Whether the op waits for a state, bounded by its own `timeout` argument.
    pub fn is_wait(self) -> bool {
        matches!(
            self,
            Op::WaitNode | Op::WaitNodes | Op::WaitLoadBalancer | Op::WaitRecord
        )
    }

    /// The op's position in [`Op::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The inner call a [`Layer`] wraps: each invocation starts the call afresh.
pub type Call<'a, T> = dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a;

/// Wraps every provider call made through a [`Layered`] provider.
///
/// `call` gets the [`Op`], a short description of the resource (`node rancher-1`,
/// `load balancer rancher`, `record rancher.example.com`) and the inner call, which
/// it may invoke zero times (a fault injected before the call), once, or again (a
/// retry). Implementations box their future; the cost is nothing next to a cloud
/// API round trip.
///
/// A custom layer, logging each call's outcome:
///
/// ```
/// use futures::future::BoxFuture;
/// use triad_core::layers::{Call, Layer, Op};
/// use triad_core::Result;
///
/// struct LogErrors;
///
/// impl Layer for LogErrors {
///     fn call<'a, T: Send + 'a>(
///         &'a self,
///         op: Op,
///         resource: &'a str,
///         inner: &'a Call<'a, T>,
///     ) -> BoxFuture<'a, Result<T>> {
///         Box::pin(async move {
///             let result = inner().await;
///             if let Err(e) = &result {
///                 tracing::error!(op = op.name(), resource, error = %e, "provider call failed");
///             }
///             result
///         })
///     }
/// }
/// ```
pub trait Layer: Send + Sync {
    /// Wrap one call of `op` on `resource`; `inner` makes the call.
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>>;
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> BoxFuture<'a, Result<T>> {
        (**self).call(op, resource, inner)
    }
}

/// A provider `P` whose calls all go through the layer `L`. It implements each of
/// the three provider traits that `P` implements.
#[derive(Clone, Debug)]
pub struct Layered<P, L> {
    inner: P,
    layer: L,
}

impl<P, L> Layered<P, L> {
    /// Wrap `inner` in `layer`.
    pub fn new(inner: P, layer: L) -> Self {
        Self { inner, layer }
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    /// Take the provider and the layer apart.
    pub fn into_parts(self) -> (P, L) {
        (self.inner, self.layer)
    }
}

fn cluster_resource(cluster: &ClusterRef) -> String {
    format!("cluster {}", cluster.name)
}

#[async_trait]
impl<P: NodeProvider, L: Layer> NodeProvider for Layered<P, L> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.inner.check_spec(spec)
    }

    fn plan_warnings(&self, spec: &ValidSpec) -> Vec<String> {
        self.inner.plan_warnings(spec)
    }

    async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let resource = format!("region {}", cluster.region);
        let call = || self.inner.zones(cluster);
        self.layer.call(Op::Zones, &resource, &call).await
    }

    async fn network_cidrs(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let resource = cluster_resource(cluster);
        let call = || self.inner.network_cidrs(cluster);
        self.layer.call(Op::NetworkCidrs, &resource, &call).await
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let resource = cluster_resource(cluster);
        let call = || self.inner.discover_nodes(cluster);
        self.layer.call(Op::DiscoverNodes, &resource, &call).await
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let resource = format!("node {}", request.name);
        let call = || self.inner.create_node(cluster, request);
        self.layer.call(Op::CreateNode, &resource, &call).await
    }

    async fn wait_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        let resource = format!("node {}", node.name);
        let call = || self.inner.wait_node(cluster, node, timeout);
        self.layer.call(Op::WaitNode, &resource, &call).await
    }

    async fn wait_nodes(
        &self,
        cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let resource = format!("nodes {}", names.join(", "));
        let call = || self.inner.wait_nodes(cluster, nodes, timeout);
        self.layer.call(Op::WaitNodes, &resource, &call).await
    }

    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
        let resource = format!("node {}", node.name);
        let call = || self.inner.delete_node(cluster, node);
        self.layer.call(Op::DeleteNode, &resource, &call).await
    }

    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let resource = cluster_resource(cluster);
        let call = || self.inner.cleanup(cluster);
        self.layer.call(Op::Cleanup, &resource, &call).await
    }

    async fn update_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
    ) -> Result<Node> {
        let resource = format!("node {}", node.name);
        let call = || self.inner.update_node(cluster, node, request);
        self.layer.call(Op::UpdateNode, &resource, &call).await
    }
}

#[async_trait]
impl<P: LoadBalancerProvider, L: Layer> LoadBalancerProvider for Layered<P, L> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.inner.check_spec(spec)
    }

    fn plan_warnings(&self, spec: &ValidSpec) -> Vec<String> {
        self.inner.plan_warnings(spec)
    }

    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let resource = format!("load balancer of cluster {}", cluster.name);
        let call = || self.inner.discover_load_balancer(cluster);
        self.layer
            .call(Op::DiscoverLoadBalancer, &resource, &call)
            .await
    }

    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", request.name);
        let call = || self.inner.create_load_balancer(cluster, request);
        self.layer
            .call(Op::CreateLoadBalancer, &resource, &call)
            .await
    }

    async fn wait_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let call = || self.inner.wait_load_balancer(cluster, lb, timeout);
        self.layer
            .call(Op::WaitLoadBalancer, &resource, &call)
            .await
    }

    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let call = || self.inner.set_targets(cluster, lb, nodes);
        self.layer.call(Op::SetTargets, &resource, &call).await
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let resource = format!("load balancer of cluster {}", cluster.name);
        let call = || self.inner.delete_load_balancer(cluster);
        self.layer
            .call(Op::DeleteLoadBalancer, &resource, &call)
            .await
    }

    async fn update_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let call = || self.inner.update_load_balancer(cluster, lb, request);
        self.layer
            .call(Op::UpdateLoadBalancer, &resource, &call)
            .await
    }

    fn coexists(&self) -> bool {
        self.inner.coexists()
    }

    fn registration_apart(&self, mode: LbMode) -> bool {
        self.inner.registration_apart(mode)
    }

    fn backends_reach_balancer(&self) -> bool {
        self.inner.backends_reach_balancer()
    }

    async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        let resource = format!("load balancers of cluster {}", cluster.name);
        let call = || self.inner.discover_load_balancers(cluster);
        self.layer
            .call(Op::DiscoverLoadBalancer, &resource, &call)
            .await
    }

    async fn delete_load_balancer_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        let resource = format!("load balancer {name}");
        let call = || self.inner.delete_load_balancer_named(cluster, name);
        self.layer
            .call(Op::DeleteLoadBalancer, &resource, &call)
            .await
    }
}

#[async_trait]
impl<P: DnsProvider, L: Layer> DnsProvider for Layered<P, L> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> DnsCapabilities {
        self.inner.capabilities()
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.inner.check_spec(spec)
    }

    async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
        let resource = format!("record {fqdn}");
        let call = || self.inner.lookup(zone, fqdn);
        self.layer.call(Op::LookupRecord, &resource, &call).await
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let resource = format!("records of cluster {} in zone {zone}", cluster.name);
        let call = || self.inner.owned_records(cluster, zone);
        self.layer.call(Op::OwnedRecords, &resource, &call).await
    }

    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        let resource = format!("record {}", request.fqdn);
        let call = || self.inner.upsert_record(cluster, request);
        self.layer.call(Op::UpsertRecord, &resource, &call).await
    }

    async fn wait_record(&self, zone: &str, fqdn: &str, timeout: Duration) -> Result<()> {
        let resource = format!("record {fqdn}");
        let call = || self.inner.wait_record(zone, fqdn, timeout);
        self.layer.call(Op::WaitRecord, &resource, &call).await
    }

    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
        let resource = format!("record {fqdn}");
        let call = || self.inner.delete_record(cluster, zone, fqdn);
        self.layer.call(Op::DeleteRecord, &resource, &call).await
    }

    async fn read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
        let resource = format!("TXT {name}");
        let call = || self.inner.read_txt(zone, name);
        self.layer.call(Op::ReadTxt, &resource, &call).await
    }

    async fn swap_txt(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        let resource = format!("TXT {name}");
        let call = || self.inner.swap_txt(zone, name, expected, new);
        self.layer.call(Op::SwapTxt, &resource, &call).await
    }
}

/// Builds a layered provider fluently. Each method wraps what is built so far, so
/// the first layer added is the one nearest the provider; [`Stack::build`] returns
/// the outermost [`Layered`] (or the provider itself if no layer was added).
///
/// ```
/// use std::sync::Arc;
/// use triad_core::layers::{CallCounter, Counting, Layered, Retry, RetryPolicy, Stack};
/// use triad_core::NodeProvider;
///
/// fn wrap(p: Arc<dyn NodeProvider>, c: CallCounter) -> Layered<Layered<Arc<dyn NodeProvider>, Counting>, Retry> {
///     // The same as Layered::new(Layered::new(p, Counting::new(c)), Retry::new(RetryPolicy::default())).
///     Stack::new(p).count(c).retry(RetryPolicy::default()).build()
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Stack<P>(P);

impl<P> Stack<P> {
    /// Start from the provider.
    pub fn new(inner: P) -> Self {
        Self(inner)
    }

    /// Wrap in any layer.
    pub fn layer<L: Layer>(self, layer: L) -> Stack<Layered<P, L>> {
        Stack(Layered::new(self.0, layer))
    }

    /// Count calls into `counter` ([`Counting`]).
    pub fn count(self, counter: CallCounter) -> Stack<Layered<P, Counting>> {
        self.layer(Counting::new(counter))
    }

    /// Retry retryable errors ([`Retry`]).
    pub fn retry(self, policy: RetryPolicy) -> Stack<Layered<P, Retry>> {
        self.layer(Retry::new(policy))
    }

    /// Limit the call rate ([`RateLimit`]; clones share one bucket).
    pub fn rate_limit(self, limit: RateLimit) -> Stack<Layered<P, RateLimit>> {
        self.layer(limit)
    }

    /// Limit each call's duration ([`Timeout`]).
    pub fn timeout(self, timeout: Timeout) -> Stack<Layered<P, Timeout>> {
        self.layer(timeout)
    }

    /// Inject failures ([`Faults`]; clones share rules and counts).
    pub fn faults(self, faults: Faults) -> Stack<Layered<P, Faults>> {
        self.layer(faults)
    }

    /// The layered provider.
    pub fn build(self) -> P {
        self.0
    }
}
