//! Spec validation: every rule, every problem at once.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::error::SpecProblem;
use crate::labels;
use crate::secret::{ProxyUrl, Secret, REDACTED};
use crate::spec::{
    ClusterSpec, Distribution, LbMode, TlsSource, MAX_NAME_LEN, MAX_NODE_COUNT, MAX_TTL,
};

struct Problems(Vec<SpecProblem>);

impl Problems {
    fn add(
        &mut self,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(SpecProblem {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

/// Every problem in `spec`; empty when it is valid.
pub(crate) fn problems(spec: &ClusterSpec) -> Vec<SpecProblem> {
    let mut p = Problems(Vec::new());
    name(&mut p, &spec.name);
    region(&mut p, spec);
    nodes(&mut p, spec);
    proxy(&mut p, spec);
    load_balancer(&mut p, spec);
    dns(&mut p, spec);
    kubernetes(&mut p, spec);
    tls(&mut p, spec);
    extra_labels(&mut p, spec);
    p.0.extend(crate::choice::problems(spec));
    p.0
}

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
fn read_pem(p: &mut Problems, field: &str, path: &str, what: &str) -> Option<String> {
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

/// `[tls]`: a source only where Rancher terminates TLS (l4), Let's Encrypt with an
/// e-mail (and only then), a private CA only for a certificate that is not
/// Rancher's own.
fn tls(p: &mut Problems, spec: &ClusterSpec) {
    let Some(t) = &spec.tls else { return };
    let l7 = spec.load_balancer.mode == LbMode::L7;
    if l7 && t.source != TlsSource::Rancher {
        p.add(
            "tls.source",
            format!(
                "is `{}`, but with load_balancer.mode = \"l7\" TLS ends at the balancer and Rancher runs with tls=external",
                t.source.chart_value()
            ),
            "leave tls.source out (the balancer's certificate is load_balancer.certificate), or use mode = \"l4\"",
        );
    }
    match (&t.source, &t.lets_encrypt_email) {
        (TlsSource::LetsEncrypt, None) => p.add(
            "tls.lets_encrypt_email",
            "is missing: Let's Encrypt needs an e-mail address for the account",
            "set tls.lets_encrypt_email = \"you@example.com\"",
        ),
        (TlsSource::LetsEncrypt, Some(e)) if !is_email(e) => p.add(
            "tls.lets_encrypt_email",
            format!("`{e}` is not an e-mail address"),
            "write it as name@domain",
        ),
        (TlsSource::Rancher | TlsSource::Secret, Some(_)) => p.add(
            "tls.lets_encrypt_email",
            format!("is set, but tls.source is `{}`", t.source.chart_value()),
            "set tls.source = \"letsEncrypt\", or leave the e-mail out",
        ),
        _ => {}
    }
    if t.ca_file.is_some() && !l7 && t.source != TlsSource::Secret {
        p.add(
            "tls.ca_file",
            format!(
                "is set, but tls.source is `{}`: that certificate is not signed by your CA",
                t.source.chart_value()
            ),
            "use tls.source = \"secret\" with your own certificate, or leave tls.ca_file out",
        );
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == '"')
        }
        None => false,
    }
}

fn kubernetes(p: &mut Problems, spec: &ClusterSpec) {
    let k = &spec.kubernetes;
    match (&k.version, &k.channel) {
        (Some(_), Some(_)) => p.add(
            "kubernetes.channel",
            "is set together with kubernetes.version",
            "give either an exact version or a channel",
        ),
        (Some(v), None) => {
            let (ok, example) = match k.distribution {
                Distribution::Rke2 => (
                    v.strip_prefix('v')
                        .and_then(|r| r.split_once("+rke2r"))
                        .is_some_and(|(semver, n)| is_semver(semver) && is_digits(n)),
                    "v1.31.4+rke2r1",
                ),
                Distribution::K3s => (
                    v.strip_prefix('v')
                        .and_then(|r| r.split_once("+k3s"))
                        .is_some_and(|(semver, n)| is_semver(semver) && is_digits(n)),
                    "v1.31.4+k3s1",
                ),
                Distribution::Rke => (
                    v.strip_prefix('v')
                        .and_then(|r| r.split_once("-rancher"))
                        .is_some_and(|(semver, n)| {
                            is_semver(semver)
                                && n.split_once('-')
                                    .is_some_and(|(a, b)| is_digits(a) && is_digits(b))
                        }),
                    "v1.28.15-rancher1-1",
                ),
            };
            if !ok {
                p.add(
                    "kubernetes.version",
                    format!("`{v}` is not a {} release", k.distribution),
                    format!("write a release such as `{example}`, or remove it and set kubernetes.channel"),
                );
            }
        }
        (None, Some(c)) => {
            let minor = c
                .strip_prefix('v')
                .and_then(|r| r.split_once('.'))
                .is_some_and(|(a, b)| is_digits(a) && is_digits(b));
            if !(matches!(c.as_str(), "stable" | "latest" | "testing") || minor) {
                p.add(
                    "kubernetes.channel",
                    format!("`{c}` is not a channel"),
                    "use `stable`, `latest`, `testing` or a minor such as `v1.31`",
                );
            }
            if k.distribution == Distribution::Rke {
                p.add(
                    "kubernetes.channel",
                    "has no meaning for rke",
                    "remove it, or give kubernetes.version",
                );
            }
        }
        (None, None) => {}
    }
    if k.install && k.distribution == Distribution::Rke {
        p.add(
            "kubernetes.install",
            "is true, but RKE (v1) is installed from outside with `rke up`, not by the nodes",
            "use distribution = \"rke2\" (or \"k3s\"), or set install = false",
        );
    }
    if let Some(n) = &k.token_env {
        let ok = !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            p.add(
                "kubernetes.token_env",
                format!("`{n}` is not an environment variable name"),
                "use letters, digits and `_`, e.g. `TRIAD_JOIN_TOKEN`",
            );
        }
    }
    for (registry, endpoints) in &k.mirrors {
        let field = format!("kubernetes.mirrors.{registry}");
        if registry.is_empty() || registry.chars().any(|c| c.is_whitespace() || c == '/') {
            p.add(
                field.clone(),
                format!("`{registry}` is not a registry host"),
                "name the registry, e.g. `docker.io`",
            );
        }
        if endpoints.is_empty() {
            p.add(
                field.clone(),
                "lists no endpoint",
                "give at least one mirror URL, e.g. `https://mirror.corp:5000`",
            );
        }
        for (i, e) in endpoints.iter().enumerate() {
            let ok = url::Url::parse(e).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.has_host() && u.password().is_none()
            });
            if !ok {
                p.add(
                    format!("{field}[{i}]"),
                    format!("`{e}` is not an http(s) URL"),
                    "write the mirror as https://host[:port], without credentials",
                );
            }
        }
    }
    if k.install && spec.load_balancer.registration == crate::spec::Registration::FirstNode {
        p.add(
            "load_balancer.registration",
            "is first-node, but with kubernetes.install = true the nodes' user data is written before node 1 has an address",
            "use registration = \"balancer\" (nodes join through the Rancher hostname), or install = false and join with the rendered files",
        );
    }
    let mut cidrs = Vec::new();
    for (field, value) in [
        ("kubernetes.cidr_pods", k.cidr_pods()),
        ("kubernetes.cidr_services", k.cidr_services()),
    ] {
        match parse_cidr(value).and_then(|(ip, len)| match cidr_network(ip, len) {
            Some(n) if n != ip => Err(format!(
                "`{value}` has host bits set (the network is {n}/{len})"
            )),
            _ => Ok(()),
        }) {
            Ok(()) => cidrs.push((field, value)),
            Err(e) => p.add(field, e, "write a network CIDR such as `10.42.0.0/16`"),
        }
    }
    if let [(fa, a), (fb, b)] = cidrs[..] {
        if cidrs_overlap(a, b) {
            p.add(
                fb,
                format!("`{b}` overlaps {fa} `{a}`"),
                "give the pods and the services separate ranges",
            );
        }
    }
    for (i, c) in spec.nodes.network_cidrs.iter().enumerate() {
        let field = format!("nodes.network_cidrs[{i}]");
        if let Err(e) = parse_cidr(c) {
            p.add(field, e, "write a CIDR such as `10.0.0.0/16`");
            continue;
        }
        network_overlaps(p, &field, c, &cidrs);
    }
}

/// A node network CIDR that overlaps the pod or service CIDR (`k8s`: field, value).
fn network_overlaps(p: &mut Problems, field: &str, c: &str, k8s: &[(&str, &str)]) {
    for (kf, kc) in k8s {
        if cidrs_overlap(c, kc) {
            p.add(
                field,
                format!("`{c}` overlaps {kf} `{kc}`: pods or services would shadow the node network"),
                format!("set {kf} to a range outside the node network (e.g. `172.30.0.0/16`), or fix {field}"),
            );
        }
    }
}

/// The problems of the node network the node provider reported at plan
/// ([`crate::NodeProvider::network_cidrs`]): one that overlaps the pod or service
/// CIDR is a problem of `kubernetes.cidr_pods` / `kubernetes.cidr_services` (the
/// field the user can change); an entry that is no CIDR is the provider's fault,
/// said so under `nodes`.
pub(crate) fn learned_network_problems(
    spec: &ClusterSpec,
    provider: &str,
    cidrs: &[String],
) -> Vec<SpecProblem> {
    let mut p = Problems(Vec::new());
    let k = &spec.kubernetes;
    for c in cidrs {
        if let Err(e) = parse_cidr(c) {
            p.add(
                "nodes",
                format!(
                    "the {provider} provider reported a node network `{c}` that is no CIDR: {e}"
                ),
                "report this as a bug of the provider",
            );
            continue;
        }
        for (kf, kc) in [
            ("kubernetes.cidr_pods", k.cidr_pods()),
            ("kubernetes.cidr_services", k.cidr_services()),
        ] {
            if cidrs_overlap(c, kc) {
                p.add(
                    kf,
                    format!("`{kc}` overlaps the node network `{c}` (reported by the {provider} provider): pods or services would shadow the nodes"),
                    format!("set {kf} to a range outside the node network (e.g. `172.30.0.0/16`)"),
                );
            }
        }
    }
    p.0
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

fn is_semver(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| is_digits(p))
}

fn name(p: &mut Problems, name: &str) {
    const FIX: &str =
        "use lowercase letters, digits and `-`, starting with a letter, e.g. `rancher`";
    if name.is_empty() {
        p.add("name", "is empty", FIX);
        return;
    }
    if name.len() > MAX_NAME_LEN {
        p.add(
            "name",
            format!("`{name}` is {} characters long; cloud resource names derived from it would be too long", name.len()),
            format!("use at most {MAX_NAME_LEN} characters"),
        );
    }
    if !is_dns_label(name) {
        p.add("name", format!("`{name}` is not a DNS label"), FIX);
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn region(p: &mut Problems, spec: &ClusterSpec) {
    if spec.region.trim().is_empty() {
        p.add(
            "region",
            "is empty",
            "name the region (or data centre) the nodes run in, e.g. `us-east-1`",
        );
    } else if spec.region.chars().any(char::is_whitespace) {
        p.add(
            "region",
            format!("`{}` contains white space", spec.region),
            "give the cloud's region id, e.g. `us-east-1`",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, z) in spec.zones.iter().enumerate() {
        if z.trim().is_empty() {
            p.add(
                format!("zones[{i}]"),
                "is empty",
                "remove it or name a zone of the region",
            );
        } else if !seen.insert(z.as_str()) {
            p.add(
                format!("zones[{i}]"),
                format!("`{z}` is listed twice"),
                "list each zone once; nodes are spread over the distinct zones",
            );
        }
    }
}

fn nodes(p: &mut Problems, spec: &ClusterSpec) {
    let n = &spec.nodes;
    match n.count {
        0 => p.add(
            "nodes.count",
            "is 0",
            "use an odd count, 3 by default: etcd runs on every node and needs a majority to elect a leader",
        ),
        1 if !n.allow_non_ha => p.add(
            "nodes.count",
            "is 1, which is not highly available: losing the node loses Rancher",
            "use 3 (etcd keeps a majority when one node fails), or set nodes.allow_non_ha = true for a test install",
        ),
        // Before the even check, so the fix never suggests a count over the maximum.
        c if c > MAX_NODE_COUNT => p.add(
            "nodes.count",
            format!("is {c}, more than the maximum of {MAX_NODE_COUNT}"),
            format!("use an odd count up to {MAX_NODE_COUNT}"),
        ),
        c if c % 2 == 0 => p.add(
            "nodes.count",
            format!("is {c}, an even number: etcd needs a majority, so {c} nodes tolerate no more failures than {}", c - 1),
            if c == 2 {
                "use 3 (or 1 with nodes.allow_non_ha = true for a test install)".to_owned()
            } else {
                format!("use {} or {}", c - 1, c + 1)
            },
        ),
        _ => {}
    }
    if n.allow_non_ha && n.count > 1 {
        p.add(
            "nodes.allow_non_ha",
            format!("is true but nodes.count is {}", n.count),
            "remove allow_non_ha; it only permits count = 1",
        );
    }
    for (field, v) in [("nodes.size", &n.size), ("nodes.image", &n.image)] {
        if let Some(v) = v {
            if v.trim().is_empty() {
                p.add(
                    field,
                    "is empty",
                    "remove it to use the provider's default, or give a value",
                );
            }
        }
    }
    if n.ssh_user.trim().is_empty() || n.ssh_user.chars().any(|c| c.is_whitespace() || c == ':') {
        p.add(
            "nodes.ssh_user",
            format!("`{}` is not a user name", n.ssh_user),
            "give the image's login user, e.g. `ubuntu`",
        );
    }
    for (i, k) in n.ssh_authorized_keys.iter().enumerate() {
        let ok = k.split_whitespace().count() >= 2
            && (k.starts_with("ssh-") || k.starts_with("ecdsa-") || k.starts_with("sk-"));
        if !ok || k.contains('\n') {
            p.add(
                format!("nodes.ssh_authorized_keys[{i}]"),
                "is not an OpenSSH public key line",
                "paste one line of a .pub file, e.g. `ssh-ed25519 AAAA… admin@example`",
            );
        }
    }
    for (i, c) in n.ssh_allowed_cidrs.iter().enumerate() {
        if let Err(e) = parse_cidr(c) {
            p.add(
                format!("nodes.ssh_allowed_cidrs[{i}]"),
                e,
                "write a CIDR such as `203.0.113.0/24`",
            );
        }
    }
    if let Some(d) = n.disk_gib {
        if !(20..=16_384).contains(&d) {
            p.add(
                "nodes.disk_gib",
                format!("is {d}"),
                "use 20..=16384 GiB; Rancher nodes want at least 20",
            );
        }
    }
}

/// Parse `a.b.c.d/n` or `x::/n`.
pub(crate) fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` has no prefix length"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{s}` does not start with an IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("`{s}` has a bad prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("`{s}` has prefix length {len} (at most {max})"));
    }
    Ok((ip, len))
}

fn proxy(p: &mut Problems, spec: &ClusterSpec) {
    let Some(proxy) = &spec.proxy else { return };
    if let Err(e) = proxy_url(&proxy.http) {
        p.add("proxy.http", e, "write the proxy as http://host:port");
    }
    if let Some(https) = &proxy.https {
        if let Err(e) = proxy_url(https) {
            p.add("proxy.https", e, "write the proxy as http://host:port (most proxies take HTTPS through CONNECT on the same URL)");
        }
    }
    for (i, entry) in proxy.no_proxy.iter().enumerate() {
        if let Err(e) = no_proxy_entry(entry) {
            p.add(
                format!("proxy.no_proxy[{i}]"),
                e,
                "give one host, `.domain`, IP or CIDR per list item: letters, digits and . - _ : / only (no commas, spaces, quotes or `*`; write `.corp` for every host under corp)",
            );
        }
    }
    if let Some(f) = &proxy.ca_file {
        if f.trim().is_empty() {
            p.add(
                "proxy.ca_file",
                "is empty",
                "give the path of the proxy's CA certificate (PEM), or remove it",
            );
        }
    }
}

/// Check one NO_PROXY entry in the format Go's `httpproxy` (and so RKE2, K3s,
/// containerd and Rancher) reads, restricted to what curl, Python and wget read the
/// same way: a host name, a `.domain` suffix, an IP (optionally `:port`), or a CIDR.
/// No spaces, commas, quotes, and no `*` wildcards (`*.corp` is Go-only; `.corp`
/// means the same everywhere).
pub(crate) fn no_proxy_entry(entry: &str) -> Result<(), String> {
    if entry.is_empty() {
        return Err("is empty".to_owned());
    }
    if entry.contains('*') {
        return Err(format!(
            "`{entry}` holds a `*` wildcard, which only some programs understand"
        ));
    }
    let odd = |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'));
    if entry.chars().any(odd) {
        return Err(format!("`{entry}` is not one host, domain, IP or CIDR"));
    }
    if entry.contains('/') {
        let (ip, len) = parse_cidr(entry)?;
        if let Some(canonical) = cidr_network(ip, len) {
            if canonical != ip {
                return Err(format!(
                    "`{entry}` has host bits set (the network is {canonical}/{len})"
                ));
            }
        }
        return Ok(());
    }
    if entry.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    // host[:port] or .domain[:port]
    let host = match entry.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') => {
            if port.parse::<u16>().is_err() {
                return Err(format!("`{entry}` has a bad port"));
            }
            h
        }
        Some(_) => return Err(format!("`{entry}` is not an IP, host or CIDR")),
        None => entry,
    };
    let host = host.strip_prefix('.').unwrap_or(host);
    let ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{entry}` is not a valid host or domain name"))
    }
}

/// The network address of `ip/len` (host bits cleared).
fn cidr_network(ip: IpAddr, len: u8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            Some(IpAddr::V4((u32::from(v4) & mask).into()))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            Some(IpAddr::V6((u128::from(v6) & mask).into()))
        }
    }
}

/// Whether two CIDRs share any address.
pub(crate) fn cidrs_overlap(a: &str, b: &str) -> bool {
    let (Ok((ia, la)), Ok((ib, lb))) = (parse_cidr(a), parse_cidr(b)) else {
        return false;
    };
    if ia.is_ipv4() != ib.is_ipv4() {
        return false;
    }
    let len = la.min(lb);
    cidr_network(ia, len) == cidr_network(ib, len)
}

/// Check a proxy URL. A URL without `://` is reported here, showing only what
/// follows its last `@`: the `url` crate reads `user:password@host:port` as scheme
/// `user` with an opaque path, so it would not recognise (nor hide) the password.
fn proxy_url(url: &ProxyUrl) -> Result<(), String> {
    let raw = url.expose();
    if !raw.contains("://") {
        let shown = match raw.rfind('@') {
            Some(i) => format!("{REDACTED}@{}", &raw[i + 1..]),
            None => raw.to_owned(),
        };
        return Err(format!("`{shown}` does not start with http:// or https://"));
    }
    url.parse().map(drop)
}

fn load_balancer(p: &mut Problems, spec: &ClusterSpec) {
    let lb = &spec.load_balancer;
    match (&lb.mode, &lb.ssl_policy) {
        (_, Some(sp)) if sp.trim().is_empty() => p.add(
            "load_balancer.ssl_policy",
            "is empty",
            "name a TLS policy, or leave the field out for triad's TLS 1.2+ default",
        ),
        (LbMode::L4, Some(_)) => p.add(
            "load_balancer.ssl_policy",
            "is set but mode is l4, which passes TLS through to the nodes",
            "leave ssl_policy out, or use mode = \"l7\"",
        ),
        _ => {}
    }
    match (&lb.mode, &lb.certificate) {
        (LbMode::L7, None) => p.add(
            "load_balancer.certificate",
            "is missing; l7 terminates TLS at the balancer and needs a certificate",
            "give the certificate reference (an ACM ARN on EC2, an SSL certificate name on GCE, a PEM path for NGINX), or use mode = \"l4\"",
        ),
        (LbMode::L7, Some(c)) if c.trim().is_empty() => p.add("load_balancer.certificate", "is empty", "give the certificate reference"),
        (LbMode::L4, Some(_)) => p.add(
            "load_balancer.certificate",
            "is set but mode is l4, which passes TLS through to the nodes",
            "remove the certificate, or set mode = \"l7\" to terminate TLS at the balancer",
        ),
        _ => {}
    }
    if let Some(path) = &lb.health_check_path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            p.add(
                "load_balancer.health_check_path",
                format!("`{path}` is not an HTTP path"),
                "use `/healthz` (NGINX ingress) or `/ping` (Traefik), or remove it to follow kubernetes.ingress",
            );
        }
    }
}

fn dns(p: &mut Problems, spec: &ClusterSpec) {
    let d = &spec.dns;
    let zone = d.zone.trim_end_matches('.').to_ascii_lowercase();
    let host = d.hostname.trim_end_matches('.').to_ascii_lowercase();
    let zone_ok = is_fqdn(&zone);
    if !zone_ok {
        p.add(
            "dns.zone",
            format!("`{}` is not a DNS domain name", d.zone),
            "give the zone the record goes in, e.g. `example.com`",
        );
    }
    if !is_fqdn(&host) || !host.contains('.') {
        p.add(
            "dns.hostname",
            format!("`{}` is not a fully qualified domain name", d.hostname),
            "give the name users type to reach Rancher, e.g. `rancher.example.com`; it cannot change after Rancher is installed",
        );
    } else if zone_ok && host != zone && !host.ends_with(&format!(".{zone}")) {
        p.add(
            "dns.hostname",
            format!("`{host}` is not inside the zone `{zone}`"),
            format!(
                "use a name ending in `.{zone}`, or set dns.zone to the zone that holds `{host}`"
            ),
        );
    }
    if d.ttl == 0 || d.ttl > MAX_TTL {
        p.add(
            "dns.ttl",
            format!("is {}", d.ttl),
            format!("use 1..={MAX_TTL} seconds; 60 lets a replaced balancer take over quickly"),
        );
    }
}

/// A domain name of letters, digits and `-` in dot-separated labels of 1..=63
/// characters, 253 at most in all.
fn is_fqdn(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn extra_labels(p: &mut Problems, spec: &ClusterSpec) {
    for (k, v) in &spec.labels {
        if k.starts_with("triad-") {
            p.add(
                format!("labels.{k}"),
                "uses the `triad-` prefix reserved for ownership labels",
                "choose another key",
            );
            continue;
        }
        if let Some(e) = labels::check(k, true) {
            p.add(format!("labels.{k}"), format!("key {e}"), "keys must be valid on AWS tags, GCE labels and vSphere attributes: lowercase letters, digits, `-`, `_`, at most 63");
        }
        if let Some(e) = labels::check(v, false) {
            p.add(
                format!("labels.{k}"),
                format!("value `{v}` {e}"),
                "values must be lowercase letters, digits, `-`, `_`, at most 63",
            );
        }
    }
}
