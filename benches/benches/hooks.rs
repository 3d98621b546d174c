//! Hook overhead: the same page-table work under static dispatch to the native backend, under
//! Linux-style run-time dispatch through a `ParavirtOps` table, and under the recording
//! adapter. `cargo bench -p benches` (or `cargo xtask bench`).
use backend_native::Native;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use i386_mm::{InitOptions, KernelMm, Pae, PagingMode, PhysMem, PteFlags, PvMmuOps, TwoLevel};
use mm_testkit::{EmulatedRam, HostCpu};
use paravirt_core::{ParavirtOps, Policy, Recorder};

/// Maps and unmaps one page in an empty region, so each round trip allocates, announces,
/// releases and frees a page table (`alloc_pt` + `set_pmd` + `set_pte_at`, then `pte_clear` +
/// `pmd_clear` + `release_pt`).
fn map_unmap<M: PagingMode, B: PvMmuOps<M>>(c: &mut Criterion, group: &str, name: &str, backend: B) {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, backend, &cpu, InitOptions::default()).unwrap();
    let mut mm = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter(|| {
            k.map(&mut mm, black_box(0x0804_8000), f, PteFlags::USER | PteFlags::RW).unwrap();
            black_box(k.unmap(&mut mm, 0x0804_8000).unwrap());
        })
    });
    k.destroy(mm);
}

/// `protect`: a walk plus one `set_pte_at`: the hottest hooked path, an entry write.
fn protect<M: PagingMode, B: PvMmuOps<M>>(c: &mut Criterion, group: &str, name: &str, backend: B) {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, backend, &cpu, InitOptions::default()).unwrap();
    let mut mm = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    k.map(&mut mm, 0x0804_8000, f, PteFlags::USER).unwrap();
    let mut flip = false;
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter(|| {
            flip = !flip;
            let flags = if flip { PteFlags::USER | PteFlags::RW } else { PteFlags::USER };
            k.protect(&mut mm, black_box(0x0804_8000), flags).unwrap();
        })
    });
    k.unmap(&mut mm, 0x0804_8000).unwrap();
    k.destroy(mm);
}

/// `pgd_alloc` + `pgd_free`: the clone under `pgd_lock` (two-level) or three pmds (PAE).
fn pgd_cycle<M: PagingMode, B: PvMmuOps<M>>(c: &mut Criterion, group: &str, name: &str, backend: B) {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, backend, &cpu, InitOptions::default()).unwrap();
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter(|| {
            let mm = k.create().unwrap();
            k.destroy(black_box(mm));
        })
    });
}

/// The hypervisor backends on the same work: shadow mirroring (VMI) and validated updates of
/// pinned tables (Xen).
fn hypervisors<M: PagingMode>(c: &mut Criterion) {
    let ram: &'static EmulatedRam = Box::leak(Box::new(EmulatedRam::sixteen_mib()));
    let vmi: &'static backend_vmi::Vmi<M, &EmulatedRam> =
        Box::leak(Box::new(backend_vmi::Vmi::new(ram, Policy::Panic).unwrap()));
    let hv: &'static backend_xen::Hypervisor<M, &EmulatedRam> =
        Box::leak(Box::new(backend_xen::Hypervisor::boot(ram).unwrap()));
    let xen = backend_xen::Xen::boot(hv, Policy::Panic).unwrap();
    for (g, which) in [("protect", 0), ("map_unmap", 1)] {
        let g = format!("{g}/{}", M::NAME);
        on_ram::<M, _>(c, ram, &g, "vmi", vmi, which);
        on_ram::<M, _>(c, ram, &g, "xen", &xen, which);
    }
}

/// `protect` (which = 0) or `map_unmap` (which = 1) over `ram`, with the address space active
/// so the hypervisor backends see a loaded (shadowed / pinned) tree.
fn on_ram<M: PagingMode, B: PvMmuOps<M>>(
    c: &mut Criterion,
    ram: &EmulatedRam,
    group: &str,
    name: &str,
    backend: B,
    which: u8,
) {
    let cpu = HostCpu::<M>::new(ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(ram, backend, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let mut mm = k.create().unwrap();
    k.activate(&mm);
    let f = ram.alloc_frame().unwrap();
    k.map(&mut mm, 0x4000_0000, f, PteFlags::USER).unwrap();
    let mut flip = false;
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter(|| {
            if which == 0 {
                flip = !flip;
                let flags = if flip { PteFlags::USER | PteFlags::RW } else { PteFlags::USER };
                k.protect(&mut mm, black_box(0x4000_0000), flags).unwrap();
            } else {
                k.map(&mut mm, black_box(0x0804_8000), f, PteFlags::USER | PteFlags::RW).unwrap();
                black_box(k.unmap(&mut mm, 0x0804_8000).unwrap());
            }
        })
    });
    k.unmap(&mut mm, 0x4000_0000).unwrap();
    k.destroy(mm);
    k.load_boot_root();
    let _ = k.shutdown().map_err(|e| e.1).unwrap();
    ram.free_frame(f);
}

fn backends<M: PagingMode>(c: &mut Criterion) {
    let ops: &'static ParavirtOps<M> = Box::leak(Box::new(ParavirtOps::native()));
    let rec: &'static Recorder<Native, 16> = Box::leak(Box::new(Recorder::new(Native)));
    rec.set_enabled(true);
    let g = format!("map_unmap/{}", M::NAME);
    map_unmap::<M, _>(c, &g, "native-static", Native);
    map_unmap::<M, _>(c, &g, "native-ops-table", ops);
    map_unmap::<M, _>(c, &g, "recorder", rec);
    let g = format!("protect/{}", M::NAME);
    protect::<M, _>(c, &g, "native-static", Native);
    protect::<M, _>(c, &g, "native-ops-table", ops);
    protect::<M, _>(c, &g, "recorder", rec);
    let g = format!("pgd_alloc_free/{}", M::NAME);
    pgd_cycle::<M, _>(c, &g, "native-static", Native);
    pgd_cycle::<M, _>(c, &g, "native-ops-table", ops);
    pgd_cycle::<M, _>(c, &g, "recorder", rec);
}

fn all(c: &mut Criterion) {
    backends::<TwoLevel>(c);
    backends::<Pae>(c);
    hypervisors::<TwoLevel>(c);
    hypervisors::<Pae>(c);
}

// criterion generates an undocumented entry point.
#[allow(missing_docs)]
mod entry {
    use super::*;
    criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = all
    }
}
criterion_main!(entry::benches);
