//! The node operations, run on the worker thread: find, list, clone, converge, wait,
//! update and delete VMs, and wait for their tasks.

use std::collections::BTreeMap;
use std::time::Duration;

use triad_core::labels::{self, Role};
use triad_core::model::{Node, NodeRequest};
use triad_core::spec::ClusterRef;
use triad_core::wait::Poll;
use triad_core::{Error, FailureKind, Result};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::VirtualMachine;
use vim_rs::types::enums::{MoTypesEnum, TaskInfoStateEnum};
use vim_rs::types::structs::{
    ManagedObjectReference, ObjectSpec, VirtualMachineCloneSpec, VirtualMachineRelocateSpec,
};
use vim_rs::types::vim_any::VimAny;

use crate::error;
use crate::polls::Polls;
use crate::uuid::instance_uuid;
use crate::vcenter::Vcenter;
use crate::vm::{self, VmInfo, VmProps, KEY_CLUSTER, KEY_LABEL};

/// The longest a vCenter task may run before triad stops waiting for it.
const TASK_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a node wait waits for.
const READY: &str = "powered on with an IP address (VMware Tools must be running in the template)";

fn node_resource(name: &str) -> String {
    format!("node {name}")
}

fn no_vm(action: &str, node: &Node) -> Error {
    error::other(
        action,
        &node_resource(&node.name),
        FailureKind::NotFound,
        format!("no VM has instance UUID {}", node.id),
    )
}

impl Vcenter {
    fn retriever(&self) -> Result<ObjectRetriever> {
        ObjectRetriever::new(self.client.clone()).map_err(|e| error::pc("read", "inventory", &e))
    }

    /// The VMs `vms` in one property-collector read (one `RetrievePropertiesEx`).
    async fn read_vms(&self, vms: &[ManagedObjectReference]) -> Result<Vec<VmInfo>> {
        let specs = vms
            .iter()
            .map(|vm| ObjectSpec {
                obj: vm.clone(),
                skip: Some(false),
                select_set: None,
            })
            .collect();
        let found: Vec<VmProps> = self
            .retriever()?
            .retrieve_objects(specs)
            .await
            .map_err(|e| error::pc("read", "VMs", &e))?;
        let found: Vec<VmInfo> = found.into_iter().map(VmInfo::from).collect();
        for vm in &found {
            if let Some(u) = &vm.uuid {
                self.remember(u, &vm.moref);
            }
        }
        Ok(found)
    }

    /// The VM with instance UUID `uuid`, if any.
    pub(crate) async fn find_vm(&self, uuid: &str) -> Result<Option<VmInfo>> {
        // A remembered VM may be gone: then search once more.
        for _ in 0..2 {
            let Some(vm) = self.find_uuid(uuid).await? else {
                return Ok(None);
            };
            match self.read_vms(std::slice::from_ref(&vm)).await {
                Ok(found) => {
                    if let Some(info) = found.into_iter().find(|i| i.uuid.as_deref() == Some(uuid))
                    {
                        return Ok(Some(info));
                    }
                }
                Err(e) if e.kind() == Some(FailureKind::NotFound) => {}
                Err(e) => return Err(e),
            }
            self.forget(uuid);
        }
        Ok(None)
    }

    /// Every VM under the datacenter's VM folder (a container view: three calls).
    async fn all_vms(&self) -> Result<Vec<VmInfo>> {
        let dc = self.datacenter().await?;
        let vms: Vec<VmProps> = self
            .retriever()?
            .retrieve_objects_from_container(&dc.vm_root)
            .await
            .map_err(|e| error::pc("list", "VMs", &e))?;
        let vms: Vec<VmInfo> = vms.into_iter().map(VmInfo::from).collect();
        for vm in &vms {
            if let Some(u) = &vm.uuid {
                self.remember(u, &vm.moref);
            }
        }
        Ok(vms)
    }

    /// Custom attribute definitions covering every key the VMs carry.
    async fn fields_for(&self, vms: &[VmInfo]) -> Result<BTreeMap<i32, String>> {
        let fields = self.fields(false).await?;
        if vms.iter().any(|vm| vm.has_unknown_field(&fields)) {
            return self.fields(true).await;
        }
        Ok(fields)
    }

    /// The VM with instance UUID `uuid` if it exists, checked to belong to `cluster`.
    async fn owned_vm(
        &self,
        uuid: &str,
        cluster: &ClusterRef,
        action: &str,
        resource: &str,
    ) -> Result<Option<VmInfo>> {
        let Some(vm) = self.find_vm(uuid).await? else {
            return Ok(None);
        };
        let fields = self.fields_for(std::slice::from_ref(&vm)).await?;
        let owner = vm.owner_value(&fields, labels::CLUSTER, KEY_CLUSTER);
        if owner.as_deref() != Some(cluster.name.as_str()) {
            return Err(error::other(
                action,
                resource,
                FailureKind::Conflict,
                format!(
                    "VM `{}` has instance UUID {uuid} but belongs to {}; triad leaves it alone",
                    vm.name,
                    owner.map_or("nobody".to_owned(), |o| format!("cluster `{o}`"))
                ),
            ));
        }
        Ok(Some(vm))
    }

    /// The node `vm` is, read again.
    async fn reread(&self, vm: &VmInfo, action: &str, resource: &str) -> Result<Node> {
        let vm = self
            .read_vms(std::slice::from_ref(&vm.moref))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                error::other(
                    action,
                    resource,
                    FailureKind::NotFound,
                    "the VM vanished while it was being changed",
                )
            })?;
        let fields = self.fields_for(std::slice::from_ref(&vm)).await?;
        vm.to_node(&fields).ok_or_else(|| {
            error::other(
                action,
                resource,
                FailureKind::Other,
                "the VM has no instance UUID",
            )
        })
    }

    /// Wait for a task by polling `info.state` (not a property-collector tracker,
    /// which breaks on faults it cannot parse); a failed task becomes an
    /// [`Error::Provider`] carrying vCenter's fault, `action` and `resource`.
    pub(crate) async fn wait_task(
        &self,
        task: &ManagedObjectReference,
        action: &str,
        resource: &str,
        poll: Poll,
    ) -> Result<()> {
        let state = format!("the {action} task done");
        poll.until(TASK_TIMEOUT, resource, &state, || async move {
            let state: Option<TaskInfoStateEnum> = self
                .property(task, "info.state")
                .await
                .map_err(|e| error::vim(action, resource, &e))?;
            match state {
                Some(TaskInfoStateEnum::Success) => Ok(Some(())),
                Some(TaskInfoStateEnum::Error) => {
                    Err(self.task_error(task, action, resource).await)
                }
                _ => Ok(None),
            }
        })
        .await
    }

    /// The error of a failed task, as precise as the transport lets us read it.
    async fn task_error(
        &self,
        task: &ManagedObjectReference,
        action: &str,
        resource: &str,
    ) -> Error {
        let message: Option<String> = self
            .property(task, "info.error.localizedMessage")
            .await
            .ok()
            .flatten();
        let fault: Option<VimAny> = self.property(task, "info.error.fault").await.ok().flatten();
        let (kind, fault_text) = match fault {
            Some(VimAny::Object(o)) => {
                let t = o.data_type();
                (error::fault_kind(Some(&t)), Some(t.as_str().to_owned()))
            }
            _ => (FailureKind::Other, None),
        };
        let text = match (fault_text, message) {
            (Some(f), Some(m)) if !m.is_empty() => format!("task failed: {f}: {m}"),
            (Some(f), _) => format!("task failed: {f}"),
            (None, Some(m)) if !m.is_empty() => format!("task failed: {m}"),
            _ => "task failed (vCenter gave no message)".to_owned(),
        };
        error::other(action, resource, kind, text)
    }

    /// Wait for the task with managed object id `task`.
    pub(crate) async fn wait_task_id(
        &self,
        task: &str,
        action: &str,
        resource: &str,
        poll: Poll,
    ) -> Result<()> {
        let task = ManagedObjectReference {
            r#type: MoTypesEnum::Task,
            value: task.to_owned(),
        };
        self.wait_task(&task, action, resource, poll).await
    }

    /// Reconfigure `vm` with `spec` and wait for the task.
    async fn reconfigure(
        &self,
        vm: &VmInfo,
        spec: &vim_rs::types::structs::VirtualMachineConfigSpec,
        resource: &str,
        poll: Poll,
    ) -> Result<()> {
        let task = VirtualMachine::new(self.client.clone(), &vm.moref.value)
            .reconfig_vm_task(spec)
            .await
            .map_err(|e| error::vim("reconfigure", resource, &e))?;
        self.wait_task(&task, "reconfigure", resource, poll).await
    }

    /// The key of custom attribute `name`, defining it (for VMs) when missing.
    async fn field_key(&self, fields: &mut BTreeMap<i32, String>, name: &str) -> Result<i32> {
        if let Some((k, _)) = fields.iter().find(|(_, n)| n.as_str() == name) {
            return Ok(*k);
        }
        match self
            .custom_fields_manager()?
            .add_custom_field_def(name, Some("VirtualMachine"), None, None)
            .await
        {
            Ok(def) => {
                tracing::info!(name, key = def.key, "defined custom attribute");
                self.add_field(def.key, def.name.clone());
                fields.insert(def.key, def.name);
                Ok(def.key)
            }
            Err(e) => {
                // Somebody defined it meanwhile (DuplicateName): read it back.
                *fields = self.fields(true).await?;
                fields
                    .iter()
                    .find(|(_, n)| n.as_str() == name)
                    .map(|(k, _)| *k)
                    .ok_or_else(|| error::vim("define", &format!("custom attribute {name}"), &e))
            }
        }
    }

    /// Make the labels of `vm` `wanted` where they differ: the fingerprint in
    /// `extraConfig` (one ReconfigVM for all of it), the others in custom attributes
    /// (vcsim appends on every set, so only what differs is written). Returns whether
    /// anything changed.
    async fn converge_labels(
        &self,
        vm: &VmInfo,
        wanted: &BTreeMap<String, String>,
        resource: &str,
        poll: Poll,
    ) -> Result<bool> {
        let mut fields = self.fields_for(std::slice::from_ref(vm)).await?;
        let have = vm.labels(&fields);
        let differs = |(name, value): &(&String, &String)| have.get(*name) != Some(*value);
        let extra: Vec<(String, String)> = wanted
            .iter()
            .filter(|(k, _)| vm::in_extra_config(k))
            .filter(differs)
            .map(|(k, v)| (format!("{KEY_LABEL}{k}"), v.clone()))
            .collect();
        let custom: Vec<(&String, &String)> = wanted
            .iter()
            .filter(|(k, _)| !vm::in_extra_config(k))
            .filter(differs)
            .collect();
        if !extra.is_empty() {
            tracing::info!(vm = %vm.name, keys = extra.len(), "updating the fingerprint");
            self.reconfigure(vm, &vm::config_spec(None, None, &extra)?, resource, poll)
                .await?;
        }
        let cfm = self.custom_fields_manager()?;
        for (name, value) in &custom {
            let key = self.field_key(&mut fields, name).await?;
            cfm.set_field(&vm.moref, key, value)
                .await
                .map_err(|e| error::vim("label", resource, &e))?;
        }
        Ok(!extra.is_empty() || !custom.is_empty())
    }

    /// Bring an existing VM to what the request asks: labels, CPU and memory,
    /// powered on.
    async fn converge(&self, vm: VmInfo, request: &NodeRequest, polls: Polls) -> Result<Node> {
        let resource = node_resource(&request.name);
        self.converge_labels(&vm, &request.labels, &resource, polls.task)
            .await?;
        let (cpus, memory) = self.settings.shape(request.size.as_deref());
        let shape_differs = vm.cpus != Some(cpus as i32) || vm.memory_mb != Some(memory as i32);
        if shape_differs && !vm.powered_on {
            tracing::info!(node = %request.name, cpus, memory, "setting CPU and memory");
            let spec = vm::config_spec(None, Some((cpus, memory)), &[])?;
            self.reconfigure(&vm, &spec, &resource, polls.task).await?;
        } else if shape_differs {
            tracing::warn!(node = %request.name, "VM is running with another CPU/memory shape; not changed");
        }
        if !vm.powered_on {
            tracing::info!(node = %request.name, "powering on");
            let task = VirtualMachine::new(self.client.clone(), &vm.moref.value)
                .power_on_vm_task(None)
                .await
                .map_err(|e| error::vim("power on", &resource, &e))?;
            self.wait_task(&task, "power on", &resource, polls.power_on)
                .await?;
        }
        self.reread(&vm, "create", &resource).await
    }

    async fn clone_vm(
        &self,
        cluster: &ClusterRef,
        request: &NodeRequest,
        uuid: &str,
        hook: &[(String, String)],
        poll: Poll,
    ) -> Result<()> {
        let placement = self.placement().await?;
        let resource = node_resource(&request.name);
        let pool = placement.pools.get(&request.zone).ok_or_else(|| {
            error::other(
                "create",
                &resource,
                FailureKind::InvalidRequest,
                format!(
                    "zone `{}` is not a failure domain (vsphere.failure_domains has: {})",
                    request.zone,
                    placement
                        .pools
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let template_name = request.image.as_deref().unwrap_or(&self.settings.template);
        let template_path = format!("{}/vm/{}", self.dc_path(), template_name.trim_matches('/'));
        let template = self.find_path(&template_path).await?.ok_or_else(|| {
            Error::invalid(
                if request.image.is_some() {
                    "nodes.image"
                } else {
                    "vsphere.template"
                },
                format!("vCenter has no VM template at `{template_path}`"),
                "name a template relative to the datacenter's VM folder",
            )
        })?;
        let (cpus, memory) = self.settings.shape(request.size.as_deref());
        let extra =
            vm::node_extra_config(&self.settings.extra_config, cluster, request, uuid, hook);
        let spec = VirtualMachineCloneSpec {
            location: VirtualMachineRelocateSpec {
                service: None,
                folder: Some(placement.folder.clone()),
                datastore: Some(placement.datastore.clone()),
                disk_move_type: None,
                pool: Some(pool.clone()),
                host: None,
                disk: None,
                transform: None,
                device_change: None,
                profile: None,
                crypto_spec: None,
                tag_specs: None,
                vm_placement_policies: None,
            },
            template: false,
            config: Some(vm::config_spec(Some(uuid), Some((cpus, memory)), &extra)?),
            customization: None,
            // Powered on by `converge`, after CPU and memory are set.
            power_on: false,
            snapshot: None,
            memory: None,
            tpm_provision_policy: None,
        };
        tracing::info!(node = %request.name, zone = %request.zone, uuid, template = %template_path, "cloning");
        let task = VirtualMachine::new(self.client.clone(), &template.value)
            .clone_vm_task(&placement.folder, &request.name, &spec)
            .await
            .map_err(|e| error::vim("clone", &resource, &e))?;
        self.wait_task(&task, "clone", &resource, poll).await
    }

    pub(crate) async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let vms = self.all_vms().await?;
        let fields = self.fields_for(&vms).await?;
        let mut nodes: Vec<Node> = vms
            .iter()
            .filter(|vm| vm.owned_by(&fields, &cluster.name, Role::Node))
            .filter_map(|vm| vm.to_node(&fields))
            .collect();
        nodes.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(nodes)
    }

    pub(crate) async fn create_node(
        &self,
        cluster: &ClusterRef,
        request: &NodeRequest,
        hook: &[(String, String)],
        polls: Polls,
    ) -> Result<Node> {
        let resource = node_resource(&request.name);
        let uuid = instance_uuid(self.dc_path(), &cluster.name, &request.name);
        let vm = match self.owned_vm(&uuid, cluster, "create", &resource).await? {
            Some(vm) => vm,
            None => {
                self.clone_vm(cluster, request, &uuid, hook, polls.clone)
                    .await?;
                self.find_vm(&uuid).await?.ok_or_else(|| {
                    error::other(
                        "create",
                        &resource,
                        FailureKind::Other,
                        format!("the clone succeeded but no VM has instance UUID {uuid}: the server ignored the requested UUID"),
                    )
                })?
            }
        };
        self.converge(vm, request, polls).await
    }

    /// Wait until every node runs with an IP: each poll is one property-collector read
    /// of all their VMs.
    pub(crate) async fn wait_nodes(
        &self,
        nodes: &[Node],
        timeout: Duration,
        poll: Poll,
    ) -> Result<Vec<Node>> {
        let resource = match nodes {
            [one] => node_resource(&one.name),
            many => format!(
                "nodes {}",
                many.iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        poll.until(timeout, &resource, READY, || async move {
            let vms = self.read_nodes(nodes).await?;
            let fields = self.fields_for(&vms).await?;
            let ready: Vec<Node> = vms
                .iter()
                .filter_map(|vm| vm.to_node(&fields))
                .filter(Node::is_ready)
                .collect();
            Ok((ready.len() == nodes.len()).then_some(ready))
        })
        .await
    }

    /// The VMs of `nodes`, in their order: one read of all of them, or, when that
    /// fails (one was deleted), one search and read each.
    async fn read_nodes(&self, nodes: &[Node]) -> Result<Vec<VmInfo>> {
        let mut refs = Vec::with_capacity(nodes.len());
        for n in nodes {
            refs.push(
                self.find_uuid(&n.id)
                    .await?
                    .ok_or_else(|| no_vm("wait for", n))?,
            );
        }
        let mut by_uuid: BTreeMap<String, VmInfo> = match self.read_vms(&refs).await {
            Ok(vms) => vms
                .into_iter()
                .filter_map(|vm| Some((vm.uuid.clone()?, vm)))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "reading the nodes at once failed; reading each");
                BTreeMap::new()
            }
        };
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let vm = match by_uuid.remove(&n.id) {
                Some(vm) => vm,
                None => {
                    self.forget(&n.id);
                    self.find_vm(&n.id)
                        .await?
                        .ok_or_else(|| no_vm("wait for", n))?
                }
            };
            out.push(vm);
        }
        Ok(out)
    }

    /// Change what can change in place: the labels (the fingerprint among them).
    pub(crate) async fn update_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        request: &NodeRequest,
        poll: Poll,
    ) -> Result<Node> {
        let resource = node_resource(&node.name);
        let vm = self
            .owned_vm(&node.id, cluster, "update", &resource)
            .await?
            .ok_or_else(|| no_vm("update", node))?;
        // vSphere has no firewall in front of a VM: `ssh_allowed_cidrs` has no cloud
        // object, only its fingerprint, which converges with the other labels.
        if self
            .converge_labels(&vm, &request.labels, &resource, poll)
            .await?
        {
            self.reread(&vm, "update", &resource).await
        } else {
            let fields = self.fields_for(std::slice::from_ref(&vm)).await?;
            vm.to_node(&fields).ok_or_else(|| no_vm("update", node))
        }
    }

    pub(crate) async fn delete_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        poll: Poll,
    ) -> Result<()> {
        let resource = node_resource(&node.name);
        let Some(vm) = self
            .owned_vm(&node.id, cluster, "delete", &resource)
            .await?
        else {
            return Ok(());
        };
        let stub = VirtualMachine::new(self.client.clone(), &vm.moref.value);
        if !vm.powered_off {
            tracing::info!(node = %node.name, "powering off");
            match stub.power_off_vm_task().await {
                Ok(task) => match self.wait_task(&task, "power off", &resource, poll).await {
                    // Powered off meanwhile (InvalidPowerState): fine.
                    Err(e) if e.kind() != Some(FailureKind::Conflict) => return Err(e),
                    _ => {}
                },
                Err(e) => {
                    let e = error::vim("power off", &resource, &e);
                    match e.kind() {
                        Some(FailureKind::NotFound) => return Ok(()),
                        Some(FailureKind::Conflict) => {}
                        _ => return Err(e),
                    }
                }
            }
        }
        tracing::info!(node = %node.name, "destroying");
        let result = match stub.destroy_task().await {
            Ok(task) => self.wait_task(&task, "destroy", &resource, poll).await,
            Err(e) => Err(error::vim("destroy", &resource, &e)),
        };
        self.forget(&node.id);
        match result {
            Err(e) if e.kind() == Some(FailureKind::NotFound) => Ok(()),
            other => other,
        }
    }
}
