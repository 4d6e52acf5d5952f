//! The NGINX configuration, rendered as a pure function, and the ownership header
//! at its top that discovery parses back.
//!
//! Layer 4 follows Rancher's NGINX page: a `stream` block with one `least_conn`
//! upstream per port (`server <node>:80 max_fails=3 fail_timeout=5s`, the same for
//! 443) and a server passing each port through; worker settings
//! `worker_processes 4; worker_rlimit_nofile 40000; worker_connections 8192`.
//!
//! Layer 7 terminates TLS with the spec's certificate and key, redirects HTTP to
//! HTTPS, and proxies to the nodes' port 80 with the headers Rancher expects behind
//! an external TLS terminator (`Host`, `X-Forwarded-Proto`, `X-Forwarded-Port`,
//! `X-Forwarded-For`) and the websocket upgrade headers; long read timeout and no
//! buffering, for Rancher's watch streams.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use triad_core::labels;
use triad_core::model::Listener;
use triad_core::spec::{LbMode, LbScheme};

use crate::settings::NginxSettings;

/// The first line of every file triad writes; a file without it is not ours.
pub(crate) const MARKER: &str =
    "# Managed by triad: rewritten by apply, removed by destroy. Do not edit.";

/// One balancer target: a Rancher node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The node's id in its provider.
    pub id: String,
    /// The node's name.
    pub name: String,
    /// The node's private address.
    pub address: IpAddr,
}

/// What the header at the top of a configuration says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// `triad-cluster`.
    pub cluster: String,
    /// The balancer's name.
    pub name: String,
    /// l4 or l7.
    pub mode: LbMode,
    /// internet-facing or internal.
    pub scheme: LbScheme,
    /// Labels (ownership labels included).
    pub labels: BTreeMap<String, String>,
    /// The targets, in file order.
    pub targets: Vec<Target>,
    /// l7: the certificate and key paths as nginx sees them.
    pub tls: Option<(String, String)>,
    /// Kubernetes registration ports (9345, 6443) passed through by `stream`
    /// blocks in either mode.
    pub registration_ports: Vec<u16>,
    /// `load_balancer.health_check_path`, recorded: NGINX Open Source checks
    /// passively (`max_fails`), it has no path to probe.
    pub health_check_path: Option<String>,
}

/// Everything a configuration is rendered from.
#[derive(Clone, Debug)]
pub(crate) struct Config<'a> {
    /// The header: ownership, mode, targets.
    pub header: Header,
    /// Ports, workers, modules, paths.
    pub settings: &'a NginxSettings,
}

/// The listeners a configuration has, as the orchestrator sees them: 80/443 by
/// mode, then one TCP listener per registration port.
pub(crate) fn listeners(
    mode: LbMode,
    s: &NginxSettings,
    registration_ports: &[u16],
) -> Vec<Listener> {
    let mut out = web_listeners(mode, s);
    out.extend(registration_ports.iter().map(|&p| Listener {
        port: s.registration_listen_port(p),
        protocol: "TCP".into(),
        target_port: Some(s.registration_backend_port(p)),
    }));
    out
}

fn web_listeners(mode: LbMode, s: &NginxSettings) -> Vec<Listener> {
    match mode {
        LbMode::L4 => vec![
            Listener {
                port: s.http_port,
                protocol: "TCP".into(),
                target_port: Some(s.backend_http_port),
            },
            Listener {
                port: s.https_port,
                protocol: "TCP".into(),
                target_port: Some(s.backend_https_port),
            },
        ],
        LbMode::L7 => vec![
            Listener {
                port: s.http_port,
                protocol: "HTTP".into(),
                target_port: None,
            },
            Listener {
                port: s.https_port,
                protocol: "HTTPS".into(),
                target_port: Some(s.backend_http_port),
            },
        ],
    }
}

fn mode_str(m: LbMode) -> &'static str {
    match m {
        LbMode::L4 => "l4",
        LbMode::L7 => "l7",
    }
}

fn scheme_str(s: LbScheme) -> &'static str {
    match s {
        LbScheme::InternetFacing => "internet-facing",
        LbScheme::Internal => "internal",
    }
}

/// A header value with anything that could end the comment line removed.
fn clean(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).collect()
}

fn header_text(h: &Header) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "# {}={}", labels::CLUSTER, clean(&h.cluster));
    let _ = writeln!(out, "# {}={}", labels::ROLE, labels::Role::Lb);
    let _ = writeln!(out, "# triad-name={}", clean(&h.name));
    let _ = writeln!(out, "# triad-mode={}", mode_str(h.mode));
    let _ = writeln!(out, "# triad-scheme={}", scheme_str(h.scheme));
    if let Some(p) = &h.health_check_path {
        let _ = writeln!(out, "# triad-health-check-path={}", clean(p));
    }
    for (k, v) in &h.labels {
        if k != labels::CLUSTER && k != labels::ROLE {
            let _ = writeln!(out, "# triad-label={}={}", clean(k), clean(v));
        }
    }
    if let Some((cert, key)) = &h.tls {
        let _ = writeln!(out, "# triad-certificate={}", clean(cert));
        let _ = writeln!(out, "# triad-certificate-key={}", clean(key));
    }
    for p in &h.registration_ports {
        let _ = writeln!(out, "# triad-registration-port={p}");
    }
    for t in &h.targets {
        let _ = writeln!(
            out,
            "# triad-target={} {} {}",
            clean(&t.id).replace(' ', "_"),
            clean(&t.name).replace(' ', "_"),
            t.address
        );
    }
    out
}

/// Parse the header of a configuration: `None` when the file is not triad's.
pub(crate) fn parse_header(text: &str) -> Option<Header> {
    let mut lines = text.lines();
    if lines.next()? != MARKER {
        return None;
    }
    let mut h = Header {
        cluster: String::new(),
        name: String::new(),
        mode: LbMode::L4,
        scheme: LbScheme::InternetFacing,
        labels: BTreeMap::new(),
        targets: Vec::new(),
        tls: None,
        registration_ports: Vec::new(),
        health_check_path: None,
    };
    let (mut cert, mut key) = (None, None);
    for line in lines {
        let Some(rest) = line.strip_prefix("# ") else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            continue;
        };
        match k {
            k if k == labels::CLUSTER => {
                h.cluster = v.to_owned();
                h.labels.insert(k.to_owned(), v.to_owned());
            }
            k if k == labels::ROLE => {
                h.labels.insert(k.to_owned(), v.to_owned());
            }
            "triad-name" => h.name = v.to_owned(),
            "triad-mode" => h.mode = if v == "l7" { LbMode::L7 } else { LbMode::L4 },
            "triad-scheme" => {
                h.scheme = if v == "internal" {
                    LbScheme::Internal
                } else {
                    LbScheme::InternetFacing
                }
            }
            "triad-certificate" => cert = Some(v.to_owned()),
            "triad-health-check-path" => h.health_check_path = Some(v.to_owned()),
            "triad-registration-port" => h.registration_ports.extend(v.parse::<u16>().ok()),
            "triad-certificate-key" => key = Some(v.to_owned()),
            "triad-label" => {
                if let Some((lk, lv)) = v.split_once('=') {
                    h.labels.insert(lk.to_owned(), lv.to_owned());
                }
            }
            "triad-target" => {
                let mut parts = v.split(' ');
                if let (Some(id), Some(name), Some(Ok(address))) =
                    (parts.next(), parts.next(), parts.next().map(str::parse))
                {
                    h.targets.push(Target {
                        id: id.to_owned(),
                        name: name.to_owned(),
                        address,
                    });
                }
            }
            _ => {}
        }
    }
    if let (Some(c), Some(k)) = (cert, key) {
        h.tls = Some((c, k));
    }
    (!h.cluster.is_empty()).then_some(h)
}

fn listen(s: &NginxSettings, port: u16) -> String {
    match &s.listen_address {
        Some(a) if a.contains(':') && !a.starts_with('[') => format!("[{a}]:{port}"),
        Some(a) => format!("{a}:{port}"),
        None => port.to_string(),
    }
}

fn upstream(out: &mut String, indent: &str, name: &str, targets: &[Target], port: u16) {
    let _ = writeln!(out, "{indent}upstream {name} {{");
    let _ = writeln!(out, "{indent}    least_conn;");
    if targets.is_empty() {
        // nginx wants at least one server: a permanently down one, so the balancer
        // answers nothing until triad sets targets.
        let _ = writeln!(
            out,
            "{indent}    server 127.0.0.1:{port} down; # no targets yet"
        );
    }
    for t in targets {
        let _ = writeln!(
            out,
            "{indent}    server {} max_fails=3 fail_timeout=5s; # {}",
            SocketAddr::new(t.address, port),
            clean(&t.name)
        );
    }
    let _ = writeln!(out, "{indent}}}");
}

/// One `stream` upstream and server per registration port (TCP passthrough; nginx
/// marks a node failed after 3 refused connections, the passive TCP check).
fn registration_streams(out: &mut String, c: &Config<'_>) {
    let s = c.settings;
    for &p in &c.header.registration_ports {
        out.push('\n');
        let name = format!("rancher_servers_{p}");
        upstream(
            out,
            "    ",
            &name,
            &c.header.targets,
            s.registration_backend_port(p),
        );
        let _ = writeln!(
            out,
            "    server {{\n        listen {};\n        proxy_pass {name};\n    }}",
            listen(s, s.registration_listen_port(p))
        );
    }
}

/// Render the whole `nginx.conf`. The same input always gives the same bytes.
pub(crate) fn render(c: &Config<'_>) -> String {
    let s = c.settings;
    let mut out = header_text(&c.header);
    out.push('\n');
    for m in &s.modules {
        if m.ends_with(".so") {
            let _ = writeln!(out, "load_module {m};");
        } else {
            let _ = writeln!(out, "include {m};");
        }
    }
    let _ = writeln!(out, "worker_processes {};", s.worker_processes);
    let _ = writeln!(out, "worker_rlimit_nofile {};", s.worker_rlimit_nofile);
    if let Some(p) = &s.pid_file {
        let _ = writeln!(out, "pid {p};");
    }
    if let Some(e) = &s.error_log {
        let _ = writeln!(out, "error_log {e};");
    }
    let _ = writeln!(
        out,
        "\nevents {{\n    worker_connections {};\n}}\n",
        s.worker_connections
    );
    let targets = &c.header.targets;
    match c.header.mode {
        LbMode::L4 => {
            out.push_str("stream {\n");
            upstream(
                &mut out,
                "    ",
                "rancher_servers_http",
                targets,
                s.backend_http_port,
            );
            let _ = writeln!(
                out,
                "    server {{\n        listen {};\n        proxy_pass rancher_servers_http;\n    }}\n",
                listen(s, s.http_port)
            );
            upstream(
                &mut out,
                "    ",
                "rancher_servers_https",
                targets,
                s.backend_https_port,
            );
            let _ = writeln!(
                out,
                "    server {{\n        listen {};\n        proxy_pass rancher_servers_https;\n    }}",
                listen(s, s.https_port)
            );
            registration_streams(&mut out, c);
            out.push_str("}\n");
        }
        LbMode::L7 => {
            let (cert, key) = c.header.tls.clone().unwrap_or_default();
            if !c.header.registration_ports.is_empty() {
                // TLS ends here for the web ports only: registration passes through.
                out.push_str("stream {");
                registration_streams(&mut out, c);
                out.push_str("}\n\n");
            }
            out.push_str("http {\n");
            upstream(
                &mut out,
                "    ",
                "rancher_servers_http",
                targets,
                s.backend_http_port,
            );
            out.push_str(
                "\n    map $http_upgrade $connection_upgrade {\n        default Upgrade;\n        ''      close;\n    }\n\n",
            );
            let redirect = if s.https_port == 443 {
                "https://$host$request_uri".to_owned()
            } else {
                format!("https://$host:{}$request_uri", s.https_port)
            };
            let _ = writeln!(
                out,
                "    server {{\n        listen {};\n        return 301 {redirect};\n    }}\n",
                listen(s, s.http_port)
            );
            let _ = writeln!(
                out,
                "    server {{\n        listen {} ssl;\n        ssl_certificate {cert};\n        ssl_certificate_key {key};\n        ssl_protocols TLSv1.2 TLSv1.3;\n",
                listen(s, s.https_port)
            );
            out.push_str(concat!(
                "        location / {\n",
                "            proxy_set_header Host $host;\n",
                "            proxy_set_header X-Forwarded-Proto $scheme;\n",
                "            proxy_set_header X-Forwarded-Port $server_port;\n",
                "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n",
                "            proxy_pass http://rancher_servers_http;\n",
                "            proxy_http_version 1.1;\n",
                "            proxy_set_header Upgrade $http_upgrade;\n",
                "            proxy_set_header Connection $connection_upgrade;\n",
                "            # Rancher keeps websockets and watches open for long.\n",
                "            proxy_read_timeout 900s;\n",
                "            proxy_buffering off;\n",
                "        }\n",
                "    }\n",
                "}\n",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<Target> {
        (1..=3)
            .map(|i| Target {
                id: format!("id-{i}"),
                name: format!("rancher-{i}"),
                address: format!("10.0.0.{i}").parse().unwrap(),
            })
            .collect()
    }

    fn header(mode: LbMode, targets: Vec<Target>) -> Header {
        let mut labels = BTreeMap::new();
        labels.insert("triad-cluster".into(), "rancher".into());
        labels.insert("triad-role".into(), "lb".into());
        labels.insert("team".into(), "platform".into());
        Header {
            cluster: "rancher".into(),
            name: "rancher".into(),
            mode,
            scheme: LbScheme::InternetFacing,
            labels,
            targets,
            tls: (mode == LbMode::L7)
                .then(|| ("/tls/cert.pem".to_owned(), "/tls/key.pem".to_owned())),
            registration_ports: Vec::new(),
            health_check_path: None,
        }
    }

    const L4_GOLDEN: &str = "\
# Managed by triad: rewritten by apply, removed by destroy. Do not edit.
# triad-cluster=rancher
# triad-role=lb
# triad-name=rancher
# triad-mode=l4
# triad-scheme=internet-facing
# triad-label=team=platform
# triad-target=id-1 rancher-1 10.0.0.1
# triad-target=id-2 rancher-2 10.0.0.2
# triad-target=id-3 rancher-3 10.0.0.3

include /etc/nginx/modules-enabled/*.conf;
worker_processes 4;
worker_rlimit_nofile 40000;

events {
    worker_connections 8192;
}

stream {
    upstream rancher_servers_http {
        least_conn;
        server 10.0.0.1:80 max_fails=3 fail_timeout=5s; # rancher-1
        server 10.0.0.2:80 max_fails=3 fail_timeout=5s; # rancher-2
        server 10.0.0.3:80 max_fails=3 fail_timeout=5s; # rancher-3
    }
    server {
        listen 80;
        proxy_pass rancher_servers_http;
    }

    upstream rancher_servers_https {
        least_conn;
        server 10.0.0.1:443 max_fails=3 fail_timeout=5s; # rancher-1
        server 10.0.0.2:443 max_fails=3 fail_timeout=5s; # rancher-2
        server 10.0.0.3:443 max_fails=3 fail_timeout=5s; # rancher-3
    }
    server {
        listen 443;
        proxy_pass rancher_servers_https;
    }
}
";

    #[test]
    fn l4_golden() {
        let s = NginxSettings::host("192.0.2.1");
        let text = render(&Config {
            header: header(LbMode::L4, targets()),
            settings: &s,
        });
        assert_eq!(text, L4_GOLDEN);
    }

    #[test]
    fn l7_terminates_tls_and_forwards_headers() {
        let mut s = NginxSettings::host("192.0.2.1");
        s.listen_address = Some("127.0.0.1".into());
        s.http_port = 8080;
        s.https_port = 8443;
        s.backend_http_port = 18080;
        s.modules = vec!["/usr/lib/nginx/modules/ngx_stream_module.so".into()];
        let text = render(&Config {
            header: header(LbMode::L7, targets()),
            settings: &s,
        });
        for needle in [
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
            "http {",
            "listen 127.0.0.1:8080;",
            "return 301 https://$host:8443$request_uri;",
            "listen 127.0.0.1:8443 ssl;",
            "ssl_certificate /tls/cert.pem;",
            "ssl_certificate_key /tls/key.pem;",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
            "proxy_set_header X-Forwarded-Port $server_port;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_pass http://rancher_servers_http;",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in\n{text}");
        }
        for t in targets() {
            assert!(text.contains(&format!(
                "server {}:18080 max_fails=3 fail_timeout=5s;",
                t.address
            )));
        }
        assert!(!text.contains("stream {"));
        assert!(!text.contains(":443"));
    }

    #[test]
    fn registration_ports_are_stream_blocks_in_both_modes() {
        let s = NginxSettings::host("192.0.2.1");
        for mode in [LbMode::L4, LbMode::L7] {
            let mut h = header(mode, targets());
            h.registration_ports = vec![9345, 6443];
            let text = render(&Config {
                header: h.clone(),
                settings: &s,
            });
            let stream = &text[text.find("stream {").expect("a stream block")..];
            for p in [9345, 6443] {
                assert!(
                    stream.contains(&format!("upstream rancher_servers_{p} {{")),
                    "{text}"
                );
                assert!(
                    stream.contains(&format!("server 10.0.0.1:{p} max_fails=3 fail_timeout=5s;"))
                );
                assert!(stream.contains(&format!(
                    "listen {p};\n        proxy_pass rancher_servers_{p};"
                )));
            }
            assert_eq!(parse_header(&text), Some(h));
        }
    }

    #[test]
    fn header_round_trips() {
        let s = NginxSettings::host("192.0.2.1");
        for mode in [LbMode::L4, LbMode::L7] {
            let mut h = header(mode, targets());
            h.health_check_path = Some("/healthz".into());
            let text = render(&Config {
                header: h.clone(),
                settings: &s,
            });
            assert_eq!(parse_header(&text), Some(h));
        }
        assert_eq!(parse_header("user www-data;\n"), None);
        assert_eq!(parse_header(""), None);
    }

    #[test]
    fn no_targets_is_still_valid_syntax() {
        let s = NginxSettings::host("192.0.2.1");
        let text = render(&Config {
            header: header(LbMode::L4, vec![]),
            settings: &s,
        });
        assert!(text.contains("server 127.0.0.1:80 down; # no targets yet"));
        assert!(text.contains("server 127.0.0.1:443 down; # no targets yet"));
        assert_eq!(parse_header(&text).unwrap().targets, vec![]);
    }

    #[test]
    fn ipv6_targets_are_bracketed() {
        let s = NginxSettings::host("192.0.2.1");
        let mut t = targets();
        t[0].address = "2001:db8::1".parse().unwrap();
        let text = render(&Config {
            header: header(LbMode::L4, t.clone()),
            settings: &s,
        });
        assert!(text.contains("server [2001:db8::1]:80 max_fails=3"));
        assert_eq!(parse_header(&text).unwrap().targets, t);
    }

    #[test]
    fn listeners_per_mode() {
        let s = NginxSettings::host("x");
        let l4 = listeners(LbMode::L4, &s, &[]);
        assert_eq!((l4[0].port, l4[0].target_port), (80, Some(80)));
        assert_eq!((l4[1].port, l4[1].target_port), (443, Some(443)));
        let l7 = listeners(LbMode::L7, &s, &[9345, 6443]);
        assert_eq!(
            (l7[2].port, l7[2].protocol.as_str(), l7[2].target_port),
            (9345, "TCP", Some(9345))
        );
        assert_eq!((l7[3].port, l7[3].target_port), (6443, Some(6443)));
        assert_eq!((l7[0].protocol.as_str(), l7[0].target_port), ("HTTP", None));
        assert_eq!(
            (l7[1].protocol.as_str(), l7[1].target_port),
            ("HTTPS", Some(80))
        );
    }
}
