//! Apply, rerun, change and destroy on the simulated cloud.

use std::collections::BTreeSet;
use std::sync::Arc;

use triad::events::{Event, RecordingObserver, Resource};
use triad::layers::CallCounter;
use triad::model::{NodeState, RecordKind};
use triad::orchestrator::Options;
use triad::sim::{EndpointStyle, SimCloud, SimConfig, SimRecordData};
use triad::{Endpoint, Error};

use crate::common::*;

#[tokio::test(start_paused = true)]
async fn apply_makes_an_ha_cluster_and_rerun_changes_nothing() {
    let sim = cloud();
    let counter = CallCounter::new();
    let events = Arc::new(RecordingObserver::default());
    let o = orchestrator(&sim, &counter).with_observer(events.clone());
    let spec = spec();

    let plan = o.plan(&spec).await.unwrap();
    assert_eq!(counter.mutating(), 0, "plan makes only read calls");
    let text = plan.to_string();
    assert!(text.contains("+ node rancher-1 in us-east-1a"), "{text}");
    assert!(text.contains("+ load balancer rancher"), "{text}");

    let inv = o.apply(&plan).await.unwrap();

    // 3 nodes over 3 zones, running with private IPs.
    assert_eq!(inv.nodes.len(), 3);
    let zones: BTreeSet<&str> = inv.nodes.iter().map(|n| n.zone.as_str()).collect();
    assert_eq!(
        zones,
        BTreeSet::from(["us-east-1a", "us-east-1b", "us-east-1c"])
    );
    assert!(inv
        .nodes
        .iter()
        .all(|n| n.state == NodeState::Running && n.private_ip.is_some()));
    let names: Vec<&str> = inv.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["rancher-1", "rancher-2", "rancher-3"]);

    // 80/443 and RKE2's registration ports, targets = nodes, DNS A record at the
    // balancer's IP.
    let ports: BTreeSet<u16> = inv.load_balancer.listeners.iter().map(|l| l.port).collect();
    assert_eq!(ports, BTreeSet::from([80, 443, 6443, 9345]));
    let mut ids: Vec<String> = inv.nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort();
    assert_eq!(inv.load_balancer.targets, ids);
    assert_eq!(inv.dns.fqdn, FQDN);
    assert_eq!(inv.dns.kind, RecordKind::A);
    assert_eq!(Some(&inv.dns.target), inv.load_balancer.endpoint.as_ref());
    assert_eq!(inv.rancher_url, "https://rancher.example.com");
    assert!(!inv.tls_external);
    assert_converged(&sim.snapshot(), 3);

    // The cloud-level view agrees: the web target groups have the documented HTTP
    // health check, the registration ones a TCP check on their own port.
    for tg in &sim.snapshot().target_groups {
        let hc = &tg.health_check;
        if matches!(tg.port, 9345 | 6443) {
            assert_eq!(
                (hc.protocol.as_str(), hc.port),
                ("TCP", tg.port),
                "{}",
                tg.name
            );
        } else {
            assert_eq!((hc.path.as_str(), hc.port), ("/healthz", 80), "{}", tg.name);
        }
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (3, 3));
    }

    // Progress events: every node was created and reported running.
    let ev = events.events();
    for n in &names {
        let r = Resource::Node(n.to_string());
        assert!(ev.iter().any(|e| matches!(e, Event::Started { resource, step } if *resource == r && step == "creating")));
        assert!(ev.iter().any(|e| matches!(e, Event::Finished { resource, step, .. } if *resource == r && step == "running")));
    }

    // A second plan is a no-op and a second apply makes zero mutating calls, at the
    // trait level and at the cloud's API level.
    counter.reset();
    sim.reset_stats();
    let again = o.plan(&spec).await.unwrap();
    assert!(again.is_noop(), "{again}");
    let inv2 = o.apply(&again).await.unwrap();
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(sim.stats().mutating, 0, "{:?}", sim.stats());
    assert_eq!(inv2, inv);

    // Destroy leaves nothing of the cluster behind.
    let report = o.destroy(&spec.cluster()).await.unwrap();
    assert!(
        report.deleted.iter().any(|d| d.contains("rancher-1")),
        "{report:?}"
    );
    let snap = sim.snapshot();
    assert!(snap.is_clean_of("rancher"), "{snap:#?}");
    assert!(snap.record(ZONE, FQDN).is_none());
    assert!(snap.txt(ZONE, &format!("_triad.{FQDN}")).is_none());
    // And a second destroy is fine.
    o.destroy(&spec.cluster()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn apply_runs_nodes_and_balancer_concurrently() {
    let sim = cloud();
    let o = orchestrator(&sim, &CallCounter::new());
    let start = tokio::time::Instant::now();
    apply(&o, &spec()).await.unwrap();
    let took = start.elapsed().as_secs_f64();
    // Sequential would be ≥ 105 s (nodes) + 150 s (balancer) + 40 s (DNS) = 295 s; the
    // concurrent critical path is 150 + 40 = 190 s plus API round trips. This is a
    // property of the schedule in virtual time, not a wall-clock timing.
    assert!(
        (190.0..200.0).contains(&took),
        "apply took {took} s of virtual time"
    );
}

#[tokio::test(start_paused = true)]
async fn l7_has_https_listener_redirect_and_tls_external() {
    let sim = cloud();
    let o = orchestrator(&sim, &CallCounter::new());
    let spec = spec_with(
        "",
        "[load_balancer]\nmode = \"l7\"\ncertificate = \"arn:aws:acm:us-east-1:123456789012:certificate/abc\"\n",
    );
    let inv = apply(&o, &spec).await.unwrap();
    assert!(inv.tls_external);
    let https = inv
        .load_balancer
        .listeners
        .iter()
        .find(|l| l.port == 443)
        .unwrap();
    assert_eq!(
        (https.protocol.as_str(), https.target_port),
        ("HTTPS", Some(80))
    );
    let http = inv
        .load_balancer
        .listeners
        .iter()
        .find(|l| l.port == 80)
        .unwrap();
    assert_eq!(http.target_port, None, "port 80 redirects to HTTPS");
    let snap = sim.snapshot();
    let l443 = snap.listeners.iter().find(|l| l.port == 443).unwrap();
    assert_eq!(
        l443.certificate.as_deref(),
        Some("arn:aws:acm:us-east-1:123456789012:certificate/abc")
    );
    let helm = triad::render::helm_install(&spec, &inv);
    assert!(helm.contains("tls=external"), "{helm}");
    assert!(o.plan(&spec).await.unwrap().is_noop());
}

#[tokio::test(start_paused = true)]
async fn hostname_endpoint_gets_an_alias_record_or_a_cname_on_request() {
    let sim = SimCloud::new(SimConfig::realistic().with_balancer_endpoint(EndpointStyle::Hostname))
        .with_zone(ZONE);
    let o = orchestrator(&sim, &CallCounter::new());
    let inv = apply(&o, &spec()).await.unwrap();
    assert_eq!(inv.dns.kind, RecordKind::Alias);
    let Endpoint::Hostname { name, .. } = &inv.dns.target else {
        panic!("{:?}", inv.dns)
    };
    assert!(
        matches!(&sim.snapshot().record(ZONE, FQDN).unwrap().data, SimRecordData::Alias { name: n, .. } if n == name)
    );

    // Switching to a CNAME replaces the record in place, still owned by us.
    let cname = spec_with("", "").into_inner();
    let mut cname = cname;
    cname.dns.record = triad::spec::RecordChoice::Cname;
    let cname = cname.validate().unwrap();
    let plan = o.plan(&cname).await.unwrap();
    assert_eq!(plan.changes(), 1, "{plan}");
    let inv = o.apply(&plan).await.unwrap();
    assert_eq!(inv.dns.kind, RecordKind::Cname);
    assert_converged(&sim.snapshot(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_foreign_record_stops_the_plan_before_anything_is_made() {
    let sim = cloud();
    sim.put_foreign_record(
        ZONE,
        FQDN,
        Endpoint::Ip {
            addresses: vec!["198.51.100.1".parse().unwrap()],
        },
    )
    .unwrap();
    let o = orchestrator(&sim, &CallCounter::new());
    sim.reset_stats();
    let err = o.plan(&spec()).await.unwrap_err();
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    assert!(err.to_string().contains(FQDN), "{err}");
    assert_eq!(sim.stats().mutating, 0);
    assert!(sim.snapshot().is_clean_of("rancher"));
}

#[tokio::test(start_paused = true)]
async fn hostname_change_is_refused_unless_allowed() {
    let sim = cloud();
    let counter = CallCounter::new();
    let o = orchestrator(&sim, &counter);
    apply(&o, &spec()).await.unwrap();

    let mut moved = spec().into_inner();
    moved.dns.hostname = "rancher2.example.com".into();
    let moved = moved.validate().unwrap();
    let err = o.plan(&moved).await.unwrap_err();
    assert!(matches!(err, Error::HostnameChange { .. }), "{err}");
    assert!(err.to_string().contains("cannot change"), "{err}");

    let mut options = Options::default();
    options.allow_hostname_change = true;
    let o = o.with_options(options);
    let inv = apply(&o, &moved).await.unwrap();
    assert_eq!(inv.dns.fqdn, "rancher2.example.com");
    let snap = sim.snapshot();
    assert!(snap.record(ZONE, FQDN).is_none(), "old record removed");
    assert!(
        snap.txt(ZONE, &format!("_triad.{FQDN}")).is_none(),
        "old TXT removed"
    );
    assert!(snap.record(ZONE, "rancher2.example.com").is_some());
}

#[tokio::test(start_paused = true)]
async fn scaling_up_and_down_keeps_zones_balanced_and_targets_exact() {
    let sim = cloud();
    let o = orchestrator(&sim, &CallCounter::new());
    apply(&o, &spec()).await.unwrap();

    let five = {
        let mut s = spec().into_inner();
        s.nodes.count = 5;
        s.validate().unwrap()
    };
    let plan = o.plan(&five).await.unwrap();
    assert_eq!(plan.changes(), 3, "2 nodes + targets: {plan}");
    let inv = o.apply(&plan).await.unwrap();
    assert_eq!(inv.nodes.len(), 5);
    let per_zone = |inv: &triad::Inventory| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for n in &inv.nodes {
            *m.entry(n.zone.clone()).or_default() += 1;
        }
        let mut v: Vec<usize> = m.into_values().collect();
        v.sort();
        v
    };
    assert_eq!(per_zone(&inv), vec![1, 2, 2]);
    assert_eq!(inv.load_balancer.targets.len(), 5);

    let inv = apply(&o, &spec()).await.unwrap();
    assert_eq!(inv.nodes.len(), 3);
    assert_converged(&sim.snapshot(), 3);
}

#[tokio::test(start_paused = true)]
async fn bad_zones_and_quota_are_clear_errors() {
    let sim = SimCloud::new(SimConfig::realistic().with_node_quota(2)).with_zone(ZONE);
    let o = orchestrator(&sim, &CallCounter::new());

    let foreign = spec_with("zones = [\"us-east-1a\", \"eu-west-1b\"]", "");
    let err = o.plan(&foreign).await.unwrap_err();
    let problems = err.spec_problems().expect("a spec error");
    assert!(problems.names("zones[1]"), "{err}");
    assert!(
        err.to_string().contains("us-east-1c"),
        "lists the region's zones: {err}"
    );

    // The third node exceeds the quota: apply fails naming what exists.
    let err = apply(&o, &spec()).await.unwrap_err();
    let Error::Apply {
        existing, source, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(source.kind(), Some(triad::FailureKind::Capacity), "{err}");
    assert!(
        existing.iter().filter(|e| e.starts_with("node ")).count() == 2,
        "{err}"
    );
    assert!(err.to_string().contains("rerun apply"), "{err}");
    // Destroy cleans up the partial cluster.
    o.destroy(&spec().cluster()).await.unwrap();
    assert!(sim.snapshot().is_clean_of("rancher"));
}

#[tokio::test(start_paused = true)]
async fn destroy_touches_no_other_cluster() {
    let sim = cloud();
    let o = orchestrator(&sim, &CallCounter::new());
    apply(&o, &spec()).await.unwrap();
    let other = {
        let mut s = spec().into_inner();
        s.name = "other".into();
        s.dns.hostname = "other.example.com".into();
        s.validate().unwrap()
    };
    apply(&o, &other).await.unwrap();
    o.destroy(&other.cluster()).await.unwrap();
    assert!(sim.snapshot().is_clean_of("other"));
    assert_converged(&sim.snapshot(), 3);
}
