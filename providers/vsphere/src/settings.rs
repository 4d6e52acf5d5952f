//! The `[vsphere]` section of the spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use triad_core::error::SpecProblem;
use triad_core::secret::Secret;
use triad_core::spec::{ProviderSection, ValidSpec};
use triad_core::Error;

/// Environment variable read for the user name when `[vsphere] username` is absent.
pub const USER_ENV: &str = "VSPHERE_USER";
/// Environment variable read for the password when `[vsphere] password` is absent.
pub const PASSWORD_ENV: &str = "VSPHERE_PASSWORD";

/// CPUs of a node when neither `[vsphere] cpus` nor `nodes.size` says.
pub const DEFAULT_CPUS: u32 = 4;
/// Memory of a node in MiB when neither `[vsphere] memory_mib` nor `nodes.size` says.
pub const DEFAULT_MEMORY_MIB: u32 = 16 * 1024;

/// How the client talks to vCenter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// VI/JSON when the server has it (vCenter 8.0 U1 and later), else SOAP.
    #[default]
    Auto,
    /// VI/JSON only.
    Json,
    /// SOAP/XML only (ESXi, older vCenter, vcsim).
    Soap,
}

/// `[vsphere]`: where and how to make the nodes.
///
/// ```toml
/// [vsphere]
/// url = "https://vcenter.example.com/sdk"
/// username = "triad@vsphere.local"      # or VSPHERE_USER
/// # password: VSPHERE_PASSWORD (or `password = "..."`)
/// ca_file = "/etc/ssl/vcenter-ca.pem"   # or `insecure = true` to skip verification
/// datacenter = "DC0"
/// template = "templates/ubuntu-22.04"
/// datastore = "vsanDatastore"
/// network = "VM Network"
/// folder = "rancher"
/// [vsphere.failure_domains]
/// zone-a = "cluster-a"
/// zone-b = "cluster-b"
/// zone-c = "cluster-c/Resources/rancher"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsphereSettings {
    /// vCenter: `https://host[:port][/sdk]`, or just the host name.
    pub url: String,
    /// User name; `VSPHERE_USER` when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; `VSPHERE_PASSWORD` when absent. Never logged or shown.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Skip TLS certificate and host name verification. Off by default; prefer `ca_file`.
    #[serde(default)]
    pub insecure: bool,
    /// PEM file with the CA certificate(s) that signed vCenter's certificate; when set,
    /// only these are trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `auto` (default), `json` or `soap`.
    #[serde(default)]
    pub transport: Transport,
    /// Datacenter name (or its inventory path when it sits in a folder).
    pub datacenter: String,
    /// The VM template the nodes are cloned from, relative to the datacenter's VM
    /// folder (`templates/ubuntu`). `nodes.image` overrides it.
    pub template: String,
    /// Datastore for the nodes' disks.
    pub datastore: String,
    /// Network (port group) of the nodes' first NIC; it must exist. The template's NIC
    /// must already be on it (triad does not rewire NICs).
    pub network: String,
    /// VM folder for the nodes, relative to the datacenter's VM folder; the folder must
    /// exist. The datacenter's VM folder when absent.
    #[serde(default)]
    pub folder: Option<String>,
    /// Virtual CPUs per node; from `nodes.size` (`4cpu-16gb`) or 4 when absent.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory per node in MiB; from `nodes.size` or 16384 when absent.
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Zone name → compute cluster (`cluster-a`) or resource pool
    /// (`cluster-a/Resources/pool`), relative to the datacenter's host folder.
    pub failure_domains: BTreeMap<String, String>,
    /// Extra `extraConfig` keys set on every node (e.g. `disk.EnableUUID = "TRUE"`).
    #[serde(default)]
    pub extra_config: BTreeMap<String, String>,
}

/// CPU and memory from a size such as `4cpu-16gb` (also `2cpu-4096mb`).
///
/// ```
/// use triad_vsphere::settings::parse_size;
/// assert_eq!(parse_size("4cpu-16gb"), Some((4, 16384)));
/// assert_eq!(parse_size("2cpu-4096mb"), Some((2, 4096)));
/// assert_eq!(parse_size("t3.large"), None);
/// ```
pub fn parse_size(size: &str) -> Option<(u32, u32)> {
    let size = size.trim().to_ascii_lowercase();
    let (cpu, mem) = size.split_once('-')?;
    let cpus: u32 = cpu.strip_suffix("cpu")?.parse().ok()?;
    let memory = if let Some(gb) = mem.strip_suffix("gb") {
        gb.parse::<u32>().ok()?.checked_mul(1024)?
    } else {
        mem.strip_suffix("mb")?.parse().ok()?
    };
    (cpus > 0 && memory > 0).then_some((cpus, memory))
}

impl VsphereSettings {
    /// Read `[vsphere]` from the spec: a missing section or a wrong field is an
    /// [`Error::InvalidSpec`] naming the field.
    pub fn from_spec(spec: &ValidSpec) -> Result<Self, Error> {
        ProviderSection::parse_required(
            spec.vsphere.as_ref(),
            "vsphere",
            "add [vsphere] with url, datacenter, template, datastore, network and failure_domains (see docs/vsphere.md)",
            |settings: &Self| settings.problems(spec),
        )
    }

    /// Every problem of these settings, alone and together with the spec.
    pub fn problems(&self, spec: &ValidSpec) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, problem: String, fix: &str| {
            out.push(SpecProblem {
                field: format!("vsphere.{field}"),
                problem,
                fix: fix.to_owned(),
            })
        };
        match url_host(&self.url) {
            Ok(_) => {}
            Err(e) => bad(
                "url",
                e,
                "give https://vcenter.example.com/sdk or the host name",
            ),
        }
        for (field, value) in [
            ("datacenter", &self.datacenter),
            ("template", &self.template),
            ("datastore", &self.datastore),
            ("network", &self.network),
        ] {
            if value.trim().is_empty() {
                bad(
                    field,
                    "is empty".into(),
                    "name an existing inventory object",
                );
            }
        }
        if self.folder.as_deref().is_some_and(|f| f.trim().is_empty()) {
            bad(
                "folder",
                "is empty".into(),
                "name an existing VM folder or leave it out",
            );
        }
        if self.insecure && self.ca_file.is_some() {
            bad(
                "insecure",
                "is set together with ca_file".into(),
                "use ca_file (verification on) or insecure = true, not both",
            );
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                bad(
                    "ca_file",
                    format!("`{}` is not a readable file", ca.display()),
                    "give the path of a PEM file with vCenter's CA certificate",
                );
            }
        }
        if self.cpus == Some(0) {
            bad("cpus", "is 0".into(), "give at least 1");
        }
        if self.memory_mib.is_some_and(|m| m < 1024) {
            bad(
                "memory_mib",
                "is below 1024".into(),
                "give the memory in MiB, e.g. 16384",
            );
        }
        if self.failure_domains.is_empty() {
            bad(
                "failure_domains",
                "is empty".into(),
                "map each zone to a compute cluster or resource pool, e.g. zone-a = \"cluster-a\"",
            );
        }
        for (zone, path) in &self.failure_domains {
            if let Some(e) = triad_core::labels::check(zone, false) {
                bad(
                    &format!("failure_domains.{zone}"),
                    format!("zone name {e}"),
                    "name zones with lowercase letters, digits and `-`",
                );
            }
            if path.trim().is_empty() {
                bad(
                    &format!("failure_domains.{zone}"),
                    "is empty".into(),
                    "name a compute cluster or resource pool",
                );
            }
        }
        for (i, zone) in spec.zones.iter().enumerate() {
            if !self.failure_domains.contains_key(zone) {
                out.push(SpecProblem {
                    field: format!("zones[{i}]"),
                    problem: format!("zone `{zone}` is not a key of [vsphere.failure_domains]"),
                    fix: format!(
                        "use one of: {}",
                        self.failure_domains
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        if self.cpus.is_none() || self.memory_mib.is_none() {
            if let Some(size) = &spec.nodes.size {
                if parse_size(size).is_none() {
                    out.push(SpecProblem {
                        field: "nodes.size".into(),
                        problem: format!("`{size}` is not a vSphere size"),
                        fix: "write <n>cpu-<m>gb, e.g. 4cpu-16gb, or set [vsphere] cpus and memory_mib".into(),
                    });
                }
            }
        }
        out
    }

    /// CPUs and memory (MiB) of a node asked for with `size`.
    pub fn shape(&self, size: Option<&str>) -> (u32, u32) {
        let from_size = size.and_then(parse_size);
        (
            self.cpus.or(from_size.map(|s| s.0)).unwrap_or(DEFAULT_CPUS),
            self.memory_mib
                .or(from_size.map(|s| s.1))
                .unwrap_or(DEFAULT_MEMORY_MIB),
        )
    }

    /// The user name and password: the section's, else the environment's.
    pub fn credentials(&self) -> Result<(String, Secret), Error> {
        let user = match &self.username {
            Some(u) => u.clone(),
            None => std::env::var(USER_ENV).map_err(|_| {
                Error::invalid(
                    "vsphere.username",
                    format!("no user name: neither [vsphere] username nor {USER_ENV} is set"),
                    format!("set {USER_ENV} (or username in [vsphere])"),
                )
            })?,
        };
        let password = match &self.password {
            Some(p) => p.clone(),
            None => Secret::new(std::env::var(PASSWORD_ENV).map_err(|_| {
                Error::invalid(
                    "vsphere.password",
                    format!("no password: neither [vsphere] password nor {PASSWORD_ENV} is set"),
                    format!("set {PASSWORD_ENV} (or password in [vsphere])"),
                )
            })?),
        };
        Ok((user, password))
    }

    /// `host[:port]` of the vCenter URL, as the client wants it.
    pub fn server(&self) -> Result<String, Error> {
        url_host(&self.url)
            .map_err(|e| Error::invalid("vsphere.url", e, "give https://vcenter.example.com/sdk"))
    }
}

/// `host[:port]` from `https://host[:port][/sdk]` or a bare host.
fn url_host(url: &str) -> Result<String, String> {
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let parsed =
        url::Url::parse(&with_scheme).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "`{url}` has scheme `{}`; vCenter is reached over https",
            parsed.scheme()
        ));
    }
    if parsed.username() != "" || parsed.password().is_some() {
        return Err(
            "the URL carries credentials; use username/password or VSPHERE_USER/VSPHERE_PASSWORD"
                .into(),
        );
    }
    if !matches!(parsed.path(), "" | "/" | "/sdk" | "/sdk/") {
        return Err(format!(
            "`{url}` has path `{}`; give the host (and /sdk) only",
            parsed.path()
        ));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` has no host"))?;
    Ok(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_core::spec::ClusterSpec;

    fn spec(section: &str) -> ValidSpec {
        ClusterSpec::from_toml(&format!(
            r#"
            name = "rancher"
            region = "dc0"
            {section}
            [dns]
            zone = "example.com"
            hostname = "rancher.example.com"
            {rest}
            "#,
            // vSphere makes nodes only: the spec names who makes the balancer and
            // the record.
            rest = if section.contains("[vsphere]") {
                "[nginx]\n[rfc2136]"
            } else {
                ""
            }
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    const GOOD: &str = r#"
        [vsphere]
        url = "https://vc.example.com/sdk"
        username = "u"
        password = "hunter2"
        datacenter = "DC0"
        template = "ubuntu"
        datastore = "ds"
        network = "VM Network"
        [vsphere.failure_domains]
        zone-a = "C0"
        zone-b = "C1/Resources/pool"
    "#;

    #[test]
    fn parses_and_hides_the_password() {
        let s = VsphereSettings::from_spec(&spec(GOOD)).unwrap();
        assert_eq!(s.server().unwrap(), "vc.example.com");
        assert_eq!(s.failure_domains.len(), 2);
        assert!(!s.insecure);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.credentials().unwrap().1.expose(), "hunter2");
        assert_eq!(s.shape(None), (DEFAULT_CPUS, DEFAULT_MEMORY_MIB));
        assert_eq!(s.shape(Some("2cpu-8gb")), (2, 8192));
    }

    #[test]
    fn missing_section_and_unknown_field() {
        let e = VsphereSettings::from_spec(&spec("")).unwrap_err();
        assert!(e.spec_problems().unwrap().names("vsphere"), "{e}");
        let e = VsphereSettings::from_spec(&spec(&GOOD.replace("network", "netwrok"))).unwrap_err();
        assert!(e.to_string().contains("netwrok"), "{e}");
    }

    #[test]
    fn names_every_bad_field() {
        let bad = GOOD
            .replace("https://vc.example.com/sdk", "http://vc.example.com/sdk")
            .replace(
                "datastore = \"ds\"",
                "datastore = \"\"\ninsecure = true\nca_file = \"/nonexistent.pem\"\ncpus = 0",
            )
            .replace("zone-b", "Zone_B");
        let e = VsphereSettings::from_spec(&spec(&bad)).unwrap_err();
        let p = e.spec_problems().unwrap();
        for field in [
            "vsphere.url",
            "vsphere.datastore",
            "vsphere.insecure",
            "vsphere.ca_file",
            "vsphere.cpus",
            "vsphere.failure_domains.Zone_B",
        ] {
            assert!(p.names(field), "{field} not named in {e}");
        }
    }

    #[test]
    fn zones_must_be_failure_domains_and_size_must_parse() {
        let s = spec(&format!(
            "zones = [\"zone-a\", \"zone-x\"]\n[nodes]\nsize = \"t3.large\"\n{GOOD}"
        ));
        let e = VsphereSettings::from_spec(&s).unwrap_err();
        let p = e.spec_problems().unwrap();
        assert!(p.names("zones[1]") && !p.names("zones[0]"), "{e}");
        assert!(p.names("nodes.size"), "{e}");
    }

    #[test]
    fn url_forms() {
        assert_eq!(url_host("vc.example.com").unwrap(), "vc.example.com");
        assert_eq!(
            url_host("https://127.0.0.1:8989/sdk").unwrap(),
            "127.0.0.1:8989"
        );
        assert!(url_host("https://u:p@vc/sdk")
            .unwrap_err()
            .contains("credentials"));
        assert!(url_host("https://vc/api/x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8CPU-32GB"), Some((8, 32768)));
        assert_eq!(parse_size("0cpu-1gb"), None);
        assert_eq!(parse_size("4cpu"), None);
    }
}
