//! The kernel's own flat GDT (in the high half; the multiboot loader's GDT
//! lives in low memory that the kernel later unmaps).

use core::arch::asm;

/// Kernel code segment selector (GDT slot 1).
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector (GDT slot 2).
pub const KERNEL_DS: u16 = 0x10;

/// Null, ring-0 code and ring-0 data descriptors, base 0, limit 4 GiB.
/// The "accessed" bits are preset so the CPU never writes to this table
/// (it may end up read-only once the kernel maps `.rodata` read-only).
static GDT: [u64; 3] = [
    0,
    0x00CF_9B00_0000_FFFF, // code: present, ring 0, execute/read, accessed, 32-bit, 4 KiB granularity
    0x00CF_9300_0000_FFFF, // data: present, ring 0, read/write, accessed, 32-bit, 4 KiB granularity
];

/// Operand of `lgdt`/`lidt`.
#[repr(C, packed)]
pub struct DescriptorTablePointer {
    /// Size of the table in bytes, minus one.
    pub limit: u16,
    /// Linear address of the table.
    pub base: u32,
}

/// Loads [`GDT`] and reloads every segment register from it.
pub fn init() {
    let pointer =
        DescriptorTablePointer { limit: (core::mem::size_of_val(&GDT) - 1) as u16, base: GDT.as_ptr() as u32 };
    // SAFETY: the GDT is a static (lives for ever) with flat ring-0 segments, so
    // reloading CS (via a far return) and the data segments with them keeps every
    // address meaning what it meant under the loader's flat segments.
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
            "mov fs, {ds:x}",
            "mov gs, {ds:x}",
            "mov ss, {ds:x}",
            ptr = in(reg) &pointer,
            cs = const KERNEL_CS,
            ds = in(reg) u32::from(KERNEL_DS),
            tmp = out(reg) _,
            options(preserves_flags)
        );
    }
}
