//! The session's state on the worker thread: the client, the settings, and what is
//! read once and kept (the datacenter, the placement objects, custom attribute
//! definitions, where each VM is).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::OnceCell;
use triad_core::error::{SpecProblem, SpecProblems};
use triad_core::{Error, FailureKind, Result};
use vim_rs::core::client::{extract_property, VimClient};
use vim_rs::mo::{
    ClusterComputeResource, CustomFieldsManager, Datacenter, SearchIndex, VirtualMachine,
};
use vim_rs::types::enums::MoTypesEnum;
use vim_rs::types::structs::ManagedObjectReference;

use crate::error;
use crate::settings::VsphereSettings;

/// The datacenter the settings name, and its root VM folder (discovery looks below
/// it).
#[derive(Clone, Debug)]
pub(crate) struct DatacenterRefs {
    pub datacenter: ManagedObjectReference,
    pub vm_root: ManagedObjectReference,
}

/// Where new VMs go: the objects the settings name, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// The VM folder.
    pub folder: ManagedObjectReference,
    pub datastore: ManagedObjectReference,
    /// Zone → resource pool.
    pub pools: BTreeMap<String, ManagedObjectReference>,
}

/// The session and what it keeps; lives on the worker thread only.
pub(crate) struct Vcenter {
    pub settings: VsphereSettings,
    pub client: Arc<dyn VimClient>,
    datacenter: OnceCell<DatacenterRefs>,
    placement: OnceCell<Placement>,
    /// Custom attribute definitions (key → name), read once and refreshed when a VM
    /// carries a key not in it.
    fields: RefCell<Option<BTreeMap<i32, String>>>,
    /// Instance UUID → VM, as found by searches and listings.
    vms: RefCell<BTreeMap<String, ManagedObjectReference>>,
}

fn missing(problems: &mut Vec<SpecProblem>, field: &str, what: &str, path: &str, fix: &str) {
    problems.push(SpecProblem {
        field: format!("vsphere.{field}"),
        problem: format!("vCenter has no {what} at `{path}`"),
        fix: fix.to_owned(),
    })
}

impl Vcenter {
    pub(crate) fn new(settings: VsphereSettings, client: Arc<dyn VimClient>) -> Self {
        Self {
            settings,
            client,
            datacenter: OnceCell::new(),
            placement: OnceCell::new(),
            fields: RefCell::new(None),
            vms: RefCell::new(BTreeMap::new()),
        }
    }

    /// The datacenter's inventory path (`DC0`, `folder/DC0`).
    pub(crate) fn dc_path(&self) -> &str {
        self.settings.datacenter.trim_matches('/')
    }

    fn search_index(&self) -> Result<SearchIndex> {
        let si = self
            .client
            .service_content()
            .search_index
            .as_ref()
            .ok_or_else(|| {
                error::other(
                    "connect",
                    "vCenter",
                    FailureKind::Other,
                    "the server has no SearchIndex",
                )
            })?;
        Ok(SearchIndex::new(self.client.clone(), &si.value))
    }

    pub(crate) fn custom_fields_manager(&self) -> Result<CustomFieldsManager> {
        let r = self
            .client
            .service_content()
            .custom_fields_manager
            .as_ref()
            .ok_or_else(|| {
                error::other(
                    "read",
                    "custom attributes",
                    FailureKind::Other,
                    "the server has no CustomFieldsManager",
                )
            })?;
        Ok(CustomFieldsManager::new(self.client.clone(), &r.value))
    }

    /// Read one property of `obj`.
    pub(crate) async fn property<T: miniserde::Deserialize + 'static>(
        &self,
        obj: &ManagedObjectReference,
        property: &str,
    ) -> vim_rs::core::client::Result<Option<T>> {
        match self
            .client
            .fetch_property_raw("", obj.r#type.as_str(), &obj.value, property)
            .await?
        {
            Some(v) => extract_property(v).map(Some),
            None => Ok(None),
        }
    }

    /// The managed object at inventory path `path` (`DC0/vm/templates/ubuntu`).
    pub(crate) async fn find_path(&self, path: &str) -> Result<Option<ManagedObjectReference>> {
        self.search_index()?
            .find_by_inventory_path(path)
            .await
            .map_err(|e| error::vim("find", &format!("inventory path {path}"), &e))
    }

    /// The VM with instance UUID `uuid` in the datacenter: remembered, or searched.
    pub(crate) async fn find_uuid(&self, uuid: &str) -> Result<Option<ManagedObjectReference>> {
        if let Some(r) = self.vms.borrow().get(uuid) {
            return Ok(Some(r.clone()));
        }
        let dc = self.datacenter().await?;
        let found = self
            .search_index()?
            .find_by_uuid(Some(&dc.datacenter), uuid, true, Some(true))
            .await
            .map_err(|e| error::vim("find", &format!("VM {uuid}"), &e))?;
        if let Some(r) = &found {
            self.remember(uuid, r);
        }
        Ok(found)
    }

    /// Remember that the VM with instance UUID `uuid` is `vm`.
    pub(crate) fn remember(&self, uuid: &str, vm: &ManagedObjectReference) {
        self.vms.borrow_mut().insert(uuid.to_owned(), vm.clone());
    }

    /// Forget where the VM with instance UUID `uuid` is (it is gone or moved).
    pub(crate) fn forget(&self, uuid: &str) {
        self.vms.borrow_mut().remove(uuid);
    }

    /// Custom attribute definitions (key → name); `refresh` reads them again.
    pub(crate) async fn fields(&self, refresh: bool) -> Result<BTreeMap<i32, String>> {
        if !refresh {
            if let Some(f) = self.fields.borrow().as_ref() {
                return Ok(f.clone());
            }
        }
        let defs: BTreeMap<i32, String> = self
            .custom_fields_manager()?
            .field()
            .await
            .map_err(|e| error::vim("read", "custom attribute definitions", &e))?
            .into_iter()
            .flatten()
            .map(|d| (d.key, d.name))
            .collect();
        *self.fields.borrow_mut() = Some(defs.clone());
        Ok(defs)
    }

    /// Add a definition made by this session to the kept ones.
    pub(crate) fn add_field(&self, key: i32, name: String) {
        self.fields
            .borrow_mut()
            .get_or_insert_with(BTreeMap::new)
            .insert(key, name);
    }

    /// The datacenter and its root VM folder, resolved once (two calls).
    pub(crate) async fn datacenter(&self) -> Result<&DatacenterRefs> {
        self.datacenter
            .get_or_try_init(|| async {
                let dc_path = self.dc_path();
                let datacenter = match self.find_path(dc_path).await? {
                    Some(dc) if dc.r#type == MoTypesEnum::Datacenter => dc,
                    _ => {
                        let mut problems = Vec::new();
                        missing(
                            &mut problems,
                            "datacenter",
                            "datacenter",
                            dc_path,
                            "name an existing datacenter (its inventory path if it is in a folder)",
                        );
                        return Err(Error::InvalidSpec(SpecProblems(problems)));
                    }
                };
                let vm_root = Datacenter::new(self.client.clone(), &datacenter.value)
                    .vm_folder()
                    .await
                    .map_err(|e| error::vim("read", &format!("datacenter {dc_path}"), &e))?;
                Ok(DatacenterRefs {
                    datacenter,
                    vm_root,
                })
            })
            .await
    }

    /// Every inventory object the settings name, resolved once; every one that does
    /// not exist is a spec problem naming its field (`vsphere.template`,
    /// `vsphere.failure_domains.zone-a`, …).
    pub(crate) async fn placement(&self) -> Result<&Placement> {
        self.placement.get_or_try_init(|| self.resolve()).await
    }

    async fn resolve(&self) -> Result<Placement> {
        let dc = self.datacenter().await?.clone();
        let s = &self.settings;
        let dc_path = self.dc_path();
        let mut problems: Vec<SpecProblem> = Vec::new();
        let template_path = format!("{dc_path}/vm/{}", s.template.trim_matches('/'));
        let template = match self.find_path(&template_path).await? {
            Some(t) if t.r#type == MoTypesEnum::VirtualMachine => Some(t),
            _ => {
                missing(
                    &mut problems,
                    "template",
                    "VM template",
                    &template_path,
                    "name a template relative to the datacenter's VM folder",
                );
                None
            }
        };
        let folder = match &s.folder {
            None => Some(dc.vm_root.clone()),
            Some(f) => {
                let path = format!("{dc_path}/vm/{}", f.trim_matches('/'));
                match self.find_path(&path).await? {
                    Some(r) if r.r#type == MoTypesEnum::Folder => Some(r),
                    _ => {
                        missing(
                            &mut problems,
                            "folder",
                            "VM folder",
                            &path,
                            "create the folder, or leave `folder` out",
                        );
                        None
                    }
                }
            }
        };
        let ds_path = format!("{dc_path}/datastore/{}", s.datastore.trim_matches('/'));
        let datastore = match self.find_path(&ds_path).await? {
            Some(r) if r.r#type == MoTypesEnum::Datastore => Some(r),
            _ => {
                missing(
                    &mut problems,
                    "datastore",
                    "datastore",
                    &ds_path,
                    "name an existing datastore",
                );
                None
            }
        };
        let net_path = format!("{dc_path}/network/{}", s.network.trim_matches('/'));
        match self.find_path(&net_path).await? {
            Some(r)
                if matches!(
                    r.r#type,
                    MoTypesEnum::Network
                        | MoTypesEnum::DistributedVirtualPortgroup
                        | MoTypesEnum::OpaqueNetwork
                ) =>
            {
                // triad does not rewire NICs: the template's must be on the network.
                if let Some(t) = &template {
                    let on = VirtualMachine::new(self.client.clone(), &t.value)
                        .network()
                        .await
                        .map_err(|e| error::vim("read", &format!("template {template_path}"), &e))?
                        .unwrap_or_default();
                    if !on.iter().any(|n| n.value == r.value) {
                        problems.push(SpecProblem {
                            field: "vsphere.network".into(),
                            problem: format!(
                                "the template `{template_path}` has no NIC on `{net_path}` (its NICs are on: {})",
                                on.iter().map(|n| n.value.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                            fix: "name the template's network, or use a template on this network".into(),
                        });
                    }
                }
            }
            _ => missing(
                &mut problems,
                "network",
                "network",
                &net_path,
                "name an existing network or port group",
            ),
        }
        let mut pools = BTreeMap::new();
        for (zone, target) in &s.failure_domains {
            let path = format!("{dc_path}/host/{}", target.trim_matches('/'));
            let pool = match self.find_path(&path).await? {
                Some(r) if r.r#type == MoTypesEnum::ResourcePool => Some(r),
                Some(r)
                    if matches!(
                        r.r#type,
                        MoTypesEnum::ClusterComputeResource | MoTypesEnum::ComputeResource
                    ) =>
                {
                    ClusterComputeResource::new(self.client.clone(), &r.value)
                        .resource_pool()
                        .await
                        .map_err(|e| error::vim("read", &format!("cluster {path}"), &e))?
                }
                _ => None,
            };
            match pool {
                Some(p) => {
                    pools.insert(zone.clone(), p);
                }
                None => missing(
                    &mut problems,
                    &format!("failure_domains.{zone}"),
                    "compute cluster or resource pool",
                    &path,
                    "name a cluster (or cluster/Resources/pool) relative to the datacenter's host folder",
                ),
            }
        }
        match (folder, datastore) {
            (Some(folder), Some(datastore)) if problems.is_empty() => Ok(Placement {
                folder,
                datastore,
                pools,
            }),
            _ => Err(Error::InvalidSpec(SpecProblems(problems))),
        }
    }
}
