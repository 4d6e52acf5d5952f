//! Helpers shared by the test modules: a valid base spec, snippets merged on top of
//! it, and temporary spec files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use triad_core::spec::ClusterSpec;

/// A valid spec that every bad-spec case starts from.
pub(crate) const BASE: &str = r#"
name = "rancher"
region = "us-east-1"
zones = ["us-east-1a", "us-east-1b", "us-east-1c"]

[nodes]
count = 3
size = "t3.xlarge"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyMaterial admin@example"]
ssh_allowed_cidrs = ["203.0.113.0/24"]
disk_gib = 100

[proxy]
http = "http://proxy.corp.example:3128"
no_proxy = ["10.20.0.0/16", ".corp.example"]

[load_balancer]
mode = "l4"

[dns]
zone = "example.com"
hostname = "rancher.example.com"

[labels]
team = "platform"
"#;

/// `BASE` with `snippet` merged on top: tables are merged key by key, any other
/// value in the snippet replaces the base's.
pub(crate) fn merged(snippet: &str) -> String {
    let mut base: toml::Table = BASE.parse().expect("BASE is valid TOML");
    let over: toml::Table = snippet
        .parse()
        .unwrap_or_else(|e| panic!("snippet is not TOML: {e}\n{snippet}"));
    merge(&mut base, over);
    toml::to_string(&base).expect("a TOML table serializes")
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parse `BASE` + `snippet` through [`ClusterSpec::from_toml`].
pub(crate) fn spec_with(snippet: &str) -> ClusterSpec {
    let text = merged(snippet);
    ClusterSpec::from_toml(&text).unwrap_or_else(|e| panic!("merged spec must parse: {e}\n{text}"))
}

/// A file under the system temp dir with a name unique to this process and call;
/// removed on drop.
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    /// Write `text` to a new file whose name ends in `suffix` (e.g. `spec.toml`).
    pub(crate) fn new(suffix: &str, text: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("triad-it-{}-{n}-{suffix}", std::process::id()));
        std::fs::write(&path, text).expect("temp dir is writable");
        Self(path)
    }

    /// A unique path that does not exist.
    pub(crate) fn missing(suffix: &str) -> PathBuf {
        // The temporary file is removed when it drops at the end of this expression.
        Self::new(suffix, "").0.clone()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn base_spec_is_valid() {
    let valid = spec_with("").validate().expect("BASE must be valid");
    assert_eq!(valid.name, "rancher");
    assert_eq!(valid.nodes.count, 3);
    assert_eq!(valid.zones.len(), 3);
}

#[test]
fn merge_replaces_values_and_keeps_siblings() {
    let s = spec_with("[nodes]\ncount = 5\n[dns]\nttl = 300");
    assert_eq!(s.nodes.count, 5);
    assert_eq!(s.nodes.size.as_deref(), Some("t3.xlarge"));
    assert_eq!(s.dns.ttl, 300);
    assert_eq!(s.dns.hostname, "rancher.example.com");
}
