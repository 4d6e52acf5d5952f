//! The `[rfc2136]` section of the spec and the TSIG key it names.

use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use serde::Deserialize;
use triad_core::error::{Error, Result, SpecProblem};
use triad_core::secret::Secret;

/// TSIG MAC algorithms triad signs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// HMAC-SHA256 (the default; BIND's `tsig-keygen` default).
    #[default]
    HmacSha256,
    /// HMAC-SHA384.
    HmacSha384,
    /// HMAC-SHA512.
    HmacSha512,
}

impl Algorithm {
    pub(crate) fn tsig(self) -> TsigAlgorithm {
        match self {
            Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

/// What `owned_records` reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnedRecords {
    /// A zone transfer (AXFR) signed with the TSIG key, which finds records the
    /// cluster owns at any name (an old hostname too); when the server refuses the
    /// transfer, the names in [`Rfc2136Settings::names`] are queried instead.
    #[default]
    Axfr,
    /// Query only the names in [`Rfc2136Settings::names`] (the spec's hostname when
    /// built from a spec). No transfer is attempted.
    Names,
}

/// `[rfc2136]`: where to send dynamic updates and the TSIG key that signs them.
///
/// ```toml
/// [rfc2136]
/// server = "ns1.example.com:53"
/// key_name = "triad-key"
/// algorithm = "hmac-sha256"
/// secret_file = "/etc/triad/tsig.key"   # or secret = "…", or secret_env = "TRIAD_TSIG_SECRET"
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Settings {
    /// The primary name server, `host:port` (port 53 when omitted). Updates, queries
    /// and transfers all go to it over TCP.
    pub server: String,
    /// The zone to update; the spec's `dns.zone` when absent.
    #[serde(default)]
    pub zone: Option<String>,
    /// The TSIG key's name, as the server knows it (`key "triad-key" { … }`).
    pub key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The key's secret, base64 (as `tsig-keygen` prints it). Prefer `secret_file`
    /// or `secret_env`, which keep it out of the spec.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A file holding the base64 secret, alone or as a BIND `key { secret "…"; }`
    /// clause (the output of `tsig-keygen`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the base64 secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long one DNS exchange may take, in seconds (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How often `wait_record` asks the server again, in milliseconds (default 500).
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// `axfr` (default) or `names`: see [`OwnedRecords`].
    #[serde(default)]
    pub owned_records: OwnedRecords,
    /// Names queried by `owned_records` when no transfer is made; the spec's hostname
    /// is added when built from a spec.
    #[serde(default)]
    pub names: Vec<String>,
}

fn default_timeout() -> u64 {
    10
}
fn default_poll() -> u64 {
    500
}

impl Rfc2136Settings {
    /// Settings with the defaults, for a server, key name and secret.
    pub fn new(server: impl Into<String>, key_name: impl Into<String>, secret: Secret) -> Self {
        Self {
            server: server.into(),
            zone: None,
            key_name: key_name.into(),
            algorithm: Algorithm::default(),
            secret: Some(secret),
            secret_file: None,
            secret_env: None,
            timeout_secs: default_timeout(),
            poll_interval_ms: default_poll(),
            owned_records: OwnedRecords::default(),
            names: Vec::new(),
        }
    }

    /// Per-exchange timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// Every problem with these settings, each naming its field (`rfc2136.<field>`).
    /// Reads the secret's file or variable to check it is there and decodes.
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut out = Vec::new();
        let mut problem = |field: &str, problem: String, fix: &str| {
            out.push(SpecProblem {
                field: format!("rfc2136.{field}"),
                problem,
                fix: fix.to_owned(),
            })
        };
        if self.server.trim().is_empty() {
            problem(
                "server",
                "is empty".into(),
                "give the primary name server as host:port",
            );
        } else if let Err(e) = split_host_port(&self.server) {
            problem("server", e, "give the primary name server as host:port");
        }
        if self.key_name.trim().is_empty() {
            problem(
                "key_name",
                "is empty".into(),
                "give the TSIG key's name as the server knows it",
            );
        }
        if self.timeout_secs == 0 {
            problem(
                "timeout_secs",
                "is 0".into(),
                "use a positive number of seconds",
            );
        }
        let given = [
            self.secret.is_some(),
            self.secret_file.is_some(),
            self.secret_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            problem(
                "secret",
                format!("{given} of secret, secret_file and secret_env are set"),
                "set exactly one of them",
            );
        } else if let Err((field, e)) = self.key_bytes() {
            problem(field, e, "give the base64 secret printed by tsig-keygen");
        }
        out
    }

    /// The decoded key. The error names the field and never shows the secret.
    pub(crate) fn key_bytes(&self) -> std::result::Result<Vec<u8>, (&'static str, String)> {
        let text = if let Some(s) = &self.secret {
            ("secret", s.expose().to_owned())
        } else if let Some(path) = &self.secret_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                (
                    "secret_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            ("secret_file", secret_from_file(&text))
        } else if let Some(var) = &self.secret_env {
            let v = std::env::var(var).map_err(|_| {
                (
                    "secret_env",
                    format!("the environment variable {var} is not set"),
                )
            })?;
            ("secret_env", v)
        } else {
            return Err(("secret", "no secret is set".into()));
        };
        let (field, value) = text;
        let cleaned: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = data_encoding::BASE64
            .decode(cleaned.as_bytes())
            .map_err(|_| (field, "is not valid base64".to_owned()))?;
        if bytes.is_empty() {
            return Err((field, "is empty".into()));
        }
        Ok(bytes)
    }

    /// The key, or an `InvalidSpec` error naming the field.
    pub(crate) fn key(&self) -> Result<Vec<u8>> {
        self.key_bytes().map_err(|(field, problem)| {
            Error::invalid(
                format!("rfc2136.{field}"),
                problem,
                "give the base64 secret printed by tsig-keygen",
            )
        })
    }
}

/// The secret in a key file: the quoted value of a `secret "…";` clause when there
/// is one (a `tsig-keygen` output), else the whole text.
pub(crate) fn secret_from_file(text: &str) -> String {
    if let Some(i) = text.find("secret") {
        let rest = &text[i + "secret".len()..];
        if let Some(start) = rest.find('"') {
            if let Some(len) = rest[start + 1..].find('"') {
                return rest[start + 1..start + 1 + len].to_owned();
            }
        }
    }
    text.trim().to_owned()
}

/// `host:port` (port 53 when omitted; `[v6]:port` for IPv6).
pub(crate) fn split_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}` lacks the closing `]`"))?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("`{p}` is not a port"))?,
            None if port.is_empty() => 53,
            None => return Err(format!("`{s}` is not host:port")),
        };
        return Ok((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Ok((s.to_owned(), 53)),
        Some((host, port)) => {
            let port = port
                .parse()
                .map_err(|_| format!("`{port}` is not a port"))?;
            if host.is_empty() {
                return Err(format!("`{s}` has no host"));
            }
            Ok((host.to_owned(), port))
        }
        None => Ok((s.to_owned(), 53)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_like: serde_json::Value) -> Rfc2136Settings {
        serde_json::from_value(toml_like).unwrap()
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("ns1:5353").unwrap(), ("ns1".into(), 5353));
        assert_eq!(split_host_port("ns1").unwrap(), ("ns1".into(), 53));
        assert_eq!(split_host_port("[::1]:54").unwrap(), ("::1".into(), 54));
        assert_eq!(split_host_port("::1").unwrap(), ("::1".into(), 53));
        assert!(split_host_port("ns1:x").is_err());
        assert!(split_host_port(":53").is_err());
    }

    #[test]
    fn secret_file_accepts_tsig_keygen_output() {
        let text = "key \"triad\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";
        assert_eq!(secret_from_file(text), "c2VjcmV0");
        assert_eq!(secret_from_file("  c2VjcmV0\n"), "c2VjcmV0");
    }

    #[test]
    fn exactly_one_secret_source() {
        let s = settings(serde_json::json!({
            "server": "127.0.0.1:53", "key_name": "k",
            "secret": "c2VjcmV0", "secret_env": "X"
        }));
        let p = s.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "rfc2136.secret");
    }

    #[test]
    fn bad_base64_is_named_but_not_shown() {
        let s = settings(serde_json::json!({
            "server": "127.0.0.1:53", "key_name": "k", "secret": "not base64 !!hunter2"
        }));
        let p = s.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "rfc2136.secret");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn secret_from_env() {
        std::env::set_var("TRIAD_RFC2136_UNIT_SECRET", "c2VjcmV0");
        let s = settings(serde_json::json!({
            "server": "127.0.0.1", "key_name": "k", "secret_env": "TRIAD_RFC2136_UNIT_SECRET",
            "algorithm": "hmac-sha512"
        }));
        assert!(s.problems().is_empty());
        assert_eq!(s.key().unwrap(), b"secret");
        assert_eq!(s.algorithm, Algorithm::HmacSha512);
        let missing = settings(serde_json::json!({
            "server": "127.0.0.1", "key_name": "k", "secret_env": "TRIAD_RFC2136_UNIT_NOPE"
        }));
        assert_eq!(missing.problems()[0].field, "rfc2136.secret_env");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let r: std::result::Result<Rfc2136Settings, _> = serde_json::from_value(
            serde_json::json!({"server": "a", "key_name": "k", "secret": "eA==", "sever": 1}),
        );
        assert!(r.is_err());
    }
}
