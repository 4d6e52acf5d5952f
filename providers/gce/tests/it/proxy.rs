//! An operator behind a proxy: the Compute Engine and Cloud DNS clients, and the
//! OAuth token endpoint of Application Default Credentials, send every call through
//! the proxy named by `HTTP_PROXY` / `HTTPS_PROXY`, except hosts in `NO_PROXY`.
//! Proven with a real tinyproxy in front of testing/fake-gce: its log shows the
//! requests.
//!
//! The proxy variables are process-wide, so the test runs itself again as a child
//! process with them set, and with `GOOGLE_APPLICATION_CREDENTIALS` naming an
//! `authorized_user` file whose `token_uri` is the fake's token endpoint (so the
//! credentials really fetch a token, as with a real account).

use std::time::Duration;

use triad_core::conformance::tinyproxy;
use triad_core::provider::{DnsProvider, NodeProvider};
use triad_core::spec::ClusterRef;
use triad_gce::{Connection, GceProvider};

use crate::{endpoint, http, seed, settings, REGION, ZONE};

const TEST: &str = "proxy::api_and_token_calls_go_through_the_proxy_from_the_environment";
const PROJECT: &str = "triad-proxy";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs testing/fake-gce and tinyproxy; scripts/test starts them"]
async fn api_and_token_calls_go_through_the_proxy_from_the_environment() {
    if tinyproxy::is_child() {
        child().await
    } else {
        parent().await
    }
}

/// In the child: Application Default Credentials (not anonymous), then one Compute
/// Engine call and one Cloud DNS call.
async fn child() {
    let connection = Connection {
        endpoint: Some(endpoint()),
        anonymous: false,
    };
    let gce = GceProvider::new(settings(PROJECT), None, connection)
        .await
        .expect("connect with ADC");
    let cluster = ClusterRef::new("proxy", REGION);
    let zones = gce
        .zones(&cluster)
        .await
        .expect("Compute Engine through the proxy");
    assert_eq!(zones.len(), 3, "{zones:?}");
    let record = gce
        .lookup(ZONE, &format!("nothing.{ZONE}"))
        .await
        .expect("Cloud DNS through the proxy");
    assert!(record.is_none());
}

fn tokens() -> u64 {
    let (_, body) = http("GET", "/_fake/tokens", "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["tokens"].as_u64().unwrap()
}

fn run_child(proxy: &str, no_proxy: Option<&str>, adc: &std::path::Path) {
    let adc = adc.to_str().expect("a UTF-8 temp path");
    tinyproxy::run_child(
        TEST,
        proxy,
        no_proxy,
        &[("GOOGLE_APPLICATION_CREDENTIALS", Some(adc))],
    );
}

async fn parent() {
    let (proxy, log) = tinyproxy::from_env();
    seed(PROJECT);
    let fake = endpoint();
    let adc = std::env::temp_dir().join(format!("triad-adc-{}.json", std::process::id()));
    std::fs::write(
        &adc,
        serde_json::json!({
            "type": "authorized_user",
            "client_id": "triad-test.apps.googleusercontent.com",
            "client_secret": "not-a-secret",
            "refresh_token": "not-a-token",
            "token_uri": format!("{fake}/_fake/token"),
        })
        .to_string(),
    )
    .unwrap();
    let host_port = fake
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let count = |needle: &str| tinyproxy::requests(&log, needle);

    let (before, compute, dns, token) = (
        count(&host_port),
        count("/compute/v1/projects/triad-proxy/regions/"),
        count("/dns/v1/projects/triad-proxy/managedZones"),
        count("/_fake/token"),
    );
    let tokens_before = tokens();
    run_child(&proxy, None, &adc);
    let after = tinyproxy::wait_for(&log, &host_port, before + 3).await;
    assert!(tokens() > tokens_before, "the credentials fetched no token");
    assert!(
        count("/compute/v1/projects/triad-proxy/regions/") > compute,
        "Compute Engine's call did not go through the proxy ({log})"
    );
    assert!(
        count("/dns/v1/projects/triad-proxy/managedZones") > dns,
        "Cloud DNS's call did not go through the proxy ({log})"
    );
    assert!(
        count("/_fake/token") > token,
        "the token request did not go through the proxy ({log})"
    );

    // NO_PROXY is honoured: the same calls go straight to the fake.
    let tokens_before = tokens();
    run_child(&proxy, Some("127.0.0.1,localhost"), &adc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokens() > tokens_before,
        "the second child fetched a token too"
    );
    assert_eq!(
        count(&host_port),
        after,
        "with NO_PROXY=127.0.0.1 nothing may go through the proxy"
    );
    let _ = std::fs::remove_file(&adc);
}
