//! One criterion group per call site of the page allocation hooks, per paging mode, each with
//! the variants: `paravirt-off` (every hook compiled out: build with `--no-default-features`),
//! `native-static` (the native backend, static dispatch), `native-ops-table` (Linux-style
//! run-time dispatch through a `ParavirtOps` table), `vmi` (shadow page tables) and `xen` (the
//! Xen PV MMU model: validated updates of pinned, read-only tables).
//!
//! Each bench is the smallest round trip through its call site that leaves the kernel as it
//! found it, run in a kernel with one user address space loaded (so the hypervisor backends
//! see a shadowed / pinned tree):
//!
//! | group | one iteration |
//! | --- | --- |
//! | `pmd_populate` | `pmd_populate` (`alloc_pt` + `set_pmd`), undone by `pmd_clear` + `release_pt` |
//! | `pte_free_tlb` | a zeroed table announced (`alloc_pt`), `pte_free_tlb` (`release_pt`), `tlb_finish_mmu` (flush, free) |
//! | `pgd_alloc_free` | `pgd_alloc` + `pgd_free` (the clone under `pgd_lock`, or the PAE pmds) |
//! | `change_page_attr` | a page made read-only and back, `global_flush_tlb` after each (`split_large_page`, then `revert_page`, where large pages are used) |
//! | `kernel_range` | a vmalloc-area page mapped and unmapped in an empty 4 MiB region: a table allocated, written to `swapper_pg_dir` and every pgd, removed again |
//! | `map_unmap` | a user page mapped and unmapped in an empty region: a table allocated and released |
//! | `protect` | the walk plus one `set_pte_at` and `invlpg`: the hottest hooked path |
//!
//! `cargo xtask bench` runs both builds and prints each variant's median and its ratio to
//! `native-static`.
use backend_native::Native;
use criterion::{criterion_group, criterion_main, Criterion};
use i386_mm::{walk, MmuGather, Pae, PagingMode, PhysMem, Pmd, PteFlags, PvMmuOps, TwoLevel, PAGE_KERNEL_RO};
use mm_testkit::EmulatedRam;
use paravirt_core::pv::Pv;
use std::hint::black_box;

mod common;
use common::{group, kernel, ram, Kernel, USER_VA};

/// A user address in a region with no page table.
const EMPTY_REGION_VA: u32 = 0x4000_0000;

/// Every call-site group for one variant.
fn sites<M: PagingMode, B: PvMmuOps<M>>(
    c: &mut Criterion,
    ram: &'static EmulatedRam,
    variant: &str,
    backend: B,
    reserve_top: u32,
) {
    let k = kernel::<M, B>(ram, backend, reserve_top);
    let mut mm = k.create().expect("create");
    k.activate(&mm);
    let page = ram.alloc_frame().expect("a data page");
    k.map(&mut mm, USER_VA, page, PteFlags::USER).expect("map");

    pmd_populate(c, &k, mm.pgd(), variant);
    pte_free_tlb(c, &k, variant);
    c.benchmark_group(group::<M>("pgd_alloc_free")).bench_function(variant, |b| {
        b.iter(|| {
            let pgd = k.pgd_alloc().expect("pgd_alloc");
            // SAFETY: `pgd` was just allocated by `pgd_alloc` and is used nowhere else.
            unsafe { k.pgd_free(black_box(pgd)) };
        })
    });
    c.benchmark_group(group::<M>("change_page_attr")).bench_function(variant, |b| {
        b.iter(|| {
            k.change_page_attr(black_box(page), PAGE_KERNEL_RO).expect("cpa").flush(&k);
            k.change_page_attr(page, i386_mm::PAGE_KERNEL).expect("cpa back").flush(&k);
        })
    });
    let kva = kernel_va(&k);
    c.benchmark_group(group::<M>("kernel_range")).bench_function(variant, |b| {
        b.iter(|| {
            k.map_kernel_page(black_box(kva), page, i386_mm::PAGE_KERNEL).expect("map_kernel_page");
            black_box(k.unmap_kernel_page(kva).expect("unmap_kernel_page"));
        })
    });
    c.benchmark_group(group::<M>("map_unmap")).bench_function(variant, |b| {
        b.iter(|| {
            k.map(&mut mm, black_box(EMPTY_REGION_VA), page, PteFlags::USER | PteFlags::RW).expect("map");
            black_box(k.unmap(&mut mm, EMPTY_REGION_VA).expect("unmap"));
        })
    });
    let mut flip = false;
    c.benchmark_group(group::<M>("protect")).bench_function(variant, |b| {
        b.iter(|| {
            flip = !flip;
            let flags = if flip { PteFlags::USER | PteFlags::RW } else { PteFlags::USER };
            k.protect(&mut mm, black_box(USER_VA), flags).expect("protect");
        })
    });

    k.unmap(&mut mm, USER_VA).expect("unmap");
    k.activate_swapper();
    k.destroy(mm);
    k.load_boot_root();
    let _ = k.shutdown().map_err(|e| e.1).expect("shutdown");
    ram.free_frame(page);
}

/// A vmalloc-area address at the start of a 4 MiB region with no page table.
fn kernel_va<M: PagingMode, B: PvMmuOps<M>>(k: &Kernel<M, B>) -> u32 {
    let region = 1u32 << M::PGDIR_SHIFT.min(22);
    let va = (k.vmalloc_start() + region).next_multiple_of(region);
    assert!(va < k.vmalloc_end(), "no empty region in the vmalloc area");
    va
}

fn pmd_populate<M: PagingMode, B: PvMmuOps<M>>(c: &mut Criterion, k: &Kernel<M, B>, pgd: i386_mm::Pfn, variant: &str) {
    let ram = *k.mem();
    let (table, index) = walk::pmd_table::<M, _>(&ram, pgd, EMPTY_REGION_VA).expect("a directory for the region");
    // SAFETY: entry `index` of `table`, a directory of the loaded address space in `ram`, which
    // outlives the slot; the bench is its only writer while it runs.
    let slot = unsafe { i386_mm::slot::<M, Pmd, _>(&ram, table, index) };
    assert!(!slot.read().is_present(), "the region already has a page table");
    let pt = i386_mm::alloc_zeroed(&ram).expect("a page-table frame");
    let pv = Pv::<M, B>::new(k.backend());
    c.benchmark_group(group::<M>("pmd_populate")).bench_function(variant, |b| {
        b.iter(|| {
            // SAFETY: `slot` is empty (cleared at the end of every iteration) and `pt` is a
            // zeroed frame the bench owns, linked nowhere else.
            unsafe { k.pmd_populate(black_box(slot), pt) };
            pv.pmd_clear(slot);
            k.flush_tlb_user();
            pv.release_pt(pt);
        })
    });
    ram.free_frame(pt);
}

fn pte_free_tlb<M: PagingMode, B: PvMmuOps<M>>(c: &mut Criterion, k: &Kernel<M, B>, variant: &str) {
    let ram = *k.mem();
    let pv = Pv::<M, B>::new(k.backend());
    c.benchmark_group(group::<M>("pte_free_tlb")).bench_function(variant, |b| {
        b.iter(|| {
            let pt = i386_mm::alloc_zeroed(&ram).expect("a page-table frame");
            pv.alloc_pt(pt);
            let mut tlb = MmuGather::new();
            // SAFETY: `pt` was just allocated and announced, and no directory links it.
            unsafe { k.pte_free_tlb(&mut tlb, black_box(pt)) };
            k.tlb_finish_mmu(tlb);
        })
    });
}

/// The variants of this build for mode `M`.
fn variants<M: PagingMode>(c: &mut Criterion) {
    #[cfg(not(feature = "paravirt"))]
    sites::<M, _>(c, ram(32), "paravirt-off", Native, 0);
    #[cfg(feature = "paravirt")]
    {
        use paravirt_core::{ParavirtOps, Policy};
        let ops: &'static ParavirtOps<M> = Box::leak(Box::new(ParavirtOps::native()));
        sites::<M, _>(c, ram(32), "native-static", Native, 0);
        sites::<M, _>(c, ram(32), "native-ops-table", ops, 0);
        let r = ram(32);
        let vmi = backend_vmi::Vmi::<M, _>::new(r, Policy::Panic).expect("vmi");
        sites::<M, _>(c, r, "vmi", &vmi, 0);
        vmi.teardown().expect("vmi teardown");
        let r = ram(32);
        let hv = backend_xen::Hypervisor::<M, _>::boot(r).expect("xen frame table");
        let xen = backend_xen::Xen::boot(&hv, Policy::Panic).expect("xen guest flags");
        sites::<M, _>(c, r, "xen", &xen, hv.reserve_top());
        xen.teardown().expect("xen teardown");
        hv.free_frametable().expect("xen frame table back");
    }
}

fn all(c: &mut Criterion) {
    variants::<TwoLevel>(c);
    variants::<Pae>(c);
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
