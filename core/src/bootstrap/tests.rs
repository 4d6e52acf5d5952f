use super::proxy::{env_escape, unit_escape};
use super::*;
use crate::model::NodeRequest;
use crate::spec::{ClusterSpec, ValidSpec};

const PASSWORD: &str = "s3cr3t-Pw";

fn spec(proxy: Option<&str>, extra_no_proxy: &[&str], keys: &[&str]) -> ValidSpec {
    let mut text = String::from(
        "name = \"rancher\"\nregion = \"us-east-1\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n",
    );
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    text.push_str(&format!(
        "[nodes]\nssh_authorized_keys = [{}]\n",
        keys.join(", ")
    ));
    if let Some(url) = proxy {
        let entries: Vec<String> = extra_no_proxy.iter().map(|e| format!("{e:?}")).collect();
        text.push_str(&format!(
            "[proxy]\nhttp = {url:?}\nno_proxy = [{}]\n",
            entries.join(", ")
        ));
    }
    ClusterSpec::from_toml(&text).unwrap().validate().unwrap()
}

fn proxied() -> ValidSpec {
    spec(
        Some(&format!("http://ops:{PASSWORD}@proxy.corp:3128")),
        &["corp.example", "10.0.0.0/8", "db.corp.example"],
        &["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB admin@example"],
    )
}

fn parse(text: &str) -> serde_norway::Value {
    serde_norway::from_str(text).unwrap()
}

fn files(doc: &serde_norway::Value) -> Vec<(String, String, String, bool)> {
    doc["write_files"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap().to_owned(),
                        f["content"].as_str().unwrap().to_owned(),
                        f["permissions"].as_str().unwrap().to_owned(),
                        f["append"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn no_proxy_order_and_dedup() {
    let list = no_proxy(&proxied());
    assert_eq!(
        list,
        [
            "127.0.0.0/8",
            "10.0.0.0/8",
            "cattle-system.svc",
            "172.16.0.0/12",
            "192.168.0.0/16",
            ".svc",
            ".cluster.local",
            "localhost",
            "rancher-1",
            "rancher-2",
            "rancher-3",
            "rancher.example.com",
            "10.42.0.0/16",
            "10.43.0.0/16",
            "corp.example",
            "db.corp.example",
        ]
    );
}

#[test]
fn no_proxy_without_proxy_still_lists_cluster_names() {
    let list = no_proxy(&spec(None, &[], &[]));
    assert_eq!(&list[..5], &RANCHER_NO_PROXY);
    assert_eq!(list.len(), 5 + 3 + 3 + 3);
    assert_eq!(list.last().unwrap(), "10.43.0.0/16");
}

#[test]
fn every_proxy_file_has_literal_values() {
    let s = proxied();
    let text = user_data(&s, "rancher-2");
    assert!(!text.contains("${"), "unexpanded variable in:\n{text}");
    let doc = parse(&text);
    let url = format!("http://ops:{PASSWORD}@proxy.corp:3128");
    let np = no_proxy(&s).join(",");
    let files = files(&doc);
    let paths: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/environment",
            "/etc/apt/apt.conf.d/proxy.conf",
            "/etc/systemd/system/docker.service.d/http-proxy.conf",
            "/etc/systemd/system/containerd.service.d/http-proxy.conf",
            "/etc/default/rke2-server",
            "/etc/default/rke2-agent",
            "/etc/default/k3s",
        ]
    );
    let get = |p: &str| files.iter().find(|f| f.0 == p).unwrap().clone();

    let (_, env, mode, append) = get("/etc/environment");
    assert!(append);
    assert_eq!(mode, "0644");
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        assert!(env.contains(&format!("\n{k}=\"{url}\"\n")), "{k} in {env}");
    }
    for k in ["NO_PROXY", "no_proxy"] {
        assert!(env.contains(&format!("\n{k}=\"{np}\"\n")), "{k} in {env}");
    }

    let (_, apt, mode, append) = get("/etc/apt/apt.conf.d/proxy.conf");
    assert!(!append);
    assert_eq!(mode, "0600");
    assert!(apt.contains(&format!("Acquire::http::Proxy \"{url}\";\n")));
    assert!(apt.contains(&format!("Acquire::https::Proxy \"{url}\";\n")));

    for unit in ["docker", "containerd"] {
        let (_, d, mode, _) = get(&format!(
            "/etc/systemd/system/{unit}.service.d/http-proxy.conf"
        ));
        assert_eq!(mode, "0644");
        assert!(d.contains("[Service]\n"));
        assert!(d.contains(&format!(
            "Environment=\"HTTP_PROXY={url}\" \"HTTPS_PROXY={url}\" \"NO_PROXY={np}\"\n"
        )));
    }

    for path in [
        "/etc/default/rke2-server",
        "/etc/default/rke2-agent",
        "/etc/default/k3s",
    ] {
        let (_, f, mode, _) = get(path);
        assert_eq!(mode, "0600", "{path}");
        for k in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "CONTAINERD_HTTP_PROXY",
            "CONTAINERD_HTTPS_PROXY",
        ] {
            assert!(f.contains(&format!("\n{k}=\"{url}\"\n")), "{k} in {path}");
        }
        for k in ["NO_PROXY", "CONTAINERD_NO_PROXY"] {
            assert!(f.contains(&format!("\n{k}=\"{np}\"\n")), "{k} in {path}");
        }
    }

    assert_eq!(
        doc["runcmd"],
        parse("- [systemctl, daemon-reload]"),
        "daemon-reload after writing the drop-ins"
    );
}

#[test]
fn https_proxy_used_when_given() {
    let text = "name = \"rancher\"\nregion = \"r\"\n[proxy]\nhttp = \"http://a.corp:3128\"\nhttps = \"http://b.corp:3129\"\n[dns]\nzone = \"example.com\"\nhostname = \"rancher.example.com\"\n";
    let s = ClusterSpec::from_toml(text).unwrap().validate().unwrap();
    let ud = user_data(&s, "rancher-1");
    assert!(ud.contains("HTTP_PROXY=\"http://a.corp:3128\""));
    assert!(ud.contains("HTTPS_PROXY=\"http://b.corp:3129\""));
    assert!(ud.contains("Acquire::https::Proxy \"http://b.corp:3129\";"));
}

#[test]
fn special_characters_are_escaped_per_format() {
    // `%40` is a percent-encoded `@`; `$` must not be expanded by anything.
    let s = spec(Some("http://ops:p%40ss$word@proxy.corp:3128"), &[], &[]);
    let doc = parse(&user_data(&s, "rancher-1"));
    let files = files(&doc);
    let get = |p: &str| files.iter().find(|f| f.0 == p).unwrap().1.clone();
    let url = "http://ops:p%40ss%24word@proxy.corp:3128";
    assert!(get("/etc/default/k3s").contains(&format!("\nHTTP_PROXY=\"{url}\"\n")));
    assert!(get("/etc/apt/apt.conf.d/proxy.conf").contains(&format!("\"{url}\";")));
    // systemd would read `%4` as a specifier: it must be doubled.
    assert!(get("/etc/systemd/system/docker.service.d/http-proxy.conf")
        .contains("\"HTTP_PROXY=http://ops:p%%40ss%%24word@proxy.corp:3128\""));
    assert_eq!(env_escape(r#"a"b$c`d\e"#), r#"a\"b\$c\`d\\e"#);
    assert_eq!(unit_escape(r#"a"b%c\d"#), r#"a\"b%%c\\d"#);
}

#[test]
fn no_proxy_spec_writes_no_proxy_files() {
    let s = spec(None, &[], &["ssh-ed25519 AAAAC3Nza admin@example"]);
    let text = user_data(&s, "rancher-1");
    let doc = parse(&text);
    assert!(doc.get("write_files").is_none(), "{text}");
    assert!(doc.get("runcmd").is_none(), "{text}");
    assert!(!text.to_ascii_lowercase().contains("proxy"), "{text}");
    assert_eq!(doc["hostname"].as_str(), Some("rancher-1"));
}

#[test]
fn header_hostname_and_keys() {
    let s = proxied();
    let text = user_data(&s, "rancher-3");
    assert!(text.starts_with("#cloud-config\n"));
    let doc = parse(&text);
    assert_eq!(doc["hostname"].as_str(), Some("rancher-3"));
    assert!(doc.get("fqdn").is_none(), "the node name is no FQDN");
    assert_eq!(doc["manage_etc_hosts"].as_bool(), Some(true));
    assert_eq!(
        doc["ssh_authorized_keys"],
        parse("[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB admin@example\"]")
    );
}

#[test]
fn password_only_where_it_must_be() {
    let s = proxied();
    let ud = user_data(&s, "rancher-1");
    assert!(
        ud.contains(PASSWORD),
        "nodes need the password to use the proxy"
    );
    assert!(!format!("{s:?}").contains(PASSWORD));
    assert!(!format!("{:?}", s.proxy).contains(PASSWORD));
    let req = NodeRequest {
        name: "rancher-1".into(),
        zone: "a".into(),
        size: None,
        image: None,
        disk_gib: None,
        ssh_allowed_cidrs: vec![],
        labels: Default::default(),
        user_data: ud,
    };
    assert!(!format!("{req:?}").contains(PASSWORD));
    assert!(!format!("{:?}", no_proxy(&s)).contains(PASSWORD));
}

#[test]
fn deterministic() {
    let a = user_data(&proxied(), "rancher-1");
    let b = user_data(&proxied(), "rancher-1");
    assert_eq!(a, b);
    assert_ne!(a, user_data(&proxied(), "rancher-2"));
}

#[test]
#[ignore = "needs Debian's cloud-init; scripts/test runs ignored tests"]
fn cloud_init_schema_accepts_user_data() {
    let check = |text: &str, tag: &str| {
        let path =
            std::env::temp_dir().join(format!("triad-user-data-{}-{tag}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&path)
            .output()
            .expect("run cloud-init (apt-get install cloud-init)");
        std::fs::remove_file(&path).unwrap();
        out
    };
    let out = check(&user_data(&proxied(), "rancher-1"), "good");
    assert!(
        out.status.success(),
        "cloud-init schema rejected the user data:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check itself can fail: a wrongly typed key is rejected.
    let out = check("#cloud-config\nruncmd: 3\n", "bad");
    assert!(!out.status.success(), "cloud-init schema accepts anything");
}
