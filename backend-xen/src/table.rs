//! Table geometry per level, entry decoding, entry stores and the content checksum.
//!
//! Entries are decoded only here, with the entry type of their level ([`Pte`] in an L1,
//! [`Pmd`] in an L2, [`Pud`] in a PAE L3): [`decode`] turns a raw table word into what it
//! references. Every store the hypervisor makes goes through [`native::set`] (one store of
//! the entry's width: a present→present change is never visible half-written).
//!
//! Xen keeps validated tables consistent by construction: every change goes through a
//! checked update. To notice a write that bypassed it (a bug the kernel demo's CPU catches
//! with CR0.WP, but emulated RAM does not), the model keeps a checksum of each validated
//! table, updated incrementally on every checked update and recomputed by `verify`.

use crate::types::PageType;
use i386_paging::{read_raw, slot, PagingMode, PhysMem, PteFlags};
use paravirt_core::{native, Entry, Pfn, Pmd, Pte, Pud};

/// Entries a table of type `ty` has in mode `M` (0 for a non-table type).
#[inline]
pub(crate) fn entries<M: PagingMode>(ty: PageType) -> u32 {
    match ty {
        PageType::L1 => M::PTRS_PER_PTE,
        PageType::L2 | PageType::PaeXenL2 if M::PAE => M::PTRS_PER_PMD,
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

/// Reads entry `index` of `table` as a raw word (one load of the entry's width).
#[inline]
pub(crate) fn read<M: PagingMode, P: PhysMem>(mem: &P, table: Pfn, index: u32) -> u64 {
    read_raw::<M, P>(mem, table, index)
}

/// What an entry of a table of a given type references, decoded with its level's entry type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Not present (or the table type has no entries).
    Empty,
    /// An L1 entry ([`Pte`]) mapping the frame `pfn`.
    Page {
        /// The frame mapped.
        pfn: Pfn,
        /// The mapping is writable (`_PAGE_RW`).
        writable: bool,
    },
    /// An L2 entry ([`Pmd`]) mapping a large page.
    Large,
    /// An L2 or L3 entry ([`Pmd`], [`Pud`]) pointing at the table `pfn`.
    Table {
        /// The table.
        pfn: Pfn,
    },
}

/// Decodes the raw word `raw` of a table of type `ty`.
pub(crate) fn decode(ty: PageType, raw: u64) -> Decoded {
    match ty {
        PageType::L1 => {
            let e = Pte::from_raw(raw);
            if !e.is_present() {
                return Decoded::Empty;
            }
            Decoded::Page { pfn: e.pfn(), writable: e.flags().contains(PteFlags::RW) }
        }
        PageType::L2 | PageType::PaeXenL2 => {
            let e = Pmd::from_raw(raw);
            if !e.is_present() {
                Decoded::Empty
            } else if e.is_large() {
                Decoded::Large
            } else {
                Decoded::Table { pfn: e.pfn() }
            }
        }
        PageType::L3 => {
            let e = Pud::from_raw(raw);
            if !e.is_present() {
                return Decoded::Empty;
            }
            Decoded::Table { pfn: e.pfn() }
        }
        PageType::None | PageType::Writable => Decoded::Empty,
    }
}

/// The hypervisor's store of the raw word `raw` into entry `index` of `table` (a table of type
/// `ty`, or an ordinary page), made with the privilege to write a page the guest's own mappings
/// make read-only ([`PhysMem::privileged`]). One [`native::set`] of the entry's width.
///
/// # Panics
/// If `table` is not a frame of `mem` or `index` is past the end of a table (callers check
/// both first).
pub(crate) fn hv_store<M: PagingMode, P: PhysMem>(mem: &P, table: Pfn, ty: PageType, index: u32, raw: u64) {
    match ty {
        PageType::L2 | PageType::PaeXenL2 => store::<M, Pmd, P>(mem, table, index, Pmd::from_raw(raw)),
        PageType::L3 => store::<M, Pud, P>(mem, table, index, Pud::from_raw(raw)),
        PageType::L1 | PageType::None | PageType::Writable => store::<M, Pte, P>(mem, table, index, Pte::from_raw(raw)),
    }
}

fn store<M: PagingMode, E: Entry, P: PhysMem>(mem: &P, table: Pfn, index: u32, val: E) {
    // SAFETY: the slot is used only inside this function, while `mem` is borrowed and `table`
    // is a frame of it (`slot` panics otherwise).
    let s = unsafe { slot::<M, E, P>(mem, table, index) };
    mem.privileged(|| native::set(s, val));
}

/// Xen's `BASE_DISALLOW_MASK` (`xen/include/asm-x86/x86_32/page.h`: "Disallow unused flag
/// bits plus PAT/PSE, PCD, PWT and GLOBAL. Permit the NX bit"), as raw entry bits: `0x198`,
/// and in PAE the flag bits above a 44-bit frame address (bits 44–62).
const fn base_disallow<M: PagingMode>() -> u64 {
    let low = 0x198;
    if M::PAE {
        low | 0x7fff_f000_0000_0000
    } else {
        low
    }
}

/// `_PAGE_PAT | _PAGE_PCD | _PAGE_PWT` (`PAGE_CACHE_ATTRS`).
const PAGE_CACHE_ATTRS: u64 = 0x98;

/// `L3_DISALLOW_MASK` (`0xFFFFF1FE`, "must-be-zero"): a PAE L3 entry may hold PRESENT, the
/// available bits 9–11 and the address, nothing else (bits 1–8 and 44–63).
pub(crate) const L3_DISALLOW: u64 = 0xffff_f000_0000_01fe;

/// The flag bits (raw entry bits) a present entry of a table of type `ty` may not set:
/// `l1_disallow_mask(d)` for an L1 (`PAGE_CACHE_ATTRS` allowed when the domain has I/O
/// capabilities), `L2_DISALLOW_MASK` for an L2, `L3_DISALLOW_MASK` for a PAE L3.
pub(crate) const fn disallow_mask<M: PagingMode>(ty: PageType, io_caps: bool) -> u64 {
    match ty {
        PageType::L1 if io_caps => base_disallow::<M>() & !PAGE_CACHE_ATTRS,
        PageType::L1 | PageType::L2 | PageType::PaeXenL2 => base_disallow::<M>(),
        PageType::L3 => L3_DISALLOW,
        PageType::None | PageType::Writable => 0,
    }
}

/// The Xen-private slots of an L2: entries from `HYPERVISOR_VIRT_START` (`virt_start`, a
/// virtual address) up. Every two-level L2 has them; in PAE only the L2 of slot 3 does
/// (`is_guest_l2_slot`). Returns the first private index, or the table's size if none.
pub(crate) fn first_private_slot<M: PagingMode>(ty: PageType, virt_start: u32) -> u32 {
    match ty {
        PageType::PaeXenL2 => (virt_start >> M::PMD_SHIFT) & (M::PTRS_PER_PMD - 1),
        PageType::L2 if !M::PAE => virt_start >> M::PGDIR_SHIFT,
        _ => entries::<M>(ty),
    }
}

/// One entry's contribution to a table checksum (splitmix64 of the index and raw value).
///
/// The accessed and dirty bits are left out: the processor sets them in the tables it walks
/// (pinned or not), and Xen lets it, so they are no change "without `mmu_update`".
#[inline]
pub(crate) fn mix(index: u32, raw: u64) -> u64 {
    let val = raw & !(PteFlags::ACCESSED | PteFlags::DIRTY).bits();
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
