//! The simulated ELB API: describe, create, change and delete target groups,
//! balancers and listeners, each call going through the fault and latency layer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use triad_core::labels::Role;
use triad_core::model::{Endpoint, LoadBalancerRequest};
use triad_core::spec::ClusterRef;
use triad_core::{Error, FailureKind, Result};

use super::parts::{alias_zone_id, ListenerSpec, Parts, TgSpec};
use crate::config::{EndpointStyle, SimConfig};
use crate::world::{
    has_labels, ApiError, Balancer, SimHealthCheck, SimListener, SimListenerAction, SimTargetGroup,
    World,
};
use crate::{SimApi, SimCloud, PROVIDER};

impl World {
    pub(super) fn cluster_target_groups(&self, cluster: &ClusterRef) -> Vec<SimTargetGroup> {
        self.target_groups
            .values()
            .filter(|t| t.region == cluster.region && has_labels(&t.labels, cluster, Role::Lb))
            .cloned()
            .collect()
    }

    pub(super) fn cluster_balancers(
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
    pub(super) async fn describe_target_groups(
        &self,
        cluster: &ClusterRef,
    ) -> Result<Vec<SimTargetGroup>> {
        let resource = format!("target groups of cluster {}", cluster.name);
        self.call(SimApi::DescribeTargetGroups, &resource, |w, _, _| {
            Ok(w.cluster_target_groups(cluster))
        })
        .await
    }

    pub(super) async fn describe_balancers(
        &self,
        cluster: &ClusterRef,
    ) -> Result<Vec<crate::world::SimBalancer>> {
        let resource = format!("load balancers of cluster {}", cluster.name);
        self.call(SimApi::DescribeBalancers, &resource, |w, cfg, now| {
            Ok(w.cluster_balancers(cluster, cfg, now))
        })
        .await
    }

    pub(super) async fn describe_listeners(
        &self,
        balancer: &str,
        arn: &str,
    ) -> Result<Vec<SimListener>> {
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
    pub(super) async fn discover_parts(
        &self,
        cluster: &ClusterRef,
        name: Option<&str>,
    ) -> Result<Parts> {
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

    pub(super) async fn create_target_group(
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

    pub(super) async fn create_balancer(
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

    pub(super) async fn create_listener(
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
                        PROVIDER,
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

    pub(super) async fn change_targets(
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
    pub(super) async fn delete_part(
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
    pub(super) async fn delete_balancer(
        &self,
        b: &crate::world::SimBalancer,
    ) -> Result<Vec<String>> {
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
    pub(super) async fn delete_target_group(&self, tg: &SimTargetGroup) -> Result<Vec<String>> {
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

pub(super) fn gone(what: &str) -> ApiError {
    ApiError::new(FailureKind::NotFound, format!("{what} does not exist"))
}
