//! Finding the balancer by its labels, and its targets: instance-group membership.

use std::collections::{BTreeMap, BTreeSet};

use google_cloud_compute_v1::model::{
    Address, BackendService, ForwardingRule, InstanceGroupsAddInstancesRequest,
    InstanceGroupsListInstancesRequest, InstanceGroupsRemoveInstancesRequest, InstanceReference,
    Operation,
};
use google_cloud_gax::error::Error as GaxError;
use triad_core::error::Result;
use triad_core::labels::Role;
use triad_core::model::{Endpoint, LbState, LoadBalancer, Node};
use triad_core::spec::{ClusterRef, LbMode, LbScheme};

use super::part::Part;
use super::{
    balancer_name, instance_key, listeners, scope_of, Names, Tier, REGISTRATION_PORTS, RETIRING,
};
use crate::client::{request_id, short, Scope};
use crate::error::{self, Failure};
use crate::nodes::label_filter;
use crate::GceProvider;

/// A balancer's registration ports with rules of their own, and the address of
/// those that are internal.
#[derive(Default)]
struct Registered {
    ports: Vec<u16>,
    internal: Option<std::net::IpAddr>,
}

/// The zone in a zonal self-link (`…/zones/<zone>/…`).
fn zone_of(link: &str) -> &str {
    link.split("/zones/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
}

impl GceProvider {
    /// The backend service `name` in `at`.
    pub(super) async fn backend_service(&self, at: &Scope, name: &str) -> Result<BackendService> {
        BackendService::get(self, at, name)
            .await
            .map_err(|e| error::sdk("get", &format!("{} {name}", BackendService::noun(at)), &e))
    }

    /// The cluster's forwarding rules, regional (l4) and global (l7), by labels.
    async fn labelled_rules(
        &self,
        cluster: &ClusterRef,
    ) -> Result<(Vec<ForwardingRule>, Vec<ForwardingRule>)> {
        let filter = label_filter(&cluster.name, Role::Lb);
        let regional = self
            .clients
            .forwarding_rules
            .list()
            .set_project(self.project())
            .set_region(&cluster.region)
            .set_filter(&filter)
            .send()
            .await
            .map_err(|e| {
                error::sdk(
                    "list forwarding rules",
                    &format!("region {}", cluster.region),
                    &e,
                )
            })?;
        let global = self
            .clients
            .global_forwarding_rules
            .list()
            .set_project(self.project())
            .set_filter(&filter)
            .send()
            .await
            .map_err(|e| {
                error::sdk(
                    "list global forwarding rules",
                    "global forwarding rules",
                    &e,
                )
            })?;
        Ok((regional.items, global.items))
    }

    /// The cluster's labelled addresses, regional (l4) and global (l7): the part
    /// deleted last, so a balancer whose forwarding rules are gone (a crash while it
    /// was made or deleted) is still found.
    async fn labelled_addresses(&self, cluster: &ClusterRef) -> Result<Vec<(LbMode, Address)>> {
        let filter = label_filter(&cluster.name, Role::Lb);
        let p = self.project();
        let regional = self.clients.addresses.list().set_project(p);
        let regional = regional.set_region(&cluster.region).set_filter(&filter);
        let regional = regional
            .send()
            .await
            .map_err(|e| error::sdk("list addresses", &format!("region {}", cluster.region), &e))?;
        let global = self.clients.global_addresses.list().set_project(p);
        let global = global.set_filter(&filter).send().await;
        let global =
            global.map_err(|e| error::sdk("list global addresses", "global addresses", &e))?;
        Ok(regional
            .items
            .into_iter()
            .map(|a| (LbMode::L4, a))
            .chain(global.items.into_iter().map(|a| (LbMode::L7, a)))
            .collect())
    }

    /// Every balancer of the cluster, by name: one, or two during a mode change. A
    /// balancer is found by its forwarding rule (l4: `<balancer>-fr`, l7:
    /// `<balancer>-https`), or, while it has none, by its address alone (then it is
    /// not active and has no endpoint: made half, or deleted half).
    pub(crate) async fn discover_all(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        let (regional, global) = self.labelled_rules(cluster).await?;
        let retire_in_progress = regional
            .iter()
            .chain(&global)
            .any(|r| r.labels.contains_key(RETIRING));
        // The registration ports each balancer has a passthrough rule of its own for,
        // and the address of the internal ones (an l7 balancer's).
        let mut registration: BTreeMap<String, Registered> = BTreeMap::new();
        for rule in &regional {
            let name = balancer_name(rule.description.as_deref(), &cluster.name);
            let n = Names::new(&cluster.name, &name);
            if let Some(port) = n.registration_port(rule.name.as_deref().unwrap_or("")) {
                let r = registration.entry(name).or_default();
                r.ports.push(port);
                if rule.load_balancing_scheme.as_ref().and_then(|s| s.name()) == Some("INTERNAL") {
                    r.internal = rule.ip_address.as_deref().and_then(|ip| ip.parse().ok());
                }
            }
        }
        let mut found: BTreeMap<String, LoadBalancer> = BTreeMap::new();
        let rules = regional
            .into_iter()
            .map(|r| (LbMode::L4, r))
            .chain(global.into_iter().map(|r| (LbMode::L7, r)));
        for (mode, rule) in rules {
            let name = balancer_name(rule.description.as_deref(), &cluster.name);
            let n = Names::new(&cluster.name, &name);
            let main = match mode {
                LbMode::L4 => &n.l4_rule,
                LbMode::L7 => &n.https_rule,
            };
            if rule.name.as_deref() != Some(main.as_str()) || found.contains_key(&name) {
                continue;
            }
            let mut reg = registration.remove(&name).unwrap_or_default();
            reg.ports
                .sort_by_key(|p| REGISTRATION_PORTS.iter().position(|r| r == p));
            let lb = self.balancer_of(cluster, &n, mode, rule, reg).await?;
            found.insert(name, lb);
        }
        // The addresses (two more reads) only when the rules cannot tell: no
        // balancer has a main rule (a create that crashed before its rules, a
        // delete after them), or one is marked while the other is deleted (which
        // may have lost its rules but not its address).
        let addresses = if found.is_empty() || retire_in_progress {
            self.labelled_addresses(cluster).await?
        } else {
            Vec::new()
        };
        for (mode, addr) in addresses {
            let Some(name) = Names::of_address(&cluster.name, addr.name.as_deref().unwrap_or(""))
            else {
                continue;
            };
            found.entry(name.clone()).or_insert_with(|| LoadBalancer {
                id: addr.self_link.clone().unwrap_or_default(),
                name,
                mode,
                scheme: LbScheme::InternetFacing,
                state: LbState::Provisioning,
                endpoint: None,
                registration_endpoint: None,
                listeners: Vec::new(),
                targets: Vec::new(),
                labels: addr.labels.into_iter().collect(),
                partial_targets: Vec::new(),
            });
        }
        Ok(found.into_values().collect())
    }

    /// The balancer `n` of `mode` whose main forwarding rule is `rule`, with rules of
    /// their own for the registration ports of `registration`.
    async fn balancer_of(
        &self,
        cluster: &ClusterRef,
        n: &Names,
        mode: LbMode,
        rule: ForwardingRule,
        registration: Registered,
    ) -> Result<LoadBalancer> {
        let at = scope_of(cluster, mode);
        let targets = match BackendService::get(self, &at, &n.backend_service).await {
            Ok(bs) => self
                .members(cluster, &bs)
                .await?
                .into_values()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            Err(e) if Failure::of(&e).is_not_found() => Vec::new(),
            Err(e) => {
                return Err(error::sdk(
                    "get",
                    &format!("backend service {}", n.backend_service),
                    &e,
                ))
            }
        };
        let endpoint = rule
            .ip_address
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .map(|ip| Endpoint::Ip {
                addresses: vec![ip],
            });
        Ok(LoadBalancer {
            id: rule.self_link.clone().unwrap_or_default(),
            name: n.balancer.clone(),
            mode,
            scheme: LbScheme::InternetFacing,
            state: if endpoint.is_some() {
                LbState::Active
            } else {
                LbState::Provisioning
            },
            endpoint,
            // l7: the internal balancer's address, once it has a rule.
            registration_endpoint: match mode {
                LbMode::L4 => None,
                LbMode::L7 => registration.internal.map(|ip| Endpoint::Ip {
                    addresses: vec![ip],
                }),
            },
            // A registration port counts once it has its own rule (and so its own
            // TCP check): one the web rule carries (made before) is completed.
            listeners: listeners(mode, &registration.ports),
            targets,
            labels: rule
                .labels
                .into_iter()
                .filter(|(k, _)| k != RETIRING)
                .collect(),
            partial_targets: Vec::new(),
        })
    }

    /// The instances in the backend service's groups: (zone, name) → node id.
    async fn members(
        &self,
        cluster: &ClusterRef,
        bs: &BackendService,
    ) -> Result<BTreeMap<(String, String), String>> {
        let mut keys = Vec::new();
        for b in &bs.backends {
            let Some(g) = b.group.as_deref() else {
                continue;
            };
            keys.extend(self.group_members(zone_of(g), short(g)).await?);
        }
        // The ids the plan's node discovery has just read; a list only for a member
        // it has not seen.
        if keys.iter().any(|k| self.known_id(k).is_none()) {
            self.list_nodes(cluster).await?;
        }
        let mut out = BTreeMap::new();
        for key in keys {
            let id = match self.known_id(&key) {
                Some(id) => id.clone(),
                None => match self.get_instance(&key.0, &key.1).await? {
                    Some(i) => i.id.map(|x| x.to_string()).unwrap_or_else(|| key.1.clone()),
                    None => continue,
                },
            };
            out.insert(key, id);
        }
        Ok(out)
    }

    async fn group_members(&self, zone: &str, group: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .clients
                .instance_groups
                .list_instances()
                .set_project(self.project())
                .set_zone(zone)
                .set_instance_group(group)
                .set_body(InstanceGroupsListInstancesRequest::default())
                .set_or_clear_page_token(token.clone())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) if Failure::of(&e).is_not_found() => return Ok(out),
                Err(e) => {
                    return Err(error::sdk(
                        "list members of",
                        &format!("instance group {group}"),
                        &e,
                    ))
                }
            };
            out.extend(
                page.items
                    .iter()
                    .filter_map(|i| i.instance.as_deref().and_then(instance_key)),
            );
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    pub(crate) async fn converge_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let at = scope_of(cluster, lb.mode);
        let name = Names::new(&cluster.name, &lb.name).backend_service;
        let bs = self.backend_service(&at, &name).await?;
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in nodes {
            wanted
                .entry(node.zone.clone())
                .or_default()
                .insert(node.name.clone());
        }
        // Groups for zones the backend service does not serve yet.
        let mut links = Vec::new();
        for zone in wanted.keys() {
            let g = self.ensure_group(&cluster.name, zone).await?;
            links.push(g.self_link.unwrap_or_default());
        }
        let bs = self
            .ensure_backends(&at, Tier::web(lb.mode), bs, &links)
            .await?;
        // The registration ports' backend services (regional in either mode) serve
        // the same groups.
        let n = Names::new(&cluster.name, &lb.name);
        let region = Scope::Region(cluster.region.clone());
        for l in lb
            .listeners
            .iter()
            .filter(|l| REGISTRATION_PORTS.contains(&l.port))
        {
            let name = n.registration(l.port).backend_service;
            let reg = self.backend_service(&region, &name).await?;
            self.ensure_backends(&region, Tier::registration(lb.mode), reg, &links)
                .await?;
        }
        let p = self.project();
        for b in &bs.backends {
            let Some(g) = b.group.as_deref() else {
                continue;
            };
            let zone = zone_of(g).to_owned();
            let group = short(g).to_owned();
            let current: BTreeSet<String> = self
                .group_members(&zone, &group)
                .await?
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            let want = wanted.get(&zone).cloned().unwrap_or_default();
            let link = |name: &String| {
                let mut r = InstanceReference::default();
                r.instance = Some(format!("projects/{p}/zones/{zone}/instances/{name}"));
                r
            };
            let add: Vec<InstanceReference> = want.difference(&current).map(link).collect();
            let remove: Vec<InstanceReference> = current.difference(&want).map(link).collect();
            for (instances, adding) in [(add, true), (remove, false)] {
                if instances.is_empty() {
                    continue;
                }
                let groups = &self.clients.instance_groups;
                let (op, action) = if adding {
                    let mut body = InstanceGroupsAddInstancesRequest::default();
                    body.instances = instances;
                    let b = groups.add_instances().set_project(p).set_zone(&zone);
                    let b = b.set_instance_group(&group).set_request_id(request_id());
                    (b.set_body(body).send().await, "add instances to")
                } else {
                    let mut body = InstanceGroupsRemoveInstancesRequest::default();
                    body.instances = instances;
                    let b = groups.remove_instances().set_project(p).set_zone(&zone);
                    let b = b.set_instance_group(&group).set_request_id(request_id());
                    (b.set_body(body).send().await, "remove instances from")
                };
                self.membership(&zone, &group, op, action).await?;
            }
        }
        let mut targets: Vec<String> = self.members(cluster, &bs).await?.into_values().collect();
        targets.sort();
        targets.dedup();
        Ok(LoadBalancer {
            targets,
            ..lb.clone()
        })
    }

    /// Wait for a membership change of `group` in `zone`.
    async fn membership(
        &self,
        zone: &str,
        group: &str,
        op: std::result::Result<Operation, GaxError>,
        action: &str,
    ) -> Result<()> {
        let what = format!("instance group {group}");
        let op = op.map_err(|e| error::sdk(action, &what, &e))?;
        self.op_wait(&Scope::Zone(zone.to_owned()), op, action, &what)
            .await
    }
}
