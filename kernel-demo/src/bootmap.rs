//! Additions to the boot page tables ([`crate::boot`]) for bringing up the
//! other processors: identity windows over firmware tables (large pages in the
//! identity half, dropped with it by [`crate::boot::drop_identity_map`]) and
//! the local APIC's register page, mapped uncached (PCD|PWT) at its physical
//! address `0xFEE0_0000`, above every address the kernel's own tables use.

use crate::boot;
use crate::layout::PAGE_OFFSET;

/// Large-page entry flags: PRESENT | RW | PSE.
const LARGE: u32 = 0x83;
/// Uncached: PWT | PCD.
const UNCACHED: u32 = 0x18;

/// Bytes one large boot page maps.
#[cfg(not(feature = "pae"))]
const SPAN: u32 = 4 << 20;
#[cfg(feature = "pae")]
const SPAN: u32 = 2 << 20;

/// Points the boot tables' large-page entry covering virtual `va` at
/// physical `pa` (both `SPAN`-aligned) with `flags`.
fn set_large(va: u32, pa: u32, flags: u32) {
    #[cfg(not(feature = "pae"))]
    {
        let pgdir = boot::BOOT_PGDIR.get().cast::<u32>();
        // SAFETY: `va >> 22 < 1024`, inside the boot directory; the entry is a
        // large page of memory (or the APIC page) no Rust reference covers, and
        // the flush below makes the change visible.
        unsafe { pgdir.add((va >> 22) as usize).write_volatile(pa | flags) };
    }
    #[cfg(feature = "pae")]
    {
        let pmd = if va >= PAGE_OFFSET { boot::BOOT_PMD_KERNEL.get() } else { boot::BOOT_PMD_IDENT.get() };
        let index = ((va & 0x3FFF_FFFF) >> 21) as usize;
        // SAFETY: `index < 512`, inside the pmd page; as above.
        unsafe { pmd.cast::<u64>().add(index).write_volatile(u64::from(pa | flags)) };
    }
    crate::cpu::invlpg(va);
}

/// Identity-maps `[pa, pa + len)` with large pages, for reading firmware
/// tables while the identity half of the boot map still exists.
///
/// # Panics
/// If the range reaches `PAGE_OFFSET` or lies outside the first PDPT slot
/// (PAE), where the identity half cannot reach.
pub fn map_identity(pa: u32, len: u32) {
    let end = pa.checked_add(len.max(1)).expect("identity window wraps");
    assert!(
        end <= if cfg!(feature = "pae") { 1 << 30 } else { PAGE_OFFSET },
        "identity window {pa:#x}+{len:#x} too high"
    );
    let mut page = pa & !(SPAN - 1);
    while page < end {
        set_large(page, page, LARGE);
        page += SPAN;
    }
}

/// Maps the local APIC's register page uncached at its physical address.
pub fn map_lapic() {
    let base = crate::lapic::LAPIC_BASE & !(SPAN - 1);
    set_large(base, base, LARGE | UNCACHED);
}
