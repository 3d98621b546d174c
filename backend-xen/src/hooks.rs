//! The paravirt hooks: `PvMmuOps<M>` for [`Xen`] in its own mode `M`, each a thin wrapper that
//! counts the call (by [`HookKind`]), takes the guest lock and runs the Linux Xen function it
//! mirrors (see [`crate::mmu_pv`]).

use crate::guest::{GuestState, ANNOUNCED_PD, ANNOUNCED_PT};
use crate::hypercall::MmuextOp;
use crate::types::PageType;
use crate::xen::Xen;
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::sync::LockGuard;
use paravirt_core::{HookKind, Pfn, Pmd, PmdSlot, Pte, PteSlot, Pud, PudSlot, PvMmuOps};

impl<M: PagingMode, P: PhysMem> Xen<'_, M, P> {
    /// Takes the guest lock and counts a call of `hook`.
    fn enter(&self, hook: HookKind) -> LockGuard<'_, GuestState> {
        let mut g = self.guest.lock();
        g.stats.hooks[hook as usize] += 1;
        g
    }
}

impl<M: PagingMode, P: PhysMem> PvMmuOps<M> for Xen<'_, M, P> {
    /// `xen_alloc_pt`: records the page as an announced page table.
    fn alloc_pt(&self, pfn: Pfn) {
        let mut g = self.enter(HookKind::AllocPt);
        self.alloc_ptpage(&mut g, HookKind::AllocPt, pfn, ANNOUNCED_PT);
    }

    /// `xen_alloc_pd`: records the page as an announced directory.
    fn alloc_pd(&self, pfn: Pfn) {
        let mut g = self.enter(HookKind::AllocPd);
        self.alloc_ptpage(&mut g, HookKind::AllocPd, pfn, ANNOUNCED_PD);
    }

    /// `alloc_pd_clone`: no hypercall, as in Xen (the pgd is pinned when it is loaded); the
    /// two-level pgd is recorded as an announced directory, since this is the hook that
    /// announces it (its `release_pd` comes from `pgd_dtor`).
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        let _ = (clone_pfn, start, count);
        let mut g = self.enter(HookKind::AllocPdClone);
        self.alloc_ptpage(&mut g, HookKind::AllocPdClone, pfn, ANNOUNCED_PD);
    }

    /// `xen_release_pt`: unpin if pinned, then make the page writable.
    fn release_pt(&self, pfn: Pfn) {
        let mut g = self.enter(HookKind::ReleasePt);
        self.release_ptpage(&mut g, HookKind::ReleasePt, pfn);
    }

    /// `xen_release_pd`: unpin if pinned, then make the page writable.
    fn release_pd(&self, pfn: Pfn) {
        let mut g = self.enter(HookKind::ReleasePd);
        self.release_ptpage(&mut g, HookKind::ReleasePd, pfn);
    }

    /// `xen_set_pte`.
    fn set_pte(&self, slot: PteSlot, val: Pte) {
        let mut g = self.enter(HookKind::SetPte);
        self.set_entry(&mut g, HookKind::SetPte, slot, val);
    }

    /// `xen_set_pte_at`.
    fn set_pte_at(&self, mm: Pfn, addr: u32, slot: PteSlot, val: Pte) {
        let _ = (mm, addr);
        let mut g = self.enter(HookKind::SetPteAt);
        self.set_entry(&mut g, HookKind::SetPteAt, slot, val);
    }

    /// `xen_set_pte_atomic`: one 64-bit store (or `mmu_update`) in PAE.
    fn set_pte_atomic(&self, slot: PteSlot, val: Pte) {
        let mut g = self.enter(HookKind::SetPteAtomic);
        self.set_entry(&mut g, HookKind::SetPteAtomic, slot, val);
    }

    /// `set_pte_present` (through `xen_set_pte`).
    fn set_pte_present(&self, mm: Pfn, addr: u32, slot: PteSlot, val: Pte) {
        let _ = (mm, addr);
        let mut g = self.enter(HookKind::SetPtePresent);
        self.set_entry(&mut g, HookKind::SetPtePresent, slot, val);
    }

    /// `xen_set_pmd`: links a page table (pinning an announced one first if the directory is
    /// pinned).
    fn set_pmd(&self, slot: PmdSlot, val: Pmd) {
        let mut g = self.enter(HookKind::SetPmd);
        let child = (val.is_present() && !val.is_large()).then(|| (val.pfn(), PageType::L1));
        self.set_dir(&mut g, HookKind::SetPmd, slot, val, child);
    }

    /// `xen_set_pud`: links a PAE pmd into a root (pinning an announced one first if the root
    /// is pinned).
    fn set_pud(&self, slot: PudSlot, val: Pud) {
        let mut g = self.enter(HookKind::SetPud);
        let child = val.is_present().then(|| (val.pfn(), PageType::L2));
        self.set_dir(&mut g, HookKind::SetPud, slot, val, child);
    }

    /// `xen_pte_clear`.
    fn pte_clear(&self, mm: Pfn, addr: u32, slot: PteSlot) {
        let _ = (mm, addr);
        let mut g = self.enter(HookKind::PteClear);
        self.set_entry(&mut g, HookKind::PteClear, slot, Pte::EMPTY);
    }

    /// `xen_pmd_clear`.
    fn pmd_clear(&self, slot: PmdSlot) {
        let mut g = self.enter(HookKind::PmdClear);
        self.set_entry(&mut g, HookKind::PmdClear, slot, Pmd::EMPTY);
    }

    /// `xen_exit_mmap`: switch away from it if it is loaded (`xen_drop_mm_ref`), then unpin the
    /// address space so its teardown writes go direct.
    fn exit_mmap(&self, mm: Pfn) {
        let mut g = self.enter(HookKind::ExitMmap);
        self.xen_exit_mmap(&mut g, mm);
    }

    /// `xen_write_cr3`: pin the tree if needed, then `MMUEXT_NEW_BASEPTR`. Returns the root
    /// Xen really installed (the guest's own root, no shadow; the previous one if the new base
    /// pointer was refused).
    fn write_cr3(&self, cr3: u32) -> u32 {
        let mut g = self.enter(HookKind::WriteCr3);
        self.xen_write_cr3(&mut g, cr3)
    }

    /// `xen_read_cr3`: the guest's own root.
    fn read_cr3(&self, hw: u32) -> u32 {
        drop(self.enter(HookKind::ReadCr3));
        hw
    }

    /// `xen_flush_tlb`: `MMUEXT_TLB_FLUSH_LOCAL`.
    fn flush_tlb_user(&self) {
        drop(self.enter(HookKind::FlushTlbUser));
        let _ = self.hv.mmuext_one(MmuextOp::TlbFlushLocal);
    }

    /// `xen_flush_tlb` for the global flush: `MMUEXT_TLB_FLUSH_LOCAL`.
    fn flush_tlb_kernel(&self) {
        drop(self.enter(HookKind::FlushTlbKernel));
        let _ = self.hv.mmuext_one(MmuextOp::TlbFlushLocal);
    }

    /// `xen_flush_tlb_single`: `MMUEXT_INVLPG_LOCAL` of the virtual address `addr`.
    fn flush_tlb_single(&self, addr: u32) {
        drop(self.enter(HookKind::FlushTlbSingle));
        let _ = self.hv.mmuext_one(MmuextOp::InvlpgLocal(addr));
    }

    /// `xen_flush_tlb_others`: one `MMUEXT_TLB_FLUSH_MULTI` (for `TLB_FLUSH_ALL`) or
    /// `MMUEXT_INVLPG_MULTI` of `addr` with the vCPU mask; Xen flushes them, the guest sends
    /// no IPI.
    fn flush_tlb_others(&self, cpumask: u32, addr: u32) -> bool {
        drop(self.enter(HookKind::FlushTlbOthers));
        let op = if addr == paravirt_core::TLB_FLUSH_ALL {
            MmuextOp::TlbFlushMulti { vcpumask: cpumask }
        } else {
            MmuextOp::InvlpgMulti { va: addr, vcpumask: cpumask }
        };
        let _ = self.hv.mmuext_one(op);
        true
    }

    /// Xen PV clears PSE: the linear map is built from 4 KiB pages so any one page-table page
    /// can be made read-only on its own.
    fn allows_large_pages(&self) -> bool {
        false
    }

    /// Xen types the L2 in slot 3 of a PAE L3 `PGT_pae_xen_l2` and refuses to share it
    /// between L3s ("PAE L3 3rd slot is shared"): every PAE pgd gets its own kernel pmd
    /// (Linux under Xen sets `shared_kernel_pmd = 0`).
    fn shared_kernel_pmd(&self) -> bool {
        false
    }
}
