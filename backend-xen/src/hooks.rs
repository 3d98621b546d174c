//! The paravirt hooks: `PvMmuOps` for [`Xen`], each a thin wrapper that counts the call,
//! takes the guest lock and runs the Linux Xen function it mirrors (see [`crate::guest`]).

use crate::guest::{GuestState, ANNOUNCED_PD, ANNOUNCED_PT};
use crate::hypercall::MmuextOp;
use crate::types::PageType;
use crate::xen::Xen;
use i386_mm::{PagingMode, PhysMem};
use paravirt_core::{EntrySlot, Hook, Pfn, PvMmuOps};
use spin::MutexGuard;

// Indices into `Hook::NAMES`, checked at compile time below.
const ALLOC_PT: usize = 0;
const ALLOC_PD: usize = 1;
const ALLOC_PD_CLONE: usize = 2;
const RELEASE_PT: usize = 3;
const RELEASE_PD: usize = 4;
const SET_PTE: usize = 5;
const SET_PTE_AT: usize = 6;
const SET_PTE_ATOMIC: usize = 7;
const SET_PTE_PRESENT: usize = 8;
const SET_PMD: usize = 9;
const SET_PUD: usize = 10;
const PTE_CLEAR: usize = 11;
const PMD_CLEAR: usize = 12;
const EXIT_MMAP: usize = 13;
const WRITE_CR3: usize = 14;
const READ_CR3: usize = 15;
const FLUSH_TLB_USER: usize = 16;
const FLUSH_TLB_KERNEL: usize = 17;
const FLUSH_TLB_SINGLE: usize = 18;

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = {
    let n = Hook::NAMES;
    assert!(same(n[ALLOC_PT], "alloc_pt") && same(n[ALLOC_PD], "alloc_pd"));
    assert!(same(n[ALLOC_PD_CLONE], "alloc_pd_clone") && same(n[RELEASE_PT], "release_pt"));
    assert!(same(n[RELEASE_PD], "release_pd") && same(n[SET_PTE], "set_pte"));
    assert!(same(n[SET_PTE_AT], "set_pte_at") && same(n[SET_PTE_ATOMIC], "set_pte_atomic"));
    assert!(same(n[SET_PTE_PRESENT], "set_pte_present") && same(n[SET_PMD], "set_pmd"));
    assert!(same(n[SET_PUD], "set_pud") && same(n[PTE_CLEAR], "pte_clear"));
    assert!(same(n[PMD_CLEAR], "pmd_clear") && same(n[EXIT_MMAP], "exit_mmap"));
    assert!(same(n[WRITE_CR3], "write_cr3") && same(n[READ_CR3], "read_cr3"));
    assert!(same(n[FLUSH_TLB_USER], "flush_tlb_user") && same(n[FLUSH_TLB_KERNEL], "flush_tlb_kernel"));
    assert!(same(n[FLUSH_TLB_SINGLE], "flush_tlb_single"));
};

impl<M: PagingMode, P: PhysMem, const N: usize> Xen<'_, M, P, N> {
    /// Takes the guest lock and counts a call of hook `hook`.
    fn enter(&self, hook: usize) -> MutexGuard<'_, GuestState<N>> {
        let mut g = self.table.guest.lock();
        g.stats.hooks[hook] += 1;
        g
    }
}

impl<M: PagingMode, P: PhysMem, const N: usize> PvMmuOps for Xen<'_, M, P, N> {
    /// `xen_alloc_pt`: records the page as an announced page table.
    fn alloc_pt(&self, pfn: Pfn) {
        let mut g = self.enter(ALLOC_PT);
        self.alloc_ptpage(&mut g, "alloc_pt", pfn, ANNOUNCED_PT);
    }

    /// `xen_alloc_pd`: records the page as an announced directory.
    fn alloc_pd(&self, pfn: Pfn) {
        let mut g = self.enter(ALLOC_PD);
        self.alloc_ptpage(&mut g, "alloc_pd", pfn, ANNOUNCED_PD);
    }

    /// `xen_alloc_pd_clone`: a no-op, as in Xen (the pgd is pinned when it is loaded).
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        let _ = (pfn, clone_pfn, start, count);
        drop(self.enter(ALLOC_PD_CLONE));
    }

    /// `xen_release_pt`: unpin if pinned, then make the page writable.
    fn release_pt(&self, pfn: Pfn) {
        let mut g = self.enter(RELEASE_PT);
        self.release_ptpage(&mut g, "release_pt", pfn);
    }

    /// `xen_release_pd`: unpin if pinned, then make the page writable.
    fn release_pd(&self, pfn: Pfn) {
        let mut g = self.enter(RELEASE_PD);
        self.release_ptpage(&mut g, "release_pd", pfn);
    }

    /// `xen_set_pte`.
    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        let mut g = self.enter(SET_PTE);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(&mut g, "set_pte", slot, val) }
    }

    /// `xen_set_pte_at`.
    unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        let _ = (mm, addr);
        let mut g = self.enter(SET_PTE_AT);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(&mut g, "set_pte_at", slot, val) }
    }

    /// `xen_set_pte_atomic`.
    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        let mut g = self.enter(SET_PTE_ATOMIC);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(&mut g, "set_pte_atomic", slot, val) }
    }

    /// `set_pte_present` (through `xen_set_pte`).
    unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        let _ = (mm, addr);
        let mut g = self.enter(SET_PTE_PRESENT);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(&mut g, "set_pte_present", slot, val) }
    }

    /// `xen_set_pmd`: links a page table (pinning an announced one first if the directory is
    /// pinned).
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        let mut g = self.enter(SET_PMD);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_dir(&mut g, "set_pmd", slot, val, PageType::L1) }
    }

    /// `xen_set_pud`: links a PAE pmd into a root (pinning an announced one first if the root
    /// is pinned).
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        let mut g = self.enter(SET_PUD);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_dir(&mut g, "set_pud", slot, val, PageType::L2) }
    }

    /// `xen_pte_clear`.
    unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
        let _ = (mm, addr);
        let mut g = self.enter(PTE_CLEAR);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(&mut g, "pte_clear", slot, 0) }
    }

    /// `xen_pmd_clear`.
    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        let mut g = self.enter(PMD_CLEAR);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(&mut g, "pmd_clear", slot, 0) }
    }

    /// `xen_exit_mmap`: unpin the address space so its teardown writes go direct.
    fn exit_mmap(&self, mm: Pfn) {
        let mut g = self.enter(EXIT_MMAP);
        self.xen_exit_mmap(&mut g, mm);
    }

    /// `xen_write_cr3`: pin the tree if needed, then `MMUEXT_NEW_BASEPTR`. The CPU loads the
    /// guest's own root (no shadow).
    fn write_cr3(&self, cr3: u32) -> u32 {
        let mut g = self.enter(WRITE_CR3);
        self.xen_write_cr3(&mut g, cr3)
    }

    /// `xen_read_cr3`: the guest's own root.
    fn read_cr3(&self, hw: u32) -> u32 {
        drop(self.enter(READ_CR3));
        hw
    }

    /// `xen_flush_tlb`: `MMUEXT_TLB_FLUSH_LOCAL`.
    fn flush_tlb_user(&self) {
        drop(self.enter(FLUSH_TLB_USER));
        let _ = self.mmuext_one(MmuextOp::TlbFlushLocal);
    }

    /// `xen_flush_tlb` for the global flush: `MMUEXT_TLB_FLUSH_LOCAL`.
    fn flush_tlb_kernel(&self) {
        drop(self.enter(FLUSH_TLB_KERNEL));
        let _ = self.mmuext_one(MmuextOp::TlbFlushLocal);
    }

    /// `xen_flush_tlb_single`: `MMUEXT_INVLPG_LOCAL`.
    fn flush_tlb_single(&self, addr: u32) {
        drop(self.enter(FLUSH_TLB_SINGLE));
        let _ = self.mmuext_one(MmuextOp::InvlpgLocal(addr));
    }

    /// Xen PV clears PSE: the linear map is built from 4 KiB pages so any one page-table page
    /// can be made read-only on its own.
    fn allows_large_pages(&self) -> bool {
        false
    }
}
