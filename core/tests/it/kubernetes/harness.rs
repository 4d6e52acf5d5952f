//! The shell harness: the install-mode user data run by `sh` with the installer
//! replaced by a recorder, and `cloud-init schema` on it.

use super::*;

/// What the harness recorded.
struct Recorded {
    installer_env: BTreeMap<String, String>,
    curl_env: BTreeMap<String, String>,
    curl_url: String,
    systemctl: String,
    root: PathBuf,
}

/// Lay the user data's files out under a temporary root and run its `runcmd` with
/// `sh`, with `curl` and `systemctl` replaced by recorders on `PATH`: the fake curl
/// "downloads" an installer that records its environment.
fn run_user_data(text: &str, tag: &str) -> Recorded {
    let doc = cloud_config(text);
    let root = std::env::temp_dir().join(format!("triad-harness-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let rec = root.join("rec");
    let bin = root.join("bin");
    for d in [&rec, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    let rooted = |p: &str| format!("{}{p}", root.display());
    // Paths the scripts use, moved under the root.
    let relocate = |s: &str| {
        let mut s = s.to_owned();
        for p in ["/etc/default/", "/var/lib/triad", "/etc/rancher/"] {
            s = s.replace(p, &rooted(p));
        }
        s
    };
    for f in &doc.write_files {
        let path = PathBuf::from(rooted(&f.path));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let content = if f.path == bootstrap::INSTALL_SCRIPT {
            relocate(&f.content)
        } else {
            f.content.clone()
        };
        if f.append {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(content.as_bytes())
                .unwrap();
        } else {
            std::fs::write(&path, content).unwrap();
        }
        assert_eq!(f.owner, "root:root");
    }
    let script = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    };
    script(
        "curl",
        r#"env > "$REC/curl.env"
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift ;;
    -*) ;;
    *) url=$1 ;;
  esac
  shift
done
printf '%s' "$url" > "$REC/curl.url"
cat > "$out" <<'EOF'
env > "$REC/installer.env"
EOF
"#,
    );
    script("systemctl", r#"echo "$*" >> "$REC/systemctl.log""#);
    for cmd in &doc.runcmd {
        let args: Vec<String> = cmd
            .iter()
            .map(|a| {
                if a.starts_with('/') {
                    rooted(a)
                } else {
                    a.clone()
                }
            })
            .collect();
        let status = Command::new(&args[0])
            .args(&args[1..])
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("REC", &rec)
            .status()
            .unwrap();
        assert!(status.success(), "runcmd {cmd:?} failed");
    }
    let env_of = |p: &Path| -> BTreeMap<String, String> {
        std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect()
    };
    Recorded {
        installer_env: env_of(&rec.join("installer.env")),
        curl_env: env_of(&rec.join("curl.env")),
        curl_url: std::fs::read_to_string(rec.join("curl.url")).unwrap(),
        systemctl: std::fs::read_to_string(rec.join("systemctl.log")).unwrap_or_default(),
        root,
    }
}

#[test]
fn harness_rke2_installer_runs_through_the_proxy() {
    let token = token_file();
    let s = install_spec("rke2", &token);
    let r = run_user_data(&bootstrap::user_data(&s, "rancher-2"), "rke2");
    let url = proxy_url();
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        assert_eq!(
            r.installer_env.get(k),
            Some(&url),
            "{k} in the installer's environment"
        );
        assert_eq!(r.curl_env.get(k), Some(&url), "{k} for the download");
    }
    check_no_proxy(&r.installer_env["NO_PROXY"]);
    assert_eq!(r.installer_env["no_proxy"], r.installer_env["NO_PROXY"]);
    assert_eq!(r.installer_env["INSTALL_RKE2_CHANNEL"], "v1.31");
    assert_eq!(r.installer_env["INSTALL_RKE2_TYPE"], "server");
    assert_eq!(r.curl_url, "https://get.rke2.io");
    assert!(r.systemctl.contains("daemon-reload"));
    assert!(
        r.systemctl
            .trim_end()
            .ends_with("enable --now rke2-server.service"),
        "{}",
        r.systemctl
    );
    // rke2-server's own environment: the env file, as systemd reads it.
    let env =
        systemd_env_file(&std::fs::read_to_string(r.root.join("etc/default/rke2-server")).unwrap());
    assert_eq!(env["HTTPS_PROXY"], url);
    assert_eq!(env["NO_PROXY"], r.installer_env["NO_PROXY"]);
    std::fs::remove_dir_all(&r.root).unwrap();
}

#[test]
fn harness_k3s_installer_gets_proxy_and_version() {
    let token = token_file();
    let mut text = bootstrap::user_data(&install_spec("k3s", &token), "rancher-1");
    // Same spec with an exact version instead of the channel.
    let s = valid(
        &format!(
            "[proxy]\nhttp = \"http://ops:{PASSWORD}@proxy.corp.example:3128\"\n\
             [kubernetes]\ndistribution = \"k3s\"\ninstall = true\nversion = \"v1.31.4+k3s1\"\n"
        ),
        &token,
    );
    let r = run_user_data(&text, "k3s-channel");
    assert_eq!(r.installer_env["INSTALL_K3S_CHANNEL"], "v1.31");
    assert_eq!(r.installer_env["INSTALL_K3S_EXEC"], "server");
    assert_eq!(r.installer_env["HTTPS_PROXY"], proxy_url());
    assert_eq!(r.curl_url, "https://get.k3s.io");
    assert!(
        !r.systemctl.contains("rke2"),
        "the K3s installer starts k3s itself"
    );
    std::fs::remove_dir_all(&r.root).unwrap();
    text = bootstrap::user_data(&s, "rancher-1");
    let r = run_user_data(&text, "k3s-version");
    assert_eq!(r.installer_env["INSTALL_K3S_VERSION"], "v1.31.4+k3s1");
    assert!(!r.installer_env.contains_key("INSTALL_K3S_CHANNEL"));
    std::fs::remove_dir_all(&r.root).unwrap();
}

#[test]
#[ignore = "needs cloud-init (TRIAD_CLOUD_INIT); scripts/test runs ignored tests"]
fn cloud_init_schema_accepts_install_user_data() {
    let ci = std::env::var("TRIAD_CLOUD_INIT").expect("TRIAD_CLOUD_INIT names cloud-init");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBexample\n-----END CERTIFICATE-----\n";
    let ca = TempFile::new("ca.pem", pem);
    let token = token_file();
    let with_ca = valid(
        &format!(
            "[proxy]\nca_file = {:?}\n[kubernetes]\ninstall = true\n",
            ca.path().display().to_string()
        ),
        &token,
    );
    for (s, tag) in [
        (install_spec("rke2", &token), "rke2"),
        (install_spec("k3s", &token), "k3s"),
        (with_ca, "ca"),
    ] {
        for node in ["rancher-1", "rancher-2"] {
            let f = TempFile::new(
                &format!("{tag}-{node}.yaml"),
                &bootstrap::user_data(&s, node),
            );
            let out = Command::new(&ci)
                .args(["schema", "--config-file"])
                .arg(f.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{tag} {node}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let bad = TempFile::new("bad.yaml", "#cloud-config\nmanage_etc_hosts: 3\n");
    let out = Command::new(&ci)
        .args(["schema", "--config-file"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the check itself can fail");
}
