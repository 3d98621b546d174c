//! Address spaces: create, map, unmap, protect, translate, activate, destroy.
//!
//! The user-level API on top of the call sites: page tables are allocated with `pmd_populate`
//! (`alloc_pt` first) and freed with `pte_free_tlb` (`release_pt` first). Every operation
//! checks its input first and fails with a typed error, changing nothing.

use crate::error::MmError;
use crate::flags::leaf_flags_allowed;
use crate::kernel::KernelMm;
use crate::pgtable::MmuGather;
use core::marker::PhantomData;
use i386_paging::walk::{translate, Translation};
use i386_paging::{alloc_zeroed, read_entry, Cpu, PhysMem};
use paravirt_core::{PagingMode, Pfn, PmdSlot, Pte, PteFlags, PteSlot, PvMmuOps, TASK_SIZE};

/// A user address space (Linux's `mm_struct`, reduced to its pgd).
///
/// Owned: mutating it needs `&mut`, which stands in for `mm->page_table_lock`. Give it back
/// with [`KernelMm::destroy`]. Dropping it instead leaks its tables, and the leak is caught:
/// [`KernelMm::live_address_spaces`] still counts it and [`KernelMm::shutdown`] refuses with
/// [`MmError::AddressSpacesAlive`].
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

impl<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// Creates an address space (`pgd_alloc`).
    ///
    /// # Errors
    /// As [`pgd_alloc`](Self::pgd_alloc); nothing changed.
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
    pub(crate) fn pte_table_for(&self, pmd: PmdSlot, va: u32) -> Result<(Pfn, bool), MmError> {
        let e = pmd.read();
        if !e.is_present() {
            let pt = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
            self.populate(pmd, pt);
            return Ok((pt, true));
        }
        if e.is_large() {
            return Err(MmError::AlreadyMapped(va));
        }
        let pt = e.pfn();
        if read_entry::<M, Pte, _>(&self.mem, pt, M::pte_index(va)).is_present() {
            return Err(MmError::AlreadyMapped(va));
        }
        Ok((pt, false))
    }

    /// The directory and PTE slots mapping `va` under `root` if its page table exists (not a
    /// large page).
    pub(crate) fn pte_slot_for(&self, root: Pfn, va: u32) -> Option<(PmdSlot, PteSlot)> {
        let pmd = self.pmd_slot(root, va)?;
        let e = pmd.read();
        if !e.is_present() || e.is_large() {
            return None;
        }
        Some((pmd, self.pte_slot(e.pfn(), M::pte_index(va))))
    }

    /// Maps the 4 KiB page at user address `va` to frame `pfn` with `flags` (`PRESENT` is
    /// implied). A missing page table is allocated, zeroed and installed with `pmd_populate`
    /// (`alloc_pt` before `set_pmd`); the entry is written with `set_pte_at`.
    ///
    /// # Errors
    /// [`MmError::Unaligned`], [`MmError::OutOfRange`] (not below `TASK_SIZE`),
    /// [`MmError::PfnOutOfRange`], [`MmError::BadFlags`], [`MmError::AlreadyMapped`],
    /// [`MmError::OutOfMemory`]; nothing changed.
    pub fn map(&self, mm: &mut AddressSpace<M>, va: u32, pfn: Pfn, flags: PteFlags) -> Result<(), MmError> {
        self.check_user(va)?;
        if pfn >= self.mem.max_pfn() {
            return Err(MmError::PfnOutOfRange(pfn));
        }
        self.check_flags(flags, leaf_flags_allowed::<M>(true))?;
        let pmd = self.pmd_slot(mm.pgd, va).ok_or(MmError::NotInitialised)?;
        let (pt, _) = self.pte_table_for(pmd, va)?;
        let pte = self.pte_slot(pt, M::pte_index(va));
        self.pv().set_pte_at(mm.pgd, va, pte, Pte::new(pfn, flags | PteFlags::PRESENT));
        mm.mapped += 1;
        Ok(())
    }

    /// Unmaps the page at `va` and returns its frame (`pte_clear`, then, if `mm` is loaded,
    /// `invlpg`). A page table left empty is unlinked (`pmd_clear`) and released
    /// (`release_pt` through `pte_free_tlb`) instead, and the gather's TLB flush, which covers
    /// the page too, runs before the table is freed.
    ///
    /// # Errors
    /// [`MmError::Unaligned`], [`MmError::OutOfRange`], [`MmError::NotMapped`]; nothing changed.
    pub fn unmap(&self, mm: &mut AddressSpace<M>, va: u32) -> Result<Pfn, MmError> {
        self.check_user(va)?;
        let (pmd, pte) = self.pte_slot_for(mm.pgd, va).ok_or(MmError::NotMapped(va))?;
        let old = pte.read();
        if !old.is_present() {
            return Err(MmError::NotMapped(va));
        }
        self.pv().pte_clear(mm.pgd, va, pte);
        mm.mapped -= 1;
        let pt = pte.table();
        if (0..M::PTRS_PER_PTE).all(|i| !read_entry::<M, Pte, _>(&self.mem, pt, i).is_present()) {
            // The gather's flush covers the page and the table (`free_pgtables`).
            self.pv().pmd_clear(pmd);
            let mut tlb = MmuGather::new();
            self.free_pte_tlb(&mut tlb, pt);
            self.tlb_finish_mmu(tlb);
        } else if self.active_root() == Some(mm.pgd) {
            self.flush_tlb_single(va);
        }
        Ok(old.pfn())
    }

    /// Changes the protection of the mapped page at `va` (`set_pte_at`, then a flush). The
    /// entry goes from the old value to the new one in a single store (one 64-bit store in
    /// PAE), so a concurrent hardware walk sees one or the other, never a mix.
    ///
    /// # Errors
    /// [`MmError::Unaligned`], [`MmError::OutOfRange`], [`MmError::BadFlags`],
    /// [`MmError::NotMapped`]; nothing changed.
    pub fn protect(&self, mm: &mut AddressSpace<M>, va: u32, flags: PteFlags) -> Result<(), MmError> {
        self.check_user(va)?;
        self.check_flags(flags, leaf_flags_allowed::<M>(true))?;
        let (_, pte) = self.pte_slot_for(mm.pgd, va).ok_or(MmError::NotMapped(va))?;
        let old = pte.read();
        if !old.is_present() {
            return Err(MmError::NotMapped(va));
        }
        self.pv().set_pte_at(mm.pgd, va, pte, old.with_flags(flags | PteFlags::PRESENT));
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
        self.pv().exit_mmap(mm.pgd);
        let mut tlb = MmuGather::new();
        self.for_each_dir_entry(mm.pgd, 0..M::USER_PTRS_PER_PGD, |s, base| {
            let e = s.read();
            let pt = e.pfn();
            for pi in 0..M::PTRS_PER_PTE {
                let ps = self.pte_slot(pt, pi);
                if ps.read().is_present() {
                    self.pv().pte_clear(mm.pgd, base | (pi << 12), ps);
                }
            }
            self.pv().pmd_clear(s);
            self.free_pte_tlb(&mut tlb, pt);
        });
        self.tlb_finish_mmu(tlb);
        // SAFETY: `mm` came from `create`, is consumed here, is no longer loaded, and its user
        // page tables were just freed.
        unsafe { self.pgd_free(mm.pgd) };
    }
}
