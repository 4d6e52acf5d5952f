//! Drift: what each resource was made from, and what differs from the spec now.
//!
//! Every node and the balancer carry one **fingerprint label per attribute**
//! (`triad-fp-image`, `triad-fp-size`, …). A value that is a valid label value
//! (`ami-0abc…`, `50`) is stored as is, so the plan can say what it was; anything
//! else (an image self-link, a list of keys, a certificate ARN) is stored as a digest
//! `h-<16 hex>`. The plan compares each label with the spec and classifies each
//! difference ([`Change`]) as **in place** (the cloud can change it on the running
//! resource: SSH rules, certificate, health check) or **replace** (a new machine:
//! image, size, disk, anything in the cloud-init user data).
//!
//! A resource without a fingerprint label (made before triad wrote them, or by a
//! provider that does not read labels back) has no known value for that attribute
//! and shows no drift: triad never replaces what it cannot compare.
//!
//! Proxy passwords are left out of the digest (a short digest of a known URL would
//! let anyone who can read tags guess a weak password), so a password-only change
//! is not drift; change the proxy user or host, or replace the nodes by hand.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::labels;
use crate::spec::ValidSpec;

/// The prefix of every fingerprint label key.
pub const PREFIX: &str = "triad-fp-";

/// One attribute triad fingerprints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// `nodes.image`: replace.
    Image,
    /// `nodes.size`: replace.
    Size,
    /// `nodes.disk_gib`: replace.
    DiskGib,
    /// `nodes.ssh_user` and `nodes.ssh_authorized_keys` (cloud-init): replace.
    SshKeys,
    /// `proxy` without its password (cloud-init): replace.
    Proxy,
    /// `nodes.ssh_allowed_cidrs` (security group / firewall rules): in place.
    SshAllowedCidrs,
    /// `load_balancer.certificate`: in place.
    Certificate,
    /// `load_balancer.health_check_path`: in place.
    HealthCheckPath,
}

impl Attribute {
    /// The node attributes, in the order the plan prints them.
    pub const NODE: [Attribute; 6] = [
        Attribute::Image,
        Attribute::Size,
        Attribute::DiskGib,
        Attribute::SshKeys,
        Attribute::Proxy,
        Attribute::SshAllowedCidrs,
    ];
    /// The balancer attributes.
    pub const LOAD_BALANCER: [Attribute; 2] = [Attribute::Certificate, Attribute::HealthCheckPath];

    /// The label key holding it.
    pub fn label(self) -> &'static str {
        match self {
            Attribute::Image => "triad-fp-image",
            Attribute::Size => "triad-fp-size",
            Attribute::DiskGib => "triad-fp-disk",
            Attribute::SshKeys => "triad-fp-ssh-keys",
            Attribute::Proxy => "triad-fp-proxy",
            Attribute::SshAllowedCidrs => "triad-fp-ssh-cidrs",
            Attribute::Certificate => "triad-fp-certificate",
            Attribute::HealthCheckPath => "triad-fp-health-check",
        }
    }

    /// The spec field it comes from.
    pub fn field(self) -> &'static str {
        match self {
            Attribute::Image => "nodes.image",
            Attribute::Size => "nodes.size",
            Attribute::DiskGib => "nodes.disk_gib",
            Attribute::SshKeys => "nodes.ssh_authorized_keys",
            Attribute::Proxy => "proxy",
            Attribute::SshAllowedCidrs => "nodes.ssh_allowed_cidrs",
            Attribute::Certificate => "load_balancer.certificate",
            Attribute::HealthCheckPath => "load_balancer.health_check_path",
        }
    }

    /// A short name for the plan (`image`, `ssh_allowed_cidrs`).
    pub fn name(self) -> &'static str {
        self.field().rsplit('.').next().unwrap_or(self.field())
    }

    /// Whether a cloud changes it on the running resource (no new machine).
    pub fn in_place(self) -> bool {
        matches!(
            self,
            Attribute::SshAllowedCidrs | Attribute::Certificate | Attribute::HealthCheckPath
        )
    }
}

/// One difference between a resource and the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What differs.
    pub attribute: Attribute,
    /// The spec field.
    pub field: String,
    /// What the resource was made with (a digest `h-…` when the value did not fit in
    /// a label).
    pub from: String,
    /// What the spec asks for.
    pub to: String,
    /// Whether it changes in place (otherwise the resource is replaced).
    pub in_place: bool,
}

impl Change {
    /// A change of `attribute` from `from` to `to`.
    pub fn new(attribute: Attribute, from: impl Into<String>, to: impl Into<String>) -> Self {
        Self {
            attribute,
            field: attribute.field().to_owned(),
            from: from.into(),
            to: to.into(),
            in_place: attribute.in_place(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} → {} ({})",
            self.attribute.name(),
            self.from,
            self.to,
            if self.in_place { "in place" } else { "replace" }
        )
    }
}

/// One attribute's wanted value: as shown to people, and as stored in its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The attribute.
    pub attribute: Attribute,
    /// For people (`t3.xlarge`, `2 keys`, `default`).
    pub shown: String,
    /// The label value ([`encode`] of the full value).
    pub label: String,
}

impl Wanted {
    fn new(attribute: Attribute, shown: impl Into<String>, full: &str) -> Self {
        Self {
            attribute,
            shown: shown.into(),
            label: encode(full),
        }
    }

    fn plain(attribute: Attribute, value: &str) -> Self {
        Self::new(attribute, value, value)
    }
}

/// The value of a fingerprint label: `value` itself when it is a valid label value
/// (lowercase letters, digits, `-`, `_`, at most 63 characters), `none` when empty,
/// else `h-` and 16 hex digits of its FNV-1a hash (stable across runs and builds).
///
/// ```
/// use triad_core::drift::encode;
/// assert_eq!(encode("ami-0abc"), "ami-0abc");
/// assert_eq!(encode(""), "none");
/// assert!(encode("t3.xlarge").starts_with("h-"));
/// ```
pub fn encode(value: &str) -> String {
    if value.is_empty() {
        "none".to_owned()
    } else if labels::check(value, false).is_none() && !value.starts_with("h-") {
        value.to_owned()
    } else {
        format!("h-{:016x}", fnv1a(value.as_bytes()))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn or_default(v: Option<&str>) -> &str {
    v.unwrap_or("default")
}

/// What the spec asks of every node, attribute by attribute.
pub fn node_wanted(spec: &ValidSpec) -> Vec<Wanted> {
    let n = &spec.nodes;
    let disk = n.disk_gib.map(|d| d.to_string());
    let keys = format!("{}\n{}", n.ssh_user, n.ssh_authorized_keys.join("\n"));
    let proxy = spec
        .proxy
        .as_ref()
        .map(|p| {
            // Display masks the password: the digest never depends on it.
            format!(
                "{}|{}|{}",
                p.http,
                p.https
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                p.no_proxy.join(",")
            )
        })
        .unwrap_or_default();
    let cidrs = n.ssh_allowed_cidrs.join(",");
    vec![
        Wanted::plain(Attribute::Image, or_default(n.image.as_deref())),
        Wanted::plain(Attribute::Size, or_default(n.size.as_deref())),
        Wanted::plain(Attribute::DiskGib, or_default(disk.as_deref())),
        Wanted::new(
            Attribute::SshKeys,
            format!("{} key(s) for {}", n.ssh_authorized_keys.len(), n.ssh_user),
            &keys,
        ),
        Wanted::new(
            Attribute::Proxy,
            spec.proxy
                .as_ref()
                .map(|p| p.http.to_string())
                .unwrap_or_else(|| "none".into()),
            &proxy,
        ),
        Wanted::new(
            Attribute::SshAllowedCidrs,
            if cidrs.is_empty() {
                "none".into()
            } else {
                format!("[{cidrs}]")
            },
            &cidrs,
        ),
    ]
}

/// What the spec asks of the balancer, attribute by attribute.
pub fn load_balancer_wanted(spec: &ValidSpec) -> Vec<Wanted> {
    let lb = &spec.load_balancer;
    let cert = lb.certificate.clone().unwrap_or_default();
    vec![
        Wanted::new(
            Attribute::Certificate,
            if cert.is_empty() { "none" } else { &cert },
            &cert,
        ),
        Wanted::new(
            Attribute::HealthCheckPath,
            spec.health_check_path(),
            &spec.health_check_path(),
        ),
    ]
}

/// The fingerprint labels for `wanted`.
pub fn labels_of(wanted: &[Wanted]) -> BTreeMap<String, String> {
    wanted
        .iter()
        .map(|w| (w.attribute.label().to_owned(), w.label.clone()))
        .collect()
}

/// Every attribute whose label in `found` differs from `wanted`. Attributes without a
/// label are unknown and never differ.
pub fn diff(found: &BTreeMap<String, String>, wanted: &[Wanted]) -> Vec<Change> {
    wanted
        .iter()
        .filter_map(|w| {
            let have = found.get(w.attribute.label())?;
            (*have != w.label).then(|| {
                let to = if w.shown == w.label || !w.label.starts_with("h-") {
                    w.shown.clone()
                } else {
                    format!("{} ({})", w.shown, w.label)
                };
                Change::new(w.attribute, have.clone(), to)
            })
        })
        .collect()
}

/// Whether every change can be made in place.
pub fn all_in_place(changes: &[Change]) -> bool {
    changes.iter().all(|c| c.in_place)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ClusterSpec;

    fn spec(nodes: &str) -> ValidSpec {
        ClusterSpec::from_toml(&format!(
            "name = \"r\"\nregion = \"x\"\n[nodes]\n{nodes}\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    #[test]
    fn labels_are_valid_label_values_and_stable() {
        let s = spec("image = \"projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts\"\nsize = \"t3.xlarge\"\nssh_allowed_cidrs = [\"10.0.0.0/8\"]");
        let labels = labels_of(&node_wanted(&s));
        for (k, v) in &labels {
            assert!(labels::check(k, true).is_none(), "{k}");
            assert!(labels::check(v, false).is_none(), "{k}={v}");
        }
        assert_eq!(labels, labels_of(&node_wanted(&s)));
        assert!(diff(&labels, &node_wanted(&s)).is_empty());
    }

    #[test]
    fn each_difference_is_named_and_classified() {
        let old = labels_of(&node_wanted(&spec(
            "image = \"ami-0a\"\nssh_allowed_cidrs = [\"10.0.0.0/8\"]",
        )));
        let new = spec("image = \"ami-0b\"\nssh_allowed_cidrs = [\"10.1.0.0/16\"]");
        let changes = diff(&old, &node_wanted(&new));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].to_string(), "image ami-0a → ami-0b (replace)");
        assert!(changes[1].in_place && changes[1].attribute == Attribute::SshAllowedCidrs);
        assert!(!all_in_place(&changes));
    }

    #[test]
    fn unknown_attributes_never_differ() {
        let changes = diff(&BTreeMap::new(), &node_wanted(&spec("image = \"ami-0b\"")));
        assert!(changes.is_empty());
    }
}
