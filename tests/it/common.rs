//! Shared fixtures.

use std::sync::Arc;

use triad::layers::{CallCounter, Stack};
use triad::orchestrator::Options;
use triad::sim::{SimCloud, SimConfig, SimSnapshot};
use triad::spec::ClusterSpec;
use triad::{Inventory, Orchestrator, ValidSpec};

pub(crate) const ZONE: &str = "example.com";
pub(crate) const FQDN: &str = "rancher.example.com";

/// The quickstart's spec, with `extra` TOML appended to the top level (before any
/// table) and `tables` after.
pub(crate) fn spec_with(extra: &str, tables: &str) -> ValidSpec {
    spec_nodes("", extra, tables)
}

pub(crate) fn spec() -> ValidSpec {
    spec_with("", "")
}

/// A realistic simulated cloud (100 ms API calls, 45 s + 60 s nodes, 150 s balancer,
/// 40 s DNS) hosting the test zone. Use with paused tokio time.
pub(crate) fn cloud() -> SimCloud {
    SimCloud::new(SimConfig::realistic()).with_zone(ZONE)
}

/// An orchestrator over `cloud`, every provider wrapped in a call counter. Its lock
/// holder is always `tests`: a rerun after a crash is the same operator's, and takes
/// its own lock back.
pub(crate) fn orchestrator(cloud: &SimCloud, counter: &CallCounter) -> Orchestrator {
    orchestrator_as(cloud, counter, "tests")
}

/// An orchestrator over `cloud` whose runs hold the lock as `holder`.
pub(crate) fn orchestrator_as(
    cloud: &SimCloud,
    counter: &CallCounter,
    holder: &str,
) -> Orchestrator {
    let p = Stack::new(Arc::new(cloud.clone()))
        .count(counter.clone())
        .build();
    let p = Arc::new(p);
    let mut options = Options::default();
    options.lock_holder = Some(holder.to_owned());
    Orchestrator::new(p.clone(), p.clone(), p).with_options(options)
}

/// The test spec with lines added to its `[nodes]` table (`nodes`), its top level
/// (`extra`) and tables after (`tables`).
pub(crate) fn spec_nodes(nodes: &str, extra: &str, tables: &str) -> ValidSpec {
    spec_text(nodes, extra, tables)
        .validate()
        .expect("test spec is valid")
}

/// The unvalidated form of [`spec_nodes`].
pub(crate) fn spec_text(nodes: &str, extra: &str, tables: &str) -> ClusterSpec {
    let text = format!(
        r#"
name = "rancher"
region = "us-east-1"
{extra}

[nodes]
size = "t3.xlarge"
image = "ami-0123456789abcdef0"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGU admin@example"]
{nodes}

[proxy]
http = "http://proxy.internal:3128"
no_proxy = ["corp.internal"]

[dns]
zone = "{ZONE}"
hostname = "{FQDN}"

{tables}
"#
    );
    ClusterSpec::from_toml(&text).expect("test spec parses")
}

pub(crate) async fn apply(o: &Orchestrator, spec: &ValidSpec) -> triad::Result<Inventory> {
    let plan = o.plan(spec).await?;
    o.apply(&plan).await
}

/// Assert the cloud holds exactly one well-formed cluster `rancher`: `n` nodes with
/// distinct names over distinct zones (as far as zones go), one balancer whose target
/// groups target exactly those nodes, listeners on 80, 443, 6443 and 9345, one record and one
/// ownership TXT pointing at the balancer — and nothing else of ours.
pub(crate) fn assert_converged(snap: &SimSnapshot, n: usize) {
    let nodes = snap.live_nodes("rancher");
    assert_eq!(nodes.len(), n, "live nodes: {nodes:#?}");
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate node names: {nodes:#?}");
    let mut ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort();

    assert_eq!(snap.balancers.len(), 1, "balancers: {:#?}", snap.balancers);
    let lb = &snap.balancers[0];
    assert!(!snap.target_groups.is_empty());
    for tg in &snap.target_groups {
        let targets: Vec<String> = tg.targets.iter().cloned().collect();
        assert_eq!(targets, ids, "targets of {}", tg.name);
    }
    let mut ports: Vec<u16> = snap.listeners.iter().map(|l| l.port).collect();
    ports.sort();
    // 80/443, and RKE2's registration address (the default distribution).
    assert_eq!(
        ports,
        vec![80, 443, 6443, 9345],
        "listeners: {:#?}",
        snap.listeners
    );
    assert!(snap.listeners.iter().all(|l| l.balancer_arn == lb.arn));
    assert_eq!(
        snap.security_groups.len(),
        1,
        "security groups: {:#?}",
        snap.security_groups
    );

    let zone = snap.zones.iter().find(|z| z.name == ZONE).expect("zone");
    // A lock left by a run whose release failed is the test runner's own, and only
    // that (the next apply of the same holder takes it back).
    let (locks, records): (Vec<_>, Vec<_>) = zone
        .records
        .iter()
        .partition(|r| r.fqdn.starts_with("_triad-lock."));
    for l in locks {
        assert!(format!("{:?}", l.data).contains("holder=tests,"), "{l:?}");
    }
    assert_eq!(
        records.len(),
        2,
        "exactly the record and its TXT: {:#?}",
        zone.records
    );
    let record = snap.record(ZONE, FQDN).expect("record");
    let endpoint = lb
        .endpoint
        .clone()
        .expect("active balancer has an endpoint");
    match (&record.data, &endpoint) {
        (triad::sim::SimRecordData::A(ips), triad::Endpoint::Ip { addresses }) => {
            assert_eq!(ips, addresses)
        }
        (
            triad::sim::SimRecordData::Alias { name, .. },
            triad::Endpoint::Hostname { name: n, .. },
        ) => {
            assert_eq!(name, n)
        }
        (triad::sim::SimRecordData::Cname(name), triad::Endpoint::Hostname { name: n, .. }) => {
            assert_eq!(name, n)
        }
        (r, e) => panic!("record {r:?} does not point at {e:?}"),
    }
    let txt = snap
        .txt(ZONE, &format!("_triad.{FQDN}"))
        .expect("ownership TXT");
    assert!(
        format!("{:?}", txt.data).contains("triad-cluster=rancher"),
        "{txt:?}"
    );
}
