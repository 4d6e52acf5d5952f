//! triad-core's integration tests: one test binary, one module per subject.
//!
//! - [`validation`]: every spec rule, each bad spec naming its field and a fix.
//! - [`parsing`]: TOML, YAML and JSON loading, unknown fields, `from_path`.
//! - [`secrets`]: proxy passwords never reach `Debug`, error text or JSON.

mod common;
mod parsing;
mod secrets;
mod validation;
