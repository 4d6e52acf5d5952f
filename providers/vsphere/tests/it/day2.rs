//! Day 2 against vcsim through the whole orchestrator: a rolling template replace and
//! a scale-down, one node per step, read back with a client of the test's own (which
//! also makes the second template: vcsim has one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use triad_core::drift::Attribute;
use triad_core::layers::CallCounter;
use triad_core::orchestrator::NodeAction;
use triad_core::{LoadBalancerProvider, Orchestrator};
use triad_sim::{SimCloud, SimConfig};
use vim_rs::core::client::Client;
use vim_rs::mo::{EventManager, Task, VirtualMachine};
use vim_rs::types::enums::{
    EventFilterSpecRecursionOptionEnum, TaskInfoStateEnum, VirtualMachinePowerStateEnum,
};
use vim_rs::types::structs::{
    EventFilterSpec, EventFilterSpecByEntity, ManagedObjectReference, VirtualMachineCloneSpec,
    VirtualMachineRelocateSpec,
};

use crate::common::{find_path, raw_client};
use crate::e2e::{extra, orchestrator, provider, spec_with, vms_of, MemoryBalancer};
use crate::Vm;

/// The template testing/vcsim makes.
const TEMPLATE_A: &str = "ubuntu-template";

/// The triad label holding the image (template) a node was cloned from.
const FP_IMAGE: &str = "triad.label.triad-fp-image";

/// Wait for vCenter task `task` to succeed.
async fn wait_task(client: &Arc<Client>, task: &ManagedObjectReference) {
    let task = Task::new(client.clone(), &task.value);
    // Bounded by attempts, not by time: vcsim finishes a clone in milliseconds.
    for _ in 0..600 {
        let info = task.info().await.expect("read the task");
        match info.state {
            TaskInfoStateEnum::Success => return,
            TaskInfoStateEnum::Error => panic!("task failed: {:?}", info.error),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("the task did not finish");
}

/// Template `name` in DC0's VM folder: a clone of [`TEMPLATE_A`] made a template, by
/// the test's own client (no triad code), unless it exists.
pub(crate) async fn make_template(client: &Arc<Client>, name: &str) {
    if find_path(client, &format!("DC0/vm/{name}")).await.is_some() {
        return;
    }
    let source = find_path(client, &format!("DC0/vm/{TEMPLATE_A}"))
        .await
        .expect("testing/vcsim makes ubuntu-template");
    let folder = find_path(client, "DC0/vm").await.expect("DC0's VM folder");
    // vcsim needs a pool to clone a template, even into a template.
    let pool = find_path(client, "DC0/host/DC0_C0/Resources")
        .await
        .expect("DC0_C0's resource pool");
    let spec = VirtualMachineCloneSpec {
        location: VirtualMachineRelocateSpec {
            service: None,
            folder: None,
            datastore: None,
            disk_move_type: None,
            pool: Some(pool),
            host: None,
            disk: None,
            transform: None,
            device_change: None,
            profile: None,
            crypto_spec: None,
            tag_specs: None,
            vm_placement_policies: None,
        },
        template: true,
        config: None,
        customization: None,
        power_on: false,
        snapshot: None,
        memory: None,
        tpm_provision_policy: None,
    };
    let task = VirtualMachine::new(client.clone(), &source.value)
        .clone_vm_task(&folder, name, &spec)
        .await
        .expect("clone the template");
    wait_task(client, &task).await;
}

/// The VM (by name in DC0's VM folder) that VM `vm` was cloned from, as vCenter's
/// `VmClonedEvent` of `vm` says ("Clone of <source> completed"). vcsim keeps the last
/// 1000 events.
async fn cloned_from(client: &Arc<Client>, vm: &str) -> String {
    let entity = find_path(client, &format!("DC0/vm/{vm}"))
        .await
        .unwrap_or_else(|| panic!("no VM {vm}"));
    let manager = EventManager::new(
        client.clone(),
        &client
            .service_content()
            .event_manager
            .as_ref()
            .unwrap()
            .value,
    );
    let filter = EventFilterSpec {
        entity: Some(EventFilterSpecByEntity {
            entity,
            recursion: EventFilterSpecRecursionOptionEnum::Self_,
        }),
        time: None,
        user_name: None,
        event_chain_id: None,
        alarm: None,
        scheduled_task: None,
        disable_full_message: Some(false),
        category: None,
        r#type: None,
        tag: None,
        event_type_id: Some(vec!["VmClonedEvent".to_owned()]),
        max_count: None,
        delayed_init: None,
        auditable: None,
        audit_id: None,
    };
    let events = manager
        .query_events(&filter, None)
        .await
        .expect("query events")
        .unwrap_or_default();
    let sources: Vec<String> = events
        .iter()
        .filter_map(|e| {
            let m = e.full_formatted_message.as_deref()?;
            Some(
                m.strip_prefix("Clone of ")?
                    .strip_suffix(" completed")?
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(sources.len(), 1, "{vm}'s clone events: {events:?}");
    sources.into_iter().next().unwrap()
}

/// What vCenter has of one node, read with the test's own client.
#[derive(Debug)]
struct Seen {
    pool: String,
    source: String,
    image: Option<String>,
    uuid: String,
}

/// Every VM of `cluster` by name, each powered on; what each was cloned from.
async fn read_back(client: &Arc<Client>, cluster: &str) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for vm in vms_of(cluster).await {
        let Vm {
            name, power, pool, ..
        } = &vm;
        assert_eq!(*power, VirtualMachinePowerStateEnum::PoweredOn, "{name}");
        let seen = Seen {
            pool: pool.as_ref().expect("a resource pool").value.clone(),
            source: cloned_from(client, name).await,
            image: extra(&vm, FP_IMAGE),
            uuid: vm.uuid.clone().expect("an instance UUID"),
        };
        out.insert(name.clone(), seen);
    }
    out
}

/// A cluster on vcsim with the memory balancer and the sim's DNS, every call counted.
struct Rig {
    vsphere: Arc<triad_vsphere::VsphereProvider>,
    counter: CallCounter,
    balancer: Arc<MemoryBalancer>,
    sim: Arc<SimCloud>,
    triad: Orchestrator,
}

impl Rig {
    async fn new(spec: &triad_core::ValidSpec) -> Self {
        let vsphere = Arc::new(provider(spec).await);
        let sim = Arc::new(
            SimCloud::new(SimConfig::instant().with_zones(["a", "b", "c"]))
                .with_zone("example.com"),
        );
        let counter = CallCounter::new();
        let balancer = Arc::new(MemoryBalancer::default());
        let triad = orchestrator(vsphere.clone(), &counter, &balancer, &sim);
        Self {
            vsphere,
            counter,
            balancer,
            sim,
            triad,
        }
    }

    /// Plan and apply `spec`.
    async fn apply(&self, spec: &triad_core::ValidSpec) -> triad_core::model::Inventory {
        let plan = self.triad.plan(spec).await.expect("plan");
        self.triad.apply(&plan).await.expect("apply")
    }

    /// The balancer's targets (instance UUIDs), sorted.
    async fn targets(&self, spec: &triad_core::ValidSpec) -> Vec<String> {
        self.balancer
            .discover_load_balancer(&spec.cluster())
            .await
            .unwrap()
            .expect("the balancer exists")
            .targets
    }

    /// A rerun as a new process would make it (a fresh login): the plan is a no-op and
    /// its apply makes no mutating call, to the providers or to vCenter.
    async fn assert_stable(&self, spec: &triad_core::ValidSpec) {
        let fresh = Arc::new(provider(spec).await);
        let rerun = orchestrator(fresh.clone(), &self.counter, &self.balancer, &self.sim);
        self.counter.reset();
        self.balancer.journal.clear();
        let plan = rerun.plan(spec).await.expect("plan again");
        assert!(plan.is_noop(), "{plan}");
        rerun.apply(&plan).await.expect("apply again");
        assert_eq!(self.counter.mutating(), 0, "{:?}", self.counter.snapshot());
        assert_eq!(fresh.calls().mutating(), 0, "{:?}", fresh.calls());
        assert!(
            self.balancer.journal.entries().is_empty(),
            "{:?}",
            self.balancer.journal.entries()
        );
    }

    async fn destroy(&self, spec: &triad_core::ValidSpec) {
        self.triad.destroy(&spec.cluster()).await.expect("destroy");
        assert!(
            vms_of(&spec.name).await.is_empty(),
            "VMs left after destroy"
        );
    }
}

/// The slot of node `name` of cluster `cluster` (`roll-2-g2` → 2).
fn slot(cluster: &str, name: &str) -> u32 {
    triad_core::rollout::slot_of(cluster, name)
        .unwrap_or_else(|| panic!("{name} is no node name"))
        .0
}

/// Walk `journal`: every target set serves each of the `count` slots (never more than
/// one node of a slot missing from the balancer, and never a slot empty), and each
/// node deleted had left the balancer before.
fn assert_one_at_a_time(cluster: &str, count: u32, journal: &[String]) {
    let mut registered: BTreeSet<String> = BTreeSet::new();
    for entry in journal {
        let (op, what) = entry.split_once(' ').unwrap();
        match op {
            "set_targets" => {
                registered = what.split(',').map(str::to_owned).collect();
                let slots: BTreeSet<u32> = registered.iter().map(|n| slot(cluster, n)).collect();
                assert!(
                    slots.len() >= count as usize,
                    "`{entry}` leaves a slot without a target: {journal:#?}"
                );
            }
            "delete_node" => assert!(
                !registered.contains(what),
                "{what} deleted while still a target: {journal:#?}"
            ),
            _ => {}
        }
    }
}

/// Changing `nodes.image` (the template) from A to B replaces the nodes one at a time:
/// each new VM is cloned from B into its predecessor's resource pool, runs and is
/// registered before the old VM leaves the balancer and is deleted; vCenter's own
/// records (clone events, extraConfig, resource pools, power state) show it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn rolling_template_replace() {
    let name = "roll";
    let template_b = "ubuntu-template-b";
    let client = raw_client().await;
    make_template(&client, template_b).await;
    let before = spec_with(name, &format!("count = 3\nimage = \"{TEMPLATE_A}\""));
    let rig = Rig::new(&before).await;
    rig.apply(&before).await;
    let old = read_back(&client, name).await;
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        ["roll-1", "roll-2", "roll-3"],
        "{old:#?}"
    );
    for (vm, seen) in &old {
        assert_eq!(seen.source, TEMPLATE_A, "{vm}");
        assert_eq!(seen.image.as_deref(), Some(TEMPLATE_A), "{vm}");
    }
    let pools: BTreeSet<&str> = old.values().map(|s| s.pool.as_str()).collect();
    assert_eq!(pools.len(), 3, "one failure domain per node: {old:#?}");

    // The plan: every node replaced, in its own zone, for the image alone.
    let after = spec_with(name, &format!("count = 3\nimage = \"{template_b}\""));
    let plan = rig.triad.plan(&after).await.expect("plan the change");
    let mut replaced = Vec::new();
    for action in &plan.nodes {
        let NodeAction::Replace {
            node,
            name: new,
            zone,
            changes,
        } = action
        else {
            panic!("expected every node replaced: {plan}");
        };
        assert_eq!(zone, &node.zone, "{plan}");
        assert_eq!(changes.len(), 1, "{plan}");
        let c = &changes[0];
        assert_eq!(
            (c.attribute, c.from.as_str(), c.to.as_str(), c.in_place),
            (Attribute::Image, TEMPLATE_A, template_b, false),
            "{plan}"
        );
        replaced.push((node.name.as_str(), new.as_str()));
    }
    assert_eq!(
        replaced,
        [
            ("roll-1", "roll-1-g2"),
            ("roll-2", "roll-2-g2"),
            ("roll-3", "roll-3-g2")
        ]
    );
    assert_eq!(plan.destructive().len(), 3, "{:?}", plan.destructive());
    assert_eq!(plan.rolling_steps().len(), 3, "{:#?}", plan.rolling_steps());
    assert!(
        plan.to_string()
            .contains("~ node roll-1: image ubuntu-template → ubuntu-template-b (replace)"),
        "{plan}"
    );

    rig.balancer.journal.clear();
    rig.vsphere.reset_calls();
    let inventory = rig.triad.apply(&plan).await.expect("apply the change");
    let calls = rig.vsphere.calls();
    assert_eq!(
        (
            calls.by_method.get("CloneVM_Task"),
            calls.by_method.get("Destroy_Task")
        ),
        (Some(&3), Some(&3)),
        "three clones and three deletes: {calls:?}"
    );
    let journal = rig.balancer.journal.entries();
    assert_one_at_a_time(name, 3, &journal);
    // Each slot in turn: the new VM is made and registered beside the old one, then
    // the old one leaves the balancer and is deleted.
    assert_eq!(
        journal,
        [
            "create_node roll-1-g2",
            "set_targets roll-1,roll-1-g2,roll-2,roll-3",
            "set_targets roll-1-g2,roll-2,roll-3",
            "delete_node roll-1",
            "create_node roll-2-g2",
            "set_targets roll-1-g2,roll-2,roll-2-g2,roll-3",
            "set_targets roll-1-g2,roll-2-g2,roll-3",
            "delete_node roll-2",
            "create_node roll-3-g2",
            "set_targets roll-1-g2,roll-2-g2,roll-3,roll-3-g2",
            "set_targets roll-1-g2,roll-2-g2,roll-3-g2",
            "delete_node roll-3",
        ]
    );

    // Read back: three powered-on VMs cloned from B, each in its predecessor's pool.
    let new = read_back(&client, name).await;
    assert_eq!(
        new.keys().collect::<Vec<_>>(),
        ["roll-1-g2", "roll-2-g2", "roll-3-g2"],
        "the old VMs are gone: {new:#?}"
    );
    for (old_name, new_name) in &replaced {
        let seen = &new[*new_name];
        assert_eq!(seen.source, template_b, "{new_name}");
        assert_eq!(seen.image.as_deref(), Some(template_b), "{new_name}");
        assert_eq!(
            seen.pool, old[*old_name].pool,
            "{new_name}'s failure domain"
        );
        assert!(
            find_path(&client, &format!("DC0/vm/{old_name}"))
                .await
                .is_none(),
            "{old_name} is still in the inventory"
        );
    }
    let mut uuids: Vec<String> = new.values().map(|s| s.uuid.clone()).collect();
    uuids.sort();
    assert_eq!(
        rig.targets(&after).await,
        uuids,
        "the balancer targets the new VMs"
    );
    let mut ids: Vec<String> = inventory.nodes.iter().map(|n| n.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, uuids);

    rig.assert_stable(&after).await;
    rig.destroy(&after).await;
}

/// Scale-down 5 → 3: one node per step, highest index first, each leaving the
/// balancer right before it is deleted; vCenter keeps the three lowest.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim; scripts/test starts it"]
async fn scale_down_one_node_per_step_highest_first() {
    let name = "shrink";
    let client = raw_client().await;
    let five = spec_with(name, "count = 5");
    let rig = Rig::new(&five).await;
    rig.apply(&five).await;
    let before = read_back(&client, name).await;
    assert_eq!(before.len(), 5, "{before:#?}");

    let three = spec_with(name, "count = 3");
    let plan = rig.triad.plan(&three).await.expect("plan the scale-down");
    let deletes: Vec<&str> = plan
        .nodes
        .iter()
        .filter_map(|a| match a {
            NodeAction::Delete { node, .. } => Some(node.name.as_str()),
            NodeAction::Keep { .. } => None,
            other => panic!("only keeps and deletes: {other:?}"),
        })
        .collect();
    assert_eq!(deletes.len(), 2, "{plan}");
    assert_eq!(plan.destructive().len(), 2, "{:?}", plan.destructive());
    let text = plan.to_string();
    assert!(
        text.contains("Removes 1 of 5 etcd members (4 left, quorum 3)"),
        "{text}"
    );
    assert!(text.contains("kubectl drain shrink-5"), "{text}");

    rig.balancer.journal.clear();
    let inventory = rig.triad.apply(&plan).await.expect("apply the scale-down");
    let journal = rig.balancer.journal.entries();
    assert_eq!(
        journal,
        [
            "set_targets shrink-1,shrink-2,shrink-3,shrink-4",
            "delete_node shrink-5",
            "set_targets shrink-1,shrink-2,shrink-3",
            "delete_node shrink-4",
        ]
    );
    assert_one_at_a_time(name, 3, &journal);

    let after = read_back(&client, name).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["shrink-1", "shrink-2", "shrink-3"],
        "{after:#?}"
    );
    for (vm, seen) in &after {
        assert_eq!(seen.uuid, before[vm].uuid, "{vm} kept, not remade");
    }
    let pools: BTreeSet<&str> = after.values().map(|s| s.pool.as_str()).collect();
    assert_eq!(
        pools.len(),
        3,
        "still one node per failure domain: {after:#?}"
    );
    let mut uuids: Vec<String> = after.values().map(|s| s.uuid.clone()).collect();
    uuids.sort();
    assert_eq!(rig.targets(&three).await, uuids);
    assert_eq!(inventory.nodes.len(), 3);

    rig.assert_stable(&three).await;
    rig.destroy(&three).await;
}
