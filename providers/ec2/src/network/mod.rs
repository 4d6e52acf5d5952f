//! Where the cluster lives: the VPC, one subnet per zone (for the nodes and for the
//! balancer), checked once before anything is made; the security groups are in
//! [`groups`].

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, ResourceType, Subnet, Tag, TagSpecification};
use triad_core::error::{Error, FailureKind, Result, SpecProblem, SpecProblems};

use crate::error::{sdk, AwsError};
use crate::Ec2;

mod groups;

pub(crate) use groups::{node_rules, Rule, Source};

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
    pub(crate) fn node_subnet(&self, zone: &str) -> Option<&str> {
        find(&self.node_subnets, zone)
    }
    pub(crate) fn lb_subnet(&self, zone: &str) -> Option<&str> {
        find(&self.lb_subnets, zone)
    }
}

fn find<'a>(v: &'a [(String, String)], zone: &str) -> Option<&'a str> {
    v.iter().find(|(z, _)| z == zone).map(|(_, s)| s.as_str())
}

/// A subnet found for the nodes or the balancer: (zone, id, VPC, whether it gives
/// instances a public IP on launch).
type Candidate = (String, String, String, bool);

/// The internet gateway routes of a VPC's route tables.
#[derive(Debug, Default)]
struct Routes {
    /// The main route table's internet gateway, for subnets without their own table.
    main: Option<String>,
    /// Subnet → its route table's internet gateway.
    explicit: BTreeMap<String, Option<String>>,
}

impl Routes {
    /// The internet gateway `subnet` sends `0.0.0.0/0` to, if any.
    fn internet_gateway(&self, subnet: &str) -> Option<&str> {
        match self.explicit.get(subnet) {
            Some(igw) => igw.as_deref(),
            None => self.main.as_deref(),
        }
    }
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

/// The associated IPv4 CIDRs of `vpcs`.
fn cidrs_of(vpcs: &[aws_sdk_ec2::types::Vpc]) -> Vec<String> {
    let mut cidrs = BTreeSet::new();
    for v in vpcs {
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
    cidrs.into_iter().collect()
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
        let mut problems = Vec::new();
        let s = &self.settings;

        let explicit = !s.subnets.is_empty();
        let mut default_cidrs = None;
        let (vpc_id, routes, node_subnets) = if explicit {
            let subnets = self
                .checked_subnets(&s.subnets, "subnets", None, &mut problems)
                .await?;
            let vpc = subnets
                .first()
                .map(|(_, _, v, _)| v.clone())
                .unwrap_or_default();
            let routes = self.routes(&vpc).await?;
            (vpc, routes, subnets)
        } else {
            let vpc = match &s.vpc {
                Some(v) => v.clone(),
                None => {
                    let (id, cidrs) = self.default_vpc().await?;
                    default_cidrs = Some(cidrs);
                    id
                }
            };
            let routes = self.routes(&vpc).await?;
            let subnets = self.discover_subnets(&vpc, &routes).await?;
            (vpc, routes, subnets)
        };
        if !s.allow_direct_egress {
            problems.extend(self.egress_problems(&node_subnets, &routes));
        }
        let vpc_cidrs = match default_cidrs {
            Some(cidrs) => cidrs,
            None => self.vpc_cidrs(&vpc_id, &mut problems).await?,
        };
        let node_subnets: Vec<(String, String)> = node_subnets
            .into_iter()
            .map(|(z, id, _, _)| (z, id))
            .collect();
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
                .map(|(z, id, _, _)| (z, id))
                .collect()
        };
        // Zone names sort in the region's order (us-east-1a, us-east-1b, …).
        let order = |v: Vec<(String, String)>| -> Vec<(String, String)> {
            let mut v = v;
            v.sort();
            v
        };
        let network = Network {
            vpc_id,
            vpc_cidrs,
            node_subnets: order(node_subnets),
            lb_subnets: order(lb_subnets),
        };
        for (i, z) in self.wanted_zones.iter().enumerate() {
            if network.node_subnet(z).is_none() {
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

    /// The listed subnets as (zone, id, vpc, public IP on launch), each checked to
    /// exist, one per zone, all in one VPC.
    async fn checked_subnets(
        &self,
        ids: &[String],
        field: &str,
        vpc: Option<&str>,
        problems: &mut Vec<SpecProblem>,
    ) -> Result<Vec<Candidate>> {
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
        let mut out: Vec<Candidate> = Vec::new();
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
            let want_vpc = vpc.or(out.first().map(|(_, _, v, _)| v.as_str()));
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
            if let Some((_, other, _, _)) = out.iter().find(|(z, _, _, _)| *z == zone) {
                problems.push(problem(
                    field,
                    format!("subnet `{id}` is in zone {zone}, like `{other}`"),
                    "list one subnet per zone",
                ));
                continue;
            }
            let public = s.map_public_ip_on_launch().unwrap_or(false);
            out.push((zone, id.clone(), s_vpc, public));
        }
        Ok(out)
    }

    /// The region's default VPC and its CIDRs (one call).
    async fn default_vpc(&self) -> Result<(String, Vec<String>)> {
        let out = self
            .ec2
            .describe_vpcs()
            .filters(filter("is-default", &["true"]))
            .send()
            .await
            .map_err(sdk("find", format!("the default VPC of {}", self.region)))?;
        let cidrs = cidrs_of(out.vpcs());
        out.vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .map(|id| (id.to_owned(), cidrs))
            .ok_or_else(|| {
                Error::invalid(
                    "ec2.subnets",
                    format!("is empty and region {} has no default VPC", self.region),
                    "list the nodes' subnets in ec2.subnets, or name a VPC in ec2.vpc",
                )
            })
    }

    /// One subnet per zone of `vpc`: the zone's private subnets first (no public IP
    /// on launch, no route to an internet gateway), then its default subnet, else the
    /// one with the lowest id.
    async fn discover_subnets(&self, vpc: &str, routes: &Routes) -> Result<Vec<Candidate>> {
        let out = self
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", &[vpc]))
            .send()
            .await
            .map_err(sdk("list subnets of", format!("VPC {vpc}")))?;
        let mut by_zone: BTreeMap<String, (bool, bool, String, bool)> = BTreeMap::new();
        for s in out.subnets() {
            let (Some(zone), Some(id)) = (s.availability_zone(), s.subnet_id()) else {
                continue;
            };
            let public = s.map_public_ip_on_launch().unwrap_or(false);
            let direct = public || routes.internet_gateway(id).is_some();
            let cand = (
                direct,
                !s.default_for_az().unwrap_or(false),
                id.to_owned(),
                public,
            );
            match by_zone.get(zone) {
                Some(best) if *best <= cand => {}
                _ => {
                    by_zone.insert(zone.to_owned(), cand);
                }
            }
        }
        Ok(by_zone
            .into_iter()
            .map(|(z, (_, _, id, public))| (z, id, vpc.to_owned(), public))
            .collect())
    }

    /// Which subnets of `vpc` route `0.0.0.0/0` (or `::/0`) to an internet gateway.
    async fn routes(&self, vpc: &str) -> Result<Routes> {
        let mut routes = Routes::default();
        if vpc.is_empty() {
            return Ok(routes);
        }
        let mut pages = self
            .ec2
            .describe_route_tables()
            .filters(filter("vpc-id", &[vpc]))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk("read", format!("route tables of VPC {vpc}")))?;
            for table in page.route_tables() {
                let igw = table
                    .routes()
                    .iter()
                    .filter(|r| {
                        r.destination_cidr_block() == Some("0.0.0.0/0")
                            || r.destination_ipv6_cidr_block() == Some("::/0")
                    })
                    .filter(|r| r.state().is_none_or(|s| s.as_str() != "blackhole"))
                    .find_map(|r| r.gateway_id().filter(|g| g.starts_with("igw-")))
                    .map(str::to_owned);
                for a in table.associations() {
                    if a.main() == Some(true) {
                        routes.main.clone_from(&igw);
                    } else if let Some(subnet) = a.subnet_id() {
                        routes.explicit.insert(subnet.to_owned(), igw.clone());
                    }
                }
            }
        }
        Ok(routes)
    }

    /// The node subnets where nodes could reach the internet around the proxy: a
    /// public IP on launch, or a route to an internet gateway. Each listed subnet is
    /// named (`ec2.subnets[i]`); discovered ones are reported together.
    fn egress_problems(&self, subnets: &[Candidate], routes: &Routes) -> Vec<SpecProblem> {
        let s = &self.settings;
        let why = |id: &str, public: bool| -> Option<String> {
            let igw = routes.internet_gateway(id);
            let mut parts = Vec::new();
            if public {
                parts.push("gives instances a public IP on launch".to_owned());
            }
            if let Some(igw) = igw {
                parts.push(format!("routes 0.0.0.0/0 to internet gateway {igw}"));
            }
            (!parts.is_empty()).then(|| parts.join(" and "))
        };
        const ALLOW: &str = "or set `allow_direct_egress = true` in [ec2] to accept it \
                             (nodes still get no public IP)";
        if s.subnets.is_empty() {
            let direct: Vec<String> = subnets
                .iter()
                .filter_map(|(zone, id, _, public)| {
                    why(id, *public).map(|w| format!("`{id}` ({zone}) {w}"))
                })
                .collect();
            if direct.is_empty() {
                return Vec::new();
            }
            let (field, whose) = match &s.vpc {
                Some(v) => ("ec2.vpc", format!("VPC {v}")),
                None => ("ec2.subnets", "the default VPC".to_owned()),
            };
            return vec![problem(
                field.into(),
                format!(
                    "{} triad would use {whose}, whose subnets are public: {}; nodes would \
                     bypass the proxy",
                    if s.vpc.is_some() {
                        "is given, so"
                    } else {
                        "is empty, so"
                    },
                    direct.join("; ")
                ),
                format!(
                    "list private subnets (one per zone, no internet gateway route, internet \
                     only through the proxy) in ec2.subnets, {ALLOW}"
                ),
            )];
        }
        subnets
            .iter()
            .filter_map(|(zone, id, _, public)| {
                let w = why(id, *public)?;
                let i = s.subnets.iter().position(|x| x == id)?;
                Some(problem(
                    format!("ec2.subnets[{i}]"),
                    format!("subnet `{id}` ({zone}) {w}: nodes would bypass the proxy"),
                    format!(
                        "use a private subnet of {zone} (internet only through the proxy), {ALLOW}"
                    ),
                ))
            })
            .collect()
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
        Ok(cidrs_of(out.vpcs()))
    }
}
