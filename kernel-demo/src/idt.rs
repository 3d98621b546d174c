//! The interrupt descriptor table, the trap entry stubs, and the fatal
//! exception report.
//!
//! Every CPU exception vector (0..32) gets an interrupt gate. The entry stubs
//! push a uniform [`TrapFrame`] and call [`trap_dispatch`], which first offers a
//! write fault on a read-only page to the hypervisor's emulation ([`crate::emulate`],
//! Xen's `ptwr_do_page_fault`), then gives [`crate::probe`] a chance to recover a fault
//! raised by a probe instruction (Linux's exception-table fixup) and otherwise prints a
//! readable report
//! (vector, error code, EIP, CR2, registers) and exits QEMU with a failure code.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

use crate::exception::{vector_name, PageFaultError};
use crate::gdt::{DescriptorTablePointer, KERNEL_CS};
use crate::{cpu, emulate, exit, kprintln, probe};

/// Number of CPU exception vectors, all of which get a gate.
pub const EXCEPTION_VECTORS: usize = 32;

pub use crate::exception::{DE, DF, GP, PF, UD};

/// Non-maskable interrupt vector (the TLB shootdown IPI, [`crate::shootdown`]).
pub const NMI: u8 = 2;

/// Registers saved by the trap entry stubs, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// EDI at the time of the trap (saved by `pushad`).
    pub edi: u32,
    /// ESI.
    pub esi: u32,
    /// EBP.
    pub ebp: u32,
    /// ESP as `pushad` saw it (ignored by `popad`).
    pub esp_at_pushad: u32,
    /// EBX.
    pub ebx: u32,
    /// EDX.
    pub edx: u32,
    /// ECX.
    pub ecx: u32,
    /// EAX.
    pub eax: u32,
    /// Exception vector (pushed by the stub).
    pub vector: u32,
    /// Error code pushed by the CPU, or 0 for vectors without one.
    pub error_code: u32,
    /// Faulting (or next, for traps) instruction; `iretd` resumes here.
    pub eip: u32,
    /// Code segment of the interrupted code.
    pub cs: u32,
    /// EFLAGS of the interrupted code.
    pub eflags: u32,
}

/// One 8-byte 32-bit gate descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    reserved: u8,
    type_attr: u8,
    offset_high: u16,
}

impl Gate {
    const MISSING: Self = Self { offset_low: 0, selector: 0, reserved: 0, type_attr: 0, offset_high: 0 };

    /// Present, ring-0, 32-bit interrupt gate (IF cleared on entry).
    fn interrupt(handler: u32) -> Self {
        Self {
            offset_low: handler as u16,
            selector: KERNEL_CS,
            reserved: 0,
            type_attr: 0x8E,
            offset_high: (handler >> 16) as u16,
        }
    }
}

#[repr(C, align(8))]
struct Idt(UnsafeCell<[Gate; 256]>);

// SAFETY: the table is written only by `init`, on the BSP before it is loaded and before any
// AP starts, and by `break_gate_for_test` through a raw pointer; the CPUs read it in hardware.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([Gate::MISSING; 256]));

extern "C" {
    /// Addresses of the 32 entry stubs, in vector order (defined below).
    static kdemo_trap_stubs: [u32; EXCEPTION_VECTORS];
}

// Entry stubs. Vectors with a CPU error code (8, 10-14, 17, 21, 29, 30) do not
// push the dummy zero. The common path saves the general registers, aligns
// the stack to 16 bytes for the SSE-using Rust code, and calls the dispatcher
// with a pointer to the frame; on return it restores the (possibly edited)
// frame and resumes with `iretd`. The x87/SSE state is saved around the Rust
// code (`fxsave`): an NMI interrupts code that holds values in xmm registers.
global_asm!(
    r#"
    .pushsection .rodata.kdemo_trap_stubs, "a"
    .balign 4
    .global kdemo_trap_stubs
kdemo_trap_stubs:
    .popsection

    .section .text.kdemo_traps, "ax"
    .macro KDEMO_TRAP_STUB vec
    .balign 16
kdemo_trap_stub_\vec:
    .if (\vec != 8) && (\vec != 10) && (\vec != 11) && (\vec != 12) && (\vec != 13) && (\vec != 14) && (\vec != 17) && (\vec != 21) && (\vec != 29) && (\vec != 30)
    push 0
    .endif
    push \vec
    jmp kdemo_trap_common
    .pushsection .rodata.kdemo_trap_stubs, "a"
    .long kdemo_trap_stub_\vec
    .popsection
    .endm

    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    KDEMO_TRAP_STUB \vec
    .endr

kdemo_trap_common:
    pushad
    cld
    mov ebx, esp
    sub esp, 512
    and esp, -16
    fxsave [esp]
    sub esp, 12
    push ebx
    call {dispatch}
    add esp, 16
    fxrstor [esp]
    mov esp, ebx
    popad
    add esp, 8
    iretd
    "#,
    dispatch = sym trap_dispatch,
);

/// Fills the exception gates and loads the IDT.
pub fn init() {
    // SAFETY: `kdemo_trap_stubs` is a read-only table of 32 stub addresses emitted
    // by the global_asm! above.
    let stubs = unsafe { &*core::ptr::addr_of!(kdemo_trap_stubs) };
    // SAFETY: on the BSP before any AP starts, interrupts off, and the IDT is not
    // loaded yet (or is reloaded below with identical contents), so no one else reads it.
    let idt = unsafe { &mut *IDT.0.get() };
    for (gate, &stub) in idt.iter_mut().zip(stubs) {
        *gate = Gate::interrupt(stub);
    }
    load();
}

/// Loads the IDT [`init`] filled on this CPU (each application processor
/// loads the same table, as Linux's CPUs share `idt_table`).
pub fn load() {
    let pointer =
        DescriptorTablePointer { limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16, base: IDT.0.get() as u32 };
    // SAFETY: the IDT is a static filled with valid gates to the stubs above
    // (by `init`, on the BSP, before any AP starts).
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) }
}

/// Points the gate for `vector` at a selector beyond the GDT limit, so the
/// next delivery of `vector` raises #GP (and, for #GP itself, #DF). Only
/// for [`crate::crashtest`].
pub fn break_gate_for_test(vector: u8) {
    // SAFETY: a raw-pointer write of one field, no Rust reference to the table
    // exists; the CPUs read gates only in hardware, while delivering an exception.
    unsafe { (*IDT.0.get())[usize::from(vector)].selector = 0x80 };
}

/// Rust side of every exception: a TLB shootdown NMI, a probe fault to recover,
/// or report and die.
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let cr2 = cpu::read_cr2();
    let vector = frame.vector as u8;
    if vector == NMI {
        // A shootdown, or a repeated one already handled: either way nothing else to do.
        crate::shootdown::handle_nmi();
        return;
    }
    if vector == PF && emulate::try_emulate(frame, cr2) {
        return;
    }
    if vector == PF || vector == GP {
        if let Some(fixup) = probe::fixup_for(frame.eip) {
            let addr = if vector == PF { cr2 } else { 0 };
            probe::record_fault(probe::Fault { vector, error_code: frame.error_code, addr, eip: frame.eip });
            frame.eip = fixup;
            return;
        }
    }
    report(frame, cr2);
    exit::exit_failure();
}

/// Prints the fatal-exception report.
fn report(frame: &TrapFrame, cr2: u32) {
    let vector = frame.vector as u8;
    kprintln!();
    kprintln!("*** FATAL CPU EXCEPTION {} ({}) ***", vector, vector_name(vector));
    if vector == PF {
        kprintln!("error code {:#010x} [{}]", frame.error_code, PageFaultError(frame.error_code));
    } else {
        kprintln!("error code {:#010x}", frame.error_code);
    }
    kprintln!("EIP {:#010x}  CS {:#06x}  EFLAGS {:#010x}", frame.eip, frame.cs, frame.eflags);
    kprintln!(
        "CR2 {:#010x}  CR3 {:#010x}  CR0 {:#010x}  CR4 {:#010x}",
        cr2,
        cpu::read_cr3(),
        cpu::read_cr0(),
        cpu::read_cr4()
    );
    kprintln!("EAX {:#010x}  EBX {:#010x}  ECX {:#010x}  EDX {:#010x}", frame.eax, frame.ebx, frame.ecx, frame.edx);
    kprintln!(
        "ESI {:#010x}  EDI {:#010x}  EBP {:#010x}  ESP {:#010x}",
        frame.esi,
        frame.edi,
        frame.ebp,
        // The CPU pushed EIP/CS/EFLAGS without a stack switch (ring 0 -> ring 0).
        frame.esp_at_pushad + 20
    );
}
