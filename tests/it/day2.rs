//! Day 2 on the simulated cloud, in virtual time: drift shown and converged, rolling
//! replace and scale-down one etcd member at a time, cluster identity, the lock, and
//! a destroy that stops before it orphans.

use std::time::Duration;

use triad::layers::CallCounter;
use triad::lock::{lock_name, LockRecord};
use triad::model::NodeRequest;
use triad::orchestrator::{LbAction, NodeAction, Options};
use triad::sim::{SimApi, SimCloud, SimFault};
use triad::spec::{ClusterSpec, LbMode};
use triad::{Error, FailureKind, NodeProvider, ValidSpec};

use crate::common::*;

/// The test spec changed by `f`.
fn changed(base: &ValidSpec, f: impl FnOnce(&mut ClusterSpec)) -> ValidSpec {
    let mut s = base.clone().into_inner();
    f(&mut s);
    s.validate().expect("changed spec is valid")
}

fn l7() -> ValidSpec {
    changed(&spec(), |s| {
        s.load_balancer.mode = LbMode::L7;
        s.load_balancer.certificate = Some("arn:aws:acm:us-east-1:1:certificate/old".into());
    })
}

async fn applied(base: &ValidSpec) -> SimCloud {
    let sim = cloud();
    apply(&orchestrator(&sim, &CallCounter::new()), base)
        .await
        .unwrap();
    sim
}

/// Assert a second plan is a no-op and its apply makes zero mutating calls.
async fn assert_stable(sim: &SimCloud, spec: &ValidSpec) {
    let o = orchestrator(sim, &CallCounter::new());
    sim.reset_stats();
    let plan = o.plan(spec).await.unwrap();
    assert!(plan.is_noop() && !plan.has_changes(), "{plan}");
    o.apply(&plan).await.unwrap();
    assert_eq!(sim.stats().mutating, 0, "{:?}", sim.stats());
}

struct Case {
    name: &'static str,
    base: fn() -> ValidSpec,
    change: fn(&mut ClusterSpec),
    /// What the plan must say.
    line: &'static str,
    replace: bool,
}

#[tokio::test(start_paused = true)]
async fn each_drift_kind_is_planned_applied_and_then_stable() {
    let cases = [
        Case {
            name: "image",
            base: spec,
            change: |s| s.nodes.image = Some("ami-0fedcba9876543210".into()),
            line: "~ node rancher-2: image ami-0123456789abcdef0 → ami-0fedcba9876543210 (replace)",
            replace: true,
        },
        Case {
            name: "size",
            base: spec,
            change: |s| s.nodes.size = Some("t3.2xlarge".into()),
            line: "~ node rancher-1: size h-",
            replace: true,
        },
        Case {
            name: "disk",
            base: spec,
            change: |s| s.nodes.disk_gib = Some(200),
            line: "~ node rancher-3: disk_gib default → 200 (replace)",
            replace: true,
        },
        Case {
            name: "ssh keys",
            base: spec,
            change: |s| s.nodes.ssh_authorized_keys.clear(),
            line: "~ node rancher-1: ssh_authorized_keys h-",
            replace: true,
        },
        Case {
            name: "proxy",
            base: spec,
            change: |s| s.proxy = None,
            line: "~ node rancher-1: proxy h-",
            replace: true,
        },
        Case {
            name: "ssh cidrs",
            base: spec,
            change: |s| s.nodes.ssh_allowed_cidrs = vec!["10.20.0.0/16".into()],
            line: "~ node rancher-1: ssh_allowed_cidrs none → [10.20.0.0/16] (",
            replace: false,
        },
        Case {
            name: "certificate",
            base: l7,
            change: |s| {
                s.load_balancer.certificate = Some("arn:aws:acm:us-east-1:1:certificate/new".into())
            },
            line: "~ load balancer rancher: certificate h-",
            replace: false,
        },
        Case {
            name: "health check",
            base: spec,
            change: |s| s.load_balancer.health_check_path = Some("/ping".into()),
            line: "~ load balancer rancher: health_check_path h-",
            replace: false,
        },
        Case {
            name: "ttl",
            base: spec,
            change: |s| s.dns.ttl = 300,
            line: "~ DNS rancher.example.com: ttl 60 → 300 (in place)",
            replace: false,
        },
    ];
    for case in cases {
        let base = (case.base)();
        let sim = applied(&base).await;
        let before: Vec<String> = sim
            .snapshot()
            .live_nodes("rancher")
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let want = changed(&base, case.change);
        let o = orchestrator(&sim, &CallCounter::new());
        let plan = o.plan(&want).await.unwrap();
        let text = plan.to_string();
        assert!(text.contains(case.line), "{}: {text}", case.name);
        assert_eq!(
            !plan.destructive().is_empty(),
            case.replace,
            "{}: {:?}",
            case.name,
            plan.destructive()
        );
        let json = serde_json::to_value(&plan).unwrap().to_string();
        if case.name != "ttl" {
            assert!(json.contains("\"changes\""), "{}: {json}", case.name);
        }
        o.apply(&plan).await.unwrap();
        let snap = sim.snapshot();
        assert_converged(&snap, 3);
        let after: Vec<String> = snap
            .live_nodes("rancher")
            .iter()
            .map(|n| n.id.clone())
            .collect();
        assert_eq!(
            before.iter().all(|id| !after.contains(id)),
            case.replace,
            "{}: every node replaced, or none",
            case.name
        );
        // Read back what the cloud has.
        match case.name {
            "image" => assert!(snap
                .live_nodes("rancher")
                .iter()
                .all(|n| n.image.as_deref() == Some("ami-0fedcba9876543210"))),
            "size" => assert!(snap
                .live_nodes("rancher")
                .iter()
                .all(|n| n.size.as_deref() == Some("t3.2xlarge"))),
            "ssh cidrs" => assert_eq!(snap.security_groups[0].ssh_cidrs, ["10.20.0.0/16"]),
            "certificate" => {
                assert!(snap
                    .listeners
                    .iter()
                    .any(|l| l.certificate.as_deref()
                        == Some("arn:aws:acm:us-east-1:1:certificate/new")))
            }
            "health check" => assert!(snap
                .target_groups
                .iter()
                .all(|t| t.health_check.path == "/ping")),
            "ttl" => assert_eq!(snap.record(ZONE, FQDN).unwrap().ttl, Some(300)),
            _ => {}
        }
        assert_stable(&sim, &want).await;
    }
}

/// The number of running registered targets of the emptiest target group after each
/// mutating call of the timeline.
fn serving(sim: &SimCloud) -> Vec<(SimApi, String, usize)> {
    sim.timeline()
        .into_iter()
        .map(|e| {
            let min = e.running_targets.values().copied().min().unwrap_or(0);
            (e.api, e.resource, min)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn rolling_replace_keeps_two_running_targets_at_every_instant() {
    let sim = applied(&spec()).await;
    let want = changed(&spec(), |s| s.nodes.image = Some("ami-0b".into()));
    let o = orchestrator(&sim, &CallCounter::new());
    let plan = o.plan(&want).await.unwrap();
    let steps = plan.rolling_steps();
    assert_eq!(steps.len(), 3, "{steps:#?}");
    assert!(steps[0].contains("rancher-1") && steps[0].contains("kubectl drain rancher-1"));
    assert!(steps[0].contains("etcd member 4 of 4"), "{}", steps[0]);

    sim.reset_stats();
    o.apply(&plan).await.unwrap();
    let timeline = serving(&sim);
    assert!(!timeline.is_empty());
    for (api, resource, n) in &timeline {
        assert!(
            *n >= 2,
            "{api} on {resource} left {n} running targets: {timeline:#?}"
        );
    }
    // One node at a time: launch, register, deregister, terminate, then the next.
    let order: Vec<(SimApi, &str)> = timeline
        .iter()
        .filter(|(api, ..)| matches!(api, SimApi::RunInstance | SimApi::TerminateInstance))
        .map(|(api, r, _)| (*api, r.split(' ').nth(1).unwrap_or_default()))
        .collect();
    assert_eq!(
        order,
        [
            (SimApi::RunInstance, "rancher-1-g2"),
            (SimApi::TerminateInstance, "rancher-1"),
            (SimApi::RunInstance, "rancher-2-g2"),
            (SimApi::TerminateInstance, "rancher-2"),
            (SimApi::RunInstance, "rancher-3-g2"),
            (SimApi::TerminateInstance, "rancher-3"),
        ]
    );
    let snap = sim.snapshot();
    assert_converged(&snap, 3);
    // Each replacement is in its predecessor's zone.
    let mut zones: Vec<&str> = snap
        .live_nodes("rancher")
        .iter()
        .map(|n| n.zone.as_str())
        .collect();
    zones.sort();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert_stable(&sim, &want).await;
}

#[tokio::test(start_paused = true)]
async fn scale_down_removes_one_node_per_step_highest_first() {
    let five = spec_nodes("count = 5", "", "");
    let sim = applied(&five).await;
    let three = spec();
    let o = orchestrator(&sim, &CallCounter::new());
    let plan = o.plan(&three).await.unwrap();
    let text = plan.to_string();
    assert!(
        text.contains("Removes 1 of 5 etcd members (4 left, quorum 3)"),
        "{text}"
    );
    assert!(text.contains("kubectl drain rancher-5"), "{text}");
    assert_eq!(plan.destructive().len(), 2, "{:?}", plan.destructive());

    sim.reset_stats();
    o.apply(&plan).await.unwrap();
    let timeline = serving(&sim);
    let terminates: Vec<(usize, &str)> = timeline
        .iter()
        .enumerate()
        .filter(|(_, (api, ..))| *api == SimApi::TerminateInstance)
        .map(|(i, (_, r, _))| (i, r.split(' ').nth(1).unwrap_or_default()))
        .collect();
    assert_eq!(
        terminates.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        ["rancher-5", "rancher-4"]
    );
    // Each node left the balancer right before it was deleted: 4 served while 5
    // went, 3 while 4 went.
    assert_eq!(timeline[terminates[0].0].2, 4, "{timeline:#?}");
    assert_eq!(timeline[terminates[1].0].2, 3, "{timeline:#?}");
    assert!(timeline[terminates[0].0 + 1..terminates[1].0]
        .iter()
        .any(|(api, ..)| *api == SimApi::DeregisterTargets));
    assert_converged(&sim.snapshot(), 3);
    assert_stable(&sim, &three).await;
}

#[test]
fn three_to_one_without_the_non_ha_flag_is_refused_naming_nodes_count() {
    let err = spec_text("count = 1", "", "").validate().unwrap_err();
    assert!(err.spec_problems().unwrap().names("nodes.count"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn three_to_one_with_the_flag_says_etcd_loses_its_fault_tolerance() {
    let sim = applied(&spec()).await;
    let one = spec_nodes("count = 1\nallow_non_ha = true", "", "");
    let o = orchestrator(&sim, &CallCounter::new());
    let plan = o.plan(&one).await.unwrap();
    let steps = plan.rolling_steps();
    assert_eq!(steps.len(), 2);
    assert!(
        steps[1].contains("Removes 1 of 2 etcd members (1 left"),
        "{steps:#?}"
    );
    assert!(steps.iter().all(|s| s.contains("No etcd fault tolerance")));
    o.apply(&plan).await.unwrap();
    assert_converged(&sim.snapshot(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cluster_with_the_same_name_and_another_id_is_refused() {
    let sim = applied(&spec()).await;
    let o = orchestrator(&sim, &CallCounter::new());
    let id = o.plan(&spec()).await.unwrap().cluster.id.clone().unwrap();
    // Another team's node: same cluster name, another cluster id.
    let mut cluster = spec().cluster();
    cluster.id = Some("0123456789ab".into());
    let mut labels = cluster.labels_for(triad::labels::Role::Node);
    labels.insert("triad-cluster-id".into(), "0123456789ab".into());
    let mut request = NodeRequest::new("rancher-7", "us-east-1a");
    request.labels = labels;
    sim.create_node(&cluster, &request).await.unwrap();
    let err = o.plan(&spec()).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Identity { .. }), "{text}");
    assert!(
        text.contains(&id) && text.contains("0123456789ab"),
        "{text}"
    );
    assert!(text.contains("node rancher-7"), "{text}");
    // Destroy refuses too, and deletes nothing.
    let before = sim.snapshot();
    let err = o.destroy(&spec().cluster()).await.unwrap_err();
    assert!(matches!(err, Error::Identity { .. }), "{err}");
    assert_eq!(sim.snapshot().nodes.len(), before.nodes.len());
    // The record's ownership TXT carries the id, and every resource its label.
    let txt = sim
        .snapshot()
        .txt(ZONE, &format!("_triad.{FQDN}"))
        .unwrap()
        .clone();
    assert!(format!("{:?}", txt.data).contains(&format!("triad-cluster-id={id}")));
    assert!(before.balancers[0].labels.get("triad-cluster-id") == Some(&id));
}

#[tokio::test(start_paused = true)]
async fn the_hostname_guard_finds_the_record_in_the_zone_the_labels_name() {
    let sim = applied(&spec()).await;
    sim.add_dns_zone("other.example");
    let moved = changed(&spec(), |s| {
        s.dns.zone = "other.example".into();
        s.dns.hostname = "rancher.other.example".into();
    });
    let o = orchestrator(&sim, &CallCounter::new());
    let err = o.plan(&moved).await.unwrap_err();
    assert!(
        matches!(&err, Error::HostnameChange { from, to } if from == FQDN && to == "rancher.other.example"),
        "{err}"
    );
    // Allowed, the old record in the old zone goes.
    let mut options = Options::default();
    options.allow_hostname_change = true;
    options.lock_holder = Some("tests".into());
    let o = o.with_options(options);
    let plan = o.plan(&moved).await.unwrap();
    assert!(plan
        .to_string()
        .contains("- DNS A rancher.example.com in example.com"));
    o.apply(&plan).await.unwrap();
    let snap = sim.snapshot();
    assert!(snap.record(ZONE, FQDN).is_none());
    assert!(snap
        .record("other.example", "rancher.other.example")
        .is_some());
}

fn with_lock_options(
    o: triad::Orchestrator,
    holder: &str,
    f: impl FnOnce(&mut Options),
) -> triad::Orchestrator {
    let mut options = Options::default();
    options.lock_holder = Some(holder.into());
    f(&mut options);
    o.with_options(options)
}

#[tokio::test(start_paused = true)]
async fn a_second_run_fails_naming_the_holder_or_waits_for_it() {
    let sim = cloud();
    let alice = orchestrator_as(&sim, &CallCounter::new(), "alice");
    let first = tokio::spawn(async move { apply(&alice, &spec()).await });
    tokio::time::sleep(Duration::from_secs(30)).await;

    let bob = orchestrator_as(&sim, &CallCounter::new(), "bob");
    let err = apply(&bob, &spec()).await.unwrap_err();
    match &err {
        Error::Locked {
            holder,
            stale,
            since,
            ..
        } => {
            assert_eq!(holder, "alice");
            assert!(!stale);
            assert!(since.ends_with('Z'), "{since}");
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(err.to_string().contains("locked by `alice`"), "{err}");

    // Waiting instead: bob's run starts once alice's ends, and converges.
    let bob = with_lock_options(orchestrator(&sim, &CallCounter::new()), "bob", |o| {
        o.lock_wait = Duration::from_secs(3600)
    });
    let second = tokio::spawn(async move { apply(&bob, &spec()).await });
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_converged(&sim.snapshot(), 3);
    // Both let go of the lock.
    let lock = sim
        .snapshot()
        .txt(ZONE, &lock_name("rancher", ZONE))
        .cloned();
    assert_eq!(lock, None);
}

#[tokio::test(start_paused = true)]
async fn a_stale_lock_is_broken_only_with_the_flag() {
    let sim = cloud();
    let name = lock_name("rancher", ZONE);
    let stale = LockRecord {
        holder: "crashed-run".into(),
        since: 1_000,
        expires: 2_000,
    };
    sim.put_txt(ZONE, &name, &stale.to_txt()).unwrap();
    let o = orchestrator(&sim, &CallCounter::new());
    let err = apply(&o, &spec()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Locked { holder, stale: true, .. } if holder == "crashed-run"),
        "{err}"
    );
    assert!(
        err.to_string().contains("break the lock explicitly"),
        "{err}"
    );
    assert!(sim.snapshot().live_nodes("rancher").is_empty());

    // A live lease is never broken, flag or not.
    let live = LockRecord {
        holder: "live-run".into(),
        since: 1_000,
        expires: u64::MAX / 2,
    };
    sim.put_txt(ZONE, &name, &live.to_txt()).unwrap();
    let breaker = with_lock_options(o.clone(), "tests", |o| o.break_stale_lock = true);
    let err = apply(&breaker, &spec()).await.unwrap_err();
    assert!(matches!(&err, Error::Locked { stale: false, .. }), "{err}");

    sim.put_txt(ZONE, &name, &stale.to_txt()).unwrap();
    apply(&breaker, &spec()).await.unwrap();
    assert_converged(&sim.snapshot(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_run_longer_than_its_lease_renews_it_and_stops_if_it_is_taken_over() {
    // A 60 s lease on a ~190 s apply: the holder renews every 20 s (a conditional
    // change each), so nobody may take it for a crashed run.
    let sim = cloud();
    let short = |o: &mut Options| o.lock_lease = Duration::from_secs(60);
    let alice = with_lock_options(orchestrator(&sim, &CallCounter::new()), "alice", short);
    apply(&alice, &spec()).await.unwrap();
    let changes = sim.stats().calls(SimApi::ChangeRecords);
    // The lock, the record, the release, and at least eight renewals.
    assert!(
        changes >= 3 + 8,
        "{changes} ChangeRecords: the lease was not renewed"
    );
    assert_eq!(sim.snapshot().txt(ZONE, &lock_name("rancher", ZONE)), None);

    // Somebody takes the lock over mid-run (a broken lease, an operator): the run
    // stops at its next renewal, naming the new holder, and leaves their lock alone.
    let sim = cloud();
    let alice = with_lock_options(orchestrator(&sim, &CallCounter::new()), "alice", short);
    let run = tokio::spawn(async move { apply(&alice, &spec()).await });
    tokio::time::sleep(Duration::from_secs(30)).await;
    let name = lock_name("rancher", ZONE);
    let mallory = LockRecord {
        holder: "mallory".into(),
        since: 1_000,
        expires: u64::MAX / 2,
    };
    sim.put_txt(ZONE, &name, &mallory.to_txt()).unwrap();
    let err = run.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::Locked { holder, .. } if holder == "mallory"),
        "{err}"
    );
    let left = sim.snapshot().txt(ZONE, &name).cloned();
    assert!(format!("{left:?}").contains("mallory"), "{left:?}");
}

#[tokio::test(start_paused = true)]
async fn destroy_stops_before_it_orphans_the_balancer() {
    let sim = applied(&spec()).await;
    sim.inject(
        SimFault::on(SimApi::ChangeRecords)
            .nth(2) // 1: the lock, 2: the record
            .kind(FailureKind::Permission),
    );
    let o = orchestrator(&sim, &CallCounter::new());
    let err = o.destroy(&spec().cluster()).await.unwrap_err();
    let Error::Destroy {
        deleted, remaining, ..
    } = &err
    else {
        panic!("expected Destroy, got {err}");
    };
    assert!(deleted.is_empty(), "{deleted:?}");
    assert!(
        remaining.iter().any(|r| r.starts_with("load balancer")),
        "{remaining:?}"
    );
    assert_eq!(
        remaining.iter().filter(|r| r.starts_with("node ")).count(),
        3,
        "{remaining:?}"
    );
    assert!(err.to_string().contains("still there"), "{err}");
    let snap = sim.snapshot();
    assert_eq!(snap.balancers.len(), 1);
    assert_eq!(snap.live_nodes("rancher").len(), 3);
    assert!(snap.record(ZONE, FQDN).is_some());

    o.destroy(&spec().cluster()).await.unwrap();
    assert!(sim.snapshot().is_clean_of("rancher"));
}

#[tokio::test(start_paused = true)]
async fn a_mode_change_makes_the_new_balancer_first_and_says_rancher_needs_reinstalling() {
    let sim = applied(&spec()).await;
    let o = orchestrator(&sim, &CallCounter::new());
    let plan = o.plan(&l7()).await.unwrap();
    assert!(
        matches!(
            &plan.load_balancer,
            LbAction::Replace {
                reinstall_rancher: true,
                make_first: true,
                name,
                ..
            } if name == "rancher-b"
        ),
        "{plan}"
    );
    let text = plan.to_string();
    assert!(text.contains("--set tls=external"), "{text}");
    assert!(text.contains("there is always a balancer"), "{text}");
    assert!(plan
        .destructive()
        .iter()
        .any(|l| l.contains("replace load balancer rancher")));
    assert!(plan
        .nodes
        .iter()
        .all(|a| matches!(a, NodeAction::Keep { .. })));

    sim.reset_stats();
    o.apply(&plan).await.unwrap();
    // Make the new one, give it the nodes, move the record, then delete the old one.
    let timeline = sim.timeline();
    let at = |api: SimApi, resource: &str| {
        timeline
            .iter()
            .position(|e| e.api == api && e.resource.contains(resource))
            .unwrap_or_else(|| panic!("no {api} on {resource}: {timeline:#?}"))
    };
    let created = at(SimApi::CreateBalancer, "rancher-b");
    let registered = at(SimApi::RegisterTargets, "rancher-b-http-80");
    let switched = timeline
        .iter()
        .position(|e| e.api == SimApi::ChangeRecords && e.resource == format!("record {FQDN}"))
        .expect("the record moved");
    let deleted = at(SimApi::DeleteBalancer, "load balancer rancher");
    assert!(
        created < registered && registered < switched && switched < deleted,
        "{created} {registered} {switched} {deleted}: {timeline:#?}"
    );
    // The record's target kept serving: the old balancer had its 3 targets until the
    // record moved, the new one has them from before the switch.
    assert!(timeline[..deleted]
        .iter()
        .all(|e| e.running_targets.get("rancher-tcp-80") == Some(&3)));
    let snap = sim.snapshot();
    assert_converged(&snap, 3);
    assert_eq!(snap.balancers[0].name, "rancher-b");
    assert_stable(&sim, &l7()).await;

    // And back: the names take turns.
    let plan = o.plan(&spec()).await.unwrap();
    assert!(
        matches!(&plan.load_balancer, LbAction::Replace { name, reinstall_rancher: true, .. } if name == "rancher"),
        "{plan}"
    );
    assert!(plan.to_string().contains("without `tls=external`"));
    o.apply(&plan).await.unwrap();
    assert_converged(&sim.snapshot(), 3);
    assert_eq!(sim.snapshot().balancers[0].name, "rancher");
}
