//! The RKE (v1) `cluster.yml`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{one_line, ordered_nodes, to_yaml};
use crate::model::Inventory;
use crate::spec::ValidSpec;

/// An RKE1 `cluster.yml`: every node with a private IP as `address` and
/// `internal_address`, `hostname_override` = node name, `user` =
/// `nodes.ssh_user`, roles `[controlplane, etcd, worker]`; the NGINX ingress, with
/// `use-forwarded-headers: "true"` when TLS ends at the balancer (l7) so Rancher
/// sees the original scheme. Nodes without a private IP are left out and named in
/// a comment.
///
/// RKE is run from a host that reaches the nodes' private addresses over SSH.
pub fn rke_cluster_yml(spec: &ValidSpec, inventory: &Inventory) -> String {
    let nodes = ordered_nodes(spec, inventory);
    let mut missing = Vec::new();
    let mut rke_nodes = Vec::new();
    for n in nodes {
        match n.private_ip {
            Some(ip) => rke_nodes.push(RkeNode {
                address: ip.to_string(),
                internal_address: ip.to_string(),
                hostname_override: &n.name,
                user: &spec.nodes.ssh_user,
                role: ["controlplane", "etcd", "worker"],
            }),
            None => missing.push(n.name.as_str()),
        }
    }
    let mut options = BTreeMap::new();
    if inventory.tls_external {
        options.insert("use-forwarded-headers", "true");
    }
    let doc = RkeCluster {
        cluster_name: &inventory.cluster,
        nodes: rke_nodes,
        ingress: RkeIngress {
            provider: "nginx",
            options,
        },
    };
    let mut out = format!(
        "# RKE cluster.yml for the Rancher cluster `{}`, rendered by triad.\n\
         # Run `rke up --config cluster.yml` from a host that reaches the nodes over SSH.\n",
        one_line(&inventory.cluster)
    );
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "# Left out (no private IP yet): {}",
            one_line(&missing.join(", "))
        );
    }
    out.push_str(&to_yaml(&doc));
    out
}

#[derive(Serialize)]
struct RkeCluster<'a> {
    cluster_name: &'a str,
    nodes: Vec<RkeNode<'a>>,
    ingress: RkeIngress,
}

#[derive(Serialize)]
struct RkeNode<'a> {
    address: String,
    internal_address: String,
    hostname_override: &'a str,
    user: &'a str,
    role: [&'static str; 3],
}

#[derive(Serialize)]
struct RkeIngress {
    provider: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    options: BTreeMap<&'static str, &'static str>,
}
