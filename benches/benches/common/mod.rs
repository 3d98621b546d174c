//! What the bench targets share: the machine (emulated RAM, the host CPU), a kernel over a
//! backend with one address space loaded, the variants, and criterion's settings.

use criterion::Criterion;
use i386_mm::{Cpu, Fault, InitOptions, KernelMm, PagingMode, PvMmuOps};
use mm_testkit::EmulatedRam;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

/// The user address whose page stays mapped (a page table stays live) during every bench.
pub const USER_VA: u32 = 0x0804_8000;

/// Emulated RAM of `mib` MiB (frame 0 never allocated), leaked so backends can borrow it for
/// the whole run.
pub fn ram(mib: u32) -> &'static EmulatedRam {
    Box::leak(Box::new(EmulatedRam::new(mib * 256, 1)))
}

/// The processor of the benches: CR3 is a register, and `invlpg` and the flushes are opaque
/// calls that cost what a call costs. The test kit's `HostCpu` models a TLB in software (a
/// lock and ordered maps per access), which would dominate every variant's time and shrink
/// the backends' ratios; a real `invlpg` is a single instruction. `KernelMm` never reads or
/// writes memory through the CPU, so those fault.
#[derive(Default)]
pub struct BenchCpu {
    cr3: AtomicU32,
}

impl Cpu for BenchCpu {
    fn write_cr3(&self, cr3: u32) {
        self.cr3.store(black_box(cr3), Relaxed)
    }
    fn read_cr3(&self) -> u32 {
        self.cr3.load(Relaxed)
    }
    fn load_boot_root(&self) {
        self.cr3.store(0, Relaxed)
    }
    fn invlpg(&self, va: u32) {
        black_box(va);
    }
    fn flush_tlb(&self) {
        black_box(());
    }
    fn flush_tlb_global(&self) {
        black_box(());
    }
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        Err(Fault { vector: 14, error_code: 0, addr: va })
    }
    fn write_u32(&self, va: u32, _val: u32) -> Result<(), Fault> {
        Err(Fault { vector: 14, error_code: 2, addr: va })
    }
}

/// A kernel built by `pagetable_init` over `backend`, with `swapper_pg_dir` loaded.
pub type Kernel<M, B> = KernelMm<M, B, &'static EmulatedRam, BenchCpu>;

/// Boots a kernel over `backend` (large pages where the backend allows them), leaving the top
/// `reserve_top` bytes of the address space to a hypervisor (Xen's; 0 otherwise).
pub fn kernel<M: PagingMode, B: PvMmuOps<M>>(ram: &'static EmulatedRam, backend: B, reserve_top: u32) -> Kernel<M, B> {
    let opts = InitOptions { reserve_top, ..InitOptions::default() };
    let k = KernelMm::pagetable_init(ram, backend, BenchCpu::default(), opts).expect("pagetable_init");
    k.activate_swapper();
    k
}

/// The group of `site` in paging mode `M` (`protect/two-level`).
pub fn group<M: PagingMode>(site: &str) -> String {
    format!("{site}/{}", M::NAME)
}

/// Criterion's settings: long enough that the order of the variants repeats from run to run
/// on a noisy two-core machine (`cargo xtask bench --runs 3` checks it).
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .noise_threshold(0.03)
}
