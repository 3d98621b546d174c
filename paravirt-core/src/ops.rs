//! The hook trait.

use crate::{native, EntrySlot, Pfn};

/// The paravirt MMU operations a backend may override (Linux's `struct paravirt_ops`, MMU part).
///
/// Every method has an `#[inline(always)]` native default, so a zero-sized backend that
/// overrides nothing compiles to exactly the bare-metal code. Backends keep their state behind
/// `&self` (interior mutability): the hooks are called from under `pgd_lock` and from several
/// CPUs, exactly as in Linux.
///
/// The first five methods are the seed's page-type hooks. They are *notifications*: the caller
/// has already zeroed (or, for [`alloc_pd_clone`](Self::alloc_pd_clone), filled) the page, and
/// no entry points at an announced page before its `alloc_*` hook ran, nor does a released page
/// reach any free pool before its `release_*` hook ran.
///
/// A backend that detects a protocol violation reports it according to its own policy (panic
/// like Linux's `BUG()`, or record and continue); the hooks themselves return nothing, as in
/// Linux.
pub trait PvMmuOps {
    /// `pfn` is becoming a last-level page table (a PTE page).
    #[doc(alias = "paravirt_alloc_pt")]
    #[inline(always)]
    fn alloc_pt(&self, pfn: Pfn) {
        let _ = pfn;
    }

    /// `pfn` is becoming a page directory: the non-PAE `swapper_pg_dir` at boot, or a PAE pmd.
    #[doc(alias = "paravirt_alloc_pd")]
    #[inline(always)]
    fn alloc_pd(&self, pfn: Pfn) {
        let _ = pfn;
    }

    /// `pfn` is becoming a non-PAE page directory whose entries `[start, start + count)` were
    /// just copied from `clone_pfn` (always `swapper_pg_dir`); the rest of it is zero. Called
    /// under `pgd_lock`, so a shadow can be cloned from the same snapshot.
    #[doc(alias = "paravirt_alloc_pd_clone")]
    #[inline(always)]
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        let _ = (pfn, clone_pfn, start, count);
    }

    /// The PTE page `pfn` is about to be freed.
    #[doc(alias = "paravirt_release_pt")]
    #[inline(always)]
    fn release_pt(&self, pfn: Pfn) {
        let _ = pfn;
    }

    /// The directory `pfn` (non-PAE pgd, or PAE pmd) is about to be freed.
    #[doc(alias = "paravirt_release_pd")]
    #[inline(always)]
    fn release_pd(&self, pfn: Pfn) {
        let _ = pfn;
    }

    /// Writes a last-level entry (`set_pte`).
    ///
    /// # Safety
    /// `slot` must describe a valid, aligned entry of a live page table.
    #[inline(always)]
    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { native::set_entry(slot, val) }
    }

    /// Writes a last-level entry of the address space rooted at `mm` for virtual address
    /// `addr` (`set_pte_at`).
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[inline(always)]
    unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        let _ = (mm, addr);
        // SAFETY: forwarded caller contract.
        unsafe { self.set_pte(slot, val) }
    }

    /// Writes a last-level entry atomically with respect to the hardware walker
    /// (`set_pte_atomic`; PAE uses a 64-bit store in Linux, here high half then low half).
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[inline(always)]
    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.set_pte(slot, val) }
    }

    /// Writes a last-level entry known to go from not-present to present (`set_pte_present`).
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[inline(always)]
    unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.set_pte_at(mm, addr, slot, val) }
    }

    /// Writes a directory entry (`set_pmd`): a non-PAE pgd entry (the pmd is folded) or a PAE
    /// pmd entry, pointing at a page table or mapping a large page.
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[inline(always)]
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { native::set_entry(slot, val) }
    }

    /// Writes a PAE top-level (PDPT) entry (`set_pud`, reached through `set_pgd` in PAE).
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[doc(alias = "set_pgd")]
    #[inline(always)]
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { native::set_entry(slot, val) }
    }

    /// Clears a last-level entry (`pte_clear`).
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[inline(always)]
    unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
        let _ = (mm, addr);
        // SAFETY: forwarded caller contract.
        unsafe { native::clear_entry(slot) }
    }

    /// Clears a directory entry (`pmd_clear`).
    ///
    /// # Safety
    /// As for [`set_pte`](Self::set_pte).
    #[inline(always)]
    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { native::clear_entry(slot) }
    }

    /// The address space rooted at `mm` is being torn down; its user mappings and page tables
    /// are about to be freed (`arch_exit_mmap`, a later Linux hook: Xen unpins the tree here so
    /// the teardown writes go direct).
    #[inline(always)]
    fn exit_mmap(&self, mm: Pfn) {
        let _ = mm;
    }

    /// The kernel is loading `cr3` (physical address of a root table). Returns the value the
    /// CPU must really load: the same value natively, a shadow root under a shadowing backend.
    #[inline(always)]
    fn write_cr3(&self, cr3: u32) -> u32 {
        cr3
    }

    /// The kernel reads CR3; `hw` is what the CPU holds. Returns the guest's view of it.
    #[inline(always)]
    fn read_cr3(&self, hw: u32) -> u32 {
        hw
    }

    /// Non-global TLB entries are being flushed (`flush_tlb_user`).
    #[inline(always)]
    fn flush_tlb_user(&self) {}

    /// All TLB entries, global ones included, are being flushed (`flush_tlb_kernel`).
    #[inline(always)]
    fn flush_tlb_kernel(&self) {}

    /// The TLB entry for `addr` is being flushed (`flush_tlb_single`).
    #[inline(always)]
    fn flush_tlb_single(&self, addr: u32) {
        let _ = addr;
    }

    /// Whether the kernel may map memory with large (PSE) pages. Xen PV clears the PSE
    /// feature so that any single page-table page can be made read-only on its own.
    #[inline(always)]
    fn allows_large_pages(&self) -> bool {
        true
    }
}

macro_rules! forward_ops {
    ($($t:tt)*) => {
        $($t)* {
            #[inline(always)]
            fn alloc_pt(&self, pfn: Pfn) { (**self).alloc_pt(pfn) }
            #[inline(always)]
            fn alloc_pd(&self, pfn: Pfn) { (**self).alloc_pd(pfn) }
            #[inline(always)]
            fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
                (**self).alloc_pd_clone(pfn, clone_pfn, start, count)
            }
            #[inline(always)]
            fn release_pt(&self, pfn: Pfn) { (**self).release_pt(pfn) }
            #[inline(always)]
            fn release_pd(&self, pfn: Pfn) { (**self).release_pd(pfn) }
            #[inline(always)]
            unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).set_pte(slot, val) }
            }
            #[inline(always)]
            unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).set_pte_at(mm, addr, slot, val) }
            }
            #[inline(always)]
            unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).set_pte_atomic(slot, val) }
            }
            #[inline(always)]
            unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).set_pte_present(mm, addr, slot, val) }
            }
            #[inline(always)]
            unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).set_pmd(slot, val) }
            }
            #[inline(always)]
            unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).set_pud(slot, val) }
            }
            #[inline(always)]
            unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).pte_clear(mm, addr, slot) }
            }
            #[inline(always)]
            unsafe fn pmd_clear(&self, slot: EntrySlot) {
                // SAFETY: forwarded caller contract.
                unsafe { (**self).pmd_clear(slot) }
            }
            #[inline(always)]
            fn exit_mmap(&self, mm: Pfn) { (**self).exit_mmap(mm) }
            #[inline(always)]
            fn write_cr3(&self, cr3: u32) -> u32 { (**self).write_cr3(cr3) }
            #[inline(always)]
            fn read_cr3(&self, hw: u32) -> u32 { (**self).read_cr3(hw) }
            #[inline(always)]
            fn flush_tlb_user(&self) { (**self).flush_tlb_user() }
            #[inline(always)]
            fn flush_tlb_kernel(&self) { (**self).flush_tlb_kernel() }
            #[inline(always)]
            fn flush_tlb_single(&self, addr: u32) { (**self).flush_tlb_single(addr) }
            #[inline(always)]
            fn allows_large_pages(&self) -> bool { (**self).allows_large_pages() }
        }
    };
}

pub(crate) use forward_ops;

forward_ops!(impl<T: PvMmuOps + ?Sized> PvMmuOps for &T);
