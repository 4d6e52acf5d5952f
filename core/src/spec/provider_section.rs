//! A provider's own section of the spec, held with its secret values redacted.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::parse::mask_userinfo;
use crate::error::{Error, SpecProblem, SpecProblems};
use crate::secret::{Secret, REDACTED};

/// A provider's own section of the spec (`[ec2]`, `[sim]`, …), kept as data until
/// the provider reads it with [`ProviderSection::parse`] into its own type.
///
/// The value of every key that names a secret ([`is_secret_key`]: `password`,
/// `secret`, `token`, `key`, `*_key`, …, at any depth) is held as a [`Secret`] from
/// the moment the section is parsed. `Debug` and `Serialize` show it as `****`, so a
/// serialized spec does **not** round-trip secrets (as with
/// [`ProxyUrl`](crate::secret::ProxyUrl)); only [`ProviderSection::parse`] hands the
/// values to the provider's settings type, whose fields for them should be
/// [`Secret`]s.
///
/// ```
/// use triad_core::secret::Secret;
/// use triad_core::spec::ProviderSection;
/// let s = ProviderSection::new(serde_json::json!({"user": "ops", "password": "hunter2"}));
/// assert!(!format!("{s:?}").contains("hunter2"));
/// assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"password":"****","user":"ops"}"#);
/// #[derive(serde::Deserialize)]
/// struct Login { user: String, password: Secret }
/// assert_eq!(s.parse::<Login>("x").unwrap().password.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct ProviderSection {
    /// The section with every secret value replaced by `****`.
    shown: serde_json::Value,
    /// JSON pointer of each secret value → the value as JSON text.
    secrets: Vec<(String, Secret)>,
}

/// Whether a provider-section key names a secret: its last word (split at `_`,
/// `-` and `.`), case-insensitive, is `password`, `passwd`, `passphrase`, `secret`,
/// `token`, `key`, `apikey` or `credentials`. So `password`, `client_secret`,
/// `api_token`, `key`, `access_key` and `private-key` are secrets; `key_name`,
/// `secret_file` and `secret_env` (which name where a secret is) are not.
///
/// A provider declares a field secret by giving it such a name (and the type
/// [`Secret`]).
///
/// ```
/// use triad_core::spec::is_secret_key;
/// assert!(is_secret_key("password") && is_secret_key("secret") && is_secret_key("Access_Key"));
/// assert!(!is_secret_key("key_name") && !is_secret_key("secret_file") && !is_secret_key("username"));
/// ```
pub fn is_secret_key(key: &str) -> bool {
    const WORDS: [&str; 8] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "key",
        "apikey",
        "credentials",
    ];
    let last = key.rsplit(['_', '-', '.']).next().unwrap_or(key);
    WORDS.iter().any(|w| last.eq_ignore_ascii_case(w))
}

impl ProviderSection {
    /// A section from its data; secret values are taken out of `value` at once.
    pub fn new(value: serde_json::Value) -> Self {
        let mut shown = value;
        let mut secrets = Vec::new();
        take_secrets(&mut shown, String::new(), &mut secrets);
        Self { shown, secrets }
    }

    /// The section with every secret value shown as `****`.
    pub fn redacted(&self) -> &serde_json::Value {
        &self.shown
    }

    /// Text with every secret value of this section replaced by `****`.
    fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (_, secret) in &self.secrets {
            let json = secret.expose();
            let plain: Option<String> = serde_json::from_str(json).ok();
            for value in [Some(json.to_owned()), plain].into_iter().flatten() {
                if !value.is_empty() {
                    out = out.replace(&value, REDACTED);
                }
            }
        }
        out
    }
}

/// Move the value of every secret key in `value` (at any depth) into `out`, keyed by
/// its JSON pointer, leaving `****` in its place.
fn take_secrets(value: &mut serde_json::Value, at: String, out: &mut Vec<(String, Secret)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                if is_secret_key(k) && !v.is_null() {
                    let taken = std::mem::replace(v, serde_json::Value::from(REDACTED));
                    out.push((path, Secret::new(taken.to_string())));
                } else {
                    take_secrets(v, path, out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                take_secrets(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

impl From<serde_json::Value> for ProviderSection {
    fn from(value: serde_json::Value) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for ProviderSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderSection({:?})", self.shown)
    }
}

/// Serialized with every secret value as `****`: a serialized spec does not
/// round-trip secrets.
impl Serialize for ProviderSection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProviderSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self::new)
    }
}

impl ProviderSection {
    /// Parse a section a provider cannot work without, then run the provider's own
    /// checks: a missing section is a spec problem naming it (`fix` says what to add),
    /// and every problem `check` finds is reported at once.
    ///
    /// ```
    /// use triad_core::spec::{ClusterSpec, ProviderSection};
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Sim { time_scale: f64 }
    /// let spec = ClusterSpec::from_toml("name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"e.com\"\nhostname = \"r.e.com\"")
    ///     .unwrap().validate().unwrap();
    /// let err = ProviderSection::parse_required::<Sim>(spec.sim.as_ref(), "sim", "add [sim]", |_| vec![])
    ///     .err().unwrap();
    /// assert!(err.spec_problems().unwrap().names("sim"));
    /// ```
    pub fn parse_required<T: serde::de::DeserializeOwned>(
        section: Option<&ProviderSection>,
        name: &str,
        fix: &str,
        check: impl FnOnce(&T) -> Vec<SpecProblem>,
    ) -> Result<T, Error> {
        let Some(section) = section else {
            return Err(Error::invalid(
                name,
                format!("the spec has no [{name}] section"),
                fix,
            ));
        };
        let settings: T = section.parse(name)?;
        let problems = check(&settings);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(Error::InvalidSpec(SpecProblems(problems)))
        }
    }

    /// Deserialize the section into a provider's settings type. `section` names it
    /// in errors (`"ec2"`); use `#[serde(deny_unknown_fields)]` on `T` so typos fail.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, section: &str) -> Result<T, Error> {
        let mut full = self.shown.clone();
        for (path, secret) in &self.secrets {
            if let Some(slot) = full.pointer_mut(path) {
                *slot = serde_json::from_str(secret.expose()).unwrap_or_default();
            }
        }
        serde_json::from_value(full).map_err(|e| {
            Error::invalid(
                section,
                self.mask(&mask_userinfo(&e.to_string())),
                format!("fix the [{section}] section (see docs/spec.md)"),
            )
        })
    }
}
