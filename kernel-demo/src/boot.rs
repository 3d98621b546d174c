//! Multiboot v1 header, the 32-bit entry stub, and the boot page tables.
//!
//! QEMU's multiboot loader puts the image at physical 1 MiB and jumps to
//! `_start` (in the low `.boot` section, linked where it is loaded) with
//! paging off, `EAX = 0x2BADB002` and `EBX` = physical address of the
//! multiboot information. The stub:
//!
//! 1. zeroes `.bss` (through physical addresses),
//! 2. switches to the boot stack (physical address for now),
//! 3. enables SSE (clear CR0.EM, set CR0.MP, set CR4.OSFXSR|OSXMMEXCPT): the
//!    prebuilt `core` uses SSE2 everywhere,
//! 4. builds page tables mapping physical `0..BOOT_MAP_SIZE` both at 0
//!    (identity, so the stub survives turning paging on) and at `PAGE_OFFSET`,
//!    with large pages: 4 MiB PSE pages (non-PAE) or 2 MiB pages under a PDPT
//!    (PAE, feature `pae`),
//! 5. enables paging and jumps to the higher half, reloads the stack pointer
//!    with its virtual address and calls `kmain(magic, info_phys)`.
//!
//! Rust code then drops the identity half with [`drop_identity_map`], leaving
//! `0..PAGE_OFFSET` free for user mappings.

use core::arch::global_asm;
use core::cell::UnsafeCell;

use crate::cpu;
use crate::layout::{BOOT_MAP_SIZE, PAGE_OFFSET};

/// Multiboot v1 header magic.
const MULTIBOOT_HEADER_MAGIC: u32 = 0x1BAD_B002;
/// Header flags: bit 0 = page-align modules, bit 1 = provide the memory map.
const MULTIBOOT_HEADER_FLAGS: u32 = (1 << 0) | (1 << 1);
/// Header checksum: magic + flags + checksum == 0 (mod 2^32).
const MULTIBOOT_HEADER_CHECKSUM: u32 = 0u32.wrapping_sub(MULTIBOOT_HEADER_MAGIC.wrapping_add(MULTIBOOT_HEADER_FLAGS));

/// Size of the boot (and, for now, only) kernel stack.
pub const BOOT_STACK_SIZE: usize = 256 * 1024;

/// Large-page directory entry flags: PRESENT | RW | PSE (page size).
const LARGE_PAGE_FLAGS: u32 = 0x83;
#[cfg(feature = "pae")]
/// PAE PDPT entry flags: PRESENT only (RW/USER are reserved in a PDPTE).
const PDPTE_PRESENT: u32 = 0x1;

/// Non-PAE: bytes mapped by one page-directory entry (4 MiB).
#[cfg(not(feature = "pae"))]
const PDE_SPAN: u32 = 4 << 20;
/// PAE: bytes mapped by one pmd entry (2 MiB).
#[cfg(feature = "pae")]
const PDE_SPAN: u32 = 2 << 20;

/// Number of large-page entries covering [`BOOT_MAP_SIZE`].
const BOOT_LARGE_PAGES: u32 = BOOT_MAP_SIZE / PDE_SPAN;
/// Non-PAE: index of the first kernel PDE (`PAGE_OFFSET >> 22`, 768).
#[cfg(not(feature = "pae"))]
const KERNEL_PDE_INDEX: u32 = PAGE_OFFSET >> 22;
/// PAE: index of the PDPT entry covering `PAGE_OFFSET` (3).
#[cfg(feature = "pae")]
const KERNEL_PDPTE_INDEX: u32 = PAGE_OFFSET >> 30;

#[cfg(not(feature = "pae"))]
const _: () = assert!(BOOT_LARGE_PAGES <= KERNEL_PDE_INDEX && BOOT_MAP_SIZE.is_multiple_of(PDE_SPAN));
#[cfg(feature = "pae")]
const _: () = assert!(BOOT_LARGE_PAGES <= 512 && BOOT_MAP_SIZE.is_multiple_of(PDE_SPAN));

/// A page-aligned, zero-initialised (so `.bss`) block written by the boot stub
/// with paging off and by Rust code afterwards.
#[repr(C, align(4096))]
pub struct BootPage<T>(UnsafeCell<T>);

// SAFETY: the tables are written by the boot stub before any Rust code runs and
// afterwards only by the BSP (`bootmap`, `drop_identity_map`), with `&mut`-free
// volatile writes through raw pointers; the application processors only walk
// them in hardware, and no Rust reference to their contents is ever made.
unsafe impl<T> Sync for BootPage<T> {}

impl<T> BootPage<T> {
    /// Raw pointer to the contents.
    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The boot stack (in `.bss`, high half).
#[repr(C, align(16))]
struct BootStack(UnsafeCell<[u8; BOOT_STACK_SIZE]>);

// SAFETY: the stack is only ever used as the CPU's stack, never through Rust references.
unsafe impl Sync for BootStack {}

static BOOT_STACK: BootStack = BootStack(UnsafeCell::new([0; BOOT_STACK_SIZE]));

/// Non-PAE boot page directory (`swapper_pg_dir` of the boot tables).
#[cfg(not(feature = "pae"))]
pub static BOOT_PGDIR: BootPage<[u32; 1024]> = BootPage(UnsafeCell::new([0; 1024]));

/// PAE boot PDPT (4 entries; page aligned, which satisfies the 32-byte rule).
#[cfg(feature = "pae")]
pub static BOOT_PDPT: BootPage<[u64; 4]> = BootPage(UnsafeCell::new([0; 4]));
/// PAE pmd page for the identity map (PDPT slot 0).
#[cfg(feature = "pae")]
pub static BOOT_PMD_IDENT: BootPage<[u64; 512]> = BootPage(UnsafeCell::new([0; 512]));
/// PAE pmd page for the kernel map (PDPT slot 3, `PAGE_OFFSET..`).
#[cfg(feature = "pae")]
pub static BOOT_PMD_KERNEL: BootPage<[u64; 512]> = BootPage(UnsafeCell::new([0; 512]));

// Multiboot header (first in the image, see linker.ld) and the low entry code.
global_asm!(
    ".section .multiboot, \"a\"",
    ".balign 4",
    ".long {mb_magic}",
    ".long {mb_flags}",
    ".long {mb_checksum}",
    "",
    ".section .boot.text, \"ax\"",
    ".global _start",
    ".type _start, @function",
    "_start:",
    "    cli",
    "    cld",
    "    mov ebp, eax", // multiboot magic; EBX keeps the info pointer
    // Zero .bss through its physical address.
    "    mov edi, offset __bss_start - {po}",
    "    mov ecx, offset __bss_end",
    "    sub ecx, offset __bss_start",
    "    xor eax, eax",
    "    rep stosb",
    // Boot stack, physical address until paging is on.
    "    mov esp, offset {stack} + {stack_size} - {po}",
    // SSE: CR0.EM off, CR0.MP on, CR4.OSFXSR | CR4.OSXMMEXCPT on.
    "    mov eax, cr0",
    "    and eax, {not_em}",
    "    or eax, {mp}",
    "    mov cr0, eax",
    "    mov eax, cr4",
    "    or eax, {sse_cr4}",
    "    mov cr4, eax",
    "    call kdemo_boot_enable_paging",
    // Paging is on and the kernel is mapped high: leave the identity map.
    "    mov eax, offset kdemo_boot_high",
    "    jmp eax",
    ".size _start, . - _start",
    "",
    ".section .text.kdemo_boot_high, \"ax\"",
    ".global kdemo_boot_high",
    ".type kdemo_boot_high, @function",
    "kdemo_boot_high:",
    "    mov esp, offset {stack} + {stack_size}",
    "    sub esp, 8", // keep the stack 16-byte aligned at the call
    "    push ebx",   // multiboot info (physical)
    "    push ebp",   // multiboot magic
    "    xor ebp, ebp", // end of the frame-pointer chain
    "    call {kmain}",
    "    ud2",
    ".size kdemo_boot_high, . - kdemo_boot_high",
    mb_magic = const MULTIBOOT_HEADER_MAGIC,
    mb_flags = const MULTIBOOT_HEADER_FLAGS,
    mb_checksum = const MULTIBOOT_HEADER_CHECKSUM,
    po = const PAGE_OFFSET,
    stack = sym BOOT_STACK,
    stack_size = const BOOT_STACK_SIZE,
    not_em = const !cpu::CR0_EM,
    mp = const cpu::CR0_MP,
    sse_cr4 = const cpu::CR4_OSFXSR | cpu::CR4_OSXMMEXCPT,
    kmain = sym crate::kmain,
);

// Non-PAE: one page directory, 4 MiB PSE pages at PDE 0.. and PDE 768..
#[cfg(not(feature = "pae"))]
global_asm!(
    ".section .boot.text, \"ax\"",
    ".global kdemo_boot_enable_paging",
    ".type kdemo_boot_enable_paging, @function",
    "kdemo_boot_enable_paging:",
    "    mov edi, offset {pgdir} - {po}",
    "    mov eax, {flags}",
    "    xor ecx, ecx",
    "2:",
    "    mov [edi + ecx*4], eax",
    "    mov [edi + ecx*4 + {kernel_pde}*4], eax",
    "    add eax, {span}",
    "    inc ecx",
    "    cmp ecx, {count}",
    "    jb 2b",
    "    mov cr3, edi",
    "    mov eax, cr4",
    "    or eax, {pse}",
    "    mov cr4, eax",
    "    mov eax, cr0",
    "    or eax, {pg}",
    "    mov cr0, eax",
    "    ret",
    ".size kdemo_boot_enable_paging, . - kdemo_boot_enable_paging",
    pgdir = sym BOOT_PGDIR,
    po = const PAGE_OFFSET,
    flags = const LARGE_PAGE_FLAGS,
    kernel_pde = const KERNEL_PDE_INDEX,
    span = const PDE_SPAN,
    count = const BOOT_LARGE_PAGES,
    pse = const cpu::CR4_PSE,
    pg = const cpu::CR0_PG,
);

// PAE: PDPT[0] -> identity pmd, PDPT[3] -> kernel pmd, 2 MiB pages in both.
#[cfg(feature = "pae")]
global_asm!(
    ".section .boot.text, \"ax\"",
    ".global kdemo_boot_enable_paging",
    ".type kdemo_boot_enable_paging, @function",
    "kdemo_boot_enable_paging:",
    "    mov edi, offset {pmd_ident} - {po}",
    "    mov edx, offset {pmd_kernel} - {po}",
    "    mov eax, {flags}",
    "    xor ecx, ecx",
    "2:",
    "    mov [edi + ecx*8], eax", // high dwords stay zero (.bss)
    "    mov [edx + ecx*8], eax",
    "    add eax, {span}",
    "    inc ecx",
    "    cmp ecx, {count}",
    "    jb 2b",
    "    mov eax, offset {pdpt} - {po}",
    "    or edi, {pdpte}",
    "    mov [eax], edi",
    "    or edx, {pdpte}",
    "    mov [eax + {kernel_slot}*8], edx",
    "    mov cr3, eax",
    "    mov eax, cr4",
    "    or eax, {pae}",
    "    mov cr4, eax",
    "    mov eax, cr0",
    "    or eax, {pg}",
    "    mov cr0, eax",
    "    ret",
    ".size kdemo_boot_enable_paging, . - kdemo_boot_enable_paging",
    pmd_ident = sym BOOT_PMD_IDENT,
    pmd_kernel = sym BOOT_PMD_KERNEL,
    pdpt = sym BOOT_PDPT,
    po = const PAGE_OFFSET,
    flags = const LARGE_PAGE_FLAGS,
    span = const PDE_SPAN,
    count = const BOOT_LARGE_PAGES,
    pdpte = const PDPTE_PRESENT,
    kernel_slot = const KERNEL_PDPTE_INDEX,
    pae = const cpu::CR4_PAE,
    pg = const cpu::CR0_PG,
);

/// Physical address of the boot tables' root (the value the stub put in CR3).
pub fn boot_root_phys() -> u32 {
    #[cfg(not(feature = "pae"))]
    let root = BOOT_PGDIR.get() as u32;
    #[cfg(feature = "pae")]
    let root = BOOT_PDPT.get() as u32;
    root - PAGE_OFFSET
}

/// Bytes of the boot stack that have ever been written: `.bss` starts out
/// zeroed and the stack grows down, so the lowest non-zero byte marks the
/// deepest point reached (a lower bound: a frame may have stored zeroes there).
/// A value equal to [`BOOT_STACK_SIZE`] means the stack probably overflowed.
pub fn boot_stack_used() -> usize {
    let base = BOOT_STACK.0.get().cast::<u8>();
    let untouched = (0..BOOT_STACK_SIZE)
        // SAFETY: `i < BOOT_STACK_SIZE`, inside the stack array; a volatile byte
        // read of memory below the current stack pointer races with nothing (one
        // CPU, interrupts off).
        .take_while(|&i| unsafe { base.add(i).read_volatile() } == 0)
        .count();
    BOOT_STACK_SIZE - untouched
}

/// Removes the identity half of the boot mapping and flushes the TLB, so
/// that `0..PAGE_OFFSET` maps nothing.
///
/// Non-PAE clears the low page-directory entries; PAE clears PDPT slot 0 (the
/// CPU caches PDPTEs, so the CR3 reload is what makes it take effect).
///
/// # Panics
/// If CR3 no longer points at the boot tables.
pub fn drop_identity_map() {
    assert_eq!(cpu::read_cr3(), boot_root_phys(), "boot page tables are not active");
    #[cfg(not(feature = "pae"))]
    {
        let pgdir = BOOT_PGDIR.get().cast::<u32>();
        // The whole low half: the boot map, and any window over firmware tables.
        for i in 0..KERNEL_PDE_INDEX as usize {
            // SAFETY: `i < 768`, inside the 1024-entry directory;
            // nothing runs through the identity map any more (kernel, stack, GDT
            // and IDT are all in the high half), and the flush below follows.
            unsafe { pgdir.add(i).write_volatile(0) };
        }
    }
    #[cfg(feature = "pae")]
    {
        // SAFETY: slot 0 of the 4-entry PDPT; nothing runs through the identity
        // map any more, and the CR3 reload below re-reads the PDPTEs.
        unsafe { BOOT_PDPT.get().cast::<u64>().write_volatile(0) };
    }
    cpu::flush_tlb();
}
