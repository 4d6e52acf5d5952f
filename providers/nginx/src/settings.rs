//! The `[nginx]` section of the spec.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use triad_core::error::SpecProblem;

/// Where NGINX runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOn {
    /// On an existing host you manage, where triad runs (or whose file system it
    /// writes): triad writes `config_path`, checks it with `nginx -t` and reloads.
    #[default]
    Host,
    /// On a dedicated balancer node that triad creates through the node provider
    /// (never a Rancher node); cloud-init installs NGINX and writes the configuration.
    Node,
}

/// `[nginx]`: how the balancer is run and rendered. Every field has a default except
/// `address` in host mode.
///
/// ```toml
/// [nginx]
/// run_on = "host"                       # or "node"
/// address = "192.0.2.10"                # host mode: where clients reach the host
/// config_path = "/etc/nginx/nginx.conf"
/// certificate_key = "/etc/nginx/tls/rancher.key"   # l7: the key of load_balancer.certificate
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxSettings {
    /// `host` (default) or `node`.
    #[serde(default)]
    pub run_on: RunOn,
    /// Host mode: the address clients (and the DNS record) use to reach the host — an
    /// IP gives an A record, a name a CNAME. Required in host mode.
    #[serde(default)]
    pub address: Option<String>,
    /// Host mode: the main configuration file triad owns (default
    /// `/etc/nginx/nginx.conf`). It must hold triad's header or not exist.
    #[serde(default = "default_config_path")]
    pub config_path: PathBuf,
    /// The nginx binary used for `nginx -t` and the default reload/stop commands.
    #[serde(default = "default_nginx_bin")]
    pub nginx_bin: PathBuf,
    /// `nginx -p`: the prefix path, when nginx runs with one.
    #[serde(default)]
    pub prefix: Option<PathBuf>,
    /// Host mode: the command that makes nginx load a new configuration. Default:
    /// `<nginx_bin> [-p <prefix>] -c <config_path> -s reload`.
    #[serde(default)]
    pub reload_command: Option<Vec<String>>,
    /// Host mode: the command run before the configuration is deleted. Default:
    /// `<nginx_bin> [-p <prefix>] -c <config_path> -s quit`. A failure (nginx not
    /// running) is logged, not an error.
    #[serde(default)]
    pub stop_command: Option<Vec<String>>,
    /// l7: the PEM private key of `load_balancer.certificate` (a PEM path here).
    #[serde(default)]
    pub certificate_key: Option<PathBuf>,
    /// The address nginx listens on (`listen ADDRESS:PORT`); all addresses when absent.
    #[serde(default)]
    pub listen_address: Option<String>,
    /// The port clients use for HTTP (default 80).
    #[serde(default = "default_http")]
    pub http_port: u16,
    /// The port clients use for HTTPS (default 443).
    #[serde(default = "default_https")]
    pub https_port: u16,
    /// The nodes' HTTP port the balancer forwards to (default 80).
    #[serde(default = "default_http")]
    pub backend_http_port: u16,
    /// The nodes' HTTPS port the balancer forwards to in l4 (default 443).
    #[serde(default = "default_https")]
    pub backend_https_port: u16,
    /// Registration port (9345, 6443) → the port nginx listens on for it; the same
    /// port when absent (e.g. `{ "9345" = 19345 }` where 9345 is taken on the host).
    #[serde(default)]
    pub registration_listen: BTreeMap<u16, u16>,
    /// Registration port → the nodes' port it forwards to; the same port when absent.
    #[serde(default)]
    pub registration_backend: BTreeMap<u16, u16>,
    /// `worker_processes` (default `4`, as Rancher's example; `auto` works).
    #[serde(default = "default_workers")]
    pub worker_processes: String,
    /// `worker_rlimit_nofile` (default 40000).
    #[serde(default = "default_nofile")]
    pub worker_rlimit_nofile: u32,
    /// `worker_connections` (default 8192).
    #[serde(default = "default_connections")]
    pub worker_connections: u32,
    /// Dynamic modules: a `.so` path becomes `load_module`, anything else `include`.
    /// Default `["/etc/nginx/modules-enabled/*.conf"]` (Debian and Ubuntu load the
    /// stream module from there); `[]` for an nginx built with the stream module.
    #[serde(default = "default_modules")]
    pub modules: Vec<String>,
    /// `pid` (nginx's compiled-in default when absent).
    #[serde(default)]
    pub pid_file: Option<String>,
    /// `error_log` (nginx's compiled-in default when absent).
    #[serde(default)]
    pub error_log: Option<String>,
    /// Node mode: machine size of the balancer node; `nodes.size` when absent.
    #[serde(default)]
    pub node_size: Option<String>,
    /// Node mode: machine image of the balancer node (Debian or Ubuntu); `nodes.image`
    /// when absent.
    #[serde(default)]
    pub node_image: Option<String>,
    /// Node mode: the zone of the balancer node; the first zone when absent.
    #[serde(default)]
    pub node_zone: Option<String>,
    /// Node mode: the Rancher nodes the balancer is built for, by name (a rolling
    /// replacement `<name>-g2`, `-g3`… takes its place); the spec's node names when
    /// built from a spec. Empty: every running node of the cluster.
    #[serde(default)]
    pub expected_nodes: Vec<String>,
    /// Node mode: how often to poll the node provider, in milliseconds (default 2000).
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Node mode: the public keys put on the balancer node; `nodes.ssh_authorized_keys`
    /// when built from a spec.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
}

fn default_config_path() -> PathBuf {
    "/etc/nginx/nginx.conf".into()
}
fn default_nginx_bin() -> PathBuf {
    "nginx".into()
}
fn default_http() -> u16 {
    80
}
fn default_https() -> u16 {
    443
}
fn default_workers() -> String {
    "4".into()
}
fn default_nofile() -> u32 {
    40000
}
fn default_connections() -> u32 {
    8192
}
fn default_modules() -> Vec<String> {
    vec!["/etc/nginx/modules-enabled/*.conf".into()]
}
fn default_poll() -> u64 {
    2000
}

impl Default for NginxSettings {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

impl NginxSettings {
    /// Host-mode settings for a host reachable at `address`, with the defaults.
    pub fn host(address: impl Into<String>) -> Self {
        Self {
            address: Some(address.into()),
            ..Self::default()
        }
    }

    /// Node-mode settings with the defaults.
    pub fn node() -> Self {
        Self {
            run_on: RunOn::Node,
            ..Self::default()
        }
    }

    /// The port nginx listens on for registration port `p`.
    pub fn registration_listen_port(&self, p: u16) -> u16 {
        self.registration_listen.get(&p).copied().unwrap_or(p)
    }

    /// The nodes' port registration port `p` is forwarded to.
    pub fn registration_backend_port(&self, p: u16) -> u16 {
        self.registration_backend.get(&p).copied().unwrap_or(p)
    }

    /// How often node mode polls the node provider.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }

    /// Every problem with these settings, each naming its field (`nginx.<field>`).
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut problem = |field: &str, problem: String, fix: &str| {
            out.push(SpecProblem {
                field: format!("nginx.{field}"),
                problem,
                fix: fix.to_owned(),
            })
        };
        if self.run_on == RunOn::Host {
            match self.address.as_deref().map(str::trim) {
                None | Some("") => problem(
                    "address",
                    "is missing; host mode needs the address clients reach the host at".into(),
                    "set nginx.address to the host's IP or DNS name",
                ),
                Some(a) if a.contains(char::is_whitespace) || a.contains('/') => problem(
                    "address",
                    format!("`{a}` is not an IP address or host name"),
                    "give an IP address or a DNS name",
                ),
                _ => {}
            }
            if self.config_path.as_os_str().is_empty() {
                problem(
                    "config_path",
                    "is empty".into(),
                    "give the nginx.conf path triad owns",
                );
            }
        }
        for (field, cmd) in [
            ("reload_command", &self.reload_command),
            ("stop_command", &self.stop_command),
        ] {
            if cmd.as_ref().is_some_and(|c| c.is_empty()) {
                problem(
                    field,
                    "is an empty command".into(),
                    "leave it out for the default",
                );
            }
        }
        for (field, port) in [
            ("http_port", self.http_port),
            ("https_port", self.https_port),
            ("backend_http_port", self.backend_http_port),
            ("backend_https_port", self.backend_https_port),
        ] {
            if port == 0 {
                problem(field, "is 0".into(), "use a port between 1 and 65535");
            }
        }
        if self.http_port == self.https_port {
            problem(
                "https_port",
                format!("is the same as http_port ({})", self.http_port),
                "use two different ports",
            );
        }
        if self.worker_processes != "auto"
            && self
                .worker_processes
                .parse::<u32>()
                .map_or(true, |n| n == 0)
        {
            problem(
                "worker_processes",
                format!("is `{}`", self.worker_processes),
                "use a positive number or `auto`",
            );
        }
        if self.worker_connections == 0 {
            problem("worker_connections", "is 0".into(), "use a positive number");
        }
        for (i, m) in self.modules.iter().enumerate() {
            if m.trim().is_empty() || m.contains([';', '{', '}', '\n']) {
                problem(
                    &format!("modules[{i}]"),
                    format!("`{m}` is not a path"),
                    "give a module .so path or a file (glob) to include",
                );
            }
        }
        for (field, v) in [
            ("listen_address", &self.listen_address),
            ("pid_file", &self.pid_file),
            ("error_log", &self.error_log),
        ] {
            if v.as_ref()
                .is_some_and(|s| s.trim().is_empty() || s.contains([';', '{', '}', '\n']))
            {
                problem(
                    field,
                    "holds characters nginx cannot take here".into(),
                    "give a plain value",
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_rancher() {
        let s = NginxSettings::default();
        assert_eq!(s.run_on, RunOn::Host);
        assert_eq!((s.http_port, s.https_port), (80, 443));
        assert_eq!(s.worker_processes, "4");
        assert_eq!(s.worker_rlimit_nofile, 40000);
        assert_eq!(s.worker_connections, 8192);
        assert_eq!(s.config_path, PathBuf::from("/etc/nginx/nginx.conf"));
    }

    #[test]
    fn host_mode_needs_an_address() {
        let p = NginxSettings::default().problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "nginx.address");
        assert!(NginxSettings::host("192.0.2.1").problems().is_empty());
        assert!(NginxSettings::node().problems().is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        let mut s = NginxSettings::host("lb.example.com");
        s.https_port = 80;
        s.worker_processes = "many".into();
        s.modules = vec!["x; evil".into()];
        s.reload_command = Some(vec![]);
        let fields: Vec<String> = s.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "nginx.reload_command",
                "nginx.https_port",
                "nginx.worker_processes",
                "nginx.modules[0]"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let r: Result<NginxSettings, _> =
            serde_json::from_value(serde_json::json!({"adress": "x"}));
        assert!(r.is_err());
    }
}
