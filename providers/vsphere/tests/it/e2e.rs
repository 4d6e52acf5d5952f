//! The whole orchestrator against vcsim: vSphere nodes, the simulated cloud's DNS, and
//! an in-memory balancer (vSphere has neither; the sim's balancer only targets sim
//! instances, so a balancer that accepts any node stands in until triad-nginx).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use std::time::Duration;
use triad_core::model::{Endpoint, LbState, Listener, LoadBalancer, LoadBalancerRequest};
use triad_core::spec::ClusterRef;

use base64::Engine as _;
use triad_core::layers::{CallCounter, Stack};
use triad_core::model::NodeRequest;
use triad_core::orchestrator::Options;
use triad_core::spec::ClusterSpec;
use triad_core::{DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator};
use triad_sim::{SimCloud, SimConfig};
use triad_vsphere::VsphereProvider;
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::structs::CustomFieldStringValue;
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

use crate::common::fake_ip;

vim_retrievable!(
    struct Vm: VirtualMachine {
        name = "name",
        cpus = "config.hardware.num_cpu"?,
        memory = "config.hardware.memory_mb"?,
        extra = "config.extra_config",
        custom = "custom_value",
        power = "runtime.power_state",
    }
);

fn extra(vm: &Vm, key: &str) -> Option<String> {
    vm.extra
        .iter()
        .flatten()
        .rev()
        .find(|o| o.key == key)
        .and_then(|o| match &o.value {
            Some(VimAny::Value(ValueElements::PrimitiveString(s))) => Some(s.clone()),
            _ => None,
        })
}

/// Every VM of the datacenter whose `triad.cluster` is `cluster`.
async fn vms_of(p: &VsphereProvider, cluster: &str) -> Vec<Vm> {
    let client = p.client().clone();
    let retriever = ObjectRetriever::new(client.clone()).unwrap();
    let vms: Vec<Vm> = retriever
        .retrieve_objects_from_container(&client.service_content().root_folder)
        .await
        .expect("list VMs");
    vms.into_iter()
        .filter(|vm| extra(vm, "triad.cluster").as_deref() == Some(cluster))
        .collect()
}

fn spec_text(name: &str) -> String {
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run through scripts/test"))
    };
    format!(
        r#"
name = "{name}"
region = "dc0"
[nodes]
count = 3
size = "2cpu-4gb"
[dns]
zone = "example.com"
hostname = "{name}.example.com"
[vsphere]
url = "{url}"
username = "{user}"
password = "{password}"
ca_file = "{ca}"
datacenter = "DC0"
template = "ubuntu-template"
datastore = "LocalDS_0"
network = "DC0_DVPG0"
[vsphere.failure_domains]
dc0a = "DC0_C0"
dc0b = "DC0_C1"
dc0c = "DC0_C2/Resources"
# The mix a user would write; this test stands in for the balancer and DNS in code.
[nginx]
[rfc2136]
"#,
        url = env("TRIAD_VCSIM_URL"),
        user = env("TRIAD_VCSIM_USER"),
        password = env("TRIAD_VCSIM_PASSWORD"),
        ca = env("TRIAD_VCSIM_CA"),
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn apply_rerun_destroy() {
    let name = "e2e";
    let spec = ClusterSpec::from_toml(&spec_text(name))
        .unwrap()
        .validate()
        .unwrap();
    let vsphere = Arc::new(
        VsphereProvider::from_spec(&spec)
            .await
            .expect("log in to vcsim (transport auto falls back to SOAP)")
            .with_node_extra_config(|r: &NodeRequest| {
                vec![("SET.guest.ipAddress".to_owned(), fake_ip(&r.name))]
            })
            .with_poll_interval(Duration::from_millis(200)),
    );
    let sim = Arc::new(
        SimCloud::new(SimConfig::instant().with_zones(["a", "b", "c"])).with_zone("example.com"),
    );
    let counter = CallCounter::new();
    let nodes: Arc<dyn NodeProvider> =
        Arc::new(Stack::new(vsphere.clone()).count(counter.clone()).build());
    let balancer = Arc::new(MemoryBalancer::default());
    let lb: Arc<dyn LoadBalancerProvider> =
        Arc::new(Stack::new(balancer.clone()).count(counter.clone()).build());
    let dns: Arc<dyn DnsProvider> =
        Arc::new(Stack::new(sim.clone()).count(counter.clone()).build());
    let triad = Orchestrator::new(nodes, lb, dns).with_options(Options {
        node_timeout: Duration::from_secs(60),
        ..Options::default()
    });

    let plan = triad.plan(&spec).await.expect("plan");
    assert!(!plan.is_noop());
    let inventory = triad.apply(&plan).await.expect("apply");
    assert_eq!(inventory.nodes.len(), 3);
    let zones: BTreeSet<&str> = inventory.nodes.iter().map(|n| n.zone.as_str()).collect();
    assert_eq!(zones, BTreeSet::from(["dc0a", "dc0b", "dc0c"]));
    for n in &inventory.nodes {
        assert_eq!(
            n.private_ip.map(|ip| ip.to_string()),
            Some(fake_ip(&n.name)),
            "{n:?}"
        );
    }

    // Read back with the SDK.
    let vms = vms_of(&vsphere, name).await;
    assert_eq!(vms.len(), 3, "one VM per node");
    let field_names: std::collections::BTreeMap<i32, String> = {
        let client = vsphere.client();
        let cfm = vim_rs::mo::CustomFieldsManager::new(
            client.clone(),
            &client
                .service_content()
                .custom_fields_manager
                .as_ref()
                .unwrap()
                .value,
        );
        cfm.field()
            .await
            .unwrap()
            .into_iter()
            .flatten()
            .map(|d| (d.key, d.name))
            .collect()
    };
    for vm in &vms {
        assert_eq!(
            (vm.cpus, vm.memory),
            (Some(2), Some(4096)),
            "{} shape",
            vm.name
        );
        assert_eq!(
            vm.power,
            vim_rs::types::enums::VirtualMachinePowerStateEnum::PoweredOn,
            "{} power",
            vm.name
        );
        let userdata = extra(vm, "guestinfo.userdata").expect("guestinfo.userdata");
        assert_eq!(
            extra(vm, "guestinfo.userdata.encoding").as_deref(),
            Some("base64")
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(userdata)
            .unwrap();
        assert!(String::from_utf8(decoded)
            .unwrap()
            .starts_with("#cloud-config"));
        let metadata = extra(vm, "guestinfo.metadata").expect("guestinfo.metadata");
        let decoded = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(metadata)
                .unwrap(),
        )
        .unwrap();
        assert!(
            decoded.contains(&format!("local-hostname: {}", vm.name)),
            "{decoded}"
        );
        assert_eq!(
            extra(vm, "disk.EnableUUID"),
            None,
            "no extra_config in this spec"
        );
        let custom: std::collections::BTreeMap<String, String> = vm
            .custom
            .iter()
            .flatten()
            .filter_map(|c| {
                let s = c
                    .as_ref()
                    .as_any_ref()
                    .downcast_ref::<CustomFieldStringValue>()?;
                Some((field_names.get(&c.key)?.clone(), s.value.clone()))
            })
            .collect();
        assert_eq!(
            custom.get("triad-cluster").map(String::as_str),
            Some(name),
            "{custom:?}"
        );
        assert_eq!(
            custom.get("triad-role").map(String::as_str),
            Some("node"),
            "{custom:?}"
        );
    }
    let lb = balancer
        .discover_load_balancer(&spec.cluster())
        .await
        .unwrap()
        .expect("the balancer exists")
        .targets;
    let mut ids: Vec<String> = inventory.nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort();
    assert_eq!(lb, ids, "the balancer targets the three VMs");

    // Rerun: nothing to do, and nothing mutating is called.
    let again = triad.plan(&spec).await.expect("plan again");
    assert!(again.is_noop(), "second plan is not a no-op: {again}");
    counter.reset();
    let inventory2 = triad.apply(&again).await.expect("apply again");
    assert_eq!(
        counter.mutating(),
        0,
        "apply of a no-op plan mutated: {:?}",
        counter.snapshot()
    );
    assert_eq!(inventory2.nodes, inventory.nodes);
    assert_eq!(
        vms_of(&vsphere, name).await.len(),
        3,
        "the rerun cloned nothing"
    );

    // Destroy: nothing of the cluster is left.
    triad.destroy(&spec.cluster()).await.expect("destroy");
    assert!(
        vms_of(&vsphere, name).await.is_empty(),
        "VMs left after destroy"
    );
    assert!(triad.plan(&spec).await.unwrap().discovered.nodes.is_empty());
    assert!(
        sim.discover_load_balancer(&spec.cluster())
            .await
            .unwrap()
            .is_none(),
        "balancer left after destroy"
    );
}

/// A balancer kept in memory that targets whatever nodes it is given.
#[derive(Default)]
struct MemoryBalancer(Mutex<Option<LoadBalancer>>);

#[async_trait]
impl LoadBalancerProvider for MemoryBalancer {
    fn name(&self) -> &str {
        "memory"
    }
    async fn discover_load_balancer(
        &self,
        _: &ClusterRef,
    ) -> triad_core::Result<Option<LoadBalancer>> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn create_load_balancer(
        &self,
        _: &ClusterRef,
        r: &LoadBalancerRequest,
    ) -> triad_core::Result<LoadBalancer> {
        let mut lb = self.0.lock().unwrap();
        let tcp = |port| Listener {
            port,
            protocol: "TCP".into(),
            target_port: Some(port),
        };
        Ok(lb
            .get_or_insert_with(|| LoadBalancer {
                id: format!("mem-{}", r.name),
                name: r.name.clone(),
                mode: r.mode,
                scheme: r.scheme,
                state: LbState::Active,
                endpoint: Some(Endpoint::Ip {
                    addresses: vec!["192.0.2.10".parse().unwrap()],
                }),
                // 80/443 and the Kubernetes registration ports the request asks for.
                listeners: [80, 443]
                    .into_iter()
                    .chain(r.registration_ports.iter().copied())
                    .map(tcp)
                    .collect(),
                targets: Vec::new(),
                labels: Default::default(),
                partial_targets: Vec::new(),
            })
            .clone())
    }
    async fn wait_load_balancer(
        &self,
        _: &ClusterRef,
        lb: &LoadBalancer,
        _: Duration,
    ) -> triad_core::Result<LoadBalancer> {
        Ok(lb.clone())
    }
    async fn set_targets(
        &self,
        _: &ClusterRef,
        _: &LoadBalancer,
        nodes: &[triad_core::model::Node],
    ) -> triad_core::Result<LoadBalancer> {
        let mut guard = self.0.lock().unwrap();
        let lb = guard.as_mut().expect("set_targets before create");
        lb.targets = nodes.iter().map(|n| n.id.clone()).collect();
        lb.targets.sort();
        Ok(lb.clone())
    }
    async fn delete_load_balancer(&self, _: &ClusterRef) -> triad_core::Result<Vec<String>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .take()
            .map(|lb| lb.name)
            .into_iter()
            .collect())
    }
}
