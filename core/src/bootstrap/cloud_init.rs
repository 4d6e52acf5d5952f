//! The cloud-init document (`#cloud-config`) that ties the node's parts together:
//! hostname, SSH keys, the proxy files, the CA and the Kubernetes install.

use serde::Serialize;

use super::kube::{install_script, kube_config, one_line, KubeInstall};
use super::proxy::{no_proxy, proxy_files, url_literal};
use super::{registries_path, registries_yaml, INSTALL_SCRIPT};
use crate::spec::ValidSpec;

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
/// distribution's `config.yaml` (see [`KubeConfig`](super::KubeConfig)) and
/// [`INSTALL_SCRIPT`], which runs the official install script with the proxy in
/// its environment, and runs that script last.
///
/// The result contains the proxy password when the proxy URL has one, and the
/// join token when the nodes install Kubernetes (see the
/// [module documentation](super) for why, and for the file modes): treat it as a
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
pub(super) struct WriteFile {
    pub(super) path: &'static str,
    pub(super) owner: &'static str,
    pub(super) permissions: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) append: bool,
    pub(super) content: String,
}

/// World-readable, for files whose contents other users can read anyway (see the
/// module documentation).
pub(super) const MODE_PUBLIC: &str = "0644";
/// Root-only, for files that hold the proxy URL and are read only by root.
pub(super) const MODE_PRIVATE: &str = "0600";
