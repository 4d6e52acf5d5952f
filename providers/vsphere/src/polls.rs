//! How the provider's waits poll, and the vCenter latencies they expect.
//!
//! Every wait starts with a short pause and doubles up to the poll interval
//! ([`VsphereProvider::with_poll_interval`](crate::VsphereProvider::with_poll_interval));
//! the clone, the power-on and the boot also expect vCenter's typical latency
//! ([`Poll::expecting`]), so a wait of a minute costs a handful of calls instead of
//! one every interval. vcsim finishes every task at once and reports the guest IP
//! it is given in `extraConfig` at once, so against it nothing is expected (the
//! waits would only sleep), as the GCE provider does for its fake.
//!
//! VMware publishes no typical durations; the values below are estimates for a
//! vCenter 7/8 cluster on shared storage, to be corrected from measurements:
//! - **Clone** (`CloneVM_Task`, a full clone of a 20–40 GB thin-provisioned cloud
//!   image template): the datastore copies the disks. With VAAI's XCOPY offload
//!   (VMFS on a SAN, vSAN) that is typically half a minute to two minutes, without
//!   it (NFS without the VAAI plug-in, a copy through the host) several minutes.
//!   Expected: 60 s.
//! - **Power-on** (`PowerOnVM_Task`): DRS picks a host and the VM starts; a few
//!   seconds. Expected: 5 s.
//! - **Boot** (powered on until VMware Tools reports an IP): the guest boots, its
//!   network comes up (DHCP or cloud-init's network stage) and open-vm-tools reports
//!   the address; half a minute to a minute for a cloud image. Expected: 45 s.
//!
//! An estimate off by a factor of two costs a few calls more, never correctness:
//! after the expected moment the pause starts short again (see [`triad_core::wait`]).

use std::time::Duration;

use triad_core::wait::Poll;

/// Expected duration of a template clone (see the module docs).
const CLONE: Duration = Duration::from_secs(60);
/// Expected duration of a power-on task.
const POWER_ON: Duration = Duration::from_secs(5);
/// Expected time from power-on until VMware Tools reports the guest's IP.
const BOOT: Duration = Duration::from_secs(45);

/// The polls of the provider's waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Polls {
    /// A short task (reconfigure, power off, destroy) or one started elsewhere:
    /// from 100 ms, nothing expected.
    pub(crate) task: Poll,
    /// The clone task.
    pub(crate) clone: Poll,
    /// The power-on task.
    pub(crate) power_on: Poll,
    /// Nodes until they run with an IP: from a quarter of the interval.
    pub(crate) boot: Poll,
}

impl Polls {
    /// Polls with pauses up to `interval`, expecting vCenter's latencies when
    /// `vcenter` (not vcsim).
    pub(crate) fn new(interval: Duration, vcenter: bool) -> Self {
        let expect = |poll: Poll, typical: Duration| {
            poll.expecting(if vcenter { typical } else { Duration::ZERO })
        };
        let task = Poll::new(Duration::from_millis(100).min(interval), interval);
        Self {
            task,
            clone: expect(task, CLONE),
            power_on: expect(task, POWER_ON),
            boot: expect(Poll::new(interval / 4, interval), BOOT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_expect_vcenter_latencies_only_from_vcenter() {
        let interval = Duration::from_secs(2);
        let vcenter = Polls::new(interval, true);
        assert_eq!(vcenter.clone.expected, CLONE);
        assert_eq!(vcenter.power_on.expected, POWER_ON);
        assert_eq!(vcenter.boot.expected, BOOT);
        assert_eq!(vcenter.task.expected, Duration::ZERO);
        assert_eq!(
            (vcenter.boot.initial, vcenter.boot.max),
            (Duration::from_millis(500), interval)
        );
        assert_eq!(
            (vcenter.clone.initial, vcenter.clone.max),
            (Duration::from_millis(100), interval)
        );
        let vcsim = Polls::new(interval, false);
        for poll in [vcsim.task, vcsim.clone, vcsim.power_on, vcsim.boot] {
            assert_eq!(poll.expected, Duration::ZERO);
        }
        assert_eq!(vcsim.boot.initial, vcenter.boot.initial);
    }
}
