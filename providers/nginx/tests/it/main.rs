//! triad-nginx's one integration test binary. The tests marked `#[ignore]` run a
//! real nginx (Debian's, with the stream module) on loopback — its path comes from
//! `TRIAD_NGINX_BIN`, which `scripts/test` exports after installing it — in front of
//! three tiny backend servers on 127.0.0.11-13.

mod conformance;
mod day2;
mod docs;
mod e2e;
mod host;
mod node_mode;
mod support;
