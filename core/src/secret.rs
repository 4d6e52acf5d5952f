//! Values that must never reach logs, `Debug` output or error messages.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shown instead of a secret.
pub const REDACTED: &str = "****";

/// A proxy URL such as `http://user:password@proxy.internal:3128`.
///
/// The URL is parsed once, with the `url` crate (the WHATWG URL rules, which split
/// the user information from the host at the **last** `@`), and what that parser
/// calls the password is what `Debug`, `Display` and `Serialize` show as `****`, in
/// whatever form it was written (`p@ss-word`, `p%40ss`). Only [`ProxyUrl::expose`]
/// returns the URL as written, for the places that must carry it (the nodes' user
/// data). A URL the parser reads without a host (`user:pw@proxy:3128`, no scheme)
/// is shown as `****@` and what follows its last `@`.
///
/// ```
/// use triad_core::secret::ProxyUrl;
/// let p = ProxyUrl::new("http://ops:hunter2@proxy:3128");
/// assert_eq!(p.to_string(), "http://ops:****@proxy:3128");
/// assert!(!format!("{p:?}").contains("hunter2"));
/// assert_eq!(p.expose(), "http://ops:hunter2@proxy:3128");
/// // An `@` in the password: the parser splits at the last one.
/// assert_eq!(ProxyUrl::new("http://ops:p@ss@proxy:3128").to_string(), "http://ops:****@proxy:3128");
/// ```
#[derive(Clone)]
pub struct ProxyUrl {
    raw: String,
    parsed: Result<url::Url, url::ParseError>,
}

impl PartialEq for ProxyUrl {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for ProxyUrl {}

impl ProxyUrl {
    /// Wrap and parse a URL.
    pub fn new(url: impl Into<String>) -> Self {
        let raw = url.into();
        let parsed = url::Url::parse(&raw);
        Self { raw, parsed }
    }

    /// The URL as written, password included. Never log it.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The parsed URL when it has a host (`user:pw@host:3128` parses as scheme `user`
    /// with no host, and is not a proxy URL).
    fn with_host(&self) -> Option<&url::Url> {
        self.parsed.as_ref().ok().filter(|u| u.has_host())
    }

    /// Check the URL: `http` or `https` scheme, a host and no path. The error text
    /// never contains the password.
    pub fn parse(&self) -> Result<url::Url, String> {
        let url = self
            .parsed
            .clone()
            .map_err(|e| format!("`{self}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{self}` has scheme `{}`; an HTTP proxy URL starts with http:// or https://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{self}` has no host"));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(format!("`{self}` has a path; give scheme://host:port only"));
        }
        Ok(url)
    }

    /// Host and port, e.g. `proxy.internal:3128`, when the URL parses.
    pub fn host_port(&self) -> Option<String> {
        let url = self.with_host()?;
        let host = url.host_str()?;
        Some(match url.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        })
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        self.with_host().is_some_and(|u| u.password().is_some())
    }

    /// The URL with its password replaced by `replacement` (for instance a shell
    /// variable reference such as `${PROXY_PASSWORD}`). The user name is given as
    /// the URL parser reads it (percent-encoded), the host as it normalises it.
    pub fn with_password_replaced(&self, replacement: &str) -> String {
        match self.with_host() {
            Some(url) if url.password().is_some() => {
                let rest = &url[url::Position::BeforeHost..];
                // The parser gives an http URL the path `/`; keep the text as written.
                let rest = match rest.strip_suffix('/') {
                    Some(r) if url.path() == "/" && !self.raw.ends_with('/') => r,
                    _ => rest,
                };
                format!("{}://{}:{replacement}@{rest}", url.scheme(), url.username())
            }
            // `http://user@host`: no password to hide.
            Some(_) => self.raw.clone(),
            // Unparseable, or parsed without a host (`user:pw@host:3128` reads as
            // scheme `user`): show nothing before the last `@`.
            None => match self.raw.rfind('@') {
                Some(i) => format!("{REDACTED}@{}", &self.raw[i + 1..]),
                None => self.raw.clone(),
            },
        }
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_password_replaced(REDACTED))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Serialized with the password as `****`: a serialized spec does not round-trip a
/// proxy password.
impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ProxyUrl::new)
    }
}

/// Any other secret string (a credential, a TSIG key): `Debug` and `Display`
/// print `****`; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shown() {
        let p = ProxyUrl::new("http://user:s3cr3t-pw@proxy.corp:3128");
        assert!(!p.to_string().contains("s3cr3t-pw"));
        assert!(!format!("{p:?}").contains("s3cr3t-pw"));
        assert!(!serde_json::to_string(&p).unwrap().contains("s3cr3t-pw"));
        assert_eq!(
            p.with_password_replaced("${PW}"),
            "http://user:${PW}@proxy.corp:3128"
        );
        assert_eq!(p.host_port().as_deref(), Some("proxy.corp:3128"));
    }

    #[test]
    fn unparseable_url_hides_userinfo() {
        let p = ProxyUrl::new("ht!tp://user:s3cr3t@proxy");
        assert!(!p.to_string().contains("s3cr3t"));
        assert!(!p.parse().unwrap_err().contains("s3cr3t"));
    }

    #[test]
    fn schemeless_url_hides_userinfo() {
        let p = ProxyUrl::new("ops:s3cr3t@proxy.corp:3128");
        assert_eq!(p.to_string(), "****@proxy.corp:3128");
        assert!(!format!("{p:?}").contains("s3cr3t"));
        assert_eq!(
            ProxyUrl::new("http://proxy:3128").to_string(),
            "http://proxy:3128"
        );
    }

    #[test]
    fn password_with_raw_or_encoded_at_is_hidden_whole() {
        for (url, secret_parts) in [
            ("http://user:p@ss-word@proxy:3128", &["p@ss", "ss-word"][..]),
            (
                "http://user:p%40ss-word@proxy:3128",
                &["p%40ss", "ss-word"][..],
            ),
            (
                "http://us%40er:p%3Ass%2Fw@proxy:3128",
                &["p%3Ass", "ss%2Fw"][..],
            ),
            ("https://u:a@b@c@proxy.corp:443", &["a@b", "b@c"][..]),
        ] {
            let p = ProxyUrl::new(url);
            assert!(p.has_password(), "{url}");
            let shown = [
                p.to_string(),
                format!("{p:?}"),
                serde_json::to_string(&p).unwrap(),
                p.with_password_replaced("${PROXY_PASSWORD}"),
            ];
            for text in &shown {
                for part in secret_parts {
                    assert!(!text.contains(part), "{url} shown as {text}");
                }
                assert!(text.contains("@proxy"), "{text}");
            }
            assert!(p.parse().is_ok(), "{url}");
            assert_eq!(p.expose(), url);
        }
        assert_eq!(
            ProxyUrl::new("http://user:p@ss-word@proxy:3128").with_password_replaced("${PW}"),
            "http://user:${PW}@proxy:3128"
        );
        assert_eq!(
            ProxyUrl::new("http://us%40er:x@proxy:3128/").to_string(),
            "http://us%40er:****@proxy:3128/"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("AKIAEXAMPLE");
        assert_eq!(format!("{s:?} {s}"), "**** ****");
    }
}
