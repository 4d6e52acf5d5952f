//! Values that must never reach logs, `Debug` output or error messages.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shown instead of a secret.
pub const REDACTED: &str = "****";

/// A proxy URL such as `http://user:password@proxy.internal:3128`.
///
/// `Debug`, `Display` and `Serialize` show the password as `****`; only
/// [`ProxyUrl::expose`] returns the URL as written, for the places that must carry
/// it (the nodes' user data).
///
/// ```
/// use triad_core::secret::ProxyUrl;
/// let p = ProxyUrl::new("http://ops:hunter2@proxy:3128");
/// assert_eq!(p.to_string(), "http://ops:****@proxy:3128");
/// assert!(!format!("{p:?}").contains("hunter2"));
/// assert_eq!(p.expose(), "http://ops:hunter2@proxy:3128");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(String);

impl ProxyUrl {
    /// Wrap a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as written, password included. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Parse and check the URL: `http` or `https` scheme, a host and no path.
    /// The error text never contains the password.
    pub fn parse(&self) -> Result<url::Url, String> {
        let url = url::Url::parse(&self.0).map_err(|e| format!("`{self}` is not a URL ({e})"))?;
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
        let url = url::Url::parse(&self.0).ok()?;
        let host = url.host_str()?;
        Some(match url.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        })
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.password().map(|_| ()))
            .is_some()
    }

    /// The URL with its password replaced by `replacement` (for instance a shell
    /// variable reference such as `${PROXY_PASSWORD}`).
    pub fn with_password_replaced(&self, replacement: &str) -> String {
        match url::Url::parse(&self.0) {
            Ok(url) if url.password().is_some() => {
                let user = url.username();
                let rest = &self.0[self.0.find('@').map_or(0, |i| i + 1)..];
                format!("{}://{user}:{replacement}@{rest}", url.scheme())
            }
            // `http://user@host`: no password to hide.
            Ok(url) if url.has_host() => self.0.clone(),
            // Unparseable, or parsed oddly (`user:pw@host:3128` reads as scheme
            // `user`): show nothing before the `@` that might be a password.
            _ => match self.0.rfind('@') {
                Some(i) => format!("{REDACTED}@{}", &self.0[i + 1..]),
                None => self.0.clone(),
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

impl Serialize for ProxyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ProxyUrl)
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
    fn secret_debug_is_redacted() {
        let s = Secret::new("AKIAEXAMPLE");
        assert_eq!(format!("{s:?} {s}"), "**** ****");
    }
}
