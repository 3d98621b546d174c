//! The guest kernel's per-page state: the bits of Linux's `struct page` its Xen code uses
//! (`PG_pinned`, plus "announced" and "made read-only"), and the guest-side counters.
//!
//! Plain data under the guest lock of [`Xen`](crate::Xen); it knows nothing of the
//! hypervisor. The flags live in frames of the domain's memory, a record per frame of RAM
//! reserved by [`Xen::init`](crate::Xen::init) (as Linux allocates `mem_map` for all of RAM
//! at boot), so a hook never allocates and every lookup is O(1).

use crate::error::{Errno, XenError};
use crate::stats::GuestStats;
use i386_paging::{FrameMap, NoFrame, PhysMem, Record};
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

/// A frame's guest flags as a [`FrameMap`] record (`[flags, 0, 0, 0]`).
#[derive(Clone, Copy)]
pub(crate) struct Flags(u8);

impl Record for Flags {
    const EMPTY: Flags = Flags(0);

    fn to_words(self) -> [u32; 4] {
        [u32::from(self.0), 0, 0, 0]
    }

    fn from_words(w: [u32; 4]) -> Flags {
        Flags(w[0] as u8)
    }
}

/// The guest kernel's per-page state, by frame number.
pub(crate) struct GuestState {
    flags: FrameMap<Flags>,
    /// Frames with a record, `[0, covered)` (zero before `reserve` and after `free`).
    covered: Pfn,
    /// The kernel's own root (`init_mm.pgd`), learnt from the first `write_cr3`.
    pub(crate) kernel_root: Option<Pfn>,
    pub(crate) stats: GuestStats,
    /// Protocol errors the guest side caught itself, by errno class.
    pub(crate) guest_errors: [u64; Errno::COUNT],
}

impl GuestState {
    pub(crate) const fn new() -> Self {
        GuestState {
            flags: FrameMap::new(),
            covered: Pfn::new(0),
            kernel_root: None,
            stats: GuestStats::new(),
            guest_errors: [0; Errno::COUNT],
        }
    }

    /// Reserves the flags of every frame of RAM, `[0, mem.max_pfn())`, in frames of `mem`.
    ///
    /// # Errors
    /// [`NoFrame`] if `mem` cannot supply them or they are reserved already; every frame taken
    /// is given back.
    pub(crate) fn reserve<P: PhysMem + ?Sized>(&mut self, mem: &P) -> Result<(), NoFrame> {
        if self.covered != Pfn::new(0) {
            return Err(NoFrame);
        }
        self.flags.reserve(mem, mem.max_pfn())?;
        self.covered = mem.max_pfn();
        Ok(())
    }

    /// Gives the flags' frames back (every flag forgotten).
    pub(crate) fn free<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        self.flags.clear(mem);
        self.covered = Pfn::new(0);
    }

    /// Whether the flags are reserved.
    pub(crate) fn is_reserved(&self) -> bool {
        self.covered != Pfn::new(0)
    }

    /// Frames of memory the flags take.
    pub(crate) fn frames<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        self.flags.frames(mem)
    }

    /// Whether frame `pfn` has any of the flags in `bits`. O(1).
    pub(crate) fn has<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn, bits: u8) -> bool {
        self.raw(mem, pfn) & bits != 0
    }

    /// The raw flags of frame `pfn` (0 beyond the records). O(1).
    pub(crate) fn raw<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> u8 {
        self.flags.get(mem, pfn).0
    }

    /// Every frame with a flag set, with its flags, in pfn order. O(frames of RAM).
    pub(crate) fn flagged<'a, P: PhysMem + ?Sized>(&'a self, mem: &'a P) -> impl Iterator<Item = (Pfn, u8)> + 'a {
        self.flags.iter(mem).map(|(pfn, f)| (pfn, f.0))
    }

    /// Sets `bits` on frame `pfn`. O(1).
    ///
    /// # Errors
    /// [`XenError::Capacity`] for a frame without a record (the flags are not reserved, or
    /// `pfn` is beyond RAM).
    pub(crate) fn set<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, bits: u8) -> Result<(), XenError> {
        if pfn >= self.covered {
            return Err(XenError::Capacity { pfn });
        }
        let mut was = 0;
        // `pfn` has a reserved record: the change allocates nothing and cannot fail.
        let _ = self.flags.update(mem, pfn, |f| {
            was = f.0;
            f.0 |= bits;
        });
        if bits & RO != 0 && was & RO == 0 {
            self.stats.read_only += 1;
            self.stats.max_read_only = self.stats.max_read_only.max(self.stats.read_only);
        }
        Ok(())
    }

    /// Clears `bits` on frame `pfn` (nothing for a frame without a record). O(1).
    pub(crate) fn clear<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, bits: u8) {
        if pfn >= self.covered {
            return;
        }
        let mut was = 0;
        let _ = self.flags.update(mem, pfn, |f| {
            was = f.0;
            f.0 &= !bits;
        });
        if bits & RO != 0 && was & RO != 0 {
            self.stats.read_only -= 1;
        }
    }
}
