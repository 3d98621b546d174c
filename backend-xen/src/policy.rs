//! What the guest side does when it catches a protocol violation: panic like Linux's
//! `BUG()` on a failed hypercall, or record it and carry on. Never silent.

use crate::error::XenError;

/// The reaction to a refused hypercall or a broken hook protocol inside a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Panic with the operation and the rule broken (Linux `BUG()`s on a failed
    /// `mmu_update` / `mmuext_op` from its Xen hooks).
    #[default]
    Panic,
    /// Record the violation (the first [`MAX_VIOLATIONS`] in full, all of them counted) and
    /// continue; the refused update is not made.
    Record,
}

/// Violations recorded in full; later ones are only counted.
pub const MAX_VIOLATIONS: usize = 16;

/// A protocol violation caught inside a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The hook (or hypercall made from it) that failed, e.g. `"set_pmd"`.
    pub op: &'static str,
    /// The refusal or protocol error.
    pub error: XenError,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.op, self.error)
    }
}

/// The first [`MAX_VIOLATIONS`] violations and the total count.
pub(crate) struct ViolationLog {
    entries: [Option<Violation>; MAX_VIOLATIONS],
    total: usize,
}

impl ViolationLog {
    pub(crate) const fn new() -> Self {
        ViolationLog { entries: [None; MAX_VIOLATIONS], total: 0 }
    }

    pub(crate) fn push(&mut self, v: Violation) {
        if self.total < MAX_VIOLATIONS {
            self.entries[self.total] = Some(v);
        }
        self.total += 1;
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn get(&self, i: usize) -> Option<Violation> {
        self.entries.get(i).copied().flatten()
    }

    pub(crate) fn clear(&mut self) {
        *self = ViolationLog::new();
    }
}
