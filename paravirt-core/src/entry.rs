//! Page-table entries typed per level: Linux's `pte_t`, `pmd_t` and `pud_t`.
//!
//! The hooks take these types, so a last-level value cannot be written through `set_pmd`, nor
//! a directory value through `set_pte`: the wrong level does not compile. Every entry holds the
//! raw 64-bit value (two-level entries use the low 32 bits); decoding happens here and nowhere
//! else.

use crate::{PagingMode, Pfn, PhysAddr, PteFlags};
use core::fmt;

/// Physical-address bits of an entry naming a 4 KiB frame, in either mode (a two-level entry
/// never has bits above 31).
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

mod sealed {
    pub trait Sealed {}
}

/// What every entry type shares. Sealed: exactly [`Pte`], [`Pmd`] and [`Pud`].
pub trait Entry: sealed::Sealed + Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// The Linux name of the type (`"pte_t"`...).
    const C_NAME: &'static str;
    /// The entry holding the raw value `raw`.
    fn from_raw(raw: u64) -> Self;
    /// The raw value.
    fn raw(self) -> u64;
}

macro_rules! entry_type {
    ($(#[$m:meta])* $name:ident, $c:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl sealed::Sealed for $name {}

        impl Entry for $name {
            const C_NAME: &'static str = $c;
            #[inline(always)]
            fn from_raw(raw: u64) -> Self {
                $name(raw)
            }
            #[inline(always)]
            fn raw(self) -> u64 {
                self.0
            }
        }

        impl $name {
            /// The empty (not present) entry.
            pub const EMPTY: Self = $name(0);

            /// An entry naming the 4 KiB frame `pfn` with `flags` (Linux's `pfn_pte` /
            /// `__pmd(pfn << PAGE_SHIFT | prot)`).
            #[inline(always)]
            pub const fn new(pfn: Pfn, flags: PteFlags) -> Self {
                $name(pfn.phys().as_u64() | flags.bits())
            }

            /// The entry holding the raw value `raw` (as read from a table or written by
            /// hardware).
            #[inline(always)]
            pub const fn from_raw(raw: u64) -> Self {
                $name(raw)
            }

            /// The raw value.
            #[inline(always)]
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `_PAGE_PRESENT` is set.
            #[inline(always)]
            pub const fn is_present(self) -> bool {
                self.0 & PteFlags::PRESENT.bits() != 0
            }

            /// The flag bits (the address removed).
            #[inline(always)]
            pub const fn flags(self) -> PteFlags {
                PteFlags::from_bits_truncate(self.0)
            }

            /// The 4 KiB frame the entry names (a page for a [`Pte`], a table for a directory
            /// entry that is not a large page).
            #[inline(always)]
            pub const fn pfn(self) -> Pfn {
                Pfn::containing(self.addr())
            }

            /// The physical address the entry names (4 KiB granularity).
            #[inline(always)]
            pub const fn addr(self) -> PhysAddr {
                PhysAddr::new(self.0 & ADDR_MASK)
            }

            /// The same entry with `flags` instead of its flags.
            #[inline(always)]
            pub const fn with_flags(self, flags: PteFlags) -> Self {
                $name((self.0 & ADDR_MASK) | flags.bits())
            }

            /// The same entry with the bits of `flags` added.
            #[inline(always)]
            pub const fn union(self, flags: PteFlags) -> Self {
                $name(self.0 | flags.bits())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:#x})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

entry_type!(
    /// A last-level entry (Linux's `pte_t`): maps one 4 KiB page.
    Pte,
    "pte_t"
);
entry_type!(
    /// A directory entry (Linux's `pmd_t`): in two-level mode an entry of the pgd (the pmd is
    /// folded), in PAE an entry of a pmd page. Points at a page table, or maps a large page
    /// when `PSE` is set.
    Pmd,
    "pmd_t"
);
entry_type!(
    /// A PAE top-level entry (Linux's `pud_t`, reached through `set_pgd`): one of the four
    /// PDPT entries, pointing at a pmd. Only `PRESENT`, `PWT` and `PCD` are valid flags
    /// ([`PDPT_ALLOWED`](crate::PDPT_ALLOWED)).
    Pud,
    "pud_t"
);

impl Pmd {
    /// A directory entry mapping the large page at `base` (4 MiB two-level, 2 MiB PAE) with
    /// `flags` (`PSE` is added).
    #[inline(always)]
    pub const fn large(base: PhysAddr, flags: PteFlags) -> Self {
        Pmd(base.as_u64() | flags.bits() | PteFlags::PSE.bits())
    }

    /// `pmd_large`: the entry maps a large page (`PSE`).
    #[inline(always)]
    pub const fn is_large(self) -> bool {
        self.0 & PteFlags::PSE.bits() != 0
    }

    /// The base of the large page a [`large`](Self::is_large) entry maps, in mode `M`.
    #[inline(always)]
    pub fn large_base<M: PagingMode>(self) -> PhysAddr {
        PhysAddr::new(self.0 & M::LARGE_ADDR_MASK)
    }
}
