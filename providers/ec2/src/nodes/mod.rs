//! Nodes: EC2 instances, one per `create_node`, never two.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType, ResourceType,
    VolumeType,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::model::{Node, NodeRequest, NodeState};
use triad_core::provider::NodeProvider;
use triad_core::spec::{ClusterRef, ValidSpec};

use crate::error::{fail, sdk, AwsError, PROVIDER};
use crate::network::{ec2_tags, filter, node_rules, tag_spec, tag_value, Rule};
use crate::settings::DEFAULT_INSTANCE_TYPE;
use crate::Ec2;
use token::{client_token, generation};

mod token;

/// The states of an instance that still exists (everything but `terminated`).
const LIVE: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

pub(crate) fn node_of(i: &Instance) -> Node {
    let tags = i.tags();
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Running) => NodeState::Running,
        Some(InstanceStateName::Stopping | InstanceStateName::Stopped) => NodeState::Stopped,
        Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated) => {
            NodeState::Terminating
        }
        _ => NodeState::Pending,
    };
    let labels: BTreeMap<String, String> = tags
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect();
    Node {
        id: i.instance_id().unwrap_or_default().to_owned(),
        name: tag_value(tags, "Name").unwrap_or_default().to_owned(),
        zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        state,
        private_ip: i
            .private_ip_address()
            .and_then(|a| a.parse::<IpAddr>().ok()),
        public_ip: i.public_ip_address().and_then(|a| a.parse::<IpAddr>().ok()),
        ssh: None,
        labels,
        created_ms: None,
    }
}

/// Whether EC2 answered `RunInstances` with an instance that is gone or going: the
/// token was used before, by an instance terminated since.
fn is_gone(i: &Instance) -> bool {
    matches!(
        i.state().and_then(|s| s.name()),
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    )
}

fn is_terminated(i: &Instance) -> bool {
    matches!(
        i.state().and_then(|s| s.name()),
        Some(InstanceStateName::Terminated)
    )
}

/// The node `i` is once it runs with a private IP; `None` while it starts; an error
/// when it stopped or went instead (with EC2's reason).
fn running(i: &Instance, n: &Node) -> Result<Option<Node>> {
    let node = node_of(i);
    match node.state {
        NodeState::Running if node.private_ip.is_some() => Ok(Some(node)),
        NodeState::Terminating | NodeState::Stopped => Err(fail(
            "wait for",
            format!("node {} ({})", n.name, n.id),
            FailureKind::Other,
            format!(
                "the instance is {:?} instead of starting: {}",
                node.state,
                i.state_reason()
                    .and_then(|r| r.message())
                    .unwrap_or("no reason given")
            ),
        )),
        _ => Ok(None),
    }
}

impl Ec2 {
    /// Instances of the cluster's nodes in `states`; optionally only those named
    /// `name`. Oldest first.
    async fn instances(
        &self,
        cluster: &ClusterRef,
        name: Option<&str>,
        states: &[&str],
    ) -> Result<Vec<Instance>> {
        let mut req = self
            .ec2
            .describe_instances()
            .filters(filter(
                &format!("tag:{}", labels::CLUSTER),
                &[&cluster.name],
            ))
            .filters(filter(
                &format!("tag:{}", labels::ROLE),
                &[Role::Node.as_str()],
            ))
            .filters(filter("instance-state-name", states));
        if let Some(n) = name {
            req = req.filters(filter("tag:Name", &[n]));
        }
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk("list", format!("nodes of {}", cluster.name)))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().cloned());
            }
        }
        out.sort_by(|a, b| {
            (a.launch_time().map(|t| t.as_nanos()), a.instance_id())
                .cmp(&(b.launch_time().map(|t| t.as_nanos()), b.instance_id()))
        });
        Ok(out)
    }

    /// The nodes' security group with the inter-node rules and SSH from `ssh`
    /// exactly (a CIDR no longer wanted is revoked). Converged once per provider and
    /// SSH set: the nodes made together share one read and at most one
    /// `AuthorizeSecurityGroupIngress` with every missing rule.
    async fn node_group(&self, cluster: &ClusterRef, ssh: &[String]) -> Result<String> {
        let mut done = self.node_rules.lock().await;
        if let Some((name, cidrs, id)) = done.as_ref() {
            if *name == cluster.name && cidrs.as_slice() == ssh {
                return Ok(id.clone());
            }
        }
        let sg = self.ensure_group(cluster, "nodes").await?;
        let id = sg.group_id().unwrap_or_default().to_owned();
        self.converge_rules(&sg, &node_rules(&id, ssh), |r: &Rule| !r.is_web(&id))
            .await?;
        *done = Some((cluster.name.clone(), ssh.to_vec(), id.clone()));
        Ok(id)
    }

    /// Make the instance's tags carry `want` (and its `Name`): add what differs,
    /// remove fingerprint tags (`triad-fp-*`) no longer wanted; other tags stay.
    async fn converge_node_tags(
        &self,
        node: &Node,
        want: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut want = want.clone();
        want.insert("Name".into(), node.name.clone());
        let have = &node.labels;
        let (add, remove, after) = crate::tag_diff(have, &want);
        let what = format!("node {} ({})", node.name, node.id);
        if !add.is_empty() {
            self.ec2
                .create_tags()
                .resources(&node.id)
                .set_tags(Some(ec2_tags(&add)))
                .send()
                .await
                .map_err(sdk("tag", &what))?;
        }
        if !remove.is_empty() {
            self.ec2
                .delete_tags()
                .resources(&node.id)
                .set_tags(Some(
                    remove
                        .iter()
                        .map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build())
                        .collect(),
                ))
                .send()
                .await
                .map_err(sdk("untag", &what))?;
        }
        Ok(after)
    }

    /// Send one `RunInstances` and return its instance; a capacity error names the
    /// zone and what to do.
    async fn run_instance(
        &self,
        run: aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder,
        request: &NodeRequest,
        instance_type: &str,
    ) -> Result<Instance> {
        let resource = format!("node {}", request.name);
        let out = match run.send().await {
            Ok(out) => out,
            Err(e) => {
                let e = AwsError::from_sdk(e);
                let message = if e.kind == FailureKind::Capacity {
                    format!(
                        "zone {} cannot run {instance_type} now ({}); choose another size, \
                         or list other zones in `zones` so the node goes elsewhere",
                        request.zone, e.message
                    )
                } else {
                    e.message
                };
                return Err(Error::provider(
                    PROVIDER, "create", resource, e.kind, message,
                ));
            }
        };
        out.instances().first().cloned().ok_or_else(|| {
            fail(
                "create",
                &resource,
                FailureKind::Other,
                "RunInstances returned no instance",
            )
        })
    }

    async fn root_device(&self, image: &str) -> Result<String> {
        let out = self
            .ec2
            .describe_images()
            .image_ids(image)
            .send()
            .await
            .map_err(sdk("read", format!("image {image}")))?;
        out.images()
            .first()
            .and_then(|i| i.root_device_name())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::invalid(
                    "nodes.image",
                    format!("AMI `{image}` does not exist in region {}", self.region),
                    "use an AMI of the cluster's region",
                )
            })
    }
}

#[async_trait]
impl NodeProvider for Ec2 {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec, crate::settings::Concern::Nodes)
    }

    fn plan_warnings(&self, _spec: &ValidSpec) -> Vec<String> {
        let mut out = Vec::new();
        if self.settings.allow_direct_egress {
            out.push(
                "ec2.allow_direct_egress is set: nodes in subnets that route to an internet \
                 gateway can reach the internet around the proxy (they still get no public IP)"
                    .to_owned(),
            );
        }
        let hops = self.settings.imds_hop_limit();
        if hops > 1 {
            out.push(format!(
                "ec2.imds_hop_limit is {hops}: pods can read the nodes' instance metadata, \
                 user data (and a proxy password in it) and role credentials"
            ));
        }
        out
    }

    /// The zones of the region that have a subnet for the nodes, in AWS's order.
    async fn zones(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        let net = self.network().await?;
        Ok(net.node_subnets.iter().map(|(z, _)| z.clone()).collect())
    }

    /// The nodes' VPC's CIDR blocks (they hold every node subnet and the
    /// balancer's), from the network discovery `zones` made: no extra call.
    async fn network_cidrs(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        Ok(self.network().await?.vpc_cidrs.clone())
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        Ok(self
            .instances(cluster, None, &LIVE)
            .await?
            .iter()
            .map(node_of)
            .collect())
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let resource = format!("node {}", request.name);
        let all = self
            .instances(
                cluster,
                Some(&request.name),
                &[
                    "pending",
                    "running",
                    "stopping",
                    "stopped",
                    "shutting-down",
                    "terminated",
                ],
            )
            .await?;
        let live: Vec<&Instance> = all
            .iter()
            .filter(|i| {
                !matches!(
                    i.state().and_then(|s| s.name()),
                    Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                )
            })
            .collect();
        if let Some(first) = live.first() {
            if live.len() > 1 {
                tracing::warn!(
                    node = request.name,
                    count = live.len(),
                    "several instances carry this node's name; the oldest is kept, plan deletes the others"
                );
            }
            return Ok(node_of(first));
        }
        let terminated = all.iter().filter(|i| is_terminated(i)).count();

        let net = self.network().await?;
        let subnet = net.node_subnet(&request.zone).ok_or_else(|| {
            Error::invalid(
                "zones",
                format!("zone `{}` has no subnet for the nodes", request.zone),
                "add a subnet of that zone to ec2.subnets",
            )
        })?;
        let image = request.image.as_deref().ok_or_else(|| {
            Error::invalid(
                "nodes.image",
                "is missing; EC2 needs an AMI id",
                "set nodes.image",
            )
        })?;
        let instance_type = request.size.as_deref().unwrap_or(DEFAULT_INSTANCE_TYPE);
        let sg = self.node_group(cluster, &request.ssh_allowed_cidrs).await?;

        let mut tags = request.labels.clone();
        tags.insert("Name".into(), request.name.clone());
        let mut run = self
            .ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(instance_type))
            .min_count(1)
            .max_count(1)
            // Never a public address, whatever the subnet's MapPublicIpOnLaunch says:
            // the nodes reach the internet through the proxy only.
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(subnet)
                    .groups(&sg)
                    .associate_public_ip_address(false)
                    .delete_on_termination(true)
                    .build(),
            )
            .user_data(aws_smithy_types::base64::encode(
                request.user_data.as_bytes(),
            ))
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(i32::from(self.settings.imds_hop_limit()))
                    .build(),
            )
            .tag_specifications(tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &tags))
            .tag_specifications(tag_spec(ResourceType::NetworkInterface, &tags));
        if let Some(gib) = request.disk_gib {
            let device = self.root_device(image).await?;
            run = run.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(i32::try_from(gib).unwrap_or(i32::MAX))
                            .volume_type(VolumeType::Gp3)
                            .delete_on_termination(true)
                            .encrypted(true)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(p) = &self.settings.instance_profile {
            let spec = if p.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(p)
            } else {
                IamInstanceProfileSpecification::builder().name(p)
            };
            run = run.iam_instance_profile(spec.build());
        }
        if let Some(k) = &self.settings.key_name {
            run = run.key_name(k);
        }
        // An old token (same spec, node deleted less than a day ago) makes EC2 return
        // the terminated instance: ask again with a generation that names it.
        let mut replayed: Vec<String> = Vec::new();
        let instance = loop {
            let generation_now = generation(&sg, terminated, &replayed);
            let token = client_token(
                &cluster.name,
                request,
                instance_type,
                subnet,
                &generation_now,
            );
            let instance = self
                .run_instance(run.clone().client_token(&token), request, instance_type)
                .await?;
            if !is_gone(&instance) {
                break instance;
            }
            let id = instance.instance_id().unwrap_or_default().to_owned();
            tracing::warn!(
                node = request.name,
                id = %id,
                "RunInstances returned a terminated instance of an earlier client token; running a new one"
            );
            if replayed.contains(&id) || replayed.len() >= 3 {
                return Err(fail(
                    "create",
                    &resource,
                    FailureKind::Other,
                    format!(
                        "RunInstances keeps returning terminated instances ({})",
                        replayed.join(", ")
                    ),
                ));
            }
            replayed.push(id);
        };
        tracing::info!(
            node = request.name,
            id = instance.instance_id(),
            "ran instance"
        );
        let mut node = node_of(&instance);
        // RunInstances echoes the tags only sometimes; they were asked for.
        if node.name.is_empty() {
            node.name = request.name.clone();
            node.labels = tags;
        }
        if node.zone.is_empty() {
            node.zone = request.zone.clone();
        }
        Ok(node)
    }

    async fn wait_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        let mut nodes = self
            .wait_nodes(cluster, std::slice::from_ref(node), timeout)
            .await?;
        nodes.pop().ok_or_else(|| {
            fail(
                "wait for",
                format!("node {}", node.name),
                FailureKind::Other,
                "no node",
            )
        })
    }

    /// One `DescribeInstances` with every id per poll, however many nodes.
    async fn wait_nodes(
        &self,
        _cluster: &ClusterRef,
        nodes: &[Node],
        timeout: Duration,
    ) -> Result<Vec<Node>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let resource = match nodes {
            [n] => format!("node {} ({})", n.name, n.id),
            _ => format!(
                "nodes {}",
                nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.poll
            .until(timeout, &resource, "running with a private IP", || async {
                let out = match self
                    .ec2
                    .describe_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        let e = AwsError::from_sdk(e);
                        // Just made: EC2 may not know an id yet (eventual consistency).
                        if e.is("InvalidInstanceID.NotFound") {
                            return Ok(None);
                        }
                        return Err(e.into_error("wait for", resource.clone()));
                    }
                };
                let found: BTreeMap<&str, &Instance> = out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| Some((i.instance_id()?, i)))
                    .collect();
                let mut ready = Vec::with_capacity(nodes.len());
                for n in nodes {
                    let Some(i) = found.get(n.id.as_str()) else {
                        return Ok(None);
                    };
                    match running(i, n)? {
                        Some(node) => ready.push(node),
                        None => return Ok(None),
                    }
                }
                Ok(Some(ready))
            })
            .await
    }

    /// The SSH rules of the nodes' security group to `request.ssh_allowed_cidrs`
    /// (revoke what is no longer wanted, authorize what is new), and the instance's
    /// tags to `request.labels`, its fingerprint among them.
    async fn update_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
    ) -> Result<Node> {
        self.node_group(cluster, &request.ssh_allowed_cidrs).await?;
        let labels = self.converge_node_tags(node, &request.labels).await?;
        tracing::info!(node = node.name, "updated in place");
        Ok(Node {
            labels,
            ..node.clone()
        })
    }

    async fn delete_node(&self, _cluster: &ClusterRef, node: &Node) -> Result<()> {
        match self
            .ec2
            .terminate_instances()
            .instance_ids(&node.id)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(node = node.name, id = node.id, "terminating instance");
                Ok(())
            }
            Err(e) => {
                let e = AwsError::from_sdk(e);
                if e.kind == FailureKind::NotFound {
                    Ok(())
                } else {
                    Err(e.into_error("delete", format!("node {} ({})", node.name, node.id)))
                }
            }
        }
    }

    /// Wait until no instance of the cluster is shutting down (their network
    /// interfaces hold the security groups), then delete the cluster's security
    /// groups: the nodes' first (it refers to the balancer's).
    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let mut groups = self.owned_groups(cluster).await?;
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        self.poll
            .until(
                self.cleanup_timeout,
                &format!("nodes of {}", cluster.name),
                "terminated",
                || async {
                    let left = self.instances(cluster, None, &LIVE).await?;
                    Ok(left.is_empty().then_some(()))
                },
            )
            .await?;
        groups.sort_by_key(|g| tag_value(g.tags(), crate::network::PART) != Some("nodes"));
        let mut deleted = Vec::new();
        for g in groups {
            deleted.push(self.delete_group(&g).await?);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_become_nodes() {
        use aws_sdk_ec2::types::{InstanceState, Placement, Tag};
        let i = Instance::builder()
            .instance_id("i-1")
            .state(
                InstanceState::builder()
                    .name(InstanceStateName::ShuttingDown)
                    .build(),
            )
            .placement(Placement::builder().availability_zone("us-east-1b").build())
            .private_ip_address("10.0.1.5")
            .tags(Tag::builder().key("Name").value("rancher-2").build())
            .tags(Tag::builder().key("triad-cluster").value("rancher").build())
            .build();
        let n = node_of(&i);
        assert_eq!(
            (n.id.as_str(), n.name.as_str(), n.zone.as_str(), n.state),
            ("i-1", "rancher-2", "us-east-1b", NodeState::Terminating)
        );
        assert_eq!(n.private_ip, Some("10.0.1.5".parse().unwrap()));
        assert_eq!(n.labels["triad-cluster"], "rancher");
    }
}
