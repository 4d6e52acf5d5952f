//! Host mode: the whole `nginx.conf` on a host you manage, written atomically
//! (temporary file, `nginx -t`, rename) and reloaded; its header is the state.

use std::path::Path;

use tracing::{debug, info, warn};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{LbState, LoadBalancer, LoadBalancerRequest, Node};
use triad_core::spec::ClusterRef;

use crate::render::{self, Header};
use crate::targets::{endpoint_of, ids, targets_of};
use crate::{err, NginxProvider};

impl NginxProvider {
    pub(crate) fn config_path(&self) -> &Path {
        &self.settings.config_path
    }

    fn host_resource(&self) -> String {
        format!("nginx config {}", self.config_path().display())
    }

    pub(crate) async fn read_config(&self, action: &str) -> Result<Option<String>> {
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
    pub(crate) async fn owned_header(
        &self,
        cluster: &ClusterRef,
        action: &str,
    ) -> Result<Option<Header>> {
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

    pub(crate) fn host_lb(&self, h: &Header) -> LoadBalancer {
        LoadBalancer {
            id: format!("nginx:{}", self.config_path().display()),
            name: h.name.clone(),
            mode: h.mode,
            scheme: h.scheme,
            state: LbState::Active,
            endpoint: self.settings.address.as_deref().map(endpoint_of),
            registration_endpoint: None,
            listeners: render::listeners(h.mode, &self.settings, &h.registration_ports),
            targets: ids(&h.targets),
            // The header's labels, fingerprint included: the planner sees drift.
            labels: h.labels.clone(),
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

    /// Create (`action` "create load balancer") or update in place: the whole
    /// file from `request`, keeping the targets already there.
    pub(crate) async fn host_write(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        action: &str,
    ) -> Result<LoadBalancer> {
        let existing = self.owned_header(cluster, action).await?;
        let targets = existing.map(|h| h.targets).unwrap_or_default();
        let header = self.header(cluster, request, targets, None, action)?;
        self.install(&self.host_render(&header), action).await?;
        Ok(self.host_lb(&header))
    }

    pub(crate) async fn host_set_targets(
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

    pub(crate) async fn host_delete(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
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
