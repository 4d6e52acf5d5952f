//! The validated spec and the cluster's identity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterSpec, Distribution, Registration, KUBE_API_PORT, RKE2_SUPERVISOR_PORT};
use crate::choice::ProviderChoice;
use crate::error::Error;
use crate::labels;
use crate::secret::Secret;

/// A spec that passed [`ClusterSpec::validate`]. Dereferences to [`ClusterSpec`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValidSpec {
    pub(super) spec: ClusterSpec,
    /// The join token (never serialized; `Debug` shows `****`).
    #[serde(skip)]
    pub(super) token: Option<Secret>,
    /// The proxy CA's PEM text.
    #[serde(skip)]
    pub(super) proxy_ca: Option<String>,
    /// The PEM text of `tls.ca_file`.
    #[serde(skip)]
    pub(super) tls_ca: Option<String>,
    /// The node network's CIDRs the node provider reported at plan
    /// ([`crate::NodeProvider::network_cidrs`]), beside `nodes.network_cidrs`.
    #[serde(skip)]
    pub(super) learned_network_cidrs: Vec<String>,
    /// The registration address an l7 balancer reported for its TCP companion
    /// ([`crate::model::LoadBalancer::registration_endpoint`]), learned at apply.
    #[serde(skip)]
    pub(super) learned_registration_host: Option<String>,
    /// Learned at plan: the balancer's own targets cannot reach it
    /// ([`crate::provider::LoadBalancerProvider::backends_reach_balancer`]), so the
    /// nodes join through the first node although the balancer has registration
    /// listeners.
    #[serde(skip)]
    pub(super) learned_join_first_node: bool,
    /// Learned at apply: the private address of the node the nodes made now join
    /// (`server:`), when they join through a node rather than the balancer.
    #[serde(skip)]
    pub(super) learned_join_host: Option<String>,
    /// Learned at apply: nodes of the cluster exist already, so a node made now
    /// joins them, even the first node's slot (which would otherwise start a
    /// cluster of its own).
    #[serde(skip)]
    pub(super) learned_joins_existing: bool,
}

impl std::ops::Deref for ValidSpec {
    type Target = ClusterSpec;
    fn deref(&self) -> &ClusterSpec {
        &self.spec
    }
}

impl ValidSpec {
    /// The cluster's identity: what ownership labels and discovery use.
    pub fn cluster(&self) -> ClusterRef {
        ClusterRef {
            name: self.name.clone(),
            region: self.region.clone(),
            dns_zone: Some(self.dns.zone.clone()),
            labels: self.labels.clone(),
            id: None,
        }
    }

    /// The names of the `count` nodes, `<cluster>-1` … `<cluster>-N`.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes.count)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    /// The Rancher hostname (`dns.hostname`, which validation made lowercase
    /// without a trailing dot, as `dns.zone`).
    pub fn fqdn(&self) -> String {
        self.dns.hostname.clone()
    }

    /// The node network: `nodes.network_cidrs`, then what the node provider
    /// reported at plan ([`crate::NodeProvider::network_cidrs`]), each once. Empty
    /// before a plan when the spec lists none.
    pub fn node_network_cidrs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self
            .nodes
            .network_cidrs
            .iter()
            .chain(&self.learned_network_cidrs)
        {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }

    /// This spec with the node network's CIDRs the node provider reported.
    pub(crate) fn with_learned_network_cidrs(&self, cidrs: Vec<String>) -> ValidSpec {
        ValidSpec {
            learned_network_cidrs: cidrs,
            ..self.clone()
        }
    }

    /// The registration address a balancer reported apart from the Rancher
    /// hostname (an l7 balancer's TCP companion), if one was learned.
    pub fn learned_registration_host(&self) -> Option<&str> {
        self.learned_registration_host.as_deref()
    }

    /// This spec with the registration address `lb` serves apart from the Rancher
    /// hostname ([`crate::model::LoadBalancer::registration_endpoint`]); unchanged
    /// when it has none.
    pub fn with_registration_of(&self, lb: &crate::model::LoadBalancer) -> ValidSpec {
        ValidSpec {
            learned_registration_host: lb
                .registration_endpoint
                .as_ref()
                .and_then(crate::model::Endpoint::host),
            ..self.clone()
        }
    }

    /// Whether the nodes join through the first node: `load_balancer.registration =
    /// "first-node"`, or a balancer whose own targets cannot reach it (learned at
    /// plan).
    pub fn joins_through_first_node(&self) -> bool {
        self.load_balancer.registration == Registration::FirstNode || self.learned_join_first_node
    }

    /// This spec with whether the nodes must join through the first node because
    /// the balancer's targets cannot reach it.
    pub(crate) fn with_join_first_node(&self, yes: bool) -> ValidSpec {
        ValidSpec {
            learned_join_first_node: yes,
            ..self.clone()
        }
    }

    /// The address nodes made now join (`server:`), when learned at apply: a
    /// running node's private address.
    pub fn learned_join_host(&self) -> Option<&str> {
        self.learned_join_host.as_deref()
    }

    /// Whether nodes made now join a cluster that exists (learned at apply).
    pub fn joins_existing(&self) -> bool {
        self.learned_joins_existing
    }

    /// This spec for nodes made now: joining `join_host` when given, and an existing
    /// cluster when `existing`.
    pub(crate) fn with_join(&self, join_host: Option<String>, existing: bool) -> ValidSpec {
        ValidSpec {
            learned_join_host: join_host,
            learned_joins_existing: existing,
            ..self.clone()
        }
    }

    /// The providers the spec chose for the nodes, the balancer and the record (see
    /// [`crate::choice`]). Validation has reported every impossible mix already; this
    /// fails only when the spec names no node provider at all.
    pub fn providers(&self) -> Result<ProviderChoice, Error> {
        crate::choice::choose(&self.spec)
    }

    /// The spec as written.
    pub fn into_inner(self) -> ClusterSpec {
        self.spec
    }

    /// The join token read from `kubernetes.token_env` or `kubernetes.token_file`,
    /// if the spec names one (always, when `kubernetes.install = true`).
    pub fn join_token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// The PEM text of `tls.ca_file` (the private CA that signed Rancher's
    /// certificate), if given.
    pub fn tls_ca(&self) -> Option<&str> {
        self.tls_ca.as_deref()
    }

    /// Where Rancher's ingress certificate comes from (`tls.source`, `rancher` when
    /// there is no `[tls]`).
    pub fn tls_source(&self) -> crate::spec::TlsSource {
        self.tls.as_ref().map(|t| t.source).unwrap_or_default()
    }

    /// The PEM text of `proxy.ca_file`, if given.
    pub fn proxy_ca(&self) -> Option<&str> {
        self.proxy_ca.as_deref()
    }

    /// The balancer's health-check path: `load_balancer.health_check_path`, else
    /// the one `kubernetes.ingress` answers (`/healthz` or `/ping`).
    pub fn health_check_path(&self) -> String {
        self.load_balancer
            .health_check_path
            .clone()
            .unwrap_or_else(|| self.kubernetes.ingress().health_check_path().to_owned())
    }

    /// The extra TCP ports the balancer serves for Kubernetes registration: 9345
    /// (RKE2 only) and 6443, unless the distribution is `rke` or
    /// `load_balancer.registration = "first-node"`.
    pub fn registration_ports(&self) -> Vec<u16> {
        if self.load_balancer.registration == Registration::FirstNode {
            return Vec::new();
        }
        match self.kubernetes.distribution {
            Distribution::Rke2 => vec![RKE2_SUPERVISOR_PORT, KUBE_API_PORT],
            Distribution::K3s => vec![KUBE_API_PORT],
            Distribution::Rke => Vec::new(),
        }
    }

    /// Spec-level warnings: not errors, but what the user should know before
    /// applying (RKE's end of life; nodes that install Kubernetes need egress).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.kubernetes.distribution == Distribution::Rke {
            w.push(
                "kubernetes.distribution = \"rke\": RKE (v1) reached end of life on 31 July 2025 and \
                 Rancher 2.12+ neither provisions nor manages it; use \"rke2\" (see docs/kubernetes.md \
                 for the migration)"
                    .to_owned(),
            );
        }
        if self.kubernetes.install && self.proxy.is_none() {
            w.push(
                "kubernetes.install = true without [proxy]: the nodes download the installer and \
                 images themselves, so they need direct internet egress or a [proxy]"
                    .to_owned(),
            );
        }
        if self.tls_source() == crate::spec::TlsSource::LetsEncrypt
            && self.load_balancer.scheme == crate::spec::LbScheme::Internal
        {
            w.push(
                "tls.source = \"letsEncrypt\" with an internal balancer: Let's Encrypt's HTTP-01 \
                 challenge must reach the Rancher hostname from the internet on port 80, so the \
                 certificate will not be issued; use tls.source = \"secret\" with a certificate of \
                 your own CA (and tls.ca_file)"
                    .to_owned(),
            );
        }
        w
    }
}

/// What identifies one cluster's resources in a cloud: its name (the value of the
/// `triad-cluster` label), its region, and the DNS zone its record lives in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    /// Cluster name.
    pub name: String,
    /// Region.
    pub region: String,
    /// DNS zone of the cluster's record, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_zone: Option<String>,
    /// Extra labels from the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The cluster id (random, made at the first apply; see
    /// [`identity`](crate::identity)), once known. A plan fills it in from what it
    /// discovers, or makes a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ClusterRef {
    /// A reference from a name and a region, with no DNS zone and no extra labels.
    pub fn new(name: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            dns_zone: None,
            labels: BTreeMap::new(),
            id: None,
        }
    }

    /// The labels a resource of `role` carries: the spec's extra labels plus
    /// `triad-cluster=<name>` and `triad-role=<role>`, and, when known,
    /// `triad-cluster-id=<id>` and `triad-dns-zone=<zone>` (dots as `_`).
    pub fn labels_for(&self, role: labels::Role) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(labels::CLUSTER.to_owned(), self.name.clone());
        l.insert(labels::ROLE.to_owned(), role.as_str().to_owned());
        if let Some(id) = &self.id {
            l.insert(labels::CLUSTER_ID.to_owned(), id.clone());
        }
        if let Some(zone) = self.dns_zone.as_deref().and_then(labels::encode_zone) {
            l.insert(labels::DNS_ZONE.to_owned(), zone);
        }
        l
    }
}
