//! What the bench targets share: the machine (emulated RAM, the host CPU), a kernel over a
//! backend with one address space loaded, the variants, and criterion's settings.

use criterion::Criterion;
use i386_mm::{InitOptions, KernelMm, PagingMode, PvMmuOps};
use mm_testkit::{EmulatedRam, HostCpu};
use std::time::Duration;

/// The user address whose page stays mapped (a page table stays live) during every bench.
pub const USER_VA: u32 = 0x0804_8000;

/// Emulated RAM of `mib` MiB (frame 0 never allocated), leaked so backends can borrow it for
/// the whole run.
pub fn ram(mib: u32) -> &'static EmulatedRam {
    Box::leak(Box::new(EmulatedRam::new(mib * 256, 1)))
}

/// The host CPU over `ram`, leaked.
pub fn cpu<M: PagingMode>(ram: &'static EmulatedRam) -> &'static HostCpu<'static, M> {
    Box::leak(Box::new(HostCpu::<M>::new(ram)))
}

/// A kernel built by `pagetable_init` over `backend`, with `swapper_pg_dir` loaded.
pub type Kernel<M, B> = KernelMm<M, B, &'static EmulatedRam, &'static HostCpu<'static, M>>;

/// Boots a kernel over `backend` (large pages where the backend allows them).
pub fn kernel<M: PagingMode, B: PvMmuOps<M>>(ram: &'static EmulatedRam, backend: B) -> Kernel<M, B> {
    let k = KernelMm::pagetable_init(ram, backend, cpu::<M>(ram), InitOptions::default()).expect("pagetable_init");
    k.activate_swapper();
    k
}

/// The group of `site` in paging mode `M` (`protect/2level`).
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
