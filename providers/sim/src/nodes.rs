//! [`NodeProvider`] for the simulated cloud: instances and the per-cluster security
//! group.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use triad_core::labels::Role;
use triad_core::model::{natural_key, Node, NodeRequest, NodeState};
use triad_core::secret::Secret;
use triad_core::spec::{ClusterRef, ValidSpec};
use triad_core::{Error, FailureKind, NodeProvider, Result};

use crate::config::SimConfig;
use crate::world::{ApiError, Instance, SimSecurityGroup, World};
use crate::{SimApi, SimCloud, PROVIDER};

/// The zones of `region`.
pub(crate) fn region_zones(cfg: &SimConfig, region: &str) -> Vec<String> {
    cfg.zones.iter().map(|s| format!("{region}{s}")).collect()
}

/// The index of `zone` among the zones of `region`.
fn zone_index(cfg: &SimConfig, region: &str, zone: &str) -> Result<usize, ApiError> {
    region_zones(cfg, region)
        .iter()
        .position(|z| z == zone)
        .ok_or_else(|| {
            ApiError::new(
                FailureKind::InvalidRequest,
                format!(
                    "zone `{zone}` is not in region `{region}` (its zones: {})",
                    region_zones(cfg, region).join(", ")
                ),
            )
        })
}

fn to_node(i: &Instance, cfg: &SimConfig, now: tokio::time::Instant) -> Option<Node> {
    Some(Node {
        id: i.id.clone(),
        name: i.name.clone(),
        zone: i.zone.clone(),
        state: i.state(cfg, now)?,
        private_ip: Some(i.private_ip),
        public_ip: None,
        ssh: None,
        labels: i.labels.clone(),
        created_ms: Some(i.created_ms),
    })
}

fn security_group_name(cluster: &ClusterRef) -> String {
    format!("{}-nodes", cluster.name)
}

impl World {
    fn live_instance(&self, cluster: &ClusterRef, name: &str) -> Option<&Instance> {
        self.instances
            .values()
            .find(|i| i.is_live() && i.name == name && i.owned_by(cluster, Role::Node))
    }
}

impl SimCloud {
    async fn describe_instance(&self, id: &str) -> Result<Option<Node>> {
        self.call(
            SimApi::DescribeInstances,
            &format!("instance {id}"),
            |w, cfg, now| Ok(w.instances.get(id).and_then(|i| to_node(i, cfg, now))),
        )
        .await
    }

    /// Find the cluster's security group, or create it with `ssh_cidrs`.
    async fn ensure_security_group(
        &self,
        cluster: &ClusterRef,
        ssh_cidrs: &[String],
    ) -> Result<String> {
        let name = security_group_name(cluster);
        let resource = format!("security group {name}");
        let key = format!("{}/{name}", cluster.region);
        let mut known = self.inner.security_groups.lock().await;
        if let Some(id) = known.get(&key) {
            return Ok(id.clone());
        }
        let found = self
            .call(SimApi::DescribeSecurityGroups, &resource, |w, _, _| {
                Ok(w.security_groups
                    .values()
                    .find(|g| g.name == name && g.region == cluster.region)
                    .map(|g| g.id.clone()))
            })
            .await?;
        if let Some(id) = found {
            known.insert(key, id.clone());
            return Ok(id);
        }
        let labels = cluster.labels_for(Role::Network);
        let id = self
            .call(SimApi::CreateSecurityGroup, &resource, |w, _, _| {
                if let Some(g) = w
                    .security_groups
                    .values()
                    .find(|g| g.name == name && g.region == cluster.region)
                {
                    if g.labels.get(triad_core::labels::CLUSTER) != Some(&cluster.name) {
                        return Err(ApiError::new(
                            FailureKind::Conflict,
                            format!(
                                "a security group named `{name}` exists and is not the cluster's"
                            ),
                        ));
                    }
                    return Ok(g.id.clone());
                }
                let id = {
                    let taken = w.security_groups.keys().cloned().collect::<Vec<_>>();
                    w.fresh_id("sg-", 17, |id| taken.iter().any(|t| t == id))
                };
                w.security_groups.insert(
                    id.clone(),
                    SimSecurityGroup {
                        id: id.clone(),
                        name: name.clone(),
                        region: cluster.region.clone(),
                        labels,
                        ssh_cidrs: ssh_cidrs.to_vec(),
                    },
                );
                Ok(id)
            })
            .await?;
        known.insert(key, id.clone());
        Ok(id)
    }

    /// Forget the cached security group of `cluster` (deleted, or found missing).
    async fn forget_security_group(&self, cluster: &ClusterRef) {
        let key = format!("{}/{}", cluster.region, security_group_name(cluster));
        self.inner.security_groups.lock().await.remove(&key);
    }
}

#[async_trait]
impl NodeProvider for SimCloud {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        SimCloud::check_sim_section(spec)
    }

    /// The sim's node network is fixed: the zone with index `i` is `10.i.0.0/16`
    /// (where [`crate::SimCloud`] takes node addresses from). Known without an API
    /// call, as a real provider knows its subnets from the network discovery it
    /// does anyway.
    async fn network_cidrs(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let zones = region_zones(&self.inner.config, &cluster.region);
        Ok((0..zones.len())
            .map(|i| format!("10.{}.0.0/16", i % 256))
            .collect())
    }

    async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let resource = format!("region {}", cluster.region);
        self.call(SimApi::DescribeZones, &resource, |_, cfg, _| {
            Ok(region_zones(cfg, &cluster.region))
        })
        .await
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let resource = format!("nodes of cluster {}", cluster.name);
        self.call(SimApi::DescribeInstances, &resource, |w, cfg, now| {
            let mut nodes: Vec<Node> = w
                .instances
                .values()
                .filter(|i| i.owned_by(cluster, Role::Node))
                .filter_map(|i| to_node(i, cfg, now))
                .collect();
            nodes.sort_by(|a, b| (natural_key(&a.name), &a.id).cmp(&(natural_key(&b.name), &b.id)));
            Ok(nodes)
        })
        .await
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let resource = format!("node {}", request.name);
        let existing = self
            .call(SimApi::DescribeInstances, &resource, |w, cfg, now| {
                Ok(w.live_instance(cluster, &request.name)
                    .and_then(|i| to_node(i, cfg, now)))
            })
            .await?;
        if let Some(node) = existing {
            tracing::debug!(node = %node.name, id = %node.id, "sim: node exists");
            return Ok(node);
        }
        let security_group = self
            .ensure_security_group(cluster, &request.ssh_allowed_cidrs)
            .await?;

        // The ownership labels always win over whatever the request carries, so the
        // node is found again by discovery.
        let mut labels: BTreeMap<String, String> = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Node));
        let launched = self.call(SimApi::RunInstance, &resource, |w, cfg, now| {
            // Client token: the same name in the same cluster never launches twice.
            if let Some(i) = w.live_instance(cluster, &request.name) {
                return to_node(i, cfg, now).ok_or_else(|| {
                    ApiError::new(FailureKind::Other, "instance vanished during launch")
                });
            }
            let index = zone_index(cfg, &cluster.region, &request.zone)?;
            if let Some(quota) = cfg.node_quota {
                let live = w
                    .instances
                    .values()
                    .filter(|i| i.is_live() && i.owned_by(cluster, Role::Node))
                    .count();
                if live >= quota {
                    return Err(ApiError::new(
                        FailureKind::Capacity,
                        format!(
                            "node quota exceeded: cluster `{}` already has {live} of at most {quota} nodes; \
                             delete nodes or raise the quota (sim.node_quota)",
                            cluster.name
                        ),
                    ));
                }
            }
            if !w.security_groups.contains_key(&security_group) {
                return Err(ApiError::new(
                    FailureKind::NotFound,
                    format!("security group {security_group} does not exist"),
                ));
            }
            let id = {
                let taken: Vec<String> = w.instances.keys().cloned().collect();
                w.fresh_id("i-", 17, |id| taken.iter().any(|t| t == id))
            };
            let instance = Instance {
                id: id.clone(),
                name: request.name.clone(),
                region: cluster.region.clone(),
                zone: request.zone.clone(),
                labels,
                private_ip: w.private_ip(index),
                security_group,
                size: request.size.clone(),
                image: request.image.clone(),
                created: now,
                created_ms: w.unix_ms(now),
                terminated: None,
                user_data: Some(Secret::new(request.user_data.clone())),
            };
            let node = to_node(&instance, cfg, now)
                .ok_or_else(|| ApiError::new(FailureKind::Other, "new instance has no state"))?;
            w.instances.insert(id, instance);
            Ok(node)
        })
        .await;
        if matches!(&launched, Err(e) if e.kind() == Some(FailureKind::NotFound)) {
            // The cached security group is gone: the next try makes it again.
            self.forget_security_group(cluster).await;
        }
        launched
    }

    async fn wait_node(
        &self,
        _cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        let resource = format!("node {} ({})", node.name, node.id);
        self.poll(
            self.inner.config.node_poll,
            &resource,
            "running",
            timeout,
            || async {
                match self.describe_instance(&node.id).await? {
                    None
                    | Some(Node {
                        state: NodeState::Terminating,
                        ..
                    }) => Err(Error::provider(
                        PROVIDER,
                        "wait for node",
                        &resource,
                        FailureKind::NotFound,
                        "the instance was terminated while waiting for it to run",
                    )),
                    Some(n) if n.is_ready() => Ok(Some(n)),
                    Some(_) => Ok(None),
                }
            },
        )
        .await
    }

    /// One `DescribeInstances` with every id per poll, as EC2 allows.
    async fn wait_nodes(
        &self,
        _cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let resource = format!("nodes {}", names.join(", "));
        self.poll(
            self.inner.config.node_poll,
            &resource,
            "running",
            timeout,
            || async {
                let found = self
                    .call(SimApi::DescribeInstances, &resource, |w, cfg, now| {
                        Ok(nodes
                            .iter()
                            .map(|n| w.instances.get(&n.id).and_then(|i| to_node(i, cfg, now)))
                            .collect::<Vec<_>>())
                    })
                    .await?;
                let mut ready = Vec::with_capacity(nodes.len());
                for (wanted, found) in nodes.iter().zip(found) {
                    match found {
                        None
                        | Some(Node {
                            state: NodeState::Terminating,
                            ..
                        }) => {
                            return Err(Error::provider(
                                PROVIDER,
                                "wait for node",
                                format!("node {} ({})", wanted.name, wanted.id),
                                FailureKind::NotFound,
                                "the instance was terminated while waiting for it to run",
                            ))
                        }
                        Some(n) if n.is_ready() => ready.push(n),
                        Some(_) => return Ok(None),
                    }
                }
                Ok(Some(ready))
            },
        )
        .await
    }

    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
        let resource = format!("node {} ({})", node.name, node.id);
        let Some(found) = self.describe_instance(&node.id).await? else {
            return Ok(());
        };
        if found.state == NodeState::Terminating {
            return Ok(());
        }
        if found.labels.get(triad_core::labels::CLUSTER) != Some(&cluster.name) {
            return Err(Error::provider(
                PROVIDER,
                "delete node",
                &resource,
                FailureKind::Conflict,
                format!(
                    "instance {} does not carry triad-cluster={}; triad never deletes what it does not own",
                    node.id, cluster.name
                ),
            ));
        }
        let result = self
            .call(SimApi::TerminateInstance, &resource, |w, _, now| {
                match w.instances.get_mut(&node.id) {
                    Some(i) => {
                        if i.terminated.is_none() {
                            i.terminated = Some(now);
                        }
                        Ok(())
                    }
                    None => Err(ApiError::new(
                        FailureKind::NotFound,
                        format!("instance {} does not exist", node.id),
                    )),
                }
            })
            .await;
        match result {
            Err(e) if e.kind() == Some(FailureKind::NotFound) => Ok(()),
            other => other,
        }
    }

    async fn update_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
    ) -> Result<Node> {
        let resource = format!("node {} ({})", node.name, node.id);
        let security_group = self
            .ensure_security_group(cluster, &request.ssh_allowed_cidrs)
            .await?;
        let current = self
            .call(SimApi::DescribeSecurityGroups, &resource, |w, _, _| {
                Ok(w.security_groups
                    .get(&security_group)
                    .map(|g| g.ssh_cidrs.clone()))
            })
            .await?;
        if current.as_deref() != Some(request.ssh_allowed_cidrs.as_slice()) {
            self.call(SimApi::ModifySecurityGroupRules, &resource, |w, _, _| {
                let g = w.security_groups.get_mut(&security_group).ok_or_else(|| {
                    ApiError::new(
                        FailureKind::NotFound,
                        format!("security group {security_group} does not exist"),
                    )
                })?;
                g.ssh_cidrs = request.ssh_allowed_cidrs.clone();
                Ok(())
            })
            .await?;
        }
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Node));
        let Some(found) = self.describe_instance(&node.id).await? else {
            return Err(Error::provider(
                PROVIDER,
                "update node",
                &resource,
                FailureKind::NotFound,
                "the instance does not exist",
            ));
        };
        if found.labels == labels {
            return Ok(found);
        }
        self.call(SimApi::ModifyTags, &resource, |w, cfg, now| {
            let i = w.instances.get_mut(&node.id).ok_or_else(|| {
                ApiError::new(FailureKind::NotFound, "the instance does not exist")
            })?;
            i.labels = labels;
            to_node(i, cfg, now)
                .ok_or_else(|| ApiError::new(FailureKind::NotFound, "the instance has vanished"))
        })
        .await
    }

    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        self.forget_security_group(cluster).await;
        let resource = format!("security groups of cluster {}", cluster.name);
        let groups = self
            .call(SimApi::DescribeSecurityGroups, &resource, |w, _, _| {
                Ok(w.security_groups
                    .values()
                    .filter(|g| {
                        g.region == cluster.region
                            && crate::world::has_labels(&g.labels, cluster, Role::Network)
                    })
                    .map(|g| (g.id.clone(), g.name.clone()))
                    .collect::<Vec<_>>())
            })
            .await?;
        let mut deleted = Vec::new();
        for (id, name) in groups {
            let resource = format!("security group {name} ({id})");
            let result = self
                .call(SimApi::DeleteSecurityGroup, &resource, |w, _, _| {
                    let users: Vec<&str> = w
                        .instances
                        .values()
                        .filter(|i| i.is_live() && i.security_group == id)
                        .map(|i| i.id.as_str())
                        .collect();
                    if !users.is_empty() {
                        return Err(ApiError::new(
                            FailureKind::Conflict,
                            format!(
                                "the security group is in use by live instances {}; delete the nodes first",
                                users.join(", ")
                            ),
                        ));
                    }
                    w.security_groups.remove(&id).map(|_| ()).ok_or_else(|| {
                        ApiError::new(FailureKind::NotFound, format!("{id} does not exist"))
                    })
                })
                .await;
            match result {
                Ok(()) => deleted.push(format!("security group {name}")),
                Err(e) if e.kind() == Some(FailureKind::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}
