//! The hypervisor: the domain's frame table and the hypercalls that are the only way to change
//! it (`do_mmu_update`, `do_mmuext_op`, `do_update_va_mapping` in `xen/arch/x86/mm.c`).
//!
//! [`Hypervisor`] owns its state and knows nothing of the guest: the guest side
//! ([`Xen`](crate::Xen)) holds a reference to it and calls in, never the other way round. Each
//! call takes the hypervisor lock, is counted, traced, and either succeeds or is refused with a
//! typed [`XenError`] naming the frame and the rule.

use crate::error::{SetupError, TeardownError, XenError};
use crate::frames::{HvConfig, HvState};
use crate::hypercall::{Hypercall, MmuUpdate, MmuextOp, UvmFlags, MMU_NORMAL_PT_UPDATE};
use crate::table::{hv_store, read, root_type};
use crate::trace::TraceEntry;
use crate::types::{PageInfo, PageType, PinnedCounts};
use core::marker::PhantomData;
use i386_paging::{lowmem_va, PteFlags};
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::sync::Lock;
use paravirt_core::{Pfn, Pte};

/// `HYPERVISOR_VIRT_START` of a 32-bit Xen: where Xen's own area begins at the top of every
/// address space, `0xF580_0000` with PAE, `0xFC00_0000` without (`xen/include/public/arch-x86/xen-x86_32.h`).
pub const fn hypervisor_virt_start(pae: bool) -> u32 {
    if pae {
        0xF580_0000
    } else {
        0xFC00_0000
    }
}

/// The Xen hypervisor model for one PV domain in paging mode `M`, over the domain's physical
/// memory `P`.
///
/// It owns Xen's frame table (`frame_table` of `struct page_info`: type, type count, pin), the
/// vCPU's base pointer and the domain's initial page table, and offers the hypercalls
/// ([`mmu_update`](Self::mmu_update), [`mmuext_op`](Self::mmuext_op),
/// [`update_va_mapping`](Self::update_va_mapping)) plus read-only queries. It never calls
/// the guest.
///
/// The frame table follows RAM: [`init_frametable`](Self::init_frametable) (Xen's
/// `init_frametable`) reserves a 16-byte record for every frame below `mem.max_pfn()`, in
/// frames of `mem` (one frame per 256 frames of RAM, plus a directory frame per 128K frames),
/// so every lookup is O(1) and no hypercall allocates; [`free_frametable`](Self::free_frametable)
/// gives them back. A frame at or beyond `mem.max_pfn()` is [`XenError::ForeignFrame`]; before
/// `init_frametable` (and after `free_frametable`) every frame is refused with
/// [`XenError::Capacity`]. [`new`](Self::new) is `const` so a kernel can put the hypervisor in
/// a `static` and set up its frame table at boot; [`boot`](Self::boot) does both.
pub struct Hypervisor<M: PagingMode, P: PhysMem> {
    state: Lock<HvState>,
    cfg: HvConfig,
    mem: P,
    invlpg: Option<fn(u32)>,
    flush_multi: Option<fn(u32, u32)>,
    vcpu_id: fn() -> usize,
    _mode: PhantomData<fn() -> M>,
}

/// The vCPU number of a hypervisor told nothing else: 0.
fn vcpu_zero() -> usize {
    0
}

impl<M: PagingMode, P: PhysMem> Hypervisor<M, P> {
    paravirt_core::const_unless_loom! {
        /// A hypervisor over the domain's memory `mem`: nothing typed or pinned, no base pointer,
        /// no initial page table yet; Xen's area starts at [`hypervisor_virt_start`] for the mode,
        /// and the domain has no I/O capabilities (an unprivileged guest).
        pub fn new(mem: P) -> Self {
            let cfg = HvConfig { virt_start: hypervisor_virt_start(M::PAE), io_caps: false };
            Hypervisor {
                state: Lock::new(HvState::new(cfg)),
                cfg,
                mem,
                invlpg: None,
                flush_multi: None,
                vcpu_id: vcpu_zero,
                _mode: PhantomData,
            }
        }
    }

    /// A hypervisor over `mem` ([`new`](Self::new)) with its frame table set up
    /// ([`init_frametable`](Self::init_frametable)).
    ///
    /// # Errors
    /// [`SetupError::OutOfMemory`] if `mem` cannot supply the frame table (nothing is kept).
    pub fn boot(mem: P) -> Result<Self, SetupError> {
        let hv = Self::new(mem);
        hv.init_frametable()?;
        Ok(hv)
    }

    /// Xen's `init_frametable`: reserves the frame table, a record per frame of RAM
    /// (`[0, mem.max_pfn())`), in frames of the domain's memory. Call it once, before any
    /// hypercall.
    ///
    /// # Errors
    /// [`SetupError::OutOfMemory`] if `mem` cannot supply the frames (every frame taken is
    /// given back), [`SetupError::AlreadySetUp`] if the table exists.
    pub fn init_frametable(&self) -> Result<(), SetupError> {
        let mut hv = self.state.lock();
        if hv.covered != Pfn::new(0) {
            return Err(SetupError::AlreadySetUp);
        }
        hv.init_frametable(&self.mem).map_err(|_| SetupError::OutOfMemory)
    }

    /// Gives the frame table's frames back (domain destruction). Afterwards every frame is
    /// refused with [`XenError::Capacity`] until [`init_frametable`](Self::init_frametable).
    ///
    /// # Errors
    /// [`TeardownError::FramesHeld`] while a frame has a type or a pin, or the base pointer is
    /// set (call it after the guest released every table);
    /// [`TeardownError::NotSetUp`] if there is no frame table. Nothing changes either way.
    pub fn free_frametable(&self) -> Result<(), TeardownError> {
        let mut hv = self.state.lock();
        if hv.covered == Pfn::new(0) {
            return Err(TeardownError::NotSetUp);
        }
        let held = hv.held(&self.mem).count() + hv.base.is_some() as usize;
        if held != 0 {
            return Err(TeardownError::FramesHeld { held });
        }
        hv.pt_base = None;
        hv.free_frametable(&self.mem);
        Ok(())
    }

    /// Frames of the domain's memory the frame table holds (0 before
    /// [`init_frametable`](Self::init_frametable) and after
    /// [`free_frametable`](Self::free_frametable)).
    pub fn frametable_frames(&self) -> usize {
        self.state.lock().frametable_frames(&self.mem)
    }

    paravirt_core::const_unless_loom! {
        /// Puts Xen's own area at `virt_start` (a virtual address, `HYPERVISOR_VIRT_START`, which a
        /// guest learns from `XENVER_platform_parameters`): the L2 slots from there up are Xen's.
        /// Call before any hypercall and before [`init_frametable`](Self::init_frametable) (the
        /// state starts afresh: a frame table set up already would be lost).
        pub fn with_virt_start(mut self, virt_start: u32) -> Self {
            self.cfg.virt_start = virt_start;
            self.state = Lock::new(HvState::new(self.cfg));
            self
        }
    }

    paravirt_core::const_unless_loom! {
        /// Gives the domain I/O capabilities (`iomem_caps` / `ioport_caps`, a driver domain or
        /// dom0): its L1 entries may then carry PAT, PCD and PWT (`l1_disallow_mask`). Call before
        /// any hypercall and before [`init_frametable`](Self::init_frametable) (as for
        /// [`with_virt_start`](Self::with_virt_start)).
        pub fn with_io_capabilities(mut self) -> Self {
            self.cfg.io_caps = true;
            self.state = Lock::new(HvState::new(self.cfg));
            self
        }
    }

    /// Where Xen's own area begins (`HYPERVISOR_VIRT_START`, a virtual address).
    pub const fn virt_start(&self) -> u32 {
        self.cfg.virt_start
    }

    /// What the guest must reserve at the top of its address space (in bytes) to stay clear
    /// of Xen's area: Linux's `xen_reserve_top` calls `reserve_top_address(-virt_start +
    /// 2 * PAGE_SIZE)`. Pass it as `i386_mm::InitOptions::reserve_top`.
    pub const fn reserve_top(&self) -> u32 {
        0u32.wrapping_sub(self.cfg.virt_start) + 2 * 4096
    }

    /// Gives the model the vCPU's `invlpg` (by virtual address): run after an
    /// `update_va_mapping` with `UVMF_INVLPG` and for `MMUEXT_INVLPG_LOCAL`, so a CPU with a
    /// real TLB (the kernel demo) drops the old linear-map translation of a page made
    /// read-only or writable.
    pub const fn with_invlpg(mut self, invlpg: fn(u32)) -> Self {
        self.invlpg = Some(invlpg);
        self
    }

    /// Gives the model the platform's remote TLB flush: `flush(vcpumask, addr)` makes every
    /// vCPU in the mask flush `addr` (or everything, for `paravirt_core::TLB_FLUSH_ALL`) and
    /// returns once all have, as Xen's `flush_tlb_mask` does with IPIs between the physical
    /// CPUs. Run for `MMUEXT_TLB_FLUSH_MULTI` and `MMUEXT_INVLPG_MULTI`.
    pub const fn with_flush_multi(mut self, flush: fn(u32, u32)) -> Self {
        self.flush_multi = Some(flush);
        self
    }

    /// Tells the model how to find the calling vCPU's number (numbers at or above
    /// [`MAX_VCPUS`](crate::MAX_VCPUS) share the last base pointer). Without it every
    /// hypercall is vCPU 0's.
    pub const fn with_vcpu_id(mut self, vcpu_id: fn() -> usize) -> Self {
        self.vcpu_id = vcpu_id;
        self
    }

    /// Takes the hypervisor lock with the calling vCPU's base pointer current.
    fn lock_vcpu(&self) -> paravirt_core::sync::LockGuard<'_, HvState> {
        let mut hv = self.state.lock();
        hv.switch_vcpu((self.vcpu_id)());
        hv
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
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut HvState) -> R) -> R {
        f(&mut self.lock_vcpu())
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
    /// [`XenError::TypeConflict`], [`XenError::LargePage`], [`XenError::DisallowedFlags`],
    /// [`XenError::XenPrivateSlot`], [`XenError::PaeL3Slot3Update`], [`XenError::BadIndex`]...).
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
        let mut hv = self.lock_vcpu();
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
            match hv.validated(&self.mem, table) {
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
    /// never a page-table page writable) and refuses a page that is mapped writable. A pin of
    /// a level the guest does not have (L3 without PAE, L4 on i386) is ignored, as by Xen.
    /// `NEW_BASEPTR` takes a root-type reference on the new root, validating it if needed
    /// (`new_guest_cr3`): a root need not be pinned.
    ///
    /// # Errors
    /// The first refusal: [`XenError::AlreadyPinned`], [`XenError::NotPinned`],
    /// [`XenError::TableModified`] (an unpin that found the table changed behind the
    /// hypervisor's back: the unpin still happened), or any validation refusal of a pin or a
    /// new base pointer (see [`mmu_update`](Self::mmu_update)).
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
        if let MmuextOp::TlbFlushMulti { vcpumask } | MmuextOp::InvlpgMulti { vcpumask, .. } = op {
            {
                let mut hv = self.lock_vcpu();
                hv.stats.mmuext[op.cmd() as usize] += 1;
                let _ = Self::finish(&mut hv, Hypercall::MmuextOp(op), Ok(()));
            }
            // Outside the lock: the other vCPUs may need it to reach the point where they
            // take the flush.
            let addr = match op {
                MmuextOp::InvlpgMulti { va, .. } => va,
                _ => paravirt_core::TLB_FLUSH_ALL,
            };
            if let Some(f) = self.flush_multi {
                f(vcpumask, addr);
            }
            return Ok(());
        }
        let mut hv = self.lock_vcpu();
        hv.stats.mmuext[op.cmd() as usize] += 1;
        let mem = &self.mem;
        let res = match op {
            MmuextOp::PinL1Table(p) => hv.pin::<M, P>(mem, p, PageType::L1),
            MmuextOp::PinL2Table(p) => hv.pin::<M, P>(mem, p, PageType::L2),
            MmuextOp::PinL3Table(p) if M::PAE => hv.pin::<M, P>(mem, p, PageType::L3),
            // "Ignore pinning of invalid paging levels" (`do_mmuext_op`), and `PIN_L4` from a
            // 32-bit guest.
            MmuextOp::PinL3Table(_) | MmuextOp::PinL4Table(_) => Ok(()),
            MmuextOp::UnpinTable(p) => hv.unpin::<M, P>(mem, p),
            MmuextOp::NewBaseptr(p) => hv.new_baseptr::<M, P>(mem, p),
            MmuextOp::TlbFlushLocal => Ok(()),
            MmuextOp::InvlpgLocal(va) => {
                if let Some(f) = self.invlpg {
                    f(va);
                }
                Ok(())
            }
            MmuextOp::TlbFlushMulti { .. } | MmuextOp::InvlpgMulti { .. } => Ok(()),
        };
        Self::finish(&mut hv, Hypercall::MmuextOp(op), res)
    }

    /// `HYPERVISOR_update_va_mapping(va, val, flags)`: replaces the PTE that maps the virtual
    /// address `va` in the linear map (the tree of the domain's initial page table,
    /// [`set_pt_base`](Self::set_pt_base)).
    ///
    /// The update is checked like `mmu_update` (so a page-table page can never be made
    /// writable), and the L1 holding that PTE must be a validated page table: Xen reaches it
    /// through the current page tables and `mod_l1_entry` (later Xen checks its type
    /// explicitly). Before the domain's tables are validated there is nothing to update.
    /// `UVMF_INVLPG` / `UVMF_TLB_FLUSH` run the vCPU's `invlpg` hook afterwards, if one was
    /// given ([`with_invlpg`](Self::with_invlpg)).
    ///
    /// # Errors
    /// [`XenError::NoLinearMap`] before the initial page table is known;
    /// [`XenError::NotMapped`] if no 4 KiB PTE maps `va` there ([`XenError::LargePage`] if a
    /// large page does); [`XenError::UnvalidatedL1`] if that PTE's L1 is not a validated page
    /// table; otherwise as for [`mmu_update`](Self::mmu_update).
    #[doc(alias = "do_update_va_mapping")]
    pub fn update_va_mapping(&self, va: u32, val: Pte, flags: UvmFlags) -> Result<(), XenError> {
        let mut hv = self.lock_vcpu();
        hv.stats.update_va_mapping += 1;
        let res = (|| {
            let (l1, index) = hv.linear_slot::<M, P>(&self.mem, va)?;
            match hv.validated(&self.mem, l1) {
                Some(PageType::L1) => hv.update_entry::<M, P>(&self.mem, l1, PageType::L1, index, val.raw()),
                _ => Err(XenError::UnvalidatedL1 { va, l1 }),
            }
        })();
        if res.is_ok() && flags.intersects(UvmFlags::INVLPG | UvmFlags::TLB_FLUSH) {
            if let Some(f) = self.invlpg {
                f(va);
            }
        }
        Self::finish(&mut hv, Hypercall::UpdateVaMapping { va, val, flags }, res)
    }

    /// Records the domain's initial page table (the root's frame) and does what the domain
    /// builder does to it before the guest runs: every table of its tree is mapped read-only
    /// in its own linear map (written directly, as the builder writes the guest's memory). It
    /// is the model's stand-in for the builder handing `start_info.pt_base` over; its kernel
    /// range holds the linear map that [`update_va_mapping`](Self::update_va_mapping) edits.
    /// The guest side calls it with the first root it loads (`swapper_pg_dir` after
    /// `pagetable_init`), then pins that tree; it is forgotten when the tree is torn down
    /// (`exit_mmap`).
    ///
    /// # Errors
    /// [`XenError::PtBaseAlreadySet`] if one is recorded already; [`XenError::ForeignFrame`] /
    /// [`XenError::Capacity`] for a frame outside the domain or the frame table.
    pub fn set_pt_base(&self, root: Pfn) -> Result<(), XenError> {
        let mut hv = self.lock_vcpu();
        let res = match hv.pt_base {
            Some(pfn) => Err(XenError::PtBaseAlreadySet { pfn }),
            None => hv.check_frame(&self.mem, root).map(|_| hv.pt_base = Some(root)),
        };
        if res.is_ok() {
            let mut tables = [Pfn::new(0); 64];
            let mut n = 0;
            let mut rest = true;
            // The builder's tables fit in a few pages; walk them in rounds of 64.
            while rest {
                rest = false;
                let mut seen = 0;
                hv.tree::<M, P>(&self.mem, root, &mut |t| {
                    if seen >= n && seen < n + tables.len() {
                        tables[seen - n] = t;
                    } else if seen >= n + tables.len() {
                        rest = true;
                    }
                    seen += 1;
                });
                let upto = (seen - n).min(tables.len());
                for &t in &tables[..upto] {
                    if let Ok((l1, index)) = hv.linear_slot::<M, P>(&self.mem, lowmem_va(t)) {
                        let pte = Pte::from_raw(read::<M, P>(&self.mem, l1, index));
                        if pte.is_present() {
                            let ro = Pte::from_raw(pte.raw() & !PteFlags::RW.bits());
                            hv_store::<M, P>(&self.mem, l1, PageType::L1, index, ro.raw());
                        }
                    }
                }
                n += upto;
            }
            if let Some(f) = self.invlpg {
                hv.tree::<M, P>(&self.mem, root, &mut |t| f(lowmem_va(t)));
            }
        }
        if let Err(e) = res {
            hv.stats.refusals[e.errno().index()] += 1;
        }
        res
    }

    /// The vCPUs stop running on the model's tables (the kernel loaded a root the model does
    /// not manage on every CPU, as `KernelMm::shutdown` requires): every base pointer's
    /// reference is dropped.
    pub(crate) fn leave_base(&self) {
        self.lock_vcpu().leave_all_bases::<M, P>(&self.mem);
    }

    /// The domain's initial page table is gone (its tree was torn down).
    pub(crate) fn forget_pt_base(&self) {
        self.lock_vcpu().pt_base = None;
    }

    /// Domain teardown (Xen's `relinquish_memory`, beyond what a running guest can ask): makes
    /// frame `pfn` writable again in the linear map, directly when the L1 holding its PTE is
    /// no longer validated. Refused for a frame that is still a validated table.
    pub(crate) fn relinquish_writable(&self, pfn: Pfn) -> Result<(), XenError> {
        let mut hv = self.lock_vcpu();
        let va = lowmem_va(pfn);
        let (l1, index) = hv.linear_slot::<M, P>(&self.mem, va)?;
        let pte = Pte::from_raw(read::<M, P>(&self.mem, l1, index));
        if !pte.is_present() {
            return Ok(());
        }
        let rw = pte.union(PteFlags::RW).raw();
        let res = match hv.validated(&self.mem, l1) {
            Some(PageType::L1) => hv.update_entry::<M, P>(&self.mem, l1, PageType::L1, index, rw),
            _ => match hv.validated(&self.mem, pfn) {
                Some(ty) => Err(XenError::WritablePageTable { table: l1, index, target: pfn, target_type: ty }),
                None => {
                    hv_store::<M, P>(&self.mem, l1, PageType::L1, index, rw);
                    Ok(())
                }
            },
        };
        drop(hv);
        if let Some(f) = self.invlpg {
            f(va);
        }
        res
    }

    /// The guest stored `bytes` bytes of `val` (1, 2, 4 or 8, naturally aligned) at the
    /// virtual address `addr` and took a write fault on a read-only page: Xen's
    /// `ptwr_do_page_fault`. If `addr` is mapped read-only (through the current base
    /// pointer's tables) onto a validated L1, the store is emulated as
    /// `ptwr_emulated_update` does: merged into the whole entry, validated like
    /// `mmu_update`, then written. The caller (the CPU's write-fault handler) then skips the
    /// faulting instruction.
    ///
    /// Takes the hypervisor lock without waiting: a fault raised while it is held (a store
    /// made by the model itself) is not emulated.
    ///
    /// # Errors
    /// [`XenError::NotPtwr`] when the fault is not Xen's to emulate (no base pointer, the
    /// address not mapped read-only onto a validated L1, a misaligned or oversized store, the
    /// lock held): the fault goes to the guest. A validation refusal of the new entry, as for
    /// [`mmu_update`](Self::mmu_update): the entry is unchanged and the fault goes to the
    /// guest too.
    #[doc(alias = "ptwr_emulated_update")]
    pub fn ptwr_do_page_fault(&self, addr: u32, val: u64, bytes: u32) -> Result<(), XenError> {
        let Some(mut hv) = self.state.try_lock() else { return Err(XenError::NotPtwr { va: addr }) };
        let res = hv.ptwr::<M, P>(&self.mem, addr, val, bytes);
        if matches!(res, Err(XenError::NotPtwr { .. })) {
            return res;
        }
        Self::finish(&mut hv, Hypercall::Ptwr { va: addr, val, bytes }, res)
    }

    /// Counts a refusal and traces the call.
    fn finish(hv: &mut HvState, call: Hypercall, res: Result<(), XenError>) -> Result<(), XenError> {
        if let Err(e) = res {
            hv.stats.refusals[e.errno().index()] += 1;
        }
        hv.trace.push(TraceEntry { call, error: res.err() });
        res
    }

    /// The hypervisor's view of frame `pfn` (type, type count, pin); all zero beyond the frame
    /// table.
    pub fn page_info(&self, pfn: Pfn) -> PageInfo {
        self.lock_vcpu().info(&self.mem, pfn)
    }

    /// Whether the hypervisor holds frame `pfn` pinned.
    pub fn is_pinned(&self, pfn: Pfn) -> bool {
        self.page_info(pfn).pinned
    }

    /// Pinned tables by level.
    pub fn pinned_tables(&self) -> PinnedCounts {
        self.lock_vcpu().pinned_counts(&self.mem)
    }

    /// Frames with any type at all, page-table or writable (zero once every validated table is
    /// gone, since writable types are counted from the RW entries of validated L1s).
    /// O(frames of RAM).
    pub fn typed_frames(&self) -> usize {
        let hv = self.lock_vcpu();
        hv.held(&self.mem).filter(|(_, i)| i.count > 0 || i.ty != PageType::None).count()
    }

    /// The frame of the root installed with `MMUEXT_NEW_BASEPTR`, if any.
    pub fn base(&self) -> Option<Pfn> {
        self.lock_vcpu().base
    }

    /// The frame of the domain's initial page table (where the linear map lives), once known.
    pub fn pt_base(&self) -> Option<Pfn> {
        self.lock_vcpu().pt_base
    }

    /// The most recent hypercalls (at most [`TRACE_LEN`](crate::TRACE_LEN)), oldest first,
    /// copied into `out`; returns how many the trace holds.
    pub fn trace(&self, out: &mut [TraceEntry]) -> usize {
        self.lock_vcpu().trace.copy_to(out)
    }

    /// Empties the hypercall trace.
    pub fn clear_trace(&self) {
        self.lock_vcpu().trace.clear();
    }
}
