//! Finding the cluster's records: a signed zone transfer (AXFR), or the names triad
//! knows when the server refuses one.

use std::collections::BTreeMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record as DnsRecord, RecordType};
use tracing::debug;
use triad_core::error::{FailureKind, Result};
use triad_core::model::Record;
use triad_core::provider::{ownership_name, parse_ownership};
use triad_core::spec::ClusterRef;

use crate::records::{display, normalize, owned_or_orphan};
use crate::settings::OwnedRecords;
use crate::{wire, Rfc2136Provider};

impl Rfc2136Provider {
    /// The cluster's records in `zone`: by zone transfer, or by querying the names
    /// it knows when the server refuses the transfer.
    pub(crate) async fn list_owned(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let zone = self.zone_for(zone).to_owned();
        let action = "list owned records";
        let resource = format!("zone {zone}");
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;

        let mut by_name: BTreeMap<String, Vec<DnsRecord>> = BTreeMap::new();
        let mut transferred = false;
        if self.settings.owned_records == OwnedRecords::Axfr {
            match self
                .exchange(&client, wire::axfr(&zname), action, &resource)
                .await
            {
                Ok(resp) if resp.response_code() == ResponseCode::NoError => {
                    transferred = true;
                    // One message is enough for triad-sized zones over TCP (64 KiB);
                    // records past it would be missed, so check the closing SOA.
                    let soas = resp
                        .answers()
                        .iter()
                        .filter(|r| r.record_type() == RecordType::SOA)
                        .count();
                    if soas < 2 {
                        debug!(
                            zone,
                            "AXFR spans several messages; querying known names instead"
                        );
                        transferred = false;
                    } else {
                        for r in resp.answers() {
                            by_name
                                .entry(display(r.name()))
                                .or_default()
                                .push(r.clone());
                        }
                    }
                }
                Ok(resp) => {
                    debug!(zone, rcode = %resp.response_code(), "zone transfer refused; querying known names");
                }
                Err(e) if e.kind() == Some(FailureKind::Permission) => return Err(e),
                Err(e) => {
                    debug!(zone, error = %e, "zone transfer failed; querying known names");
                }
            }
        }

        let mut out = Vec::new();
        if transferred {
            for (name, recs) in &by_name {
                let Some(fqdn) = name.strip_prefix("_triad.") else {
                    continue;
                };
                let owners: Vec<String> = recs
                    .iter()
                    .filter_map(wire::txt_text)
                    .filter_map(|t| parse_ownership(&t))
                    .collect();
                if !owners.contains(&cluster.name) {
                    continue;
                }
                let at: Vec<DnsRecord> = by_name
                    .get(fqdn)
                    .map(|v| {
                        v.iter()
                            .filter(|r| wire::RECORD_TYPES.contains(&r.record_type()))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(owned_or_orphan(&zone, fqdn, &at, recs, &cluster.name));
            }
        } else {
            for fqdn in &self.settings.names {
                let fqdn = normalize(fqdn);
                let name = wire::name(&fqdn)
                    .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
                if !zname.zone_of(&name) {
                    continue;
                }
                let txt_name = wire::name(&ownership_name(&fqdn))
                    .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
                let state = self.read(&client, &zone, &name, &txt_name, action).await?;
                if state.owners().contains(&cluster.name) {
                    out.push(owned_or_orphan(
                        &zone,
                        &fqdn,
                        &state.records,
                        &state.txt,
                        &cluster.name,
                    ));
                }
            }
        }
        Ok(out)
    }
}
