//! Cloud DNS: the A (or CNAME) record and its ownership TXT, written together in
//! one atomic change and waited on until the change is `done`.

use std::time::Duration;

use google_cloud_dns_v1::model::{Change, ManagedZone, ResourceRecordSet};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Endpoint, Record, RecordKind, RecordRequest};
use triad_core::provider::{ownership_name, ownership_txt, parse_ownership, parse_ownership_id};
use triad_core::spec::ClusterRef;

use crate::error::{self, own, Failure};
use crate::GceProvider;

fn dotted(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

fn rtype(r: &ResourceRecordSet) -> &str {
    r.r#type.as_deref().unwrap_or("")
}

/// What the name holds: the A or CNAME record set and the ownership TXT set.
#[derive(Default)]
struct AtName {
    main: Option<ResourceRecordSet>,
    txt: Option<ResourceRecordSet>,
}

impl AtName {
    fn owner(&self) -> Option<String> {
        self.txt
            .as_ref()?
            .rrdatas
            .iter()
            .find_map(|v| parse_ownership(v))
    }

    fn owner_id(&self) -> Option<String> {
        owner_id(self.txt.as_ref()?)
    }
}

fn owner_id(txt: &ResourceRecordSet) -> Option<String> {
    txt.rrdatas.iter().find_map(|v| parse_ownership_id(v))
}

/// The TTL of the lock TXT record.
const LOCK_TTL: u32 = 60;

fn to_record(zone: &str, main: &ResourceRecordSet, owner: Option<String>) -> Option<Record> {
    let fqdn = main.name.as_deref()?.trim_end_matches('.').to_owned();
    let ttl = main.ttl.and_then(|t| u32::try_from(t).ok());
    let (kind, target) = match rtype(main) {
        "A" => (
            RecordKind::A,
            Endpoint::Ip {
                addresses: main.rrdatas.iter().filter_map(|v| v.parse().ok()).collect(),
            },
        ),
        "CNAME" => (
            RecordKind::Cname,
            Endpoint::Hostname {
                name: main.rrdatas.first()?.trim_end_matches('.').to_owned(),
                alias_zone: None,
            },
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

fn rrset(name: &str, kind: &str, ttl: u32, rrdatas: Vec<String>) -> ResourceRecordSet {
    let mut r = ResourceRecordSet::default();
    r.name = Some(dotted(name));
    r.r#type = Some(kind.to_owned());
    r.ttl = Some(i32::try_from(ttl).unwrap_or(i32::MAX));
    r.rrdatas = rrdatas;
    r
}

/// The record sets a request asks for: the record and its ownership TXT.
fn desired(
    cluster: &ClusterRef,
    req: &RecordRequest,
) -> Result<(ResourceRecordSet, ResourceRecordSet)> {
    let main = match (&req.kind, &req.target) {
        (RecordKind::A, Endpoint::Ip { addresses }) => rrset(
            &req.fqdn,
            "A",
            req.ttl,
            addresses.iter().map(ToString::to_string).collect(),
        ),
        (RecordKind::Cname, Endpoint::Hostname { name, .. }) => {
            rrset(&req.fqdn, "CNAME", req.ttl, vec![dotted(name)])
        }
        _ => {
            return Err(own(
                "write record",
                &format!("DNS record {}", req.fqdn),
                FailureKind::InvalidRequest,
                format!(
                    "Cloud DNS cannot write a {} record to {}; it has A and CNAME records only",
                    req.kind, req.target
                ),
            ))
        }
    };
    let txt = rrset(
        &ownership_name(&req.fqdn),
        "TXT",
        req.ttl,
        vec![format!("\"{}\"", ownership_txt(cluster, req.kind))],
    );
    Ok((main, txt))
}

fn same(a: &ResourceRecordSet, b: &ResourceRecordSet) -> bool {
    a.name == b.name && a.r#type == b.r#type && a.ttl == b.ttl && a.rrdatas == b.rrdatas
}

/// A record set as sent in a change (only the fields a change carries).
fn bare(r: &ResourceRecordSet) -> ResourceRecordSet {
    let mut b = ResourceRecordSet::default();
    b.name = r.name.clone();
    b.r#type = r.r#type.clone();
    b.ttl = r.ttl;
    b.rrdatas = r.rrdatas.clone();
    b
}

impl GceProvider {
    /// The managed zone serving `zone` (a DNS name such as `example.com`).
    async fn managed_zone(&self, zone: &str) -> Result<String> {
        let key = dotted(zone);
        if let Some(z) = self
            .zone_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(z.clone());
        }
        self.zone_reads
            .share(&key, || self.find_managed_zone(key.clone()))
            .await
    }

    async fn find_managed_zone(&self, key: String) -> Result<String> {
        let p = &self.settings.project;
        let found: ManagedZone = if let Some(name) = &self.settings.managed_zone {
            let z = self
                .clients
                .managed_zones
                .get()
                .set_project(p)
                .set_managed_zone(name)
                .send()
                .await
                .map_err(|e| {
                    if Failure::of(&e).is_not_found() {
                        Error::invalid(
                            "gce.managed_zone",
                            format!("managed zone `{name}` does not exist in project `{p}`"),
                            "name an existing zone (gcloud dns managed-zones list)",
                        )
                    } else {
                        error::sdk("get managed zone", name, &e)
                    }
                })?;
            if z.dns_name.as_deref().map(dotted) != Some(key.clone()) {
                return Err(Error::invalid(
                    "gce.managed_zone",
                    format!(
                        "managed zone `{name}` serves `{}`, not `{key}`",
                        z.dns_name.as_deref().unwrap_or("")
                    ),
                    "name the managed zone of dns.zone, or fix dns.zone",
                ));
            }
            z
        } else {
            let list = self
                .clients
                .managed_zones
                .list()
                .set_project(p)
                .set_dns_name(&key)
                .send()
                .await
                .map_err(|e| error::sdk("list managed zones", &key, &e))?;
            let mut zones: Vec<ManagedZone> = list
                .managed_zones
                .into_iter()
                .filter(|z| z.dns_name.as_deref().map(dotted) == Some(key.clone()))
                .collect();
            // A public zone before private ones of the same name.
            zones.sort_by_key(|z| {
                z.visibility
                    .as_ref()
                    .and_then(|v| v.name())
                    .map(|v| v != "public")
                    .unwrap_or(false)
            });
            zones.into_iter().next().ok_or_else(|| {
                Error::invalid(
                    "dns.zone",
                    format!("no Cloud DNS managed zone of project `{p}` serves `{key}`"),
                    "create the zone (gcloud dns managed-zones create) or set gce.managed_zone",
                )
            })?
        };
        let name = found.name.unwrap_or_default();
        self.zone_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, name.clone());
        Ok(name)
    }

    async fn list_rrsets(&self, mz: &str, name: Option<&str>) -> Result<Vec<ResourceRecordSet>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .clients
                .rrsets
                .list()
                .set_project(&self.settings.project)
                .set_managed_zone(mz)
                .set_or_clear_name(name.map(dotted))
                .set_or_clear_page_token(token.clone())
                .send()
                .await
                .map_err(|e| error::sdk("list records", &format!("managed zone {mz}"), &e))?;
            out.extend(page.rrsets);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    async fn at_name(&self, mz: &str, fqdn: &str) -> Result<AtName> {
        let main = self
            .list_rrsets(mz, Some(fqdn))
            .await?
            .into_iter()
            .find(|r| matches!(rtype(r), "A" | "CNAME"));
        let txt = self
            .list_rrsets(mz, Some(&ownership_name(fqdn)))
            .await?
            .into_iter()
            .find(|r| rtype(r) == "TXT");
        Ok(AtName { main, txt })
    }

    /// Every record set of the managed zone serving `zone`, read once for
    /// concurrent callers (the plan's lookup and owned records). The managed zone's
    /// lookup is inside the shared read: were it outside, the first caller could
    /// finish its record read before the second is done waiting for the zone.
    async fn zone_records(&self, zone: &str) -> Result<Vec<ResourceRecordSet>> {
        self.record_reads
            .share(&dotted(zone), || async {
                let mz = self.managed_zone(zone).await?;
                self.list_rrsets(&mz, None).await
            })
            .await
    }

    pub(crate) async fn dns_lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
        let all = self.zone_records(zone).await?;
        let (name, txt) = (dotted(fqdn), dotted(&ownership_name(fqdn)));
        let at = AtName {
            main: all
                .iter()
                .find(|r| r.name.as_deref() == Some(&name) && matches!(rtype(r), "A" | "CNAME"))
                .cloned(),
            txt: all
                .iter()
                .find(|r| r.name.as_deref() == Some(&txt) && rtype(r) == "TXT")
                .cloned(),
        };
        let owner = at.owner();
        let id = at.owner_id();
        Ok(at
            .main
            .as_ref()
            .and_then(|m| to_record(zone, m, owner))
            .map(|r| Record { owner_id: id, ..r }))
    }

    pub(crate) async fn dns_owned(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let all = self.zone_records(zone).await?;
        let mut out = Vec::new();
        for txt in all.iter().filter(|r| rtype(r) == "TXT") {
            let Some(name) = txt.name.as_deref() else {
                continue;
            };
            let Some(fqdn) = name.strip_prefix("_triad.") else {
                continue;
            };
            if txt
                .rrdatas
                .iter()
                .find_map(|v| parse_ownership(v))
                .as_deref()
                != Some(&cluster.name)
            {
                continue;
            }
            if let Some(main) = all
                .iter()
                .find(|r| r.name.as_deref() == Some(fqdn) && matches!(rtype(r), "A" | "CNAME"))
            {
                out.extend(
                    to_record(zone, main, Some(cluster.name.clone())).map(|r| Record {
                        owner_id: owner_id(txt),
                        ..r
                    }),
                );
            }
        }
        Ok(out)
    }

    async fn apply_change(&self, mz: &str, fqdn: &str, change: Change) -> Result<()> {
        let what = format!("DNS record {fqdn}");
        let done = self
            .clients
            .changes
            .create()
            .set_project(&self.settings.project)
            .set_managed_zone(mz)
            .set_body(change)
            .send()
            .await
            .map_err(|e| error::sdk("change", &what, &e))?;
        let id = done.id.unwrap_or_default();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dotted(fqdn), (mz.to_owned(), id));
        Ok(())
    }

    pub(crate) async fn dns_upsert(
        &self,
        cluster: &ClusterRef,
        req: &RecordRequest,
    ) -> Result<Record> {
        let mz = self.managed_zone(&req.zone).await?;
        let (want_main, want_txt) = desired(cluster, req)?;
        let at = self.at_name(&mz, &req.fqdn).await?;
        let owner = at.owner();
        if (at.main.is_some() || owner.is_some()) && owner.as_deref() != Some(&cluster.name) {
            return Err(Error::NotOwned {
                fqdn: req.fqdn.clone(),
                cluster: cluster.name.clone(),
                owner: owner.unwrap_or_else(|| "no ownership record".into()),
            });
        }
        let mut change = Change::default();
        for (have, want) in [(&at.main, &want_main), (&at.txt, &want_txt)] {
            match have {
                Some(h) if same(h, want) => {}
                Some(h) => {
                    change.deletions.push(bare(h));
                    change.additions.push(want.clone());
                }
                None => change.additions.push(want.clone()),
            }
        }
        if !change.additions.is_empty() {
            self.apply_change(&mz, &req.fqdn, change).await?;
            tracing::info!(fqdn = %req.fqdn, "wrote DNS record");
        }
        to_record(&req.zone, &want_main, Some(cluster.name.clone()))
            .map(|r| Record {
                owner_id: cluster.id.clone(),
                ..r
            })
            .ok_or_else(|| {
                own(
                    "write record",
                    &req.fqdn,
                    FailureKind::Other,
                    "unreadable record",
                )
            })
    }

    pub(crate) async fn dns_read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
        let mz = self.managed_zone(zone).await?;
        Ok(self
            .list_rrsets(&mz, Some(name))
            .await?
            .into_iter()
            .find(|r| rtype(r) == "TXT")
            .map(|r| r.rrdatas.iter().map(|v| v.trim_matches('"')).collect()))
    }

    /// One Cloud DNS change: deletions must match the record set exactly (else HTTP
    /// 412 `conditionNotMet`, or 404), additions must not exist (else 409
    /// `alreadyExists`); the change applies whole or not at all.
    pub(crate) async fn dns_swap_txt(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        let mz = self.managed_zone(zone).await?;
        let set = |v: &str| rrset(name, "TXT", LOCK_TTL, vec![format!("\"{v}\"")]);
        let mut change = Change::default();
        change.deletions.extend(expected.map(set));
        change.additions.extend(new.map(set));
        if change.deletions.is_empty() && change.additions.is_empty() {
            return Ok(self.dns_read_txt(zone, name).await?.is_none());
        }
        let what = format!("TXT record {name}");
        match self
            .clients
            .changes
            .create()
            .set_project(&self.settings.project)
            .set_managed_zone(&mz)
            .set_body(change)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = error::sdk("change", &what, &e);
                match e.kind() {
                    Some(FailureKind::Conflict | FailureKind::NotFound) => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }

    pub(crate) async fn dns_wait(&self, fqdn: &str, timeout: Duration) -> Result<()> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&dotted(fqdn))
            .cloned();
        let Some((mz, id)) = pending else {
            return Ok(());
        };
        let resource = format!("DNS record {fqdn}");
        self.poll
            .until(timeout, &resource, "done", || async {
                let c = self
                    .clients
                    .changes
                    .get()
                    .set_project(&self.settings.project)
                    .set_managed_zone(&mz)
                    .set_change_id(&id)
                    .send()
                    .await
                    .map_err(|e| error::sdk("get change", &resource, &e))?;
                if c.status.as_ref().and_then(|s| s.name()) == Some("done") {
                    self.pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&dotted(fqdn));
                    return Ok(Some(()));
                }
                Ok(None)
            })
            .await
    }

    pub(crate) async fn dns_delete(
        &self,
        cluster: &ClusterRef,
        zone: &str,
        fqdn: &str,
    ) -> Result<()> {
        let mz = self.managed_zone(zone).await?;
        let at = self.at_name(&mz, fqdn).await?;
        if at.main.is_none() && at.txt.is_none() {
            return Ok(());
        }
        let owner = at.owner();
        if owner.as_deref() != Some(&cluster.name) {
            if at.main.is_none() {
                // Only somebody else's TXT (or a foreign one): nothing of ours is there.
                return Ok(());
            }
            return Err(Error::NotOwned {
                fqdn: fqdn.to_owned(),
                cluster: cluster.name.clone(),
                owner: owner.unwrap_or_else(|| "no ownership record".into()),
            });
        }
        let mut change = Change::default();
        change.deletions = [&at.main, &at.txt]
            .into_iter()
            .flatten()
            .map(bare)
            .collect();
        self.apply_change(&mz, fqdn, change).await?;
        tracing::info!(fqdn, "deleted DNS record");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn req(kind: RecordKind, target: Endpoint) -> RecordRequest {
        RecordRequest::new("rancher.example.com", "example.com", kind, target)
    }

    #[test]
    fn a_records_carry_an_ownership_txt() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let (main, txt) = desired(
            &ClusterRef::new("rancher", "europe-west1"),
            &req(
                RecordKind::A,
                Endpoint::Ip {
                    addresses: vec![ip],
                },
            ),
        )
        .unwrap();
        assert_eq!(main.name.as_deref(), Some("rancher.example.com."));
        assert_eq!(main.rrdatas, vec!["192.0.2.10"]);
        assert_eq!(txt.name.as_deref(), Some("_triad.rancher.example.com."));
        assert_eq!(
            txt.rrdatas,
            vec!["\"heritage=triad,triad-cluster=rancher,kind=a\""]
        );
        let at = AtName {
            main: Some(main.clone()),
            txt: Some(txt),
        };
        assert_eq!(at.owner().as_deref(), Some("rancher"));
        let r = to_record("example.com", &main, at.owner()).unwrap();
        assert_eq!(r.fqdn, "rancher.example.com");
        assert_eq!(r.ttl, Some(60));
        assert!(req(
            RecordKind::A,
            Endpoint::Ip {
                addresses: vec![ip]
            }
        )
        .is_satisfied_by(&r));
    }

    #[test]
    fn cnames_are_dotted_and_aliases_refused() {
        let target = Endpoint::Hostname {
            name: "lb.example.net".into(),
            alias_zone: None,
        };
        let (main, _) = desired(
            &ClusterRef::new("rancher", "europe-west1"),
            &req(RecordKind::Cname, target.clone()),
        )
        .unwrap();
        assert_eq!(main.rrdatas, vec!["lb.example.net."]);
        assert_eq!(
            to_record("example.com", &main, None).unwrap().target,
            target
        );
        let e = desired(
            &ClusterRef::new("rancher", "europe-west1"),
            &req(RecordKind::Alias, target),
        )
        .unwrap_err();
        assert_eq!(e.kind(), Some(FailureKind::InvalidRequest));
    }
}
