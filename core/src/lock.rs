//! One run at a time per cluster: a lease lock held for the duration of `apply` and
//! `destroy`.
//!
//! The lock is a TXT record `_triad-lock.<cluster>.<zone>` in the cluster's DNS zone,
//! holding `triad-lock,holder=<who>,since=<unix s>,expires=<unix s>`. It is taken and
//! released with the DNS provider's atomic conditional change
//! ([`DnsProvider::swap_txt`]: Route 53 change batch DELETE-exact + CREATE, Cloud DNS
//! change with exact deletions, RFC 2136 prerequisites, the sim's atomic batch), so of
//! two runs racing for it exactly one wins.
//!
//! A second run waits up to [`Options::lock_wait`](crate::orchestrator::Options) and
//! then fails with [`Error::Locked`] naming the holder and since when. A lock whose
//! lease has expired (its holder crashed) is broken only when the caller says so
//! ([`Options::break_stale_lock`](crate::orchestrator::Options)).
//!
//! The holder renews its lease every third of [`Options::lock_lease`](crate::orchestrator::Options)
//! while it works (the same conditional change, from its own value to one with a
//! later expiry), so a run longer than the lease is never taken for a crashed one.
//! If the lock was taken over meanwhile, the run stops with [`Error::Locked`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::provider::DnsProvider;
use crate::spec::ClusterRef;

/// How often a waiting run looks at the lock again.
const POLL: Duration = Duration::from_secs(5);

/// The name of the lock TXT of `cluster` in `zone`.
pub fn lock_name(cluster: &str, zone: &str) -> String {
    format!("_triad-lock.{cluster}.{}", zone.trim_end_matches('.'))
}

/// A lock record's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRecord {
    /// Who holds it (a run id, or what the caller set in the options).
    pub holder: String,
    /// When it was taken, seconds since the Unix epoch.
    pub since: u64,
    /// When the lease runs out, seconds since the Unix epoch.
    pub expires: u64,
}

impl LockRecord {
    /// The TXT value.
    pub fn to_txt(&self) -> String {
        format!(
            "triad-lock,holder={},since={},expires={}",
            self.holder, self.since, self.expires
        )
    }

    /// Parse a TXT value written by [`LockRecord::to_txt`].
    ///
    /// ```
    /// use triad_core::lock::LockRecord;
    /// let r = LockRecord { holder: "ci-42".into(), since: 10, expires: 20 };
    /// assert_eq!(LockRecord::parse(&r.to_txt()), Some(r));
    /// assert_eq!(LockRecord::parse("v=spf1"), None);
    /// ```
    pub fn parse(txt: &str) -> Option<Self> {
        let mut parts = txt.trim_matches('"').split(',');
        if parts.next()? != "triad-lock" {
            return None;
        }
        let (mut holder, mut since, mut expires) = (None, None, None);
        for p in parts {
            match p.split_once('=')? {
                ("holder", v) => holder = Some(v.to_owned()),
                ("since", v) => since = v.parse().ok(),
                ("expires", v) => expires = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            holder: holder?,
            since: since?,
            expires: expires?,
        })
    }
}

/// A held lock; renew it with [`hold`], give it back with [`release`].
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    zone: String,
    name: String,
    value: String,
    cluster: ClusterRef,
    lease: Duration,
}

/// What [`acquire`] needs to know.
pub(crate) struct Request<'a> {
    pub cluster: &'a ClusterRef,
    pub zone: &'a str,
    pub holder: &'a str,
    pub lease: Duration,
    pub wait: Duration,
    pub break_stale: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Take the cluster's lock, waiting up to `wait` for another holder to let go.
/// `Ok(None)` when the DNS provider cannot hold a lock (a warning is logged).
pub(crate) async fn acquire(dns: &dyn DnsProvider, req: Request<'_>) -> Result<Option<Lease>> {
    if !dns.capabilities().lock {
        tracing::warn!(
            provider = dns.name(),
            cluster = %req.cluster.name,
            "the DNS provider cannot hold a lock: nothing stops a second run of this cluster at the same time"
        );
        return Ok(None);
    }
    let name = lock_name(&req.cluster.name, req.zone);
    let deadline = tokio::time::Instant::now() + req.wait;
    loop {
        let now = unix_now();
        let mine = LockRecord {
            holder: req.holder.to_owned(),
            since: now,
            expires: now + req.lease.as_secs(),
        }
        .to_txt();
        let current = dns.read_txt(req.zone, &name).await?;
        let expected = match current.as_deref() {
            None => None,
            Some(raw) => match LockRecord::parse(raw) {
                // Ours already (a lost response of our own earlier swap): renew it.
                Some(r) if r.holder == req.holder => Some(raw),
                Some(r) if r.expires <= now && req.break_stale => {
                    tracing::warn!(holder = %r.holder, since = r.since, "breaking a stale lock");
                    Some(raw)
                }
                other => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(locked(req.cluster, other, raw, now));
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            },
        };
        if dns.swap_txt(req.zone, &name, expected, Some(&mine)).await? {
            return Ok(Some(Lease {
                zone: req.zone.to_owned(),
                name,
                value: mine,
                cluster: req.cluster.clone(),
                lease: req.lease,
            }));
        }
        // Somebody changed it between our read and our write: look again.
    }
}

fn locked(cluster: &ClusterRef, record: Option<LockRecord>, raw: &str, now: u64) -> Error {
    match record {
        Some(r) => Error::Locked {
            cluster: cluster.name.clone(),
            holder: r.holder,
            since: rfc3339(r.since),
            expires: rfc3339(r.expires),
            stale: r.expires <= now,
        },
        None => Error::Locked {
            cluster: cluster.name.clone(),
            holder: format!("an unknown TXT record `{raw}`"),
            since: "unknown".into(),
            expires: "never".into(),
            stale: false,
        },
    }
}

/// Renew `lease` every third of its length, for as long as the caller runs it
/// (beside its work, in a `select!`). Returns only when the lock was taken over:
/// [`Error::Locked`] naming the new holder. A renewal that fails for another reason
/// (the DNS API is briefly unavailable) is logged and tried again at the next turn;
/// the lease still has two thirds of its length left.
pub(crate) async fn hold(dns: &dyn DnsProvider, lease: &std::sync::Mutex<Lease>) -> Error {
    let (every, zone, name, cluster) = {
        let l = lease.lock().unwrap_or_else(|e| e.into_inner());
        (
            (l.lease / 3).max(Duration::from_secs(1)),
            l.zone.clone(),
            l.name.clone(),
            l.cluster.clone(),
        )
    };
    loop {
        tokio::time::sleep(every).await;
        let current = lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .clone();
        let Some(mut record) = LockRecord::parse(&current) else {
            return Error::Locked {
                cluster: cluster.name.clone(),
                holder: "unknown".into(),
                since: "unknown".into(),
                expires: "unknown".into(),
                stale: false,
            };
        };
        let length = lease.lock().unwrap_or_else(|e| e.into_inner()).lease;
        record.expires = unix_now() + length.as_secs();
        let renewed = record.to_txt();
        match dns
            .swap_txt(&zone, &name, Some(&current), Some(&renewed))
            .await
        {
            Ok(true) => {
                tracing::debug!(lock = %name, expires = record.expires, "lock renewed");
                lease.lock().unwrap_or_else(|e| e.into_inner()).value = renewed;
            }
            Ok(false) => {
                let now = unix_now();
                return match dns.read_txt(&zone, &name).await {
                    Ok(Some(raw)) => locked(&cluster, LockRecord::parse(&raw), &raw, now),
                    _ => locked(&cluster, None, "(gone)", now),
                };
            }
            Err(e) => {
                tracing::warn!(lock = %name, error = %e, "could not renew the lock; trying again")
            }
        }
    }
}

/// Give the lock back. A lock somebody broke meanwhile is left alone (and logged).
pub(crate) async fn release(dns: &dyn DnsProvider, lease: &Lease) -> Result<()> {
    if !dns
        .swap_txt(&lease.zone, &lease.name, Some(&lease.value), None)
        .await?
    {
        tracing::warn!(lock = %lease.name, "the lock was taken over by another run before release");
    }
    Ok(())
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// ```
/// assert_eq!(triad_core::lock::rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(triad_core::lock::rfc3339(1_764_563_696), "2025-12-01T04:34:56Z");
/// ```
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
