//! The declarative cluster spec: what users write (TOML, YAML or JSON), and its
//! validation into a [`ValidSpec`] before any cloud API is called.
//!
//! Validation reports **every** problem at once, each naming the field and the fix
//! (see [`SpecProblem`](crate::error::SpecProblem)); unknown fields are errors, so a
//! typo is never silently ignored.
//!
//! One concern per file: the infrastructure sections (`[nodes]`, `[proxy]`,
//! `[load_balancer]`, `[dns]`), the `[kubernetes]` section, a provider's own
//! section ([`ProviderSection`], secrets redacted), parsing (with parse errors that
//! show no secret) and the validated spec ([`ValidSpec`], [`ClusterRef`]). The
//! checks themselves live in `validate.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::choice::ProvidersSpec;

mod kubernetes;
mod parse;
mod provider_section;
mod sections;
mod valid;

pub use kubernetes::{
    Distribution, Ingress, KubernetesSpec, DEFAULT_CIDR_PODS, DEFAULT_CIDR_SERVICES, KUBE_API_PORT,
    RKE2_SUPERVISOR_PORT,
};
pub use provider_section::{is_secret_key, ProviderSection};
pub use sections::{
    DnsSpec, LbMode, LbScheme, LoadBalancerSpec, NodesSpec, ProxySpec, RecordChoice, Registration,
    TlsSource, TlsSpec,
};
pub use valid::{ClusterRef, ValidSpec};

/// Rancher's recommended node count: etcd on three nodes survives the loss of one.
pub const DEFAULT_NODE_COUNT: u32 = 3;
/// The largest node count a spec may ask for.
pub const MAX_NODE_COUNT: u32 = 99;
/// The longest cluster name: it prefixes cloud resource names that have tight limits
/// (an AWS target group name is at most 32 characters: `<name>-tcp-443`).
pub const MAX_NAME_LEN: usize = 24;
/// Default DNS TTL in seconds.
pub const DEFAULT_TTL: u32 = 60;
/// Largest accepted DNS TTL in seconds (one day).
pub const MAX_TTL: u32 = 86_400;

/// A cluster spec as written by a user.
///
/// Load one with [`ClusterSpec::from_toml`], [`ClusterSpec::from_yaml`],
/// [`ClusterSpec::from_json`] or [`ClusterSpec::from_path`]; turn it into a
/// [`ValidSpec`] with [`ClusterSpec::validate`].
///
/// ```
/// use triad_core::spec::ClusterSpec;
///
/// let spec = ClusterSpec::from_toml(r#"
///     name = "rancher"
///     region = "us-east-1"
///     [dns]
///     zone = "example.com"
///     hostname = "rancher.example.com"
/// "#).unwrap();
/// let valid = spec.validate().unwrap();
/// assert_eq!(valid.nodes.count, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Cluster name: the value of the `triad-cluster` ownership label and the prefix
    /// of every resource name. Lowercase letters, digits and `-`, at most 24 characters.
    pub name: String,
    /// The one region (or data centre) all nodes live in.
    pub region: String,
    /// Zones (failure domains) to spread nodes over. Empty: every zone of the region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// The Rancher nodes.
    #[serde(default)]
    pub nodes: NodesSpec,
    /// The HTTP proxy the nodes reach the internet through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,
    /// The load balancer in front of the nodes.
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,
    /// The DNS record for the Rancher hostname.
    pub dns: DnsSpec,
    /// `[kubernetes]`: the distribution the nodes run and whether they install it.
    #[serde(default)]
    pub kubernetes: KubernetesSpec,
    /// `[tls]`: where Rancher's certificate comes from and which CA signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Extra labels put on every resource beside triad's ownership labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `[sim]`: settings of the in-memory simulated cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<ProviderSection>,
    /// `[ec2]`: settings of the EC2 provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2: Option<ProviderSection>,
    /// `[gce]`: settings of the Compute Engine provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gce: Option<ProviderSection>,
    /// `[vsphere]`: settings of the vSphere provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsphere: Option<ProviderSection>,
    /// `[qemu]`: settings of the QEMU provider (nodes as local VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<ProviderSection>,
    /// `[nginx]`: settings of the NGINX load balancer provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<ProviderSection>,
    /// `[rfc2136]`: settings of the RFC 2136 dynamic DNS provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<ProviderSection>,
    /// `[providers]`: which provider makes the nodes, the balancer and the record,
    /// when the sections present do not say it alone (see [`crate::choice`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<ProvidersSpec>,
}
