//! The sim's own rules: quotas, zones, ownership, balancer shapes, spec settings.

use std::net::IpAddr;

use triad_core::model::{Endpoint, NodeState, RecordKind, RecordRequest};
use triad_core::spec::{ClusterSpec, LbMode};
use triad_core::{ClusterRef, DnsProvider, Error, FailureKind, LoadBalancerProvider, NodeProvider};
use triad_sim::{
    EndpointStyle, SimApi, SimCloud, SimConfig, SimListenerAction, SimRecordData, SimSettings,
};

use crate::{cloud, cluster, lb_request, node_request, FQDN, ZONE};

fn kind(e: &Error) -> FailureKind {
    e.kind()
        .unwrap_or_else(|| panic!("a provider error: {e:?}"))
}

fn a_record(addr: &str) -> RecordRequest {
    let target = Endpoint::Ip {
        addresses: vec![addr.parse().unwrap()],
    };
    RecordRequest::new(FQDN, ZONE, RecordKind::A, target)
}

#[tokio::test]
async fn quota_limits_live_nodes_per_cluster() {
    let sim = cloud(SimConfig::instant().with_node_quota(2));
    let c = cluster();
    let n1 = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    sim.create_node(&c, &node_request(&c, "rancher-2", "us-east-1b"))
        .await
        .unwrap();
    let err = sim
        .create_node(&c, &node_request(&c, "rancher-3", "us-east-1c"))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), FailureKind::Capacity);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("quota"), "{err}");
    // Asking again for an existing node is not a new node.
    sim.create_node(&c, &node_request(&c, "rancher-2", "us-east-1b"))
        .await
        .unwrap();
    // Another cluster has its own quota.
    let other = ClusterRef::new("other", "us-east-1");
    sim.create_node(&other, &node_request(&other, "other-1", "us-east-1a"))
        .await
        .unwrap();
    // Freeing a slot lets the third node in.
    sim.delete_node(&c, &n1).await.unwrap();
    sim.create_node(&c, &node_request(&c, "rancher-3", "us-east-1c"))
        .await
        .unwrap();
    assert_eq!(sim.snapshot().live_nodes("rancher").len(), 2);
}

#[tokio::test]
async fn any_region_has_the_configured_zones() {
    let sim = cloud(SimConfig::instant().with_zones(["1", "2"]));
    let c = ClusterRef::new("rancher", "dc-paris");
    assert_eq!(sim.zones(&c).await.unwrap(), vec!["dc-paris1", "dc-paris2"]);
    let err = sim
        .create_node(&c, &node_request(&c, "rancher-1", "dc-paris3"))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), FailureKind::InvalidRequest);
    assert!(err.to_string().contains("dc-paris1, dc-paris2"), "{err}");
}

#[tokio::test]
async fn nodes_get_ids_and_zone_addresses() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let a = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    let c3 = sim
        .create_node(&c, &node_request(&c, "rancher-3", "us-east-1c"))
        .await
        .unwrap();
    assert!(a.id.starts_with("i-") && a.id.len() == 19, "{}", a.id);
    assert!(a.id[2..].chars().all(|ch| ch.is_ascii_hexdigit()));
    let ip = |n: &triad_core::Node| match n.private_ip {
        Some(IpAddr::V4(v)) => v.octets(),
        other => panic!("an IPv4 address: {other:?}"),
    };
    assert_eq!(&ip(&a)[..2], &[10, 0]);
    assert_eq!(&ip(&c3)[..2], &[10, 2]);
    let snap = sim.snapshot();
    assert_eq!(snap.nodes.len(), 2);
    assert_eq!(snap.nodes[0].size.as_deref(), Some("4cpu-16gb"));
    assert_eq!(snap.security_groups.len(), 1);
    assert!(snap
        .nodes
        .iter()
        .all(|n| n.security_group == snap.security_groups[0].id));
    assert_eq!(sim.stats().calls(SimApi::CreateSecurityGroup), 1);
}

#[tokio::test]
async fn ownership_labels_are_always_applied() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let mut req = node_request(&c, "rancher-1", "us-east-1a");
    req.labels.clear();
    req.labels.insert("team".into(), "ops".into());
    let node = sim.create_node(&c, &req).await.unwrap();
    assert_eq!(
        node.labels.get("triad-cluster").map(String::as_str),
        Some("rancher")
    );
    assert_eq!(node.labels.get("team").map(String::as_str), Some("ops"));
    assert_eq!(sim.discover_nodes(&c).await.unwrap().len(), 1);
}

#[tokio::test]
async fn cleanup_refuses_while_nodes_live() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    let err = sim.cleanup(&c).await.unwrap_err();
    assert_eq!(kind(&err), FailureKind::Conflict);
    assert!(err.to_string().contains(&node.id), "{err}");
    sim.delete_node(&c, &node).await.unwrap();
    assert_eq!(
        sim.cleanup(&c).await.unwrap(),
        vec!["security group rancher-nodes"]
    );
    assert!(sim.cleanup(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn another_clusters_node_is_never_deleted() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let other = ClusterRef::new("other", "us-east-1");
    let theirs = sim
        .create_node(&other, &node_request(&other, "other-1", "us-east-1a"))
        .await
        .unwrap();
    let err = sim.delete_node(&c, &theirs).await.unwrap_err();
    assert_eq!(kind(&err), FailureKind::Conflict);
    assert_eq!(sim.snapshot().live_nodes("other").len(), 1);
    assert!(sim.discover_nodes(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn layer4_balancer_matches_the_rancher_docs() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let lb = sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L4))
        .await
        .unwrap();
    let snap = sim.snapshot();
    let names: Vec<&str> = snap.target_groups.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    for tg in &snap.target_groups {
        assert!(["rancher-tcp-80", "rancher-tcp-443"].contains(&tg.name.as_str()));
        assert_eq!(tg.protocol, "TCP");
        assert_eq!(tg.port, if tg.name.ends_with("-80") { 80 } else { 443 });
        let hc = &tg.health_check;
        assert_eq!(
            (hc.protocol.as_str(), hc.path.as_str(), hc.port),
            ("HTTP", "/healthz", 80)
        );
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (3, 3));
        assert_eq!(hc.timeout.as_secs(), 6);
        assert_eq!(hc.interval.as_secs(), 10);
        assert_eq!(tg.labels.get("triad-role").map(String::as_str), Some("lb"));
    }
    for l in &snap.listeners {
        let SimListenerAction::Forward(arn) = &l.action else {
            panic!("l4 listeners forward: {l:?}")
        };
        let tg = snap.target_groups.iter().find(|t| &t.arn == arn).unwrap();
        assert_eq!((l.protocol.as_str(), l.port), ("TCP", tg.port));
    }
    assert_eq!(lb.listeners.len(), 2);
    assert_eq!(
        lb.state,
        triad_core::model::LbState::Active,
        "instant config"
    );
}

#[tokio::test]
async fn layer7_balancer_terminates_tls_and_redirects_http() {
    let sim = cloud(SimConfig::instant().with_balancer_endpoint(EndpointStyle::Hostname));
    let c = cluster();
    let lb = sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L7))
        .await
        .unwrap();
    let snap = sim.snapshot();
    assert_eq!(snap.target_groups.len(), 1);
    assert_eq!(snap.target_groups[0].name, "rancher-http-80");
    let https = snap.listeners.iter().find(|l| l.port == 443).unwrap();
    assert_eq!(https.protocol, "HTTPS");
    assert_eq!(
        https.certificate.as_deref(),
        Some("arn:sim:acm:cert/rancher")
    );
    let http = snap.listeners.iter().find(|l| l.port == 80).unwrap();
    assert_eq!(http.action, SimListenerAction::RedirectToHttps);
    let l80 = lb.listeners.iter().find(|l| l.port == 80).unwrap();
    assert_eq!(l80.target_port, None);
    match &lb.endpoint {
        Some(Endpoint::Hostname {
            name,
            alias_zone: Some(z),
        }) => {
            assert!(name.starts_with("rancher-") && name.ends_with(".elb.us-east-1.sim.invalid"));
            assert!(z.starts_with("ZSIM"));
        }
        other => panic!("a hostname endpoint: {other:?}"),
    }
    // l7 without a certificate is refused before any call.
    let mut no_cert = lb_request(&c, LbMode::L7);
    no_cert.certificate = None;
    sim.reset_stats();
    let err = sim.create_load_balancer(&c, &no_cert).await.unwrap_err();
    assert_eq!(kind(&err), FailureKind::InvalidRequest);
    assert_eq!(sim.stats().total(), 0);
}

#[tokio::test]
async fn set_targets_changes_only_the_difference() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    let mut nodes = Vec::new();
    for (i, z) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        let req = node_request(&c, &format!("rancher-{}", i + 1), z);
        nodes.push(sim.create_node(&c, &req).await.unwrap());
    }
    let lb = sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L4))
        .await
        .unwrap();
    sim.reset_stats();
    let lb = sim.set_targets(&c, &lb, &nodes[..2]).await.unwrap();
    assert_eq!(
        sim.stats().calls(SimApi::RegisterTargets),
        2,
        "one per target group"
    );
    assert_eq!(lb.targets.len(), 2);

    sim.reset_stats();
    sim.set_targets(&c, &lb, &nodes[..2]).await.unwrap();
    assert_eq!(sim.stats().mutating, 0, "nothing to change");

    sim.reset_stats();
    let lb = sim.set_targets(&c, &lb, &nodes[1..]).await.unwrap();
    let stats = sim.stats();
    assert_eq!(stats.calls(SimApi::RegisterTargets), 2);
    assert_eq!(stats.calls(SimApi::DeregisterTargets), 2);
    let mut want: Vec<String> = nodes[1..].iter().map(|n| n.id.clone()).collect();
    want.sort();
    assert_eq!(lb.targets, want);
    for tg in &sim.snapshot().target_groups {
        assert_eq!(tg.targets.iter().cloned().collect::<Vec<_>>(), want);
    }
}

#[tokio::test(start_paused = true)]
async fn pending_nodes_cannot_be_targets() {
    let sim = cloud(SimConfig::realistic());
    let c = cluster();
    let node = sim
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    let lb = sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L4))
        .await
        .unwrap();
    let err = sim.set_targets(&c, &lb, &[node]).await.unwrap_err();
    assert_eq!(kind(&err), FailureKind::InvalidRequest);
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test]
async fn delete_load_balancer_removes_parts_without_a_balancer() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    // A run that died after the target groups: no balancer yet.
    sim.inject(triad_sim::SimFault::on(SimApi::CreateBalancer).kind(FailureKind::Other));
    assert!(sim
        .create_load_balancer(&c, &lb_request(&c, LbMode::L4))
        .await
        .is_err());
    assert_eq!(sim.snapshot().target_groups.len(), 2);
    assert!(sim.discover_load_balancer(&c).await.unwrap().is_none());
    let mut deleted = sim.delete_load_balancer(&c).await.unwrap();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            "target group rancher-tcp-443",
            "target group rancher-tcp-80"
        ]
    );
    assert!(sim.snapshot().is_clean_of("rancher"));
}

#[tokio::test]
async fn unknown_hosted_zone_names_the_zone_and_the_fix() {
    let sim = SimCloud::new(SimConfig::instant());
    let err = sim
        .lookup("nowhere.test", "rancher.nowhere.test")
        .await
        .unwrap_err();
    assert_eq!(kind(&err), FailureKind::NotFound);
    let text = err.to_string();
    assert!(
        text.contains("nowhere.test") && text.contains("add_dns_zone"),
        "{text}"
    );
    let err = sim
        .upsert_record(&cluster(), &a_record("203.0.113.1"))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), FailureKind::NotFound);
    assert!(sim
        .put_foreign_record(
            "nowhere.test",
            "x.nowhere.test",
            Endpoint::Ip { addresses: vec![] }
        )
        .is_err());
}

#[tokio::test]
async fn record_outside_its_zone_is_refused() {
    let sim = cloud(SimConfig::instant());
    let mut req = a_record("203.0.113.1");
    req.fqdn = "rancher.example.org".into();
    let err = sim.upsert_record(&cluster(), &req).await.unwrap_err();
    assert_eq!(kind(&err), FailureKind::InvalidRequest);
}

#[tokio::test]
async fn records_carry_an_ownership_txt_and_are_not_stolen() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.upsert_record(&c, &a_record("203.0.113.1"))
        .await
        .unwrap();
    let snap = sim.snapshot();
    let txt = snap.txt(ZONE, "_triad.rancher.example.com").unwrap();
    assert_eq!(
        txt.data,
        SimRecordData::Txt(vec![
            "heritage=triad,triad-cluster=rancher,kind=a".to_string()
        ])
    );
    let other = ClusterRef::new("intruder", "us-east-1");
    let err = sim
        .upsert_record(&other, &a_record("198.51.100.1"))
        .await
        .unwrap_err();
    match err {
        Error::NotOwned {
            fqdn,
            cluster,
            owner,
        } => {
            assert_eq!(fqdn, FQDN);
            assert_eq!(cluster, "intruder");
            assert!(owner.contains("rancher"), "{owner}");
        }
        e => panic!("NotOwned, got {e}"),
    }
    assert_eq!(sim.snapshot(), snap, "nothing changed");
}

#[tokio::test]
async fn switching_a_to_cname_replaces_the_record() {
    let sim = cloud(SimConfig::instant());
    let c = cluster();
    sim.upsert_record(&c, &a_record("203.0.113.1"))
        .await
        .unwrap();
    let mut cname = a_record("203.0.113.1");
    cname.kind = RecordKind::Cname;
    cname.target = Endpoint::Hostname {
        name: "lb-1.elb.us-east-1.sim.invalid".into(),
        alias_zone: None,
    };
    let rec = sim.upsert_record(&c, &cname).await.unwrap();
    assert!(cname.is_satisfied_by(&rec));
    let zone = &sim.snapshot().zones[0];
    let at_fqdn: Vec<_> = zone.records.iter().filter(|r| r.fqdn == FQDN).collect();
    assert_eq!(at_fqdn.len(), 1, "{at_fqdn:?}");
    assert_eq!(
        at_fqdn[0].data,
        SimRecordData::Cname("lb-1.elb.us-east-1.sim.invalid".into())
    );
    let found = sim.lookup(ZONE, FQDN).await.unwrap().unwrap();
    assert_eq!(found.kind, RecordKind::Cname);
    assert_eq!(found.owner.as_deref(), Some("rancher"));
    // Same request again: no change submitted.
    sim.reset_stats();
    sim.upsert_record(&c, &cname).await.unwrap();
    assert_eq!(sim.stats().calls(SimApi::ChangeRecords), 0);
}

#[tokio::test]
async fn mismatched_record_kind_and_target_is_invalid() {
    let sim = cloud(SimConfig::instant());
    let mut req = a_record("203.0.113.1");
    req.kind = RecordKind::Alias;
    let err = sim.upsert_record(&cluster(), &req).await.unwrap_err();
    assert_eq!(kind(&err), FailureKind::InvalidRequest);
}

fn spec(extra: &str) -> Result<triad_core::ValidSpec, Error> {
    ClusterSpec::from_toml(&format!(
        "name = \"rancher\"\nregion = \"us-east-1\"\n[dns]\nzone = \"example.com\"\n\
         hostname = \"rancher.example.com\"\n{extra}"
    ))?
    .validate()
}

#[tokio::test]
async fn from_spec_reads_the_sim_section() {
    let s = spec("[sim]\ntime_scale = 0.1\nbalancer_endpoint = \"hostname\"\nnode_quota = 3\nzones = [\"x\", \"y\"]\n")
        .unwrap();
    let sim = SimCloud::from_spec(&s).unwrap();
    let cfg = sim.config();
    assert_eq!(cfg.node_boot, std::time::Duration::from_secs(6));
    assert_eq!(cfg.balancer_endpoint, EndpointStyle::Hostname);
    assert_eq!(cfg.node_quota, Some(3));
    assert_eq!(
        sim.zones(&s.cluster()).await.unwrap(),
        vec!["us-east-1x", "us-east-1y"]
    );
    assert!(sim
        .lookup("example.com", "rancher.example.com")
        .await
        .unwrap()
        .is_none());

    // No [sim] section: realistic defaults.
    let plain = SimCloud::from_spec(&spec("").unwrap()).unwrap();
    assert_eq!(
        plain.config(),
        &SimConfig::realistic().with_zones(["a", "b", "c"])
    );
}

#[test]
fn bad_sim_settings_name_the_field() {
    for (section, field) in [
        ("[sim]\ntime_scale = 0.0\n", "sim.time_scale"),
        ("[sim]\ntime_scale = -2.0\n", "sim.time_scale"),
        ("[sim]\ntime_scale = nan\n", "sim.time_scale"),
        ("[sim]\ntime_scale = inf\n", "sim.time_scale"),
        ("[sim]\nnode_quota = 0\n", "sim.node_quota"),
        ("[sim]\nzones = []\n", "sim.zones"),
        ("[sim]\nzones = [\"a\", \"a\"]\n", "sim.zones[1]"),
        ("[sim]\ntime_scael = 1.0\n", "sim"),
        ("[sim]\nbalancer_endpoint = \"dns\"\n", "sim"),
    ] {
        let s = spec(section).unwrap();
        let err = SimCloud::from_spec(&s).unwrap_err();
        let problems = err
            .spec_problems()
            .unwrap_or_else(|| panic!("{section}: an InvalidSpec, got {err}"));
        assert!(problems.names(field), "{section}: {err}");
        let sim = SimCloud::default();
        assert!(NodeProvider::check_spec(&sim, &s).is_err(), "{section}");
        assert!(
            LoadBalancerProvider::check_spec(&sim, &s).is_err(),
            "{section}"
        );
        assert!(DnsProvider::check_spec(&sim, &s).is_err(), "{section}");
    }
    let good = spec("[sim]\ntime_scale = 2.5\n").unwrap();
    assert!(NodeProvider::check_spec(&SimCloud::default(), &good).is_ok());
    assert_eq!(SimSettings::from_spec(&good).unwrap().time_scale, 2.5);
}

#[test]
fn scaled_never_panics() {
    let cfg = SimConfig::realistic();
    assert_eq!(
        cfg.clone().scaled(-1.0).node_boot,
        std::time::Duration::ZERO
    );
    assert_eq!(cfg.clone().scaled(f64::NAN).api, std::time::Duration::ZERO);
    assert_eq!(
        cfg.clone().scaled(f64::INFINITY).api,
        std::time::Duration::MAX
    );
    assert_eq!(cfg.scaled(2.0).lb_provision.as_secs(), 300);
}

#[tokio::test]
async fn clones_share_one_cloud() {
    let sim = cloud(SimConfig::instant());
    let other_handle = sim.clone();
    let c = cluster();
    other_handle
        .create_node(&c, &node_request(&c, "rancher-1", "us-east-1a"))
        .await
        .unwrap();
    assert_eq!(sim.discover_nodes(&c).await.unwrap().len(), 1);
    assert_eq!(sim.stats(), other_handle.stats());
    assert_eq!(
        sim.discover_nodes(&c).await.unwrap()[0].state,
        NodeState::Running
    );
}
