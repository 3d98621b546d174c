//! The kernel's virtual layout above `PAGE_OFFSET`.

use paravirt_core::{Pae, PagingMode, TwoLevel, PAGE_OFFSET};

/// Start of the kernel's vmalloc-style area used by
/// [`KernelMm::map_kernel_page`](crate::KernelMm::map_kernel_page): kernel-range mappings
/// made after boot (Linux's `VMALLOC_START`, fixed here at 3.5 GiB).
pub const VMALLOC_START: u32 = 0xE000_0000;
/// End (exclusive) of the vmalloc-style area.
pub const VMALLOC_END: u32 = 0xFF80_0000;

/// The vmalloc area lies in the kernel range, on directory-entry boundaries of both modes.
const _: () = {
    assert!(VMALLOC_START >= PAGE_OFFSET && VMALLOC_START % <TwoLevel as PagingMode>::LARGE_PAGE_SIZE == 0);
    assert!(VMALLOC_START % <Pae as PagingMode>::LARGE_PAGE_SIZE == 0);
};
