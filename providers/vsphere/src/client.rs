//! Logging in to vCenter, and the client wrapper that counts every call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use triad_core::{Error, FailureKind, Result};
use vim_rs::core::client::{
    BoxFuture, Client, ClientBuilder, PropertyValue, Transport as Wire, TransportMode, VimClient,
};
use vim_rs::types::structs::ServiceContent;

use crate::error;
use crate::settings::{self, Transport, VsphereSettings};

/// vCenter methods that only read (property collector, searches, and the views the
/// property collector reads through). Every other method changes something.
const READS: [&str; 9] = [
    "RetrieveProperties",
    "RetrievePropertiesEx",
    "ContinueRetrievePropertiesEx",
    "FindByUuid",
    "FindByInventoryPath",
    "FindAllByUuid",
    "CreateContainerView",
    "CreateListView",
    "DestroyView",
];

/// The calls a provider made to vCenter since it logged in (the login itself not
/// counted): a metric for benchmarks and for tests that assert how many calls a step
/// costs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls by vCenter method name (`RetrievePropertiesEx`, `ReconfigVM_Task`, …).
    pub by_method: BTreeMap<String, u64>,
}

impl CallCounts {
    /// Calls that only read.
    pub fn reads(&self) -> u64 {
        self.by_method
            .iter()
            .filter(|(m, _)| READS.contains(&m.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// Calls that change something in vCenter (clone, reconfigure, power, destroy,
    /// custom attributes).
    pub fn mutating(&self) -> u64 {
        self.by_method
            .iter()
            .filter(|(m, _)| !READS.contains(&m.as_str()))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The shared tally of a [`Counted`] client.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally(Arc<Mutex<CallCounts>>);

impl Tally {
    fn add(&self, method: &str) {
        let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *c.by_method.entry(method.to_owned()).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> CallCounts {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn reset(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = CallCounts::default();
    }
}

/// A vim_rs client that counts every call it forwards.
pub(crate) struct Counted {
    inner: Arc<Client>,
    tally: Tally,
}

impl Counted {
    pub(crate) fn new(inner: Arc<Client>, tally: Tally) -> Self {
        Self { inner, tally }
    }
}

impl VimClient for Counted {
    fn service_content(&self) -> &ServiceContent {
        self.inner.service_content()
    }

    fn transport(&self) -> Wire {
        VimClient::transport(&*self.inner)
    }

    fn api_release(&self) -> String {
        self.inner.api_release()
    }

    fn invoke<'a>(
        &'a self,
        svc: &'a str,
        mo_type: &'a str,
        mo_id: &'a str,
        method_name: &'a str,
        params: Option<&'a (dyn miniserde::Serialize + Send + Sync)>,
    ) -> BoxFuture<'a, vim_rs::core::client::Result<Bytes>> {
        self.tally.add(method_name);
        self.inner.invoke(svc, mo_type, mo_id, method_name, params)
    }

    fn invoke_optional<'a>(
        &'a self,
        svc: &'a str,
        mo_type: &'a str,
        mo_id: &'a str,
        method_name: &'a str,
        params: Option<&'a (dyn miniserde::Serialize + Send + Sync)>,
    ) -> BoxFuture<'a, vim_rs::core::client::Result<Option<Bytes>>> {
        self.tally.add(method_name);
        self.inner
            .invoke_optional(svc, mo_type, mo_id, method_name, params)
    }

    fn invoke_void<'a>(
        &'a self,
        svc: &'a str,
        mo_type: &'a str,
        mo_id: &'a str,
        method_name: &'a str,
        params: Option<&'a (dyn miniserde::Serialize + Send + Sync)>,
    ) -> BoxFuture<'a, vim_rs::core::client::Result<()>> {
        self.tally.add(method_name);
        self.inner
            .invoke_void(svc, mo_type, mo_id, method_name, params)
    }

    fn fetch_property_raw<'a>(
        &'a self,
        svc: &'a str,
        mo_type: &'a str,
        mo_id: &'a str,
        property: &'a str,
    ) -> BoxFuture<'a, vim_rs::core::client::Result<Option<PropertyValue>>> {
        self.tally.add("RetrieveProperties");
        self.inner.fetch_property_raw(svc, mo_type, mo_id, property)
    }

    fn close(&self) -> BoxFuture<'_, vim_rs::core::client::Result<()>> {
        VimClient::close(&*self.inner)
    }
}

/// Log in to vCenter with `settings`.
pub(crate) async fn connect(settings: &VsphereSettings) -> Result<Arc<Client>> {
    let server = settings.server()?;
    let (user, password) = settings.credentials()?;
    // reqwest is built without a default crypto provider: use ring unless the
    // process installed one already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut http = reqwest::Client::builder()
        .cookie_store(true)
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(300));
    if let Some(ca) = &settings.ca_file {
        let pem = std::fs::read(ca).map_err(|e| Error::Io {
            path: ca.display().to_string(),
            message: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::invalid(
                "vsphere.ca_file",
                format!("`{}` is not a PEM certificate bundle: {e}", ca.display()),
                "give a PEM file with vCenter's CA certificate",
            )
        })?;
        if certs.is_empty() {
            return Err(Error::invalid(
                "vsphere.ca_file",
                format!("`{}` holds no certificate", ca.display()),
                "give a PEM file with vCenter's CA certificate",
            ));
        }
        http = http.tls_certs_only(certs);
    }
    if settings.insecure {
        tracing::warn!(
            server,
            "TLS verification of vCenter is off ([vsphere] insecure = true)"
        );
        http = http
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true);
    }
    let http = http
        .build()
        .map_err(|e| error::other("connect", &server, FailureKind::Other, e.to_string()))?;
    let mode = match settings.transport {
        Transport::Auto => TransportMode::Auto,
        Transport::Json => TransportMode::Json,
        Transport::Soap => TransportMode::Soap,
    };
    let client = ClientBuilder::new(&server, http)
        .basic_authn(&user, password.expose())
        .app_details("triad", env!("CARGO_PKG_VERSION"))
        .transport(mode)
        .build()
        .await
        .map_err(|e| {
            let (kind, message) = error::classify(&e);
            let hint = match kind {
                FailureKind::Permission => format!(
                    "vCenter rejected the login of user `{user}`; check vsphere.username and \
                     vsphere.password (or {} and {})",
                    settings::USER_ENV,
                    settings::PASSWORD_ENV
                ),
                _ if message.contains("certificate") || message.contains("Certificate") => {
                    "TLS verification failed: set vsphere.ca_file to vCenter's CA bundle (or \
                     insecure = true to skip verification)"
                        .to_owned()
                }
                _ => "check vsphere.url".to_owned(),
            };
            error::other(
                "log in to",
                &format!("vCenter {server}"),
                kind,
                format!("{hint} ({message})"),
            )
        })?;
    tracing::debug!(server, transport = ?VimClient::transport(&*client), "logged in to vCenter");
    Ok(client)
}
