//! Destroy: everything carrying the cluster's labels, in reverse dependency order.

use futures::future::join_all;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::events::Resource;
use crate::identity;
use crate::provider::{DnsProvider, LoadBalancerProvider, NodeProvider};
use crate::spec::ClusterRef;

use super::Orchestrator;

/// What [`Orchestrator::destroy`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DestroyReport {
    /// Every resource deleted, described.
    pub deleted: Vec<String>,
}

impl Orchestrator {
    /// Delete everything carrying the cluster's labels, in reverse dependency order:
    /// the DNS records it owns (in its zone and wherever its labels say the record
    /// lived), then the balancer and the nodes, then cluster-wide plumbing, holding
    /// the cluster's lock. It stops before it would orphan something: if a record
    /// cannot be deleted, the balancer and nodes stay (a record must never point at a
    /// released address), and [`Error::Destroy`] lists what was removed and what
    /// remains. Resources of another cluster with the same name (another cluster id)
    /// are refused ([`Error::Identity`]) before anything is deleted.
    pub async fn destroy(&self, cluster: &ClusterRef) -> Result<DestroyReport> {
        let lease = self.lock(cluster).await?;
        let result = self.destroy_inner(cluster).await;
        let released = self.unlock(lease).await;
        let report = result?;
        released?;
        Ok(report)
    }

    async fn destroy_inner(&self, cluster: &ClusterRef) -> Result<DestroyReport> {
        let (nodes, lb) = tokio::try_join!(
            self.nodes.discover_nodes(cluster),
            self.lb.discover_load_balancer(cluster),
        )?;
        let mut records = match &cluster.dns_zone {
            Some(zone) => self.dns.owned_records(cluster, zone).await?,
            None => Vec::new(),
        };
        records.extend(
            self.owned_in_label_zones(
                cluster,
                cluster.dns_zone.as_deref().unwrap_or_default(),
                &nodes,
                lb.as_ref(),
            )
            .await?,
        );
        identity::check(
            cluster,
            &nodes,
            lb.as_ref(),
            &records.iter().collect::<Vec<_>>(),
        )?;

        let mut deleted = Vec::new();
        let mut failures: Vec<(String, Error)> = Vec::new();
        let mut remaining: Vec<String> = Vec::new();
        for r in &records {
            let what = format!("DNS {} record {} in {}", r.kind, r.fqdn, r.zone);
            match self
                .step(
                    Resource::Record(r.fqdn.clone()),
                    "deleting",
                    self.dns.delete_record(cluster, &r.zone, &r.fqdn),
                )
                .await
            {
                Ok(()) => deleted.push(what),
                Err(e) => {
                    remaining.push(what.clone());
                    failures.push((what, e))
                }
            }
        }
        if !failures.is_empty() {
            remaining.extend(
                lb.iter()
                    .map(|l| format!("load balancer {} ({})", l.name, l.id)),
            );
            remaining.extend(nodes.iter().map(|n| format!("node {} ({})", n.name, n.id)));
            remaining.push(format!("network plumbing of {}", cluster.name));
            return Err(Error::Destroy {
                failures,
                deleted,
                remaining,
            });
        }

        let lb_resource = Resource::LoadBalancer(cluster.name.clone());
        let lb_delete = self.step(
            lb_resource,
            "deleting",
            self.lb.delete_load_balancer(cluster),
        );
        let nodes_delete = join_all(nodes.iter().map(|n| async move {
            let r = self
                .step(
                    Resource::Node(n.name.clone()),
                    "deleting",
                    self.nodes.delete_node(cluster, n),
                )
                .await;
            (format!("node {} ({})", n.name, n.id), r)
        }));
        let (lb_result, nodes_result) = tokio::join!(lb_delete, nodes_delete);
        match lb_result {
            Ok(parts) => deleted.extend(parts),
            Err(e) => {
                let what = format!("load balancer {}", cluster.name);
                remaining.push(what.clone());
                failures.push((what, e))
            }
        }
        let mut nodes_ok = true;
        for (what, r) in nodes_result {
            match r {
                Ok(()) => deleted.push(what),
                Err(e) => {
                    nodes_ok = false;
                    remaining.push(what.clone());
                    failures.push((what, e))
                }
            }
        }
        let network = format!("network plumbing of {}", cluster.name);
        if nodes_ok {
            match self
                .step(
                    Resource::Network(cluster.name.clone()),
                    "deleting",
                    self.nodes.cleanup(cluster),
                )
                .await
            {
                Ok(parts) => deleted.extend(parts),
                Err(e) => {
                    remaining.push(network.clone());
                    failures.push((network, e))
                }
            }
        } else {
            remaining.push(network);
        }

        if failures.is_empty() {
            Ok(DestroyReport { deleted })
        } else {
            Err(Error::Destroy {
                failures,
                deleted,
                remaining,
            })
        }
    }
}
