//! The kernel's virtual layout above `PAGE_OFFSET`, as Linux i386 lays it out
//! (`include/asm-i386/page.h`, `pgtable.h`, `arch/i386/mm/init.c`):
//!
//! ```text
//! PAGE_OFFSET (3 GiB)            linear map of low memory, up to MAXMEM (896 MiB)
//! high_memory                    = PAGE_OFFSET + low memory
//!   + gap of VMALLOC_OFFSET (8 MiB), rounded to 8 MiB
//! VMALLOC_START                  vmalloc area (kernel-range mappings made after boot)
//! VMALLOC_END (0xff800000)       fixmaps and the rest above
//! ```
//!
//! RAM beyond low memory is not linearly mapped (highmem).

use paravirt_core::PAGE_OFFSET;

/// `__VMALLOC_RESERVE`: the virtual space kept above low memory for the vmalloc area and the
/// fixmaps (128 MiB).
pub const VMALLOC_RESERVE: u32 = 128 << 20;
/// `MAXMEM`: the most low memory the linear map holds, in bytes (1 GiB − 128 MiB = 896 MiB).
pub const MAXMEM: u32 = 0u32.wrapping_sub(PAGE_OFFSET) - VMALLOC_RESERVE;
/// `VMALLOC_OFFSET`: the unmapped gap between the linear map and the vmalloc area (8 MiB),
/// which catches accesses running off the end of low memory.
pub const VMALLOC_OFFSET: u32 = 8 << 20;
/// End (exclusive) of the vmalloc area: the fixmaps live above.
pub const VMALLOC_END: u32 = 0xFF80_0000;

/// `VMALLOC_START` for a linear map ending at virtual address `high_memory`:
/// `(high_memory + 2 * VMALLOC_OFFSET - 1) & !(VMALLOC_OFFSET - 1)`, at least one 8 MiB gap
/// above it.
pub const fn vmalloc_start(high_memory: u32) -> u32 {
    (high_memory + 2 * VMALLOC_OFFSET - 1) & !(VMALLOC_OFFSET - 1)
}

/// The vmalloc area exists even with the most low memory, and starts on a boundary of both
/// modes' directory entries (so a kernel page table never straddles it).
const _: () = {
    assert!(MAXMEM == 896 << 20);
    assert!(vmalloc_start(PAGE_OFFSET + MAXMEM) < VMALLOC_END);
    assert!(VMALLOC_OFFSET % (4 << 20) == 0);
};
