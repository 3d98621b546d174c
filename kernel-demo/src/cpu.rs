//! Control registers and TLB maintenance, over the `x86` crate's instructions.
//!
//! Reads, TLB flushes and `CR0.WP` changes are safe: they do not change which
//! memory is mapped. Writing CR0, CR3 or CR4 directly is unsafe, since it can
//! switch paging off, change the address space under the running code, or
//! change the paging mode.

use x86::controlregs::{self as cr, Cr0, Cr4};

/// CR0.MP: monitor coprocessor (with TS, makes `wait`/SSE honour task switches).
pub const CR0_MP: u32 = 1 << 1;
/// CR0.EM: x87/SSE emulation; must be clear for SSE.
pub const CR0_EM: u32 = 1 << 2;
/// CR0.WP: supervisor writes to read-only pages fault.
pub const CR0_WP: u32 = 1 << 16;
/// CR0.PG: paging enabled.
pub const CR0_PG: u32 = 1 << 31;

/// CR4.PSE: 4 MiB pages in non-PAE mode.
pub const CR4_PSE: u32 = 1 << 4;
/// CR4.PAE: physical address extension (three-level paging).
pub const CR4_PAE: u32 = 1 << 5;
/// CR4.PGE: global pages (kept in the TLB across CR3 loads).
pub const CR4_PGE: u32 = 1 << 7;
/// CR4.OSFXSR: OS supports `fxsave`/`fxrstor` and SSE.
pub const CR4_OSFXSR: u32 = 1 << 9;
/// CR4.OSXMMEXCPT: OS handles SIMD floating-point exceptions (#XM).
pub const CR4_OSXMMEXCPT: u32 = 1 << 10;

/// Reads CR0.
pub fn read_cr0() -> u32 {
    // SAFETY: the kernel runs in ring 0; reading CR0 has no side effects.
    unsafe { cr::cr0() }.bits() as u32
}

/// Writes CR0.
///
/// # Safety
/// The new value must keep paging, protection and the FPU/SSE state the
/// running code relies on (PG, PE, EM clear, MP set).
pub unsafe fn write_cr0(value: u32) {
    // SAFETY: the caller guarantees the new CR0 keeps the running code valid (the bits `Cr0`
    // does not name are reserved, zero).
    unsafe { cr::cr0_write(Cr0::from_bits_truncate(value as usize)) }
}

/// Reads CR2, the linear address of the last page fault.
pub fn read_cr2() -> u32 {
    // SAFETY: ring 0; reading CR2 has no side effects.
    unsafe { cr::cr2() as u32 }
}

/// Reads CR3, the physical address of the current top-level page table.
pub fn read_cr3() -> u32 {
    // SAFETY: ring 0; reading CR3 has no side effects. CR3 is 32 bits wide on i386.
    unsafe { cr::cr3() as u32 }
}

/// Loads CR3: switches to another page-table tree and flushes all non-global
/// TLB entries.
///
/// # Safety
/// `value` must be the physical address of a valid top-level table for the
/// current paging mode (a page directory, or in PAE a 32-byte aligned PDPT
/// whose entries hold only PRESENT/PWT/PCD flags) that maps the running code,
/// its stack and every other kernel object still in use at the same virtual
/// addresses.
pub unsafe fn write_cr3(value: u32) {
    // SAFETY: the caller guarantees the new tree maps everything still in use.
    unsafe { cr::cr3_write(u64::from(value)) }
}

/// Reads CR4.
pub fn read_cr4() -> u32 {
    // SAFETY: ring 0; reading CR4 has no side effects.
    unsafe { cr::cr4() }.bits() as u32
}

/// Writes CR4.
///
/// # Safety
/// The new value must not change the paging mode under the running code
/// (PAE, PSE used by live mappings) and must keep OSFXSR set (the compiled
/// code uses SSE).
pub unsafe fn write_cr4(value: u32) {
    // SAFETY: the caller guarantees the new CR4 keeps the running code valid (the bits `Cr4`
    // does not name are reserved, zero).
    unsafe { cr::cr4_write(Cr4::from_bits_truncate(value as usize)) }
}

/// Invalidates the TLB entry for the page containing `va` (global or not).
pub fn invlpg(va: u32) {
    // SAFETY: dropping a cached translation never makes memory unsafe to use;
    // the next access re-walks the page tables.
    unsafe { x86::tlb::flush(va as usize) }
}

/// Flushes all non-global TLB entries by reloading CR3 with its own value.
pub fn flush_tlb() {
    let cr3 = read_cr3();
    // SAFETY: reloading the current CR3 keeps the same address space.
    unsafe { write_cr3(cr3) }
}

/// Flushes the whole TLB, global entries included, by toggling CR4.PGE
/// (works whether PGE is currently on or off; CR4 ends up unchanged).
pub fn flush_tlb_global() {
    let cr4 = read_cr4();
    // SAFETY: PGE only controls TLB retention of global entries; flipping it and
    // restoring the original value changes no mapping and no paging mode.
    unsafe {
        write_cr4(cr4 ^ CR4_PGE);
        write_cr4(cr4);
    }
}

/// Sets (`true`) or clears (`false`) CR0.WP. With WP set, supervisor-mode
/// writes to read-only pages fault, which later code relies on.
pub fn set_write_protect(enabled: bool) {
    let cr0 = read_cr0();
    let new = if enabled { cr0 | CR0_WP } else { cr0 & !CR0_WP };
    // SAFETY: WP changes only whether ring-0 writes honour read-only PTEs; it
    // changes no mapping, paging mode or FPU state.
    unsafe { write_cr0(new) }
}

/// Whether CR0.WP is set.
pub fn write_protect_enabled() -> bool {
    read_cr0() & CR0_WP != 0
}
