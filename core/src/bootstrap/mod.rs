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
//!
//! # Layout
//!
//! One concern per file: `cloud_init` ([`user_data`], the document itself),
//! `proxy` ([`no_proxy`] and the proxy files) and `kube` (the RKE2 / K3s
//! [`KubeConfig`], registry mirrors and install script).

mod cloud_init;
mod kube;
mod proxy;
#[cfg(test)]
mod tests;

pub use cloud_init::user_data;
pub(crate) use kube::kube_config_with;
pub(crate) use kube::url_host;
pub use kube::{
    join_port, kube_config_path, registration_host, registries_path, registries_yaml,
    server_env_path, KubeConfig, Mirror, Registries, INSTALLER_PATH, INSTALL_SCRIPT,
};
pub use proxy::{check_no_proxy_entry, no_proxy, server_env_file, RANCHER_NO_PROXY};
