//! Address spaces: create, map, unmap, protect, translate, activate, destroy.
//!
//! The user-level API on top of the call sites: page tables are allocated with `pmd_populate`
//! (`alloc_pt` first) and freed with `pte_free_tlb` (`release_pt` first). Every operation
//! checks its input first and fails with a typed error, changing nothing.

use crate::cpu::Cpu;
use crate::entry::{entry_flags, entry_present, leaf_flags_allowed, PteFlags};
use crate::error::MmError;
use crate::kernel::KernelMm;
use crate::mode::{PagingMode, TASK_SIZE};
use crate::pgtable::MmuGather;
use crate::phys::{alloc_zeroed, read_entry, slot, PhysMem};
use crate::walk::{translate, Translation};
use core::marker::PhantomData;
use paravirt_core::{native, pv, EntrySlot, Pfn, PvMmuOps};

/// A user address space (Linux's `mm_struct`, reduced to its pgd).
///
/// Owned: mutating it needs `&mut`, which stands in for `mm->page_table_lock`. Give it back
/// with [`KernelMm::destroy`]; dropping it leaks its tables.
#[derive(Debug)]
#[must_use = "an address space must be given back with KernelMm::destroy"]
pub struct AddressSpace<M: PagingMode> {
    pgd: Pfn,
    mapped: usize,
    _mode: PhantomData<M>,
}

impl<M: PagingMode> AddressSpace<M> {
    /// The root (`mm->pgd`).
    pub fn pgd(&self) -> Pfn {
        self.pgd
    }
    /// Pages currently mapped.
    pub fn mapped_pages(&self) -> usize {
        self.mapped
    }
}

impl<M: PagingMode, B: PvMmuOps, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// Creates an address space (`pgd_alloc`).
    pub fn create(&self) -> Result<AddressSpace<M>, MmError> {
        let pgd = self.pgd_alloc()?;
        Ok(AddressSpace { pgd, mapped: 0, _mode: PhantomData })
    }

    fn check_user(&self, va: u32) -> Result<(), MmError> {
        if va & 0xfff != 0 {
            return Err(MmError::Unaligned(va));
        }
        if va >= TASK_SIZE {
            return Err(MmError::OutOfRange(va));
        }
        Ok(())
    }

    pub(crate) fn check_flags(&self, flags: PteFlags, allowed: PteFlags) -> Result<(), MmError> {
        if !allowed.contains(flags) {
            return Err(MmError::BadFlags(flags.bits()));
        }
        Ok(())
    }

    /// The page table that will hold `va`'s entry under directory entry `pmd`: the one linked
    /// there, or a new zeroed one announced and linked with `pmd_populate` (`alloc_pt`, then
    /// `set_pmd`). Refused, with nothing changed, if `va` is already mapped or no frame is
    /// left. Returns the table and whether it is new.
    pub(crate) fn pte_table_for(&self, pmd: EntrySlot, va: u32) -> Result<(Pfn, bool), MmError> {
        // SAFETY: `pmd` is an entry of a live directory.
        let e = unsafe { native::read_entry(pmd) };
        if !entry_present(e) {
            let pt = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
            self.pmd_populate(pmd, pt);
            return Ok((pt, true));
        }
        if entry_flags(e).contains(PteFlags::PSE) {
            return Err(MmError::AlreadyMapped(va));
        }
        let pt = Pfn::from_phys(e & M::ADDR_MASK);
        if entry_present(read_entry(&self.mem, pt, M::pte_index(va), M::PAE)) {
            return Err(MmError::AlreadyMapped(va));
        }
        Ok((pt, false))
    }

    /// The PTE slot mapping `va` under `root` if its page table exists (not a large page).
    pub(crate) fn pte_slot(&self, root: Pfn, va: u32) -> Option<(EntrySlot, EntrySlot)> {
        let pmd = self.pmd_slot(root, va)?;
        // SAFETY: `pmd` is an entry of a live directory.
        let e = unsafe { native::read_entry(pmd) };
        if !entry_present(e) || entry_flags(e).contains(PteFlags::PSE) {
            return None;
        }
        let pt = Pfn::from_phys(e & M::ADDR_MASK);
        Some((pmd, slot(&self.mem, pt, M::pte_index(va), M::PAE)))
    }

    /// Maps the 4 KiB page at user address `va` to frame `pfn` with `flags` (`PRESENT` is
    /// implied). A missing page table is allocated, zeroed and installed with `pmd_populate`
    /// (`alloc_pt` before `set_pmd`); the entry is written with `set_pte_at`.
    pub fn map(&self, mm: &mut AddressSpace<M>, va: u32, pfn: Pfn, flags: PteFlags) -> Result<(), MmError> {
        self.check_user(va)?;
        if pfn >= self.mem.max_pfn() {
            return Err(MmError::PfnOutOfRange(pfn));
        }
        self.check_flags(flags, leaf_flags_allowed::<M>(true))?;
        let pmd = self.pmd_slot(mm.pgd, va).ok_or(MmError::NotInitialised)?;
        let (pt, _) = self.pte_table_for(pmd, va)?;
        let pte = slot(&self.mem, pt, M::pte_index(va), M::PAE);
        let val = pfn.phys() | (flags | PteFlags::PRESENT).bits();
        // SAFETY: `pte` is an entry of a page table of this address space.
        unsafe { pv::set_pte_at(&self.backend, mm.pgd, va, pte, val) };
        mm.mapped += 1;
        Ok(())
    }

    /// Unmaps the page at `va` and returns its frame (`pte_clear`, then the TLB entry is
    /// flushed). A page table left empty is unlinked (`pmd_clear`), released (`release_pt`
    /// through `pte_free_tlb`) and freed after the flush.
    pub fn unmap(&self, mm: &mut AddressSpace<M>, va: u32) -> Result<Pfn, MmError> {
        self.check_user(va)?;
        let (pmd, pte) = self.pte_slot(mm.pgd, va).ok_or(MmError::NotMapped(va))?;
        // SAFETY: `pte` is an entry of a page table of this address space.
        let old = unsafe { native::read_entry(pte) };
        if !entry_present(old) {
            return Err(MmError::NotMapped(va));
        }
        // SAFETY: as above.
        unsafe { pv::pte_clear(&self.backend, mm.pgd, va, pte) };
        mm.mapped -= 1;
        if self.active_root() == Some(mm.pgd) {
            self.flush_tlb_single(va);
        }
        let pt = pte.table;
        if (0..M::PTRS_PER_PTE).all(|i| !entry_present(read_entry(&self.mem, pt, i, M::PAE))) {
            // SAFETY: `pmd` is the directory entry pointing at `pt`.
            unsafe { pv::pmd_clear(&self.backend, pmd) };
            let mut tlb = MmuGather::new();
            self.pte_free_tlb(&mut tlb, pt);
            self.tlb_finish_mmu(tlb);
        }
        Ok(Pfn::from_phys(old & M::ADDR_MASK))
    }

    /// Changes the protection of the mapped page at `va` (`set_pte_at`, then a flush).
    pub fn protect(&self, mm: &mut AddressSpace<M>, va: u32, flags: PteFlags) -> Result<(), MmError> {
        self.check_user(va)?;
        self.check_flags(flags, leaf_flags_allowed::<M>(true))?;
        let (_, pte) = self.pte_slot(mm.pgd, va).ok_or(MmError::NotMapped(va))?;
        // SAFETY: `pte` is an entry of a page table of this address space.
        let old = unsafe { native::read_entry(pte) };
        if !entry_present(old) {
            return Err(MmError::NotMapped(va));
        }
        let val = (old & M::ADDR_MASK) | (flags | PteFlags::PRESENT).bits();
        // SAFETY: as above.
        unsafe { pv::set_pte_at(&self.backend, mm.pgd, va, pte, val) };
        if self.active_root() == Some(mm.pgd) {
            self.flush_tlb_single(va);
        }
        Ok(())
    }

    /// Translates `va` in `mm` with the software walker (user and kernel range).
    pub fn translate(&self, mm: &AddressSpace<M>, va: u32) -> Option<Translation> {
        translate::<M, _>(&self.mem, mm.pgd, va)
    }

    /// Translates `va` through any root.
    pub fn translate_root(&self, root: Pfn, va: u32) -> Option<Translation> {
        translate::<M, _>(&self.mem, root, va)
    }

    /// Switches to `mm` (`switch_mm`: `load_cr3(next->pgd)` through the backend's
    /// `write_cr3`).
    pub fn activate(&self, mm: &AddressSpace<M>) {
        self.load_cr3(mm.pgd);
    }

    /// Destroys `mm` (`exit_mmap` + `pgd_free`): switches to `swapper_pg_dir` if `mm` is loaded,
    /// calls the `exit_mmap` hook, unmaps every user page (the frames are the caller's, not freed here), frees every user
    /// page table (`pmd_clear`, `pte_free_tlb` → `release_pt`, flush, free) and frees the pgd
    /// (`pgd_free`: PAE `release_pd` per pmd; `pgd_dtor`: two-level `release_pd`).
    pub fn destroy(&self, mm: AddressSpace<M>) {
        if self.active_root() == Some(mm.pgd) {
            self.activate_swapper();
        }
        pv::exit_mmap(&self.backend, mm.pgd);
        let mut tlb = MmuGather::new();
        for gi in 0..M::USER_PTRS_PER_PGD {
            let (pmd, first, last) = if M::PAE {
                let e = read_entry(&self.mem, mm.pgd, gi, true);
                (Pfn::from_phys(e & M::ADDR_MASK), 0, M::PTRS_PER_PMD - 1)
            } else {
                (mm.pgd, gi, gi)
            };
            for mi in first..=last {
                let s = slot(&self.mem, pmd, mi, M::PAE);
                // SAFETY: `s` is an entry of this address space's directory.
                let e = unsafe { native::read_entry(s) };
                if !entry_present(e) {
                    continue;
                }
                let pt = Pfn::from_phys(e & M::ADDR_MASK);
                let base = if M::PAE { (gi << M::PGDIR_SHIFT) | (mi << M::PMD_SHIFT) } else { gi << M::PGDIR_SHIFT };
                for pi in 0..M::PTRS_PER_PTE {
                    let ps = slot(&self.mem, pt, pi, M::PAE);
                    // SAFETY: `ps` is an entry of a page table of this address space.
                    if entry_present(unsafe { native::read_entry(ps) }) {
                        // SAFETY: as above.
                        unsafe { pv::pte_clear(&self.backend, mm.pgd, base | (pi << 12), ps) };
                    }
                }
                // SAFETY: `s` is the directory entry pointing at `pt`.
                unsafe { pv::pmd_clear(&self.backend, s) };
                self.pte_free_tlb(&mut tlb, pt);
            }
        }
        self.tlb_finish_mmu(tlb);
        self.pgd_free(mm.pgd);
    }
}
