//! Recoverable memory probes, implemented like Linux's exception tables.
//!
//! [`probe_write_u32`] and [`probe_read_u32`] each run a tiny assembly routine
//! whose single memory-access instruction is listed, together with a fixup
//! address, in the `.ex_table` section (`__ex_table_start..__ex_table_end`,
//! see linker.ld). If that instruction raises #PF or #GP, the exception
//! handler ([`crate::idt`]) finds its EIP in the table, records a [`Fault`]
//! and resumes at the fixup, which makes the routine return "faulted" instead
//! of killing the kernel. This is how the demo shows that a write to a
//! not-present or read-only page faults and the kernel recovers.

use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::percpu::{this_cpu, MAX_CPUS};

use crate::exception::{self as idt, PageFaultError};

/// A fault raised by a probe and recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector ([`idt::PF`] or [`idt::GP`]).
    pub vector: u8,
    /// Error code the CPU pushed.
    pub error_code: u32,
    /// Faulting linear address (CR2) for #PF; 0 for #GP.
    pub addr: u32,
    /// Address of the faulting probe instruction.
    pub eip: u32,
}

impl Fault {
    /// Whether the fault is a page fault on a not-present page.
    pub fn is_not_present(&self) -> bool {
        self.vector == idt::PF && self.error_code & 1 == 0
    }

    /// Whether the fault is a page fault caused by a write.
    pub fn is_write(&self) -> bool {
        self.vector == idt::PF && self.error_code & 2 != 0
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#010x}, error code {:#x}", idt::vector_name(self.vector), self.addr, self.error_code)?;
        if self.vector == idt::PF {
            write!(f, " [{}]", PageFaultError(self.error_code))?;
        }
        write!(f, ", eip {:#010x}", self.eip)
    }
}

/// One exception-table entry (Linux's `struct exception_table_entry`).
#[repr(C)]
struct ExTableEntry {
    /// Address of an instruction allowed to fault.
    insn: u32,
    /// Where to resume if it does.
    fixup: u32,
}

extern "C" {
    static __ex_table_start: ExTableEntry;
    static __ex_table_end: ExTableEntry;

    /// Writes `val` to `va`; returns 0, or 1 if the write faulted.
    fn kdemo_probe_write_u32(va: u32, val: u32) -> u32;
    /// Reads `*va` into `*out`; returns 0, or 1 (and leaves `*out`) if the read faulted.
    fn kdemo_probe_read_u32(va: u32, out: *mut u32) -> u32;
}

global_asm!(
    ".section .text.kdemo_probe, \"ax\"",
    ".global kdemo_probe_write_u32",
    ".type kdemo_probe_write_u32, @function",
    "kdemo_probe_write_u32:",
    "    mov ecx, [esp + 4]",
    "    mov edx, [esp + 8]",
    "    xor eax, eax",
    "2:  mov dword ptr [ecx], edx", // the only instruction allowed to fault
    "    ret",
    "3:  mov eax, 1", // fixup
    "    ret",
    ".size kdemo_probe_write_u32, . - kdemo_probe_write_u32",
    ".pushsection .kdemo_ex_table, \"a\"",
    ".long 2b, 3b",
    ".popsection",
    "",
    ".global kdemo_probe_read_u32",
    ".type kdemo_probe_read_u32, @function",
    "kdemo_probe_read_u32:",
    "    mov ecx, [esp + 4]",
    "    xor eax, eax",
    "2:  mov edx, dword ptr [ecx]", // the only instruction allowed to fault
    "    mov ecx, [esp + 8]",
    "    mov [ecx], edx",
    "    ret",
    "3:  mov eax, 1", // fixup
    "    ret",
    ".size kdemo_probe_read_u32, . - kdemo_probe_read_u32",
    ".pushsection .kdemo_ex_table, \"a\"",
    ".long 2b, 3b",
    ".popsection",
);

/// Per CPU, the last recovered fault, written by the exception handler.
static LAST_VECTOR: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static LAST_ERROR: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static LAST_ADDR: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static LAST_EIP: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// The exception table as a slice.
fn ex_table() -> &'static [ExTableEntry] {
    // SAFETY: the linker script brackets `.ex_table`, an array of
    // 8-byte `(insn, fixup)` pairs emitted above, with these two symbols.
    unsafe {
        let start = core::ptr::addr_of!(__ex_table_start);
        let end = core::ptr::addr_of!(__ex_table_end);
        let len = (end as usize - start as usize) / core::mem::size_of::<ExTableEntry>();
        core::slice::from_raw_parts(start, len)
    }
}

/// Number of registered fixup entries.
pub fn ex_table_len() -> usize {
    ex_table().len()
}

/// Fixup address for a faulting instruction at `eip`, if it is a probe
/// (Linux's `search_exception_tables`).
pub fn fixup_for(eip: u32) -> Option<u32> {
    ex_table().iter().find(|e| e.insn == eip).map(|e| e.fixup)
}

/// Records a recovered fault (called by the exception handler).
pub fn record_fault(fault: Fault) {
    let n = this_cpu();
    LAST_VECTOR[n].store(u32::from(fault.vector), Ordering::Relaxed);
    LAST_ERROR[n].store(fault.error_code, Ordering::Relaxed);
    LAST_ADDR[n].store(fault.addr, Ordering::Relaxed);
    LAST_EIP[n].store(fault.eip, Ordering::Relaxed);
}

fn last_fault() -> Fault {
    let n = this_cpu();
    Fault {
        vector: LAST_VECTOR[n].load(Ordering::Relaxed) as u8,
        error_code: LAST_ERROR[n].load(Ordering::Relaxed),
        addr: LAST_ADDR[n].load(Ordering::Relaxed),
        eip: LAST_EIP[n].load(Ordering::Relaxed),
    }
}

/// Writes `val` to virtual address `va`, reporting a #PF or #GP as an error
/// instead of dying.
///
/// This is an arbitrary write to memory: a successful probe can clobber
/// anything mapped writable at `va`. It is meant for addresses the caller
/// owns or expects to fault (an unmapped page, a read-only page-table page).
///
/// # Safety
/// If `va` is mapped writable, the caller must own the 4 bytes at `va` (no
/// live Rust reference may observe them changing).
pub unsafe fn probe_write_u32(va: u32, val: u32) -> Result<(), Fault> {
    // SAFETY: the routine writes only `va`, which the caller vouches for; a fault
    // on that write is recovered through the exception table.
    match unsafe { kdemo_probe_write_u32(va, val) } {
        0 => Ok(()),
        _ => Err(last_fault()),
    }
}

/// Reads the `u32` at virtual address `va`, reporting a #PF or #GP as an
/// error instead of dying. Reading cannot change memory, so this is safe
/// (a read of memory-mapped I/O could have side effects, but the demo kernel
/// maps none).
pub fn probe_read_u32(va: u32) -> Result<u32, Fault> {
    let mut value = 0u32;
    // SAFETY: the routine reads `va` (a fault is recovered through the exception
    // table) and writes only to `value`, a local we own.
    match unsafe { kdemo_probe_read_u32(va, &mut value) } {
        0 => Ok(value),
        _ => Err(last_fault()),
    }
}
