//! The application processors' real-mode start-up code (Linux's
//! `trampoline_32.S`): a start-up IPI starts an AP in real mode at
//! `CS:IP = (page << 8):0`; the code loads a flat GDT, enters protected mode,
//! loads the CR4, CR3 and stack the BSP left in its mailbox, turns paging on
//! with SSE enabled (CR0.EM clear, CR0.MP set) and calls the high-half entry
//! with the CPU's number.
//!
//! The code is position-independent in real mode (it uses only
//! `CS`-relative offsets); [`install`] copies it into a free page below 1 MiB
//! and patches the two absolute addresses it needs (the GDT's base and the far
//! jump into 32-bit code).

use core::arch::global_asm;
use core::ptr::addr_of;

use crate::cpu;
use crate::layout::phys_to_virt;

global_asm!(
    ".pushsection .rodata.kdemo_trampoline, \"a\"",
    ".balign 16",
    ".global kdemo_trampoline_start",
    ".code16",
    "kdemo_trampoline_start:",
    "    cli",
    "    cld",
    "    mov ax, cs",
    "    mov ds, ax",
    "    xor ebx, ebx",
    "    mov bx, ax",
    "    shl ebx, 4", // EBX = physical base of the trampoline
    "    lgdt [{gdtr}]",
    "    mov eax, cr0",
    "    or eax, 1",
    "    mov cr0, eax",
    // jmp far 0x08:<patched> with a 32-bit offset.
    "    .byte 0x66, 0xea",
    ".global kdemo_trampoline_far",
    "kdemo_trampoline_far:",
    "    .long 0",
    "    .word 0x08",
    ".code32",
    ".global kdemo_trampoline_32",
    "kdemo_trampoline_32:",
    "    mov ax, 0x10",
    "    mov ds, ax",
    "    mov es, ax",
    "    mov ss, ax",
    "    mov fs, ax",
    "    mov gs, ax",
    "    mov eax, [ebx + {mailbox} + 4]",
    "    mov cr4, eax",
    "    mov eax, [ebx + {mailbox}]",
    "    mov cr3, eax",
    "    mov eax, cr0",
    "    and eax, {not_em}",
    "    or eax, {on}",
    "    mov cr0, eax",
    "    mov esp, [ebx + {mailbox} + 8]",
    "    mov eax, [ebx + {mailbox} + 12]",
    "    mov ecx, [ebx + {mailbox} + 16]",
    "    sub esp, 12",
    "    push eax",
    "    xor ebp, ebp",
    "    call ecx",
    "    ud2",
    ".org {gdt}",
    "kdemo_trampoline_gdt:",
    "    .quad 0",
    "    .quad 0x00CF9A000000FFFF",
    "    .quad 0x00CF92000000FFFF",
    ".org {gdtr}",
    ".global kdemo_trampoline_gdtr",
    "kdemo_trampoline_gdtr:",
    "    .word 23",
    "    .long 0",
    ".org {mailbox}",
    ".global kdemo_trampoline_mailbox",
    "kdemo_trampoline_mailbox:",
    "    .long 0, 0, 0, 0, 0",
    ".global kdemo_trampoline_end",
    "kdemo_trampoline_end:",
    ".popsection",
    not_em = const !cpu::CR0_EM,
    on = const cpu::CR0_MP | cpu::CR0_PG,
    gdt = const GDT_OFFSET,
    gdtr = const GDT_OFFSET + 24,
    mailbox = const MAILBOX_OFFSET,
);

/// Offset of the trampoline's GDT (three descriptors, then its 6-byte pointer).
const GDT_OFFSET: u32 = 0xC0;
/// Offset of the mailbox (five words, see [`Mailbox`]).
const MAILBOX_OFFSET: u32 = 0xE0;

extern "C" {
    static kdemo_trampoline_start: u8;
    static kdemo_trampoline_far: u8;
    static kdemo_trampoline_32: u8;
    static kdemo_trampoline_gdtr: u8;
    static kdemo_trampoline_mailbox: u8;
    static kdemo_trampoline_end: u8;
}

/// Offset of a trampoline label from its start.
fn offset(label: *const u8) -> u32 {
    label as u32 - addr_of!(kdemo_trampoline_start) as u32
}

/// What an AP finds in the mailbox.
#[derive(Clone, Copy, Debug)]
pub struct Mailbox {
    /// CR3 to load (physical address of the boot root).
    pub cr3: u32,
    /// CR4 to load (paging mode and SSE bits).
    pub cr4: u32,
    /// Initial stack pointer (virtual, 16-byte aligned).
    pub stack_top: u32,
    /// The CPU's number, passed to `entry`.
    pub cpu: u32,
    /// High-half entry, `extern "C" fn(u32) -> !`.
    pub entry: u32,
}

/// The trampoline copied to physical page `page_pa` (below 1 MiB).
pub struct Trampoline {
    page_pa: u32,
}

impl Trampoline {
    /// Copies the trampoline into the page at `page_pa` and patches it.
    ///
    /// # Panics
    /// If `page_pa` is not a page-aligned address below 1 MiB.
    ///
    /// # Safety
    /// The page must be RAM that nothing else uses (not the kernel image, not
    /// the multiboot structures, no Rust reference), reachable in the linear map.
    pub unsafe fn install(page_pa: u32) -> Self {
        assert!(page_pa.is_multiple_of(4096) && page_pa < 0x10_0000, "trampoline page {page_pa:#x}");
        let len = offset(addr_of!(kdemo_trampoline_end)) as usize;
        assert!(len <= 4096);
        let dst = phys_to_virt(page_pa);
        // SAFETY: the source is the trampoline's bytes in `.rodata`; the destination is
        // the page the caller handed over, which nothing else uses.
        unsafe {
            core::ptr::copy_nonoverlapping(addr_of!(kdemo_trampoline_start), dst, len);
            let gdtr_base = dst.add(offset(addr_of!(kdemo_trampoline_gdtr)) as usize + 2).cast::<u32>();
            gdtr_base.write_unaligned(page_pa + offset(addr_of!(kdemo_trampoline_gdtr)) - 24);
            let far = dst.add(offset(addr_of!(kdemo_trampoline_far)) as usize).cast::<u32>();
            far.write_unaligned(page_pa + offset(addr_of!(kdemo_trampoline_32)));
        }
        Trampoline { page_pa }
    }

    /// The start-up IPI's vector: the page number.
    pub fn vector(&self) -> u8 {
        (self.page_pa >> 12) as u8
    }

    /// Fills the mailbox for the next AP.
    pub fn set_mailbox(&self, m: Mailbox) {
        let words = [m.cr3, m.cr4, m.stack_top, m.cpu, m.entry];
        let mailbox = phys_to_virt(self.page_pa + offset(addr_of!(kdemo_trampoline_mailbox))).cast::<u32>();
        for (i, w) in words.into_iter().enumerate() {
            // SAFETY: the mailbox's five words lie inside the trampoline page, which
            // `install`'s caller gave to this trampoline; no AP reads them until the
            // start-up IPI that follows.
            unsafe { mailbox.add(i).write_volatile(w) };
        }
    }
}
