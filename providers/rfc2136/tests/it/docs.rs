//! `docs/rfc2136.md` stays true: its spec loads, validates and is accepted.

use triad_core::spec::ClusterSpec;
use triad_core::DnsProvider;
use triad_rfc2136::{Algorithm, Rfc2136Provider};

const DOC: &str = include_str!("../../../../docs/rfc2136.md");

#[test]
fn the_spec_in_the_guide_is_accepted() {
    let body: String = DOC
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the guide has a toml block")
        .to_owned();
    std::env::set_var("TRIAD_TSIG_SECRET", "c2VjcmV0IGZvciB0aGUgZG9jcw==");
    let spec = ClusterSpec::from_toml(&body).unwrap().validate().unwrap();
    let p = Rfc2136Provider::from_spec(&spec).unwrap();
    p.check_spec(&spec).unwrap();
    assert_eq!(p.settings().algorithm, Algorithm::HmacSha256);
    assert_eq!(p.settings().zone.as_deref(), Some("example.com"));
    assert!(p
        .settings()
        .names
        .contains(&"rancher.example.com".to_owned()));
    assert!(!p.capabilities().alias);
}
