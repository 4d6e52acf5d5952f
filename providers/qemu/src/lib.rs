//! # triad-qemu
//!
//! triad's [`NodeProvider`] for the local host: each node is a QEMU VM — for labs,
//! demos, CI, and trying a whole Rancher HA layout on a laptop without a cloud account.
//!
//! - **Disks**: a copy-on-write qcow2 over `[qemu] image` (a Debian or Ubuntu cloud
//!   image with cloud-init), per VM.
//! - **Bootstrap**: a NoCloud seed per VM (`cloud-localds`) with triad's user data, the
//!   meta-data (instance id, host name) and a network-config.
//! - **Acceleration**: KVM only when the host has hardware virtualization (the
//!   `kvm_intel` or `kvm_amd` module — a `/dev/kvm` alone may be a paravirtual nested
//!   KVM that cannot run a stock kernel), else TCG (`-cpu max`). See [`Accel`].
//! - **Network, modelled on a corporate one**: two NICs per VM. The first is QEMU's
//!   user-mode network with `restrict=on`: no route out at all, except a `guestfwd`
//!   from `10.0.2.100:3128` to `[qemu] proxy` on the host (the proxy is the only way
//!   to the internet) and `hostfwd`s on the lab's loopback address `127.0.0.N` (SSH on
//!   `ssh_port_base + slot`; 80 and 443 for the balancer VM). The second NIC is on the
//!   lab segment, a VDE switch over Unix sockets in the state directory, with a static
//!   private address: it exists only inside the guests and a user-space process, never
//!   in the host's network stack.
//! - **State and ownership**: `<state_dir>/vms/<name>/` holds the VM's disk, seed,
//!   pidfile, QMP socket, console log and `node.json` (name, zone, labels, addresses),
//!   written before QEMU starts; discovery reads these records, so a crashed run's VMs
//!   are found. Delete = QMP `quit` (then SIGTERM, SIGKILL), then the directory goes.
//! - **Zones** are the spec's zones: failure domains are labels here.
//! - **Published balancer**: a node carrying `triad-lb-for` (a balancer VM made by
//!   `triad-nginx` in node mode) gets 80 and 443 of the lab's loopback address and
//!   reports it as its public IP, so the DNS record points at `127.0.0.N`. One such
//!   VM per lab at a time.
//!
//! Nodes carry [`Node::ssh`](triad_core::Node::ssh) (`127.0.0.N:port`). See
//! `docs/local.md`.
#![warn(missing_docs)]

mod lab;
pub mod settings;
mod vm;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use triad_core::error::{Error, FailureKind, Result, SpecProblem, SpecProblems};
use triad_core::labels::{self, Role};
use triad_core::model::{Node, NodeRequest, NodeState};
use triad_core::provider::NodeProvider;
use triad_core::spec::{ClusterRef, ValidSpec};

pub use settings::{Accel, QemuSettings};

use lab::Lab;
use vm::{VmDir, VmRecord};

/// The provider's name in messages and the inventory.
pub const PROVIDER: &str = "qemu";

/// The label that makes a node the lab's published balancer (80 and 443 of the
/// loopback address are forwarded to it). `triad-nginx` puts it on its balancer node.
pub const PUBLISH_LABEL: &str = "triad-lb-for";

/// The first and last slot (last octet of the lab address) given to VMs.
const SLOTS: std::ops::RangeInclusive<u8> = 10..=250;

pub(crate) fn err(
    action: &str,
    resource: &str,
    kind: FailureKind,
    message: impl Into<String>,
) -> Error {
    Error::provider(PROVIDER, action, resource, kind, message)
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Local QEMU VMs as nodes. See the [crate documentation](crate).
#[derive(Debug)]
pub struct QemuProvider {
    settings: QemuSettings,
    state_dir: PathBuf,
    /// Serialises slot allocation and VM creation within this process.
    create: tokio::sync::Mutex<()>,
    poll: Duration,
}

impl QemuProvider {
    /// Read `[qemu]` from the spec.
    pub fn from_spec(spec: &ValidSpec) -> Result<Self> {
        Self::new(QemuSettings::from_spec(spec)?)
    }

    /// A provider with `settings`, after checking them (the state directory is made).
    pub fn new(settings: QemuSettings) -> Result<Self> {
        let problems = settings.problems(None);
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(SpecProblems(problems)));
        }
        make_private_dir(&settings.state_dir)?;
        let state_dir = std::fs::canonicalize(&settings.state_dir)
            .map_err(|e| io_err(&settings.state_dir, e))?;
        make_private_dir(&state_dir.join("vms"))?;
        Ok(Self {
            settings,
            state_dir,
            create: tokio::sync::Mutex::new(()),
            poll: Duration::from_millis(500),
        })
    }

    /// How often `wait_node` polls (0.5 s by default).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &QemuSettings {
        &self.settings
    }

    /// The state directory (absolute).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The PIDs of every QEMU process (and the lab switch) of this state directory
    /// that runs now, for checks that nothing is left.
    pub fn running_pids(&self) -> Result<Vec<i32>> {
        let mut pids: Vec<i32> = self
            .all_vms()?
            .iter()
            .filter_map(|(d, _)| d.running_pid())
            .collect();
        pids.extend(Lab::new(&self.state_dir).running_pid());
        Ok(pids)
    }

    fn vm_dir(&self, name: &str) -> VmDir {
        VmDir {
            dir: self.state_dir.join("vms").join(name),
        }
    }

    /// Every VM directory with its record (directories without one are listed with
    /// `None`: a creation interrupted before the record was written).
    fn all_vms(&self) -> Result<Vec<(VmDir, Option<VmRecord>)>> {
        let vms = self.state_dir.join("vms");
        let entries = match std::fs::read_dir(&vms) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&vms, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&vms, e))?;
            if !entry.path().is_dir() {
                continue;
            }
            let d = VmDir { dir: entry.path() };
            let record = d.read_record()?;
            out.push((d, record));
        }
        out.sort_by(|a, b| a.0.dir.cmp(&b.0.dir));
        Ok(out)
    }

    fn node_of(&self, d: &VmDir, r: &VmRecord) -> Node {
        let running = d.running_pid().is_some();
        Node {
            id: r.name.clone(),
            name: r.name.clone(),
            zone: r.zone.clone(),
            state: if running {
                NodeState::Running
            } else {
                NodeState::Stopped
            },
            private_ip: Some(IpAddr::V4(r.lab_ip)),
            public_ip: r.published.then_some(IpAddr::V4(self.settings.address())),
            ssh: Some(r.ssh.to_string()),
            labels: r.labels.clone(),
            // One state directory per node name: two VMs can never share a name,
            // so "keep the oldest" has nothing to choose between.
            created_ms: None,
        }
    }

    fn owned_by(r: &VmRecord, cluster: &ClusterRef) -> bool {
        r.labels.get(labels::CLUSTER) == Some(&cluster.name)
            && r.labels.get(labels::ROLE).map(String::as_str) == Some(Role::Node.as_str())
    }

    /// A free slot: the lowest one no VM of the state directory uses.
    fn free_slot(&self, what: &str) -> Result<u8> {
        let used: Vec<u8> = self
            .all_vms()?
            .iter()
            .filter_map(|(_, r)| r.as_ref().map(|r| r.slot))
            .collect();
        SLOTS.clone().find(|s| !used.contains(s)).ok_or_else(|| {
            err(
                "create",
                what,
                FailureKind::Capacity,
                format!(
                    "the lab has no free address (at most {} VMs)",
                    SLOTS.count()
                ),
            )
        })
    }

    fn published_holder(&self) -> Result<Option<String>> {
        Ok(self
            .all_vms()?
            .into_iter()
            .filter_map(|(_, r)| r)
            .find(|r| r.published)
            .map(|r| r.name))
    }

    /// Make the record, disk and seed of a new VM.
    async fn prepare(&self, request: &NodeRequest, what: &str) -> Result<(VmDir, VmRecord)> {
        let d = self.vm_dir(&request.name);
        let slot = self.free_slot(what)?;
        let published = request.labels.contains_key(PUBLISH_LABEL);
        if published {
            if let Some(holder) = self.published_holder()? {
                return Err(err(
                    "create",
                    what,
                    FailureKind::Conflict,
                    format!(
                        "ports 80 and 443 of {} are forwarded to the balancer VM {holder}; \
                         the lab has one published balancer at a time: destroy it first",
                        self.settings.address()
                    ),
                ));
            }
        }
        let p = self.settings.lab_prefix();
        let port = u16::from(slot)
            .checked_add(self.settings.ssh_port_base())
            .ok_or_else(|| {
                err(
                    "create",
                    what,
                    FailureKind::InvalidRequest,
                    "SSH port overflow",
                )
            })?;
        let record = VmRecord {
            name: request.name.clone(),
            zone: request.zone.clone(),
            labels: request.labels.clone(),
            slot,
            lab_ip: Ipv4Addr::new(p[0], p[1], p[2], slot),
            ssh: SocketAddr::new(IpAddr::V4(self.settings.address()), port),
            published,
            image: request
                .image
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| self.settings.image.clone()),
        };
        make_private_dir(&d.dir)?;
        d.write_record(&record)?;
        Ok((d, record))
    }

    /// Disk, seed, lab switch and QEMU for a VM whose record exists; each step is
    /// skipped when already done.
    async fn bring_up(
        &self,
        d: &VmDir,
        record: &VmRecord,
        request: Option<&NodeRequest>,
        what: &str,
    ) -> Result<()> {
        if d.running_pid().is_some() {
            return Ok(());
        }
        vm::ensure_disk(d, &record.image, request.and_then(|r| r.disk_gib), what).await?;
        if !d.seed().is_file() {
            let Some(request) = request else {
                return Err(err(
                    "start",
                    what,
                    FailureKind::Other,
                    "its seed is missing and no user data was given",
                ));
            };
            vm::ensure_seed(d, &self.settings, record, &request.user_data, what).await?;
        }
        let lab = Lab::new(&self.state_dir);
        lab.ensure().await?;
        let pid = vm::launch(&self.settings, d, record, &lab.socket(), what).await?;
        tracing::info!(node = %record.name, pid, ssh = %record.ssh, lab_ip = %record.lab_ip, "VM started");
        Ok(())
    }
}

/// The error for a VM directory whose record names another cluster (or role).
fn not_ours(action: &str, what: &str, d: &VmDir, r: &VmRecord) -> Error {
    err(
        action,
        what,
        FailureKind::Conflict,
        format!(
            "the VM in {} belongs to cluster `{}`, not this one",
            d.dir.display(),
            r.labels.get(labels::CLUSTER).map_or("?", String::as_str)
        ),
    )
}

fn make_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

#[async_trait]
impl NodeProvider for QemuProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        let mut problems = self.settings.problems(Some(spec));
        if let Some(size) = &spec.nodes.size {
            problems.push(SpecProblem {
                field: "nodes.size".into(),
                problem: format!("the qemu provider has no machine sizes (`{size}`)"),
                fix: "leave nodes.size out; set [qemu] memory_mib and cpus".into(),
            });
        }
        if let Some(image) = &spec.nodes.image {
            if !Path::new(image).is_file() {
                problems.push(SpecProblem {
                    field: "nodes.image".into(),
                    problem: format!("`{image}` is not a file"),
                    fix: "give the path of a cloud image, or leave it out to use [qemu] image"
                        .into(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSpec(SpecProblems(problems)))
        }
    }

    async fn zones(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        Ok(self.settings.zones())
    }

    async fn discover_nodes(&self, cluster: &ClusterRef) -> Result<Vec<Node>> {
        Ok(self
            .all_vms()?
            .iter()
            .filter_map(|(d, r)| r.as_ref().map(|r| (d, r)))
            .filter(|(_, r)| Self::owned_by(r, cluster))
            .map(|(d, r)| self.node_of(d, r))
            .collect())
    }

    async fn create_node(&self, cluster: &ClusterRef, request: &NodeRequest) -> Result<Node> {
        let what = format!("node {}", request.name);
        if request.name.is_empty()
            || !request
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "create",
                &what,
                FailureKind::InvalidRequest,
                "a VM name is letters, digits, `-` and `_`",
            ));
        }
        let _guard = self.create.lock().await;
        let d = self.vm_dir(&request.name);
        let record = match d.read_record()? {
            Some(r) if !Self::owned_by(&r, cluster) => {
                return Err(not_ours("create", &what, &d, &r));
            }
            Some(r) => r,
            None => self.prepare(request, &what).await?.1,
        };
        self.bring_up(&d, &record, Some(request), &what).await?;
        Ok(self.node_of(&d, &record))
    }

    async fn wait_node(
        &self,
        cluster: &ClusterRef,
        node: &Node,
        timeout: Duration,
    ) -> Result<Node> {
        let what = format!("node {}", node.name);
        let deadline = tokio::time::Instant::now() + timeout;
        let d = self.vm_dir(&node.id);
        loop {
            let record = d
                .read_record()?
                .filter(|r| Self::owned_by(r, cluster))
                .ok_or_else(|| err("wait for", &what, FailureKind::NotFound, "the VM is gone"))?;
            if d.running_pid().is_some() {
                let status = vm::qmp(&d.qmp(), &["query-status"], Duration::from_secs(5)).await;
                match status {
                    Ok(v)
                        if v.first()
                            .and_then(|s| s.get("status"))
                            .and_then(|s| s.as_str())
                            == Some("running") =>
                    {
                        return Ok(self.node_of(&d, &record));
                    }
                    Ok(v) => tracing::debug!(node = %node.name, status = ?v, "VM not running yet"),
                    Err(e) => tracing::debug!(node = %node.name, error = %e, "QMP not ready"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    resource: what,
                    state: "running (QEMU up, QMP status `running`)".into(),
                    after: timeout,
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn delete_node(&self, cluster: &ClusterRef, node: &Node) -> Result<()> {
        let what = format!("node {}", node.name);
        let _guard = self.create.lock().await;
        let d = self.vm_dir(&node.id);
        match d.read_record()? {
            None if !d.dir.exists() => return Ok(()),
            Some(r) if !Self::owned_by(&r, cluster) => {
                return Err(not_ours("delete", &what, &d, &r));
            }
            _ => {}
        }
        vm::stop(&d, &what).await?;
        match std::fs::remove_dir_all(&d.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&d.dir, e)),
        }
        tracing::info!(node = %node.name, "VM deleted");
        Ok(())
    }

    async fn cleanup(&self, _cluster: &ClusterRef) -> Result<Vec<String>> {
        let _guard = self.create.lock().await;
        // The lab switch is shared by every VM of the state directory (a balancer VM
        // belongs to another pseudo-cluster): it goes with the last VM.
        if !self.all_vms()?.is_empty() {
            return Ok(Vec::new());
        }
        let lab = Lab::new(&self.state_dir);
        if !lab.exists() {
            return Ok(Vec::new());
        }
        lab.remove().await?;
        Ok(vec![format!(
            "lab switch {}",
            self.state_dir.join("lab").display()
        )])
    }
}
