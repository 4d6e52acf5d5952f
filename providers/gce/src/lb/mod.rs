//! The balancer: a regional external passthrough Network Load Balancer (l4) or a
//! global external Application Load Balancer (l7), both in front of one unmanaged
//! instance group per zone.
//!
//! The registration ports of rke2/k3s (9345, 6443) get a passthrough rule each: in
//! l4 on the balancer's own address; in l7 — whose global HTTPS address takes no
//! TCP passthrough — on an internal passthrough Network Load Balancer beside it
//! (regional, scheme `INTERNAL`, on an address reserved in the nodes' subnetwork
//! with purpose `SHARED_LOADBALANCER_VIP` so both rules share it). Only the nodes
//! dial it, and they reach an internal address without any external path; it lies
//! in the subnetwork range triad already puts in NO_PROXY. The balancer reports it
//! as [`LoadBalancer::registration_endpoint`](triad_core::model::LoadBalancer).
//! Known gap (docs/gce.md, Limitations): Google answers a backend that dials its own
//! passthrough balancer's address from that backend itself, so a joining node that
//! is already a backend reaches its own port; a proxy balancer would not.
//!
//! Resource names are fixed per balancer (`<balancer>-hc`, `<balancer>-bs`, …), so
//! every step is a get-or-create; a balancer is named after the cluster, or
//! `<cluster>-b` while a mode change makes the new one beside the old one (core's
//! plan alternates the two names), so both exist side by side with no part in
//! common but the instance groups `<cluster>-<zone>` (an instance can be in one
//! load-balanced group only). Addresses and forwarding rules carry the ownership
//! labels, the label-less parts (health check, backend service, instance groups,
//! URL maps, proxies, firewall rules) an ownership description.

//!
//! One concern per module: [`part`] describes each kind of part once (get, insert,
//! delete, ownership) with the one `ensure` and `remove` over them; `create` makes
//! the balancer, `targets` finds it and converges its instance groups, `update`
//! changes its certificate, health check and labels in place, `delete` removes it.

mod create;
mod delete;
pub(crate) mod part;
mod targets;
mod update;

use triad_core::labels::Role;
use triad_core::model::Listener;
use triad_core::spec::{ClusterRef, LbMode, KUBE_API_PORT, RKE2_SUPERVISOR_PORT};

use crate::client::Scope;
use crate::nodes::ownership;
use crate::GceProvider;

/// The fixed names of one balancer's parts.
pub(crate) struct Names {
    /// The balancer's name.
    pub balancer: String,
    pub address: String,
    pub health_check: String,
    pub backend_service: String,
    pub l4_rule: String,
    pub url_map: String,
    pub redirect_map: String,
    pub https_proxy: String,
    pub http_proxy: String,
    pub ssl_policy: String,
    pub https_rule: String,
    pub http_rule: String,
    /// The firewall rule that lets clients reach the nodes through a passthrough
    /// rule (it keeps their addresses).
    pub web_rule: String,
    /// l7: the internal address of the registration ports' rules, and the firewall
    /// rule that lets the subnetwork and Google's health checkers reach the nodes
    /// on those ports (both named `<balancer>-reg`).
    pub internal: String,
    cluster: String,
}

impl Names {
    /// The parts of balancer `balancer` of `cluster`.
    pub(crate) fn new(cluster: &str, balancer: &str) -> Self {
        let b = balancer;
        Self {
            balancer: b.to_owned(),
            address: format!("{b}-lb"),
            health_check: format!("{b}-hc"),
            backend_service: format!("{b}-bs"),
            l4_rule: format!("{b}-fr"),
            url_map: format!("{b}-urlmap"),
            redirect_map: format!("{b}-redirect"),
            https_proxy: format!("{b}-https"),
            http_proxy: format!("{b}-http"),
            ssl_policy: format!("{b}-tls"),
            https_rule: format!("{b}-https"),
            http_rule: format!("{b}-http"),
            web_rule: format!("{b}-web"),
            internal: format!("{b}-reg"),
            cluster: cluster.to_owned(),
        }
    }

    /// The forwarding rule, backend service and TCP health check of registration
    /// port `port`: a passthrough rule of its own, so the port has a health check of
    /// its own (a backend service takes one).
    pub(crate) fn registration(&self, port: u16) -> Registration {
        let b = &self.balancer;
        Registration {
            rule: format!("{b}-fr-{port}"),
            backend_service: format!("{b}-bs-{port}"),
            health_check: format!("{b}-hc-{port}"),
        }
    }

    /// The registration port whose forwarding rule is `rule`.
    fn registration_port(&self, rule: &str) -> Option<u16> {
        let port = rule
            .strip_prefix(&format!("{}-", self.l4_rule))?
            .parse()
            .ok()?;
        REGISTRATION_PORTS.contains(&port).then_some(port)
    }

    /// The balancer's name from its address's name, if it is one of `cluster`'s.
    fn of_address(cluster: &str, address: &str) -> Option<String> {
        let b = address.strip_suffix("-lb")?;
        balancer_names(cluster)
            .contains(&b.to_owned())
            .then(|| b.to_owned())
    }

    /// The instance group of `zone`.
    pub(crate) fn group(&self, zone: &str) -> String {
        format!("{}-{zone}", self.cluster)
    }
}

/// The label on the main forwarding rule of the balancer that stays while the
/// cluster's other balancer (its name the value) is deleted.
pub(crate) const RETIRING: &str = "triad-retiring";

/// The registration ports a balancer may carry (RKE2's supervisor, the Kubernetes
/// API): the parts of both are deleted with the balancer, and made when the
/// request asks for them.
pub(crate) const REGISTRATION_PORTS: [u16; 2] = [RKE2_SUPERVISOR_PORT, KUBE_API_PORT];

/// The names of one registration port's parts.
pub(crate) struct Registration {
    pub rule: String,
    pub backend_service: String,
    pub health_check: String,
}

/// The names a balancer of `cluster` can have: the cluster's own, and the one
/// core's plan gives the new balancer of a mode change while the old one has the
/// cluster's (`<cluster>-b`; the two take turns).
pub(crate) fn balancer_names(cluster: &str) -> [String; 2] {
    [cluster.to_owned(), format!("{cluster}-b")]
}

/// The listeners of a balancer: 80/443 by mode, then the registration ports the
/// l4 forwarding rule carries beyond them.
fn listeners(mode: LbMode, registration: &[u16]) -> Vec<Listener> {
    let mut out = web_listeners(mode);
    out.extend(registration.iter().map(|&p| Listener {
        port: p,
        protocol: "TCP".into(),
        target_port: Some(p),
    }));
    out
}

/// The ports the passthrough rules carry: 80, 443, then the registration ports.
fn l4_ports(registration: &[u16]) -> Vec<String> {
    ["80".to_owned(), "443".to_owned()]
        .into_iter()
        .chain(registration.iter().map(ToString::to_string))
        .collect()
}

/// What a backend service serves, which sets its scheme, protocol and balancing
/// mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tier {
    /// The l7 web service behind the HTTPS proxy (`EXTERNAL_MANAGED`, HTTP).
    Http,
    /// An external passthrough service (l4: the web ports and the registration
    /// ports).
    External,
    /// The internal passthrough service of a registration port beside an l7
    /// balancer.
    Internal,
}

impl Tier {
    /// The web service's tier in `mode`.
    pub(crate) fn web(mode: LbMode) -> Self {
        match mode {
            LbMode::L4 => Tier::External,
            LbMode::L7 => Tier::Http,
        }
    }

    /// The registration ports' tier in `mode`.
    pub(crate) fn registration(mode: LbMode) -> Self {
        match mode {
            LbMode::L4 => Tier::External,
            LbMode::L7 => Tier::Internal,
        }
    }
}

fn web_listeners(mode: LbMode) -> Vec<Listener> {
    match mode {
        LbMode::L4 => vec![
            Listener {
                port: 80,
                protocol: "TCP".into(),
                target_port: Some(80),
            },
            Listener {
                port: 443,
                protocol: "TCP".into(),
                target_port: Some(443),
            },
        ],
        LbMode::L7 => vec![
            Listener {
                port: 80,
                protocol: "HTTP".into(),
                target_port: None,
            },
            Listener {
                port: 443,
                protocol: "HTTPS".into(),
                target_port: Some(80),
            },
        ],
    }
}

/// `…/zones/<zone>/instances/<name>` → (zone, name).
fn instance_key(link: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = link.split('/').collect();
    let i = parts.iter().position(|p| *p == "zones")?;
    match (parts.get(i + 1), parts.get(i + 2), parts.get(i + 3)) {
        (Some(z), Some(&"instances"), Some(n)) => Some(((*z).to_owned(), (*n).to_owned())),
        _ => None,
    }
}

fn balancer_description(cluster: &str, name: &str) -> String {
    format!("{} balancer {name}", ownership(cluster, Role::Lb))
}

fn balancer_name(description: Option<&str>, cluster: &str) -> String {
    description
        .and_then(|d| d.rsplit_once(" balancer "))
        .map(|(_, n)| n.to_owned())
        .unwrap_or_else(|| cluster.to_owned())
}

/// Where the balancer of `mode` lives: l4 in the cluster's region, l7 global.
fn scope_of(cluster: &ClusterRef, mode: LbMode) -> Scope {
    match mode {
        LbMode::L4 => Scope::Region(cluster.region.clone()),
        LbMode::L7 => Scope::Global,
    }
}

impl GceProvider {
    pub(crate) fn project(&self) -> &str {
        &self.settings.project
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::owned_by;

    #[test]
    fn names_are_fixed_per_cluster() {
        let n = Names::new("rancher", "rancher-b");
        assert_eq!(n.group("us-central1-a"), "rancher-us-central1-a");
        assert_eq!(n.l4_rule, "rancher-b-fr");
        assert_eq!(n.redirect_map, "rancher-b-redirect");
        let long = "a-twenty-four-char-name1";
        let n = Names::new(long, &balancer_names(long)[1]);
        assert!(crate::settings::is_name(
            &n.group("northamerica-northeast1-a")
        ));
        assert!(crate::settings::is_name(&n.redirect_map));
        assert_eq!(
            Names::of_address("rancher", "rancher-b-lb").as_deref(),
            Some("rancher-b")
        );
        assert_eq!(
            Names::of_address("rancher", "rancher-lb").as_deref(),
            Some("rancher")
        );
        assert_eq!(Names::of_address("rancher", "other-lb"), None);
        let n = Names::new("rancher", "rancher");
        let reg = n.registration(9345);
        assert_eq!(reg.rule, "rancher-fr-9345");
        assert_eq!(reg.health_check, "rancher-hc-9345");
        assert_eq!(n.registration_port(&reg.rule), Some(9345));
        assert_eq!(n.registration_port("rancher-fr-22"), None);
        assert_eq!(n.registration_port("rancher-fr"), None);
    }

    #[test]
    fn balancing_modes_suit_every_tier_on_shared_groups() {
        // The HTTPS service by RATE (with its one maximum), every passthrough one
        // by CONNECTION: compatible on one instance group.
        let http = create::backend(Tier::Http, "g");
        assert_eq!(
            http.balancing_mode.as_ref().and_then(|m| m.name()),
            Some("RATE")
        );
        assert!(http.max_rate_per_instance.is_some_and(|r| r > 0.0));
        for tier in [Tier::External, Tier::Internal] {
            let b = create::backend(tier, "g");
            assert_eq!(
                b.balancing_mode.as_ref().and_then(|m| m.name()),
                Some("CONNECTION")
            );
            assert!(b.max_rate_per_instance.is_none());
        }
        assert_eq!(Tier::registration(LbMode::L7), Tier::Internal);
        assert_eq!(Tier::registration(LbMode::L4), Tier::External);
        assert_eq!(Tier::web(LbMode::L7), Tier::Http);
        assert_eq!(Names::new("rancher", "rancher-b").internal, "rancher-b-reg");
    }

    #[test]
    fn instance_links_parse() {
        assert_eq!(
            instance_key("https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a/instances/rancher-1"),
            Some(("us-central1-a".into(), "rancher-1".into()))
        );
        assert_eq!(instance_key("projects/p/global/networks/default"), None);
    }

    #[test]
    fn balancer_names_round_trip_through_descriptions() {
        let d = balancer_description("rancher", "rancher-lb");
        assert!(owned_by(Some(&d), "rancher"));
        assert_eq!(balancer_name(Some(&d), "rancher"), "rancher-lb");
        assert_eq!(balancer_name(None, "rancher"), "rancher");
    }

    #[test]
    fn listeners_follow_the_mode() {
        let l4 = listeners(LbMode::L4, &[9345, 6443]);
        assert!(l4.iter().all(|l| l.protocol == "TCP"));
        assert_eq!(
            l4.iter().map(|l| l.port).collect::<Vec<_>>(),
            [80, 443, 9345, 6443]
        );
        assert_eq!(l4_ports(&[9345, 6443]), ["80", "443", "9345", "6443"]);
        let l7 = listeners(LbMode::L7, &[]);
        assert!(l7
            .iter()
            .any(|l| l.port == 443 && l.protocol == "HTTPS" && l.target_port == Some(80)));
    }
}
