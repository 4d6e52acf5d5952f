//! Proxy passwords never reach `Debug` output, error text or serialized specs.

use triad_core::secret::Secret;
use triad_core::spec::ClusterSpec;

use crate::common::{merged, spec_with};

const PASSWORD: &str = "Sup3rS3cretPw";

fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "{what} shows the password: {text}"
    );
}

#[test]
fn a_valid_specs_password_is_hidden_everywhere() {
    let spec = spec_with(&format!(
        "[proxy]\nhttp = \"http://ops:{PASSWORD}@proxy.corp.example:3128\"\n\
         https = \"https://ops:{PASSWORD}@proxy.corp.example:3129\""
    ));
    let proxy = spec.proxy.as_ref().unwrap();
    // The password is there for the places that need it…
    assert!(proxy.http.expose().contains(PASSWORD));
    assert!(proxy.https.as_ref().unwrap().expose().contains(PASSWORD));
    // …and nowhere else.
    assert_hidden("Debug of the spec", &format!("{spec:?}"));
    assert_hidden("pretty Debug of the spec", &format!("{spec:#?}"));
    let json = serde_json::to_string(&spec).unwrap();
    assert_hidden("JSON of the spec", &json);
    assert!(json.contains("ops:****@proxy.corp.example:3128"), "{json}");

    let valid = spec.validate().expect("valid");
    assert_hidden("Debug of the valid spec", &format!("{valid:?}"));
    assert_hidden(
        "JSON of the valid spec",
        &serde_json::to_string(&valid).unwrap(),
    );
}

#[test]
fn spec_errors_about_a_proxy_url_hide_its_password() {
    let bad_urls = [
        format!("http://ops:{PASSWORD}@proxy.corp.example:3128/path"),
        format!("ftp://ops:{PASSWORD}@proxy.corp.example:21"),
        format!("http://ops:{PASSWORD}@proxy corp:3128"),
        format!("http://ops:{PASSWORD}@"),
        format!("ops:{PASSWORD}@proxy.corp.example:3128"),
    ];
    for url in &bad_urls {
        for field in ["http", "https"] {
            let spec = spec_with(&format!("[proxy]\n{field} = \"{url}\""));
            let err = spec.validate().expect_err(url);
            assert!(
                err.spec_problems()
                    .unwrap()
                    .names(&format!("proxy.{field}")),
                "{err}"
            );
            assert_hidden("spec error", &format!("{err}"));
            assert_hidden("Debug of the spec error", &format!("{err:?}"));
        }
    }
}

#[test]
fn parse_errors_hide_proxy_passwords() {
    let url = format!("http://ops:{PASSWORD}@proxy.corp.example:3128");
    // A typo in the key: the TOML error quotes the line it is on.
    let toml_typo = merged("").replace("[proxy]\n", &format!("[proxy]\nhtp = \"{url}\"\n"));
    // A URL where a table belongs: serde quotes the value it did not expect.
    let toml_type = format!("proxy = \"{url}\"\n{}", minimal_toml());
    let yaml_type = format!(
        "name: r\nregion: x\nproxy: {url}\ndns: {{zone: example.com, hostname: r.example.com}}\n"
    );
    let yaml_typo = format!(
        "name: r\nregion: x\nproxy: {{http: '{url}', htps: '{url}'}}\ndns: {{zone: example.com, hostname: r.example.com}}\n"
    );
    let json_type = format!(
        r#"{{"name":"r","region":"x","proxy":"{url}","dns":{{"zone":"example.com","hostname":"r.example.com"}}}}"#
    );
    let json_list = format!(
        r#"{{"name":"r","region":"x","proxy":{{"http":["{url}"]}},"dns":{{"zone":"example.com","hostname":"r.example.com"}}}}"#
    );
    for (what, result) in [
        ("TOML typo", ClusterSpec::from_toml(&toml_typo)),
        ("TOML type", ClusterSpec::from_toml(&toml_type)),
        ("YAML type", ClusterSpec::from_yaml(&yaml_type)),
        ("YAML typo", ClusterSpec::from_yaml(&yaml_typo)),
        ("JSON type", ClusterSpec::from_json(&json_type)),
        ("JSON list", ClusterSpec::from_json(&json_list)),
    ] {
        let err = result.expect_err(what);
        let text = err.to_string();
        assert_hidden(what, &text);
        assert_hidden(what, &format!("{err:?}"));
        // The error still says where the problem is.
        assert!(text.contains("line"), "{what}: {text}");
        // Where it quotes the URL, it shows it masked.
        if text.contains("proxy.corp.example") {
            assert!(
                text.contains("ops:****@proxy.corp.example"),
                "{what}: {text}"
            );
        }
    }
}

#[test]
fn parse_errors_keep_text_that_is_not_a_password() {
    // Masking must not eat ordinary text: an `@` without a `user:` before it.
    let doc = "name = \"r\"\nregion = \"x\"\nowner = \"ops@example.com\"\n\
               [dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n";
    let text = ClusterSpec::from_toml(doc).unwrap_err().to_string();
    assert!(text.contains("ops@example.com"), "{text}");
    assert!(text.contains("unknown field `owner`"), "{text}");
}

fn minimal_toml() -> &'static str {
    "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n"
}

#[test]
fn provider_section_secrets_are_held_apart_and_reach_the_parser() {
    let spec = spec_with(&format!(
        "[vsphere]\nurl = \"https://vc\"\npassword = \"{PASSWORD}\"\n\
         [rfc2136]\nkey_name = \"k\"\nsecret = \"{PASSWORD}x\"\nsecret_file = \"/etc/tsig\"\n\
         [nginx.addon]\napi_token = \"{PASSWORD}y\"\nkeys = [{{ access_key = \"{PASSWORD}z\" }}]"
    ));
    for (what, text) in [
        ("Debug", format!("{spec:?}")),
        ("JSON", serde_json::to_string(&spec).unwrap()),
        ("section Debug", format!("{:?}", spec.vsphere)),
    ] {
        assert_hidden(what, &text);
    }
    // What names where a secret is stays visible.
    let rfc = serde_json::to_value(spec.rfc2136.as_ref().unwrap()).unwrap();
    assert_eq!(rfc["secret_file"], "/etc/tsig");
    assert_eq!(rfc["secret"], "****");
    // The provider's settings type gets every value, at any depth.
    #[derive(serde::Deserialize)]
    struct Vs {
        password: Secret,
    }
    let vs: Vs = spec.vsphere.as_ref().unwrap().parse("vsphere").unwrap();
    assert_eq!(vs.password.expose(), PASSWORD);
    let nginx: serde_json::Value = spec.nginx.as_ref().unwrap().parse("nginx").unwrap();
    assert_eq!(nginx["addon"]["api_token"], format!("{PASSWORD}y"));
    assert_eq!(
        nginx["addon"]["keys"][0]["access_key"],
        format!("{PASSWORD}z")
    );
    // A value of the wrong type is not quoted back.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        password: u32,
    }
    let err = spec
        .vsphere
        .as_ref()
        .unwrap()
        .parse::<Wrong>("vsphere")
        .unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
    assert_hidden("section error", &err.to_string());
    assert_hidden("section error debug", &format!("{err:?}"));
}

#[test]
fn parse_errors_never_quote_a_secret_line() {
    let base = format!(
        "name = \"r\"\nregion = \"x\"\n[dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n\
         [vsphere]\nurl = \"https://vc\"\npassword = \"{PASSWORD}\"\n"
    );
    for (what, doc) in [
        (
            "bad escape",
            base.replace(PASSWORD, &format!("{PASSWORD}\\q")),
        ),
        (
            "unterminated",
            base.replace(&format!("{PASSWORD}\""), PASSWORD),
        ),
        (
            "duplicate key",
            format!("{base}password = \"{PASSWORD}\"\n"),
        ),
        (
            "inline table",
            format!(
                "name = \"r\"\nregion = \"x\"\nvsphere = {{ password = \"{PASSWORD}\", url = }}\n\
                 [dns]\nzone = \"example.com\"\nhostname = \"r.example.com\"\n"
            ),
        ),
    ] {
        let err = ClusterSpec::from_toml(&doc).expect_err(what);
        let text = err.to_string();
        assert_hidden(what, &text);
        assert_hidden(what, &format!("{err:?}"));
        assert!(text.contains("line"), "{what}: {text}");
    }
    let yaml = format!(
        "name: r\nregion: x\ndns: {{zone: example.com, hostname: r.example.com}}\n\
         vsphere:\n  password: \"{PASSWORD}\\q\"\n"
    );
    let err = ClusterSpec::from_yaml(&yaml).unwrap_err();
    assert_hidden("YAML", &err.to_string());
    let json = format!("{{\"name\": \"r\", \"vsphere\": {{\"password\": \"{PASSWORD}\\q\"}}}}");
    let err = ClusterSpec::from_json(&json).unwrap_err();
    assert_hidden("JSON", &err.to_string());
}
