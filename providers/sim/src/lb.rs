//! [`LoadBalancerProvider`] for the simulated cloud: target groups, a balancer and
//! its listeners, shaped like an AWS NLB (l4) or ALB (l7).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use triad_core::labels::Role;
use triad_core::model::{Endpoint, LbState, Listener, LoadBalancer, LoadBalancerRequest, Node};
use triad_core::spec::{ClusterRef, LbMode, ValidSpec};
use triad_core::{Error, FailureKind, LoadBalancerProvider, Result};

use crate::config::{EndpointStyle, SimConfig};
use crate::world::{
    has_labels, ApiError, Balancer, SimHealthCheck, SimListener, SimListenerAction, SimTargetGroup,
    World,
};
use crate::{SimApi, SimCloud, NAME};

/// A target group the balancer needs.
#[derive(Clone, Debug)]
struct TgSpec {
    name: String,
    protocol: &'static str,
    port: u16,
    /// A TCP health check on `port` (registration ports) instead of HTTP on 80.
    tcp_check: bool,
}

/// A listener the balancer needs.
#[derive(Clone, Debug)]
struct ListenerSpec {
    port: u16,
    protocol: &'static str,
    /// Name of the target group it forwards to; `None` redirects to HTTPS.
    forward_to: Option<String>,
    certificate: Option<String>,
}

/// The balancer's parts: 80/443 by mode, then one TCP target group and TCP
/// listener per registration port (9345, 6443) in either mode — on AWS an l7
/// balancer would need a companion NLB for these; the sim models them on the one
/// balancer.
fn wanted(request: &LoadBalancerRequest) -> (Vec<TgSpec>, Vec<ListenerSpec>) {
    let (mut tgs, mut listeners) = wanted_web(request);
    for &port in &request.registration_ports {
        let tg = TgSpec {
            name: format!("{}-tcp-{port}", request.name),
            protocol: "TCP",
            port,
            tcp_check: true,
        };
        listeners.push(ListenerSpec {
            port,
            protocol: "TCP",
            forward_to: Some(tg.name.clone()),
            certificate: None,
        });
        tgs.push(tg);
    }
    (tgs, listeners)
}

fn wanted_web(request: &LoadBalancerRequest) -> (Vec<TgSpec>, Vec<ListenerSpec>) {
    let n = &request.name;
    match request.mode {
        LbMode::L4 => {
            let tgs = vec![
                TgSpec {
                    name: format!("{n}-tcp-80"),
                    protocol: "TCP",
                    port: 80,
                    tcp_check: false,
                },
                TgSpec {
                    name: format!("{n}-tcp-443"),
                    protocol: "TCP",
                    port: 443,
                    tcp_check: false,
                },
            ];
            let listeners = tgs
                .iter()
                .map(|tg| ListenerSpec {
                    port: tg.port,
                    protocol: "TCP",
                    forward_to: Some(tg.name.clone()),
                    certificate: None,
                })
                .collect();
            (tgs, listeners)
        }
        LbMode::L7 => {
            let tg = TgSpec {
                name: format!("{n}-http-80"),
                protocol: "HTTP",
                port: 80,
                tcp_check: false,
            };
            let listeners = vec![
                ListenerSpec {
                    port: 80,
                    protocol: "HTTP",
                    forward_to: None,
                    certificate: None,
                },
                ListenerSpec {
                    port: 443,
                    protocol: "HTTPS",
                    forward_to: Some(tg.name.clone()),
                    certificate: request.certificate.clone(),
                },
            ];
            (vec![tg], listeners)
        }
    }
}

/// Everything the cluster's balancer is made of, as one discovery sees it.
struct Parts {
    balancer: Option<crate::world::SimBalancer>,
    listeners: Vec<SimListener>,
    target_groups: Vec<SimTargetGroup>,
}

/// Whether the target group named `tg` belongs to the balancer named `lb_name` (two
/// balancers of one cluster, `rancher` and `rancher-b`, live side by side during a
/// mode change: a prefix would mix their target groups).
fn is_tg_of(lb_name: &str, tg: &str) -> bool {
    // `<lb>-tcp-<port>` (80, 443 and the registration ports) or `<lb>-http-80`.
    let Some(rest) = tg.strip_prefix(lb_name).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let port = rest
        .strip_prefix("tcp-")
        .or_else(|| rest.strip_prefix("http-"));
    port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn build(parts: &Parts) -> Option<LoadBalancer> {
    let b = parts.balancer.as_ref()?;

    let tgs: Vec<&SimTargetGroup> = parts
        .target_groups
        .iter()
        .filter(|t| is_tg_of(&b.name, &t.name))
        .collect();
    let mut listeners: Vec<Listener> = parts
        .listeners
        .iter()
        .filter(|l| l.balancer_arn == b.arn)
        .map(|l| Listener {
            port: l.port,
            protocol: l.protocol.clone(),
            target_port: match &l.action {
                SimListenerAction::Forward(arn) => {
                    tgs.iter().find(|t| &t.arn == arn).map(|t| t.port)
                }
                SimListenerAction::RedirectToHttps => None,
            },
        })
        .collect();
    listeners.sort_by_key(|l| l.port);
    let targets: Vec<String> = match tgs.split_first() {
        None => Vec::new(),
        Some((first, rest)) => first
            .targets
            .iter()
            .filter(|id| rest.iter().all(|t| t.targets.contains(*id)))
            .cloned()
            .collect(),
    };
    let partial_targets: Vec<String> = tgs
        .iter()
        .flat_map(|t| t.targets.iter())
        .filter(|id| !targets.contains(id))
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    Some(LoadBalancer {
        id: b.arn.clone(),
        name: b.name.clone(),
        mode: b.mode,
        scheme: b.scheme,
        state: b.state,
        endpoint: b.endpoint.clone(),
        listeners,
        targets,
        labels: b.labels.clone(),
        partial_targets,
    })
}

fn alias_zone_id(region: &str) -> String {
    // FNV-1a of the region: a stable per-region canonical hosted zone id.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in region.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ZSIM{:010X}", h & 0xff_ffff_ffff)
}

impl World {
    fn cluster_target_groups(&self, cluster: &ClusterRef) -> Vec<SimTargetGroup> {
        self.target_groups
            .values()
            .filter(|t| t.region == cluster.region && has_labels(&t.labels, cluster, Role::Lb))
            .cloned()
            .collect()
    }

    fn cluster_balancers(
        &self,
        cluster: &ClusterRef,
        cfg: &SimConfig,
        now: tokio::time::Instant,
    ) -> Vec<crate::world::SimBalancer> {
        self.balancers
            .values()
            .filter(|b| b.region == cluster.region && has_labels(&b.labels, cluster, Role::Lb))
            .map(|b| b.view(cfg, now))
            .collect()
    }
}

impl SimCloud {
    async fn describe_target_groups(&self, cluster: &ClusterRef) -> Result<Vec<SimTargetGroup>> {
        let resource = format!("target groups of cluster {}", cluster.name);
        self.call(SimApi::DescribeTargetGroups, &resource, |w, _, _| {
            Ok(w.cluster_target_groups(cluster))
        })
        .await
    }

    async fn describe_balancers(
        &self,
        cluster: &ClusterRef,
    ) -> Result<Vec<crate::world::SimBalancer>> {
        let resource = format!("load balancers of cluster {}", cluster.name);
        self.call(SimApi::DescribeBalancers, &resource, |w, cfg, now| {
            Ok(w.cluster_balancers(cluster, cfg, now))
        })
        .await
    }

    async fn describe_listeners(&self, balancer: &str, arn: &str) -> Result<Vec<SimListener>> {
        let resource = format!("listeners of load balancer {balancer}");
        self.call(SimApi::DescribeListeners, &resource, |w, _, _| {
            Ok(w.listeners
                .values()
                .filter(|l| l.balancer_arn == arn)
                .cloned()
                .collect())
        })
        .await
    }

    /// Discover the balancer named `name` (or the cluster's first one) and its parts.
    async fn discover_parts(&self, cluster: &ClusterRef, name: Option<&str>) -> Result<Parts> {
        let balancers = self.describe_balancers(cluster).await?;
        let balancer = match name {
            Some(n) => balancers.into_iter().find(|b| b.name == n),
            None => balancers.into_iter().min_by(|a, b| a.name.cmp(&b.name)),
        };
        let Some(balancer) = balancer else {
            return Ok(Parts {
                balancer: None,
                listeners: Vec::new(),
                target_groups: Vec::new(),
            });
        };
        let listeners = self
            .describe_listeners(&balancer.name, &balancer.arn)
            .await?;
        let target_groups = self.describe_target_groups(cluster).await?;
        Ok(Parts {
            balancer: Some(balancer),
            listeners,
            target_groups,
        })
    }

    async fn create_target_group(
        &self,
        cluster: &ClusterRef,
        spec: &TgSpec,
        request: &LoadBalancerRequest,
        labels: &BTreeMap<String, String>,
    ) -> Result<SimTargetGroup> {
        let resource = format!("target group {}", spec.name);
        self.call(SimApi::CreateTargetGroup, &resource, |w, _, _| {
            if let Some(t) = w
                .target_groups
                .values()
                .find(|t| t.name == spec.name && t.region == cluster.region)
            {
                if !has_labels(&t.labels, cluster, Role::Lb) {
                    return Err(ApiError::new(
                        FailureKind::Conflict,
                        format!(
                            "a target group named `{}` exists and is not the cluster's",
                            spec.name
                        ),
                    ));
                }
                return Ok(t.clone());
            }
            let arn = {
                let hex = w.hex(16);
                format!(
                    "arn:sim:elb:{}:targetgroup/{}/{hex}",
                    cluster.region, spec.name
                )
            };
            let tg = SimTargetGroup {
                arn: arn.clone(),
                name: spec.name.clone(),
                region: cluster.region.clone(),
                protocol: spec.protocol.to_owned(),
                port: spec.port,
                health_check: SimHealthCheck {
                    protocol: if spec.tcp_check { "TCP" } else { "HTTP" }.into(),
                    path: if spec.tcp_check {
                        String::new()
                    } else {
                        request.health_check_path.clone()
                    },
                    port: if spec.tcp_check { spec.port } else { 80 },
                    healthy_threshold: 3,
                    unhealthy_threshold: 3,
                    timeout: Duration::from_secs(6),
                    interval: Duration::from_secs(10),
                },
                labels: labels.clone(),
                targets: BTreeSet::new(),
            };
            w.target_groups.insert(arn, tg.clone());
            Ok(tg)
        })
        .await
    }

    async fn create_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        labels: &BTreeMap<String, String>,
    ) -> Result<crate::world::SimBalancer> {
        let resource = format!("load balancer {}", request.name);
        self.call(SimApi::CreateBalancer, &resource, |w, cfg, now| {
            if let Some(b) = w
                .balancers
                .values()
                .find(|b| b.name == request.name && b.region == cluster.region)
            {
                if !has_labels(&b.labels, cluster, Role::Lb) {
                    return Err(ApiError::new(
                        FailureKind::Conflict,
                        format!(
                            "a load balancer named `{}` exists and is not the cluster's",
                            request.name
                        ),
                    ));
                }
                return Ok(b.view(cfg, now));
            }
            let zones = crate::nodes::region_zones(cfg, &cluster.region);
            if let Some(z) = request.zones.iter().find(|z| !zones.contains(z)) {
                return Err(ApiError::new(
                    FailureKind::InvalidRequest,
                    format!(
                        "zone `{z}` is not in region `{}` (its zones: {})",
                        cluster.region,
                        zones.join(", ")
                    ),
                ));
            }
            let endpoint = match cfg.balancer_endpoint {
                EndpointStyle::Ip => Endpoint::Ip {
                    addresses: vec![w.balancer_ip().ok_or_else(|| {
                        ApiError::new(
                            FailureKind::Capacity,
                            "no free address left in 203.0.113.0/24",
                        )
                    })?],
                },
                EndpointStyle::Hostname => Endpoint::Hostname {
                    name: format!(
                        "{}-{}.elb.{}.sim.invalid",
                        request.name,
                        w.hex(8),
                        cluster.region
                    ),
                    alias_zone: Some(alias_zone_id(&cluster.region)),
                },
            };
            let arn = {
                let hex = w.hex(16);
                format!(
                    "arn:sim:elb:{}:loadbalancer/{}/{hex}",
                    cluster.region, request.name
                )
            };
            let b = Balancer {
                arn: arn.clone(),
                name: request.name.clone(),
                region: cluster.region.clone(),
                mode: request.mode,
                scheme: request.scheme,
                zones: if request.zones.is_empty() {
                    zones
                } else {
                    request.zones.clone()
                },
                labels: labels.clone(),
                endpoint,
                created: now,
            };
            let view = b.view(cfg, now);
            w.balancers.insert(arn, b);
            Ok(view)
        })
        .await
    }

    async fn create_listener(
        &self,
        balancer: &crate::world::SimBalancer,
        spec: &ListenerSpec,
        tgs: &[SimTargetGroup],
        labels: &BTreeMap<String, String>,
    ) -> Result<SimListener> {
        let resource = format!("listener {}:{}", balancer.name, spec.port);
        let action = match &spec.forward_to {
            Some(name) => {
                let tg = tgs.iter().find(|t| &t.name == name).ok_or_else(|| {
                    Error::provider(
                        NAME,
                        "create listener",
                        &resource,
                        FailureKind::NotFound,
                        format!("target group {name} does not exist"),
                    )
                })?;
                SimListenerAction::Forward(tg.arn.clone())
            }
            None => SimListenerAction::RedirectToHttps,
        };
        self.call(SimApi::CreateListener, &resource, |w, _, _| {
            if !w.balancers.contains_key(&balancer.arn) {
                return Err(ApiError::new(
                    FailureKind::NotFound,
                    format!("load balancer {} does not exist", balancer.arn),
                ));
            }
            if let SimListenerAction::Forward(arn) = &action {
                if !w.target_groups.contains_key(arn) {
                    return Err(ApiError::new(
                        FailureKind::NotFound,
                        format!("target group {arn} does not exist"),
                    ));
                }
            }
            if spec.protocol == "HTTPS" && spec.certificate.is_none() {
                return Err(ApiError::new(
                    FailureKind::InvalidRequest,
                    "an HTTPS listener needs a certificate",
                ));
            }
            if let Some(l) = w
                .listeners
                .values()
                .find(|l| l.balancer_arn == balancer.arn && l.port == spec.port)
            {
                if l.protocol == spec.protocol && l.action == action {
                    return Ok(l.clone());
                }
                return Err(ApiError::new(
                    FailureKind::Conflict,
                    format!(
                        "port {} already has a different listener ({})",
                        spec.port, l.protocol
                    ),
                ));
            }
            let arn = {
                let hex = w.hex(16);
                format!("{}/listener/{}/{hex}", balancer.arn, spec.port)
            };
            let l = SimListener {
                arn: arn.clone(),
                balancer_arn: balancer.arn.clone(),
                port: spec.port,
                protocol: spec.protocol.to_owned(),
                action: action.clone(),
                certificate: spec.certificate.clone(),
                labels: labels.clone(),
            };
            w.listeners.insert(arn, l.clone());
            Ok(l)
        })
        .await
    }

    async fn change_targets(
        &self,
        api: SimApi,
        tg: &SimTargetGroup,
        ids: &BTreeSet<String>,
    ) -> Result<()> {
        let resource = format!("target group {}", tg.name);
        let register = api == SimApi::RegisterTargets;
        self.call(api, &resource, |w, cfg, now| {
            if register {
                for id in ids {
                    let running = w.instances.get(id).and_then(|i| i.state(cfg, now))
                        == Some(triad_core::model::NodeState::Running);
                    if !running {
                        return Err(ApiError::new(
                            FailureKind::InvalidRequest,
                            format!("instance {id} is not running and cannot be registered"),
                        ));
                    }
                }
            }
            let t = w.target_groups.get_mut(&tg.arn).ok_or_else(|| {
                ApiError::new(FailureKind::NotFound, format!("{} does not exist", tg.arn))
            })?;
            for id in ids {
                if register {
                    t.targets.insert(id.clone());
                } else {
                    t.targets.remove(id);
                }
            }
            Ok(())
        })
        .await
    }

    /// Run a delete call, treating "does not exist" as done. Returns whether it deleted.
    async fn delete_part(
        &self,
        api: SimApi,
        resource: &str,
        effect: impl FnOnce(&mut World) -> std::result::Result<(), ApiError>,
    ) -> Result<bool> {
        match self.call(api, resource, |w, _, _| effect(w)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == Some(FailureKind::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl SimCloud {
    /// Delete a balancer's listeners, then the balancer.
    async fn delete_balancer(&self, b: &crate::world::SimBalancer) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for l in self.describe_listeners(&b.name, &b.arn).await? {
            let resource = format!("listener {}:{}", b.name, l.port);
            let arn = l.arn.clone();
            if self
                .delete_part(SimApi::DeleteListener, &resource, |w| {
                    w.listeners
                        .remove(&arn)
                        .map(|_| ())
                        .ok_or_else(|| gone(&arn))
                })
                .await?
            {
                deleted.push(resource);
            }
        }
        let resource = format!("load balancer {}", b.name);
        let arn = b.arn.clone();
        if self
            .delete_part(SimApi::DeleteBalancer, &resource, |w| {
                w.balancers.remove(&arn).ok_or_else(|| gone(&arn))?;
                // Like ELB, deleting a balancer deletes whatever listeners remain.
                w.listeners.retain(|_, l| l.balancer_arn != arn);
                Ok(())
            })
            .await?
        {
            deleted.push(resource);
        }
        Ok(deleted)
    }

    /// Delete a target group no listener uses.
    async fn delete_target_group(&self, tg: &SimTargetGroup) -> Result<Vec<String>> {
        let resource = format!("target group {}", tg.name);
        let arn = tg.arn.clone();
        let deleted = self
            .delete_part(SimApi::DeleteTargetGroup, &resource, |w| {
                if let Some(l) = w
                    .listeners
                    .values()
                    .find(|l| l.action == SimListenerAction::Forward(arn.clone()))
                {
                    return Err(ApiError::new(
                        FailureKind::Conflict,
                        format!("target group is in use by listener {}", l.arn),
                    ));
                }
                w.target_groups
                    .remove(&arn)
                    .map(|_| ())
                    .ok_or_else(|| gone(&arn))
            })
            .await?;
        Ok(if deleted { vec![resource] } else { Vec::new() })
    }
}

fn gone(what: &str) -> ApiError {
    ApiError::new(FailureKind::NotFound, format!("{what} does not exist"))
}

#[async_trait]
impl LoadBalancerProvider for SimCloud {
    fn name(&self) -> &str {
        NAME
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        SimCloud::check_sim_section(spec)
    }

    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let parts = self.discover_parts(cluster, None).await?;
        Ok(build(&parts))
    }

    fn coexists(&self) -> bool {
        true
    }

    async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        let mut out = Vec::new();
        for b in self.describe_balancers(cluster).await? {
            let parts = self.discover_parts(cluster, Some(&b.name)).await?;
            out.extend(build(&parts));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_load_balancer_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for b in self
            .describe_balancers(cluster)
            .await?
            .into_iter()
            .filter(|b| b.name == name)
        {
            deleted.extend(self.delete_balancer(&b).await?);
        }
        for tg in self
            .describe_target_groups(cluster)
            .await?
            .into_iter()
            .filter(|t| is_tg_of(name, &t.name))
        {
            deleted.extend(self.delete_target_group(&tg).await?);
        }
        Ok(deleted)
    }

    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        if request.mode == LbMode::L7 && request.certificate.is_none() {
            return Err(Error::provider(
                NAME,
                "create load balancer",
                format!("load balancer {}", request.name),
                FailureKind::InvalidRequest,
                "a layer 7 balancer needs a certificate (load_balancer.certificate)",
            ));
        }
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Lb));
        let (tg_specs, listener_specs) = wanted(request);

        // 1. Target groups, create-or-get by name.
        let mut tgs = self.describe_target_groups(cluster).await?;
        for spec in &tg_specs {
            if !tgs.iter().any(|t| t.name == spec.name) {
                let tg = self
                    .create_target_group(cluster, spec, request, &labels)
                    .await?;
                tgs.push(tg);
            }
        }

        // 2. The balancer.
        let existing = self
            .describe_balancers(cluster)
            .await?
            .into_iter()
            .find(|b| b.name == request.name);
        let (balancer, mut listeners) = match existing {
            Some(b) => {
                let listeners = self.describe_listeners(&b.name, &b.arn).await?;
                (b, listeners)
            }
            // A balancer made just now has no listeners yet.
            None => (
                self.create_balancer(cluster, request, &labels).await?,
                Vec::new(),
            ),
        };

        // 3. Listeners, create-or-get by port.
        for spec in &listener_specs {
            if !listeners.iter().any(|l| l.port == spec.port) {
                let l = self.create_listener(&balancer, spec, &tgs, &labels).await?;
                listeners.push(l);
            }
        }

        let parts = Parts {
            balancer: Some(balancer),
            listeners,
            target_groups: tgs,
        };
        build(&parts).ok_or_else(|| {
            Error::provider(
                NAME,
                "create load balancer",
                format!("load balancer {}", request.name),
                FailureKind::Other,
                "the balancer vanished while it was being created",
            )
        })
    }

    async fn wait_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        self.poll(
            self.inner.config.lb_poll,
            &resource,
            "active",
            timeout,
            // One DescribeBalancers per poll: the state is all that changes while
            // a balancer provisions; listeners and targets are `lb`'s.
            || async {
                let found = self
                    .describe_balancers(cluster)
                    .await?
                    .into_iter()
                    .find(|b| b.name == lb.name);
                match found {
                    None => Err(Error::provider(
                        NAME,
                        "wait for load balancer",
                        &resource,
                        FailureKind::NotFound,
                        "the balancer was deleted while waiting for it to be active",
                    )),
                    Some(b) if b.state == LbState::Active && b.endpoint.is_some() => {
                        Ok(Some(LoadBalancer {
                            state: b.state,
                            endpoint: b.endpoint,
                            labels: b.labels,
                            ..lb.clone()
                        }))
                    }
                    Some(_) => Ok(None),
                }
            },
        )
        .await
    }

    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let tgs: Vec<SimTargetGroup> = self
            .describe_target_groups(cluster)
            .await?
            .into_iter()
            .filter(|t| is_tg_of(&lb.name, &t.name))
            .collect();
        if tgs.is_empty() {
            return Err(Error::provider(
                NAME,
                "set targets",
                &resource,
                FailureKind::NotFound,
                "the balancer has no target groups; create it first",
            ));
        }
        let desired: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
        for tg in &tgs {
            let add: BTreeSet<String> = desired.difference(&tg.targets).cloned().collect();
            let remove: BTreeSet<String> = tg.targets.difference(&desired).cloned().collect();
            if !add.is_empty() {
                self.change_targets(SimApi::RegisterTargets, tg, &add)
                    .await?;
            }
            if !remove.is_empty() {
                self.change_targets(SimApi::DeregisterTargets, tg, &remove)
                    .await?;
            }
        }
        // Every target group now holds exactly `desired`: no describe needed.
        Ok(LoadBalancer {
            targets: desired.into_iter().collect(),
            partial_targets: Vec::new(),
            ..lb.clone()
        })
    }

    async fn update_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let parts = self.discover_parts(cluster, Some(&lb.name)).await?;
        let Some(balancer) = parts.balancer.clone() else {
            return Err(Error::provider(
                NAME,
                "update load balancer",
                &resource,
                FailureKind::NotFound,
                "the balancer does not exist",
            ));
        };
        // The certificate of the HTTPS listener (l7).
        for l in parts.listeners.iter().filter(|l| l.protocol == "HTTPS") {
            if l.certificate != request.certificate {
                let (arn, cert) = (l.arn.clone(), request.certificate.clone());
                if cert.is_none() {
                    return Err(Error::provider(
                        NAME,
                        "update load balancer",
                        &resource,
                        FailureKind::InvalidRequest,
                        "an HTTPS listener needs a certificate (load_balancer.certificate)",
                    ));
                }
                self.call(SimApi::ModifyListener, &resource, |w, _, _| {
                    let l = w.listeners.get_mut(&arn).ok_or_else(|| gone(&arn))?;
                    l.certificate = cert;
                    Ok(())
                })
                .await?;
            }
        }
        // The health check of every target group.
        for tg in parts
            .target_groups
            .iter()
            .filter(|t| is_tg_of(&lb.name, &t.name))
        {
            if tg.health_check.path != request.health_check_path {
                let arn = tg.arn.clone();
                let path = request.health_check_path.clone();
                self.call(
                    SimApi::ModifyTargetGroup,
                    &format!("target group {}", tg.name),
                    |w, _, _| {
                        let t = w.target_groups.get_mut(&arn).ok_or_else(|| gone(&arn))?;
                        t.health_check.path = path;
                        Ok(())
                    },
                )
                .await?;
            }
        }
        // The labels (the fingerprint among them).
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Lb));
        if balancer.labels != labels {
            let arn = balancer.arn.clone();
            self.call(SimApi::ModifyTags, &resource, |w, _, _| {
                let b = w.balancers.get_mut(&arn).ok_or_else(|| gone(&arn))?;
                b.labels = labels;
                Ok(())
            })
            .await?;
        }
        let parts = self.discover_parts(cluster, Some(&lb.name)).await?;
        build(&parts).ok_or_else(|| {
            Error::provider(
                NAME,
                "update load balancer",
                &resource,
                FailureKind::NotFound,
                "the balancer vanished while it was being updated",
            )
        })
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for b in self.describe_balancers(cluster).await? {
            deleted.extend(self.delete_balancer(&b).await?);
        }
        for tg in self.describe_target_groups(cluster).await? {
            deleted.extend(self.delete_target_group(&tg).await?);
        }
        Ok(deleted)
    }
}
