//! DNS messages, built as data: queries, the zone transfer, and the dynamic updates
//! (with their prerequisites) that write and delete the record and its ownership TXT.
//! Pure functions, unit-tested without a server.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use triad_core::model::Endpoint;

/// A fully qualified [`Name`] from `text` (`rancher.example.com`, trailing dot optional).
pub(crate) fn name(text: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(text.trim_end_matches('.'))
        .map_err(|e| format!("`{text}` is not a DNS name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A non-recursive query for `name`/`rtype`.
pub(crate) fn query(name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(fastrand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false);
    m.add_query(Query::query(name.clone(), rtype));
    m
}

/// An AXFR request for `zone`.
pub(crate) fn axfr(zone: &Name) -> Message {
    query(zone, RecordType::AXFR)
}

fn fastrand_id() -> u16 {
    // Message ids only need to be unpredictable enough to tell answers apart; the
    // TSIG MAC authenticates them.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

/// The records a target becomes: A/AAAA per address, or one CNAME.
pub(crate) fn target_records(
    fqdn: &Name,
    target: &Endpoint,
    ttl: u32,
) -> Result<Vec<Record>, String> {
    match target {
        Endpoint::Ip { addresses } => {
            if addresses.is_empty() {
                return Err("the endpoint has no address".into());
            }
            Ok(addresses
                .iter()
                .map(|a| match a {
                    IpAddr::V4(v4) => Record::from_rdata(fqdn.clone(), ttl, RData::A(A(*v4))),
                    IpAddr::V6(v6) => Record::from_rdata(fqdn.clone(), ttl, RData::AAAA(AAAA(*v6))),
                })
                .collect())
        }
        Endpoint::Hostname { name: host, .. } => Ok(vec![Record::from_rdata(
            fqdn.clone(),
            ttl,
            RData::CNAME(CNAME(name(host)?)),
        )]),
    }
}

/// A TXT record holding one string.
pub(crate) fn txt(owner_name: &Name, ttl: u32, value: &str) -> Record {
    Record::from_rdata(
        owner_name.clone(),
        ttl,
        RData::TXT(TXT::new(vec![value.to_owned()])),
    )
}

/// The text of a TXT record: its strings joined, as external-dns reads them.
pub(crate) fn txt_text(r: &Record) -> Option<String> {
    match r.data() {
        RData::TXT(t) => Some(
            t.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<String>(),
        ),
        _ => None,
    }
}

/// RFC 2136 2.4.3 "RRset does not exist": class NONE, no data.
fn rrset_absent(name: &Name, rtype: RecordType) -> Record {
    let mut r = Record::update0(name.clone(), 0, rtype);
    r.set_dns_class(DNSClass::NONE);
    r
}

/// RFC 2136 2.4.5 "Name is not in use".
fn name_unused(name: &Name) -> Record {
    rrset_absent(name, RecordType::ANY)
}

/// RFC 2136 2.4.2 "RRset exists (value dependent)": the record as it is, TTL 0.
fn rr_present(r: &Record) -> Record {
    let mut p = r.clone();
    p.set_ttl(0);
    p.set_dns_class(DNSClass::IN);
    p
}

/// RFC 2136 2.5.2 "Delete an RRset": class ANY, no data.
fn delete_rrset(name: &Name, rtype: RecordType) -> Record {
    let mut r = Record::update0(name.clone(), 0, rtype);
    r.set_dns_class(DNSClass::ANY);
    r
}

fn update(zone: &Name) -> Message {
    let mut m = Message::new();
    m.set_id(fastrand_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Update)
        .set_recursion_desired(false);
    let mut z = Query::new();
    z.set_name(zone.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    m.add_zone(z);
    m
}

/// The record types triad writes at the name.
pub(crate) const RECORD_TYPES: [RecordType; 3] =
    [RecordType::A, RecordType::AAAA, RecordType::CNAME];

/// Write `records` at `fqdn` and `owner_txt` at `txt_name`.
///
/// `current_txt` is the ownership TXT RRset there now (ours), or empty when the
/// name is new. With it, the update requires that exact RRset (so a concurrent
/// change by anyone else makes the server refuse the whole update); without it, it
/// requires that neither the TXT nor any record type triad writes exist — and, for
/// a CNAME, that the name holds nothing at all.
pub(crate) fn upsert(
    zone: &Name,
    fqdn: &Name,
    txt_name: &Name,
    current_txt: &[Record],
    records: &[Record],
    owner_txt: &str,
    ttl: u32,
) -> Message {
    let mut m = update(zone);
    if current_txt.is_empty() {
        m.add_pre_requisite(rrset_absent(txt_name, RecordType::TXT));
        let cname = records.iter().any(|r| r.record_type() == RecordType::CNAME);
        if cname {
            m.add_pre_requisite(name_unused(fqdn));
        } else {
            for t in RECORD_TYPES {
                m.add_pre_requisite(rrset_absent(fqdn, t));
            }
        }
    } else {
        for r in current_txt {
            m.add_pre_requisite(rr_present(r));
        }
        for t in RECORD_TYPES {
            m.add_update(delete_rrset(fqdn, t));
        }
        m.add_update(delete_rrset(txt_name, RecordType::TXT));
    }
    for r in records {
        m.add_update(r.clone());
    }
    m.add_update(txt(txt_name, ttl, owner_txt));
    m
}

/// Delete the record types triad writes at `fqdn` and the TXT at `txt_name`, on
/// condition that the TXT RRset is exactly `current_txt` (ours).
pub(crate) fn delete(zone: &Name, fqdn: &Name, txt_name: &Name, current_txt: &[Record]) -> Message {
    let mut m = update(zone);
    for r in current_txt {
        m.add_pre_requisite(rr_present(r));
    }
    for t in RECORD_TYPES {
        m.add_update(delete_rrset(fqdn, t));
    }
    m.add_update(delete_rrset(txt_name, RecordType::TXT));
    m
}

/// The TTL of the lock TXT record.
pub(crate) const LOCK_TTL: u32 = 60;

/// Change the TXT at `name` from exactly `expected` (`None`: no TXT there) to `new`
/// (`None`: delete it), with RFC 2136 prerequisites: the server applies the whole
/// update only if the TXT RRset is exactly `expected` (2.4.2 value dependent, or
/// 2.4.3 does not exist), so of two racing writers exactly one succeeds.
pub(crate) fn swap_txt(
    zone: &Name,
    name: &Name,
    expected: Option<&str>,
    new: Option<&str>,
) -> Message {
    let mut m = update(zone);
    match expected {
        Some(v) => {
            m.add_pre_requisite(rr_present(&txt(name, LOCK_TTL, v)));
        }
        None => {
            m.add_pre_requisite(rrset_absent(name, RecordType::TXT));
        }
    }
    m.add_update(delete_rrset(name, RecordType::TXT));
    if let Some(v) = new {
        m.add_update(txt(name, LOCK_TTL, v));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        name(s).unwrap()
    }

    #[test]
    fn names_are_fully_qualified() {
        assert_eq!(n("rancher.example.com").to_string(), "rancher.example.com.");
        assert_eq!(
            n("rancher.example.com.").to_string(),
            "rancher.example.com."
        );
        assert!(name("bad..name").is_err());
    }

    #[test]
    fn create_requires_a_free_name() {
        let recs = target_records(
            &n("r.example.com"),
            &Endpoint::Ip {
                addresses: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            },
            60,
        )
        .unwrap();
        let m = upsert(
            &n("example.com"),
            &n("r.example.com"),
            &n("_triad.r.example.com"),
            &[],
            &recs,
            "heritage=triad,triad-cluster=c,kind=a",
            60,
        );
        assert_eq!(m.op_code(), OpCode::Update);
        // Zone section.
        assert_eq!(m.queries()[0].name(), &n("example.com"));
        assert_eq!(m.queries()[0].query_type(), RecordType::SOA);
        // Prerequisites (the answer section of an update): TXT, A, AAAA, CNAME absent.
        let pre = m.answers();
        assert_eq!(pre.len(), 4);
        assert!(pre.iter().all(|r| r.dns_class() == DNSClass::NONE));
        assert_eq!(pre[0].name(), &n("_triad.r.example.com"));
        // Updates (the authority section): A, AAAA, TXT; nothing deleted.
        let up = m.name_servers();
        let types: Vec<RecordType> = up.iter().map(|r| r.record_type()).collect();
        assert_eq!(
            types,
            vec![RecordType::A, RecordType::AAAA, RecordType::TXT]
        );
        assert!(up
            .iter()
            .all(|r| r.dns_class() == DNSClass::IN && r.ttl() == 60));
        assert_eq!(
            txt_text(&up[2]).as_deref(),
            Some("heritage=triad,triad-cluster=c,kind=a")
        );
    }

    #[test]
    fn cname_create_requires_an_unused_name() {
        let recs = target_records(
            &n("r.example.com"),
            &Endpoint::Hostname {
                name: "lb.example.net".into(),
                alias_zone: None,
            },
            300,
        )
        .unwrap();
        let m = upsert(
            &n("example.com"),
            &n("r.example.com"),
            &n("_triad.r.example.com"),
            &[],
            &recs,
            "v",
            300,
        );
        let pre = m.answers();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[1].record_type(), RecordType::ANY);
        assert_eq!(pre[1].dns_class(), DNSClass::NONE);
    }

    #[test]
    fn update_and_delete_require_our_txt() {
        let ours = txt(
            &n("_triad.r.example.com"),
            60,
            "heritage=triad,triad-cluster=c,kind=a",
        );
        let recs = target_records(
            &n("r.example.com"),
            &Endpoint::Ip {
                addresses: vec!["192.0.2.2".parse().unwrap()],
            },
            60,
        )
        .unwrap();
        let m = upsert(
            &n("example.com"),
            &n("r.example.com"),
            &n("_triad.r.example.com"),
            std::slice::from_ref(&ours),
            &recs,
            "heritage=triad,triad-cluster=c,kind=a",
            60,
        );
        let pre = m.answers();
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0].dns_class(), DNSClass::IN);
        assert_eq!(pre[0].ttl(), 0);
        assert_eq!(txt_text(&pre[0]), txt_text(&ours));
        // Delete A, AAAA, CNAME and TXT, then add A and TXT.
        let up = m.name_servers();
        assert_eq!(up.len(), 6);
        assert!(up[..4].iter().all(|r| r.dns_class() == DNSClass::ANY));

        let d = delete(
            &n("example.com"),
            &n("r.example.com"),
            &n("_triad.r.example.com"),
            &[ours],
        );
        assert_eq!(d.answers().len(), 1);
        assert_eq!(d.name_servers().len(), 4);
        assert!(d
            .name_servers()
            .iter()
            .all(|r| r.dns_class() == DNSClass::ANY));
    }

    #[test]
    fn empty_endpoint_is_refused() {
        assert!(
            target_records(&n("r.example.com"), &Endpoint::Ip { addresses: vec![] }, 60).is_err()
        );
    }
}
