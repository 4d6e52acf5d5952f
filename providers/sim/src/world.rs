//! The simulated cloud's state, and the public views of it tests inspect.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use triad_core::labels;
use triad_core::model::{Endpoint, LbState, NodeState};
use triad_core::secret::Secret;
use triad_core::spec::{ClusterRef, LbMode, LbScheme};
use triad_core::FailureKind;

use crate::config::SimConfig;
use crate::fault::{ArmedFault, SimApi};

/// Why a simulated API call failed (becomes an [`Error::Provider`](triad_core::Error::Provider)).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

/// Calls counted since creation or [`SimCloud::reset_stats`](crate::SimCloud::reset_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Calls per API name (`RunInstance` → 3), failed and faulted calls included.
    pub calls: BTreeMap<&'static str, u64>,
    /// Mutating calls in total.
    pub mutating: u64,
    /// Injected faults that fired.
    pub faults_fired: u64,
}

impl SimStats {
    /// How many times `api` was called.
    pub fn calls(&self, api: SimApi) -> u64 {
        self.calls.get(api.as_str()).copied().unwrap_or(0)
    }

    /// Every call, of any kind.
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    pub(crate) fn record(&mut self, api: SimApi) {
        *self.calls.entry(api.as_str()).or_default() += 1;
        if api.is_mutating() {
            self.mutating += 1;
        }
    }
}

/// An instance as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) zone: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) private_ip: IpAddr,
    pub(crate) security_group: String,
    pub(crate) size: Option<String>,
    pub(crate) image: Option<String>,
    #[serde(with = "crate::state::wall")]
    pub(crate) created: Instant,
    pub(crate) created_ms: u64,
    #[serde(with = "crate::state::wall_opt")]
    pub(crate) terminated: Option<Instant>,
    /// The user data it was launched with. Never written to a state file: it holds
    /// the join token and the proxy password.
    #[serde(skip)]
    pub(crate) user_data: Option<Secret>,
}

impl Instance {
    /// The state at `now`, or `None` once the instance has vanished.
    pub(crate) fn state(&self, cfg: &SimConfig, now: Instant) -> Option<NodeState> {
        match self.terminated {
            Some(t) if now >= t + cfg.node_terminate => None,
            Some(_) => Some(NodeState::Terminating),
            None if now >= self.created + cfg.node_create + cfg.node_boot => {
                Some(NodeState::Running)
            }
            None => Some(NodeState::Pending),
        }
    }

    /// Pending or running.
    pub(crate) fn is_live(&self) -> bool {
        self.terminated.is_none()
    }

    pub(crate) fn owned_by(&self, cluster: &ClusterRef, role: labels::Role) -> bool {
        self.region == cluster.region && has_labels(&self.labels, cluster, role)
    }

    pub(crate) fn view(&self, cfg: &SimConfig, now: Instant) -> Option<SimNode> {
        Some(SimNode {
            id: self.id.clone(),
            name: self.name.clone(),
            region: self.region.clone(),
            zone: self.zone.clone(),
            state: self.state(cfg, now)?,
            private_ip: self.private_ip,
            security_group: self.security_group.clone(),
            size: self.size.clone(),
            image: self.image.clone(),
            labels: self.labels.clone(),
            user_data: self.user_data.clone(),
        })
    }
}

/// Whether `labels` carry the cluster's ownership labels for `role`.
pub(crate) fn has_labels(
    labels: &BTreeMap<String, String>,
    cluster: &ClusterRef,
    role: labels::Role,
) -> bool {
    labels.get(labels::CLUSTER) == Some(&cluster.name)
        && labels.get(labels::ROLE).map(String::as_str) == Some(role.as_str())
}

/// A node in a [`SimSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimNode {
    /// Instance id, `i-` and 17 hex digits.
    pub id: String,
    /// Node name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// State (`Pending`, `Running` or `Terminating`).
    pub state: NodeState,
    /// Private address, `10.<zone index>.x.y`.
    pub private_ip: IpAddr,
    /// Id of the security group it uses.
    pub security_group: String,
    /// Machine size asked for.
    pub size: Option<String>,
    /// Image asked for.
    pub image: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The user data it was launched with, as EC2's `DescribeInstanceAttribute`
    /// returns it; `None` for an instance loaded from a state file, which never
    /// stores it (it holds the join token and the proxy password).
    pub user_data: Option<Secret>,
}

/// The per-cluster security group in a [`SimSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSecurityGroup {
    /// Id, `sg-` and 17 hex digits.
    pub id: String,
    /// Name, `<cluster>-nodes`.
    pub name: String,
    /// Region.
    pub region: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// CIDRs allowed to reach port 22 (`nodes.ssh_allowed_cidrs`).
    pub ssh_cidrs: Vec<String>,
}

/// A target group's health check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimHealthCheck {
    /// `HTTP`, or `TCP` for the registration ports.
    pub protocol: String,
    /// Path asked (empty for `TCP`).
    pub path: String,
    /// Port asked on the nodes.
    pub port: u16,
    /// Successes before a target is healthy.
    pub healthy_threshold: u32,
    /// Failures before a target is unhealthy.
    pub unhealthy_threshold: u32,
    /// Time a check may take.
    pub timeout: Duration,
    /// Time between checks.
    pub interval: Duration,
}

/// A target group in a [`SimSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimTargetGroup {
    /// Id (`arn:sim:elb:<region>:targetgroup/<name>/<hex>`).
    pub arn: String,
    /// Name, `<lb>-tcp-80`, `<lb>-tcp-443` or `<lb>-http-80`.
    pub name: String,
    /// Region.
    pub region: String,
    /// `TCP` or `HTTP`.
    pub protocol: String,
    /// Port on the nodes.
    pub port: u16,
    /// Health check.
    pub health_check: SimHealthCheck,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Registered instance ids.
    pub targets: BTreeSet<String>,
}

/// A balancer as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Balancer {
    pub(crate) arn: String,
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) mode: LbMode,
    pub(crate) scheme: LbScheme,
    pub(crate) zones: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) endpoint: Endpoint,
    #[serde(with = "crate::state::wall")]
    pub(crate) created: Instant,
}

impl Balancer {
    pub(crate) fn state(&self, cfg: &SimConfig, now: Instant) -> LbState {
        if now >= self.created + cfg.lb_provision {
            LbState::Active
        } else {
            LbState::Provisioning
        }
    }

    pub(crate) fn view(&self, cfg: &SimConfig, now: Instant) -> SimBalancer {
        let state = self.state(cfg, now);
        SimBalancer {
            arn: self.arn.clone(),
            name: self.name.clone(),
            region: self.region.clone(),
            mode: self.mode,
            scheme: self.scheme,
            zones: self.zones.clone(),
            labels: self.labels.clone(),
            state,
            endpoint: (state == LbState::Active).then(|| self.endpoint.clone()),
        }
    }
}

/// A balancer in a [`SimSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimBalancer {
    /// Id (`arn:sim:elb:<region>:loadbalancer/<name>/<hex>`).
    pub arn: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// l4 or l7.
    pub mode: LbMode,
    /// Scheme.
    pub scheme: LbScheme,
    /// Zones it serves.
    pub zones: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// State.
    pub state: LbState,
    /// Endpoint, once active.
    pub endpoint: Option<Endpoint>,
}

/// What a listener does with a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimListenerAction {
    /// Send it to a target group (by arn).
    Forward(String),
    /// Answer with a redirect to HTTPS on port 443.
    RedirectToHttps,
}

/// A listener in a [`SimSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimListener {
    /// Id.
    pub arn: String,
    /// The balancer's arn.
    pub balancer_arn: String,
    /// Port on the balancer.
    pub port: u16,
    /// `TCP`, `HTTP` or `HTTPS`.
    pub protocol: String,
    /// What it does.
    pub action: SimListenerAction,
    /// Certificate of an HTTPS listener.
    pub certificate: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The data of a record set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimRecordData {
    /// Addresses.
    A(Vec<IpAddr>),
    /// A canonical name.
    Cname(String),
    /// An alias to a balancer: its DNS name and hosted zone id.
    Alias {
        /// DNS name.
        name: String,
        /// Hosted zone id of the target.
        zone_id: String,
    },
    /// Text strings.
    Txt(Vec<String>),
}

impl SimRecordData {
    /// The DNS type the set occupies: an alias is an `A` set.
    pub fn rtype(&self) -> &'static str {
        match self {
            SimRecordData::A(_) | SimRecordData::Alias { .. } => "A",
            SimRecordData::Cname(_) => "CNAME",
            SimRecordData::Txt(_) => "TXT",
        }
    }

    /// An A, CNAME or alias set (what triad's records are).
    pub fn is_address(&self) -> bool {
        !matches!(self, SimRecordData::Txt(_))
    }
}

/// One record set of a hosted zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRecordSet {
    /// Name, lowercase without trailing dot.
    pub fqdn: String,
    /// TTL (aliases have none).
    pub ttl: Option<u32>,
    /// Data.
    pub data: SimRecordData,
}

/// A hosted zone as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HostedZone {
    pub(crate) id: String,
    pub(crate) records: Vec<SimRecordSet>,
    /// Latest change id touching each name.
    pub(crate) latest_change: BTreeMap<String, String>,
}

/// A hosted zone in a [`SimSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimHostedZone {
    /// Zone name.
    pub name: String,
    /// Zone id.
    pub id: String,
    /// Record sets, sorted by name and type.
    pub records: Vec<SimRecordSet>,
}

/// Everything that exists in the simulated cloud at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSnapshot {
    /// Nodes that have not vanished (terminating ones included), by id.
    pub nodes: Vec<SimNode>,
    /// Security groups.
    pub security_groups: Vec<SimSecurityGroup>,
    /// Target groups.
    pub target_groups: Vec<SimTargetGroup>,
    /// Balancers.
    pub balancers: Vec<SimBalancer>,
    /// Listeners.
    pub listeners: Vec<SimListener>,
    /// Hosted zones.
    pub zones: Vec<SimHostedZone>,
}

impl SimSnapshot {
    /// The live (pending or running) nodes carrying `triad-cluster=<cluster>`.
    pub fn live_nodes(&self, cluster: &str) -> Vec<&SimNode> {
        self.nodes
            .iter()
            .filter(|n| {
                n.state != NodeState::Terminating
                    && n.labels.get(labels::CLUSTER).map(String::as_str) == Some(cluster)
            })
            .collect()
    }

    /// The address record (A, CNAME or alias) at `fqdn` in `zone`.
    pub fn record(&self, zone: &str, fqdn: &str) -> Option<&SimRecordSet> {
        self.record_of(zone, fqdn, true)
    }

    /// The TXT record at `fqdn` in `zone`.
    pub fn txt(&self, zone: &str, fqdn: &str) -> Option<&SimRecordSet> {
        self.record_of(zone, fqdn, false)
    }

    fn record_of(&self, zone: &str, fqdn: &str, address: bool) -> Option<&SimRecordSet> {
        let zone = normalize(zone);
        let fqdn = normalize(fqdn);
        self.zones
            .iter()
            .find(|z| z.name == zone)?
            .records
            .iter()
            .find(|r| r.fqdn == fqdn && r.data.is_address() == address)
    }

    /// Whether nothing carrying `triad-cluster=<cluster>` exists any more (nodes
    /// still terminating aside) — what a destroy must leave.
    pub fn is_clean_of(&self, cluster: &str) -> bool {
        let owned = |l: &BTreeMap<String, String>| {
            l.get(labels::CLUSTER).map(String::as_str) == Some(cluster)
        };
        self.live_nodes(cluster).is_empty()
            && !self.security_groups.iter().any(|g| owned(&g.labels))
            && !self.target_groups.iter().any(|g| owned(&g.labels))
            && !self.balancers.iter().any(|b| owned(&b.labels))
            && !self.listeners.iter().any(|l| owned(&l.labels))
    }
}

/// A DNS name as the sim stores it: lowercase, without trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The mutable state behind one [`SimCloud`](crate::SimCloud) and its clones.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) rng: fastrand::Rng,
    pub(crate) fault_rng: fastrand::Rng,
    pub(crate) faults: Vec<ArmedFault>,
    pub(crate) stats: SimStats,
    pub(crate) instances: BTreeMap<String, Instance>,
    pub(crate) security_groups: BTreeMap<String, SimSecurityGroup>,
    pub(crate) target_groups: BTreeMap<String, SimTargetGroup>,
    pub(crate) balancers: BTreeMap<String, Balancer>,
    pub(crate) listeners: BTreeMap<String, SimListener>,
    pub(crate) zones: BTreeMap<String, HostedZone>,
    /// Change id → when it was submitted.
    pub(crate) changes: BTreeMap<String, Instant>,
    /// Addresses handed out per zone index.
    pub(crate) next_host: BTreeMap<usize, u32>,
    /// When the cloud was made: creation times count from here.
    pub(crate) epoch: Instant,
    /// Every successful mutating call, in order.
    pub(crate) timeline: Vec<SimEvent>,
}

/// One successful mutating call on the [timeline](crate::SimCloud::timeline), with
/// what the balancer could serve right after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimEvent {
    /// Virtual time since the cloud was made.
    pub at: Duration,
    /// The call.
    pub api: SimApi,
    /// The resource it was made on.
    pub resource: String,
    /// Per target group (by name): how many registered targets are running.
    pub running_targets: BTreeMap<String, usize>,
}

/// Milliseconds since the Unix epoch of the sim's start (2026-01-01T00:00:00Z):
/// creation times are reported from here.
pub(crate) const EPOCH_MS: u64 = 1_767_225_600_000;

impl World {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            fault_rng: fastrand::Rng::with_seed(seed ^ 0x5eed_fa17),
            faults: Vec::new(),
            stats: SimStats::default(),
            instances: BTreeMap::new(),
            security_groups: BTreeMap::new(),
            target_groups: BTreeMap::new(),
            balancers: BTreeMap::new(),
            listeners: BTreeMap::new(),
            zones: BTreeMap::new(),
            changes: BTreeMap::new(),
            next_host: BTreeMap::new(),
            epoch: Instant::now(),
            timeline: Vec::new(),
        }
    }

    /// `at` in milliseconds since the Unix epoch.
    pub(crate) fn unix_ms(&self, at: Instant) -> u64 {
        EPOCH_MS + u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(0)
    }

    /// Record a successful mutating call on the timeline.
    pub(crate) fn record_event(
        &mut self,
        cfg: &SimConfig,
        now: Instant,
        api: SimApi,
        resource: &str,
    ) {
        let running_targets = self
            .target_groups
            .values()
            .map(|tg| {
                let running = tg
                    .targets
                    .iter()
                    .filter(|id| {
                        self.instances.get(*id).and_then(|i| i.state(cfg, now))
                            == Some(NodeState::Running)
                    })
                    .count();
                (tg.name.clone(), running)
            })
            .collect();
        self.timeline.push(SimEvent {
            at: now.saturating_duration_since(self.epoch),
            api,
            resource: resource.to_owned(),
            running_targets,
        });
    }

    /// `n` random lowercase hex digits.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.u32(0..16), 16).unwrap_or('0'))
            .collect()
    }

    /// A fresh id `prefix` + `n` hex digits, unused in `taken`.
    pub(crate) fn fresh_id(
        &mut self,
        prefix: &str,
        n: usize,
        taken: impl Fn(&str) -> bool,
    ) -> String {
        loop {
            let id = format!("{prefix}{}", self.hex(n));
            if !taken(&id) {
                return id;
            }
        }
    }

    /// A private address for a node in the zone with index `zone_index`.
    pub(crate) fn private_ip(&mut self, zone_index: usize) -> IpAddr {
        let n = self.next_host.entry(zone_index).or_insert(0);
        let host = *n + 10;
        *n += 1;
        let x = ((host / 254) % 256) as u8;
        let y = (host % 254 + 1) as u8;
        IpAddr::V4(Ipv4Addr::new(10, (zone_index % 256) as u8, x, y))
    }

    /// An unused balancer address from 203.0.113.0/24.
    pub(crate) fn balancer_ip(&mut self) -> Option<IpAddr> {
        let used: BTreeSet<IpAddr> = self
            .balancers
            .values()
            .filter_map(|b| match &b.endpoint {
                Endpoint::Ip { addresses } => addresses.first().copied(),
                Endpoint::Hostname { .. } => None,
            })
            .collect();
        let free: Vec<u8> = (1..=254u8)
            .filter(|h| !used.contains(&IpAddr::V4(Ipv4Addr::new(203, 0, 113, *h))))
            .collect();
        if free.is_empty() {
            return None;
        }
        let h = free[self.rng.usize(0..free.len())];
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, h)))
    }

    pub(crate) fn snapshot(&self, cfg: &SimConfig, now: Instant) -> SimSnapshot {
        SimSnapshot {
            nodes: self
                .instances
                .values()
                .filter_map(|i| i.view(cfg, now))
                .collect(),
            security_groups: self.security_groups.values().cloned().collect(),
            target_groups: self.target_groups.values().cloned().collect(),
            balancers: self.balancers.values().map(|b| b.view(cfg, now)).collect(),
            listeners: self.listeners.values().cloned().collect(),
            zones: self
                .zones
                .iter()
                .map(|(name, z)| {
                    let mut records = z.records.clone();
                    records
                        .sort_by(|a, b| (&a.fqdn, a.data.rtype()).cmp(&(&b.fqdn, b.data.rtype())));
                    SimHostedZone {
                        name: name.clone(),
                        id: z.id.clone(),
                        records,
                    }
                })
                .collect(),
        }
    }
}
