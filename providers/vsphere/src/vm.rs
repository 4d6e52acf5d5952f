//! What triad reads of a VM and writes into one: properties, labels, ownership, and
//! the config specs of clone and reconfigure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use triad_core::drift;
use triad_core::labels::{self, Role};
use triad_core::model::{Node, NodeRequest, NodeState};
use triad_core::spec::ClusterRef;
use triad_core::{FailureKind, Result};
use vim_rs::core::client::{unmarshal, Transport};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::enums::VirtualMachinePowerStateEnum;
use vim_rs::types::structs::{
    CustomFieldStringValue, ManagedObjectReference, VirtualMachineConfigSpec,
};
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

use crate::error;

/// `extraConfig` keys that mark a VM as a node, set atomically with the clone.
pub(crate) const KEY_CLUSTER: &str = "triad.cluster";
pub(crate) const KEY_ROLE: &str = "triad.role";
pub(crate) const KEY_NODE: &str = "triad.node";
pub(crate) const KEY_ZONE: &str = "triad.zone";
/// The prefix of the `extraConfig` keys holding labels (`triad.label.triad-fp-image`).
pub(crate) const KEY_LABEL: &str = "triad.label.";

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

/// Whether label `label` lives in `extraConfig` (the fingerprint: written with the
/// clone, changed in one ReconfigVM) rather than in a custom attribute (ownership and
/// the spec's labels, visible in the vSphere client).
pub(crate) fn in_extra_config(label: &str) -> bool {
    label.starts_with(drift::PREFIX)
}

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

pub(crate) fn any_to_string(v: &VimAny) -> Option<String> {
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
    /// Whether a custom attribute of this VM has a key missing from `fields`.
    pub(crate) fn has_unknown_field(&self, fields: &BTreeMap<i32, String>) -> bool {
        self.custom.keys().any(|k| !fields.contains_key(k))
    }

    /// The VM's labels: its custom attributes by name, then the `triad.label.*`
    /// `extraConfig` keys (which win: a fingerprint there is the current one).
    pub(crate) fn labels(&self, fields: &BTreeMap<i32, String>) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .custom
            .iter()
            .filter_map(|(k, v)| fields.get(k).map(|name| (name.clone(), v.clone())))
            .collect();
        for (key, value) in &self.extra {
            if let Some(label) = key.strip_prefix(KEY_LABEL) {
                labels.insert(label.to_owned(), value.clone());
            }
        }
        labels
    }

    /// The value of ownership label `label` (custom attribute) or its `extraConfig`
    /// twin `key`.
    pub(crate) fn owner_value(
        &self,
        fields: &BTreeMap<i32, String>,
        label: &str,
        key: &str,
    ) -> Option<String> {
        self.labels(fields)
            .remove(label)
            .or_else(|| self.extra.get(key).cloned())
    }

    pub(crate) fn owned_by(
        &self,
        fields: &BTreeMap<i32, String>,
        cluster: &str,
        role: Role,
    ) -> bool {
        self.owner_value(fields, labels::CLUSTER, KEY_CLUSTER)
            .as_deref()
            == Some(cluster)
            && self.owner_value(fields, labels::ROLE, KEY_ROLE).as_deref() == Some(role.as_str())
    }

    pub(crate) fn to_node(&self, fields: &BTreeMap<i32, String>) -> Option<Node> {
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

/// A `VirtualMachineConfigSpec` that sets only what is given: the instance UUID, CPU
/// and memory, `extraConfig` entries.
pub(crate) fn config_spec(
    uuid: Option<&str>,
    shape: Option<(u32, u32)>,
    extra: &[(String, String)],
) -> Result<VirtualMachineConfigSpec> {
    // vim_rs has no Default for its 80-field spec without the heavy `defaults`
    // feature: build it from its VI/JSON form, which names only the fields we set.
    let mut json = serde_json::json!({"_typeName": "VirtualMachineConfigSpec"});
    if let Some(uuid) = uuid {
        json["instanceUuid"] = uuid.into();
    }
    if let Some((cpus, memory_mib)) = shape {
        json["numCPUs"] = cpus.into();
        json["memoryMB"] = memory_mib.into();
    }
    if !extra.is_empty() {
        json["extraConfig"] = extra
            .iter()
            .map(|(k, v)| {
                serde_json::json!({
                    "_typeName": "OptionValue",
                    "key": k,
                    "value": {"_typeName": "string", "_value": v},
                })
            })
            .collect();
    }
    unmarshal::<VirtualMachineConfigSpec>(Transport::Json, json.to_string().as_bytes())
        .map_err(|e| error::other("build", "VM config spec", FailureKind::Other, e.to_string()))
}

/// cloud-init's VMware datasource metadata for a node.
fn metadata(uuid: &str, name: &str) -> String {
    format!("instance-id: {uuid}\nlocal-hostname: {name}\nhostname: {name}\n")
}

/// The `extraConfig` of a new node: cloud-init (base64), ownership, fingerprint,
/// `[vsphere] extra_config` (`settings_extra`), then `hook` (the embedder's per-node entries).
pub(crate) fn node_extra_config(
    settings_extra: &BTreeMap<String, String>,
    cluster: &ClusterRef,
    request: &NodeRequest,
    uuid: &str,
    hook: &[(String, String)],
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
        request
            .labels
            .iter()
            .filter(|(k, _)| in_extra_config(k))
            .map(|(k, v)| (format!("{KEY_LABEL}{k}"), v.clone())),
    );
    out.extend(settings_extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.extend(hook.iter().cloned());
    out
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
        let spec = config_spec(
            Some("5c1e7a2b-934d-5f61-a08e-27d13c55904b"),
            Some((4, 16384)),
            &extra,
        )
        .unwrap();
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
        let shape = config_spec(None, Some((2, 4096)), &[]).unwrap();
        assert_eq!(
            (
                shape.num_cp_us,
                shape.memory_mb,
                shape.extra_config.is_none(),
                shape.instance_uuid.is_none()
            ),
            (Some(2), Some(4096), true, true)
        );
        let only_extra = config_spec(None, None, &extra[1..]).unwrap();
        assert_eq!(
            (
                only_extra.num_cp_us,
                only_extra.extra_config.map(|e| e.len())
            ),
            (None, Some(1))
        );
    }

    #[test]
    fn metadata_names_the_node() {
        let m = metadata("u-1", "rancher-1");
        assert!(m.contains("instance-id: u-1\n") && m.contains("local-hostname: rancher-1\n"));
    }

    #[test]
    fn fingerprint_labels_live_in_extra_config_and_win() {
        let cluster = ClusterRef::new("c", "dc0");
        let mut labels = cluster.labels_for(Role::Node);
        labels.insert("triad-fp-image".into(), "tmpl-a".into());
        labels.insert("team".into(), "ops".into());
        let mut request = NodeRequest::new("c-1", "z");
        request.labels = labels;
        request.user_data = "#cloud-config\n".into();
        let extra = node_extra_config(&BTreeMap::new(), &cluster, &request, "u", &[]);
        let extra: BTreeMap<String, String> = extra.into_iter().collect();
        assert_eq!(
            extra.get("triad.label.triad-fp-image").map(String::as_str),
            Some("tmpl-a")
        );
        assert!(!extra.contains_key("triad.label.team"), "{extra:?}");
        // A stale fingerprint in a custom attribute loses to extraConfig.
        let vm = VmInfo {
            moref: ManagedObjectReference {
                r#type: vim_rs::types::enums::MoTypesEnum::VirtualMachine,
                value: "vm-1".into(),
            },
            name: "c-1".into(),
            uuid: Some("u".into()),
            cpus: None,
            memory_mb: None,
            extra,
            custom: BTreeMap::from([(7, "old".to_owned()), (8, "ops".to_owned())]),
            powered_on: true,
            powered_off: false,
            ip: None,
        };
        let fields = BTreeMap::from([(7, "triad-fp-image".to_owned()), (8, "team".to_owned())]);
        let got = vm.labels(&fields);
        assert_eq!(
            got.get("triad-fp-image").map(String::as_str),
            Some("tmpl-a")
        );
        assert_eq!(got.get("team").map(String::as_str), Some("ops"));
    }
}
