//! Filling the ops table at boot (feature `boot-select`): the image holds all
//! three backends, the command line picks one ([`crate::select`]), and only
//! that one is created, in its own static slot, and put behind
//! [`PARAVIRT_OPS`], the kernel's run-time [`ParavirtOps`] table, as Linux's
//! VMI or Xen setup code fills `paravirt_ops` during boot.
//!
//! No heap: each backend lives in a [`spin::Once`] static (the Xen
//! hypervisor model in a plain static, it is `const`-constructible and does
//! nothing until the guest side calls it), so
//! [`ParavirtOps::from_backend`] gets the `&'static` it needs. Each backend
//! keeps the policy it has in a single-backend build: VMI and Xen panic on a
//! protocol violation, and VMI's reserved frames are given back at the end
//! (as in [`crate::backend`]).

use backend_native::Native;
use backend_vmi::Vmi;
use backend_xen::Xen;
use paravirt_core::{ParavirtOps, Policy, Recorder};
use spin::Once;

use crate::backend::{Mode, WithBackend};
use crate::dispatch::{Chosen, NativeHooks, TableBackend, VmiBackend, XenBackend, XenHypervisor};
use crate::kprintln;
use crate::phys::KernelPhys;
use crate::select::BackendKind;

/// The native backend's slot, filled if the command line chose it.
static NATIVE: Once<NativeHooks> = Once::new();
/// The VMI backend's slot, filled if the command line chose it (its shadow
/// frames are reserved only then).
static VMI: Once<VmiBackend> = Once::new();
/// The Xen hypervisor model (its frame table, 16 bytes per frame of RAM, is
/// reserved in RAM only if the command line chose Xen). It gets the CPU's
/// `invlpg`, so a linear-map PTE it makes read-only or writable is dropped
/// from the real TLB.
static HYPERVISOR: XenHypervisor = XenHypervisor::new(KernelPhys).with_invlpg(crate::cpu::invlpg);
/// The Xen model's slot, filled if the command line chose it.
static XEN: Once<XenBackend> = Once::new();

/// The kernel's ops table (Linux's `paravirt_ops`), filled once at boot.
pub static PARAVIRT_OPS: Once<ParavirtOps<Mode>> = Once::new();

/// Creates the backend `kind` in its static slot and fills [`PARAVIRT_OPS`]
/// with it.
///
/// # Panics
/// If the table is already filled (the choice is made once per boot), or VMI
/// cannot reserve its shadow frames, or Xen its per-frame records.
fn fill(kind: BackendKind) -> TableBackend {
    assert!(!PARAVIRT_OPS.is_completed(), "paravirt_ops is filled once per boot");
    let name = kind.name();
    let (ops, chosen) = match kind {
        BackendKind::Native => {
            let native = NATIVE.call_once(|| Recorder::new(Native));
            (ParavirtOps::from_backend(name, native), Chosen::Native(native))
        }
        BackendKind::Vmi => {
            let vmi = VMI.call_once(|| Vmi::new(KernelPhys, Policy::Panic).unwrap_or_else(|e| panic!("{e}")));
            (ParavirtOps::from_backend(name, vmi), Chosen::Vmi(vmi))
        }
        BackendKind::Xen => {
            let xen = XEN.call_once(|| {
                HYPERVISOR.init_frametable().unwrap_or_else(|e| panic!("{e}"));
                Xen::boot(&HYPERVISOR, Policy::Panic).unwrap_or_else(|e| panic!("{e}"))
            });
            // A write fault on a read-only page goes to the model first (`ptwr_do_page_fault`).
            crate::emulate::set_write_fault_handler(|addr, val| {
                HYPERVISOR.ptwr_do_page_fault(addr, u64::from(val), 4).is_ok()
            });
            (ParavirtOps::from_backend(name, xen), Chosen::Xen(xen))
        }
    };
    TableBackend { hooks: PARAVIRT_OPS.call_once(|| ops), inspect: chosen }
}

/// Bytes the kernel leaves free at the top of its address space for the
/// backend `kind` (Linux's `reserve_top_address`): Xen's area, none otherwise.
pub fn reserve_top(kind: BackendKind) -> u32 {
    match kind {
        BackendKind::Xen => HYPERVISOR.reserve_top(),
        BackendKind::Native | BackendKind::Vmi => 0,
    }
}

/// Creates the backend `kind`, fills the ops table with it, and runs `w` with
/// the kernel's memory management reaching the backend only through the
/// table. Under VMI and Xen, gives the reserved frames back afterwards if the
/// run released every page table.
///
/// # Panics
/// As [`fill`]; if VMI or Xen refuses the teardown.
pub fn with_backend<W: WithBackend>(kind: BackendKind, w: W) -> W::Output {
    let backend = fill(kind);
    let ops = backend.hooks;
    kprintln!(
        "paravirt_ops: filled at boot with `{}`; every page-table hook is an indirect call through \
         the ParavirtOps table",
        ops.name()
    );
    let out = w.run(&backend);
    if let Some(vmi) = VMI.get() {
        if vmi.typed_pages() == 0 {
            if let Err(v) = vmi.teardown() {
                panic!("{v}");
            }
        }
    }
    if let Some(xen) = XEN.get() {
        if paravirt_core::Inspect::pages_held(xen) == 0 {
            if let Err(e) = xen.teardown().and_then(|()| HYPERVISOR.free_frametable()) {
                panic!("{e}");
            }
        }
    }
    out
}
