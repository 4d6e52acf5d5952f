//! Route 53 record sets as triad sees them, and the ones it writes: the record
//! (alias, A or CNAME), the ownership TXT beside it and the lock's TXT.

use std::net::IpAddr;

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ResourceRecord, ResourceRecordSet, RrType,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Endpoint, Record, RecordKind, RecordRequest};
use triad_core::provider::{ownership_name, ownership_txt, parse_ownership, parse_ownership_id};
use triad_core::spec::ClusterRef;

use crate::error::fail;

/// `name` as triad compares names: lowercase, no trailing dot.
pub(super) fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

pub(super) fn build_err(what: &str, e: impl std::fmt::Display) -> Error {
    fail("build", what, FailureKind::Other, e.to_string())
}

/// The record a record set is, if it is of a kind triad makes.
pub(super) fn record_of(
    rrset: &ResourceRecordSet,
    zone: &str,
    owner: Option<String>,
) -> Option<Record> {
    let fqdn = norm(rrset.name());
    let ttl = rrset.ttl().and_then(|t| u32::try_from(t).ok());
    let (kind, target, ttl) = match rrset.r#type() {
        RrType::A => match rrset.alias_target() {
            Some(a) => (
                RecordKind::Alias,
                Endpoint::Hostname {
                    name: norm(a.dns_name()),
                    alias_zone: Some(a.hosted_zone_id().to_owned()),
                },
                None,
            ),
            None => (
                RecordKind::A,
                Endpoint::Ip {
                    addresses: rrset
                        .resource_records()
                        .iter()
                        .filter_map(|r| r.value().parse::<IpAddr>().ok())
                        .collect(),
                },
                ttl,
            ),
        },
        RrType::Cname => (
            RecordKind::Cname,
            Endpoint::Hostname {
                name: rrset
                    .resource_records()
                    .first()
                    .map(|r| norm(r.value()))
                    .unwrap_or_default(),
                alias_zone: None,
            },
            ttl,
        ),
        _ => return None,
    };
    Some(Record {
        fqdn,
        zone: zone.to_owned(),
        kind,
        target,
        ttl,
        owner,
        owner_id: None,
    })
}

/// The record set a request asks for.
pub(super) fn rrset_for(request: &RecordRequest) -> Result<ResourceRecordSet> {
    let what = format!("record {}", request.fqdn);
    let b = ResourceRecordSet::builder().name(format!("{}.", request.fqdn));
    let b = match (request.kind, &request.target) {
        (
            RecordKind::Alias,
            Endpoint::Hostname {
                name,
                alias_zone: Some(zone),
            },
        ) => b.r#type(RrType::A).alias_target(
            AliasTarget::builder()
                .dns_name(name)
                .hosted_zone_id(zone)
                .evaluate_target_health(false)
                .build()
                .map_err(|e| build_err(&what, e))?,
        ),
        (RecordKind::A, Endpoint::Ip { addresses }) => {
            let mut b = b.r#type(RrType::A).ttl(i64::from(request.ttl));
            for a in addresses {
                b = b.resource_records(
                    ResourceRecord::builder()
                        .value(a.to_string())
                        .build()
                        .map_err(|e| build_err(&what, e))?,
                );
            }
            b
        }
        (RecordKind::Cname, Endpoint::Hostname { name, .. }) => b
            .r#type(RrType::Cname)
            .ttl(i64::from(request.ttl))
            .resource_records(
                ResourceRecord::builder()
                    .value(name)
                    .build()
                    .map_err(|e| build_err(&what, e))?,
            ),
        (kind, target) => {
            return Err(fail(
                "write",
                what,
                FailureKind::InvalidRequest,
                format!("a {kind} record cannot point at {target}"),
            ))
        }
    };
    b.build().map_err(|e| build_err(&what, e))
}

pub(super) fn txt_rrset(
    fqdn: &str,
    cluster: &ClusterRef,
    kind: RecordKind,
    ttl: u32,
) -> Result<ResourceRecordSet> {
    txt_set(&ownership_name(fqdn), &ownership_txt(cluster, kind), ttl)
}

/// A TXT record set at `name` holding the one string `value`.
pub(super) fn txt_set(name: &str, value: &str, ttl: u32) -> Result<ResourceRecordSet> {
    let what = format!("TXT record {name}");
    ResourceRecordSet::builder()
        .name(format!("{name}."))
        .r#type(RrType::Txt)
        .ttl(i64::from(ttl))
        .resource_records(
            ResourceRecord::builder()
                .value(format!("\"{value}\""))
                .build()
                .map_err(|e| build_err(&what, e))?,
        )
        .build()
        .map_err(|e| build_err(&what, e))
}

/// The TTL of the lock TXT record.
pub(super) const LOCK_TTL: u32 = 60;

pub(super) fn txt_owner(rrset: &ResourceRecordSet) -> Option<String> {
    rrset
        .resource_records()
        .iter()
        .find_map(|r| parse_ownership(r.value()))
}

pub(super) fn txt_owner_id(rrset: &ResourceRecordSet) -> Option<String> {
    rrset
        .resource_records()
        .iter()
        .find_map(|r| parse_ownership_id(r.value()))
}

pub(super) fn change(action: ChangeAction, rrset: ResourceRecordSet) -> Result<Change> {
    Change::builder()
        .action(action)
        .resource_record_set(rrset)
        .build()
        .map_err(|e| build_err("change", e))
}

/// What is at a name: the record (raw and as triad sees it) and the ownership TXT.
pub(super) struct AtName {
    pub record: Option<(ResourceRecordSet, Record)>,
    pub txt: Option<ResourceRecordSet>,
}

/// What `sets` (record sets of the zone `zone`, in any order) hold at `fqdn`.
pub(super) fn at_name_in(sets: &[ResourceRecordSet], zone: &str, fqdn: &str) -> AtName {
    let fqdn = norm(fqdn);
    let txt_name = ownership_name(&fqdn);
    let txt = sets
        .iter()
        .find(|r| r.r#type() == &RrType::Txt && norm(r.name()) == txt_name)
        .cloned();
    let owner = txt.as_ref().and_then(txt_owner);
    let owner_id = txt.as_ref().and_then(txt_owner_id);
    let record = sets
        .iter()
        .filter(|r| norm(r.name()) == fqdn && r.set_identifier().is_none())
        .find_map(|r| {
            record_of(r, &norm(zone), owner.clone()).map(|mut rec| {
                rec.owner_id = owner_id.clone();
                (r.clone(), rec)
            })
        });
    AtName { record, txt }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_record_sets() {
        let request =
            |kind, target| RecordRequest::new("rancher.example.com", "example.com", kind, target);
        let alias = request(
            RecordKind::Alias,
            Endpoint::Hostname {
                name: "r-123.elb.us-east-1.amazonaws.com".into(),
                alias_zone: Some("Z26RNL4JYFTOTI".into()),
            },
        );
        let a = request(
            RecordKind::A,
            Endpoint::Ip {
                addresses: vec!["192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap()],
            },
        );
        let cname = request(
            RecordKind::Cname,
            Endpoint::Hostname {
                name: "r-123.elb.us-east-1.amazonaws.com".into(),
                alias_zone: None,
            },
        );
        for req in [alias, a, cname] {
            let set = rrset_for(&req).unwrap();
            assert_eq!(set.name(), "rancher.example.com.");
            let rec = record_of(&set, "example.com", Some("c".into())).unwrap();
            assert!(req.is_satisfied_by(&rec), "{req:?} -> {rec:?}");
        }
        let bad = RecordRequest::new(
            "a.b",
            "b",
            RecordKind::A,
            Endpoint::Hostname {
                name: "x".into(),
                alias_zone: None,
            },
        );
        assert!(rrset_for(&bad).is_err());
    }

    #[test]
    fn ownership_txt_is_quoted_and_parsed() {
        let mut cluster = ClusterRef::new("prod", "us-east-1");
        cluster.id = Some("0a1b2c3d4e5f".into());
        let t = txt_rrset("rancher.example.com", &cluster, RecordKind::Alias, 60).unwrap();
        assert_eq!(t.name(), "_triad.rancher.example.com.");
        assert!(t.resource_records()[0]
            .value()
            .starts_with("\"heritage=triad,"));
        assert_eq!(txt_owner(&t).as_deref(), Some("prod"));
        assert_eq!(txt_owner_id(&t).as_deref(), Some("0a1b2c3d4e5f"));
    }
}
