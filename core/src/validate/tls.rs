//! `[tls]`: where Rancher's certificate comes from, and its CA.

use super::*;

/// `[tls]`: a source only where Rancher terminates TLS (l4), Let's Encrypt with an
/// e-mail (and only then), a private CA only for a certificate that is not
/// Rancher's own.
pub(super) fn tls(p: &mut Problems, spec: &ClusterSpec) {
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

pub(super) fn is_email(s: &str) -> bool {
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
