//! triad-core's node conformance checks against real QEMU VMs.

use std::time::Duration;

use triad_core::conformance::{self, Fixture};
use triad_core::spec::ClusterRef;

use crate::common::{provider, settings, state_dir, NEEDS, VMS};

fn fixture(name: &str) -> Fixture {
    Fixture::new(
        ClusterRef::new(name, "local"),
        "example.com",
        "rancher.example.com",
    )
    .with_timeout(Duration::from_secs(120))
    .with_poll_interval(Duration::from_millis(200))
}

/// Run `check` against a provider on a fresh state directory, then assert that
/// nothing runs and no VM file is left.
async fn run<F, Fut>(test: &str, check: F)
where
    F: FnOnce(triad_qemu::QemuProvider, Fixture) -> Fut,
    Fut: std::future::Future<Output = triad_qemu::QemuProvider>,
{
    let _vms = VMS.lock().await;
    let dir = state_dir(test);
    let p = provider(settings(dir.clone(), &["lab-a", "lab-b", "lab-c"]));
    let p = check(p, fixture(test)).await;
    assert_eq!(
        p.running_pids().unwrap(),
        Vec::<i32>::new(),
        "QEMU or the lab switch still runs"
    );
    let left: Vec<_> = std::fs::read_dir(dir.join("vms")).unwrap().collect();
    assert!(left.is_empty(), "VM directories left: {left:?}");
    assert!(
        !dir.join("lab").exists(),
        "the lab switch's directory is left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "boots QEMU VMs; scripts/test builds the image"]
async fn nodes_create_discover_delete() {
    let _ = NEEDS;
    run("conf-a", |p, fx| async move {
        conformance::nodes_create_discover_delete(&p, &fx).await;
        p
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "boots QEMU VMs; scripts/test builds the image"]
async fn node_create_is_idempotent() {
    run("conf-b", |p, fx| async move {
        conformance::node_create_is_idempotent(&p, &fx).await;
        p
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "boots QEMU VMs; scripts/test builds the image"]
async fn node_delete_missing_is_ok() {
    run("conf-c", |p, fx| async move {
        conformance::node_delete_missing_is_ok(&p, &fx).await;
        p
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "boots QEMU VMs; scripts/test builds the image"]
async fn nodes_spread_over_zones() {
    run("conf-d", |p, fx| async move {
        conformance::nodes_spread_over_zones(&p, &fx).await;
        p
    })
    .await;
}
