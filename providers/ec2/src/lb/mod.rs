//! The balancer: an NLB (layer 4) or an ALB (layer 7) with its target groups and
//! listeners, and the 80/443 rules on the security groups. An ALB cannot pass TCP
//! through: when the nodes register through the balancer (RKE2's 9345, and 6443),
//! an internal NLB beside it, its companion (`<name>-reg`), carries those ports to
//! the same target groups an l4 NLB would have, and the balancer reports the
//! companion's DNS name as its `registration_endpoint`.
//!
//! - [`found`]: what exists, read with few calls (discovery);
//! - [`balancer`]: the balancer itself and its security group rules;
//! - [`target_groups`]: the groups, their health checks, attributes and targets;
//! - [`listeners`]: the listeners (and the l7 certificate).

mod balancer;
mod found;
mod listeners;
mod target_groups;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_elasticloadbalancingv2::types::{Tag, TargetGroup};
use triad_core::error::{FailureKind, Result};
use triad_core::model::{LbState, LoadBalancer, LoadBalancerRequest, Node};
use triad_core::provider::LoadBalancerProvider;
use triad_core::spec::{ClusterRef, LbMode, LbScheme, ValidSpec};

use crate::error::{fail, sdk, AwsError, PROVIDER};
use crate::network::{Source, PART};
use crate::Ec2;
use found::{
    elb_tags, endpoint_of, listeners_tag, state_of, targets_of, targets_tag, Companion,
    CompanionListeners, Found, LISTENERS, TARGETS,
};
use listeners::{companion_ports, own_ports};
use target_groups::{by_name, groups_for, is_group_of, registration_of, GroupSpec};

impl Ec2 {
    /// The target groups attached to the balancer `arn` (through its listeners).
    async fn lb_groups(&self, arn: &str) -> Result<Vec<TargetGroup>> {
        let out = self
            .elb
            .describe_target_groups()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(sdk("list the target groups of", arn))?;
        Ok(out.target_groups().to_vec())
    }

    /// In l7 with registration ports: the ALB's companion NLB (made if missing,
    /// sharing the ALB's security group `lb_sg`) with one TCP listener per port,
    /// forwarding to that port's group among `groups`. `None` otherwise.
    async fn complete_companion(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        lb_sg: Option<&str>,
        groups: &[(GroupSpec, TargetGroup)],
    ) -> Result<Option<Companion>> {
        let ports = companion_ports(request);
        if request.mode != LbMode::L7 || ports.is_empty() {
            return Ok(None);
        }
        let (lb, tags) = self.ensure_companion(cluster, request, lb_sg).await?;
        let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
        let have = self.listeners(&arn).await?;
        self.ensure_listeners(&lb, &ports, &have, request, groups)
            .await?;
        let listeners = self.listeners(&arn).await?;
        // Recorded once they are all made: discovery reads the tag, not them.
        let mark = listeners_tag(&listeners);
        if tags.get(LISTENERS) != Some(&mark) {
            self.elb
                .add_tags()
                .resource_arns(&arn)
                .tags(Tag::builder().key(LISTENERS).value(mark).build())
                .send()
                .await
                .map_err(sdk(
                    "tag",
                    format!("load balancer {}", lb.load_balancer_name().unwrap_or("")),
                ))?;
        }
        Ok(Some(Companion {
            listeners: CompanionListeners::Read(listeners),
            lb,
        }))
    }

    /// The target groups attached to the balancer `lb` and, an ALB serving the
    /// registration ports apart, to its companion NLB.
    async fn all_groups(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
    ) -> Result<Vec<TargetGroup>> {
        let mut groups = self.lb_groups(&lb.id).await?;
        if lb.registration_endpoint.is_some() {
            let name = balancer::companion_name(&lb.name);
            if let Some((companion, _)) = self.lb_named(cluster, &name).await? {
                groups.extend(
                    self.lb_groups(companion.load_balancer_arn().unwrap_or_default())
                        .await?,
                );
            }
        }
        Ok(groups)
    }

    /// Make the balancer's tags carry `want` (and its `Name`): add what differs,
    /// remove fingerprint tags (`triad-fp-*`) no longer wanted; other tags stay.
    /// Returns the tags it has then.
    async fn converge_lb_tags(
        &self,
        arn: &str,
        name: &str,
        have: &BTreeMap<String, String>,
        want: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut want = want.clone();
        want.insert("Name".into(), name.to_owned());
        let (add, remove, after) = crate::tag_diff(have, &want);
        let what = format!("load balancer {name}");
        if !add.is_empty() {
            self.elb
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(elb_tags(&add)))
                .send()
                .await
                .map_err(sdk("tag", &what))?;
        }
        if !remove.is_empty() {
            self.elb
                .remove_tags()
                .resource_arns(arn)
                .set_tag_keys(Some(remove.clone()))
                .send()
                .await
                .map_err(sdk("untag", &what))?;
        }
        Ok(after)
    }
}

#[async_trait]
impl LoadBalancerProvider for Ec2 {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        self.check(spec, crate::settings::Concern::LoadBalancer)
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

    /// The balancer named like the cluster, with its tags (the fingerprint among
    /// them): `DescribeLoadBalancers` by name, `DescribeTags`, `DescribeListeners` and
    /// the targets of one group.
    async fn discover_load_balancer(&self, cluster: &ClusterRef) -> Result<Option<LoadBalancer>> {
        match self.find(cluster, &cluster.name).await? {
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
                return Err(triad_core::Error::invalid(
                    "load_balancer.certificate",
                    problem,
                    fix,
                ));
            }
        }
        let lb_sg = self.web_rules(cluster, request).await?;
        let (lb, tags) = self.ensure_lb(cluster, request, lb_sg.as_deref()).await?;
        let arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
        let tags = self
            .converge_lb_tags(&arn, &request.name, &tags, &request.labels)
            .await?;
        let owned = self.owned_groups_elb(cluster).await?;
        let mut groups = Vec::new();
        for spec in groups_for(request.mode, &request.registration_ports) {
            let g = self
                .ensure_group_elb(cluster, request, &spec, &owned)
                .await?;
            groups.push((spec, g));
        }
        let have = self.listeners(&arn).await?;
        self.ensure_listeners(&lb, &own_ports(request), &have, request, &groups)
            .await?;
        let companion = self
            .complete_companion(cluster, request, lb_sg.as_deref(), &groups)
            .await?;
        let found = Found {
            listeners: self.listeners(&arn).await?,
            tags,
            lb,
            companion,
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
        // An ALB serving the registration ports apart: its companion too, read in
        // the same call (by name: ELBv2 takes names or ARNs, not both).
        let companion = lb
            .registration_endpoint
            .is_some()
            .then(|| balancer::companion_name(&lb.name));
        let (active, active_companion) = self
            .poll
            .until(timeout, &resource, "active", || async {
                let ask = self.elb.describe_load_balancers();
                let ask = match &companion {
                    Some(c) => ask.names(&lb.name).names(c),
                    None => ask.load_balancer_arns(&lb.id),
                };
                let out = ask
                    .send()
                    .await
                    .map_err(sdk("wait for", resource.clone()))?;
                let Some(main) = out
                    .load_balancers()
                    .iter()
                    .find(|l| l.load_balancer_arn() == Some(lb.id.as_str()))
                else {
                    return Ok(None);
                };
                let other = match &companion {
                    Some(c) => match out
                        .load_balancers()
                        .iter()
                        .find(|l| l.load_balancer_name() == Some(c.as_str()))
                    {
                        Some(other) => Some(other),
                        None => return Ok(None),
                    },
                    None => None,
                };
                for found in std::iter::once(main).chain(other) {
                    match state_of(found) {
                        LbState::Active if found.dns_name().is_some() => {}
                        LbState::Failed => {
                            return Err(fail(
                                "wait for",
                                format!(
                                    "load balancer {}",
                                    found.load_balancer_name().unwrap_or_default()
                                ),
                                FailureKind::Other,
                                format!(
                                    "the balancer failed to provision: {}",
                                    found
                                        .state()
                                        .and_then(|s| s.reason())
                                        .unwrap_or("no reason given")
                                ),
                            ))
                        }
                        _ => return Ok(None),
                    }
                }
                Ok(Some((main.clone(), other.cloned())))
            })
            .await?;
        Ok(LoadBalancer {
            state: LbState::Active,
            endpoint: endpoint_of(&active),
            registration_endpoint: active_companion
                .as_ref()
                .and_then(found::registration_endpoint_of)
                .or_else(|| lb.registration_endpoint.clone()),
            ..lb.clone()
        })
    }

    /// Make every target group's targets `nodes` (an ALB's companion's groups
    /// included), in `groups_for` order, then record them in the balancer's
    /// `triad-targets` tag.
    async fn set_targets(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        nodes: &[Node],
    ) -> Result<LoadBalancer> {
        let groups = self.all_groups(cluster, lb).await?;
        let groups = by_name(&groups);
        let want: BTreeSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let mut per_group = Vec::new();
        for spec in groups_for(lb.mode, &registration_of(&lb.listeners)) {
            let name = spec.name(&lb.name);
            let g = groups.get(name.as_str()).ok_or_else(|| {
                fail(
                    "set targets of",
                    format!("load balancer {}", lb.name),
                    FailureKind::NotFound,
                    format!("target group {name} is missing; rerun apply to complete the balancer"),
                )
            })?;
            self.converge_group_targets(&name, g.target_group_arn().unwrap_or_default(), &want)
                .await?;
            per_group.push((name, want.clone()));
        }
        let tags = self.elb.describe_tags().resource_arns(&lb.id).send().await;
        let have: BTreeMap<String, String> = tags
            .map_err(sdk("read tags of", format!("load balancer {}", lb.name)))?
            .tag_descriptions()
            .first()
            .map(|d| found::tag_map(d.tags()))
            .unwrap_or_default();
        let mark = targets_tag(&want);
        if have.get(TARGETS) != Some(&mark) {
            self.elb
                .add_tags()
                .resource_arns(&lb.id)
                .tags(Tag::builder().key(TARGETS).value(mark).build())
                .send()
                .await
                .map_err(sdk("tag", format!("load balancer {}", lb.name)))?;
        }
        Ok(LoadBalancer {
            targets: targets_of(&per_group),
            ..lb.clone()
        })
    }

    /// The listener certificate and TLS policy (l7, `ModifyListener`), every target
    /// group's health check (`ModifyTargetGroup`) and the balancer's tags, its
    /// fingerprint among them. Only what differs is changed.
    async fn update_load_balancer(
        &self,
        cluster: &ClusterRef,
        lb: &LoadBalancer,
        request: &LoadBalancerRequest,
    ) -> Result<LoadBalancer> {
        let Some(found) = self.find(cluster, &lb.name).await? else {
            return Err(fail(
                "update",
                format!("load balancer {}", lb.name),
                FailureKind::NotFound,
                "the balancer does not exist (any more); rerun apply to make it",
            ));
        };
        let mut attached = self.lb_groups(found.arn()).await?;
        if let Some(c) = &found.companion {
            attached.extend(self.lb_groups(c.arn()).await?);
        }
        let mut groups = Vec::new();
        for spec in groups_for(request.mode, &request.registration_ports) {
            let g = self
                .ensure_group_elb(cluster, request, &spec, &attached)
                .await?;
            groups.push((spec, g));
        }
        self.ensure_listeners(
            &found.lb,
            &own_ports(request),
            &found.listeners,
            request,
            &groups,
        )
        .await?;
        let lb_sg = found.lb.security_groups().first().map(String::as_str);
        self.complete_companion(cluster, request, lb_sg, &groups)
            .await?;
        let mut labels = self
            .converge_lb_tags(found.arn(), found.name(), &found.tags, &request.labels)
            .await?;
        labels.remove(TARGETS);
        Ok(LoadBalancer {
            labels,
            ..lb.clone()
        })
    }

    /// Every balancer of the cluster, whatever its name (both during a mode change),
    /// then every target group of the cluster. The balancers' security groups are
    /// cluster plumbing: `NodeProvider::cleanup` removes them.
    async fn delete_load_balancer(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        for lb in self.owned_lbs(cluster).await? {
            deleted.push(self.delete_lb(&lb).await?);
        }
        for g in self.owned_groups_elb(cluster).await? {
            deleted.push(self.delete_target_group(&g).await?);
        }
        Ok(deleted)
    }

    /// Yes: the two balancers of a mode or scheme change have their own names
    /// (`<cluster>` and `<cluster>-b`, taking turns), target groups, listeners and security groups,
    /// so the new one is made, given the nodes and the record, before the old goes.
    fn coexists(&self) -> bool {
        true
    }

    /// Yes in l7: an ALB cannot pass TCP through, so the registration ports are
    /// served by its internal companion NLB, at an address of its own.
    fn registration_apart(&self, mode: LbMode) -> bool {
        mode == LbMode::L7
    }

    /// The cluster's balancers under the two names they take, each carrying the
    /// cluster's tags (one listing of the region's balancers, one `DescribeTags`,
    /// which find an ALB's companion too), with their listeners and targets: the old
    /// and the new one during a mode change.
    async fn discover_load_balancers(&self, cluster: &ClusterRef) -> Result<Vec<LoadBalancer>> {
        let mut out = Vec::new();
        for found in self
            .find_all(cluster, &balancer::balancer_names(cluster))
            .await?
        {
            out.push(self.model(&found).await?);
        }
        Ok(out)
    }

    /// The balancer `name` and its parts only: its listeners first (its target
    /// groups are free then), its target groups, the balancer and its companion
    /// NLB (an ALB's, see `balancer::companion_name`), the nodes' rules from its
    /// security group, and that group. Each step finds what is left, so a rerun after
    /// a stop anywhere finishes the job.
    async fn delete_load_balancer_named(
        &self,
        cluster: &ClusterRef,
        name: &str,
    ) -> Result<Vec<String>> {
        let mut deleted = Vec::new();
        let mut lbs = Vec::new();
        for n in [balancer::companion_name(name), name.to_owned()] {
            if let Some((lb, _)) = self.lb_named(cluster, &n).await? {
                lbs.push(lb);
            }
        }
        for lb in &lbs {
            let arn = lb.load_balancer_arn().unwrap_or_default();
            for l in self.listeners(arn).await? {
                let id = l.listener_arn().unwrap_or_default();
                if let Err(e) = self.elb.delete_listener().listener_arn(id).send().await {
                    let e = AwsError::from_sdk(e);
                    if e.kind != FailureKind::NotFound {
                        return Err(e.into_error("delete", format!("listener {id}")));
                    }
                }
            }
        }
        for g in self.owned_groups_elb(cluster).await? {
            if g.target_group_name().is_some_and(|g| is_group_of(name, g)) {
                deleted.push(self.delete_target_group(&g).await?);
            }
        }
        for lb in &lbs {
            deleted.push(self.delete_lb(lb).await?);
        }
        let parts = [LbMode::L4, LbMode::L7].map(|m| balancer::sg_part(cluster, name, m));
        let groups = self.owned_groups(cluster).await?;
        fn part_of(g: &SecurityGroup) -> Option<&str> {
            crate::network::tag_value(g.tags(), PART)
        }
        let nodes = groups.iter().find(|g| part_of(g) == Some("nodes"));
        for sg in groups
            .iter()
            .filter(|g| part_of(g).is_some_and(|p| parts.iter().any(|q| q == p)))
        {
            let id = Source::Group(sg.group_id().unwrap_or_default().to_owned());
            if let Some(nodes) = nodes {
                self.converge_rules(nodes, &BTreeSet::new(), |r| r.source == id)
                    .await?;
            }
            deleted.push(self.delete_group(sg).await?);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::types::{
        ActionTypeEnum, Listener as AwsListener, ProtocolEnum, TargetGroup,
    };
    use triad_core::model::Listener;

    use super::found::listeners_of;
    use super::*;

    #[test]
    fn the_companion_fits_elbv2_names_and_its_tag_records_its_forwards() {
        let longest = "a".repeat(triad_core::spec::MAX_NAME_LEN);
        for lb in [longest.clone(), format!("{longest}-b")] {
            let name = balancer::companion_name(&lb);
            assert!(name.len() <= 32, "{name}");
            assert_ne!(name, format!("{longest}-b"));
        }
        let forward = |port: i32| {
            AwsListener::builder()
                .port(port)
                .protocol(ProtocolEnum::Tcp)
                .default_actions(
                    aws_sdk_elasticloadbalancingv2::types::Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(format!(
                            "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/r-tcp{port}/1"
                        ))
                        .build(),
                )
                .build()
        };
        let bare = AwsListener::builder()
            .port(7000)
            .protocol(ProtocolEnum::Tcp)
            .build();
        assert_eq!(
            found::listeners_tag(&[forward(9345), bare, forward(6443)]),
            "6443,9345"
        );
        assert_eq!(found::listeners_tag(&[]), "");
    }

    #[test]
    fn l7_redirects_http_and_forwards_https_to_port_80() {
        let g = TargetGroup::builder()
            .target_group_arn("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/r-http-80/1")
            .port(80)
            .build();
        let groups = vec![(groups_for(LbMode::L7, &[])[0].clone(), g.clone())];
        let https = Ec2::listener_action(LbMode::L7, 443, &groups);
        assert_eq!(https.target_group_arn(), g.target_group_arn());
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
            listeners_of("r", &[l, r]),
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
