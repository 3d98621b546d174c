//! Allocation and freeing of page-table pages: `arch/i386/mm/pgtable.c` and
//! `include/asm-i386/pgalloc.h`, with the seed's hooks in the seed's order.

use crate::error::MmError;
use crate::kernel::KernelMm;
use core::sync::atomic::Ordering;
use i386_paging::{alloc_zeroed, read_entry, Cpu, PhysMem};
use paravirt_core::{PagingMode, Pfn, Pmd, PmdSlot, PteFlags, Pud, PvMmuOps, PAGE_TABLE};

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
        MmuGather { pages: [Pfn::new(0); GATHER_PAGES], n: 0 }
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

impl<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// `pgd_ctor`: fills a freshly zeroed pgd. Two-level: under `pgd_lock`, copies the kernel
    /// entries of `swapper_pg_dir`, announces the page with
    /// `alloc_pd_clone(pgd, swapper, USER_PTRS_PER_PGD, KERNEL_PGD_PTRS)` and adds it to
    /// `pgd_list`, all in one critical section (so a concurrent kernel-range update reaches
    /// either the copy or the list, and a shadow is cloned from the same snapshot). PAE with a
    /// shared kernel pmd: copies the kernel pmd entry, no hook, not on the list. PAE when the
    /// backend does not share the kernel pmd (Xen): only adds the pgd to `pgd_list` under
    /// `pgd_lock`; the kernel pmd's copy comes from [`pgd_alloc`](Self::pgd_alloc), inside the
    /// same critical section (Linux's `pgd_ctor` under `!SHARED_KERNEL_PMD`).
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`] when the metadata frame recording `pgd_list`'s links for `pgd`
    /// cannot be allocated, before any hook.
    ///
    /// # Safety
    /// `pgd` must be a frame of this kernel's memory that the caller owns exclusively (freshly
    /// allocated, linked nowhere).
    pub unsafe fn pgd_ctor(&self, pgd: Pfn) -> Result<(), MmError> {
        let user = M::USER_PTRS_PER_PGD as usize;
        let esz = M::ENTRY_SIZE as usize;
        let n = M::KERNEL_PGD_PTRS as usize * esz;
        let src = self.mem.frame_ptr(self.swapper_pg_dir).as_ptr().wrapping_add(user * esz);
        let dst = self.mem.frame_ptr(pgd).as_ptr().wrapping_add(user * esz);
        if self.unshared_kernel_pmd() {
            return self.pgd_lock.lock().add(&self.mem, pgd);
        }
        if M::PAE {
            // SAFETY: both ranges lie inside distinct frames (`clone_pgd_range`).
            unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
            return Ok(());
        }
        // SAFETY: both ranges lie inside distinct frames (`clone_pgd_range`); under `pgd_lock`
        // (except in the loom-only wrong ordering) the copy is ordered against kernel-range
        // updates.
        let clone_pgd_range = || unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
        #[cfg(all(loom, feature = "loom-bug-copy-outside-lock"))]
        clone_pgd_range();
        // The demonstration bug: the whole clone (copy and hook) before `pgd_lock`, with the
        // window to the list add widened so a kernel-range update on another CPU falls in it.
        #[cfg(feature = "bug-clone-outside-lock")]
        {
            clone_pgd_range();
            self.pv().alloc_pd_clone(pgd, self.swapper_pg_dir, M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
            bug_window();
        }
        let mut list = self.pgd_lock.lock();
        // The list's metadata for this pgd first: if it cannot be had, nothing happened.
        #[cfg(not(all(loom, feature = "loom-bug-list-add-outside-lock")))]
        list.add(&self.mem, pgd)?;
        // Nothing is written into the pgd before it could be listed.
        // SAFETY: the user part lies inside the frame, which the caller owns.
        unsafe { core::ptr::write_bytes(self.mem.frame_ptr(pgd).as_ptr(), 0, user * esz) };
        #[cfg(not(any(all(loom, feature = "loom-bug-copy-outside-lock"), feature = "bug-clone-outside-lock")))]
        clone_pgd_range();
        // The seed: "We need to clone the root for non-PAE mode while it is protected under
        // the pgd lock to correctly copy the shadow."
        #[cfg(not(any(all(loom, feature = "loom-bug-clone-hook-outside-lock"), feature = "bug-clone-outside-lock")))]
        self.pv().alloc_pd_clone(pgd, self.swapper_pg_dir, M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
        drop(list);
        #[cfg(all(loom, feature = "loom-bug-clone-hook-outside-lock"))]
        self.pv().alloc_pd_clone(pgd, self.swapper_pg_dir, M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
        #[cfg(all(loom, feature = "loom-bug-list-add-outside-lock"))]
        self.pgd_lock.lock().add(&self.mem, pgd)?;
        Ok(())
    }

    /// `pgd_dtor`: two-level: takes `pgd_lock`, removes the pgd from `pgd_list`, *then*
    /// `release_pd(pgd)`, still under the lock. PAE: takes the pgd off `pgd_list` if it is on it (kernel pmd not
    /// shared); a PAE pgd (the PDPT) is never announced, so never released.
    ///
    /// The seed releases first and unlists after; between the two a kernel-range update on
    /// another CPU walks `pgd_list` and writes into a page the hypervisor was already told is
    /// no longer a page table. Xen's Linux tree fixed it ("removing pgd-s from the global list
    /// rather late"), and later mainline does the same: off the list under `pgd_lock`, then
    /// release, then free.
    ///
    /// # Safety
    /// `pgd` must be a root built by [`pgd_ctor`](Self::pgd_ctor) that the caller owns and that
    /// no CPU has loaded.
    pub unsafe fn pgd_dtor(&self, pgd: Pfn) {
        self.pgd_unlist_and_release(pgd);
    }

    fn pgd_unlist_and_release(&self, pgd: Pfn) {
        if M::PAE {
            if self.unshared_kernel_pmd() {
                self.pgd_lock.lock().del(&self.mem, pgd);
            }
            return;
        }
        // Off the list and released in one `pgd_lock` critical section: a kernel-range update
        // (which walks the list under the lock) either reaches this pgd while it is still a
        // page table or never sees it, and never releases a kernel page table that a pgd
        // taken off the list but not yet released still links.
        #[cfg(not(any(all(loom, feature = "loom-bug-release-before-unlist"), feature = "bug-release-before-unlist")))]
        {
            let mut list = self.pgd_lock.lock();
            list.del(&self.mem, pgd);
            self.pv().release_pd(pgd);
        }
        #[cfg(any(all(loom, feature = "loom-bug-release-before-unlist"), feature = "bug-release-before-unlist"))]
        {
            self.pv().release_pd(pgd);
            #[cfg(feature = "bug-release-before-unlist")]
            bug_window();
            self.pgd_lock.lock().del(&self.mem, pgd);
        }
    }

    /// `pgd_alloc`: a new root with the kernel part in place. PAE: each of the
    /// `USER_PTRS_PER_PGD` user slots gets a pmd page, announced with `alloc_pd` before
    /// `set_pgd` links it; if an allocation fails (`out_oom`), every pmd already installed is
    /// released with `release_pd` and freed, then the pgd, and the call fails with nothing
    /// leaked.
    ///
    /// When the backend does not share the PAE kernel pmd (Xen), the pgd and all four pmds are
    /// allocated first (an allocation failure frees them, no hook was called), then, in one
    /// `pgd_lock` critical section, the pgd joins `pgd_list` (`pgd_ctor`) and each slot gets
    /// its pmd (`pgd_prepopulate_pmd`): the kernel slot's pmd is a copy of `swapper_pg_dir`'s
    /// kernel pmd, and each pmd is announced with `alloc_pd` before `set_pgd` links it. A
    /// kernel-range update therefore reaches either `swapper_pg_dir` before the copy, or the
    /// copy through `pgd_list` (Linux 2.6.26's `pgd_alloc`).
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`], with nothing changed.
    pub fn pgd_alloc(&self) -> Result<Pfn, MmError> {
        if self.unshared_kernel_pmd() {
            return self.pgd_alloc_unshared();
        }
        let pgd = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        // SAFETY: `pgd` was just allocated: this call owns it.
        if let Err(e) = unsafe { self.pgd_ctor(pgd) } {
            self.mem.free_frame(pgd);
            return Err(e);
        }
        if M::PAE {
            for i in 0..M::USER_PTRS_PER_PGD {
                let Some(pmd) = alloc_zeroed(&self.mem) else {
                    return Err(self.pgd_alloc_out_oom(pgd, i));
                };
                self.pv().alloc_pd(pmd);
                self.pv().set_pud(self.pud_slot(pgd, i), Pud::new(pmd, PteFlags::PRESENT));
            }
        }
        self.live_pgds.fetch_add(1, Ordering::SeqCst);
        Ok(pgd)
    }

    /// `pgd_alloc` for PAE with a kernel pmd per pgd (see [`pgd_alloc`](Self::pgd_alloc)).
    #[inline(never)]
    fn pgd_alloc_unshared(&self) -> Result<Pfn, MmError> {
        const SLOTS: usize = 4;
        debug_assert_eq!(M::PTRS_PER_PGD as usize, SLOTS);
        let pgd = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        let mut pmds = [Pfn::new(0); SLOTS];
        for i in 0..SLOTS {
            match alloc_zeroed(&self.mem) {
                Some(p) => pmds[i] = p,
                None => {
                    // `preallocate_pmds` failed: nothing was announced yet.
                    pmds[..i].iter().for_each(|&p| self.mem.free_frame(p));
                    self.mem.free_frame(pgd);
                    return Err(MmError::OutOfMemory);
                }
            }
        }
        let mut list = self.pgd_lock.lock();
        // pgd_ctor: on the list before any kernel entry is copied.
        if let Err(e) = list.add(&self.mem, pgd) {
            drop(list);
            pmds.iter().for_each(|&p| self.mem.free_frame(p));
            self.mem.free_frame(pgd);
            return Err(e);
        }
        // pgd_prepopulate_pmd, still under pgd_lock.
        for (i, &pmd) in (0u32..).zip(pmds.iter()) {
            if i >= M::USER_PTRS_PER_PGD {
                let src = read_entry::<M, Pud, _>(&self.mem, self.swapper_pg_dir, i).pfn();
                // SAFETY: `pmd` was just allocated (this call owns it, nothing links it) and
                // `src` is swapper_pg_dir's kernel pmd; distinct frames, one page each. Writers
                // of swapper_pg_dir's kernel pmd sync every listed pgd under `pgd_lock`, which
                // is held, so the copy is of one snapshot.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        self.mem.frame_ptr(src).as_ptr(),
                        self.mem.frame_ptr(pmd).as_ptr(),
                        paravirt_core::PAGE_SIZE,
                    )
                };
            }
            self.pv().alloc_pd(pmd);
            self.pv().set_pud(self.pud_slot(pgd, i), Pud::new(pmd, PteFlags::PRESENT));
        }
        drop(list);
        self.live_pgds.fetch_add(1, Ordering::SeqCst);
        Ok(pgd)
    }

    /// `pgd_alloc`'s `out_oom` (PAE): the pmds of user slots `[0, installed)` are released and
    /// freed in reverse order, then the pgd. Cold: Linux marks the branch `unlikely`.
    #[cold]
    #[inline(never)]
    fn pgd_alloc_out_oom(&self, pgd: Pfn, installed: u32) -> MmError {
        self.free_user_pmds(pgd, (0..installed).rev());
        self.pgd_unlist_and_release(pgd);
        self.mem.free_frame(pgd);
        MmError::OutOfMemory
    }

    /// `pgd_free`: PAE: for each user slot, `release_pd(pmd)` then free the pmd. Then
    /// `pgd_dtor` and the pgd frame goes back. The user part must already be empty of page
    /// tables (`free_pgtables` ran). PAE with a kernel pmd per pgd: `pgd_dtor` first (off
    /// `pgd_list` under `pgd_lock`, so no kernel-range update writes into the copy released
    /// next), then `release_pd` and free for every slot's pmd, the kernel pmd's copy included.
    ///
    /// # Safety
    /// `pgd` must come from [`pgd_alloc`](Self::pgd_alloc), be owned by the caller, loaded on
    /// no CPU, and hold no user page tables any more.
    pub unsafe fn pgd_free(&self, pgd: Pfn) {
        if self.unshared_kernel_pmd() {
            self.pgd_unlist_and_release(pgd);
            self.free_user_pmds(pgd, 0..M::PTRS_PER_PGD);
            self.mem.free_frame(pgd);
            self.live_pgds.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if M::PAE {
            self.free_user_pmds(pgd, 0..M::USER_PTRS_PER_PGD);
        }
        self.pgd_unlist_and_release(pgd);
        self.mem.free_frame(pgd);
        self.live_pgds.fetch_sub(1, Ordering::SeqCst);
    }

    /// PAE: for each slot in `slots` (in that order), `release_pd` the pmd it points at, then
    /// free it.
    fn free_user_pmds(&self, pgd: Pfn, slots: impl Iterator<Item = u32>) {
        for i in slots {
            let pmd = read_entry::<M, Pud, _>(&self.mem, pgd, i).pfn();
            self.pv().release_pd(pmd);
            self.mem.free_frame(pmd);
        }
    }

    /// `pmd_populate(mm, pmd, pte)`: `alloc_pt(pte)` then `set_pmd(pmd, pte_pa | _PAGE_TABLE)`.
    ///
    /// # Safety
    /// `pmd` must be an empty directory entry of a table the caller owns, and `pte` a zeroed
    /// frame of this kernel's memory that the caller owns and nothing links yet.
    #[inline]
    pub unsafe fn pmd_populate(&self, pmd: PmdSlot, pte: Pfn) {
        self.populate(pmd, pte)
    }

    #[inline(always)]
    pub(crate) fn populate(&self, pmd: PmdSlot, pte: Pfn) {
        #[cfg(not(feature = "bug-missing-alloc-pt"))]
        self.pv().alloc_pt(pte);
        self.pv().set_pmd(pmd, Pmd::new(pte, PAGE_TABLE));
    }

    /// `pmd_populate_kernel(mm, pmd, pte)`: the same for a kernel page table.
    ///
    /// # Safety
    /// As for [`pmd_populate`](Self::pmd_populate).
    #[inline]
    pub unsafe fn pmd_populate_kernel(&self, pmd: PmdSlot, pte: Pfn) {
        self.populate(pmd, pte)
    }

    /// `__pte_free_tlb(tlb, pte)`: `release_pt(pte)`, then the page waits in `tlb` for the
    /// flush ([`tlb_finish_mmu`](Self::tlb_finish_mmu)) before it is freed. The entry pointing
    /// at it must already be cleared.
    ///
    /// # Safety
    /// `pte` must be a page table of this kernel's memory that the caller owns, already
    /// unlinked from every directory.
    pub unsafe fn pte_free_tlb(&self, tlb: &mut MmuGather, pte: Pfn) {
        self.free_pte_tlb(tlb, pte)
    }

    pub(crate) fn free_pte_tlb(&self, tlb: &mut MmuGather, pte: Pfn) {
        self.pv().release_pt(pte);
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

    /// Writes the kernel directory entry mapping `va`, as `swapper_pg_dir` holds it, into every
    /// pgd on `pgd_list`, under `pgd_lock` (`vmalloc_sync_all`, `set_pmd_pte`): the pgd entry
    /// in two-level mode, the entry of the pgd's own kernel pmd in PAE when the kernel pmd is
    /// not shared. A present entry is copied, an absent one cleared ("present ≠ present →
    /// copy", additions and removals). A shared PAE kernel pmd needs nothing.
    ///
    /// Out of line (it takes `pgd_lock` and walks the list), so the callers' code does not
    /// depend on how much of it the compiler would inline.
    #[inline(never)]
    pub(crate) fn sync_kernel_pmd(&self, va: u32) {
        if M::PAE {
            if self.unshared_kernel_pmd() {
                self.sync_kernel_pmd_copies(va);
            }
            return;
        }
        let index = M::pgd_index(va);
        let want: Pmd = read_entry::<M, _, _>(&self.mem, self.swapper_pg_dir, index);
        let list = self.pgd_lock.lock();
        for pgd in list.iter(&self.mem) {
            // A pgd on `pgd_list` is alive while listed.
            let s: PmdSlot = self.entry_slot(pgd, index);
            self.sync_entry(s, want);
        }
    }

    /// [`sync_kernel_pmd`](Self::sync_kernel_pmd) for PAE pgds with their own kernel pmd.
    #[inline(never)]
    fn sync_kernel_pmd_copies(&self, va: u32) {
        let Some(kslot) = self.kernel_pmd_slot(va) else { return };
        let want = kslot.read();
        let list = self.pgd_lock.lock();
        for pgd in list.iter(&self.mem) {
            // A pgd on `pgd_list` is alive while listed, and has its kernel pmd.
            if let Some(s) = self.pmd_slot(pgd, va) {
                self.sync_entry(s, want);
            }
        }
    }

    /// Makes the directory entry `s` hold `want`: copied if present, cleared if not.
    #[inline(always)]
    fn sync_entry(&self, s: PmdSlot, want: Pmd) {
        let cur = s.read();
        if cur == want {
            return;
        }
        if want.is_present() {
            self.pv().set_pmd(s, want);
        } else {
            self.pv().pmd_clear(s);
        }
    }
}

/// The demonstration bugs' widened race window: a busy wait long enough (tens of
/// microseconds under emulation) for another CPU's kernel-range update to land in it. Built
/// only with `bug-clone-outside-lock` or `bug-release-before-unlist`.
#[cfg(any(feature = "bug-clone-outside-lock", feature = "bug-release-before-unlist"))]
#[inline(never)]
fn bug_window() {
    for _ in 0..20_000 {
        core::hint::spin_loop();
    }
}
