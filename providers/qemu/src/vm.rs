//! One VM's files and process: its state directory, the record discovery reads,
//! the copy-on-write disk, the NoCloud seed, the QEMU command line and QMP.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use triad_core::error::{Error, FailureKind, Result};

use crate::settings::{Accel, QemuSettings, GUEST_PROXY};
use crate::{err, io_err};

/// The record of one VM, written to `<state_dir>/vms/<name>/node.json` before QEMU
/// starts, so discovery finds a VM whose creation was interrupted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VmRecord {
    /// triad's node name (also the directory's name and the node's id).
    pub name: String,
    /// Zone (a label only: every VM runs on this host).
    pub zone: String,
    /// Labels, ownership labels included.
    pub labels: BTreeMap<String, String>,
    /// The VM's slot in the lab: its lab address ends in it, its SSH port is
    /// `ssh_port_base + slot`.
    pub slot: u8,
    /// Lab address.
    pub lab_ip: Ipv4Addr,
    /// Where the host reaches the VM's SSH.
    pub ssh: SocketAddr,
    /// Whether 80 and 443 of the lab's loopback address are forwarded to this VM.
    pub published: bool,
    /// The base image of its disk.
    pub image: PathBuf,
}

/// A VM's directory and the files in it.
#[derive(Clone, Debug)]
pub(crate) struct VmDir {
    pub dir: PathBuf,
}

impl VmDir {
    pub(crate) fn record(&self) -> PathBuf {
        self.dir.join("node.json")
    }
    pub(crate) fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub(crate) fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    pub(crate) fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub(crate) fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub(crate) fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub(crate) fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    /// The record, or `None` when the directory has none (yet).
    pub(crate) fn read_record(&self) -> Result<Option<VmRecord>> {
        let path = self.record();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Io {
                    path: path.display().to_string(),
                    message: format!("not a triad-qemu VM record: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Write the record atomically (temporary file, rename).
    pub(crate) fn write_record(&self, record: &VmRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("a VM record always serialises");
        write_private(&self.record(), &bytes)
    }

    /// The QEMU process, if it runs: the pidfile's PID, alive, and its command line
    /// naming this directory (so a reused PID is not mistaken for the VM).
    pub(crate) fn running_pid(&self) -> Option<i32> {
        running_pid(&self.pidfile(), &self.dir)
    }
}

/// The PID in `pidfile`, when that process runs and its command line mentions `path`.
pub(crate) fn running_pid(pidfile: &Path, path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    process_mentions(pid, path).then_some(pid)
}

/// Whether process `pid` runs and its command line mentions `path`.
pub(crate) fn process_mentions(pid: i32, path: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = path.as_os_str().as_encoded_bytes();
    // A zombie (exited, not yet reaped) has an empty command line.
    !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle)
}

/// Write `bytes` to `path` with mode 0600, atomically.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// The MAC of a VM's NIC: `52:54:00` (QEMU's prefix), then the lab's third octet,
/// the slot and the NIC number.
pub(crate) fn mac(settings: &QemuSettings, slot: u8, nic: u8) -> String {
    let p = settings.lab_prefix();
    format!("52:54:00:{:02x}:{slot:02x}:{nic:02x}", p[2])
}

/// The NoCloud network-config (version 2): the first NIC on QEMU's user-mode
/// network by DHCP (its only exit is the proxy), the second on the lab segment with
/// its static address and no gateway.
pub(crate) fn network_config(settings: &QemuSettings, record: &VmRecord) -> String {
    let wan = mac(settings, record.slot, 1);
    let lab = mac(settings, record.slot, 2);
    format!(
        "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"{wan}\"\n    set-name: eth0\n    dhcp4: true\n  eth1:\n    match:\n      macaddress: \"{lab}\"\n    set-name: eth1\n    addresses:\n      - {}/24\n",
        record.lab_ip
    )
}

/// The NoCloud meta-data: a stable instance id and the host name.
pub(crate) fn meta_data(record: &VmRecord) -> String {
    format!(
        "instance-id: triad-{}\nlocal-hostname: {}\n",
        record.name, record.name
    )
}

/// Run a helper program to completion, naming it in errors.
pub(crate) async fn run_tool(program: &Path, args: &[&std::ffi::OsStr], what: &str) -> Result<()> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            err(
                "run",
                what,
                FailureKind::Other,
                format!(
                    "cannot run `{}`: {e} (install it: testing/qemu/install-prereqs or docs/local.md)",
                    program.display()
                ),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(
            "run",
            what,
            FailureKind::Other,
            format!(
                "`{}` failed ({}): {}",
                program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

/// The copy-on-write disk over the base image (made once).
pub(crate) async fn ensure_disk(
    vm: &VmDir,
    image: &Path,
    disk_gib: Option<u32>,
    what: &str,
) -> Result<()> {
    if vm.disk().is_file() {
        return Ok(());
    }
    let image = std::fs::canonicalize(image).map_err(|e| io_err(image, e))?;
    let format = image_format(&image)?;
    let tmp = vm.dir.join("disk.qcow2.tmp");
    let mut args: Vec<std::ffi::OsString> = vec![
        "create".into(),
        "-q".into(),
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        format.into(),
        "-b".into(),
        image.into_os_string(),
        tmp.clone().into_os_string(),
    ];
    if let Some(g) = disk_gib {
        args.push(format!("{g}G").into());
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run_tool(Path::new("qemu-img"), &args, what).await?;
    std::fs::rename(&tmp, vm.disk()).map_err(|e| io_err(&vm.disk(), e))
}

/// `qcow2` when the file starts with the qcow2 magic, else `raw`.
fn image_format(image: &Path) -> Result<&'static str> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(image).map_err(|e| io_err(image, e))?;
    let n = f.read(&mut magic).map_err(|e| io_err(image, e))?;
    Ok(if n == 4 && &magic == b"QFI\xfb" {
        "qcow2"
    } else {
        "raw"
    })
}

/// The NoCloud seed (an ISO labelled `cidata`, made by `cloud-localds`) with the user
/// data, meta-data and network-config. The user data can hold the proxy password: the
/// files are 0600 in a 0700 directory and the plain-text copies are removed.
pub(crate) async fn ensure_seed(
    vm: &VmDir,
    settings: &QemuSettings,
    record: &VmRecord,
    user_data: &str,
    what: &str,
) -> Result<()> {
    if vm.seed().is_file() {
        return Ok(());
    }
    let ud = vm.dir.join("user-data");
    let md = vm.dir.join("meta-data");
    let nc = vm.dir.join("network-config");
    write_private(&ud, user_data.as_bytes())?;
    write_private(&md, meta_data(record).as_bytes())?;
    write_private(&nc, network_config(settings, record).as_bytes())?;
    let tmp = vm.dir.join("seed.iso.tmp");
    let net_arg = format!("--network-config={}", nc.display());
    let result = run_tool(
        Path::new("cloud-localds"),
        &[
            net_arg.as_ref(),
            tmp.as_os_str(),
            ud.as_os_str(),
            md.as_os_str(),
        ],
        what,
    )
    .await;
    let _ = std::fs::remove_file(&ud);
    result?;
    set_private(&tmp)?;
    std::fs::rename(&tmp, vm.seed()).map_err(|e| io_err(&vm.seed(), e))
}

fn set_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err(path, e))
}

/// The QEMU command line for a VM (without the binary).
pub(crate) fn qemu_args(
    settings: &QemuSettings,
    vm: &VmDir,
    record: &VmRecord,
    lab_socket: &Path,
) -> Vec<String> {
    let p = |path: PathBuf| path.display().to_string();
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    push(&["-name", &format!("triad-{}", record.name)]);
    match settings.accel.resolve() {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        _ => push(&["-accel", "tcg", "-cpu", "max"]),
    }
    push(&[
        "-m",
        &settings.memory().to_string(),
        "-smp",
        &settings.cpus.unwrap_or(1).to_string(),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        &format!("file:{}", p(vm.console())),
        "-daemonize",
        "-pidfile",
        &p(vm.pidfile()),
        "-qmp",
        &format!("unix:{},server=on,wait=off", p(vm.qmp())),
        "-drive",
        &format!("file={},if=virtio,format=qcow2,discard=unmap", p(vm.disk())),
        "-drive",
        &format!("file={},if=virtio,format=raw,readonly=on", p(vm.seed())),
    ]);
    if let Some(kernel) = &settings.kernel {
        push(&["-kernel", &kernel.display().to_string()]);
        if let Some(initrd) = &settings.initrd {
            push(&["-initrd", &initrd.display().to_string()]);
        }
        push(&[
            "-append",
            settings
                .append
                .as_deref()
                .unwrap_or("root=/dev/vda console=ttyS0 net.ifnames=0"),
        ]);
    }
    // The user-mode NIC: restrict=on cuts every path out but the forwards below.
    let addr = settings.address();
    let mut user = format!(
        "user,id=wan,restrict=on,hostfwd=tcp:{}:{}-:22",
        addr,
        record.ssh.port()
    );
    if record.published {
        user.push_str(&format!(
            ",hostfwd=tcp:{addr}:80-:80,hostfwd=tcp:{addr}:443-:443"
        ));
    }
    if let Some(proxy) = settings.proxy {
        let (ip, port) = GUEST_PROXY
            .split_once(':')
            .expect("GUEST_PROXY is host:port");
        user.push_str(&format!(
            ",guestfwd=tcp:{ip}:{port}-cmd:socat - TCP:{}:{}",
            proxy.ip(),
            proxy.port()
        ));
    }
    push(&["-netdev", &user]);
    push(&[
        "-device",
        &format!(
            "virtio-net-pci,netdev=wan,mac={}",
            mac(settings, record.slot, 1)
        ),
    ]);
    // The lab NIC on the user-space switch (a VDE switch over Unix sockets).
    push(&[
        "-netdev",
        &format!("vde,id=lab,sock={}", lab_socket.display()),
        "-device",
        &format!(
            "virtio-net-pci,netdev=lab,mac={}",
            mac(settings, record.slot, 2)
        ),
    ]);
    a
}

/// Start QEMU for `vm` (it daemonizes once the VM is set up) and return its PID.
pub(crate) async fn launch(
    settings: &QemuSettings,
    vm: &VmDir,
    record: &VmRecord,
    lab_socket: &Path,
    what: &str,
) -> Result<i32> {
    let binary = settings
        .qemu_binary
        .clone()
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"));
    let args = qemu_args(settings, vm, record, lab_socket);
    let _ = std::fs::remove_file(vm.pidfile());
    let _ = std::fs::remove_file(vm.qmp());
    let log = std::fs::File::create(vm.qemu_log()).map_err(|e| io_err(&vm.qemu_log(), e))?;
    tracing::debug!(vm = %record.name, "starting QEMU");
    let status = tokio::process::Command::new(&binary)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .status()
        .await
        .map_err(|e| {
            err(
                "start",
                what,
                FailureKind::Other,
                format!(
                    "cannot run `{}`: {e} (install qemu-system-x86, see docs/local.md)",
                    binary.display()
                ),
            )
        })?;
    if !status.success() {
        let log = std::fs::read_to_string(vm.qemu_log()).unwrap_or_default();
        let kind = if log.contains("Could not set up host forwarding") {
            FailureKind::Conflict
        } else {
            FailureKind::Other
        };
        return Err(err(
            "start",
            what,
            kind,
            format!("QEMU exited with {status}: {}", log.trim()),
        ));
    }
    vm.running_pid().ok_or_else(|| {
        err(
            "start",
            what,
            FailureKind::Other,
            format!(
                "QEMU daemonized but {} names no running QEMU",
                vm.pidfile().display()
            ),
        )
    })
}

/// Send QMP commands over the VM's socket (after the capabilities handshake) and
/// return each reply's `return` value. Bounded by `timeout`.
pub(crate) async fn qmp(
    socket: &Path,
    commands: &[&str],
    timeout: Duration,
) -> std::io::Result<Vec<serde_json::Value>> {
    tokio::time::timeout(timeout, qmp_inner(socket, commands))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "QMP did not answer"))?
}

async fn qmp_inner(socket: &Path, commands: &[&str]) -> std::io::Result<Vec<serde_json::Value>> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    // Greeting.
    lines
        .next_line()
        .await?
        .ok_or_else(|| bad("QMP closed before its greeting".into()))?;
    let mut out = Vec::new();
    for cmd in std::iter::once("qmp_capabilities").chain(commands.iter().copied()) {
        write
            .write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes())
            .await?;
        loop {
            let Some(line) = lines.next_line().await? else {
                // `quit` closes the socket, possibly before its reply.
                if cmd == "quit" {
                    out.push(serde_json::Value::Null);
                    break;
                }
                return Err(bad(format!("QMP closed before answering {cmd}")));
            };
            let v: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| bad(format!("QMP sent `{line}`: {e}")))?;
            if let Some(r) = v.get("return") {
                if cmd != "qmp_capabilities" {
                    out.push(r.clone());
                }
                break;
            }
            if let Some(e) = v.get("error") {
                return Err(bad(format!("QMP {cmd}: {e}")));
            }
            // An event: keep reading.
        }
    }
    Ok(out)
}

/// Stop the VM: QMP `quit`, then SIGTERM, then SIGKILL, each given a few seconds.
/// Returns once the process is gone.
pub(crate) async fn stop(vm: &VmDir, what: &str) -> Result<()> {
    let Some(pid) = vm.running_pid() else {
        return Ok(());
    };
    if let Err(e) = qmp(&vm.qmp(), &["quit"], Duration::from_secs(5)).await {
        tracing::debug!(vm = %vm.dir.display(), error = %e, "QMP quit failed; signalling");
    }
    for signal in [None, Some(libc::SIGTERM), Some(libc::SIGKILL)] {
        if let Some(s) = signal {
            // SAFETY: kill(2) with a PID checked to be this VM's QEMU.
            unsafe { libc::kill(pid, s) };
        }
        for _ in 0..50 {
            if !process_mentions(pid, &vm.dir) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Err(err(
        "stop",
        what,
        FailureKind::Transient,
        format!("QEMU (pid {pid}) did not exit after quit, SIGTERM and SIGKILL"),
    ))
}
