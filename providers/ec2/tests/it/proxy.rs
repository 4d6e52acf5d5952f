//! An operator behind a proxy: the SDK clients send every call through the proxy
//! named by `HTTP_PROXY` / `HTTPS_PROXY`, except hosts in `NO_PROXY`. Proven with a
//! real tinyproxy in front of moto: its log shows the requests.
//!
//! The proxy variables are process-wide, so the test runs itself again as a child
//! process with them set (and the endpoint and credentials in the standard AWS
//! variables, as an operator's shell would have them).

use std::time::Duration;

use triad_core::conformance::tinyproxy;
use triad_core::spec::ClusterRef;
use triad_ec2::{DnsProvider, Ec2, LoadBalancerProvider, NodeProvider};

use crate::{moto_url, unique, REGION};

const TEST: &str = "proxy::sdk_calls_go_through_the_proxy_from_the_environment";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto and tinyproxy; scripts/test starts them"]
async fn sdk_calls_go_through_the_proxy_from_the_environment() {
    if tinyproxy::is_child() {
        child().await
    } else {
        parent().await
    }
}

/// In the child: the example's path — the standard environment, the default
/// retry (tinyproxy closes a connection after each answer, so a pooled connection
/// is sometimes dead: the SDK retries that transient fault) — and calls to each of
/// the three services.
async fn child() {
    let config =
        triad_ec2::client::load_sdk_config(REGION, triad_ec2::settings::DEFAULT_MAX_ATTEMPTS).await;
    let aws = Ec2::from_sdk_config(&config, REGION, crate::default_vpc());
    let cluster = ClusterRef::new(unique("proxy"), REGION);
    let zones = aws.zones(&cluster).await.expect("EC2 through the proxy");
    assert!(!zones.is_empty());
    assert!(aws
        .discover_load_balancer(&cluster)
        .await
        .expect("ELBv2 through the proxy")
        .is_none());
    let err = aws
        .lookup("no-such-zone.test", "x.no-such-zone.test")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no hosted zone"),
        "Route 53 answered: {err}"
    );
}

fn run_child(proxy: &str, no_proxy: Option<&str>) {
    let moto = moto_url();
    tinyproxy::run_child(
        TEST,
        proxy,
        no_proxy,
        &[
            ("AWS_PROFILE", None),
            ("AWS_ENDPOINT_URL", Some(&moto)),
            ("AWS_ACCESS_KEY_ID", Some("testing")),
            ("AWS_SECRET_ACCESS_KEY", Some("testing")),
            ("AWS_REGION", Some(REGION)),
            ("AWS_EC2_METADATA_DISABLED", Some("true")),
            ("AWS_CONFIG_FILE", Some("/dev/null")),
            ("AWS_SHARED_CREDENTIALS_FILE", Some("/dev/null")),
        ],
    );
}

async fn parent() {
    let (proxy, log) = tinyproxy::from_env();
    let moto = moto_url();
    let host_port = moto
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    let before = tinyproxy::requests(&log, &host_port);
    let r53_before = tinyproxy::requests(&log, "/2013-04-01/hostedzonesbyname");
    run_child(&proxy, None);
    let after = tinyproxy::wait_for(&log, &host_port, before + 3).await;
    assert!(
        after >= before + 3,
        "tinyproxy's log ({log}) shows {} requests to {host_port}, expected at least 3 (EC2, ELBv2, Route 53)",
        after - before
    );

    assert!(
        tinyproxy::requests(&log, "/2013-04-01/hostedzonesbyname") > r53_before,
        "Route 53's call did not go through the proxy"
    );

    // NO_PROXY is honoured: the same calls go straight to moto.
    run_child(&proxy, Some("127.0.0.1,localhost"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tinyproxy::requests(&log, &host_port),
        after,
        "with NO_PROXY=127.0.0.1 nothing may go through the proxy"
    );
}
