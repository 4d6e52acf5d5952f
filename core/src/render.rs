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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::bootstrap;
use crate::model::{Endpoint, Inventory, Node};
use crate::spec::{LbMode, ValidSpec};

/// Where RKE2 reads the cluster's shared secret (`token-file`).
pub const RKE2_TOKEN_FILE: &str = "/etc/rancher/rke2/token";
/// The port RKE2 servers register with each other on.
pub const RKE2_SUPERVISOR_PORT: u16 = 9345;
/// Most Rancher replicas worth running: Rancher's chart recommends 3.
pub const MAX_RANCHER_REPLICAS: usize = 3;

/// The shell variable the rendered Helm command expects the proxy password in.
const PASSWORD_VAR: &str = "PROXY_PASSWORD";

/// The inventory as pretty-printed JSON (its serde form), ending in a newline.
///
/// ```
/// # use triad_core::model::*;
/// # use triad_core::spec::{LbMode, LbScheme};
/// # let inventory = Inventory {
/// #     cluster: "rancher".into(), region: "r".into(), nodes: vec![],
/// #     load_balancer: LoadBalancer { id: "lb".into(), name: "lb".into(), mode: LbMode::L4,
/// #         scheme: LbScheme::InternetFacing, state: LbState::Active, endpoint: None,
/// #         listeners: vec![], targets: vec![] },
/// #     dns: DnsEntry { fqdn: "rancher.example.com".into(), zone: "example.com".into(),
/// #         kind: RecordKind::A, target: Endpoint::Ip { addresses: vec![] }, ttl: Some(60) },
/// #     rancher_url: "https://rancher.example.com".into(), tls_external: false,
/// #     providers: Providers { nodes: "sim".into(), load_balancer: "sim".into(), dns: "sim".into() },
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

/// `/etc/rancher/rke2/config.yaml` for the node `node_name`.
///
/// `tls-san` holds the Rancher hostname, and the balancer's hostname when its
/// endpoint is a name; `node-name` is the node; every node but the first gets
/// `server: https://<first node's private IP>:9345`. The join secret is read from
/// `token-file: /etc/rancher/rke2/token` — a leading comment tells the user to
/// put the same secret there on every node — so no secret and no placeholder
/// appears in the file.
pub fn rke2_config(spec: &ValidSpec, inventory: &Inventory, node_name: &str) -> String {
    let nodes = ordered_nodes(spec, inventory);
    let first = nodes.iter().find_map(|n| n.private_ip.map(|ip| (n, ip)));
    let server = match first {
        Some((n, ip)) if n.name != node_name => Some(format!(
            "https://{}:{RKE2_SUPERVISOR_PORT}",
            host_for_url(ip)
        )),
        _ => None,
    };
    let mut tls_san = vec![spec.fqdn()];
    if let Some(Endpoint::Hostname { name, .. }) = &inventory.load_balancer.endpoint {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !tls_san.contains(&name) {
            tls_san.push(name);
        }
    }
    let doc = Rke2Config {
        node_name,
        server,
        token_file: RKE2_TOKEN_FILE,
        tls_san,
    };
    let mut out = format!(
        "# /etc/rancher/rke2/config.yaml for `{}`, rendered by triad.\n\
         # Put the same secret in {RKE2_TOKEN_FILE} on every node (mode 0600) before\n\
         # starting rke2-server, e.g. generate it once with `openssl rand -hex 32`.\n",
        one_line(node_name)
    );
    match first {
        None => out.push_str(
            "# No node has a private IP yet: render this again once they do, or every\n\
             # node would start a cluster of its own.\n",
        ),
        Some((n, _)) if n.name == node_name => {
            out.push_str("# This is the first server; the others join it.\n");
        }
        Some(_) => {}
    }
    out.push_str(&to_yaml(&doc));
    out
}

#[derive(Serialize)]
struct Rke2Config<'a> {
    #[serde(rename = "node-name")]
    node_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(rename = "token-file")]
    token_file: &'static str,
    #[serde(rename = "tls-san")]
    tls_san: Vec<String>,
}

/// Rancher's Helm `noProxy` value: [`bootstrap::no_proxy`] joined with `\,`, the
/// comma escaped as `helm --set` requires.
///
/// ```
/// use triad_core::spec::ClusterSpec;
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
/// "#).unwrap().validate().unwrap();
/// assert!(triad_core::render::helm_no_proxy(&spec)
///     .starts_with(r"127.0.0.0/8\,10.0.0.0/8\,cattle-system.svc\,"));
/// ```
pub fn helm_no_proxy(spec: &ValidSpec) -> String {
    bootstrap::no_proxy(spec)
        .iter()
        .map(|e| helm_escape(e))
        .collect::<Vec<_>>()
        .join("\\,")
}

/// The `helm install rancher …` command, one flag per line with ` \`
/// continuations: namespace `cattle-system`, `hostname`, `replicas` (the node
/// count, at most 3), and with a proxy `proxy` and `noProxy`; `tls=external` when
/// TLS ends at the balancer (l7).
///
/// A proxy password is never printed: the URL carries `${PROXY_PASSWORD}` inside
/// double quotes, so the shell substitutes it, and a comment above the command
/// tells the user to set and export that variable first.
pub fn helm_install(spec: &ValidSpec, inventory: &Inventory) -> String {
    let replicas = inventory.nodes.len().clamp(1, MAX_RANCHER_REPLICAS);
    let mut out = String::new();
    let mut flags = vec![
        "helm install rancher rancher-stable/rancher".to_owned(),
        "--namespace cattle-system".to_owned(),
        format!("--set hostname={}", spec.fqdn()),
        format!("--set replicas={replicas}"),
    ];
    if let Some(proxy) = &spec.proxy {
        if proxy.http.has_password() {
            let _ = writeln!(
                out,
                "# The proxy password is not shown: set it first, e.g. `read -rs {PASSWORD_VAR} && export {PASSWORD_VAR}`\n\
                 # (percent-encoded as in a URL; write a comma as %2C)."
            );
        }
        // A marker no URL contains stands in for the password while the rest of the
        // URL is escaped; then it becomes the shell variable reference.
        const MARKER: &str = "\u{0}password\u{0}";
        let url = shell_dq(&helm_escape(&proxy.http.with_password_replaced(MARKER)))
            .replace(MARKER, &format!("${{{PASSWORD_VAR}}}"));
        flags.push(format!("--set proxy=\"{url}\""));
        let no_proxy: Vec<String> = bootstrap::no_proxy(spec)
            .iter()
            .map(|e| shell_dq(&helm_escape(e)))
            .collect();
        flags.push(format!("--set noProxy=\"{}\"", no_proxy.join("\\,")));
    }
    if inventory.tls_external {
        flags.push("--set tls=external".to_owned());
    }
    out.push_str(&flags.join(" \\\n  "));
    out.push('\n');
    out
}

/// A human summary of what was built and what to do next: the Rancher URL, the
/// DNS record, the balancer, the nodes (name, zone, private IP), the RKE
/// `cluster.yml` and the Helm command, each with a one-line explanation.
pub fn next_steps(spec: &ValidSpec, inventory: &Inventory) -> String {
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

    out.push_str(
        "\n1. Install Kubernetes with RKE: save this as cluster.yml and run\n   \
         `rke up --config cluster.yml` from a host that reaches the nodes over SSH.\n\n",
    );
    out.push_str(&indent(&rke_cluster_yml(spec, inventory), 4));

    out.push_str("\n2. Install Rancher with Helm (with the kubeconfig RKE wrote, kube_config_cluster.yml):\n\n");
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
             X-Forwarded-* headers (use-forwarded-headers in cluster.yml).\n",
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

/// Escape a `helm --set` value: `\` and `,` get a backslash.
fn helm_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escape for inside shell double quotes: `"`, `$` and `` ` `` always; `\` only
/// where the shell would otherwise consume it (before one of `"$\`` ` `` and at the
/// end), so helm's `\,` survives unchanged.
fn shell_dq(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let chars: Vec<char> = v.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '"' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => {
                let next = chars.get(i + 1);
                if matches!(next, None | Some('"' | '$' | '`' | '\\' | '\n')) {
                    out.push_str("\\\\");
                } else {
                    out.push('\\');
                }
            }
            c => out.push(c),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DnsEntry, LbState, LoadBalancer, NodeState, Providers, RecordKind};
    use crate::spec::{ClusterSpec, LbScheme};

    const PASSWORD: &str = "s3cr3t-Pw";

    fn spec(mode: LbMode, proxy: bool) -> ValidSpec {
        let mut text = String::from(
            "name = \"rancher\"\nregion = \"us-east-1\"\n[nodes]\nssh_user = \"admin\"\n[dns]\nzone = \"example.com\"\nhostname = \"Rancher.Example.com.\"\n",
        );
        if mode == LbMode::L7 {
            text.push_str("[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:cert\"\n");
        }
        if proxy {
            text.push_str(&format!(
                "[proxy]\nhttp = \"http://ops:{PASSWORD}@proxy.corp:3128\"\nno_proxy = [\"corp.example\"]\n"
            ));
        }
        ClusterSpec::from_toml(&text).unwrap().validate().unwrap()
    }

    fn node(n: u8, zone: &str) -> Node {
        Node {
            id: format!("i-{n}"),
            name: format!("rancher-{n}"),
            zone: zone.into(),
            state: NodeState::Running,
            private_ip: Some(format!("10.0.{n}.10").parse().unwrap()),
            public_ip: None,
            ssh: None,
            labels: BTreeMap::new(),
        }
    }

    fn inventory(mode: LbMode, endpoint: Endpoint) -> Inventory {
        // Deliberately not in name order: renderers order by the spec.
        let nodes = vec![
            node(2, "us-east-1b"),
            node(1, "us-east-1a"),
            node(3, "us-east-1c"),
        ];
        let kind = match endpoint {
            Endpoint::Ip { .. } => RecordKind::A,
            Endpoint::Hostname { .. } => RecordKind::Cname,
        };
        Inventory {
            cluster: "rancher".into(),
            region: "us-east-1".into(),
            load_balancer: LoadBalancer {
                id: "lb-1".into(),
                name: "rancher-lb".into(),
                mode,
                scheme: LbScheme::InternetFacing,
                state: LbState::Active,
                endpoint: Some(endpoint.clone()),
                listeners: vec![],
                targets: nodes.iter().map(|n| n.id.clone()).collect(),
            },
            nodes,
            dns: DnsEntry {
                fqdn: "rancher.example.com".into(),
                zone: "example.com".into(),
                kind,
                target: endpoint,
                ttl: Some(60),
            },
            rancher_url: "https://rancher.example.com".into(),
            tls_external: mode == LbMode::L7,
            providers: Providers {
                nodes: "sim".into(),
                load_balancer: "sim".into(),
                dns: "sim".into(),
            },
        }
    }

    fn ip_endpoint() -> Endpoint {
        Endpoint::Ip {
            addresses: vec!["203.0.113.10".parse().unwrap()],
        }
    }

    fn name_endpoint() -> Endpoint {
        Endpoint::Hostname {
            name: "rancher-lb-123.elb.us-east-1.amazonaws.com".into(),
            alias_zone: Some("Z35SXDOTRQ7X7K".into()),
        }
    }

    fn yaml(text: &str) -> serde_norway::Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn inventory_json_round_trips() {
        let inv = inventory(LbMode::L7, name_endpoint());
        let json = inventory_json(&inv);
        assert!(
            json.contains("\n  \"cluster\": \"rancher\""),
            "pretty: {json}"
        );
        assert_eq!(serde_json::from_str::<Inventory>(&json).unwrap(), inv);
    }

    #[test]
    fn cluster_yml_has_every_node() {
        for (mode, ep) in [(LbMode::L4, ip_endpoint()), (LbMode::L7, name_endpoint())] {
            let s = spec(mode, true);
            let text = rke_cluster_yml(&s, &inventory(mode, ep));
            assert!(text.starts_with("# RKE cluster.yml"));
            let doc = yaml(&text);
            let nodes = doc["nodes"].as_sequence().unwrap();
            assert_eq!(nodes.len(), 3);
            for (i, n) in nodes.iter().enumerate() {
                let ip = format!("10.0.{}.10", i + 1);
                assert_eq!(n["address"].as_str(), Some(ip.as_str()));
                assert_eq!(n["internal_address"].as_str(), Some(ip.as_str()));
                assert_eq!(
                    n["hostname_override"].as_str(),
                    Some(format!("rancher-{}", i + 1).as_str())
                );
                assert_eq!(n["user"].as_str(), Some("admin"));
                assert_eq!(n["role"], yaml("[controlplane, etcd, worker]"));
            }
            assert_eq!(doc["ingress"]["provider"].as_str(), Some("nginx"));
            let forwarded = doc["ingress"]["options"]["use-forwarded-headers"].as_str();
            match mode {
                LbMode::L4 => assert_eq!(forwarded, None),
                LbMode::L7 => assert_eq!(forwarded, Some("true")),
            }
            assert!(!text.contains(PASSWORD));
        }
    }

    #[test]
    fn cluster_yml_leaves_out_nodes_without_ip() {
        let s = spec(LbMode::L4, false);
        let mut inv = inventory(LbMode::L4, ip_endpoint());
        inv.nodes[0].private_ip = None; // rancher-2
        let text = rke_cluster_yml(&s, &inv);
        assert!(text.contains("# Left out (no private IP yet): rancher-2\n"));
        assert_eq!(yaml(&text)["nodes"].as_sequence().unwrap().len(), 2);
    }

    #[test]
    fn rke2_second_node_joins_first() {
        let s = spec(LbMode::L4, false);
        let inv = inventory(LbMode::L4, name_endpoint());
        let text = rke2_config(&s, &inv, "rancher-2");
        let doc = yaml(&text);
        assert_eq!(doc["server"].as_str(), Some("https://10.0.1.10:9345"));
        assert_eq!(doc["node-name"].as_str(), Some("rancher-2"));
        assert_eq!(doc["token-file"].as_str(), Some("/etc/rancher/rke2/token"));
        assert!(doc.get("token").is_none());
        assert_eq!(
            doc["tls-san"],
            yaml("[rancher.example.com, rancher-lb-123.elb.us-east-1.amazonaws.com]")
        );
        assert!(text.contains("same secret in /etc/rancher/rke2/token on every node"));

        let first = yaml(&rke2_config(&s, &inv, "rancher-1"));
        assert!(
            first.get("server").is_none(),
            "the first node starts the cluster"
        );
    }

    #[test]
    fn rke2_ip_endpoint_and_ipv6_first_node() {
        let s = spec(LbMode::L4, false);
        let mut inv = inventory(LbMode::L4, ip_endpoint());
        inv.nodes[1].private_ip = Some("fd00::1".parse().unwrap()); // rancher-1
        let doc = yaml(&rke2_config(&s, &inv, "rancher-3"));
        assert_eq!(doc["tls-san"], yaml("[rancher.example.com]"));
        assert_eq!(doc["server"].as_str(), Some("https://[fd00::1]:9345"));
    }

    #[test]
    fn helm_no_proxy_escapes_commas() {
        let s = spec(LbMode::L4, true);
        let v = helm_no_proxy(&s);
        assert_eq!(
            v,
            r"127.0.0.0/8\,10.0.0.0/8\,cattle-system.svc\,172.16.0.0/12\,192.168.0.0/16\,.svc\,.cluster.local\,localhost\,rancher-1\,rancher-2\,rancher-3\,corp.example"
        );
    }

    #[test]
    fn helm_l4_with_proxy() {
        let s = spec(LbMode::L4, true);
        let text = helm_install(&s, &inventory(LbMode::L4, ip_endpoint()));
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains("tls=external"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with('#') && lines[0].contains("export PROXY_PASSWORD"));
        assert_eq!(
            &lines[2..],
            &[
                "helm install rancher rancher-stable/rancher \\",
                "  --namespace cattle-system \\",
                "  --set hostname=rancher.example.com \\",
                "  --set replicas=3 \\",
                "  --set proxy=\"http://ops:${PROXY_PASSWORD}@proxy.corp:3128\" \\",
                &format!("  --set noProxy=\"{}\"", helm_no_proxy(&s)),
            ]
        );
    }

    #[test]
    fn helm_l7_without_proxy() {
        let s = spec(LbMode::L7, false);
        let text = helm_install(&s, &inventory(LbMode::L7, name_endpoint()));
        assert_eq!(
            text,
            "helm install rancher rancher-stable/rancher \\\n  --namespace cattle-system \\\n  \
             --set hostname=rancher.example.com \\\n  --set replicas=3 \\\n  --set tls=external\n"
        );
    }

    #[test]
    fn helm_proxy_without_password_needs_no_variable() {
        let text = "name = \"r\"\nregion = \"x\"\n[proxy]\nhttp = \"http://proxy.corp:3128\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n";
        let s = ClusterSpec::from_toml(text).unwrap().validate().unwrap();
        let mut inv = inventory(LbMode::L4, ip_endpoint());
        inv.nodes.truncate(1);
        let out = helm_install(&s, &inv);
        assert!(out.starts_with("helm install"), "{out}");
        assert!(out.contains("--set proxy=\"http://proxy.corp:3128\""));
        assert!(out.contains("--set replicas=1"));
        assert!(!out.contains("PROXY_PASSWORD"));
    }

    #[test]
    fn escaping_helpers() {
        assert_eq!(helm_escape(r"a,b\c"), r"a\,b\\c");
        assert_eq!(shell_dq(r#"a\,b"c$d`e\\f\"#), r#"a\,b\"c\$d\`e\\\f\\"#);
    }

    #[test]
    fn next_steps_l7_says_why_tls_external() {
        let s = spec(LbMode::L7, true);
        let inv = inventory(LbMode::L7, name_endpoint());
        let text = next_steps(&s, &inv);
        assert!(!text.contains(PASSWORD), "{text}");
        for want in [
            "Rancher URL:   https://rancher.example.com",
            "DNS record:    rancher.example.com CNAME rancher-lb-123.elb.us-east-1.amazonaws.com",
            "rancher-lb-123.elb.us-east-1.amazonaws.com",
            "layer 7",
            "tls=external: the balancer terminates TLS",
            "    --set tls=external",
            "    nodes:",
            "ports 22 and 2376",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // The node table, in node order, with zones and addresses.
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  rancher-"))
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].contains("us-east-1a") && rows[0].ends_with("10.0.1.10"));
        assert!(rows[2].contains("us-east-1c") && rows[2].ends_with("10.0.3.10"));
    }

    #[test]
    fn next_steps_l4_mentions_cert_manager_not_tls_external() {
        let s = spec(LbMode::L4, false);
        let text = next_steps(&s, &inventory(LbMode::L4, ip_endpoint()));
        assert!(text.contains("DNS record:    rancher.example.com A 203.0.113.10"));
        assert!(text.contains("cert-manager"));
        assert!(!text.contains("tls=external"));
        assert!(!text.contains("proxy"));
    }
}
