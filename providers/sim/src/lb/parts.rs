//! The balancer's parts as a model: which target groups and listeners a request
//! needs, which target groups belong to which balancer, and the
//! [`LoadBalancer`] built from what one discovery saw.

use std::collections::BTreeSet;

use triad_core::model::{Endpoint, Listener, LoadBalancer, LoadBalancerRequest};
use triad_core::spec::LbMode;

use crate::world::{SimBalancer, SimListener, SimListenerAction, SimTargetGroup};

/// A target group the balancer needs.
#[derive(Clone, Debug)]
pub(super) struct TgSpec {
    pub(super) name: String,
    pub(super) protocol: &'static str,
    pub(super) port: u16,
    /// A TCP health check on `port` (registration ports) instead of HTTP on 80.
    pub(super) tcp_check: bool,
}

/// A listener the balancer needs.
#[derive(Clone, Debug)]
pub(super) struct ListenerSpec {
    pub(super) port: u16,
    pub(super) protocol: &'static str,
    /// Name of the target group it forwards to; `None` redirects to HTTPS.
    pub(super) forward_to: Option<String>,
    pub(super) certificate: Option<String>,
}

/// The balancer's parts: 80/443 by mode, then one TCP target group and TCP
/// listener per registration port (9345, 6443) in either mode. On AWS an l7
/// balancer needs a companion NLB for these; the sim keeps their listeners on the
/// one balancer and models the companion's address ([`registration_endpoint`]).
pub(super) fn wanted(request: &LoadBalancerRequest) -> (Vec<TgSpec>, Vec<ListenerSpec>) {
    let (mut tgs, mut listeners) = wanted_web(request);
    for &port in &request.registration_ports {
        let tg = TgSpec {
            name: format!("{}-tcp-{port}", request.name),
            protocol: "TCP",
            port,
            tcp_check: true,
        };
        listeners.push(ListenerSpec {
            port,
            protocol: "TCP",
            forward_to: Some(tg.name.clone()),
            certificate: None,
        });
        tgs.push(tg);
    }
    (tgs, listeners)
}

pub(super) fn wanted_web(request: &LoadBalancerRequest) -> (Vec<TgSpec>, Vec<ListenerSpec>) {
    let n = &request.name;
    match request.mode {
        LbMode::L4 => {
            let tgs = vec![
                TgSpec {
                    name: format!("{n}-tcp-80"),
                    protocol: "TCP",
                    port: 80,
                    tcp_check: false,
                },
                TgSpec {
                    name: format!("{n}-tcp-443"),
                    protocol: "TCP",
                    port: 443,
                    tcp_check: false,
                },
            ];
            let listeners = tgs
                .iter()
                .map(|tg| ListenerSpec {
                    port: tg.port,
                    protocol: "TCP",
                    forward_to: Some(tg.name.clone()),
                    certificate: None,
                })
                .collect();
            (tgs, listeners)
        }
        LbMode::L7 => {
            let tg = TgSpec {
                name: format!("{n}-http-80"),
                protocol: "HTTP",
                port: 80,
                tcp_check: false,
            };
            let listeners = vec![
                ListenerSpec {
                    port: 80,
                    protocol: "HTTP",
                    forward_to: None,
                    certificate: None,
                },
                ListenerSpec {
                    port: 443,
                    protocol: "HTTPS",
                    forward_to: Some(tg.name.clone()),
                    certificate: request.certificate.clone(),
                },
            ];
            (vec![tg], listeners)
        }
    }
}

/// Everything the cluster's balancer is made of, as one discovery sees it.
pub(super) struct Parts {
    pub(super) balancer: Option<crate::world::SimBalancer>,
    pub(super) listeners: Vec<SimListener>,
    pub(super) target_groups: Vec<SimTargetGroup>,
}

/// Whether the target group named `tg` belongs to the balancer named `lb_name` (two
/// balancers of one cluster, `rancher` and `rancher-b`, live side by side during a
/// mode change: a prefix would mix their target groups).
pub(super) fn is_tg_of(lb_name: &str, tg: &str) -> bool {
    // `<lb>-tcp-<port>` (80, 443 and the registration ports) or `<lb>-http-80`.
    let Some(rest) = tg.strip_prefix(lb_name).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let port = rest
        .strip_prefix("tcp-")
        .or_else(|| rest.strip_prefix("http-"));
    port.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Where an l7 balancer serves its registration listeners (any TCP listener): the
/// address of an internal TCP companion, as an ALB cannot pass TCP through. A
/// stable name made from the balancer's id; `None` in l4, where the balancer's own
/// endpoint serves them.
fn registration_endpoint(b: &SimBalancer, listeners: &[Listener]) -> Option<Endpoint> {
    let apart = b.mode == LbMode::L7 && listeners.iter().any(|l| l.protocol == "TCP");
    apart.then(|| {
        let id = b.arn.rsplit('/').next().unwrap_or_default();
        Endpoint::Hostname {
            name: format!("internal-{}-reg-{id}.elb.{}.sim.invalid", b.name, b.region),
            alias_zone: None,
        }
    })
}

pub(super) fn build(parts: &Parts) -> Option<LoadBalancer> {
    let b = parts.balancer.as_ref()?;

    let tgs: Vec<&SimTargetGroup> = parts
        .target_groups
        .iter()
        .filter(|t| is_tg_of(&b.name, &t.name))
        .collect();
    let mut listeners: Vec<Listener> = parts
        .listeners
        .iter()
        .filter(|l| l.balancer_arn == b.arn)
        .map(|l| Listener {
            port: l.port,
            protocol: l.protocol.clone(),
            target_port: match &l.action {
                SimListenerAction::Forward(arn) => {
                    tgs.iter().find(|t| &t.arn == arn).map(|t| t.port)
                }
                SimListenerAction::RedirectToHttps => None,
            },
        })
        .collect();
    listeners.sort_by_key(|l| l.port);
    let targets: Vec<String> = match tgs.split_first() {
        None => Vec::new(),
        Some((first, rest)) => first
            .targets
            .iter()
            .filter(|id| rest.iter().all(|t| t.targets.contains(*id)))
            .cloned()
            .collect(),
    };
    let partial_targets: Vec<String> = tgs
        .iter()
        .flat_map(|t| t.targets.iter())
        .filter(|id| !targets.contains(id))
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    Some(LoadBalancer {
        id: b.arn.clone(),
        name: b.name.clone(),
        mode: b.mode,
        scheme: b.scheme,
        state: b.state,
        endpoint: b.endpoint.clone(),
        registration_endpoint: registration_endpoint(b, &listeners),
        listeners,
        targets,
        labels: b.labels.clone(),
        partial_targets,
    })
}

pub(super) fn alias_zone_id(region: &str) -> String {
    // FNV-1a of the region: a stable per-region canonical hosted zone id.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in region.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ZSIM{:010X}", h & 0xff_ffff_ffff)
}
