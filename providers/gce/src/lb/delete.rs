//! Deleting every part of either form of the balancer, dependents first.

use google_cloud_compute_v1::model::{
    Address, BackendService, ForwardingRule, HealthCheck, InstanceGroup, SslPolicy,
    TargetHttpProxy, TargetHttpsProxy, UrlMap,
};
use triad_core::error::Result;
use triad_core::spec::ClusterRef;

use super::Names;
use crate::client::Scope;
use crate::GceProvider;

impl GceProvider {
    /// Delete every part of either form of the balancer that is the cluster's,
    /// dependents first; returns what it deleted.
    pub(crate) async fn delete_lb(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let n = Names::new(&cluster.name);
        let c = &cluster.name;
        let (r, g) = (&Scope::Region(cluster.region.clone()), &Scope::Global);
        let done = vec![
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
            // Backend services, health checks.
            self.remove::<BackendService>(c, r, &n.backend_service)
                .await?,
            self.remove::<BackendService>(c, g, &n.backend_service)
                .await?,
            self.remove::<HealthCheck>(c, r, &n.health_check).await?,
            self.remove::<HealthCheck>(c, g, &n.health_check).await?,
        ];
        let mut done: Vec<String> = done.into_iter().flatten().collect();
        // Instance groups, one per zone.
        for zone in self.node_zones(cluster).await? {
            let at = Scope::Zone(zone.clone());
            done.extend(
                self.remove::<InstanceGroup>(c, &at, &n.group(&zone))
                    .await?,
            );
        }
        // Addresses last: the forwarding rules used them.
        done.extend(self.remove::<Address>(c, r, &n.address).await?);
        done.extend(self.remove::<Address>(c, g, &n.address).await?);
        Ok(done)
    }
}
