//! Cluster identity: a name is not enough. The first apply makes a random cluster id,
//! writes it into the record's ownership TXT and puts it as the `triad-cluster-id`
//! label on every resource. Discovery that finds resources of one name carrying two
//! ids (another team's cluster with the same name in the same account) refuses
//! ([`Error::Identity`]), naming both, instead of adopting or deleting the other.
//!
//! Resources made before ids existed carry none; they are accepted as this cluster's.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::labels;
use crate::model::{LoadBalancer, Node, Record};
use crate::spec::ClusterRef;

/// A fresh cluster id: 12 random lowercase hex digits (a valid label value).
pub fn new_id() -> String {
    (0..12)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// The one cluster id the discovered resources carry (`None` when none carries one),
/// or [`Error::Identity`] naming two resources whose ids differ (or a resource whose
/// id is not `cluster.id`, when that is set).
pub fn check(
    cluster: &ClusterRef,
    nodes: &[Node],
    lb: Option<&LoadBalancer>,
    records: &[&Record],
) -> Result<Option<String>> {
    let mut seen: Vec<(String, String)> = Vec::new();
    if let Some(id) = &cluster.id {
        seen.push((id.clone(), "the cluster being changed".into()));
    }
    for n in nodes {
        if let Some(id) = n.labels.get(labels::CLUSTER_ID) {
            seen.push((id.clone(), format!("node {} ({})", n.name, n.id)));
        }
    }
    if let Some(lb) = lb {
        if let Some(id) = lb.labels.get(labels::CLUSTER_ID) {
            seen.push((id.clone(), format!("load balancer {} ({})", lb.name, lb.id)));
        }
    }
    for r in records {
        if let Some(id) = &r.owner_id {
            seen.push((id.clone(), format!("DNS record {} in {}", r.fqdn, r.zone)));
        }
    }
    let Some((first_id, first)) = seen.first() else {
        return Ok(None);
    };
    if let Some((id, what)) = seen.iter().find(|(id, _)| id != first_id) {
        return Err(Error::Identity {
            cluster: cluster.name.clone(),
            first: format!("{first} has cluster id {first_id}"),
            second: format!("{what} has cluster id {id}"),
        });
    }
    Ok(Some(first_id.clone()))
}

/// The DNS zones the resources' `triad-dns-zone` labels name: where the cluster's
/// record lived when they were made.
pub fn zones_from_labels(nodes: &[Node], lb: Option<&LoadBalancer>) -> BTreeSet<String> {
    nodes
        .iter()
        .map(|n| &n.labels)
        .chain(lb.map(|l| &l.labels))
        .filter_map(|l| l.get(labels::DNS_ZONE))
        .map(|v| labels::decode_zone(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeState;

    fn node(name: &str, id: Option<&str>) -> Node {
        Node {
            id: format!("i-{name}"),
            name: name.into(),
            zone: "a".into(),
            state: NodeState::Running,
            private_ip: None,
            public_ip: None,
            labels: id
                .map(|id| [(labels::CLUSTER_ID.to_owned(), id.to_owned())].into())
                .unwrap_or_default(),
            created_ms: None,
            ssh: None,
        }
    }

    #[test]
    fn one_id_is_the_cluster_s_and_two_are_refused() {
        let c = ClusterRef::new("r", "x");
        let ids = new_id();
        assert_eq!(ids.len(), 12);
        assert!(labels::check(&ids, false).is_none());
        let same = [node("r-1", Some("abc")), node("r-2", None)];
        assert_eq!(check(&c, &same, None, &[]).unwrap().as_deref(), Some("abc"));
        assert_eq!(check(&c, &[node("r-1", None)], None, &[]).unwrap(), None);
        let two = [node("r-1", Some("abc")), node("r-2", Some("def"))];
        let err = check(&c, &two, None, &[]).unwrap_err().to_string();
        assert!(
            err.contains("node r-1") && err.contains("node r-2"),
            "{err}"
        );
        assert!(err.contains("abc") && err.contains("def"), "{err}");
    }
}
