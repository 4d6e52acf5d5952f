//! triad-core's integration tests: one test binary, one module per subject.
//!
//! - [`choice`]: which provider makes which part, and the mixes refused.
//! - [`validation`]: every spec rule, each bad spec naming its field and a fix.
//! - [`parsing`]: TOML, YAML and JSON loading, unknown fields, `from_path`.
//! - [`docs`]: the specs and error text in `docs/spec.md` are real.
//! - [`kubernetes`]: `[kubernetes]` validation, install-mode user data run by a
//!   shell harness, NO_PROXY entry by entry, the hand-over read back by parsers.
//! - [`secrets`]: proxy passwords never reach `Debug`, error text or JSON.

mod choice;
mod common;
mod docs;
mod kubernetes;
mod parsing;
mod secrets;
mod validation;
