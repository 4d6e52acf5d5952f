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
use std::future::Future;
use std::pin::Pin;
use triad_core::drift::{self, Attribute};
use triad_core::layers::{Call, CallCounter, Layer, Op, Stack};
use triad_core::orchestrator::NodeAction;
use triad_core::orchestrator::Options;
use triad_core::spec::{ClusterSpec, ValidSpec};
use triad_core::{DnsProvider, LoadBalancerProvider, NodeProvider, Orchestrator};
use triad_sim::{SimCloud, SimConfig};
use triad_vsphere::VsphereProvider;
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::structs::CustomFieldStringValue;
use vim_rs::types::vim_any::VimAny;

use crate::common::{fake_ip, raw_client};
use crate::Vm;

/// The value of `extraConfig` key `key` of `vm`.
pub(crate) fn extra(vm: &Vm, key: &str) -> Option<String> {
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

/// Every VM of the datacenter whose `triad.cluster` is `cluster`, read with a client
/// of the test's own.
pub(crate) async fn vms_of(cluster: &str) -> Vec<Vm> {
    let client = raw_client().await;
    let retriever = ObjectRetriever::new(client.clone()).unwrap();
    let vms: Vec<Vm> = retriever
        .retrieve_objects_from_container(&client.service_content().root_folder)
        .await
        .expect("list VMs");
    vms.into_iter()
        .filter(|vm| extra(vm, "triad.cluster").as_deref() == Some(cluster))
        .collect()
}

fn spec(name: &str, ssh_cidrs: &str) -> ValidSpec {
    spec_with(
        name,
        &format!("count = 3\nssh_allowed_cidrs = [{ssh_cidrs}]"),
    )
}

/// The test spec of cluster `name` with `nodes` as the `[nodes]` table's lines beside
/// `size` (`count` among them).
pub(crate) fn spec_with(name: &str, nodes: &str) -> ValidSpec {
    spec_with_nginx(name, nodes, "")
}

/// [`spec_with`], with `nginx` as the `[nginx]` table's lines.
pub(crate) fn spec_with_nginx(name: &str, nodes: &str, nginx: &str) -> ValidSpec {
    ClusterSpec::from_toml(&spec_text(name, nodes, nginx))
        .unwrap()
        .validate()
        .unwrap()
}

fn spec_text(name: &str, nodes: &str, nginx: &str) -> String {
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run through scripts/test"))
    };
    format!(
        r#"
name = "{name}"
region = "dc0"
[nodes]
size = "2cpu-4gb"
{nodes}
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
{nginx}
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
    let spec = spec(name, r#""10.0.0.0/8""#);
    let vsphere = Arc::new(provider(&spec).await);
    let sim = Arc::new(
        SimCloud::new(SimConfig::instant().with_zones(["a", "b", "c"])).with_zone("example.com"),
    );
    let counter = CallCounter::new();
    let balancer = Arc::new(MemoryBalancer::default());
    let triad = orchestrator(vsphere.clone(), &counter, &balancer, &sim);

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
    let vms = vms_of(name).await;
    assert_eq!(vms.len(), 3, "one VM per node");
    let field_names: std::collections::BTreeMap<i32, String> = {
        let client = &raw_client().await;
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

    // Rerun, as a new process would (a fresh login, nothing cached): nothing to do,
    // nothing mutating is called, and vCenter sees at most 10 reads.
    let fresh = Arc::new(provider(&spec).await);
    let rerun = orchestrator(fresh.clone(), &counter, &balancer, &sim);
    counter.reset();
    let again = rerun.plan(&spec).await.expect("plan again");
    assert!(again.is_noop(), "second plan is not a no-op: {again}");
    let inventory2 = rerun.apply(&again).await.expect("apply again");
    assert_eq!(
        counter.mutating(),
        0,
        "apply of a no-op plan mutated: {:?}",
        counter.snapshot()
    );
    let calls = fresh.calls();
    eprintln!("vCenter calls of a no-op rerun: {calls:?}");
    assert_eq!(calls.mutating(), 0, "vCenter calls of the rerun: {calls:?}");
    assert!(
        calls.reads() <= 10,
        "a no-op rerun read vCenter {} times: {calls:?}",
        calls.reads()
    );
    assert_eq!(inventory2.nodes, inventory.nodes);
    assert_eq!(vms_of(name).await.len(), 3, "the rerun cloned nothing");

    // Destroy: nothing of the cluster is left.
    triad.destroy(&spec.cluster()).await.expect("destroy");
    assert!(vms_of(name).await.is_empty(), "VMs left after destroy");
    assert!(triad.plan(&spec).await.unwrap().discovered.nodes.is_empty());
    assert!(
        sim.discover_load_balancer(&spec.cluster())
            .await
            .unwrap()
            .is_none(),
        "balancer left after destroy"
    );
}

/// A provider for `spec`'s `[vsphere]`, with vcsim's fake guest IPs.
pub(crate) async fn provider(spec: &ValidSpec) -> VsphereProvider {
    VsphereProvider::from_spec(spec)
        .await
        .expect("log in to vcsim (transport auto falls back to SOAP)")
        .with_vcsim()
        .with_poll_interval(Duration::from_millis(200))
}

/// vSphere nodes, the memory balancer and the sim's DNS, every call counted; the
/// node calls and the target sets also go to the balancer's [`Journal`].
pub(crate) fn orchestrator(
    vsphere: Arc<VsphereProvider>,
    counter: &CallCounter,
    balancer: &Arc<MemoryBalancer>,
    sim: &Arc<SimCloud>,
) -> Orchestrator {
    let nodes: Arc<dyn NodeProvider> = Arc::new(
        Stack::new(vsphere)
            .count(counter.clone())
            .layer(balancer.journal.clone())
            .build(),
    );
    let lb: Arc<dyn LoadBalancerProvider> =
        Arc::new(Stack::new(balancer.clone()).count(counter.clone()).build());
    let dns: Arc<dyn DnsProvider> =
        Arc::new(Stack::new(sim.clone()).count(counter.clone()).build());
    let mut options = Options::default();
    options.node_timeout = Duration::from_secs(60);
    Orchestrator::new(nodes, lb, dns).with_options(options)
}

/// Day 2: narrowing `nodes.ssh_allowed_cidrs` is planned as an in-place update of every
/// node (vSphere has no firewall: only the fingerprint changes), applied with
/// ReconfigVM, read back with a client of the test's own, and a third apply changes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn ssh_cidrs_change_in_place() {
    let name = "day2";
    let before = spec(name, r#""10.0.0.0/8""#);
    let vsphere = Arc::new(provider(&before).await);
    let sim = Arc::new(
        SimCloud::new(SimConfig::instant().with_zones(["a", "b", "c"])).with_zone("example.com"),
    );
    let counter = CallCounter::new();
    let balancer = Arc::new(MemoryBalancer::default());
    let triad = orchestrator(vsphere.clone(), &counter, &balancer, &sim);
    let first = triad
        .apply(&triad.plan(&before).await.expect("plan"))
        .await
        .expect("apply");

    let after = spec(name, r#""10.1.0.0/16", "192.0.2.0/24""#);
    let label = Attribute::SshAllowedCidrs.label();
    let wanted = drift::labels_of(&drift::node_wanted(&after))[label].clone();
    let old = drift::labels_of(&drift::node_wanted(&before))[label].clone();
    assert_ne!(wanted, old);
    let plan = triad.plan(&after).await.expect("plan the change");
    assert_eq!(plan.nodes.len(), 3, "{plan}");
    for action in &plan.nodes {
        let NodeAction::Update { changes, .. } = action else {
            panic!("expected an in-place update of every node: {plan}");
        };
        assert_eq!(changes.len(), 1, "{plan}");
        assert_eq!(changes[0].attribute, Attribute::SshAllowedCidrs, "{plan}");
    }
    assert!(plan.destructive().is_empty(), "{plan}");
    vsphere.reset_calls();
    let second = triad.apply(&plan).await.expect("apply the change");
    let calls = vsphere.calls();
    assert_eq!(
        calls.by_method.get("ReconfigVM_Task"),
        Some(&3),
        "one ReconfigVM per node: {calls:?}"
    );
    let ids = |inv: &triad_core::model::Inventory| {
        inv.nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&second), ids(&first), "updated in place, not replaced");
    for n in &second.nodes {
        assert_eq!(n.labels.get(label), Some(&wanted), "{n:?}");
    }

    // Read back with a client of the test's own.
    let vms = vms_of(name).await;
    assert_eq!(vms.len(), 3);
    for vm in &vms {
        assert_eq!(
            extra(vm, &format!("triad.label.{label}")),
            Some(wanted.clone()),
            "{} fingerprint",
            vm.name
        );
        assert_eq!(
            extra(vm, "triad.label.triad-fp-image").as_deref(),
            Some("default"),
            "{} keeps the rest of its fingerprint",
            vm.name
        );
    }

    // A third apply: no drift, no mutating call (to the providers or to vCenter).
    let third = triad.plan(&after).await.expect("plan again");
    assert!(third.is_noop(), "{third}");
    counter.reset();
    vsphere.reset_calls();
    triad.apply(&third).await.expect("apply again");
    assert_eq!(counter.mutating(), 0, "{:?}", counter.snapshot());
    assert_eq!(vsphere.calls().mutating(), 0, "{:?}", vsphere.calls());

    triad.destroy(&after.cluster()).await.expect("destroy");
    assert!(vms_of(name).await.is_empty(), "VMs left after destroy");
}

/// The mutating calls that succeeded, in order: `create_node rancher-1-g2`,
/// `delete_node rancher-1`, `update_node …` (as a [`Layer`] on the node provider) and
/// `set_targets rancher-1,rancher-2` (the [`MemoryBalancer`]'s target sets, by node
/// name).
#[derive(Clone, Default)]
pub(crate) struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    /// The entries so far.
    pub(crate) fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Forget the entries so far.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Layer for Journal {
    fn call<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        resource: &'a str,
        inner: &'a Call<'a, T>,
    ) -> Pin<Box<dyn Future<Output = triad_core::Result<T>> + Send + 'a>> {
        Box::pin(async move {
            let result = inner().await;
            if result.is_ok() && op.is_mutating() {
                let name = resource.strip_prefix("node ").unwrap_or(resource);
                self.push(format!("{op} {name}"));
            }
            result
        })
    }
}

/// A balancer kept in memory that targets whatever nodes it is given, writing each
/// target set to its journal.
#[derive(Default)]
pub(crate) struct MemoryBalancer {
    lb: Mutex<Option<LoadBalancer>>,
    /// Where the target sets (and, through [`orchestrator`], the node calls) go.
    pub(crate) journal: Journal,
}

#[async_trait]
impl LoadBalancerProvider for MemoryBalancer {
    fn name(&self) -> &str {
        "memory"
    }
    async fn discover_load_balancer(
        &self,
        _: &ClusterRef,
    ) -> triad_core::Result<Option<LoadBalancer>> {
        Ok(self.lb.lock().unwrap().clone())
    }
    async fn create_load_balancer(
        &self,
        _: &ClusterRef,
        r: &LoadBalancerRequest,
    ) -> triad_core::Result<LoadBalancer> {
        let mut lb = self.lb.lock().unwrap();
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
                registration_endpoint: None,
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
        let mut guard = self.lb.lock().unwrap();
        let lb = guard.as_mut().expect("set_targets before create");
        lb.targets = nodes.iter().map(|n| n.id.clone()).collect();
        lb.targets.sort();
        let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort();
        self.journal
            .push(format!("set_targets {}", names.join(",")));
        Ok(lb.clone())
    }
    async fn delete_load_balancer(&self, _: &ClusterRef) -> triad_core::Result<Vec<String>> {
        Ok(self
            .lb
            .lock()
            .unwrap()
            .take()
            .map(|lb| lb.name)
            .into_iter()
            .collect())
    }
}
