//! The paravirt backend and the paging mode this kernel was built with,
//! selected by cargo features (`vmi`, `xen`, `pae`; see [`crate::config`]).
//! With `boot-select` the backend is chosen at boot instead and reached
//! through a run-time table (`paravirt_ops.rs`); the paging mode and
//! [`WithBackend`] below serve both.
//!
//! The boot stub builds its tables in the same mode (see [`crate::boot`]), so
//! the CPU's paging mode (CR4.PAE) always matches what `i386-mm` builds.
//!
//! The processor sets accessed and dirty bits in the tables it walks; neither
//! backend counts those as divergences: VMI copies them from its shadows back
//! to the guest before every cross-check, and the Xen model leaves them out of
//! its record of what a validated table holds.
//!
//! Every backend is built with its *panic* policy where it has one: a protocol
//! violation stops the kernel at the hook that broke the rule, and the panic
//! handler prints the backend's report (the rule and the pfn) before exiting
//! QEMU with the failure status.

// With both `vmi` and `xen` (refused by `config`'s `compile_error!`), the VMI items are the
// ones built, so that error is the only one.
#[cfg(all(any(feature = "vmi", feature = "xen"), not(feature = "boot-select")))]
use paravirt_core::Policy;
use paravirt_core::{Inspect, PvMmuOps};

#[cfg(not(feature = "boot-select"))]
use crate::phys::KernelPhys;

/// The paging mode: PAE (three-level) with the `pae` feature.
#[cfg(feature = "pae")]
pub type Mode = i386_paging::Pae;
/// The paging mode: two-level (non-PAE) without the `pae` feature.
#[cfg(not(feature = "pae"))]
pub type Mode = i386_paging::TwoLevel;

/// Something to run with the backend (the backend's type differs per build).
pub trait WithBackend {
    /// What the run produces.
    type Output;
    /// Runs with `backend`, which serves this kernel's paging mode.
    fn run<B: PvMmuOps<Mode> + Inspect + Sync>(self, backend: &B) -> Self::Output;
}

/// Creates the native backend (wrapped in a recorder that counts the hook calls
/// for the statistics, since the backend itself keeps no state) and runs `w`.
#[cfg(not(any(feature = "vmi", feature = "xen", feature = "boot-select")))]
pub fn with_backend<W: WithBackend>(mem: &KernelPhys, w: W) -> W::Output {
    /// Events kept in the recorder's log: none, only the per-hook counts.
    const HOOK_LOG: usize = 0;
    let _ = mem;
    let hooks: paravirt_core::Recorder<_, HOOK_LOG> = paravirt_core::Recorder::new(backend_native::Native);
    w.run(&hooks)
}

/// Creates the VMI backend over `mem` (it reserves its shadow frames, and in PAE
/// the per-vCPU shadow PDPT, right away) with its panic policy, runs `w` with it
/// (accessed/dirty bits synced back from the shadows before every cross-check),
/// and gives the reserved frames back if the run released
/// every page table.
///
/// # Panics
/// If memory cannot supply the shadow frames, or the teardown is refused.
#[cfg(all(feature = "vmi", not(feature = "boot-select")))]
pub fn with_backend<W: WithBackend>(mem: &KernelPhys, w: W) -> W::Output {
    let vmi = backend_vmi::Vmi::<Mode, _>::new(mem, Policy::Panic)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_vcpu_id(crate::percpu::this_cpu);
    let out = w.run(&vmi);
    if vmi.typed_pages() == 0 {
        if let Err(v) = vmi.teardown() {
            panic!("{v}");
        }
    }
    out
}

/// The Xen hypervisor model over the kernel's RAM, a static (its `new` is
/// `const`), with a base pointer per vCPU (the CPU number from
/// [`crate::percpu::this_cpu`]) and the kernel's IPIs for its multicast flushes
/// ([`crate::shootdown::flush_multi`]); its frame table (type, type count and
/// pin of every frame of RAM, 16 bytes each) is reserved in RAM at boot by
/// [`with_backend`]. It gets the CPU's `invlpg`, so a linear-map PTE the model
/// makes read-only or writable is dropped from the real TLB.
#[cfg(all(feature = "xen", not(feature = "vmi"), not(feature = "boot-select")))]
static HYPERVISOR: backend_xen::Hypervisor<Mode, KernelPhys> = backend_xen::Hypervisor::new(KernelPhys)
    .with_invlpg(crate::cpu::invlpg)
    .with_vcpu_id(crate::percpu::this_cpu)
    .with_flush_multi(crate::shootdown::flush_multi);

/// The guest side of the Xen PV domain (Linux's Xen MMU code), issuing its
/// hypercalls to [`HYPERVISOR`], with its panic policy, a static too; its
/// per-page flags are reserved in RAM at boot by [`with_backend`].
#[cfg(all(feature = "xen", not(feature = "vmi"), not(feature = "boot-select")))]
static XEN: backend_xen::Xen<'static, Mode, KernelPhys> = backend_xen::Xen::new(&HYPERVISOR, Policy::Panic);

/// Runs `w` with the Xen PV MMU model over the kernel's RAM (`mem` is that
/// RAM; the model holds its own [`KernelPhys`]): sets up the hypervisor's
/// frame table and the guest's per-page flags first (both in RAM, sized by
/// it), and gives them back if the run released every page table. A write
/// fault on a read-only page goes to the model first ([`crate::emulate`]): a
/// store into a validated page table is emulated, as Xen's
/// `ptwr_do_page_fault` does.
///
/// # Panics
/// If memory cannot supply the per-frame records, or the teardown is refused.
#[cfg(all(feature = "xen", not(feature = "vmi"), not(feature = "boot-select")))]
pub fn with_backend<W: WithBackend>(mem: &KernelPhys, w: W) -> W::Output {
    let _ = mem;
    HYPERVISOR.init_frametable().unwrap_or_else(|e| panic!("{e}"));
    XEN.init().unwrap_or_else(|e| panic!("{e}"));
    crate::emulate::set_write_fault_handler(|addr, val| HYPERVISOR.ptwr_do_page_fault(addr, u64::from(val), 4).is_ok());
    let out = w.run(&XEN);
    if XEN.pages_held() == 0 {
        if let Err(e) = XEN.teardown().and_then(|()| HYPERVISOR.free_frametable()) {
            panic!("{e}");
        }
    }
    out
}

/// Bytes the kernel leaves free at the top of its address space for the
/// hypervisor (Linux's `reserve_top_address`, as `xen_reserve_top` calls it):
/// Xen's area.
#[cfg(all(feature = "xen", not(feature = "vmi"), not(feature = "boot-select")))]
pub const RESERVE_TOP: u32 = 0u32.wrapping_sub(backend_xen::hypervisor_virt_start(cfg!(feature = "pae"))) + 2 * 4096;

/// Bytes the kernel leaves free at the top of its address space: none
/// without a hypervisor that maps itself there.
#[cfg(not(any(all(feature = "xen", not(feature = "vmi")), feature = "boot-select")))]
pub const RESERVE_TOP: u32 = 0;
