//! Entries installed "young and dirty", so the hardware never writes a page-table entry.
//!
//! A real x86 MMU sets `_PAGE_ACCESSED` in every entry it walks through and `_PAGE_DIRTY` in
//! the leaf it writes through, whatever the protection of the page holding the table. The
//! VMI and Xen backends check table contents bit for bit (VMI compares every shadow entry
//! with its guest entry; the Xen model keeps a checksum of each validated table and reports
//! any change made without `mmu_update`), and on the host simulator nothing ever sets these
//! bits. On QEMU the first user page the scenario writes would show up as a divergence or an
//! unvalidated change.
//!
//! Linux avoids hardware A/D writes for its own mappings by building them with A and D
//! already set (`PAGE_KERNEL`, `_PAGE_TABLE`); [`YoungDirty`] extends that to every entry the
//! kernel installs: it wraps a backend and sets `ACCESSED` on every present entry written
//! through `set_pte*`/`set_pmd`, and `DIRTY` on every present leaf (a PTE, or a large-page
//! directory entry). PAE PDPT entries (`set_pud`) are left alone: those bits are reserved
//! there. Everything else is forwarded unchanged.

use core::fmt::{self, Write};

use i386_mm::PteFlags;
use paravirt_core::{EntrySlot, Inspect, Pfn, PvMmuOps};

const PRESENT: u64 = PteFlags::PRESENT.bits();
const ACCESSED: u64 = PteFlags::ACCESSED.bits();
const DIRTY: u64 = PteFlags::DIRTY.bits();
const PSE: u64 = PteFlags::PSE.bits();

/// A present last-level entry, accessed and dirty.
fn young_pte(val: u64) -> u64 {
    if val & PRESENT != 0 {
        val | ACCESSED | DIRTY
    } else {
        val
    }
}

/// A present directory entry, accessed (and dirty if it maps a large page).
fn young_pmd(val: u64) -> u64 {
    match val & (PRESENT | PSE) {
        0 | PSE => val,
        PRESENT => val | ACCESSED,
        _ => val | ACCESSED | DIRTY,
    }
}

/// A backend whose entries are installed with the bits the hardware would set.
pub struct YoungDirty<B>(pub B);

impl<B: PvMmuOps> PvMmuOps for YoungDirty<B> {
    fn alloc_pt(&self, pfn: Pfn) {
        self.0.alloc_pt(pfn)
    }
    fn alloc_pd(&self, pfn: Pfn) {
        self.0.alloc_pd(pfn)
    }
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        self.0.alloc_pd_clone(pfn, clone_pfn, start, count)
    }
    fn release_pt(&self, pfn: Pfn) {
        self.0.release_pt(pfn)
    }
    fn release_pd(&self, pfn: Pfn) {
        self.0.release_pd(pfn)
    }
    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.set_pte(slot, young_pte(val)) }
    }
    unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.set_pte_at(mm, addr, slot, young_pte(val)) }
    }
    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.set_pte_atomic(slot, young_pte(val)) }
    }
    unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.set_pte_present(mm, addr, slot, young_pte(val)) }
    }
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.set_pmd(slot, young_pmd(val)) }
    }
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.set_pud(slot, val) }
    }
    unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.pte_clear(mm, addr, slot) }
    }
    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.pmd_clear(slot) }
    }
    fn exit_mmap(&self, mm: Pfn) {
        self.0.exit_mmap(mm)
    }
    fn write_cr3(&self, cr3: u32) -> u32 {
        self.0.write_cr3(cr3)
    }
    fn read_cr3(&self, hw: u32) -> u32 {
        self.0.read_cr3(hw)
    }
    fn flush_tlb_user(&self) {
        self.0.flush_tlb_user()
    }
    fn flush_tlb_kernel(&self) {
        self.0.flush_tlb_kernel()
    }
    fn flush_tlb_single(&self, addr: u32) {
        self.0.flush_tlb_single(addr)
    }
    fn allows_large_pages(&self) -> bool {
        self.0.allows_large_pages()
    }
}

impl<B: Inspect> Inspect for YoungDirty<B> {
    fn backend_name(&self) -> &'static str {
        self.0.backend_name()
    }
    fn pages_held(&self) -> usize {
        self.0.pages_held()
    }
    fn violations(&self) -> usize {
        self.0.violations()
    }
    fn verify(&self, out: &mut dyn Write) -> bool {
        self.0.verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        self.0.page_tables_read_only()
    }
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        self.0.write_stats(out)
    }
}
