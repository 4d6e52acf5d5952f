//! What the provider writes, checked with real DNS queries (`dig`), and what it reads.

use std::net::IpAddr;
use std::time::Duration;

use triad_core::model::{Endpoint, RecordKind, RecordRequest};
use triad_core::provider::ownership_value;
use triad_core::{ClusterRef, DnsProvider};
use triad_rfc2136::{OwnedRecords, Rfc2136Provider};

use crate::{dig, provider, settings, ZONE};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn a_request(fqdn: &str, addrs: &[&str]) -> RecordRequest {
    let target = Endpoint::Ip {
        addresses: addrs.iter().map(|a| ip(a)).collect(),
    };
    let mut request = RecordRequest::new(fqdn, ZONE, RecordKind::A, target);
    request.ttl = 120;
    request
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn records_are_served_as_written() {
    let dns = provider();
    let cluster = ClusterRef::new("answers", "dc1");
    let fqdn = "answers.example.com";
    dns.upsert_record(
        &cluster,
        &a_request(fqdn, &["192.0.2.21", "192.0.2.20", "2001:db8::5"]),
    )
    .await
    .unwrap();
    dns.wait_record(ZONE, fqdn, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dig(fqdn, "A"), ["192.0.2.20", "192.0.2.21"]);
    assert_eq!(dig(fqdn, "AAAA"), ["2001:db8::5"]);
    assert_eq!(
        dig(&format!("_triad.{fqdn}"), "TXT"),
        [format!("\"{}\"", ownership_value("answers", RecordKind::A))]
    );

    // A → CNAME: the addresses go, the CNAME and the TXT's kind change.
    let mut cname = a_request(fqdn, &[]);
    cname.kind = RecordKind::Cname;
    cname.target = Endpoint::Hostname {
        name: "lb.example.net".into(),
        alias_zone: None,
    };
    let written = dns.upsert_record(&cluster, &cname).await.unwrap();
    assert!(cname.is_satisfied_by(&written));
    dns.wait_record(ZONE, fqdn, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dig(fqdn, "CNAME"), ["lb.example.net."]);
    assert!(dig(fqdn, "AAAA").is_empty() || dig(fqdn, "AAAA") == ["lb.example.net."]);
    assert_eq!(
        dig(&format!("_triad.{fqdn}"), "TXT"),
        [format!(
            "\"{}\"",
            ownership_value("answers", RecordKind::Cname)
        )]
    );

    dns.delete_record(&cluster, ZONE, fqdn).await.unwrap();
    dns.wait_record(ZONE, fqdn, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(dig(fqdn, "CNAME").is_empty());
    assert!(dig(&format!("_triad.{fqdn}"), "TXT").is_empty());
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn owned_records_by_transfer_and_by_names() {
    let cluster = ClusterRef::new("owned", "dc1");
    let axfr = provider();
    for fqdn in ["old-owned.example.com", "new-owned.example.com"] {
        axfr.upsert_record(&cluster, &a_request(fqdn, &["192.0.2.30"]))
            .await
            .unwrap();
    }
    let mut found: Vec<String> = axfr
        .owned_records(&cluster, ZONE)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.fqdn)
        .collect();
    found.sort();
    assert_eq!(found, ["new-owned.example.com", "old-owned.example.com"]);
    let other = axfr
        .owned_records(&ClusterRef::new("nobody", "dc1"), ZONE)
        .await
        .unwrap();
    assert!(
        other
            .iter()
            .all(|r| !r.fqdn.ends_with("-owned.example.com")),
        "{other:?}"
    );

    // Without a transfer only the names it knows are seen.
    let mut s = settings();
    s.owned_records = OwnedRecords::Names;
    s.names = vec!["new-owned.example.com".into()];
    let names = Rfc2136Provider::new(s).unwrap();
    let found = names.owned_records(&cluster, ZONE).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].fqdn, "new-owned.example.com");
    assert_eq!(found[0].owner.as_deref(), Some("owned"));

    for fqdn in ["old-owned.example.com", "new-owned.example.com"] {
        axfr.delete_record(&cluster, ZONE, fqdn).await.unwrap();
    }
    assert!(axfr.owned_records(&cluster, ZONE).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs BIND; scripts/test starts it"]
async fn secret_from_file_and_env() {
    let secret = crate::env("TRIAD_BIND_SECRET");
    let dir = std::env::temp_dir().join(format!("triad-rfc2136-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tsig.key");
    // The output of tsig-keygen, as BIND admins keep it.
    std::fs::write(
        &file,
        format!("key \"x\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    )
    .unwrap();
    let mut s = settings();
    s.secret = None;
    s.secret_file = Some(file);
    let from_file = Rfc2136Provider::new(s).unwrap();
    assert!(from_file
        .lookup(ZONE, "nothing-here.example.com")
        .await
        .unwrap()
        .is_none());

    std::env::set_var("TRIAD_RFC2136_IT_SECRET", &secret);
    let mut s = settings();
    s.secret = None;
    s.secret_env = Some("TRIAD_RFC2136_IT_SECRET".into());
    let from_env = Rfc2136Provider::new(s).unwrap();
    assert!(from_env
        .lookup(ZONE, "nothing-here.example.com")
        .await
        .unwrap()
        .is_none());
    std::fs::remove_dir_all(&dir).ok();
}
