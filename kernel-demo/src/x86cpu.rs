//! The real processor behind [`i386_paging::Cpu`]: CR3 loads, TLB maintenance and
//! fault-tolerant accesses through whatever tables CR3 points at.
//!
//! Under the native and Xen backends CR3 holds the guest's own tables; under
//! VMI it holds the shadow root the backend returned from `write_cr3`, so the
//! accesses below are translated by the hardware walking the shadows.
//!
//! PAE: a real processor reads the four PDPT entries into internal registers
//! when CR3 is loaded (and when CR4.PGE changes) and never looks at, or writes,
//! the PDPT in memory afterwards. QEMU's walker instead re-reads the in-memory
//! PDPT on every walk and sets bit 5 (`ACCESSED`) in it, which the backends'
//! checkers see as a change to a validated or shadowed table. So [`X86Cpu`]
//! emulates the architectural PDPTE registers: every CR3 load (and flush)
//! copies the four entries of the root into a per-CPU PDPT and points the
//! hardware CR3 there. The kernel sees the value it loaded ([`Cpu::read_cr3`]);
//! a PDPT change then needs a CR3 reload to take effect, exactly as on real
//! hardware.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

use i386_paging::{Cpu, Fault};

use crate::layout::{phys_to_virt, PAGE_OFFSET};
use crate::percpu::{this_cpu, MAX_CPUS};
use crate::shootdown;
use crate::{boot, cpu, probe};

/// The per-CPU copy of the four PDPT entries the hardware walks (PAE), 32-byte
/// aligned as CR3 requires.
#[repr(C, align(32))]
struct PdpteRegisters(UnsafeCell<[u64; 4]>);

// SAFETY: copy `n` is written only by `X86Cpu::load` running on CPU `n`, with
// interrupts off (an NMI only reloads CR3, it writes no copy).
unsafe impl Sync for PdpteRegisters {}

/// One copy of the PDPTE registers per CPU.
static PDPTE_REGISTERS: [PdpteRegisters; MAX_CPUS] = [const { PdpteRegisters(UnsafeCell::new([0; 4])) }; MAX_CPUS];

/// The CPU running the kernel, as `i386-mm` drives it.
///
/// Constructing one is `unsafe` because its [`Cpu`] methods are safe to call
/// yet load CR3 and write memory; the constructor's contract hands that
/// responsibility to the one user, `i386-mm`'s `KernelMm`.
pub struct X86Cpu {
    /// Physical address of the boot tables' root ([`boot::boot_root_phys`]).
    boot_root: u32,
    /// Per CPU, the CR3 value last loaded (what the kernel believes CR3 holds).
    loaded: [AtomicU32; MAX_CPUS],
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
        let boot_root = boot::boot_root_phys();
        Self { boot_root, loaded: [const { AtomicU32::new(0) }; MAX_CPUS] }.with_loaded(cpu::read_cr3())
    }

    fn with_loaded(self, cr3: u32) -> Self {
        for l in &self.loaded {
            l.store(cr3, Ordering::Relaxed);
        }
        self
    }

    /// This CPU's last loaded root.
    fn mine(&self) -> &AtomicU32 {
        &self.loaded[this_cpu()]
    }

    /// Loads `cr3` into the hardware (PAE: through the PDPTE registers).
    ///
    /// # Safety
    /// `cr3` must be the physical address of a valid root for the current paging mode
    /// (below the end of the linear map) that maps the running kernel at PAGE_OFFSET.
    unsafe fn load(&self, cr3: u32) {
        self.mine().store(cr3, Ordering::Relaxed);
        if cfg!(feature = "pae") {
            let root = phys_to_virt(cr3 & !0x1f).cast::<u64>();
            let regs = PDPTE_REGISTERS[this_cpu()].0.get().cast::<u64>();
            for i in 0..4 {
                // SAFETY: the caller guarantees `cr3` names a 32-byte PDPT inside the linear
                // map; `regs` is the 4-entry register copy, written only here (one CPU).
                unsafe { regs.add(i).write_volatile(root.add(i).read_volatile()) };
            }
            // SAFETY: the copy now holds the caller's valid PDPT entries.
            unsafe { cpu::write_cr3(regs as u32 - PAGE_OFFSET) }
        } else {
            // SAFETY: the caller's contract.
            unsafe { cpu::write_cr3(cr3) }
        }
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
        unsafe { self.load(cr3) }
    }

    fn read_cr3(&self) -> u32 {
        self.mine().load(Ordering::Relaxed)
    }

    fn load_boot_root(&self) {
        // SAFETY: the boot tables stay in the image for ever and still map
        // PAGE_OFFSET..PAGE_OFFSET + BOOT_MAP_SIZE (only the identity half was
        // dropped), which holds everything the kernel uses.
        unsafe { self.load(self.boot_root) }
    }

    fn invlpg(&self, va: u32) {
        cpu::invlpg(va);
    }

    /// Reloads CR3 (PAE: re-reads the PDPT entries, as a CR3 load does).
    fn flush_tlb(&self) {
        // SAFETY: the root loaded last, still valid by the caller's contract.
        unsafe { self.load(self.mine().load(Ordering::Relaxed)) }
    }

    /// Reloads CR3 and toggles CR4.PGE (PAE: the PDPT entries are re-read, as a
    /// CR4.PGE change does).
    fn flush_tlb_global(&self) {
        self.flush_tlb();
        cpu::flush_tlb_global();
    }

    /// The other online processors ([`shootdown::others`]).
    fn other_cpus(&self) -> u32 {
        shootdown::others()
    }

    /// One NMI IPI to each CPU in `mask`, waiting for every acknowledgement
    /// ([`shootdown::flush_tlb_others`]).
    fn flush_tlb_others(&self, mask: u32, addr: u32) {
        shootdown::flush_multi(mask, addr);
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
