//! The [`NodeProvider`] implementation: VMs, their custom attributes and tasks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use triad_core::labels::{self, Role};
use triad_core::model::{Node, NodeRequest, NodeState};
use triad_core::spec::{ClusterRef, ValidSpec};
use triad_core::{Error, FailureKind, NodeProvider, Result};
use vim_rs::core::client::{unmarshal, Transport};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{CustomFieldsManager, VirtualMachine};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::enums::{TaskInfoStateEnum, VirtualMachinePowerStateEnum};
use vim_rs::types::structs::{
    CustomFieldStringValue, ManagedObjectReference, VirtualMachineCloneSpec,
    VirtualMachineConfigSpec, VirtualMachineRelocateSpec,
};
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

use crate::errors;
use crate::send::AssertSend;
use crate::uuid::instance_uuid;
use crate::{VsphereProvider, NAME};

/// `extraConfig` keys that mark a VM as a node, set atomically with the clone.
pub(crate) const KEY_CLUSTER: &str = "triad.cluster";
pub(crate) const KEY_ROLE: &str = "triad.role";
pub(crate) const KEY_NODE: &str = "triad.node";
pub(crate) const KEY_ZONE: &str = "triad.zone";

vim_retrievable!(
    struct VmProps: VirtualMachine {
        name = "name",
        instance_uuid = "config.instance_uuid"?,
        num_cpu = "config.hardware.num_cpu"?,
        memory_mb = "config.hardware.memory_mb"?,
        extra_config = "config.extra_config",
        custom_value = "custom_value",
        power_state = "runtime.power_state",
        ip_address = "guest.ip_address",
    }
);

/// What triad reads of one VM.
#[derive(Clone, Debug)]
pub(crate) struct VmInfo {
    pub moref: ManagedObjectReference,
    pub name: String,
    pub uuid: Option<String>,
    pub cpus: Option<i32>,
    pub memory_mb: Option<i32>,
    /// `extraConfig`, last value of each key.
    pub extra: BTreeMap<String, String>,
    /// Custom attributes by key, last value of each key.
    pub custom: BTreeMap<i32, String>,
    pub powered_on: bool,
    pub powered_off: bool,
    pub ip: Option<IpAddr>,
}

fn any_to_string(v: &VimAny) -> Option<String> {
    match v {
        VimAny::Value(ValueElements::PrimitiveString(s)) => Some(s.clone()),
        VimAny::Value(other) => Some(format!("{other:?}")),
        VimAny::Object(_) => None,
    }
}

impl From<VmProps> for VmInfo {
    fn from(p: VmProps) -> Self {
        let mut extra = BTreeMap::new();
        for o in p.extra_config.iter().flatten() {
            if let Some(v) = o.value.as_ref().and_then(any_to_string) {
                extra.insert(o.key.clone(), v);
            }
        }
        let mut custom = BTreeMap::new();
        for c in p.custom_value.iter().flatten() {
            if let Some(s) = c
                .as_ref()
                .as_any_ref()
                .downcast_ref::<CustomFieldStringValue>()
            {
                custom.insert(c.key, s.value.clone());
            }
        }
        VmInfo {
            moref: p.id,
            name: p.name,
            uuid: p.instance_uuid,
            cpus: p.num_cpu,
            memory_mb: p.memory_mb,
            extra,
            custom,
            powered_on: p.power_state == VirtualMachinePowerStateEnum::PoweredOn,
            powered_off: p.power_state == VirtualMachinePowerStateEnum::PoweredOff,
            ip: p.ip_address.as_deref().and_then(|s| s.parse().ok()),
        }
    }
}

impl VmInfo {
    /// The VM's labels: its custom attributes by name.
    fn labels(&self, fields: &BTreeMap<i32, String>) -> BTreeMap<String, String> {
        self.custom
            .iter()
            .filter_map(|(k, v)| fields.get(k).map(|name| (name.clone(), v.clone())))
            .collect()
    }

    /// The value of ownership label `label` (custom attribute) or its `extraConfig`
    /// twin `key`.
    fn owner_value(
        &self,
        fields: &BTreeMap<i32, String>,
        label: &str,
        key: &str,
    ) -> Option<String> {
        self.labels(fields)
            .remove(label)
            .or_else(|| self.extra.get(key).cloned())
    }

    fn owned_by(&self, fields: &BTreeMap<i32, String>, cluster: &str, role: Role) -> bool {
        self.owner_value(fields, labels::CLUSTER, KEY_CLUSTER)
            .as_deref()
            == Some(cluster)
            && self.owner_value(fields, labels::ROLE, KEY_ROLE).as_deref() == Some(role.as_str())
    }

    fn to_node(&self, fields: &BTreeMap<i32, String>) -> Option<Node> {
        let id = self.uuid.clone()?;
        let mut labels = self.labels(fields);
        for (label, key) in [(labels::CLUSTER, KEY_CLUSTER), (labels::ROLE, KEY_ROLE)] {
            if let (false, Some(v)) = (labels.contains_key(label), self.extra.get(key)) {
                labels.insert(label.to_owned(), v.clone());
            }
        }
        let state = if self.powered_on && self.ip.is_some() {
            NodeState::Running
        } else if self.powered_on {
            NodeState::Pending
        } else if self.powered_off {
            NodeState::Stopped
        } else {
            NodeState::Pending
        };
        Some(Node {
            id,
            name: self
                .extra
                .get(KEY_NODE)
                .cloned()
                .unwrap_or_else(|| self.name.clone()),
            zone: self.extra.get(KEY_ZONE).cloned().unwrap_or_default(),
            state,
            private_ip: self.ip,
            public_ip: None,
            ssh: None,
            labels,
            created_ms: None,
        })
    }
}

/// The clone's `config`: identity, shape, cloud-init and ownership.
pub(crate) fn config_spec(
    uuid: &str,
    cpus: u32,
    memory_mib: u32,
    extra: &[(String, String)],
) -> Result<VirtualMachineConfigSpec> {
    // vim_rs has no Default for its 80-field spec without the heavy `defaults`
    // feature: build it from its VI/JSON form, which names only the fields we set.
    let extra_json: Vec<serde_json::Value> = extra
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "_typeName": "OptionValue",
                "key": k,
                "value": {"_typeName": "string", "_value": v},
            })
        })
        .collect();
    let json = serde_json::json!({
        "_typeName": "VirtualMachineConfigSpec",
        "instanceUuid": uuid,
        "numCPUs": cpus,
        "memoryMB": memory_mib,
        "extraConfig": extra_json,
    });
    unmarshal::<VirtualMachineConfigSpec>(Transport::Json, json.to_string().as_bytes())
        .map_err(|e| errors::other("build", "VM config spec", FailureKind::Other, e.to_string()))
}

/// A config spec that only sets CPU and memory.
fn shape_spec(cpus: u32, memory_mib: u32) -> Result<VirtualMachineConfigSpec> {
    let json = serde_json::json!({
        "_typeName": "VirtualMachineConfigSpec",
        "numCPUs": cpus,
        "memoryMB": memory_mib,
    });
    unmarshal::<VirtualMachineConfigSpec>(Transport::Json, json.to_string().as_bytes())
        .map_err(|e| errors::other("build", "VM config spec", FailureKind::Other, e.to_string()))
}

/// cloud-init's VMware datasource metadata for a node.
fn metadata(uuid: &str, name: &str) -> String {
    format!("instance-id: {uuid}\nlocal-hostname: {name}\nhostname: {name}\n")
}

/// The `extraConfig` of a new node: cloud-init (base64), ownership, settings, hook.
pub(crate) fn node_extra_config(
    p: &VsphereProvider,
    cluster: &ClusterRef,
    request: &NodeRequest,
    uuid: &str,
) -> Vec<(String, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let role = request
        .labels
        .get(labels::ROLE)
        .cloned()
        .unwrap_or_else(|| Role::Node.as_str().to_owned());
    let mut out = vec![
        ("guestinfo.userdata".to_owned(), b64(&request.user_data)),
        (
            "guestinfo.userdata.encoding".to_owned(),
            "base64".to_owned(),
        ),
        (
            "guestinfo.metadata".to_owned(),
            b64(&metadata(uuid, &request.name)),
        ),
        (
            "guestinfo.metadata.encoding".to_owned(),
            "base64".to_owned(),
        ),
        (KEY_CLUSTER.to_owned(), cluster.name.clone()),
        (KEY_ROLE.to_owned(), role),
        (KEY_NODE.to_owned(), request.name.clone()),
        (KEY_ZONE.to_owned(), request.zone.clone()),
    ];
    out.extend(
        p.settings
            .extra_config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if let Some(hook) = &p.node_extra_config {
        out.extend(hook(request));
    }
    out
}

impl VsphereProvider {
    fn custom_fields_manager(&self) -> Result<CustomFieldsManager> {
        let r = self
            .client
            .service_content()
            .custom_fields_manager
            .as_ref()
            .ok_or_else(|| {
                errors::other(
                    "read",
                    "custom attributes",
                    FailureKind::Other,
                    "the server has no CustomFieldsManager",
                )
            })?;
        Ok(CustomFieldsManager::new(self.client.clone(), &r.value))
    }

    /// Custom attribute definitions: key → name.
    async fn fields(&self) -> Result<BTreeMap<i32, String>> {
        let defs = self
            .custom_fields_manager()?
            .field()
            .await
            .map_err(|e| errors::vim("read", "custom attribute definitions", &e))?;
        Ok(defs
            .into_iter()
            .flatten()
            .map(|d| (d.key, d.name))
            .collect())
    }

    /// The key of custom attribute `name`, defining it (for VMs) when missing.
    async fn field_key(&self, fields: &mut BTreeMap<i32, String>, name: &str) -> Result<i32> {
        if let Some((k, _)) = fields.iter().find(|(_, n)| n.as_str() == name) {
            return Ok(*k);
        }
        let cfm = self.custom_fields_manager()?;
        match cfm
            .add_custom_field_def(name, Some("VirtualMachine"), None, None)
            .await
        {
            Ok(def) => {
                tracing::info!(name, key = def.key, "defined custom attribute");
                fields.insert(def.key, def.name);
                Ok(def.key)
            }
            Err(e) => {
                // Somebody defined it meanwhile (DuplicateName): read it back.
                *fields = self.fields().await?;
                fields
                    .iter()
                    .find(|(_, n)| n.as_str() == name)
                    .map(|(k, _)| *k)
                    .ok_or_else(|| errors::vim("define", &format!("custom attribute {name}"), &e))
            }
        }
    }

    fn retriever(&self) -> Result<ObjectRetriever> {
        ObjectRetriever::new(self.client.clone()).map_err(|e| errors::pc("read", "inventory", &e))
    }

    async fn vm_info(&self, vm: &ManagedObjectReference) -> Result<Option<VmInfo>> {
        let found: Option<VmProps> = self
            .retriever()?
            .retrieve_object(vm)
            .await
            .map_err(|e| errors::pc("read", &format!("VM {}", vm.value), &e))?;
        Ok(found.map(VmInfo::from))
    }

    /// The VM with instance UUID `uuid`, if any.
    pub(crate) async fn find_vm(&self, uuid: &str) -> Result<Option<VmInfo>> {
        let inv = self.inventory().await?;
        let found = self
            .search_index()?
            .find_by_uuid(Some(&inv.datacenter), uuid, true, Some(true))
            .await
            .map_err(|e| errors::vim("find", &format!("VM {uuid}"), &e))?;
        match found {
            // Gone between the search and the read: not found.
            Some(vm) => match self.vm_info(&vm).await {
                Err(e) if e.kind() == Some(FailureKind::NotFound) => Ok(None),
                other => other,
            },
            None => Ok(None),
        }
    }

    /// Every VM under the datacenter's VM folder.
    async fn all_vms(&self) -> Result<Vec<VmInfo>> {
        let inv = self.inventory().await?;
        let vms: Vec<VmProps> = self
            .retriever()?
            .retrieve_objects_from_container(&inv.vm_root)
            .await
            .map_err(|e| errors::pc("list", "VMs", &e))?;
        Ok(vms.into_iter().map(VmInfo::from).collect())
    }

    /// Wait for a task by polling `info.state` (not a property-collector tracker,
    /// which breaks on faults it cannot parse); a failed task becomes an
    /// [`Error::Provider`] carrying vCenter's fault, `action` and `resource`.
    pub async fn wait_task(
        &self,
        task: ManagedObjectReference,
        action: &str,
        resource: &str,
    ) -> Result<()> {
        AssertSend(self.wait_task_inner(task, action, resource)).await
    }

    async fn wait_task_inner(
        &self,
        task: ManagedObjectReference,
        action: &str,
        resource: &str,
    ) -> Result<()> {
        let mut delay = Duration::from_millis(100);
        loop {
            let state: TaskInfoStateEnum = self
                .client
                .fetch_property(task.clone(), "info.state")
                .await
                .map_err(|e| errors::vim(action, resource, &e))?;
            match state {
                TaskInfoStateEnum::Success => return Ok(()),
                TaskInfoStateEnum::Error => {
                    return Err(self.task_error(&task, action, resource).await);
                }
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.poll);
        }
    }

    /// The error of a failed task, as precise as the transport lets us read it.
    async fn task_error(
        &self,
        task: &ManagedObjectReference,
        action: &str,
        resource: &str,
    ) -> Error {
        let message: Option<String> = self
            .client
            .fetch_property(task.clone(), "info.error.localizedMessage")
            .await
            .ok();
        let fault: Option<VimAny> = self
            .client
            .fetch_property(task.clone(), "info.error.fault")
            .await
            .ok();
        let (kind, fault_text) = match fault {
            Some(VimAny::Object(o)) => {
                let t = o.data_type();
                (errors::fault_kind(Some(&t)), Some(t.as_str().to_owned()))
            }
            _ => (FailureKind::Other, None),
        };
        let text = match (fault_text, message) {
            (Some(f), Some(m)) if !m.is_empty() => format!("task failed: {f}: {m}"),
            (Some(f), _) => format!("task failed: {f}"),
            (None, Some(m)) if !m.is_empty() => format!("task failed: {m}"),
            _ => "task failed (vCenter gave no message)".to_owned(),
        };
        errors::other(action, resource, kind, text)
    }

    /// Set the custom attributes of `vm` to `wanted` where they differ (vcsim appends
    /// on every set, so only what differs is written).
    async fn converge_labels(&self, vm: &VmInfo, wanted: &BTreeMap<String, String>) -> Result<()> {
        let mut fields = self.fields().await?;
        let have = vm.labels(&fields);
        let cfm = self.custom_fields_manager()?;
        for (name, value) in wanted {
            if have.get(name) == Some(value) {
                continue;
            }
            let key = self.field_key(&mut fields, name).await?;
            cfm.set_field(&vm.moref, key, value)
                .await
                .map_err(|e| errors::vim("label", &format!("VM {}", vm.name), &e))?;
        }
        Ok(())
    }

    /// Bring an existing VM to what the request asks: labels, CPU and memory,
    /// powered on.
    async fn converge(&self, vm: VmInfo, request: &NodeRequest) -> Result<VmInfo> {
        let resource = format!("node {}", request.name);
        self.converge_labels(&vm, &request.labels).await?;
        let (cpus, memory) = self.settings.shape(request.size.as_deref());
        let stub = VirtualMachine::new(self.client.clone(), &vm.moref.value);
        let shape_differs = vm.cpus != Some(cpus as i32) || vm.memory_mb != Some(memory as i32);
        if shape_differs && !vm.powered_on {
            tracing::info!(node = %request.name, cpus, memory, "setting CPU and memory");
            let task = stub
                .reconfig_vm_task(&shape_spec(cpus, memory)?)
                .await
                .map_err(|e| errors::vim("reconfigure", &resource, &e))?;
            self.wait_task(task, "reconfigure", &resource).await?;
        } else if shape_differs {
            tracing::warn!(node = %request.name, "VM is running with another CPU/memory shape; not changed");
        }
        if !vm.powered_on {
            tracing::info!(node = %request.name, "powering on");
            let task = stub
                .power_on_vm_task(None)
                .await
                .map_err(|e| errors::vim("power on", &resource, &e))?;
            self.wait_task(task, "power on", &resource).await?;
        }
        self.vm_info(&vm.moref).await?.ok_or_else(|| {
            errors::other(
                "create",
                &resource,
                FailureKind::NotFound,
                "the VM vanished while it was being set up",
            )
        })
    }

    async fn clone_vm(
        &self,
        cluster: &ClusterRef,
        request: &NodeRequest,
        uuid: &str,
    ) -> Result<()> {
        let inv = self.inventory().await?;
        let resource = format!("node {}", request.name);
        let pool = inv.pools.get(&request.zone).ok_or_else(|| {
            errors::other(
                "create",
                &resource,
                FailureKind::InvalidRequest,
                format!(
                    "zone `{}` is not a failure domain (vsphere.failure_domains has: {})",
                    request.zone,
                    inv.pools.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let template_name = request.image.as_deref().unwrap_or(&self.settings.template);
        let template_path = format!(
            "{}/vm/{}",
            self.settings.datacenter.trim_matches('/'),
            template_name.trim_matches('/')
        );
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
        let extra = node_extra_config(self, cluster, request, uuid);
        let spec = VirtualMachineCloneSpec {
            location: VirtualMachineRelocateSpec {
                service: None,
                folder: Some(inv.folder.clone()),
                datastore: Some(inv.datastore.clone()),
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
            config: Some(config_spec(uuid, cpus, memory, &extra)?),
            customization: None,
            // Powered on by `converge`, after CPU and memory are set.
            power_on: false,
            snapshot: None,
            memory: None,
            tpm_provision_policy: None,
        };
        tracing::info!(node = %request.name, zone = %request.zone, uuid, template = %template_path, "cloning");
        let task = VirtualMachine::new(self.client.clone(), &template.value)
            .clone_vm_task(&inv.folder, &request.name, &spec)
            .await
            .map_err(|e| errors::vim("clone", &resource, &e))?;
        self.wait_task(task, "clone", &resource).await
    }
}

impl VsphereProvider {
    async fn zones_impl(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        Ok(self.settings.failure_domains.keys().cloned().collect())
    }

    async fn discover_nodes_impl(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        let fields = self.fields().await?;
        let mut nodes: Vec<Node> = self
            .all_vms()
            .await?
            .iter()
            .filter(|vm| vm.owned_by(&fields, &cluster.name, Role::Node))
            .filter_map(|vm| vm.to_node(&fields))
            .collect();
        nodes.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(nodes)
    }

    async fn create_node_impl(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let resource = format!("node {}", request.name);
        let dc_name = self.settings.datacenter.trim_matches('/');
        let uuid = instance_uuid(dc_name, &cluster.name, &request.name);
        let vm = match self.find_vm(&uuid).await? {
            Some(vm) => vm,
            None => {
                self.clone_vm(cluster, request, &uuid).await?;
                self.find_vm(&uuid).await?.ok_or_else(|| {
                    errors::other(
                        "create",
                        &resource,
                        FailureKind::Other,
                        format!("the clone succeeded but no VM has instance UUID {uuid}: the server ignored the requested UUID"),
                    )
                })?
            }
        };
        let fields = self.fields().await?;
        let owner = vm.owner_value(&fields, labels::CLUSTER, KEY_CLUSTER);
        if owner.as_deref() != Some(cluster.name.as_str()) {
            return Err(errors::other(
                "create",
                &resource,
                FailureKind::Conflict,
                format!(
                    "VM `{}` has this node's instance UUID {uuid} but belongs to {}",
                    vm.name,
                    owner.map_or("nobody".to_owned(), |o| format!("cluster `{o}`"))
                ),
            ));
        }
        let vm = self.converge(vm, request).await?;
        let fields = self.fields().await?;
        vm.to_node(&fields).ok_or_else(|| {
            errors::other(
                "create",
                &resource,
                FailureKind::Other,
                "the VM has no instance UUID",
            )
        })
    }

    async fn wait_node_impl(
        &self,
        _cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        let start = tokio::time::Instant::now();
        loop {
            let vm = self.find_vm(&node.id).await?.ok_or_else(|| {
                errors::other(
                    "wait for",
                    &format!("node {}", node.name),
                    FailureKind::NotFound,
                    format!("no VM has instance UUID {}", node.id),
                )
            })?;
            let fields = self.fields().await?;
            if let Some(n) = vm.to_node(&fields) {
                if n.is_ready() {
                    return Ok(n);
                }
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    resource: format!("node {}", node.name),
                    state: "powered on with an IP address (VMware Tools must be running in the template)".into(),
                    after: timeout,
                });
            }
            tokio::time::sleep(self.poll.min(timeout.saturating_sub(start.elapsed()))).await;
        }
    }

    async fn delete_node_impl(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
        let resource = format!("node {}", node.name);
        let Some(vm) = self.find_vm(&node.id).await? else {
            return Ok(());
        };
        let fields = self.fields().await?;
        let owner = vm.owner_value(&fields, labels::CLUSTER, KEY_CLUSTER);
        if owner.as_deref() != Some(cluster.name.as_str()) {
            return Err(errors::other(
                "delete",
                &resource,
                FailureKind::Conflict,
                format!(
                    "VM `{}` ({}) is not owned by cluster `{}`; not deleting it",
                    vm.name, node.id, cluster.name
                ),
            ));
        }
        let stub = VirtualMachine::new(self.client.clone(), &vm.moref.value);
        if !vm.powered_off {
            tracing::info!(node = %node.name, "powering off");
            match stub.power_off_vm_task().await {
                Ok(task) => match self.wait_task(task, "power off", &resource).await {
                    // Powered off meanwhile (InvalidPowerState): fine.
                    Err(e) if e.kind() != Some(FailureKind::Conflict) => return Err(e),
                    _ => {}
                },
                Err(e) => {
                    let e = errors::vim("power off", &resource, &e);
                    match e.kind() {
                        Some(FailureKind::NotFound) => return Ok(()),
                        Some(FailureKind::Conflict) => {}
                        _ => return Err(e),
                    }
                }
            }
        }
        tracing::info!(node = %node.name, "destroying");
        match stub.destroy_task().await {
            Ok(task) => match self.wait_task(task, "destroy", &resource).await {
                Err(e) if e.kind() == Some(FailureKind::NotFound) => Ok(()),
                other => other,
            },
            Err(e) => {
                let e = errors::vim("destroy", &resource, &e);
                if e.kind() == Some(FailureKind::NotFound) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn cleanup_impl(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        // Nothing cluster-wide is created: no folder, no rule. Custom attribute
        // definitions are shared by every cluster and stay.
        Ok(Vec::new())
    }
}

#[async_trait]
impl NodeProvider for VsphereProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        crate::settings::VsphereSettings::from_spec(spec).map(|_| ())
    }

    async fn zones(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        AssertSend(self.zones_impl(cluster)).await
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        AssertSend(self.discover_nodes_impl(cluster)).await
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        AssertSend(self.create_node_impl(cluster, request)).await
    }

    async fn wait_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        AssertSend(self.wait_node_impl(cluster, node, timeout)).await
    }

    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
        AssertSend(self.delete_node_impl(cluster, node)).await
    }

    async fn cleanup(&self, cluster: &ClusterRef) -> Result<Vec<String>> {
        AssertSend(self.cleanup_impl(cluster)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_spec_carries_everything() {
        let extra = vec![
            (
                "guestinfo.userdata".to_owned(),
                "I2Nsb3VkLWNvbmZpZwo=".to_owned(),
            ),
            ("triad.cluster".to_owned(), "rancher".to_owned()),
        ];
        let spec = config_spec("5c1e7a2b-934d-5f61-a08e-27d13c55904b", 4, 16384, &extra).unwrap();
        assert_eq!(
            spec.instance_uuid.as_deref(),
            Some("5c1e7a2b-934d-5f61-a08e-27d13c55904b")
        );
        assert_eq!(spec.num_cp_us, Some(4));
        assert_eq!(spec.memory_mb, Some(16384));
        let got: Vec<(String, Option<String>)> = spec
            .extra_config
            .iter()
            .flatten()
            .map(|o| (o.key.clone(), o.value.as_ref().and_then(any_to_string)))
            .collect();
        assert_eq!(
            got,
            extra
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect::<Vec<_>>()
        );
        let shape = shape_spec(2, 4096).unwrap();
        assert_eq!(
            (
                shape.num_cp_us,
                shape.memory_mb,
                shape.extra_config.is_none()
            ),
            (Some(2), Some(4096), true)
        );
    }

    #[test]
    fn metadata_names_the_node() {
        let m = metadata("u-1", "rancher-1");
        assert!(m.contains("instance-id: u-1\n") && m.contains("local-hostname: rancher-1\n"));
    }
}
