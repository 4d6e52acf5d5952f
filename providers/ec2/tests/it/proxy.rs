//! An operator behind a proxy: the SDK clients send every call through the proxy
//! named by `HTTP_PROXY` / `HTTPS_PROXY`, except hosts in `NO_PROXY`. Proven with a
//! real tinyproxy in front of moto: its log shows the requests.
//!
//! The proxy variables are process-wide, so the test runs itself again as a child
//! process with them set (and the endpoint and credentials in the standard AWS
//! variables, as an operator's shell would have them).

use std::process::Command;
use std::time::Duration;

use triad_core::spec::ClusterRef;
use triad_ec2::{DnsProvider, Ec2, Ec2Settings, LoadBalancerProvider, NodeProvider};

use crate::{moto_url, unique, REGION};

const TEST: &str = "proxy::sdk_calls_go_through_the_proxy_from_the_environment";
const CHILD: &str = "TRIAD_PROXY_CHILD";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto and tinyproxy; scripts/test starts them"]
async fn sdk_calls_go_through_the_proxy_from_the_environment() {
    if std::env::var_os(CHILD).is_some() {
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
    let aws = Ec2::from_sdk_config(&config, REGION, Ec2Settings::default());
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

fn requests_to(log: &str, host_port: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Request (") && l.contains(host_port))
        .count()
}

fn run_child(proxy: &str, no_proxy: Option<&str>) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        TEST,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env("HTTP_PROXY", proxy)
    .env("HTTPS_PROXY", proxy)
    .env_remove("http_proxy")
    .env_remove("https_proxy")
    .env_remove("NO_PROXY")
    .env_remove("no_proxy")
    .env_remove("AWS_PROFILE")
    .env("AWS_ENDPOINT_URL", moto_url())
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", REGION)
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    if let Some(n) = no_proxy {
        cmd.env("NO_PROXY", n);
    }
    let out = cmd.output().expect("run the test binary again");
    assert!(
        out.status.success(),
        "the child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn parent() {
    let proxy = std::env::var("TRIAD_TINYPROXY_URL").unwrap_or_else(|_| {
        panic!("TRIAD_TINYPROXY_URL is not set: this test needs tinyproxy; run scripts/test")
    });
    let log = std::env::var("TRIAD_TINYPROXY_LOG").unwrap_or_else(|_| {
        panic!("TRIAD_TINYPROXY_LOG is not set: this test needs tinyproxy's log; run scripts/test")
    });
    let moto = moto_url();
    let host_port = moto
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    let before = requests_to(&log, &host_port);
    let r53_before = requests_to(&log, "/2013-04-01/hostedzonesbyname");
    run_child(&proxy, None);
    let mut after = requests_to(&log, &host_port);
    for _ in 0..50 {
        if after >= before + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = requests_to(&log, &host_port);
    }
    assert!(
        after >= before + 3,
        "tinyproxy's log ({log}) shows {} requests to {host_port}, expected at least 3 (EC2, ELBv2, Route 53)",
        after - before
    );

    assert!(
        requests_to(&log, "/2013-04-01/hostedzonesbyname") > r53_before,
        "Route 53's call did not go through the proxy"
    );

    // NO_PROXY is honoured: the same calls go straight to moto.
    run_child(&proxy, Some("127.0.0.1,localhost"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        requests_to(&log, &host_port),
        after,
        "with NO_PROXY=127.0.0.1 nothing may go through the proxy"
    );
}
