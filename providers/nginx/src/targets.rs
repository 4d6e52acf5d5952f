//! Balancer targets: the Rancher nodes as `server` lines, their stable order and
//! hash, and the balancer's endpoint from an address.

use triad_core::error::{FailureKind, Result};
use triad_core::model::{natural_key, Endpoint, Node};

use crate::err;
pub(crate) use crate::render::Target;

/// Targets from nodes; every node must have a private address.
pub(crate) fn targets_of(nodes: &[Node], action: &str, resource: &str) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = nodes
        .iter()
        .map(|n| {
            n.private_ip
                .map(|address| Target {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    address,
                })
                .ok_or_else(|| {
                    err(
                        action,
                        resource,
                        FailureKind::InvalidRequest,
                        format!("node {} has no private address yet", n.name),
                    )
                })
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| {
        natural_key(&a.name)
            .cmp(&natural_key(&b.name))
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

pub(crate) fn ids(targets: &[Target]) -> Vec<String> {
    let mut v: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
    v.sort();
    v
}

/// A stable hash of a target set (FNV-1a 64, hex): the same on every run and
/// platform, short enough for any cloud's label value.
pub(crate) fn targets_hash(targets: &[Target]) -> String {
    let mut lines: Vec<String> = targets
        .iter()
        .map(|t| format!("{}={}", t.id, t.address))
        .collect();
    lines.sort();
    fnv_hex(&lines.join("\n"))
}

/// FNV-1a 64 of `text`, as 16 hex digits.
pub(crate) fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub(crate) fn endpoint_of(address: &str) -> Endpoint {
    match address.trim().parse() {
        Ok(ip) => Endpoint::Ip {
            addresses: vec![ip],
        },
        Err(_) => Endpoint::Hostname {
            name: address.trim().trim_end_matches('.').to_ascii_lowercase(),
            alias_zone: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_hash_is_stable_and_order_free() {
        let t = |id: &str, ip: &str| Target {
            id: id.into(),
            name: id.into(),
            address: ip.parse().unwrap(),
        };
        let a = targets_hash(&[t("a", "10.0.0.1"), t("b", "10.0.0.2")]);
        let b = targets_hash(&[t("b", "10.0.0.2"), t("a", "10.0.0.1")]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        assert_ne!(a, targets_hash(&[t("a", "10.0.0.1")]));
        // Pinned: labels written by one version must be read the same by the next.
        assert_eq!(targets_hash(&[]), "cbf29ce484222325");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["r-10", "r-9", "r-1"];
        v.sort_by_key(|n| natural_key(n));
        assert_eq!(v, ["r-1", "r-9", "r-10"]);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint_of("192.0.2.1"),
            Endpoint::Ip {
                addresses: vec!["192.0.2.1".parse().unwrap()]
            }
        );
        assert_eq!(
            endpoint_of("LB.example.com."),
            Endpoint::Hostname {
                name: "lb.example.com".into(),
                alias_zone: None
            }
        );
    }
}
