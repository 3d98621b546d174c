//! The hypervisor: the domain's frame table and the hypercalls that are the only way to change
//! it (`do_mmu_update`, `do_mmuext_op`, `do_update_va_mapping` in `xen/arch/x86/mm.c`).
//!
//! [`Hypervisor`] owns its state and knows nothing of the guest: the guest side
//! ([`Xen`](crate::Xen)) holds a reference to it and calls in, never the other way round. Each
//! call takes the hypervisor lock, is counted, traced, and either succeeds or is refused with a
//! typed [`XenError`] naming the frame and the rule.

use crate::error::XenError;
use crate::frames::HvState;
use crate::hypercall::{Hypercall, MmuUpdate, MmuextOp, UvmFlags, MMU_NORMAL_PT_UPDATE};
use crate::table::{hv_store, root_type};
use crate::trace::TraceEntry;
use crate::types::{PageInfo, PageType, PinnedCounts};
use core::marker::PhantomData;
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::sync::Lock;
use paravirt_core::{Pfn, Pte};

/// Frames the default frame table covers: 16384 frames, 64 MiB of RAM.
pub const MAX_FRAMES: usize = 16384;

/// The Xen hypervisor model for one PV domain in paging mode `M`, over the domain's physical
/// memory `P`, with a frame table of `N` frames.
///
/// It owns Xen's frame table (`frame_table` of `struct page_info`: type, type count, pin), the
/// vCPU's base pointer and the domain's initial page table, and offers the hypercalls
/// ([`mmu_update`](Self::mmu_update), [`mmuext_op`](Self::mmuext_op),
/// [`update_va_mapping`](Self::update_va_mapping)) plus read-only queries. It never calls
/// the guest. A frame at or beyond `N` is refused with [`XenError::Capacity`].
///
/// The frame table takes 16 bytes per frame (about 260 KiB for the default 64 MiB), so a
/// kernel puts the hypervisor in a `static` ([`new`](Self::new) is `const`) rather than on its
/// stack.
pub struct Hypervisor<M: PagingMode, P: PhysMem, const N: usize = MAX_FRAMES> {
    state: Lock<HvState<N>>,
    mem: P,
    invlpg: Option<fn(u32)>,
    _mode: PhantomData<fn() -> M>,
}

impl<M: PagingMode, P: PhysMem, const N: usize> Hypervisor<M, P, N> {
    paravirt_core::const_unless_loom! {
        /// A hypervisor over the domain's memory `mem`: nothing typed or pinned, no base
        /// pointer, no initial page table yet. `const` (for a kernel's `static`) except in loom
        /// builds.
        pub fn new(mem: P) -> Self {
            Hypervisor { state: Lock::new(HvState::new()), mem, invlpg: None, _mode: PhantomData }
        }
    }

    /// Gives the model the vCPU's `invlpg` (by virtual address): run after an
    /// `update_va_mapping` with `UVMF_INVLPG` and for `MMUEXT_INVLPG_LOCAL`, so a CPU with a
    /// real TLB (the kernel demo) drops the old linear-map translation of a page made
    /// read-only or writable.
    pub const fn with_invlpg(mut self, invlpg: fn(u32)) -> Self {
        self.invlpg = Some(invlpg);
        self
    }

    /// The domain's physical memory.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// The root level in this paging mode (L2 two-level, L3 PAE).
    pub fn root_level(&self) -> PageType {
        root_type::<M>()
    }

    /// Runs `f` on the state, under the hypervisor lock (the guest side's lock, if it holds
    /// it, is always taken first).
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut HvState<N>) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// `HYPERVISOR_mmu_update(req, count, &success_count)`: applies the requests in order,
    /// stopping at the first refusal. `success_count` is set to the number applied.
    ///
    /// `MMU_NORMAL_PT_UPDATE` on a validated table re-validates the new entry against the
    /// table's level (taking its type references), stores it (one store of the entry's width),
    /// then drops the old entry's references. On a frame that is not a validated table it is a
    /// plain store, as in Xen (the frame is an ordinary page).
    ///
    /// # Errors
    /// The first refusal: [`XenError::BadCommand`] for a command other than
    /// `MMU_NORMAL_PT_UPDATE`; [`XenError::ForeignFrame`] / [`XenError::Capacity`] for an entry
    /// outside the domain or the frame table; for a validated table, the rule its level's
    /// entry breaks ([`XenError::WritablePageTable`], [`XenError::MappedWritable`],
    /// [`XenError::TypeConflict`], [`XenError::LargePage`], [`XenError::ReservedBits`],
    /// [`XenError::BadIndex`]...).
    #[doc(alias = "do_mmu_update")]
    pub fn mmu_update(&self, reqs: &[MmuUpdate], success_count: &mut usize) -> Result<(), XenError> {
        *success_count = 0;
        for r in reqs {
            self.mmu_update_one(*r)?;
            *success_count += 1;
        }
        Ok(())
    }

    /// One `mmu_update` request (what each guest-side entry write into a pinned table issues).
    pub(crate) fn mmu_update_one(&self, r: MmuUpdate) -> Result<(), XenError> {
        let mut hv = self.state.lock();
        hv.stats.mmu_update += 1;
        let res = (|| {
            let cmd = r.cmd(M::ENTRY_SIZE);
            if cmd != MMU_NORMAL_PT_UPDATE {
                return Err(XenError::BadCommand { cmd: cmd as u32 });
            }
            let pa = r.entry(M::ENTRY_SIZE);
            let table = Pfn::containing(pa);
            let index = pa.page_offset() / M::ENTRY_SIZE;
            hv.check_frame(&self.mem, table)?;
            match hv.validated(table) {
                Some(ty) => hv.update_entry::<M, P>(&self.mem, table, ty, index, r.val),
                None => {
                    hv_store::<M, P>(&self.mem, table, PageType::None, index, r.val);
                    Ok(())
                }
            }
        })();
        Self::finish(&mut hv, Hypercall::MmuUpdate(r), res)
    }

    /// `HYPERVISOR_mmuext_op(ops, count, &success_count)`: performs the operations in order,
    /// stopping at the first refusal. `success_count` is set to the number performed.
    ///
    /// Pinning validates the table recursively (an L2 entry must reference a page that
    /// validates as L1, an L3 entry an L2; an L1 entry may map any frame of the domain but
    /// never a page-table page writable) and refuses a page that is mapped writable.
    /// `NEW_BASEPTR` needs a root pinned at the root level (L2 two-level, L3 PAE).
    ///
    /// # Errors
    /// The first refusal: [`XenError::AlreadyPinned`], [`XenError::NotPinned`],
    /// [`XenError::BadLevel`], [`XenError::BaseNotPinned`], [`XenError::TableModified`] (an
    /// unpin that found the table changed behind the hypervisor's back: the unpin still
    /// happened), or any validation refusal of a pin (see [`mmu_update`](Self::mmu_update)).
    #[doc(alias = "do_mmuext_op")]
    pub fn mmuext_op(&self, ops: &[MmuextOp], success_count: &mut usize) -> Result<(), XenError> {
        *success_count = 0;
        for op in ops {
            self.mmuext_one(*op)?;
            *success_count += 1;
        }
        Ok(())
    }

    /// One `mmuext_op` operation.
    pub(crate) fn mmuext_one(&self, op: MmuextOp) -> Result<(), XenError> {
        let mut hv = self.state.lock();
        hv.stats.mmuext[op.cmd() as usize] += 1;
        let mem = &self.mem;
        let res = match op {
            MmuextOp::PinL1Table(p) => hv.pin::<M, P>(mem, p, PageType::L1),
            MmuextOp::PinL2Table(p) => hv.pin::<M, P>(mem, p, PageType::L2),
            MmuextOp::PinL3Table(p) if M::PAE => hv.pin::<M, P>(mem, p, PageType::L3),
            MmuextOp::PinL3Table(pfn) => Err(XenError::BadLevel { pfn, level: 3 }),
            MmuextOp::PinL4Table(pfn) => Err(XenError::BadLevel { pfn, level: 4 }),
            MmuextOp::UnpinTable(p) => hv.unpin::<M, P>(mem, p),
            MmuextOp::NewBaseptr(p) => hv.new_baseptr::<M, P>(mem, p),
            MmuextOp::TlbFlushLocal => Ok(()),
            MmuextOp::InvlpgLocal(va) => {
                if let Some(f) = self.invlpg {
                    f(va);
                }
                Ok(())
            }
        };
        Self::finish(&mut hv, Hypercall::MmuextOp(op), res)
    }

    /// `HYPERVISOR_update_va_mapping(va, val, flags)`: replaces the PTE that maps the virtual
    /// address `va` in the linear map (the tree of the domain's initial page table,
    /// [`set_pt_base`](Self::set_pt_base)).
    ///
    /// When that PTE's L1 is validated the update is checked like `mmu_update` (so a page-table
    /// page can never be made writable); before the tables are pinned it is a plain store.
    /// `UVMF_INVLPG` / `UVMF_TLB_FLUSH` run the vCPU's `invlpg` hook afterwards, if one was
    /// given ([`with_invlpg`](Self::with_invlpg)).
    ///
    /// # Errors
    /// [`XenError::NoLinearMap`] before the initial page table is known;
    /// [`XenError::NotMapped`] if no 4 KiB PTE maps `va` there ([`XenError::LargePage`] if a
    /// large page does); otherwise as for [`mmu_update`](Self::mmu_update).
    #[doc(alias = "do_update_va_mapping")]
    pub fn update_va_mapping(&self, va: u32, val: Pte, flags: UvmFlags) -> Result<(), XenError> {
        let mut hv = self.state.lock();
        hv.stats.update_va_mapping += 1;
        let res = (|| {
            let (l1, index) = hv.linear_slot::<M, P>(&self.mem, va)?;
            match hv.validated(l1) {
                Some(ty) => hv.update_entry::<M, P>(&self.mem, l1, ty, index, val.raw()),
                None => {
                    hv_store::<M, P>(&self.mem, l1, PageType::L1, index, val.raw());
                    Ok(())
                }
            }
        })();
        if res.is_ok() && flags.intersects(UvmFlags::INVLPG | UvmFlags::TLB_FLUSH) {
            if let Some(f) = self.invlpg {
                f(va);
            }
        }
        Self::finish(&mut hv, Hypercall::UpdateVaMapping { va, val, flags }, res)
    }

    /// Records the domain's initial page table (the root's frame): the model's stand-in for
    /// the domain builder handing `start_info.pt_base` over. Its kernel range holds the linear
    /// map that [`update_va_mapping`](Self::update_va_mapping) edits. The guest side calls it
    /// with the first root it loads (`swapper_pg_dir` after `pagetable_init`); it is forgotten
    /// when that root is torn down (`exit_mmap`).
    ///
    /// # Errors
    /// [`XenError::PtBaseAlreadySet`] if one is recorded already; [`XenError::ForeignFrame`] /
    /// [`XenError::Capacity`] for a frame outside the domain or the frame table.
    pub fn set_pt_base(&self, root: Pfn) -> Result<(), XenError> {
        let mut hv = self.state.lock();
        let res = match hv.pt_base {
            Some(pfn) => Err(XenError::PtBaseAlreadySet { pfn }),
            None => hv.check_frame(&self.mem, root).map(|_| hv.pt_base = Some(root)),
        };
        if let Err(e) = res {
            hv.stats.refusals[e.errno().index()] += 1;
        }
        res
    }

    /// The vCPU stops running on the model's tables (the kernel loaded a root the model does
    /// not manage, as `KernelMm::shutdown` requires): the base pointer's reference is dropped.
    pub(crate) fn leave_base(&self) {
        self.state.lock().leave_base::<M, P>(&self.mem);
    }

    /// The domain's initial page table is gone (its tree was torn down).
    pub(crate) fn forget_pt_base(&self) {
        self.state.lock().pt_base = None;
    }

    /// Counts a refusal and traces the call.
    fn finish(hv: &mut HvState<N>, call: Hypercall, res: Result<(), XenError>) -> Result<(), XenError> {
        if let Err(e) = res {
            hv.stats.refusals[e.errno().index()] += 1;
        }
        hv.trace.push(TraceEntry { call, error: res.err() });
        res
    }

    /// The hypervisor's view of frame `pfn` (type, type count, pin); all zero beyond the frame
    /// table.
    pub fn page_info(&self, pfn: Pfn) -> PageInfo {
        self.state.lock().info(pfn)
    }

    /// Whether the hypervisor holds frame `pfn` pinned.
    pub fn is_pinned(&self, pfn: Pfn) -> bool {
        self.page_info(pfn).pinned
    }

    /// Pinned tables by level.
    pub fn pinned_tables(&self) -> PinnedCounts {
        self.state.lock().pinned_counts()
    }

    /// Frames with any type at all, page-table or writable (zero once every validated table is
    /// gone, since writable types are counted from the RW entries of validated L1s).
    pub fn typed_frames(&self) -> usize {
        self.state.lock().frames.iter().filter(|f| f.info.count > 0 || f.info.ty != PageType::None).count()
    }

    /// The frame of the root installed with `MMUEXT_NEW_BASEPTR`, if any.
    pub fn base(&self) -> Option<Pfn> {
        self.state.lock().base
    }

    /// The frame of the domain's initial page table (where the linear map lives), once known.
    pub fn pt_base(&self) -> Option<Pfn> {
        self.state.lock().pt_base
    }

    /// The most recent hypercalls (at most [`TRACE_LEN`](crate::TRACE_LEN)), oldest first,
    /// copied into `out`; returns how many the trace holds.
    pub fn trace(&self, out: &mut [TraceEntry]) -> usize {
        self.state.lock().trace.copy_to(out)
    }

    /// Empties the hypercall trace.
    pub fn clear_trace(&self) {
        self.state.lock().trace.clear();
    }
}
