//! An operator behind a proxy: the vSphere client (vim_rs over reqwest) sends its
//! SOAP calls through the proxy named by `HTTPS_PROXY` (a `CONNECT` tunnel, TLS to
//! vCenter end to end), except for hosts in `NO_PROXY`. Proven with a real tinyproxy
//! in front of vcsim: its log shows the tunnel.
//!
//! The proxy variables are process-wide, so the test runs itself again as a child
//! process with them set.

use std::time::Duration;

use triad_core::conformance::tinyproxy;
use triad_core::spec::ClusterRef;
use triad_core::NodeProvider;

use crate::common::provider;

const TEST: &str = "proxy::soap_calls_go_through_the_proxy_from_the_environment";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs vcsim and tinyproxy; scripts/test starts them"]
async fn soap_calls_go_through_the_proxy_from_the_environment() {
    if tinyproxy::is_child() {
        child().await
    } else {
        parent().await
    }
}

/// In the child: log in, read the failure domains and list the nodes.
async fn child() {
    let vs = provider("proxy-").await;
    let cluster = ClusterRef::new("proxy", "dc0");
    let zones = vs.zones(&cluster).await.expect("vCenter through the proxy");
    assert_eq!(zones.len(), 3, "{zones:?}");
    assert!(vs
        .discover_nodes(&cluster)
        .await
        .expect("list VMs")
        .is_empty());
}

async fn parent() {
    let (proxy, log) = tinyproxy::from_env();
    let vcsim = std::env::var("TRIAD_VCSIM_URL").expect("TRIAD_VCSIM_URL (run scripts/test)");
    let host_port = vcsim
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let before = tinyproxy::requests(&log, &host_port);
    tinyproxy::run_child(TEST, &proxy, None, &[]);
    let after = tinyproxy::wait_for(&log, &host_port, before + 1).await;
    assert!(
        after > before,
        "tinyproxy's log ({log}) shows no CONNECT to vCenter at {host_port}"
    );

    tinyproxy::run_child(TEST, &proxy, Some("127.0.0.1,localhost"), &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tinyproxy::requests(&log, &host_port),
        after,
        "with NO_PROXY=127.0.0.1 nothing may go through the proxy"
    );
}
