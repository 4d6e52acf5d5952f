//! # triad-vsphere
//!
//! triad's [`NodeProvider`](triad_core::NodeProvider) for VMware vSphere: each node is a VM cloned from a
//! template into the resource pool of its failure domain (zone → compute cluster or
//! resource pool), with its cloud-init user data in `guestinfo.userdata`, CPU and
//! memory set explicitly, powered on, and waited for until VMware Tools reports an IP.
//!
//! - **Idempotent**: every node's instance UUID is derived from (datacenter, cluster,
//!   node name) ([`uuid::instance_uuid`]), and the clone asks for it, so a rerun finds
//!   the VM by UUID instead of cloning again.
//! - **Ownership**: the custom attributes `triad-cluster` and `triad-role` (plus the
//!   spec's extra labels) on the VM, and — set atomically with the clone, so a crash
//!   between clone and tagging leaves nothing undiscoverable — the `extraConfig` keys
//!   `triad.cluster`, `triad.role`, `triad.node` and `triad.zone`.
//! - **Tasks** are polled through `info.state`; a failed task is reported with
//!   vCenter's fault.
//! - **TLS** verification is on; trust a private CA with `ca_file`, or opt out with
//!   `insecure = true`.
//!
//! vSphere has no managed load balancer or DNS: pair this crate with `triad-nginx` and
//! `triad-rfc2136` (or any other providers). See `docs/vsphere.md`.
#![warn(missing_docs)]

mod errors;
mod send;
pub mod settings;
pub mod uuid;
mod vm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use triad_core::error::{SpecProblem, SpecProblems};
use triad_core::model::NodeRequest;
use triad_core::spec::ValidSpec;
use triad_core::{Error, FailureKind, Result};
use vim_rs::core::client::{Client, ClientBuilder, TransportMode, VimClient};
use vim_rs::mo::{ClusterComputeResource, Datacenter, SearchIndex, VirtualMachine};
use vim_rs::types::enums::MoTypesEnum;
use vim_rs::types::structs::ManagedObjectReference;

pub use settings::{Transport, VsphereSettings};

/// The provider's name in messages and the inventory.
pub const NAME: &str = "vsphere";

/// Extra `extraConfig` entries for one node, computed by an embedder's hook (see
/// [`VsphereProvider::with_node_extra_config`]).
pub type NodeExtraConfig = dyn Fn(&NodeRequest) -> Vec<(String, String)> + Send + Sync;

/// A distinct `10.x.y.z` per VM name (FNV-1a of the name), the fake guest address
/// [`VsphereProvider::with_vcsim_guest_ips`] gives a clone on vcsim.
pub fn vcsim_guest_ip(name: &str) -> String {
    let h = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!(
        "10.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xff).clamp(1, 254)
    )
}

/// The inventory objects the settings name, resolved once.
#[derive(Clone, Debug)]
pub(crate) struct Inventory {
    pub datacenter: ManagedObjectReference,
    /// The datacenter's root VM folder (discovery looks below it).
    pub vm_root: ManagedObjectReference,
    /// Where new VMs go.
    pub folder: ManagedObjectReference,
    pub datastore: ManagedObjectReference,
    /// Zone → resource pool.
    pub pools: BTreeMap<String, ManagedObjectReference>,
}

/// vSphere nodes: VMs cloned from a template over failure domains.
///
/// Build one with [`VsphereProvider::from_spec`] (reads `[vsphere]` and logs in), or
/// [`VsphereProvider::with_client`] for a client you built.
pub struct VsphereProvider {
    settings: VsphereSettings,
    client: Arc<Client>,
    inventory: tokio::sync::OnceCell<Inventory>,
    node_extra_config: Option<Arc<NodeExtraConfig>>,
    poll: Duration,
}

impl std::fmt::Debug for VsphereProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsphereProvider")
            .field("settings", &self.settings)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl VsphereProvider {
    /// Read `[vsphere]` from the spec and log in to vCenter.
    pub async fn from_spec(spec: &ValidSpec) -> Result<Self> {
        let settings = VsphereSettings::from_spec(spec)?;
        Self::connect(settings).await
    }

    /// Log in to vCenter with `settings` (credentials from the settings or from
    /// `VSPHERE_USER`/`VSPHERE_PASSWORD`).
    pub async fn connect(settings: VsphereSettings) -> Result<Self> {
        let client = connect(&settings).await?;
        Ok(Self::with_client(settings, client))
    }

    /// A provider using `client`, already logged in.
    pub fn with_client(settings: VsphereSettings, client: Arc<Client>) -> Self {
        Self {
            settings,
            client,
            inventory: tokio::sync::OnceCell::new(),
            node_extra_config: None,
            poll: Duration::from_secs(2),
        }
    }

    /// Add per-node `extraConfig` entries computed by `hook` at clone time (for
    /// instance vcsim's `SET.guest.ipAddress`, or a per-node static address for a
    /// guest agent). The `[vsphere] extra_config` entries apply to every node.
    pub fn with_node_extra_config(
        mut self,
        hook: impl Fn(&NodeRequest) -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.node_extra_config = Some(Arc::new(hook));
        self
    }

    /// **vcsim only** (govmomi's vCenter simulator, which reports no guest IP for a
    /// clone): give each node the fake address [`vcsim_guest_ip`] derives from its
    /// name, through vcsim's `SET.guest.ipAddress` extraConfig key. Never use it
    /// against a vCenter.
    pub fn with_vcsim_guest_ips(self) -> Self {
        self.with_node_extra_config(|r: &NodeRequest| {
            vec![("SET.guest.ipAddress".to_owned(), vcsim_guest_ip(&r.name))]
        })
    }

    /// How often waits poll vCenter (2 s by default).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &VsphereSettings {
        &self.settings
    }

    /// The vim_rs client, for reading back what the provider made.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Resolve every inventory object the settings name, reporting every one that does
    /// not exist as a spec problem naming its field (`vsphere.datacenter`,
    /// `vsphere.template`, `vsphere.failure_domains.zone-a`, …).
    pub async fn check_inventory(&self) -> Result<()> {
        send::AssertSend(self.inventory()).await.map(|_| ())
    }

    pub(crate) async fn inventory(&self) -> Result<&Inventory> {
        self.inventory.get_or_try_init(|| self.resolve()).await
    }

    fn search_index(&self) -> Result<SearchIndex> {
        let sc = self.client.service_content();
        let si = sc.search_index.as_ref().ok_or_else(|| {
            errors::other(
                "connect",
                "vCenter",
                FailureKind::Other,
                "the server has no SearchIndex",
            )
        })?;
        Ok(SearchIndex::new(self.client.clone(), &si.value))
    }

    /// The managed object at inventory path `path` (`DC0/vm/templates/ubuntu`).
    pub async fn find_path(&self, path: &str) -> Result<Option<ManagedObjectReference>> {
        send::AssertSend(self.find_path_inner(path)).await
    }

    async fn find_path_inner(&self, path: &str) -> Result<Option<ManagedObjectReference>> {
        self.search_index()?
            .find_by_inventory_path(path)
            .await
            .map_err(|e| errors::vim("find", &format!("inventory path {path}"), &e))
    }

    async fn resolve(&self) -> Result<Inventory> {
        let s = &self.settings;
        let dc_path = s.datacenter.trim_matches('/');
        let mut problems: Vec<SpecProblem> = Vec::new();
        fn missing(
            problems: &mut Vec<SpecProblem>,
            field: &str,
            what: &str,
            path: &str,
            fix: &str,
        ) {
            problems.push(SpecProblem {
                field: format!("vsphere.{field}"),
                problem: format!("vCenter has no {what} at `{path}`"),
                fix: fix.to_owned(),
            })
        }
        let datacenter = match self.find_path(dc_path).await? {
            Some(dc) if dc.r#type == MoTypesEnum::Datacenter => dc,
            _ => {
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
        let dc = Datacenter::new(self.client.clone(), &datacenter.value);
        let vm_root = dc
            .vm_folder()
            .await
            .map_err(|e| errors::vim("read", &format!("datacenter {dc_path}"), &e))?;

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
            None => Some(vm_root.clone()),
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
                        .map_err(|e| errors::vim("read", &format!("template {template_path}"), &e))?
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
            let found = self.find_path(&path).await?;
            let pool = match found {
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
                        .map_err(|e| errors::vim("read", &format!("cluster {path}"), &e))?
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
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(SpecProblems(problems)));
        }
        let (Some(folder), Some(datastore)) = (folder, datastore) else {
            unreachable!("a missing folder or datastore is a problem reported above")
        };
        Ok(Inventory {
            datacenter,
            vm_root,
            folder,
            datastore,
            pools,
        })
    }
}

/// Log in to vCenter with `settings`.
pub async fn connect(settings: &VsphereSettings) -> Result<Arc<Client>> {
    send::AssertSend(connect_inner(settings)).await
}

async fn connect_inner(settings: &VsphereSettings) -> Result<Arc<Client>> {
    let server = settings.server()?;
    let (user, password) = settings.credentials()?;
    // reqwest is built without a default crypto provider: use ring unless the
    // process installed one already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut http = reqwest::Client::builder()
        .cookie_store(true)
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(300));
    if let Some(ca) = &settings.ca_file {
        let pem = std::fs::read(ca).map_err(|e| Error::Io {
            path: ca.display().to_string(),
            message: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::invalid(
                "vsphere.ca_file",
                format!("`{}` is not a PEM certificate bundle: {e}", ca.display()),
                "give a PEM file with vCenter's CA certificate",
            )
        })?;
        if certs.is_empty() {
            return Err(Error::invalid(
                "vsphere.ca_file",
                format!("`{}` holds no certificate", ca.display()),
                "give a PEM file with vCenter's CA certificate",
            ));
        }
        http = http.tls_certs_only(certs);
    }
    if settings.insecure {
        tracing::warn!(
            server,
            "TLS verification of vCenter is off ([vsphere] insecure = true)"
        );
        http = http
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    let http = http
        .build()
        .map_err(|e| errors::other("connect", &server, FailureKind::Other, e.to_string()))?;
    let mode = match settings.transport {
        Transport::Auto => TransportMode::Auto,
        Transport::Json => TransportMode::Json,
        Transport::Soap => TransportMode::Soap,
    };
    let client = ClientBuilder::new(&server, http)
        .basic_authn(&user, password.expose())
        .app_details("triad", env!("CARGO_PKG_VERSION"))
        .transport(mode)
        .build()
        .await
        .map_err(|e| {
            let (kind, message) = errors::classify(&e);
            let hint = match kind {
                FailureKind::Permission => format!(
                    "vCenter rejected the login of user `{user}`; check vsphere.username and \
                     vsphere.password (or {} and {})",
                    settings::USER_ENV,
                    settings::PASSWORD_ENV
                ),
                _ if message.contains("certificate") || message.contains("Certificate") => {
                    "TLS verification failed: set vsphere.ca_file to vCenter's CA bundle (or \
                     insecure = true to skip verification)"
                        .to_owned()
                }
                _ => "check vsphere.url".to_owned(),
            };
            errors::other(
                "log in to",
                &format!("vCenter {server}"),
                kind,
                format!("{hint} ({message})"),
            )
        })?;
    tracing::debug!(server, transport = ?client.transport(), "logged in to vCenter");
    Ok(client)
}
