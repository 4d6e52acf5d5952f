//! Spec and settings problems are reported before anything starts, naming the field.

use triad_core::spec::ClusterSpec;
use triad_core::{Error, NodeProvider};
use triad_qemu::{QemuProvider, QemuSettings};

/// A spec with `extra`; with a `[qemu]` section, the lab's balancer and DNS sections
/// too (QEMU makes nodes only, so a spec must say who makes the rest).
fn spec(extra: &str) -> triad_core::ValidSpec {
    let rest = if extra.contains("[qemu]") {
        "\n[nginx]\nrun_on = \"node\"\n[rfc2136]\nserver = \"127.0.0.1:53\"\nkey_name = \"k\"\nsecret_env = \"TSIG\"\n"
    } else {
        ""
    };
    ClusterSpec::from_toml(&format!(
        "name = \"lab\"\nregion = \"local\"\n[dns]\nzone = \"example.com\"\nhostname = \"lab.example.com\"\n{extra}{rest}"
    ))
    .unwrap()
    .validate()
    .unwrap()
}

fn problems(e: Error) -> Vec<String> {
    e.spec_problems()
        .unwrap_or_else(|| panic!("not a spec problem: {e}"))
        .0
        .iter()
        .map(|p| p.field.clone())
        .collect()
}

#[test]
fn a_missing_section_is_named() {
    let e = QemuSettings::from_spec(&spec("")).unwrap_err();
    assert_eq!(problems(e), ["qemu"]);
}

#[test]
fn every_bad_field_is_named_at_once() {
    let e = QemuSettings::from_spec(&spec(
        "[qemu]\nimage = \"/nonexistent/disk.qcow2\"\nstate_dir = \"/tmp/x\"\naddress = \"10.1.2.3\"\nproxy = \"192.0.2.1:3128\"\nlab_network = \"10.0.2.0/24\"\nmemory_mib = 16\ninitrd = \"/nonexistent/initrd\"\n",
    ))
    .unwrap_err();
    let fields = problems(e);
    for f in [
        "qemu.image",
        "qemu.address",
        "qemu.proxy",
        "qemu.lab_network",
        "qemu.memory_mib",
        "qemu.initrd",
    ] {
        assert!(
            fields.iter().any(|x| x == f),
            "{f} not reported: {fields:?}"
        );
    }
}

#[test]
fn unknown_fields_are_errors() {
    let e = QemuSettings::from_spec(&spec(
        "[qemu]\nimage = \"/x\"\nstate_dir = \"/tmp/x\"\nmemory = 5\n",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("memory"), "{e}");
}

#[test]
fn the_spec_proxy_must_be_the_guest_side_forward() {
    let image =
        std::env::temp_dir().join(format!("triad-qemu-bad-input-{}.img", std::process::id()));
    std::fs::write(&image, b"not really a disk").unwrap();
    let state = std::env::temp_dir().join(format!("triad-qemu-bad-input-{}", std::process::id()));
    let section = format!(
        "[qemu]\nimage = {:?}\nstate_dir = {:?}\nproxy = \"127.0.0.1:3128\"\n",
        image.display().to_string(),
        state.display().to_string()
    );
    let wrong = spec(&format!(
        "[nodes]\nsize = \"t3.large\"\n[proxy]\nhttp = \"http://proxy.corp:3128\"\n{section}"
    ));
    let e = QemuSettings::from_spec(&wrong).unwrap_err();
    assert_eq!(problems(e), ["proxy.http"]);

    let right = spec(&format!(
        "[nodes]\nsize = \"t3.large\"\n[proxy]\nhttp = \"http://10.0.2.100:3128\"\n{section}"
    ));
    let p = QemuProvider::from_spec(&right).unwrap();
    let e = p.check_spec(&right).unwrap_err();
    assert_eq!(problems(e), ["nodes.size"]);
    std::fs::remove_file(&image).unwrap();
    std::fs::remove_dir_all(&state).unwrap();
}
