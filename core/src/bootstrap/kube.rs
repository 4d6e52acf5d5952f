//! The Kubernetes install parts (RKE2 / K3s): each node's `config.yaml`, the
//! registry mirrors, the install script and the paths and ports they use.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::spec::{Distribution, Ingress, ValidSpec, KUBE_API_PORT, RKE2_SUPERVISOR_PORT};

/// Where the user data puts the script that installs RKE2 or K3s.
pub const INSTALL_SCRIPT: &str = "/usr/local/sbin/triad-install-kubernetes";
/// Where the install script keeps the downloaded official installer.
pub const INSTALLER_PATH: &str = "/var/lib/triad/install.sh";

/// What a node needs to install RKE2 or K3s itself.
pub(super) struct KubeInstall {
    pub(super) distribution: Distribution,
}

impl KubeInstall {
    /// `Some` when the spec asks the nodes to install RKE2 or K3s.
    pub(super) fn of(spec: &ValidSpec) -> Option<Self> {
        let d = spec.kubernetes.distribution;
        (spec.kubernetes.install && d != Distribution::Rke).then_some(Self { distribution: d })
    }

    pub(super) fn config_path(&self) -> &'static str {
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

/// The address nodes 2…N join through with `load_balancer.registration =
/// "balancer"`: the Rancher hostname, which resolves to the balancer — unless the
/// balancer serves the registration ports apart (an l7 balancer's TCP companion,
/// [`ValidSpec::learned_registration_host`]); then that address, which the
/// orchestrator learns by making the balancer before the nodes.
pub fn registration_host(spec: &ValidSpec) -> String {
    spec.learned_registration_host()
        .map_or_else(|| spec.fqdn(), str::to_owned)
}

/// `host` as the host part of a URL: an IPv6 address in brackets.
pub(crate) fn url_host(host: &str) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => host.to_owned(),
    }
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
    // Node 1 starts the cluster, unless nodes of it exist already (a node 1 made
    // again beside them joins them).
    let first = !spec.joins_existing() && names.first().is_some_and(|n| n == node_name);
    let host = join_host
        .or_else(|| spec.learned_join_host().map(url_host))
        .unwrap_or_else(|| url_host(&registration_host(spec)));
    let mut tls_san = vec![spec.fqdn()];
    for s in std::iter::once(&registration_host(spec)).chain(extra_san) {
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

pub(super) fn kube_config(spec: &ValidSpec, node_name: &str) -> KubeConfig {
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
pub(super) fn install_script(spec: &ValidSpec, k: &KubeInstall, node_name: &str) -> String {
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
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
