//! Page frame numbers.

use core::fmt;

/// log2 of the page size.
pub const PAGE_SHIFT: u32 = 12;
/// Size of a page in bytes.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// A physical page frame number, 32 bits wide as in the seed's `u32 pfn` hook arguments.
///
/// `Pfn(n)` names the 4 KiB frame at physical address `n << PAGE_SHIFT` (so a PAE kernel can
/// name frames above 4 GiB).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(pub u32);

impl Pfn {
    /// The frame containing physical address `pa` (Linux's `pa >> PAGE_SHIFT`).
    #[inline(always)]
    pub const fn from_phys(pa: u64) -> Self {
        Pfn((pa >> PAGE_SHIFT) as u32)
    }

    /// Physical address of the first byte of the frame.
    #[inline(always)]
    pub const fn phys(self) -> u64 {
        (self.0 as u64) << PAGE_SHIFT
    }

    /// The raw frame number.
    #[inline(always)]
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
