//! Page types: what the hypervisor believes a frame is (Xen's `PGT_*` in `type_info`).

use core::fmt;

/// The type of a frame, as Xen's `page_info.type_info` records it.
///
/// A frame has exactly one type at a time, held by a *type count* of references: each
/// writable mapping in a validated L1 for [`Writable`](PageType::Writable); each validated
/// upper-level entry pointing at it, plus the pin, plus the base pointer, for a page-table
/// type. When the count drops to zero the type is released ([`None`](PageType::None)); for a
/// page-table type that *devalidates* the table, dropping the references its own entries held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PageType {
    /// No type: an ordinary frame with no type references (`PGT_none`).
    #[default]
    None = 0,
    /// Mapped writable by at least one entry of a validated L1 (`PGT_writable_page`).
    Writable = 1,
    /// A validated last-level page table (`PGT_l1_page_table`).
    L1 = 2,
    /// A validated page directory: the two-level pgd, or a PAE pmd (`PGT_l2_page_table`).
    L2 = 3,
    /// A validated PAE root, the 4-entry PDPT (`PGT_l3_page_table`).
    L3 = 4,
    /// A validated PAE pmd referenced from slot 3 of an L3 (`PGT_l2_page_table |
    /// PGT_pae_xen_l2`): the L2 that holds Xen's own mappings in its top slots. It is a type
    /// of its own: such a page cannot be referenced from another slot, pinned as a plain L2,
    /// or shared by two L3s.
    PaeXenL2 = 5,
}

impl PageType {
    /// Whether this is a page-table type (L1, L2 or L3).
    #[inline]
    pub const fn is_table(self) -> bool {
        matches!(self, PageType::L1 | PageType::L2 | PageType::L3 | PageType::PaeXenL2)
    }

    /// Whether this is a directory type (L2, with or without `PGT_pae_xen_l2`).
    #[inline]
    pub const fn is_l2(self) -> bool {
        matches!(self, PageType::L2 | PageType::PaeXenL2)
    }

    /// The type the entries of a table of this type must reference (L3 → L2, L2 → L1).
    #[inline]
    pub const fn child(self) -> Option<PageType> {
        match self {
            PageType::L3 => Some(PageType::L2),
            PageType::L2 | PageType::PaeXenL2 => Some(PageType::L1),
            _ => None,
        }
    }

    /// Short lower-case name (`"none"`, `"writable"`, `"l1"`, `"l2"`, `"l3"`, `"pae-xen-l2"`).
    pub const fn name(self) -> &'static str {
        match self {
            PageType::None => "none",
            PageType::Writable => "writable",
            PageType::L1 => "l1",
            PageType::L2 => "l2",
            PageType::L3 => "l3",
            PageType::PaeXenL2 => "pae-xen-l2",
        }
    }

    /// Index of a page-table type in per-level arrays (L1 = 0, L2 = 1, L3 = 2).
    #[inline]
    pub(crate) const fn level_index(self) -> usize {
        match self {
            PageType::L2 | PageType::PaeXenL2 => 1,
            PageType::L3 => 2,
            _ => 0,
        }
    }
}

impl fmt::Display for PageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the hypervisor holds for one frame (a snapshot of Xen's `type_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageInfo {
    /// The frame's current type.
    pub ty: PageType,
    /// References holding the type (zero exactly when `ty` is [`PageType::None`]).
    pub count: u32,
    /// Whether the guest pinned the frame (`PGT_pinned`); a pin holds one type reference.
    pub pinned: bool,
}

/// Pinned page tables by level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PinnedCounts {
    /// Pinned L1 tables (page tables).
    pub l1: usize,
    /// Pinned L2 tables (two-level pgds; PAE pmds, which Linux never pins itself).
    pub l2: usize,
    /// Pinned L3 tables (PAE roots).
    pub l3: usize,
}

impl PinnedCounts {
    /// All pinned tables.
    pub const fn total(&self) -> usize {
        self.l1 + self.l2 + self.l3
    }
}
