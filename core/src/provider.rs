//! The three provider traits. Each method is one resource-level step — discover,
//! create, wait, converge targets, delete — that may make several cloud calls but is
//! **safe to call again after failing midway** (client tokens, request ids,
//! create-or-get), and treats "already gone" on delete as success. Discovery is by
//! the ownership labels ([`labels`](crate::labels)), so a rerun after a crash finds
//! what the last run made.
//!
//! The traits are object safe: the orchestrator holds `Arc<dyn NodeProvider>` and so on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, FailureKind, Result};
use crate::model::{
    LoadBalancer, LoadBalancerRequest, Node, NodeRequest, Record, RecordKind, RecordRequest,
};
use crate::spec::{ClusterRef, LbMode, ValidSpec};

/// Creates, finds and deletes the cluster's nodes, and the cluster-wide network
/// plumbing they need (security groups, firewall rules).
#[async_trait]
pub trait NodeProvider: Send + Sync {
    /// Short provider name for messages and the inventory (`sim`, `ec2`, …).
    fn name(&self) -> &str;

    /// Check the parts of the spec only this provider understands (its own section,
    /// sizes, images) without calling the cloud. The default accepts everything.
    fn check_spec(&self, _spec: &ValidSpec) -> Result<()> {
        Ok(())
    }

    /// Warnings about `spec` the plan shows (a security trade-off the spec makes, such
    /// as nodes open to the internet), without calling the cloud. None by default.
    fn plan_warnings(&self, _spec: &ValidSpec) -> Vec<String> {
        Vec::new()
    }

    /// The zones of the cluster's region, in the cloud's order.
    async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>>;

    /// The address ranges (CIDRs) of the network the nodes are on, as the cloud
    /// knows them (EC2 subnets, a GCE subnetwork). The orchestrator adds them to
    /// the nodes' NO_PROXY and Rancher's `noProxy` beside `nodes.network_cidrs`, so
    /// node-to-node traffic never goes to the proxy although the user listed no
    /// CIDR, and checks them against the pod and service CIDRs. A read; the
    /// default (a provider that cannot tell) is none.
    async fn network_cidrs(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Every node carrying `triad-cluster=<name>` and `triad-role=node`, in any state
    /// but deleted.
    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>>;

    /// Create the node (and, the first time, the network plumbing it needs), or
    /// return it if it already exists. Returns without waiting for it to run.
    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node>;

    /// Wait until the node runs with a private IP, or `timeout` passes.
    async fn wait_node(&self, cluster: &ClusterRef, node: &Node, timeout: Duration)
        -> Result<Node>;

    /// Wait until every node in `nodes` runs with a private IP, or `timeout` passes;
    /// returns them in the order given. A provider that can read many nodes in one
    /// call (EC2 `DescribeInstances` with the ids, a GCE list with a filter, one
    /// vSphere property-collector read) overrides this so a poll costs one call for
    /// the whole cluster, not one per node. The default waits for each node with
    /// [`wait_node`](Self::wait_node), concurrently.
    async fn wait_nodes(
        &self,
        cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        futures::future::try_join_all(nodes.iter().map(|n| self.wait_node(cluster, n, timeout)))
            .await
    }

    /// Delete the node; a node that is already gone is success.
    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()>;

    /// Change the in-place parts of an existing node to what `request` asks: the
    /// cluster's SSH rules to `request.ssh_allowed_cidrs`, and the node's labels to
    /// `request.labels` (its fingerprint among them, so the next plan sees no drift).
    /// Safe to call again. The default refuses: the provider cannot update in place.
    async fn update_node(
        &self,
        _cluster: &ClusterRef,
        node: &Node,
        _request: &NodeRequest,
    ) -> Result<Node> {
        Err(cannot_update(self.name(), format!("node {}", node.name)))
    }

    /// After every node is gone: delete cluster-wide plumbing carrying the labels
    /// (security groups, firewall rules). Returns the names of what it deleted.
    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>>;
}

/// Creates and converges the one load balancer in front of the nodes.
#[async_trait]
pub trait LoadBalancerProvider: Send + Sync {
    /// Short provider name (`sim`, `ec2`, `nginx`, …).
    fn name(&self) -> &str;

    /// Check the parts of the spec only this provider understands. The default
    /// accepts everything.
    fn check_spec(&self, _spec: &ValidSpec) -> Result<()> {
        Ok(())
    }

    /// Warnings about `spec` the plan shows (see [`NodeProvider::plan_warnings`]).
    /// None by default.
    fn plan_warnings(&self, _spec: &ValidSpec) -> Vec<String> {
        Vec::new()
    }

    /// The cluster's balancer, found by its labels, with its current targets.
    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>>;

    /// Create the balancer with both listeners (and whatever parts the cloud needs),
    /// or complete and return the one that exists.
    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer>;

    /// Wait until the balancer is active with an endpoint, or `timeout` passes.
    async fn wait_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer>;

    /// Make the balancer's targets exactly `nodes` on every listener.
    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer>;

    /// Delete every part of the cluster's balancer that carries its labels, even if
    /// the balancer itself was never made. Nothing there is success.
    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>>;

    /// Change the in-place parts of the balancer to what `request` asks: the
    /// listener certificate, the health check path, and the labels (its fingerprint
    /// among them). Safe to call again. The default refuses: the provider cannot
    /// update in place.
    async fn update_load_balancer(
        &self,
        _cluster: &ClusterRef,
        lb: &LoadBalancer,
        _request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        Err(cannot_update(
            self.name(),
            format!("load balancer {}", lb.name),
        ))
    }

    /// Whether two balancers of the cluster, named by their requests, can exist side
    /// by side, so a mode or scheme change makes the new one, points DNS at it and
    /// only then deletes the old one. The default says no: the old one is deleted
    /// first.
    fn coexists(&self) -> bool {
        false
    }

    /// Whether a balancer of `mode` serves the Kubernetes registration ports
    /// ([`LoadBalancerRequest::registration_ports`]) on an address of their own
    /// rather than on its [`LoadBalancer::endpoint`] — an l7 balancer that cannot
    /// pass TCP through, with a TCP companion beside it. The balancer then reports
    /// that address as [`LoadBalancer::registration_endpoint`], and the orchestrator
    /// makes the balancer before the nodes, whose user data must carry it. The
    /// default says no: the Rancher hostname (which points at the balancer) is the
    /// registration address.
    fn registration_apart(&self, _mode: LbMode) -> bool {
        false
    }

    /// Whether a target of the balancer that dials the balancer's own address can
    /// be sent to another target. Google's passthrough balancers answer a backend's
    /// connection to their address on that backend itself (the guest agent routes
    /// the address locally), whether it is healthy or not: a server that has not
    /// joined yet would dial only itself. When this says no, the nodes join through
    /// the first node instead, and the registration listeners serve the API and
    /// agents. The default says yes.
    fn backends_reach_balancer(&self) -> bool {
        true
    }

    /// Every balancer of the cluster (two during a mode change when
    /// [`LoadBalancerProvider::coexists`]). The default is the one
    /// [`LoadBalancerProvider::discover_load_balancer`] finds.
    async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        Ok(self
            .discover_load_balancer(cluster)
            .await?
            .into_iter()
            .collect())
    }

    /// Delete the balancer named `name` and its parts only (the old one of a mode
    /// change). Only called when [`LoadBalancerProvider::coexists`]; the default refuses.
    async fn delete_load_balancer_named(
        &self,
        _cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        Err(cannot_update(self.name(), format!("load balancer {name}")))
    }
}

fn cannot_update(provider: &str, resource: String) -> Error {
    Error::provider(
        provider,
        "update in place",
        resource,
        FailureKind::InvalidRequest,
        format!(
            "the {provider} provider cannot change this in place yet; revert the spec change, \
             or change it in the cloud yourself"
        ),
    )
}

fn no_lock(provider: &str, name: &str) -> Error {
    Error::provider(
        provider,
        "conditional TXT change",
        format!("TXT {name}"),
        FailureKind::InvalidRequest,
        format!("the {provider} DNS provider has no atomic conditional change (no lock)"),
    )
}

/// What a DNS provider can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsCapabilities {
    /// It has alias records to cloud balancers (Route 53).
    pub alias: bool,
    /// It implements [`DnsProvider::read_txt`] and [`DnsProvider::swap_txt`] with an
    /// atomic conditional change, so the orchestrator can hold a lease lock
    /// ([`lock`](crate::lock)) there.
    pub lock: bool,
}

/// Writes the one DNS record for the Rancher hostname, and the ownership TXT beside it.
///
/// Ownership: a TXT record at [`ownership_name`] holding [`ownership_value`]. A record
/// without one, or with another cluster's, is never overwritten or deleted.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Short provider name (`sim`, `route53`, …).
    fn name(&self) -> &str;

    /// What the provider supports.
    fn capabilities(&self) -> DnsCapabilities {
        DnsCapabilities::default()
    }

    /// Check the parts of the spec only this provider understands.
    fn check_spec(&self, _spec: &ValidSpec) -> Result<()> {
        Ok(())
    }

    /// Whatever record of a kind triad makes (A, CNAME, alias) exists at `fqdn`, with
    /// its owner as told by the ownership TXT. An unknown zone is an error.
    async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>>;

    /// Every record in `zone` owned by `cluster`.
    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>>;

    /// Write the record and its ownership TXT (create or update), refusing with
    /// [`Error::NotOwned`] when another owner holds the name.
    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record>;

    /// Wait until the latest change to `fqdn` is served by the zone's name servers.
    async fn wait_record(&self, zone: &str, fqdn: &str, timeout: Duration) -> Result<()>;

    /// Delete the record and its ownership TXT if `cluster` owns them; a record that is
    /// already gone is success; one owned by somebody else is
    /// [`Error::NotOwned`].
    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()>;

    /// The value of the TXT record at `name` in `zone` (its strings joined), if any.
    /// Used for the lock; only called when [`DnsCapabilities::lock`] is set.
    async fn read_txt(&self, _zone: &str, name: &str) -> Result<Option<String>> {
        Err(no_lock(self.name(), name))
    }

    /// Atomically: if the TXT record at `name` is exactly `expected` (`None`: there is
    /// none), make it `new` (`None`: delete it) and return `true`; otherwise change
    /// nothing and return `false`. Two writers racing with the same `expected`: exactly
    /// one gets `true`. Only called when [`DnsCapabilities::lock`] is set.
    async fn swap_txt(
        &self,
        _zone: &str,
        name: &str,
        _expected: Option<&str>,
        _new: Option<&str>,
    ) -> Result<bool> {
        Err(no_lock(self.name(), name))
    }
}

/// The name of the ownership TXT record beside `fqdn`: `_triad.<fqdn>` (a TXT cannot
/// sit at the same name as a CNAME, so it sits beside it, as external-dns does).
pub fn ownership_name(fqdn: &str) -> String {
    format!("_triad.{}", fqdn.trim_end_matches('.'))
}

/// The ownership TXT value for `cluster`: `heritage=triad,triad-cluster=<name>,kind=<kind>`.
pub fn ownership_value(cluster: &str, kind: RecordKind) -> String {
    format!(
        "heritage=triad,{}={cluster},kind={}",
        crate::labels::CLUSTER,
        kind.to_string().to_ascii_lowercase()
    )
}

/// The ownership TXT value for `cluster`, with its id when known:
/// `heritage=triad,triad-cluster=<name>,triad-cluster-id=<id>,kind=<kind>`.
///
/// ```
/// use triad_core::provider::{ownership_txt, parse_ownership, parse_ownership_id};
/// use triad_core::{model::RecordKind, ClusterRef};
/// let mut c = ClusterRef::new("rancher", "x");
/// c.id = Some("0a1b2c3d4e5f".into());
/// let v = ownership_txt(&c, RecordKind::A);
/// assert_eq!(parse_ownership(&v).as_deref(), Some("rancher"));
/// assert_eq!(parse_ownership_id(&v).as_deref(), Some("0a1b2c3d4e5f"));
/// ```
pub fn ownership_txt(cluster: &ClusterRef, kind: RecordKind) -> String {
    match &cluster.id {
        None => ownership_value(&cluster.name, kind),
        Some(id) => format!(
            "heritage=triad,{}={},{}={id},kind={}",
            crate::labels::CLUSTER,
            cluster.name,
            crate::labels::CLUSTER_ID,
            kind.to_string().to_ascii_lowercase()
        ),
    }
}

/// The cluster id in an ownership TXT value, if it is ours and carries one.
pub fn parse_ownership_id(txt: &str) -> Option<String> {
    parse_ownership(txt)?;
    txt.trim_matches('"')
        .split(',')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == crate::labels::CLUSTER_ID)
        .map(|(_, v)| v.to_owned())
}

/// The cluster named by an ownership TXT value, if it is one of ours.
///
/// ```
/// use triad_core::provider::{ownership_value, parse_ownership};
/// use triad_core::model::RecordKind;
/// assert_eq!(parse_ownership(&ownership_value("rancher", RecordKind::A)).as_deref(), Some("rancher"));
/// assert_eq!(parse_ownership("v=spf1 -all"), None);
/// ```
pub fn parse_ownership(txt: &str) -> Option<String> {
    let txt = txt.trim_matches('"');
    let mut parts = txt.split(',');
    if parts.next()? != "heritage=triad" {
        return None;
    }
    parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == crate::labels::CLUSTER)
        .map(|(_, v)| v.to_owned())
}

// `Arc<T>` and `Box<T>` forward every method to the provider they hold, so
// `Arc<dyn NodeProvider>` (and `Arc<SomeProvider>`) can be wrapped by
// [`layers`](crate::layers) or passed wherever a provider is expected.
macro_rules! forward_provider_traits {
    ($($ptr:ident),+) => {$(
        #[async_trait]
        impl<T: NodeProvider + ?Sized> NodeProvider for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
                (**self).check_spec(spec)
            }
            fn plan_warnings(&self, spec: &ValidSpec) -> Vec<String> {
                (**self).plan_warnings(spec)
            }
            async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
                (**self).zones(cluster).await
            }
            async fn network_cidrs(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
                (**self).network_cidrs(cluster).await
            }
            async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
                (**self).discover_nodes(cluster).await
            }
            async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
                (**self).create_node(cluster, request).await
            }
            async fn wait_node(&self, cluster: &ClusterRef, node: &Node, timeout: Duration) -> Result<Node> {
                (**self).wait_node(cluster, node, timeout).await
            }
            async fn wait_nodes(&self, cluster: &ClusterRef, nodes: &[Node], timeout: Duration) -> Result<Vec<Node>> {
                (**self).wait_nodes(cluster, nodes, timeout).await
            }
            async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
                (**self).delete_node(cluster, node).await
            }
            async fn update_node(&self, cluster: &ClusterRef, node: &Node, request: &NodeRequest) -> Result<Node> {
                (**self).update_node(cluster, node, request).await
            }
            async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
                (**self).cleanup(cluster).await
            }
        }

        #[async_trait]
        impl<T: LoadBalancerProvider + ?Sized> LoadBalancerProvider for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
                (**self).check_spec(spec)
            }
            fn plan_warnings(&self, spec: &ValidSpec) -> Vec<String> {
                (**self).plan_warnings(spec)
            }
            async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
                (**self).discover_load_balancer(cluster).await
            }
            async fn create_load_balancer(&self, cluster: &ClusterRef, request: &LoadBalancerRequest) -> Result<LoadBalancer> {
                (**self).create_load_balancer(cluster, request).await
            }
            async fn wait_load_balancer(&self, cluster: &ClusterRef, lb: &LoadBalancer, timeout: Duration) -> Result<LoadBalancer> {
                (**self).wait_load_balancer(cluster, lb, timeout).await
            }
            async fn set_targets(&self, cluster: &ClusterRef, lb: &LoadBalancer, nodes: &[Node]) -> Result<LoadBalancer> {
                (**self).set_targets(cluster, lb, nodes).await
            }
            async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
                (**self).delete_load_balancer(cluster).await
            }
            async fn update_load_balancer(&self, cluster: &ClusterRef, lb: &LoadBalancer, request: &LoadBalancerRequest) -> Result<LoadBalancer> {
                (**self).update_load_balancer(cluster, lb, request).await
            }
            fn coexists(&self) -> bool {
                (**self).coexists()
            }
            fn registration_apart(&self, mode: LbMode) -> bool {
                (**self).registration_apart(mode)
            }
            fn backends_reach_balancer(&self) -> bool {
                (**self).backends_reach_balancer()
            }
            async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
                (**self).discover_load_balancers(cluster).await
            }
            async fn delete_load_balancer_named(&self, cluster: &ClusterRef, name: &str) -> Result<Vec<String>> {
                (**self).delete_load_balancer_named(cluster, name).await
            }
        }

        #[async_trait]
        impl<T: DnsProvider + ?Sized> DnsProvider for $ptr<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn capabilities(&self) -> DnsCapabilities {
                (**self).capabilities()
            }
            fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
                (**self).check_spec(spec)
            }
            async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
                (**self).lookup(zone, fqdn).await
            }
            async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
                (**self).owned_records(cluster, zone).await
            }
            async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
                (**self).upsert_record(cluster, request).await
            }
            async fn wait_record(&self, zone: &str, fqdn: &str, timeout: Duration) -> Result<()> {
                (**self).wait_record(zone, fqdn, timeout).await
            }
            async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
                (**self).delete_record(cluster, zone, fqdn).await
            }
            async fn read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
                (**self).read_txt(zone, name).await
            }
            async fn swap_txt(&self, zone: &str, name: &str, expected: Option<&str>, new: Option<&str>) -> Result<bool> {
                (**self).swap_txt(zone, name, expected, new).await
            }
        }
    )+};
}

forward_provider_traits!(Arc, Box);
