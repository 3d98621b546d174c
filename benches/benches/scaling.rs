//! How hook costs grow with the kernel's size.
//!
//! - `scaling_kernel_range/<mode>` and `scaling_pgd_alloc_free/<mode>`: a kernel-range update
//!   (a vmalloc-area page mapped and unmapped in an empty region: its table written to every
//!   pgd) and `pgd_alloc` + `pgd_free`, with 1, 10, 100, 1,000 and 10,000 live address spaces,
//!   under the native backend. The two-level kernel-range update walks `pgd_list`, so it is
//!   linear in live pgds by design (Linux's `vmalloc_sync_all`); PAE shares the kernel pmd and
//!   stays flat, as does `pgd_alloc` + `pgd_free` in both modes.
//! - `scaling_protect/<mode>` and `scaling_map_unmap/<mode>`: `protect` and `map` + `unmap` with
//!   10 and 10,000 live page tables, per backend: every hook and entry write is O(1) in the
//!   number of live tables, so the ratio of the two is about 1.
use backend_native::Native;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use i386_mm::{AddressSpace, Pae, PagingMode, PhysMem, PteFlags, PvMmuOps, TwoLevel, PAGE_KERNEL};
use mm_testkit::EmulatedRam;
use std::hint::black_box;

mod common;
use common::{group, kernel, ram, Kernel, USER_VA};

/// Live address spaces for the kernel-range and pgd scaling groups.
const LIVE_SPACES: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Live page tables for the per-backend scaling groups.
const LIVE_TABLES: [usize; 2] = [10, 10_000];
/// RAM for the scaling kernels: room for 10,000 address spaces (and their shadows).
const RAM_MIB: u32 = 512;

/// Creates address spaces until `n` are live, each with one page mapped at [`USER_VA`] (so
/// each holds its pgd and one page table) and loaded once (so Xen pins its tree).
fn grow<M: PagingMode, B: PvMmuOps<M>>(
    k: &Kernel<M, B>,
    spaces: &mut Vec<AddressSpace<M>>,
    n: usize,
    page: i386_mm::Pfn,
) {
    while spaces.len() < n {
        let mut mm = k.create().expect("create");
        k.map(&mut mm, USER_VA, page, PteFlags::USER).expect("map");
        k.activate(&mm);
        spaces.push(mm);
    }
}

fn shrink<M: PagingMode, B: PvMmuOps<M>>(k: &Kernel<M, B>, spaces: &mut Vec<AddressSpace<M>>) {
    k.activate_swapper();
    for mut mm in spaces.drain(..) {
        k.unmap(&mut mm, USER_VA).expect("unmap");
        k.destroy(mm);
    }
}

/// The kernel-range update and `pgd_alloc` + `pgd_free` against the number of live address
/// spaces, native backend.
fn live_spaces<M: PagingMode>(c: &mut Criterion) {
    let ram = ram(RAM_MIB);
    let k = kernel::<M, _>(ram, Native, 0);
    let page = ram.alloc_frame().expect("a data page");
    let region = 1u32 << 22;
    let kva = (k.vmalloc_start() + region).next_multiple_of(region);
    let mut spaces = Vec::new();
    let mut kr = c.benchmark_group(group::<M>("scaling_kernel_range"));
    for n in LIVE_SPACES {
        grow(&k, &mut spaces, n, page);
        kr.bench_with_input(BenchmarkId::new("native-static", n), &n, |b, _| {
            b.iter(|| {
                k.map_kernel_page(black_box(kva), page, PAGE_KERNEL).expect("map_kernel_page");
                black_box(k.unmap_kernel_page(kva).expect("unmap_kernel_page"));
            })
        });
    }
    kr.finish();
    shrink(&k, &mut spaces);
    let mut pg = c.benchmark_group(group::<M>("scaling_pgd_alloc_free"));
    for n in LIVE_SPACES {
        grow(&k, &mut spaces, n, page);
        pg.bench_with_input(BenchmarkId::new("native-static", n), &n, |b, _| {
            b.iter(|| {
                let pgd = k.pgd_alloc().expect("pgd_alloc");
                // SAFETY: `pgd` was just allocated by `pgd_alloc` and is used nowhere else.
                unsafe { k.pgd_free(black_box(pgd)) };
            })
        });
    }
    pg.finish();
    shrink(&k, &mut spaces);
    k.load_boot_root();
    let _ = k.shutdown().map_err(|e| e.1).expect("shutdown");
    ram.free_frame(page);
}

/// `protect` and `map` + `unmap` in a loaded address space with 10 and 10,000 live page tables
/// (half of them pgds, half page tables), under one backend.
fn live_tables<M: PagingMode, B: PvMmuOps<M>>(
    c: &mut Criterion,
    ram: &'static EmulatedRam,
    variant: &str,
    backend: B,
    reserve_top: u32,
) {
    let k = kernel::<M, _>(ram, backend, reserve_top);
    let page = ram.alloc_frame().expect("a data page");
    let mut mm = k.create().expect("create");
    k.map(&mut mm, USER_VA, page, PteFlags::USER).expect("map");
    k.activate(&mm);
    let mut spaces = Vec::new();
    for n in LIVE_TABLES {
        grow(&k, &mut spaces, n / 2, page);
        k.activate(&mm);
        let mut flip = false;
        c.benchmark_group(group::<M>("scaling_protect")).bench_with_input(BenchmarkId::new(variant, n), &n, |b, _| {
            b.iter(|| {
                flip = !flip;
                let flags = if flip { PteFlags::USER | PteFlags::RW } else { PteFlags::USER };
                k.protect(&mut mm, black_box(USER_VA), flags).expect("protect");
            })
        });
        c.benchmark_group(group::<M>("scaling_map_unmap")).bench_with_input(
            BenchmarkId::new(variant, n),
            &n,
            |b, _| {
                b.iter(|| {
                    k.map(&mut mm, black_box(0x4000_0000), page, PteFlags::USER).expect("map");
                    black_box(k.unmap(&mut mm, 0x4000_0000).expect("unmap"));
                })
            },
        );
    }
    shrink(&k, &mut spaces);
    k.unmap(&mut mm, USER_VA).expect("unmap");
    k.activate_swapper();
    k.destroy(mm);
    k.load_boot_root();
    let _ = k.shutdown().map_err(|e| e.1).expect("shutdown");
    ram.free_frame(page);
}

fn backends<M: PagingMode>(c: &mut Criterion) {
    live_tables::<M, _>(c, ram(RAM_MIB), "native-static", Native, 0);
    #[cfg(feature = "paravirt")]
    {
        use paravirt_core::Policy;
        let r = ram(RAM_MIB);
        // A shadow per live table (two per address space, PAE pmds included) and room to spare.
        let shadows = 5 * LIVE_TABLES[1] + 1024;
        let vmi = backend_vmi::Vmi::<M, _>::with_shadow_frames(r, Policy::Panic, shadows).expect("vmi");
        live_tables::<M, _>(c, r, "vmi", &vmi, 0);
        vmi.teardown().expect("vmi teardown");
        let r = ram(RAM_MIB);
        let hv = backend_xen::Hypervisor::<M, _>::boot(r).expect("xen frame table");
        let xen = backend_xen::Xen::boot(&hv, Policy::Panic).expect("xen guest flags");
        live_tables::<M, _>(c, r, "xen", &xen, hv.reserve_top());
        xen.teardown().expect("xen teardown");
        hv.free_frametable().expect("xen frame table back");
    }
}

fn all(c: &mut Criterion) {
    live_spaces::<TwoLevel>(c);
    live_spaces::<Pae>(c);
    backends::<TwoLevel>(c);
    backends::<Pae>(c);
}

// criterion generates an undocumented entry point.
#[allow(missing_docs)]
mod entry {
    use super::*;
    criterion_group! {
        name = benches;
        config = common::config();
        targets = all
    }
}
criterion_main!(entry::benches);
