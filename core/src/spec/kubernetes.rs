//! The `[kubernetes]` section: distribution, version, CIDRs, ingress, mirrors and
//! the join token's source.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `kubernetes.distribution`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// RKE2, Rancher's recommended distribution for the Rancher server.
    #[default]
    Rke2,
    /// K3s.
    K3s,
    /// RKE (v1): end of life since 31 July 2025, kept for existing users; the plan
    /// warns.
    Rke,
}

impl Distribution {
    /// `rke2`, `k3s` or `rke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Rke2 => "rke2",
            Distribution::K3s => "k3s",
            Distribution::Rke => "rke",
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kubernetes.ingress`: the cluster's ingress controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ingress {
    /// ingress-nginx: health check `/healthz`.
    Nginx,
    /// Traefik: health check `/ping`.
    Traefik,
}

impl Ingress {
    /// The HTTP path the balancer's health check asks on port 80.
    pub fn health_check_path(self) -> &'static str {
        match self {
            Ingress::Nginx => "/healthz",
            Ingress::Traefik => "/ping",
        }
    }
}

/// RKE2's and K3s's default pod CIDR.
pub const DEFAULT_CIDR_PODS: &str = "10.42.0.0/16";
/// RKE2's and K3s's default service CIDR.
pub const DEFAULT_CIDR_SERVICES: &str = "10.43.0.0/16";
/// The RKE2 supervisor (registration) port.
pub const RKE2_SUPERVISOR_PORT: u16 = 9345;
/// The Kubernetes API port.
pub const KUBE_API_PORT: u16 = 6443;

/// `[kubernetes]`: which distribution, which version, and whether the nodes
/// install it themselves.
///
/// The join token is never in the spec: it comes from `token_env` or `token_file`
/// (required when `install = true`, so every run, and every node made later, gets
/// the same token); a render-only bundle without one gets a fresh random token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSpec {
    /// `rke2` (default), `k3s` or `rke` (legacy).
    #[serde(default)]
    pub distribution: Distribution,
    /// An exact release, e.g. `v1.31.4+rke2r1` or `v1.31.4+k3s1`. Else `channel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `stable` (the default when no version is given), `latest`, `testing` or a
    /// minor such as `v1.31`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `true`: the nodes install and join through cloud-init, through the proxy.
    /// `false` (default): render the files only.
    #[serde(default)]
    pub install: bool,
    /// `nginx` or `traefik`; default: nginx for RKE2 and RKE, traefik for K3s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Ingress>,
    /// Name of the environment variable holding the join token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// File holding the join token (first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Pod CIDR; default 10.42.0.0/16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_pods: Option<String>,
    /// Service CIDR; default 10.43.0.0/16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_services: Option<String>,
    /// Registry mirrors: registry name (`docker.io`) → mirror endpoints
    /// (`https://mirror.corp:5000`); rendered into `registries.yaml`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, Vec<String>>,
}

impl KubernetesSpec {
    /// The ingress, with the distribution's default.
    pub fn ingress(&self) -> Ingress {
        self.ingress.unwrap_or(match self.distribution {
            Distribution::K3s => Ingress::Traefik,
            Distribution::Rke2 | Distribution::Rke => Ingress::Nginx,
        })
    }

    /// The pod CIDR, with the default.
    pub fn cidr_pods(&self) -> &str {
        self.cidr_pods.as_deref().unwrap_or(DEFAULT_CIDR_PODS)
    }

    /// The service CIDR, with the default.
    pub fn cidr_services(&self) -> &str {
        self.cidr_services
            .as_deref()
            .unwrap_or(DEFAULT_CIDR_SERVICES)
    }

    /// The channel the install script follows when no version is given.
    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or("stable")
    }
}
