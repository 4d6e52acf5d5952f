//! Node mode: a dedicated balancer node made through a [`NodeProvider`], its
//! configuration fixed at creation (cloud-init), rebuilt when the targets or the
//! balancer's in-place attributes change.
//!
//! Everything a balancer node is built from comes from the spec the provider was
//! built with (or the request given to [`NginxProvider::on_nodes`]) and from what
//! the clouds report, never from an earlier call in this process: a fresh process
//! converges the targets as the one that made the balancer would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;
use triad_core::drift;
use triad_core::error::{FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::model::{
    Endpoint, LbState, LoadBalancer, LoadBalancerRequest, Node, NodeRequest, NodeState,
};
use triad_core::provider::NodeProvider;
use triad_core::spec::{ClusterRef, LbMode, LbScheme};
use triad_core::wait::Poll;

use crate::render;
use crate::targets::{fnv_hex, ids, targets_hash, targets_of, Target};
use crate::{err, NginxProvider, LB_FOR, NODE_CERT, NODE_KEY};

/// Label on a balancer node: a hash of the targets its configuration was built for.
pub(crate) const LB_TARGETS: &str = "triad-lb-targets";
const LB_NAME: &str = "triad-lb-name";
const LB_MODE: &str = "triad-lb-mode";
const LB_SCHEME: &str = "triad-lb-scheme";
/// The registration ports the balancer node passes through, `9345-6443`.
const LB_REGISTRATION: &str = "triad-lb-registration";
/// How long set_targets waits for a rebuilt balancer node.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Whether `node` was built with the fingerprint labels `request` asks for (a label
/// the node lacks is unknown and never differs, as in [`drift::diff`]).
fn same_fingerprint(node: &Node, request: &LoadBalancerRequest) -> bool {
    request
        .labels
        .iter()
        .filter(|(k, _)| k.starts_with(drift::PREFIX))
        .all(|(k, v)| node.labels.get(k).is_none_or(|have| have == v))
}

/// The pseudo-cluster balancer nodes belong to: never the Rancher cluster itself.
///
/// ```
/// use triad_core::ClusterRef;
/// let lb = triad_nginx::balancer_cluster(&ClusterRef::new("rancher", "dc1"));
/// assert_eq!(lb.name, "rancher-lb");
/// ```
pub fn balancer_cluster(cluster: &ClusterRef) -> ClusterRef {
    ClusterRef {
        name: format!("{}-lb", cluster.name),
        region: cluster.region.clone(),
        dns_zone: None,
        labels: cluster.labels.clone(),
        id: cluster.id.clone(),
    }
}

/// Whether node `name` fills the place of expected node `expected`: the node itself or
/// a rolling replacement of it (`rancher-2-g2`, `rancher-2-g3`… for `rancher-2`, as
/// [`triad_core::rollout`] names them), so a balancer built for the spec's node names
/// keeps serving the cluster after a rolling replace.
fn fills(expected: &str, name: &str) -> bool {
    name == expected
        || name
            .strip_prefix(expected)
            .and_then(|rest| rest.strip_prefix("-g"))
            .is_some_and(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
}

impl NginxProvider {
    fn node_provider(&self, action: &str, resource: &str) -> Result<&Arc<dyn NodeProvider>> {
        self.nodes.as_ref().ok_or_else(|| {
            err(
                action,
                resource,
                FailureKind::InvalidRequest,
                "node mode has no node provider",
            )
        })
    }

    /// The running Rancher nodes the balancer should serve.
    async fn wanted(
        &self,
        cluster: &ClusterRef,
        action: &str,
        resource: &str,
    ) -> Result<Vec<Node>> {
        let nodes = self
            .node_provider(action, resource)?
            .discover_nodes(cluster)
            .await?;
        let expected = &self.settings.expected_nodes;
        Ok(nodes
            .into_iter()
            .filter(|n| {
                n.is_ready() && (expected.is_empty() || expected.iter().any(|e| fills(e, &n.name)))
            })
            .collect())
    }

    /// Whether every expected node (or a replacement of it) runs.
    fn wanted_complete(&self, wanted: &[Node]) -> bool {
        let expected = &self.settings.expected_nodes;
        if expected.is_empty() {
            return !wanted.is_empty();
        }
        expected
            .iter()
            .all(|e| wanted.iter().any(|n| fills(e, &n.name)))
    }

    async fn balancer_nodes(
        &self,
        cluster: &ClusterRef,
        action: &str,
        resource: &str,
    ) -> Result<Vec<Node>> {
        let found = self
            .node_provider(action, resource)?
            .discover_nodes(&balancer_cluster(cluster))
            .await?;
        Ok(found
            .into_iter()
            .filter(|n| {
                n.state != NodeState::Terminating && n.labels.get(LB_FOR) == Some(&cluster.name)
            })
            .collect())
    }

    fn node_lb(&self, node: &Node, active: bool, targets: Vec<String>) -> LoadBalancer {
        let mode = if node.labels.get(LB_MODE).map(String::as_str) == Some("l7") {
            LbMode::L7
        } else {
            LbMode::L4
        };
        let registration: Vec<u16> = node
            .labels
            .get(LB_REGISTRATION)
            .map(|v| v.split('-').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default();
        let scheme = if node.labels.get(LB_SCHEME).map(String::as_str) == Some("internal") {
            LbScheme::Internal
        } else {
            LbScheme::InternetFacing
        };
        let address = match scheme {
            LbScheme::InternetFacing => node.public_ip.or(node.private_ip),
            LbScheme::Internal => node.private_ip,
        };
        let ready = active && node.is_ready();
        // The request's labels as the balancer carried them (fingerprint and cluster
        // id included), without the balancer node's own bookkeeping.
        let mut lb_labels: BTreeMap<String, String> = node
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("triad-lb-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(owner) = node.labels.get(LB_FOR) {
            lb_labels.insert(labels::CLUSTER.into(), owner.clone());
        }
        lb_labels.insert(labels::ROLE.into(), Role::Lb.as_str().into());
        LoadBalancer {
            id: node.id.clone(),
            name: node
                .labels
                .get(LB_NAME)
                .cloned()
                .unwrap_or_else(|| node.name.clone()),
            mode,
            scheme,
            state: if ready {
                LbState::Active
            } else {
                LbState::Provisioning
            },
            endpoint: address
                .filter(|_| node.is_ready())
                .map(|a| Endpoint::Ip { addresses: vec![a] }),
            registration_endpoint: None,
            listeners: render::listeners(mode, &self.settings, &registration),
            targets,
            labels: lb_labels,
            partial_targets: Vec::new(),
        }
    }

    pub(crate) async fn node_discover(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let (action, resource) = (
            "discover load balancer",
            format!("load balancer {}", cluster.name),
        );
        let lbs = self.balancer_nodes(cluster, action, &resource).await?;
        if lbs.is_empty() {
            return Ok(None);
        }
        let wanted = self.wanted(cluster, action, &resource).await?;
        let complete = self.wanted_complete(&wanted);
        let want_targets = targets_of(&wanted, action, &resource)?;
        let hash = targets_hash(&want_targets);
        // A balancer node built for exactly the nodes that run now is active; any
        // other is reported provisioning, so a plan completes it (rebuilds it).
        // One built from other settings (certificate, health check path) is reported
        // provisioning too: it is rebuilt by wait_load_balancer, whose new address
        // the same apply then writes to DNS (an in-place update would leave the
        // record on the old node's address).
        let request = self.request_for(cluster, action, &resource).ok();
        let current = lbs.iter().find(|n| {
            n.labels.get(LB_TARGETS) == Some(&hash)
                && request.as_ref().is_none_or(|r| same_fingerprint(n, r))
        });
        if let Some(n) = current {
            return Ok(Some(self.node_lb(n, complete, ids(&want_targets))));
        }
        Ok(Some(self.node_lb(&lbs[0], false, Vec::new())))
    }

    pub(crate) async fn node_create(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        if let Some(lb) = self.node_discover(cluster).await? {
            return Ok(lb);
        }
        // The node is made by wait_load_balancer, once the Rancher nodes have addresses.
        Ok(LoadBalancer {
            id: format!("pending:{}", balancer_cluster(cluster).name),
            name: request.name.clone(),
            mode: request.mode,
            scheme: request.scheme,
            state: LbState::Provisioning,
            endpoint: None,
            registration_endpoint: None,
            listeners: render::listeners(request.mode, &self.settings, &request.registration_ports),
            targets: Vec::new(),
            labels: Default::default(),
            partial_targets: Vec::new(),
        })
    }

    /// The balancer node for `targets` built from `request`: found by its targets
    /// hash and fingerprint, or created; then waited for. Older balancer nodes are
    /// deleted once it runs.
    pub(crate) async fn ensure_node(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        targets: &[Target],
        timeout: Duration,
        action: &str,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", cluster.name);
        let np = self.node_provider(action, &resource)?;
        let lb_cluster = balancer_cluster(cluster);
        let hash = targets_hash(targets);
        let existing = self.balancer_nodes(cluster, action, &resource).await?;
        let node = match existing
            .iter()
            .find(|n| n.labels.get(LB_TARGETS) == Some(&hash) && same_fingerprint(n, request))
        {
            Some(n) => n.clone(),
            None => {
                let node_request = self
                    .node_request(cluster, request, targets, &hash, action)
                    .await?;
                info!(node = %node_request.name, targets = targets.len(), "creating the balancer node");
                np.create_node(&lb_cluster, &node_request).await?
            }
        };
        let node = np.wait_node(&lb_cluster, &node, timeout).await?;
        for old in existing.iter().filter(|n| n.id != node.id) {
            info!(node = %old.name, "deleting the balancer node built for other targets or settings");
            np.delete_node(&lb_cluster, old).await?;
        }
        Ok(self.node_lb(&node, true, ids(targets)))
    }

    /// What the balancer node for `targets` is created with.
    async fn node_request(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        targets: &[Target],
        hash: &str,
        action: &str,
    ) -> Result<NodeRequest> {
        let resource = format!("load balancer {}", cluster.name);
        let np = self.node_provider(action, &resource)?;
        let lb_cluster = balancer_cluster(cluster);
        let zone = match self.settings.node_zone.as_ref().or(request.zones.first()) {
            Some(z) => z.clone(),
            None => np
                .zones(&lb_cluster)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    err(
                        action,
                        &resource,
                        FailureKind::NotFound,
                        "the node provider has no zone",
                    )
                })?,
        };
        // Name by targets and settings: a rebuilt node never collides with the old one.
        let fingerprint: Vec<String> = request
            .labels
            .iter()
            .filter(|(k, _)| k.starts_with(drift::PREFIX))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let name_hash = if fingerprint.is_empty() {
            hash.to_owned()
        } else {
            fnv_hex(&format!("{hash}\n{}", fingerprint.join("\n")))
        };
        let name = format!("{}-lb-{}", cluster.name, &name_hash[..8]);
        let header = self.header(
            cluster,
            request,
            targets.to_vec(),
            Some((NODE_CERT, NODE_KEY)),
            action,
        )?;
        let tls_files = match &header.tls {
            None => None,
            Some(_) => {
                let (cert, key) = self.tls_paths(request, action)?;
                let read = |p: &str| {
                    std::fs::read_to_string(p).map_err(|e| {
                        err(
                            action,
                            &resource,
                            FailureKind::InvalidRequest,
                            format!("cannot read {p}: {e}"),
                        )
                    })
                };
                Some((read(&cert)?, read(&key)?))
            }
        };
        let config = render::render(&render::Config {
            header,
            settings: &self.settings,
        });
        let mut labels = request.labels.clone();
        labels.extend(lb_cluster.labels_for(Role::Node));
        labels.insert(LB_FOR.into(), cluster.name.clone());
        labels.insert(LB_TARGETS.into(), hash.to_owned());
        labels.insert(LB_NAME.into(), request.name.clone());
        labels.insert(LB_MODE.into(), request.mode.to_string());
        labels.insert(LB_SCHEME.into(), request.scheme.to_string());
        if !request.registration_ports.is_empty() {
            let ports: Vec<String> = request
                .registration_ports
                .iter()
                .map(ToString::to_string)
                .collect();
            labels.insert(LB_REGISTRATION.into(), ports.join("-"));
        }
        let mut request = NodeRequest::new(name, zone);
        request.user_data = self.user_data(&request.name, config, tls_files);
        request.size = self.defaults.size.clone();
        request.image = self.defaults.image.clone();
        request.disk_gib = self.defaults.disk_gib;
        request.ssh_allowed_cidrs = self.defaults.ssh_allowed_cidrs.clone();
        request.labels = labels;
        Ok(request)
    }

    /// Wait until the expected Rancher nodes run, then make (or find) the balancer
    /// node for them.
    pub(crate) async fn node_wait(
        &self,
        cluster: &ClusterRef,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        let action = "wait for load balancer";
        let resource = format!("load balancer {}", cluster.name);
        let request = self.request_for(cluster, action, &resource)?;
        let start = tokio::time::Instant::now();
        let targets = self
            .poll()
            .until(
                timeout,
                &format!("the Rancher nodes behind load balancer {}", cluster.name),
                &format!("running (all of {:?})", self.settings.expected_nodes),
                || async {
                    let wanted = self.wanted(cluster, action, &resource).await?;
                    if !self.wanted_complete(&wanted) {
                        return Ok(None);
                    }
                    targets_of(&wanted, action, &resource).map(Some)
                },
            )
            .await?;
        let left = timeout.saturating_sub(start.elapsed());
        self.ensure_node(cluster, &request, &targets, left, action)
            .await
    }

    /// Make the balancer node serve exactly `nodes` (a new node when they differ).
    pub(crate) async fn node_set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let action = "set targets of";
        let resource = format!("load balancer {}", lb.name);
        let request = self.request_for(cluster, action, &resource)?;
        let targets = targets_of(nodes, action, &resource)?;
        self.ensure_node(cluster, &request, &targets, REBUILD_TIMEOUT, action)
            .await
    }

    /// In place for the cluster: a balancer node for the running nodes built from
    /// `request` (a new node when its fingerprint differs), then the old one goes.
    pub(crate) async fn node_update(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let action = "update load balancer";
        let resource = format!("load balancer {}", lb.name);
        let wanted = self.wanted(cluster, action, &resource).await?;
        let targets = targets_of(&wanted, action, &resource)?;
        self.ensure_node(cluster, request, &targets, REBUILD_TIMEOUT, action)
            .await
    }

    pub(crate) async fn node_delete(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let action = "delete load balancer";
        let resource = format!("load balancer {}", cluster.name);
        let np = self.node_provider(action, &resource)?;
        let lb_cluster = balancer_cluster(cluster);
        let mut deleted = Vec::new();
        let all = np.discover_nodes(&lb_cluster).await?;
        for n in all
            .iter()
            .filter(|n| n.labels.get(LB_FOR) == Some(&cluster.name))
        {
            if n.state != NodeState::Terminating {
                deleted.push(format!("balancer node {} ({})", n.name, n.id));
            }
            np.delete_node(&lb_cluster, n).await?;
        }
        if !all.is_empty() {
            // Cluster-wide plumbing (security groups) can only go once the node is gone.
            self.poll()
                .until(
                    REBUILD_TIMEOUT,
                    &format!("balancer nodes of {}", cluster.name),
                    "deleted",
                    || async {
                        Ok(np
                            .discover_nodes(&lb_cluster)
                            .await?
                            .is_empty()
                            .then_some(()))
                    },
                )
                .await?;
        }
        // With no node left: plumbing left by an earlier, interrupted delete too.
        deleted.extend(np.cleanup(&lb_cluster).await?);
        Ok(deleted)
    }

    fn poll(&self) -> Poll {
        let max = self.settings.poll_interval();
        Poll::new(max.min(Duration::from_secs(1)), max)
    }
}

#[cfg(test)]
mod tests {
    use super::fills;

    #[test]
    fn a_replacement_fills_the_place_of_its_slot() {
        assert!(fills("rancher-2", "rancher-2"));
        assert!(fills("rancher-2", "rancher-2-g2"));
        assert!(fills("rancher-2", "rancher-2-g13"));
        assert!(!fills("rancher-2", "rancher-20"));
        assert!(!fills("rancher-2", "rancher-2-g"));
        assert!(!fills("rancher-2", "rancher-2-gx"));
        assert!(!fills("rancher-2", "rancher-2-lb"));
        assert!(!fills("rancher-2", "rancher-1-g2"));
    }
}
