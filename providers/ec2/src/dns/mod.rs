//! Route 53: the Rancher record (alias, CNAME or A) and the ownership TXT beside it.

mod records;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecordSet, RrType,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Record, RecordKind, RecordRequest};
use triad_core::provider::{DnsCapabilities, DnsProvider};
use triad_core::spec::{ClusterRef, ValidSpec};

use crate::error::{fail, sdk, AwsError};
use crate::Ec2;
use records::{
    at_name_in, build_err, change, norm, record_of, rrset_for, txt_owner, txt_owner_id, txt_rrset,
    txt_set, AtName, LOCK_TTL,
};

/// The name of the DNS provider in errors and the inventory.
pub(crate) const DNS_PROVIDER: &str = "route53";

/// Reads of one key that are under way, shared by everyone who asks meanwhile
/// (a single flight): the plan's concurrent `lookup` and `owned_records` make one
/// listing of the zone, not two. Forgotten once read, so a later call reads again.
pub(crate) struct InFlight<T>(Mutex<HashMap<String, Arc<tokio::sync::OnceCell<T>>>>);

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<T: Clone> InFlight<T> {
    /// The value of `key`: the read under way, else a new `read`.
    pub(crate) async fn get<F, Fut>(&self, key: &str, read: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let (cell, mine) = {
            let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(key) {
                Some(c) => (c.clone(), false),
                None => {
                    let c = Arc::new(tokio::sync::OnceCell::new());
                    m.insert(key.to_owned(), c.clone());
                    (c, true)
                }
            }
        };
        let out = cell.get_or_try_init(read).await.cloned();
        if mine {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        }
        out
    }
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
        let id = self
            .zone_reads
            .get(&zone, || self.find_zone_id(&zone))
            .await?;
        self.hosted_zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(zone, id.clone());
        Ok(id)
    }

    /// Every record set of the zone, read once for everyone asking meanwhile.
    async fn zone_sets(&self, zone: &str) -> Result<Arc<Vec<ResourceRecordSet>>> {
        let zone_id = self.zone_id(zone).await?;
        self.listings
            .get(&zone_id, || self.list_zone(&zone_id, zone))
            .await
    }

    async fn list_zone(&self, zone_id: &str, zone: &str) -> Result<Arc<Vec<ResourceRecordSet>>> {
        let mut all = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut req = self.r53.list_resource_record_sets().hosted_zone_id(zone_id);
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
        Ok(Arc::new(all))
    }

    /// The hosted zone id of `zone`: the setting (checked to be that zone), else the
    /// one zone of that name.
    async fn find_zone_id(&self, zone: &str) -> Result<String> {
        let zone = zone.to_owned();
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

    /// What is at `fqdn` now: two targeted reads (the TXT and the record), for
    /// writes that must see the latest state.
    async fn at_name(&self, zone: &str, zone_id: &str, fqdn: &str) -> Result<AtName> {
        let fqdn = norm(fqdn);
        let mut sets = self
            .sets_at(zone_id, &triad_core::provider::ownership_name(&fqdn))
            .await?;
        sets.extend(self.sets_at(zone_id, &fqdn).await?);
        Ok(at_name_in(&sets, zone, &fqdn))
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
        let sets = self.zone_sets(zone).await?;
        Ok(at_name_in(&sets, zone, fqdn).record.map(|(_, r)| r))
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let all = self.zone_sets(zone).await?;
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
        // Read first: a lock that is not as expected is lost without a write. The
        // batch below is the atomic guard against a writer that slips in between
        // (moto enforces it only when started through testing/ec2/moto_server.py).
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
                // Plain moto answers a DELETE it cannot match with InvalidInput.
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
