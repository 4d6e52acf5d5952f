//! A VM's life beyond the conformance suite: what a crashed run leaves is found by a
//! new provider, a dead QEMU is restarted by create_node, another cluster's VM is
//! never touched, and delete leaves no process, disk or socket.

use std::time::Duration;

use triad_core::labels::Role;
use triad_core::model::{NodeRequest, NodeState};
use triad_core::provider::NodeProvider;
use triad_core::spec::ClusterRef;
use triad_core::{Error, FailureKind};

use crate::common::{provider, settings, state_dir, NEEDS, VMS};

fn request(cluster: &ClusterRef, name: &str) -> NodeRequest {
    let mut request = NodeRequest::new(name, "lab-a");
    request.labels = cluster.labels_for(Role::Node);
    request.user_data = "#cloud-config\nhostname: life\n".into();
    request
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "boots QEMU VMs; scripts/test builds the image"]
async fn crash_recovery_ownership_and_clean_delete() {
    let _ = NEEDS;
    let _vms = VMS.lock().await;
    let dir = state_dir("life");
    let cluster = ClusterRef::new("life", "local");
    let timeout = Duration::from_secs(120);

    let first = provider(settings(dir.clone(), &["lab-a"]));
    let node = first
        .create_node(&cluster, &request(&cluster, "life-1"))
        .await
        .unwrap();
    let node = first.wait_node(&cluster, &node, timeout).await.unwrap();
    assert!(node.is_ready(), "{node:?}");
    assert_eq!(node.private_ip, Some("10.78.0.10".parse().unwrap()));
    assert_eq!(node.ssh.as_deref(), Some("127.0.0.9:41010"));
    assert_eq!(node.public_ip, None, "only a balancer VM is published");
    let vm = dir.join("vms/life-1");
    for f in [
        "node.json",
        "disk.qcow2",
        "seed.iso",
        "qemu.pid",
        "qmp.sock",
    ] {
        assert!(vm.join(f).exists(), "{f} is missing in {}", vm.display());
    }
    assert!(
        !vm.join("user-data").exists(),
        "the plain-text user data is left beside the seed"
    );
    drop(first);

    // A new process (provider) finds what the last one made.
    let second = provider(settings(dir.clone(), &["lab-a"]));
    let found = second.discover_nodes(&cluster).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, node.id);
    assert_eq!(found[0].state, NodeState::Running);

    // Another cluster neither sees nor takes the VM.
    let other = ClusterRef::new("life-other", "local");
    assert!(second.discover_nodes(&other).await.unwrap().is_empty());
    match second.create_node(&other, &request(&other, "life-1")).await {
        Err(Error::Provider {
            kind: FailureKind::Conflict,
            ..
        }) => {}
        r => panic!("another cluster's create_node of life-1 should conflict: {r:?}"),
    }
    assert!(second.delete_node(&other, &found[0]).await.is_err());

    // QEMU dies: discovery says stopped, create_node starts it again on the same disk.
    let pid: i32 = std::fs::read_to_string(vm.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let mut stopped = false;
    for _ in 0..50 {
        if second.discover_nodes(&cluster).await.unwrap()[0].state == NodeState::Stopped {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "a killed VM is still discovered as running");
    let again = second
        .create_node(&cluster, &request(&cluster, "life-1"))
        .await
        .unwrap();
    assert_eq!(again.id, node.id);
    let again = second.wait_node(&cluster, &again, timeout).await.unwrap();
    assert!(again.is_ready());

    second.delete_node(&cluster, &again).await.unwrap();
    assert!(!vm.exists(), "the VM's directory is left");
    assert_eq!(
        second.cleanup(&cluster).await.unwrap().len(),
        1,
        "the lab switch goes with the last VM"
    );
    assert!(second.cleanup(&cluster).await.unwrap().is_empty());
    assert!(second.running_pids().unwrap().is_empty());
    assert!(!dir.join("lab").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
