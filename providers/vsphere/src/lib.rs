//! # triad-vsphere
//!
//! triad's [`NodeProvider`] for VMware vSphere: each node is a VM cloned from a
//! template into the resource pool of its failure domain (zone → compute cluster or
//! resource pool), with its cloud-init user data in `guestinfo.userdata`, CPU and
//! memory set explicitly, powered on, and waited for until VMware Tools reports an IP.
//!
//! - **Idempotent**: every node's instance UUID is derived from (datacenter, cluster,
//!   node name) ([`uuid::instance_uuid`]), and the clone asks for it, so a rerun finds
//!   the VM by UUID instead of cloning again.
//! - **Ownership**: the custom attributes `triad-cluster` and `triad-role` (plus the
//!   spec's extra labels) on the VM, and — set atomically with the clone, so a crash
//!   between clone and tagging leaves nothing undiscoverable — the `extraConfig` keys
//!   `triad.cluster`, `triad.role`, `triad.node` and `triad.zone`.
//! - **Fingerprint** (drift): the `triad-fp-*` labels live in `extraConfig` as
//!   `triad.label.triad-fp-*`, written with the clone and changed in place by one
//!   `ReconfigVM` ([`NodeProvider::update_node`]). vSphere has no firewall in front
//!   of a VM, so `nodes.ssh_allowed_cidrs` has no cloud object here: changing it
//!   updates only its fingerprint.
//! - **Tasks** are polled through `info.state` with backoff
//!   ([`triad_core::wait::Poll`]); a failed task is reported with vCenter's fault.
//! - **Waits** read every waited-for VM in one property-collector call per poll
//!   ([`NodeProvider::wait_nodes`]).
//! - **One session on one worker thread** (`worker`): the vim_rs client lives on a
//!   thread with its own runtime and takes jobs over a channel, so the provider's
//!   futures are `Send` without `unsafe`. [`VsphereProvider::calls`] counts every
//!   call made to vCenter.
//! - **TLS** verification is on; trust a private CA with `ca_file`, or opt out with
//!   `insecure = true`.
//!
//! vSphere has no managed load balancer or DNS: pair this crate with `triad-nginx` and
//! `triad-rfc2136` (or any other providers). See `docs/vsphere.md`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod error;
mod nodes;
mod polls;
pub mod settings;
pub mod uuid;
mod vcenter;
mod vm;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use triad_core::model::{Node, NodeRequest};
use triad_core::spec::{ClusterRef, ValidSpec};
use triad_core::{NodeProvider, Result};

pub use client::CallCounts;
pub use settings::{Transport, VsphereSettings};

use client::Tally;
use polls::Polls;
use worker::Worker;

/// The provider's name in messages and the inventory.
pub const PROVIDER: &str = "vsphere";

/// Extra `extraConfig` entries for one node, computed by an embedder's hook (see
/// [`VsphereProvider::with_node_extra_config`]).
pub type NodeExtraConfig = dyn Fn(&NodeRequest) -> Vec<(String, String)> + Send + Sync;

/// A distinct `10.x.y.z` per VM name (FNV-1a of the name), the fake guest address
/// [`VsphereProvider::with_vcsim`] gives a clone on vcsim.
pub fn vcsim_guest_ip(name: &str) -> String {
    let h = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!(
        "10.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xff).clamp(1, 254)
    )
}

/// vSphere nodes: VMs cloned from a template over failure domains.
///
/// Build one with [`VsphereProvider::from_spec`] (reads `[vsphere]` and logs in) or
/// [`VsphereProvider::connect`]. It is a handle on a worker thread that holds the
/// vCenter session; the session ends (logout) when the provider is dropped.
pub struct VsphereProvider {
    settings: VsphereSettings,
    worker: Worker,
    tally: Tally,
    node_extra_config: Option<Arc<NodeExtraConfig>>,
    poll: Duration,
    vcsim: bool,
}

impl std::fmt::Debug for VsphereProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsphereProvider")
            .field("settings", &self.settings)
            .field("poll", &self.poll)
            .field("vcsim", &self.vcsim)
            .finish_non_exhaustive()
    }
}

impl VsphereProvider {
    /// Read `[vsphere]` from the spec and log in to vCenter.
    pub async fn from_spec(spec: &ValidSpec) -> Result<Self> {
        let settings = VsphereSettings::from_spec(spec)?;
        Self::connect(settings).await
    }

    /// Log in to vCenter with `settings` (credentials from the settings or from
    /// `VSPHERE_USER`/`VSPHERE_PASSWORD`).
    pub async fn connect(settings: VsphereSettings) -> Result<Self> {
        let tally = Tally::default();
        let worker = Worker::start(settings.clone(), tally.clone()).await?;
        Ok(Self {
            settings,
            worker,
            tally,
            node_extra_config: None,
            poll: Duration::from_secs(2),
            vcsim: false,
        })
    }

    /// Add per-node `extraConfig` entries computed by `hook` at clone time (for
    /// instance vcsim's `SET.guest.ipAddress`, or a per-node static address for a
    /// guest agent). The `[vsphere] extra_config` entries apply to every node.
    pub fn with_node_extra_config(
        mut self,
        hook: impl Fn(&NodeRequest) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.node_extra_config = Some(Arc::new(hook));
        self
    }

    /// **vcsim only** (govmomi's vCenter simulator). vcsim reports no guest IP for a
    /// clone: give each node the fake address [`vcsim_guest_ip`] derives from its
    /// name, through vcsim's `SET.guest.ipAddress` extraConfig key. And vcsim
    /// finishes every task at once: expect no vCenter latency in the waits (they
    /// would only sleep). Never use it against a vCenter.
    pub fn with_vcsim(mut self) -> Self {
        self.vcsim = true;
        self.with_node_extra_config(|r: &NodeRequest| {
            vec![("SET.guest.ipAddress".to_owned(), vcsim_guest_ip(&r.name))]
        })
    }

    /// The longest pause between two looks at vCenter while waiting (2 s by default).
    /// Waits start with a short pause (a quarter of it for nodes, 100 ms for tasks)
    /// and double up to it; the clone, power-on and boot waits first expect
    /// vCenter's typical latency (60 s, 5 s, 45 s; not with
    /// [`with_vcsim`](Self::with_vcsim)).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &VsphereSettings {
        &self.settings
    }

    /// The calls this provider made to vCenter since it logged in.
    pub fn calls(&self) -> CallCounts {
        self.tally.snapshot()
    }

    /// Start counting [`calls`](Self::calls) from zero.
    pub fn reset_calls(&self) {
        self.tally.reset()
    }

    /// Resolve every inventory object the settings name, reporting every one that does
    /// not exist as a spec problem naming its field (`vsphere.datacenter`,
    /// `vsphere.template`, `vsphere.failure_domains.zone-a`, …).
    pub async fn check_inventory(&self) -> Result<()> {
        self.worker
            .call(|v| async move { v.placement().await.map(drop) })
            .await
    }

    /// Wait for the vCenter task with managed object id `task` (`task-42`, started
    /// by another client of the same vCenter); a failed task becomes an error naming
    /// `action` and `resource` and carrying vCenter's fault.
    pub async fn wait_task(&self, task: &str, action: &str, resource: &str) -> Result<()> {
        let (task, action, resource) = (task.to_owned(), action.to_owned(), resource.to_owned());
        let poll = self.polls().task;
        self.worker
            .call(move |v| async move { v.wait_task_id(&task, &action, &resource, poll).await })
            .await
    }

    /// How the waits poll.
    fn polls(&self) -> Polls {
        Polls::new(self.poll, !self.vcsim)
    }
}

#[async_trait]
impl NodeProvider for VsphereProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        VsphereSettings::from_spec(spec).map(drop)
    }

    fn plan_warnings(&self, spec: &ValidSpec) -> Vec<String> {
        disk_warning(spec).into_iter().collect()
    }

    async fn zones(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        Ok(self.settings.failure_domains.keys().cloned().collect())
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let cluster = cluster.clone();
        self.worker
            .call(move |v| async move { v.discover_nodes(&cluster).await })
            .await
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let hook = self
            .node_extra_config
            .as_ref()
            .map(|h| h(request))
            .unwrap_or_default();
        let (cluster, request, polls) = (cluster.clone(), request.clone(), self.polls());
        self.worker
            .call(move |v| async move { v.create_node(&cluster, &request, &hook, polls).await })
            .await
    }

    async fn wait_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        let mut nodes = self
            .wait_nodes(cluster, std::slice::from_ref(node), timeout)
            .await?;
        Ok(nodes.remove(0))
    }

    async fn wait_nodes(
        &self,
        _cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let (nodes, poll) = (nodes.to_vec(), self.polls().boot);
        self.worker
            .call(move |v| async move { v.wait_nodes(&nodes, timeout, poll).await })
            .await
    }

    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
        let (cluster, node, poll) = (cluster.clone(), node.clone(), self.polls().task);
        self.worker
            .call(move |v| async move { v.delete_node(&cluster, &node, poll).await })
            .await
    }

    /// Labels (the fingerprint among them) to `request.labels`. vSphere has no
    /// firewall in front of a VM: `ssh_allowed_cidrs` has no cloud object, only its
    /// fingerprint label.
    async fn update_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
    ) -> Result<Node> {
        let (cluster, node, request, poll) = (
            cluster.clone(),
            node.clone(),
            request.clone(),
            self.polls().task,
        );
        self.worker
            .call(move |v| async move { v.update_node(&cluster, &node, &request, poll).await })
            .await
    }

    async fn cleanup(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        // Nothing cluster-wide is created: no folder, no rule. Custom attribute
        // definitions are shared by every cluster and stay.
        Ok(Vec::new())
    }
}

/// `nodes.disk_gib` is not applied here (a clone keeps its template's disk): said in
/// the plan rather than silently ignored.
fn disk_warning(spec: &ValidSpec) -> Option<String> {
    spec.nodes.disk_gib.map(|d| {
        format!(
            "nodes.disk_gib = {d} is not applied on vSphere: clones keep the template's disk \
             size (grow the template's disk, or leave nodes.disk_gib out); changing it still \
             replaces the nodes one at a time"
        )
    })
}

#[cfg(test)]
mod disk_tests {
    use triad_core::spec::ClusterSpec;

    fn spec(nodes: &str) -> triad_core::spec::ValidSpec {
        ClusterSpec::from_toml(&format!(
            "name = \"r\"\nregion = \"dc\"\n[nodes]\n{nodes}\n[dns]\nzone = \"e.com\"\nhostname = \"r.e.com\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    #[test]
    fn disk_gib_is_warned_about_not_ignored() {
        let w = super::disk_warning(&spec("disk_gib = 200")).expect("a warning");
        assert!(
            w.contains("nodes.disk_gib = 200") && w.contains("template"),
            "{w}"
        );
        assert_eq!(super::disk_warning(&spec("")), None);
    }
}
