//! The human summary of what was built and what to do next (`next-steps.txt`).

use std::fmt::Write as _;

use super::{
    first_node, helm_install, indent, join_address, kubeconfig_command, node_config, one_line,
    ordered_nodes, rke_cluster_yml, token_path,
};
use crate::bootstrap;
use crate::model::Inventory;
use crate::spec::{Distribution, LbMode, ValidSpec};

/// A human summary of what was built and what to do next: the Rancher URL, the
/// DNS record, the balancer, the nodes (name, zone, private IP), the RKE
/// `cluster.yml` and the Helm command, each with a one-line explanation.
pub fn next_steps(spec: &ValidSpec, inventory: &Inventory) -> String {
    // The registration address an l7 balancer serves apart (see `with_registration_of`).
    let spec = &spec.with_registration_of(&inventory.load_balancer);
    let mut out = String::new();
    let lb = &inventory.load_balancer;
    let dns = &inventory.dns;
    let _ = writeln!(
        out,
        "Infrastructure for Rancher cluster `{}` in {} is ready.\n",
        one_line(&inventory.cluster),
        one_line(&inventory.region)
    );
    let _ = writeln!(out, "Rancher URL:   {}", one_line(&inventory.rancher_url));
    let ttl = dns.ttl.map(|t| format!(", TTL {t}s")).unwrap_or_default();
    let _ = writeln!(
        out,
        "DNS record:    {} {} {} (zone {}{ttl})",
        one_line(&dns.fqdn),
        dns.kind,
        one_line(&dns.target.to_string()),
        one_line(&dns.zone)
    );
    let mode = match lb.mode {
        LbMode::L4 => "layer 4, TCP 80/443 passed through to the nodes",
        LbMode::L7 => "layer 7, TLS terminated at the balancer",
    };
    let endpoint = lb.endpoint.as_ref().map_or_else(
        || "(no endpoint yet)".to_owned(),
        |e| one_line(&e.to_string()),
    );
    let _ = writeln!(
        out,
        "Load balancer: {} ({mode}, {}) at {endpoint}",
        one_line(&lb.name),
        lb.scheme
    );
    out.push_str("               Keep it for Rancher alone: other apps' ingress reloads break Rancher's websockets.\n");

    out.push_str("\nNodes:\n");
    let nodes = ordered_nodes(spec, inventory);
    let rows: Vec<[String; 3]> = nodes
        .iter()
        .map(|n| {
            [
                one_line(&n.name),
                one_line(&n.zone),
                n.private_ip
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            ]
        })
        .collect();
    let header = [
        "NAME".to_owned(),
        "ZONE".to_owned(),
        "PRIVATE IP".to_owned(),
    ];
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    for r in std::iter::once(&header).chain(rows.iter()) {
        let _ = writeln!(out, "  {:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
    }

    let d = spec.kubernetes.distribution;
    let kubeconfig_hint = match d {
        Distribution::Rke => {
            out.push_str(
                "\n1. Install Kubernetes with RKE (end of life since 31 July 2025; see docs/kubernetes.md\n   \
                 to move to RKE2): save this as cluster.yml and run `rke up --config cluster.yml`\n   \
                 from a host that reaches the nodes over SSH.\n\n",
            );
            out.push_str(&indent(&rke_cluster_yml(spec, inventory), 4));
            "the kubeconfig RKE wrote, kube_config_cluster.yml"
        }
        _ if spec.kubernetes.install => {
            let reg = join_address(spec, &inventory.nodes).unwrap_or_default();
            let _ = writeln!(
                out,
                "\n1. The nodes install {d} themselves (cloud-init, through the proxy); node 1 starts the\n   \
                 cluster and the others join https://{reg}:{}. Once they are up, fetch the kubeconfig:\n",
                bootstrap::join_port(d)
            );
            if let Some(cmd) = kubeconfig_command(spec, inventory) {
                out.push_str(&indent(&cmd, 4));
            }
            "kubeconfig.yaml"
        }
        _ => {
            let _ = writeln!(
                out,
                "\n1. Install {d}: on every node put its config.yaml in {} and the join token in {},\n   \
                 then run the official installer{} (`--out DIR` writes every file).\n   \
                 Node 1's config:\n",
                bootstrap::kube_config_path(d),
                token_path(d),
                if spec.proxy.is_some() {
                    format!(" with the environment of {} (already on the nodes)", bootstrap::server_env_path(d))
                } else {
                    String::new()
                }
            );
            if let Some((n, _)) = first_node(spec, &inventory.nodes) {
                out.push_str(&indent(&node_config(spec, inventory, &n.name), 4));
            }
            if let Some(cmd) = kubeconfig_command(spec, inventory) {
                out.push_str("\n   Then fetch the kubeconfig:\n\n");
                out.push_str(&indent(&cmd, 4));
            }
            "kubeconfig.yaml"
        }
    };

    let _ = writeln!(
        out,
        "\n2. Install Rancher with Helm (with {kubeconfig_hint}):\n"
    );
    out.push_str(&indent(
        "helm repo add rancher-stable https://releases.rancher.com/server-charts/stable\n\
         kubectl create namespace cattle-system\n",
        4,
    ));
    out.push_str(&indent(&helm_install(spec, inventory), 4));
    out.push('\n');
    if inventory.tls_external {
        out.push_str(
            "   tls=external: the balancer terminates TLS and forwards plain HTTP, so Rancher\n   \
             must not serve its own certificate; the ingress trusts the balancer's\n   \
             X-Forwarded-* headers.\n",
        );
    } else {
        out.push_str(
            "   The balancer passes TLS through, so the cluster's ingress serves Rancher's\n   \
             certificate: install cert-manager first for Rancher's own certificate, or add\n   \
             --set ingress.tls.source=secret to bring your own.\n",
        );
    }
    if spec.proxy.is_some() {
        out.push_str(
            "   The nodes already use the proxy (their user data set it up); proxy and\n   \
             noProxy give Rancher the same settings. Since Rancher 2.6.4 the proxy must\n   \
             also allow ports 22 and 2376 for node drivers.\n",
        );
    }
    out
}
