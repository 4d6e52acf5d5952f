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

mod settings;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hickory_client::client::Client;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageFinalizer, MessageVerifier, ResponseCode};
use hickory_proto::rr::{Name, RData, Record as DnsRecord, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::xfer::{DnsHandle, DnsMultiplexer, DnsResponse, FirstAnswer};
use hickory_proto::ProtoError;
use tracing::{debug, info};
use triad_core::error::{Error, FailureKind, Result};
use triad_core::model::{Endpoint, Record, RecordKind, RecordRequest};
use triad_core::provider::{
    ownership_name, ownership_txt, parse_ownership, parse_ownership_id, DnsCapabilities,
    DnsProvider,
};
use triad_core::spec::{ClusterRef, ValidSpec};

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

/// What the server holds at a name: the records triad writes, and the TXT beside it.
#[derive(Debug, Default)]
struct State {
    records: Vec<DnsRecord>,
    txt: Vec<DnsRecord>,
}

impl State {
    /// Cluster names in the TXT RRset (one per triad-style value).
    fn owners(&self) -> Vec<String> {
        self.txt
            .iter()
            .filter_map(wire::txt_text)
            .filter_map(|t| parse_ownership(&t))
            .collect()
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
            settings.zone = Some(spec.dns.zone.trim_end_matches('.').to_ascii_lowercase());
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

    async fn server_addr(&self, action: &str, resource: &str) -> Result<SocketAddr> {
        let (host, port) = settings::split_host_port(&self.settings.server)
            .map_err(|e| Error::invalid("rfc2136.server", e, "give host:port"))?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let mut addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                self.err(
                    action,
                    resource,
                    FailureKind::Transient,
                    format!("cannot resolve the server {host}: {e}"),
                )
            })?;
        addrs.next().ok_or_else(|| {
            self.err(
                action,
                resource,
                FailureKind::NotFound,
                format!("the server {host} has no address"),
            )
        })
    }

    /// A TCP connection to the server whose messages are signed with the key.
    async fn client(&self, action: &str, resource: &str) -> Result<Client> {
        let addr = self.server_addr(action, resource).await?;
        let timeout = self.settings.timeout();
        let (stream, handle) =
            TcpClientStream::new(addr, None, Some(timeout), TokioRuntimeProvider::new());
        let signer: Arc<dyn MessageFinalizer> = Arc::new(SignAll(self.signer.clone()));
        let mux = DnsMultiplexer::with_timeout(stream, handle, timeout, Some(signer));
        let (client, bg) = Client::connect(mux)
            .await
            .map_err(|e| self.proto_err(action, resource, e))?;
        tokio::spawn(bg);
        Ok(client)
    }

    /// Map a transport or TSIG error; the message never holds the secret (hickory's
    /// errors do not carry the key).
    fn proto_err(&self, action: &str, resource: &str, e: ProtoError) -> Error {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        let (kind, message) =
            if lower.contains("tsig") || lower.contains("signature") || lower.contains("mac") {
                (
                    FailureKind::Permission,
                    format!(
                        "the server's answer failed TSIG verification ({text}): the key `{}` \
                     ({:?}) does not match the server's — check key_name, algorithm and secret",
                        self.settings.key_name, self.settings.algorithm
                    ),
                )
            } else if e.is_busy() || lower.contains("timed out") || lower.contains("timeout") {
                (
                    FailureKind::Transient,
                    format!("no answer from {} in time: {text}", self.settings.server),
                )
            } else if lower.contains("connection refused")
                || lower.contains("io error")
                || lower.contains("reset")
            {
                (
                    FailureKind::Transient,
                    format!("cannot reach {}: {text}", self.settings.server),
                )
            } else {
                (FailureKind::Other, text)
            };
        self.err(action, resource, kind, message)
    }

    /// Map a response code that is not NOERROR.
    fn rcode_err(&self, action: &str, resource: &str, zone: &str, rcode: ResponseCode) -> Error {
        let key = &self.settings.key_name;
        let (kind, message) = match rcode {
            ResponseCode::NotAuth => (
                FailureKind::Permission,
                format!(
                    "the server did not accept the TSIG key `{key}` (NOTAUTH): unknown key, wrong \
                     secret or algorithm, clock skew, or the server is not authoritative for {zone}"
                ),
            ),
            ResponseCode::Refused => (
                FailureKind::Permission,
                format!(
                    "the server refused the request (REFUSED): let the key `{key}` update (and \
                     transfer) zone {zone} — BIND's `update-policy`/`allow-update`"
                ),
            ),
            ResponseCode::NotZone => (
                FailureKind::InvalidRequest,
                format!("the name is not inside zone {zone} (NOTZONE)"),
            ),
            ResponseCode::ServFail => (
                FailureKind::Transient,
                format!("the server failed (SERVFAIL) on zone {zone}"),
            ),
            ResponseCode::YXDomain | ResponseCode::YXRRSet | ResponseCode::NXRRSet => (
                FailureKind::Transient,
                format!(
                    "the name changed since it was read ({rcode}: a prerequisite failed); nothing \
                     was written — read it again"
                ),
            ),
            other => (
                FailureKind::InvalidRequest,
                format!("the server answered {other}"),
            ),
        };
        self.err(action, resource, kind, message)
    }

    async fn exchange(
        &self,
        client: &Client,
        message: Message,
        action: &str,
        resource: &str,
    ) -> Result<DnsResponse> {
        client
            .send(message)
            .first_answer()
            .await
            .map_err(|e| self.proto_err(action, resource, e))
    }

    /// The records of `rtype` at `name` (empty for NXDOMAIN or no data).
    async fn rrset(
        &self,
        client: &Client,
        zone: &str,
        name: &Name,
        rtype: RecordType,
        action: &str,
        resource: &str,
    ) -> Result<Vec<DnsRecord>> {
        let resp = self
            .exchange(client, wire::query(name, rtype), action, resource)
            .await?;
        match resp.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(resp
                .answers()
                .iter()
                .filter(|r| r.name() == name && r.record_type() == rtype)
                .cloned()
                .collect()),
            rcode => Err(self.rcode_err(action, resource, zone, rcode)),
        }
    }

    /// Check the server is authoritative for `zone`.
    async fn check_zone(&self, client: &Client, zone: &str, action: &str) -> Result<Name> {
        let resource = format!("zone {zone}");
        let zname = wire::name(zone)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let resp = self
            .exchange(
                client,
                wire::query(&zname, RecordType::SOA),
                action,
                &resource,
            )
            .await?;
        let has_soa = resp
            .answers()
            .iter()
            .any(|r| r.name() == &zname && r.record_type() == RecordType::SOA);
        match resp.response_code() {
            ResponseCode::NoError if has_soa && resp.authoritative() => Ok(zname),
            ResponseCode::NoError | ResponseCode::NXDomain | ResponseCode::Refused => Err(self.err(
                action,
                &resource,
                FailureKind::NotFound,
                format!(
                    "{} is not authoritative for zone {zone}: use its primary server, or check the zone's name",
                    self.settings.server
                ),
            )),
            rcode => Err(self.rcode_err(action, &resource, zone, rcode)),
        }
    }

    async fn read(
        &self,
        client: &Client,
        zone: &str,
        fqdn: &Name,
        txt_name: &Name,
        action: &str,
    ) -> Result<State> {
        let resource = format!("record {}", display(fqdn));
        let mut state = State::default();
        for t in wire::RECORD_TYPES {
            state
                .records
                .extend(self.rrset(client, zone, fqdn, t, action, &resource).await?);
        }
        state.txt = self
            .rrset(client, zone, txt_name, RecordType::TXT, action, &resource)
            .await?;
        Ok(state)
    }

    /// The state at `fqdn` as a triad [`Record`], if a record triad writes is there.
    fn to_record(zone: &str, fqdn: &str, state: &State) -> Option<Record> {
        let owner = state.owners().into_iter().next();
        record_from(zone, fqdn, &state.records, owner).map(|r| Record {
            owner_id: owner_id(&state.txt),
            ..r
        })
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

/// Signs every message — queries too, not only updates and transfers as hickory's
/// default does — so a wrong key shows up at `plan`, before anything is written, and
/// every answer triad acts on is authenticated.
struct SignAll(TSigner);

impl MessageFinalizer for SignAll {
    fn finalize_message(
        &self,
        message: &Message,
        current_time: u32,
    ) -> Result<(Vec<DnsRecord>, Option<MessageVerifier>), ProtoError> {
        self.0.finalize_message(message, current_time)
    }

    fn should_finalize_message(&self, _message: &Message) -> bool {
        true
    }
}

fn display(n: &Name) -> String {
    n.to_string().trim_end_matches('.').to_ascii_lowercase()
}

fn normalize(fqdn: &str) -> String {
    fqdn.trim_end_matches('.').to_ascii_lowercase()
}

/// A triad record from the A/AAAA/CNAME records at a name.
fn record_from(
    zone: &str,
    fqdn: &str,
    records: &[DnsRecord],
    owner: Option<String>,
) -> Option<Record> {
    let ttl = records.iter().map(DnsRecord::ttl).min();
    if let Some(c) = records.iter().find_map(|r| match r.data() {
        RData::CNAME(c) => Some(c.0.clone()),
        _ => None,
    }) {
        return Some(Record {
            fqdn: normalize(fqdn),
            zone: normalize(zone),
            kind: RecordKind::Cname,
            target: Endpoint::Hostname {
                name: display(&c),
                alias_zone: None,
            },
            ttl,
            owner,
            owner_id: None,
        });
    }
    let mut addresses: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    if addresses.is_empty() {
        return None;
    }
    addresses.sort();
    addresses.dedup();
    Some(Record {
        fqdn: normalize(fqdn),
        zone: normalize(zone),
        kind: RecordKind::A,
        target: Endpoint::Ip { addresses },
        ttl,
        owner,
        owner_id: None,
    })
}

/// Whether two endpoints are the same, ignoring address order.
fn same_target(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Ip { addresses: x }, Endpoint::Ip { addresses: y }) => {
            let mut x = x.clone();
            let mut y = y.clone();
            x.sort();
            x.dedup();
            y.sort();
            y.dedup();
            x == y
        }
        (Endpoint::Hostname { name: x, .. }, Endpoint::Hostname { name: y, .. }) => {
            normalize(x) == normalize(y)
        }
        _ => false,
    }
}

fn not_owned(
    cluster: &ClusterRef,
    fqdn: &str,
    owners: &[String],
    kind: Option<RecordKind>,
) -> Error {
    Error::NotOwned {
        fqdn: fqdn.to_owned(),
        cluster: cluster.name.clone(),
        owner: match (owners.first(), kind) {
            (Some(o), _) => format!("owned by triad cluster `{o}`"),
            (None, Some(k)) => format!("a {k} record without triad's ownership TXT"),
            (None, None) => "a record without triad's ownership TXT".into(),
        },
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

    fn check_spec(&self, spec: &ValidSpec) -> Result<()> {
        let mut problems = match Self::settings_from_spec(spec) {
            Ok(s) => s.problems(),
            Err(Error::InvalidSpec(p)) => p.0,
            Err(e) => return Err(e),
        };
        if let Some(zone) = &self.settings.zone {
            let want = spec.dns.zone.trim_end_matches('.').to_ascii_lowercase();
            if normalize(zone) != want {
                problems.push(triad_core::error::SpecProblem {
                    field: "rfc2136.zone".into(),
                    problem: format!("is `{zone}`, but dns.zone is `{want}`"),
                    fix: "leave rfc2136.zone out, or make it dns.zone".into(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidSpec(problems.into()))
        }
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
        Ok(Self::to_record(&zone, fqdn, &state))
    }

    async fn owned_records(&self, cluster: &ClusterRef, zone: &str) -> Result<Vec<Record>> {
        let zone = self.zone_for(zone).to_owned();
        let action = "list owned records";
        let resource = format!("zone {zone}");
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;

        let mut by_name: BTreeMap<String, Vec<DnsRecord>> = BTreeMap::new();
        let mut transferred = false;
        if self.settings.owned_records == OwnedRecords::Axfr {
            match self
                .exchange(&client, wire::axfr(&zname), action, &resource)
                .await
            {
                Ok(resp) if resp.response_code() == ResponseCode::NoError => {
                    transferred = true;
                    // One message is enough for triad-sized zones over TCP (64 KiB);
                    // records past it would be missed, so check the closing SOA.
                    let soas = resp
                        .answers()
                        .iter()
                        .filter(|r| r.record_type() == RecordType::SOA)
                        .count();
                    if soas < 2 {
                        debug!(
                            zone,
                            "AXFR spans several messages; querying known names instead"
                        );
                        transferred = false;
                    } else {
                        for r in resp.answers() {
                            by_name
                                .entry(display(r.name()))
                                .or_default()
                                .push(r.clone());
                        }
                    }
                }
                Ok(resp) => {
                    debug!(zone, rcode = %resp.response_code(), "zone transfer refused; querying known names");
                }
                Err(e) if e.kind() == Some(FailureKind::Permission) => return Err(e),
                Err(e) => {
                    debug!(zone, error = %e, "zone transfer failed; querying known names");
                }
            }
        }

        let mut out = Vec::new();
        if transferred {
            for (name, recs) in &by_name {
                let Some(fqdn) = name.strip_prefix("_triad.") else {
                    continue;
                };
                let owners: Vec<String> = recs
                    .iter()
                    .filter_map(wire::txt_text)
                    .filter_map(|t| parse_ownership(&t))
                    .collect();
                if !owners.contains(&cluster.name) {
                    continue;
                }
                let at: Vec<DnsRecord> = by_name
                    .get(fqdn)
                    .map(|v| {
                        v.iter()
                            .filter(|r| wire::RECORD_TYPES.contains(&r.record_type()))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(owned_or_orphan(&zone, fqdn, &at, recs, &cluster.name));
            }
        } else {
            for fqdn in &self.settings.names {
                let fqdn = normalize(fqdn);
                let name = wire::name(&fqdn)
                    .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
                if !zname.zone_of(&name) {
                    continue;
                }
                let txt_name = wire::name(&ownership_name(&fqdn))
                    .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
                let state = self.read(&client, &zone, &name, &txt_name, action).await?;
                if state.owners().contains(&cluster.name) {
                    out.push(owned_or_orphan(
                        &zone,
                        &fqdn,
                        &state.records,
                        &state.txt,
                        &cluster.name,
                    ));
                }
            }
        }
        Ok(out)
    }

    async fn upsert_record(&self, cluster: &ClusterRef, request: &RecordRequest) -> Result<Record> {
        let zone = self.zone_for(&request.zone).to_owned();
        let fqdn = normalize(&request.fqdn);
        let action = "write";
        let resource = format!("record {fqdn}");
        if request.kind == RecordKind::Alias {
            return Err(self.err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                "RFC 2136 has no alias records; use an A record or a CNAME",
            ));
        }
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;
        let name = wire::name(&fqdn)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        if !zname.zone_of(&name) {
            return Err(self.err(
                action,
                &resource,
                FailureKind::InvalidRequest,
                format!("{fqdn} is not inside zone {zone}"),
            ));
        }
        let txt_name = wire::name(&ownership_name(&fqdn))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let state = self.read(&client, &zone, &name, &txt_name, action).await?;
        let owners = state.owners();
        let current = Self::to_record(&zone, &fqdn, &state);
        let foreign_txt = !state.txt.is_empty() && !owners.contains(&cluster.name);
        if foreign_txt || (current.is_some() && !owners.contains(&cluster.name)) {
            return Err(not_owned(cluster, &fqdn, &owners, current.map(|r| r.kind)));
        }

        let value = ownership_txt(cluster, request.kind);
        let want = Record {
            fqdn: fqdn.clone(),
            zone: normalize(&zone),
            kind: request.kind,
            target: request.target.clone(),
            ttl: Some(request.ttl),
            owner: Some(cluster.name.clone()),
            owner_id: cluster.id.clone(),
        };
        let txt_is_exact = state.txt.len() == 1
            && wire::txt_text(&state.txt[0]).as_deref() == Some(value.as_str())
            && state.txt[0].ttl() == request.ttl;
        if let Some(cur) = &current {
            if cur.kind == request.kind
                && same_target(&cur.target, &request.target)
                && cur.ttl == Some(request.ttl)
                && state.records.iter().all(|r| r.ttl() == request.ttl)
                && txt_is_exact
            {
                debug!(fqdn, "record already as requested");
                self.note_written(
                    &fqdn,
                    Some((request.kind, request.target.clone(), request.ttl)),
                );
                return Ok(want);
            }
        }

        let records = wire::target_records(&name, &request.target, request.ttl)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let message = wire::upsert(
            &zname,
            &name,
            &txt_name,
            &state.txt,
            &records,
            &value,
            request.ttl,
        );
        let resp = self.exchange(&client, message, action, &resource).await?;
        match resp.response_code() {
            ResponseCode::NoError => {
                info!(fqdn, kind = %request.kind, target = %request.target, "record written");
                self.note_written(
                    &fqdn,
                    Some((request.kind, request.target.clone(), request.ttl)),
                );
                Ok(want)
            }
            rcode @ (ResponseCode::YXDomain | ResponseCode::YXRRSet | ResponseCode::NXRRSet) => {
                // A prerequisite failed: somebody changed the name. Say who holds it now.
                let again = self.read(&client, &zone, &name, &txt_name, action).await?;
                let owners = again.owners();
                if !owners.contains(&cluster.name)
                    && (!again.txt.is_empty() || !again.records.is_empty())
                {
                    let kind = Self::to_record(&zone, &fqdn, &again).map(|r| r.kind);
                    if again.records.is_empty() && again.txt.is_empty() {
                        return Err(self.rcode_err(action, &resource, &zone, rcode));
                    }
                    return Err(not_owned(cluster, &fqdn, &owners, kind));
                }
                if request.kind == RecordKind::Cname && again.txt.is_empty() {
                    return Err(Error::NotOwned {
                        fqdn: fqdn.clone(),
                        cluster: cluster.name.clone(),
                        owner: "other records at the name, which a CNAME cannot share".into(),
                    });
                }
                Err(self.rcode_err(action, &resource, &zone, rcode))
            }
            rcode => Err(self.rcode_err(action, &resource, &zone, rcode)),
        }
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
        let deadline = tokio::time::Instant::now() + timeout;
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        loop {
            let found = self.lookup(&zone, &fqdn).await?;
            let done = match &want {
                // Nothing written by this provider: the server answers, so it is in sync.
                None => true,
                Some(None) => found.is_none(),
                Some(Some((kind, target, ttl))) => found.as_ref().is_some_and(|r| {
                    r.kind == *kind && same_target(&r.target, target) && r.ttl == Some(*ttl)
                }),
            };
            if done {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    resource: format!("DNS record {fqdn}"),
                    state: format!("served by {}", self.settings.server),
                    after: timeout,
                });
            }
            tokio::time::sleep(poll).await;
        }
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
        let zone = self.zone_for(zone).to_owned();
        let (action, resource) = ("change", format!("TXT record {name}"));
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;
        let owner = wire::name(&normalize(name))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let message = wire::swap_txt(&zname, &owner, expected, new);
        let resp = self.exchange(&client, message, action, &resource).await?;
        match resp.response_code() {
            ResponseCode::NoError => Ok(true),
            // A prerequisite failed: the TXT is not what the caller expected.
            ResponseCode::YXRRSet | ResponseCode::NXRRSet | ResponseCode::YXDomain => Ok(false),
            rcode => Err(self.rcode_err(action, &resource, &zone, rcode)),
        }
    }

    async fn delete_record(&self, cluster: &ClusterRef, zone: &str, fqdn: &str) -> Result<()> {
        let zone = self.zone_for(zone).to_owned();
        let fqdn = normalize(fqdn);
        let action = "delete";
        let resource = format!("record {fqdn}");
        let client = self.client(action, &resource).await?;
        let zname = self.check_zone(&client, &zone, action).await?;
        let name = wire::name(&fqdn)
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let txt_name = wire::name(&ownership_name(&fqdn))
            .map_err(|e| self.err(action, &resource, FailureKind::InvalidRequest, e))?;
        let state = self.read(&client, &zone, &name, &txt_name, action).await?;
        let owners = state.owners();
        if state.txt.is_empty() && state.records.is_empty() {
            self.note_written(&fqdn, None);
            return Ok(());
        }
        if !owners.contains(&cluster.name) {
            let kind = Self::to_record(&zone, &fqdn, &state).map(|r| r.kind);
            return Err(not_owned(cluster, &fqdn, &owners, kind));
        }
        let resp = self
            .exchange(
                &client,
                wire::delete(&zname, &name, &txt_name, &state.txt),
                action,
                &resource,
            )
            .await?;
        match resp.response_code() {
            ResponseCode::NoError => {
                info!(fqdn, "record deleted");
                self.note_written(&fqdn, None);
                Ok(())
            }
            rcode => Err(self.rcode_err(action, &resource, &zone, rcode)),
        }
    }
}

/// An owned record, or — when only our TXT is left (a write that failed half way
/// cannot happen, updates are atomic, but someone may have removed the record by
/// hand) — a record with no address, so `destroy` still removes the TXT.
fn owned_or_orphan(
    zone: &str,
    fqdn: &str,
    at: &[DnsRecord],
    txt: &[DnsRecord],
    cluster: &str,
) -> Record {
    let owner = Some(cluster.to_owned());
    let id = owner_id(txt);
    let found = record_from(zone, fqdn, at, owner.clone()).map(|r| Record {
        owner_id: id.clone(),
        ..r
    });
    found.unwrap_or_else(|| {
        let kind = txt
            .iter()
            .filter_map(wire::txt_text)
            .find(|t| parse_ownership(t).as_deref() == Some(cluster))
            .and_then(|t| t.rsplit_once("kind=").map(|(_, k)| k.to_owned()));
        Record {
            fqdn: normalize(fqdn),
            zone: normalize(zone),
            kind: if kind.as_deref() == Some("cname") {
                RecordKind::Cname
            } else {
                RecordKind::A
            },
            target: Endpoint::Ip { addresses: vec![] },
            ttl: None,
            owner,
            owner_id: id,
        }
    })
}

/// The cluster id in an ownership TXT RRset.
fn owner_id(txt: &[DnsRecord]) -> Option<String> {
    txt.iter()
        .filter_map(wire::txt_text)
        .find_map(|t| parse_ownership_id(&t))
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

    #[test]
    fn records_from_answers() {
        let n = wire::name("r.example.com").unwrap();
        let recs = wire::target_records(
            &n,
            &Endpoint::Ip {
                addresses: vec!["192.0.2.9".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            },
            60,
        )
        .unwrap();
        let r = record_from("example.com", "r.example.com", &recs, None).unwrap();
        assert_eq!(r.kind, RecordKind::A);
        assert_eq!(
            r.target,
            Endpoint::Ip {
                addresses: vec!["192.0.2.1".parse().unwrap(), "192.0.2.9".parse().unwrap()]
            }
        );
        assert_eq!(r.ttl, Some(60));
        assert!(same_target(
            &r.target,
            &Endpoint::Ip {
                addresses: vec!["192.0.2.9".parse().unwrap(), "192.0.2.1".parse().unwrap()]
            }
        ));
        let c = wire::target_records(
            &n,
            &Endpoint::Hostname {
                name: "LB.example.net.".into(),
                alias_zone: None,
            },
            30,
        )
        .unwrap();
        let r = record_from("example.com.", "R.example.com", &c, Some("x".into())).unwrap();
        assert_eq!(r.kind, RecordKind::Cname);
        assert_eq!(r.fqdn, "r.example.com");
        assert_eq!(
            r.target,
            Endpoint::Hostname {
                name: "lb.example.net".into(),
                alias_zone: None
            }
        );
        assert!(record_from("example.com", "r.example.com", &[], None).is_none());
    }

    #[test]
    fn orphan_txt_is_still_listed() {
        let t = wire::txt(
            &wire::name("_triad.r.example.com").unwrap(),
            60,
            &triad_core::provider::ownership_value("c", RecordKind::Cname),
        );
        let r = owned_or_orphan("example.com", "r.example.com", &[], &[t], "c");
        assert_eq!(r.kind, RecordKind::Cname);
        assert_eq!(r.owner.as_deref(), Some("c"));
    }

    #[test]
    fn rcodes_map_to_failure_kinds() {
        let p = Rfc2136Provider::new(Rfc2136Settings::new(
            "127.0.0.1:53",
            "k",
            Secret::new("eA=="),
        ))
        .unwrap();
        let kind = |rc| p.rcode_err("write", "record r", "example.com", rc).kind();
        assert_eq!(kind(ResponseCode::NotAuth), Some(FailureKind::Permission));
        assert_eq!(kind(ResponseCode::Refused), Some(FailureKind::Permission));
        assert_eq!(kind(ResponseCode::ServFail), Some(FailureKind::Transient));
        assert_eq!(
            kind(ResponseCode::NotZone),
            Some(FailureKind::InvalidRequest)
        );
        let e = p.rcode_err("write", "record r", "example.com", ResponseCode::Refused);
        assert!(e.to_string().contains("update-policy"), "{e}");
    }
}
