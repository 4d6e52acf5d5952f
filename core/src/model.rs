//! The resources triad manages, as the orchestrator sees them: nodes, one load
//! balancer, one DNS record, and the [`Inventory`] an apply produces. Cloud details
//! (target groups, instance groups, listeners) stay inside providers.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::spec::{Distribution, Ingress, LbMode, LbScheme, DEFAULT_TTL};

/// A node's lifecycle state, normalised across clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Being created or booting.
    Pending,
    /// Running, with a private IP.
    Running,
    /// Stopping or stopped.
    Stopped,
    /// Being deleted.
    Terminating,
}

/// A node as discovered in the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The cloud's id (instance id, VM instance UUID, …).
    pub id: String,
    /// triad's name for it, `<cluster>-<n>`.
    pub name: String,
    /// Zone (failure domain).
    pub zone: String,
    /// State.
    pub state: NodeState,
    /// Private address, once known.
    pub private_ip: Option<IpAddr>,
    /// Public address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<IpAddr>,
    /// Where SSH reaches the node from the machine running triad (`host:port`), when
    /// the provider knows a path other than the private IP on port 22 (the QEMU
    /// provider's loopback port forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// Labels (tags) on the node: ownership, cluster id and the fingerprint of what it
    /// was made from ([`drift`](crate::drift)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the cloud made it, in milliseconds since the Unix epoch, when the cloud
    /// says. Of two nodes with one name the oldest is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<u64>,
}

impl Node {
    /// Running with a private IP: ready to be a balancer target.
    pub fn is_ready(&self) -> bool {
        self.state == NodeState::Running && self.private_ip.is_some()
    }
}

/// What the orchestrator asks a [`NodeProvider`](crate::provider::NodeProvider) to create.
///
/// New fields may be added in a minor release: outside triad-core, make one with
/// [`NodeRequest::new`] and set the public fields it leaves at their defaults.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeRequest {
    /// Node name, unique in the cluster; the provider's idempotency key.
    pub name: String,
    /// Zone to place it in.
    pub zone: String,
    /// Machine size (provider-specific), if the spec gives one.
    pub size: Option<String>,
    /// Machine image (provider-specific), if the spec gives one.
    pub image: Option<String>,
    /// Root disk size in GiB, if the spec gives one.
    pub disk_gib: Option<u32>,
    /// CIDRs allowed to reach SSH.
    pub ssh_allowed_cidrs: Vec<String>,
    /// Labels to put on the node (ownership labels included).
    pub labels: BTreeMap<String, String>,
    /// cloud-init user data. It can hold the proxy password, so `Debug` shows only
    /// its length.
    pub user_data: String,
}

impl NodeRequest {
    /// A request for node `name` in `zone`, with everything else left to the
    /// provider: no size, image or disk size, no SSH CIDRs, no labels and empty user
    /// data. Set the public fields for more:
    ///
    /// ```
    /// use triad_core::model::NodeRequest;
    ///
    /// let mut request = NodeRequest::new("rancher-1", "us-east-1a");
    /// request.size = Some("m6i.xlarge".into());
    /// request.user_data = "#cloud-config\n".into();
    /// ```
    pub fn new(name: impl Into<String>, zone: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            zone: zone.into(),
            size: None,
            image: None,
            disk_gib: None,
            ssh_allowed_cidrs: Vec::new(),
            labels: BTreeMap::new(),
            user_data: String::new(),
        }
    }
}

impl fmt::Debug for NodeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRequest")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("size", &self.size)
            .field("image", &self.image)
            .field("disk_gib", &self.disk_gib)
            .field("ssh_allowed_cidrs", &self.ssh_allowed_cidrs)
            .field("labels", &self.labels)
            .field(
                "user_data",
                &format_args!("<{} bytes>", self.user_data.len()),
            )
            .finish()
    }
}

/// Where clients reach the balancer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Endpoint {
    /// One or more IP addresses (A records).
    Ip {
        /// The addresses.
        addresses: Vec<IpAddr>,
    },
    /// A DNS name (CNAME or alias).
    Hostname {
        /// The balancer's DNS name.
        name: String,
        /// The hosted zone id an alias record needs (Route 53's
        /// `CanonicalHostedZoneId`), when the cloud has aliases.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alias_zone: Option<String>,
    },
}

impl Endpoint {
    /// The host a client dials: the DNS name, or the first address (bare, IPv6
    /// without brackets). `None` for an address list that is empty.
    pub fn host(&self) -> Option<String> {
        match self {
            Endpoint::Ip { addresses } => addresses.first().map(ToString::to_string),
            Endpoint::Hostname { name, .. } => Some(name.clone()),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ip { addresses } => {
                let v: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                f.write_str(&v.join(","))
            }
            Endpoint::Hostname { name, .. } => f.write_str(name),
        }
    }
}

/// Load balancer lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbState {
    /// Being created.
    Provisioning,
    /// Serving.
    Active,
    /// Failed to provision.
    Failed,
}

/// One listener: a port the balancer accepts, and the port on the nodes it sends to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Listener {
    /// Port on the balancer.
    pub port: u16,
    /// `TCP`, `HTTP` or `HTTPS`.
    pub protocol: String,
    /// Port on the nodes (`None` for a redirect-only listener).
    pub target_port: Option<u16>,
}

/// The load balancer as discovered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// The cloud's id (ARN, self-link, …).
    pub id: String,
    /// Name.
    pub name: String,
    /// l4 or l7.
    pub mode: LbMode,
    /// Internet-facing or internal.
    pub scheme: LbScheme,
    /// State.
    pub state: LbState,
    /// Endpoint, once known.
    pub endpoint: Option<Endpoint>,
    /// Where the Kubernetes registration ports are served when not on `endpoint`:
    /// the internal TCP companion of an l7 balancer whose provider says
    /// [`registration_apart`](crate::provider::LoadBalancerProvider::registration_apart).
    /// `None` when `endpoint` (and so the Rancher hostname) serves them, or when
    /// the balancer has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<Endpoint>,
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Ids of the nodes currently registered as targets on every listener, sorted.
    pub targets: Vec<String>,
    /// Ids registered on some listeners (target groups, backend services) but not
    /// all — what an interrupted register or deregister leaves — sorted. The targets
    /// are converged whenever this is not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_targets: Vec<String>,
    /// Labels on the balancer as discovered (ownership, cluster id, fingerprint);
    /// empty when the provider does not read them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What the orchestrator asks a [`LoadBalancerProvider`](crate::provider::LoadBalancerProvider) to create.
///
/// New fields may be added in a minor release: outside triad-core, make one with
/// [`LoadBalancerRequest::new`] and set the public fields it leaves at their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadBalancerRequest {
    /// Name; the provider's idempotency key together with the cluster.
    pub name: String,
    /// l4 or l7.
    pub mode: LbMode,
    /// Internet-facing or internal.
    pub scheme: LbScheme,
    /// Certificate reference for l7.
    pub certificate: Option<String>,
    /// Health check path on port 80 (follows the ingress: `/healthz` or `/ping`).
    pub health_check_path: String,
    /// Extra TCP ports passed through to the same port on every node, with a TCP
    /// health check, in l4 and l7 mode alike: the Kubernetes registration address
    /// (9345 for RKE2, 6443 for RKE2 and K3s). Empty for RKE or
    /// `load_balancer.registration = "first-node"`.
    pub registration_ports: Vec<u16>,
    /// Zones the nodes are in (the balancer should serve all of them).
    pub zones: Vec<String>,
    /// Labels to put on every part of the balancer.
    pub labels: BTreeMap<String, String>,
}

impl LoadBalancerRequest {
    /// A request for balancer `name` in `mode` and `scheme`, with no certificate, a
    /// health check on `/healthz` (the NGINX ingress's; Traefik's is `/ping`), no
    /// registration ports, no zones and no labels. Set the public fields for more:
    ///
    /// ```
    /// use triad_core::spec::{LbMode, LbScheme};
    /// use triad_core::model::LoadBalancerRequest;
    ///
    /// let mut request = LoadBalancerRequest::new("rancher", LbMode::L7, LbScheme::Internal);
    /// request.certificate = Some("arn:aws:acm:us-east-1:123456789012:certificate/abc".into());
    /// ```
    pub fn new(name: impl Into<String>, mode: LbMode, scheme: LbScheme) -> Self {
        Self {
            name: name.into(),
            mode,
            scheme,
            certificate: None,
            health_check_path: Ingress::Nginx.health_check_path().to_owned(),
            registration_ports: Vec::new(),
            zones: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// DNS record types triad makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Address record.
    A,
    /// Canonical name.
    Cname,
    /// A provider alias to the balancer (Route 53).
    Alias,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::A => "A",
            RecordKind::Cname => "CNAME",
            RecordKind::Alias => "alias",
        })
    }
}

/// A DNS record as found in a zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Fully qualified name, without trailing dot.
    pub fqdn: String,
    /// Zone.
    pub zone: String,
    /// Type.
    pub kind: RecordKind,
    /// Target: the endpoint the record points at.
    pub target: Endpoint,
    /// TTL in seconds (aliases have none).
    pub ttl: Option<u32>,
    /// The cluster named by the record's ownership TXT, if any.
    pub owner: Option<String>,
    /// The cluster id in the ownership TXT, if it carries one (written since Day 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

/// What the orchestrator asks a [`DnsProvider`](crate::provider::DnsProvider) to write.
///
/// New fields may be added in a minor release: outside triad-core, make one with
/// [`RecordRequest::new`] and set the public fields it leaves at their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordRequest {
    /// Fully qualified name, without trailing dot.
    pub fqdn: String,
    /// Zone.
    pub zone: String,
    /// Type.
    pub kind: RecordKind,
    /// Target.
    pub target: Endpoint,
    /// TTL.
    pub ttl: u32,
}

impl RecordRequest {
    /// A request for a `kind` record `fqdn` in `zone` pointing at `target`, with the
    /// default TTL ([`DEFAULT_TTL`], 60 seconds). Set
    /// `ttl` for another:
    ///
    /// ```
    /// use triad_core::model::{Endpoint, RecordKind, RecordRequest};
    ///
    /// let target = Endpoint::Ip { addresses: vec!["192.0.2.10".parse().unwrap()] };
    /// let mut request =
    ///     RecordRequest::new("rancher.example.com", "example.com", RecordKind::A, target);
    /// request.ttl = 300;
    /// ```
    pub fn new(
        fqdn: impl Into<String>,
        zone: impl Into<String>,
        kind: RecordKind,
        target: Endpoint,
    ) -> Self {
        Self {
            fqdn: fqdn.into(),
            zone: zone.into(),
            kind,
            target,
            ttl: DEFAULT_TTL,
        }
    }

    /// Whether `record` already says what this request asks for.
    pub fn is_satisfied_by(&self, record: &Record) -> bool {
        record.fqdn == self.fqdn
            && record.kind == self.kind
            && record.target == self.target
            && (self.kind == RecordKind::Alias || record.ttl == Some(self.ttl))
    }
}

/// The result of an apply: what exists, in a form fit for JSON output and for the
/// renderers in [`render`](crate::render).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Cluster name.
    pub cluster: String,
    /// Region.
    pub region: String,
    /// Nodes, by name.
    pub nodes: Vec<Node>,
    /// The balancer.
    pub load_balancer: LoadBalancer,
    /// The record.
    pub dns: DnsEntry,
    /// `https://<hostname>`.
    pub rancher_url: String,
    /// Whether TLS ends at the balancer (l7): Rancher then needs `tls=external`.
    pub tls_external: bool,
    /// Which provider made each part.
    pub providers: Providers,
    /// Where Kubernetes registers and serves its API, for a tool that goes on
    /// from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesEntry>,
}

/// The Kubernetes part of an [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesEntry {
    /// `rke2`, `k3s` or `rke`.
    pub distribution: Distribution,
    /// The fixed registration address (the Rancher hostname through the balancer,
    /// or node 1's private address), when the distribution has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_address: Option<String>,
    /// Where nodes 2…N join (`https://<registration>:9345` for RKE2, `:6443` for K3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_url: Option<String>,
    /// The Kubernetes API server URL at the registration address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
}

/// The record in an [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsEntry {
    /// Fully qualified name.
    pub fqdn: String,
    /// Zone.
    pub zone: String,
    /// Type.
    pub kind: RecordKind,
    /// What it points at.
    pub target: Endpoint,
    /// TTL, when the type has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

impl From<Record> for DnsEntry {
    fn from(r: Record) -> Self {
        Self {
            fqdn: r.fqdn,
            zone: r.zone,
            kind: r.kind,
            target: r.target,
            ttl: r.ttl,
        }
    }
}

/// Provider names behind an inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Providers {
    /// Node provider.
    pub nodes: String,
    /// Load balancer provider.
    pub load_balancer: String,
    /// DNS provider.
    pub dns: String,
}

/// The one order of nodes everywhere (plans, inventories, balancer configs): by
/// name, numbers compared as numbers, so `x-2` comes before `x-10`, and a
/// replacement `x-2-g2` right after the `x-2` it replaces.
///
/// ```
/// let mut v = vec!["r-10", "r-2-g2", "r-9", "r-2"];
/// v.sort_by_key(|n| triad_core::model::natural_key(n));
/// assert_eq!(v, ["r-2", "r-2-g2", "r-9", "r-10"]);
/// ```
pub fn natural_key(name: &str) -> (String, u64, u64) {
    let mut parts = name.rsplitn(3, '-');
    let last = parts.next().unwrap_or_default();
    if let Some(g) = last.strip_prefix('g').and_then(|g| g.parse::<u64>().ok()) {
        if let (Some(n), Some(stem)) = (parts.next(), parts.next()) {
            if let Ok(n) = n.parse() {
                return (stem.to_owned(), n, g);
            }
        }
    }
    match name.rsplit_once('-') {
        Some((stem, n)) => match n.parse() {
            Ok(n) => (stem.to_owned(), n, 1),
            Err(_) => (name.to_owned(), 0, 0),
        },
        None => (name.to_owned(), 0, 0),
    }
}
