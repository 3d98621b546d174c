//! Page frame numbers and physical addresses.

use core::fmt;

/// log2 of the page size.
pub const PAGE_SHIFT: u32 = 12;
/// Size of a page in bytes.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// A physical page frame number, 32 bits wide as in the seed's `u32 pfn` hook arguments.
///
/// `Pfn::new(n)` names the 4 KiB frame at physical address `n << PAGE_SHIFT` (so a PAE kernel
/// can name frames above 4 GiB). Linux passes the same thing as a bare `u32`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(u32);

impl Pfn {
    /// The frame numbered `n`.
    #[inline(always)]
    pub const fn new(n: u32) -> Self {
        Pfn(n)
    }

    /// The frame containing physical address `pa` (Linux's `pa >> PAGE_SHIFT`).
    #[inline(always)]
    pub const fn containing(pa: PhysAddr) -> Self {
        Pfn((pa.0 >> PAGE_SHIFT) as u32)
    }

    /// Physical address of the first byte of the frame (Linux's `pfn << PAGE_SHIFT`).
    #[inline(always)]
    pub const fn phys(self) -> PhysAddr {
        PhysAddr((self.0 as u64) << PAGE_SHIFT)
    }

    /// The raw frame number.
    #[inline(always)]
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The raw frame number as an index (`pfn_to_page`-style arrays).
    #[inline(always)]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// The frame `n` frames after this one.
    #[inline(always)]
    pub const fn add(self, n: u32) -> Self {
        Pfn(self.0 + n)
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

/// A physical address in bytes (Linux's `phys_addr_t`): 32 bits used in two-level mode, up to
/// 52 in PAE.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// The address `pa`.
    #[inline(always)]
    pub const fn new(pa: u64) -> Self {
        PhysAddr(pa)
    }

    /// The raw address.
    #[inline(always)]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The offset of the address inside its 4 KiB frame.
    #[inline(always)]
    pub const fn page_offset(self) -> u32 {
        (self.0 & (PAGE_SIZE as u64 - 1)) as u32
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pa {:#x}", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
