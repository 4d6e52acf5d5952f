//! The `[qemu]` section of the spec.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use triad_core::error::SpecProblem;
use triad_core::spec::{ProviderSection, ValidSpec};
use triad_core::Error;

/// Memory of a VM in MiB when `[qemu] memory_mib` is absent.
pub const DEFAULT_MEMORY_MIB: u32 = 768;
/// The loopback address of the lab when `[qemu] address` is absent.
pub const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The first host SSH port when `[qemu] ssh_port_base` is absent: a VM whose lab address
/// ends in `.N` is reached on `ssh_port_base + N`.
pub const DEFAULT_SSH_PORT_BASE: u16 = 2200;
/// The lab segment when `[qemu] lab_network` is absent.
pub const DEFAULT_LAB_NETWORK: &str = "10.77.0.0/24";
/// Where guests find the proxy: QEMU's user-mode network forwards connections to
/// this guest-side address to `[qemu] proxy` on the host. Point the spec's
/// `[proxy] http` at `http://10.0.2.100:3128`.
pub const GUEST_PROXY: &str = "10.0.2.100:3128";
/// The zone of every node when the spec names none.
pub const DEFAULT_ZONE: &str = "local";

/// CPU virtualization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when the host has hardware virtualization (`/sys/module/kvm_intel` or
    /// `/sys/module/kvm_amd`), else TCG.
    #[default]
    Auto,
    /// KVM (`-accel kvm -cpu host`).
    Kvm,
    /// Software emulation (`-accel tcg -cpu max`).
    Tcg,
}

impl Accel {
    /// KVM or TCG for this host: `Auto` looks for the kvm_intel/kvm_amd modules (a
    /// `/dev/kvm` alone may be a paravirtual nested KVM that cannot run a stock kernel).
    pub fn resolve(self) -> Accel {
        match self {
            Accel::Auto => {
                if std::path::Path::new("/sys/module/kvm_intel").exists()
                    || std::path::Path::new("/sys/module/kvm_amd").exists()
                {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
            other => other,
        }
    }
}

/// `[qemu]`: where the VMs' files live, what they boot and how the lab is wired.
///
/// ```toml
/// [qemu]
/// image = "/var/lib/triad/debian-12.qcow2"  # a cloud image with cloud-init
/// kernel = "/var/lib/triad/vmlinuz"         # optional: boot it directly
/// initrd = "/var/lib/triad/initrd.img"
/// state_dir = "/var/lib/triad/lab"
/// memory_mib = 768
/// address = "127.0.0.2"                     # SSH, 80 and 443 are forwarded here
/// proxy = "127.0.0.1:3128"                  # the only way out of the lab
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSettings {
    /// The base image (qcow2 or raw) every node's copy-on-write disk sits on: a Debian
    /// or Ubuntu cloud image with cloud-init and the NoCloud data source.
    pub image: PathBuf,
    /// A kernel to boot directly (`-kernel`); the image's boot loader when absent.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initrd for `kernel`.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line for `kernel`; `root=/dev/vda console=ttyS0
    /// net.ifnames=0` when absent.
    #[serde(default)]
    pub append: Option<String>,
    /// Directory holding one sub-directory per VM (disk, seed, pidfile, QMP socket,
    /// labels) and the lab switch. Discovery reads it, so a crashed run's VMs are found.
    pub state_dir: PathBuf,
    /// Memory per VM in MiB (768 by default).
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Virtual CPUs per VM (1 by default).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// `auto` (default), `kvm` or `tcg`.
    #[serde(default)]
    pub accel: Accel,
    /// The lab's loopback address (`127.0.0.N`): each VM's SSH is forwarded from a port
    /// on it, and the balancer VM's 80 and 443 from the same ports on it, so a DNS A
    /// record can point at it.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// The first SSH port (2200 by default): the VM at lab address `.N` gets `base + N`.
    #[serde(default)]
    pub ssh_port_base: Option<u16>,
    /// The host-side proxy (`127.0.0.1:3128`) guests reach at `10.0.2.100:3128`. Without
    /// it the guests have no way out at all.
    #[serde(default)]
    pub proxy: Option<SocketAddr>,
    /// The lab segment's IPv4 network (a `/24`, `10.77.0.0/24` by default). It exists
    /// only inside the guests and a user-space switch, never on the host.
    #[serde(default)]
    pub lab_network: Option<String>,
    /// The QEMU binary (`qemu-system-x86_64` by default).
    #[serde(default)]
    pub qemu_binary: Option<PathBuf>,
    /// Zones; the spec's `zones` when absent, `["local"]` when both are.
    #[serde(default)]
    pub zones: Vec<String>,
}

impl QemuSettings {
    /// Read `[qemu]` from the spec: a missing section or a wrong field is an
    /// [`Error::InvalidSpec`] naming the field.
    pub fn from_spec(spec: &ValidSpec) -> Result<Self, Error> {
        let mut s: Self = ProviderSection::parse_required(
            spec.qemu.as_ref(),
            "qemu",
            "add [qemu] with image and state_dir (see docs/local.md)",
            |settings: &Self| settings.problems(Some(spec)),
        )?;
        if s.zones.is_empty() {
            s.zones = spec.zones.clone();
        }
        Ok(s)
    }

    /// Every problem of these settings, alone and (when given) together with the spec.
    /// Files are checked for existence; nothing is started.
    pub fn problems(&self, spec: Option<&ValidSpec>) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, problem: String, fix: &str| {
            out.push(SpecProblem {
                field: format!("qemu.{field}"),
                problem,
                fix: fix.to_owned(),
            })
        };
        for (field, path) in [
            ("image", Some(&self.image)),
            ("kernel", self.kernel.as_ref()),
            ("initrd", self.initrd.as_ref()),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    bad(
                        field,
                        format!("`{}` is not a file", p.display()),
                        "give the path of an existing file (docs/local.md says how to get a cloud image)",
                    );
                }
            }
        }
        if self.initrd.is_some() && self.kernel.is_none() {
            bad(
                "initrd",
                "an initrd without a kernel".into(),
                "set kernel too, or leave initrd out",
            );
        }
        if self.state_dir.as_os_str().is_empty() {
            bad(
                "state_dir",
                "is empty".into(),
                "name a directory triad may create and own",
            );
        }
        if let Some(m) = self.memory_mib {
            if !(256..=1 << 20).contains(&m) {
                bad(
                    "memory_mib",
                    format!("{m} MiB is not between 256 MiB and 1 TiB"),
                    "give at least 256 (768 suits a test VM)",
                );
            }
        }
        if self.cpus == Some(0) {
            bad("cpus", "is 0".into(), "give at least 1");
        }
        if let Some(a) = self.address {
            if !a.is_loopback() {
                bad(
                    "address",
                    format!("{a} is not a loopback address"),
                    "give an address in 127.0.0.0/8 (127.0.0.2, 127.0.0.3, …): the lab is reached only on loopback",
                );
            }
        }
        if let Some(base) = self.ssh_port_base {
            if !(1024..=u16::MAX - 255).contains(&base) {
                bad(
                    "ssh_port_base",
                    format!("{base} leaves no room for 255 ports above 1023"),
                    "give a port between 1024 and 65280",
                );
            }
        }
        if let Some(p) = self.proxy {
            if !p.ip().is_loopback() {
                bad(
                    "proxy",
                    format!("{p} is not on loopback"),
                    "run the proxy on 127.0.0.1 and give its host:port",
                );
            }
        }
        if let Err(e) = lab_network(self.lab_network.as_deref()) {
            bad(
                "lab_network",
                e,
                "give a private IPv4 /24 such as 10.77.0.0/24",
            );
        }
        if let Some(spec) = spec {
            if let (Some(_), Some(proxy)) = (self.proxy, &spec.proxy) {
                let url = proxy.http.expose();
                let hostport = url
                    .split_once("://")
                    .map_or(url, |(_, rest)| rest)
                    .rsplit('@')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('/');
                if hostport != GUEST_PROXY {
                    out.push(SpecProblem {
                        field: "proxy.http".into(),
                        problem: format!(
                            "the QEMU lab's guests reach the proxy at {GUEST_PROXY}, not at the address in proxy.http"
                        ),
                        fix: format!("set proxy.http = \"http://{GUEST_PROXY}\""),
                    });
                }
            }
        }
        out
    }

    /// Memory per VM in MiB.
    pub fn memory(&self) -> u32 {
        self.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB)
    }

    /// The lab's loopback address.
    pub fn address(&self) -> Ipv4Addr {
        self.address.unwrap_or(DEFAULT_ADDRESS)
    }

    /// The first SSH port.
    pub fn ssh_port_base(&self) -> u16 {
        self.ssh_port_base.unwrap_or(DEFAULT_SSH_PORT_BASE)
    }

    /// The lab network's first three octets.
    pub fn lab_prefix(&self) -> [u8; 3] {
        lab_network(self.lab_network.as_deref()).unwrap_or([10, 77, 0])
    }

    /// The zones nodes are spread over.
    pub fn zones(&self) -> Vec<String> {
        if self.zones.is_empty() {
            vec![DEFAULT_ZONE.to_owned()]
        } else {
            self.zones.clone()
        }
    }
}

/// The first three octets of a private `/24` (`10.77.0.0/24` when `None`).
fn lab_network(text: Option<&str>) -> Result<[u8; 3], String> {
    let text = text.unwrap_or(DEFAULT_LAB_NETWORK);
    let Some((ip, len)) = text.split_once('/') else {
        return Err(format!("`{text}` is not a CIDR"));
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("`{text}` is not an IPv4 CIDR"))?;
    if len != "24" {
        return Err(format!("`{text}` is not a /24"));
    }
    if !ip.is_private() {
        return Err(format!("`{text}` is not a private network"));
    }
    let o = ip.octets();
    if [o[0], o[1], o[2]] == [10, 0, 2] {
        return Err("10.0.2.0/24 is QEMU's user-mode network".into());
    }
    Ok([o[0], o[1], o[2]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_networks() {
        assert_eq!(lab_network(None), Ok([10, 77, 0]));
        assert_eq!(lab_network(Some("192.168.50.0/24")), Ok([192, 168, 50]));
        assert!(lab_network(Some("10.0.2.0/24")).is_err());
        assert!(lab_network(Some("8.8.8.0/24")).is_err());
        assert!(lab_network(Some("10.1.0.0/16")).is_err());
        assert!(lab_network(Some("nope")).is_err());
    }
}
