//! The backend value: the frame table it works on, the guest's physical memory, the
//! violation policy, and the queries tests and the demo use.

use crate::guest::{GuestState, ANNOUNCED, PINNED, RO};
use crate::hypervisor::HvState;
use crate::policy::{Policy, Violation, MAX_VIOLATIONS};
use crate::stats::XenStats;
use crate::trace::TraceEntry;
use crate::types::{PageInfo, PageType, PinnedCounts};
use core::marker::PhantomData;
use i386_mm::{PagingMode, PhysMem};
use paravirt_core::Pfn;
use spin::Mutex;

/// Frames the default [`FrameTable`] covers: 16384 frames, 64 MiB of RAM.
pub const MAX_FRAMES: usize = 16384;

/// The model's fixed-capacity state, indexed by frame number: the hypervisor's frame table
/// (Xen's `frame_table` of `struct page_info`: type, type count, pin) and the guest's
/// per-page flags (Linux's `PG_pinned` plus "announced" and "made read-only"), each behind
/// its own `spin::Mutex` (the guest lock is always taken first).
///
/// It holds `N` frames; a frame at or beyond `N` is refused with
/// [`XenError::Capacity`](crate::XenError::Capacity). About `17 * N` bytes (272 KiB for the
/// default 64 MiB), so put it in a `static` (`FrameTable::new` is `const`) rather than on a
/// small kernel stack.
pub struct FrameTable<const N: usize = MAX_FRAMES> {
    pub(crate) hv: Mutex<HvState<N>>,
    pub(crate) guest: Mutex<GuestState<N>>,
}

impl<const N: usize> FrameTable<N> {
    /// An empty frame table: no frame typed, pinned, announced or read-only.
    pub const fn new() -> Self {
        FrameTable { hv: Mutex::new(HvState::new()), guest: Mutex::new(GuestState::new()) }
    }
}

impl<const N: usize> Default for FrameTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The Xen PV MMU backend: Linux's Xen MMU hooks (guest side) driving a model of the
/// hypervisor's page-type rules (hypervisor side), over the guest's physical memory `P`, in
/// paging mode `M`, with a frame table of `N` frames.
///
/// Hand `&Xen` or `Xen` itself to `i386_mm::KernelMm` as its backend. The hypercalls
/// ([`mmu_update`](Self::mmu_update), [`mmuext_op`](Self::mmuext_op),
/// [`update_va_mapping`](Self::update_va_mapping)) are public too, so a test can drive the
/// hypervisor directly.
pub struct Xen<'t, M: PagingMode, P: PhysMem, const N: usize = MAX_FRAMES> {
    pub(crate) table: &'t FrameTable<N>,
    pub(crate) mem: P,
    pub(crate) policy: Policy,
    pub(crate) invlpg: Option<fn(u32)>,
    _mode: PhantomData<M>,
}

impl<'t, M: PagingMode, P: PhysMem, const N: usize> Xen<'t, M, P, N> {
    /// A backend working on `table` over `mem`, reacting to violations with `policy`.
    pub const fn new(table: &'t FrameTable<N>, mem: P, policy: Policy) -> Self {
        Xen { table, mem, policy, invlpg: None, _mode: PhantomData }
    }

    /// Gives the model the vCPU's `invlpg`: run after an `update_va_mapping` with
    /// `UVMF_INVLPG` and for `MMUEXT_INVLPG_LOCAL`, so a CPU with a real TLB (the kernel demo)
    /// drops the old linear-map translation of a page made read-only or writable.
    pub const fn with_invlpg(mut self, invlpg: fn(u32)) -> Self {
        self.invlpg = Some(invlpg);
        self
    }

    /// The violation policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The guest's physical memory.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// The hypervisor's view of `pfn` (type, type count, pin).
    pub fn page_info(&self, pfn: Pfn) -> PageInfo {
        self.table.hv.lock().info(pfn)
    }

    /// Whether the hypervisor holds `pfn` pinned.
    pub fn is_pinned(&self, pfn: Pfn) -> bool {
        self.page_info(pfn).pinned
    }

    /// Whether the guest made `pfn` read-only in its linear map (and has not made it writable
    /// again).
    pub fn is_read_only(&self, pfn: Pfn) -> bool {
        self.table.guest.lock().has(pfn, RO)
    }

    /// Whether `pfn` was announced with `alloc_pt` / `alloc_pd` and not released since.
    pub fn is_announced(&self, pfn: Pfn) -> bool {
        self.table.guest.lock().has(pfn, ANNOUNCED)
    }

    /// Whether the guest believes `pfn` is pinned (Linux's `PagePinned`).
    pub fn guest_pinned(&self, pfn: Pfn) -> bool {
        self.table.guest.lock().has(pfn, PINNED)
    }

    /// Pinned tables by level.
    pub fn pinned_tables(&self) -> PinnedCounts {
        self.table.hv.lock().pinned_counts()
    }

    /// Pages the guest made read-only that still are.
    pub fn read_only_pages(&self) -> usize {
        self.table.guest.lock().stats.read_only as usize
    }

    /// Frames with any type at all, page-table or writable (zero once every validated table is
    /// gone, since writable types are counted from the RW entries of validated L1s).
    pub fn typed_frames(&self) -> usize {
        self.table.hv.lock().frames.iter().filter(|f| f.info.count > 0 || f.info.ty != PageType::None).count()
    }

    /// The root installed with `MMUEXT_NEW_BASEPTR`, if any.
    pub fn base(&self) -> Option<Pfn> {
        self.table.hv.lock().base
    }

    /// The domain's initial page table (where the linear map lives), once known.
    pub fn pt_base(&self) -> Option<Pfn> {
        self.table.hv.lock().pt_base
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> XenStats {
        let g = self.table.guest.lock();
        let hv = self.table.hv.lock();
        XenStats {
            mmu_update: hv.stats.mmu_update,
            mmuext: hv.stats.mmuext,
            update_va_mapping: hv.stats.update_va_mapping,
            refusals: {
                // Protocol errors the guest side caught itself count with the refusals.
                let mut r = hv.stats.refusals;
                for (r, g) in r.iter_mut().zip(g.guest_errors.iter()) {
                    *r += g;
                }
                r
            },
            pins: hv.stats.pins,
            validations: hv.stats.validations,
            devalidations: hv.stats.devalidations,
            max_pinned: hv.stats.max_pinned,
            pinned: hv.pinned_counts(),
            hooks: g.stats.hooks,
            direct_writes: g.stats.direct_writes,
            read_only: g.stats.read_only,
            max_read_only: g.stats.max_read_only,
        }
    }

    /// The `i`th violation recorded (the first [`MAX_VIOLATIONS`] are kept in full).
    pub fn violation(&self, i: usize) -> Option<Violation> {
        self.table.guest.lock().log.get(i)
    }

    /// The violations recorded in full, oldest first, copied into `out`; returns the total
    /// count (which may exceed [`MAX_VIOLATIONS`]).
    pub fn violations_into(&self, out: &mut [Option<Violation>]) -> usize {
        let g = self.table.guest.lock();
        for (i, o) in out.iter_mut().enumerate().take(MAX_VIOLATIONS) {
            *o = g.log.get(i);
        }
        g.log.total()
    }

    /// Forgets the violations recorded so far.
    pub fn clear_violations(&self) {
        self.table.guest.lock().log.clear();
    }

    /// The most recent hypercalls (at most [`TRACE_LEN`](crate::TRACE_LEN)), oldest first,
    /// copied into `out`; returns how many the trace holds.
    pub fn trace(&self, out: &mut [TraceEntry]) -> usize {
        self.table.hv.lock().trace.copy_to(out)
    }

    /// Empties the hypercall trace.
    pub fn clear_trace(&self) {
        self.table.hv.lock().trace.clear();
    }
}
