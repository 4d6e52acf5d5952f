//! Integration tests of triad-vsphere against vcsim (started by `scripts/test`, which
//! exports `TRIAD_VCSIM_URL`, `TRIAD_VCSIM_CA`, `TRIAD_VCSIM_USER` and
//! `TRIAD_VCSIM_PASSWORD`).

mod bad_input;
mod common;
mod conformance;
mod e2e;
mod proxy;
