//! What users do next, rendered from the validated spec and the [`Inventory`] an
//! apply produced: the inventory as JSON, an RKE `cluster.yml`, a per-node RKE2
//! `config.yaml`, the `helm install rancher …` command and a human summary.
//!
//! Every function is pure and returns text. YAML is produced by serialising Rust
//! structs with `serde_norway` (only leading `#` comment lines are written by
//! hand), so quoting is always right.
//!
//! Nothing here prints a proxy password: the Helm command refers to the shell
//! variable `PROXY_PASSWORD` instead (see [`helm_install`]).
//!
//! Nodes appear in the order of [`ValidSpec::node_names`] (`<cluster>-1`,
//! `<cluster>-2`, … — numeric, not lexical, order); nodes with other names follow,
//! sorted by name. The *first node* is the first one in that order that has a
//! private IP: RKE2 servers join it.
//!
//! One concern per file: `rke` (the RKE `cluster.yml`), `kube` (RKE2 / K3s node
//! configuration and registration), `rancher` (Helm values and install
//! commands), `handover` (the [`bundle`] and [`write_to`]) and `summary`
//! ([`next_steps`]); the shared ordering and text helpers live here.

use std::net::IpAddr;

use serde::Serialize;

use crate::model::{Inventory, Node};
use crate::spec::ValidSpec;

mod handover;
mod kube;
mod rancher;
mod rke;
mod summary;
#[cfg(test)]
mod tests;

pub use handover::{bundle, write_to, BundleFile};
pub use kube::{
    join_address, kubeconfig_command, kubernetes_entry, node_config, registration_address,
    token_path,
};
pub use rancher::{
    cert_manager_install, helm_install, helm_no_proxy, rancher_values, RancherIngress,
    RancherIngressTls, RancherValues,
};
pub use rke::rke_cluster_yml;
pub use summary::next_steps;

use rancher::rancher_install_script;
#[cfg(test)]
use rancher::{helm_escape, shell_dq};

/// Where RKE2 reads the cluster's shared secret (`token-file`).
pub const RKE2_TOKEN_FILE: &str = "/etc/rancher/rke2/token";
/// The port RKE2 servers register with each other on.
pub const RKE2_SUPERVISOR_PORT: u16 = crate::spec::RKE2_SUPERVISOR_PORT;
/// Most Rancher replicas worth running: Rancher's chart recommends 3.
pub const MAX_RANCHER_REPLICAS: usize = 3;

/// The inventory as pretty-printed JSON (its serde form), ending in a newline.
///
/// ```
/// # use triad_core::model::*;
/// # use triad_core::spec::{LbMode, LbScheme};
/// # let inventory = Inventory {
/// #     cluster: "rancher".into(), region: "r".into(), nodes: vec![],
/// #     load_balancer: LoadBalancer { id: "lb".into(), name: "lb".into(), mode: LbMode::L4,
/// #         scheme: LbScheme::InternetFacing, state: LbState::Active, endpoint: None, registration_endpoint: None,
/// #         listeners: vec![], targets: vec![], partial_targets: vec![],
/// #         labels: Default::default() },
/// #     dns: DnsEntry { fqdn: "rancher.example.com".into(), zone: "example.com".into(),
/// #         kind: RecordKind::A, target: Endpoint::Ip { addresses: vec![] }, ttl: Some(60) },
/// #     rancher_url: "https://rancher.example.com".into(), tls_external: false,
/// #     providers: Providers { nodes: "sim".into(), load_balancer: "sim".into(), dns: "sim".into() },
/// #     kubernetes: None,
/// # };
/// let json = triad_core::render::inventory_json(&inventory);
/// let back: Inventory = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, inventory);
/// ```
pub fn inventory_json(inventory: &Inventory) -> String {
    // Plain structs with string-keyed maps always serialise.
    let mut s = serde_json::to_string_pretty(inventory).expect("Inventory always serialises");
    s.push('\n');
    s
}

/// The first node (in spec order) with a private IP.
fn first_node<'a>(spec: &ValidSpec, nodes: &'a [Node]) -> Option<(&'a Node, IpAddr)> {
    let names = spec.node_names();
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by_key(|n| {
        (
            names
                .iter()
                .position(|x| *x == n.name)
                .unwrap_or(usize::MAX),
            n.name.clone(),
        )
    });
    sorted
        .into_iter()
        .find_map(|n| n.private_ip.map(|ip| (n, ip)))
}

/// Nodes in the order of `spec.node_names()`, others after them by name.
fn ordered_nodes<'a>(spec: &ValidSpec, inventory: &'a Inventory) -> Vec<&'a Node> {
    let names = spec.node_names();
    let mut nodes: Vec<&Node> = inventory.nodes.iter().collect();
    nodes.sort_by(|a, b| {
        let pos = |n: &Node| {
            names
                .iter()
                .position(|x| *x == n.name)
                .unwrap_or(usize::MAX)
        };
        pos(a).cmp(&pos(b)).then_with(|| a.name.cmp(&b.name))
    });
    nodes
}

/// An IP as the host part of a URL (`[…]` around IPv6).
fn host_for_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A value shown on one line of text: line breaks and other control characters
/// become spaces, so a strange name cannot forge lines of output.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

fn to_yaml<T: Serialize>(doc: &T) -> String {
    // Our documents are structs of strings, sequences and string maps: they always
    // serialise.
    serde_norway::to_string(doc).expect("rendered YAML documents always serialise")
}
