//! The real processor behind [`i386_mm::Cpu`]: CR3 loads, TLB maintenance and
//! fault-tolerant accesses through whatever tables CR3 points at.
//!
//! Under the native and Xen backends CR3 holds the guest's own tables; under
//! VMI it holds the shadow root the backend returned from `write_cr3`, so the
//! accesses below are translated by the hardware walking the shadows.

use i386_mm::{Cpu, Fault};

use crate::{boot, cpu, probe};

/// The CPU running the kernel, as `i386-mm` drives it.
///
/// Constructing one is `unsafe` because its [`Cpu`] methods are safe to call
/// yet load CR3 and write memory; the constructor's contract hands that
/// responsibility to the one user, `i386-mm`'s `KernelMm`.
pub struct X86Cpu {
    /// Physical address of the boot tables' root ([`boot::boot_root_phys`]).
    boot_root: u32,
}

impl X86Cpu {
    /// The CPU, for use by one `i386-mm` kernel.
    ///
    /// # Safety
    /// The returned value may only be handed to an `i386_mm::KernelMm` (or the
    /// scenario that builds one) whose linear map covers the whole kernel image,
    /// its stack and every frame in use, at `PAGE_OFFSET + pa` with the boot
    /// tables' protections: then every root it loads keeps the running code
    /// mapped. Its [`Cpu::write_u32`] may only target memory that kernel owns
    /// (user pages it mapped, page-table pages it built).
    pub unsafe fn new() -> Self {
        Self { boot_root: boot::boot_root_phys() }
    }
}

fn fault(f: probe::Fault) -> Fault {
    Fault { vector: f.vector, error_code: f.error_code, addr: f.addr }
}

impl Cpu for X86Cpu {
    fn write_cr3(&self, cr3: u32) {
        // SAFETY: by `X86Cpu::new`'s contract the caller is an i386-mm kernel,
        // which loads only roots it built (or the backend's shadow of one), all of
        // which map the kernel image, stack and frames linearly at PAGE_OFFSET.
        unsafe { cpu::write_cr3(cr3) }
    }

    fn read_cr3(&self) -> u32 {
        cpu::read_cr3()
    }

    fn load_boot_root(&self) {
        // SAFETY: the boot tables stay in the image for ever and still map
        // PAGE_OFFSET..PAGE_OFFSET + BOOT_MAP_SIZE (only the identity half was
        // dropped), which holds everything the kernel uses.
        unsafe { cpu::write_cr3(self.boot_root) }
    }

    fn invlpg(&self, va: u32) {
        cpu::invlpg(va);
    }

    fn flush_tlb(&self) {
        cpu::flush_tlb();
    }

    fn flush_tlb_global(&self) {
        cpu::flush_tlb_global();
    }

    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        probe::probe_read_u32(va).map_err(fault)
    }

    fn write_u32(&self, va: u32, val: u32) -> Result<(), Fault> {
        // SAFETY: by `X86Cpu::new`'s contract the caller writes only memory its
        // kernel owns (its own user pages, or a page table it expects to fault);
        // no Rust reference observes those bytes.
        unsafe { probe::probe_write_u32(va, val) }.map_err(fault)
    }
}
