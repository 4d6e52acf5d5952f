//! Settings and providers for the test VMs.

use std::path::PathBuf;
use std::time::Duration;

use triad_qemu::{Accel, QemuProvider, QemuSettings};

/// Why a VM test needs scripts/test.
pub(crate) const NEEDS: &str = "boots QEMU VMs; scripts/test builds the image";

/// VM tests take this lock: at most one test's VMs run at a time (the machine has
/// few cores, and every VM test boots up to three).
pub(crate) static VMS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn image_dir() -> PathBuf {
    PathBuf::from(std::env::var("TRIAD_QEMU_IMAGE_DIR").unwrap_or_else(|_| {
        panic!(
            "TRIAD_QEMU_IMAGE_DIR is not set: run these tests through scripts/test, which builds the image with testing/qemu/build-image"
        )
    }))
}

/// A fresh, empty state directory for one test.
pub(crate) fn state_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("triad-qemu-it-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Settings for the test image with `state_dir`, small VMs, no proxy, and a
/// loopback address and SSH ports of their own.
pub(crate) fn settings(state_dir: PathBuf, zones: &[&str]) -> QemuSettings {
    let images = image_dir();
    QemuSettings {
        image: images.join("disk.qcow2"),
        kernel: Some(images.join("vmlinuz")),
        initrd: Some(images.join("initrd.img")),
        append: None,
        state_dir,
        memory_mib: Some(384),
        cpus: None,
        accel: Accel::Auto,
        address: Some("127.0.0.9".parse().unwrap()),
        ssh_port_base: Some(41000),
        proxy: None,
        lab_network: Some("10.78.0.0/24".into()),
        qemu_binary: None,
        zones: zones.iter().map(|z| (*z).to_owned()).collect(),
    }
}

/// A provider over `settings`.
pub(crate) fn provider(settings: QemuSettings) -> QemuProvider {
    QemuProvider::new(settings)
        .expect("valid settings")
        .with_poll_interval(Duration::from_millis(200))
}
