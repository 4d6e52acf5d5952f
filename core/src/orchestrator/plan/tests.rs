use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::model::{Listener, NodeState};
use crate::spec::{ClusterSpec, LbScheme};

fn spec(extra: &str) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        "name = \"r\"\nregion = \"x\"\n{extra}\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n"
    ))
    .unwrap()
    .validate()
    .unwrap()
}

fn node(name: &str, id: &str, zone: &str, ready: bool) -> Node {
    Node {
        id: id.into(),
        name: name.into(),
        zone: zone.into(),
        state: if ready {
            NodeState::Running
        } else {
            NodeState::Pending
        },
        private_ip: ready.then(|| "10.0.0.1".parse().unwrap()),
        public_ip: None,
        ssh: None,
        labels: BTreeMap::new(),
        created_ms: None,
    }
}

fn lb(targets: &[&str]) -> LoadBalancer {
    LoadBalancer {
        id: "lb-1".into(),
        name: "r".into(),
        mode: LbMode::L4,
        scheme: LbScheme::InternetFacing,
        state: LbState::Active,
        endpoint: Some(Endpoint::Hostname {
            name: "r-1.elb.example".into(),
            alias_zone: Some("Z1".into()),
        }),
        registration_endpoint: None,
        listeners: vec![
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
        targets: targets.iter().map(|s| s.to_string()).collect(),
        labels: Default::default(),
        partial_targets: Vec::new(),
    }
}

fn zones() -> Vec<String> {
    vec!["xa".into(), "xb".into(), "xc".into()]
}

#[test]
fn fresh_cluster_creates_three_nodes_in_three_zones() {
    let actions = rollout::plan_nodes(&spec(""), &zones(), &[]);
    let created: Vec<(&str, &str)> = actions
        .iter()
        .map(|a| match a {
            NodeAction::Create { name, zone } => (name.as_str(), zone.as_str()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(created, vec![("r-1", "xa"), ("r-2", "xb"), ("r-3", "xc")]);
}

#[test]
fn missing_node_goes_to_the_emptiest_zone() {
    let found = [
        node("r-1", "i-1", "xa", true),
        node("r-3", "i-3", "xb", true),
    ];
    let actions = rollout::plan_nodes(&spec(""), &zones(), &found);
    assert!(actions.contains(&NodeAction::Create {
        name: "r-2".into(),
        zone: "xc".into()
    }));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, NodeAction::Keep { .. }))
            .count(),
        2
    );
}

#[test]
fn duplicates_and_surplus_are_deleted_and_pending_nodes_waited_for() {
    let found = [
        node("r-1", "i-9", "xa", false),
        node("r-1", "i-1", "xa", true),
        node("r-2", "i-2", "xb", false),
        node("r-3", "i-3", "xc", true),
        node("r-5", "i-5", "xc", true),
    ];
    let actions = rollout::plan_nodes(&spec(""), &zones(), &found);
    let deleted: BTreeSet<&str> = actions
        .iter()
        .filter_map(|a| match a {
            NodeAction::Delete { node, .. } => Some(node.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, BTreeSet::from(["i-9", "i-5"]));
    assert!(actions.contains(&NodeAction::Keep {
        node: found[1].clone()
    }));
    assert!(actions.contains(&NodeAction::Wait {
        node: found[2].clone()
    }));
}

#[test]
fn targets_keep_only_when_equal() {
    let nodes = [
        node("r-1", "i-1", "xa", true),
        node("r-2", "i-2", "xb", true),
        node("r-3", "i-3", "xc", true),
    ];
    let actions = rollout::plan_nodes(&spec(""), &zones(), &nodes);
    let keep = LbAction::Keep {
        lb: lb(&["i-1", "i-2", "i-3"]),
    };
    assert_eq!(plan_targets(&actions, &keep), TargetsAction::Keep);
    let stale = LbAction::Keep {
        lb: lb(&["i-1", "i-2", "i-7"]),
    };
    assert_eq!(
        plan_targets(&actions, &stale),
        TargetsAction::Converge {
            add: vec!["r-3".into()],
            remove: vec!["i-7".into()]
        }
    );
}

struct Caps(bool);
#[async_trait::async_trait]
impl DnsProvider for Caps {
    fn name(&self) -> &str {
        "caps"
    }
    fn capabilities(&self) -> crate::provider::DnsCapabilities {
        crate::provider::DnsCapabilities {
            alias: self.0,
            lock: false,
        }
    }
    async fn lookup(&self, _: &str, _: &str) -> Result<Option<Record>> {
        unreachable!()
    }
    async fn owned_records(&self, _: &ClusterRef, _: &str) -> Result<Vec<Record>> {
        unreachable!()
    }
    async fn upsert_record(&self, _: &ClusterRef, _: &RecordRequest) -> Result<Record> {
        unreachable!()
    }
    async fn wait_record(&self, _: &str, _: &str, _: Duration) -> Result<()> {
        unreachable!()
    }
    async fn delete_record(&self, _: &ClusterRef, _: &str, _: &str) -> Result<()> {
        unreachable!()
    }
}

#[test]
fn record_kind_follows_endpoint_and_capabilities() {
    let s = spec("");
    assert_eq!(
        desired_record(&s, &lb(&[]), &Caps(true)).unwrap().kind,
        RecordKind::Alias
    );
    assert_eq!(
        desired_record(&s, &lb(&[]), &Caps(false)).unwrap().kind,
        RecordKind::Cname
    );
    let mut ip = lb(&[]);
    ip.endpoint = Some(Endpoint::Ip {
        addresses: vec!["203.0.113.7".parse().unwrap()],
    });
    let req = desired_record(&s, &ip, &Caps(true)).unwrap();
    assert_eq!(
        (req.kind, req.ttl, req.fqdn.as_str()),
        (RecordKind::A, 60, "rancher.example.com")
    );
    // An A record cannot point at a hostname.
    let err = desired_record(&spec("").clone_with_record("a"), &lb(&[]), &Caps(true)).unwrap_err();
    assert!(err.spec_problems().unwrap().names("dns.record"), "{err}");
}

#[test]
fn cname_at_the_apex_is_refused() {
    let s = ClusterSpec::from_toml(
        "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"example.com\"\nhostname = \"example.com\"\nrecord = \"cname\"\n",
    )
    .unwrap()
    .validate()
    .unwrap();
    let err = desired_record(&s, &lb(&[]), &Caps(false)).unwrap_err();
    assert!(err.spec_problems().unwrap().names("dns.hostname"), "{err}");
}

#[test]
fn foreign_zones_are_named() {
    let s = spec("zones = [\"xa\", \"elsewhere-1a\"]");
    let err = choose_zones(&s, &zones()).unwrap_err();
    let p = err.spec_problems().unwrap();
    assert!(p.names("zones[1]") && !p.names("zones[0]"), "{err}");
    assert_eq!(choose_zones(&spec(""), &zones()).unwrap(), zones());
}

trait WithRecord {
    fn clone_with_record(&self, record: &str) -> ValidSpec;
}
impl WithRecord for ValidSpec {
    fn clone_with_record(&self, record: &str) -> ValidSpec {
        let mut s = self.clone().into_inner();
        s.dns.record = serde_json::from_value(serde_json::json!(record)).unwrap();
        s.validate().unwrap()
    }
}

/// An l7 balancer whose provider serves the registration ports apart is complete
/// only with the address of that companion; elsewhere its listeners suffice.
#[test]
fn registration_apart_needs_the_companion_address() {
    let s =
        spec("[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:x:1:certificate/c\"\n");
    assert_eq!(s.registration_ports(), [9345, 6443]);
    let mut found = lb(&[]);
    found.mode = LbMode::L7;
    for port in [9345, 6443] {
        found.listeners.push(Listener {
            port,
            protocol: "TCP".into(),
            target_port: Some(port),
        });
    }
    let cluster = s.cluster();
    let action = |lb: &LoadBalancer, apart: bool| {
        plan_lb(&s, &cluster, std::slice::from_ref(lb), true, apart).0
    };
    assert!(matches!(action(&found, true), LbAction::Complete { .. }));
    assert!(!matches!(action(&found, false), LbAction::Complete { .. }));
    found.registration_endpoint = Some(Endpoint::Hostname {
        name: "internal-r-reg.elb.example".into(),
        alias_zone: None,
    });
    assert!(!matches!(action(&found, true), LbAction::Complete { .. }));
}
