//! `docs/nginx.md` stays true: every spec in it loads, validates and is accepted by
//! the provider.

use std::sync::Arc;

use triad_core::spec::ClusterSpec;
use triad_core::LoadBalancerProvider;
use triad_nginx::{NginxProvider, RunOn};
use triad_sim::{SimCloud, SimConfig};

const DOC: &str = include_str!("../../../../docs/nginx.md");

pub(crate) fn toml_blocks(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some("toml")) => current = Some(String::new()),
            (Some(_), Some("")) => out.push(current.take().unwrap()),
            (Some(body), None) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_spec_in_the_guide_is_accepted() {
    let blocks = toml_blocks(DOC);
    assert_eq!(
        blocks.len(),
        2,
        "the guide has a host-mode and a node-mode spec"
    );
    let mut modes = Vec::new();
    for body in blocks {
        let spec = ClusterSpec::from_toml(&body)
            .and_then(ClusterSpec::validate)
            .unwrap_or_else(|e| panic!("docs/nginx.md spec does not load: {e}\n{body}"));
        let nodes = Arc::new(SimCloud::new(SimConfig::instant()));
        let p = NginxProvider::from_spec(&spec, Some(nodes))
            .unwrap_or_else(|e| panic!("docs/nginx.md spec is refused: {e}\n{body}"));
        p.check_spec(&spec).unwrap();
        modes.push(p.settings().run_on);
    }
    assert_eq!(modes, [RunOn::Host, RunOn::Node]);
}
