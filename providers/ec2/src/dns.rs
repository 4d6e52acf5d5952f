//! Route 53: the Rancher record (alias, CNAME or A) and the ownership TXT beside it.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord,
    ResourceRecordSet, RrType,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Endpoint, Record, RecordKind, RecordRequest};
use triad_core::provider::{
    ownership_name, ownership_txt, parse_ownership, parse_ownership_id, DnsCapabilities,
    DnsProvider,
};
use triad_core::spec::{ClusterRef, ValidSpec};

use crate::error::{fail, sdk, AwsError};
use crate::Ec2;

/// The name of the DNS provider in errors and the inventory.
pub const DNS_PROVIDER: &str = "route53";

/// `name` as triad compares names: lowercase, no trailing dot.
fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn build_err(what: &str, e: impl std::fmt::Display) -> Error {
    fail("build", what, FailureKind::Other, e.to_string())
}

/// The record a record set is, if it is of a kind triad makes.
pub(crate) fn record_of(
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
pub(crate) fn rrset_for(request: &RecordRequest) -> Result<ResourceRecordSet> {
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

fn txt_rrset(
    fqdn: &str,
    cluster: &ClusterRef,
    kind: RecordKind,
    ttl: u32,
) -> Result<ResourceRecordSet> {
    txt_set(&ownership_name(fqdn), &ownership_txt(cluster, kind), ttl)
}

/// A TXT record set at `name` holding the one string `value`.
fn txt_set(name: &str, value: &str, ttl: u32) -> Result<ResourceRecordSet> {
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
const LOCK_TTL: u32 = 60;

fn txt_owner(rrset: &ResourceRecordSet) -> Option<String> {
    rrset
        .resource_records()
        .iter()
        .find_map(|r| parse_ownership(r.value()))
}

fn txt_owner_id(rrset: &ResourceRecordSet) -> Option<String> {
    rrset
        .resource_records()
        .iter()
        .find_map(|r| parse_ownership_id(r.value()))
}

fn change(action: ChangeAction, rrset: ResourceRecordSet) -> Result<Change> {
    Change::builder()
        .action(action)
        .resource_record_set(rrset)
        .build()
        .map_err(|e| build_err("change", e))
}

/// What is at a name: the record (raw and as triad sees it) and the ownership TXT.
struct AtName {
    record: Option<(ResourceRecordSet, Record)>,
    txt: Option<ResourceRecordSet>,
}

impl Ec2 {
    /// The hosted zone id of `zone`: the setting, else the one zone of that name.
    async fn zone_id(&self, zone: &str) -> Result<String> {
        let zone = norm(zone);
        if let Some(id) = self
            .hosted_zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&zone)
        {
            return Ok(id.clone());
        }
        let id = match &self.settings.hosted_zone_id {
            Some(id) => {
                let id = id.trim_start_matches("/hostedzone/").to_owned();
                let out = self
                    .r53
                    .get_hosted_zone()
                    .id(&id)
                    .send()
                    .await
                    .map_err(|e| {
                        let e = AwsError::from_sdk(e);
                        if e.kind == FailureKind::NotFound {
                            Error::invalid(
                                "ec2.hosted_zone_id",
                                format!("hosted zone `{id}` does not exist"),
                                "check the id: aws route53 list-hosted-zones",
                            )
                        } else {
                            e.into_error("read", format!("hosted zone {id}"))
                        }
                    })?;
                let name = out
                    .hosted_zone()
                    .map(|z| norm(z.name()))
                    .unwrap_or_default();
                if name != zone {
                    return Err(Error::invalid(
                        "ec2.hosted_zone_id",
                        format!("hosted zone `{id}` is `{name}`, not dns.zone `{zone}`"),
                        "give the id of the dns.zone's hosted zone",
                    ));
                }
                id
            }
            None => {
                let out = self
                    .r53
                    .list_hosted_zones_by_name()
                    .dns_name(&zone)
                    .max_items(10)
                    .send()
                    .await
                    .map_err(sdk("find", format!("hosted zone {zone}")))?;
                let ids: Vec<String> = out
                    .hosted_zones()
                    .iter()
                    .filter(|z| norm(z.name()) == zone)
                    .map(|z| z.id().trim_start_matches("/hostedzone/").to_owned())
                    .collect();
                match ids.as_slice() {
                    [id] => id.clone(),
                    [] => {
                        return Err(fail(
                            "find",
                            format!("hosted zone {zone}"),
                            FailureKind::NotFound,
                            format!(
                                "Route 53 has no hosted zone named {zone} in this account; \
                                 create it, or set ec2.hosted_zone_id"
                            ),
                        ))
                    }
                    many => {
                        return Err(Error::invalid(
                            "ec2.hosted_zone_id",
                            format!(
                                "is not set and {} hosted zones are named {zone}: {}",
                                many.len(),
                                many.join(", ")
                            ),
                            "set ec2.hosted_zone_id to the one to use",
                        ))
                    }
                }
            }
        };
        self.hosted_zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(zone, id.clone());
        Ok(id)
    }

    /// The record sets named exactly `name` (at most a few).
    async fn sets_at(&self, zone_id: &str, name: &str) -> Result<Vec<ResourceRecordSet>> {
        let out = self
            .r53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(format!("{name}."))
            .max_items(10)
            .send()
            .await
            .map_err(sdk("read", format!("records at {name}")))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .filter(|r| norm(r.name()) == name)
            .cloned()
            .collect())
    }

    async fn at_name(&self, zone: &str, zone_id: &str, fqdn: &str) -> Result<AtName> {
        let fqdn = norm(fqdn);
        let txt = self
            .sets_at(zone_id, &ownership_name(&fqdn))
            .await?
            .into_iter()
            .find(|r| r.r#type() == &RrType::Txt);
        let owner = txt.as_ref().and_then(txt_owner);
        let owner_id = txt.as_ref().and_then(txt_owner_id);
        let record = self
            .sets_at(zone_id, &fqdn)
            .await?
            .into_iter()
            .filter(|r| r.set_identifier().is_none())
            .find_map(|r| {
                record_of(&r, &norm(zone), owner.clone()).map(|mut rec| {
                    rec.owner_id = owner_id.clone();
                    (r, rec)
                })
            });
        Ok(AtName { record, txt })
    }

    async fn submit(
        &self,
        zone_id: &str,
        fqdn: &str,
        changes: Vec<Change>,
        comment: &str,
    ) -> Result<()> {
        let batch = ChangeBatch::builder()
            .set_changes(Some(changes))
            .comment(comment)
            .build()
            .map_err(|e| build_err("change batch", e))?;
        let out = self
            .r53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                let e = AwsError::from_sdk(e);
                Error::provider(
                    DNS_PROVIDER,
                    "change",
                    format!("record {fqdn}"),
                    e.kind,
                    e.message,
                )
            })?;
        if let Some(info) = out.change_info() {
            let id = info.id().trim_start_matches("/change/").to_owned();
            self.changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(fqdn.to_owned(), id);
        }
        Ok(())
    }
}

fn not_owned(fqdn: &str, cluster: &str, owner: Option<&str>, kind: Option<RecordKind>) -> Error {
    Error::NotOwned {
        fqdn: fqdn.to_owned(),
        cluster: cluster.to_owned(),
        owner: match (owner, kind) {
            (Some(o), _) => format!("owned by triad cluster `{o}`"),
            (None, Some(k)) => format!("a {k} record without triad's ownership TXT"),
            (None, None) => "an ownership TXT record of another owner".to_owned(),
        },
    }
}

#[async_trait]
impl DnsProvider for Ec2 {
    fn name(&self) -> &str {
        DNS_PROVIDER
    }

    fn capabilities(&self) -> DnsCapabilities {
        DnsCapabilities {
            alias: true,
            lock: true,
        }
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec, crate::settings::Concern::Dns)
    }

    async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
        let zone_id = self.zone_id(zone).await?;
        Ok(self
            .at_name(zone, &zone_id, fqdn)
            .await?
            .record
            .map(|(_, r)| r))
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let zone_id = self.zone_id(zone).await?;
        let mut all = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut req = self
                .r53
                .list_resource_record_sets()
                .hosted_zone_id(&zone_id);
            if let Some((name, kind, ident)) = next.take() {
                req = req
                    .start_record_name(name)
                    .start_record_type(kind)
                    .set_start_record_identifier(ident);
            }
            let out = req
                .send()
                .await
                .map_err(sdk("list records of", format!("zone {zone}")))?;
            all.extend(out.resource_record_sets().iter().cloned());
            match (
                out.is_truncated(),
                out.next_record_name(),
                out.next_record_type(),
            ) {
                (true, Some(n), Some(t)) => {
                    next = Some((
                        n.to_owned(),
                        t.clone(),
                        out.next_record_identifier().map(str::to_owned),
                    ))
                }
                _ => break,
            }
        }
        let mut out = Vec::new();
        for txt in all.iter().filter(|r| r.r#type() == &RrType::Txt) {
            if txt_owner(txt).as_deref() != Some(cluster.name.as_str()) {
                continue;
            }
            let Some(fqdn) = norm(txt.name()).strip_prefix("_triad.").map(str::to_owned) else {
                continue;
            };
            if let Some(rec) = all
                .iter()
                .filter(|r| norm(r.name()) == fqdn && r.set_identifier().is_none())
                .find_map(|r| record_of(r, &norm(zone), Some(cluster.name.clone())))
            {
                out.push(Record {
                    owner_id: txt_owner_id(txt),
                    ..rec
                });
            }
        }
        Ok(out)
    }

    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        let fqdn = norm(&request.fqdn);
        let zone_id = self.zone_id(&request.zone).await?;
        let at = self.at_name(&request.zone, &zone_id, &fqdn).await?;
        let txt_owner = at.txt.as_ref().and_then(txt_owner);
        match (&at.record, txt_owner.as_deref()) {
            (Some((_, r)), owner) if owner != Some(cluster.name.as_str()) => {
                return Err(not_owned(&fqdn, &cluster.name, owner, Some(r.kind)))
            }
            (None, Some(owner)) if owner != cluster.name => {
                return Err(not_owned(&fqdn, &cluster.name, Some(owner), None))
            }
            (None, None) if at.txt.is_some() => {
                return Err(not_owned(&fqdn, &cluster.name, None, None));
            }
            _ => {}
        }
        let want = rrset_for(request)?;
        let want_txt = txt_rrset(&fqdn, cluster, request.kind, request.ttl.max(1))?;
        let written = Record {
            fqdn: fqdn.clone(),
            zone: norm(&request.zone),
            kind: request.kind,
            target: request.target.clone(),
            ttl: (request.kind != RecordKind::Alias).then_some(request.ttl),
            owner: Some(cluster.name.clone()),
            owner_id: cluster.id.clone(),
        };
        let txt_same = at.txt.as_ref().is_some_and(|t| {
            t.resource_records() == want_txt.resource_records() && t.ttl() == want_txt.ttl()
        });
        if let Some((_, r)) = &at.record {
            if request.is_satisfied_by(r) && txt_same {
                return Ok(r.clone());
            }
        }
        let mut changes = Vec::new();
        if let Some((raw, _)) = &at.record {
            // A and CNAME cannot share a name: replace, in the same atomic batch.
            if raw.r#type() != want.r#type() {
                changes.push(change(ChangeAction::Delete, raw.clone())?);
            }
        }
        changes.push(change(ChangeAction::Upsert, want)?);
        changes.push(change(ChangeAction::Upsert, want_txt)?);
        self.submit(
            &zone_id,
            &fqdn,
            changes,
            &format!("triad cluster {}", cluster.name),
        )
        .await?;
        tracing::info!(fqdn, kind = %request.kind, "wrote DNS record");
        Ok(written)
    }

    async fn read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
        let zone_id = self.zone_id(zone).await?;
        let name = norm(name);
        Ok(self
            .sets_at(&zone_id, &name)
            .await?
            .into_iter()
            .find(|r| r.r#type() == &RrType::Txt)
            .map(|r| {
                r.resource_records()
                    .iter()
                    .map(|v| v.value().trim_matches('"').to_owned())
                    .collect::<String>()
            }))
    }

    async fn swap_txt(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        let zone_id = self.zone_id(zone).await?;
        let name = norm(name);
        // Read first: a lock that is not as expected is lost without a write. This
        // also keeps the rule on servers that do not enforce it (moto lets CREATE
        // overwrite an existing set); on Route 53 the batch below is the atomic
        // guard against a writer that slips in between.
        if self.read_txt(zone, &name).await?.as_deref() != expected {
            return Ok(false);
        }
        // One change batch, atomic in Route 53: DELETE must match the set exactly,
        // CREATE fails if a set exists. Either failing rejects the whole batch.
        let mut changes = Vec::new();
        if let Some(old) = expected {
            changes.push(change(
                ChangeAction::Delete,
                txt_set(&name, old, LOCK_TTL)?,
            )?);
        }
        if let Some(new) = new {
            changes.push(change(
                ChangeAction::Create,
                txt_set(&name, new, LOCK_TTL)?,
            )?);
        }
        if changes.is_empty() {
            return Ok(self.read_txt(zone, &name).await?.is_none());
        }
        let batch = ChangeBatch::builder()
            .set_changes(Some(changes))
            .comment("triad lock")
            .build()
            .map_err(|e| build_err("change batch", e))?;
        match self
            .r53
            .change_resource_record_sets()
            .hosted_zone_id(&zone_id)
            .change_batch(batch)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = AwsError::from_sdk(e);
                // moto answers a DELETE that does not match with InvalidInput.
                if e.is("InvalidChangeBatch") || e.is("InvalidInput") {
                    tracing::debug!(%name, message = %e.message, "lock change refused");
                    Ok(false)
                } else {
                    Err(e.into_error("change", format!("TXT record {name}")))
                }
            }
        }
    }

    async fn wait_record(&self, _zone: &str, fqdn: &str, timeout: Duration) -> Result<()> {
        let fqdn = norm(fqdn);
        let id = self
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fqdn)
            .cloned();
        let Some(id) = id else {
            return Ok(());
        };
        let resource = format!("DNS change {id} of {fqdn}");
        self.poll
            .until(timeout, &resource, "INSYNC", || async {
                let out = self.r53.get_change().id(&id).send().await.map_err(|e| {
                    let e = AwsError::from_sdk(e);
                    Error::provider(
                        DNS_PROVIDER,
                        "wait for",
                        resource.clone(),
                        e.kind,
                        e.message,
                    )
                })?;
                Ok(
                    (out.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync))
                        .then_some(()),
                )
            })
            .await?;
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        if changes.get(&fqdn) == Some(&id) {
            changes.remove(&fqdn);
        }
        Ok(())
    }

    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
        let fqdn = norm(fqdn);
        let zone_id = self.zone_id(zone).await?;
        let at = self.at_name(zone, &zone_id, &fqdn).await?;
        let owner = at.txt.as_ref().and_then(txt_owner);
        let mut changes = Vec::new();
        match (&at.record, owner.as_deref()) {
            (Some((_, r)), o) if o != Some(cluster.name.as_str()) => {
                return Err(not_owned(&fqdn, &cluster.name, o, Some(r.kind)))
            }
            (Some((raw, _)), _) => changes.push(change(ChangeAction::Delete, raw.clone())?),
            (None, _) => {}
        }
        // The TXT goes with the record, or alone if the record was removed by hand.
        if let (Some(txt), Some(o)) = (&at.txt, owner.as_deref()) {
            if o == cluster.name {
                changes.push(change(ChangeAction::Delete, txt.clone())?);
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        match self
            .submit(
                &zone_id,
                &fqdn,
                changes,
                &format!("triad cluster {} destroy", cluster.name),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(fqdn, "deleted DNS record");
                Ok(())
            }
            // Deleted meanwhile (AWS says InvalidChangeBatch, moto InvalidInput):
            // gone is success.
            Err(e) if e.kind() == Some(FailureKind::InvalidRequest) => {
                let again = self.at_name(zone, &zone_id, &fqdn).await?;
                if again.record.is_none() && again.txt.is_none() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_record_sets() {
        let alias = RecordRequest {
            fqdn: "rancher.example.com".into(),
            zone: "example.com".into(),
            kind: RecordKind::Alias,
            target: Endpoint::Hostname {
                name: "r-123.elb.us-east-1.amazonaws.com".into(),
                alias_zone: Some("Z26RNL4JYFTOTI".into()),
            },
            ttl: 60,
        };
        let a = RecordRequest {
            kind: RecordKind::A,
            target: Endpoint::Ip {
                addresses: vec!["192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap()],
            },
            ..alias.clone()
        };
        let cname = RecordRequest {
            kind: RecordKind::Cname,
            target: Endpoint::Hostname {
                name: "r-123.elb.us-east-1.amazonaws.com".into(),
                alias_zone: None,
            },
            ..alias.clone()
        };
        for req in [alias, a, cname] {
            let set = rrset_for(&req).unwrap();
            assert_eq!(set.name(), "rancher.example.com.");
            let rec = record_of(&set, "example.com", Some("c".into())).unwrap();
            assert!(req.is_satisfied_by(&rec), "{req:?} -> {rec:?}");
        }
        let bad = RecordRequest {
            kind: RecordKind::A,
            target: Endpoint::Hostname {
                name: "x".into(),
                alias_zone: None,
            },
            fqdn: "a.b".into(),
            zone: "b".into(),
            ttl: 60,
        };
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
