//! What validation reads from outside the spec file: the join token, the proxy's
//! and the private CA's PEM files.

use super::*;

/// What validation reads from outside the spec file.
pub(crate) struct External {
    pub(crate) token: Option<Secret>,
    pub(crate) proxy_ca: Option<String>,
    pub(crate) tls_ca: Option<String>,
}

/// Read the join token and the proxy CA; every failure is a problem naming the
/// field. Never quotes the token.
pub(crate) fn external(spec: &ClusterSpec, problems: &mut Vec<SpecProblem>) -> External {
    let mut p = Problems(Vec::new());
    let k = &spec.kubernetes;
    let mut token = None;
    match (&k.token_env, &k.token_file) {
        (Some(_), Some(_)) => p.add(
            "kubernetes.token_env",
            "is set together with kubernetes.token_file",
            "give the join token one way: token_env or token_file",
        ),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => token = Some(v.trim().to_owned()),
            _ => p.add(
                "kubernetes.token_env",
                format!("names the environment variable `{var}`, which is not set or empty"),
                format!("export {var} with the join token (e.g. `export {var}=$(openssl rand -hex 32)`; keep it: every run and every new node needs the same token)"),
            ),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => match text.lines().next().map(str::trim) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => p.add(
                    "kubernetes.token_file",
                    format!("`{path}` is empty"),
                    "write the token on its first line, e.g. `openssl rand -hex 32 > token`",
                ),
            },
            Err(e) => p.add(
                "kubernetes.token_file",
                format!("`{path}` cannot be read ({e})"),
                "give the path of a file holding the join token, e.g. made with `openssl rand -hex 32 > token`",
            ),
        },
        (None, None) if k.install => p.add(
            "kubernetes.install",
            "is true but no join token is given",
            "set kubernetes.token_env or kubernetes.token_file: the token must be the same on every run and for every node made later (generate one once with `openssl rand -hex 32`)",
        ),
        (None, None) => {}
    }
    if let Some(t) = &token {
        if t.len() < 16
            || t.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
        {
            let field = if k.token_env.is_some() {
                "kubernetes.token_env"
            } else {
                "kubernetes.token_file"
            };
            p.add(
                field,
                "the join token is shorter than 16 characters or holds spaces, quotes or backslashes",
                "use a long random token, e.g. `openssl rand -hex 32`",
            );
            token = None;
        }
    }
    let proxy_ca = spec
        .proxy
        .as_ref()
        .and_then(|x| x.ca_file.as_ref())
        .and_then(|path| read_pem(&mut p, "proxy.ca_file", path, "the proxy's CA certificate"));
    let tls_ca = spec
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.as_ref())
        .and_then(|path| {
            read_pem(
                &mut p,
                "tls.ca_file",
                path,
                "the private CA that signed Rancher's certificate",
            )
        });
    problems.extend(p.0);
    External {
        token: token.map(Secret::new),
        proxy_ca,
        tls_ca,
    }
}

/// Read a PEM certificate file named by `field`; a problem if it cannot be read or
/// holds no certificate.
pub(super) fn read_pem(p: &mut Problems, field: &str, path: &str, what: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(pem)
            if pem.contains("-----BEGIN CERTIFICATE-----")
                && pem.contains("-----END CERTIFICATE-----") =>
        {
            Some(pem)
        }
        Ok(_) => {
            p.add(
                field,
                format!("`{path}` holds no PEM certificate"),
                "give a PEM file (-----BEGIN CERTIFICATE----- …)",
            );
            None
        }
        Err(e) => {
            p.add(
                field,
                format!("`{path}` cannot be read ({e})"),
                format!("give the path of {what} (PEM)"),
            );
            None
        }
    }
}
