//! Table geometry per level, entry decoding, entry stores and the content checksum.
//!
//! Xen keeps validated tables consistent by construction: every change goes through a
//! checked update. To notice a write that bypassed it (a bug the kernel demo's CPU catches
//! with CR0.WP, but emulated RAM does not), the model keeps a checksum of each validated
//! table, updated incrementally on every checked update and recomputed by `verify`.

use crate::types::PageType;
use i386_mm::{entry_present, read_entry, slot, PagingMode, PhysMem, PteFlags};
use paravirt_core::{EntrySlot, Pfn};

/// Entries a table of type `ty` has in mode `M` (0 for a non-table type).
#[inline]
pub(crate) fn entries<M: PagingMode>(ty: PageType) -> u32 {
    match ty {
        PageType::L1 => M::PTRS_PER_PTE,
        PageType::L2 if M::PAE => M::PTRS_PER_PMD,
        PageType::L2 => M::PTRS_PER_PGD,
        PageType::L3 if M::PAE => M::PTRS_PER_PGD,
        _ => 0,
    }
}

/// The level of a root in mode `M`: L2 (two-level pgd) or L3 (PAE PDPT).
#[inline]
pub(crate) fn root_type<M: PagingMode>() -> PageType {
    if M::PAE {
        PageType::L3
    } else {
        PageType::L2
    }
}

/// Reads entry `index` of `table`.
#[inline]
pub(crate) fn read<M: PagingMode, P: PhysMem>(mem: &P, table: Pfn, index: u32) -> u64 {
    read_entry(mem, table, index, M::PAE)
}

/// The frame an entry points at.
#[inline]
pub(crate) fn target<M: PagingMode>(e: u64) -> Pfn {
    Pfn::from_phys(e & M::ADDR_MASK)
}

/// Whether an entry is present.
#[inline]
pub(crate) fn present(e: u64) -> bool {
    entry_present(e)
}

/// Whether an entry has the RW bit.
#[inline]
pub(crate) fn writable(e: u64) -> bool {
    e & PteFlags::RW.bits() != 0
}

/// Whether a directory entry maps a large page.
#[inline]
pub(crate) fn large(e: u64) -> bool {
    e & PteFlags::PSE.bits() != 0
}

/// Stores `val` into the entry at `s` in the order a hardware walker tolerates: a present
/// value high half first (the native `set_pte`), a non-present one low half first (the
/// native `pte_clear`), so a walker never sees a present entry with a stale high half.
///
/// # Safety
/// `s.ptr` must be valid for writes of the entry's width and suitably aligned.
#[inline]
pub(crate) unsafe fn store_entry(s: EntrySlot, val: u64) {
    if s.wide && !present(val) {
        // SAFETY: the caller guarantees 8 writable, aligned bytes at `ptr`.
        unsafe {
            s.ptr.write_volatile(val as u32);
            s.ptr.add(1).write_volatile((val >> 32) as u32);
        }
    } else {
        // SAFETY: forwarded caller contract.
        unsafe { paravirt_core::native::set_entry(s, val) }
    }
}

/// The hypervisor's store into entry `index` of `table`, made with the privilege to write a
/// page the guest's own mappings make read-only ([`PhysMem::privileged`]).
#[inline]
pub(crate) fn hv_store<M: PagingMode, P: PhysMem>(mem: &P, table: Pfn, index: u32, val: u64) {
    let s = slot(mem, table, index, M::PAE);
    mem.privileged(|| {
        // SAFETY: `s` lies inside frame `table` of the domain's RAM (callers checked the frame
        // and that `index` is within the table), which the hypervisor may always write.
        unsafe { store_entry(s, val) }
    })
}

/// One entry's contribution to a table checksum (splitmix64 of the index and value).
///
/// The accessed and dirty bits are left out: the processor sets them in the tables it walks
/// (pinned or not), and Xen lets it, so they are no change "without `mmu_update`".
#[inline]
pub(crate) fn mix(index: u32, val: u64) -> u64 {
    let val = val & !(PteFlags::ACCESSED | PteFlags::DIRTY).bits();
    let mut z = val ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The checksum of a table's current contents: the wrapping sum of [`mix`] over its entries,
/// so a single-entry update adjusts it in O(1).
pub(crate) fn checksum<M: PagingMode, P: PhysMem>(mem: &P, table: Pfn, ty: PageType) -> u64 {
    (0..entries::<M>(ty)).fold(0u64, |acc, i| acc.wrapping_add(mix(i, read::<M, P>(mem, table, i))))
}
