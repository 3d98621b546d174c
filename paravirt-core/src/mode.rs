//! Paging modes as types: the geometry of two-level (non-PAE) and PAE i386 paging.
//!
//! Each mode carries Linux's constants (`asm-i386/pgtable-2level-defs.h`,
//! `pgtable-3level-defs.h`, 3G/1G split); the `const` blocks below check at compile time that
//! the geometry adds up.

/// `PAGE_OFFSET`: where the kernel maps low memory (3G/1G split).
pub const PAGE_OFFSET: u32 = 0xC000_0000;
/// `TASK_SIZE`: the end of user space.
pub const TASK_SIZE: u32 = PAGE_OFFSET;

mod sealed {
    pub trait Sealed {}
}

/// An i386 paging mode. Sealed: exactly [`TwoLevel`] and [`Pae`].
///
/// The paravirt hook trait is generic over the mode ([`PvMmuOps<M>`](crate::PvMmuOps)), so a
/// backend built for one mode cannot serve a kernel of the other.
pub trait PagingMode: sealed::Sealed + Copy + Default + Send + Sync + core::fmt::Debug + 'static {
    /// Human-readable name (`"two-level"` or `"pae"`).
    const NAME: &'static str;
    /// The native hooks of this mode: what every call site is without `paravirt`. Reached
    /// through the mode (a projection the compiler resolves only once the mode is known), so
    /// call sites with and without `paravirt` are inlined at the same stage and compile to the
    /// same machine code.
    #[doc(hidden)]
    type NativeOps: crate::PvMmuOps<Self> + Sync + 'static;
    /// The value of [`NativeOps`](Self::NativeOps) (zero-sized).
    #[doc(hidden)]
    const NATIVE_OPS: Self::NativeOps;
    /// `CONFIG_X86_PAE`.
    const PAE: bool;
    /// `PTRS_PER_PGD`.
    const PTRS_PER_PGD: u32;
    /// `PTRS_PER_PMD` (1: folded).
    const PTRS_PER_PMD: u32;
    /// `PTRS_PER_PTE`.
    const PTRS_PER_PTE: u32;
    /// `USER_PTRS_PER_PGD` = `TASK_SIZE / PGDIR_SIZE`.
    const USER_PTRS_PER_PGD: u32;
    /// `KERNEL_PGD_PTRS` = `PTRS_PER_PGD - USER_PTRS_PER_PGD`.
    const KERNEL_PGD_PTRS: u32;
    /// `PGDIR_SHIFT`.
    const PGDIR_SHIFT: u32;
    /// `PMD_SHIFT` (equal to `PGDIR_SHIFT` when the pmd is folded).
    const PMD_SHIFT: u32;
    /// Size of one entry in bytes.
    const ENTRY_SIZE: u32;
    /// Size of a large page (`LARGE_PAGE_SIZE`): 4 MiB (PSE) or 2 MiB (PAE).
    const LARGE_PAGE_SIZE: u32;
    /// Physical-address bits of an entry.
    const ADDR_MASK: u64;
    /// Physical-address bits of a large-page directory entry.
    const LARGE_ADDR_MASK: u64;

    /// `pgd_index(addr)`.
    #[inline(always)]
    fn pgd_index(va: u32) -> u32 {
        va >> Self::PGDIR_SHIFT
    }
    /// `pmd_index(addr)` (0 when folded).
    #[inline(always)]
    fn pmd_index(va: u32) -> u32 {
        (va >> Self::PMD_SHIFT) & (Self::PTRS_PER_PMD - 1)
    }
    /// `pte_index(addr)`.
    #[inline(always)]
    fn pte_index(va: u32) -> u32 {
        (va >> 12) & (Self::PTRS_PER_PTE - 1)
    }
    /// `LARGE_PAGE_MASK`.
    #[inline(always)]
    fn large_page_mask() -> u32 {
        !(Self::LARGE_PAGE_SIZE - 1)
    }
}

/// Two-level (non-PAE) paging: 1024-entry pgd, folded pmd, 1024-entry page tables, 4 MiB PSE
/// pages, 32-bit entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TwoLevel;

/// PAE paging: 4-entry pgd (the PDPT), 512-entry pmds and page tables, 2 MiB large pages,
/// 64-bit entries, NX in bit 63.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pae;

impl sealed::Sealed for TwoLevel {}
impl sealed::Sealed for Pae {}

impl PagingMode for TwoLevel {
    const NAME: &'static str = "two-level";
    type NativeOps = crate::NativeOps;
    const NATIVE_OPS: crate::NativeOps = crate::NativeOps;
    const PAE: bool = false;
    const PTRS_PER_PGD: u32 = 1024;
    const PTRS_PER_PMD: u32 = 1;
    const PTRS_PER_PTE: u32 = 1024;
    const USER_PTRS_PER_PGD: u32 = 768;
    const KERNEL_PGD_PTRS: u32 = 256;
    const PGDIR_SHIFT: u32 = 22;
    const PMD_SHIFT: u32 = 22;
    const ENTRY_SIZE: u32 = 4;
    const LARGE_PAGE_SIZE: u32 = 4 << 20;
    const ADDR_MASK: u64 = 0xFFFF_F000;
    const LARGE_ADDR_MASK: u64 = 0xFFC0_0000;
}

impl PagingMode for Pae {
    const NAME: &'static str = "pae";
    type NativeOps = crate::NativeOps;
    const NATIVE_OPS: crate::NativeOps = crate::NativeOps;
    const PAE: bool = true;
    const PTRS_PER_PGD: u32 = 4;
    const PTRS_PER_PMD: u32 = 512;
    const PTRS_PER_PTE: u32 = 512;
    const USER_PTRS_PER_PGD: u32 = 3;
    const KERNEL_PGD_PTRS: u32 = 1;
    const PGDIR_SHIFT: u32 = 30;
    const PMD_SHIFT: u32 = 21;
    const ENTRY_SIZE: u32 = 8;
    const LARGE_PAGE_SIZE: u32 = 2 << 20;
    const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
    const LARGE_ADDR_MASK: u64 = 0x000F_FFFF_FFE0_0000;
}

/// Compile-time checks of a mode's geometry (the Redox `rmm` habit).
macro_rules! check_geometry {
    ($m:ty) => {
        const _: () = {
            type M = $m;
            // Each table fills exactly one page (the PAE PDPT is the exception: 32 bytes).
            assert!(M::PTRS_PER_PTE * M::ENTRY_SIZE == 4096);
            assert!(M::PAE || M::PTRS_PER_PGD * M::ENTRY_SIZE == 4096);
            assert!(M::PTRS_PER_PMD == 1 || M::PTRS_PER_PMD * M::ENTRY_SIZE == 4096);
            // The levels cover the 32-bit address space exactly.
            assert!(12 + M::PTRS_PER_PTE.trailing_zeros() == M::PMD_SHIFT);
            assert!(M::PMD_SHIFT + M::PTRS_PER_PMD.trailing_zeros() == M::PGDIR_SHIFT);
            assert!(M::PGDIR_SHIFT + M::PTRS_PER_PGD.trailing_zeros() == 32);
            // The 3G/1G split falls on a pgd boundary.
            assert!(M::USER_PTRS_PER_PGD == TASK_SIZE >> M::PGDIR_SHIFT);
            assert!(M::USER_PTRS_PER_PGD + M::KERNEL_PGD_PTRS == M::PTRS_PER_PGD);
            // A large page is what one directory entry maps.
            assert!(M::LARGE_PAGE_SIZE == 1 << M::PMD_SHIFT);
            assert!(M::LARGE_ADDR_MASK & !M::ADDR_MASK == 0);
        };
    };
}
check_geometry!(TwoLevel);
check_geometry!(Pae);
