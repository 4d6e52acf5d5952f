//! The cluster's security groups and their rules: one flattened [`Rule`] per
//! protocol, port range and source, made exactly what is wanted with at most one
//! authorize and one revoke call per group.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup, UserIdGroupPair};
use triad_core::error::{FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::spec::ClusterRef;

use super::{filter, tag_spec, tag_value, PART};
use crate::error::{fail, sdk, AwsError};
use crate::Ec2;

/// One security group rule, flattened: protocol, port range and one source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    pub source: Source,
}

/// Where a rule lets traffic in from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    Cidr(String),
    Group(String),
}

impl Rule {
    pub(crate) fn tcp(port: i32, source: Source) -> Self {
        Self::range("tcp", port, port, source)
    }
    pub(crate) fn range(protocol: &str, from: i32, to: i32, source: Source) -> Self {
        Self {
            protocol: protocol.to_owned(),
            from,
            to,
            source,
        }
    }
    fn permission(&self) -> IpPermission {
        let b = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(self.from)
            .to_port(self.to);
        match &self.source {
            Source::Cidr(c) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Source::Group(g) => {
                b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
            }
        }
        .build()
    }
    /// Whether the load balancer side manages this rule of the nodes' group
    /// (`nodes_sg`): the balancer's ports (80/443, and the Kubernetes registration
    /// ports 9345/6443) from anywhere but the nodes' own group. The nodes side
    /// manages everything else, the nodes-to-nodes 9345/6443 rules included, so the
    /// two sides never undo each other's rules.
    pub(crate) fn is_web(&self, nodes_sg: &str) -> bool {
        self.protocol == "tcp"
            && self.from == self.to
            && matches!(self.from, 80 | 443 | 9345 | 6443)
            && self.source != Source::Group(nodes_sg.to_owned())
    }
}

/// The rules a group has now.
pub(crate) fn rules_of(sg: &SecurityGroup) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in sg.ip_permissions() {
        let protocol = p.ip_protocol().unwrap_or("-1").to_owned();
        let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                out.insert(Rule::range(&protocol, from, to, Source::Cidr(c.to_owned())));
            }
        }
        for g in p.user_id_group_pairs() {
            if let Some(id) = g.group_id() {
                out.insert(Rule::range(
                    &protocol,
                    from,
                    to,
                    Source::Group(id.to_owned()),
                ));
            }
        }
    }
    out
}

/// The rules every node needs from the other nodes: etcd, the Kubernetes API, the
/// RKE2 supervisor, the kubelet and VXLAN.
pub(crate) fn node_rules(sg_id: &str, ssh_cidrs: &[String]) -> BTreeSet<Rule> {
    let me = || Source::Group(sg_id.to_owned());
    let mut out = BTreeSet::from([
        Rule::range("tcp", 2379, 2380, me()),
        Rule::tcp(6443, me()),
        Rule::tcp(9345, me()),
        Rule::tcp(10250, me()),
        Rule::range("udp", 8472, 8472, me()),
    ]);
    for c in ssh_cidrs {
        out.insert(Rule::tcp(22, Source::Cidr(c.clone())));
    }
    out
}

impl Ec2 {
    /// The cluster's security group for `part` (`nodes` or `alb`), made the first
    /// time. Its name `<cluster>-<part>` is unique in the VPC, so two runs at once
    /// cannot make two.
    pub(crate) async fn ensure_group(
        &self,
        cluster: &ClusterRef,
        part: &str,
    ) -> Result<SecurityGroup> {
        let net = self.network().await?;
        let name = format!("{}-{part}", cluster.name);
        let _guard = self.sg_lock.lock().await;
        if let Some(sg) = self.find_group(cluster, &net.vpc_id, &name).await? {
            return Ok(sg);
        }
        let mut tags = cluster.labels_for(Role::Network);
        tags.insert("Name".into(), name.clone());
        tags.insert(PART.into(), part.into());
        let desc = match part {
            "nodes" => format!("Rancher nodes of triad cluster {}", cluster.name),
            _ => format!("Load balancer of triad cluster {}", cluster.name),
        };
        let created = self
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(desc)
            .vpc_id(&net.vpc_id)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, &tags))
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(group = name, "created security group");
            }
            Err(e) => {
                let e = AwsError::from_sdk(e);
                if !e.is("InvalidGroup.Duplicate") {
                    return Err(e.into_error("create", format!("security group {name}")));
                }
            }
        }
        self.find_group(cluster, &net.vpc_id, &name)
            .await?
            .ok_or_else(|| {
                fail(
                    "create",
                    format!("security group {name}"),
                    FailureKind::Transient,
                    "created, but not found yet",
                )
            })
    }

    async fn find_group(
        &self,
        cluster: &ClusterRef,
        vpc: &str,
        name: &str,
    ) -> Result<Option<SecurityGroup>> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(filter("vpc-id", &[vpc]))
            .filters(filter("group-name", &[name]))
            .send()
            .await
            .map_err(sdk("find", format!("security group {name}")))?;
        let Some(sg) = out.security_groups().first() else {
            return Ok(None);
        };
        if tag_value(sg.tags(), labels::CLUSTER) != Some(cluster.name.as_str()) {
            return Err(fail(
                "use",
                format!("security group {name}"),
                FailureKind::Conflict,
                format!(
                    "a security group named {name} exists in {vpc} ({}) without the tag {}={}; \
                     triad does not take over groups it did not make: delete or rename it",
                    sg.group_id().unwrap_or("?"),
                    labels::CLUSTER,
                    cluster.name
                ),
            ));
        }
        Ok(Some(sg.clone()))
    }

    /// Make the rules of `sg` selected by `scope` exactly `want`: authorize what is
    /// missing, revoke what is extra. No call when they already match.
    pub(crate) async fn converge_rules(
        &self,
        sg: &SecurityGroup,
        want: &BTreeSet<Rule>,
        scope: impl Fn(&Rule) -> bool,
    ) -> Result<()> {
        let id = sg.group_id().unwrap_or_default();
        let have: BTreeSet<Rule> = rules_of(sg).into_iter().filter(|r| scope(r)).collect();
        let add: Vec<IpPermission> = want.difference(&have).map(Rule::permission).collect();
        let remove: Vec<IpPermission> = have.difference(want).map(Rule::permission).collect();
        let what = format!("security group {} ({id})", sg.group_name().unwrap_or(""));
        if !add.is_empty() {
            if let Err(e) = self
                .ec2
                .authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(add))
                .send()
                .await
            {
                let e = AwsError::from_sdk(e);
                if !e.is("InvalidPermission.Duplicate") {
                    return Err(e.into_error("add rules to", what));
                }
            }
        }
        if !remove.is_empty() {
            if let Err(e) = self
                .ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(remove))
                .send()
                .await
            {
                let e = AwsError::from_sdk(e);
                if !e.is("InvalidPermission.NotFound") {
                    return Err(e.into_error("remove rules from", what));
                }
            }
        }
        Ok(())
    }

    /// Delete the security group `sg`, waiting while it is still in use (a
    /// balancer's network interfaces go some time after the balancer); gone already
    /// is fine. Returns what was deleted, for the report.
    pub(crate) async fn delete_group(&self, sg: &SecurityGroup) -> Result<String> {
        let id = sg.group_id().unwrap_or_default().to_owned();
        let what = format!("security group {} ({id})", sg.group_name().unwrap_or(""));
        self.poll
            .until(self.cleanup_timeout, &what, "deleted", || async {
                match self.ec2.delete_security_group().group_id(&id).send().await {
                    Ok(_) => Ok(Some(())),
                    Err(e) => {
                        let e = AwsError::from_sdk(e);
                        if e.kind == FailureKind::NotFound {
                            Ok(Some(()))
                        } else if e.is("DependencyViolation") {
                            tracing::debug!(group = id, "still in use; waiting");
                            Ok(None)
                        } else {
                            Err(e.into_error("delete", what.clone()))
                        }
                    }
                }
            })
            .await?;
        tracing::info!(group = id, "deleted security group");
        Ok(what)
    }

    /// Every security group carrying the cluster's network labels, in any VPC.
    pub(crate) async fn owned_groups(&self, cluster: &ClusterRef) -> Result<Vec<SecurityGroup>> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(filter(
                &format!("tag:{}", labels::CLUSTER),
                &[&cluster.name],
            ))
            .filters(filter(
                &format!("tag:{}", labels::ROLE),
                &[Role::Network.as_str()],
            ))
            .send()
            .await
            .map_err(sdk("list", format!("security groups of {}", cluster.name)))?;
        Ok(out.security_groups().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_flatten_and_round_trip() {
        let want = node_rules("sg-1", &["203.0.113.0/24".into()]);
        assert_eq!(want.len(), 6);
        let sg = SecurityGroup::builder()
            .set_ip_permissions(Some(want.iter().map(Rule::permission).collect()))
            .build();
        assert_eq!(rules_of(&sg), want);
        assert!(want.iter().all(|r| !r.is_web("sg-1")));
        assert!(Rule::tcp(443, Source::Cidr("0.0.0.0/0".into())).is_web("sg-1"));
        assert!(Rule::tcp(9345, Source::Group("sg-lb".into())).is_web("sg-1"));
        assert!(want.contains(&Rule::range(
            "udp",
            8472,
            8472,
            Source::Group("sg-1".into())
        )));
    }
}
