//! The planner: what exists (discovery) against what the spec asks, as a [`Plan`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::drift::{self, Change};
use crate::error::{Error, Result, SpecProblem, SpecProblems};
use crate::events::Event;
use crate::identity;
use crate::model::{
    DnsEntry, Endpoint, Inventory, LbState, LoadBalancer, Node, Providers, Record, RecordKind,
    RecordRequest,
};
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::rollout;
use crate::spec::{ClusterRef, LbMode, RecordChoice, ValidSpec};
use crate::validate;

use super::Orchestrator;

mod types;

pub use types::{Discovered, DnsAction, LbAction, NodeAction, Plan, TargetsAction};

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

impl Orchestrator {
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
        let zone = spec.dns.zone.clone();
        let fqdn = spec.fqdn();
        let (region_zones, network, nodes, lbs, at_name, mut owned) = tokio::try_join!(
            self.nodes.zones(&cluster),
            self.nodes.network_cidrs(&cluster),
            self.nodes.discover_nodes(&cluster),
            self.lb.discover_load_balancers(&cluster),
            self.dns.lookup(&zone, &fqdn),
            self.dns.owned_records(&cluster, &zone),
        )?;

        let zones = choose_zones(spec, &region_zones)?;
        // The node network the cloud knows goes into NO_PROXY (the user data and
        // Rancher's noProxy are rendered from the plan's spec); it must not
        // overlap the pod or service CIDR.
        let problems = validate::learned_network_problems(spec, self.nodes.name(), &network);
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(SpecProblems(problems)));
        }
        // A balancer its own targets cannot reach (Google's passthrough) cannot be
        // the way the servers join: they join through the first node.
        let learned = spec
            .with_learned_network_cidrs(network)
            .with_join_first_node(
                !spec.registration_ports().is_empty() && !self.lb.backends_reach_balancer(),
            );
        let spec = &learned;

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
        let (load_balancer, lb_retire) = plan_lb(
            spec,
            &cluster,
            &lbs,
            self.lb.coexists(),
            self.lb.registration_apart(spec.load_balancer.mode),
        );
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
    pub(super) async fn owned_in_label_zones(
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
    pub(super) fn inventory_of(
        &self,
        plan: &Plan,
        nodes: Vec<Node>,
        lb: LoadBalancer,
        record: Record,
    ) -> Inventory {
        Inventory {
            kubernetes: Some(crate::render::kubernetes_entry(
                &plan.spec.with_registration_of(&lb),
                &nodes,
            )),
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
    registration_apart: bool,
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
        // registration ports of rke2/k3s included). A registration port is served by
        // a listener on it, or by one forwarding to it from another port (NGINX's
        // `registration_listen`, where the port is taken on the balancer's host).
        // Served apart (an l7 balancer's TCP companion), they also need the
        // companion's address.
        let registration = spec.registration_ports();
        let listeners_missing = lb.listeners.len() < 2
            || !registration.iter().all(|p| {
                lb.listeners
                    .iter()
                    .any(|l| l.port == *p || l.target_port == Some(*p))
            })
            || (registration_apart
                && !registration.is_empty()
                && lb.registration_endpoint.is_none());
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

/// The record the spec asks for, pointing at `lb`'s endpoint.
pub(super) fn desired_record(
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
    if kind == RecordKind::Cname && spec.fqdn() == spec.dns.zone {
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
        zone: spec.dns.zone.clone(),
        kind,
        target,
        ttl: spec.dns.ttl,
    })
}

#[cfg(test)]
mod tests;
