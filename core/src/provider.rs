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

use crate::error::Result;
use crate::model::{
    LoadBalancer, LoadBalancerRequest, Node, NodeRequest, Record, RecordKind, RecordRequest,
};
use crate::spec::{ClusterRef, ValidSpec};

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

    /// Every node carrying `triad-cluster=<name>` and `triad-role=node`, in any state
    /// but deleted.
    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>>;

    /// Create the node (and, the first time, the network plumbing it needs), or
    /// return it if it already exists. Returns without waiting for it to run.
    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node>;

    /// Wait until the node runs with a private IP, or `timeout` passes.
    async fn wait_node(&self, cluster: &ClusterRef, node: &Node, timeout: Duration)
        -> Result<Node>;

    /// Delete the node; a node that is already gone is success.
    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()>;

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
}

/// What a DNS provider can do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsCapabilities {
    /// It has alias records to cloud balancers (Route 53).
    pub alias: bool,
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
    /// [`Error::NotOwned`](crate::Error::NotOwned) when another owner holds the name.
    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record>;

    /// Wait until the latest change to `fqdn` is served by the zone's name servers.
    async fn wait_record(&self, zone: &str, fqdn: &str, timeout: Duration) -> Result<()>;

    /// Delete the record and its ownership TXT if `cluster` owns them; a record that is
    /// already gone is success; one owned by somebody else is
    /// [`Error::NotOwned`](crate::Error::NotOwned).
    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()>;
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
            async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
                (**self).discover_nodes(cluster).await
            }
            async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
                (**self).create_node(cluster, request).await
            }
            async fn wait_node(&self, cluster: &ClusterRef, node: &Node, timeout: Duration) -> Result<Node> {
                (**self).wait_node(cluster, node, timeout).await
            }
            async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
                (**self).delete_node(cluster, node).await
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
        }
    )+};
}

forward_provider_traits!(Arc, Box);
