//! Deleting a balancer's parts, dependents first: one balancer by name (the old one
//! of a mode change), or every balancer of the cluster and its instance groups.

use std::collections::BTreeSet;

use google_cloud_compute_v1::model::{
    Address, BackendService, Firewall, ForwardingRule, HealthCheck, InstanceGroup, SslPolicy,
    TargetHttpProxy, TargetHttpsProxy, UrlMap,
};
use triad_core::error::Result;
use triad_core::spec::ClusterRef;

use super::{balancer_names, Names, REGISTRATION_PORTS};
use crate::client::Scope;
use crate::GceProvider;

impl GceProvider {
    /// Delete every part of balancer `name` (either form) that is the cluster's,
    /// dependents first, its address last; the instance groups stay (the cluster's
    /// other balancer serves them). Returns what it deleted. Safe to call again.
    pub(crate) async fn delete_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        let n = Names::new(&cluster.name, name);
        let c = &cluster.name;
        let (r, g) = (&Scope::Region(cluster.region.clone()), &Scope::Global);
        // The other balancer, if any, carries a mark until this one is gone.
        self.mark_retiring(cluster, name, true).await?;
        let mut done = Vec::new();
        // The registration ports' rules, backend services and TCP checks (external in
        // l4, internal in l7).
        for port in REGISTRATION_PORTS {
            let reg = n.registration(port);
            done.push(self.remove::<ForwardingRule>(c, r, &reg.rule).await?);
            done.push(
                self.remove::<BackendService>(c, r, &reg.backend_service)
                    .await?,
            );
            done.push(self.remove::<HealthCheck>(c, r, &reg.health_check).await?);
        }
        done.extend([
            // Forwarding rules, then proxies and the SSL policy they used, URL maps.
            self.remove::<ForwardingRule>(c, r, &n.l4_rule).await?,
            self.remove::<ForwardingRule>(c, g, &n.https_rule).await?,
            self.remove::<ForwardingRule>(c, g, &n.http_rule).await?,
            self.remove::<TargetHttpsProxy>(c, g, &n.https_proxy)
                .await?,
            self.remove::<SslPolicy>(c, g, &n.ssl_policy).await?,
            self.remove::<TargetHttpProxy>(c, g, &n.http_proxy).await?,
            self.remove::<UrlMap>(c, g, &n.url_map).await?,
            self.remove::<UrlMap>(c, g, &n.redirect_map).await?,
            // Backend services, health checks, the passthrough rule's firewall rule.
            self.remove::<BackendService>(c, r, &n.backend_service)
                .await?,
            self.remove::<BackendService>(c, g, &n.backend_service)
                .await?,
            self.remove::<HealthCheck>(c, r, &n.health_check).await?,
            self.remove::<HealthCheck>(c, g, &n.health_check).await?,
            self.remove::<Firewall>(c, g, &n.web_rule).await?,
            self.remove::<Firewall>(c, g, &n.internal).await?,
            // Addresses last: the forwarding rules used them, and discovery finds a
            // half-deleted balancer by its address (the internal one of l7's
            // registration ports before it).
            self.remove::<Address>(c, r, &n.internal).await?,
            self.remove::<Address>(c, r, &n.address).await?,
            self.remove::<Address>(c, g, &n.address).await?,
        ]);
        self.mark_retiring(cluster, name, false).await?;
        Ok(done.into_iter().flatten().collect())
    }

    /// Delete every balancer of the cluster (both names, and any other one
    /// discovery finds), then its instance groups; returns what it deleted.
    pub(crate) async fn delete_lb(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let mut names: BTreeSet<String> = balancer_names(&cluster.name).into_iter().collect();
        names.extend(
            self.discover_all(cluster)
                .await?
                .into_iter()
                .map(|lb| lb.name),
        );
        let mut done = Vec::new();
        for name in &names {
            done.extend(self.delete_named(cluster, name).await?);
        }
        // Instance groups, one per zone.
        let c = &cluster.name;
        let n = Names::new(c, c);
        for zone in self.node_zones(cluster).await? {
            let at = Scope::Zone(zone.clone());
            done.extend(
                self.remove::<InstanceGroup>(c, &at, &n.group(&zone))
                    .await?,
            );
        }
        Ok(done)
    }
}
