//! # triad-gce: Google Compute Engine for triad
//!
//! One [`GceProvider`] implements all three of triad's provider traits:
//!
//! - **nodes** ([`NodeProvider`]): instances spread over the region's zones, labelled
//!   `triad-cluster` / `triad-role`, the bootstrap as `user-data` metadata, a network
//!   tag for the firewall rules, no external address (the nodes reach the internet
//!   through the proxy), a `requestId` on every insert; firewall rules for 80/443,
//!   Google's health-check ranges, the inter-node ports and SSH from the allowed CIDRs.
//! - **load balancer** ([`LoadBalancerProvider`]): `l4` is the regional external
//!   passthrough Network Load Balancer (backend-service form: reserved regional
//!   address, regional HTTP health check, regional backend service over one unmanaged
//!   instance group per zone, one forwarding rule for ports 80 and 443); `l7` is the
//!   global external Application Load Balancer (global address, health check,
//!   backend service, URL map, target HTTPS proxy with the spec's certificate,
//!   forwarding rule 443, and an HTTP 80 → HTTPS redirect). Targets are instance-group
//!   membership.
//! - **DNS** ([`DnsProvider`]): Cloud DNS, an A record to the balancer's address with
//!   an ownership TXT beside it, written in one atomic change and waited on until done.
//!
//! ```no_run
//! # async fn demo() -> triad_core::Result<()> {
//! use std::sync::Arc;
//! use triad_core::{ClusterSpec, Orchestrator};
//! use triad_gce::{Connection, GceProvider};
//!
//! let spec = ClusterSpec::from_path("cluster.toml")?.validate()?;
//! // Application Default Credentials, or `$TRIAD_GCE_ENDPOINT` for a test server.
//! let gce = Arc::new(GceProvider::from_spec_with(&spec, Connection::from_env()).await?);
//! let triad = Orchestrator::new(gce.clone(), gce.clone(), gce);
//! let inventory = triad.apply(&triad.plan(&spec).await?).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
mod dns;
mod error;
mod firewall;
mod flight;
mod lb;
mod network;
mod nodes;
pub mod settings;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use triad_core::error::{Error, Result, SpecProblems};
use triad_core::model::{
    natural_key, LoadBalancer, LoadBalancerRequest, Node, NodeRequest, Record, RecordRequest,
};
use triad_core::provider::{DnsCapabilities, DnsProvider, LoadBalancerProvider, NodeProvider};
use triad_core::spec::{ClusterRef, LbMode, ValidSpec};
use triad_core::wait::Poll;

pub use client::Connection;
pub use settings::{GceSettings, ENDPOINT_ENV, HEALTH_CHECK_RANGES};

/// How the provider polls: from half a second (or `poll_interval_ms`, when shorter),
/// doubling up to `poll_interval_ms`.
fn poll_of(interval_ms: u64) -> Poll {
    let max = Duration::from_millis(interval_ms.max(1));
    Poll::new(max.min(Duration::from_millis(500)), max)
}

/// Typical Compute Engine latencies of a node: an `instances.insert` operation
/// until DONE, an inserted instance until RUNNING with its internal IP, an
/// `instances.delete` operation (a guest shutdown) until DONE.
const NODE_INSERT: Duration = Duration::from_secs(10);
const NODE_RUNNING: Duration = Duration::from_secs(5);
const NODE_DELETE: Duration = Duration::from_secs(40);

/// How the node waits poll: `poll`, expecting Compute Engine's typical latencies
/// when talking to Google (a test server such as fake-gce answers in a few polls,
/// so it gets none: its waits would only sleep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NodePolls {
    insert: Poll,
    running: Poll,
    delete: Poll,
}

impl NodePolls {
    fn new(poll: Poll, google: bool) -> Self {
        let expect = |d: Duration| poll.expecting(if google { d } else { Duration::ZERO });
        Self {
            insert: expect(NODE_INSERT),
            running: expect(NODE_RUNNING),
            delete: expect(NODE_DELETE),
        }
    }
}

/// Compute Engine nodes, load balancer and Cloud DNS records for one project.
pub struct GceProvider {
    clients: client::Clients,
    settings: GceSettings,
    nodes_image: Option<String>,
    poll: Poll,
    node_polls: NodePolls,
    checked: tokio::sync::OnceCell<()>,
    zone_cache: Mutex<HashMap<String, String>>,
    pending: Mutex<HashMap<String, (String, String)>>,
    firewall_lock: tokio::sync::Mutex<()>,
    zone_reads: flight::Flights<String>,
    node_reads: flight::Flights<Vec<google_cloud_compute_v1::model::Instance>>,
    ids: Mutex<HashMap<(String, String), String>>,
    record_reads: flight::Flights<Vec<google_cloud_dns_v1::model::ResourceRecordSet>>,
    cidrs: Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for GceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GceProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl GceProvider {
    /// The provider for a spec's `[gce]` section, with Application Default
    /// Credentials against Google's endpoints.
    pub async fn from_spec(spec: &ValidSpec) -> Result<Self> {
        Self::from_spec_with(spec, Connection::google()).await
    }

    /// The provider for a spec's `[gce]` section over `connection` (an endpoint
    /// override and anonymous credentials for a test server, e.g.
    /// [`Connection::from_env`]).
    pub async fn from_spec_with(spec: &ValidSpec, connection: Connection) -> Result<Self> {
        let mut settings = GceSettings::from_spec(spec)?;
        if settings.ssl_policy.is_none() {
            settings.ssl_policy = spec.load_balancer.ssl_policy.clone();
        }
        Self::new(settings, spec.nodes.image.clone(), connection).await
    }

    /// The provider from explicit settings: `nodes_image` is the spec's
    /// `nodes.image` (used when `settings.image` is absent).
    pub async fn new(
        settings: GceSettings,
        nodes_image: Option<String>,
        connection: Connection,
    ) -> Result<Self> {
        let clients = client::Clients::connect(&connection).await?;
        let poll = poll_of(settings.poll_interval_ms);
        Ok(Self {
            poll,
            node_polls: NodePolls::new(poll, connection.endpoint.is_none()),
            clients,
            settings,
            nodes_image,
            checked: tokio::sync::OnceCell::new(),
            zone_cache: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            firewall_lock: tokio::sync::Mutex::new(()),
            zone_reads: flight::Flights::default(),
            node_reads: flight::Flights::default(),
            ids: Mutex::new(HashMap::new()),
            record_reads: flight::Flights::default(),
            cidrs: Mutex::new(HashMap::new()),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &GceSettings {
        &self.settings
    }

    fn check(&self, spec: &ValidSpec) -> Result<()> {
        let settings = GceSettings::from_spec(spec)?;
        let problems = settings.problems(spec);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSpec(SpecProblems(problems)))
        }
    }

    pub(crate) fn network_link_pub(&self) -> String {
        let n = &self.settings.network;
        if n.contains('/') {
            n.clone()
        } else {
            format!("projects/{}/global/networks/{n}", self.settings.project)
        }
    }
}

#[async_trait]
impl NodeProvider for GceProvider {
    fn name(&self) -> &str {
        "gce"
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec)
    }

    async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.node_zones(cluster).await
    }

    /// The primary range of the nodes' subnetwork in the region (`[gce]
    /// subnetwork`, else the network's subnetwork there): one read per provider.
    async fn network_cidrs(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.subnetwork_cidrs(cluster).await
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let mut out: Vec<Node> = self
            .list_nodes(cluster)
            .await?
            .iter()
            .map(nodes::to_node)
            .collect();
        // Triad's one node order: rancher-2 before rancher-10.
        out.sort_by(|a, b| {
            natural_key(&a.name)
                .cmp(&natural_key(&b.name))
                .then(a.id.cmp(&b.id))
        });
        // Check the image and the network at plan time, unless a node made from this
        // very image on this network exists (a rerun, where they proved themselves).
        if !out.iter().any(|n| self.made_from_spec(n)) {
            self.preflight().await?;
        }
        Ok(out)
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        self.create(cluster, request).await
    }

    async fn wait_node(
        &self,
        _cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        self.wait_running(node, timeout).await
    }

    async fn wait_nodes(
        &self,
        cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        self.wait_all(cluster, nodes, timeout).await
    }

    async fn delete_node(&self, _cluster: &ClusterRef, node: &Node) -> Result<()> {
        self.delete(node).await
    }

    async fn update_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
    ) -> Result<Node> {
        self.update(cluster, node, request).await
    }

    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.delete_firewalls(cluster).await
    }
}

#[async_trait]
impl LoadBalancerProvider for GceProvider {
    fn name(&self) -> &str {
        "gce"
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec)
    }

    /// The active one of the cluster's balancers (the new one during a mode
    /// change), else the first.
    /// In l7 the registration ports are served by an internal passthrough
    /// balancer beside the HTTPS one, on an address of their own (see `lb`).
    fn registration_apart(&self, mode: LbMode) -> bool {
        mode == LbMode::L7
    }

    /// No: a backend's connection to its own passthrough balancer's address is
    /// answered by that backend itself, healthy or not ("If the client VM is a
    /// backend VM of the load balancer, connections sent to the IP address of the
    /// load balancer's forwarding rule are always answered by the client/backend
    /// VM", Google's internal passthrough Network Load Balancer overview; the guest
    /// agent routes forwarding-rule addresses locally on every backend, external
    /// passthrough ones too; rancher/rke2#1760). A server that has not joined yet
    /// would dial only itself, so the nodes join through node 1.
    fn backends_reach_balancer(&self) -> bool {
        false
    }

    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let mut all = self.discover_all(cluster).await?;
        let active = all.iter().position(|lb| lb.endpoint.is_some()).unwrap_or(0);
        Ok((!all.is_empty()).then(|| all.swap_remove(active)))
    }

    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.create_lb(cluster, request).await
    }

    async fn wait_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        // Every part was waited on when it was made; the forwarding rule serves once
        // it exists. Re-read it so the endpoint is the current one.
        let resource = format!("load balancer {}", lb.name);
        self.poll
            .until(timeout, &resource, "active", || async {
                Ok(self
                    .discover_all(cluster)
                    .await?
                    .into_iter()
                    .find(|found| found.name == lb.name && found.endpoint.is_some()))
            })
            .await
    }

    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        self.converge_targets(cluster, lb, nodes).await
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.delete_lb(cluster).await
    }

    async fn update_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.update_lb(cluster, lb, request).await
    }

    /// Yes: every part of a balancer is named after it (the instance groups, shared,
    /// after the cluster), so an l4 and an l7 balancer stand side by side while the
    /// record moves.
    fn coexists(&self) -> bool {
        true
    }

    async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        self.discover_all(cluster).await
    }

    async fn delete_load_balancer_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        self.delete_named(cluster, name).await
    }
}

#[async_trait]
impl DnsProvider for GceProvider {
    fn name(&self) -> &str {
        "gce"
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec)
    }

    async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
        self.dns_lookup(zone, fqdn).await
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        self.dns_owned(cluster, zone).await
    }

    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        self.dns_upsert(cluster, request).await
    }

    async fn wait_record(&self, _zone: &str, fqdn: &str, timeout: Duration) -> Result<()> {
        self.dns_wait(fqdn, timeout).await
    }

    fn capabilities(&self) -> DnsCapabilities {
        DnsCapabilities {
            alias: false,
            lock: true,
        }
    }

    async fn read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
        self.dns_read_txt(zone, name).await
    }

    async fn swap_txt(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        self.dns_swap_txt(zone, name, expected, new).await
    }

    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
        self.dns_delete(cluster, zone, fqdn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_waits_expect_google_latencies_only_from_google() {
        let poll = poll_of(2000);
        let google = NodePolls::new(poll, true);
        assert_eq!(google.insert.expected, NODE_INSERT);
        assert_eq!(google.running.expected, NODE_RUNNING);
        assert_eq!(google.delete.expected, NODE_DELETE);
        assert_eq!(
            (google.running.initial, google.running.max),
            (poll.initial, poll.max)
        );
        let fake = NodePolls::new(poll, false);
        assert_eq!(fake.insert, poll);
        assert_eq!(fake.running, poll);
        assert_eq!(fake.delete, poll);
    }
}
