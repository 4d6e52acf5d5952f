//! What exists of the cluster's balancer, seen as triad's [`LoadBalancer`] (mode,
//! scheme, state, endpoint, listeners, targets and tags), found with as few calls as
//! a plan can afford: the balancer by its name (an ALB's companion NLB with it), its
//! tags, its listeners (and the companion's) and the targets of one target group
//! (see [`TARGETS`]).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    ActionTypeEnum, Listener as AwsListener, LoadBalancer as AwsLb, LoadBalancerSchemeEnum,
    LoadBalancerStateEnum, LoadBalancerTypeEnum, ProtocolEnum, Tag, TargetGroup,
    TargetHealthStateEnum,
};
use triad_core::error::{FailureKind, Result};
use triad_core::labels::{self, Role};
use triad_core::model::{Endpoint, LbState, Listener, LoadBalancer};
use triad_core::spec::{ClusterRef, LbMode, LbScheme};

use super::balancer::companion_name;
use super::target_groups::{groups_for, registration_of};
use crate::error::{sdk, AwsError};
use crate::Ec2;

/// The balancer's tag naming (a digest of) the instance ids `set_targets` last made
/// the targets of **every** target group. It is written after the last group, so
/// discovery reads the targets of one group and compares: equal means every group
/// has them (a run that stopped between two groups leaves the tag behind), and it
/// spares a `DescribeTargetHealth` per group in each plan.
pub(super) const TARGETS: &str = "triad-targets";

/// The companion NLB's tag naming the ports of the listeners it was given (`9345,6443`
/// order aside: sorted), each TCP and forwarding to the target group of its port.
/// Written once they are made, so discovery needs no `DescribeListeners` for the
/// companion (issue 8's read budget for a no-op rerun); a companion without it
/// (a run that stopped before its listeners were done) has them read.
pub(super) const LISTENERS: &str = "triad-listeners";

/// The value of [`LISTENERS`] for a companion's listeners.
pub(super) fn listeners_tag(listeners: &[AwsListener]) -> String {
    let mut ports: Vec<i32> = listeners
        .iter()
        .filter(|l| l.protocol() == Some(&ProtocolEnum::Tcp) && forward_arn(l).is_some())
        .filter_map(|l| l.port())
        .collect();
    ports.sort_unstable();
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of [`TARGETS`] for a set of instance ids.
pub(super) fn targets_tag(ids: &BTreeSet<String>) -> String {
    triad_core::drift::encode(&ids.iter().cloned().collect::<Vec<_>>().join(","))
}

pub(super) fn elb_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub(super) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

/// Whether the tags mark a resource of `cluster`'s balancer.
pub(super) fn owned(tags: &[Tag], cluster: &str) -> bool {
    let get = |k: &str| {
        tags.iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
    };
    get(labels::CLUSTER) == Some(cluster) && get(labels::ROLE) == Some(Role::Lb.as_str())
}

pub(super) fn mode_of(lb: &AwsLb) -> LbMode {
    match lb.r#type() {
        Some(LoadBalancerTypeEnum::Application) => LbMode::L7,
        _ => LbMode::L4,
    }
}

pub(super) fn scheme_of(lb: &AwsLb) -> LbScheme {
    match lb.scheme() {
        Some(LoadBalancerSchemeEnum::Internal) => LbScheme::Internal,
        _ => LbScheme::InternetFacing,
    }
}

pub(super) fn state_of(lb: &AwsLb) -> LbState {
    match lb.state().and_then(|s| s.code()) {
        Some(LoadBalancerStateEnum::Active | LoadBalancerStateEnum::ActiveImpaired) => {
            LbState::Active
        }
        Some(LoadBalancerStateEnum::Failed) => LbState::Failed,
        _ => LbState::Provisioning,
    }
}

pub(super) fn endpoint_of(lb: &AwsLb) -> Option<Endpoint> {
    let name = lb.dns_name()?.trim_end_matches('.').to_ascii_lowercase();
    Some(Endpoint::Hostname {
        name,
        alias_zone: lb.canonical_hosted_zone_id().map(str::to_owned),
    })
}

/// The name of a target group from its ARN
/// (`arn:aws:elasticloadbalancing:…:targetgroup/<name>/<id>`).
pub(super) fn group_name_of(arn: &str) -> Option<&str> {
    arn.split_once(":targetgroup/")?.1.split('/').next()
}

/// The target group a listener forwards to.
pub(super) fn forward_arn(l: &AwsListener) -> Option<&str> {
    l.default_actions()
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .and_then(|a| a.target_group_arn())
}

/// The listeners as triad sees them; a forward goes to the port of its target group,
/// known from the group's name (`<lb>-tcp-443` → 443, `<lb>-http-80` → 80).
pub(super) fn listeners_of(lb: &str, listeners: &[AwsListener]) -> Vec<Listener> {
    let registration: Vec<u16> = listeners
        .iter()
        .filter_map(|l| l.port().and_then(|p| u16::try_from(p).ok()))
        .filter(|p| *p != 80 && *p != 443)
        .collect();
    let all: Vec<_> = [LbMode::L4, LbMode::L7]
        .into_iter()
        .flat_map(|m| groups_for(m, &registration))
        .collect();
    let mut out: Vec<Listener> = listeners
        .iter()
        .map(|l| {
            let target_port = forward_arn(l)
                .and_then(group_name_of)
                .and_then(|name| all.iter().find(|g| g.name(lb) == name))
                .and_then(|g| u16::try_from(g.port).ok());
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

/// The registration address an ALB's companion serves: its DNS name, dialled by
/// the nodes (no alias: no record points at it).
pub(super) fn registration_endpoint_of(companion: &AwsLb) -> Option<Endpoint> {
    match endpoint_of(companion)? {
        Endpoint::Hostname { name, .. } => Some(Endpoint::Hostname {
            name,
            alias_zone: None,
        }),
        ip => Some(ip),
    }
}

/// What was found of the cluster's balancer.
pub(super) struct Found {
    pub lb: AwsLb,
    /// The balancer's tags.
    pub tags: BTreeMap<String, String>,
    pub listeners: Vec<AwsListener>,
    /// An ALB's internal companion NLB (the registration ports), if it has one.
    pub companion: Option<Companion>,
}

/// The internal NLB beside an ALB that serves the registration ports (see
/// `balancer::companion_name`), with its listeners.
pub(super) struct Companion {
    pub lb: AwsLb,
    pub listeners: CompanionListeners,
}

/// A companion's listeners as discovery knows them.
pub(super) enum CompanionListeners {
    /// Read with `DescribeListeners`.
    Read(Vec<AwsListener>),
    /// The ports its [`LISTENERS`] tag records.
    Recorded(Vec<u16>),
}

impl CompanionListeners {
    fn read(&self) -> &[AwsListener] {
        match self {
            CompanionListeners::Read(l) => l,
            CompanionListeners::Recorded(_) => &[],
        }
    }
}

impl Companion {
    pub(crate) fn arn(&self) -> &str {
        self.lb.load_balancer_arn().unwrap_or_default()
    }
}

impl Found {
    pub(crate) fn arn(&self) -> &str {
        self.lb.load_balancer_arn().unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &str {
        self.lb.load_balancer_name().unwrap_or_default()
    }

    /// The listeners read of the balancer and of its companion.
    fn read_listeners(&self) -> Vec<AwsListener> {
        let companion = self.companion.iter().flat_map(|c| c.listeners.read());
        self.listeners.iter().chain(companion).cloned().collect()
    }

    /// The listeners of the balancer and of its companion, as triad sees them:
    /// together, what the balancer serves.
    pub(crate) fn all_listeners(&self) -> Vec<Listener> {
        let mut out = listeners_of(self.name(), &self.read_listeners());
        if let Some(Companion {
            listeners: CompanionListeners::Recorded(ports),
            ..
        }) = &self.companion
        {
            out.extend(ports.iter().map(|&port| Listener {
                port,
                protocol: "TCP".into(),
                target_port: Some(port),
            }));
            out.sort_by_key(|l| l.port);
        }
        out
    }

    /// The state of the balancer, or its companion's while that is not active yet.
    pub(crate) fn state(&self) -> LbState {
        match (state_of(&self.lb), &self.companion) {
            (LbState::Active, Some(c)) => state_of(&c.lb),
            (state, _) => state,
        }
    }

    /// The target groups the listeners (the companion's included) forward to, in
    /// [`groups_for`] order (the order `set_targets` converges them in): (name, ARN).
    /// The companion's groups are missing while its listeners are only
    /// [`CompanionListeners::Recorded`], unless `companion` gives them.
    pub(crate) fn forwards(&self, companion: &[AwsListener]) -> Vec<(String, String)> {
        let mut listeners = self.read_listeners();
        listeners.extend(companion.iter().cloned());
        let registration = registration_of(&self.all_listeners());
        let arns: Vec<&str> = listeners.iter().filter_map(forward_arn).collect();
        let mut out: Vec<(String, String)> = Vec::new();
        for spec in groups_for(mode_of(&self.lb), &registration) {
            let name = spec.name(self.name());
            if let Some(arn) = arns
                .iter()
                .find(|a| group_name_of(a) == Some(name.as_str()))
            {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, (*arn).to_owned()));
                }
            }
        }
        out
    }
}

impl Ec2 {
    /// Every resource ARN in `arns` whose tags mark it as the cluster's balancer
    /// part, with its tags.
    pub(super) async fn owned_arns(
        &self,
        arns: Vec<String>,
        cluster: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out = BTreeMap::new();
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
                    if let Some(arn) = d.resource_arn() {
                        out.insert(arn.to_owned(), tag_map(d.tags()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every balancer of the cluster (normally one), oldest first: the whole
    /// region's balancers, read by their tags. For destroy, which must find a
    /// balancer whatever its name.
    pub(super) async fn owned_lbs(&self, cluster: &ClusterRef) -> Result<Vec<AwsLb>> {
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
            .filter(|l| l.load_balancer_arn().is_some_and(|a| mine.contains_key(a)))
            .collect();
        out.sort_by_key(|l| {
            (
                l.created_time().map(|t| t.as_nanos()),
                l.load_balancer_arn().map(str::to_owned),
            )
        });
        Ok(out)
    }

    /// The cluster's balancers whose name is one of `names`, in that order, with
    /// their tags: one listing of the region's balancers (400 a page, so one call for
    /// most accounts) and one `DescribeTags` for those of these names. By-name
    /// lookups would cost a call per name: `DescribeLoadBalancers` with names fails
    /// as a whole when one of them does not exist.
    pub(super) async fn lbs_named(
        &self,
        cluster: &ClusterRef,
        names: &[String],
    ) -> Result<Vec<(AwsLb, BTreeMap<String, String>)>> {
        let mut all = Vec::new();
        let mut pages = self
            .elb
            .describe_load_balancers()
            .page_size(400)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(sdk("list", "load balancers"))?;
            all.extend(
                page.load_balancers()
                    .iter()
                    .filter(|l| {
                        l.load_balancer_name()
                            .is_some_and(|n| names.iter().any(|w| w == n))
                    })
                    .cloned(),
            );
        }
        let arns = all
            .iter()
            .filter_map(|l| l.load_balancer_arn().map(str::to_owned))
            .collect();
        let mut mine = self.owned_arns(arns, &cluster.name).await?;
        let mut out: Vec<(AwsLb, BTreeMap<String, String>)> = all
            .into_iter()
            .filter_map(|l| {
                let tags = mine.remove(l.load_balancer_arn()?)?;
                Some((l, tags))
            })
            .collect();
        out.sort_by_key(|(l, _)| {
            names
                .iter()
                .position(|n| Some(n.as_str()) == l.load_balancer_name())
        });
        Ok(out)
    }

    /// The balancer named `name`, if it exists and carries the cluster's tags (one
    /// `DescribeLoadBalancers` and one `DescribeTags`). A balancer of that name
    /// without them is not the cluster's: creating one then fails with a clear
    /// conflict.
    pub(super) async fn lb_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Option<(AwsLb, BTreeMap<String, String>)>> {
        let out = match self.elb.describe_load_balancers().names(name).send().await {
            Ok(out) => out,
            Err(e) => {
                let e = AwsError::from_sdk(e);
                if e.kind == FailureKind::NotFound {
                    return Ok(None);
                }
                return Err(e.into_error("find", format!("load balancer {name}")));
            }
        };
        let Some(lb) = out.load_balancers().first().cloned() else {
            return Ok(None);
        };
        let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
        let mut mine = self.owned_arns(vec![arn.clone()], &cluster.name).await?;
        Ok(mine.remove(&arn).map(|tags| (lb, tags)))
    }

    /// The cluster's target groups: the whole region's, read by their tags.
    pub(super) async fn owned_groups_elb(&self, cluster: &ClusterRef) -> Result<Vec<TargetGroup>> {
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
            .filter(|g| g.target_group_arn().is_some_and(|a| mine.contains_key(a)))
            .collect())
    }

    pub(super) async fn listeners(&self, lb_arn: &str) -> Result<Vec<AwsListener>> {
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
    pub(super) async fn group_targets(&self, arn: &str) -> Result<BTreeSet<String>> {
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

    /// The balancer as triad sees it. The targets of the first target group are read;
    /// the others are known to hold the same when the [`TARGETS`] tag says so, and
    /// are read too when it does not (a `set_targets` that stopped midway, or a
    /// balancer made before the tag).
    pub(super) async fn model(&self, found: &Found) -> Result<LoadBalancer> {
        let forwards = self.forwards_targets(found).await?;
        let mut labels = found.tags.clone();
        labels.remove(TARGETS);
        Ok(LoadBalancer {
            id: found.arn().to_owned(),
            name: found.name().to_owned(),
            mode: mode_of(&found.lb),
            scheme: scheme_of(&found.lb),
            state: found.state(),
            endpoint: endpoint_of(&found.lb),
            registration_endpoint: found
                .companion
                .as_ref()
                .and_then(|c| registration_endpoint_of(&c.lb)),
            listeners: found.all_listeners(),
            targets: targets_of(&forwards),
            labels,
            partial_targets: Vec::new(),
        })
    }

    async fn forwards_targets(&self, found: &Found) -> Result<Vec<(String, BTreeSet<String>)>> {
        let mut forwards = found.forwards(&[]);
        let mut per_group = Vec::new();
        let Some((first_name, first_arn)) = forwards.first().cloned() else {
            return Ok(per_group);
        };
        let first = self.group_targets(&first_arn).await?;
        let marked = found.tags.get(TARGETS) == Some(&targets_tag(&first));
        // Not marked: every group is read, the companion's too, whose forwards need
        // its listeners.
        if let Some(Companion {
            lb,
            listeners: CompanionListeners::Recorded(_),
        }) = &found.companion
        {
            if !marked {
                let read = self
                    .listeners(lb.load_balancer_arn().unwrap_or_default())
                    .await?;
                forwards = found.forwards(&read);
            }
        }
        per_group.push((first_name, first.clone()));
        for (name, arn) in &forwards[1..] {
            let targets = if marked {
                first.clone()
            } else {
                self.group_targets(arn).await?
            };
            per_group.push((name.clone(), targets));
        }
        Ok(per_group)
    }

    /// The cluster's balancer named `name`, its tags, its listeners, and an ALB's
    /// companion with its listeners (see [`Ec2::find_all`]).
    pub(super) async fn find(&self, cluster: &ClusterRef, name: &str) -> Result<Option<Found>> {
        Ok(self.find_all(cluster, &[name.to_owned()]).await?.pop())
    }

    /// The cluster's balancers named `names` that exist, in that order, each with
    /// its tags, its listeners and (an ALB) its companion NLB with the companion's
    /// listeners: one listing of the region's balancers and one `DescribeTags` for
    /// them all, then a `DescribeListeners` per balancer found.
    pub(super) async fn find_all(
        &self,
        cluster: &ClusterRef,
        names: &[String],
    ) -> Result<Vec<Found>> {
        let companions: Vec<String> = names.iter().map(|n| companion_name(n)).collect();
        let wanted: Vec<String> = names.iter().chain(&companions).cloned().collect();
        let mut lbs = self.lbs_named(cluster, &wanted).await?;
        let mut take = |name: &str| {
            lbs.iter()
                .position(|(l, _)| l.load_balancer_name() == Some(name))
                .map(|i| lbs.remove(i))
        };
        let mut pairs = Vec::new();
        for (name, companion) in names.iter().zip(&companions) {
            if let Some(main) = take(name) {
                let companion = (mode_of(&main.0) == LbMode::L7)
                    .then(|| take(companion))
                    .flatten();
                pairs.push((main, companion));
            }
        }
        let mut out = Vec::new();
        for ((lb, tags), companion) in pairs {
            let listeners = self
                .listeners(lb.load_balancer_arn().unwrap_or_default())
                .await?;
            let companion = match companion {
                Some((c, tags)) => {
                    let recorded = tags.get(LISTENERS).and_then(|v| {
                        v.split(',')
                            .map(|p| p.parse::<u16>().ok())
                            .collect::<Option<Vec<u16>>>()
                    });
                    let listeners = match recorded {
                        Some(ports) if !ports.is_empty() => CompanionListeners::Recorded(ports),
                        _ => CompanionListeners::Read(
                            self.listeners(c.load_balancer_arn().unwrap_or_default())
                                .await?,
                        ),
                    };
                    Some(Companion { lb: c, listeners })
                }
                None => None,
            };
            out.push(Found {
                lb,
                tags,
                listeners,
                companion,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_ne!(targets_tag(&s(&["i-1"])), targets_tag(&s(&["i-1", "i-2"])));
        assert_eq!(
            group_name_of("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/r-tcp-80/abc"),
            Some("r-tcp-80")
        );
    }
}
