//! # triad-rfc2136
//!
//! triad's [`DnsProvider`] for any name server that takes RFC 2136 dynamic updates
//! signed with TSIG (RFC 8945): BIND, PowerDNS, Knot, Windows DNS. It writes the
//! Rancher hostname as an A/AAAA record (to the balancer's addresses) or a CNAME
//! (to its hostname), and the ownership TXT at
//! `triad_core::provider::ownership_name` beside it.
//!
//! **Never overwriting what is not ours.** Every update carries RFC 2136
//! prerequisites, so the server itself refuses it when the name changed since we
//! read it: a first write requires that neither the TXT nor an A, AAAA or CNAME
//! exist (for a CNAME: that the name holds nothing), and a rewrite or delete
//! requires the ownership TXT RRset to be exactly ours. A record without our TXT, or
//! with another cluster's, gives [`Error::NotOwned`] before any update is sent.
//!
//! **Reading.** `lookup` queries the server (A, AAAA and CNAME at the name, TXT
//! beside it, SOA of the zone); `owned_records` transfers the zone (AXFR, signed with
//! the key) and falls back to querying the names it knows (the spec's hostname, and
//! [`Rfc2136Settings::names`]) when the server refuses the transfer; `wait_record`
//! asks the server until it answers what was last written. Every message —
//! queries included — is signed, and every answer's TSIG is verified.
//!
//! No alias records ([`DnsCapabilities::alias`] is false). Addresses are returned
//! sorted (IPv4 before IPv6); DNS keeps no order.
//!
//! ```no_run
//! use triad_core::secret::Secret;
//! use triad_rfc2136::{Rfc2136Provider, Rfc2136Settings};
//!
//! let mut settings = Rfc2136Settings::new("127.0.0.1:5353", "triad-key", Secret::new("c2VjcmV0"));
//! settings.zone = Some("example.com".into());
//! let dns = Rfc2136Provider::new(settings)?;
//! # Ok::<(), triad_core::Error>(())
//! ```
#![warn(missing_docs)]

mod list;
mod records;
mod settings;
mod transport;
mod wire;
mod write;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::rr::RecordType;
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Endpoint, Record, RecordKind, RecordRequest};
use triad_core::provider::{ownership_name, DnsCapabilities, DnsProvider};
use triad_core::spec::{ClusterRef, ValidSpec};
use triad_core::wait::Poll;

use records::{normalize, same_target, to_record};

pub use settings::{Algorithm, OwnedRecords, Rfc2136Settings};

/// The provider's name in messages and the inventory.
pub const PROVIDER: &str = "rfc2136";

/// How far the server's clock may be from ours (TSIG fudge), in seconds.
const FUDGE: u16 = 300;

/// What was last written at a name: kind, target, TTL.
type Written = (RecordKind, Endpoint, u32);

/// DNS by RFC 2136 dynamic update with TSIG. See the [crate documentation](crate).
pub struct Rfc2136Provider {
    settings: Rfc2136Settings,
    signer: TSigner,
    /// The last state written per name, for `wait_record`: `None` after a delete.
    written: Mutex<HashMap<String, Option<Written>>>,
}

impl std::fmt::Debug for Rfc2136Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The settings' secret prints as ****; the signer (which holds the key) is left out.
        f.debug_struct("Rfc2136Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Rfc2136Provider {
    /// A provider from explicit settings (for tests and embedders). Fails when the
    /// settings have a problem, naming the field.
    pub fn new(settings: Rfc2136Settings) -> Result<Self> {
        let problems = settings.problems();
        if !problems.is_empty() {
            return Err(Error::InvalidSpec(problems.into()));
        }
        let key_name = wire::name(&settings.key_name)
            .map_err(|e| Error::invalid("rfc2136.key_name", e, "give the TSIG key's name"))?;
        let signer = TSigner::new(settings.key()?, settings.algorithm.tsig(), key_name, FUDGE)
            .map_err(|e| {
                Error::invalid(
                    "rfc2136.algorithm",
                    e.to_string(),
                    "use hmac-sha256, hmac-sha384 or hmac-sha512",
                )
            })?;
        Ok(Self {
            settings,
            signer,
            written: Mutex::new(HashMap::new()),
        })
    }

    /// A provider from the spec's `[rfc2136]` section; the spec's hostname is one of
    /// the names `owned_records` queries when no zone transfer is made, and the zone
    /// defaults to `dns.zone`.
    pub fn from_spec(spec: &ValidSpec) -> Result<Self> {
        let mut settings = Self::settings_from_spec(spec)?;
        if settings.zone.is_none() {
            settings.zone = Some(spec.dns.zone.clone());
        }
        let fqdn = spec.fqdn();
        if !settings.names.contains(&fqdn) {
            settings.names.push(fqdn);
        }
        Self::new(settings)
    }

    fn settings_from_spec(spec: &ValidSpec) -> Result<Rfc2136Settings> {
        match &spec.rfc2136 {
            Some(section) => section.parse::<Rfc2136Settings>("rfc2136"),
            None => Err(Error::invalid(
                "rfc2136",
                "is missing",
                "add an [rfc2136] section with server, key_name and a secret (see docs/rfc2136.md)",
            )),
        }
    }

    /// The settings in force (the secret prints as `****`).
    pub fn settings(&self) -> &Rfc2136Settings {
        &self.settings
    }

    fn err(
        &self,
        action: &str,
        resource: &str,
        kind: FailureKind,
        message: impl Into<String>,
    ) -> Error {
        Error::provider(PROVIDER, action, resource, kind, message)
    }

    fn zone_for<'a>(&'a self, zone: &'a str) -> &'a str {
        self.settings.zone.as_deref().unwrap_or(zone)
    }

    fn note_written(&self, fqdn: &str, state: Option<Written>) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fqdn.to_owned(), state);
    }
}

#[async_trait]
impl DnsProvider for Rfc2136Provider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> DnsCapabilities {
        DnsCapabilities {
            alias: false,
            lock: true,
        }
    }

    /// The settings were checked when the provider was built; this checks only that
    /// the plan's spec writes into the provider's zone.
    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        let Some(zone) = &self.settings.zone else {
            return Ok(());
        };
        let want = normalize(&spec.dns.zone);
        if normalize(zone) == want {
            return Ok(());
        }
        Err(Error::InvalidSpec(
            vec![triad_core::error::SpecProblem {
                field: "rfc2136.zone".into(),
                problem: format!("is `{zone}`, but dns.zone is `{want}`"),
                fix: "leave rfc2136.zone out, or make it dns.zone".into(),
            }]
            .into(),
        ))
    }

    async fn lookup(&self, zone: &str, fqdn: &str) -> Result<Option<Record>> {
        let zone = self.zone_for(zone).to_owned();
        let action = "look up";
        let resource = format!("record {fqdn}");
        let client = self.client(action, &resource).await?;
        self.check_zone(&client, &zone, action).await?;
        let name = wire::name(fqdn)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let txt_name = wire::name(&ownership_name(fqdn))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let state = self.read(&client, &zone, &name, &txt_name, action).await?;
        Ok(to_record(&zone, fqdn, &state))
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        self.list_owned(cluster, zone).await
    }

    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        self.write_record(cluster, request).await
    }

    async fn wait_record(&self, zone: &str, fqdn: &str, timeout: Duration) -> Result<()> {
        let fqdn = normalize(fqdn);
        let zone = self.zone_for(zone).to_owned();
        let want = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fqdn)
            .cloned();
        let interval = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        Poll::new(interval.min(Duration::from_millis(250)), interval)
            .until(
                timeout,
                &format!("DNS record {fqdn}"),
                &format!("served by {}", self.settings.server),
                || async {
                    let found = self.lookup(&zone, &fqdn).await?;
                    let done = match &want {
                        // Nothing written by this provider: the server answers, so it is in sync.
                        None => true,
                        Some(None) => found.is_none(),
                        Some(Some((kind, target, ttl))) => found.as_ref().is_some_and(|r| {
                            r.kind == *kind && same_target(&r.target, target) && r.ttl == Some(*ttl)
                        }),
                    };
                    Ok(done.then_some(()))
                },
            )
            .await
    }

    async fn read_txt(&self, zone: &str, name: &str) -> Result<Option<String>> {
        let zone = self.zone_for(zone).to_owned();
        let (action, resource) = ("read", format!("TXT record {name}"));
        let client = self.client(action, &resource).await?;
        let owner = wire::name(&normalize(name))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let txt = self
            .rrset(&client, &zone, &owner, RecordType::TXT, action, &resource)
            .await?;
        Ok((!txt.is_empty()).then(|| txt.iter().filter_map(wire::txt_text).collect()))
    }

    async fn swap_txt(
        &self,
        zone: &str,
        name: &str,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool> {
        self.swap(zone, name, expected, new).await
    }

    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
        self.remove_record(cluster, zone, fqdn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use triad_core::secret::Secret;

    #[test]
    fn debug_hides_the_secret() {
        let p = Rfc2136Provider::new(Rfc2136Settings::new(
            "127.0.0.1:53",
            "k",
            Secret::new("aHVudGVyMg=="),
        ))
        .unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("aHVudGVyMg"), "{d}");
        assert!(d.contains("****"));
    }

    #[test]
    fn the_secret_reaches_the_settings_from_the_spec_and_nothing_else() {
        let spec = triad_core::ClusterSpec::from_toml(
            "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n\
             [rfc2136]\nserver = \"127.0.0.1:53\"\nkey_name = \"k\"\nsecret = \"aHVudGVyMg==\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert!(!format!("{spec:?}").contains("aHVudGVyMg"));
        let settings = Rfc2136Provider::settings_from_spec(&spec).unwrap();
        assert_eq!(
            settings.secret.as_ref().map(Secret::expose),
            Some("aHVudGVyMg==")
        );
    }
}
