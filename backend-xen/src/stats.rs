//! Counters: hypercalls by kind, refusals by errno class, pins by level, hook calls.

use crate::error::Errno;
use crate::hypercall::MMUEXT_OPS;
use crate::types::PinnedCounts;
use core::fmt;
use paravirt_core::HookKind;

/// Hypervisor-side counters (kept under the hypervisor lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HvStats {
    pub(crate) mmu_update: u64,
    pub(crate) mmuext: [u64; MMUEXT_OPS],
    pub(crate) update_va_mapping: u64,
    pub(crate) refusals: [u64; Errno::COUNT],
    pub(crate) pins: [u64; 3],
    pub(crate) validations: u64,
    pub(crate) devalidations: u64,
    pub(crate) max_pinned: u64,
    pub(crate) ptwr: u64,
}

impl HvStats {
    pub(crate) const fn new() -> Self {
        HvStats {
            mmu_update: 0,
            mmuext: [0; MMUEXT_OPS],
            update_va_mapping: 0,
            refusals: [0; Errno::COUNT],
            pins: [0; 3],
            validations: 0,
            devalidations: 0,
            max_pinned: 0,
            ptwr: 0,
        }
    }
}

/// Guest-side counters (kept under the guest lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuestStats {
    pub(crate) hooks: [u64; HookKind::COUNT],
    pub(crate) direct_writes: u64,
    pub(crate) read_only: u64,
    pub(crate) max_read_only: u64,
}

impl GuestStats {
    pub(crate) const fn new() -> Self {
        GuestStats { hooks: [0; HookKind::COUNT], direct_writes: 0, read_only: 0, max_read_only: 0 }
    }
}

/// A snapshot of everything the model counts, hypervisor and guest side.
///
/// Its [`Display`](fmt::Display) is what [`Inspect::write_stats`](paravirt_core::Inspect::write_stats)
/// prints: pins by level, read-only pages, hypercalls by kind, refusals by errno class, hook
/// calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenStats {
    /// `mmu_update` requests (each `MMU_NORMAL_PT_UPDATE`), refused ones included.
    pub mmu_update: u64,
    /// `mmuext_op` operations by command number (`MMUEXT_PIN_L1_TABLE` = 0 ... `INVLPG_LOCAL` = 7).
    pub mmuext: [u64; MMUEXT_OPS],
    /// `update_va_mapping` calls.
    pub update_va_mapping: u64,
    /// Refused hypercalls and guest-side protocol errors (`EBUSY`) by errno class
    /// ([`Errno::index`]).
    pub refusals: [u64; Errno::COUNT],
    /// Pins made so far, by level (L1, L2, L3).
    pub pins: [u64; 3],
    /// Tables validated (type count rose from zero).
    pub validations: u64,
    /// Tables devalidated (type count fell to zero).
    pub devalidations: u64,
    /// Most tables pinned at once.
    pub max_pinned: u64,
    /// Direct stores into a validated L1 the hypervisor emulated (`ptwr_emulated_update`).
    pub ptwr: u64,
    /// Tables pinned now.
    pub pinned: PinnedCounts,
    /// Hook calls, indexed by [`HookKind`] (`kind as usize`); see [`calls`](Self::calls).
    pub hooks: [u64; HookKind::COUNT],
    /// Entry writes made directly (the table was not pinned).
    pub direct_writes: u64,
    /// Pages the guest made read-only that still are.
    pub read_only: u64,
    /// Most pages read-only at once.
    pub max_read_only: u64,
}

impl XenStats {
    /// All hypercalls: `mmu_update` requests, `mmuext_op` operations, `update_va_mapping`s.
    pub fn hypercalls(&self) -> u64 {
        self.mmu_update + self.mmuext.iter().sum::<u64>() + self.update_va_mapping
    }

    /// All refusals.
    pub fn refused(&self) -> u64 {
        self.refusals.iter().sum()
    }

    /// Calls of hook `kind`.
    pub fn calls(&self, kind: HookKind) -> u64 {
        self.hooks[kind as usize]
    }
}

/// One line per group, each prefixed `xen:`.
impl fmt::Display for XenStats {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "xen: pinned now l1 {} l2 {} l3 {} (peak {}); pins made l1 {} l2 {} l3 {}; read-only pages {} (peak {})",
            self.pinned.l1,
            self.pinned.l2,
            self.pinned.l3,
            self.max_pinned,
            self.pins[0],
            self.pins[1],
            self.pins[2],
            self.read_only,
            self.max_read_only
        )?;
        write!(
            out,
            "xen: hypercalls {}: mmu_update {}, update_va_mapping {}, mmuext_op",
            self.hypercalls(),
            self.mmu_update,
            self.update_va_mapping
        )?;
        for (i, name) in crate::hypercall::MMUEXT_NAMES.iter().enumerate() {
            write!(out, " {}={}", name, self.mmuext[i])?;
        }
        writeln!(out)?;
        write!(out, "xen: refusals {}:", self.refused())?;
        for e in Errno::ALL {
            write!(out, " {}={}", e.name(), self.refusals[e.index()])?;
        }
        writeln!(
            out,
            "; tables validated {}, devalidated {}; entry writes direct {}, emulated (ptwr) {}",
            self.validations, self.devalidations, self.direct_writes, self.ptwr
        )?;
        write!(out, "xen: hooks:")?;
        for kind in HookKind::ALL {
            let n = self.calls(kind);
            if n != 0 {
                write!(out, " {kind}={n}")?;
            }
        }
        writeln!(out)
    }
}
