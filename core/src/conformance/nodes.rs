//! Node checks: create, discover, wait, delete, idempotence, zones.

use std::collections::BTreeSet;

use crate::labels::Role;
use crate::model::{Node, NodeState};
use crate::placement::place;
use crate::provider::NodeProvider;

use super::{create_checked, delete_all, ok, wait_ready, zones_of, Fixture};

/// Create a node, find it by discovery, wait until it runs, delete it, and check that
/// it disappears and the cluster's plumbing is cleaned up.
pub async fn nodes_create_discover_delete(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let node = create_checked(nodes, fx, &name, &zones[0]).await;
    for (k, v) in fx.cluster.labels_for(Role::Node) {
        assert_eq!(
            node.labels.get(&k),
            Some(&v),
            "[{p}] node {name} lacks the label {k}={v}: {:?}",
            node.labels
        );
    }

    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let matching: Vec<&Node> = found.iter().filter(|n| n.id == node.id).collect();
    assert_eq!(
        matching.len(),
        1,
        "[{p}] discover_nodes() should show node {name} ({}) once: {found:?}",
        node.id
    );
    assert_eq!(
        matching[0].name, name,
        "[{p}] discovered node has another name"
    );
    assert_eq!(
        matching[0].zone, zones[0],
        "[{p}] discovered node has another zone"
    );

    let ready = wait_ready(nodes, fx, &node).await;
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let again = found
        .iter()
        .find(|n| n.id == node.id)
        .unwrap_or_else(|| panic!("[{p}] running node {name} is not discovered: {found:?}"));
    assert!(
        again.is_ready(),
        "[{p}] discovery shows the running node {name} as not ready: {again:?}"
    );
    assert_eq!(
        again.private_ip, ready.private_ip,
        "[{p}] discovery and wait_node disagree on {name}'s address"
    );

    let other = ok(
        p,
        "discover_nodes(other cluster)",
        nodes.discover_nodes(&fx.other_cluster).await,
    );
    assert!(
        other.iter().all(|n| n.id != node.id),
        "[{p}] another cluster's discovery found node {name}"
    );

    delete_all(nodes, fx, &[ready]).await;
}

/// Creating the same node twice returns the same node, and discovery shows one.
pub async fn node_create_is_idempotent(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let first = create_checked(nodes, fx, &name, &zones[0]).await;
    let second = create_checked(nodes, fx, &name, &zones[0]).await;
    assert_eq!(
        first.id, second.id,
        "[{p}] create_node({name}) twice made two nodes"
    );
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    let named: Vec<&Node> = found
        .iter()
        .filter(|n| n.name == name && n.state != NodeState::Terminating)
        .collect();
    assert_eq!(
        named.len(),
        1,
        "[{p}] discover_nodes() shows {} live nodes named {name}: {found:?}",
        named.len()
    );
    delete_all(nodes, fx, &[first]).await;
}

/// Deleting a node that is being deleted, or is gone, succeeds.
pub async fn node_delete_missing_is_ok(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let name = fx.node_name(1);
    let node = create_checked(nodes, fx, &name, &zones[0]).await;
    ok(
        p,
        "delete_node()",
        nodes.delete_node(&fx.cluster, &node).await,
    );
    ok(
        p,
        "delete_node() of a node being deleted",
        nodes.delete_node(&fx.cluster, &node).await,
    );
    // Waits until it is gone, deleting it once more on the way.
    delete_all(nodes, fx, std::slice::from_ref(&node)).await;
    ok(
        p,
        "delete_node() of a node that is gone",
        nodes.delete_node(&fx.cluster, &node).await,
    );
}

/// Nodes asked for in different zones land in them, and the zones come from
/// [`NodeProvider::zones`] (placed fewest-first, as the orchestrator does).
pub async fn nodes_spread_over_zones(nodes: &dyn NodeProvider, fx: &Fixture) {
    let p = nodes.name();
    let zones = zones_of(nodes, fx).await;
    let placed = place(&zones, &[], 3);
    let mut made = Vec::new();
    for (i, zone) in placed.iter().enumerate() {
        made.push(create_checked(nodes, fx, &fx.node_name(i + 1), zone).await);
    }
    let found = ok(
        p,
        "discover_nodes()",
        nodes.discover_nodes(&fx.cluster).await,
    );
    for (node, zone) in made.iter().zip(&placed) {
        let d = found
            .iter()
            .find(|n| n.id == node.id)
            .unwrap_or_else(|| panic!("[{p}] node {} is not discovered", node.name));
        assert_eq!(
            &d.zone, zone,
            "[{p}] node {} is in the wrong zone",
            node.name
        );
    }
    let distinct: BTreeSet<&str> = made.iter().map(|n| n.zone.as_str()).collect();
    assert_eq!(
        distinct.len(),
        zones.len().min(3),
        "[{p}] 3 nodes over {} zones should use {} distinct zones, used {distinct:?}",
        zones.len(),
        zones.len().min(3)
    );
    delete_all(nodes, fx, &made).await;
}
