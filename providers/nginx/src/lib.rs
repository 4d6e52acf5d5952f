//! # triad-nginx
//!
//! triad's [`LoadBalancerProvider`] for clouds without a managed balancer (vSphere,
//! bare metal): NGINX configured as Rancher's NGINX page says — layer 4 `stream`
//! upstreams for 80 and 443 (`least_conn`, `max_fails=3 fail_timeout=5s`), or layer 7
//! with TLS terminated by NGINX.
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
//!   with other nodes (or `update_load_balancer` with another certificate or health
//!   check path) creates a new balancer node and deletes the old one, so the
//!   endpoint (the node's address) changes — the next apply points the DNS record at
//!   it. triad does not log in to nodes (no SSH). What the node is built from comes
//!   from the spec given to [`NginxProvider::from_spec`] (or the request given to
//!   [`NginxProvider::on_nodes`]) and the labels on the nodes, never from memory of
//!   an earlier call: a new process converges the targets as well as the first.
//!
//! Health checks are NGINX's passive ones (`max_fails`/`fail_timeout`): a stopped
//! node is skipped after a failed connection.
//!
//! **Day 2.** The balancer's fingerprint (`load_balancer.certificate`,
//! `health_check_path`) is in the header's labels (host mode) or the balancer node's
//! labels (node mode), so the plan shows drift; `update_load_balancer` rewrites the
//! file and reloads nginx (host mode) or rebuilds the balancer node (node mode).
#![warn(missing_docs)]

mod cloud_init;
mod host;
mod node;
mod render;
mod settings;
mod targets;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use triad_core::drift;
use triad_core::error::{Error, FailureKind, Result, SpecProblem};
use triad_core::labels::Role;
use triad_core::model::{LoadBalancer, LoadBalancerRequest, Node};
use triad_core::provider::{LoadBalancerProvider, NodeProvider};
use triad_core::secret::ProxyUrl;
use triad_core::spec::{ClusterRef, LbMode, ValidSpec};

use render::{Header, Target};

pub use node::balancer_cluster;
pub use settings::{NginxSettings, RunOn};

/// The provider's name in messages and the inventory.
pub const PROVIDER: &str = "nginx";

/// Label on a balancer node naming the Rancher cluster it serves.
pub const LB_FOR: &str = "triad-lb-for";

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

/// What node mode builds the balancer node from when the trait hands it no request
/// (`wait_load_balancer`, `set_targets`): known at construction, so any process can
/// rebuild it.
#[derive(Clone, Debug)]
enum Blueprint {
    /// From the spec: the request the orchestrator makes, for the cluster given at
    /// call time (name and ownership labels from it, fingerprint from the spec).
    Spec(LoadBalancerRequest),
    /// Given to [`NginxProvider::on_nodes`]: used as is.
    Given(LoadBalancerRequest),
}

/// The NGINX load balancer. See the [crate documentation](crate).
pub struct NginxProvider {
    settings: NginxSettings,
    nodes: Option<Arc<dyn NodeProvider>>,
    defaults: NodeDefaults,
    blueprint: Option<Blueprint>,
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
        Self::checked(settings, None, None)
    }

    /// Node mode with explicit settings (for tests and embedders): the balancer node
    /// is made through `nodes` from `request` (its name, mode, scheme, certificate,
    /// registration ports and labels) whenever the trait hands no request.
    pub fn on_nodes(
        settings: NginxSettings,
        nodes: Arc<dyn NodeProvider>,
        request: LoadBalancerRequest,
    ) -> Result<Self> {
        let settings = NginxSettings {
            run_on: RunOn::Node,
            ..settings
        };
        Self::checked(settings, Some(nodes), Some(Blueprint::Given(request)))
    }

    fn checked(
        settings: NginxSettings,
        nodes: Option<Arc<dyn NodeProvider>>,
        blueprint: Option<Blueprint>,
    ) -> Result<Self> {
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(problems.into()));
        }
        Ok(Self {
            settings,
            nodes,
            defaults: NodeDefaults::default(),
            blueprint,
        })
    }

    /// A provider from the spec's `[nginx]` section (an absent section means host
    /// mode with defaults, which then lacks `address`), checked once, here: every
    /// problem is in the error. Node mode needs the node provider the balancer node
    /// is made with — the one for the Rancher nodes, or any other; host mode ignores
    /// it.
    ///
    /// In node mode the balancer is built for the spec's node names, with the
    /// spec's size, image, disk, SSH keys and proxy unless `[nginx]` overrides them,
    /// and with the spec's `load_balancer` section.
    pub fn from_spec(spec: &ValidSpec, nodes: Option<Arc<dyn NodeProvider>>) -> Result<Self> {
        let mut settings = match &spec.nginx {
            Some(section) => section.parse::<NginxSettings>("nginx")?,
            None => NginxSettings::default(),
        };
        let mut problems = settings.problems();
        problems.extend(Self::spec_problems(spec, &settings));
        if settings.run_on == RunOn::Node && nodes.is_none() {
            problems.push(SpecProblem {
                field: "nginx.run_on".into(),
                problem: "is `node`, but no node provider was given for the balancer node".into(),
                fix: "pass the node provider to NginxProvider::from_spec, or use run_on = \"host\""
                    .into(),
            });
        }
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(problems.into()));
        }
        if settings.run_on == RunOn::Host {
            return Self::checked(settings, None, None);
        }
        if settings.expected_nodes.is_empty() {
            settings.expected_nodes = spec.node_names();
        }
        if settings.ssh_authorized_keys.is_empty() {
            settings.ssh_authorized_keys = spec.nodes.ssh_authorized_keys.clone();
        }
        let mut template = LoadBalancerRequest::new(
            String::new(),
            spec.load_balancer.mode,
            spec.load_balancer.scheme,
        );
        template.certificate = spec.load_balancer.certificate.clone();
        template.health_check_path = spec.health_check_path();
        template.registration_ports = spec.registration_ports();
        template.labels = drift::labels_of(&drift::load_balancer_wanted(spec));
        let blueprint = Blueprint::Spec(template);
        let mut p = Self::checked(settings, nodes, Some(blueprint))?;
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

    /// Problems that need both the settings and the rest of the spec.
    fn spec_problems(spec: &ValidSpec, s: &NginxSettings) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        if spec.load_balancer.mode == LbMode::L7 {
            if s.certificate_key.is_none() {
                out.push(SpecProblem {
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
                            out.push(SpecProblem {
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

    /// The request node mode builds the balancer node from for `cluster`.
    fn request_for(
        &self,
        cluster: &ClusterRef,
        action: &str,
        resource: &str,
    ) -> Result<LoadBalancerRequest> {
        match &self.blueprint {
            Some(Blueprint::Spec(template)) => {
                let mut request = template.clone();
                request.name = cluster.name.clone();
                request.labels = cluster.labels_for(Role::Lb);
                request.labels.extend(template.labels.clone());
                Ok(request)
            }
            Some(Blueprint::Given(request)) => Ok(request.clone()),
            None => Err(err(
                action,
                resource,
                FailureKind::InvalidRequest,
                "node mode needs the spec or a request to build the balancer node from; \
                 build the provider with NginxProvider::from_spec or on_nodes",
            )),
        }
    }

    /// The header of the configuration for `request` and `targets`; `node_tls` is
    /// where a balancer node keeps the certificate and key (host mode: the paths in
    /// the spec).
    fn header(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        targets: Vec<Target>,
        node_tls: Option<(&str, &str)>,
        action: &str,
    ) -> Result<Header> {
        let tls = match request.mode {
            LbMode::L4 => None,
            LbMode::L7 => {
                let paths = self.tls_paths(request, action)?;
                Some(match node_tls {
                    Some((cert, key)) => (cert.to_owned(), key.to_owned()),
                    None => paths,
                })
            }
        };
        let mut labels = request.labels.clone();
        labels.extend(cluster.labels_for(Role::Lb));
        Ok(Header {
            cluster: cluster.name.clone(),
            name: request.name.clone(),
            mode: request.mode,
            scheme: request.scheme,
            labels,
            targets,
            tls,
            registration_ports: request.registration_ports.clone(),
            health_check_path: Some(request.health_check_path.clone()),
        })
    }

    /// The certificate (from the request) and key (from the settings) paths.
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
}

#[async_trait]
impl LoadBalancerProvider for NginxProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    /// The settings were checked when the provider was built; this checks only what
    /// depends on the plan's spec (layer 7 needs `nginx.certificate_key`).
    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        let problems = Self::spec_problems(spec, &self.settings);
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
            RunOn::Host => {
                self.host_write(cluster, request, "create load balancer")
                    .await
            }
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
            RunOn::Node => self.node_set_targets(cluster, lb, nodes).await,
        }
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        match self.settings.run_on {
            RunOn::Host => self.host_delete(cluster).await,
            RunOn::Node => self.node_delete(cluster).await,
        }
    }

    /// Host mode: the file rewritten from `request` (certificate, health check
    /// path, labels with the fingerprint), targets kept, `nginx -t`, reload. Node
    /// mode: a new balancer node built from `request`, then the old one deleted.
    async fn update_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        match self.settings.run_on {
            RunOn::Host => {
                self.host_write(cluster, request, "update load balancer")
                    .await
            }
            RunOn::Node => self.node_update(cluster, lb, request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
