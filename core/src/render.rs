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

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bootstrap;
use crate::model::{Endpoint, Inventory, KubernetesEntry, Node};
use crate::spec::{Distribution, LbMode, Registration, ValidSpec, KUBE_API_PORT};

/// Where RKE2 reads the cluster's shared secret (`token-file`).
pub const RKE2_TOKEN_FILE: &str = "/etc/rancher/rke2/token";
/// The port RKE2 servers register with each other on.
pub const RKE2_SUPERVISOR_PORT: u16 = crate::spec::RKE2_SUPERVISOR_PORT;
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

/// The fixed registration address: the Rancher hostname when the balancer
/// carries the registration listeners (`load_balancer.registration = "balancer"`),
/// else node 1's private address; `None` for RKE (v1), which has none, or when
/// node 1 has no address yet.
pub fn registration_address(spec: &ValidSpec, nodes: &[Node]) -> Option<String> {
    if spec.kubernetes.distribution == Distribution::Rke {
        return None;
    }
    match spec.load_balancer.registration {
        Registration::Balancer => Some(bootstrap::registration_host(spec)),
        Registration::FirstNode => first_node(spec, nodes).map(|(_, ip)| host_for_url(ip)),
    }
}

/// The inventory's `kubernetes` entry: distribution, registration address, the URL
/// nodes join and the API server URL.
pub fn kubernetes_entry(spec: &ValidSpec, nodes: &[Node]) -> KubernetesEntry {
    let d = spec.kubernetes.distribution;
    let reg = registration_address(spec, nodes);
    KubernetesEntry {
        distribution: d,
        join_url: reg
            .as_ref()
            .map(|r| format!("https://{r}:{}", bootstrap::join_port(d))),
        server_url: reg.as_ref().map(|r| format!("https://{r}:{KUBE_API_PORT}")),
        registration_address: reg,
    }
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

/// The RKE2 or K3s `config.yaml` for the node `node_name`, for users who join the
/// nodes themselves (`kubernetes.install = false`).
///
/// `tls-san` holds the Rancher hostname and the balancer's endpoint (name or
/// addresses); `node-name` is the node; `cluster-cidr` / `service-cidr` the spec's;
/// every node but the first gets `server: https://<registration address>:9345`
/// (`:6443` for K3s), K3s's first node `cluster-init: true`. The join secret is
/// read from `token-file` (see [`bundle`], which writes it), so no secret appears
/// in this file.
pub fn node_config(spec: &ValidSpec, inventory: &Inventory, node_name: &str) -> String {
    let d = spec.kubernetes.distribution;
    let mut san = Vec::new();
    match &inventory.load_balancer.endpoint {
        Some(Endpoint::Hostname { name, .. }) => {
            san.push(name.trim_end_matches('.').to_ascii_lowercase());
        }
        Some(Endpoint::Ip { addresses }) => san.extend(addresses.iter().map(ToString::to_string)),
        None => {}
    }
    let reg = registration_address(spec, &inventory.nodes);
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

/// The Rancher chart's values that triad decides (`values.yaml`), named as the
/// chart names them. No proxy password: with one, `proxy` is left out and the
/// install command sets it from the `PROXY_PASSWORD` shell variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RancherValues {
    /// The Rancher hostname (cannot change later).
    pub hostname: String,
    /// Rancher replicas: the node count, at most 3.
    pub replicas: usize,
    /// The proxy URL, when it has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// NO_PROXY as one comma-separated string (no `\,` escaping in a values file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    /// `external` when TLS ends at the balancer (l7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The ingress's TLS source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<RancherIngress>,
    /// Trust the CA in the `tls-ca-additional` secret (a TLS-intercepting proxy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub additional_trusted_c_as: bool,
}

/// `ingress:` in [`RancherValues`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RancherIngress {
    /// `ingress.tls`.
    pub tls: RancherIngressTls,
}

/// `ingress.tls` in [`RancherValues`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RancherIngressTls {
    /// `rancher` (cert-manager issues Rancher's own), `letsEncrypt` or `secret`.
    pub source: String,
}

/// The Rancher chart's `values.yaml`.
pub fn rancher_values(spec: &ValidSpec, inventory: &Inventory) -> String {
    let values = RancherValues {
        hostname: spec.fqdn(),
        replicas: inventory.nodes.len().clamp(1, MAX_RANCHER_REPLICAS),
        proxy: spec
            .proxy
            .as_ref()
            .filter(|p| !p.http.has_password())
            .map(|p| p.http.expose().to_owned()),
        no_proxy: spec
            .proxy
            .as_ref()
            .map(|_| bootstrap::no_proxy(spec).join(",")),
        tls: inventory.tls_external.then(|| "external".to_owned()),
        ingress: (!inventory.tls_external).then(|| RancherIngress {
            tls: RancherIngressTls {
                source: "rancher".to_owned(),
            },
        }),
        additional_trusted_c_as: spec.proxy_ca().is_some(),
    };
    let mut out = String::from("# Rancher chart values, rendered by triad.\n");
    if spec.proxy.as_ref().is_some_and(|p| p.http.has_password()) {
        out.push_str("# proxy: set by install-rancher.sh from PROXY_PASSWORD (not stored here).\n");
    }
    out.push_str(&to_yaml(&values));
    out
}

/// The cert-manager install (Rancher's own certificate needs it), with the proxy
/// as the chart's `http_proxy` / `https_proxy` / `no_proxy` values, commas escaped
/// for `--set`.
pub fn cert_manager_install(spec: &ValidSpec) -> String {
    let mut flags = vec![
        "helm install cert-manager jetstack/cert-manager".to_owned(),
        "--namespace cert-manager --create-namespace".to_owned(),
        "--set crds.enabled=true".to_owned(),
    ];
    if let Some(proxy) = &spec.proxy {
        let url = helm_proxy_url(&proxy.http);
        let https = helm_proxy_url(proxy.https.as_ref().unwrap_or(&proxy.http));
        flags.push(format!("--set http_proxy=\"{url}\""));
        flags.push(format!("--set https_proxy=\"{https}\""));
        flags.push(format!("--set no_proxy=\"{}\"", helm_no_proxy_dq(spec)));
    }
    let mut out = String::from(
        "helm repo add jetstack https://charts.jetstack.io\nhelm repo update jetstack\n",
    );
    out.push_str(&flags.join(" \\\n  "));
    out.push('\n');
    out
}

/// A proxy URL for a double-quoted `--set` value, its password as
/// `${PROXY_PASSWORD}`.
fn helm_proxy_url(url: &crate::secret::ProxyUrl) -> String {
    // A marker no URL contains stands in for the password while the rest of the
    // URL is escaped; then it becomes the shell variable reference.
    const MARKER: &str = "\u{0}password\u{0}";
    shell_dq(&helm_escape(&url.with_password_replaced(MARKER)))
        .replace(MARKER, &format!("${{{PASSWORD_VAR}}}"))
}

fn helm_no_proxy_dq(spec: &ValidSpec) -> String {
    let v: Vec<String> = bootstrap::no_proxy(spec)
        .iter()
        .map(|e| shell_dq(&helm_escape(e)))
        .collect();
    v.join("\\,")
}

/// The command that fetches the kubeconfig from node 1 (over SSH, as
/// `nodes.ssh_user`) with its server rewritten from `127.0.0.1` to the
/// registration address.
pub fn kubeconfig_command(spec: &ValidSpec, inventory: &Inventory) -> Option<String> {
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

/// One file of the hand-over [`bundle`]. `Debug` shows the path only: some files
/// hold the join token or the proxy password.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Path relative to the bundle directory, `/`-separated.
    pub path: String,
    /// The file's text.
    pub contents: String,
    /// Whether the file holds a secret (written with mode 0600).
    pub secret: bool,
}

impl fmt::Debug for BundleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleFile")
            .field("path", &self.path)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("secret", &self.secret)
            .finish()
    }
}

/// The hand-over bundle: everything a user needs to go on from the infrastructure
/// to a running Rancher.
///
/// - `nodes/<name>/config.yaml` and, with a `[proxy]`, `nodes/<name>/<env file>`
///   (`rke2-server` or `k3s`, for `/etc/default/`) for RKE2 / K3s with
///   `install = false`; `token` (a fresh 256-bit random token) when the spec names
///   no token source;
/// - `registries.yaml` when `kubernetes.mirrors` is set;
/// - `rancher/values.yaml`, `rancher/install.sh` (cert-manager with the proxy, then
///   the Rancher chart), `rancher/tls-ca-additional.pem` with `proxy.ca_file`;
/// - `kubeconfig.sh` (fetch the kubeconfig from node 1, server rewritten to the
///   registration address);
/// - `cluster.yml` only for `distribution = "rke"`;
/// - `inventory.json` and `next-steps.txt`.
pub fn bundle(spec: &ValidSpec, inventory: &Inventory) -> Vec<BundleFile> {
    let d = spec.kubernetes.distribution;
    let file = |path: String, contents: String, secret: bool| BundleFile {
        path,
        contents,
        secret,
    };
    let mut out = vec![
        file("inventory.json".into(), inventory_json(inventory), false),
        file("next-steps.txt".into(), next_steps(spec, inventory), false),
    ];
    if d == Distribution::Rke {
        out.push(file(
            "cluster.yml".into(),
            rke_cluster_yml(spec, inventory),
            false,
        ));
    } else if !spec.kubernetes.install {
        for n in ordered_nodes(spec, inventory) {
            out.push(file(
                format!("nodes/{}/config.yaml", n.name),
                node_config(spec, inventory, &n.name),
                false,
            ));
            if let Some(env) = bootstrap::server_env_file(spec) {
                let name = bootstrap::server_env_path(d)
                    .rsplit('/')
                    .next()
                    .unwrap_or("env");
                out.push(file(format!("nodes/{}/{name}", n.name), env, true));
            }
        }
        if spec.kubernetes.token_env.is_none() && spec.kubernetes.token_file.is_none() {
            out.push(file("token".into(), format!("{}\n", random_token()), true));
        }
    }
    if d != Distribution::Rke {
        if let Some(reg) = bootstrap::registries_yaml(spec) {
            out.push(file("registries.yaml".into(), reg, false));
        }
    }
    out.push(file(
        "rancher/values.yaml".into(),
        rancher_values(spec, inventory),
        false,
    ));
    if let Some(pem) = spec.proxy_ca() {
        out.push(file(
            "rancher/tls-ca-additional.pem".into(),
            pem.to_owned(),
            false,
        ));
    }
    out.push(file(
        "rancher/install.sh".into(),
        rancher_install_script(spec, inventory),
        false,
    ));
    if let Some(cmd) = kubeconfig_command(spec, inventory) {
        out.push(file(
            "kubeconfig.sh".into(),
            format!(
                "#!/bin/sh\n# Fetch the kubeconfig from node 1, rendered by triad.\nset -eu\n{cmd}"
            ),
            false,
        ));
    }
    out
}

/// Write `files` under `dir` (created as needed); secret files get mode 0600. An
/// existing `token` is kept, so a second render into the same directory keeps the
/// cluster's token.
pub fn write_to(files: &[BundleFile], dir: &Path) -> std::io::Result<()> {
    for f in files {
        let path = dir.join(&f.path);
        if f.path == "token" && path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if f.secret { 0o600 } else { 0o644 });
        }
        use std::io::Write as _;
        opts.open(&path)?.write_all(f.contents.as_bytes())?;
    }
    Ok(())
}

/// 256 random bits from the operating system, as 64 hex digits.
fn random_token() -> String {
    let mut buf = [0u8; 32];
    // Without an OS random source nothing secure can be made: fail loudly.
    getrandom::getrandom(&mut buf).expect("the operating system's random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `rancher/install.sh`: cert-manager (unless TLS ends at the balancer), the
/// Rancher chart with `values.yaml`, and the proxy with its password from
/// `PROXY_PASSWORD`.
fn rancher_install_script(spec: &ValidSpec, inventory: &Inventory) -> String {
    let mut out = String::from(
        "#!/bin/sh\n# Install Rancher, rendered by triad. Run with KUBECONFIG set (see kubeconfig.sh).\nset -eu\ncd \"$(dirname \"$0\")\"\n",
    );
    if spec.proxy.as_ref().is_some_and(|p| p.http.has_password()) {
        let _ = writeln!(
            out,
            ": \"${{{PASSWORD_VAR}:?set and export {PASSWORD_VAR} (percent-encoded as in a URL)}}\""
        );
    }
    if spec.proxy_ca().is_some() {
        out.push_str(
            "kubectl create namespace cattle-system --dry-run=client -o yaml | kubectl apply -f -\n\
             kubectl -n cattle-system create secret generic tls-ca-additional --from-file=ca-additional.pem=tls-ca-additional.pem --dry-run=client -o yaml | kubectl apply -f -\n",
        );
    }
    if !inventory.tls_external {
        out.push_str(&cert_manager_install(spec));
    }
    out.push_str("helm repo add rancher-stable https://releases.rancher.com/server-charts/stable\nhelm repo update rancher-stable\n");
    let mut flags = vec![
        "helm install rancher rancher-stable/rancher".to_owned(),
        "--namespace cattle-system --create-namespace".to_owned(),
        "-f values.yaml".to_owned(),
    ];
    if let Some(p) = spec.proxy.as_ref().filter(|p| p.http.has_password()) {
        flags.push(format!("--set proxy=\"{}\"", helm_proxy_url(&p.http)));
    }
    out.push_str(&flags.join(" \\\n  "));
    out.push('\n');
    out
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
        flags.push(format!("--set proxy=\"{}\"", helm_proxy_url(&proxy.http)));
        flags.push(format!("--set noProxy=\"{}\"", helm_no_proxy_dq(spec)));
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
            let reg = registration_address(spec, &inventory.nodes).unwrap_or_default();
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
            created_ms: None,
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
                labels: Default::default(),
                partial_targets: Vec::new(),
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
            kubernetes: None,
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

    fn spec_with(extra: &str) -> ValidSpec {
        let text = format!(
            "name = \"rancher\"\nregion = \"us-east-1\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n{extra}"
        );
        ClusterSpec::from_toml(&text).unwrap().validate().unwrap()
    }

    fn config(text: &str) -> bootstrap::KubeConfig {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn rke2_others_join_through_the_registration_address() {
        let s = spec(LbMode::L4, false);
        let inv = inventory(LbMode::L4, name_endpoint());
        let text = node_config(&s, &inv, "rancher-2");
        let c = config(&text);
        assert_eq!(
            c.server.as_deref(),
            Some("https://rancher.example.com:9345")
        );
        assert_eq!(c.node_name, "rancher-2");
        assert_eq!(c.token_file.as_deref(), Some("/etc/rancher/rke2/token"));
        assert_eq!(c.token, None);
        assert_eq!(
            c.tls_san,
            [
                "rancher.example.com",
                "rancher-lb-123.elb.us-east-1.amazonaws.com"
            ]
        );
        assert_eq!(c.cluster_cidr, "10.42.0.0/16");
        assert_eq!(c.service_cidr, "10.43.0.0/16");
        assert_eq!(c.ingress_controller.as_deref(), Some("ingress-nginx"));
        assert!(text.contains("same join token in /etc/rancher/rke2/token on every node"));
        let first = config(&node_config(&s, &inv, "rancher-1"));
        assert_eq!(first.server, None, "the first node starts the cluster");
        assert_eq!(first.cluster_init, None, "RKE2 has no cluster-init");
    }

    #[test]
    fn first_node_registration_uses_node_one_ipv6() {
        let s = spec_with("[load_balancer]\nregistration = \"first-node\"\n");
        let mut inv = inventory(LbMode::L4, ip_endpoint());
        inv.nodes[1].private_ip = Some("fd00::1".parse().unwrap()); // rancher-1
        let c = config(&node_config(&s, &inv, "rancher-3"));
        assert_eq!(c.tls_san, ["rancher.example.com", "203.0.113.10"]);
        assert_eq!(c.server.as_deref(), Some("https://[fd00::1]:9345"));
        let k = kubernetes_entry(&s, &inv.nodes);
        assert_eq!(k.registration_address.as_deref(), Some("[fd00::1]"));
        assert_eq!(k.server_url.as_deref(), Some("https://[fd00::1]:6443"));
    }

    #[test]
    fn k3s_cluster_init_port_6443_and_traefik() {
        let s = spec_with("[kubernetes]\ndistribution = \"k3s\"\n");
        let inv = inventory(LbMode::L4, ip_endpoint());
        let first = config(&node_config(&s, &inv, "rancher-1"));
        assert_eq!(first.cluster_init, Some(true));
        assert_eq!(first.token_file.as_deref(), Some("/etc/rancher/k3s/token"));
        assert!(first.disable.is_empty(), "traefik is K3s's default ingress");
        let other = config(&node_config(&s, &inv, "rancher-2"));
        assert_eq!(
            other.server.as_deref(),
            Some("https://rancher.example.com:6443")
        );
        assert_eq!(other.cluster_init, None);
        assert_eq!(s.health_check_path(), "/ping");
        assert_eq!(s.registration_ports(), [6443]);
        let nginx = spec_with("[kubernetes]\ndistribution = \"k3s\"\ningress = \"nginx\"\n");
        assert_eq!(
            config(&node_config(&nginx, &inv, "rancher-1")).disable,
            ["traefik"]
        );
        assert_eq!(nginx.health_check_path(), "/healthz");
    }

    #[test]
    fn bundle_files_per_distribution() {
        let inv = inventory(LbMode::L4, ip_endpoint());
        let paths = |s: &ValidSpec| -> Vec<String> {
            bundle(s, &inv).into_iter().map(|f| f.path).collect()
        };
        let rke2 = spec_with("[proxy]\nhttp = \"http://proxy.corp:3128\"\n[kubernetes]\nmirrors = { \"docker.io\" = [\"https://mirror.corp:5000\"] }\n");
        let p = paths(&rke2);
        for want in [
            "nodes/rancher-1/config.yaml",
            "nodes/rancher-3/rke2-server",
            "token",
            "registries.yaml",
            "rancher/values.yaml",
            "rancher/install.sh",
            "kubeconfig.sh",
            "inventory.json",
            "next-steps.txt",
        ] {
            assert!(p.iter().any(|x| x == want), "{want} missing from {p:?}");
        }
        assert!(!p.iter().any(|x| x == "cluster.yml"));
        let rke = spec_with("[kubernetes]\ndistribution = \"rke\"\n");
        let p = paths(&rke);
        assert!(p.iter().any(|x| x == "cluster.yml"));
        assert!(!p
            .iter()
            .any(|x| x.starts_with("nodes/") || x == "kubeconfig.sh"));
        assert!(rke.registration_ports().is_empty());
    }

    #[test]
    fn bundle_token_is_random_and_kept_on_disk() {
        let s = spec_with("");
        let inv = inventory(LbMode::L4, ip_endpoint());
        let token = |b: &[BundleFile]| {
            b.iter()
                .find(|f| f.path == "token")
                .unwrap()
                .contents
                .clone()
        };
        let (a, b) = (bundle(&s, &inv), bundle(&s, &inv));
        assert_ne!(token(&a), token(&b));
        let t = token(&a);
        assert_eq!(t.trim().len(), 64);
        assert!(t.trim().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains(t.trim()), "Debug hides contents");
        let dir = std::env::temp_dir().join(format!("triad-bundle-{}", std::process::id()));
        write_to(&a, &dir).unwrap();
        write_to(&b, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("token")).unwrap(), t);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn values_yaml_round_trips_and_hides_the_password() {
        let s = spec(LbMode::L4, true);
        let text = rancher_values(&s, &inventory(LbMode::L4, ip_endpoint()));
        assert!(!text.contains(PASSWORD));
        let v: RancherValues = serde_norway::from_str(&text).unwrap();
        assert_eq!(v.hostname, "rancher.example.com");
        assert_eq!(v.replicas, 3);
        assert_eq!(
            v.proxy, None,
            "a password-carrying proxy is set on the command line"
        );
        assert_eq!(
            v.no_proxy.as_deref(),
            Some(bootstrap::no_proxy(&s).join(",").as_str())
        );
        assert_eq!(v.tls, None);
        assert_eq!(v.ingress.unwrap().tls.source, "rancher");
        let l7 = spec(LbMode::L7, false);
        let v: RancherValues = serde_norway::from_str(&rancher_values(
            &l7,
            &inventory(LbMode::L7, name_endpoint()),
        ))
        .unwrap();
        assert_eq!(v.tls.as_deref(), Some("external"));
        assert_eq!(v.ingress, None);
        assert_eq!(v.proxy, None);
        // Unknown keys fail: the struct mirrors the chart's values.
        assert!(
            serde_norway::from_str::<RancherValues>("hostname: a\nreplicas: 1\nbogus: 1\n")
                .is_err()
        );
        let open = spec_with("[proxy]\nhttp = \"http://proxy.corp:3128\"\n");
        let v: RancherValues = serde_norway::from_str(&rancher_values(
            &open,
            &inventory(LbMode::L4, ip_endpoint()),
        ))
        .unwrap();
        assert_eq!(v.proxy.as_deref(), Some("http://proxy.corp:3128"));
    }

    #[test]
    fn cert_manager_gets_the_proxy_with_escaped_commas() {
        let s = spec(LbMode::L4, true);
        let text = cert_manager_install(&s);
        assert!(!text.contains(PASSWORD));
        assert!(text.contains("--set http_proxy=\"http://ops:${PROXY_PASSWORD}@proxy.corp:3128\""));
        assert!(
            text.contains(r#"--set no_proxy="127.0.0.0/8\,10.0.0.0/8\,"#),
            "{text}"
        );
    }

    #[test]
    fn kubeconfig_command_rewrites_the_server() {
        let s = spec(LbMode::L4, false);
        let cmd = kubeconfig_command(&s, &inventory(LbMode::L4, ip_endpoint())).unwrap();
        assert!(
            cmd.starts_with("ssh admin@10.0.1.10 sudo cat /etc/rancher/rke2/rke2.yaml"),
            "{cmd}"
        );
        assert!(cmd.contains("s#https://127.0.0.1:6443#https://rancher.example.com:6443#"));
    }

    #[test]
    fn helm_no_proxy_escapes_commas() {
        let s = spec(LbMode::L4, true);
        let v = helm_no_proxy(&s);
        assert_eq!(
            v,
            r"127.0.0.0/8\,10.0.0.0/8\,cattle-system.svc\,172.16.0.0/12\,192.168.0.0/16\,.svc\,.cluster.local\,localhost\,rancher-1\,rancher-2\,rancher-3\,rancher.example.com\,10.42.0.0/16\,10.43.0.0/16\,corp.example"
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
            "    node-name: rancher-1",
            "https://rancher.example.com:6443#",
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
