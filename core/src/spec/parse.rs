//! Reading a spec from TOML, YAML or JSON, with parse errors that show neither a
//! secret key's value nor a proxy password, and validating it.

use std::path::Path;

use super::{is_secret_key, ClusterSpec, ValidSpec};
use crate::error::Error;
use crate::secret::REDACTED;

impl ClusterSpec {
    /// Parse a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| parse_error("TOML", &e.to_string(), text))
    }

    /// Parse a YAML document.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        serde_norway::from_str(text).map_err(|e| parse_error("YAML", &e.to_string(), text))
    }

    /// Parse a JSON document.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| parse_error("JSON", &e.to_string(), text))
    }

    /// Read a spec file; the format follows the extension (`.toml`, `.yaml`/`.yml`,
    /// `.json`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Self::from_toml(&text),
            Some("yaml" | "yml") => Self::from_yaml(&text),
            Some("json") => Self::from_json(&text),
            _ => Err(Error::Parse {
                format: "file",
                message: format!(
                    "{}: unknown extension; name the file .toml, .yaml, .yml or .json",
                    path.display()
                ),
            }),
        }
    }

    /// Check the whole spec and return every problem found, or the validated spec.
    ///
    /// This also reads what the spec points at: the join token
    /// (`kubernetes.token_env` / `kubernetes.token_file`) and the proxy's CA
    /// (`proxy.ca_file`); a missing variable or unreadable file is a problem naming
    /// the field.
    pub fn validate(self) -> Result<ValidSpec, Error> {
        let mut problems = crate::validate::problems(&self);
        let external = crate::validate::external(&self, &mut problems);
        if problems.is_empty() {
            let mut spec = self;
            // DNS names are compared everywhere as lowercase without the root dot:
            // normalised here, once, so no later reader has to.
            for name in [&mut spec.dns.zone, &mut spec.dns.hostname] {
                *name = name.trim_end_matches('.').to_ascii_lowercase();
            }
            Ok(ValidSpec {
                spec,
                token: external.token,
                proxy_ca: external.proxy_ca,
                tls_ca: external.tls_ca,
                learned_network_cidrs: Vec::new(),
                learned_registration_host: None,
                learned_join_first_node: false,
                learned_join_host: None,
                learned_joins_existing: false,
            })
        } else {
            Err(Error::InvalidSpec(problems.into()))
        }
    }
}

/// A parse error whose message shows neither a secret key's value nor a proxy
/// password.
fn parse_error(format: &'static str, message: &str, source: &str) -> Error {
    Error::Parse {
        format,
        message: mask_userinfo(&redact_secret_lines(message, source)),
    }
}

/// `text` with the password of every `user:password@` in it replaced by `****`.
///
/// Parser messages quote the spec: TOML shows the offending line, and every format
/// quotes a value of the wrong type (`proxy = "http://u:pw@host"` where a table
/// belongs). Such text must not carry a proxy password into an error.
pub(super) fn mask_userinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut masked: Vec<(usize, usize)> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let start = bytes[..at]
            .iter()
            .rposition(|b| b.is_ascii_whitespace() || b"\"'`/([{,<=".contains(b))
            .map_or(0, |i| i + 1);
        if let Some(colon) = text[start..at].find(':') {
            let from = start + colon + 1;
            match masked.last_mut() {
                Some(last) if last.0 == from => last.1 = at,
                _ => masked.push((from, at)),
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (from, to) in masked {
        out.push_str(&text[pos..from]);
        out.push_str(REDACTED);
        pos = to;
    }
    out.push_str(&text[pos..]);
    out
}

/// `message` (a parser's error about `source`) with every source line that assigns a
/// secret key ([`is_secret_key`]) shown as `key = ****`, and that key's value
/// replaced wherever else the message quotes it.
///
/// TOML errors quote the offending line, and every format quotes a value of the
/// wrong type: a typo on a `password =` line must not print the password.
fn redact_secret_lines(message: &str, source: &str) -> String {
    let mut out = message.to_owned();
    for line in source.lines() {
        let Some(value_at) = secret_value_start(line) else {
            continue;
        };
        let value = line[value_at..].trim();
        if value.is_empty() {
            continue;
        }
        let shown = format!("{} {REDACTED}", line[..value_at].trim_end());
        out = out.replace(line.trim_end(), &shown);
        for v in [value, first_value(value)] {
            // Short values would match ordinary words; the line itself is gone already.
            if v.chars().count() >= 4 {
                out = out.replace(v, REDACTED);
            }
        }
    }
    out
}

/// The first value in `text`: a quoted string's contents, else up to a `,`, `}`, `]`,
/// `#` or white space.
fn first_value(text: &str) -> &str {
    match text.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let rest = &text[1..];
            rest.find(q).map_or(rest, |end| &rest[..end])
        }
        _ => text
            .find(|c: char| matches!(c, ',' | '}' | ']' | '#') || c.is_whitespace())
            .map_or(text, |end| &text[..end]),
    }
}

/// Where the value of the first secret key assigned on `line` starts (just after its
/// `=` or `:`), for TOML (`password = "…"`, inline tables), YAML (`password: …`) and
/// JSON (`"password": "…"`).
fn secret_value_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    for (sep, _) in line.match_indices(['=', ':']) {
        let mut end = sep;
        while end > 0 && bytes[end - 1] == b' ' {
            end -= 1;
        }
        let quoted = end > 0 && matches!(bytes[end - 1], b'"' | b'\'');
        if quoted {
            end -= 1;
        }
        let start = bytes[..end]
            .iter()
            .rposition(|&b| {
                let key_char = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
                !(key_char || quoted && b == b' ')
            })
            .map_or(0, |i| i + 1);
        if start < end && is_secret_key(&line[start..end]) {
            return Some(sep + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{mask_userinfo, redact_secret_lines};

    #[test]
    fn secret_lines_are_redacted_in_parse_messages() {
        let source = "name = \"r\"\n[vsphere]\npassword = \"TopSecret-1\\q\"\nx = { api_token = 'Tok3n-xyz', a = 1 }\n";
        let message = "TOML parse error at line 3, column 22\n  |\n3 | password = \"TopSecret-1\\q\"\n  |       ^\ninvalid escape\n\
                       4 | x = { api_token = 'Tok3n-xyz', a = 1 }\nstring \"Tok3n-xyz\"";
        let out = redact_secret_lines(message, source);
        assert!(!out.contains("TopSecret"), "{out}");
        assert!(!out.contains("Tok3n"), "{out}");
        assert!(out.contains("3 | password = ****"), "{out}");
        assert!(
            out.contains("line 3, column 22") && out.contains("invalid escape"),
            "{out}"
        );
        // YAML and JSON keys, quoted or not.
        for (source, line) in [
            ("password: Hunter2-x\n", "password: Hunter2-x"),
            ("  \"secret\": \"aHVudGVy\",\n", "\"secret\": \"aHVudGVy\""),
        ] {
            let out = redact_secret_lines(&format!("at {line} here"), source);
            assert!(
                !out.contains("Hunter2") && !out.contains("aHVudGVy"),
                "{out}"
            );
        }
        // Lines without a secret key are kept.
        let out = redact_secret_lines("1 | key_name = \"ops-key\"", "key_name = \"ops-key\"\n");
        assert_eq!(out, "1 | key_name = \"ops-key\"");
    }

    #[test]
    fn mask_userinfo_hides_passwords_only() {
        assert_eq!(
            mask_userinfo(r#"invalid type: string "http://ops:pw@proxy:3128""#),
            r#"invalid type: string "http://ops:****@proxy:3128""#
        );
        // A password containing `@`: everything up to the last `@` goes.
        assert_eq!(
            mask_userinfo("`ops:p@ss@proxy:3128` x"),
            "`ops:****@proxy:3128` x"
        );
        // Two URLs on one line, one of them without a scheme.
        assert_eq!(
            mask_userinfo("a = 'https://u:1@h', b = 'v:2@k'"),
            "a = 'https://u:****@h', b = 'v:****@k'"
        );
        // No `user:` before the `@`: left alone.
        assert_eq!(
            mask_userinfo("owner = \"ops@example.com\""),
            "owner = \"ops@example.com\""
        );
        assert_eq!(mask_userinfo("näme: ü@x"), "näme: ü@x");
    }
}
