//! triad records from DNS records, and back: what is at a name, whose it is.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, Record as DnsRecord};
use triad_core::error::Error;
use triad_core::model::{Endpoint, Record, RecordKind};
use triad_core::provider::{parse_ownership, parse_ownership_id};
use triad_core::spec::ClusterRef;

use crate::transport::State;
use crate::wire;

/// The state at `fqdn` as a triad [`Record`], if a record triad writes is there.
pub(crate) fn to_record(zone: &str, fqdn: &str, state: &State) -> Option<Record> {
    let owner = state.owners().into_iter().next();
    record_from(zone, fqdn, &state.records, owner).map(|r| Record {
        owner_id: owner_id(&state.txt),
        ..r
    })
}

pub(crate) fn display(n: &Name) -> String {
    n.to_string().trim_end_matches('.').to_ascii_lowercase()
}

pub(crate) fn normalize(fqdn: &str) -> String {
    fqdn.trim_end_matches('.').to_ascii_lowercase()
}

/// A triad record from the A/AAAA/CNAME records at a name.
pub(crate) fn record_from(
    zone: &str,
    fqdn: &str,
    records: &[DnsRecord],
    owner: Option<String>,
) -> Option<Record> {
    let ttl = records.iter().map(DnsRecord::ttl).min();
    if let Some(c) = records.iter().find_map(|r| match r.data() {
        RData::CNAME(c) => Some(c.0.clone()),
        _ => None,
    }) {
        return Some(Record {
            fqdn: normalize(fqdn),
            zone: normalize(zone),
            kind: RecordKind::Cname,
            target: Endpoint::Hostname {
                name: display(&c),
                alias_zone: None,
            },
            ttl,
            owner,
            owner_id: None,
        });
    }
    let mut addresses: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    if addresses.is_empty() {
        return None;
    }
    addresses.sort();
    addresses.dedup();
    Some(Record {
        fqdn: normalize(fqdn),
        zone: normalize(zone),
        kind: RecordKind::A,
        target: Endpoint::Ip { addresses },
        ttl,
        owner,
        owner_id: None,
    })
}

/// Whether two endpoints are the same, ignoring address order.
pub(crate) fn same_target(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Ip { addresses: x }, Endpoint::Ip { addresses: y }) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            x.dedup();
            y.sort();
            y.dedup();
            x == y
        }
        (Endpoint::Hostname { name: x, .. }, Endpoint::Hostname { name: y, .. }) => {
            normalize(x) == normalize(y)
        }
        _ => false,
    }
}

pub(crate) fn not_owned(
    cluster: &ClusterRef,
    fqdn: &str,
    owners: &[String],
    kind: Option<RecordKind>,
) -> Error {
    Error::NotOwned {
        fqdn: fqdn.to_owned(),
        cluster: cluster.name.clone(),
        owner: match (owners.first(), kind) {
            (Some(o), _) => format!("owned by triad cluster `{o}`"),
            (None, Some(k)) => format!("a {k} record without triad's ownership TXT"),
            (None, None) => "a record without triad's ownership TXT".into(),
        },
    }
}

/// An owned record, or — when only our TXT is left (a write that failed half way
/// cannot happen, updates are atomic, but someone may have removed the record by
/// hand) — a record with no address, so `destroy` still removes the TXT.
pub(crate) fn owned_or_orphan(
    zone: &str,
    fqdn: &str,
    at: &[DnsRecord],
    txt: &[DnsRecord],
    cluster: &str,
) -> Record {
    let owner = Some(cluster.to_owned());
    let id = owner_id(txt);
    let found = record_from(zone, fqdn, at, owner.clone()).map(|r| Record {
        owner_id: id.clone(),
        ..r
    });
    found.unwrap_or_else(|| {
        let kind = txt
            .iter()
            .filter_map(wire::txt_text)
            .find(|t| parse_ownership(t).as_deref() == Some(cluster))
            .and_then(|t| t.rsplit_once("kind=").map(|(_, k)| k.to_owned()));
        Record {
            fqdn: normalize(fqdn),
            zone: normalize(zone),
            kind: if kind.as_deref() == Some("cname") {
                RecordKind::Cname
            } else {
                RecordKind::A
            },
            target: Endpoint::Ip { addresses: vec![] },
            ttl: None,
            owner,
            owner_id: id,
        }
    })
}

/// The cluster id in an ownership TXT RRset.
pub(crate) fn owner_id(txt: &[DnsRecord]) -> Option<String> {
    txt.iter()
        .filter_map(wire::txt_text)
        .find_map(|t| parse_ownership_id(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_answers() {
        let n = wire::name("r.example.com").unwrap();
        let recs = wire::target_records(
            &n,
            &Endpoint::Ip {
                addresses: vec!["192.0.2.9".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            },
            60,
        )
        .unwrap();
        let r = record_from("example.com", "r.example.com", &recs, None).unwrap();
        assert_eq!(r.kind, RecordKind::A);
        assert_eq!(
            r.target,
            Endpoint::Ip {
                addresses: vec!["192.0.2.1".parse().unwrap(), "192.0.2.9".parse().unwrap()]
            }
        );
        assert_eq!(r.ttl, Some(60));
        assert!(same_target(
            &r.target,
            &Endpoint::Ip {
                addresses: vec!["192.0.2.9".parse().unwrap(), "192.0.2.1".parse().unwrap()]
            }
        ));
        let c = wire::target_records(
            &n,
            &Endpoint::Hostname {
                name: "LB.example.net.".into(),
                alias_zone: None,
            },
            30,
        )
        .unwrap();
        let r = record_from("example.com.", "R.example.com", &c, Some("x".into())).unwrap();
        assert_eq!(r.kind, RecordKind::Cname);
        assert_eq!(r.fqdn, "r.example.com");
        assert_eq!(
            r.target,
            Endpoint::Hostname {
                name: "lb.example.net".into(),
                alias_zone: None
            }
        );
        assert!(record_from("example.com", "r.example.com", &[], None).is_none());
    }

    #[test]
    fn orphan_txt_is_still_listed() {
        let t = wire::txt(
            &wire::name("_triad.r.example.com").unwrap(),
            60,
            &triad_core::provider::ownership_value("c", RecordKind::Cname),
        );
        let r = owned_or_orphan("example.com", "r.example.com", &[], &[t], "c");
        assert_eq!(r.kind, RecordKind::Cname);
        assert_eq!(r.owner.as_deref(), Some("c"));
    }
}
