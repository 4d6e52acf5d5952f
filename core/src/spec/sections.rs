//! The infrastructure sections: `[nodes]`, `[proxy]`, `[load_balancer]` and
//! `[dns]`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_NODE_COUNT, DEFAULT_TTL};
use crate::secret::ProxyUrl;

/// `[nodes]`: how many Rancher nodes, and what they look like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodesSpec {
    /// Number of nodes: odd (etcd needs a majority), 3 by default.
    #[serde(default = "default_count")]
    pub count: u32,
    /// Allow a single, non-HA node (`count = 1`). Off by default.
    #[serde(default)]
    pub allow_non_ha: bool,
    /// Machine size; provider-specific (`t3.xlarge`, `e2-standard-4`, `4cpu-16gb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Machine image; provider-specific (an AMI id, an image self-link, a template path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Login user of the image, used in the rendered RKE `cluster.yml`.
    #[serde(default = "default_ssh_user")]
    pub ssh_user: String,
    /// Public keys put in the login user's `authorized_keys`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    /// CIDRs allowed to reach the nodes on SSH (port 22). Empty: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_allowed_cidrs: Vec<String>,
    /// Root disk size in GiB; provider default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
    /// The CIDRs of the network the nodes live in (subnets, VPC), when known: they
    /// go into the nodes' NO_PROXY and must not overlap `kubernetes.cidr_pods` or
    /// `kubernetes.cidr_services`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_cidrs: Vec<String>,
}

fn default_count() -> u32 {
    DEFAULT_NODE_COUNT
}
fn default_ssh_user() -> String {
    "ubuntu".to_owned()
}

impl Default for NodesSpec {
    fn default() -> Self {
        Self {
            count: DEFAULT_NODE_COUNT,
            allow_non_ha: false,
            size: None,
            image: None,
            ssh_user: default_ssh_user(),
            ssh_authorized_keys: Vec::new(),
            ssh_allowed_cidrs: Vec::new(),
            disk_gib: None,
            network_cidrs: Vec::new(),
        }
    }
}

/// `[proxy]`: the HTTP proxy the nodes use for everything outside the cluster.
///
/// Proxy URLs may carry a password; [`ProxyUrl`] never shows it in `Debug` or
/// `Display` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// Proxy for `http://` URLs, e.g. `http://proxy.internal:3128`.
    pub http: ProxyUrl,
    /// Proxy for `https://` URLs; the `http` proxy when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<ProxyUrl>,
    /// Hosts, domains and CIDRs reached directly, added to Rancher's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
    /// PEM file with the CA of a TLS-intercepting proxy: added to the nodes' trust
    /// store by cloud-init and to Rancher's `additionalTrustedCAs`. Read at
    /// validation; a relative path is relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// Layer 4 or layer 7 balancing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    /// TCP 80 and 443 passed through to the nodes (recommended); the cluster's
    /// ingress terminates TLS.
    #[default]
    L4,
    /// TLS terminated at the balancer; Rancher is installed with `tls=external`.
    L7,
}

impl fmt::Display for LbMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LbMode::L4 => "l4",
            LbMode::L7 => "l7",
        })
    }
}

/// Where the balancer listens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbScheme {
    /// Reachable from the internet.
    #[default]
    InternetFacing,
    /// Reachable only inside the network.
    Internal,
}

impl fmt::Display for LbScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LbScheme::InternetFacing => "internet-facing",
            LbScheme::Internal => "internal",
        })
    }
}

/// `[load_balancer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerSpec {
    /// `l4` (default) or `l7`.
    #[serde(default)]
    pub mode: LbMode,
    /// `internet-facing` (default) or `internal`.
    #[serde(default)]
    pub scheme: LbScheme,
    /// Certificate for `l7`: provider-specific reference (ACM ARN, GCE SSL
    /// certificate name, or a PEM path for NGINX). Required for `l7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// HTTP path the health check asks on port 80. Absent: follows
    /// `kubernetes.ingress` (`/healthz` for ingress-nginx, `/ping` for Traefik); see
    /// [`ValidSpec::health_check_path`](super::ValidSpec::health_check_path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_path: Option<String>,
    /// Where the Kubernetes nodes register with each other: `balancer` (default;
    /// the balancer also listens on TCP 9345 for RKE2 and 6443) or `first-node`
    /// (no extra listeners; the others join node 1's private address).
    #[serde(default)]
    pub registration: Registration,
    /// TLS policy of an `l7` balancer, provider-specific: the name of an existing
    /// Compute Engine SSL policy (by default triad makes `<name>-tls`, profile
    /// `MODERN`, TLS 1.2 and later), or an ELB security policy on EC2 (by default
    /// `ELBSecurityPolicy-TLS13-1-2-2021-06`, TLS 1.2 and 1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
}

impl Default for LoadBalancerSpec {
    fn default() -> Self {
        Self {
            mode: LbMode::L4,
            scheme: LbScheme::InternetFacing,
            certificate: None,
            health_check_path: None,
            registration: Registration::Balancer,
            ssl_policy: None,
        }
    }
}

/// `load_balancer.registration`: the fixed registration address of RKE2 / K3s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Registration {
    /// The balancer listens on the registration ports (RKE2 9345, and 6443) and the
    /// nodes join through the Rancher hostname, which resolves to it.
    #[default]
    Balancer,
    /// No registration listeners; nodes join node 1 directly.
    FirstNode,
}

/// Which DNS record type to make.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordChoice {
    /// A for an IP endpoint; alias (where the DNS provider has it) or CNAME for a
    /// hostname endpoint.
    #[default]
    Auto,
    /// An A record to the balancer's IP address(es).
    A,
    /// A CNAME to the balancer's hostname.
    Cname,
    /// A provider alias (Route 53) to the balancer; works at the zone apex.
    Alias,
}

/// `[dns]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The zone the record lives in, e.g. `example.com`.
    pub zone: String,
    /// The Rancher hostname, inside `zone`. It cannot change once Rancher is installed.
    pub hostname: String,
    /// `auto` (default), `a`, `cname` or `alias`.
    #[serde(default)]
    pub record: RecordChoice,
    /// TTL in seconds, 1..=86400, 60 by default.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_ttl() -> u32 {
    DEFAULT_TTL
}

/// Where Rancher's own ingress gets its certificate (`tls.source`), as the Rancher
/// chart's `ingress.tls.source` names it. Only with `load_balancer.mode = "l4"`:
/// in `l7` TLS ends at the balancer and Rancher runs with `tls=external`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsSource {
    /// Rancher's own CA, issued by cert-manager (the default).
    #[default]
    #[serde(rename = "rancher")]
    Rancher,
    /// Let's Encrypt, through cert-manager (HTTP-01: the hostname must be reachable
    /// from the internet on port 80).
    #[serde(rename = "letsEncrypt", alias = "lets_encrypt")]
    LetsEncrypt,
    /// Your own certificate, put into the `tls-rancher-ingress` secret by the
    /// hand-over's `install.sh` from `tls.crt` / `tls.key` beside it.
    #[serde(rename = "secret")]
    Secret,
}

impl TlsSource {
    /// The chart's name for it (`rancher`, `letsEncrypt`, `secret`).
    pub fn chart_value(self) -> &'static str {
        match self {
            TlsSource::Rancher => "rancher",
            TlsSource::LetsEncrypt => "letsEncrypt",
            TlsSource::Secret => "secret",
        }
    }
}

/// `[tls]`: Rancher's certificate and the CA that signed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// `rancher` (default), `letsEncrypt` or `secret`; `l4` only.
    #[serde(default)]
    pub source: TlsSource,
    /// The e-mail Let's Encrypt registers the account with; required with
    /// `source = "letsEncrypt"`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lets_encrypt_email: Option<String>,
    /// A PEM file with the private CA that signed Rancher's certificate (yours with
    /// `source = "secret"`, or the balancer's in `l7`): read at validation, written
    /// to the hand-over as `rancher/cacerts.pem`, put into the `tls-ca` secret, and
    /// the chart gets `privateCA: true` so agents trust it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}
