//! The processor: what the kernel does in hardware once a backend has had its say.

use core::fmt;

/// A fault taken by a probing access ([`Cpu::read_u32`], [`Cpu::write_u32`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector (14 for a page fault).
    pub vector: u8,
    /// The error code pushed by the CPU (for #PF: bit 0 present, bit 1 write, bit 2 user).
    pub error_code: u32,
    /// The faulting linear address (CR2).
    pub addr: u32,
}

/// `#PF` error code bit: the page was present (a protection fault).
pub const PF_PROT: u32 = 1;
/// `#PF` error code bit: the access was a write.
pub const PF_WRITE: u32 = 2;
/// `#PF` error code bit: the access was made in user mode.
pub const PF_USER: u32 = 4;

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vector {} error {:#x} at {:#010x}", self.vector, self.error_code, self.addr)
    }
}

/// The privileged operations the page-table code performs after the backend hooks, and a
/// fault-tolerant access used to check mappings through the hardware walk.
///
/// Implemented by the kernel demo with real instructions, and by the host test kit with a
/// software walker over emulated RAM.
pub trait Cpu {
    /// Loads CR3.
    fn write_cr3(&self, cr3: u32);
    /// Reads CR3.
    fn read_cr3(&self) -> u32;
    /// Loads a root that `i386-mm` did not build (the boot page tables), so the kernel's own
    /// tables can be torn down (`KernelMm::shutdown`).
    fn load_boot_root(&self);
    /// Invalidates the TLB entry of `va`.
    fn invlpg(&self, va: u32);
    /// Flushes non-global TLB entries.
    fn flush_tlb(&self);
    /// Flushes every TLB entry.
    fn flush_tlb_global(&self);
    /// The other online CPUs, as a mask of CPU numbers (bit `n` = CPU `n`; Linux's
    /// `cpu_online_map` less `smp_processor_id()`). Default: none, one CPU.
    fn other_cpus(&self) -> u32 {
        0
    }
    /// Makes the CPUs in `mask` flush the TLB entry of virtual address `addr`, or every
    /// entry when `addr` is [`paravirt_core::TLB_FLUSH_ALL`], and waits until all of them
    /// have (Linux's `native_flush_tlb_others`: an IPI to each). Default: nothing, one CPU.
    fn flush_tlb_others(&self, mask: u32, addr: u32) {
        let _ = (mask, addr);
    }
    /// Reads a 32-bit word at virtual address `va` through the current page tables as the
    /// kernel (supervisor, CR0.WP set), reporting a fault instead of dying.
    ///
    /// # Errors
    /// The [`Fault`] the access raised (a #PF with its error code and CR2).
    fn read_u32(&self, va: u32) -> Result<u32, Fault>;
    /// Writes a 32-bit word at virtual address `va` as the kernel, reporting a fault instead
    /// of dying.
    ///
    /// # Errors
    /// The [`Fault`] the access raised; nothing was written.
    fn write_u32(&self, va: u32, val: u32) -> Result<(), Fault>;
}

impl<T: Cpu + ?Sized> Cpu for &T {
    fn write_cr3(&self, cr3: u32) {
        (**self).write_cr3(cr3)
    }
    fn read_cr3(&self) -> u32 {
        (**self).read_cr3()
    }
    fn load_boot_root(&self) {
        (**self).load_boot_root()
    }
    fn invlpg(&self, va: u32) {
        (**self).invlpg(va)
    }
    fn flush_tlb(&self) {
        (**self).flush_tlb()
    }
    fn flush_tlb_global(&self) {
        (**self).flush_tlb_global()
    }
    fn other_cpus(&self) -> u32 {
        (**self).other_cpus()
    }
    fn flush_tlb_others(&self, mask: u32, addr: u32) {
        (**self).flush_tlb_others(mask, addr)
    }
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        (**self).read_u32(va)
    }
    fn write_u32(&self, va: u32, val: u32) -> Result<(), Fault> {
        (**self).write_u32(va, val)
    }
}
