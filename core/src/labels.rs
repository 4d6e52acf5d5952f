//! Ownership labels: every resource triad creates carries `triad-cluster=<name>` and
//! `triad-role=<role>`. The keys are valid as AWS tags, GCE labels and vSphere custom
//! attributes; values follow the strictest of those rules (GCE: lowercase letters,
//! digits, `-` and `_`, at most 63 characters).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Label key naming the owning cluster.
pub const CLUSTER: &str = "triad-cluster";
/// Label key naming the resource's role in the cluster.
pub const ROLE: &str = "triad-role";
/// Label key holding the cluster id (random, made at the first apply): two clusters
/// with one name are told apart by it.
pub const CLUSTER_ID: &str = "triad-cluster-id";
/// Label key naming the DNS zone the cluster's record lives in (dots written as `_`),
/// so the hostname guard finds the record after a zone change.
pub const DNS_ZONE: &str = "triad-dns-zone";
/// The longest label key or value.
pub const MAX_LEN: usize = 63;

/// What a resource is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A Rancher node.
    Node,
    /// The load balancer and its parts (listeners, target groups, health checks).
    Lb,
    /// The DNS record and its ownership TXT.
    Dns,
    /// Cluster-wide network plumbing (security groups, firewall rules).
    Network,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Lb => "lb",
            Role::Dns => "dns",
            Role::Network => "network",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a label key or value is not portable across clouds, or `None` when it is.
///
/// ```
/// use triad_core::labels::check;
/// assert!(check("team", true).is_none());
/// assert!(check("Team", true).is_some());
/// assert!(check("", false).is_none()); // empty values are fine
/// ```
pub fn check(s: &str, is_key: bool) -> Option<String> {
    if is_key && s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > MAX_LEN {
        return Some(format!(
            "is {} characters long (at most {MAX_LEN})",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Some(format!(
            "contains `{c}`; use lowercase letters, digits, `-` and `_`"
        ));
    }
    if is_key && !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    None
}

/// A DNS zone as a label value: lowercase, dots as `_`; `None` when it does not fit
/// (too long, or characters a label value cannot hold).
///
/// ```
/// use triad_core::labels::{decode_zone, encode_zone};
/// assert_eq!(encode_zone("Example.COM.").as_deref(), Some("example_com"));
/// assert_eq!(decode_zone("example_com"), "example.com");
/// ```
pub fn encode_zone(zone: &str) -> Option<String> {
    let v = zone
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .replace('.', "_");
    check(&v, false).is_none().then_some(v)
}

/// The DNS zone a [`DNS_ZONE`] label value names.
pub fn decode_zone(value: &str) -> String {
    value.replace('_', ".")
}
