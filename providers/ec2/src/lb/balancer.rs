//! The balancer itself (an NLB or an ALB, and an ALB's internal companion NLB for
//! the registration ports), and the 80/443 (and registration) rules of its security
//! group and of the nodes' group behind it.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer as AwsLb, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::LoadBalancerRequest;
use triad_core::spec::{ClusterRef, LbMode, LbScheme};

use super::found::{elb_tags, mode_of, scheme_of};
use super::listeners::companion_ports;
use crate::error::{fail, AwsError};
use crate::network::{Rule, Source, PART};
use crate::Ec2;

/// The names the cluster's balancers take: the cluster's own, and `<cluster>-b`, the
/// name core's plan gives a new balancer made beside one named like the cluster (a
/// mode or scheme change; the two names take turns).
pub(super) fn balancer_names(cluster: &ClusterRef) -> [String; 2] {
    [cluster.name.clone(), format!("{}-b", cluster.name)]
}

/// The `triad-part` tag of an ALB's companion NLB.
pub(super) const COMPANION_PART: &str = "registration";

/// The name of the internal NLB beside the ALB `lb` that serves the Kubernetes
/// registration ports (an ALB has no TCP listeners): `<lb>-reg`, 30 characters at
/// most (`<24-character cluster>-b-reg`), within ELBv2's 32. Internal whatever the
/// spec's scheme: only the nodes dial it.
pub(super) fn companion_name(lb: &str) -> String {
    format!("{lb}-reg")
}

/// What a balancer is to be.
struct Shape<'a> {
    name: &'a str,
    mode: LbMode,
    scheme: LbScheme,
    /// Its tags, `Name` included.
    tags: BTreeMap<String, String>,
}

/// The part of the balancer `lb`'s own security group (`<cluster>-<part>`): `nlb` or
/// `alb` for the balancer named like the cluster, `b-nlb` or `b-alb` for
/// `<cluster>-b`, so two balancers side by side never share a group.
pub(super) fn sg_part(cluster: &ClusterRef, lb: &str, mode: LbMode) -> String {
    let kind = match mode {
        LbMode::L4 => "nlb",
        LbMode::L7 => "alb",
    };
    match lb
        .strip_prefix(cluster.name.as_str())
        .and_then(|r| r.strip_prefix('-'))
    {
        Some(suffix) if !suffix.is_empty() => format!("{suffix}-{kind}"),
        _ => kind.to_owned(),
    }
}

impl Ec2 {
    /// The security groups of the cluster's other balancer (the old or new one of a
    /// mode change), if it exists: the nodes' rules from them are its, not `lb`'s.
    async fn other_balancer_groups(
        &self,
        cluster: &ClusterRef,
        lb: &str,
    ) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for name in balancer_names(cluster).iter().filter(|n| *n != lb) {
            if let Some((other, _)) = self.lb_named(cluster, name).await? {
                out.extend(other.security_groups().iter().cloned());
            }
        }
        Ok(out)
    }

    /// The 80/443 rules. Every balancer has its own security group that admits
    /// `ingress` (`<cluster>-nlb` for l4, `<cluster>-alb` for l7, see [`sg_part`]),
    /// and the nodes' group admits 80/443 (l4) or 80 (l7) from that group only (and,
    /// during a mode change, from the other balancer's until it is deleted), so the
    /// nodes are
    /// never open to the internet themselves, even though an NLB keeps the clients'
    /// addresses. The registration ports (9345, 6443): the balancer's group admits
    /// them from the VPC's CIDRs only, and the nodes' group from the balancer's
    /// group; in l7 the ALB's companion NLB shares the ALB's group. An NLB made
    /// without a security group (by an older triad) cannot
    /// get one: for it the nodes' group admits `ingress` itself, with a warning.
    /// Returns the balancer's group, for a new balancer.
    pub(super) async fn web_rules(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<Option<String>> {
        let net = self.network().await?;
        let ingress: Vec<String> = match (&self.settings.ingress_cidrs, request.scheme) {
            (Some(c), _) => c.clone(),
            (None, LbScheme::InternetFacing) => vec!["0.0.0.0/0".into()],
            (None, LbScheme::Internal) => net.vpc_cidrs.clone(),
        };
        let nodes_sg = self.ensure_group(cluster, "nodes").await?;
        let nodes_id = nodes_sg.group_id().unwrap_or_default().to_owned();
        let part = sg_part(cluster, &request.name, request.mode);
        let node_ports = match request.mode {
            LbMode::L4 => &[80, 443][..],
            LbMode::L7 => &[80][..],
        };
        let others = self.other_balancer_groups(cluster, &request.name).await?;
        let scope = |r: &Rule| {
            r.is_web(&nodes_id) && !matches!(&r.source, Source::Group(g) if others.contains(g))
        };
        if request.mode == LbMode::L4 {
            let existing = self.lb_named(cluster, &request.name).await?;
            if existing
                .as_ref()
                .is_some_and(|(lb, _)| lb.security_groups().is_empty())
            {
                tracing::warn!(
                    lb = request.name,
                    "the NLB has no security group (made by an older triad): the nodes' \
                     security group admits {} on 80/443 itself; delete the balancer and apply \
                     to give it one",
                    ingress.join(", ")
                );
                let mut want = BTreeSet::new();
                for port in [80, 443] {
                    for c in ingress.iter().chain(&net.vpc_cidrs) {
                        want.insert(Rule::tcp(port, Source::Cidr(c.clone())));
                    }
                }
                // Registration and API ports: only from inside the VPC (the NLB
                // keeps client addresses), never from the internet.
                for &port in &request.registration_ports {
                    for c in &net.vpc_cidrs {
                        want.insert(Rule::tcp(i32::from(port), Source::Cidr(c.clone())));
                    }
                }
                self.converge_rules(&nodes_sg, &want, scope).await?;
                return Ok(None);
            }
        }
        let lb_sg = self.ensure_group(cluster, &part).await?;
        let lb_id = lb_sg.group_id().unwrap_or_default().to_owned();
        let mut want = BTreeSet::new();
        for port in [80, 443] {
            for c in &ingress {
                want.insert(Rule::tcp(port, Source::Cidr(c.clone())));
            }
        }
        // Registration and API ports (RKE2 9345, 6443): the balancer (in l7 its
        // companion NLB, which shares the group) takes them only from inside the VPC,
        // never from the internet.
        let registration = companion_ports(request);
        for &port in &registration {
            for c in &net.vpc_cidrs {
                want.insert(Rule::tcp(port, Source::Cidr(c.clone())));
            }
        }
        self.converge_rules(&lb_sg, &want, |_| true).await?;
        let nodes_want: BTreeSet<Rule> = node_ports
            .iter()
            .copied()
            .chain(registration)
            .map(|p| Rule::tcp(p, Source::Group(lb_id.clone())))
            .collect();
        self.converge_rules(&nodes_sg, &nodes_want, scope).await?;
        Ok(Some(lb_id))
    }

    /// The cluster's balancer named in `request`, made (with `lb_sg`) if there is
    /// none, with its tags. One of another mode or scheme is a conflict.
    pub(super) async fn ensure_lb(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        lb_sg: Option<&str>,
    ) -> Result<(AwsLb, BTreeMap<String, String>)> {
        let mut tags = request.labels.clone();
        tags.insert("Name".into(), request.name.clone());
        let shape = Shape {
            name: &request.name,
            mode: request.mode,
            scheme: request.scheme,
            tags,
        };
        self.ensure_shape(cluster, request, shape, lb_sg).await
    }

    /// The ALB's companion: an internal NLB ([`companion_name`]) in the ALB's
    /// subnets, sharing its security group `lb_sg`, tagged like the balancer's parts
    /// and `triad-part` = [`COMPANION_PART`]; made if there is none. With its tags.
    pub(super) async fn ensure_companion(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        lb_sg: Option<&str>,
    ) -> Result<(AwsLb, BTreeMap<String, String>)> {
        let name = companion_name(&request.name);
        let mut tags = request.labels.clone();
        tags.insert("Name".into(), name.clone());
        tags.insert(PART.into(), COMPANION_PART.into());
        let shape = Shape {
            name: &name,
            mode: LbMode::L4,
            scheme: LbScheme::Internal,
            tags,
        };
        self.ensure_shape(cluster, request, shape, lb_sg).await
    }

    /// The cluster's balancer of `shape`, made in the subnets of the request's
    /// zones if there is none, with its tags.
    async fn ensure_shape(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        shape: Shape<'_>,
        lb_sg: Option<&str>,
    ) -> Result<(AwsLb, BTreeMap<String, String>)> {
        let resource = format!("load balancer {}", shape.name);
        if let Some((lb, tags)) = self.lb_named(cluster, shape.name).await? {
            if mode_of(&lb) != shape.mode || scheme_of(&lb) != shape.scheme {
                return Err(fail(
                    "create",
                    resource,
                    FailureKind::Conflict,
                    format!(
                        "the cluster's balancer {} is {} {}, it should be {} {}: delete it first",
                        shape.name,
                        mode_of(&lb),
                        scheme_of(&lb),
                        shape.mode,
                        shape.scheme
                    ),
                ));
            }
            return Ok((lb, tags));
        }
        let net = self.network().await?;
        let mut subnets = Vec::new();
        // No zones asked for: every zone the nodes may use.
        let zones: Vec<String> = if request.zones.is_empty() {
            net.node_subnets.iter().map(|(z, _)| z.clone()).collect()
        } else {
            request.zones.clone()
        };
        for zone in &zones {
            match net.lb_subnet(zone) {
                Some(s) => subnets.push(s.to_owned()),
                None => {
                    return Err(Error::invalid(
                        if self.settings.lb_subnets.is_empty() {
                            "ec2.subnets"
                        } else {
                            "ec2.lb_subnets"
                        },
                        format!("has no subnet in zone {zone}, where nodes are"),
                        "give the balancer a subnet in every zone of the nodes",
                    ))
                }
            }
        }
        let (kind, scheme) = (
            match shape.mode {
                LbMode::L4 => LoadBalancerTypeEnum::Network,
                LbMode::L7 => LoadBalancerTypeEnum::Application,
            },
            match shape.scheme {
                LbScheme::InternetFacing => LoadBalancerSchemeEnum::InternetFacing,
                LbScheme::Internal => LoadBalancerSchemeEnum::Internal,
            },
        );
        let out = self
            .elb
            .create_load_balancer()
            .name(shape.name)
            .r#type(kind)
            .scheme(scheme)
            .set_subnets(Some(subnets))
            .set_security_groups(lb_sg.map(|s| vec![s.to_owned()]))
            .set_tags(Some(elb_tags(&shape.tags)))
            .send()
            .await;
        match out {
            Ok(out) => {
                let lb = out.load_balancers().first().cloned().ok_or_else(|| {
                    fail(
                        "create",
                        &resource,
                        FailureKind::Other,
                        "CreateLoadBalancer returned nothing",
                    )
                })?;
                tracing::info!(
                    lb = shape.name,
                    arn = lb.load_balancer_arn(),
                    "created load balancer"
                );
                Ok((lb, shape.tags))
            }
            Err(e) => {
                let e = AwsError::from_sdk(e);
                if e.is("DuplicateLoadBalancerName") {
                    return Err(fail(
                        "create",
                        resource,
                        FailureKind::Conflict,
                        format!(
                            "a load balancer named {} exists without the tags of cluster {}; \
                             triad does not take over balancers it did not make",
                            shape.name, cluster.name
                        ),
                    ));
                }
                Err(e.into_error("create", resource))
            }
        }
    }

    /// Delete the balancer `lb` (its listeners with it) and wait until it is gone;
    /// gone already is fine. Returns what was deleted, for the report.
    pub(super) async fn delete_lb(&self, lb: &AwsLb) -> Result<String> {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let what = format!(
            "load balancer {} ({arn})",
            lb.load_balancer_name().unwrap_or("")
        );
        if let Err(e) = self
            .elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
        {
            let e = AwsError::from_sdk(e);
            if e.kind != FailureKind::NotFound {
                return Err(e.into_error("delete", what));
            }
        }
        self.wait_gone(arn, &what).await?;
        tracing::info!(arn, "deleted load balancer");
        Ok(what)
    }

    /// Wait until the balancer `arn` is gone.
    pub(super) async fn wait_gone(&self, arn: &str, what: &str) -> Result<()> {
        self.poll
            .until(self.cleanup_timeout, what, "deleted", || async {
                match self
                    .elb
                    .describe_load_balancers()
                    .load_balancer_arns(arn)
                    .send()
                    .await
                {
                    Ok(out) if out.load_balancers().is_empty() => Ok(Some(())),
                    Ok(_) => Ok(None),
                    Err(e) => {
                        let e = AwsError::from_sdk(e);
                        if e.kind == FailureKind::NotFound {
                            Ok(Some(()))
                        } else {
                            Err(e.into_error("wait for the deletion of", what))
                        }
                    }
                }
            })
            .await
    }
}
