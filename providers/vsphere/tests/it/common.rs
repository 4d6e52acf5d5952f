//! Settings and providers for vcsim.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use triad_core::secret::Secret;
use triad_vsphere::{Transport, VsphereProvider, VsphereSettings};

/// Why a backend test needs scripts/test.
pub(crate) const NEEDS: &str = "needs vcsim; scripts/test starts it";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through scripts/test, which builds and starts vcsim")
    })
}

/// Settings for vcsim's VPX model as testing/vcsim launches it, with the zones
/// `<prefix>a`, `<prefix>b`, `<prefix>c` on the clusters DC0_C0..2, TLS verified
/// against the launcher's CA.
pub(crate) fn settings(zone_prefix: &str) -> VsphereSettings {
    let failure_domains: BTreeMap<String, String> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{zone_prefix}{s}"), format!("DC0_C{i}")))
        .collect();
    VsphereSettings {
        url: env("TRIAD_VCSIM_URL"),
        username: Some(env("TRIAD_VCSIM_USER")),
        password: Some(Secret::new(env("TRIAD_VCSIM_PASSWORD"))),
        insecure: false,
        ca_file: Some(PathBuf::from(env("TRIAD_VCSIM_CA"))),
        transport: Transport::Soap,
        datacenter: "DC0".into(),
        template: "ubuntu-template".into(),
        datastore: "LocalDS_0".into(),
        network: "DC0_DVPG0".into(),
        folder: None,
        cpus: Some(2),
        memory_mib: Some(4096),
        failure_domains,
        extra_config: BTreeMap::from([("disk.EnableUUID".to_owned(), "TRUE".to_owned())]),
    }
}

/// A distinct 10.x.y.z address per node name (FNV-1a), for vcsim's
/// `SET.guest.ipAddress`: vcsim reports no guest IP otherwise.
pub(crate) fn fake_ip(name: &str) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    format!(
        "10.{}.{}.{}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        (h & 0xff).clamp(1, 254)
    )
}

/// A provider logged in to vcsim, giving each node a fake guest IP.
pub(crate) async fn provider(zone_prefix: &str) -> VsphereProvider {
    VsphereProvider::connect(settings(zone_prefix))
        .await
        .expect("log in to vcsim")
        .with_vcsim()
        .with_poll_interval(Duration::from_millis(200))
}

/// A vim_rs client of its own, logged in to vcsim apart from any provider: the
/// independent reader tests check the provider's work with.
pub(crate) async fn raw_client() -> std::sync::Arc<vim_rs::core::client::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = settings("raw-");
    let pem = std::fs::read(env("TRIAD_VCSIM_CA")).expect("read the vcsim CA");
    let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("the vcsim CA is PEM");
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .tls_certs_only(certs)
        .build()
        .expect("an HTTP client");
    vim_rs::core::client::ClientBuilder::new(&s.server().unwrap(), http)
        .basic_authn(&env("TRIAD_VCSIM_USER"), &env("TRIAD_VCSIM_PASSWORD"))
        .transport(vim_rs::core::client::TransportMode::Soap)
        .build()
        .await
        .expect("log in to vcsim")
}

/// The managed object at inventory path `path`, read with `client`.
pub(crate) async fn find_path(
    client: &std::sync::Arc<vim_rs::core::client::Client>,
    path: &str,
) -> Option<vim_rs::types::structs::ManagedObjectReference> {
    let si = client.service_content().search_index.clone().unwrap();
    vim_rs::mo::SearchIndex::new(client.clone(), &si.value)
        .find_by_inventory_path(path)
        .await
        .expect("search the inventory")
}
