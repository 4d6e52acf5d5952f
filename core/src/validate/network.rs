//! CIDRs, the proxy URLs and NO_PROXY entries in the format Go reads.

use super::*;

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

pub(super) fn proxy(p: &mut Problems, spec: &ClusterSpec) {
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
pub(super) fn cidr_network(ip: IpAddr, len: u8) -> Option<IpAddr> {
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
pub(super) fn proxy_url(url: &ProxyUrl) -> Result<(), String> {
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
