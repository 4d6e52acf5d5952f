//! The nodes' subnetwork and its address range, for NO_PROXY
//! ([`triad_core::provider::NodeProvider::network_cidrs`]).

use google_cloud_compute_v1::model::{metadata, Instance, Subnetwork};
use triad_core::error::{Error, Result};
use triad_core::spec::ClusterRef;

use crate::client::short;
use crate::error::{self, Failure};
use crate::GceProvider;

/// The instance metadata item that records the node network's ranges a node was
/// made with, so a rerun takes them from the node list it reads anyway.
const NETWORK_ITEM: &str = "triad-network-cidrs";

/// The [`NETWORK_ITEM`] of a new instance.
pub(crate) fn network_item(cidrs: &[String]) -> metadata::Items {
    let mut item = metadata::Items::default();
    item.key = Some(NETWORK_ITEM.into());
    item.value = Some(cidrs.join(","));
    item
}

/// The ranges every one of `nodes` records, when they all record the same ones
/// (and are on `subnetwork`, when one is configured).
fn recorded(nodes: &[Instance], subnetwork: Option<&str>) -> Option<Vec<String>> {
    let mut seen: Option<&str> = None;
    for i in nodes {
        let nic = i.network_interfaces.first()?;
        if subnetwork.is_some_and(|s| nic.subnetwork.as_deref().map(short) != Some(short(s))) {
            return None;
        }
        let value = i
            .metadata
            .as_ref()?
            .items
            .iter()
            .find(|m| m.key.as_deref() == Some(NETWORK_ITEM))?
            .value
            .as_deref()?;
        if seen.is_some_and(|s| s != value) {
            return None;
        }
        seen = Some(value);
    }
    let cidrs: Vec<String> = seen?
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    (!cidrs.is_empty()).then_some(cidrs)
}

/// `(project, region, name)` of a subnetwork given as a name or a (partial)
/// self-link; what the link leaves out is the provider's project and the cluster's
/// region.
fn subnetwork_at<'a>(
    given: &'a str,
    project: &'a str,
    region: &'a str,
) -> (&'a str, &'a str, &'a str) {
    (
        segment(given, "projects/").unwrap_or(project),
        segment(given, "regions/").unwrap_or(region),
        short(given),
    )
}

/// The path segment after `key` in a (partial) self-link.
fn segment<'a>(link: &'a str, key: &str) -> Option<&'a str> {
    link.split(key)
        .nth(1)
        .and_then(|rest| rest.split('/').next())
}

/// `(project, projects/<p>/global/networks/<n>)` of a network given as a name or
/// self-link.
fn network_path<'a>(given: &'a str, project: &'a str) -> (&'a str, String) {
    let project = segment(given, "projects/").unwrap_or(project);
    let path = format!("projects/{project}/global/networks/{}", short(given));
    (project, path)
}

impl GceProvider {
    /// The primary range of the nodes' subnetwork in the cluster's region: `[gce]
    /// subnetwork` when set, else the network's subnetwork(s) in the region (an
    /// auto-mode network has one per region). No read of its own when the
    /// cluster's nodes record it (the node list is the one node discovery reads,
    /// shared), else one read per region for the life of the provider: a
    /// subnetwork's primary range does not move under a cluster.
    pub(crate) async fn subnetwork_cidrs(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        if let Some(found) = self.lock_cidrs().get(&cluster.region) {
            return Ok(found.clone());
        }
        let nodes = self.list_nodes(cluster).await?;
        let cidrs = match recorded(&nodes, self.settings.subnetwork.as_deref()) {
            Some(cidrs) => cidrs,
            None => self
                .subnetworks_of(cluster)
                .await?
                .into_iter()
                .filter_map(|s| s.ip_cidr_range)
                .collect(),
        };
        self.lock_cidrs()
            .insert(cluster.region.clone(), cidrs.clone());
        Ok(cidrs)
    }

    fn lock_cidrs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<String>>> {
        self.cidrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The nodes' subnetwork in the cluster's region (`[gce] subnetwork`, else the
    /// network's first one there): where an address only the nodes dial is
    /// reserved.
    pub(crate) async fn node_subnetwork(&self, cluster: &ClusterRef) -> Result<Subnetwork> {
        self.subnetworks_of(cluster)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::invalid(
                    "gce.subnetwork",
                    format!(
                        "network `{}` has no subnetwork in region `{}`",
                        self.settings.network, cluster.region
                    ),
                    "name a subnetwork of the nodes' network in the cluster's region",
                )
            })
    }

    async fn subnetworks_of(&self, cluster: &ClusterRef) -> Result<Vec<Subnetwork>> {
        let project = &self.settings.project;
        if let Some(given) = &self.settings.subnetwork {
            let (p, region, name) = subnetwork_at(given, project, &cluster.region);
            let got = self
                .clients
                .subnetworks
                .get()
                .set_project(p)
                .set_region(region);
            return match got.set_subnetwork(name).send().await {
                Ok(s) => Ok(vec![s]),
                Err(e) if Failure::of(&e).is_not_found() => Err(Error::invalid(
                    "gce.subnetwork",
                    format!(
                        "subnetwork `{name}` does not exist in region `{region}` of project `{p}`"
                    ),
                    "name a subnetwork of the network in the cluster's region \
                     (gcloud compute networks subnets list)",
                )),
                Err(e) => Err(error::sdk(
                    "get subnetwork",
                    &format!("subnetwork {name}"),
                    &e,
                )),
            };
        }
        // No filter on `network`: the server matches it as a whole URL, whose host
        // differs between endpoints; the region holds few subnetworks.
        let (p, network) = network_path(&self.settings.network, project);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let list = self.clients.subnetworks.list().set_project(p);
            let page = list
                .set_region(&cluster.region)
                .set_or_clear_page_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    error::sdk(
                        "list subnetworks",
                        &format!("region {}", cluster.region),
                        &e,
                    )
                })?;
            out.extend(page.items.into_iter().filter(|s| {
                s.network
                    .as_deref()
                    .is_some_and(|n| n.ends_with(&format!("/{network}")) || n == network)
            }));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnetwork_by_name_or_link() {
        assert_eq!(subnetwork_at("nodes", "p", "r"), ("p", "r", "nodes"));
        assert_eq!(
            subnetwork_at("projects/host/regions/europe-west1/subnetworks/s", "p", "r"),
            ("host", "europe-west1", "s")
        );
        assert_eq!(
            subnetwork_at("regions/us-east1/subnetworks/s", "p", "r"),
            ("p", "us-east1", "s")
        );
    }

    #[test]
    fn a_network_by_name_or_link() {
        assert_eq!(
            network_path("default", "p"),
            ("p", "projects/p/global/networks/default".to_owned())
        );
        assert_eq!(
            network_path(
                "https://www.googleapis.com/compute/v1/projects/host/global/networks/vpc",
                "p"
            ),
            ("host", "projects/host/global/networks/vpc".to_owned())
        );
    }
}
