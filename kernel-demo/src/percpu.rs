//! Per-CPU state: each processor's own GDT (flat code and data, a TSS, and a
//! per-CPU data segment in FS whose first word is the CPU's number), so
//! [`this_cpu`] answers Linux's `smp_processor_id()` with one `mov` from
//! `fs:[0]`.
//!
//! CPU 0 is the bootstrap processor; the application processors are numbered
//! 1.. in the order the firmware lists them ([`crate::madt`]).

use core::arch::asm;
use core::cell::UnsafeCell;

use crate::gdt::{DescriptorTablePointer, KERNEL_CS, KERNEL_DS};

/// Processors the kernel supports (BSP included).
pub const MAX_CPUS: usize = 8;

/// Selector of the per-CPU data segment (GDT slot 3), loaded in FS.
pub const PERCPU_FS: u16 = 0x18;
/// Selector of the CPU's TSS (GDT slot 4).
pub const TSS_SEL: u16 = 0x20;

/// The 32-bit task-state segment (Intel SDM vol. 3, 8.2.1). The kernel runs in
/// ring 0 only, so the CPU never reads `esp0`/`ss0`; `ltr` needs the segment.
#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Tss {
    link: u32,
    esp0: u32,
    ss0: u32,
    rest: [u32; 22],
    /// I/O map base beyond the limit: no I/O permission bitmap.
    iomap: u32,
}

/// One CPU's own descriptors and number.
#[repr(C, align(64))]
struct PerCpu {
    /// `fs:[0]`: this CPU's number.
    number: u32,
    gdt: [u64; 5],
    tss: Tss,
}

struct PerCpuArea(UnsafeCell<[PerCpu; MAX_CPUS]>);

// SAFETY: entry `n` is written only by `load(n)` on CPU `n` before it loads the
// descriptors, and by the CPU itself (the TSS busy bit); no Rust reference to
// an entry outlives `load`.
unsafe impl Sync for PerCpuArea {}

const EMPTY_TSS: Tss = Tss { link: 0, esp0: 0, ss0: 0, rest: [0; 22], iomap: 0 };
const EMPTY: PerCpu = PerCpu { number: 0, gdt: [0; 5], tss: EMPTY_TSS };

static AREA: PerCpuArea = PerCpuArea(UnsafeCell::new([EMPTY; MAX_CPUS]));

/// A flat 4 GiB ring-0 segment descriptor of `access` type (accessed bit preset).
const fn flat(access: u64) -> u64 {
    0x00CF_0000_0000_FFFF | (access << 40)
}

/// A byte-granular descriptor of `base`/`limit` with the access byte `access`.
fn descriptor(base: u32, limit: u32, access: u64, flags: u64) -> u64 {
    let (base, limit) = (u64::from(base), u64::from(limit));
    (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (access << 40)
        | (((limit >> 16) & 0xF) << 48)
        | (flags << 52)
        | ((base >> 24) << 56)
}

/// Builds CPU `n`'s GDT and TSS and loads them: CS/DS/ES/SS flat, FS the
/// per-CPU segment, TR the TSS. `stack_top` goes into the TSS's `esp0`.
///
/// # Panics
/// If `n >= MAX_CPUS`.
///
/// # Safety
/// Must run once per CPU, on CPU `n` itself, before [`this_cpu`] is used there,
/// with interrupts off; no other CPU may be loading entry `n`.
pub unsafe fn load(n: usize, stack_top: u32) {
    assert!(n < MAX_CPUS, "CPU {n} beyond MAX_CPUS");
    // SAFETY: entry `n` belongs to this CPU alone (caller's contract) and no
    // reference to it exists yet.
    let pc = unsafe { &mut (*AREA.0.get())[n] };
    pc.number = n as u32;
    pc.tss = Tss { esp0: stack_top, ss0: u32::from(KERNEL_DS), iomap: core::mem::size_of::<Tss>() as u32, ..EMPTY_TSS };
    let number = core::ptr::addr_of!(pc.number) as u32;
    let tss = core::ptr::addr_of!(pc.tss) as u32;
    pc.gdt = [
        0,
        flat(0x9B),
        flat(0x93),
        // Data, read/write, accessed, byte granular: just the number.
        descriptor(number, 3, 0x93, 0x4),
        // 32-bit available TSS.
        descriptor(tss, core::mem::size_of::<Tss>() as u32 - 1, 0x89, 0x0),
    ];
    let pointer =
        DescriptorTablePointer { limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16, base: pc.gdt.as_ptr() as u32 };
    // SAFETY: the GDT lives in a static; its flat code/data segments keep every
    // address meaning the same, FS gets this CPU's data segment and TR its TSS
    // (available, so `ltr` can mark it busy).
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [2f]",
            "push {tmp}",
            "retf",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov gs, {ds:x}",
            "mov ss, {ds:x}",
            "mov fs, {fs:x}",
            "ltr {tr:x}",
            ptr = in(reg) &pointer,
            cs = const KERNEL_CS,
            ds = in(reg) u32::from(KERNEL_DS),
            fs = in(reg) u32::from(PERCPU_FS),
            tr = in(reg) u32::from(TSS_SEL),
            tmp = out(reg) _,
            options(preserves_flags)
        );
    }
}

/// This CPU's number (`smp_processor_id()`): 0 on the BSP, 1.. on the APs.
/// Before [`load`] ran on this CPU it reads the loader's FS (the BSP loads its
/// own first thing in `kmain`).
pub fn this_cpu() -> usize {
    let n: u32;
    // SAFETY: FS is this CPU's per-CPU segment (loaded by `load`), whose first
    // 4 bytes are its number; the read has no side effects.
    unsafe { asm!("mov {}, fs:[0]", out(reg) n, options(nostack, readonly, preserves_flags)) };
    n as usize
}
