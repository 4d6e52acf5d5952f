//! Writing: the record with its ownership TXT, the lock's conditional TXT change,
//! and delete — each one RFC 2136 update whose prerequisites keep it off names that
//! are not ours.

use hickory_proto::op::ResponseCode;
use tracing::{debug, info};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Record, RecordKind, RecordRequest};
use triad_core::provider::{ownership_name, ownership_txt};
use triad_core::spec::ClusterRef;

use crate::records::{normalize, not_owned, same_target, to_record};
use crate::{wire, Rfc2136Provider};

impl Rfc2136Provider {
    /// Write the record and its ownership TXT in one update, with prerequisites
    /// that make the server refuse it when the name changed since it was read. A
    /// record that differs only in TTL is rewritten in place, the same way.
    pub(crate) async fn write_record(
        &self,
        cluster: &ClusterRef,
        request: &RecordRequest,
    ) -> Result<Record> {
        let zone = self.zone_for(&request.zone).to_owned();
        let fqdn = normalize(&request.fqdn);
        let action = "write";
        let resource = format!("record {fqdn}");
        if request.kind == RecordKind::Alias {
            return Err(self.err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                "RFC 2136 has no alias records; use an A record or a CNAME",
            ));
        }
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;
        let name = wire::name(&fqdn)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        if !zname.zone_of(&name) {
            return Err(self.err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                format!("{fqdn} is not inside zone {zone}"),
            ));
        }
        let txt_name = wire::name(&ownership_name(&fqdn))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let state = self.read(&client, &zone, &name, &txt_name, action).await?;
        let owners = state.owners();
        let current = to_record(&zone, &fqdn, &state);
        let foreign_txt = !state.txt.is_empty() && !owners.contains(&cluster.name);
        if foreign_txt || (current.is_some() && !owners.contains(&cluster.name)) {
            return Err(not_owned(cluster, &fqdn, &owners, current.map(|r| r.kind)));
        }

        let value = ownership_txt(cluster, request.kind);
        let want = Record {
            fqdn: fqdn.clone(),
            zone: normalize(&zone),
            kind: request.kind,
            target: request.target.clone(),
            ttl: Some(request.ttl),
            owner: Some(cluster.name.clone()),
            owner_id: cluster.id.clone(),
        };
        let txt_is_exact = state.txt.len() == 1
            && wire::txt_text(&state.txt[0]).as_deref() == Some(value.as_str())
            && state.txt[0].ttl() == request.ttl;
        if let Some(cur) = &current {
            if cur.kind == request.kind
                && same_target(&cur.target, &request.target)
                && cur.ttl == Some(request.ttl)
                && state.records.iter().all(|r| r.ttl() == request.ttl)
                && txt_is_exact
            {
                debug!(fqdn, "record already as requested");
                self.note_written(
                    &fqdn,
                    Some((request.kind, request.target.clone(), request.ttl)),
                );
                return Ok(want);
            }
        }

        let records = wire::target_records(&name, &request.target, request.ttl)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let message = wire::upsert(
            &zname,
            &name,
            &txt_name,
            &state.txt,
            &records,
            &value,
            request.ttl,
        );
        let resp = self.exchange(&client, message, action, &resource).await?;
        match resp.response_code() {
            ResponseCode::NoError => {
                info!(fqdn, kind = %request.kind, target = %request.target, "record written");
                self.note_written(
                    &fqdn,
                    Some((request.kind, request.target.clone(), request.ttl)),
                );
                Ok(want)
            }
            rcode @ (ResponseCode::YXDomain | ResponseCode::YXRRSet | ResponseCode::NXRRSet) => {
                // A prerequisite failed: somebody changed the name. Say who holds it now.
                let again = self.read(&client, &zone, &name, &txt_name, action).await?;
                let owners = again.owners();
                if !owners.contains(&cluster.name)
                    && (!again.txt.is_empty() || !again.records.is_empty())
                {
                    let kind = to_record(&zone, &fqdn, &again).map(|r| r.kind);
                    if again.records.is_empty() && again.txt.is_empty() {
                        return Err(self.rcode_err(action, &resource, &zone, rcode));
                    }
                    return Err(not_owned(cluster, &fqdn, &owners, kind));
                }
                if request.kind == RecordKind::Cname && again.txt.is_empty() {
                    return Err(Error::NotOwned {
                        fqdn: fqdn.clone(),
                        cluster: cluster.name.clone(),
                        owner: "other records at the name, which a CNAME cannot share".into(),
                    });
                }
                Err(self.rcode_err(action, &resource, &zone, rcode))
            }
            rcode => Err(self.rcode_err(action, &resource, &zone, rcode)),
        }
    }

    /// Change the TXT at `name` from exactly `expected` to `new` atomically (the
    /// lock); `false` when it was not `expected`.
    pub(crate) async fn swap(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        let zone = self.zone_for(zone).to_owned();
        let (action, resource) = ("change", format!("TXT record {name}"));
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;
        let owner = wire::name(&normalize(name))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let message = wire::swap_txt(&zname, &owner, expected, new);
        let resp = self.exchange(&client, message, action, &resource).await?;
        match resp.response_code() {
            ResponseCode::NoError => Ok(true),
            // A prerequisite failed: the TXT is not what the caller expected.
            ResponseCode::YXRRSet | ResponseCode::NXRRSet | ResponseCode::YXDomain => Ok(false),
            rcode => Err(self.rcode_err(action, &resource, &zone, rcode)),
        }
    }

    /// Delete the record and its ownership TXT, if ours.
    pub(crate) async fn remove_record(
        &self,
        cluster: &ClusterRef,
        zone: &str,
        fqdn: &str,
    ) -> Result<()> {
        let zone = self.zone_for(zone).to_owned();
        let fqdn = normalize(fqdn);
        let action = "delete";
        let resource = format!("record {fqdn}");
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;
        let name = wire::name(&fqdn)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let txt_name = wire::name(&ownership_name(&fqdn))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let state = self.read(&client, &zone, &name, &txt_name, action).await?;
        let owners = state.owners();
        if state.txt.is_empty() && state.records.is_empty() {
            self.note_written(&fqdn, None);
            return Ok(());
        }
        if !owners.contains(&cluster.name) {
            let kind = to_record(&zone, &fqdn, &state).map(|r| r.kind);
            return Err(not_owned(cluster, &fqdn, &owners, kind));
        }
        let resp = self
            .exchange(
                &client,
                wire::delete(&zname, &name, &txt_name, &state.txt),
                action,
                &resource,
            )
            .await?;
        match resp.response_code() {
            ResponseCode::NoError => {
                info!(fqdn, "record deleted");
                self.note_written(&fqdn, None);
                Ok(())
            }
            rcode => Err(self.rcode_err(action, &resource, &zone, rcode)),
        }
    }
}
