//! The SDK clients, their construction (ADC or anonymous credentials, optional
//! endpoint override) and the operation poller every mutation waits on.

use std::time::Duration;

use google_cloud_auth::credentials::{anonymous, Builder as CredentialsBuilder, Credentials};
use google_cloud_compute_v1::client as compute;
use google_cloud_compute_v1::model::{operation::Status as OpStatus, Operation};
use google_cloud_dns_v1::client as dns;
use triad_core::error::{FailureKind, Result};
use triad_core::wait::Poll;

use crate::error::{self, own};

/// How the provider reaches Google: credentials and endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// Base URL replacing `https://compute.googleapis.com` and
    /// `https://dns.googleapis.com` (a test server such as `testing/fake-gce`).
    pub endpoint: Option<String>,
    /// Send no credentials at all (only for a test server). Otherwise Application
    /// Default Credentials are used.
    pub anonymous: bool,
}

impl Connection {
    /// Application Default Credentials against Google's endpoints.
    pub fn google() -> Self {
        Self::default()
    }

    /// Anonymous requests to a test server at `endpoint`.
    pub fn fake(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: Some(endpoint.into()),
            anonymous: true,
        }
    }

    /// [`Connection::fake`] at `$TRIAD_GCE_ENDPOINT` when that variable is set and
    /// not empty, else [`Connection::google`].
    pub fn from_env() -> Self {
        match std::env::var(crate::settings::ENDPOINT_ENV) {
            Ok(e) if !e.trim().is_empty() => Self::fake(e.trim().trim_end_matches('/')),
            _ => Self::google(),
        }
    }
}

/// Every SDK client the provider uses.
pub(crate) struct Clients {
    pub instances: compute::Instances,
    pub zone_ops: compute::ZoneOperations,
    pub region_ops: compute::RegionOperations,
    pub global_ops: compute::GlobalOperations,
    pub regions: compute::Regions,
    pub images: compute::Images,
    pub networks: compute::Networks,
    pub subnetworks: compute::Subnetworks,
    pub firewalls: compute::Firewalls,
    pub addresses: compute::Addresses,
    pub global_addresses: compute::GlobalAddresses,
    pub region_health_checks: compute::RegionHealthChecks,
    pub health_checks: compute::HealthChecks,
    pub region_backend_services: compute::RegionBackendServices,
    pub backend_services: compute::BackendServices,
    pub instance_groups: compute::InstanceGroups,
    pub forwarding_rules: compute::ForwardingRules,
    pub global_forwarding_rules: compute::GlobalForwardingRules,
    pub url_maps: compute::UrlMaps,
    pub target_https_proxies: compute::TargetHttpsProxies,
    pub target_http_proxies: compute::TargetHttpProxies,
    pub ssl_policies: compute::SslPolicies,
    pub managed_zones: dns::ManagedZones,
    pub rrsets: dns::ResourceRecordSets,
    pub changes: dns::Changes,
}

fn credentials(conn: &Connection) -> Result<Credentials> {
    if conn.anonymous {
        return Ok(anonymous::Builder::new().build());
    }
    CredentialsBuilder::default().build().map_err(|e| {
        own(
            "load credentials",
            "Application Default Credentials",
            FailureKind::Permission,
            format!(
                "{e}; run `gcloud auth application-default login` or set \
                 GOOGLE_APPLICATION_CREDENTIALS"
            ),
        )
    })
}

macro_rules! build {
    ($ty:ty, $creds:expr, $conn:expr) => {{
        let b = <$ty>::builder().with_credentials($creds.clone());
        let b = match &$conn.endpoint {
            Some(e) => b.with_endpoint(e.clone()),
            None => b,
        };
        b.build().await.map_err(|e| {
            own(
                "connect",
                stringify!($ty),
                FailureKind::Other,
                e.to_string(),
            )
        })?
    }};
}

impl Clients {
    pub(crate) async fn connect(conn: &Connection) -> Result<Self> {
        let c = credentials(conn)?;
        Ok(Self {
            instances: build!(compute::Instances, c, conn),
            zone_ops: build!(compute::ZoneOperations, c, conn),
            region_ops: build!(compute::RegionOperations, c, conn),
            global_ops: build!(compute::GlobalOperations, c, conn),
            regions: build!(compute::Regions, c, conn),
            images: build!(compute::Images, c, conn),
            networks: build!(compute::Networks, c, conn),
            subnetworks: build!(compute::Subnetworks, c, conn),
            firewalls: build!(compute::Firewalls, c, conn),
            addresses: build!(compute::Addresses, c, conn),
            global_addresses: build!(compute::GlobalAddresses, c, conn),
            region_health_checks: build!(compute::RegionHealthChecks, c, conn),
            health_checks: build!(compute::HealthChecks, c, conn),
            region_backend_services: build!(compute::RegionBackendServices, c, conn),
            backend_services: build!(compute::BackendServices, c, conn),
            instance_groups: build!(compute::InstanceGroups, c, conn),
            forwarding_rules: build!(compute::ForwardingRules, c, conn),
            global_forwarding_rules: build!(compute::GlobalForwardingRules, c, conn),
            url_maps: build!(compute::UrlMaps, c, conn),
            target_https_proxies: build!(compute::TargetHttpsProxies, c, conn),
            target_http_proxies: build!(compute::TargetHttpProxies, c, conn),
            ssl_policies: build!(compute::SslPolicies, c, conn),
            managed_zones: build!(dns::ManagedZones, c, conn),
            rrsets: build!(dns::ResourceRecordSets, c, conn),
            changes: build!(dns::Changes, c, conn),
        })
    }
}

/// Where an operation lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Zone(String),
    Region(String),
    Global,
}

/// How long one operation may take before triad gives up on it.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

impl Clients {
    /// Poll `op` until DONE; an operation that finished with errors is an error.
    pub(crate) async fn wait(
        &self,
        project: &str,
        scope: &Scope,
        op: Operation,
        poll: Poll,
        action: &str,
        resource: &str,
    ) -> Result<Operation> {
        let name = op.name.clone().unwrap_or_default();
        // The first look is the operation as the insert returned it.
        let first = std::sync::Mutex::new(Some(op));
        let done = poll
            .until(
                OPERATION_TIMEOUT,
                resource,
                &format!("done with `{action}`"),
                || async {
                    let given = first.lock().ok().and_then(|mut g| g.take());
                    let op = match given {
                        Some(op) => op,
                        None => self
                            .get_operation(project, scope, &name)
                            .await
                            .map_err(|e| {
                                error::sdk(&format!("{action} (operation)"), resource, &e)
                            })?,
                    };
                    Ok((op.status == Some(OpStatus::Done)).then_some(op))
                },
            )
            .await?;
        match error::operation(action, resource, &done) {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    async fn get_operation(
        &self,
        project: &str,
        scope: &Scope,
        name: &str,
    ) -> std::result::Result<Operation, google_cloud_gax::error::Error> {
        match scope {
            Scope::Zone(z) => {
                self.zone_ops
                    .get()
                    .set_project(project)
                    .set_zone(z)
                    .set_operation(name)
                    .send()
                    .await
            }
            Scope::Region(r) => {
                self.region_ops
                    .get()
                    .set_project(project)
                    .set_region(r)
                    .set_operation(name)
                    .send()
                    .await
            }
            Scope::Global => {
                self.global_ops
                    .get()
                    .set_project(project)
                    .set_operation(name)
                    .send()
                    .await
            }
        }
    }
}

/// A fresh `requestId`: a random version-4 UUID. One per logical insert, reused
/// when that insert is retried, so Google deduplicates it.
pub(crate) fn request_id() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The last path segment of a self-link (`…/zones/us-central1-a` → `us-central1-a`).
pub(crate) fn short(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_v4_uuids() {
        let a = request_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]));
        assert_ne!(a, request_id());
    }

    #[test]
    fn short_names() {
        assert_eq!(
            short("https://x/projects/p/zones/us-central1-a"),
            "us-central1-a"
        );
        assert_eq!(short("plain"), "plain");
    }
}
