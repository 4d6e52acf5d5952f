//! The balancer: an NLB (layer 4) or an ALB (layer 7), its target groups and
//! listeners, and the 80/443 rules on the security groups.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener as AwsListener, LoadBalancer as AwsLb,
    LoadBalancerSchemeEnum, LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum, Tag, TargetDescription, TargetGroup,
    TargetHealthStateEnum, TargetTypeEnum,
};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::model::{Endpoint, LbState, Listener, LoadBalancer, LoadBalancerRequest, Node};
use triad_core::provider::LoadBalancerProvider;
use triad_core::spec::{ClusterRef, LbMode, LbScheme, ValidSpec};

use crate::error::{fail, sdk, AwsError, PROVIDER};
use crate::network::{Rule, Source, PART};
use crate::Ec2;

/// Health check thresholds and timings from Rancher's NLB page.
pub const HEALTHY_THRESHOLD: i32 = 3;
/// Unhealthy threshold.
pub const UNHEALTHY_THRESHOLD: i32 = 3;
/// Health check timeout in seconds.
pub const HEALTH_TIMEOUT_SECS: i32 = 6;
/// Health check interval in seconds.
pub const HEALTH_INTERVAL_SECS: i32 = 10;

/// One target group the balancer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupSpec {
    /// `tcp-443`, `tcp-80`, `http-80`, `tcp9345`, `tcp6443` (no dash in the
    /// registration parts: `<24-character name>-tcp9345` is the 32 ELBv2 allows).
    pub part: String,
    pub protocol: ProtocolEnum,
    pub port: i32,
    /// A TCP health check on the traffic port (the Kubernetes registration
    /// ports) instead of HTTP on 80.
    pub tcp_check: bool,
}

impl GroupSpec {
    pub fn name(&self, lb: &str) -> String {
        format!("{lb}-{}", self.part)
    }
}

/// The target groups of a mode, then one TCP group per registration port (an NLB
/// only: an ALB has no TCP listeners, see [`registration_problem`]).
pub(crate) fn groups_for(mode: LbMode, registration: &[u16]) -> Vec<GroupSpec> {
    let web = |part: &str, protocol: ProtocolEnum, port: i32| GroupSpec {
        part: part.to_owned(),
        protocol,
        port,
        tcp_check: false,
    };
    let mut out = match mode {
        LbMode::L4 => vec![
            web("tcp-443", ProtocolEnum::Tcp, 443),
            web("tcp-80", ProtocolEnum::Tcp, 80),
        ],
        LbMode::L7 => vec![web("http-80", ProtocolEnum::Http, 80)],
    };
    if mode == LbMode::L4 {
        out.extend(registration.iter().map(|&p| GroupSpec {
            part: format!("tcp{p}"),
            protocol: ProtocolEnum::Tcp,
            port: i32::from(p),
            tcp_check: true,
        }));
    }
    out
}

/// The registration ports a discovered balancer serves (its TCP listeners beyond
/// 80/443).
fn registration_of(listeners: &[Listener]) -> Vec<u16> {
    listeners
        .iter()
        .filter(|l| l.protocol == "TCP" && l.port != 80 && l.port != 443)
        .map(|l| l.port)
        .collect()
}

/// EC2 cannot give an l7 balancer the registration listeners: an ALB has no TCP
/// listeners, and the Rancher hostname points at the ALB, so a companion NLB would
/// need an address of its own that the nodes' user data cannot know. Refused at
/// plan, naming the field.
pub(crate) fn registration_problem(spec: &ValidSpec) -> Option<triad_core::error::SpecProblem> {
    (spec.load_balancer.mode == LbMode::L7 && !spec.registration_ports().is_empty()).then(|| {
        triad_core::error::SpecProblem {
            field: "load_balancer.registration".into(),
            problem: "is `balancer`, but an EC2 application load balancer (l7) cannot pass TCP 9345/6443 through".into(),
            fix: "use mode = \"l4\" (an NLB carries 80, 443, 9345 and 6443), or registration = \"first-node\" with kubernetes.install = false".into(),
        }
    })
}

fn elb_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Whether the tags mark a resource of `cluster`'s balancer.
fn owned(tags: &[Tag], cluster: &str) -> bool {
    let get = |k: &str| {
        tags.iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
    };
    get(labels::CLUSTER) == Some(cluster) && get(labels::ROLE) == Some(Role::Lb.as_str())
}

fn mode_of(lb: &AwsLb) -> LbMode {
    match lb.r#type() {
        Some(LoadBalancerTypeEnum::Application) => LbMode::L7,
        _ => LbMode::L4,
    }
}

fn scheme_of(lb: &AwsLb) -> LbScheme {
    match lb.scheme() {
        Some(LoadBalancerSchemeEnum::Internal) => LbScheme::Internal,
        _ => LbScheme::InternetFacing,
    }
}

fn state_of(lb: &AwsLb) -> LbState {
    match lb.state().and_then(|s| s.code()) {
        Some(LoadBalancerStateEnum::Active | LoadBalancerStateEnum::ActiveImpaired) => {
            LbState::Active
        }
        Some(LoadBalancerStateEnum::Failed) => LbState::Failed,
        _ => LbState::Provisioning,
    }
}

fn endpoint_of(lb: &AwsLb) -> Option<Endpoint> {
    let name = lb.dns_name()?.trim_end_matches('.').to_ascii_lowercase();
    Some(Endpoint::Hostname {
        name,
        alias_zone: lb.canonical_hosted_zone_id().map(str::to_owned),
    })
}

/// The listeners as triad sees them; a forward goes to the port of its target group.
fn listeners_of(listeners: &[AwsListener], groups: &[TargetGroup]) -> Vec<Listener> {
    let mut out: Vec<Listener> = listeners
        .iter()
        .map(|l| {
            let target_port = l
                .default_actions()
                .iter()
                .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
                .and_then(|a| a.target_group_arn())
                .and_then(|arn| groups.iter().find(|g| g.target_group_arn() == Some(arn)))
                .and_then(|g| g.port())
                .and_then(|p| u16::try_from(p).ok());
            Listener {
                port: l.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                protocol: l
                    .protocol()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                target_port,
            }
        })
        .collect();
    out.sort_by_key(|l| l.port);
    out
}

/// The targets as triad reports them: the instance ids when every target group has
/// the same ones; otherwise each group's targets qualified by the group's name, which
/// never equals a list of nodes, so the orchestrator converges them.
pub(crate) fn targets_of(per_group: &[(String, BTreeSet<String>)]) -> Vec<String> {
    match per_group.first() {
        None => Vec::new(),
        Some((_, first)) if per_group.iter().all(|(_, s)| s == first) => {
            first.iter().cloned().collect()
        }
        Some(_) => {
            let mut v: Vec<String> = per_group
                .iter()
                .flat_map(|(g, s)| s.iter().map(move |id| format!("{g}:{id}")))
                .collect();
            v.sort();
            v
        }
    }
}

/// What was found of the cluster's balancer.
struct Found {
    lb: AwsLb,
    groups: Vec<TargetGroup>,
    listeners: Vec<AwsListener>,
}

impl Ec2 {
    /// Every resource ARN in `arns` whose tags mark it as the cluster's balancer part.
    async fn owned_arns(&self, arns: Vec<String>, cluster: &str) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for chunk in arns.chunks(20) {
            let tags = self
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await;
            let tags = match tags {
                Ok(t) => t,
                Err(e) => {
                    let e = AwsError::from_sdk(e);
                    // Deleted between the listing and now.
                    if e.kind == FailureKind::NotFound {
                        continue;
                    }
                    return Err(
                        e.into_error("read tags of", format!("balancer parts of {cluster}"))
                    );
                }
            };
            for d in tags.tag_descriptions() {
                if owned(d.tags(), cluster) {
                    out.extend(d.resource_arn().map(str::to_owned));
                }
            }
        }
        Ok(out)
    }

    /// The cluster's balancers (normally one), oldest first.
    async fn owned_lbs(&self, cluster: &ClusterRef) -> Result<Vec<AwsLb>> {
        let mut all = Vec::new();
        let mut pages = self.elb.describe_load_balancers().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk("list", "load balancers"))?;
            all.extend(page.load_balancers().iter().cloned());
        }
        let arns = all
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_owned))
            .collect();
        let mine = self.owned_arns(arns, &cluster.name).await?;
        let mut out: Vec<AwsLb> = all
            .into_iter()
            .filter(|l| l.load_balancer_arn().is_some_and(|a| mine.contains(a)))
            .collect();
        out.sort_by_key(|l| {
            (
                l.created_time().map(|t| t.as_nanos()),
                l.load_balancer_arn().map(str::to_owned),
            )
        });
        Ok(out)
    }

    /// The cluster's target groups.
    async fn owned_groups_elb(&self, cluster: &ClusterRef) -> Result<Vec<TargetGroup>> {
        let mut all = Vec::new();
        let mut pages = self.elb.describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk("list", "target groups"))?;
            all.extend(page.target_groups().iter().cloned());
        }
        let arns = all
            .iter()
            .filter_map(|g| g.target_group_arn().map(str::to_owned))
            .collect();
        let mine = self.owned_arns(arns, &cluster.name).await?;
        Ok(all
            .into_iter()
            .filter(|g| g.target_group_arn().is_some_and(|a| mine.contains(a)))
            .collect())
    }

    async fn listeners(&self, lb_arn: &str) -> Result<Vec<AwsListener>> {
        let out = self
            .elb
            .describe_listeners()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map_err(sdk("list listeners of", lb_arn))?;
        Ok(out.listeners().to_vec())
    }

    /// Registered (not draining) instance ids of a target group.
    async fn group_targets(&self, arn: &str) -> Result<BTreeSet<String>> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(sdk("list targets of", arn))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter(|d| {
                d.target_health().and_then(|h| h.state()) != Some(&TargetHealthStateEnum::Draining)
            })
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_owned))
            .collect())
    }

    /// The groups of `found` that belong to its balancer's mode, by part, in order.
    fn mode_groups<'a>(&self, found: &'a Found) -> Vec<&'a TargetGroup> {
        let name = found.lb.load_balancer_name().unwrap_or_default();
        let registration = registration_of(&listeners_of(&found.listeners, &found.groups));
        groups_for(mode_of(&found.lb), &registration)
            .iter()
            .filter_map(|s| {
                let want = s.name(name);
                found
                    .groups
                    .iter()
                    .find(|g| g.target_group_name() == Some(want.as_str()))
            })
            .collect()
    }

    async fn model(&self, found: &Found) -> Result<LoadBalancer> {
        let mut per_group = Vec::new();
        for g in self.mode_groups(found) {
            let arn = g.target_group_arn().unwrap_or_default();
            per_group.push((
                g.target_group_name().unwrap_or_default().to_owned(),
                self.group_targets(arn).await?,
            ));
        }
        Ok(LoadBalancer {
            id: found.lb.load_balancer_arn().unwrap_or_default().to_owned(),
            name: found.lb.load_balancer_name().unwrap_or_default().to_owned(),
            mode: mode_of(&found.lb),
            scheme: scheme_of(&found.lb),
            state: state_of(&found.lb),
            endpoint: endpoint_of(&found.lb),
            listeners: listeners_of(&found.listeners, &found.groups),
            targets: targets_of(&per_group),
            labels: Default::default(),
            partial_targets: Vec::new(),
        })
    }

    async fn find(&self, cluster: &ClusterRef) -> Result<Option<Found>> {
        let lbs = self.owned_lbs(cluster).await?;
        let Some(lb) = lbs.into_iter().next() else {
            return Ok(None);
        };
        let groups = self.owned_groups_elb(cluster).await?;
        let listeners = self
            .listeners(lb.load_balancer_arn().unwrap_or_default())
            .await?;
        Ok(Some(Found {
            lb,
            groups,
            listeners,
        }))
    }

    /// The 80/443 rules. Every balancer has its own security group that admits
    /// `ingress` (`<cluster>-nlb` for l4, `<cluster>-alb` for l7), and the nodes'
    /// group admits 80/443 (l4) or 80 (l7) from that group only, so the nodes are
    /// never open to the internet themselves, even though an NLB keeps the clients'
    /// addresses. An NLB made without a security group (by an older triad) cannot
    /// get one: for it the nodes' group admits `ingress` itself, with a warning.
    /// Returns the balancer's group, for a new balancer.
    async fn web_rules(
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
        let (part, node_ports) = match request.mode {
            LbMode::L4 => ("nlb", &[80, 443][..]),
            LbMode::L7 => ("alb", &[80][..]),
        };
        if request.mode == LbMode::L4 {
            let existing = self.owned_lbs(cluster).await?;
            if existing
                .first()
                .is_some_and(|lb| lb.security_groups().is_empty())
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
                let nodes_id = nodes_sg.group_id().unwrap_or_default().to_owned();
                self.converge_rules(&nodes_sg, &want, |r| r.is_web(&nodes_id))
                    .await?;
                return Ok(None);
            }
        }
        let lb_sg = self.ensure_group(cluster, part).await?;
        let lb_id = lb_sg.group_id().unwrap_or_default().to_owned();
        let mut want = BTreeSet::new();
        for port in [80, 443] {
            for c in &ingress {
                want.insert(Rule::tcp(port, Source::Cidr(c.clone())));
            }
        }
        // Registration and API ports (RKE2 9345, 6443): the balancer takes them only
        // from inside the VPC, never from the internet.
        let registration: Vec<i32> = match request.mode {
            LbMode::L4 => request
                .registration_ports
                .iter()
                .map(|&p| i32::from(p))
                .collect(),
            LbMode::L7 => Vec::new(),
        };
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
        let nodes_id = nodes_sg.group_id().unwrap_or_default().to_owned();
        self.converge_rules(&nodes_sg, &nodes_want, |r| r.is_web(&nodes_id))
            .await?;
        Ok(Some(lb_id))
    }

    async fn ensure_lb(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        lb_sg: Option<&str>,
    ) -> Result<AwsLb> {
        let resource = format!("load balancer {}", request.name);
        if let Some(lb) = self.owned_lbs(cluster).await?.into_iter().next() {
            if mode_of(&lb) != request.mode || scheme_of(&lb) != request.scheme {
                return Err(fail(
                    "create",
                    resource,
                    FailureKind::Conflict,
                    format!(
                        "the cluster's balancer is {} {}, the request is {} {}: delete it first",
                        mode_of(&lb),
                        scheme_of(&lb),
                        request.mode,
                        request.scheme
                    ),
                ));
            }
            return Ok(lb);
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
        let mut tags = request.labels.clone();
        tags.insert("Name".into(), request.name.clone());
        let (kind, scheme) = (
            match request.mode {
                LbMode::L4 => LoadBalancerTypeEnum::Network,
                LbMode::L7 => LoadBalancerTypeEnum::Application,
            },
            match request.scheme {
                LbScheme::InternetFacing => LoadBalancerSchemeEnum::InternetFacing,
                LbScheme::Internal => LoadBalancerSchemeEnum::Internal,
            },
        );
        let out = self
            .elb
            .create_load_balancer()
            .name(&request.name)
            .r#type(kind)
            .scheme(scheme)
            .set_subnets(Some(subnets))
            .set_security_groups(lb_sg.map(|s| vec![s.to_owned()]))
            .set_tags(Some(elb_tags(&tags)))
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
                    lb = request.name,
                    arn = lb.load_balancer_arn(),
                    "created load balancer"
                );
                Ok(lb)
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
                            request.name, cluster.name
                        ),
                    ));
                }
                Err(e.into_error("create", resource))
            }
        }
    }

    async fn ensure_group_elb(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        spec: &GroupSpec,
        owned: &[TargetGroup],
    ) -> Result<TargetGroup> {
        let net = self.network().await?;
        let name = spec.name(&request.name);
        let resource = format!("target group {name}");
        let path = request.health_check_path.clone();
        // Registration ports: a TCP check on the traffic port (RKE2 answers TLS
        // there, not an HTTP path); web ports: HTTP on 80 at the ingress's path.
        let (hc_protocol, hc_port, hc_path) = if spec.tcp_check {
            (ProtocolEnum::Tcp, "traffic-port", None)
        } else {
            (ProtocolEnum::Http, "80", Some(path.clone()))
        };
        if let Some(g) = owned
            .iter()
            .find(|g| g.target_group_name() == Some(name.as_str()))
        {
            let healthy = (spec.tcp_check || g.health_check_path() == Some(path.as_str()))
                && g.health_check_port() == Some(hc_port)
                && g.health_check_protocol() == Some(&hc_protocol)
                && g.healthy_threshold_count() == Some(HEALTHY_THRESHOLD)
                && g.unhealthy_threshold_count() == Some(UNHEALTHY_THRESHOLD)
                && g.health_check_interval_seconds() == Some(HEALTH_INTERVAL_SECS)
                && g.health_check_timeout_seconds() == Some(HEALTH_TIMEOUT_SECS);
            if !healthy {
                let arn = g.target_group_arn().unwrap_or_default();
                self.elb
                    .modify_target_group()
                    .target_group_arn(arn)
                    .health_check_protocol(hc_protocol.clone())
                    .health_check_port(hc_port)
                    .set_health_check_path(hc_path.clone())
                    .healthy_threshold_count(HEALTHY_THRESHOLD)
                    .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
                    .health_check_interval_seconds(HEALTH_INTERVAL_SECS)
                    .health_check_timeout_seconds(HEALTH_TIMEOUT_SECS)
                    .send()
                    .await
                    .map_err(sdk("update the health check of", &resource))?;
            }
            return Ok(g.clone());
        }
        let mut tags = request.labels.clone();
        tags.insert("Name".into(), name.clone());
        tags.insert(PART.into(), spec.part.clone());
        let out = self
            .elb
            .create_target_group()
            .name(&name)
            .protocol(spec.protocol.clone())
            .port(spec.port)
            .vpc_id(&net.vpc_id)
            .target_type(TargetTypeEnum::Instance)
            .health_check_enabled(true)
            .health_check_protocol(hc_protocol)
            .health_check_port(hc_port)
            .set_health_check_path(hc_path)
            .healthy_threshold_count(HEALTHY_THRESHOLD)
            .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
            .health_check_interval_seconds(HEALTH_INTERVAL_SECS)
            .health_check_timeout_seconds(HEALTH_TIMEOUT_SECS)
            .set_tags(Some(elb_tags(&tags)))
            .send()
            .await;
        match out {
            Ok(out) => {
                tracing::info!(group = name, "created target group");
                out.target_groups().first().cloned().ok_or_else(|| {
                    fail(
                        "create",
                        &resource,
                        FailureKind::Other,
                        "CreateTargetGroup returned nothing",
                    )
                })
            }
            Err(e) => {
                let e = AwsError::from_sdk(e);
                if e.is("DuplicateTargetGroupName") {
                    return Err(fail(
                        "create",
                        resource,
                        FailureKind::Conflict,
                        format!(
                            "a target group named {name} exists without the tags of cluster {}; \
                             triad does not take over groups it did not make",
                            cluster.name
                        ),
                    ));
                }
                Err(e.into_error("create", resource))
            }
        }
    }

    /// The default action a listener of `port` needs.
    fn listener_action(mode: LbMode, port: i32, groups: &[(GroupSpec, TargetGroup)]) -> Action {
        let forward_to = |p: i32| {
            let arn = groups
                .iter()
                .find(|(s, _)| s.port == p)
                .and_then(|(_, g)| g.target_group_arn())
                .unwrap_or_default();
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(arn)
                .build()
        };
        match (mode, port) {
            (LbMode::L4, p) => forward_to(p),
            (LbMode::L7, 443) => forward_to(80),
            (LbMode::L7, _) => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .protocol("HTTPS")
                        .port("443")
                        .status_code(RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build(),
        }
    }

    async fn ensure_listeners(
        &self,
        lb: &AwsLb,
        request: &LoadBalancerRequest,
        groups: &[(GroupSpec, TargetGroup)],
    ) -> Result<()> {
        let lb_arn = lb.load_balancer_arn().unwrap_or_default();
        let have = self.listeners(lb_arn).await?;
        let registration: Vec<i32> = match request.mode {
            LbMode::L4 => request
                .registration_ports
                .iter()
                .map(|&p| i32::from(p))
                .collect(),
            LbMode::L7 => Vec::new(),
        };
        for port in [80, 443].into_iter().chain(registration) {
            let protocol = match (request.mode, port) {
                (LbMode::L4, _) => ProtocolEnum::Tcp,
                (LbMode::L7, 443) => ProtocolEnum::Https,
                (LbMode::L7, _) => ProtocolEnum::Http,
            };
            let action = Self::listener_action(request.mode, port, groups);
            let tls = request.mode == LbMode::L7 && port == 443;
            let cert = request.certificate.clone().filter(|_| tls);
            if tls && cert.is_none() {
                return Err(Error::invalid(
                    "load_balancer.certificate",
                    "is missing; a layer 7 balancer terminates TLS",
                    "set the ARN of an ACM certificate of the region",
                ));
            }
            let resource = format!("listener {port} of load balancer {}", request.name);
            let existing = have.iter().find(|l| l.port() == Some(port));
            let map_cert = |e: AwsError| -> Error {
                if e.is("CertificateNotFound") || e.is("CertificateNotFoundException") {
                    Error::invalid(
                        "load_balancer.certificate",
                        format!(
                            "`{}` is not a certificate this account can use in {}: {}",
                            cert.as_deref().unwrap_or(""),
                            self.region,
                            e.message
                        ),
                        "use the ARN of an issued ACM certificate of this account and region",
                    )
                } else {
                    e.into_error(
                        if existing.is_some() {
                            "update"
                        } else {
                            "create"
                        },
                        resource.clone(),
                    )
                }
            };
            match existing {
                Some(l) => {
                    let same_action = l.default_actions().len() == 1
                        && l.default_actions()[0].r#type() == action.r#type()
                        && l.default_actions()[0].target_group_arn() == action.target_group_arn()
                        && l.default_actions()[0]
                            .redirect_config()
                            .map(|r| (r.protocol(), r.port()))
                            == action.redirect_config().map(|r| (r.protocol(), r.port()));
                    let same_cert = !tls
                        || l.certificates()
                            .iter()
                            .any(|c| c.certificate_arn() == cert.as_deref());
                    let same_policy = !tls || l.ssl_policy() == Some(self.settings.ssl_policy());
                    if l.protocol() == Some(&protocol) && same_action && same_cert && same_policy {
                        continue;
                    }
                    let mut m = self
                        .elb
                        .modify_listener()
                        .listener_arn(l.listener_arn().unwrap_or_default())
                        .protocol(protocol)
                        .port(port)
                        .default_actions(action);
                    if let Some(c) = &cert {
                        m = m
                            .certificates(Certificate::builder().certificate_arn(c).build())
                            .ssl_policy(self.settings.ssl_policy());
                    }
                    if let Err(e) = m.send().await {
                        return Err(map_cert(AwsError::from_sdk(e)));
                    }
                }
                None => {
                    let mut c = self
                        .elb
                        .create_listener()
                        .load_balancer_arn(lb_arn)
                        .protocol(protocol)
                        .port(port)
                        .default_actions(action)
                        .set_tags(Some(elb_tags(&request.labels)));
                    if let Some(cert) = &cert {
                        c = c
                            .certificates(Certificate::builder().certificate_arn(cert).build())
                            .ssl_policy(self.settings.ssl_policy());
                    }
                    match c.send().await {
                        Ok(_) => tracing::info!(lb = request.name, port, "created listener"),
                        Err(e) => {
                            let e = AwsError::from_sdk(e);
                            if !e.is("DuplicateListener") {
                                return Err(map_cert(e));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn wait_gone(&self, arn: &str, what: &str) -> Result<()> {
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

#[async_trait]
impl LoadBalancerProvider for Ec2 {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec)
    }

    fn plan_warnings(&self, spec: &ValidSpec) -> Vec<String> {
        let lb = &spec.load_balancer;
        if lb.mode != LbMode::L4 || lb.scheme != LbScheme::InternetFacing {
            return Vec::new();
        }
        let ingress = match &self.settings.ingress_cidrs {
            Some(c) => c.join(", "),
            None => "0.0.0.0/0".to_owned(),
        };
        vec![format!(
            "the internet-facing NLB passes client addresses through to the nodes: its own \
             security group admits {ingress} on 80/443, and the nodes' group admits 80/443 \
             only from that group (narrow it with ec2.ingress_cidrs)"
        )]
    }

    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        match self.find(cluster).await? {
            Some(found) => Ok(Some(self.model(&found).await?)),
            None => Ok(None),
        }
    }

    async fn create_load_balancer(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        if request.mode == LbMode::L7 {
            let cert = request.certificate.as_deref().unwrap_or("");
            if let Err((problem, fix)) = crate::settings::check_certificate_arn(cert, &self.region)
            {
                return Err(Error::invalid("load_balancer.certificate", problem, fix));
            }
        }
        let lb_sg = self.web_rules(cluster, request).await?;
        let lb = self.ensure_lb(cluster, request, lb_sg.as_deref()).await?;
        let owned = self.owned_groups_elb(cluster).await?;
        let mut groups = Vec::new();
        for spec in groups_for(request.mode, &request.registration_ports) {
            let g = self
                .ensure_group_elb(cluster, request, &spec, &owned)
                .await?;
            groups.push((spec, g));
        }
        self.ensure_listeners(&lb, request, &groups).await?;
        let found = Found {
            listeners: self
                .listeners(lb.load_balancer_arn().unwrap_or_default())
                .await?,
            groups: groups.into_iter().map(|(_, g)| g).collect(),
            lb,
        };
        self.model(&found).await
    }

    async fn wait_load_balancer(
        &self,
        _cluster: &ClusterRef,
        lb: &LoadBalancer,
        timeout: Duration,
    ) -> Result<LoadBalancer> {
        let resource = format!("load balancer {}", lb.name);
        let active = self
            .poll
            .until(timeout, &resource, "active", || async {
                let out = self
                    .elb
                    .describe_load_balancers()
                    .load_balancer_arns(&lb.id)
                    .send()
                    .await
                    .map_err(sdk("wait for", resource.clone()))?;
                let Some(found) = out.load_balancers().first() else {
                    return Ok(None);
                };
                match state_of(found) {
                    LbState::Active if found.dns_name().is_some() => Ok(Some(found.clone())),
                    LbState::Failed => Err(fail(
                        "wait for",
                        resource.clone(),
                        FailureKind::Other,
                        format!(
                            "the balancer failed to provision: {}",
                            found
                                .state()
                                .and_then(|s| s.reason())
                                .unwrap_or("no reason given")
                        ),
                    )),
                    _ => Ok(None),
                }
            })
            .await?;
        Ok(LoadBalancer {
            state: LbState::Active,
            endpoint: endpoint_of(&active),
            ..lb.clone()
        })
    }

    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let groups = self.owned_groups_elb(cluster).await?;
        let want: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let mut per_group = Vec::new();
        for spec in groups_for(lb.mode, &registration_of(&lb.listeners)) {
            let name = spec.name(&lb.name);
            let g = groups
                .iter()
                .find(|g| g.target_group_name() == Some(name.as_str()))
                .ok_or_else(|| {
                    fail(
                        "set targets of",
                        format!("load balancer {}", lb.name),
                        FailureKind::NotFound,
                        format!(
                            "target group {name} is missing; rerun apply to complete the balancer"
                        ),
                    )
                })?;
            let arn = g.target_group_arn().unwrap_or_default();
            let have = self.group_targets(arn).await?;
            let add: Vec<TargetDescription> = want
                .difference(&have)
                .map(|id| TargetDescription::builder().id(id).build())
                .collect();
            let remove: Vec<TargetDescription> = have
                .difference(&want)
                .map(|id| TargetDescription::builder().id(id).build())
                .collect();
            if !add.is_empty() {
                self.elb
                    .register_targets()
                    .target_group_arn(arn)
                    .set_targets(Some(add))
                    .send()
                    .await
                    .map_err(sdk("register targets in", format!("target group {name}")))?;
            }
            if !remove.is_empty() {
                if let Err(e) = self
                    .elb
                    .deregister_targets()
                    .target_group_arn(arn)
                    .set_targets(Some(remove))
                    .send()
                    .await
                {
                    let e = AwsError::from_sdk(e);
                    if e.kind != FailureKind::NotFound && !e.is("InvalidTarget") {
                        return Err(e.into_error(
                            "deregister targets from",
                            format!("target group {name}"),
                        ));
                    }
                }
            }
            per_group.push((name, want.clone()));
        }
        Ok(LoadBalancer {
            targets: targets_of(&per_group),
            ..lb.clone()
        })
    }

    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for lb in self.owned_lbs(cluster).await? {
            let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
            let what = format!(
                "load balancer {} ({arn})",
                lb.load_balancer_name().unwrap_or("")
            );
            // Deleting the balancer deletes its listeners.
            if let Err(e) = self
                .elb
                .delete_load_balancer()
                .load_balancer_arn(&arn)
                .send()
                .await
            {
                let e = AwsError::from_sdk(e);
                if e.kind != FailureKind::NotFound {
                    return Err(e.into_error("delete", what));
                }
            }
            self.wait_gone(&arn, &what).await?;
            tracing::info!(arn, "deleted load balancer");
            deleted.push(what);
        }
        for g in self.owned_groups_elb(cluster).await? {
            let arn = g.target_group_arn().unwrap_or_default().to_owned();
            let what = format!("target group {}", g.target_group_name().unwrap_or(&arn));
            self.poll
                .until(self.cleanup_timeout, &what, "deleted", || async {
                    match self
                        .elb
                        .delete_target_group()
                        .target_group_arn(&arn)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(Some(())),
                        Err(e) => {
                            let e = AwsError::from_sdk(e);
                            if e.kind == FailureKind::NotFound {
                                Ok(Some(()))
                            } else if e.is("ResourceInUse") {
                                Ok(None)
                            } else {
                                Err(e.into_error("delete", what.clone()))
                            }
                        }
                    }
                })
                .await?;
            tracing::info!(arn, "deleted target group");
            deleted.push(what);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_groups_follow_rancher_notes() {
        let l4 = groups_for(LbMode::L4, &[]);
        assert_eq!(
            l4.iter().map(|g| g.name("rancher")).collect::<Vec<_>>(),
            ["rancher-tcp-443", "rancher-tcp-80"]
        );
        assert!(l4.iter().all(|g| g.protocol == ProtocolEnum::Tcp));
        let l7 = groups_for(LbMode::L7, &[9345, 6443]);
        assert_eq!(l7.len(), 1);
        assert_eq!(
            (l7[0].protocol.clone(), l7[0].port),
            (ProtocolEnum::Http, 80)
        );
        let reg = groups_for(LbMode::L4, &[9345, 6443]);
        assert_eq!(
            reg.iter()
                .map(|g| (g.name("rancher"), g.tcp_check))
                .collect::<Vec<_>>(),
            [
                ("rancher-tcp-443".to_owned(), false),
                ("rancher-tcp-80".to_owned(), false),
                ("rancher-tcp9345".to_owned(), true),
                ("rancher-tcp6443".to_owned(), true)
            ]
        );
        // The longest cluster name still fits AWS's 32-character limit.
        let longest = "a".repeat(triad_core::spec::MAX_NAME_LEN);
        assert!(reg.iter().all(|g| g.name(&longest).len() <= 32));
        assert!(l4.iter().chain(&l7).all(|g| g.name(&longest).len() <= 32));
    }

    #[test]
    fn inconsistent_targets_never_look_converged() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        let same = [
            ("a".to_string(), s(&["i-1", "i-2"])),
            ("b".to_string(), s(&["i-1", "i-2"])),
        ];
        assert_eq!(targets_of(&same), ["i-1", "i-2"]);
        let differ = [
            ("a".to_string(), s(&["i-1", "i-2"])),
            ("b".to_string(), s(&["i-1"])),
        ];
        assert_eq!(targets_of(&differ), ["a:i-1", "a:i-2", "b:i-1"]);
        assert!(targets_of(&[]).is_empty());
    }

    #[test]
    fn l7_redirects_http_and_forwards_https_to_port_80() {
        let g = TargetGroup::builder()
            .target_group_arn("arn:tg")
            .port(80)
            .build();
        let groups = vec![(groups_for(LbMode::L7, &[])[0].clone(), g.clone())];
        let https = Ec2::listener_action(LbMode::L7, 443, &groups);
        assert_eq!(https.target_group_arn(), Some("arn:tg"));
        let http = Ec2::listener_action(LbMode::L7, 80, &groups);
        assert_eq!(http.r#type(), Some(&ActionTypeEnum::Redirect));
        let l = AwsListener::builder()
            .port(443)
            .protocol(ProtocolEnum::Https)
            .default_actions(https)
            .build();
        let r = AwsListener::builder()
            .port(80)
            .protocol(ProtocolEnum::Http)
            .default_actions(http)
            .build();
        assert_eq!(
            listeners_of(&[l, r], &[g]),
            [
                Listener {
                    port: 80,
                    protocol: "HTTP".into(),
                    target_port: None
                },
                Listener {
                    port: 443,
                    protocol: "HTTPS".into(),
                    target_port: Some(80)
                },
            ]
        );
    }
}
