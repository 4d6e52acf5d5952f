//! The `[gce]` section of the spec.

use serde::{Deserialize, Serialize};
use triad_core::error::{Error, SpecProblem};
use triad_core::spec::{LbScheme, ProviderSection, ValidSpec};

/// The image used when neither `gce.image` nor `nodes.image` names one.
pub const DEFAULT_IMAGE: &str = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts";
/// The machine type used when neither `gce.machine_type` nor `nodes.size` names one
/// (4 vCPU, 16 GB: Rancher's smallest recommended server).
pub const DEFAULT_MACHINE_TYPE: &str = "e2-standard-4";
/// Google's health-check and front-end ranges: health checks of both balancers, and
/// the global proxies of the l7 balancer, come from these.
pub const HEALTH_CHECK_RANGES: &[&str] = &[
    "35.191.0.0/16",
    "130.211.0.0/22",
    "209.85.152.0/22",
    "209.85.204.0/22",
];
/// The environment variable the examples read for an API endpoint override.
pub const ENDPOINT_ENV: &str = "TRIAD_GCE_ENDPOINT";

/// `[gce]`: where and how nodes, balancer and record are made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GceSettings {
    /// The project id everything lives in.
    pub project: String,
    /// VPC network of the nodes (name or self-link). Default `default`.
    #[serde(default = "default_network")]
    pub network: String,
    /// Subnetwork of the nodes in the region (name or self-link); the network's
    /// subnetwork in the region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
    /// Boot image (self-link, `projects/P/global/images/NAME` or
    /// `projects/P/global/images/family/F`); `nodes.image`, else Ubuntu 22.04 LTS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Machine type; overrides `nodes.size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    /// Boot disk type (`pd-balanced`, `pd-ssd`, …); the zone's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_type: Option<String>,
    /// The Cloud DNS managed zone (its name, not its DNS name) holding `dns.zone`;
    /// found by DNS name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_zone: Option<String>,
    /// Service account e-mail the nodes run as; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// How often operations and instances are polled, in milliseconds (default 2000).
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// An existing SSL policy (name or self-link) for the `l7` HTTPS proxy instead of
    /// the one triad makes (`<cluster>-tls`: profile `MODERN`, TLS 1.2 and later);
    /// `load_balancer.ssl_policy` sets it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
}

fn default_network() -> String {
    "default".to_owned()
}

fn default_poll_ms() -> u64 {
    2000
}

impl GceSettings {
    /// Settings for `project` with every default.
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            network: default_network(),
            subnetwork: None,
            image: None,
            machine_type: None,
            disk_type: None,
            managed_zone: None,
            service_account: None,
            poll_interval_ms: default_poll_ms(),
            ssl_policy: None,
        }
    }

    /// Read `[gce]` from the spec; a missing section is an error naming it.
    pub fn from_spec(spec: &ValidSpec) -> Result<Self, Error> {
        ProviderSection::parse_required(
            spec.gce.as_ref(),
            "gce",
            "add a [gce] section with at least `project = \"my-project\"`",
            |settings: &Self| settings.problems(spec),
        )
    }

    /// Every problem of these settings together with the rest of the spec.
    pub fn problems(&self, spec: &ValidSpec) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, problem: String, fix: &str| {
            out.push(SpecProblem {
                field: field.to_owned(),
                problem,
                fix: fix.to_owned(),
            })
        };
        if !is_project_id(&self.project) {
            bad(
                "gce.project",
                format!("`{}` is not a project id", self.project),
                "use the project id (6-30 lowercase letters, digits and hyphens), not its name or number",
            );
        }
        if self.network.trim().is_empty() {
            bad(
                "gce.network",
                "is empty".into(),
                "name a VPC network, e.g. `default`",
            );
        }
        if self.poll_interval_ms == 0 || self.poll_interval_ms > 60_000 {
            bad(
                "gce.poll_interval_ms",
                format!("{} is outside 1..=60000", self.poll_interval_ms),
                "use e.g. 2000",
            );
        }
        if let Some(sa) = &self.service_account {
            if !sa.contains('@') {
                bad(
                    "gce.service_account",
                    format!("`{sa}` is not a service account e-mail"),
                    "use NAME@PROJECT.iam.gserviceaccount.com",
                );
            }
        }
        if let Err(p) = self.machine_type_for(spec.nodes.size.as_deref()) {
            let field = if self.machine_type.is_some() {
                "gce.machine_type"
            } else {
                "nodes.size"
            };
            bad(
                field,
                p,
                "use a machine type like `e2-standard-4` or a size like `4cpu-16gb`",
            );
        }
        for (i, z) in spec.zones.iter().enumerate() {
            if !z.starts_with(&format!("{}-", spec.region)) {
                bad(
                    &format!("zones[{i}]"),
                    format!("`{z}` is not a zone of region `{}`", spec.region),
                    "use zones like `<region>-a`",
                );
            }
        }
        if spec.load_balancer.scheme == LbScheme::Internal {
            bad(
                "load_balancer.scheme",
                "`internal` is not supported by the gce provider yet".into(),
                "use `internet-facing`",
            );
        }
        if spec.load_balancer.mode == triad_core::spec::LbMode::L7 {
            match &spec.load_balancer.certificate {
                Some(c) if is_name(c.rsplit('/').next().unwrap_or("")) => {}
                Some(c) => bad(
                    "load_balancer.certificate",
                    format!("`{c}` is not a Compute Engine SSL certificate name or self-link"),
                    "create one with `gcloud compute ssl-certificates create` and name it here",
                ),
                None => {}
            }
        }
        if let Some(z) = &self.managed_zone {
            if !is_name(z) {
                bad(
                    "gce.managed_zone",
                    format!("`{z}` is not a managed zone name"),
                    "use the zone's name as `gcloud dns managed-zones list` shows it",
                );
            }
        }
        out
    }

    /// The machine type for a node of `size` (the spec's `nodes.size`).
    ///
    /// `gce.machine_type` wins; a size that already is a machine type
    /// (`n2-standard-8`) is used as is; a portable `<N>cpu-<M>gb` size maps to the E2
    /// family: 4 GB per vCPU → `e2-standard-N`, 8 → `e2-highmem-N`, 1 → `e2-highcpu-N`.
    pub fn machine_type_for(&self, size: Option<&str>) -> Result<String, String> {
        if let Some(mt) = &self.machine_type {
            return if is_name(mt) {
                Ok(mt.clone())
            } else {
                Err(format!("`{mt}` is not a machine type name"))
            };
        }
        let Some(size) = size else {
            return Ok(DEFAULT_MACHINE_TYPE.to_owned());
        };
        if let Some((cpu, mem)) = parse_portable(size) {
            let family = match (mem % cpu == 0).then(|| mem / cpu) {
                Some(4) => "standard",
                Some(8) => "highmem",
                Some(1) => "highcpu",
                _ => {
                    return Err(format!(
                        "`{size}` has no E2 machine type ({mem} GB over {cpu} vCPUs); \
                         E2 has 1, 4 or 8 GB per vCPU"
                    ))
                }
            };
            if ![2, 4, 8, 16, 32].contains(&cpu) {
                return Err(format!(
                    "`{size}`: E2 machine types have 2, 4, 8, 16 or 32 vCPUs"
                ));
            }
            return Ok(format!("e2-{family}-{cpu}"));
        }
        if is_name(size) && size.contains('-') {
            Ok(size.to_owned())
        } else {
            Err(format!(
                "`{size}` is neither a machine type nor a `<N>cpu-<M>gb` size"
            ))
        }
    }

    /// The boot image for a node, given the spec's `nodes.image`.
    pub fn image_for(&self, nodes_image: Option<&str>) -> String {
        self.image
            .clone()
            .or_else(|| nodes_image.map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
    }
}

fn parse_portable(size: &str) -> Option<(u32, u32)> {
    let (cpu, mem) = size.split_once("cpu-")?;
    let mem = mem.strip_suffix("gb")?;
    Some((cpu.parse().ok()?, mem.parse().ok()?))
}

/// A Compute Engine resource name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

fn is_project_id(s: &str) -> bool {
    // Domain-scoped ids (`example.com:proj`) are allowed too.
    let id = s.rsplit(':').next().unwrap_or(s);
    (6..=30).contains(&id.len()) && is_name(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_core::spec::ClusterSpec;

    fn spec(extra: &str) -> ValidSpec {
        ClusterSpec::from_toml(&format!(
            "name = \"rancher\"\nregion = \"us-central1\"\n{extra}\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    #[test]
    fn section_parses_with_defaults() {
        let s = GceSettings::from_spec(&spec("[gce]\nproject = \"my-project\"")).unwrap();
        assert_eq!(s, GceSettings::new("my-project"));
        assert_eq!(s.image_for(None), DEFAULT_IMAGE);
        assert_eq!(
            s.image_for(Some("projects/x/global/images/y")),
            "projects/x/global/images/y"
        );
    }

    #[test]
    fn missing_section_and_typos_are_named() {
        let e = GceSettings::from_spec(&spec("")).unwrap_err();
        assert!(e.spec_problems().unwrap().names("gce"), "{e}");
        let e = GceSettings::from_spec(&spec("[gce]\nproject = \"my-project\"\nnetwrk = \"x\""))
            .unwrap_err();
        assert!(e.to_string().contains("netwrk"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let s = spec(
            "zones = [\"us-central1-a\", \"europe-west1-b\"]\n[nodes]\nsize = \"3cpu-7gb\"\n\
             [load_balancer]\nscheme = \"internal\"\n[gce]\nproject = \"My Project\"\n\
             service_account = \"nobody\"\nmanaged_zone = \"Example.com\"",
        );
        let e = GceSettings::from_spec(&s).unwrap_err();
        let p = e.spec_problems().unwrap();
        for field in [
            "gce.project",
            "gce.service_account",
            "gce.managed_zone",
            "nodes.size",
            "zones[1]",
            "load_balancer.scheme",
        ] {
            assert!(p.names(field), "{field} missing in {e}");
        }
        assert!(!p.names("zones[0]"), "{e}");
    }

    #[test]
    fn machine_types_map_from_sizes() {
        let s = GceSettings::new("my-project");
        assert_eq!(s.machine_type_for(None).unwrap(), "e2-standard-4");
        assert_eq!(
            s.machine_type_for(Some("4cpu-16gb")).unwrap(),
            "e2-standard-4"
        );
        assert_eq!(
            s.machine_type_for(Some("8cpu-64gb")).unwrap(),
            "e2-highmem-8"
        );
        assert_eq!(
            s.machine_type_for(Some("2cpu-2gb")).unwrap(),
            "e2-highcpu-2"
        );
        assert_eq!(
            s.machine_type_for(Some("n2-standard-8")).unwrap(),
            "n2-standard-8"
        );
        assert!(s.machine_type_for(Some("3cpu-12gb")).is_err());
        assert!(s.machine_type_for(Some("4cpu-10gb")).is_err());
        assert!(s.machine_type_for(Some("t3.xlarge")).is_err());
        let mut o = s.clone();
        o.machine_type = Some("c3-standard-4".into());
        assert_eq!(
            o.machine_type_for(Some("t3.xlarge")).unwrap(),
            "c3-standard-4"
        );
    }

    #[test]
    fn names() {
        assert!(is_name("rancher-1"));
        assert!(!is_name("Rancher"));
        assert!(!is_name("1abc"));
        assert!(!is_name("abc-"));
        assert!(is_project_id("example.com:my-project"));
        assert!(!is_project_id("short"));
    }
}
