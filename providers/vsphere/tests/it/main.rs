//! Integration tests of triad-vsphere against vcsim (started by `scripts/test`, which
//! exports `TRIAD_VCSIM_URL`, `TRIAD_VCSIM_CA`, `TRIAD_VCSIM_USER` and
//! `TRIAD_VCSIM_PASSWORD`).

mod bad_input;
mod common;
mod conformance;
mod day2;
mod e2e;
mod nginx_node;
mod proxy;

// A VM as the tests read it back with a client of their own; at the crate root so
// that every test module may read its fields (the macro makes no `pub` struct).
vim_rs::vim_retrievable!(
    struct Vm: VirtualMachine {
        name = "name",
        cpus = "config.hardware.num_cpu"?,
        memory = "config.hardware.memory_mb"?,
        extra = "config.extra_config",
        custom = "custom_value",
        power = "runtime.power_state",
        pool = "resource_pool"?,
        uuid = "config.instance_uuid"?,
    }
);
