//! Day-2 checks: waiting for many nodes at once, and in-place updates of a node and
//! the balancer (what the orchestrator does when a plan shows in-place drift).
//!
//! [`nodes_wait_together`] is in [`run_all`](super::run_all): every provider has
//! [`NodeProvider::wait_nodes`]. The update checks are not, because a provider may
//! honestly refuse in-place updates (the trait's default); a provider that
//! implements [`NodeProvider::update_node`] or
//! [`LoadBalancerProvider::update_load_balancer`] runs them from its own tests.

use crate::drift::{self, Attribute};
use crate::model::{LbState, Node};
use crate::placement::place;
use crate::provider::{LoadBalancerProvider, NodeProvider};

use super::{create_checked, delete_all, ok, wait_ready, zones_of, Fixture};

/// Three nodes (fewer when the region has fewer zones: one per zone, at least one)
/// waited for with one [`NodeProvider::wait_nodes`]: every node comes back running,
/// in the order asked, and a second wait on running nodes returns them at once.
pub async fn nodes_wait_together(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let mut made = Vec::new();
    for (i, zone) in place(&zones, &[], zones.len().clamp(1, 3))
        .iter()
        .enumerate()
    {
        made.push(create_checked(nodes, fx, &fx.node_name(i + 1), zone).await);
    }
    let ready = ok(
        p,
        "wait_nodes(all)",
        nodes.wait_nodes(&fx.cluster, &made, fx.timeout).await,
    );
    let ids = |ns: &[Node]| ns.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&ready),
        ids(&made),
        "[{p}] wait_nodes returned other nodes, or in another order"
    );
    for n in &ready {
        assert!(
            n.is_ready(),
            "[{p}] wait_nodes returned {} not running with a private IP: {n:?}",
            n.name
        );
    }
    let again = ok(
        p,
        "wait_nodes(all) again",
        nodes.wait_nodes(&fx.cluster, &ready, fx.timeout).await,
    );
    assert_eq!(ids(&again), ids(&made), "[{p}] a second wait_nodes differs");
    delete_all(nodes, fx, &ready).await;
}

/// A running node updated in place: new SSH source ranges and a new fingerprint
/// label. The node keeps its id, `update_node` returns it with the new label,
/// discovery reads the label back, and a second update is a no-op that succeeds.
pub async fn node_update_in_place(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let made = create_checked(nodes, fx, &name, &zones[0]).await;
    let node = wait_ready(nodes, fx, &made).await;

    let cidrs = vec!["198.51.100.0/24".to_owned(), "203.0.113.0/24".to_owned()];
    let (key, value) = (
        Attribute::SshAllowedCidrs.label(),
        drift::encode(&cidrs.join(",")),
    );
    let mut request = fx.node_request(&name, &node.zone);
    request.ssh_allowed_cidrs = cidrs;
    request.labels.insert(key.to_owned(), value.clone());

    for round in ["update_node()", "update_node() again"] {
        let updated = ok(
            p,
            round,
            nodes.update_node(&fx.cluster, &node, &request).await,
        );
        assert_eq!(updated.id, node.id, "[{p}] {round} returned another node");
        assert_eq!(
            updated.labels.get(key),
            Some(&value),
            "[{p}] {round} returned the node without its new label {key}"
        );
    }
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let found: Vec<&Node> = found.iter().filter(|n| n.id == node.id).collect();
    assert_eq!(
        found.len(),
        1,
        "[{p}] discovery shows the updated node {} times",
        found.len()
    );
    assert_eq!(
        found[0].labels.get(key),
        Some(&value),
        "[{p}] discovery does not read back the label update_node wrote"
    );
    delete_all(nodes, fx, &[node]).await;
}

/// An active balancer updated in place: a new health check path and its new
/// fingerprint label. The balancer keeps its id and stays active,
/// `update_load_balancer` returns it with the new label, discovery reads it back,
/// and a second update succeeds. Makes no nodes; deletes the balancer at the end.
pub async fn load_balancer_update_in_place(
    nodes: &dyn NodeProvider,
    lbp: &dyn LoadBalancerProvider,
    fx: &Fixture,
) {
    let p = lbp.name();
    let mut request = fx.lb.clone();
    if request.zones.is_empty() {
        request.zones = zones_of(nodes, fx).await;
    }
    let created = ok(
        p,
        "create_load_balancer()",
        lbp.create_load_balancer(&fx.cluster, &request).await,
    );
    let lb = ok(
        p,
        "wait_load_balancer()",
        lbp.wait_load_balancer(&fx.cluster, &created, fx.timeout)
            .await,
    );

    let path = "/conformance-healthz".to_owned();
    let (key, value) = (Attribute::HealthCheckPath.label(), drift::encode(&path));
    request.health_check_path = path;
    request.labels.insert(key.to_owned(), value.clone());
    for round in ["update_load_balancer()", "update_load_balancer() again"] {
        let updated = ok(
            p,
            round,
            lbp.update_load_balancer(&fx.cluster, &lb, &request).await,
        );
        assert_eq!(updated.id, lb.id, "[{p}] {round} returned another balancer");
        assert_eq!(
            updated.labels.get(key),
            Some(&value),
            "[{p}] {round} returned the balancer without its new label {key}"
        );
    }
    let found = ok(
        p,
        "discover_load_balancer()",
        lbp.discover_load_balancer(&fx.cluster).await,
    )
    .unwrap_or_else(|| panic!("[{p}] the updated balancer is not discovered"));
    assert_eq!(found.id, lb.id, "[{p}] discovery finds another balancer");
    assert_eq!(
        found.state,
        LbState::Active,
        "[{p}] the balancer is not active after an in-place update"
    );
    assert_eq!(
        found.labels.get(key),
        Some(&value),
        "[{p}] discovery does not read back the label update_load_balancer wrote"
    );
    ok(
        p,
        "delete_load_balancer()",
        lbp.delete_load_balancer(&fx.cluster).await,
    );
}
