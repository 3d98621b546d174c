//! Hook cost against the number of live tables: `protect` (a walk and one entry write) and
//! `map`+`unmap` (a page table announced, linked, unlinked and released) in one address space
//! while 10 or 10,000 address spaces are alive, each with its own page table, under VMI
//! (shadowed) and Xen (each tree pinned). Every backend lookup is one per-frame record, so the
//! two counts should cost the same. `cargo bench -p benches --bench scaling`.
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use i386_mm::{AddressSpace, InitOptions, KernelMm, PagingMode, PhysMem, PteFlags, PvMmuOps, TwoLevel};
use mm_testkit::{EmulatedRam, HostCpu};
use paravirt_core::Policy;

/// 256 MiB of RAM, the first 1 MiB never handed out.
const RAM_FRAMES: u32 = 65_536;
/// The address every space maps.
const VA: u32 = 0x0804_8000;
/// The address whose page table `map`+`unmap` makes and frees.
const VA_OTHER: u32 = 0x4000_0000;

/// Creates `n` address spaces over `backend`, each mapping `VA` (and loaded once when `load`,
/// so Xen pins its tree), then benches `protect` and `map`+`unmap` in the first one.
fn run<B: PvMmuOps<TwoLevel>>(
    c: &mut Criterion,
    ram: &EmulatedRam,
    backend: B,
    name: &str,
    n: usize,
    reserve_top: u32,
) {
    let cpu = HostCpu::<TwoLevel>::new(ram);
    let opts = InitOptions { reserve_top, ..InitOptions::default() };
    let k = KernelMm::<TwoLevel, _, _, _>::pagetable_init(ram, backend, &cpu, opts).unwrap();
    k.activate_swapper();
    let data = ram.alloc_frame().unwrap();
    let mut spaces: Vec<AddressSpace<TwoLevel>> = (0..n)
        .map(|_| {
            let mut mm = k.create().unwrap();
            k.map(&mut mm, VA, data, PteFlags::USER | PteFlags::RW).unwrap();
            k.activate(&mm);
            mm
        })
        .collect();
    let id = format!("{name}/{n}");
    let mm = &mut spaces[0];
    let mut flip = false;
    c.benchmark_group(format!("scaling_protect/{}", TwoLevel::NAME)).bench_function(&id, |b| {
        b.iter(|| {
            flip = !flip;
            let flags = if flip { PteFlags::USER } else { PteFlags::USER | PteFlags::RW };
            k.protect(mm, black_box(VA), flags).unwrap();
        })
    });
    c.benchmark_group(format!("scaling_map_unmap/{}", TwoLevel::NAME)).bench_function(&id, |b| {
        b.iter(|| {
            k.map(mm, black_box(VA_OTHER), data, PteFlags::USER | PteFlags::RW).unwrap();
            black_box(k.unmap(mm, VA_OTHER).unwrap());
        })
    });
}

fn vmi(c: &mut Criterion) {
    for n in [10, 10_000] {
        let ram = EmulatedRam::new(RAM_FRAMES, 256);
        let v = backend_vmi::Vmi::<TwoLevel, _>::with_shadow_frames(&ram, Policy::Panic, 2 * n + 128).unwrap();
        run(c, &ram, &v, "vmi", n, 0);
    }
}

fn xen(c: &mut Criterion) {
    for n in [10, 10_000] {
        let ram = EmulatedRam::new(RAM_FRAMES, 256);
        let hv = backend_xen::Hypervisor::<TwoLevel, _>::boot(&ram).unwrap();
        let x = backend_xen::Xen::boot(&hv, Policy::Panic).unwrap();
        run(c, &ram, &x, "xen", n, hv.reserve_top());
    }
}

// criterion generates an undocumented entry point.
#[allow(missing_docs)]
mod entry {
    use super::*;
    criterion_group! {
    name = scaling;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = vmi, xen
    }
}
criterion_main!(entry::scaling);
