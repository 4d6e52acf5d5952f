//! NGINX node mode on vSphere: the balancer is a VM cloned by the same provider, its
//! `nginx.conf` in the VM's cloud-init user data. After a rolling template replace
//! made by one process, a fresh process (new logins, new providers, nothing in
//! memory) finds the balancer serving exactly the new VMs and changes nothing; vcsim's
//! records, read with the test's own client, show the one balancer VM and its
//! rendered configuration.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use triad_core::layers::{CallCounter, Stack};
use triad_core::orchestrator::{NodeAction, Options};
use triad_core::{DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator, ValidSpec};
use triad_nginx::NginxProvider;
use triad_sim::{SimCloud, SimConfig, SimRecordData};
use triad_vsphere::VsphereProvider;

use crate::common::{fake_ip, raw_client};
use crate::day2::make_template;
use crate::e2e::{extra, provider, spec_with_nginx, vms_of};

/// One process's triad: vSphere nodes, NGINX node mode on the same vCenter, the
/// sim's DNS (which outlives the processes, as a DNS server does), every call
/// counted.
async fn process(
    spec: &ValidSpec,
    sim: &Arc<SimCloud>,
    counter: &CallCounter,
) -> (Orchestrator, Arc<VsphereProvider>) {
    let vsphere = Arc::new(provider(spec).await);
    let nginx = NginxProvider::from_spec(spec, Some(vsphere.clone() as Arc<dyn NodeProvider>))
        .expect("NGINX node mode from the spec");
    let nodes: Arc<dyn NodeProvider> =
        Arc::new(Stack::new(vsphere.clone()).count(counter.clone()).build());
    let lb: Arc<dyn LoadBalancerProvider> =
        Arc::new(Stack::new(Arc::new(nginx)).count(counter.clone()).build());
    let dns: Arc<dyn DnsProvider> =
        Arc::new(Stack::new(sim.clone()).count(counter.clone()).build());
    let mut options = Options::default();
    options.node_timeout = Duration::from_secs(60);
    let triad = Orchestrator::new(nodes, lb, dns).with_options(options);
    (triad, vsphere)
}

fn spec(name: &str, image: &str) -> ValidSpec {
    spec_with_nginx(
        name,
        &format!("count = 3\nimage = \"{image}\""),
        "run_on = \"node\"\npoll_interval_ms = 200",
    )
}

/// The balancer VMs of `cluster` (its pseudo-cluster `<cluster>-lb`): name and the
/// decoded cloud-init user data.
async fn balancer_vms(cluster: &str) -> Vec<(String, String)> {
    vms_of(&format!("{cluster}-lb"))
        .await
        .into_iter()
        .map(|vm| {
            assert_eq!(
                vm.power,
                vim_rs::types::enums::VirtualMachinePowerStateEnum::PoweredOn,
                "{}",
                vm.name
            );
            let data = extra(&vm, "guestinfo.userdata").expect("guestinfo.userdata");
            let data = base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64 user data");
            (vm.name.clone(), String::from_utf8(data).unwrap())
        })
        .collect()
}

/// The upstream servers (`ip:port`) of a rendered configuration (80, 443 and the
/// registration ports 9345 and 6443).
fn upstreams(config: &str) -> BTreeSet<String> {
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "{")
        .map(|s| s.trim_end_matches(';').to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn fresh_process_converges_balancer_after_rolling_replace() {
    let name = "ngx";
    let template_b = "ubuntu-template-ngx";
    let client = raw_client().await;
    make_template(&client, template_b).await;
    let sim = Arc::new(
        SimCloud::new(SimConfig::instant().with_zones(["a", "b", "c"])).with_zone("example.com"),
    );
    let counter = CallCounter::new();

    // Process 1: the cluster from template A, with its balancer VM (after clearing
    // what an earlier failed run against the same vcsim may have left).
    let before = spec(name, "ubuntu-template");
    let (first, _) = process(&before, &sim, &counter).await;
    first.destroy(&before.cluster()).await.expect("clear");
    first
        .apply(&first.plan(&before).await.expect("plan"))
        .await
        .expect("apply");
    let lbs = balancer_vms(name).await;
    assert_eq!(lbs.len(), 1, "one balancer VM");

    // Process 2: the template changes to B; a rolling replace.
    let after = spec(name, template_b);
    let (second, _) = process(&after, &sim, &counter).await;
    let plan = second.plan(&after).await.expect("plan the change");
    let replaced = plan
        .nodes
        .iter()
        .filter(|a| matches!(a, NodeAction::Replace { .. }))
        .count();
    assert_eq!(replaced, 3, "{plan}");
    second.apply(&plan).await.expect("apply the change");

    // Process 3: nothing to do, nothing mutated (providers and vCenter).
    let (third, vsphere) = process(&after, &sim, &counter).await;
    counter.reset();
    let again = third.plan(&after).await.expect("plan again");
    assert!(again.is_noop(), "{again}");
    let inventory = third.apply(&again).await.expect("apply again");
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(vsphere.calls().mutating(), 0, "{:?}", vsphere.calls());

    // Read back: the new VMs, one balancer VM whose configuration serves exactly
    // them, and the record on that VM's address.
    let nodes: Vec<String> = vms_of(name).await.into_iter().map(|vm| vm.name).collect();
    let mut nodes_sorted = nodes.clone();
    nodes_sorted.sort();
    assert_eq!(nodes_sorted, ["ngx-1-g2", "ngx-2-g2", "ngx-3-g2"]);
    let lbs = balancer_vms(name).await;
    assert_eq!(
        lbs.len(),
        1,
        "one balancer VM: {:?}",
        lbs.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    let (lb_vm, user_data) = &lbs[0];
    let want: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| [80, 443, 9345, 6443].map(|port| format!("{}:{port}", fake_ip(n))))
        .collect();
    assert_eq!(upstreams(user_data), want, "{user_data}");
    let lb = &inventory.load_balancer;
    let mut ids: Vec<String> = inventory.nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort();
    assert_eq!(lb.targets, ids);
    let record = sim
        .snapshot()
        .record("example.com", "ngx.example.com")
        .cloned()
        .expect("the record");
    assert_eq!(
        record.data,
        SimRecordData::A(vec![fake_ip(lb_vm).parse().unwrap()]),
        "the record points at the balancer VM {lb_vm}"
    );

    third.destroy(&after.cluster()).await.expect("destroy");
    assert!(vms_of(name).await.is_empty());
    assert!(balancer_vms(name).await.is_empty());
}
