//! Where the cluster lives: the VPC, one subnet per zone (for the nodes and for the
//! balancer), and the cluster's security groups with their rules.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, SecurityGroup, Subnet, Tag, TagSpecification,
    UserIdGroupPair,
};
use triad_core::error::{Error, FailureKind, Result, SpecProblem, SpecProblems};
use triad_core::labels::{self, Role};
use triad_core::spec::ClusterRef;

use crate::error::{fail, sdk, AwsError};
use crate::Ec2;

/// Tag naming which part of the cluster a resource is (`nodes`, `alb`, `tcp-443`, …).
pub(crate) const PART: &str = "triad-part";

/// The resolved network of the cluster.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    pub vpc_id: String,
    pub vpc_cidrs: Vec<String>,
    /// (zone, subnet id) for the nodes, in the region's zone order.
    pub node_subnets: Vec<(String, String)>,
    /// (zone, subnet id) for the balancer.
    pub lb_subnets: Vec<(String, String)>,
}

impl Network {
    pub fn node_subnet(&self, zone: &str) -> Option<&str> {
        find(&self.node_subnets, zone)
    }
    pub fn lb_subnet(&self, zone: &str) -> Option<&str> {
        find(&self.lb_subnets, zone)
    }
}

fn find<'a>(v: &'a [(String, String)], zone: &str) -> Option<&'a str> {
    v.iter().find(|(z, _)| z == zone).map(|(_, s)| s.as_str())
}

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
    pub fn tcp(port: i32, source: Source) -> Self {
        Self::range("tcp", port, port, source)
    }
    pub fn range(protocol: &str, from: i32, to: i32, source: Source) -> Self {
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
    /// Whether the rule is about the balancer's ports (80/443, and the Kubernetes
    /// registration ports 9345/6443), which the load balancer side manages on the
    /// nodes' group.
    pub fn is_web(&self) -> bool {
        self.protocol == "tcp"
            && self.from == self.to
            && matches!(self.from, 80 | 443 | 9345 | 6443)
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

pub(crate) fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(crate) fn tag_spec(kind: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
}

pub(crate) fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn problem(field: String, problem: String, fix: impl Into<String>) -> SpecProblem {
    SpecProblem {
        field,
        problem,
        fix: fix.into(),
    }
}

impl Ec2 {
    /// The cluster's network, resolved once: the zones of the region, the subnets
    /// the settings name (or discover), the VPC. Every problem is reported at once
    /// as [`Error::InvalidSpec`] naming the `[ec2]` field, before anything is made.
    pub(crate) async fn network(&self) -> Result<&Network> {
        self.network
            .get_or_try_init(|| self.resolve_network())
            .await
    }

    async fn resolve_network(&self) -> Result<Network> {
        let zones = self.region_zones().await?;
        let mut problems = Vec::new();
        let s = &self.settings;

        let (vpc_id, node_subnets) = if !s.subnets.is_empty() {
            let subnets = self
                .checked_subnets(&s.subnets, "subnets", None, &mut problems)
                .await?;
            let vpc = subnets
                .first()
                .map(|(_, _, v)| v.clone())
                .unwrap_or_default();
            (vpc, subnets)
        } else {
            let vpc = match &s.vpc {
                Some(v) => v.clone(),
                None => self.default_vpc().await?,
            };
            (vpc.clone(), self.discover_subnets(&vpc).await?)
        };
        let vpc_cidrs = self.vpc_cidrs(&vpc_id, &mut problems).await?;
        let node_subnets: Vec<(String, String)> =
            node_subnets.into_iter().map(|(z, id, _)| (z, id)).collect();
        if node_subnets.is_empty() && problems.is_empty() {
            problems.push(problem(
                if s.vpc.is_some() {
                    "ec2.vpc"
                } else {
                    "ec2.subnets"
                }
                .into(),
                format!("VPC {vpc_id} has no subnet in region {}", self.region),
                "create subnets (one per zone) or list them in ec2.subnets",
            ));
        }
        let lb_subnets = if s.lb_subnets.is_empty() {
            node_subnets.clone()
        } else {
            self.checked_subnets(&s.lb_subnets, "lb_subnets", Some(&vpc_id), &mut problems)
                .await?
                .into_iter()
                .map(|(z, id, _)| (z, id))
                .collect()
        };
        let order = |v: Vec<(String, String)>| -> Vec<(String, String)> {
            let mut v = v;
            v.sort_by_key(|(z, _)| zones.iter().position(|x| x == z).unwrap_or(usize::MAX));
            v
        };
        let network = Network {
            vpc_id,
            vpc_cidrs,
            node_subnets: order(node_subnets),
            lb_subnets: order(lb_subnets),
        };
        for (i, z) in self.wanted_zones.iter().enumerate() {
            if zones.contains(z) && network.node_subnet(z).is_none() {
                problems.push(problem(
                    format!("zones[{i}]"),
                    format!("zone `{z}` has no subnet for the nodes"),
                    format!(
                        "add a subnet of {z} to ec2.subnets, or leave {z} out of zones \
                         (zones with subnets: {})",
                        network
                            .node_subnets
                            .iter()
                            .map(|(z, _)| z.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(SpecProblems(problems)));
        }
        tracing::debug!(?network, "resolved the cluster's network");
        Ok(network)
    }

    /// The region's availability zones, in AWS's order.
    pub(crate) async fn region_zones(&self) -> Result<Vec<String>> {
        let out = self
            .ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(sdk("list zones of", format!("region {}", self.region)))?;
        Ok(out
            .availability_zones()
            .iter()
            .filter(|z| z.state().is_none_or(|s| s.as_str() == "available"))
            .filter_map(|z| z.zone_name().map(str::to_owned))
            .collect())
    }

    /// The listed subnets as (zone, id, vpc), each checked to exist, one per zone,
    /// all in one VPC.
    async fn checked_subnets(
        &self,
        ids: &[String],
        field: &str,
        vpc: Option<&str>,
        problems: &mut Vec<SpecProblem>,
    ) -> Result<Vec<(String, String, String)>> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let found = self
            .ec2
            .describe_subnets()
            .filters(filter("subnet-id", &refs))
            .send()
            .await
            .map_err(sdk("read", format!("subnets {}", ids.join(", "))))?;
        let by_id: BTreeMap<&str, &Subnet> = found
            .subnets()
            .iter()
            .filter_map(|s| Some((s.subnet_id()?, s)))
            .collect();
        let mut out: Vec<(String, String, String)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let field = format!("ec2.{field}[{i}]");
            let Some(s) = by_id.get(id.as_str()) else {
                problems.push(problem(
                    field,
                    format!("subnet `{id}` does not exist in region {}", self.region),
                    "check the id (aws ec2 describe-subnets) and the region",
                ));
                continue;
            };
            let zone = s.availability_zone().unwrap_or_default().to_owned();
            let s_vpc = s.vpc_id().unwrap_or_default().to_owned();
            let want_vpc = vpc.or(out.first().map(|(_, _, v)| v.as_str()));
            if let Some(v) = want_vpc {
                if v != s_vpc {
                    problems.push(problem(
                        field,
                        format!("subnet `{id}` is in {s_vpc}, the others in {v}"),
                        "use subnets of one VPC",
                    ));
                    continue;
                }
            }
            if let Some((_, other, _)) = out.iter().find(|(z, _, _)| *z == zone) {
                problems.push(problem(
                    field,
                    format!("subnet `{id}` is in zone {zone}, like `{other}`"),
                    "list one subnet per zone",
                ));
                continue;
            }
            out.push((zone, id.clone(), s_vpc));
        }
        Ok(out)
    }

    async fn default_vpc(&self) -> Result<String> {
        let out = self
            .ec2
            .describe_vpcs()
            .filters(filter("is-default", &["true"]))
            .send()
            .await
            .map_err(sdk("find", format!("the default VPC of {}", self.region)))?;
        out.vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::invalid(
                    "ec2.subnets",
                    format!("is empty and region {} has no default VPC", self.region),
                    "list the nodes' subnets in ec2.subnets, or name a VPC in ec2.vpc",
                )
            })
    }

    /// One subnet per zone of `vpc`: the zone's default subnet, else the one with
    /// the lowest id.
    async fn discover_subnets(&self, vpc: &str) -> Result<Vec<(String, String, String)>> {
        let out = self
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", &[vpc]))
            .send()
            .await
            .map_err(sdk("list subnets of", format!("VPC {vpc}")))?;
        let mut by_zone: BTreeMap<String, (bool, String)> = BTreeMap::new();
        for s in out.subnets() {
            let (Some(zone), Some(id)) = (s.availability_zone(), s.subnet_id()) else {
                continue;
            };
            let cand = (!s.default_for_az().unwrap_or(false), id.to_owned());
            match by_zone.get(zone) {
                Some(best) if *best <= cand => {}
                _ => {
                    by_zone.insert(zone.to_owned(), cand);
                }
            }
        }
        Ok(by_zone
            .into_iter()
            .map(|(z, (_, id))| (z, id, vpc.to_owned()))
            .collect())
    }

    async fn vpc_cidrs(&self, vpc: &str, problems: &mut Vec<SpecProblem>) -> Result<Vec<String>> {
        if vpc.is_empty() {
            return Ok(Vec::new());
        }
        let out = match self.ec2.describe_vpcs().vpc_ids(vpc).send().await {
            Ok(out) => out,
            Err(e) => {
                let e = AwsError::from_sdk(e);
                if e.kind == FailureKind::NotFound {
                    problems.push(problem(
                        "ec2.vpc".into(),
                        format!("VPC `{vpc}` does not exist in region {}", self.region),
                        "check the id (aws ec2 describe-vpcs) and the region",
                    ));
                    return Ok(Vec::new());
                }
                return Err(e.into_error("read", format!("VPC {vpc}")));
            }
        };
        let mut cidrs = BTreeSet::new();
        for v in out.vpcs() {
            cidrs.extend(v.cidr_block().map(str::to_owned));
            for a in v.cidr_block_association_set() {
                let associated = a
                    .cidr_block_state()
                    .and_then(|s| s.state())
                    .is_none_or(|s| s.as_str() == "associated");
                if associated {
                    cidrs.extend(a.cidr_block().map(str::to_owned));
                }
            }
        }
        Ok(cidrs.into_iter().collect())
    }

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
        assert!(want.iter().all(|r| !r.is_web()));
        assert!(Rule::tcp(443, Source::Cidr("0.0.0.0/0".into())).is_web());
        assert!(want.contains(&Rule::range(
            "udp",
            8472,
            8472,
            Source::Group("sg-1".into())
        )));
    }
}
