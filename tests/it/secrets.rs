//! Every secret a spec can hold — the proxy password (written with a raw `@` and
//! percent-encoded), `[vsphere] password`, `[rfc2136] secret`, any secret-named key
//! of a provider section — stays out of every output: `Display`, `Debug`, the JSON
//! of the spec, plan and inventory, every error (parse errors of each format, spec
//! problems, provider-section errors, a failed apply), logs at TRACE, progress
//! events, and the rendered hand-over (next steps, Helm line, RKE files).

use std::io::Write;
use std::sync::{Arc, Mutex};

use triad::events::RecordingObserver;
use triad::layers::{CallCounter, RetryPolicy, Stack};
use triad::sim::{SimApi, SimFault};
use triad::spec::ClusterSpec;
use triad::{bootstrap, render, FailureKind, Orchestrator};

use crate::common::*;

/// The proxy password, with a raw `@` (the URL parser splits at the last one).
const PROXY_PW: &str = "Pr0xy-p@ss-w0rd";
/// The HTTPS proxy's password, percent-encoded in the URL (`Pct@Secret-9`).
const PROXY_PW_ENCODED: &str = "Pct%40Secret-9";
const VSPHERE_PW: &str = "VsphereS3cret-42";
const TSIG_SECRET: &str = "VHNpZ1NlY3JldEtleQ==";
const API_TOKEN: &str = "Tok3n-of-an-addon";

/// Text that must appear nowhere: each secret and the parts of it a careless masking
/// could leave (what follows an `@`, the decoded form).
const NEEDLES: [&str; 8] = [
    PROXY_PW,
    "ss-w0rd",
    "Pr0xy-p",
    PROXY_PW_ENCODED,
    "Secret-9",
    VSPHERE_PW,
    TSIG_SECRET,
    API_TOKEN,
];

fn assert_clean(what: &str, text: &str) {
    for needle in NEEDLES {
        assert!(
            !text.contains(needle),
            "{what} shows secret text `{needle}`:\n{text}"
        );
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// The secret-bearing lines of the spec, as TOML.
fn proxy_toml() -> String {
    format!(
        "[proxy]\nhttp = \"http://ops:{PROXY_PW}@proxy.internal:3128\"\n\
         https = \"http://ops:{PROXY_PW_ENCODED}@proxy.internal:3129\"\nno_proxy = [\"corp.internal\"]\n"
    )
}

fn sections_toml() -> String {
    format!(
        "[vsphere]\nurl = \"https://vcenter.corp.internal/sdk\"\nusername = \"triad@vsphere.local\"\n\
         password = \"{VSPHERE_PW}\"\n\n\
         [rfc2136]\nserver = \"ns1.corp.internal:53\"\nkey_name = \"triad-key\"\nsecret = \"{TSIG_SECRET}\"\n\n\
         [nginx.addon]\napi_token = \"{API_TOKEN}\"\n"
    )
}

fn document() -> String {
    format!(
        "name = \"rancher\"\nregion = \"us-east-1\"\n\n\
         [nodes]\nsize = \"t3.xlarge\"\nimage = \"ami-0123456789abcdef0\"\n\n{}\n\
         [dns]\nzone = \"{ZONE}\"\nhostname = \"{FQDN}\"\n\n{}",
        proxy_toml(),
        sections_toml()
    )
}

/// Every way a spec document can fail to parse on or near a secret's line, in
/// each format, formatted every way.
fn parse_errors() -> Vec<(String, String)> {
    let doc = document();
    let mut docs: Vec<(&str, Result<ClusterSpec, triad::Error>)> = Vec::new();
    // A bad escape at the end of the secret: TOML quotes the whole line.
    for secret in [VSPHERE_PW, TSIG_SECRET, API_TOKEN] {
        let broken = doc.replace(secret, &format!("{secret}\\q"));
        docs.push(("TOML bad escape", ClusterSpec::from_toml(&broken)));
        let unterminated = doc.replace(&format!("{secret}\""), secret);
        docs.push(("TOML unterminated", ClusterSpec::from_toml(&unterminated)));
    }
    // A typo in the key of a secret's line, outside a provider section.
    let typo = doc.replace(
        "[proxy]\n",
        &format!("[proxy]\npassword = \"{VSPHERE_PW}\"\n"),
    );
    docs.push(("TOML unknown key", ClusterSpec::from_toml(&typo)));
    // A proxy URL where a table belongs.
    let wrong = doc.replace(
        "[proxy]\n",
        &format!("proxy = \"http://ops:{PROXY_PW}@proxy.internal:3128\"\n[proxy]\n"),
    );
    docs.push(("TOML duplicate", ClusterSpec::from_toml(&wrong)));
    let yaml = format!(
        "name: rancher\nregion: us-east-1\nproxy:\n  http: http://ops:{PROXY_PW}@proxy.internal:3128\n\
         dns: {{zone: {ZONE}, hostname: {FQDN}}}\nvsphere:\n  password: {VSPHERE_PW}\n   secret: {TSIG_SECRET}\n"
    );
    docs.push(("YAML indentation", ClusterSpec::from_yaml(&yaml)));
    let yaml = format!(
        "name: rancher\nregion: us-east-1\nproxy: http://ops:{PROXY_PW}@proxy.internal:3128\n\
         dns: {{zone: {ZONE}, hostname: {FQDN}}}\n"
    );
    docs.push(("YAML type", ClusterSpec::from_yaml(&yaml)));
    let json = format!(
        "{{\"name\":\"rancher\",\"region\":\"x\",\"dns\":{{\"zone\":\"{ZONE}\",\"hostname\":\"{FQDN}\"}},\n\
         \"rfc2136\":{{\"secret\":\"{TSIG_SECRET}\\q\"}}}}"
    );
    docs.push(("JSON bad escape", ClusterSpec::from_json(&json)));
    let json = format!(
        "{{\"name\":\"rancher\",\"region\":\"x\",\"dns\":{{\"zone\":\"{ZONE}\",\"hostname\":\"{FQDN}\"}},\n\
         \"vsphere\":{{\"password\":\"{VSPHERE_PW}\" \"x\": 1}}}}"
    );
    docs.push(("JSON missing comma", ClusterSpec::from_json(&json)));
    docs.into_iter()
        .flat_map(|(what, result)| {
            let err = result.expect_err(what);
            assert!(err.to_string().contains("line"), "{what}: {err}");
            [
                (format!("{what} error"), err.to_string()),
                (format!("{what} error debug"), format!("{err:?}")),
            ]
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn no_secret_reaches_any_output() {
    let logs = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let parsed = ClusterSpec::from_toml(&document()).expect("the document parses");
    let spec = parsed.clone().validate().expect("the spec is valid");
    // The secrets are there for the places that need them…
    assert!(bootstrap::user_data(&spec, "rancher-1").contains(PROXY_PW));
    let vsphere = spec.vsphere.as_ref().unwrap();
    let vs: serde_json::Value = vsphere.parse("vsphere").expect("the section parses");
    assert_eq!(vs["password"], VSPHERE_PW);
    let tsig: serde_json::Value = spec.rfc2136.as_ref().unwrap().parse("rfc2136").unwrap();
    assert_eq!(tsig["secret"], TSIG_SECRET);
    // …and, parsed into the wrong type, the error hides them.
    let section_err = vsphere
        .parse::<std::collections::BTreeMap<String, u32>>("vsphere")
        .unwrap_err();
    assert!(
        section_err.to_string().contains("invalid type"),
        "{section_err}"
    );

    // A spec problem about a proxy URL with a password.
    let bad_proxy = ClusterSpec::from_toml(
        &document().replace("proxy.internal:3128", "proxy.internal:3128/path"),
    )
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(bad_proxy.spec_problems().unwrap().names("proxy.http"));

    let sim = cloud();
    sim.inject(
        SimFault::on_any_mutating()
            .probability(0.3)
            .kind(FailureKind::Transient),
    );
    let events = Arc::new(RecordingObserver::default());
    let p = Arc::new(
        Stack::new(Arc::new(sim.clone()))
            .count(CallCounter::new())
            .retry(RetryPolicy::default().max_attempts(20))
            .build(),
    );
    let o = Orchestrator::new(p.clone(), p.clone(), p).with_observer(events.clone());
    let plan = o.plan(&spec).await.unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("proxy URL carries a password")),
        "{plan}"
    );
    let inv = o.apply(&plan).await.unwrap();
    sim.clear_faults();

    sim.inject(
        SimFault::on(SimApi::RunInstance)
            .always()
            .kind(FailureKind::Permission),
    );
    let mut bigger = spec.clone().into_inner();
    bigger.nodes.count = 5;
    let bigger = bigger.validate().unwrap();
    let apply_err = o.apply(&o.plan(&bigger).await.unwrap()).await.unwrap_err();
    sim.clear_faults();
    o.destroy(&spec.cluster()).await.unwrap();

    let mut outputs = vec![
        ("spec debug".to_owned(), format!("{parsed:?}")),
        ("spec pretty debug".into(), format!("{parsed:#?}")),
        ("spec json".into(), serde_json::to_string(&parsed).unwrap()),
        ("valid spec debug".into(), format!("{spec:?}")),
        (
            "valid spec json".into(),
            serde_json::to_string(&spec).unwrap(),
        ),
        ("section debug".into(), format!("{vsphere:?}")),
        (
            "section json".into(),
            serde_json::to_string(vsphere).unwrap(),
        ),
        (
            "proxy display".into(),
            spec.proxy.as_ref().unwrap().http.to_string(),
        ),
        (
            "https proxy display".into(),
            format!("{}", spec.proxy.as_ref().unwrap().https.as_ref().unwrap()),
        ),
        ("plan display".into(), plan.to_string()),
        ("plan debug".into(), format!("{plan:?}")),
        ("plan json".into(), serde_json::to_string(&plan).unwrap()),
        ("inventory debug".into(), format!("{inv:?}")),
        ("inventory json".into(), render::inventory_json(&inv)),
        ("next steps".into(), render::next_steps(&spec, &inv)),
        ("helm".into(), render::helm_install(&spec, &inv)),
        (
            "rke cluster.yml".into(),
            render::rke_cluster_yml(&spec, &inv),
        ),
        ("events".into(), format!("{:?}", events.events())),
        ("apply error".into(), apply_err.to_string()),
        ("apply error debug".into(), format!("{apply_err:?}")),
        ("section error".into(), section_err.to_string()),
        ("section error debug".into(), format!("{section_err:?}")),
        ("spec problem".into(), bad_proxy.to_string()),
        ("spec problem debug".into(), format!("{bad_proxy:?}")),
        ("orchestrator debug".into(), format!("{o:?}")),
    ];
    outputs.extend(parse_errors());
    outputs.push((
        "logs".into(),
        String::from_utf8(logs.0.lock().unwrap().clone()).unwrap(),
    ));
    assert!(outputs.last().unwrap().1.len() > 100, "logs were captured");
    // The masked forms are where the secrets were.
    let json = &outputs[2].1;
    assert!(json.contains("\"password\":\"****\""), "{json}");
    assert!(json.contains("ops:****@proxy.internal:3128"), "{json}");
    for (what, text) in &outputs {
        assert_clean(what, text);
    }
}
