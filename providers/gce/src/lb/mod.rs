//! The balancer: a regional external passthrough Network Load Balancer (l4) or a
//! global external Application Load Balancer (l7), both in front of one unmanaged
//! instance group per zone.
//!
//! Resource names are fixed per cluster (`<cluster>-hc`, `<cluster>-bs`,
//! `<cluster>-<zone>`, …), so every step is a get-or-create; addresses and
//! forwarding rules carry the ownership labels, the label-less parts (health check,
//! backend service, instance groups, URL maps, proxies) an ownership description.

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

use triad_core::error::SpecProblem;
use triad_core::labels::Role;
use triad_core::model::Listener;
use triad_core::spec::{ClusterRef, LbMode, ValidSpec};

use crate::client::Scope;
use crate::nodes::ownership;
use crate::GceProvider;

/// The fixed names of the balancer's parts.
pub(crate) struct Names {
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
    cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Self {
            address: format!("{cluster}-lb"),
            health_check: format!("{cluster}-hc"),
            backend_service: format!("{cluster}-bs"),
            l4_rule: format!("{cluster}-fr"),
            url_map: format!("{cluster}-urlmap"),
            redirect_map: format!("{cluster}-redirect"),
            https_proxy: format!("{cluster}-https"),
            http_proxy: format!("{cluster}-http"),
            ssl_policy: format!("{cluster}-tls"),
            https_rule: format!("{cluster}-https"),
            http_rule: format!("{cluster}-http"),
            cluster: cluster.to_owned(),
        }
    }

    /// The instance group of `zone`.
    pub fn group(&self, zone: &str) -> String {
        format!("{}-{zone}", self.cluster)
    }
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

/// The ports of the l4 forwarding rule: 80, 443, then the registration ports.
fn l4_ports(registration: &[u16]) -> Vec<String> {
    ["80".to_owned(), "443".to_owned()]
        .into_iter()
        .chain(registration.iter().map(ToString::to_string))
        .collect()
}

/// GCE cannot give an l7 balancer the registration listeners on the Rancher
/// hostname: the HTTPS balancer's global address takes no TCP passthrough rule, so
/// 9345/6443 would need a second, regional address the nodes' user data cannot
/// know. Refused at plan, naming the field.
pub(crate) fn registration_problem(spec: &ValidSpec) -> Option<SpecProblem> {
    (spec.load_balancer.mode == LbMode::L7 && !spec.registration_ports().is_empty()).then(|| SpecProblem {
        field: "load_balancer.registration".into(),
        problem: "is `balancer`, but a GCE HTTPS balancer (l7) has no TCP passthrough on its address for 9345/6443".into(),
        fix: "use mode = \"l4\" (the passthrough rule carries 80, 443, 9345 and 6443), or registration = \"first-node\" with kubernetes.install = false".into(),
    })
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
        let n = Names::new("rancher");
        assert_eq!(n.group("us-central1-a"), "rancher-us-central1-a");
        assert_eq!(n.l4_rule, "rancher-fr");
        assert!(crate::settings::is_name(
            &Names::new("a-twenty-four-char-name1").group("northamerica-northeast1-a")
        ));
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
