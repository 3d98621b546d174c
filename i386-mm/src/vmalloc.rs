//! Kernel-range mappings made after boot (the vmalloc area): the writers whose directory
//! updates must reach every pgd, which is why `alloc_pd_clone` runs under `pgd_lock`.

use crate::error::MmError;
use crate::flags::leaf_flags_allowed;
use crate::kernel::KernelMm;
use i386_paging::{read_entry, Cpu, PhysMem};
use paravirt_core::{PagingMode, Pfn, Pte, PteFlags, PvMmuOps, PAGE_OFFSET};

/// Pages [`KernelMm::unmap_kernel_pages`] takes at once at most.
pub const UNMAP_BATCH: usize = 64;

impl<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    fn check_vmalloc(&self, va: u32) -> Result<(), MmError> {
        if va & 0xfff != 0 {
            return Err(MmError::Unaligned(va));
        }
        if !(self.vmalloc_start()..self.vmalloc_end).contains(&va) {
            return Err(MmError::OutOfRange(va));
        }
        Ok(())
    }

    /// Maps kernel virtual address `va` (in the vmalloc area, `[vmalloc_start(), vmalloc_end())`)
    /// to frame `pfn`. A missing page
    /// table is installed in `swapper_pg_dir` with `pmd_populate_kernel` (`alloc_pt` first) and
    /// then, under `pgd_lock`, in every pgd on `pgd_list` (`vmalloc_sync_all`): two-level, its
    /// pgd entry; PAE with a kernel pmd per pgd, the entry of that pgd's copy.
    ///
    /// # Errors
    /// [`MmError::Unaligned`], [`MmError::OutOfRange`] (outside the vmalloc area),
    /// [`MmError::PfnOutOfRange`], [`MmError::BadFlags`], [`MmError::AlreadyMapped`],
    /// [`MmError::OutOfMemory`]; nothing changed.
    pub fn map_kernel_page(&self, va: u32, pfn: Pfn, flags: PteFlags) -> Result<(), MmError> {
        self.check_vmalloc(va)?;
        if pfn >= self.mem.max_pfn() {
            return Err(MmError::PfnOutOfRange(pfn));
        }
        self.check_flags(flags, leaf_flags_allowed::<M>(false))?;
        let _k = self.kernel_lock.lock();
        let pmd = self.kernel_pmd_slot(va).ok_or(MmError::NotInitialised)?;
        let (pt, new) = self.pte_table_for(pmd, va)?;
        if new {
            self.sync_kernel_pmd(va);
        }
        self.pv().set_pte(self.pte_slot(pt, M::pte_index(va)), Pte::new(pfn, flags | PteFlags::PRESENT));
        Ok(())
    }

    /// Unmaps kernel address `va` and returns its frame (`pte_clear`, then `invlpg`). A page
    /// table left empty is removed from `swapper_pg_dir` and, under `pgd_lock`, from every pgd
    /// (`pmd_clear`) instead, the whole TLB is flushed (global entries included: it covers the
    /// page and the table) on every CPU (`flush_tlb_others`), then the table is released
    /// (`release_pt`) and freed. Otherwise the page's entry is flushed on every CPU.
    ///
    /// # Errors
    /// [`MmError::Unaligned`], [`MmError::OutOfRange`] (a user address), [`MmError::NotMapped`]
    /// (nothing vmalloc-mapped there, which includes every kernel address outside the vmalloc
    /// area); nothing changed.
    pub fn unmap_kernel_page(&self, va: u32) -> Result<Pfn, MmError> {
        match self.check_vmalloc(va) {
            // A kernel address outside the vmalloc area (the linear map, the gap above it) has
            // no vmalloc mapping to remove; the linear map is never touched from here.
            Err(MmError::OutOfRange(_)) if va >= PAGE_OFFSET => return Err(MmError::NotMapped(va)),
            r => r?,
        }
        let _k = self.kernel_lock.lock();
        let (pmd, pte) = self.pte_slot_for(self.swapper_pg_dir, va).ok_or(MmError::NotMapped(va))?;
        let old = pte.read();
        if !old.is_present() {
            return Err(MmError::NotMapped(va));
        }
        self.pv().pte_clear(self.swapper_pg_dir, va, pte);
        let pt = pte.table();
        if (0..M::PTRS_PER_PTE).all(|i| !read_entry::<M, Pte, _>(&self.mem, pt, i).is_present()) {
            self.pv().pmd_clear(pmd);
            self.sync_kernel_pmd(va);
            // One flush of everything, global entries included, covers the page and the table.
            self.flush_tlb_kernel();
            self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);
            self.pv().release_pt(pt);
            self.mem.free_frame(pt);
        } else {
            self.flush_tlb_single(va);
            self.flush_tlb_others(va);
        }
        Ok(old.pfn())
    }

    /// Unmaps the kernel addresses `vas` (`vunmap` of a set of pages) and writes their frames
    /// into `frames[..vas.len()]`: every entry is cleared first, each page table left empty is
    /// removed from `swapper_pg_dir` and, under `pgd_lock`, from every pgd; then one TLB flush
    /// on every CPU covers all of them (`flush_tlb_kernel_range`, a full flush on i386), and
    /// only then are the emptied tables released (`release_pt`) and freed.
    ///
    /// # Errors
    /// As [`unmap_kernel_page`](Self::unmap_kernel_page) for the first address that fails,
    /// and [`MmError::AlreadyMapped`] for an address given twice; nothing changed.
    ///
    /// # Panics
    /// If `vas` holds more than [`UNMAP_BATCH`] addresses or `frames` is shorter than `vas`.
    pub fn unmap_kernel_pages(&self, vas: &[u32], frames: &mut [Pfn]) -> Result<(), MmError> {
        assert!(vas.len() <= UNMAP_BATCH && frames.len() >= vas.len(), "unmap_kernel_pages: batch too large");
        for (i, &va) in vas.iter().enumerate() {
            match self.check_vmalloc(va) {
                Err(MmError::OutOfRange(_)) if va >= PAGE_OFFSET => return Err(MmError::NotMapped(va)),
                r => r?,
            }
            if vas[..i].contains(&va) {
                return Err(MmError::AlreadyMapped(va));
            }
        }
        let _k = self.kernel_lock.lock();
        for &va in vas {
            let (_, pte) = self.pte_slot_for(self.swapper_pg_dir, va).ok_or(MmError::NotMapped(va))?;
            if !pte.read().is_present() {
                return Err(MmError::NotMapped(va));
            }
        }
        let mut emptied = [Pfn::new(0); UNMAP_BATCH];
        let mut n = 0;
        for (&va, frame) in vas.iter().zip(frames.iter_mut()) {
            // Present (checked above), and a table is removed only once all its entries are clear.
            let Some((pmd, pte)) = self.pte_slot_for(self.swapper_pg_dir, va) else { continue };
            *frame = pte.read().pfn();
            self.pv().pte_clear(self.swapper_pg_dir, va, pte);
            let pt = pte.table();
            if (0..M::PTRS_PER_PTE).all(|i| !read_entry::<M, Pte, _>(&self.mem, pt, i).is_present()) {
                self.pv().pmd_clear(pmd);
                self.sync_kernel_pmd(va);
                emptied[n] = pt;
                n += 1;
            }
        }
        self.flush_tlb_kernel();
        self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);
        for &pt in &emptied[..n] {
            self.pv().release_pt(pt);
            self.mem.free_frame(pt);
        }
        Ok(())
    }
}
