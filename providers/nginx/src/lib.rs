//! # triad-nginx
//!
//! triad's [`LoadBalancerProvider`] for clouds without a managed balancer (vSphere,
//! bare metal): NGINX configured as Rancher's NGINX page says — layer 4 `stream`
//! upstreams for 80 and 443 (`least_conn`, `max_fails=3 fail_timeout=5s`), or layer 7
//! with TLS terminated by NGINX (see [`render`]).
//!
//! Two ways to run it ([`RunOn`]):
//!
//! - **`host`** — an existing host you manage, reachable at `[nginx] address`. triad
//!   writes the whole `nginx.conf` at `config_path` (atomically: a temporary file,
//!   `nginx -t`, rename), then reloads nginx (`nginx -s reload` or your
//!   `reload_command`). The file starts with triad's header — the cluster label,
//!   the mode and every target — which is how the balancer is discovered and its
//!   targets read back; a file without the header is never overwritten or deleted.
//!   A rerun that renders the same bytes writes nothing and does not reload.
//! - **`node`** — a dedicated balancer node created through any
//!   [`NodeProvider`] given to [`NginxProvider::on_nodes`]. It is never a Rancher
//!   node: it belongs to the pseudo-cluster `<cluster>-lb` (so the cluster's own
//!   node discovery never sees it) and carries `triad-lb-for=<cluster>`. Its
//!   cloud-init user data installs nginx and writes the configuration. **Targets are
//!   fixed when the node is created**: `wait_load_balancer` waits until the
//!   cluster's nodes run, then creates the balancer node for them; `set_targets`
//!   with other nodes creates a new balancer node for those nodes and deletes the
//!   old one, so the endpoint (the node's address) changes — the next apply points
//!   the DNS record at it. triad does not log in to nodes (no SSH).
//!
//! Health checks are NGINX's passive ones (`max_fails`/`fail_timeout`): a stopped
//! node is skipped after a failed connection.
#![warn(missing_docs)]

pub mod render;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tracing::{debug, info, warn};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::model::{
    Endpoint, LbState, LoadBalancer, LoadBalancerRequest, Node, NodeRequest, NodeState,
};
use triad_core::provider::{LoadBalancerProvider, NodeProvider};
use triad_core::secret::ProxyUrl;
use triad_core::spec::{ClusterRef, LbMode, LbScheme, ValidSpec};

pub use render::{Header, Target};
pub use settings::{NginxSettings, RunOn};

/// The provider's name in messages and the inventory.
pub const PROVIDER: &str = "nginx";

/// Label on a balancer node naming the Rancher cluster it serves.
pub const LB_FOR: &str = "triad-lb-for";
/// Label on a balancer node: a hash of the targets its configuration was built for.
pub const LB_TARGETS: &str = "triad-lb-targets";
const LB_NAME: &str = "triad-lb-name";
const LB_MODE: &str = "triad-lb-mode";
const LB_SCHEME: &str = "triad-lb-scheme";
/// Node mode: the registration ports the balancer node passes through, `9345-6443`.
const LB_REGISTRATION: &str = "triad-lb-registration";

/// Where nginx finds the certificate and key on a balancer node.
const NODE_CERT: &str = "/etc/nginx/triad/tls.crt";
const NODE_KEY: &str = "/etc/nginx/triad/tls.key";

/// What node mode takes from the spec for the balancer node.
#[derive(Clone, Default)]
struct NodeDefaults {
    size: Option<String>,
    image: Option<String>,
    disk_gib: Option<u32>,
    ssh_allowed_cidrs: Vec<String>,
    proxy: Option<(ProxyUrl, ProxyUrl)>,
}

/// The NGINX load balancer. See the [crate documentation](crate).
pub struct NginxProvider {
    settings: NginxSettings,
    nodes: Option<Arc<dyn NodeProvider>>,
    defaults: NodeDefaults,
    /// The last balancer request (node mode rebuilds the node from it).
    request: Mutex<Option<LoadBalancerRequest>>,
}

impl std::fmt::Debug for NginxProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxProvider")
            .field("settings", &self.settings)
            .field("nodes", &self.nodes.as_ref().map(|n| n.name().to_owned()))
            .finish_non_exhaustive()
    }
}

fn err(action: &str, resource: &str, kind: FailureKind, message: impl Into<String>) -> Error {
    Error::provider(PROVIDER, action, resource, kind, message)
}

impl NginxProvider {
    /// Host mode with explicit settings (for tests and embedders).
    pub fn on_host(settings: NginxSettings) -> Result<Self> {
        let settings = NginxSettings {
            run_on: RunOn::Host,
            ..settings
        };
        Self::checked(settings, None)
    }

    /// Node mode: the balancer node is made through `nodes`.
    pub fn on_nodes(settings: NginxSettings, nodes: Arc<dyn NodeProvider>) -> Result<Self> {
        let settings = NginxSettings {
            run_on: RunOn::Node,
            ..settings
        };
        Self::checked(settings, Some(nodes))
    }

    fn checked(settings: NginxSettings, nodes: Option<Arc<dyn NodeProvider>>) -> Result<Self> {
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(problems.into()));
        }
        Ok(Self {
            settings,
            nodes,
            defaults: NodeDefaults::default(),
            request: Mutex::new(None),
        })
    }

    /// A provider from the spec's `[nginx]` section (an absent section means host
    /// mode with defaults, which then lacks `address`). Node mode needs the node
    /// provider the balancer node is made with — the one for the Rancher nodes, or
    /// any other; host mode ignores it.
    ///
    /// In node mode the balancer is built for the spec's node names, with the
    /// spec's size, image, disk, SSH keys and proxy unless `[nginx]` overrides them.
    pub fn from_spec(spec: &ValidSpec, nodes: Option<Arc<dyn NodeProvider>>) -> Result<Self> {
        let mut settings = Self::settings_from_spec(spec)?;
        let mut problems = settings.problems();
        problems.extend(Self::spec_problems(spec, &settings));
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(problems.into()));
        }
        if settings.run_on == RunOn::Node {
            if settings.expected_nodes.is_empty() {
                settings.expected_nodes = spec.node_names();
            }
            if settings.ssh_authorized_keys.is_empty() {
                settings.ssh_authorized_keys = spec.nodes.ssh_authorized_keys.clone();
            }
        }
        let nodes = match settings.run_on {
            RunOn::Host => None,
            RunOn::Node => Some(nodes.ok_or_else(|| {
                Error::invalid(
                    "nginx.run_on",
                    "is `node`, but no node provider was given for the balancer node",
                    "pass the node provider to NginxProvider::from_spec, or use run_on = \"host\"",
                )
            })?),
        };
        let mut p = Self::checked(settings, nodes)?;
        p.defaults = NodeDefaults {
            size: p
                .settings
                .node_size
                .clone()
                .or_else(|| spec.nodes.size.clone()),
            image: p
                .settings
                .node_image
                .clone()
                .or_else(|| spec.nodes.image.clone()),
            disk_gib: spec.nodes.disk_gib,
            ssh_allowed_cidrs: spec.nodes.ssh_allowed_cidrs.clone(),
            proxy: spec.proxy.as_ref().map(|p| {
                (
                    p.http.clone(),
                    p.https.clone().unwrap_or_else(|| p.http.clone()),
                )
            }),
        };
        Ok(p)
    }

    fn settings_from_spec(spec: &ValidSpec) -> Result<NginxSettings> {
        match &spec.nginx {
            Some(section) => section.parse::<NginxSettings>("nginx"),
            None => Ok(NginxSettings::default()),
        }
    }

    /// Problems that need both the settings and the rest of the spec.
    fn spec_problems(spec: &ValidSpec, s: &NginxSettings) -> Vec<triad_core::error::SpecProblem> {
        let mut out = Vec::new();
        if spec.load_balancer.mode == LbMode::L7 {
            if s.certificate_key.is_none() {
                out.push(triad_core::error::SpecProblem {
                    field: "nginx.certificate_key".into(),
                    problem:
                        "is missing; layer 7 needs the private key of load_balancer.certificate"
                            .into(),
                    fix: "set nginx.certificate_key to the PEM key's path".into(),
                });
            }
            if s.run_on == RunOn::Node {
                for (field, path) in [
                    (
                        "load_balancer.certificate",
                        spec.load_balancer.certificate.as_deref().map(PathBuf::from),
                    ),
                    ("nginx.certificate_key", s.certificate_key.clone()),
                ] {
                    if let Some(p) = path {
                        if let Err(e) = std::fs::metadata(&p) {
                            out.push(triad_core::error::SpecProblem {
                                field: field.into(),
                                problem: format!("cannot read {}: {e}", p.display()),
                                fix: "node mode copies the PEM file into the balancer node's user data: give a readable path".into(),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The settings in force.
    pub fn settings(&self) -> &NginxSettings {
        &self.settings
    }

    fn remember(&self, request: &LoadBalancerRequest) {
        *self.request.lock().unwrap_or_else(|e| e.into_inner()) = Some(request.clone());
    }

    fn last_request(&self) -> Option<LoadBalancerRequest> {
        self.request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Targets from nodes; every node must have a private address.
fn targets_of(nodes: &[Node], action: &str, resource: &str) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = nodes
        .iter()
        .map(|n| {
            n.private_ip
                .map(|address| Target {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    address,
                })
                .ok_or_else(|| {
                    err(
                        action,
                        resource,
                        FailureKind::InvalidRequest,
                        format!("node {} has no private address yet", n.name),
                    )
                })
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| {
        natural(&a.name)
            .cmp(&natural(&b.name))
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

/// `rancher-10` after `rancher-9`.
fn natural(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_owned(), num.parse().unwrap_or(0))
}

fn ids(targets: &[Target]) -> Vec<String> {
    let mut v: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    v.sort();
    v
}

/// A stable hash of a target set (FNV-1a 64, hex): the same on every run and
/// platform, short enough for any cloud's label value.
pub fn targets_hash(targets: &[Target]) -> String {
    let mut lines: Vec<String> = targets
        .iter()
        .map(|t| format!("{}={}", t.id, t.address))
        .collect();
    lines.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn endpoint_of(address: &str) -> Endpoint {
    match address.trim().parse() {
        Ok(ip) => Endpoint::Ip {
            addresses: vec![ip],
        },
        Err(_) => Endpoint::Hostname {
            name: address.trim().trim_end_matches('.').to_ascii_lowercase(),
            alias_zone: None,
        },
    }
}

// ---------------------------------------------------------------------------
// Host mode.
// ---------------------------------------------------------------------------

impl NginxProvider {
    fn config_path(&self) -> &Path {
        &self.settings.config_path
    }

    fn host_resource(&self) -> String {
        format!("nginx config {}", self.config_path().display())
    }

    async fn read_config(&self, action: &str) -> Result<Option<String>> {
        match tokio::fs::read_to_string(self.config_path()).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(
                action,
                &self.host_resource(),
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    FailureKind::Permission
                } else {
                    FailureKind::Other
                },
                e.to_string(),
            )),
        }
    }

    /// Our header in the file, `None` when there is no file, an error when the file
    /// is somebody else's.
    async fn owned_header(&self, cluster: &ClusterRef, action: &str) -> Result<Option<Header>> {
        let Some(text) = self.read_config(action).await? else {
            return Ok(None);
        };
        match render::parse_header(&text) {
            Some(h) if h.cluster == cluster.name => Ok(Some(h)),
            Some(h) => Err(err(
                action,
                &self.host_resource(),
                FailureKind::Conflict,
                format!(
                    "the file belongs to triad cluster `{}`; use another config_path (one balancer per cluster)",
                    h.cluster
                ),
            )),
            None => Err(err(
                action,
                &self.host_resource(),
                FailureKind::Conflict,
                "the file exists without triad's header; triad never overwrites a configuration it did not write — move it away or choose another config_path",
            )),
        }
    }

    fn host_lb(&self, h: &Header) -> LoadBalancer {
        LoadBalancer {
            id: format!("nginx:{}", self.config_path().display()),
            name: h.name.clone(),
            mode: h.mode,
            scheme: h.scheme,
            state: LbState::Active,
            endpoint: self.settings.address.as_deref().map(endpoint_of),
            listeners: render::listeners(h.mode, &self.settings, &h.registration_ports),
            targets: ids(&h.targets),
            labels: Default::default(),
            partial_targets: Vec::new(),
        }
    }

    fn nginx_args(&self, config: &Path) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.settings.prefix {
            args.push("-p".to_owned());
            args.push(p.display().to_string());
        }
        args.push("-c".to_owned());
        args.push(config.display().to_string());
        args
    }

    async fn run(&self, argv: &[String], action: &str) -> Result<String> {
        let resource = self.host_resource();
        let (bin, args) = argv.split_first().ok_or_else(|| {
            err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                "empty command",
            )
        })?;
        debug!(command = ?argv, "running");
        let out = tokio::process::Command::new(bin)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                err(
                    action,
                    &resource,
                    FailureKind::NotFound,
                    format!("cannot run `{bin}`: {e} (set nginx.nginx_bin or the command)"),
                )
            })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(err(
                action,
                &resource,
                FailureKind::Other,
                format!(
                    "`{}` failed ({}): {}",
                    argv.join(" "),
                    out.status,
                    text.trim()
                ),
            ))
        }
    }

    /// Write `content` unless the file already holds it: temporary file, `nginx -t`,
    /// rename, reload. Returns whether anything changed.
    async fn install(&self, content: &str, action: &str) -> Result<bool> {
        let resource = self.host_resource();
        let path = self.config_path();
        let previous = self.read_config(action).await?;
        if previous.as_deref() == Some(content) {
            debug!(path = %path.display(), "configuration unchanged; not reloading");
            return Ok(false);
        }
        let io = |e: std::io::Error| {
            err(
                action,
                &resource,
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    FailureKind::Permission
                } else {
                    FailureKind::Other
                },
                e.to_string(),
            )
        };
        let tmp = path.with_extension("triad-new");
        tokio::fs::write(&tmp, content).await.map_err(io)?;
        let mut test = vec![
            self.settings.nginx_bin.display().to_string(),
            "-t".to_owned(),
            "-q".to_owned(),
        ];
        test.extend(self.nginx_args(&tmp));
        if let Err(e) = self.run(&test, action).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(match e {
                Error::Provider { message, .. } => err(
                    action,
                    &resource,
                    FailureKind::InvalidRequest,
                    format!("nginx rejected the rendered configuration: {message}"),
                ),
                e => e,
            });
        }
        tokio::fs::rename(&tmp, path).await.map_err(io)?;
        let reload = match &self.settings.reload_command {
            Some(c) => c.clone(),
            None => {
                let mut c = vec![self.settings.nginx_bin.display().to_string()];
                c.extend(self.nginx_args(path));
                c.extend(["-s".to_owned(), "reload".to_owned()]);
                c
            }
        };
        if let Err(e) = self.run(&reload, action).await {
            // Put the old file back, so that a rerun finds a difference and reloads
            // again instead of trusting a configuration nginx never loaded.
            let _ = match &previous {
                Some(old) => tokio::fs::write(path, old).await,
                None => tokio::fs::remove_file(path).await,
            };
            return Err(match e {
            Error::Provider { message, .. } => err(
                action,
                &resource,
                FailureKind::Other,
                format!("nginx did not reload the new configuration (is it running?); the previous file was put back: {message}"),
            ),
            e => e,
            });
        }
        info!(path = %path.display(), "nginx configuration written and reloaded");
        Ok(true)
    }

    fn host_render(&self, header: &Header) -> String {
        render::render(&render::Config {
            header: header.clone(),
            settings: &self.settings,
        })
    }

    async fn host_create(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let action = "create load balancer";
        let existing = self.owned_header(cluster, action).await?;
        let tls = match request.mode {
            LbMode::L4 => None,
            LbMode::L7 => Some(self.tls_paths(request, action)?),
        };
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Lb));
        let header = Header {
            cluster: cluster.name.clone(),
            name: request.name.clone(),
            mode: request.mode,
            scheme: request.scheme,
            labels,
            targets: existing.map(|h| h.targets).unwrap_or_default(),
            tls,
            registration_ports: request.registration_ports.clone(),
        };
        self.install(&self.host_render(&header), action).await?;
        Ok(self.host_lb(&header))
    }

    fn tls_paths(&self, request: &LoadBalancerRequest, action: &str) -> Result<(String, String)> {
        let resource = format!("load balancer {}", request.name);
        let cert = request.certificate.clone().ok_or_else(|| {
            err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                "layer 7 needs load_balancer.certificate (a PEM path)",
            )
        })?;
        let key = self.settings.certificate_key.as_ref().ok_or_else(|| {
            err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                "layer 7 needs nginx.certificate_key (a PEM path)",
            )
        })?;
        Ok((cert, key.display().to_string()))
    }

    async fn host_set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let action = "set targets of";
        let resource = format!("load balancer {}", lb.name);
        let mut header = self.owned_header(cluster, action).await?.ok_or_else(|| {
            err(
                action,
                &resource,
                FailureKind::NotFound,
                format!(
                    "{} does not exist; create the balancer first",
                    self.config_path().display()
                ),
            )
        })?;
        header.targets = targets_of(nodes, action, &resource)?;
        self.install(&self.host_render(&header), action).await?;
        Ok(self.host_lb(&header))
    }

    async fn host_delete(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let action = "delete load balancer";
        let Some(text) = self.read_config(action).await? else {
            return Ok(Vec::new());
        };
        match render::parse_header(&text) {
            Some(h) if h.cluster == cluster.name => {}
            // Not ours (another cluster's or no header): nothing of ours is there.
            _ => return Ok(Vec::new()),
        }
        let stop = match &self.settings.stop_command {
            Some(c) => c.clone(),
            None => {
                let mut c = vec![self.settings.nginx_bin.display().to_string()];
                c.extend(self.nginx_args(self.config_path()));
                c.extend(["-s".to_owned(), "quit".to_owned()]);
                c
            }
        };
        if let Err(e) = self.run(&stop, action).await {
            warn!(error = %e, "stopping nginx failed (not running?); deleting its configuration anyway");
        }
        match tokio::fs::remove_file(self.config_path()).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(err(
                    action,
                    &self.host_resource(),
                    FailureKind::Other,
                    e.to_string(),
                ))
            }
        }
        info!(path = %self.config_path().display(), "nginx configuration deleted");
        Ok(vec![self.host_resource()])
    }
}

// ---------------------------------------------------------------------------
// Node mode.
// ---------------------------------------------------------------------------

/// The pseudo-cluster balancer nodes belong to: never the Rancher cluster itself.
pub fn balancer_cluster(cluster: &ClusterRef) -> ClusterRef {
    ClusterRef {
        name: format!("{}-lb", cluster.name),
        region: cluster.region.clone(),
        dns_zone: None,
        labels: cluster.labels.clone(),
        id: cluster.id.clone(),
    }
}

#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    fqdn: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh_authorized_keys: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apt: Option<AptProxy>,
    packages: Vec<&'static str>,
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<&'static str>>,
}

#[derive(Serialize)]
struct AptProxy {
    http_proxy: String,
    https_proxy: String,
}

#[derive(Serialize)]
struct WriteFile {
    path: &'static str,
    owner: &'static str,
    permissions: &'static str,
    defer: bool,
    content: String,
}

impl NginxProvider {
    fn node_provider(&self, action: &str, resource: &str) -> Result<&Arc<dyn NodeProvider>> {
        self.nodes.as_ref().ok_or_else(|| {
            err(
                action,
                resource,
                FailureKind::InvalidRequest,
                "node mode has no node provider",
            )
        })
    }

    /// The cloud-init user data of a balancer node: apt proxy (when the spec has
    /// one), nginx and its stream module, the configuration (and for l7 the
    /// certificate and key) written after the packages, then a checked restart.
    ///
    /// It holds the TLS key (l7) and the proxy password, if any: treat it as a secret.
    fn user_data(&self, name: &str, config: String, tls: Option<(String, String)>) -> String {
        let mut write_files = vec![WriteFile {
            path: "/etc/nginx/nginx.conf",
            owner: "root:root",
            permissions: "0644",
            defer: true,
            content: config,
        }];
        if let Some((cert, key)) = tls {
            write_files.push(WriteFile {
                path: NODE_CERT,
                owner: "root:root",
                permissions: "0644",
                defer: true,
                content: cert,
            });
            write_files.push(WriteFile {
                path: NODE_KEY,
                owner: "root:root",
                permissions: "0600",
                defer: true,
                content: key,
            });
        }
        let doc = CloudConfig {
            hostname: name,
            fqdn: name,
            ssh_authorized_keys: self
                .settings
                .ssh_authorized_keys
                .iter()
                .map(String::as_str)
                .collect(),
            apt: self.defaults.proxy.as_ref().map(|(http, https)| AptProxy {
                http_proxy: http.expose().to_owned(),
                https_proxy: https.expose().to_owned(),
            }),
            packages: vec!["nginx", "libnginx-mod-stream"],
            write_files,
            runcmd: vec![
                vec!["systemctl", "enable", "nginx"],
                vec!["sh", "-c", "nginx -t && systemctl restart nginx"],
            ],
        };
        let body = serde_norway::to_string(&doc).expect("cloud-config structs always serialise");
        format!("#cloud-config\n{body}")
    }

    /// The running Rancher nodes the balancer should serve.
    async fn wanted(
        &self,
        cluster: &ClusterRef,
        action: &str,
        resource: &str,
    ) -> Result<Vec<Node>> {
        let nodes = self
            .node_provider(action, resource)?
            .discover_nodes(cluster)
            .await?;
        let expected = &self.settings.expected_nodes;
        Ok(nodes
            .into_iter()
            .filter(|n| n.is_ready() && (expected.is_empty() || expected.contains(&n.name)))
            .collect())
    }

    fn wanted_complete(&self, wanted: &[Node]) -> bool {
        let expected = &self.settings.expected_nodes;
        if expected.is_empty() {
            return !wanted.is_empty();
        }
        let mut names: Vec<&str> = wanted.iter().map(|n| n.name.as_str()).collect();
        names.sort();
        names.dedup();
        names.len() == expected.len()
    }

    async fn balancer_nodes(
        &self,
        cluster: &ClusterRef,
        action: &str,
        resource: &str,
    ) -> Result<Vec<Node>> {
        let found = self
            .node_provider(action, resource)?
            .discover_nodes(&balancer_cluster(cluster))
            .await?;
        Ok(found
            .into_iter()
            .filter(|n| {
                n.state != NodeState::Terminating && n.labels.get(LB_FOR) == Some(&cluster.name)
            })
            .collect())
    }

    fn node_lb(&self, node: &Node, active: bool, targets: Vec<String>) -> LoadBalancer {
        let mode = if node.labels.get(LB_MODE).map(String::as_str) == Some("l7") {
            LbMode::L7
        } else {
            LbMode::L4
        };
        let registration: Vec<u16> = node
            .labels
            .get(LB_REGISTRATION)
            .map(|v| v.split('-').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default();
        let scheme = if node.labels.get(LB_SCHEME).map(String::as_str) == Some("internal") {
            LbScheme::Internal
        } else {
            LbScheme::InternetFacing
        };
        let address = match scheme {
            LbScheme::InternetFacing => node.public_ip.or(node.private_ip),
            LbScheme::Internal => node.private_ip,
        };
        let ready = active && node.is_ready();
        LoadBalancer {
            id: node.id.clone(),
            name: node
                .labels
                .get(LB_NAME)
                .cloned()
                .unwrap_or_else(|| node.name.clone()),
            mode,
            scheme,
            state: if ready {
                LbState::Active
            } else {
                LbState::Provisioning
            },
            endpoint: address
                .filter(|_| node.is_ready())
                .map(|a| Endpoint::Ip { addresses: vec![a] }),
            listeners: render::listeners(mode, &self.settings, &registration),
            targets,
            labels: Default::default(),
            partial_targets: Vec::new(),
        }
    }

    async fn node_discover(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        let (action, resource) = (
            "discover load balancer",
            format!("load balancer {}", cluster.name),
        );
        let lbs = self.balancer_nodes(cluster, action, &resource).await?;
        if lbs.is_empty() {
            return Ok(None);
        }
        let wanted = self.wanted(cluster, action, &resource).await?;
        let complete = self.wanted_complete(&wanted);
        let want_targets = targets_of(&wanted, action, &resource)?;
        let hash = targets_hash(&want_targets);
        // A balancer node built for exactly the nodes that run now is active; any
        // other is reported provisioning, so a plan completes it (rebuilds it).
        if let Some(n) = lbs.iter().find(|n| n.labels.get(LB_TARGETS) == Some(&hash)) {
            return Ok(Some(self.node_lb(n, complete, ids(&want_targets))));
        }
        Ok(Some(self.node_lb(&lbs[0], false, Vec::new())))
    }

    async fn node_create(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        self.remember(request);
        if let Some(lb) = self.node_discover(cluster).await? {
            return Ok(lb);
        }
        // The node is made by wait_load_balancer, once the Rancher nodes have addresses.
        Ok(LoadBalancer {
            id: format!("pending:{}", balancer_cluster(cluster).name),
            name: request.name.clone(),
            mode: request.mode,
            scheme: request.scheme,
            state: LbState::Provisioning,
            endpoint: None,
            listeners: render::listeners(request.mode, &self.settings, &request.registration_ports),
            targets: Vec::new(),
            labels: Default::default(),
            partial_targets: Vec::new(),
        })
    }

    /// The balancer node for `targets`: found by its targets hash, or created; then
    /// waited for. Older balancer nodes are deleted once it runs.
    async fn ensure_node(
        &self,
        cluster: &ClusterRef,
        targets: &[Target],
        deadline: tokio::time::Instant,
        action: &str,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", cluster.name);
        let request = self.last_request().ok_or_else(|| {
            err(action, &resource, FailureKind::InvalidRequest, "create_load_balancer was not called in this process; node mode needs the request to build the balancer node")
        })?;
        let np = self.node_provider(action, &resource)?;
        let lb_cluster = balancer_cluster(cluster);
        let hash = targets_hash(targets);
        let existing = self.balancer_nodes(cluster, action, &resource).await?;
        let node = match existing
            .iter()
            .find(|n| n.labels.get(LB_TARGETS) == Some(&hash))
        {
            Some(n) => n.clone(),
            None => {
                let zone =
                    match &self.settings.node_zone {
                        Some(z) => z.clone(),
                        None => match request.zones.first() {
                            Some(z) => z.clone(),
                            None => np.zones(&lb_cluster).await?.into_iter().next().ok_or_else(
                                || {
                                    err(
                                        action,
                                        &resource,
                                        FailureKind::NotFound,
                                        "the node provider has no zone",
                                    )
                                },
                            )?,
                        },
                    };
                let name = format!("{}-lb-{}", cluster.name, &hash[..8]);
                let (tls_files, tls_paths) = match request.mode {
                    LbMode::L4 => (None, None),
                    LbMode::L7 => {
                        let (cert, key) = self.tls_paths(&request, action)?;
                        let read = |p: &str| {
                            std::fs::read_to_string(p).map_err(|e| {
                                err(
                                    action,
                                    &resource,
                                    FailureKind::InvalidRequest,
                                    format!("cannot read {p}: {e}"),
                                )
                            })
                        };
                        (
                            Some((read(&cert)?, read(&key)?)),
                            Some((NODE_CERT.to_owned(), NODE_KEY.to_owned())),
                        )
                    }
                };
                let mut labels = request.labels.clone();
                labels.extend(lb_cluster.labels_for(Role::Node));
                labels.insert(LB_FOR.into(), cluster.name.clone());
                labels.insert(LB_TARGETS.into(), hash.clone());
                labels.insert(LB_NAME.into(), request.name.clone());
                labels.insert(LB_MODE.into(), request.mode.to_string());
                labels.insert(LB_SCHEME.into(), request.scheme.to_string());
                if !request.registration_ports.is_empty() {
                    let ports: Vec<String> = request
                        .registration_ports
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    labels.insert(LB_REGISTRATION.into(), ports.join("-"));
                }
                let mut header_labels = request.labels.clone();
                header_labels.extend(cluster.labels_for(Role::Lb));
                let config = render::render(&render::Config {
                    header: Header {
                        cluster: cluster.name.clone(),
                        name: request.name.clone(),
                        mode: request.mode,
                        scheme: request.scheme,
                        labels: header_labels,
                        targets: targets.to_vec(),
                        tls: tls_paths,
                        registration_ports: request.registration_ports.clone(),
                    },
                    settings: &self.settings,
                });
                let node_request = NodeRequest {
                    name: name.clone(),
                    zone,
                    size: self.defaults.size.clone(),
                    image: self.defaults.image.clone(),
                    disk_gib: self.defaults.disk_gib,
                    ssh_allowed_cidrs: self.defaults.ssh_allowed_cidrs.clone(),
                    labels,
                    user_data: self.user_data(&name, config, tls_files),
                };
                info!(node = %name, targets = targets.len(), "creating the balancer node");
                np.create_node(&lb_cluster, &node_request).await?
            }
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let node = np.wait_node(&lb_cluster, &node, left).await?;
        for old in existing.iter().filter(|n| n.id != node.id) {
            info!(node = %old.name, "deleting the balancer node built for other targets");
            np.delete_node(&lb_cluster, old).await?;
        }
        Ok(self.node_lb(&node, true, ids(targets)))
    }

    async fn node_wait(&self, cluster: &ClusterRef, timeout: Duration) -> Result<LoadBalancer> {
        let action = "wait for load balancer";
        let resource = format!("load balancer {}", cluster.name);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let wanted = self.wanted(cluster, action, &resource).await?;
            if self.wanted_complete(&wanted) {
                let targets = targets_of(&wanted, action, &resource)?;
                return self.ensure_node(cluster, &targets, deadline, action).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    resource: format!("the Rancher nodes behind load balancer {}", cluster.name),
                    state: format!(
                        "running (have {} of {:?})",
                        wanted.len(),
                        self.settings.expected_nodes
                    ),
                    after: timeout,
                });
            }
            tokio::time::sleep(self.settings.poll_interval()).await;
        }
    }

    async fn node_delete(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let action = "delete load balancer";
        let resource = format!("load balancer {}", cluster.name);
        let np = self.node_provider(action, &resource)?;
        let lb_cluster = balancer_cluster(cluster);
        let mut deleted = Vec::new();
        let all = np.discover_nodes(&lb_cluster).await?;
        for n in all
            .iter()
            .filter(|n| n.labels.get(LB_FOR) == Some(&cluster.name))
        {
            if n.state != NodeState::Terminating {
                deleted.push(format!("balancer node {} ({})", n.name, n.id));
            }
            np.delete_node(&lb_cluster, n).await?;
        }
        if all.is_empty() {
            // Plumbing left by an earlier, interrupted delete.
            deleted.extend(np.cleanup(&lb_cluster).await?);
            return Ok(deleted);
        }
        // Cluster-wide plumbing (security groups) can only go once the node is gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30 * 60);
        while !np.discover_nodes(&lb_cluster).await?.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    resource: format!("balancer nodes of {}", cluster.name),
                    state: "deleted".into(),
                    after: Duration::from_secs(30 * 60),
                });
            }
            tokio::time::sleep(self.settings.poll_interval()).await;
        }
        deleted.extend(np.cleanup(&lb_cluster).await?);
        Ok(deleted)
    }
}

#[async_trait]
impl LoadBalancerProvider for NginxProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        let mut problems = match Self::settings_from_spec(spec) {
            Ok(s) => {
                let mut p = s.problems();
                p.extend(Self::spec_problems(spec, &s));
                if s.run_on == RunOn::Node && self.nodes.is_none() {
                    p.push(triad_core::error::SpecProblem {
                        field: "nginx.run_on".into(),
                        problem: "is `node`, but this provider has no node provider".into(),
                        fix: "build it with NginxProvider::from_spec(spec, Some(nodes))".into(),
                    });
                }
                p
            }
            Err(Error::InvalidSpec(p)) => p.0,
            Err(e) => return Err(e),
        };
        problems.dedup();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSpec(problems.into()))
        }
    }

    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        match self.settings.run_on {
            RunOn::Host => match self.read_config("discover load balancer").await? {
                Some(text) => Ok(render::parse_header(&text)
                    .filter(|h| h.cluster == cluster.name)
                    .map(|h| self.host_lb(&h))),
                None => Ok(None),
            },
            RunOn::Node => self.node_discover(cluster).await,
        }
    }

    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        match self.settings.run_on {
            RunOn::Host => self.host_create(cluster, request).await,
            RunOn::Node => self.node_create(cluster, request).await,
        }
    }

    async fn wait_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        match self.settings.run_on {
            // Written, checked and reloaded by create: active as soon as it exists.
            RunOn::Host => {
                let h = self
                    .owned_header(cluster, "wait for load balancer")
                    .await?
                    .ok_or_else(|| {
                        err(
                            "wait for load balancer",
                            &format!("load balancer {}", lb.name),
                            FailureKind::NotFound,
                            format!("{} does not exist", self.config_path().display()),
                        )
                    })?;
                Ok(self.host_lb(&h))
            }
            RunOn::Node => self.node_wait(cluster, timeout).await,
        }
    }

    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        match self.settings.run_on {
            RunOn::Host => self.host_set_targets(cluster, lb, nodes).await,
            RunOn::Node => {
                let action = "set targets of";
                let targets = targets_of(nodes, action, &format!("load balancer {}", lb.name))?;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30 * 60);
                self.ensure_node(cluster, &targets, deadline, action).await
            }
        }
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        match self.settings.run_on {
            RunOn::Host => self.host_delete(cluster).await,
            RunOn::Node => self.node_delete(cluster).await,
        }
    }
}

/// The labels a balancer node carries, for embedders that list them.
pub fn balancer_node_labels(node: &Node) -> BTreeMap<String, String> {
    node.labels
        .iter()
        .filter(|(k, _)| k.starts_with("triad-lb") || k.as_str() == labels::CLUSTER)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_hash_is_stable_and_order_free() {
        let t = |id: &str, ip: &str| Target {
            id: id.into(),
            name: id.into(),
            address: ip.parse().unwrap(),
        };
        let a = targets_hash(&[t("a", "10.0.0.1"), t("b", "10.0.0.2")]);
        let b = targets_hash(&[t("b", "10.0.0.2"), t("a", "10.0.0.1")]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(a, targets_hash(&[t("a", "10.0.0.1")]));
        // Pinned: labels written by one version must be read the same by the next.
        assert_eq!(targets_hash(&[]), "cbf29ce484222325");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["r-10", "r-9", "r-1"];
        v.sort_by_key(|n| natural(n));
        assert_eq!(v, ["r-1", "r-9", "r-10"]);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint_of("192.0.2.1"),
            Endpoint::Ip {
                addresses: vec!["192.0.2.1".parse().unwrap()]
            }
        );
        assert_eq!(
            endpoint_of("LB.example.com."),
            Endpoint::Hostname {
                name: "lb.example.com".into(),
                alias_zone: None
            }
        );
    }

    #[test]
    fn from_spec_node_mode_needs_a_node_provider() {
        let spec = triad_core::ClusterSpec::from_toml(
            "name = \"r\"\nregion = \"dc\"\n[dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n[nginx]\nrun_on = \"node\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let e = NginxProvider::from_spec(&spec, None).unwrap_err();
        assert!(e.spec_problems().unwrap().names("nginx.run_on"), "{e}");
    }

    #[test]
    fn from_spec_l7_needs_the_key() {
        let spec = triad_core::ClusterSpec::from_toml(
            "name = \"r\"\nregion = \"dc\"\n[load_balancer]\nmode = \"l7\"\ncertificate = \"/c.pem\"\n[dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n[nginx]\naddress = \"192.0.2.1\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let e = NginxProvider::from_spec(&spec, None).unwrap_err();
        assert!(
            e.spec_problems().unwrap().names("nginx.certificate_key"),
            "{e}"
        );
    }
}
