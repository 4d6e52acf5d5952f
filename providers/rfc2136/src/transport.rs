//! Talking to the server: a TCP connection whose every message is signed (TSIG),
//! answers and response codes mapped to triad's errors, and reading what is at a
//! name.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_client::client::Client;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageFinalizer, MessageVerifier, ResponseCode};
use hickory_proto::rr::{Name, Record as DnsRecord, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::xfer::{DnsHandle, DnsMultiplexer, DnsResponse, FirstAnswer};
use hickory_proto::ProtoError;
use triad_core::error::{Error, FailureKind, Result};
use triad_core::provider::parse_ownership;

use crate::records::display;
use crate::{settings, wire, Rfc2136Provider};

/// What the server holds at a name: the records triad writes, and the TXT beside it.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) records: Vec<DnsRecord>,
    pub(crate) txt: Vec<DnsRecord>,
}

impl State {
    /// Cluster names in the TXT RRset (one per triad-style value).
    pub(crate) fn owners(&self) -> Vec<String> {
        self.txt
            .iter()
            .filter_map(wire::txt_text)
            .filter_map(|t| parse_ownership(&t))
            .collect()
    }
}

impl Rfc2136Provider {
    pub(crate) async fn server_addr(&self, action: &str, resource: &str) -> Result<SocketAddr> {
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
    pub(crate) async fn client(&self, action: &str, resource: &str) -> Result<Client> {
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
    pub(crate) fn proto_err(&self, action: &str, resource: &str, e: ProtoError) -> Error {
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
    pub(crate) fn rcode_err(
        &self,
        action: &str,
        resource: &str,
        zone: &str,
        rcode: ResponseCode,
    ) -> Error {
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

    pub(crate) async fn exchange(
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
    pub(crate) async fn rrset(
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
    pub(crate) async fn check_zone(
        &self,
        client: &Client,
        zone: &str,
        action: &str,
    ) -> Result<Name> {
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

    pub(crate) async fn read(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rfc2136Settings;
    use triad_core::secret::Secret;

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
