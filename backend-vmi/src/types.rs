//! VMI page types: the flags `AllocatePage` and `ReleasePage` take, and the types the hooks
//! give a page (`vmi_allocate_pt`, `vmi_allocate_pd`, `vmi_allocate_pd_clone`).

use bitflags::bitflags;
use core::fmt;
use paravirt_core::PagingMode;

bitflags! {
    /// The type of a page as VMI tracks it (`VMI_PAGE_*` in `arch/i386/kernel/vmi.c`).
    ///
    /// A page-table page carries exactly one level flag ([`PT`](Self::PT) or
    /// [`PD`](Self::PD)), plus [`PAE`](Self::PAE) in PAE mode, [`ZEROED`](Self::ZEROED) when
    /// the kernel promises the page is zero, and [`CLONE`](Self::CLONE) when part of it was
    /// copied from another directory. [`NORMAL`](Self::NORMAL) (no bit) is an ordinary page.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PageType: u8 {
        /// `VMI_PAGE_PT`: a last-level page table (L1).
        const PT = 0x01;
        /// `VMI_PAGE_PD`: a page directory (L2: the non-PAE pgd, or a PAE pmd).
        const PD = 0x02;
        /// `VMI_PAGE_PDP`: a PAE page-directory-pointer table. Never given to a page here:
        /// the PDPT is "cached entirely by the processor" and shadowed at `write_cr3`.
        const PDP = 0x04;
        /// `VMI_PAGE_PML4`: a long-mode top level (meaningless on i386, always refused).
        const PML4 = 0x08;
        /// `VMI_PAGE_PAE`: the table has PAE (64-bit) entries.
        const PAE = 0x10;
        /// `VMI_PAGE_CLONE`: entries `[start, start + count)` were copied from another L2.
        const CLONE = 0x20;
        /// `VMI_PAGE_ZEROED`: the page is zero (with `CLONE`: its user part is zero).
        const ZEROED = 0x40;
    }
}

impl PageType {
    /// `VMI_PAGE_NORMAL`: an ordinary page, not a page table.
    pub const NORMAL: PageType = PageType::empty();
    /// `VMI_PAGE_L1` in two-level mode: `PT | ZEROED`.
    pub const L1: PageType = PageType::PT.union(PageType::ZEROED);
    /// `VMI_PAGE_L2` in two-level mode: `PD | ZEROED`.
    pub const L2: PageType = PageType::PD.union(PageType::ZEROED);
    /// The level bits (`PT`, `PD`, `PDP`, `PML4`).
    pub const LEVELS: PageType = PageType::PT.union(PageType::PD).union(PageType::PDP).union(PageType::PML4);

    /// `VMI_PAGE_L1` for paging mode `M` (`PT | ZEROED`, plus `PAE` in PAE mode): the type
    /// `alloc_pt` gives.
    #[inline]
    pub const fn l1<M: PagingMode>() -> PageType {
        Self::for_mode(Self::L1, M::PAE)
    }

    /// `VMI_PAGE_L2` for paging mode `M` (`PD | ZEROED`, plus `PAE` in PAE mode): the type
    /// `alloc_pd` gives.
    #[inline]
    pub const fn l2<M: PagingMode>() -> PageType {
        Self::for_mode(Self::L2, M::PAE)
    }

    /// `VMI_PAGE_L2 | VMI_PAGE_CLONE` for paging mode `M`: the type `alloc_pd_clone` gives.
    #[inline]
    pub const fn l2_clone<M: PagingMode>() -> PageType {
        Self::l2::<M>().union(PageType::CLONE)
    }

    const fn for_mode(t: PageType, pae: bool) -> PageType {
        if pae {
            t.union(PageType::PAE)
        } else {
            t
        }
    }

    /// The level bits of the type.
    #[inline]
    pub const fn level(self) -> PageType {
        self.intersection(Self::LEVELS)
    }

    /// Whether this is a last-level page table (`PT`).
    #[inline]
    pub const fn is_l1(self) -> bool {
        self.level().bits() == PageType::PT.bits()
    }

    /// Whether this is a page directory (`PD`).
    #[inline]
    pub const fn is_l2(self) -> bool {
        self.level().bits() == PageType::PD.bits()
    }

    /// Whether the type is the same kind as `other` once `ZEROED` and `CLONE` are ignored
    /// (what `vmi_check_page_type` compares).
    #[inline]
    pub const fn same_kind(self, other: PageType) -> bool {
        let strip = PageType::ZEROED.union(PageType::CLONE);
        self.difference(strip).bits() == other.difference(strip).bits()
    }
}

impl fmt::Display for PageType {
    /// `NORMAL`, or the flag names joined with `|` (`PD|PAE|ZEROED`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("NORMAL");
        }
        let mut first = true;
        for (name, _) in self.iter_names() {
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            first = false;
        }
        let rest = self.bits() & !PageType::all().bits();
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}
