//! Allocation and freeing of page-table pages: `arch/i386/mm/pgtable.c` and
//! `include/asm-i386/pgalloc.h`, with the seed's hooks in the seed's order.

use crate::cpu::Cpu;
use crate::entry::{entry_present, PteFlags, PAGE_TABLE};
use crate::error::MmError;
use crate::kernel::KernelMm;
use crate::mode::PagingMode;
use crate::phys::{alloc_zeroed, read_entry, slot, PhysMem};
use core::sync::atomic::Ordering;
use paravirt_core::{pv, EntrySlot, Pfn, PvMmuOps};

/// Pages a [`MmuGather`] holds before it must flush.
pub const GATHER_PAGES: usize = 16;

/// Linux's `struct mmu_gather`: page-table pages already released with `release_pt`, waiting
/// for the TLB flush after which they may return to the allocator.
#[must_use = "pages gathered are freed only by KernelMm::tlb_finish_mmu"]
pub struct MmuGather {
    pages: [Pfn; GATHER_PAGES],
    n: usize,
}

impl MmuGather {
    /// `tlb_gather_mmu`: an empty gather.
    pub const fn new() -> Self {
        MmuGather { pages: [Pfn(0); GATHER_PAGES], n: 0 }
    }
    /// Pages waiting.
    pub fn pending(&self) -> &[Pfn] {
        &self.pages[..self.n]
    }
}

impl Default for MmuGather {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: PagingMode, B: PvMmuOps, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// `pgd_ctor`: fills a freshly zeroed pgd. Two-level: under `pgd_lock`, copies the kernel
    /// entries of `swapper_pg_dir`, announces the page with
    /// `alloc_pd_clone(pgd, swapper, USER_PTRS_PER_PGD, KERNEL_PGD_PTRS)` and adds it to
    /// `pgd_list`, all in one critical section (so a concurrent kernel-range update reaches
    /// either the copy or the list, and a shadow is cloned from the same snapshot). PAE: copies
    /// the shared kernel pmd entry, no hook, not on the list.
    ///
    /// Fails (before any hook) only when `pgd_list` is full.
    pub fn pgd_ctor(&self, pgd: Pfn) -> Result<(), MmError> {
        let user = M::USER_PTRS_PER_PGD as usize;
        let esz = M::ENTRY_SIZE as usize;
        let n = M::KERNEL_PGD_PTRS as usize * esz;
        let src = self.mem.frame_ptr(self.swapper_pg_dir).wrapping_add(user * esz);
        let dst = self.mem.frame_ptr(pgd).wrapping_add(user * esz);
        if M::PAE {
            // SAFETY: both ranges lie inside distinct frames (`clone_pgd_range`).
            unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
            return Ok(());
        }
        // SAFETY: the user part lies inside the frame.
        unsafe { core::ptr::write_bytes(self.mem.frame_ptr(pgd), 0, user * esz) };
        #[cfg(feature = "bug-clone-outside-lock")]
        // SAFETY: as above (the deliberate bug: no lock orders this copy).
        unsafe {
            core::ptr::copy_nonoverlapping(src, dst, n)
        };
        let mut list = self.pgd_lock.lock();
        if list.is_full() {
            return Err(MmError::TooManyAddressSpaces);
        }
        #[cfg(not(feature = "bug-clone-outside-lock"))]
        // SAFETY: as above; `pgd_lock` orders the copy against kernel-range updates.
        unsafe {
            core::ptr::copy_nonoverlapping(src, dst, n)
        };
        // must happen under lock
        pv::paravirt_alloc_pd_clone(
            &self.backend,
            pgd,
            self.swapper_pg_dir,
            M::USER_PTRS_PER_PGD,
            M::PTRS_PER_PGD - M::USER_PTRS_PER_PGD,
        );
        list.add(pgd);
        Ok(())
    }

    /// `pgd_dtor`: two-level: `release_pd(pgd)` first, then takes `pgd_lock` to remove the
    /// pgd from `pgd_list`. PAE: nothing.
    pub fn pgd_dtor(&self, pgd: Pfn) {
        if M::PAE {
            return;
        }
        pv::paravirt_release_pd(&self.backend, pgd);
        self.pgd_lock.lock().del(pgd);
    }

    /// `pgd_alloc`: a new root with the kernel part in place. PAE: each of the
    /// `USER_PTRS_PER_PGD` user slots gets a pmd page, announced with `alloc_pd` before
    /// `set_pgd` links it; if an allocation fails (`out_oom`), every pmd already installed is
    /// released with `release_pd` and freed, then the pgd, and the call fails with nothing
    /// leaked.
    pub fn pgd_alloc(&self) -> Result<Pfn, MmError> {
        let pgd = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        if let Err(e) = self.pgd_ctor(pgd) {
            self.mem.free_frame(pgd);
            return Err(e);
        }
        if M::PAE {
            for i in 0..M::USER_PTRS_PER_PGD {
                let Some(pmd) = alloc_zeroed(&self.mem) else {
                    // out_oom:
                    self.free_user_pmds(pgd, (0..i).rev());
                    self.pgd_dtor(pgd);
                    self.mem.free_frame(pgd);
                    return Err(MmError::OutOfMemory);
                };
                pv::paravirt_alloc_pd(&self.backend, pmd);
                let s = slot(&self.mem, pgd, i, true);
                // SAFETY: `s` is a PDPT entry of the pgd being built.
                unsafe { pv::set_pud(&self.backend, s, pmd.phys() | PteFlags::PRESENT.bits()) };
            }
        }
        self.live_pgds.fetch_add(1, Ordering::SeqCst);
        Ok(pgd)
    }

    /// `pgd_free`: PAE: for each user slot, `release_pd(pmd)` then free the pmd. Then
    /// `pgd_dtor` and the pgd frame goes back. The user part must already be empty of page
    /// tables (`free_pgtables` ran).
    pub fn pgd_free(&self, pgd: Pfn) {
        if M::PAE {
            self.free_user_pmds(pgd, 0..M::USER_PTRS_PER_PGD);
        }
        self.pgd_dtor(pgd);
        self.mem.free_frame(pgd);
        self.live_pgds.fetch_sub(1, Ordering::SeqCst);
    }

    /// PAE: for each user slot in `slots` (in that order), `release_pd` the pmd it points at,
    /// then free it.
    fn free_user_pmds(&self, pgd: Pfn, slots: impl Iterator<Item = u32>) {
        for i in slots {
            let pmd = Pfn::from_phys(read_entry(&self.mem, pgd, i, true) & M::ADDR_MASK);
            pv::paravirt_release_pd(&self.backend, pmd);
            self.mem.free_frame(pmd);
        }
    }

    /// `pmd_populate(mm, pmd, pte)`: `alloc_pt(pte)` then `set_pmd(pmd, pte_pa | _PAGE_TABLE)`.
    #[inline]
    pub fn pmd_populate(&self, pmd: EntrySlot, pte: Pfn) {
        #[cfg(not(feature = "bug-missing-alloc-pt"))]
        pv::paravirt_alloc_pt(&self.backend, pte);
        // SAFETY: `pmd` is an entry of a live directory.
        unsafe { pv::set_pmd(&self.backend, pmd, pte.phys() | PAGE_TABLE.bits()) };
    }

    /// `pmd_populate_kernel(mm, pmd, pte)`: the same for a kernel page table.
    #[inline]
    pub fn pmd_populate_kernel(&self, pmd: EntrySlot, pte: Pfn) {
        self.pmd_populate(pmd, pte)
    }

    /// `__pte_free_tlb(tlb, pte)`: `release_pt(pte)`, then the page waits in `tlb` for the
    /// flush ([`tlb_finish_mmu`](Self::tlb_finish_mmu)) before it is freed. The entry pointing
    /// at it must already be cleared.
    pub fn pte_free_tlb(&self, tlb: &mut MmuGather, pte: Pfn) {
        pv::paravirt_release_pt(&self.backend, pte);
        if tlb.n == GATHER_PAGES {
            self.tlb_flush_mmu(tlb);
        }
        tlb.pages[tlb.n] = pte;
        tlb.n += 1;
    }

    fn tlb_flush_mmu(&self, tlb: &mut MmuGather) {
        if tlb.n == 0 {
            return;
        }
        self.flush_tlb_user();
        for &p in &tlb.pages[..tlb.n] {
            self.mem.free_frame(p);
        }
        tlb.n = 0;
    }

    /// `tlb_finish_mmu`: flushes the TLB, then frees the gathered pages.
    pub fn tlb_finish_mmu(&self, mut tlb: MmuGather) {
        self.tlb_flush_mmu(&mut tlb);
    }

    /// Writes kernel directory entry `index` of `swapper_pg_dir` into every pgd on
    /// `pgd_list`, under `pgd_lock` (`vmalloc_sync_all`, `set_pmd_pte`): a present entry is
    /// copied, an absent one cleared ("present ≠ present → copy", additions and removals).
    /// PAE shares the kernel pmd, so there is nothing to do.
    pub(crate) fn sync_kernel_pgd(&self, index: u32) {
        if M::PAE {
            return;
        }
        let want = read_entry(&self.mem, self.swapper_pg_dir, index, false);
        let list = self.pgd_lock.lock();
        for &pgd in list.as_slice() {
            let s = slot(&self.mem, pgd, index, false);
            // SAFETY: `s` is an entry of a pgd on `pgd_list`, alive while listed.
            let cur = unsafe { paravirt_core::native::read_entry(s) };
            if cur == want {
                continue;
            }
            if entry_present(want) {
                // SAFETY: as above.
                unsafe { pv::set_pmd(&self.backend, s, want) };
            } else {
                // SAFETY: as above.
                unsafe { pv::pmd_clear(&self.backend, s) };
            }
        }
    }
}
