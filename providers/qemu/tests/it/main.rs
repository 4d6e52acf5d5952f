//! Integration tests of triad-qemu. The `#[ignore]`d ones boot real QEMU VMs from the
//! image `testing/qemu/build-image` makes; `scripts/test` builds it and exports
//! `TRIAD_QEMU_IMAGE_DIR` (the directory with `disk.qcow2`, `vmlinuz`, `initrd.img`).
//! The whole lab (three nodes, an NGINX balancer VM, a BIND record, traffic through
//! the proxy and the balancer) is proven by scripts/test's `example local` step.

mod bad_input;
mod common;
mod conformance;
mod lifecycle;
