//! A wrong key, a refused update, an unknown zone and records we do not own each
//! give a clear error — and the secret never appears in one.

use triad_core::model::{Endpoint, RecordKind, RecordRequest};
use triad_core::secret::Secret;
use triad_core::{ClusterRef, DnsProvider, Error, FailureKind};
use triad_rfc2136::Rfc2136Provider;

use crate::{dig, provider, settings, ZONE};

fn request(fqdn: &str, zone: &str) -> RecordRequest {
    let target = Endpoint::Ip {
        addresses: vec!["192.0.2.40".parse().unwrap()],
    };
    RecordRequest::new(fqdn, zone, RecordKind::A, target)
}

fn assert_permission(e: &Error, needle: &str, secret: &str) {
    let text = e.to_string();
    assert_eq!(e.kind(), Some(FailureKind::Permission), "{text}");
    assert!(text.contains(needle), "`{needle}` not in: {text}");
    assert!(!text.contains(secret), "the secret leaked: {text}");
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn wrong_secret_is_a_permission_error() {
    let wrong = "d3Jvbmcgc2VjcmV0IGZvciB0aGUga2V5IQ==";
    let mut s = settings();
    s.secret = Some(Secret::new(wrong));
    let dns = Rfc2136Provider::new(s).unwrap();
    let e = dns.lookup(ZONE, "x.example.com").await.unwrap_err();
    assert_permission(&e, "key", wrong);
    let e = dns
        .upsert_record(
            &ClusterRef::new("wrongkey", "dc1"),
            &request("wrongkey.example.com", ZONE),
        )
        .await
        .unwrap_err();
    assert_permission(&e, "key", wrong);
    assert!(dig("wrongkey.example.com", "A").is_empty());
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn unknown_key_name_is_a_permission_error() {
    let mut s = settings();
    s.key_name = "no-such-key".into();
    let dns = Rfc2136Provider::new(s).unwrap();
    let e = dns.lookup(ZONE, "x.example.com").await.unwrap_err();
    assert_permission(&e, "no-such-key", &crate::env("TRIAD_BIND_SECRET"));
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn refused_update_names_the_policy() {
    // testing/bind: zone readonly.test has `allow-update { none; }`.
    let mut s = settings();
    s.zone = None;
    let dns = Rfc2136Provider::new(s).unwrap();
    let e = dns
        .upsert_record(
            &ClusterRef::new("refused", "dc1"),
            &request("rancher.readonly.test", "readonly.test"),
        )
        .await
        .unwrap_err();
    assert_permission(&e, "REFUSED", &crate::env("TRIAD_BIND_SECRET"));
    assert!(e.to_string().contains("update-policy"), "{e}");
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn unknown_zone_is_not_found() {
    let mut s = settings();
    s.zone = None;
    let dns = Rfc2136Provider::new(s).unwrap();
    let e = dns
        .lookup("not-served.test", "a.not-served.test")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(FailureKind::NotFound), "{e}");
    assert!(e.to_string().contains("not authoritative"), "{e}");
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn unowned_records_are_never_touched() {
    let dns = provider();
    let me = ClusterRef::new("unowned", "dc1");
    // An A record without a TXT.
    let e = dns
        .upsert_record(&me, &request("foreign.example.com", ZONE))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotOwned { .. }), "{e}");
    assert!(
        e.to_string().contains("without triad's ownership TXT"),
        "{e}"
    );
    assert_eq!(dig("foreign.example.com", "A"), ["192.0.2.99"]);
    // A CNAME where other data (an MX) lives.
    let mut cname = request("mail.example.com", ZONE);
    cname.kind = RecordKind::Cname;
    cname.target = Endpoint::Hostname {
        name: "lb.example.net".into(),
        alias_zone: None,
    };
    let e = dns.upsert_record(&me, &cname).await.unwrap_err();
    assert!(matches!(e, Error::NotOwned { .. }), "{e}");
    assert_eq!(dig("mail.example.com", "MX"), ["10 mx.example.net."]);
    assert!(dig("_triad.mail.example.com", "TXT").is_empty());
    // Another cluster's record.
    let theirs = ClusterRef::new("unowned-other", "dc1");
    dns.upsert_record(&theirs, &request("theirs.example.com", ZONE))
        .await
        .unwrap();
    let e = dns
        .delete_record(&me, ZONE, "theirs.example.com")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("owned by triad cluster `unowned-other`"),
        "{e}"
    );
    assert_eq!(dig("theirs.example.com", "A"), ["192.0.2.40"]);
    dns.delete_record(&theirs, ZONE, "theirs.example.com")
        .await
        .unwrap();
}
