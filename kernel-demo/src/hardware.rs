//! What real (emulated) hardware does that the host simulator does not, and how each backend
//! copes: the processor sets `_PAGE_ACCESSED` in every entry it walks through and
//! `_PAGE_DIRTY` in the leaf it writes through, whatever the protection of the page holding
//! the table. On the host simulator nothing ever sets these bits.
//!
//! - **VMI**: the CPU walks the *shadows*, so the bits land there and never in the guest's
//!   tables. A shadow-paging hypervisor copies them back (the guest's page reclaim and
//!   writeback read them): the backend does that in `Vmi::sync_accessed_dirty`, which
//!   [`Hardware`] calls before every cross-check, so shadow and guest agree bit for bit. The
//!   count of entries synced shows the CPU really walked the shadows.
//! - **Xen**: the CPU walks the guest's pinned tables and sets the bits in place; the Xen
//!   model keeps a checksum of every validated table and reports any change made without
//!   `mmu_update`, A/D bits included. So the kernel installs every entry the way Linux
//!   builds its own mappings (`PAGE_KERNEL`, `_PAGE_TABLE`): with A (and, for a leaf, D)
//!   already set, and the hardware never writes an entry. PAE PDPT entries are left alone
//!   (those bits are reserved there; see [`crate::x86cpu`] for QEMU's PDPT writes).
//!
//! [`Hardware`] wraps a backend and forwards every hook, applying its backend's
//! [`OnHardware`] choices.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use i386_mm::PteFlags;
use paravirt_core::{EntrySlot, Inspect, Pfn, PvMmuOps};

const PRESENT: u64 = PteFlags::PRESENT.bits();
const ACCESSED: u64 = PteFlags::ACCESSED.bits();
const DIRTY: u64 = PteFlags::DIRTY.bits();
const PSE: u64 = PteFlags::PSE.bits();

/// How a backend copes with the bits the hardware sets (see the module documentation).
pub trait OnHardware {
    /// Install present entries with A (and D for a leaf) already set.
    const INSTALL_YOUNG: bool;
    /// Runs before every cross-check; returns how many guest entries it updated.
    fn before_verify(&self) -> usize {
        0
    }
}

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

/// A backend (by reference) plus its way of coping with hardware-set A/D bits.
pub struct Hardware<'b, B> {
    inner: &'b B,
    /// Guest entries [`OnHardware::before_verify`] updated so far.
    synced: AtomicUsize,
}

impl<'b, B: OnHardware> Hardware<'b, B> {
    /// Wraps `inner`.
    pub fn new(inner: &'b B) -> Self {
        Self { inner, synced: AtomicUsize::new(0) }
    }

    fn pte(val: u64) -> u64 {
        if B::INSTALL_YOUNG {
            young_pte(val)
        } else {
            val
        }
    }

    fn pmd(val: u64) -> u64 {
        if B::INSTALL_YOUNG {
            young_pmd(val)
        } else {
            val
        }
    }
}

impl<B: PvMmuOps + OnHardware> PvMmuOps for Hardware<'_, B> {
    fn alloc_pt(&self, pfn: Pfn) {
        self.inner.alloc_pt(pfn)
    }
    fn alloc_pd(&self, pfn: Pfn) {
        self.inner.alloc_pd(pfn)
    }
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        self.inner.alloc_pd_clone(pfn, clone_pfn, start, count)
    }
    fn release_pt(&self, pfn: Pfn) {
        self.inner.release_pt(pfn)
    }
    fn release_pd(&self, pfn: Pfn) {
        self.inner.release_pd(pfn)
    }
    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte(slot, Self::pte(val)) }
    }
    unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte_at(mm, addr, slot, Self::pte(val)) }
    }
    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte_atomic(slot, Self::pte(val)) }
    }
    unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte_present(mm, addr, slot, Self::pte(val)) }
    }
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pmd(slot, Self::pmd(val)) }
    }
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pud(slot, val) }
    }
    unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.pte_clear(mm, addr, slot) }
    }
    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.pmd_clear(slot) }
    }
    fn exit_mmap(&self, mm: Pfn) {
        self.inner.exit_mmap(mm)
    }
    fn write_cr3(&self, cr3: u32) -> u32 {
        self.inner.write_cr3(cr3)
    }
    fn read_cr3(&self, hw: u32) -> u32 {
        self.inner.read_cr3(hw)
    }
    fn flush_tlb_user(&self) {
        self.inner.flush_tlb_user()
    }
    fn flush_tlb_kernel(&self) {
        self.inner.flush_tlb_kernel()
    }
    fn flush_tlb_single(&self, addr: u32) {
        self.inner.flush_tlb_single(addr)
    }
    fn allows_large_pages(&self) -> bool {
        self.inner.allows_large_pages()
    }
}

impl<B: Inspect + OnHardware> Inspect for Hardware<'_, B> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn pages_held(&self) -> usize {
        self.inner.pages_held()
    }
    fn violations(&self) -> usize {
        self.inner.violations()
    }
    /// Runs the backend's [`OnHardware::before_verify`], then its cross-check.
    fn verify(&self, out: &mut dyn Write) -> bool {
        self.synced.fetch_add(self.inner.before_verify(), Ordering::Relaxed);
        self.inner.verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        self.inner.page_tables_read_only()
    }
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        self.inner.write_stats(out)?;
        if B::INSTALL_YOUNG {
            writeln!(out, "on hardware: entries installed accessed and dirty, so the CPU never writes a table")
        } else {
            writeln!(
                out,
                "on hardware: {} guest entries received the accessed/dirty bits the CPU set in their shadow",
                self.synced.load(Ordering::Relaxed)
            )
        }
    }
}
