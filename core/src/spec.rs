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

use crate::error::{Error, SpecProblem, SpecProblems};
use crate::labels;
use crate::secret::ProxyUrl;

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
    /// HTTP path the health check asks on port 80: `/healthz` for the NGINX
    /// ingress, `/ping` for Traefik.
    #[serde(default = "default_health_path")]
    pub health_check_path: String,
}

fn default_health_path() -> String {
    "/healthz".to_owned()
}

impl Default for LoadBalancerSpec {
    fn default() -> Self {
        Self {
            mode: LbMode::L4,
            scheme: LbScheme::InternetFacing,
            certificate: None,
            health_check_path: default_health_path(),
        }
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderSection(pub serde_json::Value);

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
        serde_json::from_value(self.0.clone()).map_err(|e| {
            Error::invalid(
                section,
                mask_userinfo(&e.to_string()),
                format!("fix the [{section}] section (see docs/spec.md)"),
            )
        })
    }
}

impl ClusterSpec {
    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Parse {
            format: "TOML",
            message: mask_userinfo(&e.to_string()),
        })
    }

    /// Parse a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        serde_norway::from_str(text).map_err(|e| Error::Parse {
            format: "YAML",
            message: mask_userinfo(&e.to_string()),
        })
    }

    /// Parse a JSON document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::Parse {
            format: "JSON",
            message: mask_userinfo(&e.to_string()),
        })
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
    pub fn validate(self) -> Result<ValidSpec, Error> {
        let problems = crate::validate::problems(&self);
        if problems.is_empty() {
            Ok(ValidSpec { spec: self })
        } else {
            Err(Error::InvalidSpec(problems.into()))
        }
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
        out.push_str(crate::secret::REDACTED);
        pos = to;
    }
    out.push_str(&text[pos..]);
    out
}

/// A spec that passed [`ClusterSpec::validate`]. Dereferences to [`ClusterSpec`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ValidSpec {
    spec: ClusterSpec,
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

    /// The spec as written.
    pub fn into_inner(self) -> ClusterSpec {
        self.spec
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
}

impl ClusterRef {
    /// A reference from a name and a region, with no DNS zone and no extra labels.
    pub fn new(name: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            dns_zone: None,
            labels: BTreeMap::new(),
        }
    }

    /// The labels a resource of `role` carries: the spec's extra labels plus
    /// `triad-cluster=<name>` and `triad-role=<role>`.
    pub fn labels_for(&self, role: labels::Role) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(labels::CLUSTER.to_owned(), self.name.clone());
        l.insert(labels::ROLE.to_owned(), role.as_str().to_owned());
        l
    }
}

#[cfg(test)]
mod tests {
    use super::mask_userinfo;

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
