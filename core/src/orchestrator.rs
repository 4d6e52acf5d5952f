//! The orchestrator: turns a [`ValidSpec`] into a [`Plan`] (desired vs discovered),
//! applies it, and destroys what carries a cluster's labels.
//!
//! Apply runs independent work concurrently:
//!
//! ```text
//! nodes: create ─ wait running ──────────────┐
//!                                            ├─ targets ─ delete surplus nodes
//! balancer: create ─ wait active ─┬──────────┘
//!                                 └─ DNS upsert ─ wait in sync
//! ```
//!
//! Every step is a provider call that is safe to repeat, so rerunning `apply` after a
//! crash or failure converges without duplicates, and rerunning it after success
//! makes no mutating call at all.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::bootstrap;
use crate::drift::{self, Change};
use crate::error::{Error, Result, SpecProblem, SpecProblems};
use crate::events::{Event, NoopObserver, Observer, Resource};
use crate::identity;
use crate::labels::Role;
use crate::lock;
use crate::model::{
    DnsEntry, Endpoint, Inventory, LbState, LoadBalancer, LoadBalancerRequest, Node, NodeRequest,
    Providers, Record, RecordKind, RecordRequest,
};
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::rollout;
use crate::spec::{ClusterRef, LbMode, RecordChoice, ValidSpec};

/// Deadlines and limits for the orchestrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long a node may take to run with a private IP.
    pub node_timeout: Duration,
    /// How long the balancer may take to become active.
    pub lb_timeout: Duration,
    /// How long a DNS change may take to reach the name servers.
    pub dns_timeout: Duration,
    /// The most provider calls the orchestrator makes at once for nodes.
    pub max_concurrency: usize,
    /// Allow a plan that changes the Rancher hostname of an existing cluster. Only
    /// safe before Rancher is installed: Rancher's hostname cannot change afterwards.
    pub allow_hostname_change: bool,
    /// How long apply and destroy wait for another run's lock ([`lock`])
    /// before failing with [`Error::Locked`]. Zero: fail at once.
    pub lock_wait: Duration,
    /// How long a lock is held at most; a lock older than this is stale (its holder
    /// crashed) and may be broken with [`Options::break_stale_lock`].
    pub lock_lease: Duration,
    /// Break a lock whose lease has expired. Never breaks a live lease.
    pub break_stale_lock: bool,
    /// Who this run is, as written into the lock (`ci-1234`, `alice@laptop`). A
    /// random run id when `None`.
    pub lock_holder: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_secs(15 * 60),
            lb_timeout: Duration::from_secs(20 * 60),
            dns_timeout: Duration::from_secs(10 * 60),
            max_concurrency: 16,
            allow_hostname_change: false,
            lock_wait: Duration::ZERO,
            lock_lease: Duration::from_secs(2 * 60 * 60),
            break_stale_lock: false,
            lock_holder: None,
        }
    }
}

/// What apply will do with one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum NodeAction {
    /// Create it in `zone`.
    Create {
        /// Node name.
        name: String,
        /// Zone chosen by fewest-first placement.
        zone: String,
    },
    /// It exists and runs; nothing to do.
    Keep {
        /// The node.
        node: Node,
    },
    /// It exists but is not running yet; wait for it.
    Wait {
        /// The node.
        node: Node,
    },
    /// It runs but differs in attributes the cloud changes in place (SSH rules):
    /// update it.
    Update {
        /// The node.
        node: Node,
        /// What differs (all in place).
        changes: Vec<Change>,
    },
    /// It differs in attributes that need a new machine: a rolling replace (new node
    /// `name` in `zone`, then the old one leaves). See [`rollout`].
    Replace {
        /// The node there now.
        node: Node,
        /// The new node's name.
        name: String,
        /// The zone (the old node's).
        zone: String,
        /// What differs.
        changes: Vec<Change>,
    },
    /// It is not wanted (count lowered, a duplicate, the old half of a replacement):
    /// delete it after it has left the balancer, one node per step.
    Delete {
        /// The node.
        node: Node,
        /// Why.
        reason: String,
    },
}

impl NodeAction {
    /// The name of the node the action is about (the old one for a replace).
    pub fn name(&self) -> &str {
        match self {
            NodeAction::Create { name, .. } => name,
            NodeAction::Keep { node }
            | NodeAction::Wait { node }
            | NodeAction::Update { node, .. }
            | NodeAction::Replace { node, .. }
            | NodeAction::Delete { node, .. } => &node.name,
        }
    }
}

/// What apply will do with the balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum LbAction {
    /// Create it.
    Create {
        /// Name.
        name: String,
    },
    /// It exists as wanted and is active.
    Keep {
        /// The balancer.
        lb: LoadBalancer,
    },
    /// It exists as wanted but is still provisioning (or half made): complete it and wait.
    Complete {
        /// The balancer.
        lb: LoadBalancer,
    },
    /// It exists as wanted but differs in attributes the cloud changes in place
    /// (certificate, health check): update it.
    Update {
        /// The balancer.
        lb: LoadBalancer,
        /// What differs (all in place).
        changes: Vec<Change>,
    },
    /// It exists with another mode or scheme: make a new one named `name`. When the
    /// provider lets two balancers coexist (`make_first`), the new one is made, given
    /// the nodes and the DNS record, and only then is the old one deleted (no moment
    /// without a balancer); otherwise the old one is deleted first.
    Replace {
        /// The balancer.
        lb: LoadBalancer,
        /// The new balancer's name.
        name: String,
        /// Whether the new one is made before the old one goes.
        make_first: bool,
        /// What differs.
        reason: String,
        /// Whether Rancher must be (re)installed with `tls=external` (l4 → l7) or
        /// without it (l7 → l4).
        reinstall_rancher: bool,
    },
}

/// What apply will do with the balancer's targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum TargetsAction {
    /// They are exactly the nodes already.
    Keep,
    /// Register and deregister until they are exactly the nodes.
    Converge {
        /// Node names to add (known now).
        add: Vec<String>,
        /// Node ids to remove (known now).
        remove: Vec<String>,
    },
}

/// What apply will do with the DNS record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum DnsAction {
    /// The record already points at the balancer.
    Keep {
        /// The record.
        record: Record,
    },
    /// Create or update it once the balancer's endpoint is known.
    Upsert {
        /// Name.
        fqdn: String,
        /// The record there now, if any (ours).
        current: Option<Record>,
    },
}

/// What the plan found in the cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    /// The cluster's nodes.
    pub nodes: Vec<Node>,
    /// The cluster's balancer.
    pub load_balancer: Option<LoadBalancer>,
    /// Records in the zone the cluster owns.
    pub records: Vec<Record>,
}

/// Desired vs discovered: what [`Orchestrator::apply`] will do. Print it (`Display`)
/// for a readable diff, or serialize it.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The cluster.
    pub cluster: ClusterRef,
    /// Zones the nodes are spread over.
    pub zones: Vec<String>,
    /// One action per node (desired and surplus).
    pub nodes: Vec<NodeAction>,
    /// The balancer.
    pub load_balancer: LbAction,
    /// The balancer's targets.
    pub targets: TargetsAction,
    /// The record.
    pub dns: DnsAction,
    /// Owned records at an old hostname, deleted when the hostname change was allowed.
    pub dns_delete: Vec<Record>,
    /// Old balancers (another mode or scheme), deleted once the record points at the
    /// new one.
    pub lb_retire: Vec<LoadBalancer>,
    /// What discovery found.
    pub discovered: Discovered,
    /// What the operator should know before applying: the spec's own
    /// ([`ValidSpec::warnings`], e.g. an end-of-life distribution) and security
    /// trade-offs (a proxy password readable from the nodes' metadata, nodes open to
    /// the internet: the providers' [`NodeProvider::plan_warnings`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip)]
    spec: ValidSpec,
}

impl Plan {
    /// The spec this plan was made from.
    pub fn spec(&self) -> &ValidSpec {
        &self.spec
    }

    /// Number of resources that apply will create, change or delete.
    pub fn changes(&self) -> usize {
        let nodes = self
            .nodes
            .iter()
            .filter(|a| !matches!(a, NodeAction::Keep { .. }))
            .count();
        let lb = usize::from(!matches!(self.load_balancer, LbAction::Keep { .. }));
        let targets = usize::from(!matches!(self.targets, TargetsAction::Keep));
        let dns = usize::from(!matches!(self.dns, DnsAction::Keep { .. }));
        nodes + lb + targets + dns + self.dns_delete.len() + self.lb_retire.len()
    }

    /// Whether apply has nothing to do.
    pub fn is_noop(&self) -> bool {
        self.changes() == 0
    }

    /// Whether apply would change anything (`plan --detailed-exitcode` exits 2).
    pub fn has_changes(&self) -> bool {
        !self.is_noop()
    }

    /// What apply would destroy or replace, one line per resource for people (empty:
    /// nothing destructive). A front end asks for consent when this is not empty.
    pub fn destructive(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.nodes {
            match a {
                NodeAction::Replace {
                    node,
                    name,
                    changes,
                    ..
                } => out.push(format!(
                    "replace node {} ({}) by {name}: {}; its disk and etcd member are lost",
                    node.name,
                    node.id,
                    rollout::describe(changes)
                )),
                NodeAction::Delete { node, reason } => out.push(format!(
                    "delete node {} ({}): {reason}; its disk and etcd member are lost",
                    node.name, node.id
                )),
                _ => {}
            }
        }
        if let LbAction::Replace {
            lb,
            reason,
            reinstall_rancher,
            ..
        } = &self.load_balancer
        {
            out.push(format!(
                "replace load balancer {} ({}): {reason}; it gets a new address{}",
                lb.name,
                lb.id,
                if *reinstall_rancher {
                    ", and Rancher must be reinstalled (tls=external changes)"
                } else {
                    ""
                }
            ));
        }
        for r in &self.dns_delete {
            out.push(format!(
                "delete DNS {} record {} in {} (hostname change)",
                r.kind, r.fqdn, r.zone
            ));
        }
        out
    }

    /// The rolling steps apply will take, in order, with what each does to etcd and
    /// the Kubernetes commands to run first. Empty when nothing rolls.
    pub fn rolling_steps(&self) -> Vec<String> {
        rollout::steps(&self.spec, &self.nodes)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spec = &self.spec;
        writeln!(
            f,
            "Plan for cluster `{}` in {} (zones: {})",
            self.cluster.name,
            self.cluster.region,
            self.zones.join(", ")
        )?;
        let (mut add, mut change, mut del) = (0, 0, 0);
        for a in &self.nodes {
            match a {
                NodeAction::Create { name, zone } => {
                    add += 1;
                    writeln!(f, "  + node {name} in {zone}")?
                }
                NodeAction::Keep { node } => {
                    writeln!(f, "    node {} ({}, {})", node.name, node.id, node.zone)?
                }
                NodeAction::Wait { node } => {
                    change += 1;
                    writeln!(
                        f,
                        "  ~ node {} ({}): wait until running",
                        node.name, node.id
                    )?
                }
                NodeAction::Update { node, changes } => {
                    change += 1;
                    for c in changes {
                        writeln!(f, "  ~ node {}: {c}", node.name)?
                    }
                }
                NodeAction::Replace {
                    node,
                    name,
                    zone,
                    changes,
                } => {
                    change += 1;
                    writeln!(
                        f,
                        "  -/+ node {} ({}) → {name} in {zone} (rolling replace)",
                        node.name, node.id
                    )?;
                    for c in changes {
                        writeln!(f, "  ~ node {}: {c}", node.name)?
                    }
                }
                NodeAction::Delete { node, reason } => {
                    del += 1;
                    writeln!(f, "  - node {} ({}): {reason}", node.name, node.id)?
                }
            }
        }
        let ports = spec.registration_ports();
        let lb_desc = format!(
            "{} {}, {}{}",
            spec.load_balancer.mode,
            spec.load_balancer.scheme,
            match spec.load_balancer.mode {
                LbMode::L4 => "TCP 80 and TCP 443 passed through to the nodes",
                LbMode::L7 => "HTTPS 443 terminated here, HTTP 80 redirected",
            },
            if ports.is_empty() {
                String::new()
            } else {
                let p: Vec<String> = ports.iter().map(|p| format!("TCP {p}")).collect();
                format!(
                    "; {} passed through for Kubernetes registration",
                    p.join(" and ")
                )
            }
        );
        match &self.load_balancer {
            LbAction::Create { name } => {
                add += 1;
                writeln!(f, "  + load balancer {name} ({lb_desc})")?
            }
            LbAction::Keep { lb } => writeln!(f, "    load balancer {} ({})", lb.name, lb.id)?,
            LbAction::Complete { lb } => {
                change += 1;
                writeln!(
                    f,
                    "  ~ load balancer {}: complete and wait until active",
                    lb.name
                )?
            }
            LbAction::Update { lb, changes } => {
                change += 1;
                for c in changes {
                    writeln!(f, "  ~ load balancer {}: {c}", lb.name)?
                }
            }
            LbAction::Replace {
                lb,
                name,
                make_first,
                reason,
                reinstall_rancher,
            } => {
                change += 1;
                writeln!(
                    f,
                    "  -/+ load balancer {} ({reason}) → {name} ({lb_desc})",
                    lb.name
                )?;
                if *make_first {
                    writeln!(
                        f,
                        "      {name} is made and given the nodes, DNS is switched to it, \
                         and only then is {} deleted: there is always a balancer",
                        lb.name
                    )?;
                } else {
                    writeln!(
                        f,
                        "      the old balancer is deleted before the new one is made: \
                         {} does not answer until the new one is active and DNS points at it",
                        spec.fqdn()
                    )?;
                }
                if *reinstall_rancher {
                    writeln!(
                        f,
                        "      Rancher must be reinstalled: {}",
                        match spec.load_balancer.mode {
                            LbMode::L7 => "TLS now ends at the balancer, so install it with `--set tls=external`",
                            LbMode::L4 => "TLS now ends at the ingress, so install it without `tls=external`",
                        }
                    )?;
                }
            }
        }
        match &self.targets {
            TargetsAction::Keep => writeln!(f, "    targets: every node")?,
            TargetsAction::Converge { add: a, remove } => {
                change += 1;
                let mut parts = Vec::new();
                if !a.is_empty() {
                    parts.push(format!("+ {}", a.join(", ")));
                }
                if !remove.is_empty() {
                    parts.push(format!("- {}", remove.join(", ")));
                }
                if parts.is_empty() {
                    parts.push("every node, once running".into());
                }
                writeln!(f, "  ~ targets: {}", parts.join("; "))?
            }
        }
        match &self.dns {
            DnsAction::Keep { record } => writeln!(
                f,
                "    DNS {} {} → {}",
                record.kind, record.fqdn, record.target
            )?,
            DnsAction::Upsert { fqdn, current } => match current {
                None => {
                    add += 1;
                    writeln!(f, "  + DNS {fqdn} → the balancer's endpoint")?
                }
                Some(r) => {
                    change += 1;
                    writeln!(
                        f,
                        "  ~ DNS {} {fqdn} → the balancer's endpoint (now {})",
                        r.kind, r.target
                    )?;
                    if let Some(ttl) = r.ttl.filter(|t| *t != spec.dns.ttl) {
                        writeln!(f, "  ~ DNS {fqdn}: ttl {ttl} → {} (in place)", spec.dns.ttl)?;
                    }
                }
            },
        }
        for lb in &self.lb_retire {
            if !matches!(&self.load_balancer, LbAction::Replace { lb: old, .. } if old.id == lb.id)
            {
                del += 1;
                writeln!(
                    f,
                    "  - load balancer {} ({}): {} {}, replaced; deleted once DNS points at the new one",
                    lb.name, lb.id, lb.mode, lb.scheme
                )?;
            }
        }
        for r in &self.dns_delete {
            del += 1;
            writeln!(
                f,
                "  - DNS {} {} in {} (hostname change)",
                r.kind, r.fqdn, r.zone
            )?;
        }
        let steps = self.rolling_steps();
        if !steps.is_empty() {
            writeln!(f, "Rolling steps, one etcd member at a time:")?;
            for (i, step) in steps.iter().enumerate() {
                writeln!(f, "  {}. {step}", i + 1)?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "  ! warning: {w}")?;
        }
        if self.is_noop() {
            write!(f, "No changes: the cluster is as the spec says.")
        } else {
            write!(f, "{add} to create, {change} to change, {del} to delete.")
        }
    }
}

/// Core's warnings about `spec`, then the node and balancer providers'.
fn plan_warnings(
    spec: &ValidSpec,
    nodes: &dyn NodeProvider,
    lb: &dyn LoadBalancerProvider,
) -> Vec<String> {
    let mut out = spec.warnings();
    if let Some(proxy) = &spec.proxy {
        if proxy.http.has_password() || proxy.https.as_ref().is_some_and(|u| u.has_password()) {
            out.push(
                "the proxy URL carries a password: it goes into every node's user data, which \
                 any process on the node can read from the metadata service (EC2 IMDS, the GCE \
                 metadata server, vSphere guestinfo); prefer a proxy that admits the nodes by \
                 address, or a credential only for these nodes (see the provider's guide, \
                 \"Egress\")"
                    .to_owned(),
            );
        }
    }
    out.extend(nodes.plan_warnings(spec));
    for w in lb.plan_warnings(spec) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// What [`Orchestrator::destroy`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestroyReport {
    /// Every resource deleted, described.
    pub deleted: Vec<String>,
}

/// Plans, applies and destroys a cluster through three providers.
///
/// ```no_run
/// use std::sync::Arc;
/// use triad_core::{ClusterSpec, DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator};
///
/// async fn up<C>(cloud: Arc<C>) -> triad_core::Result<()>
/// where
///     C: NodeProvider + LoadBalancerProvider + DnsProvider + 'static,
/// {
///     let spec = ClusterSpec::from_path("cluster.toml")?.validate()?;
///     let orchestrator = Orchestrator::new(cloud.clone(), cloud.clone(), cloud);
///     let plan = orchestrator.plan(&spec).await?;
///     println!("{plan}");
///     let inventory = orchestrator.apply(&plan).await?;
///     println!("Rancher: {}", inventory.rancher_url);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Orchestrator {
    nodes: Arc<dyn NodeProvider>,
    lb: Arc<dyn LoadBalancerProvider>,
    dns: Arc<dyn DnsProvider>,
    observer: Arc<dyn Observer>,
    options: Options,
}

impl fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("nodes", &self.nodes.name())
            .field("load_balancer", &self.lb.name())
            .field("dns", &self.dns.name())
            .field("options", &self.options)
            .finish()
    }
}

impl Orchestrator {
    /// An orchestrator over the three providers, with default [`Options`] and no observer.
    pub fn new(
        nodes: Arc<dyn NodeProvider>,
        lb: Arc<dyn LoadBalancerProvider>,
        dns: Arc<dyn DnsProvider>,
    ) -> Self {
        Self {
            nodes,
            lb,
            dns,
            observer: Arc::new(NoopObserver),
            options: Options::default(),
        }
    }

    /// Send progress events to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Use these deadlines and limits.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }

    fn started(&self, resource: &Resource, step: &str) {
        self.emit(Event::Started {
            resource: resource.clone(),
            step: step.to_owned(),
        });
    }

    fn finished(&self, resource: &Resource, step: &str, detail: Option<String>) {
        self.emit(Event::Finished {
            resource: resource.clone(),
            step: step.to_owned(),
            detail,
        });
    }

    /// Run `fut` as step `step` of `resource`, reporting start, end and failure.
    async fn step<T>(
        &self,
        resource: Resource,
        step: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.started(&resource, step);
        match fut.await {
            Ok(v) => {
                self.finished(&resource, step, None);
                Ok(v)
            }
            Err(e) => {
                self.emit(Event::Failed {
                    resource,
                    step: step.to_owned(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }

    /// Compare the spec with what exists and say what apply would do. Makes only read
    /// calls. Refuses (with nothing created) a spec a provider rejects, zones the region
    /// does not have, a DNS name owned by somebody else, and a hostname change.
    pub async fn plan(&self, spec: &ValidSpec) -> Result<Plan> {
        let cluster = spec.cluster();

        // Every provider checks its own part of the spec; report all problems at once.
        let mut problems = Vec::new();
        for check in [
            self.nodes.check_spec(spec),
            self.lb.check_spec(spec),
            self.dns.check_spec(spec),
        ] {
            match check {
                Ok(()) => {}
                Err(Error::InvalidSpec(p)) => problems.extend(p.0),
                Err(e) => return Err(e),
            }
        }
        if spec.dns.record == RecordChoice::Alias && !self.dns.capabilities().alias {
            problems.push(SpecProblem {
                field: "dns.record".into(),
                problem: format!(
                    "is `alias`, which the {} DNS provider does not have",
                    self.dns.name()
                ),
                fix: "use `auto`, `a` or `cname`".into(),
            });
        }
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(SpecProblems(dedup(problems))));
        }

        self.emit(Event::Discovering);
        let zone = spec.dns.zone.trim_end_matches('.').to_ascii_lowercase();
        let fqdn = spec.fqdn();
        let (region_zones, nodes, lbs, at_name, mut owned) = tokio::try_join!(
            self.nodes.zones(&cluster),
            self.nodes.discover_nodes(&cluster),
            self.lb.discover_load_balancers(&cluster),
            self.dns.lookup(&zone, &fqdn),
            self.dns.owned_records(&cluster, &zone),
        )?;

        let zones = choose_zones(spec, &region_zones)?;

        if let Some(r) = &at_name {
            if r.owner.as_deref() != Some(cluster.name.as_str()) {
                return Err(Error::NotOwned {
                    fqdn: fqdn.clone(),
                    cluster: cluster.name.clone(),
                    owner: match &r.owner {
                        Some(o) => format!("owned by triad cluster `{o}`"),
                        None => format!("a {} record without triad's ownership TXT", r.kind),
                    },
                });
            }
        }
        let (load_balancer, lb_retire) = plan_lb(spec, &cluster, &lbs, self.lb.coexists());
        let lb = match &load_balancer {
            LbAction::Create { .. } => None,
            LbAction::Keep { lb }
            | LbAction::Complete { lb }
            | LbAction::Update { lb, .. }
            | LbAction::Replace { lb, .. } => Some(lb.clone()),
        };
        // The record may live in another zone than the spec's now (a zone change):
        // the resources' labels say where it was made.
        owned.extend(
            self.owned_in_label_zones(&cluster, &zone, &nodes, lb.as_ref())
                .await?,
        );

        let mut cluster = cluster;
        let records: Vec<&Record> = at_name.iter().chain(owned.iter()).collect();
        cluster.id = Some(
            identity::check(&cluster, &nodes, lb.as_ref(), &records)?
                .unwrap_or_else(identity::new_id),
        );

        let dns_delete: Vec<Record> = owned.iter().filter(|r| r.fqdn != fqdn).cloned().collect();
        if let Some(old) = dns_delete.first() {
            if !self.options.allow_hostname_change {
                return Err(Error::HostnameChange {
                    from: old.fqdn.clone(),
                    to: fqdn,
                });
            }
        }

        let node_actions = rollout::plan_nodes(spec, &zones, &nodes);
        let targets = plan_targets(&node_actions, &load_balancer);
        let dns = match (&load_balancer, &at_name) {
            (LbAction::Keep { lb } | LbAction::Update { lb, .. }, Some(record)) => {
                match desired_record(spec, lb, self.dns.as_ref()) {
                    Ok(req) if req.is_satisfied_by(record) => DnsAction::Keep {
                        record: record.clone(),
                    },
                    _ => DnsAction::Upsert {
                        fqdn: fqdn.clone(),
                        current: Some(record.clone()),
                    },
                }
            }
            _ => DnsAction::Upsert {
                fqdn: fqdn.clone(),
                current: at_name.clone(),
            },
        };

        Ok(Plan {
            cluster,
            zones,
            nodes: node_actions,
            load_balancer,
            targets,
            dns,
            dns_delete,
            lb_retire,
            discovered: Discovered {
                nodes,
                load_balancer: lb,
                records: owned,
            },
            warnings: plan_warnings(spec, &*self.nodes, &*self.lb),
            spec: spec.clone(),
        })
    }

    /// Records `cluster` owns in the zones its resources' labels name, other than
    /// `zone`. A zone the DNS provider no longer has is skipped (and logged).
    async fn owned_in_label_zones(
        &self,
        cluster: &ClusterRef,
        zone: &str,
        nodes: &[Node],
        lb: Option<&LoadBalancer>,
    ) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for z in identity::zones_from_labels(nodes, lb) {
            if z == zone {
                continue;
            }
            match self.dns.owned_records(cluster, &z).await {
                Ok(records) => out.extend(records),
                Err(e) if e.kind() == Some(crate::FailureKind::NotFound) => {
                    tracing::warn!(zone = %z, error = %e, "the cluster's labels name a DNS zone that cannot be read")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The inventory of the cluster as `plan` found it, without changing anything:
    /// what `show` prints for an existing cluster. `None` while the cluster has no
    /// balancer with an endpoint or no record at its hostname (apply makes them).
    pub fn inventory(&self, plan: &Plan) -> Option<Inventory> {
        let lb = plan.discovered.load_balancer.clone()?;
        lb.endpoint.as_ref()?;
        let fqdn = plan.spec.fqdn();
        let record = plan
            .discovered
            .records
            .iter()
            .find(|r| r.fqdn == fqdn)?
            .clone();
        let mut nodes: Vec<Node> = plan
            .discovered
            .nodes
            .iter()
            .filter(|n| n.state != crate::model::NodeState::Terminating)
            .cloned()
            .collect();
        nodes.sort_by_key(|n| crate::rollout::natural_key(&n.name));
        Some(self.inventory_of(plan, nodes, lb, record))
    }

    /// The inventory of `plan`'s cluster made of these parts.
    fn inventory_of(
        &self,
        plan: &Plan,
        nodes: Vec<Node>,
        lb: LoadBalancer,
        record: Record,
    ) -> Inventory {
        Inventory {
            kubernetes: Some(crate::render::kubernetes_entry(&plan.spec, &nodes)),
            cluster: plan.cluster.name.clone(),
            region: plan.cluster.region.clone(),
            nodes,
            tls_external: lb.mode == LbMode::L7,
            load_balancer: lb,
            dns: DnsEntry::from(record),
            rancher_url: format!("https://{}", plan.spec.fqdn()),
            providers: Providers {
                nodes: self.nodes.name().to_owned(),
                load_balancer: self.lb.name().to_owned(),
                dns: self.dns.name().to_owned(),
            },
        }
    }

    /// Carry out `plan` and return the inventory, holding the cluster's lock
    /// ([`lock`]) throughout (a plan with nothing to do makes no change
    /// and takes no lock). On failure the error ([`Error::Apply`]) lists every
    /// resource that exists; they all carry the cluster's labels, so a rerun converges
    /// and `destroy` removes them. Another run's lock is [`Error::Locked`].
    pub async fn apply(&self, plan: &Plan) -> Result<Inventory> {
        let apply_error = |source: Error, existing: Vec<String>| match source {
            Error::Locked { .. } => source,
            source => Error::Apply {
                cluster: plan.cluster.name.clone(),
                source: Box::new(source),
                existing,
            },
        };
        let lease = if plan.is_noop() {
            None
        } else {
            self.lock(&plan.cluster)
                .await
                .map_err(|e| apply_error(e, Vec::new()))?
        };
        let known: Mutex<BTreeSet<String>> = Mutex::new(
            plan.discovered
                .nodes
                .iter()
                .map(|n| format!("node {} ({})", n.name, n.id))
                .chain(
                    plan.discovered
                        .load_balancer
                        .iter()
                        .map(|lb| format!("load balancer {} ({})", lb.name, lb.id)),
                )
                .chain(
                    plan.discovered
                        .records
                        .iter()
                        .map(|r| format!("DNS record {}", r.fqdn)),
                )
                .collect(),
        );
        let result = self.apply_inner(plan, &known).await;
        let released = self.unlock(lease).await;
        result
            .and_then(|inv| released.map(|()| inv))
            .map_err(|source| {
                apply_error(
                    source,
                    known
                        .into_inner()
                        .unwrap_or_else(|e| e.into_inner())
                        .into_iter()
                        .collect(),
                )
            })
    }

    /// Take the cluster's lock in its DNS zone (nothing when the cluster has no zone
    /// or the DNS provider cannot hold one).
    async fn lock(&self, cluster: &ClusterRef) -> Result<Option<lock::Lease>> {
        let Some(zone) = &cluster.dns_zone else {
            return Ok(None);
        };
        let holder = self
            .options
            .lock_holder
            .clone()
            .unwrap_or_else(|| format!("triad-{}-{}", std::process::id(), identity::new_id()));
        lock::acquire(
            self.dns.as_ref(),
            lock::Request {
                cluster,
                zone,
                holder: &holder,
                lease: self.options.lock_lease,
                wait: self.options.lock_wait,
                break_stale: self.options.break_stale_lock,
            },
        )
        .await
    }

    /// Give the lock back. A failure leaves a lock that only this holder (the same
    /// [`Options::lock_holder`]) or the end of its lease frees: it is reported.
    async fn unlock(&self, lease: Option<lock::Lease>) -> Result<()> {
        match lease {
            Some(lease) => lock::release(self.dns.as_ref(), &lease).await,
            None => Ok(()),
        }
    }

    async fn apply_inner(&self, plan: &Plan, known: &Mutex<BTreeSet<String>>) -> Result<Inventory> {
        let note = |s: String| {
            known.lock().unwrap_or_else(|e| e.into_inner()).insert(s);
        };
        // A new balancer made beside the old one gets its targets before the record
        // moves to it; otherwise the record is written as soon as the balancer is up.
        let make_first = !plan.lb_retire.is_empty()
            || matches!(
                plan.load_balancer,
                LbAction::Replace {
                    make_first: true,
                    ..
                }
            );
        let (nodes, lb_and_record) = tokio::join!(
            self.apply_nodes(plan, &note),
            self.apply_lb_and_dns(plan, &note, !make_first)
        );
        // Report the node failure first if both failed: it is usually the cause.
        let nodes = nodes?;
        let (lb, record) = lb_and_record?;

        // Targets: the wanted nodes, and the nodes still to leave one by one while they
        // serve.
        let mut members = nodes;
        for a in &plan.nodes {
            if let NodeAction::Delete { node, .. } = a {
                if lb.targets.contains(&node.id) && node.is_ready() {
                    members.push(node.clone());
                }
            }
        }
        let lb = self.converge_targets(plan, lb, &members).await?;
        let record = match record {
            Some(r) => r,
            None => self.apply_dns(plan, &lb, &note).await?,
        };
        // The old balancers leave only once the record points at the new one.
        for old in &plan.lb_retire {
            self.step(
                Resource::LoadBalancer(old.name.clone()),
                "deleting (replaced)",
                self.lb.delete_load_balancer_named(&plan.cluster, &old.name),
            )
            .await?;
        }
        let (lb, nodes) = self.roll(plan, lb, members, &note).await?;

        Ok(self.inventory_of(plan, nodes, lb, record))
    }

    /// Make the balancer's targets exactly `members` (nothing when they are).
    pub(crate) async fn converge_targets(
        &self,
        plan: &Plan,
        lb: LoadBalancer,
        members: &[Node],
    ) -> Result<LoadBalancer> {
        let resource = Resource::Targets(lb.name.clone());
        let mut want: Vec<String> = members.iter().map(|n| n.id.clone()).collect();
        want.sort();
        if lb.targets == want && lb.partial_targets.is_empty() {
            self.emit(Event::Unchanged { resource });
            return Ok(lb);
        }
        self.step(
            resource,
            "registering the nodes",
            self.lb.set_targets(&plan.cluster, &lb, members),
        )
        .await
    }

    /// The rolling steps ([`rollout`]): deletes one per step, then replacements one
    /// per step. Returns the balancer and the nodes that remain, by name.
    async fn roll(
        &self,
        plan: &Plan,
        mut lb: LoadBalancer,
        mut members: Vec<Node>,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<(LoadBalancer, Vec<Node>)> {
        let spec = &plan.spec;
        for node in rollout::delete_order(&spec.name, spec.nodes.count, &plan.nodes) {
            members.retain(|m| m.id != node.id);
            lb = self.converge_targets(plan, lb, &members).await?;
            self.step(
                Resource::Node(node.name.clone()),
                "deleting",
                self.nodes.delete_node(&plan.cluster, node),
            )
            .await?;
        }
        for a in &plan.nodes {
            let NodeAction::Replace {
                node: old,
                name,
                zone,
                ..
            } = a
            else {
                continue;
            };
            let request = node_request(spec, &plan.cluster, name, zone);
            let new = self
                .step(
                    Resource::Node(name.clone()),
                    "creating (replacement)",
                    self.nodes.create_node(&plan.cluster, &request),
                )
                .await?;
            note(format!("node {} ({})", new.name, new.id));
            let new = self.wait_node(plan, &new).await?;
            members.push(new);
            lb = self.converge_targets(plan, lb, &members).await?;
            members.retain(|m| m.id != old.id);
            lb = self.converge_targets(plan, lb, &members).await?;
            self.step(
                Resource::Node(old.name.clone()),
                "deleting (replaced)",
                self.nodes.delete_node(&plan.cluster, old),
            )
            .await?;
        }
        members.sort_by_key(|n| rollout::natural_key(&n.name));
        Ok((lb, members))
    }

    /// Create, wait for or update in place every wanted node (a node to be replaced
    /// stays as it is until its rolling step); return them sorted by name.
    async fn apply_nodes(&self, plan: &Plan, note: &(dyn Fn(String) + Sync)) -> Result<Vec<Node>> {
        let spec = &plan.spec;
        let limit = Semaphore::new(self.options.max_concurrency.max(1));
        let work = plan.nodes.iter().filter_map(|action| {
            let limit = &limit;
            let fut = async move {
                match action {
                    NodeAction::Keep { node } => {
                        self.emit(Event::Unchanged {
                            resource: Resource::Node(node.name.clone()),
                        });
                        Ok(node.clone())
                    }
                    NodeAction::Wait { node } | NodeAction::Replace { node, .. } => {
                        if node.is_ready() {
                            Ok(node.clone())
                        } else {
                            self.wait_node(plan, node).await
                        }
                    }
                    NodeAction::Update { node, .. } => {
                        let node = if node.is_ready() {
                            node.clone()
                        } else {
                            self.wait_node(plan, node).await?
                        };
                        let request = node_request(spec, &plan.cluster, &node.name, &node.zone);
                        let _permit = limit.acquire().await.map_err(|_| closed())?;
                        self.step(
                            Resource::Node(node.name.clone()),
                            "updating in place",
                            self.nodes.update_node(&plan.cluster, &node, &request),
                        )
                        .await
                    }
                    NodeAction::Create { name, zone } => {
                        let request = node_request(spec, &plan.cluster, name, zone);
                        let node = {
                            let _permit = limit.acquire().await.map_err(|_| closed())?;
                            self.step(
                                Resource::Node(name.clone()),
                                "creating",
                                self.nodes.create_node(&plan.cluster, &request),
                            )
                            .await?
                        };
                        note(format!("node {} ({})", node.name, node.id));
                        self.wait_node(plan, &node).await
                    }
                    NodeAction::Delete { .. } => unreachable!("filtered out"),
                }
            };
            (!matches!(action, NodeAction::Delete { .. })).then_some(fut)
        });
        // Let every node finish (or fail) so one failure does not strand the others
        // half made; report the first failure.
        let results = join_all(work).await;
        let mut nodes = Vec::with_capacity(results.len());
        let mut first_err = None;
        for r in results {
            match r {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        nodes.sort_by_key(|n| rollout::natural_key(&n.name));
        Ok(nodes)
    }

    async fn wait_node(&self, plan: &Plan, node: &Node) -> Result<Node> {
        let resource = Resource::Node(node.name.clone());
        self.started(&resource, "waiting until running");
        match self
            .nodes
            .wait_node(&plan.cluster, node, self.options.node_timeout)
            .await
        {
            Ok(n) => {
                self.finished(
                    &resource,
                    "running",
                    n.private_ip.map(|ip| format!("{ip} in {}", n.zone)),
                );
                Ok(n)
            }
            Err(e) => {
                self.emit(Event::Failed {
                    resource,
                    step: "waiting until running".into(),
                    error: e.to_string(),
                });
                Err(e)
            }
        }
    }

    /// Make the balancer ready, then point the DNS record at it.
    async fn apply_lb_and_dns(
        &self,
        plan: &Plan,
        note: &(dyn Fn(String) + Sync),
        with_dns: bool,
    ) -> Result<(LoadBalancer, Option<Record>)> {
        let spec = &plan.spec;
        let cluster = &plan.cluster;
        let name = match &plan.load_balancer {
            LbAction::Create { name } | LbAction::Replace { name, .. } => name,
            LbAction::Keep { lb } | LbAction::Complete { lb } | LbAction::Update { lb, .. } => {
                &lb.name
            }
        };
        let request = lb_request(spec, cluster, &plan.zones, name);
        let resource = Resource::LoadBalancer(request.name.clone());
        let lb = match &plan.load_balancer {
            LbAction::Keep { lb } => {
                self.emit(Event::Unchanged { resource });
                lb.clone()
            }
            LbAction::Update { lb, .. } => {
                self.step(
                    resource,
                    "updating in place",
                    self.lb.update_load_balancer(cluster, lb, &request),
                )
                .await?
            }
            action => {
                if let LbAction::Replace {
                    make_first: false, ..
                } = action
                {
                    self.step(
                        resource.clone(),
                        "deleting (mode or scheme changed)",
                        self.lb.delete_load_balancer(cluster),
                    )
                    .await?;
                }
                let lb = self
                    .step(
                        resource.clone(),
                        "creating",
                        self.lb.create_load_balancer(cluster, &request),
                    )
                    .await?;
                note(format!("load balancer {} ({})", lb.name, lb.id));
                self.started(&resource, "waiting until active");
                let lb = self
                    .lb
                    .wait_load_balancer(cluster, &lb, self.options.lb_timeout)
                    .await
                    .inspect_err(|e| {
                        self.emit(Event::Failed {
                            resource: resource.clone(),
                            step: "waiting until active".into(),
                            error: e.to_string(),
                        })
                    })?;
                self.finished(
                    &resource,
                    "active",
                    lb.endpoint.as_ref().map(ToString::to_string),
                );
                lb
            }
        };
        let record = if with_dns {
            Some(self.apply_dns(plan, &lb, note).await?)
        } else {
            None
        };
        Ok((lb, record))
    }

    /// Point the DNS record at `lb` (deleting the records of an old hostname first).
    async fn apply_dns(
        &self,
        plan: &Plan,
        lb: &LoadBalancer,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<Record> {
        let (spec, cluster) = (&plan.spec, &plan.cluster);
        let zone = spec.dns.zone.trim_end_matches('.').to_ascii_lowercase();
        for old in &plan.dns_delete {
            self.step(
                Resource::Record(old.fqdn.clone()),
                "deleting (hostname changed)",
                self.dns.delete_record(cluster, &old.zone, &old.fqdn),
            )
            .await?;
        }
        let resource = Resource::Record(spec.fqdn());
        let record = match &plan.dns {
            DnsAction::Keep { record } => {
                self.emit(Event::Unchanged { resource });
                record.clone()
            }
            DnsAction::Upsert { .. } => {
                let req = desired_record(spec, lb, self.dns.as_ref())?;
                let record = self
                    .step(
                        resource.clone(),
                        "writing",
                        self.dns.upsert_record(cluster, &req),
                    )
                    .await?;
                note(format!("DNS record {}", record.fqdn));
                self.step(
                    resource.clone(),
                    "waiting until in sync",
                    self.dns
                        .wait_record(&zone, &req.fqdn, self.options.dns_timeout),
                )
                .await?;
                self.finished(
                    &resource,
                    "in sync",
                    Some(format!("{} → {}", record.kind, record.target)),
                );
                record
            }
        };
        Ok(record)
    }

    /// Delete everything carrying the cluster's labels, in reverse dependency order:
    /// the DNS records it owns (in its zone and wherever its labels say the record
    /// lived), then the balancer and the nodes, then cluster-wide plumbing, holding
    /// the cluster's lock. It stops before it would orphan something: if a record
    /// cannot be deleted, the balancer and nodes stay (a record must never point at a
    /// released address), and [`Error::Destroy`] lists what was removed and what
    /// remains. Resources of another cluster with the same name (another cluster id)
    /// are refused ([`Error::Identity`]) before anything is deleted.
    pub async fn destroy(&self, cluster: &ClusterRef) -> Result<DestroyReport> {
        let lease = self.lock(cluster).await?;
        let result = self.destroy_inner(cluster).await;
        let released = self.unlock(lease).await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn destroy_inner(&self, cluster: &ClusterRef) -> Result<DestroyReport> {
        let (nodes, lb) = tokio::try_join!(
            self.nodes.discover_nodes(cluster),
            self.lb.discover_load_balancer(cluster),
        )?;
        let mut records = match &cluster.dns_zone {
            Some(zone) => self.dns.owned_records(cluster, zone).await?,
            None => Vec::new(),
        };
        records.extend(
            self.owned_in_label_zones(
                cluster,
                cluster.dns_zone.as_deref().unwrap_or_default(),
                &nodes,
                lb.as_ref(),
            )
            .await?,
        );
        identity::check(
            cluster,
            &nodes,
            lb.as_ref(),
            &records.iter().collect::<Vec<_>>(),
        )?;

        let mut deleted = Vec::new();
        let mut failures: Vec<(String, Error)> = Vec::new();
        let mut remaining: Vec<String> = Vec::new();
        for r in &records {
            let what = format!("DNS {} record {} in {}", r.kind, r.fqdn, r.zone);
            match self
                .step(
                    Resource::Record(r.fqdn.clone()),
                    "deleting",
                    self.dns.delete_record(cluster, &r.zone, &r.fqdn),
                )
                .await
            {
                Ok(()) => deleted.push(what),
                Err(e) => {
                    remaining.push(what.clone());
                    failures.push((what, e))
                }
            }
        }
        if !failures.is_empty() {
            remaining.extend(
                lb.iter()
                    .map(|l| format!("load balancer {} ({})", l.name, l.id)),
            );
            remaining.extend(nodes.iter().map(|n| format!("node {} ({})", n.name, n.id)));
            remaining.push(format!("network plumbing of {}", cluster.name));
            return Err(Error::Destroy {
                failures,
                deleted,
                remaining,
            });
        }

        let lb_resource = Resource::LoadBalancer(cluster.name.clone());
        let lb_delete = self.step(
            lb_resource,
            "deleting",
            self.lb.delete_load_balancer(cluster),
        );
        let nodes_delete = join_all(nodes.iter().map(|n| async move {
            let r = self
                .step(
                    Resource::Node(n.name.clone()),
                    "deleting",
                    self.nodes.delete_node(cluster, n),
                )
                .await;
            (format!("node {} ({})", n.name, n.id), r)
        }));
        let (lb_result, nodes_result) = tokio::join!(lb_delete, nodes_delete);
        match lb_result {
            Ok(parts) => deleted.extend(parts),
            Err(e) => {
                let what = format!("load balancer {}", cluster.name);
                remaining.push(what.clone());
                failures.push((what, e))
            }
        }
        let mut nodes_ok = true;
        for (what, r) in nodes_result {
            match r {
                Ok(()) => deleted.push(what),
                Err(e) => {
                    nodes_ok = false;
                    remaining.push(what.clone());
                    failures.push((what, e))
                }
            }
        }
        let network = format!("network plumbing of {}", cluster.name);
        if nodes_ok {
            match self
                .step(
                    Resource::Network(cluster.name.clone()),
                    "deleting",
                    self.nodes.cleanup(cluster),
                )
                .await
            {
                Ok(parts) => deleted.extend(parts),
                Err(e) => {
                    remaining.push(network.clone());
                    failures.push((network, e))
                }
            }
        } else {
            remaining.push(network);
        }

        if failures.is_empty() {
            Ok(DestroyReport { deleted })
        } else {
            Err(Error::Destroy {
                failures,
                deleted,
                remaining,
            })
        }
    }
}

fn closed() -> Error {
    Error::provider(
        "triad",
        "schedule",
        "node",
        crate::FailureKind::Other,
        "the concurrency limiter was closed",
    )
}

fn dedup(problems: Vec<SpecProblem>) -> Vec<SpecProblem> {
    let mut seen = BTreeSet::new();
    problems
        .into_iter()
        .filter(|p| seen.insert((p.field.clone(), p.problem.clone())))
        .collect()
}

/// The zones to use: the spec's, each checked against the region's, or all of the
/// region's.
fn choose_zones(spec: &ValidSpec, region_zones: &[String]) -> Result<Vec<String>> {
    if region_zones.is_empty() {
        return Err(Error::invalid(
            "region",
            format!("`{}` has no zones in this cloud", spec.region),
            "check the region name",
        ));
    }
    if spec.zones.is_empty() {
        return Ok(region_zones.to_vec());
    }
    let problems: Vec<SpecProblem> = spec
        .zones
        .iter()
        .enumerate()
        .filter(|(_, z)| !region_zones.contains(z))
        .map(|(i, z)| SpecProblem {
            field: format!("zones[{i}]"),
            problem: format!("`{z}` is not a zone of region `{}`", spec.region),
            fix: format!("use zones of the region: {}", region_zones.join(", ")),
        })
        .collect();
    if problems.is_empty() {
        Ok(spec.zones.clone())
    } else {
        Err(Error::InvalidSpec(SpecProblems(problems)))
    }
}

/// What to do with the balancer (keep, complete, update in place, replace or
/// create), and which balancers of another mode or scheme to delete once the record
/// points at the new one.
fn plan_lb(
    spec: &ValidSpec,
    cluster: &ClusterRef,
    found: &[LoadBalancer],
    coexists: bool,
) -> (LbAction, Vec<LoadBalancer>) {
    let want = &spec.load_balancer;
    let (matching, stale): (Vec<&LoadBalancer>, Vec<&LoadBalancer>) = found
        .iter()
        .partition(|lb| lb.mode == want.mode && lb.scheme == want.scheme);
    let retire = |skip: usize| -> Vec<LoadBalancer> {
        matching
            .iter()
            .skip(skip)
            .chain(stale.iter())
            .map(|lb| (*lb).clone())
            .collect()
    };
    if let Some(lb) = matching.first() {
        let lb = (*lb).clone();
        // Complete: not active yet, or a listener is missing (the Kubernetes
        // registration ports of rke2/k3s included).
        let listeners_missing = lb.listeners.len() < 2
            || !spec
                .registration_ports()
                .iter()
                .all(|p| lb.listeners.iter().any(|l| l.port == *p));
        let action = if lb.state != LbState::Active || lb.endpoint.is_none() || listeners_missing {
            LbAction::Complete { lb }
        } else {
            let changes = drift::diff(&lb.labels, &drift::load_balancer_wanted(spec));
            if changes.is_empty() {
                LbAction::Keep { lb }
            } else {
                LbAction::Update { lb, changes }
            }
        };
        return (action, retire(1));
    }
    let Some(old) = stale.first() else {
        return (
            LbAction::Create {
                name: cluster.name.clone(),
            },
            Vec::new(),
        );
    };
    // Two names take turns, so the new balancer never collides with the old one.
    let name = if coexists && old.name == cluster.name {
        format!("{}-b", cluster.name)
    } else {
        cluster.name.clone()
    };
    let action = LbAction::Replace {
        lb: (*old).clone(),
        name,
        make_first: coexists,
        reason: format!(
            "is {} {}, the spec asks for {} {}",
            old.mode, old.scheme, want.mode, want.scheme
        ),
        reinstall_rancher: old.mode != want.mode,
    };
    (action, if coexists { retire(0) } else { Vec::new() })
}

fn plan_targets(nodes: &[NodeAction], lb: &LbAction) -> TargetsAction {
    let current: BTreeSet<&str> = match lb {
        LbAction::Keep { lb } | LbAction::Complete { lb } | LbAction::Update { lb, .. } => {
            lb.targets.iter().map(String::as_str).collect()
        }
        LbAction::Create { .. } | LbAction::Replace { .. } => BTreeSet::new(),
    };
    let mut add = Vec::new();
    let mut wanted_ids = BTreeSet::new();
    for a in nodes {
        match a {
            NodeAction::Create { name, .. } => add.push(name.clone()),
            NodeAction::Keep { node }
            | NodeAction::Wait { node }
            | NodeAction::Update { node, .. } => {
                wanted_ids.insert(node.id.as_str());
                if !current.contains(node.id.as_str()) {
                    add.push(node.name.clone());
                }
            }
            // The new node comes in, the old one leaves, in the rolling steps.
            NodeAction::Replace { name, .. } => add.push(name.clone()),
            NodeAction::Delete { .. } => {}
        }
    }
    let remove: Vec<String> = current
        .iter()
        .filter(|id| !wanted_ids.contains(*id))
        .map(|id| id.to_string())
        .collect();
    let partial = match lb {
        LbAction::Keep { lb } | LbAction::Complete { lb } | LbAction::Update { lb, .. } => {
            lb.partial_targets.clone()
        }
        LbAction::Create { .. } | LbAction::Replace { .. } => Vec::new(),
    };
    let remove: Vec<String> = remove
        .into_iter()
        .chain(
            partial
                .into_iter()
                .filter(|id| !wanted_ids.contains(id.as_str())),
        )
        .collect();
    if add.is_empty() && remove.is_empty() && matches!(lb, LbAction::Keep { .. }) {
        TargetsAction::Keep
    } else {
        TargetsAction::Converge { add, remove }
    }
}

/// What to ask of a node: the spec's settings, the ownership and identity labels, and
/// the fingerprint ([`drift`]) of what it is made from.
pub(crate) fn node_request(
    spec: &ValidSpec,
    cluster: &ClusterRef,
    name: &str,
    zone: &str,
) -> NodeRequest {
    let mut labels = cluster.labels_for(Role::Node);
    labels.extend(drift::labels_of(&drift::node_wanted(spec)));
    NodeRequest {
        name: name.to_owned(),
        zone: zone.to_owned(),
        size: spec.nodes.size.clone(),
        image: spec.nodes.image.clone(),
        disk_gib: spec.nodes.disk_gib,
        ssh_allowed_cidrs: spec.nodes.ssh_allowed_cidrs.clone(),
        labels,
        user_data: bootstrap::user_data(spec, name),
    }
}

fn lb_request(
    spec: &ValidSpec,
    cluster: &ClusterRef,
    zones: &[String],
    name: &str,
) -> LoadBalancerRequest {
    let mut labels = cluster.labels_for(Role::Lb);
    labels.extend(drift::labels_of(&drift::load_balancer_wanted(spec)));
    LoadBalancerRequest {
        name: name.to_owned(),
        mode: spec.load_balancer.mode,
        scheme: spec.load_balancer.scheme,
        certificate: spec.load_balancer.certificate.clone(),
        health_check_path: spec.health_check_path(),
        registration_ports: spec.registration_ports(),
        zones: zones.to_vec(),
        labels,
    }
}

/// The record the spec asks for, pointing at `lb`'s endpoint.
fn desired_record(
    spec: &ValidSpec,
    lb: &LoadBalancer,
    dns: &dyn DnsProvider,
) -> Result<RecordRequest> {
    let endpoint = lb.endpoint.clone().ok_or_else(|| {
        Error::provider(
            "triad",
            "read endpoint of",
            format!("load balancer {}", lb.name),
            crate::FailureKind::Transient,
            "the balancer is active but has no endpoint yet",
        )
    })?;
    let alias = dns.capabilities().alias;
    let kind = match (spec.dns.record, &endpoint) {
        (RecordChoice::Auto, Endpoint::Ip { .. }) | (RecordChoice::A, Endpoint::Ip { .. }) => {
            RecordKind::A
        }
        (
            RecordChoice::Auto,
            Endpoint::Hostname {
                alias_zone: Some(_),
                ..
            },
        ) if alias => RecordKind::Alias,
        (RecordChoice::Auto, Endpoint::Hostname { .. })
        | (RecordChoice::Cname, Endpoint::Hostname { .. }) => RecordKind::Cname,
        (
            RecordChoice::Alias,
            Endpoint::Hostname {
                alias_zone: Some(_),
                ..
            },
        ) => RecordKind::Alias,
        (choice, endpoint) => {
            return Err(Error::invalid(
                "dns.record",
                format!("is `{choice:?}` but the balancer's endpoint is {endpoint:?}")
                    .to_lowercase(),
                "use `auto`: an A record for an IP endpoint, an alias or CNAME for a hostname",
            ))
        }
    };
    if kind == RecordKind::Cname
        && spec.fqdn() == spec.dns.zone.trim_end_matches('.').to_ascii_lowercase()
    {
        return Err(Error::invalid(
            "dns.hostname",
            "is the zone apex, where a CNAME is not allowed",
            "use a name below the zone (rancher.example.com), or a DNS provider with alias records",
        ));
    }
    // A CNAME names the host only; the alias zone means nothing there.
    let target = match (kind, endpoint) {
        (RecordKind::Cname, Endpoint::Hostname { name, .. }) => Endpoint::Hostname {
            name,
            alias_zone: None,
        },
        (_, endpoint) => endpoint,
    };
    Ok(RecordRequest {
        fqdn: spec.fqdn(),
        zone: spec.dns.zone.trim_end_matches('.').to_ascii_lowercase(),
        kind,
        target,
        ttl: spec.dns.ttl,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Listener, NodeState};
    use crate::spec::{ClusterSpec, LbScheme};

    fn spec(extra: &str) -> ValidSpec {
        ClusterSpec::from_toml(&format!(
            "name = \"r\"\nregion = \"x\"\n{extra}\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    fn node(name: &str, id: &str, zone: &str, ready: bool) -> Node {
        Node {
            id: id.into(),
            name: name.into(),
            zone: zone.into(),
            state: if ready {
                NodeState::Running
            } else {
                NodeState::Pending
            },
            private_ip: ready.then(|| "10.0.0.1".parse().unwrap()),
            public_ip: None,
            ssh: None,
            labels: BTreeMap::new(),
            created_ms: None,
        }
    }

    fn lb(targets: &[&str]) -> LoadBalancer {
        LoadBalancer {
            id: "lb-1".into(),
            name: "r".into(),
            mode: LbMode::L4,
            scheme: LbScheme::InternetFacing,
            state: LbState::Active,
            endpoint: Some(Endpoint::Hostname {
                name: "r-1.elb.example".into(),
                alias_zone: Some("Z1".into()),
            }),
            listeners: vec![
                Listener {
                    port: 80,
                    protocol: "TCP".into(),
                    target_port: Some(80),
                },
                Listener {
                    port: 443,
                    protocol: "TCP".into(),
                    target_port: Some(443),
                },
            ],
            targets: targets.iter().map(|s| s.to_string()).collect(),
            labels: Default::default(),
            partial_targets: Vec::new(),
        }
    }

    fn zones() -> Vec<String> {
        vec!["xa".into(), "xb".into(), "xc".into()]
    }

    #[test]
    fn fresh_cluster_creates_three_nodes_in_three_zones() {
        let actions = rollout::plan_nodes(&spec(""), &zones(), &[]);
        let created: Vec<(&str, &str)> = actions
            .iter()
            .map(|a| match a {
                NodeAction::Create { name, zone } => (name.as_str(), zone.as_str()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(created, vec![("r-1", "xa"), ("r-2", "xb"), ("r-3", "xc")]);
    }

    #[test]
    fn missing_node_goes_to_the_emptiest_zone() {
        let found = [
            node("r-1", "i-1", "xa", true),
            node("r-3", "i-3", "xb", true),
        ];
        let actions = rollout::plan_nodes(&spec(""), &zones(), &found);
        assert!(actions.contains(&NodeAction::Create {
            name: "r-2".into(),
            zone: "xc".into()
        }));
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, NodeAction::Keep { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn duplicates_and_surplus_are_deleted_and_pending_nodes_waited_for() {
        let found = [
            node("r-1", "i-9", "xa", false),
            node("r-1", "i-1", "xa", true),
            node("r-2", "i-2", "xb", false),
            node("r-3", "i-3", "xc", true),
            node("r-5", "i-5", "xc", true),
        ];
        let actions = rollout::plan_nodes(&spec(""), &zones(), &found);
        let deleted: BTreeSet<&str> = actions
            .iter()
            .filter_map(|a| match a {
                NodeAction::Delete { node, .. } => Some(node.id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, BTreeSet::from(["i-9", "i-5"]));
        assert!(actions.contains(&NodeAction::Keep {
            node: found[1].clone()
        }));
        assert!(actions.contains(&NodeAction::Wait {
            node: found[2].clone()
        }));
    }

    #[test]
    fn targets_keep_only_when_equal() {
        let nodes = [
            node("r-1", "i-1", "xa", true),
            node("r-2", "i-2", "xb", true),
            node("r-3", "i-3", "xc", true),
        ];
        let actions = rollout::plan_nodes(&spec(""), &zones(), &nodes);
        let keep = LbAction::Keep {
            lb: lb(&["i-1", "i-2", "i-3"]),
        };
        assert_eq!(plan_targets(&actions, &keep), TargetsAction::Keep);
        let stale = LbAction::Keep {
            lb: lb(&["i-1", "i-2", "i-7"]),
        };
        assert_eq!(
            plan_targets(&actions, &stale),
            TargetsAction::Converge {
                add: vec!["r-3".into()],
                remove: vec!["i-7".into()]
            }
        );
    }

    struct Caps(bool);
    #[async_trait::async_trait]
    impl DnsProvider for Caps {
        fn name(&self) -> &str {
            "caps"
        }
        fn capabilities(&self) -> crate::provider::DnsCapabilities {
            crate::provider::DnsCapabilities {
                alias: self.0,
                lock: false,
            }
        }
        async fn lookup(&self, _: &str, _: &str) -> Result<Option<Record>> {
            unreachable!()
        }
        async fn owned_records(&self, _: &ClusterRef, _: &str) -> Result<Vec<Record>> {
            unreachable!()
        }
        async fn upsert_record(&self, _: &ClusterRef, _: &RecordRequest) -> Result<Record> {
            unreachable!()
        }
        async fn wait_record(&self, _: &str, _: &str, _: Duration) -> Result<()> {
            unreachable!()
        }
        async fn delete_record(&self, _: &ClusterRef, _: &str, _: &str) -> Result<()> {
            unreachable!()
        }
    }

    #[test]
    fn record_kind_follows_endpoint_and_capabilities() {
        let s = spec("");
        assert_eq!(
            desired_record(&s, &lb(&[]), &Caps(true)).unwrap().kind,
            RecordKind::Alias
        );
        assert_eq!(
            desired_record(&s, &lb(&[]), &Caps(false)).unwrap().kind,
            RecordKind::Cname
        );
        let mut ip = lb(&[]);
        ip.endpoint = Some(Endpoint::Ip {
            addresses: vec!["203.0.113.7".parse().unwrap()],
        });
        let req = desired_record(&s, &ip, &Caps(true)).unwrap();
        assert_eq!(
            (req.kind, req.ttl, req.fqdn.as_str()),
            (RecordKind::A, 60, "rancher.example.com")
        );
        // An A record cannot point at a hostname.
        let err =
            desired_record(&spec("").clone_with_record("a"), &lb(&[]), &Caps(true)).unwrap_err();
        assert!(err.spec_problems().unwrap().names("dns.record"), "{err}");
    }

    #[test]
    fn cname_at_the_apex_is_refused() {
        let s = ClusterSpec::from_toml(
            "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"example.com\"\nhostname = \"example.com\"\nrecord = \"cname\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let err = desired_record(&s, &lb(&[]), &Caps(false)).unwrap_err();
        assert!(err.spec_problems().unwrap().names("dns.hostname"), "{err}");
    }

    #[test]
    fn foreign_zones_are_named() {
        let s = spec("zones = [\"xa\", \"elsewhere-1a\"]");
        let err = choose_zones(&s, &zones()).unwrap_err();
        let p = err.spec_problems().unwrap();
        assert!(p.names("zones[1]") && !p.names("zones[0]"), "{err}");
        assert_eq!(choose_zones(&spec(""), &zones()).unwrap(), zones());
    }

    trait WithRecord {
        fn clone_with_record(&self, record: &str) -> ValidSpec;
    }
    impl WithRecord for ValidSpec {
        fn clone_with_record(&self, record: &str) -> ValidSpec {
            let mut s = self.clone().into_inner();
            s.dns.record = serde_json::from_value(serde_json::json!(record)).unwrap();
            s.validate().unwrap()
        }
    }
}
