//! Probes for the zero-cost claim.
//!
//! Each `probe_*` function is one `i386-mm` call site instantiated over the native backend,
//! kept out of line and unmangled so its machine code can be found. `cargo xtask asm-check`
//! builds this crate twice, with the `paravirt` feature (hooks dispatched statically to
//! [`Native`]) and without it (hooks compiled out, entry writes plain stores, like Linux
//! without `CONFIG_PARAVIRT`), and requires the two listings of every probe to be identical.
//!
//! A probe of a Linux-named call site that is an `unsafe fn` (it writes through tables and
//! slots its caller owns) is an `unsafe fn` itself, with the call site's contract; the probes
//! are only compiled and compared, never called.
#![no_std]
#![warn(missing_docs)]

use backend_native::Native;
use i386_mm::{BootMem, CpaFlush, Cpu, Fault, KernelMm, MmError, MmuGather, Pae, Pfn, PmdSlot, PteFlags, TwoLevel};
use paravirt_core::ParavirtOps;

/// A processor whose privileged operations are opaque calls, so the probes keep them.
pub struct ExternCpu;

extern "Rust" {
    fn asm_probe_cpu_op(op: u32, arg: u32) -> u32;
}

impl Cpu for ExternCpu {
    fn write_cr3(&self, cr3: u32) {
        // SAFETY: a plain Rust function the probe's user links in; never called here.
        unsafe { asm_probe_cpu_op(0, cr3) };
    }
    fn read_cr3(&self) -> u32 {
        // SAFETY: as above.
        unsafe { asm_probe_cpu_op(1, 0) }
    }
    fn load_boot_root(&self) {
        // SAFETY: as above.
        unsafe { asm_probe_cpu_op(2, 0) };
    }
    fn invlpg(&self, va: u32) {
        // SAFETY: as above.
        unsafe { asm_probe_cpu_op(3, va) };
    }
    fn flush_tlb(&self) {
        // SAFETY: as above.
        unsafe { asm_probe_cpu_op(4, 0) };
    }
    fn flush_tlb_global(&self) {
        // SAFETY: as above.
        unsafe { asm_probe_cpu_op(5, 0) };
    }
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        // SAFETY: as above.
        Ok(unsafe { asm_probe_cpu_op(6, va) })
    }
    fn write_u32(&self, va: u32, _val: u32) -> Result<(), Fault> {
        // SAFETY: as above.
        unsafe { asm_probe_cpu_op(7, va) };
        Ok(())
    }
}

/// The two-level kernel over Linux-style run-time dispatch (a `paravirt_ops` table), the
/// baseline the static probes are compared with.
pub type KernelOps2 = KernelMm<TwoLevel, ParavirtOps<TwoLevel>, BootMem, ExternCpu>;

/// `pmd_populate` through the run-time ops table: what static dispatch saves.
///
/// # Safety
/// As for [`KernelMm::pmd_populate`].
#[no_mangle]
#[inline(never)]
pub unsafe fn ops_pmd_populate_2level(k: &KernelOps2, pmd: PmdSlot, pte: Pfn) {
    // SAFETY: forwarded from this function's contract.
    unsafe { k.pmd_populate(pmd, pte) }
}

/// `pgd_ctor` through the run-time ops table.
///
/// # Errors
/// As for [`KernelMm::pgd_ctor`].
///
/// # Safety
/// As for [`KernelMm::pgd_ctor`].
#[no_mangle]
#[inline(never)]
pub unsafe fn ops_pgd_ctor_2level(k: &KernelOps2, pgd: Pfn) -> Result<(), MmError> {
    // SAFETY: forwarded from this function's contract.
    unsafe { k.pgd_ctor(pgd) }
}

/// The two-level kernel the probes use.
pub type Kernel2 = KernelMm<TwoLevel, Native, BootMem, ExternCpu>;
/// The PAE kernel the probes use.
pub type Kernel3 = KernelMm<Pae, Native, BootMem, ExternCpu>;

macro_rules! probes {
    ($(
        $([unsafe $call:ident])?
        $name:ident ($($arg:ident : $t:ty),*) -> $ret:ty $body:block
    )*) => {
        $(
            probes!(@one $([unsafe $call])? $name ($($arg: $t),*) -> $ret $body);
        )*
        /// Names of every probe, for the assembly comparison.
        pub const PROBES: &[&str] = &[$(stringify!($name)),*];
    };
    // `[unsafe call]`: a Linux-named call site that is an `unsafe fn` (`KernelMm::call`); the
    // probe is one too, with its contract.
    (@one [unsafe $call:ident] $name:ident ($($arg:ident : $t:ty),*) -> $ret:ty $body:block) => {
        #[doc = concat!("Probe `", stringify!($name), "`.")]
        ///
        /// # Errors
        #[doc = concat!("As for [`KernelMm::", stringify!($call), "`].")]
        ///
        /// # Safety
        #[doc = concat!("As for [`KernelMm::", stringify!($call), "`].")]
        #[no_mangle]
        #[inline(never)]
        pub unsafe fn $name($($arg: $t),*) -> $ret {
            // SAFETY: forwarded from this probe's contract (that of the call site it wraps).
            unsafe { $body }
        }
    };
    // A safe call site.
    (@one $name:ident ($($arg:ident : $t:ty),*) -> $ret:ty $body:block) => {
        #[doc = concat!("Probe `", stringify!($name), "`.")]
        ///
        /// # Errors
        /// As for the call site it wraps.
        #[no_mangle]
        #[inline(never)]
        pub fn $name($($arg: $t),*) -> $ret $body
    };
}

probes! {
    [unsafe pmd_populate]
    probe_pmd_populate_2level(k: &Kernel2, pmd: PmdSlot, pte: Pfn) -> () { k.pmd_populate(pmd, pte) }
    [unsafe pmd_populate]
    probe_pmd_populate_pae(k: &Kernel3, pmd: PmdSlot, pte: Pfn) -> () { k.pmd_populate(pmd, pte) }
    [unsafe pte_free_tlb]
    probe_pte_free_tlb_2level(k: &Kernel2, tlb: &mut MmuGather, pte: Pfn) -> () { k.pte_free_tlb(tlb, pte) }
    [unsafe pgd_ctor]
    probe_pgd_ctor_2level(k: &Kernel2, pgd: Pfn) -> Result<(), MmError> { k.pgd_ctor(pgd) }
    [unsafe pgd_dtor]
    probe_pgd_dtor_2level(k: &Kernel2, pgd: Pfn) -> () { k.pgd_dtor(pgd) }
    probe_pgd_alloc_pae(k: &Kernel3) -> Result<Pfn, MmError> { k.pgd_alloc() }
    [unsafe pgd_free]
    probe_pgd_free_pae(k: &Kernel3, pgd: Pfn) -> () { k.pgd_free(pgd) }
    [unsafe split_large_page]
    probe_split_large_page_2level(k: &Kernel2, va: u32) -> Result<Pfn, MmError> {
        k.split_large_page(va, PteFlags::PRESENT, PteFlags::PRESENT | PteFlags::RW)
    }
    [unsafe one_page_table_init]
    probe_one_page_table_init_pae(k: &Kernel3, pmd: PmdSlot) -> Result<Pfn, MmError> { k.one_page_table_init(pmd) }
    probe_change_page_attr_2level(k: &Kernel2, pfn: Pfn) -> Result<CpaFlush, MmError> {
        k.change_page_attr(pfn, i386_mm::PAGE_KERNEL_RO)
    }
}
