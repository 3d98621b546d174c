//! Runs the workspace's demonstration scenario (`mm_scenario::run`, the
//! same code the host demo runs on emulated RAM) on the real MMU, prints its
//! report, the backend statistics and one machine-readable summary line, and
//! ends QEMU with the result.
//!
//! The summary line is parsed by `cargo xtask` (`xtask/src/boots.rs`):
//!
//! ```text
//! summary: backend=vmi mode=pae steps=10 frames=513/551/513 held=32/0 faults=1 split=yes oom=4 user_pages=18 churned=1000
//! ```
//!
//! `frames` is frames in use at the start / peak / end (the VMI backend's
//! shadow pool, reserved before the scenario starts, included), `held` the
//! pages the backend held at the peak / after the teardown, `faults` the
//! faults the scenario provoked and the CPU raised.

use i386_paging::{PagingMode, PhysMem};
use mm_scenario::{self as scenario, Config, ScenarioError, Summary};
use paravirt_core::{Inspect, PvMmuOps};

#[cfg(not(feature = "boot-select"))]
use crate::backend;
use crate::backend::{Mode, WithBackend};
use crate::phys::KernelPhys;
#[cfg(feature = "boot-select")]
use crate::select::BackendKind;
use crate::serial::Serial;
use crate::x86cpu::X86Cpu;
use crate::{boot, exit, kprintln};

/// The scenario, run with whichever backend this kernel was built with (or,
/// with `boot-select`, chose at boot).
struct Scenario<'a> {
    phys: &'a KernelPhys,
    cpu: &'a X86Cpu,
    cfg: &'a Config,
}

impl WithBackend for Scenario<'_> {
    type Output = Result<Summary, ScenarioError>;

    fn run<B: PvMmuOps<Mode> + Inspect + Sync>(self, backend: &B) -> Self::Output {
        scenario::run::<Mode, _, _, _>(self.phys, backend, self.cpu, self.cfg, &mut Serial)
    }
}

/// Runs the scenario with the backend this kernel was built with over the
/// usable RAM handed to [`crate::phys`] and exits QEMU: status 33 on success,
/// 35 on any failure.
#[cfg(not(feature = "boot-select"))]
pub fn run() -> ! {
    run_with(crate::config::BACKEND, backend::RESERVE_TOP, |phys, s| backend::with_backend(phys, s))
}

/// Runs the scenario with the backend `kind`, chosen at boot and reached only
/// through the ops table (`crate::paravirt_ops`), and exits QEMU like `run`.
#[cfg(feature = "boot-select")]
pub fn run_selected(kind: BackendKind) -> ! {
    run_with(kind.name(), crate::paravirt_ops::reserve_top(kind), |_, s| crate::paravirt_ops::with_backend(kind, s))
}

/// Runs the scenario through `with_backend` (which creates the backend named
/// `backend` and hands it to the scenario), with `reserve_top` bytes at the
/// top of the address space left to the hypervisor, and exits QEMU.
fn run_with(
    backend: &str,
    reserve_top: u32,
    with_backend: impl for<'a> FnOnce(&'a KernelPhys, Scenario<'a>) -> Result<Summary, ScenarioError>,
) -> ! {
    let phys = KernelPhys;
    // SAFETY: the CPU is handed only to the scenario's KernelMm, whose linear
    // map covers 0..max_pfn, which holds the kernel image, the boot stack and
    // every frame the allocator manages (all below BOOT_MAP_SIZE and below the
    // end of RAM); its writes go only to pages that kernel owns.
    let cpu = unsafe { X86Cpu::new() };
    let cfg = Config { lowmem_end: Some(phys.max_pfn()), reserve_top, churn: 1000, ..Config::default() };
    kprintln!(
        "scenario: backend {}, {} paging, linear map 0..{:#x} ({} MiB)",
        backend,
        Mode::NAME,
        phys.max_pfn().phys().as_u64(),
        phys.max_pfn().as_u32() >> 8
    );
    let frames_at_start = phys.frames_in_use();
    let result = with_backend(&phys, Scenario { phys: &phys, cpu: &cpu, cfg: &cfg });
    kprintln!("boot stack: {} of {} KiB used", boot::boot_stack_used().div_ceil(1024), boot::BOOT_STACK_SIZE / 1024);
    match result {
        Ok(s) => {
            if phys.frames_in_use() != frames_at_start {
                panic!(
                    "{} frames in use after the backend's teardown, {} before it was created",
                    phys.frames_in_use(),
                    frames_at_start
                );
            }
            kprintln!("summary: backend={backend} mode={} {s}", Mode::NAME);
            kprintln!("kernel-demo: scenario passed ({backend} backend, {} paging)", Mode::NAME);
            exit::exit_success()
        }
        Err(e) => {
            kprintln!("*** SCENARIO FAILED: {e}");
            exit::exit_failure()
        }
    }
}
