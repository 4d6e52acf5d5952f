//! Quorum-safe node changes: which node is kept, created, updated in place, replaced
//! or deleted ([`plan_nodes`]), and the rolling order apply follows, at most one etcd
//! member unavailable at any time (`max_unavailable = 1`, as Cluster API's
//! KubeadmControlPlane and CAPRKE2 roll control planes):
//!
//! 1. **Deletes, one per step.** Duplicates and the old halves of interrupted
//!    replacements first, then surplus nodes from the highest index down. Each step
//!    deregisters the node from the balancer, then deletes it.
//! 2. **Replacements, one per step, in index order.** Make the new node in the same
//!    zone, wait until it runs, register it, deregister the old node and delete it.
//!
//! A replacement is named after its slot and generation (`rancher-2`, then
//! `rancher-2-g2`, `rancher-2-g3`…), so the old and the new node exist side by side
//! and every step is create-or-get by name: a rerun after a crash at any point sees
//! which half of the step is done (the new node exists and carries the current
//! fingerprint; the old one is still registered or not) and carries on from there.

use std::collections::BTreeMap;

use crate::drift::{self, Change};
use crate::model::{Node, NodeState};
use crate::orchestrator::NodeAction;
use crate::placement;
use crate::spec::ValidSpec;

/// The slot (1-based index) and generation of a node named `<cluster>-<n>` (generation
/// 1) or `<cluster>-<n>-g<k>`; `None` for any other name.
///
/// ```
/// use triad_core::rollout::slot_of;
/// assert_eq!(slot_of("r", "r-2"), Some((2, 1)));
/// assert_eq!(slot_of("r", "r-2-g3"), Some((2, 3)));
/// assert_eq!(slot_of("r", "r-x"), None);
/// assert_eq!(slot_of("r", "rr-2"), None);
/// ```
pub fn slot_of(cluster: &str, name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(cluster)?.strip_prefix('-')?;
    let (slot, gen) = match rest.split_once("-g") {
        Some((s, g)) => (s, g.parse().ok().filter(|g| *g >= 2)?),
        None => (rest, 1),
    };
    if slot.starts_with('0') {
        return None;
    }
    Some((slot.parse().ok()?, gen))
}

/// The name of generation `gen` of slot `slot`.
pub fn node_name(cluster: &str, slot: u32, gen: u32) -> String {
    if gen <= 1 {
        format!("{cluster}-{slot}")
    } else {
        format!("{cluster}-{slot}-g{gen}")
    }
}

/// Oldest first (creation time, then id): of two nodes in one slot the oldest is the
/// real one, never a stray clone or a lost launch's twin.
fn oldest_first(nodes: &mut [(&Node, Vec<Change>)]) {
    nodes.sort_by_key(|(n, _)| (n.created_ms.is_none(), n.created_ms, n.id.clone()));
}

/// What to do with each node: see the [module docs](self).
pub fn plan_nodes(spec: &ValidSpec, zones: &[String], found: &[Node]) -> Vec<NodeAction> {
    let cluster = &spec.name;
    let wanted = drift::node_wanted(spec);
    let count = spec.nodes.count;
    let mut by_slot: BTreeMap<u32, Vec<(&Node, Vec<Change>)>> = BTreeMap::new();
    let mut actions = Vec::new();
    // Nodes on their way out are gone as far as the plan is concerned.
    for n in found.iter().filter(|n| n.state != NodeState::Terminating) {
        match slot_of(cluster, &n.name) {
            Some((slot, _)) if slot <= count => by_slot
                .entry(slot)
                .or_default()
                .push((n, drift::diff(&n.labels, &wanted))),
            _ => actions.push(NodeAction::Delete {
                node: n.clone(),
                reason: format!("not wanted: the spec asks for {count} nodes"),
            }),
        }
    }
    let mut kept_zones = Vec::new();
    let mut missing = Vec::new();
    for slot in 1..=count {
        let Some(mut nodes) = by_slot.remove(&slot) else {
            missing.push(node_name(cluster, slot, 1));
            continue;
        };
        oldest_first(&mut nodes);
        let next_gen = nodes
            .iter()
            .filter_map(|(n, _)| slot_of(cluster, &n.name).map(|(_, g)| g))
            .max()
            .unwrap_or(1)
            + 1;
        let (current, stale): (Vec<_>, Vec<_>) = nodes
            .into_iter()
            .partition(|(_, changes)| drift::all_in_place(changes));
        if let Some(((keep, changes), dups)) = current.split_first() {
            kept_zones.push(keep.zone.clone());
            actions.push(if !changes.is_empty() {
                NodeAction::Update {
                    node: (*keep).clone(),
                    changes: changes.clone(),
                }
            } else if keep.is_ready() {
                NodeAction::Keep {
                    node: (*keep).clone(),
                }
            } else {
                NodeAction::Wait {
                    node: (*keep).clone(),
                }
            });
            for (dup, _) in dups {
                actions.push(NodeAction::Delete {
                    node: (*dup).clone(),
                    reason: format!("duplicate of {} ({}), which is older", keep.name, keep.id),
                });
            }
            for (old, changes) in stale {
                actions.push(NodeAction::Delete {
                    node: old.clone(),
                    reason: format!(
                        "replaced by {} ({}); it differs: {}",
                        keep.name,
                        keep.id,
                        describe(&changes)
                    ),
                });
            }
        } else if let Some(((old, changes), dups)) = stale.split_first() {
            kept_zones.push(old.zone.clone());
            actions.push(NodeAction::Replace {
                node: (*old).clone(),
                name: node_name(cluster, slot, next_gen),
                zone: old.zone.clone(),
                changes: changes.clone(),
            });
            for (dup, _) in dups {
                actions.push(NodeAction::Delete {
                    node: (*dup).clone(),
                    reason: format!("duplicate of {} ({}), which is older", old.name, old.id),
                });
            }
        }
    }
    let placed = placement::place(zones, &kept_zones, missing.len());
    for (name, zone) in missing.into_iter().zip(placed) {
        actions.push(NodeAction::Create { name, zone });
    }
    for (_, rest) in by_slot {
        for (n, _) in rest {
            actions.push(NodeAction::Delete {
                node: n.clone(),
                reason: format!("not wanted: the spec asks for {count} nodes"),
            });
        }
    }
    actions.sort_by_key(|a| natural_key(a.name()));
    actions
}

/// `a, b` of the changes, for a reason.
pub(crate) fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) use crate::model::natural_key;

/// The deletions in the order apply makes them: duplicates and old halves of
/// replacements first, then surplus nodes from the highest index down.
pub fn delete_order<'a>(cluster: &str, count: u32, actions: &'a [NodeAction]) -> Vec<&'a Node> {
    let mut deletes: Vec<&Node> = actions
        .iter()
        .filter_map(|a| match a {
            NodeAction::Delete { node, .. } => Some(node),
            _ => None,
        })
        .collect();
    deletes.sort_by_key(|n| {
        let surplus = match slot_of(cluster, &n.name) {
            Some((slot, _)) if slot > count => std::cmp::Reverse(slot),
            _ => std::cmp::Reverse(u32::MAX),
        };
        (surplus, natural_key(&n.name))
    });
    deletes
}

/// How many etcd members remain a majority of `n`.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

fn kubectl(node: &str) -> String {
    format!(
        "kubectl drain {node} --ignore-daemonsets --delete-emptydir-data && kubectl delete node {node}"
    )
}

/// The rolling steps of a plan in words: what each does to etcd, and the Kubernetes
/// commands to run before it (RKE2 removes the etcd member of a node deleted from
/// Kubernetes). Empty when there is nothing to roll.
pub fn steps(spec: &ValidSpec, actions: &[NodeAction]) -> Vec<String> {
    // Every node that will be an etcd member before the rolling steps begin.
    let mut members = actions.len();
    let mut out = Vec::new();
    for node in delete_order(&spec.name, spec.nodes.count, actions) {
        let left = members - 1;
        let mut line = format!(
            "node {} ({}): deregister, then delete. Removes 1 of {members} etcd members ({left} left, quorum {}).",
            node.name,
            node.id,
            quorum(left.max(1))
        );
        if left < 3 {
            line.push_str(" No etcd fault tolerance is left after this step.");
        }
        line.push_str(&format!(" First run: {}", kubectl(&node.name)));
        out.push(line);
        members = left;
    }
    for a in actions {
        if let NodeAction::Replace {
            node, name, zone, ..
        } = a
        {
            out.push(format!(
                "node {old} ({id}) → {name}: create {name} in {zone}, wait until it runs, register it; \
                 then deregister and delete {old}. Adds etcd member {n} of {n} (quorum {q}) when \
                 {name} joins, then removes {old}'s ({members} left). Once {name} is Ready, run: {cmd}",
                old = node.name,
                id = node.id,
                n = members + 1,
                q = quorum(members + 1),
                cmd = kubectl(&node.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_with_generations() {
        let mut v = vec!["r-10", "r-2-g2", "r-2", "r-1"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["r-1", "r-2", "r-2-g2", "r-10"]);
    }

    fn spec() -> ValidSpec {
        crate::spec::ClusterSpec::from_toml(
            "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n",
        )
        .unwrap()
        .validate()
        .unwrap()
    }

    fn node(name: &str, id: &str, created_ms: Option<u64>) -> Node {
        Node {
            id: id.into(),
            name: name.into(),
            zone: "xa".into(),
            state: NodeState::Running,
            private_ip: Some("10.0.0.1".parse().unwrap()),
            public_ip: None,
            labels: drift::labels_of(&drift::node_wanted(&spec())),
            created_ms,
            ssh: None,
        }
    }

    #[test]
    fn of_two_nodes_with_one_name_the_oldest_is_kept_and_the_other_reported() {
        let zones = ["xa".to_owned(), "xb".to_owned(), "xc".to_owned()];
        // A stray clone with a lower id but made later never wins.
        let found = [
            node("r-1", "a-clone", Some(2_000)),
            node("r-1", "z-real", Some(1_000)),
        ];
        let actions = plan_nodes(&spec(), &zones, &found);
        assert!(actions.contains(&NodeAction::Keep {
            node: found[1].clone()
        }));
        let reason = actions
            .iter()
            .find_map(|a| match a {
                NodeAction::Delete { node, reason } if node.id == "a-clone" => Some(reason.clone()),
                _ => None,
            })
            .expect("the newer one is deleted");
        assert!(
            reason.contains("duplicate of r-1 (z-real), which is older"),
            "{reason}"
        );
    }

    #[test]
    fn a_half_done_replacement_keeps_the_new_node_and_retires_the_old() {
        let zones = ["xa".to_owned(), "xb".to_owned(), "xc".to_owned()];
        let mut old = node("r-2", "i-old", Some(1));
        old.labels
            .insert("triad-fp-image".into(), "ami-0old".into());
        let new = node("r-2-g2", "i-new", Some(2));
        let actions = plan_nodes(&spec(), &zones, &[old.clone(), new.clone()]);
        assert!(actions.contains(&NodeAction::Keep { node: new }));
        assert!(actions
            .iter()
            .any(|a| matches!(a, NodeAction::Delete { node, reason }
            if node.id == "i-old" && reason.contains("replaced by r-2-g2"))));
        // Alone, the old one is replaced by the next generation in its zone.
        let actions = plan_nodes(&spec(), &zones, &[old]);
        assert!(actions
            .iter()
            .any(|a| matches!(a, NodeAction::Replace { name, zone, .. }
            if name == "r-2-g2" && zone == "xa")));
    }

    #[test]
    fn names_round_trip() {
        for (slot, gen) in [(1, 1), (2, 2), (11, 7)] {
            assert_eq!(slot_of("r", &node_name("r", slot, gen)), Some((slot, gen)));
        }
        assert_eq!(slot_of("r", "r-2-g1"), None);
        assert_eq!(slot_of("r", "r-02"), None);
    }
}
