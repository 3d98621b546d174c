//! The paravirt hooks: `arch/i386/kernel/vmi.c`'s `vmi_allocate_pt`, `vmi_allocate_pd`,
//! `vmi_allocate_pd_clone`, `vmi_release_pt`, `vmi_release_pd`, and the entry writes and CR3
//! loads a shadowing hypervisor must see.

use crate::backend::Vmi;
use crate::rom::CloneArgs;
use crate::rule::VmiRule;
use crate::shadow::entries;
use crate::stats::Check;
use crate::types::PageType;
use core::sync::atomic::Ordering;
use i386_paging::PhysMem;
use paravirt_core::{
    native, Entry, HookKind, PagingMode, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps, Slot,
};

/// The level an entry hook writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// `set_pte*`, `pte_clear`: a page table (L1).
    Pt,
    /// `set_pmd`, `pmd_clear`: a directory (L2).
    Dir,
}

impl<M: PagingMode, P: PhysMem> Vmi<M, P> {
    /// An entry write of `hook` into a page table or a directory: `val` (`None`: a clear) is
    /// stored into the guest entry with one native store, then checked and mirrored into the
    /// table's shadow, all under the backend's lock.
    ///
    /// `at` is the address space and virtual address the hook names (`set_pte_at`,
    /// `set_pte_present`, `pte_clear`): with deferred updates on, a change of a present PTE of
    /// the loaded address space reaches the shadow only at the next flush of that address
    /// (`VMI_PAGE_DEFER | VMI_PAGE_CURRENT_AS`).
    fn entry_hook<E: Entry>(&self, hook: HookKind, slot: Slot<E>, val: Option<E>, want: Level, at: Option<(Pfn, u32)>) {
        let _ = self.locked(Some(hook), |st, found| {
            match val {
                Some(v) => native::set(slot, v),
                None => native::clear(slot),
            }
            let (table, index) = (slot.table(), slot.index());
            st.checks.count(Check::WriteTyped);
            let Some(ty) = st.pages.get(&self.mem, table).map(|t| t.ty) else {
                return found.push(VmiRule::WriteUntyped { table, index });
            };
            st.checks.count(Check::WriteLevel);
            if ty.is_l1() != (want == Level::Pt) {
                found.push(VmiRule::WrongLevel { table, index, current: ty });
            }
            // A slot made by `i386_paging::slot` is always in range; one made by hand may not be.
            if index >= entries::<M>() {
                return;
            }
            if let (true, Some((mm, addr)), true) = (st.defer, at, ty.is_l1()) {
                let current = st.loaded.is_some_and(|l| l.root == mm);
                let shadow = st.pages.get(&self.mem, table).map(|t| t.shadow);
                let was_present =
                    shadow.is_some_and(|s| crate::shadow::load::<M, Pte, P>(&self.mem, s, index).is_present());
                // A not-present shadow entry would fault, and the hypervisor would fill it from
                // the guest entry then: it is filled now.
                if current && was_present {
                    return st.defer(&self.mem, found, table, index, addr);
                }
            }
            st.mirror(&self.mem, found, table, index, val.unwrap_or(E::from_raw(0)));
        });
    }

    /// An `alloc_*` hook: `AllocatePage(pfn, ty, clone)` under the lock, reported with `hook`.
    fn announce(&self, hook: HookKind, pfn: Pfn, ty: PageType, clone: CloneArgs) {
        let _ = self.locked(Some(hook), |st, found| st.allocate(&self.mem, found, pfn, ty, clone));
    }

    /// A `release_*` hook: `ReleasePage(pfn, ty)` under the lock, reported with `hook`.
    fn retire(&self, hook: HookKind, pfn: Pfn, ty: PageType) {
        let _ = self.locked(Some(hook), |st, found| {
            st.apply_pending(&self.mem, found, |p| p.table == pfn);
            st.release(&self.mem, found, pfn, ty)
        });
    }

    /// A flush: the deferred updates of `addr` (all of them for `None`) reach the shadows.
    ///
    /// Without deferred updates nothing can be pending: the call is counted and the lock is
    /// not taken.
    fn flush_pending(&self, hook: HookKind, addr: Option<u32>) {
        if !self.defer.load(Ordering::Relaxed) {
            self.calls.count(hook);
            return;
        }
        let _ = self
            .locked(Some(hook), |st, found| st.apply_pending(&self.mem, found, |p| addr.is_none_or(|a| p.addr == a)));
    }
}

/// VMI for paging mode `M`: a backend built for one mode serves kernels of that mode only.
impl<M: PagingMode, P: PhysMem> PvMmuOps<M> for Vmi<M, P> {
    /// `vmi_allocate_pt`: types the page L1 (`PT | ZEROED`, `| PAE`) and shadows it.
    fn alloc_pt(&self, pfn: Pfn) {
        self.announce(HookKind::AllocPt, pfn, PageType::l1::<M>(), CloneArgs::default());
    }

    /// `vmi_allocate_pd`: types the page L2 (`PD | ZEROED`, `| PAE`) and shadows it:
    /// `swapper_pg_dir` in two-level mode, a pmd in PAE.
    fn alloc_pd(&self, pfn: Pfn) {
        self.announce(HookKind::AllocPd, pfn, PageType::l2::<M>(), CloneArgs::default());
    }

    /// `vmi_allocate_pd_clone`: types the page `L2 | CLONE` after checking the source is an
    /// L2 of the same mode, and copies entries `[start, start + count)` of the source's
    /// shadow into the new shadow.
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        let clone = CloneArgs { source: clone_pfn, start, count };
        self.announce(HookKind::AllocPdClone, pfn, PageType::l2_clone::<M>(), clone);
    }

    /// `vmi_release_pt`: back to `NORMAL`, shadow freed.
    fn release_pt(&self, pfn: Pfn) {
        self.retire(HookKind::ReleasePt, pfn, PageType::l1::<M>());
    }

    /// `vmi_release_pd`: back to `NORMAL`, shadow freed.
    fn release_pd(&self, pfn: Pfn) {
        self.retire(HookKind::ReleasePd, pfn, PageType::l2::<M>());
    }

    /// `vmi_set_pte`. Linux's own check accepts a PTE page *or* a PD here (2.6.21's
    /// `set_pmd_pte` writes pmds with it); the model reports a directory as `WrongLevel`, a
    /// checker rule, and mirrors the write by the table's real level.
    fn set_pte(&self, slot: PteSlot, val: Pte) {
        self.entry_hook(HookKind::SetPte, slot, Some(val), Level::Pt, None)
    }

    /// `vmi_set_pte_at`.
    fn set_pte_at(&self, mm: Pfn, addr: u32, slot: PteSlot, val: Pte) {
        self.entry_hook(HookKind::SetPteAt, slot, Some(val), Level::Pt, Some((mm, addr)))
    }

    /// `vmi_set_pte_atomic` (PAE): Linux checks nothing here; the model's `WriteUntyped` and
    /// `WrongLevel` are checker rules.
    fn set_pte_atomic(&self, slot: PteSlot, val: Pte) {
        self.entry_hook(HookKind::SetPteAtomic, slot, Some(val), Level::Pt, None)
    }

    /// `vmi_set_pte_present`: `vmi_flags_addr_defer`, the update VMI may defer.
    fn set_pte_present(&self, mm: Pfn, addr: u32, slot: PteSlot, val: Pte) {
        self.entry_hook(HookKind::SetPtePresent, slot, Some(val), Level::Pt, Some((mm, addr)))
    }

    /// `vmi_set_pmd`.
    fn set_pmd(&self, slot: PmdSlot, val: Pmd) {
        self.entry_hook(HookKind::SetPmd, slot, Some(val), Level::Dir, None)
    }

    /// A PAE PDPT entry: written natively; the PDPT must be untyped, the entry must hold only
    /// allowed bits and link an announced pmd; if it is the loaded PDPT, the per-vCPU shadow
    /// PDPT is patched. In two-level mode there is no PDPT: a violation.
    fn set_pud(&self, slot: PudSlot, val: Pud) {
        let _ = self.locked(Some(HookKind::SetPud), |st, found| {
            native::set(slot, val);
            let (table, index) = (slot.table(), slot.index());
            if !M::PAE {
                st.checks.count(Check::WriteLevel);
                let current = st.pages.get(&self.mem, table).map_or(PageType::NORMAL, |t| t.ty);
                return found.push(VmiRule::WrongLevel { table, index, current });
            }
            st.checks.count(Check::PdptUntyped);
            if let Some(t) = st.pages.get(&self.mem, table) {
                return found.push(VmiRule::PdptTyped { pfn: table, flags: t.ty });
            }
            if st.check_pdpt_entry(&self.mem, found, table, index, val) && val.is_present() {
                st.pages.update(&self.mem, val.pfn(), |pmd| pmd.pdpt_slot = (index % 4) as u8);
            }
            if let Some(l) = st.loaded {
                if l.root == table && (l.base..l.base + 4).contains(&index) {
                    st.pdpt_set(&self.mem, (index - l.base) as usize, val);
                }
            }
        });
    }

    /// `vmi_pte_clear`.
    fn pte_clear(&self, mm: Pfn, addr: u32, slot: PteSlot) {
        self.entry_hook(HookKind::PteClear, slot, None, Level::Pt, Some((mm, addr)))
    }

    /// `vmi_pmd_clear`.
    fn pmd_clear(&self, slot: PmdSlot) {
        self.entry_hook(HookKind::PmdClear, slot, None, Level::Dir, None)
    }

    /// The address space rooted at `mm` is being torn down. If it is still a loaded root on
    /// some vCPU (only `KernelMm::shutdown` does this, after the CPUs loaded a boot root behind
    /// the backend's back), the backend forgets it there: nothing it shadows is in a CR3 any
    /// more.
    fn exit_mmap(&self, mm: Pfn) {
        let _ = self.locked(Some(HookKind::ExitMmap), |st, found| {
            st.apply_pending(&self.mem, found, |_| true);
            st.unload_everywhere(&self.mem, mm);
        });
    }

    /// Returns the shadow root for the CPU (two-level: the L2's shadow; PAE: the per-vCPU
    /// shadow PDPT, rebuilt from the guest PDPT). An unknown root is a violation, and the CPU
    /// then gets the guest root itself.
    fn write_cr3(&self, cr3: u32) -> u32 {
        self.locked(Some(HookKind::WriteCr3), |st, found| {
            // A CR3 load flushes the TLB: every deferred update is due.
            st.apply_pending(&self.mem, found, |_| true);
            st.load_root(&self.mem, found, cr3)
        })
        .0
    }

    /// Maps a shadow root back to the guest root (other values pass through).
    fn read_cr3(&self, hw: u32) -> u32 {
        let mut st = self.lock_vcpu();
        st.calls[HookKind::ReadCr3 as usize] += 1;
        st.guest_cr3(&self.mem, hw)
    }

    /// `vmi_flush_tlb_user` (`FlushTLB`): applies every deferred update.
    fn flush_tlb_user(&self) {
        self.flush_pending(HookKind::FlushTlbUser, None);
    }

    /// `vmi_flush_tlb_kernel` (`FlushTLB` with `VMI_FLUSH_GLOBAL`): applies every deferred
    /// update.
    fn flush_tlb_kernel(&self) {
        self.flush_pending(HookKind::FlushTlbKernel, None);
    }

    /// `InvalPage`: applies the deferred updates of the page at virtual address `addr`.
    fn flush_tlb_single(&self, addr: u32) {
        self.flush_pending(HookKind::FlushTlbSingle, Some(addr & !0xfff));
    }

    /// VMI shadows large (PSE) directory entries as they are.
    fn allows_large_pages(&self) -> bool {
        true
    }
}
