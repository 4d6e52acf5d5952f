//! The hand-over bundle: the files a user needs to go on to a running Rancher,
//! and writing them to a directory.

use std::fmt;
use std::path::Path;

use super::{
    inventory_json, kubeconfig_command, next_steps, node_config, ordered_nodes,
    rancher_install_script, rancher_values, rke_cluster_yml,
};
use crate::bootstrap;
use crate::model::Inventory;
use crate::spec::{Distribution, ValidSpec};

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
///   the Rancher chart), `rancher/tls-ca-additional.pem` with `proxy.ca_file`,
///   `rancher/cacerts.pem` with `tls.ca_file`;
/// - `kubeconfig.sh` (fetch the kubeconfig from node 1, server rewritten to the
///   registration address);
/// - `cluster.yml` only for `distribution = "rke"`;
/// - `inventory.json` and `next-steps.txt`.
pub fn bundle(spec: &ValidSpec, inventory: &Inventory) -> Vec<BundleFile> {
    // The registration address an l7 balancer serves apart (see `with_registration_of`).
    let spec = &spec.with_registration_of(&inventory.load_balancer);
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
    if let Some(pem) = spec.tls_ca() {
        out.push(file("rancher/cacerts.pem".into(), pem.to_owned(), false));
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
