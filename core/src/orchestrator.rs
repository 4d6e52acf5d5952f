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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::bootstrap;
use crate::error::{Error, Result, SpecProblem, SpecProblems};
use crate::events::{Event, NoopObserver, Observer, Resource};
use crate::labels::Role;
use crate::model::{
    DnsEntry, Endpoint, Inventory, LbState, LoadBalancer, LoadBalancerRequest, Node, NodeRequest,
    NodeState, Providers, Record, RecordKind, RecordRequest,
};
use crate::placement;
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_timeout: Duration::from_secs(15 * 60),
            lb_timeout: Duration::from_secs(20 * 60),
            dns_timeout: Duration::from_secs(10 * 60),
            max_concurrency: 16,
            allow_hostname_change: false,
        }
    }
}

/// What apply will do with one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    /// It is not wanted (count lowered, or a duplicate): delete it after it has left
    /// the balancer.
    Delete {
        /// The node.
        node: Node,
        /// Why.
        reason: String,
    },
}

/// What apply will do with the balancer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    /// It exists with another mode or scheme: delete it and create a new one.
    Replace {
        /// The balancer.
        lb: LoadBalancer,
        /// What differs.
        reason: String,
    },
}

/// What apply will do with the balancer's targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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
    /// What discovery found.
    pub discovered: Discovered,
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
        nodes + lb + targets + dns + self.dns_delete.len()
    }

    /// Whether apply has nothing to do.
    pub fn is_noop(&self) -> bool {
        self.changes() == 0
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
                NodeAction::Delete { node, reason } => {
                    del += 1;
                    writeln!(f, "  - node {} ({}): {reason}", node.name, node.id)?
                }
            }
        }
        let lb_desc = format!(
            "{} {}, {}",
            spec.load_balancer.mode,
            spec.load_balancer.scheme,
            match spec.load_balancer.mode {
                LbMode::L4 => "TCP 80 and TCP 443 passed through to the nodes",
                LbMode::L7 => "HTTPS 443 terminated here, HTTP 80 redirected",
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
            LbAction::Replace { lb, reason } => {
                change += 1;
                writeln!(f, "  -/+ load balancer {} ({reason}) → {lb_desc}", lb.name)?
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
                    )?
                }
            },
        }
        for r in &self.dns_delete {
            del += 1;
            writeln!(f, "  - DNS {} {} (hostname change)", r.kind, r.fqdn)?;
        }
        if self.is_noop() {
            write!(f, "No changes: the cluster is as the spec says.")
        } else {
            write!(f, "{add} to create, {change} to change, {del} to delete.")
        }
    }
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

    fn emit(&self, event: Event) {
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
        let (region_zones, nodes, lb, at_name, owned) = tokio::try_join!(
            self.nodes.zones(&cluster),
            self.nodes.discover_nodes(&cluster),
            self.lb.discover_load_balancer(&cluster),
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
        let dns_delete: Vec<Record> = owned.iter().filter(|r| r.fqdn != fqdn).cloned().collect();
        if let Some(old) = dns_delete.first() {
            if !self.options.allow_hostname_change {
                return Err(Error::HostnameChange {
                    from: old.fqdn.clone(),
                    to: fqdn,
                });
            }
        }

        let node_actions = plan_nodes(spec, &zones, &nodes);
        let lb_name = cluster.name.clone();
        let load_balancer = match &lb {
            None => LbAction::Create { name: lb_name },
            Some(lb) => {
                let want = &spec.load_balancer;
                if lb.mode != want.mode || lb.scheme != want.scheme {
                    LbAction::Replace {
                        lb: lb.clone(),
                        reason: format!(
                            "is {} {}, the spec asks for {} {}",
                            lb.mode, lb.scheme, want.mode, want.scheme
                        ),
                    }
                } else if lb.state == LbState::Active
                    && lb.endpoint.is_some()
                    && lb.listeners.len() >= 2
                {
                    LbAction::Keep { lb: lb.clone() }
                } else {
                    LbAction::Complete { lb: lb.clone() }
                }
            }
        };
        let targets = plan_targets(&node_actions, &load_balancer);
        let dns = match (&load_balancer, &at_name) {
            (LbAction::Keep { lb }, Some(record)) => {
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
            discovered: Discovered {
                nodes,
                load_balancer: lb,
                records: owned,
            },
            spec: spec.clone(),
        })
    }

    /// Carry out `plan` and return the inventory. On failure the error
    /// ([`Error::Apply`]) lists every resource that exists; they all carry the
    /// cluster's labels, so a rerun converges and `destroy` removes them.
    pub async fn apply(&self, plan: &Plan) -> Result<Inventory> {
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
        result.map_err(|source| Error::Apply {
            cluster: plan.cluster.name.clone(),
            source: Box::new(source),
            existing: known
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .into_iter()
                .collect(),
        })
    }

    async fn apply_inner(&self, plan: &Plan, known: &Mutex<BTreeSet<String>>) -> Result<Inventory> {
        let note = |s: String| {
            known.lock().unwrap_or_else(|e| e.into_inner()).insert(s);
        };
        let (nodes, lb_and_record) = tokio::join!(
            self.apply_nodes(plan, &note),
            self.apply_lb_and_dns(plan, &note)
        );
        // Report the node failure first if both failed: it is usually the cause.
        let nodes = nodes?;
        let (lb, record) = lb_and_record?;

        // Targets: exactly the wanted nodes.
        let resource = Resource::Targets(lb.name.clone());
        let mut want: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        want.sort();
        let lb = if lb.targets == want {
            self.emit(Event::Unchanged { resource });
            lb
        } else {
            self.step(
                resource,
                "registering the nodes",
                self.lb.set_targets(&plan.cluster, &lb, &nodes),
            )
            .await?
        };

        // Surplus nodes leave only after the balancer stopped sending them traffic.
        let surplus: Vec<&Node> = plan
            .nodes
            .iter()
            .filter_map(|a| match a {
                NodeAction::Delete { node, .. } => Some(node),
                _ => None,
            })
            .collect();
        let deletions = join_all(surplus.iter().map(|node| {
            self.step(
                Resource::Node(node.name.clone()),
                "deleting",
                self.nodes.delete_node(&plan.cluster, node),
            )
        }))
        .await;
        deletions.into_iter().collect::<Result<Vec<()>>>()?;

        let spec = &plan.spec;
        Ok(Inventory {
            cluster: plan.cluster.name.clone(),
            region: plan.cluster.region.clone(),
            nodes,
            tls_external: lb.mode == LbMode::L7,
            load_balancer: lb,
            dns: DnsEntry::from(record),
            rancher_url: format!("https://{}", spec.fqdn()),
            providers: Providers {
                nodes: self.nodes.name().to_owned(),
                load_balancer: self.lb.name().to_owned(),
                dns: self.dns.name().to_owned(),
            },
        })
    }

    /// Create, or wait for, every wanted node; return them sorted by name.
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
                    NodeAction::Wait { node } => self.wait_node(plan, node).await,
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
        nodes.sort_by_key(|n| natural_key(&n.name));
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
    ) -> Result<(LoadBalancer, Record)> {
        let spec = &plan.spec;
        let cluster = &plan.cluster;
        let request = lb_request(spec, cluster, &plan.zones);
        let resource = Resource::LoadBalancer(request.name.clone());
        let lb = match &plan.load_balancer {
            LbAction::Keep { lb } => {
                self.emit(Event::Unchanged { resource });
                lb.clone()
            }
            action => {
                if let LbAction::Replace { .. } = action {
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

        let zone = spec.dns.zone.trim_end_matches('.').to_ascii_lowercase();
        for old in &plan.dns_delete {
            self.step(
                Resource::Record(old.fqdn.clone()),
                "deleting (hostname changed)",
                self.dns.delete_record(cluster, &zone, &old.fqdn),
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
                let req = desired_record(spec, &lb, self.dns.as_ref())?;
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
        Ok((lb, record))
    }

    /// Delete everything carrying the cluster's labels, in reverse dependency order:
    /// the DNS records it owns, then the balancer, then the nodes, then cluster-wide
    /// plumbing. Anything that could not be removed is reported in
    /// [`Error::Destroy`], and nothing else is touched.
    pub async fn destroy(&self, cluster: &ClusterRef) -> Result<DestroyReport> {
        let mut deleted = Vec::new();
        let mut failures: Vec<(String, Error)> = Vec::new();

        if let Some(zone) = &cluster.dns_zone {
            match self.dns.owned_records(cluster, zone).await {
                Ok(records) => {
                    for r in records {
                        let what = format!("DNS {} record {}", r.kind, r.fqdn);
                        match self
                            .step(
                                Resource::Record(r.fqdn.clone()),
                                "deleting",
                                self.dns.delete_record(cluster, zone, &r.fqdn),
                            )
                            .await
                        {
                            Ok(()) => deleted.push(what),
                            Err(e) => failures.push((what, e)),
                        }
                    }
                }
                Err(e) => failures.push((format!("DNS records in {zone}"), e)),
            }
        }

        let lb_resource = Resource::LoadBalancer(cluster.name.clone());
        let lb_delete = self.step(
            lb_resource,
            "deleting",
            self.lb.delete_load_balancer(cluster),
        );
        let nodes_delete = async {
            let nodes = self.nodes.discover_nodes(cluster).await?;
            let results = join_all(nodes.iter().map(|n| async move {
                let r = self
                    .step(
                        Resource::Node(n.name.clone()),
                        "deleting",
                        self.nodes.delete_node(cluster, n),
                    )
                    .await;
                (format!("node {} ({})", n.name, n.id), r)
            }))
            .await;
            Ok::<_, Error>(results)
        };
        let (lb_result, nodes_result) = tokio::join!(lb_delete, nodes_delete);
        match lb_result {
            Ok(parts) => deleted.extend(parts),
            Err(e) => failures.push((format!("load balancer {}", cluster.name), e)),
        }
        let mut nodes_ok = true;
        match nodes_result {
            Ok(results) => {
                for (what, r) in results {
                    match r {
                        Ok(()) => deleted.push(what),
                        Err(e) => {
                            nodes_ok = false;
                            failures.push((what, e))
                        }
                    }
                }
            }
            Err(e) => {
                nodes_ok = false;
                failures.push(("nodes".into(), e))
            }
        }
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
                Err(e) => failures.push((format!("network plumbing of {}", cluster.name), e)),
            }
        }

        if failures.is_empty() {
            Ok(DestroyReport { deleted })
        } else {
            Err(Error::Destroy { failures })
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

/// Sort key that puts `x-2` before `x-10`.
fn natural_key(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((stem, n)) => match n.parse() {
            Ok(n) => (stem.to_owned(), n),
            Err(_) => (name.to_owned(), 0),
        },
        None => (name.to_owned(), 0),
    }
}

fn plan_nodes(spec: &ValidSpec, zones: &[String], found: &[Node]) -> Vec<NodeAction> {
    let wanted = spec.node_names();
    let mut by_name: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    // Nodes on their way out are gone as far as the plan is concerned.
    for n in found.iter().filter(|n| n.state != NodeState::Terminating) {
        by_name.entry(n.name.as_str()).or_default().push(n);
    }
    let mut actions = Vec::new();
    let mut kept_zones = Vec::new();
    let mut missing = Vec::new();
    for name in &wanted {
        match by_name.remove(name.as_str()) {
            None => missing.push(name.clone()),
            Some(mut same) => {
                // A duplicate (a cloud that ignored our client token): keep the one
                // furthest along, break ties by id, delete the rest.
                same.sort_by_key(|n| (!n.is_ready(), n.id.clone()));
                let keep = same[0];
                kept_zones.push(keep.zone.clone());
                actions.push(if keep.is_ready() {
                    NodeAction::Keep { node: keep.clone() }
                } else {
                    NodeAction::Wait { node: keep.clone() }
                });
                for dup in &same[1..] {
                    actions.push(NodeAction::Delete {
                        node: (*dup).clone(),
                        reason: format!("duplicate of {} ({})", keep.name, keep.id),
                    });
                }
            }
        }
    }
    let placed = placement::place(zones, &kept_zones, missing.len());
    for (name, zone) in missing.into_iter().zip(placed) {
        actions.push(NodeAction::Create { name, zone });
    }
    for (_, rest) in by_name {
        for n in rest {
            actions.push(NodeAction::Delete {
                node: n.clone(),
                reason: format!("not wanted: the spec asks for {} nodes", spec.nodes.count),
            });
        }
    }
    actions.sort_by_key(|a| natural_key(action_name(a)));
    actions
}

fn action_name(a: &NodeAction) -> &str {
    match a {
        NodeAction::Create { name, .. } => name,
        NodeAction::Keep { node } | NodeAction::Wait { node } | NodeAction::Delete { node, .. } => {
            &node.name
        }
    }
}

fn plan_targets(nodes: &[NodeAction], lb: &LbAction) -> TargetsAction {
    let current: BTreeSet<&str> = match lb {
        LbAction::Keep { lb } | LbAction::Complete { lb } => {
            lb.targets.iter().map(String::as_str).collect()
        }
        LbAction::Create { .. } | LbAction::Replace { .. } => BTreeSet::new(),
    };
    let mut add = Vec::new();
    let mut wanted_ids = BTreeSet::new();
    for a in nodes {
        match a {
            NodeAction::Create { name, .. } => add.push(name.clone()),
            NodeAction::Keep { node } | NodeAction::Wait { node } => {
                wanted_ids.insert(node.id.as_str());
                if !current.contains(node.id.as_str()) {
                    add.push(node.name.clone());
                }
            }
            NodeAction::Delete { .. } => {}
        }
    }
    let remove: Vec<String> = current
        .iter()
        .filter(|id| !wanted_ids.contains(*id))
        .map(|id| id.to_string())
        .collect();
    if add.is_empty() && remove.is_empty() && matches!(lb, LbAction::Keep { .. }) {
        TargetsAction::Keep
    } else {
        TargetsAction::Converge { add, remove }
    }
}

fn node_request(spec: &ValidSpec, cluster: &ClusterRef, name: &str, zone: &str) -> NodeRequest {
    NodeRequest {
        name: name.to_owned(),
        zone: zone.to_owned(),
        size: spec.nodes.size.clone(),
        image: spec.nodes.image.clone(),
        disk_gib: spec.nodes.disk_gib,
        ssh_allowed_cidrs: spec.nodes.ssh_allowed_cidrs.clone(),
        labels: cluster.labels_for(Role::Node),
        user_data: bootstrap::user_data(spec, name),
    }
}

fn lb_request(spec: &ValidSpec, cluster: &ClusterRef, zones: &[String]) -> LoadBalancerRequest {
    LoadBalancerRequest {
        name: cluster.name.clone(),
        mode: spec.load_balancer.mode,
        scheme: spec.load_balancer.scheme,
        certificate: spec.load_balancer.certificate.clone(),
        health_check_path: spec.load_balancer.health_check_path.clone(),
        zones: zones.to_vec(),
        labels: cluster.labels_for(Role::Lb),
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
    use super::*;
    use crate::model::Listener;
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
        }
    }

    fn zones() -> Vec<String> {
        vec!["xa".into(), "xb".into(), "xc".into()]
    }

    #[test]
    fn fresh_cluster_creates_three_nodes_in_three_zones() {
        let actions = plan_nodes(&spec(""), &zones(), &[]);
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
        let actions = plan_nodes(&spec(""), &zones(), &found);
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
        let actions = plan_nodes(&spec(""), &zones(), &found);
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
        let actions = plan_nodes(&spec(""), &zones(), &nodes);
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
            crate::provider::DnsCapabilities { alias: self.0 }
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

    #[test]
    fn natural_order_of_node_names() {
        let mut v = vec!["r-10", "r-2", "r-1"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["r-1", "r-2", "r-10"]);
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
