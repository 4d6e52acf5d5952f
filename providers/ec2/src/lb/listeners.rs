//! The listeners: TCP forwards (l4, and the registration ports on an ALB's
//! companion NLB); HTTPS with the certificate and an HTTP redirect (l7).

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, Listener as AwsListener, LoadBalancer as AwsLb,
    ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, TargetGroup,
};
use triad_core::error::{Error, Result};
use triad_core::model::LoadBalancerRequest;
use triad_core::spec::LbMode;

use super::found::{elb_tags, mode_of};
use super::target_groups::GroupSpec;
use crate::error::AwsError;
use crate::Ec2;

/// The listener ports the balancer of `request` has itself: 80 and 443, and in l4
/// the registration ports.
pub(super) fn own_ports(request: &LoadBalancerRequest) -> Vec<i32> {
    let mut out = vec![80, 443];
    if request.mode == LbMode::L4 {
        out.extend(companion_ports(request));
    }
    out
}

/// The registration ports of `request` (RKE2's 9345, 6443): in l7 the listeners of
/// the ALB's internal companion NLB.
pub(super) fn companion_ports(request: &LoadBalancerRequest) -> Vec<i32> {
    request
        .registration_ports
        .iter()
        .map(|&p| i32::from(p))
        .collect()
}

impl Ec2 {
    /// The default action a listener of `port` needs.
    pub(super) fn listener_action(
        mode: LbMode,
        port: i32,
        groups: &[(GroupSpec, TargetGroup)],
    ) -> Action {
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

    /// Make the listeners of `ports` on the balancer `lb` (the cluster's balancer or
    /// its companion, see [`own_ports`] and [`companion_ports`]), forwarding to
    /// `groups`: create what is missing, modify what differs; no call when all are
    /// right.
    pub(super) async fn ensure_listeners(
        &self,
        lb: &AwsLb,
        ports: &[i32],
        have: &[AwsListener],
        request: &LoadBalancerRequest,
        groups: &[(GroupSpec, TargetGroup)],
    ) -> Result<()> {
        let mode = mode_of(lb);
        let lb_arn = lb.load_balancer_arn().unwrap_or_default();
        let lb_name = lb.load_balancer_name().unwrap_or_default();
        for &port in ports {
            let protocol = match (mode, port) {
                (LbMode::L4, _) => ProtocolEnum::Tcp,
                (LbMode::L7, 443) => ProtocolEnum::Https,
                (LbMode::L7, _) => ProtocolEnum::Http,
            };
            let action = Self::listener_action(mode, port, groups);
            let tls = mode == LbMode::L7 && port == 443;
            let cert = request.certificate.clone().filter(|_| tls);
            if tls && cert.is_none() {
                return Err(Error::invalid(
                    "load_balancer.certificate",
                    "is missing; a layer 7 balancer terminates TLS",
                    "set the ARN of an ACM certificate of the region",
                ));
            }
            let resource = format!("listener {port} of load balancer {lb_name}");
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
                        Ok(_) => tracing::info!(lb = lb_name, port, "created listener"),
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
}
