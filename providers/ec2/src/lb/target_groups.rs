//! The target groups: one per listener port, their health checks, their attributes
//! and their targets.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_elasticloadbalancingv2::types::{
    ProtocolEnum, TargetDescription, TargetGroup, TargetGroupAttribute, TargetTypeEnum,
};
use triad_core::error::{FailureKind, Result};
use triad_core::model::{Listener, LoadBalancerRequest};
use triad_core::spec::{ClusterRef, LbMode};

use super::found::elb_tags;
use crate::error::{fail, sdk, AwsError};
use crate::network::PART;
use crate::Ec2;

/// The target group attribute that keeps (or not) the client's address. Off on the
/// Kubernetes registration groups: a node that registers through the NLB may be
/// picked as its own target, and with its own address as the source the reply never
/// goes back through the balancer (a hairpin), so the connection fails.
pub(crate) const PRESERVE_CLIENT_IP: &str = "preserve_client_ip.enabled";

/// Health check thresholds and timings from Rancher's NLB page.
pub(crate) const HEALTHY_THRESHOLD: i32 = 3;
/// Unhealthy threshold.
pub(crate) const UNHEALTHY_THRESHOLD: i32 = 3;
/// Health check timeout in seconds.
pub(crate) const HEALTH_TIMEOUT_SECS: i32 = 6;
/// Health check interval in seconds.
pub(crate) const HEALTH_INTERVAL_SECS: i32 = 10;

/// One target group the balancer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GroupSpec {
    /// `tcp-443`, `tcp-80`, `http-80`, `tcp9345`, `tcp6443` (no dash in the
    /// registration parts: `<24-character name>-tcp9345` is the 32 ELBv2 allows).
    pub part: String,
    pub protocol: ProtocolEnum,
    pub port: i32,
    /// A TCP health check on the traffic port (the Kubernetes registration
    /// ports) instead of HTTP on 80.
    pub tcp_check: bool,
}

/// The longest name ELBv2 gives a target group.
const MAX_GROUP_NAME: usize = 32;

impl GroupSpec {
    /// `<balancer>-<part>`; when that is over ELBv2's 32 characters (the second
    /// balancer of a mode change, `<cluster>-b`, with a 23- or 24-character cluster
    /// name), the short form `<balancer><p><port>` (`t443`, `h80`, `t9345`).
    pub(crate) fn name(&self, lb: &str) -> String {
        let long = format!("{lb}-{}", self.part);
        if long.len() <= MAX_GROUP_NAME {
            return long;
        }
        let (letter, port) = match self.part.split_once('-') {
            Some((kind, port)) => (&kind[..1], port),
            None => ("t", self.part.trim_start_matches("tcp")),
        };
        format!("{lb}{letter}{port}")
    }
}

/// Whether the target group named `group` is one of the balancer `lb`'s (by the
/// names [`GroupSpec::name`] gives), and not of another balancer whose name starts
/// like it (`<cluster>-b`'s groups are not `<cluster>`'s).
pub(super) fn is_group_of(lb: &str, group: &str) -> bool {
    let Some(rest) = group.strip_prefix(lb) else {
        return false;
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let long = rest.strip_prefix('-').is_some_and(|p| {
        matches!(p, "tcp-443" | "tcp-80" | "http-80") || p.strip_prefix("tcp").is_some_and(digits)
    });
    let short = rest
        .strip_prefix('t')
        .or_else(|| rest.strip_prefix('h'))
        .is_some_and(digits);
    long || short
}

/// The target groups of a mode, then one TCP group per registration port: behind
/// the NLB's own listeners in l4, behind the listeners of the ALB's internal
/// companion NLB in l7 (an ALB has no TCP listeners; see `balancer::companion_name`).
/// Every group is named after the balancer, the companion's too.
pub(super) fn groups_for(mode: LbMode, registration: &[u16]) -> Vec<GroupSpec> {
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
    out.extend(registration.iter().map(|&p| GroupSpec {
        part: format!("tcp{p}"),
        protocol: ProtocolEnum::Tcp,
        port: i32::from(p),
        tcp_check: true,
    }));
    out
}

/// The registration ports a discovered balancer serves (its TCP listeners beyond
/// 80/443).
pub(super) fn registration_of(listeners: &[Listener]) -> Vec<u16> {
    listeners
        .iter()
        .filter(|l| l.protocol == "TCP" && l.port != 80 && l.port != 443)
        .map(|l| l.port)
        .collect()
}

impl Ec2 {
    /// The target group `spec` of the balancer in `request`, made the first time,
    /// its health check made what the request asks (the path, and Rancher's
    /// thresholds) and, for a registration group, client IP preservation off.
    /// `owned` is what exists of the cluster's groups.
    pub(super) async fn ensure_group_elb(
        &self,
        cluster: &ClusterRef,
        request: &LoadBalancerRequest,
        spec: &GroupSpec,
        owned: &[TargetGroup],
    ) -> Result<TargetGroup> {
        let name = spec.name(&request.name);
        if let Some(g) = owned
            .iter()
            .find(|g| g.target_group_name() == Some(name.as_str()))
        {
            self.converge_health_check(g, spec, &request.health_check_path)
                .await?;
            if spec.tcp_check {
                self.converge_client_ip(g, &name).await?;
            }
            return Ok(g.clone());
        }
        let net = self.network().await?;
        let resource = format!("target group {name}");
        let (hc_protocol, hc_port, hc_path) = health_check(spec, &request.health_check_path);
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
        let group = match out {
            Ok(out) => {
                tracing::info!(group = name, "created target group");
                out.target_groups().first().cloned().ok_or_else(|| {
                    fail(
                        "create",
                        &resource,
                        FailureKind::Other,
                        "CreateTargetGroup returned nothing",
                    )
                })?
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
                return Err(e.into_error("create", resource));
            }
        };
        if spec.tcp_check {
            self.set_client_ip(group.target_group_arn().unwrap_or_default(), &name)
                .await?;
        }
        Ok(group)
    }

    /// Delete the target group `g`, waiting while a listener still uses it; gone
    /// already is fine. Returns what was deleted, for the report.
    pub(super) async fn delete_target_group(&self, g: &TargetGroup) -> Result<String> {
        let arn = g.target_group_arn().unwrap_or_default();
        let what = format!("target group {}", g.target_group_name().unwrap_or(arn));
        self.poll
            .until(self.cleanup_timeout, &what, "deleted", || async {
                match self
                    .elb
                    .delete_target_group()
                    .target_group_arn(arn)
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
        Ok(what)
    }

    /// Make the health check of `g` what `spec` and `path` ask; no call when it is.
    pub(super) async fn converge_health_check(
        &self,
        g: &TargetGroup,
        spec: &GroupSpec,
        path: &str,
    ) -> Result<()> {
        let (hc_protocol, hc_port, hc_path) = health_check(spec, path);
        let same = (spec.tcp_check || g.health_check_path() == hc_path.as_deref())
            && g.health_check_port() == Some(hc_port)
            && g.health_check_protocol() == Some(&hc_protocol)
            && g.healthy_threshold_count() == Some(HEALTHY_THRESHOLD)
            && g.unhealthy_threshold_count() == Some(UNHEALTHY_THRESHOLD)
            && g.health_check_interval_seconds() == Some(HEALTH_INTERVAL_SECS)
            && g.health_check_timeout_seconds() == Some(HEALTH_TIMEOUT_SECS);
        if same {
            return Ok(());
        }
        let name = g.target_group_name().unwrap_or_default();
        self.elb
            .modify_target_group()
            .target_group_arn(g.target_group_arn().unwrap_or_default())
            .health_check_protocol(hc_protocol)
            .health_check_port(hc_port)
            .set_health_check_path(hc_path)
            .healthy_threshold_count(HEALTHY_THRESHOLD)
            .unhealthy_threshold_count(UNHEALTHY_THRESHOLD)
            .health_check_interval_seconds(HEALTH_INTERVAL_SECS)
            .health_check_timeout_seconds(HEALTH_TIMEOUT_SECS)
            .send()
            .await
            .map_err(sdk(
                "update the health check of",
                format!("target group {name}"),
            ))?;
        tracing::info!(group = name, path, "updated the health check");
        Ok(())
    }

    /// Turn client IP preservation off on a registration group, unless it is.
    async fn converge_client_ip(&self, g: &TargetGroup, name: &str) -> Result<()> {
        let arn = g.target_group_arn().unwrap_or_default();
        let out = self
            .elb
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(sdk(
                "read the attributes of",
                format!("target group {name}"),
            ))?;
        let on = out
            .attributes()
            .iter()
            .find(|a| a.key() == Some(PRESERVE_CLIENT_IP))
            .and_then(|a| a.value());
        if on == Some("false") {
            return Ok(());
        }
        self.set_client_ip(arn, name).await
    }

    async fn set_client_ip(&self, arn: &str, name: &str) -> Result<()> {
        self.elb
            .modify_target_group_attributes()
            .target_group_arn(arn)
            .attributes(
                TargetGroupAttribute::builder()
                    .key(PRESERVE_CLIENT_IP)
                    .value("false")
                    .build(),
            )
            .send()
            .await
            .map_err(sdk(
                "turn off client IP preservation of",
                format!("target group {name}"),
            ))?;
        Ok(())
    }

    /// Make the targets of one group exactly `want`: register what is missing,
    /// deregister what is extra.
    pub(super) async fn converge_group_targets(
        &self,
        name: &str,
        arn: &str,
        want: &BTreeSet<String>,
    ) -> Result<()> {
        let have = self.group_targets(arn).await?;
        let add: Vec<TargetDescription> = want
            .difference(&have)
            .map(|id| TargetDescription::builder().id(id).build())
            .collect();
        let remove: Vec<TargetDescription> = have
            .difference(want)
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
                    return Err(
                        e.into_error("deregister targets from", format!("target group {name}"))
                    );
                }
            }
        }
        Ok(())
    }
}

/// The health check of a group: a TCP check on the traffic port for the
/// registration ports (RKE2 answers TLS there, not an HTTP path); HTTP on 80 at the
/// ingress's path for the web ports.
fn health_check(spec: &GroupSpec, path: &str) -> (ProtocolEnum, &'static str, Option<String>) {
    if spec.tcp_check {
        (ProtocolEnum::Tcp, "traffic-port", None)
    } else {
        (ProtocolEnum::Http, "80", Some(path.to_owned()))
    }
}

/// The groups of `groups` by name, for lookups.
pub(super) fn by_name(groups: &[TargetGroup]) -> BTreeMap<&str, &TargetGroup> {
    groups
        .iter()
        .filter_map(|g| Some((g.target_group_name()?, g)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_fit_and_belong_to_one_balancer() {
        let cluster = "abcdefghijklmnopqrstuvwx"; // 24 characters, the longest
        let second = format!("{cluster}-b");
        for mode in [LbMode::L4, LbMode::L7] {
            for g in groups_for(mode, &[9345, 6443]) {
                for (lb, other) in [(cluster, second.as_str()), (second.as_str(), cluster)] {
                    let name = g.name(lb);
                    assert!(name.len() <= MAX_GROUP_NAME, "{name}");
                    assert!(is_group_of(lb, &name), "{name} is {lb}'s");
                    assert!(!is_group_of(other, &name), "{name} is not {other}'s");
                }
            }
        }
        assert_eq!(groups_for(LbMode::L4, &[])[0].name("r"), "r-tcp-443");
        assert_eq!(
            groups_for(LbMode::L7, &[])[0].name(&second),
            format!("{second}h80")
        );
        assert!(!is_group_of("r", "r-other"));
    }

    #[test]
    fn target_groups_follow_rancher_notes() {
        let l4 = groups_for(LbMode::L4, &[]);
        assert_eq!(
            l4.iter().map(|g| g.name("rancher")).collect::<Vec<_>>(),
            ["rancher-tcp-443", "rancher-tcp-80"]
        );
        assert!(l4.iter().all(|g| g.protocol == ProtocolEnum::Tcp));
        let l7 = groups_for(LbMode::L7, &[9345, 6443]);
        assert_eq!(
            l7.iter()
                .map(|g| (g.name("rancher"), g.protocol.clone(), g.port, g.tcp_check))
                .collect::<Vec<_>>(),
            [
                ("rancher-http-80".to_owned(), ProtocolEnum::Http, 80, false),
                // Behind the companion NLB's listeners.
                ("rancher-tcp9345".to_owned(), ProtocolEnum::Tcp, 9345, true),
                ("rancher-tcp6443".to_owned(), ProtocolEnum::Tcp, 6443, true),
            ]
        );
        assert_eq!(groups_for(LbMode::L7, &[]).len(), 1);
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
}
