//! RKE2 / K3s: the registration address, the inventory's `kubernetes` entry, each
//! node's `config.yaml` and the command that fetches the kubeconfig.

use super::{first_node, host_for_url, one_line, RKE2_TOKEN_FILE};
use crate::bootstrap;
use crate::model::{Endpoint, Inventory, KubernetesEntry, Node};
use crate::spec::{Distribution, Registration, ValidSpec, KUBE_API_PORT};

/// The fixed registration address: the Rancher hostname when the balancer
/// carries the registration listeners (`load_balancer.registration = "balancer"`;
/// the address of its TCP companion when an l7 balancer serves them apart and
/// `spec` learned it, [`ValidSpec::with_registration_of`]), else node 1's private
/// address; `None` for RKE (v1), which has none, or when
/// node 1 has no address yet.
pub fn registration_address(spec: &ValidSpec, nodes: &[Node]) -> Option<String> {
    if spec.kubernetes.distribution == Distribution::Rke {
        return None;
    }
    match spec.load_balancer.registration {
        Registration::Balancer => Some(bootstrap::url_host(&bootstrap::registration_host(spec))),
        Registration::FirstNode => first_node(spec, nodes).map(|(_, ip)| host_for_url(ip)),
    }
}

/// The address the servers join: the registration address, or node 1's private
/// address when they join through the first node
/// ([`ValidSpec::joins_through_first_node`]: `registration = "first-node"`, or a
/// balancer whose own targets cannot reach it).
pub fn join_address(spec: &ValidSpec, nodes: &[Node]) -> Option<String> {
    if spec.kubernetes.distribution == Distribution::Rke {
        return None;
    }
    if spec.joins_through_first_node() {
        return first_node(spec, nodes).map(|(_, ip)| host_for_url(ip));
    }
    registration_address(spec, nodes)
}

/// The inventory's `kubernetes` entry: distribution, registration address, the URL
/// nodes join and the API server URL.
pub fn kubernetes_entry(spec: &ValidSpec, nodes: &[Node]) -> KubernetesEntry {
    let d = spec.kubernetes.distribution;
    let reg = registration_address(spec, nodes);
    KubernetesEntry {
        distribution: d,
        join_url: join_address(spec, nodes)
            .map(|r| format!("https://{r}:{}", bootstrap::join_port(d))),
        server_url: reg.as_ref().map(|r| format!("https://{r}:{KUBE_API_PORT}")),
        registration_address: reg,
    }
}

/// The RKE2 or K3s `config.yaml` for the node `node_name`, for users who join the
/// nodes themselves (`kubernetes.install = false`).
///
/// `tls-san` holds the Rancher hostname and the balancer's endpoint (name or
/// addresses); `node-name` is the node; `cluster-cidr` / `service-cidr` the spec's;
/// every node but the first gets `server: https://<registration address>:9345`
/// (`:6443` for K3s), K3s's first node `cluster-init: true`. The join secret is
/// read from `token-file` (see [`bundle`](super::bundle), which writes it), so no secret appears
/// in this file.
pub fn node_config(spec: &ValidSpec, inventory: &Inventory, node_name: &str) -> String {
    // The registration address an l7 balancer serves apart (see `with_registration_of`).
    let spec = &spec.with_registration_of(&inventory.load_balancer);
    let d = spec.kubernetes.distribution;
    let mut san = Vec::new();
    match &inventory.load_balancer.endpoint {
        Some(Endpoint::Hostname { name, .. }) => {
            san.push(name.trim_end_matches('.').to_ascii_lowercase());
        }
        Some(Endpoint::Ip { addresses }) => san.extend(addresses.iter().map(ToString::to_string)),
        None => {}
    }
    let reg = join_address(spec, &inventory.nodes);
    let mut doc = bootstrap::kube_config_with(spec, node_name, reg.clone(), &san, None);
    doc.token_file = Some(token_path(d).to_owned());
    let mut out = format!(
        "# {} for `{}`, rendered by triad.\n\
         # Put the same join token in {} on every node (mode 0600) before starting\n\
         # the server (the hand-over's `token` file, or your kubernetes.token_file).\n",
        bootstrap::kube_config_path(d),
        one_line(node_name),
        token_path(d)
    );
    if reg.is_none() {
        out.push_str(
            "# No node has a private IP yet: render this again once they do, or every\n\
             # node would start a cluster of its own.\n",
        );
    } else if doc.server.is_none() {
        out.push_str("# This is the first server; the others join it.\n");
    }
    out.push_str(&doc.to_yaml());
    out
}

/// Where the hand-over's `config.yaml` expects the join token on the node.
pub fn token_path(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::K3s => "/etc/rancher/k3s/token",
        Distribution::Rke2 | Distribution::Rke => RKE2_TOKEN_FILE,
    }
}

/// The command that fetches the kubeconfig from node 1 (over SSH, as
/// `nodes.ssh_user`) with its server rewritten from `127.0.0.1` to the
/// registration address.
pub fn kubeconfig_command(spec: &ValidSpec, inventory: &Inventory) -> Option<String> {
    // The registration address an l7 balancer serves apart (see `with_registration_of`).
    let spec = &spec.with_registration_of(&inventory.load_balancer);
    let d = spec.kubernetes.distribution;
    if d == Distribution::Rke {
        return None;
    }
    let (_, ip) = first_node(spec, &inventory.nodes)?;
    let reg = registration_address(spec, &inventory.nodes)?;
    let file = match d {
        Distribution::K3s => "/etc/rancher/k3s/k3s.yaml",
        Distribution::Rke2 | Distribution::Rke => "/etc/rancher/rke2/rke2.yaml",
    };
    Some(format!(
        "ssh {}@{} sudo cat {file} \\\n  | sed 's#https://127.0.0.1:{KUBE_API_PORT}#https://{reg}:{KUBE_API_PORT}#' > kubeconfig.yaml\nexport KUBECONFIG=$PWD/kubeconfig.yaml\n",
        spec.nodes.ssh_user,
        host_for_url(ip)
    ))
}
