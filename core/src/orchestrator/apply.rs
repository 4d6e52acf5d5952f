//! The executor: carries out a [`Plan`] under the cluster's lock.

use std::collections::BTreeSet;
use std::sync::Mutex;

use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::bootstrap;
use crate::drift::{self};
use crate::error::{Error, Result};
use crate::events::{Event, Resource};
use crate::identity;
use crate::labels::Role;
use crate::lock;
use crate::model::{Inventory, LoadBalancer, LoadBalancerRequest, Node, NodeRequest, Record};
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::rollout;
use crate::spec::{ClusterRef, Distribution, ValidSpec};

use super::plan::*;
use super::{closed, Orchestrator};

impl Orchestrator {
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
        let result = self
            .holding(lease.as_ref(), self.apply_inner(plan, &known))
            .await;
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
    pub(super) async fn lock(
        &self,
        cluster: &ClusterRef,
    ) -> Result<Option<std::sync::Mutex<lock::Lease>>> {
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
        .map(|lease| lease.map(std::sync::Mutex::new))
    }

    /// Run `work` while renewing `lease` (if any); stop with [`Error::Locked`] if
    /// another run took the lock over meanwhile.
    pub(super) async fn holding<T>(
        &self,
        lease: Option<&std::sync::Mutex<lock::Lease>>,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(lease) = lease else {
            return work.await;
        };
        tokio::select! {
            result = work => result,
            lost = lock::hold(self.dns.as_ref(), lease) => Err(lost),
        }
    }

    /// Give the lock back. A failure leaves a lock that only this holder (the same
    /// [`Options::lock_holder`]) or the end of its lease frees: it is reported.
    pub(super) async fn unlock(&self, lease: Option<std::sync::Mutex<lock::Lease>>) -> Result<()> {
        match lease {
            Some(lease) => {
                let lease = lease.into_inner().unwrap_or_else(|e| e.into_inner());
                lock::release(self.dns.as_ref(), &lease).await
            }
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
        let spec = &plan.spec;
        let learned: Plan;
        let (plan, nodes, lb, record) = if !spec.registration_ports().is_empty()
            && self.lb.registration_apart(spec.load_balancer.mode)
        {
            // The balancer serves the registration ports on an address of its own,
            // which the nodes' user data must carry: the balancer comes first.
            let (lb, record) = self.apply_lb_and_dns(plan, &note, !make_first).await?;
            if lb.registration_endpoint.is_none() {
                return Err(Error::provider(
                    self.lb.name(),
                    "create load balancer",
                    format!("load balancer {}", lb.name),
                    crate::error::FailureKind::Other,
                    "the balancer reports no registration address, but its provider \
                     serves the registration ports apart in this mode",
                ));
            }
            learned = Plan {
                spec: spec.with_registration_of(&lb),
                ..plan.clone()
            };
            let nodes = self.apply_nodes(&learned, &note).await?;
            (&learned, nodes, lb, record)
        } else {
            let (nodes, lb_and_record) = tokio::join!(
                self.apply_nodes(plan, &note),
                self.apply_lb_and_dns(plan, &note, !make_first)
            );
            // Report the node failure first if both failed: it is usually the cause.
            let nodes = nodes?;
            let (lb, record) = lb_and_record?;
            (plan, nodes, lb, record)
        };

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
        let (lb, nodes, record) = self.roll(plan, lb, members, record, &note).await?;

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
    /// per step. Returns the balancer, the nodes that remain, by name, and the record.
    ///
    /// A balancer whose targets are fixed when it is built (an NGINX balancer node)
    /// is rebuilt, at a new address, by each change of targets: the record follows
    /// it right after that change, not at the next apply.
    async fn roll(
        &self,
        plan: &Plan,
        mut lb: LoadBalancer,
        mut members: Vec<Node>,
        mut record: Record,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<(LoadBalancer, Vec<Node>, Record)> {
        let spec = &plan.spec;
        for node in rollout::delete_order(&spec.name, spec.nodes.count, &plan.nodes) {
            members.retain(|m| m.id != node.id);
            lb = self.converge_targets(plan, lb, &members).await?;
            record = self.follow(plan, &lb, record, note).await?;
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
            // The replacement joins the running nodes (through one of them, not the
            // one it replaces, when the nodes join through a node).
            let through_node = spec.kubernetes.install && spec.joins_through_first_node();
            let joining = spec.with_join(
                join_host(&members, Some(old)).filter(|_| through_node),
                true,
            );
            let request = node_request(&joining, &plan.cluster, name, zone);
            let new = self
                .step(
                    Resource::Node(name.clone()),
                    "creating (replacement)",
                    self.nodes.create_node(&plan.cluster, &request),
                )
                .await?;
            note(format!("node {} ({})", new.name, new.id));
            let new = self.wait_nodes(plan, std::slice::from_ref(&new)).await?;
            members.extend(new);
            lb = self.converge_targets(plan, lb, &members).await?;
            record = self.follow(plan, &lb, record, note).await?;
            members.retain(|m| m.id != old.id);
            lb = self.converge_targets(plan, lb, &members).await?;
            record = self.follow(plan, &lb, record, note).await?;
            self.step(
                Resource::Node(old.name.clone()),
                "deleting (replaced)",
                self.nodes.delete_node(&plan.cluster, old),
            )
            .await?;
        }
        members.sort_by_key(|n| rollout::natural_key(&n.name));
        Ok((lb, members, record))
    }

    /// `plan` with how the nodes it makes join the cluster. Nodes of the cluster
    /// exist (any not being deleted): the new ones join them, node 1's slot
    /// included, which would otherwise start a cluster of its own. Nodes that
    /// install Kubernetes and join through the first node
    /// ([`ValidSpec::joins_through_first_node`]) get a running node's private
    /// address; with no node yet, the first is made alone and waited for, and the
    /// others join it.
    async fn prepare_join(&self, plan: &Plan, note: &(dyn Fn(String) + Sync)) -> Result<Plan> {
        let spec = &plan.spec;
        let mut plan = plan.clone();
        if !plan
            .nodes
            .iter()
            .any(|a| matches!(a, NodeAction::Create { .. }))
        {
            // Nothing made here: how nodes join does not matter.
            return Ok(plan);
        }
        let existing: Vec<Node> = plan
            .nodes
            .iter()
            .filter_map(|a| match a {
                NodeAction::Keep { node }
                | NodeAction::Wait { node }
                | NodeAction::Update { node, .. }
                | NodeAction::Replace { node, .. } => Some(node.clone()),
                NodeAction::Create { .. } | NodeAction::Delete { .. } => None,
            })
            .collect();
        let k = &spec.kubernetes;
        if !(k.install && k.distribution != Distribution::Rke && spec.joins_through_first_node()) {
            plan.spec = spec.with_join(None, !existing.is_empty());
            return Ok(plan);
        }
        let mut running: Vec<Node> = existing.iter().filter(|n| n.is_ready()).cloned().collect();
        if running.is_empty() && !existing.is_empty() {
            running = self.wait_nodes(&plan, &existing).await?;
        } else if running.is_empty() {
            // No node yet: the first starts the cluster, alone.
            let Some((i, name, zone)) = plan
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a {
                    NodeAction::Create { name, zone } => Some((i, name.clone(), zone.clone())),
                    _ => None,
                })
                .min_by_key(|(_, name, _)| rollout::natural_key(name))
            else {
                return Ok(plan);
            };
            let request = node_request(spec, &plan.cluster, &name, &zone);
            let node = self
                .step(
                    Resource::Node(name.clone()),
                    "creating (the others join it)",
                    self.nodes.create_node(&plan.cluster, &request),
                )
                .await?;
            note(format!("node {} ({})", node.name, node.id));
            running = self.wait_nodes(&plan, std::slice::from_ref(&node)).await?;
            if let Some(node) = running.first() {
                plan.nodes[i] = NodeAction::Wait { node: node.clone() };
            }
        }
        plan.spec = spec.with_join(join_host(&running, None), true);
        Ok(plan)
    }

    /// `record`, rewritten if `lb`'s endpoint moved away from it (no call otherwise).
    async fn follow(
        &self,
        plan: &Plan,
        lb: &LoadBalancer,
        record: Record,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<Record> {
        if desired_record(&plan.spec, lb, self.dns.as_ref())?.is_satisfied_by(&record) {
            return Ok(record);
        }
        self.write_record(plan, lb, note).await
    }

    /// Create, wait for or update in place every wanted node (a node to be replaced
    /// stays as it is until its rolling step); return them sorted by name.
    ///
    /// Three phases: create what is missing (concurrently, at most
    /// [`Options::max_concurrency`] calls at once), wait for every node that is not
    /// running yet with one [`NodeProvider::wait_nodes`] (one poll for the whole
    /// cluster where the provider can), then update in place what drifted. The cloud
    /// boots the nodes in parallel either way, so batching the waits costs no time
    /// and saves a read per node and poll.
    async fn apply_nodes(&self, plan: &Plan, note: &(dyn Fn(String) + Sync)) -> Result<Vec<Node>> {
        let joining = self.prepare_join(plan, note).await?;
        let plan = &joining;
        let spec = &plan.spec;
        let limit = Semaphore::new(self.options.max_concurrency.max(1));

        // Phase 1: the nodes as they are, and the missing ones created. Every create
        // finishes (or fails) so one failure does not strand the others half made.
        let made = plan.nodes.iter().filter_map(|action| {
            let limit = &limit;
            let fut = async move {
                match action {
                    NodeAction::Keep { node } => {
                        self.emit(Event::Unchanged {
                            resource: Resource::Node(node.name.clone()),
                        });
                        Ok((node.clone(), false))
                    }
                    NodeAction::Wait { node } | NodeAction::Replace { node, .. } => {
                        Ok((node.clone(), false))
                    }
                    NodeAction::Update { node, .. } => Ok((node.clone(), true)),
                    NodeAction::Create { name, zone } => {
                        let request = node_request(spec, &plan.cluster, name, zone);
                        let _permit = limit.acquire().await.map_err(|_| closed())?;
                        let node = self
                            .step(
                                Resource::Node(name.clone()),
                                "creating",
                                self.nodes.create_node(&plan.cluster, &request),
                            )
                            .await?;
                        note(format!("node {} ({})", node.name, node.id));
                        Ok((node, false))
                    }
                    NodeAction::Delete { .. } => unreachable!("filtered out"),
                }
            };
            (!matches!(action, NodeAction::Delete { .. })).then_some(fut)
        });
        let mut nodes = Vec::new();
        let mut update = Vec::new();
        for (node, drifted) in first_error(join_all(made).await)? {
            update.push(drifted);
            nodes.push(node);
        }

        // Phase 2: one wait for every node that does not run yet.
        let pending: Vec<Node> = nodes.iter().filter(|n| !n.is_ready()).cloned().collect();
        if !pending.is_empty() {
            let ready = self.wait_nodes(plan, &pending).await?;
            for n in nodes.iter_mut().filter(|n| !n.is_ready()) {
                match ready.iter().find(|r| r.id == n.id) {
                    Some(r) => *n = r.clone(),
                    None => {
                        return Err(Error::provider(
                            self.nodes.name(),
                            "wait for nodes",
                            format!("node {}", n.name),
                            crate::FailureKind::Other,
                            "the provider's wait returned without this node",
                        ))
                    }
                }
            }
        }

        // Phase 3: in-place updates of the nodes that drifted.
        let updates = nodes.iter().zip(&update).map(|(node, &drifted)| {
            let limit = &limit;
            async move {
                if !drifted {
                    return Ok(node.clone());
                }
                let request = node_request(spec, &plan.cluster, &node.name, &node.zone);
                let _permit = limit.acquire().await.map_err(|_| closed())?;
                self.step(
                    Resource::Node(node.name.clone()),
                    "updating in place",
                    self.nodes.update_node(&plan.cluster, node, &request),
                )
                .await
            }
        });
        let mut nodes = first_error(join_all(updates).await)?;
        nodes.sort_by_key(|n| rollout::natural_key(&n.name));
        Ok(nodes)
    }

    /// Wait until `nodes` run, reporting each node's wait as a step of its own.
    pub(super) async fn wait_nodes(&self, plan: &Plan, nodes: &[Node]) -> Result<Vec<Node>> {
        let step = "waiting until running";
        for node in nodes {
            self.started(&Resource::Node(node.name.clone()), step);
        }
        match self
            .nodes
            .wait_nodes(&plan.cluster, nodes, self.options.node_timeout)
            .await
        {
            Ok(ready) => {
                for n in &ready {
                    self.finished(
                        &Resource::Node(n.name.clone()),
                        "running",
                        n.private_ip.map(|ip| format!("{ip} in {}", n.zone)),
                    );
                }
                Ok(ready)
            }
            Err(e) => {
                for node in nodes {
                    self.emit(Event::Failed {
                        resource: Resource::Node(node.name.clone()),
                        step: step.into(),
                        error: e.to_string(),
                    });
                }
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
            // Kept only if the balancer this apply ends with still has the endpoint
            // the record names: an in-place balancer update may have moved it (an
            // NGINX node rebuilt, say). A local comparison, no cloud call.
            DnsAction::Keep { record }
                if desired_record(spec, lb, self.dns.as_ref())?.is_satisfied_by(record) =>
            {
                self.emit(Event::Unchanged { resource });
                record.clone()
            }
            DnsAction::Keep { .. } | DnsAction::Upsert { .. } => {
                self.write_record(plan, lb, note).await?
            }
        };
        Ok(record)
    }

    /// Write the record for `lb` and wait until the zone serves it.
    async fn write_record(
        &self,
        plan: &Plan,
        lb: &LoadBalancer,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<Record> {
        let (spec, cluster) = (&plan.spec, &plan.cluster);
        let zone = spec.dns.zone.clone();
        let resource = Resource::Record(spec.fqdn());
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
        Ok(record)
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

/// The private address of the first running node in natural order (not `except`),
/// the one the nodes made now join through.
fn join_host(nodes: &[Node], except: Option<&Node>) -> Option<String> {
    nodes
        .iter()
        .filter(|n| n.is_ready() && n.private_ip.is_some())
        .filter(|n| except.is_none_or(|e| e.id != n.id))
        .min_by_key(|n| rollout::natural_key(&n.name))
        .and_then(|n| n.private_ip)
        .map(|ip| ip.to_string())
}

/// All the values, or the first error (after every future has finished).
fn first_error<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    results.into_iter().collect()
}
