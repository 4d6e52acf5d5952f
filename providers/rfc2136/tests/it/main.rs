//! triad-rfc2136's one integration test binary. Every test talks to a real BIND
//! (`named` from Debian's bind9) that `scripts/test` starts on a loopback port with
//! a TSIG key and the zones in `testing/bind/`; it exports `TRIAD_BIND_ADDR`,
//! `TRIAD_BIND_KEY_NAME` and `TRIAD_BIND_SECRET`.

mod conformance;
mod day2;
mod docs;
mod e2e;
mod errors;
mod queries;

use std::process::Command;

use triad_core::secret::Secret;
use triad_rfc2136::{Rfc2136Provider, Rfc2136Settings};

pub const ZONE: &str = "example.com";

/// An environment variable scripts/test exports, or a panic saying so.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through scripts/test, which starts BIND and exports it")
    })
}

/// Settings for the test server with the right key.
pub fn settings() -> Rfc2136Settings {
    let mut s = Rfc2136Settings::new(
        env("TRIAD_BIND_ADDR"),
        env("TRIAD_BIND_KEY_NAME"),
        Secret::new(env("TRIAD_BIND_SECRET")),
    );
    s.zone = Some(ZONE.into());
    s.poll_interval_ms = 50;
    s
}

pub fn provider() -> Rfc2136Provider {
    Rfc2136Provider::new(settings()).expect("valid settings")
}

/// `dig +short` against the test server (signed with the key), one answer per line.
pub fn dig(name: &str, rtype: &str) -> Vec<String> {
    dig_lines(name, rtype, "+short")
}

/// The TTL of each answer BIND gives for `name` and `rtype`, read with `dig`.
pub fn dig_ttls(name: &str, rtype: &str) -> Vec<u32> {
    dig_lines(name, rtype, "+noall +answer")
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no TTL in the dig answer `{l}`"))
        })
        .collect()
}

/// `dig` with `flags` against the test server (signed with the key), one sorted
/// line per answer.
fn dig_lines(name: &str, rtype: &str, flags: &str) -> Vec<String> {
    let addr = env("TRIAD_BIND_ADDR");
    let (host, port) = addr.rsplit_once(':').expect("TRIAD_BIND_ADDR is host:port");
    let key = format!(
        "hmac-sha256:{}:{}",
        env("TRIAD_BIND_KEY_NAME"),
        env("TRIAD_BIND_SECRET")
    );
    let out = Command::new("dig")
        .args([&format!("@{host}"), "-p", port, "+tcp"])
        .args(flags.split(' '))
        .args(["-y", &key, name, rtype])
        .output()
        .expect("dig runs (apt-get install bind9-dnsutils)");
    assert!(
        out.status.success(),
        "dig {name} {rtype} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}
