//! Page-table entry bits (`_PAGE_*`) and the protections Linux builds from them.

use bitflags::bitflags;

bitflags! {
    /// i386 page-table entry flags (`_PAGE_*`), valid in both modes except `NX` (PAE only).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PteFlags: u64 {
        /// `_PAGE_PRESENT`: the entry is valid.
        const PRESENT = 0x001;
        /// `_PAGE_RW`: writable.
        const RW = 0x002;
        /// `_PAGE_USER`: accessible from user mode.
        const USER = 0x004;
        /// `_PAGE_PWT`: write-through caching.
        const PWT = 0x008;
        /// `_PAGE_PCD`: caching disabled.
        const PCD = 0x010;
        /// `_PAGE_ACCESSED`: set by the CPU on access.
        const ACCESSED = 0x020;
        /// `_PAGE_DIRTY`: set by the CPU on write.
        const DIRTY = 0x040;
        /// `_PAGE_PSE`: a directory entry mapping a large page.
        const PSE = 0x080;
        /// `_PAGE_GLOBAL`: not flushed on CR3 reload (with CR4.PGE).
        const GLOBAL = 0x100;
        /// `_PAGE_NX`: no execute (PAE, with EFER.NXE).
        const NX = 1 << 63;
    }
}

/// `_PAGE_TABLE`: the flags of a directory entry pointing at a page table.
pub const PAGE_TABLE: PteFlags =
    PteFlags::PRESENT.union(PteFlags::RW).union(PteFlags::USER).union(PteFlags::ACCESSED).union(PteFlags::DIRTY);

/// `PAGE_KERNEL`: the protection of the kernel's linear map.
pub const PAGE_KERNEL: PteFlags =
    PteFlags::PRESENT.union(PteFlags::RW).union(PteFlags::ACCESSED).union(PteFlags::DIRTY);

/// `PAGE_KERNEL_RO`: read-only kernel mapping.
pub const PAGE_KERNEL_RO: PteFlags = PteFlags::PRESENT.union(PteFlags::ACCESSED).union(PteFlags::DIRTY);

/// The flag bits a PAE PDPT entry may hold (anything else is reserved and faults).
pub const PDPT_ALLOWED: PteFlags = PteFlags::PRESENT.union(PteFlags::PWT).union(PteFlags::PCD);
