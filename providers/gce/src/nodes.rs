//! Instances: discovery (one aggregated list), create, wait, update in place, delete.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use google_cloud_compute_v1::model::{
    instance, metadata, AttachedDisk, AttachedDiskInitializeParams, Instance,
    InstancesSetLabelsRequest, Metadata, NetworkInterface, ServiceAccount, Tags,
};
use triad_core::drift::{self, Attribute};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::model::{Node, NodeRequest, NodeState};
use triad_core::spec::ClusterRef;

use crate::client::{request_id, short, Scope};
use crate::error::{self, own, Failure};
use crate::network::network_item;
use crate::GceProvider;

/// The description that marks a label-less resource (firewall rule, health check,
/// backend service, instance group, URL map, proxy) as the cluster's.
pub(crate) fn ownership(cluster: &str, role: Role) -> String {
    format!(
        "managed by triad ({}={cluster}, {}={})",
        labels::CLUSTER,
        labels::ROLE,
        role.as_str()
    )
}

/// Whether a description says the resource is `cluster`'s.
pub(crate) fn owned_by(description: Option<&str>, cluster: &str) -> bool {
    let Some(d) = description else { return false };
    let Some(rest) = d.split(&format!("{}=", labels::CLUSTER)).nth(1) else {
        return false;
    };
    rest.split([',', ')']).next() == Some(cluster)
}

/// The label filter of a list call: `(labels.k = "v") AND …`.
pub(crate) fn label_filter(cluster: &str, role: Role) -> String {
    format!(
        "(labels.{} = \"{cluster}\") AND (labels.{} = \"{}\")",
        labels::CLUSTER,
        labels::ROLE,
        role.as_str()
    )
}

/// The network tag every node carries; the firewall rules target it.
pub(crate) fn node_tag(cluster: &str) -> String {
    format!("{cluster}-node")
}

/// The state triad sees for a Compute Engine instance status.
pub(crate) fn state_of(status: Option<&instance::Status>) -> NodeState {
    match status.and_then(|s| s.name()) {
        Some("RUNNING") => NodeState::Running,
        Some(
            "STOPPING" | "STOPPED" | "SUSPENDING" | "SUSPENDED" | "TERMINATED" | "PENDING_STOP",
        ) => NodeState::Stopped,
        _ => NodeState::Pending,
    }
}

pub(crate) fn to_node(i: &Instance) -> Node {
    let private_ip = i
        .network_interfaces
        .first()
        .and_then(|n| n.network_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    let public_ip = i
        .network_interfaces
        .first()
        .and_then(|n| n.access_configs.first())
        .and_then(|a| a.nat_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    Node {
        id: i.id.map(|id| id.to_string()).unwrap_or_default(),
        name: i.name.clone().unwrap_or_default(),
        zone: i.zone.as_deref().map(short).unwrap_or_default().to_owned(),
        state: state_of(i.status.as_ref()),
        private_ip,
        public_ip,
        ssh: None,
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        created_ms: None,
    }
}

/// Whether an instance triad waits for is ready; an error when it is gone or not
/// starting.
pub(crate) fn ready(resource: &str, i: Option<&Instance>) -> Result<bool> {
    let Some(i) = i else {
        return Err(own(
            "wait for node",
            resource,
            FailureKind::NotFound,
            "the instance disappeared while triad waited for it",
        ));
    };
    let n = to_node(i);
    if n.state == NodeState::Stopped {
        return Err(own(
            "wait for node",
            resource,
            FailureKind::Other,
            format!(
                "the instance is {:?}, not starting",
                i.status.as_ref().and_then(|s| s.name())
            ),
        ));
    }
    Ok(n.is_ready())
}

impl GceProvider {
    pub(crate) async fn get_instance(&self, zone: &str, name: &str) -> Result<Option<Instance>> {
        match self
            .clients
            .instances
            .get()
            .set_project(&self.settings.project)
            .set_zone(zone)
            .set_instance(name)
            .send()
            .await
        {
            Ok(i) => Ok(Some(i)),
            Err(e) if Failure::of(&e).is_not_found() => Ok(None),
            Err(e) => Err(error::sdk("get instance", &format!("instance {name}"), &e)),
        }
    }

    /// Every instance of the cluster in the zones of its region, in one aggregated
    /// list (all pages): one call however many zones and nodes, shared by concurrent
    /// callers (the plan discovers the nodes and the balancer's targets at once).
    pub(crate) async fn list_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Instance>> {
        let key = format!("{}/{}", cluster.region, cluster.name);
        self.node_reads
            .share(&key, || self.list_nodes_now(cluster))
            .await
    }

    /// The id of the instance (zone, name) as last seen by this provider. An
    /// instance keeps its id for life; one deleted and made again by someone else in
    /// between shows as a target to converge, never as a wrong deletion.
    pub(crate) fn known_id(&self, key: &(String, String)) -> Option<String> {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn remember(&self, instances: &[Instance]) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        for i in instances {
            if let (Some(zone), Some(name), Some(id)) = (&i.zone, &i.name, i.id) {
                ids.insert((short(zone).to_owned(), name.clone()), id.to_string());
            }
        }
    }

    async fn list_nodes_now(&self, cluster: &ClusterRef) -> Result<Vec<Instance>> {
        let scope = format!("zones/{}-", cluster.region);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .clients
                .instances
                .aggregated_list()
                .set_project(&self.settings.project)
                .set_filter(label_filter(&cluster.name, Role::Node))
                .set_or_clear_page_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    error::sdk("list instances", &format!("region {}", cluster.region), &e)
                })?;
            for (zone, list) in page.items {
                if zone.starts_with(&scope) {
                    out.extend(list.instances);
                }
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        self.remember(&out);
        Ok(out)
    }

    /// Wait until every one of `nodes` runs with an internal IP: one aggregated list
    /// per poll for all of them.
    pub(crate) async fn wait_all(
        &self,
        cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let resource = format!("{} instance(s) of {}", nodes.len(), cluster.name);
        self.node_polls
            .running
            .until(
                timeout,
                &resource,
                "RUNNING with an internal IP",
                || async {
                    let found = self.list_nodes(cluster).await?;
                    let mut out = Vec::with_capacity(nodes.len());
                    for node in nodes {
                        let i = found.iter().find(|i| {
                            i.name.as_deref() == Some(node.name.as_str())
                                && i.zone.as_deref().map(short) == Some(node.zone.as_str())
                        });
                        if !ready(&format!("instance {}", node.name), i)? {
                            return Ok(None);
                        }
                        out.extend(i.map(to_node));
                    }
                    Ok(Some(out))
                },
            )
            .await
    }

    /// Day 2: the `<cluster>-ssh` rule's sources to `request.ssh_allowed_cidrs` (made
    /// when missing, deleted when the list is empty), and the instance's labels to
    /// `request.labels` (its fingerprint among them). Each only when it differs.
    pub(crate) async fn update(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
    ) -> Result<Node> {
        self.update_ssh_rule(cluster, &request.ssh_allowed_cidrs)
            .await?;
        let what = format!("instance {}", node.name);
        let mut i = self
            .get_instance(&node.zone, &node.name)
            .await?
            .ok_or_else(|| {
                own(
                    "update node",
                    &what,
                    FailureKind::NotFound,
                    "the instance does not exist",
                )
            })?;
        self.check_owner(cluster, &i)?;
        let labels: HashMap<String, String> = request.labels.clone().into_iter().collect();
        if i.labels != labels {
            let mut body = InstancesSetLabelsRequest::default();
            body.labels = labels.clone();
            body.label_fingerprint = i.label_fingerprint.clone();
            let project = &self.settings.project;
            let op = self
                .clients
                .instances
                .set_labels()
                .set_project(project)
                .set_zone(&node.zone)
                .set_instance(&node.name)
                .set_request_id(request_id())
                .set_body(body)
                .send()
                .await
                .map_err(|e| error::sdk("set the labels of", &what, &e))?;
            let at = Scope::Zone(node.zone.clone());
            self.clients
                .wait(project, &at, op, self.poll, "set the labels of", &what)
                .await?;
            tracing::info!(node = %node.name, "set labels");
            i.labels = labels;
        }
        Ok(to_node(&i))
    }

    pub(crate) async fn node_zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let region = self
            .clients
            .regions
            .get()
            .set_project(&self.settings.project)
            .set_region(&cluster.region)
            .send()
            .await
            .map_err(|e| {
                let f = Failure::of(&e);
                if f.is_not_found() {
                    Error::invalid(
                        "region",
                        format!(
                            "`{}` is not a Compute Engine region of project `{}`",
                            cluster.region, self.settings.project
                        ),
                        "use a region like `us-central1` (gcloud compute regions list)",
                    )
                } else {
                    error::sdk("get region", &format!("region {}", cluster.region), &e)
                }
            })?;
        let mut zones: Vec<String> = region.zones.iter().map(|z| short(z).to_owned()).collect();
        zones.sort();
        Ok(zones)
    }

    /// Whether `node` was made from the image the spec names now (its fingerprint
    /// label says so), so the image and the network need no check.
    pub(crate) fn made_from_spec(&self, node: &Node) -> bool {
        self.settings.image.is_none()
            && node.labels.get(Attribute::Image.label())
                == Some(&drift::encode(
                    self.nodes_image.as_deref().unwrap_or("default"),
                ))
    }

    /// Check, once, that the image and the network exist, so a typo fails `plan`
    /// with the field to fix instead of failing every insert.
    pub(crate) async fn preflight(&self) -> Result<()> {
        self.checked
            .get_or_try_init(|| async {
                self.check_network().await?;
                self.check_image().await
            })
            .await
            .map(|_| ())
    }

    async fn check_network(&self) -> Result<()> {
        let name = short(&self.settings.network).to_owned();
        match self
            .clients
            .networks
            .get()
            .set_project(&self.settings.project)
            .set_network(&name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is_not_found() => Err(Error::invalid(
                "gce.network",
                format!(
                    "network `{name}` does not exist in project `{}`",
                    self.settings.project
                ),
                "name an existing VPC network (gcloud compute networks list)",
            )),
            Err(e) => Err(error::sdk("get network", &format!("network {name}"), &e)),
        }
    }

    async fn check_image(&self) -> Result<()> {
        let image = self.settings.image_for(self.nodes_image.as_deref());
        let field = if self.settings.image.is_some() {
            "gce.image"
        } else {
            "nodes.image"
        };
        let path = image
            .split("/compute/v1/")
            .last()
            .unwrap_or(&image)
            .trim_start_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        let result =
            match parts.as_slice() {
                ["projects", p, "global", "images", "family", f] => {
                    self.clients
                        .images
                        .get_from_family()
                        .set_project(*p)
                        .set_family(*f)
                        .send()
                        .await
                }
                ["projects", p, "global", "images", n] => {
                    self.clients
                        .images
                        .get()
                        .set_project(*p)
                        .set_image(*n)
                        .send()
                        .await
                }
                [n] => {
                    self.clients
                        .images
                        .get()
                        .set_project(&self.settings.project)
                        .set_image(*n)
                        .send()
                        .await
                }
                _ => return Err(Error::invalid(
                    field,
                    format!("`{image}` is not an image reference"),
                    "use projects/P/global/images/NAME or projects/P/global/images/family/FAMILY",
                )),
            };
        match result {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is_not_found() => Err(Error::invalid(
                field,
                format!("image `{image}` does not exist"),
                "name an existing image or image family (gcloud compute images list)",
            )),
            Err(e) => Err(error::sdk("get image", &format!("image {image}"), &e)),
        }
    }

    fn instance_body(
        &self,
        cluster: &ClusterRef,
        request: &NodeRequest,
        cidrs: &[String],
    ) -> Result<Instance> {
        let machine_type = self
            .settings
            .machine_type_for(request.size.as_deref())
            .map_err(|p| {
                Error::invalid("nodes.size", p, "use a machine type like e2-standard-4")
            })?;
        let mut i = Instance::default();
        i.name = Some(request.name.clone());
        i.description = Some(ownership(&cluster.name, Role::Node));
        i.machine_type = Some(format!(
            "zones/{}/machineTypes/{machine_type}",
            request.zone
        ));
        i.labels = request
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut item = metadata::Items::default();
        item.key = Some("user-data".into());
        item.value = Some(request.user_data.clone());
        let mut md = Metadata::default();
        md.items = vec![item, network_item(cidrs)];
        i.metadata = Some(md);
        let mut tags = Tags::default();
        tags.items = vec![node_tag(&cluster.name)];
        i.tags = Some(tags);
        let mut init = AttachedDiskInitializeParams::default();
        init.source_image = Some(self.settings.image_for(request.image.as_deref()));
        init.disk_size_gb = request.disk_gib.map(i64::from);
        if let Some(t) = &self.settings.disk_type {
            init.disk_type = Some(format!("zones/{}/diskTypes/{t}", request.zone));
        }
        init.labels = i.labels.clone();
        let mut disk = AttachedDisk::default();
        disk.boot = Some(true);
        disk.auto_delete = Some(true);
        disk.initialize_params = Some(init);
        i.disks = vec![disk];
        let mut nic = NetworkInterface::default();
        nic.network = Some(self.network_link_pub());
        nic.subnetwork = self.settings.subnetwork.as_ref().map(|s| {
            if s.contains('/') {
                s.clone()
            } else {
                format!("regions/{}/subnetworks/{s}", cluster.region)
            }
        });
        // No access config: nodes reach the internet only through the proxy.
        i.network_interfaces = vec![nic];
        if let Some(sa) = &self.settings.service_account {
            let mut s = ServiceAccount::default();
            s.email = Some(sa.clone());
            s.scopes = vec!["https://www.googleapis.com/auth/cloud-platform".into()];
            i.service_accounts = vec![s];
        }
        Ok(i)
    }

    fn check_owner(&self, cluster: &ClusterRef, i: &Instance) -> Result<()> {
        if i.labels.get(labels::CLUSTER) == Some(&cluster.name) {
            Ok(())
        } else {
            Err(own(
                "create node",
                &format!("instance {}", i.name.as_deref().unwrap_or("")),
                FailureKind::Conflict,
                "an instance of that name exists and does not carry this cluster's labels",
            ))
        }
    }

    pub(crate) async fn create(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let what = format!("instance {}", request.name);
        if let Some(i) = self.get_instance(&request.zone, &request.name).await? {
            self.check_owner(cluster, &i)?;
            return Ok(to_node(&i));
        }
        self.preflight().await?;
        self.ensure_firewalls(cluster, &request.ssh_allowed_cidrs)
            .await?;
        let cidrs = self.subnetwork_cidrs(cluster).await?;
        let body = self.instance_body(cluster, request, &cidrs)?;
        let rid = request_id();
        let project = &self.settings.project;
        match self
            .clients
            .instances
            .insert()
            .set_project(project)
            .set_zone(&request.zone)
            .set_request_id(&rid)
            .set_body(body)
            .send()
            .await
        {
            Ok(op) => {
                self.clients
                    .wait(
                        project,
                        &Scope::Zone(request.zone.clone()),
                        op,
                        self.node_polls.insert,
                        "create node",
                        &what,
                    )
                    .await?;
                tracing::info!(node = %request.name, zone = %request.zone, "created instance");
            }
            Err(e) if Failure::of(&e).is_conflict() => {}
            Err(e) => return Err(error::sdk("create node", &what, &e)),
        }
        let i = self
            .get_instance(&request.zone, &request.name)
            .await?
            .ok_or_else(|| {
                own(
                    "create node",
                    &what,
                    FailureKind::NotFound,
                    "the created instance is gone",
                )
            })?;
        self.check_owner(cluster, &i)?;
        Ok(to_node(&i))
    }

    pub(crate) async fn wait_running(&self, node: &Node, timeout: Duration) -> Result<Node> {
        let resource = format!("instance {}", node.name);
        self.node_polls
            .running
            .until(
                timeout,
                &resource,
                "RUNNING with an internal IP",
                || async {
                    let i = self.get_instance(&node.zone, &node.name).await?;
                    ready(&resource, i.as_ref())
                        .map(|ok| ok.then(|| i.as_ref().map(to_node)).flatten())
                },
            )
            .await
    }

    pub(crate) async fn delete(&self, node: &Node) -> Result<()> {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(node.zone.clone(), node.name.clone()));
        let what = format!("instance {}", node.name);
        let project = &self.settings.project;
        match self
            .clients
            .instances
            .delete()
            .set_project(project)
            .set_zone(&node.zone)
            .set_instance(&node.name)
            .set_request_id(request_id())
            .send()
            .await
        {
            Ok(op) => {
                match self
                    .clients
                    .wait(
                        project,
                        &Scope::Zone(node.zone.clone()),
                        op,
                        self.node_polls.delete,
                        "delete node",
                        &what,
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == Some(FailureKind::NotFound) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(node = %node.name, "deleted instance");
                Ok(())
            }
            Err(e) if Failure::of(&e).is_not_found() => Ok(()),
            Err(e) => Err(error::sdk("delete node", &what, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_descriptions_round_trip() {
        let d = ownership("rancher", Role::Lb);
        assert!(owned_by(Some(&d), "rancher"));
        assert!(!owned_by(Some(&d), "ranch"));
        assert!(!owned_by(
            Some(&ownership("rancher-other", Role::Lb)),
            "rancher"
        ));
        assert!(!owned_by(Some("hand made"), "rancher"));
        assert!(!owned_by(None, "rancher"));
    }

    #[test]
    fn instances_map_to_nodes() {
        let mut i = Instance::default();
        i.id = Some(42);
        i.name = Some("rancher-1".into());
        i.zone =
            Some("https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-b".into());
        i.status = Some(instance::Status::from("RUNNING"));
        let mut nic = NetworkInterface::default();
        nic.network_ip = Some("10.128.0.7".into());
        i.network_interfaces = vec![nic];
        i.labels.insert("triad-cluster".into(), "rancher".into());
        let n = to_node(&i);
        assert_eq!(n.id, "42");
        assert_eq!(n.zone, "us-central1-b");
        assert!(n.is_ready());
        assert_eq!(
            n.labels.get("triad-cluster").map(String::as_str),
            Some("rancher")
        );
        i.status = Some(instance::Status::from("STAGING"));
        assert_eq!(to_node(&i).state, NodeState::Pending);
        i.status = Some(instance::Status::from("TERMINATED"));
        assert_eq!(to_node(&i).state, NodeState::Stopped);
    }

    #[test]
    fn filters_name_both_labels() {
        assert_eq!(
            label_filter("rancher", Role::Node),
            "(labels.triad-cluster = \"rancher\") AND (labels.triad-role = \"node\")"
        );
    }
}
