//! The state file (`[sim] state_file`): the simulated cloud saved as JSON after
//! every mutating call and loaded when a [`SimCloud`](crate::SimCloud) is made, so
//! the cloud outlives one process (`triad apply`, then `triad destroy`).
//!
//! Times are saved as wall-clock milliseconds since the Unix epoch, so the time that
//! passes between two processes passes in the simulated cloud too (a balancer
//! created before a pause is active after it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use triad_core::{Error, FailureKind, Result};

use crate::world::{Balancer, HostedZone, Instance, World};
use crate::{SimListener, SimSecurityGroup, SimTargetGroup, PROVIDER};

/// The format version written in every state file.
const VERSION: u32 = 1;

/// What a state file holds: every resource, the id generator's state, and the
/// submission times of DNS changes. Faults and call statistics are not saved.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFile {
    version: u32,
    rng: u64,
    instances: BTreeMap<String, Instance>,
    security_groups: BTreeMap<String, SimSecurityGroup>,
    target_groups: BTreeMap<String, SimTargetGroup>,
    balancers: BTreeMap<String, Balancer>,
    listeners: BTreeMap<String, SimListener>,
    zones: BTreeMap<String, HostedZone>,
    /// Change id → submission time, Unix milliseconds.
    changes: BTreeMap<String, u64>,
    next_host: BTreeMap<usize, u32>,
}

impl World {
    fn to_file(&self) -> StateFile {
        StateFile {
            version: VERSION,
            rng: self.rng.get_seed(),
            instances: self.instances.clone(),
            security_groups: self.security_groups.clone(),
            target_groups: self.target_groups.clone(),
            balancers: self.balancers.clone(),
            listeners: self.listeners.clone(),
            zones: self.zones.clone(),
            changes: self
                .changes
                .iter()
                .map(|(k, t)| (k.clone(), to_unix_ms(*t)))
                .collect(),
            next_host: self.next_host.clone(),
        }
    }

    fn from_file(file: StateFile, seed: u64) -> World {
        let mut w = World::new(seed);
        w.rng = fastrand::Rng::with_seed(file.rng);
        w.instances = file.instances;
        w.security_groups = file.security_groups;
        w.target_groups = file.target_groups;
        w.balancers = file.balancers;
        w.listeners = file.listeners;
        w.zones = file.zones;
        w.changes = file
            .changes
            .into_iter()
            .map(|(k, ms)| (k, from_unix_ms(ms)))
            .collect();
        w.next_host = file.next_host;
        w
    }
}

fn bad_file(path: &Path, message: impl Into<String>) -> Error {
    Error::invalid(
        "sim.state_file",
        format!("{}: {}", path.display(), message.into()),
        "remove the file to start an empty simulated cloud, or point state_file elsewhere",
    )
}

/// The world saved at `path`, or a new one (seeded with `seed`) when there is no file.
pub(crate) fn load(path: &Path, seed: u64) -> Result<World> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(World::new(seed)),
        Err(e) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        }
    };
    let file: StateFile = serde_json::from_str(&text)
        .map_err(|e| bad_file(path, format!("not a simulated cloud state file: {e}")))?;
    if file.version != VERSION {
        return Err(bad_file(
            path,
            format!(
                "has format version {}, this triad reads {VERSION}",
                file.version
            ),
        ));
    }
    Ok(World::from_file(file, seed))
}

/// Write `world` to `path` atomically (a temporary file renamed over it).
pub(crate) fn save(world: &World, path: &Path) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::provider(
            PROVIDER,
            "save state to",
            path.display().to_string(),
            FailureKind::Other,
            e.to_string(),
        )
    };
    let text = serde_json::to_string_pretty(&world.to_file()).map_err(|e| {
        Error::provider(
            PROVIDER,
            "serialize state for",
            path.display().to_string(),
            FailureKind::Other,
            e.to_string(),
        )
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// An instant as wall-clock milliseconds since the Unix epoch.
fn to_unix_ms(t: Instant) -> u64 {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let at = if t <= now {
        wall.checked_sub(now - t).unwrap_or(UNIX_EPOCH)
    } else {
        wall + (t - now)
    };
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant of wall-clock time `ms` (Unix milliseconds). A time further back
/// than the monotonic clock reaches is moved as far back as it goes.
fn from_unix_ms(ms: u64) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    match wall.duration_since(at) {
        Ok(mut age) => loop {
            if let Some(t) = now.checked_sub(age) {
                return t;
            }
            age /= 2;
        },
        Err(ahead) => now + ahead.duration(),
    }
}

/// `#[serde(with)]` for an [`Instant`] as Unix milliseconds.
pub(crate) mod wall {
    use serde::{Deserialize, Deserializer, Serializer};
    use tokio::time::Instant;

    pub(crate) fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_unix_ms(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        u64::deserialize(d).map(super::from_unix_ms)
    }
}

/// `#[serde(with)]` for an optional [`Instant`] as Unix milliseconds.
pub(crate) mod wall_opt {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use tokio::time::Instant;

    pub(crate) fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        t.map(super::to_unix_ms).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Instant>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(super::from_unix_ms))
    }
}
