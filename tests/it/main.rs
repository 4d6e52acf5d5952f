//! The orchestrator end to end on the simulated cloud, in virtual time.
//! One test binary for the facade crate; each module is one concern.

mod common;
mod crash;
mod day2;
mod e2e;
mod kubernetes;
mod secrets;
