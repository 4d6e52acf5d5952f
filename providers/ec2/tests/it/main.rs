//! triad-ec2's integration tests. Those marked `#[ignore]` need a moto server (and
//! one a tinyproxy) that `scripts/test` starts and names in `TRIAD_MOTO_URL`
//! (`TRIAD_TINYPROXY_URL`, `TRIAD_TINYPROXY_LOG`); they fail when it is missing.
//!
//! Every test uses its own cluster name and hosted zone, so they run in parallel
//! against one moto server without seeing each other.

mod bad_input;
mod conformance;
mod day2;
mod e2e;
mod egress;
mod mode_change;
mod proxy;
mod rolling;
mod scripted;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use triad_ec2::{Ec2, Ec2Settings};

pub const REGION: &str = "us-east-1";

/// The moto endpoint scripts/test started, or a failure saying how to get one.
pub fn moto_url() -> String {
    std::env::var("TRIAD_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "TRIAD_MOTO_URL is not set: this test needs a moto server; run scripts/test, \
             or start `moto_server -H 127.0.0.1 -p PORT` and export TRIAD_MOTO_URL=http://127.0.0.1:PORT"
        )
    })
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0);
    format!("{prefix}{n}x{t}")
}

/// SDK configuration for moto: static test credentials, fast retries.
pub async fn sdk_config(url: &str, http: Option<SharedHttpClient>, attempts: u32) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        );
    loader = loader.http_client(http.unwrap_or_else(triad_ec2::client::http_client));
    loader.load().await
}

/// Settings for moto's default VPC, whose default subnets give instances public
/// IPs: direct egress accepted (nodes still get no public IP), as most tests are
/// about something else. `egress.rs` tests the refusal.
pub fn default_vpc() -> Ec2Settings {
    Ec2Settings {
        allow_direct_egress: true,
        ..Ec2Settings::default()
    }
}

/// The provider against moto with `settings`, polling every few milliseconds.
pub async fn provider(settings: Ec2Settings) -> Ec2 {
    let config = sdk_config(&moto_url(), None, 3).await;
    Ec2::from_sdk_config(&config, REGION, settings)
        .with_poll_interval(Duration::from_millis(10), Duration::from_millis(50))
        .with_cleanup_timeout(Duration::from_secs(30))
}

/// An Ubuntu AMI moto knows (strict AMI validation is on).
pub async fn ubuntu_ami(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("DescribeImages");
    out.images()
        .iter()
        .find(|i| i.name().is_some_and(|n| n.starts_with("ubuntu/")))
        .or_else(|| out.images().first())
        .and_then(|i| i.image_id())
        .expect("moto lists at least one image")
        .to_owned()
}

/// Create the hosted zone `zone`; returns its id.
pub async fn hosted_zone(r53: &aws_sdk_route53::Client, zone: &str) -> String {
    let out = r53
        .create_hosted_zone()
        .name(zone)
        .caller_reference(unique("ref"))
        .send()
        .await
        .expect("CreateHostedZone");
    out.hosted_zone()
        .expect("a zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned()
}

/// The record sets at `name` in the hosted zone `zone`, read with the SDK.
pub async fn record_sets(
    aws: &Ec2,
    zone: &str,
    name: &str,
) -> Vec<aws_sdk_route53::types::ResourceRecordSet> {
    let zone_id = conformance::hosted_zone_id(aws, zone).await;
    let out = aws
        .route53_client()
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .send()
        .await
        .expect("ListResourceRecordSets");
    out.resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.') == name)
        .cloned()
        .collect()
}

/// The three first zones of the region's default VPC.
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// An EC2 filter on tag `k` = `v`.
fn tag_filter(k: &str, v: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(format!("tag:{k}"))
        .values(v)
        .build()
}
