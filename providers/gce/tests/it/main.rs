//! Integration tests of triad-gce against `testing/fake-gce`, which `scripts/test`
//! starts and exports as `TRIAD_GCE_FAKE_ENDPOINT`.

mod conformance;
mod day2;
mod e2e;
mod errors;
mod mode_change;
mod proxy;
mod rolling;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use triad_core::spec::ClusterSpec;
use triad_core::ValidSpec;
use triad_gce::{Connection, GceProvider, GceSettings};

/// The DNS zone every test project gets.
pub const ZONE: &str = "example.com";
/// The region the fake serves.
pub const REGION: &str = "us-central1";

/// The fake's base URL; a clear failure when scripts/test did not start it.
pub fn endpoint() -> String {
    std::env::var("TRIAD_GCE_FAKE_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "TRIAD_GCE_FAKE_ENDPOINT is not set: these tests need testing/fake-gce; \
             run them through scripts/test (or start the fake and export the variable)"
        )
    })
}

/// One raw HTTP/1.1 request to the fake; returns (status, body).
pub fn http(method: &str, path: &str, body: &str) -> (u16, String) {
    let base = endpoint();
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).expect("connect to the fake");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Seed a project with the managed zone for [`ZONE`] and an SSL certificate `rancher-cert`.
pub fn seed(project: &str) {
    let (code, body) = http(
        "POST",
        "/_fake/seed",
        &serde_json::json!({
            "project": project,
            "managedZones": [{"name": "example", "dnsName": "example.com.", "description": "test zone"}],
            "sslCertificates": [{"name": "rancher-cert"}],
        })
        .to_string(),
    );
    assert_eq!(code, 200, "seeding the fake failed: {body}");
}

/// Make the fake fail the next call of `method` in `project` with `code`/`reason`.
pub fn fail_next(project: &str, method: &str, code: u16, reason: &str) {
    let (status, body) = http(
        "POST",
        "/_fake/fail-next",
        &serde_json::json!({"method": method, "code": code, "reason": reason, "project": project})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
}

/// The balancing modes of the backends of a backend service read over REST.
pub fn balancing_modes(bs: &serde_json::Value) -> BTreeSet<String> {
    bs["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b["balancingMode"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// An orchestrator over one provider against the fake, made from `spec`.
pub async fn orchestrator(spec: &ValidSpec) -> triad_core::Orchestrator {
    let gce = std::sync::Arc::new(
        GceProvider::from_spec_with(spec, Connection::fake(endpoint()))
            .await
            .unwrap(),
    );
    triad_core::Orchestrator::new(gce.clone(), gce.clone(), gce)
}

/// The fake's state of `project` as JSON.
pub fn state(project: &str) -> serde_json::Value {
    let (code, body) = http("GET", &format!("/_fake/state?project={project}"), "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Asserts the fake never produced a response that violates Google's schemas.
pub fn assert_no_violations() {
    let (_, body) = http("GET", "/_fake/violations", "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["violations"],
        serde_json::json!([]),
        "the fake broke a schema: {body}"
    );
}

/// The API methods the fake served for `project`, in order
/// (`compute.instances.get`, …).
pub fn calls(project: &str) -> Vec<String> {
    let (_, body) = http("GET", &format!("/_fake/calls?project={project}"), "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// Whether an API method changes something.
pub fn is_mutation(method: &str) -> bool {
    let verb = method.rsplit('.').next().unwrap_or("");
    matches!(
        verb,
        "insert"
            | "delete"
            | "patch"
            | "update"
            | "addInstances"
            | "removeInstances"
            | "create"
            | "setSslPolicy"
            | "setSslCertificates"
            | "setLabels"
    )
}

/// A 3-node cluster `name` in `project` against the fake; `nodes` is more of the
/// `[nodes]` table, `rest` more sections.
pub fn cluster_spec(project: &str, name: &str, nodes: &str, rest: &str) -> ValidSpec {
    ClusterSpec::from_toml(&format!(
        r#"
name = "{name}"
region = "us-central1"
[nodes]
count = 3
size = "4cpu-16gb"
image = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
{nodes}
{rest}
[dns]
zone = "example.com"
hostname = "{name}.example.com"
[gce]
project = "{project}"
poll_interval_ms = 50
"#
    ))
    .unwrap()
    .validate()
    .unwrap()
}

/// Test settings for `project`: fast polling.
pub fn settings(project: &str) -> GceSettings {
    let mut s = GceSettings::new(project);
    s.poll_interval_ms = 50;
    s.image = Some("projects/debian-cloud/global/images/family/debian-12".into());
    s
}

/// A provider against the fake for a freshly seeded `project`.
pub async fn provider(project: &str) -> GceProvider {
    seed(project);
    GceProvider::new(settings(project), None, Connection::fake(endpoint()))
        .await
        .expect("connect to the fake")
}

/// One REST call to the fake (not through triad), as JSON; must answer 200.
pub fn rest(method: &str, path: &str) -> serde_json::Value {
    let body = if method == "POST" { "{}" } else { "" };
    let (code, body) = http(method, path, body);
    assert_eq!(code, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The last path segment of a link.
pub fn short(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

/// The running members of every instance group the backend service `bs` (a link or
/// REST path) serves, by instance name.
pub fn serving(project: &str, bs_path: &str) -> BTreeSet<String> {
    let bs = rest("GET", bs_path);
    let mut out = BTreeSet::new();
    for b in bs["backends"].as_array().into_iter().flatten() {
        let group = b["group"].as_str().unwrap();
        let path = format!("/compute/v1{}", &group[group.find("/projects/").unwrap()..]);
        assert!(path.contains(&format!("/projects/{project}/")), "{path}");
        let members = rest("POST", &format!("{path}/listInstances"));
        for m in members["items"].as_array().into_iter().flatten() {
            if m["status"] == "RUNNING" {
                out.insert(short(m["instance"].as_str().unwrap()).to_owned());
            }
        }
    }
    out
}

/// The A record of `fqdn` in the test zone, read through Cloud DNS's REST API.
pub fn a_record(project: &str, fqdn: &str) -> serde_json::Value {
    let rrsets = rest(
        "GET",
        &format!("/dns/v1/projects/{project}/managedZones/example/rrsets?name={fqdn}.&type=A"),
    );
    let sets = rrsets["rrsets"].as_array().unwrap();
    assert_eq!(sets.len(), 1, "{rrsets}");
    sets[0].clone()
}
