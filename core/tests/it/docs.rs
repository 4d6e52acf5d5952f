//! `docs/spec.md` stays true: every spec in it loads and validates, and its TOML,
//! YAML and JSON versions of the short spec are the same spec.

use triad_core::spec::ClusterSpec;

use crate::common::spec_with;

const SPEC_MD: &str = include_str!("../../../docs/spec.md");

/// The fenced code blocks of `SPEC_MD` as (info string, body).
fn blocks() -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut current: Option<(&str, String)> = None;
    for line in SPEC_MD.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim(), String::new())),
            (Some(_), Some("")) => out.push(current.take().expect("open block")),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "docs/spec.md has an unclosed code block");
    out
}

#[test]
fn every_spec_in_the_docs_loads_and_validates() {
    let mut specs = Vec::new();
    for (info, body) in blocks() {
        let spec = match info {
            "toml" => ClusterSpec::from_toml(&body),
            "yaml" => ClusterSpec::from_yaml(&body),
            "json" => ClusterSpec::from_json(&body),
            _ => continue,
        }
        .unwrap_or_else(|e| panic!("docs/spec.md {info} block does not load: {e}\n{body}"));
        spec.clone()
            .validate()
            .unwrap_or_else(|e| panic!("docs/spec.md {info} block is invalid: {e}\n{body}"));
        specs.push((info, spec));
    }
    let formats: Vec<&str> = specs.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        formats,
        ["toml", "toml", "yaml", "json"],
        "the blocks the docs promise"
    );

    // The complete example sets every section.
    let full = &specs[0].1;
    assert!(full.proxy.is_some() && full.sim.is_some() && !full.labels.is_empty());
    assert!(full.nodes.disk_gib.is_some() && full.load_balancer.certificate.is_some());

    // The short one is the same spec in every format.
    assert_eq!(specs[1].1, specs[2].1, "TOML and YAML differ");
    assert_eq!(specs[1].1, specs[3].1, "TOML and JSON differ");
}

#[test]
fn every_fragment_in_the_docs_fits_a_valid_spec() {
    let mut n = 0;
    for (info, body) in blocks() {
        if info == "toml fragment" {
            spec_with(&body)
                .validate()
                .unwrap_or_else(|e| panic!("docs/spec.md fragment is invalid: {e}\n{body}"));
            n += 1;
        }
    }
    assert_eq!(n, 3, "the [labels], [sim] and [providers] fragments");
}

#[test]
fn the_docs_show_the_real_error_text() {
    let err = spec_with("[nodes]\ncount = 4\n[dns]\nhostname = \"rancher.example.org\"")
        .validate()
        .unwrap_err();
    let shown = blocks()
        .into_iter()
        .find(|(info, _)| *info == "text")
        .expect("docs/spec.md shows a validation error")
        .1;
    assert_eq!(shown.trim_end(), err.to_string());
}

#[test]
fn the_docs_name_every_field() {
    let (_, full) = blocks()
        .into_iter()
        .find(|(info, _)| *info == "toml")
        .expect("the complete example");
    let full = ClusterSpec::from_toml(&full).unwrap();
    // Every key the complete example serializes to has a row `| `key` |` in a table
    // (the provider sections share one row); `[labels]` keys are the user's own.
    let value = serde_json::to_value(&full).unwrap();
    let mut missing = Vec::new();
    for (section, v) in value.as_object().unwrap() {
        if !SPEC_MD.contains(&format!("| `{section}` |"))
            && !SPEC_MD.contains(&format!("`{section}`, `"))
        {
            missing.push(section.clone());
        }
        if section == "labels" {
            continue;
        }
        for field in v.as_object().map(|o| o.keys()).into_iter().flatten() {
            if !SPEC_MD.contains(&format!("| `{field}` |")) {
                missing.push(format!("{section}.{field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/spec.md does not document: {missing:?}"
    );
}
