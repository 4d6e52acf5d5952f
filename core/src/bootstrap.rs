//! cloud-init user data for the nodes: hostname, SSH keys and — when the spec has a
//! `[proxy]` — the HTTP proxy written into every place that needs it on a Rancher
//! node (login sessions, apt, Docker, containerd, RKE2 and K3s).
//!
//! # Literal values
//!
//! Rancher's published snippets wrap the proxy files in quoted heredocs
//! (`<<'EOF'`), which writes `${proxy_host}` into the file instead of the proxy's
//! address. The files here hold the literal proxy URL and NO_PROXY list, and the
//! document is produced by serialising Rust structs with `serde_norway`, so YAML
//! quoting is always right whatever the values contain.
//!
//! Each file format has its own escaping, applied here:
//!
//! - the proxy URL is first made safe for every format by percent-encoding the
//!   characters that would need quoting in one of them (`"`, `'`, `` ` ``, `\`,
//!   `$`, spaces and control characters). In a URL's user information a
//!   percent-encoded character means the same as the raw one, so the proxy still
//!   receives the same user name and password;
//! - systemd unit files (`Environment=` in the Docker and containerd drop-ins)
//!   expand `%` specifiers, so `%` is written as `%%` there — a password holding a
//!   percent-encoded character such as `%40` would otherwise break the unit;
//! - environment files (`/etc/default/rke2-server`, …) are double-quoted with `\`,
//!   `"`, `$` and `` ` `` backslash-escaped, which systemd's `EnvironmentFile=` and
//!   a POSIX shell both read the same way.
//!
//! # The proxy password is in the user data
//!
//! When the proxy URL carries a password, the user data carries it too: the nodes
//! must authenticate to the proxy before they can install anything, and cloud-init
//! user data is the only channel a freshly booted node has. This is unavoidable,
//! and it means the user data is a secret: cloud APIs show it to anyone allowed to
//! describe the instance (EC2 `DescribeInstanceAttribute`, GCE metadata, vSphere
//! `guestinfo`), and on the node cloud-init keeps a root-only copy under
//! `/var/lib/cloud/instance/`. Use a proxy credential made for these nodes alone.
//! triad itself never logs the user data:
//! [`NodeRequest`](crate::model::NodeRequest)'s `Debug` shows only its length.
//!
//! # File modes
//!
//! | file | mode | why |
//! |------|------|-----|
//! | `/etc/environment` (appended) | `0644` | `pam_env` puts it into **every** login session, so every local user sees the values in their own environment anyway; a stricter mode would hide nothing and break programs that read the file as a normal user. |
//! | `/etc/apt/apt.conf.d/proxy.conf` | `0600` | apt reads it as root when it installs packages. (An unprivileged `apt list` will report the file unreadable; run apt as root.) |
//! | Docker and containerd `http-proxy.conf` drop-ins | `0644` | `Environment=` values of a unit are readable by any user through `systemctl show`; systemd warns that a world-inaccessible unit file "has no effect" and loads it anyway, so `0600` would protect nothing. |
//! | `/etc/default/rke2-server`, `rke2-agent`, `k3s` | `0600` | read by systemd (as root) through `EnvironmentFile=`; their contents are not exposed through systemd's API, so restricting them does keep the password from other users' eyes. |
//!
//! Because of the first and third rows, any local user of a node can learn the
//! proxy password; the `0600` files are defence in depth, not a guarantee.
//!
//! # Determinism
//!
//! The same spec and node name always give byte-identical text: providers derive
//! idempotency tokens from it, so a rerun must not look like a different request.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::spec::{Distribution, Ingress, ValidSpec, KUBE_API_PORT, RKE2_SUPERVISOR_PORT};

/// Rancher's recommended NO_PROXY entries for the nodes, in the order Rancher's
/// install docs give them: loopback, the private ranges the cluster and service
/// networks live in, and Rancher's own namespace.
pub const RANCHER_NO_PROXY: [&str; 5] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "cattle-system.svc",
    "172.16.0.0/12",
    "192.168.0.0/16",
];

/// Entries added after [`RANCHER_NO_PROXY`]: in-cluster service names (Rancher's
/// Helm `noProxy` recommendation) and `localhost` by name.
const CLUSTER_NO_PROXY: [&str; 3] = [".svc", ".cluster.local", "localhost"];

/// The NO_PROXY list for the nodes and for Rancher's Helm `noProxy` value.
///
/// In order, without duplicates (the first occurrence wins): [`RANCHER_NO_PROXY`],
/// then `.svc`, `.cluster.local`, `localhost`, then every node name of the cluster
/// (the nodes talk to each other by name), the Rancher hostname (the registration
/// address: nodes reach the balancer directly, never through the proxy), the
/// pod and service CIDRs (`kubernetes.cidr_pods`, `kubernetes.cidr_services`), the
/// node network (`nodes.network_cidrs`), then the user's `proxy.no_proxy`. The list
/// is the same whether or not a proxy is configured, and every entry passes
/// [`check_no_proxy_entry`].
///
/// ```
/// use triad_core::spec::ClusterSpec;
/// use triad_core::bootstrap::no_proxy;
///
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [proxy]
///     http = "http://proxy.corp:3128"
///     no_proxy = ["corp.example", "10.0.0.0/8"]
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
/// "#).unwrap().validate().unwrap();
/// let list = no_proxy(&spec);
/// assert_eq!(list[0], "127.0.0.0/8");
/// assert_eq!(list.last().unwrap(), "corp.example");
/// assert!(list.contains(&"10.42.0.0/16".to_owned()));
/// assert_eq!(list.iter().filter(|e| *e == "10.0.0.0/8").count(), 1);
/// ```
pub fn no_proxy(spec: &ValidSpec) -> Vec<String> {
    let user = spec.proxy.iter().flat_map(|p| p.no_proxy.iter().cloned());
    let k8s = [
        spec.fqdn(),
        spec.kubernetes.cidr_pods().to_owned(),
        spec.kubernetes.cidr_services().to_owned(),
    ];
    let mut out: Vec<String> = Vec::new();
    for entry in RANCHER_NO_PROXY
        .iter()
        .chain(CLUSTER_NO_PROXY.iter())
        .map(|s| (*s).to_owned())
        .chain(spec.node_names())
        .chain(k8s)
        .chain(spec.nodes.network_cidrs.iter().cloned())
        .chain(user)
    {
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out
}

/// Check one NO_PROXY entry in Go's format, as RKE2, K3s, containerd and Rancher
/// read it (and curl and Python the same way): a host name, a `.domain` suffix, an
/// IP (optionally with `:port`) or a network CIDR. No spaces, commas or quotes, and
/// no `*` wildcard (`*.corp` is understood by Go only; write `.corp`). The error
/// says what is wrong with the entry.
///
/// ```
/// use triad_core::bootstrap::check_no_proxy_entry as check;
/// assert!(check(".corp.example").is_ok());
/// assert!(check("10.42.0.0/16").is_ok());
/// assert!(check("*.corp").is_err());
/// assert!(check("10.42.0.1/16").is_err());
/// assert!(check("a b").is_err());
/// ```
pub fn check_no_proxy_entry(entry: &str) -> Result<(), String> {
    crate::validate::no_proxy_entry(entry)
}

/// The cloud-init user data (`#cloud-config`) for the node `node_name`.
///
/// It sets the hostname to the node name with `manage_etc_hosts: true`, so the
/// name resolves on the node (there is no FQDN to give: the node name is not in
/// any DNS zone), and installs the spec's SSH public keys. With a `[proxy]` in the
/// spec it also writes, with literal values, `/etc/environment` (appended),
/// `/etc/apt/apt.conf.d/proxy.conf`, systemd drop-ins for Docker and containerd,
/// and `/etc/default/rke2-server`, `/etc/default/rke2-agent` and
/// `/etc/default/k3s`, then runs `systemctl daemon-reload`. The `https` proxy
/// falls back to the `http` one. `proxy.ca_file` goes into the trust store
/// (`ca_certs`).
///
/// With `kubernetes.install = true` (RKE2 or K3s) it also writes the
/// distribution's `config.yaml` (see [`KubeConfig`]) and
/// [`INSTALL_SCRIPT`], which runs the official install script with the proxy in
/// its environment, and runs that script last.
///
/// The result contains the proxy password when the proxy URL has one, and the
/// join token when the nodes install Kubernetes (see the
/// [module documentation](self) for why, and for the file modes): treat it as a
/// secret and never log it. Same spec and node name, same bytes.
///
/// ```
/// use triad_core::spec::ClusterSpec;
/// use triad_core::bootstrap::user_data;
///
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [proxy]
///     http = "http://proxy.corp:3128"
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
/// "#).unwrap().validate().unwrap();
/// let text = user_data(&spec, "rancher-1");
/// assert!(text.starts_with("#cloud-config\n"));
/// assert!(text.contains("Acquire::http::Proxy \"http://proxy.corp:3128\";"));
/// assert!(text.contains("manage_etc_hosts: true"));
/// assert_eq!(text, user_data(&spec, "rancher-1"));
/// ```
pub fn user_data(spec: &ValidSpec, node_name: &str) -> String {
    let mut write_files = Vec::new();
    let mut runcmd: Vec<Vec<&'static str>> = Vec::new();
    if let Some(proxy) = &spec.proxy {
        let http = url_literal(proxy.http.expose());
        let https = url_literal(proxy.https.as_ref().unwrap_or(&proxy.http).expose());
        let no_proxy = no_proxy(spec).join(",");
        write_files = proxy_files(&http, &https, &no_proxy);
        runcmd.push(vec!["systemctl", "daemon-reload"]);
    }
    if let Some(k) = KubeInstall::of(spec) {
        let config = kube_config(spec, node_name);
        write_files.push(WriteFile {
            path: k.config_path(),
            owner: "root:root",
            permissions: MODE_PRIVATE,
            append: false,
            content: format!(
                "# {} config for `{}`, written by triad.\n{}",
                k.distribution,
                one_line(node_name),
                config.to_yaml()
            ),
        });
        write_files.push(WriteFile {
            path: INSTALL_SCRIPT,
            owner: "root:root",
            permissions: "0700",
            append: false,
            content: install_script(spec, &k, node_name),
        });
        if let Some(reg) = registries_yaml(spec) {
            write_files.push(WriteFile {
                path: registries_path(k.distribution),
                owner: "root:root",
                permissions: MODE_PUBLIC,
                append: false,
                content: reg,
            });
        }
        runcmd.push(vec!["sh", INSTALL_SCRIPT]);
    }
    let doc = CloudConfig {
        hostname: node_name,
        manage_etc_hosts: true,
        ssh_authorized_keys: spec
            .nodes
            .ssh_authorized_keys
            .iter()
            .map(String::as_str)
            .collect(),
        ca_certs: spec.proxy_ca().map(|pem| CaCerts {
            trusted: vec![pem.to_owned()],
        }),
        write_files,
        runcmd,
    };
    // Serialising plain structs of strings, booleans and sequences cannot fail.
    let body = serde_norway::to_string(&doc).expect("cloud-config structs always serialise");
    format!("#cloud-config\n{body}")
}

/// Where the user data puts the script that installs RKE2 or K3s.
pub const INSTALL_SCRIPT: &str = "/usr/local/sbin/triad-install-kubernetes";
/// Where the install script keeps the downloaded official installer.
pub const INSTALLER_PATH: &str = "/var/lib/triad/install.sh";

/// What a node needs to install RKE2 or K3s itself.
struct KubeInstall {
    distribution: Distribution,
}

impl KubeInstall {
    /// `Some` when the spec asks the nodes to install RKE2 or K3s.
    fn of(spec: &ValidSpec) -> Option<Self> {
        let d = spec.kubernetes.distribution;
        (spec.kubernetes.install && d != Distribution::Rke).then_some(Self { distribution: d })
    }

    fn config_path(&self) -> &'static str {
        kube_config_path(self.distribution)
    }
}

/// Where the distribution reads its configuration: `/etc/rancher/rke2/config.yaml`
/// or `/etc/rancher/k3s/config.yaml` (RKE has none on the nodes).
pub fn kube_config_path(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::K3s => "/etc/rancher/k3s/config.yaml",
        Distribution::Rke2 | Distribution::Rke => "/etc/rancher/rke2/config.yaml",
    }
}

/// The environment file the distribution's server service reads
/// (`EnvironmentFile=`): `/etc/default/rke2-server` or `/etc/default/k3s`.
pub fn server_env_path(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::K3s => "/etc/default/k3s",
        Distribution::Rke2 | Distribution::Rke => "/etc/default/rke2-server",
    }
}

/// The address nodes 2…N join through when the spec decides it on its own: the
/// Rancher hostname, which resolves to the balancer (`load_balancer.registration =
/// "balancer"`). The nodes and the balancer are made at the same time, so the
/// hostname — known from the spec — is the only address the user data can carry.
pub fn registration_host(spec: &ValidSpec) -> String {
    spec.fqdn()
}

/// The port nodes 2…N join on: 9345 (RKE2's supervisor) or 6443 (K3s).
pub fn join_port(distribution: Distribution) -> u16 {
    match distribution {
        Distribution::K3s => KUBE_API_PORT,
        Distribution::Rke2 | Distribution::Rke => RKE2_SUPERVISOR_PORT,
    }
}

/// `/etc/rancher/rke2/config.yaml` (or K3s's): the keys triad sets, named as RKE2
/// and K3s document them. No `Debug`: it holds the join token.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubeConfig {
    /// The node's name in Kubernetes.
    pub node_name: String,
    /// The join token (inline: the user data or the hand-over file is the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `https://<registration>:<port>` on every node but the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// K3s only: node 1 starts the embedded etcd cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_init: Option<bool>,
    /// Extra names and addresses in the API server's certificate.
    pub tls_san: Vec<String>,
    /// Pod CIDR.
    pub cluster_cidr: String,
    /// Service CIDR.
    pub service_cidr: String,
    /// RKE2 only: `ingress-nginx` or `traefik`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_controller: Option<String>,
    /// K3s only: packaged components to leave out (`traefik` when the ingress is
    /// nginx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// A file holding the join token (the hand-over's choice: no token inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// `registries.yaml` (RKE2 and K3s): registry mirrors.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Registry name → its mirror endpoints.
    pub mirrors: std::collections::BTreeMap<String, Mirror>,
}

/// One registry's mirrors in [`Registries`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Mirror URLs, tried in order.
    pub endpoint: Vec<String>,
}

/// `registries.yaml` for `kubernetes.mirrors`, or `None` when there are none.
pub fn registries_yaml(spec: &ValidSpec) -> Option<String> {
    if spec.kubernetes.mirrors.is_empty() {
        return None;
    }
    let doc = Registries {
        mirrors: spec
            .kubernetes
            .mirrors
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Mirror {
                        endpoint: v.clone(),
                    },
                )
            })
            .collect(),
    };
    Some(serde_norway::to_string(&doc).expect("registries always serialise"))
}

/// Where RKE2 / K3s read `registries.yaml`.
pub fn registries_path(distribution: Distribution) -> &'static str {
    match distribution {
        Distribution::K3s => "/etc/rancher/k3s/registries.yaml",
        Distribution::Rke2 | Distribution::Rke => "/etc/rancher/rke2/registries.yaml",
    }
}

/// The server's environment file (`/etc/default/rke2-server`, `/etc/default/k3s`)
/// with the literal proxy values, or `None` without a `[proxy]`. It holds the
/// proxy password when the URL has one.
pub fn server_env_file(spec: &ValidSpec) -> Option<String> {
    let proxy = spec.proxy.as_ref()?;
    let http = url_literal(proxy.http.expose());
    let https = url_literal(proxy.https.as_ref().unwrap_or(&proxy.http).expose());
    Some(env_file(&http, &https, &no_proxy(spec).join(",")))
}

/// `KEY="value"` lines for the proxy, plain and `CONTAINERD_`-prefixed.
fn env_file(http: &str, https: &str, no_proxy: &str) -> String {
    let vars = [
        ("HTTP_PROXY", http),
        ("HTTPS_PROXY", https),
        ("NO_PROXY", no_proxy),
    ];
    // RKE2 and K3s read these through `EnvironmentFile=`; the CONTAINERD_ variants
    // reach only the containerd they embed.
    let mut rke = String::from("# HTTP proxy, written by triad\n");
    for (k, v) in vars {
        rke.push_str(&format!("{k}=\"{}\"\n", env_escape(v)));
    }
    for (k, v) in vars {
        rke.push_str(&format!("CONTAINERD_{k}=\"{}\"\n", env_escape(v)));
    }
    rke
}

impl KubeConfig {
    /// The YAML text.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("config structs always serialise")
    }
}

/// The config for `node_name`. `first_node_ip` is node 1's private address when
/// known (hand-over with `registration = "first-node"`); otherwise the others join
/// through [`registration_host`]. `extra_san` adds the balancer's own address.
pub(crate) fn kube_config_with(
    spec: &ValidSpec,
    node_name: &str,
    join_host: Option<String>,
    extra_san: &[String],
    token: Option<&str>,
) -> KubeConfig {
    let d = spec.kubernetes.distribution;
    let names = spec.node_names();
    let first = names.first().is_some_and(|n| n == node_name);
    let host = join_host.unwrap_or_else(|| registration_host(spec));
    let mut tls_san = vec![spec.fqdn()];
    for s in extra_san {
        if !tls_san.contains(s) {
            tls_san.push(s.clone());
        }
    }
    let ingress = spec.kubernetes.ingress();
    KubeConfig {
        node_name: node_name.to_owned(),
        token: token.map(str::to_owned),
        server: (!first).then(|| format!("https://{host}:{}", join_port(d))),
        cluster_init: (d == Distribution::K3s && first).then_some(true),
        tls_san,
        cluster_cidr: spec.kubernetes.cidr_pods().to_owned(),
        service_cidr: spec.kubernetes.cidr_services().to_owned(),
        ingress_controller: (d == Distribution::Rke2).then(|| {
            match ingress {
                Ingress::Nginx => "ingress-nginx",
                Ingress::Traefik => "traefik",
            }
            .to_owned()
        }),
        disable: if d == Distribution::K3s && ingress == Ingress::Nginx {
            vec!["traefik".to_owned()]
        } else {
            Vec::new()
        },
        token_file: None,
    }
}

fn kube_config(spec: &ValidSpec, node_name: &str) -> KubeConfig {
    kube_config_with(
        spec,
        node_name,
        None,
        &[],
        spec.join_token().map(Secret::expose),
    )
}

/// The script that installs RKE2 or K3s through the proxy. It reads the proxy
/// settings from the server's environment file (one copy of the values, the same
/// the service gets), exports them in both cases for the installer and `curl`,
/// downloads the official script and runs it with `INSTALL_*_CHANNEL` or
/// `INSTALL_*_VERSION`.
fn install_script(spec: &ValidSpec, k: &KubeInstall, node_name: &str) -> String {
    let d = k.distribution;
    let (url, prefix) = match d {
        Distribution::K3s => ("https://get.k3s.io", "INSTALL_K3S"),
        Distribution::Rke2 | Distribution::Rke => ("https://get.rke2.io", "INSTALL_RKE2"),
    };
    let mut out = format!(
        "#!/bin/sh\n# Installs {d} on `{}` through the proxy; written by triad.\nset -eu\n",
        one_line(node_name)
    );
    if spec.proxy.is_some() {
        let env = server_env_path(d);
        let _ = write!(
            out,
            "# The proxy, as the {d} service reads it.\nset -a\n. {env}\nset +a\n\
             http_proxy=\"$HTTP_PROXY\"; https_proxy=\"$HTTPS_PROXY\"; no_proxy=\"$NO_PROXY\"\n\
             export http_proxy https_proxy no_proxy\n"
        );
    }
    match &spec.kubernetes.version {
        Some(v) => {
            let _ = writeln!(
                out,
                "{prefix}_VERSION='{}'; export {prefix}_VERSION",
                sh_single(v)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "{prefix}_CHANNEL='{}'; export {prefix}_CHANNEL",
                sh_single(spec.kubernetes.channel())
            );
        }
    }
    let dir = INSTALLER_PATH.rsplit_once('/').map_or("/", |(d, _)| d);
    let _ = write!(
        out,
        "mkdir -p {dir}\ncurl -sfL --retry 10 --retry-all-errors -o {INSTALLER_PATH} {url}\n"
    );
    match d {
        Distribution::K3s => {
            // The K3s script writes the proxy variables it sees into
            // k3s.service.env and starts the service.
            let _ = writeln!(
                out,
                "INSTALL_K3S_EXEC=server; export INSTALL_K3S_EXEC\nsh {INSTALLER_PATH}"
            );
        }
        Distribution::Rke2 | Distribution::Rke => {
            let _ = writeln!(
                out,
                "INSTALL_RKE2_TYPE=server; export INSTALL_RKE2_TYPE\nsh {INSTALLER_PATH}\n\
                 systemctl enable --now rke2-server.service"
            );
        }
    }
    out
}

/// `v` for inside single quotes in a shell script.
fn sh_single(v: &str) -> String {
    v.replace('\'', "'\\''")
}

/// A value shown on one comment line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The cloud-config document. No `Debug`: it holds the proxy password.
#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    manage_etc_hosts: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_certs: Option<CaCerts>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    write_files: Vec<WriteFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runcmd: Vec<Vec<&'static str>>,
}

/// cloud-init's `ca_certs` module: PEM certificates added to the trust store.
#[derive(Serialize)]
struct CaCerts {
    trusted: Vec<String>,
}

/// One `write_files` entry. No `Debug`: the content may hold the proxy password.
#[derive(Serialize)]
struct WriteFile {
    path: &'static str,
    owner: &'static str,
    permissions: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    append: bool,
    content: String,
}

/// World-readable, for files whose contents other users can read anyway (see the
/// module documentation).
const MODE_PUBLIC: &str = "0644";
/// Root-only, for files that hold the proxy URL and are read only by root.
const MODE_PRIVATE: &str = "0600";

fn proxy_files(http: &str, https: &str, no_proxy: &str) -> Vec<WriteFile> {
    let file = |path, permissions, append, content| WriteFile {
        path,
        owner: "root:root",
        permissions,
        append,
        content,
    };

    let env_line = |k: &str, v: &str| format!("{k}=\"{}\"\n", env_escape(v));
    let vars = [
        ("HTTP_PROXY", http),
        ("HTTPS_PROXY", https),
        ("NO_PROXY", no_proxy),
    ];

    // /etc/environment is appended to: start on a fresh line in case the image's
    // file lacks a final newline. pam_env strips the double quotes.
    let mut environment = String::from("\n# HTTP proxy, added by triad\n");
    for (k, v) in vars {
        environment.push_str(&env_line(k, v));
    }
    for (k, v) in vars {
        environment.push_str(&env_line(&k.to_ascii_lowercase(), v));
    }

    let apt = format!(
        "# HTTP proxy, written by triad\nAcquire::http::Proxy \"{http}\";\nAcquire::https::Proxy \"{https}\";\n"
    );

    let drop_in = format!(
        "# HTTP proxy, written by triad\n[Service]\nEnvironment=\"HTTP_PROXY={}\" \"HTTPS_PROXY={}\" \"NO_PROXY={}\"\n",
        unit_escape(http),
        unit_escape(https),
        unit_escape(no_proxy),
    );

    let rke = env_file(http, https, no_proxy);

    vec![
        file("/etc/environment", MODE_PUBLIC, true, environment),
        file("/etc/apt/apt.conf.d/proxy.conf", MODE_PRIVATE, false, apt),
        file(
            "/etc/systemd/system/docker.service.d/http-proxy.conf",
            MODE_PUBLIC,
            false,
            drop_in.clone(),
        ),
        file(
            "/etc/systemd/system/containerd.service.d/http-proxy.conf",
            MODE_PUBLIC,
            false,
            drop_in,
        ),
        file("/etc/default/rke2-server", MODE_PRIVATE, false, rke.clone()),
        file("/etc/default/rke2-agent", MODE_PRIVATE, false, rke.clone()),
        file("/etc/default/k3s", MODE_PRIVATE, false, rke),
    ]
}

/// The proxy URL with every character that some target format would need to
/// quote percent-encoded; an equivalent URL for the proxy client.
fn url_literal(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if matches!(c, '"' | '\'' | '`' | '\\' | '$') || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Escape for a double-quoted value in an environment file (systemd
/// `EnvironmentFile=` and POSIX shell agree on these).
fn env_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escape for a double-quoted word in a systemd unit file: C-style escapes for
/// `\` and `"`, and `%%` for `%`, which systemd would take for a specifier.
fn unit_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeRequest;
    use crate::spec::ClusterSpec;

    const PASSWORD: &str = "s3cr3t-Pw";

    fn spec(proxy: Option<&str>, extra_no_proxy: &[&str], keys: &[&str]) -> ValidSpec {
        let mut text = String::from(
            "name = \"rancher\"\nregion = \"us-east-1\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n",
        );
        let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        text.push_str(&format!(
            "[nodes]\nssh_authorized_keys = [{}]\n",
            keys.join(", ")
        ));
        if let Some(url) = proxy {
            let entries: Vec<String> = extra_no_proxy.iter().map(|e| format!("{e:?}")).collect();
            text.push_str(&format!(
                "[proxy]\nhttp = {url:?}\nno_proxy = [{}]\n",
                entries.join(", ")
            ));
        }
        ClusterSpec::from_toml(&text).unwrap().validate().unwrap()
    }

    fn proxied() -> ValidSpec {
        spec(
            Some(&format!("http://ops:{PASSWORD}@proxy.corp:3128")),
            &["corp.example", "10.0.0.0/8", "db.corp.example"],
            &["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB admin@example"],
        )
    }

    fn parse(text: &str) -> serde_norway::Value {
        serde_norway::from_str(text).unwrap()
    }

    fn files(doc: &serde_norway::Value) -> Vec<(String, String, String, bool)> {
        doc["write_files"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|f| {
                        (
                            f["path"].as_str().unwrap().to_owned(),
                            f["content"].as_str().unwrap().to_owned(),
                            f["permissions"].as_str().unwrap().to_owned(),
                            f["append"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn no_proxy_order_and_dedup() {
        let list = no_proxy(&proxied());
        assert_eq!(
            list,
            [
                "127.0.0.0/8",
                "10.0.0.0/8",
                "cattle-system.svc",
                "172.16.0.0/12",
                "192.168.0.0/16",
                ".svc",
                ".cluster.local",
                "localhost",
                "rancher-1",
                "rancher-2",
                "rancher-3",
                "rancher.example.com",
                "10.42.0.0/16",
                "10.43.0.0/16",
                "corp.example",
                "db.corp.example",
            ]
        );
    }

    #[test]
    fn no_proxy_without_proxy_still_lists_cluster_names() {
        let list = no_proxy(&spec(None, &[], &[]));
        assert_eq!(&list[..5], &RANCHER_NO_PROXY);
        assert_eq!(list.len(), 5 + 3 + 3 + 3);
        assert_eq!(list.last().unwrap(), "10.43.0.0/16");
    }

    #[test]
    fn every_proxy_file_has_literal_values() {
        let s = proxied();
        let text = user_data(&s, "rancher-2");
        assert!(!text.contains("${"), "unexpanded variable in:\n{text}");
        let doc = parse(&text);
        let url = format!("http://ops:{PASSWORD}@proxy.corp:3128");
        let np = no_proxy(&s).join(",");
        let files = files(&doc);
        let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/environment",
                "/etc/apt/apt.conf.d/proxy.conf",
                "/etc/systemd/system/docker.service.d/http-proxy.conf",
                "/etc/systemd/system/containerd.service.d/http-proxy.conf",
                "/etc/default/rke2-server",
                "/etc/default/rke2-agent",
                "/etc/default/k3s",
            ]
        );
        let get = |p: &str| files.iter().find(|f| f.0 == p).unwrap().clone();

        let (_, env, mode, append) = get("/etc/environment");
        assert!(append);
        assert_eq!(mode, "0644");
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert!(env.contains(&format!("\n{k}=\"{url}\"\n")), "{k} in {env}");
        }
        for k in ["NO_PROXY", "no_proxy"] {
            assert!(env.contains(&format!("\n{k}=\"{np}\"\n")), "{k} in {env}");
        }

        let (_, apt, mode, append) = get("/etc/apt/apt.conf.d/proxy.conf");
        assert!(!append);
        assert_eq!(mode, "0600");
        assert!(apt.contains(&format!("Acquire::http::Proxy \"{url}\";\n")));
        assert!(apt.contains(&format!("Acquire::https::Proxy \"{url}\";\n")));

        for unit in ["docker", "containerd"] {
            let (_, d, mode, _) = get(&format!(
                "/etc/systemd/system/{unit}.service.d/http-proxy.conf"
            ));
            assert_eq!(mode, "0644");
            assert!(d.contains("[Service]\n"));
            assert!(d.contains(&format!(
                "Environment=\"HTTP_PROXY={url}\" \"HTTPS_PROXY={url}\" \"NO_PROXY={np}\"\n"
            )));
        }

        for path in [
            "/etc/default/rke2-server",
            "/etc/default/rke2-agent",
            "/etc/default/k3s",
        ] {
            let (_, f, mode, _) = get(path);
            assert_eq!(mode, "0600", "{path}");
            for k in [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "CONTAINERD_HTTP_PROXY",
                "CONTAINERD_HTTPS_PROXY",
            ] {
                assert!(f.contains(&format!("\n{k}=\"{url}\"\n")), "{k} in {path}");
            }
            for k in ["NO_PROXY", "CONTAINERD_NO_PROXY"] {
                assert!(f.contains(&format!("\n{k}=\"{np}\"\n")), "{k} in {path}");
            }
        }

        assert_eq!(
            doc["runcmd"],
            parse("- [systemctl, daemon-reload]"),
            "daemon-reload after writing the drop-ins"
        );
    }

    #[test]
    fn https_proxy_used_when_given() {
        let text = "name = \"rancher\"\nregion = \"r\"\n[proxy]\nhttp = \"http://a.corp:3128\"\nhttps = \"http://b.corp:3129\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n";
        let s = ClusterSpec::from_toml(text).unwrap().validate().unwrap();
        let ud = user_data(&s, "rancher-1");
        assert!(ud.contains("HTTP_PROXY=\"http://a.corp:3128\""));
        assert!(ud.contains("HTTPS_PROXY=\"http://b.corp:3129\""));
        assert!(ud.contains("Acquire::https::Proxy \"http://b.corp:3129\";"));
    }

    #[test]
    fn special_characters_are_escaped_per_format() {
        // `%40` is a percent-encoded `@`; `$` must not be expanded by anything.
        let s = spec(Some("http://ops:p%40ss$word@proxy.corp:3128"), &[], &[]);
        let doc = parse(&user_data(&s, "rancher-1"));
        let files = files(&doc);
        let get = |p: &str| files.iter().find(|f| f.0 == p).unwrap().1.clone();
        let url = "http://ops:p%40ss%24word@proxy.corp:3128";
        assert!(get("/etc/default/k3s").contains(&format!("\nHTTP_PROXY=\"{url}\"\n")));
        assert!(get("/etc/apt/apt.conf.d/proxy.conf").contains(&format!("\"{url}\";")));
        // systemd would read `%4` as a specifier: it must be doubled.
        assert!(get("/etc/systemd/system/docker.service.d/http-proxy.conf")
            .contains("\"HTTP_PROXY=http://ops:p%%40ss%%24word@proxy.corp:3128\""));
        assert_eq!(env_escape(r#"a"b$c`d\e"#), r#"a\"b\$c\`d\\e"#);
        assert_eq!(unit_escape(r#"a"b%c\d"#), r#"a\"b%%c\\d"#);
    }

    #[test]
    fn no_proxy_spec_writes_no_proxy_files() {
        let s = spec(None, &[], &["ssh-ed25519 AAAAC3Nza admin@example"]);
        let text = user_data(&s, "rancher-1");
        let doc = parse(&text);
        assert!(doc.get("write_files").is_none(), "{text}");
        assert!(doc.get("runcmd").is_none(), "{text}");
        assert!(!text.to_ascii_lowercase().contains("proxy"), "{text}");
        assert_eq!(doc["hostname"].as_str(), Some("rancher-1"));
    }

    #[test]
    fn header_hostname_and_keys() {
        let s = proxied();
        let text = user_data(&s, "rancher-3");
        assert!(text.starts_with("#cloud-config\n"));
        let doc = parse(&text);
        assert_eq!(doc["hostname"].as_str(), Some("rancher-3"));
        assert!(doc.get("fqdn").is_none(), "the node name is no FQDN");
        assert_eq!(doc["manage_etc_hosts"].as_bool(), Some(true));
        assert_eq!(
            doc["ssh_authorized_keys"],
            parse("[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB admin@example\"]")
        );
    }

    #[test]
    fn password_only_where_it_must_be() {
        let s = proxied();
        let ud = user_data(&s, "rancher-1");
        assert!(
            ud.contains(PASSWORD),
            "nodes need the password to use the proxy"
        );
        assert!(!format!("{s:?}").contains(PASSWORD));
        assert!(!format!("{:?}", s.proxy).contains(PASSWORD));
        let req = NodeRequest {
            name: "rancher-1".into(),
            zone: "a".into(),
            size: None,
            image: None,
            disk_gib: None,
            ssh_allowed_cidrs: vec![],
            labels: Default::default(),
            user_data: ud,
        };
        assert!(!format!("{req:?}").contains(PASSWORD));
        assert!(!format!("{:?}", no_proxy(&s)).contains(PASSWORD));
    }

    #[test]
    fn deterministic() {
        let a = user_data(&proxied(), "rancher-1");
        let b = user_data(&proxied(), "rancher-1");
        assert_eq!(a, b);
        assert_ne!(a, user_data(&proxied(), "rancher-2"));
    }

    #[test]
    #[ignore = "needs Debian's cloud-init; scripts/test runs ignored tests"]
    fn cloud_init_schema_accepts_user_data() {
        let check = |text: &str, tag: &str| {
            let path = std::env::temp_dir()
                .join(format!("triad-user-data-{}-{tag}.yaml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            let out = std::process::Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&path)
                .output()
                .expect("run cloud-init (apt-get install cloud-init)");
            std::fs::remove_file(&path).unwrap();
            out
        };
        let out = check(&user_data(&proxied(), "rancher-1"), "good");
        assert!(
            out.status.success(),
            "cloud-init schema rejected the user data:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The check itself can fail: a wrongly typed key is rejected.
        let out = check("#cloud-config\nruncmd: 3\n", "bad");
        assert!(!out.status.success(), "cloud-init schema accepts anything");
    }
}
