//! triad-sim's one integration test binary: the conformance suite, fault injection,
//! virtual-time behaviour and the sim's own rules.

mod conformance;
mod faults;
mod rules;
mod state;
mod timing;

use std::time::Duration;

use triad_core::conformance::Fixture;
use triad_core::labels::Role;
use triad_core::model::{LoadBalancerRequest, NodeRequest};
use triad_core::spec::{LbMode, LbScheme};
use triad_core::ClusterRef;
use triad_sim::{SimCloud, SimConfig};

pub const ZONE: &str = "example.com";
pub const FQDN: &str = "rancher.example.com";

pub fn cluster() -> ClusterRef {
    ClusterRef::new("rancher", "us-east-1")
}

pub fn cloud(config: SimConfig) -> SimCloud {
    SimCloud::new(config).with_zone(ZONE)
}

pub fn fixture() -> Fixture {
    Fixture::new(cluster(), ZONE, FQDN).with_poll_interval(Duration::from_millis(10))
}

pub fn node_request(c: &ClusterRef, name: &str, zone: &str) -> NodeRequest {
    let mut request = NodeRequest::new(name, zone);
    request.size = Some("4cpu-16gb".into());
    request.labels = c.labels_for(Role::Node);
    request.user_data = "#cloud-config\n".into();
    request
}

pub fn lb_request(c: &ClusterRef, mode: LbMode) -> LoadBalancerRequest {
    let mut request = LoadBalancerRequest::new(c.name.clone(), mode, LbScheme::InternetFacing);
    request.certificate = (mode == LbMode::L7).then(|| "arn:sim:acm:cert/rancher".to_owned());
    request.labels = c.labels_for(Role::Lb);
    request
}
