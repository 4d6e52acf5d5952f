//! [`DnsProvider`] for the simulated cloud: hosted zones of record sets, changed in
//! atomic batches that take [`SimConfig::dns_sync`](crate::SimConfig::dns_sync) to
//! reach the name servers, with ownership TXT records beside triad's records.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use triad_core::model::{Endpoint, Record, RecordKind, RecordRequest};
use triad_core::provider::{
    ownership_name, ownership_txt, parse_ownership, parse_ownership_id, DnsCapabilities,
};
use triad_core::spec::{ClusterRef, ValidSpec};
use triad_core::{DnsProvider, Error, FailureKind, Result};

use crate::world::{normalize, ApiError, SimRecordData, SimRecordSet};
use crate::{SimApi, SimCloud, PROVIDER};

/// The error for a hosted zone that does not exist.
pub(crate) fn unknown_zone(zone: &str, action: &str) -> Error {
    Error::provider(
        PROVIDER,
        action,
        format!("hosted zone {zone}"),
        FailureKind::NotFound,
        unknown_zone_message(zone),
    )
}

fn unknown_zone_message(zone: &str) -> String {
    format!(
        "hosted zone `{zone}` does not exist; create it first (SimCloud::add_dns_zone, or \
         SimCloud::from_spec creates dns.zone) or set dns.zone to an existing zone"
    )
}

/// One change in a batch.
#[derive(Clone, Debug)]
enum Change {
    Upsert(SimRecordSet),
    Delete(SimRecordSet),
    /// Create a set that must not exist yet (Route 53's `CREATE`).
    Create(SimRecordSet),
}

/// The TTL of the lock TXT record.
const LOCK_TTL: u32 = 60;

fn txt_set(fqdn: &str, value: &str) -> SimRecordSet {
    SimRecordSet {
        fqdn: fqdn.to_owned(),
        ttl: Some(LOCK_TTL),
        data: SimRecordData::Txt(vec![value.to_owned()]),
    }
}

/// What `ListRecords` returns.
struct Listing {
    records: Vec<SimRecordSet>,
    latest_change: BTreeMap<String, String>,
}

impl Listing {
    fn address(&self, fqdn: &str) -> Option<&SimRecordSet> {
        self.records
            .iter()
            .find(|r| r.fqdn == fqdn && r.data.is_address())
    }

    fn txt(&self, fqdn: &str) -> Option<&SimRecordSet> {
        self.records
            .iter()
            .find(|r| r.fqdn == fqdn && !r.data.is_address())
    }
}

/// Who holds `fqdn`, as the ownership TXT tells.
enum Holder {
    /// Nothing there.
    Nobody,
    /// Owned by this cluster.
    Us,
    /// Something else: the description for [`Error::NotOwned`].
    Other(String),
}

fn holder(listing: &Listing, cluster: &str, fqdn: &str) -> Holder {
    let record = listing.address(fqdn);
    let txt = listing.txt(&ownership_name(fqdn));
    let owner = txt.and_then(|t| match &t.data {
        SimRecordData::Txt(values) => values.iter().find_map(|v| parse_ownership(v)),
        _ => None,
    });
    match (record, txt, owner) {
        (None, None, _) => Holder::Nobody,
        (_, _, Some(o)) if o == cluster => Holder::Us,
        (_, _, Some(o)) => Holder::Other(format!("owned by cluster `{o}`")),
        (Some(_), None, None) => Holder::Other(format!(
            "it has no ownership TXT record at {}",
            ownership_name(fqdn)
        )),
        (_, Some(_), None) => Holder::Other(format!(
            "the TXT record at {} is not triad's",
            ownership_name(fqdn)
        )),
    }
}

fn to_record(
    set: &SimRecordSet,
    zone: &str,
    owner: Option<(String, Option<String>)>,
) -> Option<Record> {
    let (kind, target) = match &set.data {
        SimRecordData::A(addresses) => (
            RecordKind::A,
            Endpoint::Ip {
                addresses: addresses.clone(),
            },
        ),
        SimRecordData::Cname(name) => (
            RecordKind::Cname,
            Endpoint::Hostname {
                name: name.clone(),
                alias_zone: None,
            },
        ),
        SimRecordData::Alias { name, zone_id } => (
            RecordKind::Alias,
            Endpoint::Hostname {
                name: name.clone(),
                alias_zone: Some(zone_id.clone()),
            },
        ),
        SimRecordData::Txt(_) => return None,
    };
    Some(Record {
        fqdn: set.fqdn.clone(),
        zone: zone.to_owned(),
        kind,
        target,
        ttl: set.ttl,
        owner_id: owner.as_ref().and_then(|(_, id)| id.clone()),
        owner: owner.map(|(name, _)| name),
    })
}

/// The owning cluster's name and id, as the ownership TXT tells.
fn owner_of(listing: &Listing, fqdn: &str) -> Option<(String, Option<String>)> {
    match &listing.txt(&ownership_name(fqdn))?.data {
        SimRecordData::Txt(values) => values
            .iter()
            .find_map(|v| parse_ownership(v).map(|name| (name, parse_ownership_id(v)))),
        _ => None,
    }
}

/// The record set a request asks for.
fn desired_set(request: &RecordRequest, fqdn: &str) -> Result<SimRecordSet, String> {
    let data = match (request.kind, &request.target) {
        (RecordKind::A, Endpoint::Ip { addresses }) if !addresses.is_empty() => {
            SimRecordData::A(addresses.clone())
        }
        (RecordKind::A, Endpoint::Ip { .. }) => {
            return Err("an A record needs at least one address".into())
        }
        (RecordKind::Cname, Endpoint::Hostname { name, .. }) => {
            SimRecordData::Cname(normalize(name))
        }
        (
            RecordKind::Alias,
            Endpoint::Hostname {
                name,
                alias_zone: Some(zone_id),
            },
        ) => SimRecordData::Alias {
            name: normalize(name),
            zone_id: zone_id.clone(),
        },
        (
            RecordKind::Alias,
            Endpoint::Hostname {
                alias_zone: None, ..
            },
        ) => return Err("an alias record needs the target's hosted zone id".into()),
        (kind, target) => return Err(format!("a {kind} record cannot point at `{target}`")),
    };
    let ttl = match data {
        SimRecordData::Alias { .. } => None,
        _ => Some(request.ttl),
    };
    Ok(SimRecordSet {
        fqdn: fqdn.to_owned(),
        ttl,
        data,
    })
}

fn in_zone(fqdn: &str, zone: &str) -> bool {
    fqdn == zone || fqdn.ends_with(&format!(".{zone}"))
}

impl SimCloud {
    async fn list_records(&self, zone: &str) -> Result<Listing> {
        let resource = format!("hosted zone {zone}");
        self.call(SimApi::ListRecords, &resource, |w, _, _| {
            let z = w
                .zones
                .get(zone)
                .ok_or_else(|| ApiError::new(FailureKind::NotFound, unknown_zone_message(zone)))?;
            Ok(Listing {
                records: z.records.clone(),
                latest_change: z.latest_change.clone(),
            })
        })
        .await
    }

    /// Apply `changes` atomically; returns the change id.
    async fn change_records(&self, zone: &str, fqdn: &str, changes: Vec<Change>) -> Result<String> {
        let resource = format!("record {fqdn}");
        self.call(SimApi::ChangeRecords, &resource, |w, _, now| {
            let id = format!("C{}", w.hex(12).to_ascii_uppercase());
            let z = w
                .zones
                .get_mut(zone)
                .ok_or_else(|| ApiError::new(FailureKind::NotFound, unknown_zone_message(zone)))?;
            let mut records = z.records.clone();
            let mut touched = Vec::new();
            for change in changes {
                match change {
                    Change::Create(set) => {
                        if records
                            .iter()
                            .any(|r| r.fqdn == set.fqdn && r.data.rtype() == set.data.rtype())
                        {
                            return Err(ApiError::new(
                                FailureKind::Conflict,
                                format!(
                                    "cannot create {} record {}: it already exists",
                                    set.data.rtype(),
                                    set.fqdn
                                ),
                            ));
                        }
                        touched.push(set.fqdn.clone());
                        records.push(set);
                    }
                    Change::Delete(set) => {
                        let at = records.iter().position(|r| *r == set).ok_or_else(|| {
                            ApiError::new(
                                FailureKind::Conflict,
                                format!(
                                    "cannot delete {} record {}: it does not exist with these values",
                                    set.data.rtype(),
                                    set.fqdn
                                ),
                            )
                        })?;
                        records.remove(at);
                        touched.push(set.fqdn);
                    }
                    Change::Upsert(set) => {
                        let conflict = records.iter().any(|r| {
                            r.fqdn == set.fqdn
                                && r.data.rtype() != set.data.rtype()
                                && (r.data.rtype() == "CNAME" || set.data.rtype() == "CNAME")
                        });
                        if conflict {
                            return Err(ApiError::new(
                                FailureKind::InvalidRequest,
                                format!(
                                    "a CNAME at {} cannot coexist with another record type",
                                    set.fqdn
                                ),
                            ));
                        }
                        records.retain(|r| !(r.fqdn == set.fqdn && r.data.rtype() == set.data.rtype()));
                        touched.push(set.fqdn.clone());
                        records.push(set);
                    }
                }
            }
            z.records = records;
            for name in touched {
                z.latest_change.insert(name, id.clone());
            }
            w.changes.insert(id.clone(), now);
            Ok(id)
        })
        .await
    }

    fn zone_and_fqdn(zone: &str, fqdn: &str, action: &str) -> Result<(String, String)> {
        let zone = normalize(zone);
        let fqdn = normalize(fqdn);
        if !in_zone(&fqdn, &zone) {
            return Err(Error::provider(
                PROVIDER,
                action,
                format!("record {fqdn}"),
                FailureKind::InvalidRequest,
                format!("`{fqdn}` is not inside the zone `{zone}`"),
            ));
        }
        Ok((zone, fqdn))
    }
}

#[async_trait]
impl DnsProvider for SimCloud {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> DnsCapabilities {
        DnsCapabilities {
            alias: true,
            lock: true,
        }
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        SimCloud::check_sim_section(spec)
    }

    async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
        let (zone, fqdn) = Self::zone_and_fqdn(zone, fqdn, "look up record")?;
        let listing = self.list_records(&zone).await?;
        Ok(listing
            .address(&fqdn)
            .and_then(|set| to_record(set, &zone, owner_of(&listing, &fqdn))))
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let zone = normalize(zone);
        let listing = self.list_records(&zone).await?;
        let mut out: Vec<Record> = listing
            .records
            .iter()
            .filter(|r| r.data.is_address())
            .filter_map(|r| {
                let owner = owner_of(&listing, &r.fqdn)?;
                (owner.0 == cluster.name).then(|| to_record(r, &zone, Some(owner)))?
            })
            .collect();
        out.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        Ok(out)
    }

    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        let (zone, fqdn) = Self::zone_and_fqdn(&request.zone, &request.fqdn, "write record")?;
        let desired = desired_set(request, &fqdn).map_err(|m| {
            Error::provider(
                PROVIDER,
                "write record",
                format!("record {fqdn}"),
                FailureKind::InvalidRequest,
                m,
            )
        })?;
        let listing = self.list_records(&zone).await?;
        if let Holder::Other(owner) = holder(&listing, &cluster.name, &fqdn) {
            return Err(Error::NotOwned {
                fqdn,
                cluster: cluster.name.clone(),
                owner,
            });
        }
        let txt_name = ownership_name(&fqdn);
        let txt = SimRecordSet {
            fqdn: txt_name.clone(),
            ttl: Some(request.ttl),
            data: SimRecordData::Txt(vec![ownership_txt(cluster, request.kind)]),
        };
        let current = listing.address(&fqdn).cloned();
        let record = to_record(
            &desired,
            &zone,
            Some((cluster.name.clone(), cluster.id.clone())),
        )
        .ok_or_else(|| {
            Error::provider(
                PROVIDER,
                "write record",
                format!("record {fqdn}"),
                FailureKind::Other,
                "the record is not an address record",
            )
        })?;
        if current.as_ref() == Some(&desired) && listing.txt(&txt_name) == Some(&txt) {
            tracing::debug!(%fqdn, "sim: record already up to date");
            return Ok(record);
        }
        let mut changes = Vec::new();
        if let Some(old) = current {
            if old.data.rtype() != desired.data.rtype() {
                changes.push(Change::Delete(old));
            }
        }
        changes.push(Change::Upsert(desired));
        changes.push(Change::Upsert(txt));
        self.change_records(&zone, &fqdn, changes).await?;
        Ok(record)
    }

    async fn wait_record(&self, zone: &str, fqdn: &str, timeout: Duration) -> Result<()> {
        let (zone, fqdn) = Self::zone_and_fqdn(zone, fqdn, "wait for record")?;
        let resource = format!("record {fqdn}");
        // Find the latest change, then poll it; both inside the poll loop so a
        // throttled call is simply made again.
        let change: std::sync::Mutex<Option<Option<String>>> = std::sync::Mutex::new(None);
        self.poll(
            self.inner.config.dns_poll,
            &resource,
            "in sync",
            timeout,
            || {
                let (change, resource, zone, fqdn) = (&change, &resource, &zone, &fqdn);
                async move {
                    let known = change.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let id = match known {
                        Some(id) => id,
                        None => {
                            let listing = self.list_records(zone).await?;
                            let id = listing.latest_change.get(fqdn).cloned();
                            *change.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
                            id
                        }
                    };
                    let Some(id) = id else { return Ok(Some(())) };
                    self.call(SimApi::GetChange, resource, |w, cfg, now| {
                        let submitted = w.changes.get(&id).ok_or_else(|| {
                            ApiError::new(
                                FailureKind::NotFound,
                                format!("change {id} does not exist"),
                            )
                        })?;
                        Ok((now >= *submitted + cfg.dns_sync).then_some(()))
                    })
                    .await
                }
            },
        )
        .await
    }

    async fn read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
        let (zone, name) = Self::zone_and_fqdn(zone, name, "read TXT record")?;
        let listing = self.list_records(&zone).await?;
        Ok(listing.txt(&name).and_then(|t| match &t.data {
            SimRecordData::Txt(values) => Some(values.concat()),
            _ => None,
        }))
    }

    async fn swap_txt(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        let (zone, name) = Self::zone_and_fqdn(zone, name, "change TXT record")?;
        // One atomic batch: delete exactly the expected value (or create where
        // nothing may exist); the zone refuses the whole batch when it does not match.
        let mut changes = Vec::new();
        match (expected, new) {
            (Some(old), Some(new)) => {
                changes.push(Change::Delete(txt_set(&name, old)));
                changes.push(Change::Create(txt_set(&name, new)));
            }
            (Some(old), None) => changes.push(Change::Delete(txt_set(&name, old))),
            (None, Some(new)) => changes.push(Change::Create(txt_set(&name, new))),
            (None, None) => return Ok(self.read_txt(&zone, &name).await?.is_none()),
        }
        match self.change_records(&zone, &name, changes).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == Some(FailureKind::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
        let (zone, fqdn) = Self::zone_and_fqdn(zone, fqdn, "delete record")?;
        let listing = self.list_records(&zone).await?;
        match holder(&listing, &cluster.name, &fqdn) {
            Holder::Nobody => Ok(()),
            Holder::Other(owner) => Err(Error::NotOwned {
                fqdn,
                cluster: cluster.name.clone(),
                owner,
            }),
            Holder::Us => {
                let mut changes = Vec::new();
                if let Some(r) = listing.address(&fqdn) {
                    changes.push(Change::Delete(r.clone()));
                }
                if let Some(t) = listing.txt(&ownership_name(&fqdn)) {
                    changes.push(Change::Delete(t.clone()));
                }
                self.change_records(&zone, &fqdn, changes).await?;
                Ok(())
            }
        }
    }
}
