//! Kernel-range mappings made after boot (the vmalloc area): the writers whose directory
//! updates must reach every pgd, which is why `alloc_pd_clone` runs under `pgd_lock`.

use crate::cpu::Cpu;
use crate::entry::{entry_present, leaf_flags_allowed, PteFlags};
use crate::error::MmError;
use crate::kernel::KernelMm;
use crate::mode::{PagingMode, VMALLOC_END, VMALLOC_START};
use crate::phys::{read_entry, slot, PhysMem};
use paravirt_core::{native, pv, Pfn, PvMmuOps};

impl<M: PagingMode, B: PvMmuOps, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    fn check_vmalloc(&self, va: u32) -> Result<(), MmError> {
        if va & 0xfff != 0 {
            return Err(MmError::Unaligned(va));
        }
        if !(VMALLOC_START..VMALLOC_END).contains(&va) {
            return Err(MmError::OutOfRange(va));
        }
        Ok(())
    }

    /// Maps kernel address `va` (in `[VMALLOC_START, VMALLOC_END)`) to `pfn`. A missing page
    /// table is installed in `swapper_pg_dir` with `pmd_populate_kernel` (`alloc_pt` first) and
    /// then, under `pgd_lock`, in every pgd on `pgd_list` (`vmalloc_sync_all`).
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
            self.sync_kernel_pgd(M::pgd_index(va));
        }
        let pte = slot(&self.mem, pt, M::pte_index(va), M::PAE);
        // SAFETY: `pte` is an entry of a kernel page table.
        unsafe { pv::set_pte(&self.backend, pte, pfn.phys() | (flags | PteFlags::PRESENT).bits()) };
        Ok(())
    }

    /// Unmaps kernel address `va` and returns its frame. A page table left empty is removed
    /// from `swapper_pg_dir` and, under `pgd_lock`, from every pgd (`pmd_clear`), the TLBs are
    /// flushed, then it is released (`release_pt`) and freed.
    pub fn unmap_kernel_page(&self, va: u32) -> Result<Pfn, MmError> {
        self.check_vmalloc(va)?;
        let _k = self.kernel_lock.lock();
        let (pmd, pte) = self.pte_slot(self.swapper_pg_dir, va).ok_or(MmError::NotMapped(va))?;
        // SAFETY: `pte` is an entry of a kernel page table.
        let old = unsafe { native::read_entry(pte) };
        if !entry_present(old) {
            return Err(MmError::NotMapped(va));
        }
        // SAFETY: as above.
        unsafe { pv::pte_clear(&self.backend, self.swapper_pg_dir, va, pte) };
        self.flush_tlb_single(va);
        let pt = pte.table;
        if (0..M::PTRS_PER_PTE).all(|i| !entry_present(read_entry(&self.mem, pt, i, M::PAE))) {
            // SAFETY: `pmd` is the kernel directory entry pointing at `pt`.
            unsafe { pv::pmd_clear(&self.backend, pmd) };
            self.sync_kernel_pgd(M::pgd_index(va));
            self.flush_tlb_kernel();
            pv::paravirt_release_pt(&self.backend, pt);
            self.mem.free_frame(pt);
        }
        Ok(Pfn::from_phys(old & M::ADDR_MASK))
    }
}
