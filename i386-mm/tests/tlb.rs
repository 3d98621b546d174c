//! Every TLB flush of i386-mm is needed and in its place: one test per flush site, each
//! caching a translation in the host CPU's TLB first, so a missing or misplaced flush shows
//! as a stale translation (or, for a freed page, as the test kit's use-after-free panic).
//!
//! | flush site | test |
//! | --- | --- |
//! | `unmap`: `flush_tlb_single` (the table stays) | [`unmap_flushes_the_page_when_its_table_stays`] |
//! | `protect`: `flush_tlb_single` | [`protect_flushes_the_page`] |
//! | `unmap_kernel_page`: `flush_tlb_single` (the table stays) | [`unmap_kernel_page_flushes_the_page_when_its_table_stays`] |
//! | `unmap_kernel_page`: `flush_tlb_kernel` (the table is freed) | [`unmap_kernel_page_flushes_everything_before_freeing_the_table`] |
//! | `change_page_attr`: `flush_tlb_single` | [`change_page_attr_flushes_the_page_before_returning`] |
//! | `global_flush_tlb`: `flush_tlb_kernel` | [`global_flush_tlb_flushes_global_entries`] |
//! | `CpaFlush::flush`: `global_flush_tlb` | [`the_cpa_flush_token_flushes_and_frees_reverted_tables`] |
//! | the gather (`tlb_flush_mmu`): `flush_tlb_user` | [`the_gather_flushes_before_freeing_page_tables`], [`unmapping_the_last_page_of_a_table_flushes_through_the_gather`] |
//! | `free_kernel_tables` (`shutdown`): `global_flush_tlb` | [`shutdown_flushes_before_freeing_the_kernel_tables`], [`shutdown_frees_the_tables_revert_page_released`] |
//! | the helpers: hook, then the CPU | [`each_flush_reaches_the_backend_and_the_cpu`] |
mod common;
use common::*;
use paravirt_core::PvMmuOps;

const UVA: u32 = 0x0804_8000;

/// A frame of the test's holding `tag` in its first word.
fn tagged(ram: &EmulatedRam, tag: u32) -> Pfn {
    let f = ram.alloc_frame().unwrap();
    ram.write_u32(f.phys().as_u64(), tag);
    f
}

fn faults<M: PagingMode>(k: &K<'_, M>, va: u32) -> bool {
    k.cpu().read_u32(va).is_err_and(|f| f.vector == 14)
}

fn unmap_flushes_the_page_when_its_table_stays<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let mut a = k.create().unwrap();
        let (f, g) = (tagged(ram, 1), tagged(ram, 2));
        k.map(&mut a, UVA, f, PteFlags::USER | PteFlags::RW).unwrap();
        k.map(&mut a, UVA + 0x1000, g, PteFlags::USER | PteFlags::RW).unwrap();
        k.activate(&a);
        assert_eq!(k.cpu().read_u32(UVA), Ok(1));
        assert_eq!(k.unmap(&mut a, UVA), Ok(f));
        assert!(faults(k, UVA), "the unmapped page is still in the TLB");
        ram.free_frame(f);
        assert_eq!(k.unmap(&mut a, UVA + 0x1000), Ok(g));
        ram.free_frame(g);
        k.destroy(a);
        assert!(k.cpu().stale_hits().is_empty());
    });
}

fn protect_flushes_the_page<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let mut a = k.create().unwrap();
        let f = tagged(ram, 1);
        k.map(&mut a, UVA, f, PteFlags::USER | PteFlags::RW).unwrap();
        k.activate(&a);
        assert_eq!(k.cpu().write_u32(UVA, 2), Ok(()));
        k.protect(&mut a, UVA, PteFlags::USER).unwrap();
        let fault = k.cpu().write_u32(UVA, 3).expect_err("the TLB still holds the writable entry");
        assert_eq!(fault.error_code, PF_PROT | PF_WRITE);
        assert_eq!(k.cpu().read_u32(UVA), Ok(2));
        k.unmap(&mut a, UVA).unwrap();
        ram.free_frame(f);
        k.destroy(a);
        assert!(k.cpu().stale_hits().is_empty());
    });
}

/// A kernel address in the vmalloc area of the 16 MiB test machine (it starts at 0xc1800000).
const KVA: u32 = 0xE040_0000;
const KERNEL_GLOBAL: PteFlags = PAGE_KERNEL.union(PteFlags::GLOBAL);

fn unmap_kernel_page_flushes_the_page_when_its_table_stays<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let (f, g) = (tagged(ram, 1), tagged(ram, 2));
        k.map_kernel_page(KVA, f, KERNEL_GLOBAL).unwrap();
        k.map_kernel_page(KVA + 0x1000, g, KERNEL_GLOBAL).unwrap();
        assert_eq!(k.cpu().read_u32(KVA), Ok(1));
        assert_eq!(k.unmap_kernel_page(KVA), Ok(f));
        assert!(faults(k, KVA), "the unmapped kernel page is still in the TLB");
        ram.free_frame(f);
        assert_eq!(k.unmap_kernel_page(KVA + 0x1000), Ok(g));
        ram.free_frame(g);
        assert!(k.cpu().stale_hits().is_empty());
    });
}

fn unmap_kernel_page_flushes_everything_before_freeing_the_table<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let f = tagged(ram, 1);
        k.map_kernel_page(KVA, f, KERNEL_GLOBAL).unwrap();
        assert_eq!(k.cpu().read_u32(KVA), Ok(1), "caches the global page and its directory entry");
        assert_eq!(k.unmap_kernel_page(KVA), Ok(f));
        ram.free_frame(f);
        // A walk for a neighbour would start at the cached (freed) table, and the page itself
        // would still be in the TLB: both must be gone.
        assert!(faults(k, KVA + 0x1000));
        assert!(faults(k, KVA));
        assert!(k.cpu().stale_hits().is_empty());
    });
}

fn change_page_attr_flushes_the_page_before_returning<M: PagingMode>() {
    for pse in [false, true] {
        with_kernel::<M, _>(pse, |k, ram, _| {
            let f = tagged(ram, 1);
            let va = lowmem_va(f);
            assert_eq!(k.cpu().write_u32(va, 2), Ok(()));
            // The flush the token stands for is left out: change_page_attr's own flush of
            // the page must already make it read-only on this CPU.
            k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().ignore();
            assert!(k.cpu().write_u32(va, 3).is_err(), "pse {pse}: the writable entry survived");
            k.change_page_attr(f, PAGE_KERNEL).unwrap().ignore();
            assert_eq!(k.cpu().write_u32(va, 4), Ok(()));
            k.global_flush_tlb();
            ram.free_frame(f);
            assert!(k.cpu().stale_hits().is_empty());
        });
    }
}

fn global_flush_tlb_flushes_global_entries<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let f = tagged(ram, 1);
        k.map_kernel_page(KVA, f, KERNEL_GLOBAL).unwrap();
        k.activate_swapper();
        assert_eq!(k.cpu().write_u32(KVA, 2), Ok(()));
        // A kernel PTE changed the way pageattr callers change it, leaving the flush to
        // global_flush_tlb.
        let Some(Kpte::Pte(pte)) = k.lookup_address(KVA) else { panic!("a 4 KiB kernel mapping") };
        PvMmuOps::<M>::set_pte_atomic(k.backend(), pte, Pte::new(f, PAGE_KERNEL_RO.union(PteFlags::GLOBAL)));
        k.activate_swapper();
        assert!(k.cpu().cached(KVA).is_some_and(|e| e.global), "a CR3 load keeps the global entry");
        k.global_flush_tlb();
        assert!(k.cpu().write_u32(KVA, 3).is_err(), "the global writable entry survived");
        assert_eq!(k.unmap_kernel_page(KVA), Ok(f));
        ram.free_frame(f);
    });
}

fn the_cpa_flush_token_flushes_and_frees_reverted_tables<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let f = tagged(ram, 1);
        let before = ram.frames_in_use();
        let flushes = k.cpu().flushes();
        k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().flush(k);
        assert_eq!(k.cpu().flushes(), flushes + 1);
        // The split table (and the metadata frames counting its changed pages).
        assert_eq!(ram.frames_in_use() - k.metadata_frames(), before + 1, "the split table");
        k.change_page_attr(f, PAGE_KERNEL).unwrap().flush(k);
        assert_eq!(k.cpu().flushes(), flushes + 2);
        assert_eq!(
            (k.deferred_frees(), ram.frames_in_use() - k.metadata_frames()),
            (0, before),
            "the reverted table is freed"
        );
        ram.free_frame(f);
    });
}

/// Linux's `free_pgtables` on a loaded address space: entries and directory entries cleared
/// without a flush of their own, each table handed to `pte_free_tlb`, the gather flushing
/// before any table is freed (every `GATHER_PAGES` tables, and at `tlb_finish_mmu`).
fn the_gather_flushes_before_freeing_page_tables<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let mut a = k.create().unwrap();
        let n = GATHER_PAGES as u32 + 2;
        let va = |i: u32| 0x0100_0000 + (i << M::PMD_SHIFT);
        let frames: Vec<Pfn> = (0..n).map(|i| tagged(ram, i)).collect();
        for (i, f) in frames.iter().enumerate() {
            k.map(&mut a, va(i as u32), *f, PteFlags::USER | PteFlags::RW).unwrap();
        }
        k.activate(&a);
        for i in 0..n {
            assert_eq!(k.cpu().read_u32(va(i)), Ok(i));
        }
        let mut tlb = MmuGather::new();
        let mut tables = vec![];
        for i in 0..n {
            let (dir, idx) = walk::pmd_table::<M, _>(ram, a.pgd(), va(i)).unwrap();
            let pmd = test_slot::<M, Pmd>(ram, dir, idx);
            let pt = pmd.read().pfn();
            PvMmuOps::<M>::pte_clear(k.backend(), a.pgd(), va(i), test_slot::<M, Pte>(ram, pt, M::pte_index(va(i))));
            PvMmuOps::<M>::pmd_clear(k.backend(), pmd);
            // SAFETY: `pt` is this address space's table, just unlinked.
            unsafe { k.pte_free_tlb(&mut tlb, pt) };
            tables.push(pt);
            // Whatever the gather freed is out of every TLB.
            for (j, t) in tables.iter().enumerate() {
                if !ram.is_allocated(*t) {
                    assert!(faults(k, va(j as u32)), "table {j} freed while its page is cached");
                    assert!(faults(k, va(j as u32) + 0x1000), "table {j} freed while it is cached");
                }
            }
        }
        assert_eq!(tlb.pending().len(), 2, "the first GATHER_PAGES tables went at the 17th");
        k.tlb_finish_mmu(tlb);
        for i in 0..n {
            assert!(!ram.is_allocated(tables[i as usize]));
            assert!(faults(k, va(i)), "page {i} still cached after tlb_finish_mmu");
        }
        for f in frames {
            ram.free_frame(f);
        }
        // The user part is empty now: destroy frees the pgd only.
        k.destroy(a);
        assert!(k.cpu().stale_hits().is_empty());
    });
}

fn unmapping_the_last_page_of_a_table_flushes_through_the_gather<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let mut a = k.create().unwrap();
        let f = tagged(ram, 1);
        k.map(&mut a, UVA, f, PteFlags::USER | PteFlags::RW).unwrap();
        k.activate(&a);
        assert_eq!(k.cpu().read_u32(UVA), Ok(1));
        assert_eq!(k.unmap(&mut a, UVA), Ok(f));
        ram.free_frame(f);
        assert!(faults(k, UVA + 0x1000), "the freed table is still cached");
        assert!(faults(k, UVA), "the freed page is still cached");
        k.destroy(a);
    });
}

fn shutdown_flushes_before_freeing_the_kernel_tables<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let f = tagged(&ram, 1);
    k.map_kernel_page(KVA, f, KERNEL_GLOBAL).unwrap();
    assert_eq!(cpu.read_u32(KVA), Ok(1));
    k.load_boot_root();
    assert!(cpu.cached(KVA).is_some(), "the global entry survives the CR3 load");
    k.shutdown().map_err(|e| e.1).unwrap();
    assert!(cpu.cached(KVA).is_none(), "shutdown freed the tables but left the TLB alone");
    ram.free_frame(f);
    assert_eq!(cpu.read_u32(KVA).unwrap_err().vector, 14);
    assert_eq!(ram.frames_in_use(), 0);
}

fn shutdown_frees_the_tables_revert_page_released<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let f = ram.alloc_frame().unwrap();
    k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().ignore();
    k.change_page_attr(f, PAGE_KERNEL).unwrap().ignore();
    assert_eq!(k.deferred_frees(), 1, "the reverted table waits for a flush");
    ram.free_frame(f);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0, "the deferred table was freed after the flush");
}

fn each_flush_reaches_the_backend_and_the_cpu<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, _, rec| {
        let cpu = k.cpu();
        let (inv, fl) = (cpu.invlpgs(), cpu.flushes());
        k.flush_tlb_single(UVA);
        assert_eq!((hooks(rec), cpu.invlpgs(), cpu.flushes()), (vec![Hook::FlushTlbSingle { addr: UVA }], inv + 1, fl));
        rec.clear();
        k.flush_tlb_user();
        assert_eq!((hooks(rec), cpu.invlpgs(), cpu.flushes()), (vec![Hook::FlushTlbUser {}], inv + 1, fl + 1));
        rec.clear();
        k.flush_tlb_kernel();
        assert_eq!((hooks(rec), cpu.invlpgs(), cpu.flushes()), (vec![Hook::FlushTlbKernel {}], inv + 1, fl + 2));
        rec.clear();
        k.global_flush_tlb();
        assert_eq!(hooks(rec), vec![Hook::FlushTlbKernel {}]);
    });
}

both_modes!(
    unmap_flushes_the_page_when_its_table_stays,
    protect_flushes_the_page,
    unmap_kernel_page_flushes_the_page_when_its_table_stays,
    unmap_kernel_page_flushes_everything_before_freeing_the_table,
    change_page_attr_flushes_the_page_before_returning,
    global_flush_tlb_flushes_global_entries,
    the_cpa_flush_token_flushes_and_frees_reverted_tables,
    the_gather_flushes_before_freeing_page_tables,
    unmapping_the_last_page_of_a_table_flushes_through_the_gather,
    shutdown_flushes_before_freeing_the_kernel_tables,
    shutdown_frees_the_tables_revert_page_released,
    each_flush_reaches_the_backend_and_the_cpu,
);
