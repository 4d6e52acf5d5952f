//! The declarative cluster spec: what users write (TOML, YAML or JSON), and its
//! validation into a [`ValidSpec`] before any cloud API is called.
//!
//! Validation reports **every** problem at once, each naming the field and the fix
//! (see [`SpecProblem`]); unknown fields are errors, so a
//! typo is never silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::choice::ProviderChoice;
pub use crate::choice::ProvidersSpec;
use crate::error::{Error, SpecProblem, SpecProblems};
use crate::labels;
use crate::secret::{ProxyUrl, Secret, REDACTED};

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
    /// [`ValidSpec::health_check_path`].
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

/// A provider's own section of the spec (`[ec2]`, `[sim]`, …), kept as data until
/// the provider reads it with [`ProviderSection::parse`] into its own type.
///
/// The value of every key that names a secret ([`is_secret_key`]: `password`,
/// `secret`, `token`, `key`, `*_key`, …, at any depth) is held as a [`Secret`] from
/// the moment the section is parsed. `Debug` and `Serialize` show it as `****`, so a
/// serialized spec does **not** round-trip secrets (as with [`ProxyUrl`]); only
/// [`ProviderSection::parse`] hands the values to the provider's settings type,
/// whose fields for them should be [`Secret`]s.
///
/// ```
/// use triad_core::secret::Secret;
/// use triad_core::spec::ProviderSection;
/// let s = ProviderSection::new(serde_json::json!({"user": "ops", "password": "hunter2"}));
/// assert!(!format!("{s:?}").contains("hunter2"));
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"password":"****","user":"ops"}"#);
/// #[derive(serde::Deserialize)]
/// struct Login { user: String, password: Secret }
/// assert_eq!(s.parse::<Login>("x").unwrap().password.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct ProviderSection {
    /// The section with every secret value replaced by `****`.
    shown: serde_json::Value,
    /// JSON pointer of each secret value → the value as JSON text.
    secrets: Vec<(String, Secret)>,
}

/// Whether a provider-section key names a secret: its last word (split at `_`,
/// `-` and `.`), case-insensitive, is `password`, `passwd`, `passphrase`, `secret`,
/// `token`, `key`, `apikey` or `credentials`. So `password`, `client_secret`,
/// `api_token`, `key`, `access_key` and `private-key` are secrets; `key_name`,
/// `secret_file` and `secret_env` (which name where a secret is) are not.
///
/// A provider declares a field secret by giving it such a name (and the type
/// [`Secret`]).
///
/// ```
/// use triad_core::spec::is_secret_key;
/// assert!(is_secret_key("password") && is_secret_key("secret") && is_secret_key("Access_Key"));
/// assert!(!is_secret_key("key_name") && !is_secret_key("secret_file") && !is_secret_key("username"));
/// ```
pub fn is_secret_key(key: &str) -> bool {
    const WORDS: [&str; 8] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "key",
        "apikey",
        "credentials",
    ];
    let last = key.rsplit(['_', '-', '.']).next().unwrap_or(key);
    WORDS.iter().any(|w| last.eq_ignore_ascii_case(w))
}

impl ProviderSection {
    /// A section from its data; secret values are taken out of `value` at once.
    pub fn new(value: serde_json::Value) -> Self {
        let mut shown = value;
        let mut secrets = Vec::new();
        take_secrets(&mut shown, String::new(), &mut secrets);
        Self { shown, secrets }
    }

    /// The section with every secret value shown as `****`.
    pub fn redacted(&self) -> &serde_json::Value {
        &self.shown
    }

    /// Text with every secret value of this section replaced by `****`.
    fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (_, secret) in &self.secrets {
            let json = secret.expose();
            let plain: Option<String> = serde_json::from_str(json).ok();
            for value in [Some(json.to_owned()), plain].into_iter().flatten() {
                if !value.is_empty() {
                    out = out.replace(&value, REDACTED);
                }
            }
        }
        out
    }
}

/// Move the value of every secret key in `value` (at any depth) into `out`, keyed by
/// its JSON pointer, leaving `****` in its place.
fn take_secrets(value: &mut serde_json::Value, at: String, out: &mut Vec<(String, Secret)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                if is_secret_key(k) && !v.is_null() {
                    let taken = std::mem::replace(v, serde_json::Value::from(REDACTED));
                    out.push((path, Secret::new(taken.to_string())));
                } else {
                    take_secrets(v, path, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                take_secrets(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

impl From<serde_json::Value> for ProviderSection {
    fn from(value: serde_json::Value) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for ProviderSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderSection({:?})", self.shown)
    }
}

/// Serialized with every secret value as `****`: a serialized spec does not
/// round-trip secrets.
impl Serialize for ProviderSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProviderSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self::new)
    }
}

impl ProviderSection {
    /// Parse a section a provider cannot work without, then run the provider's own
    /// checks: a missing section is a spec problem naming it (`fix` says what to add),
    /// and every problem `check` finds is reported at once.
    ///
    /// ```
    /// use triad_core::spec::{ClusterSpec, ProviderSection};
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Sim { time_scale: f64 }
    /// let spec = ClusterSpec::from_toml("name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"e.com\"\nhostname = \"r.e.com\"")
    ///     .unwrap().validate().unwrap();
    /// let err = ProviderSection::parse_required::<Sim>(spec.sim.as_ref(), "sim", "add [sim]", |_| vec![])
    ///     .err().unwrap();
    /// assert!(err.spec_problems().unwrap().names("sim"));
    /// ```
    pub fn parse_required<T: serde::de::DeserializeOwned>(
        section: Option<&ProviderSection>,
        name: &str,
        fix: &str,
        check: impl FnOnce(&T) -> Vec<SpecProblem>,
    ) -> Result<T, Error> {
        let Some(section) = section else {
            return Err(Error::invalid(
                name,
                format!("the spec has no [{name}] section"),
                fix,
            ));
        };
        let settings: T = section.parse(name)?;
        let problems = check(&settings);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(Error::InvalidSpec(SpecProblems(problems)))
        }
    }

    /// Deserialize the section into a provider's settings type. `section` names it
    /// in errors (`"ec2"`); use `#[serde(deny_unknown_fields)]` on `T` so typos fail.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, section: &str) -> Result<T, Error> {
        let mut full = self.shown.clone();
        for (path, secret) in &self.secrets {
            if let Some(slot) = full.pointer_mut(path) {
                *slot = serde_json::from_str(secret.expose()).unwrap_or_default();
            }
        }
        serde_json::from_value(full).map_err(|e| {
            Error::invalid(
                section,
                self.mask(&mask_userinfo(&e.to_string())),
                format!("fix the [{section}] section (see docs/spec.md)"),
            )
        })
    }
}

impl ClusterSpec {
    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| parse_error("TOML", &e.to_string(), text))
    }

    /// Parse a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        serde_norway::from_str(text).map_err(|e| parse_error("YAML", &e.to_string(), text))
    }

    /// Parse a JSON document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| parse_error("JSON", &e.to_string(), text))
    }

    /// Read a spec file; the format follows the extension (`.toml`, `.yaml`/`.yml`,
    /// `.json`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Self::from_toml(&text),
            Some("yaml" | "yml") => Self::from_yaml(&text),
            Some("json") => Self::from_json(&text),
            _ => Err(Error::Parse {
                format: "file",
                message: format!(
                    "{}: unknown extension; name the file .toml, .yaml, .yml or .json",
                    path.display()
                ),
            }),
        }
    }

    /// Check the whole spec and return every problem found, or the validated spec.
    ///
    /// This also reads what the spec points at: the join token
    /// (`kubernetes.token_env` / `kubernetes.token_file`) and the proxy's CA
    /// (`proxy.ca_file`); a missing variable or unreadable file is a problem naming
    /// the field.
    pub fn validate(self) -> Result<ValidSpec, Error> {
        let mut problems = crate::validate::problems(&self);
        let external = crate::validate::external(&self, &mut problems);
        if problems.is_empty() {
            Ok(ValidSpec {
                spec: self,
                token: external.token,
                proxy_ca: external.proxy_ca,
            })
        } else {
            Err(Error::InvalidSpec(problems.into()))
        }
    }
}

/// A parse error whose message shows neither a secret key's value nor a proxy
/// password.
fn parse_error(format: &'static str, message: &str, source: &str) -> Error {
    Error::Parse {
        format,
        message: mask_userinfo(&redact_secret_lines(message, source)),
    }
}

/// `text` with the password of every `user:password@` in it replaced by `****`.
///
/// Parser messages quote the spec: TOML shows the offending line, and every format
/// quotes a value of the wrong type (`proxy = "http://u:pw@host"` where a table
/// belongs). Such text must not carry a proxy password into an error.
fn mask_userinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut masked: Vec<(usize, usize)> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let start = bytes[..at]
            .iter()
            .rposition(|b| b.is_ascii_whitespace() || b"\"'`/([{,<=".contains(b))
            .map_or(0, |i| i + 1);
        if let Some(colon) = text[start..at].find(':') {
            let from = start + colon + 1;
            match masked.last_mut() {
                Some(last) if last.0 == from => last.1 = at,
                _ => masked.push((from, at)),
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (from, to) in masked {
        out.push_str(&text[pos..from]);
        out.push_str(REDACTED);
        pos = to;
    }
    out.push_str(&text[pos..]);
    out
}

/// `message` (a parser's error about `source`) with every source line that assigns a
/// secret key ([`is_secret_key`]) shown as `key = ****`, and that key's value
/// replaced wherever else the message quotes it.
///
/// TOML errors quote the offending line, and every format quotes a value of the
/// wrong type: a typo on a `password =` line must not print the password.
fn redact_secret_lines(message: &str, source: &str) -> String {
    let mut out = message.to_owned();
    for line in source.lines() {
        let Some(value_at) = secret_value_start(line) else {
            continue;
        };
        let value = line[value_at..].trim();
        if value.is_empty() {
            continue;
        }
        let shown = format!("{} {REDACTED}", line[..value_at].trim_end());
        out = out.replace(line.trim_end(), &shown);
        for v in [value, first_value(value)] {
            // Short values would match ordinary words; the line itself is gone already.
            if v.chars().count() >= 4 {
                out = out.replace(v, REDACTED);
            }
        }
    }
    out
}

/// The first value in `text`: a quoted string's contents, else up to a `,`, `}`, `]`,
/// `#` or white space.
fn first_value(text: &str) -> &str {
    match text.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let rest = &text[1..];
            rest.find(q).map_or(rest, |end| &rest[..end])
        }
        _ => text
            .find(|c: char| matches!(c, ',' | '}' | ']' | '#') || c.is_whitespace())
            .map_or(text, |end| &text[..end]),
    }
}

/// Where the value of the first secret key assigned on `line` starts (just after its
/// `=` or `:`), for TOML (`password = "…"`, inline tables), YAML (`password: …`) and
/// JSON (`"password": "…"`).
fn secret_value_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    for (sep, _) in line.match_indices(['=', ':']) {
        let mut end = sep;
        while end > 0 && bytes[end - 1] == b' ' {
            end -= 1;
        }
        let quoted = end > 0 && matches!(bytes[end - 1], b'"' | b'\'');
        if quoted {
            end -= 1;
        }
        let start = bytes[..end]
            .iter()
            .rposition(|&b| {
                let key_char = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
                !(key_char || quoted && b == b' ')
            })
            .map_or(0, |i| i + 1);
        if start < end && is_secret_key(&line[start..end]) {
            return Some(sep + 1);
        }
    }
    None
}

/// A spec that passed [`ClusterSpec::validate`]. Dereferences to [`ClusterSpec`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValidSpec {
    spec: ClusterSpec,
    /// The join token (never serialized; `Debug` shows `****`).
    #[serde(skip)]
    token: Option<Secret>,
    /// The proxy CA's PEM text.
    #[serde(skip)]
    proxy_ca: Option<String>,
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
            dns_zone: Some(self.dns.zone.trim_end_matches('.').to_ascii_lowercase()),
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

    /// The Rancher hostname without a trailing dot, lowercase.
    pub fn fqdn(&self) -> String {
        self.dns.hostname.trim_end_matches('.').to_ascii_lowercase()
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

#[cfg(test)]
mod tests {
    use super::{mask_userinfo, redact_secret_lines};

    #[test]
    fn secret_lines_are_redacted_in_parse_messages() {
        let source = "name = \"r\"\n[vsphere]\npassword = \"TopSecret-1\\q\"\nx = { api_token = 'Tok3n-xyz', a = 1 }\n";
        let message = "TOML parse error at line 3, column 22\n  |\n3 | password = \"TopSecret-1\\q\"\n  |       ^\ninvalid escape\n\
                       4 | x = { api_token = 'Tok3n-xyz', a = 1 }\nstring \"Tok3n-xyz\"";
        let out = redact_secret_lines(message, source);
        assert!(!out.contains("TopSecret"), "{out}");
        assert!(!out.contains("Tok3n"), "{out}");
        assert!(out.contains("3 | password = ****"), "{out}");
        assert!(
            out.contains("line 3, column 22") && out.contains("invalid escape"),
            "{out}"
        );
        // YAML and JSON keys, quoted or not.
        for (source, line) in [
            ("password: Hunter2-x\n", "password: Hunter2-x"),
            ("  \"secret\": \"aHVudGVy\",\n", "\"secret\": \"aHVudGVy\""),
        ] {
            let out = redact_secret_lines(&format!("at {line} here"), source);
            assert!(
                !out.contains("Hunter2") && !out.contains("aHVudGVy"),
                "{out}"
            );
        }
        // Lines without a secret key are kept.
        let out = redact_secret_lines("1 | key_name = \"ops-key\"", "key_name = \"ops-key\"\n");
        assert_eq!(out, "1 | key_name = \"ops-key\"");
    }

    #[test]
    fn mask_userinfo_hides_passwords_only() {
        assert_eq!(
            mask_userinfo(r#"invalid type: string "http://ops:pw@proxy:3128""#),
            r#"invalid type: string "http://ops:****@proxy:3128""#
        );
        // A password containing `@`: everything up to the last `@` goes.
        assert_eq!(
            mask_userinfo("`ops:p@ss@proxy:3128` x"),
            "`ops:****@proxy:3128` x"
        );
        // Two URLs on one line, one of them without a scheme.
        assert_eq!(
            mask_userinfo("a = 'https://u:1@h', b = 'v:2@k'"),
            "a = 'https://u:****@h', b = 'v:****@k'"
        );
        // No `user:` before the `@`: left alone.
        assert_eq!(
            mask_userinfo("owner = \"ops@example.com\""),
            "owner = \"ops@example.com\""
        );
        assert_eq!(mask_userinfo("näme: ü@x"), "näme: ü@x");
    }
}
