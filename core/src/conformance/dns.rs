//! DNS checks: records, ownership, the lock's conditional write.

use std::net::{IpAddr, Ipv4Addr};

use crate::model::{Endpoint, RecordKind, RecordRequest};
use crate::provider::DnsProvider;
use crate::spec::DEFAULT_TTL;

use super::{expect_not_owned, ok, Fixture};

/// The record request the DNS checks write for `target`.
fn record_request(dns: &dyn DnsProvider, fx: &Fixture, target: &Endpoint) -> RecordRequest {
    let (kind, target) = match target {
        Endpoint::Ip { .. } => (RecordKind::A, target.clone()),
        Endpoint::Hostname {
            alias_zone: Some(_),
            ..
        } if dns.capabilities().alias => (RecordKind::Alias, target.clone()),
        Endpoint::Hostname { name, .. } => (
            RecordKind::Cname,
            Endpoint::Hostname {
                name: name.clone(),
                alias_zone: None,
            },
        ),
    };
    RecordRequest {
        fqdn: fx.fqdn.clone(),
        zone: fx.dns_zone.clone(),
        kind,
        target,
        ttl: DEFAULT_TTL,
    }
}

/// A different target of the same kind as `target`.
fn changed(target: &Endpoint) -> Endpoint {
    match target {
        Endpoint::Ip { .. } => Endpoint::Ip {
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))],
        },
        Endpoint::Hostname { name, alias_zone } => Endpoint::Hostname {
            name: format!("changed-{name}"),
            alias_zone: alias_zone.clone(),
        },
    }
}

/// Write the record, wait for it, look it up with its owner, rewrite it (a no-op),
/// update it, check another cluster can neither overwrite nor delete it, delete it
/// twice and check it is gone.
pub async fn dns_upsert_ownership_delete(dns: &dyn DnsProvider, fx: &Fixture) {
    let p = dns.name();
    let (zone, fqdn) = (&fx.dns_zone, &fx.fqdn);
    let before = ok(p, "lookup()", dns.lookup(zone, fqdn).await);
    assert!(
        before.is_none(),
        "[{p}] the fixture's name {fqdn} must be free, but holds {before:?}"
    );

    let request = record_request(dns, fx, &fx.record_target);
    let written = ok(
        p,
        format_args!("upsert_record({fqdn})"),
        dns.upsert_record(&fx.cluster, &request).await,
    );
    assert!(
        request.is_satisfied_by(&written),
        "[{p}] upsert_record returned {written:?} for {request:?}"
    );
    assert_eq!(written.owner.as_deref(), Some(fx.cluster.name.as_str()));
    ok(
        p,
        "wait_record()",
        dns.wait_record(zone, fqdn, fx.timeout).await,
    );
    let found = ok(p, "lookup()", dns.lookup(zone, fqdn).await)
        .unwrap_or_else(|| panic!("[{p}] the written record {fqdn} is not found"));
    assert!(
        request.is_satisfied_by(&found),
        "[{p}] lookup() found {found:?}, wrote {request:?}"
    );
    assert_eq!(
        found.owner.as_deref(),
        Some(fx.cluster.name.as_str()),
        "[{p}] lookup() does not report the ownership TXT"
    );
    let owned = ok(
        p,
        "owned_records()",
        dns.owned_records(&fx.cluster, zone).await,
    );
    assert!(
        owned.iter().any(|r| r.fqdn == *fqdn),
        "[{p}] owned_records() misses {fqdn}: {owned:?}"
    );

    let again = ok(
        p,
        "upsert_record() again",
        dns.upsert_record(&fx.cluster, &request).await,
    );
    assert_eq!(again, written, "[{p}] rewriting the same record changed it");

    expect_not_owned(
        p,
        "upsert_record() by another cluster",
        dns.upsert_record(&fx.other_cluster, &request).await,
    );
    expect_not_owned(
        p,
        "delete_record() by another cluster",
        dns.delete_record(&fx.other_cluster, zone, fqdn).await,
    );
    let still = ok(p, "lookup()", dns.lookup(zone, fqdn).await);
    assert_eq!(
        still.as_ref(),
        Some(&found),
        "[{p}] another cluster's refused change altered the record"
    );

    let update = record_request(dns, fx, &changed(&fx.record_target));
    ok(
        p,
        "upsert_record() with a new target",
        dns.upsert_record(&fx.cluster, &update).await,
    );
    ok(
        p,
        "wait_record()",
        dns.wait_record(zone, fqdn, fx.timeout).await,
    );
    let updated = ok(p, "lookup()", dns.lookup(zone, fqdn).await)
        .unwrap_or_else(|| panic!("[{p}] the updated record {fqdn} is not found"));
    assert!(
        update.is_satisfied_by(&updated),
        "[{p}] the record was not updated: {updated:?}"
    );
    assert_eq!(updated.owner.as_deref(), Some(fx.cluster.name.as_str()));

    ok(
        p,
        "delete_record()",
        dns.delete_record(&fx.cluster, zone, fqdn).await,
    );
    ok(
        p,
        "wait_record()",
        dns.wait_record(zone, fqdn, fx.timeout).await,
    );
    ok(
        p,
        "delete_record() again",
        dns.delete_record(&fx.cluster, zone, fqdn).await,
    );
    let gone = ok(p, "lookup()", dns.lookup(zone, fqdn).await);
    assert!(
        gone.is_none(),
        "[{p}] a deleted record is still found: {gone:?}"
    );
    let owned = ok(
        p,
        "owned_records()",
        dns.owned_records(&fx.cluster, zone).await,
    );
    assert!(
        owned.iter().all(|r| r.fqdn != *fqdn),
        "[{p}] owned_records() still lists the deleted {fqdn}"
    );
}

/// A record nobody owns at `foreign_fqdn` (the caller made it, e.g. with the sim's
/// `put_foreign_record`) is neither overwritten nor deleted, and stays as it was.
pub async fn dns_refuses_foreign_record(dns: &dyn DnsProvider, fx: &Fixture, foreign_fqdn: &str) {
    let p = dns.name();
    let zone = &fx.dns_zone;
    let before = ok(p, "lookup()", dns.lookup(zone, foreign_fqdn).await).unwrap_or_else(|| {
        panic!("[{p}] the caller should have created a record at {foreign_fqdn}")
    });
    assert_eq!(
        before.owner, None,
        "[{p}] the foreign record at {foreign_fqdn} should have no owner"
    );
    let request = RecordRequest {
        fqdn: foreign_fqdn.to_owned(),
        ..record_request(dns, fx, &fx.record_target)
    };
    expect_not_owned(
        p,
        "upsert_record() over a foreign record",
        dns.upsert_record(&fx.cluster, &request).await,
    );
    expect_not_owned(
        p,
        "delete_record() of a foreign record",
        dns.delete_record(&fx.cluster, zone, foreign_fqdn).await,
    );
    let after = ok(p, "lookup()", dns.lookup(zone, foreign_fqdn).await);
    assert_eq!(
        after.as_ref(),
        Some(&before),
        "[{p}] a refused change altered the foreign record"
    );
    let owned = ok(
        p,
        "owned_records()",
        dns.owned_records(&fx.cluster, zone).await,
    );
    assert!(
        owned.iter().all(|r| r.fqdn != foreign_fqdn),
        "[{p}] owned_records() claims the foreign record"
    );
}

/// The lock's conditional write ([`DnsProvider::swap_txt`]): two writers racing to
/// create the lock, exactly one wins; a swap from a value that is not there changes
/// nothing; the holder's swap and delete succeed. Skipped (returns) when the provider
/// says it cannot hold a lock ([`DnsCapabilities::lock`](crate::provider::DnsCapabilities)).
pub async fn dns_lock_conditional_write(dns: &dyn DnsProvider, fx: &Fixture) {
    let p = dns.name();
    if !dns.capabilities().lock {
        return;
    }
    let zone = &fx.dns_zone;
    let name = crate::lock::lock_name(&fx.cluster.name, zone);
    let value = |holder: &str| {
        crate::lock::LockRecord {
            holder: holder.into(),
            since: 1,
            expires: 2,
        }
        .to_txt()
    };
    let (a, b, c) = (value("writer-a"), value("writer-b"), value("writer-c"));
    assert_eq!(
        ok(p, "read_txt() before", dns.read_txt(zone, &name).await),
        None,
        "[{p}] a lock record exists at {name} before the check"
    );
    let (won_a, won_b) = tokio::join!(
        dns.swap_txt(zone, &name, None, Some(&a)),
        dns.swap_txt(zone, &name, None, Some(&b)),
    );
    let (won_a, won_b) = (
        ok(p, "swap_txt(writer-a)", won_a),
        ok(p, "swap_txt(writer-b)", won_b),
    );
    assert!(
        won_a ^ won_b,
        "[{p}] two writers creating {name}: exactly one must win (a: {won_a}, b: {won_b})"
    );
    let (winner, loser) = if won_a { (&a, &b) } else { (&b, &a) };
    assert_eq!(
        ok(
            p,
            "read_txt() after the race",
            dns.read_txt(zone, &name).await
        )
        .as_deref(),
        Some(winner.as_str()),
        "[{p}] the lock holds the winner's value"
    );
    assert!(
        !ok(
            p,
            "swap_txt(loser → c)",
            dns.swap_txt(zone, &name, Some(loser), Some(&c)).await
        ),
        "[{p}] a swap from a value that is not there must fail"
    );
    assert!(
        !ok(
            p,
            "swap_txt(none → c)",
            dns.swap_txt(zone, &name, None, Some(&c)).await
        ),
        "[{p}] creating a lock that exists must fail"
    );
    assert!(
        ok(
            p,
            "swap_txt(winner → c)",
            dns.swap_txt(zone, &name, Some(winner), Some(&c)).await
        ),
        "[{p}] the holder's swap must succeed"
    );
    assert_eq!(
        ok(
            p,
            "read_txt() after the swap",
            dns.read_txt(zone, &name).await
        )
        .as_deref(),
        Some(c.as_str())
    );
    assert!(
        ok(
            p,
            "swap_txt(c → none)",
            dns.swap_txt(zone, &name, Some(&c), None).await
        ),
        "[{p}] the holder's release must succeed"
    );
    assert_eq!(
        ok(p, "read_txt() at the end", dns.read_txt(zone, &name).await),
        None
    );
}
