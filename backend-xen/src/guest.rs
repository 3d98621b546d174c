//! The guest kernel's per-page state: the bits of Linux's `struct page` its Xen code uses
//! (`PG_pinned`, plus "announced" and "made read-only"), and the guest-side counters.
//!
//! Plain data under the guest lock of [`Xen`](crate::Xen); it knows nothing of the
//! hypervisor.

use crate::error::{Errno, XenError};
use crate::stats::GuestStats;
use paravirt_core::Pfn;

/// Guest flag: announced with `alloc_pt`.
pub(crate) const ANNOUNCED_PT: u8 = 1;
/// Guest flag: announced with `alloc_pd` or `alloc_pd_clone`.
pub(crate) const ANNOUNCED_PD: u8 = 2;
/// Either announcement.
pub(crate) const ANNOUNCED: u8 = ANNOUNCED_PT | ANNOUNCED_PD;
/// Guest flag: part of a pinned tree (Linux's `PG_pinned`): set on every page of a tree the
/// guest pinned, whether or not the page was pinned by a hypercall of its own. Entry writes
/// into such a page go through `mmu_update`.
pub(crate) const PINNED: u8 = 4;
/// Guest flag: made read-only in the linear map by the guest.
pub(crate) const RO: u8 = 8;
/// Guest flag: pinned by the guest's own `MMUEXT_PIN_*` (a root, or a page table: Linux pins
/// PTE pages with split page-table locks; it never pins a pmd), so it must be unpinned.
pub(crate) const HV_PIN: u8 = 16;

/// The guest kernel's per-page state, indexed by frame number.
pub(crate) struct GuestState<const N: usize> {
    flags: [u8; N],
    /// The kernel's own root (`init_mm.pgd`), learnt from the first `write_cr3`.
    pub(crate) kernel_root: Option<Pfn>,
    pub(crate) stats: GuestStats,
    /// Protocol errors the guest side caught itself, by errno class.
    pub(crate) guest_errors: [u64; Errno::COUNT],
}

impl<const N: usize> GuestState<N> {
    pub(crate) const fn new() -> Self {
        GuestState { flags: [0; N], kernel_root: None, stats: GuestStats::new(), guest_errors: [0; Errno::COUNT] }
    }

    /// Whether frame `pfn` has any of the flags in `bits`.
    pub(crate) fn has(&self, pfn: Pfn, bits: u8) -> bool {
        self.flags.get(pfn.as_usize()).is_some_and(|f| f & bits != 0)
    }

    /// The raw flags of frame index `i`.
    pub(crate) fn raw(&self, i: usize) -> u8 {
        self.flags[i]
    }

    /// Sets `bits` on frame `pfn`.
    ///
    /// # Errors
    /// [`XenError::Capacity`] for a frame beyond the table.
    pub(crate) fn set(&mut self, pfn: Pfn, bits: u8) -> Result<(), XenError> {
        let f = self.flags.get_mut(pfn.as_usize()).ok_or(XenError::Capacity { pfn })?;
        if bits & RO != 0 && *f & RO == 0 {
            self.stats.read_only += 1;
            self.stats.max_read_only = self.stats.max_read_only.max(self.stats.read_only);
        }
        *f |= bits;
        Ok(())
    }

    /// Clears `bits` on frame `pfn` (nothing beyond the table).
    pub(crate) fn clear(&mut self, pfn: Pfn, bits: u8) {
        if let Some(f) = self.flags.get_mut(pfn.as_usize()) {
            if bits & RO != 0 && *f & RO != 0 {
                self.stats.read_only -= 1;
            }
            *f &= !bits;
        }
    }
}
