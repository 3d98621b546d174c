//! Address-space layout: where the kernel lives, physically and virtually.
//!
//! The kernel is a higher-half kernel like Linux on i386 with the 3G/1G split:
//! physical address `pa` (below [`BOOT_MAP_SIZE`]) is always mapped at virtual
//! `PAGE_OFFSET + pa`, and the user range `0..PAGE_OFFSET` is left free once
//! [`crate::boot::drop_identity_map`] has run.

/// Start of the kernel's linear map of physical memory (Linux's `PAGE_OFFSET`).
pub const PAGE_OFFSET: u32 = 0xC000_0000;

/// Size of a small page and of a physical frame.
pub const PAGE_SIZE: u32 = 4096;

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Physical address the kernel image is loaded at (1 MiB).
pub const KERNEL_PHYS_BASE: u32 = 0x0010_0000;

/// Amount of physical memory the boot page tables map, both at 0 (identity,
/// until dropped) and at [`PAGE_OFFSET`]: 896 MiB, the most low memory an i386
/// kernel with the 3G/1G split maps (Linux's `MAXMEM`), so every frame of low
/// memory is reachable from the start whatever RAM QEMU is given. Frames handed
/// out by [`crate::phys`] all lie below this limit; `i386-mm` then maps low
/// memory itself, up to the end of RAM or the top its layout allows (less
/// under a hypervisor that reserves the top of the address space).
pub const BOOT_MAP_SIZE: u32 = 896 << 20;

extern "C" {
    /// First byte of the image (physical; the low `.boot` section). Linker script.
    static __kernel_phys_start: u8;
    /// First byte after the image, page aligned (virtual). Linker script.
    static __kernel_end: u8;
}

/// Physical address of the first byte of the kernel image.
pub fn kernel_phys_start() -> u32 {
    // Only the address of the linker-defined symbol is taken; it is never read.
    core::ptr::addr_of!(__kernel_phys_start) as u32
}

/// Physical address of the first page after the kernel image (`.bss` included).
pub fn kernel_phys_end() -> u32 {
    // Only the address of the linker-defined symbol is taken; it is never read.
    let end = core::ptr::addr_of!(__kernel_end) as u32;
    end - PAGE_OFFSET
}

/// Virtual address, in the linear map, of physical address `pa`.
///
/// # Panics
/// If `pa` lies outside the boot mapping (`pa >= BOOT_MAP_SIZE`).
pub fn phys_to_virt(pa: u32) -> *mut u8 {
    assert!(pa < BOOT_MAP_SIZE, "physical address {pa:#x} is outside the boot linear map");
    (PAGE_OFFSET + pa) as *mut u8
}

/// Physical address of a kernel virtual address in the linear map.
///
/// # Panics
/// If `va` is not inside `PAGE_OFFSET..PAGE_OFFSET + BOOT_MAP_SIZE`.
pub fn virt_to_phys<T>(va: *const T) -> u32 {
    let va = va as u32;
    assert!(
        (PAGE_OFFSET..PAGE_OFFSET + BOOT_MAP_SIZE).contains(&va),
        "virtual address {va:#x} is not in the linear map"
    );
    va - PAGE_OFFSET
}
