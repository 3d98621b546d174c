//! PAE with a backend that does not share the kernel pmd (Linux's `shared_kernel_pmd = 0`,
//! what Xen requires): each pgd gets its own copy of `swapper_pg_dir`'s kernel pmd, PAE pgds go
//! on `pgd_list`, and kernel-range updates reach every copy. Two-level paging ignores the
//! property (there is no pmd to share).
mod common;
use common::*;

/// Linux 2.6.26 `pgd_alloc` with `!SHARED_KERNEL_PMD`: `pgd_ctor` (`pgd_list_add`) and
/// `pgd_prepopulate_pmd` (the kernel pmd copied from `swapper_pg_dir`, then `pud_populate`:
/// `paravirt_alloc_pmd` before `set_pud`, for every slot) in one `pgd_lock` critical section.
fn pgd_alloc_copies_the_kernel_pmd_and_lists_the_pgd_under_pgd_lock<M: PagingMode>() {
    with_unshared::<M, _>(|k, ram, rec| {
        // (pgd_list's metadata frames come and go with the first and last listed pgd.)
        let frames = ram.frames_in_use() - k.metadata_frames();
        let a = k.create().unwrap();
        let pgd = a.pgd();
        let ev: Vec<Event> = rec.with_events(|e| e.to_vec());
        let mut list = [Pfn::new(0); 4];
        assert_eq!(k.pgd_list(&mut list), 1);
        assert_eq!(list[0], pgd);
        if !M::PAE {
            assert!(k.shares_kernel_pmd(), "two-level has no pmd to share");
            assert_eq!(ev.len(), 1);
            assert!(matches!(ev[0].hook, Hook::AllocPdClone { .. }) && ev[0].probe);
            k.destroy(a);
            return;
        }
        assert!(!k.shares_kernel_pmd());
        assert_eq!(k.pgd_alloc_frames(), 5);
        assert_eq!(ram.frames_in_use() - k.metadata_frames(), frames + 5);
        let pmds: Vec<Pfn> = (0..4).map(|i| read_entry::<M, Pud, _>(ram, pgd, i).pfn()).collect();
        let want: Vec<Event> = (0..4)
            .flat_map(|i| {
                [
                    Event { hook: Hook::AllocPd { pfn: pmds[i] }, probe: true },
                    Event {
                        hook: Hook::SetPud {
                            slot: EntryRef { table: pgd, index: i as u32 },
                            val: Pud::new(pmds[i], PteFlags::PRESENT),
                        },
                        probe: true,
                    },
                ]
            })
            .collect();
        assert_eq!(ev, want, "alloc_pd then set_pgd for all four slots, under pgd_lock");
        let kpmd = read_entry::<M, Pud, _>(ram, k.swapper_pg_dir(), 3).pfn();
        assert_ne!(pmds[3], kpmd, "the pgd's own kernel pmd");
        for i in 0..M::PTRS_PER_PMD {
            assert_eq!(raw::<M>(ram, pmds[3], i), raw::<M>(ram, kpmd, i), "entry {i} of the copy");
        }
        assert_eq!(k.translate(&a, PAGE_OFFSET + 0x1234).map(|t| t.pa), Some(0x1234));
        rec.clear();
        k.destroy(a);
        let pt: Vec<Event> =
            rec.with_events(|e| e.iter().copied().filter(|e| e.hook.kind().is_page_type_hook()).collect());
        assert_eq!(
            pt,
            pmds.iter().map(|&p| Event { hook: Hook::ReleasePd { pfn: p }, probe: false }).collect::<Vec<_>>(),
            "pgd_free releases every slot's pmd, the kernel pmd's copy included"
        );
        assert_eq!(k.pgd_list(&mut list), 0, "pgd_dtor took the pgd off pgd_list");
        assert_eq!(ram.frames_in_use() - k.metadata_frames(), frames);
    });
}

/// `vmalloc_sync_all` / `set_pmd_pte` with `!SHARED_KERNEL_PMD`: the kernel-range update walks
/// `pgd_list` and writes each pgd's own kernel pmd.
fn kernel_range_updates_reach_each_pgds_copy_of_the_kernel_pmd<M: PagingMode>() {
    with_unshared::<M, _>(|k, ram, rec| {
        let spaces: Vec<_> = (0..3).map(|_| k.create().unwrap()).collect();
        let f = ram.alloc_frame().unwrap();
        let va = k.vmalloc_start() + 0x0020_0000;
        rec.clear();
        k.map_kernel_page(va, f, PAGE_KERNEL).unwrap();
        let kslot = walk::pmd_table::<M, _>(ram, k.swapper_pg_dir(), va).unwrap();
        let want: Pmd = read_entry::<M, _, _>(ram, kslot.0, kslot.1);
        assert!(want.is_present());
        let synced = rec.with_events(|e| e.iter().filter(|e| matches!(e.hook, Hook::SetPmd { .. }) && e.probe).count());
        assert_eq!(synced, 3, "one set_pmd per listed pgd, under pgd_lock");
        for a in &spaces {
            assert_eq!(k.translate(a, va).map(|t| t.pa), Some(f.phys().as_u64()));
            let (t, i) = walk::pmd_table::<M, _>(ram, a.pgd(), va).unwrap();
            assert_ne!(t, kslot.0, "written into the pgd's own copy");
            assert_eq!(read_entry::<M, Pmd, _>(ram, t, i), want);
        }
        assert_eq!(k.unmap_kernel_page(va).unwrap(), f);
        for a in &spaces {
            assert_eq!(k.translate(a, va), None, "the removal reached every copy");
        }
        for a in spaces {
            k.destroy(a);
        }
        ram.free_frame(f);
    });
}

/// `preallocate_pmds` fails before anything is announced: no hook, nothing listed, no frame
/// kept, at each of the five allocations.
fn pgd_alloc_out_of_memory_announces_nothing<M: PagingMode>() {
    with_unshared::<M, _>(|k, ram, rec| {
        let frames = ram.frames_in_use();
        for n in 1..=u64::from(k.pgd_alloc_frames()) {
            rec.clear();
            ram.fail_nth_alloc(n);
            assert_eq!(k.create().unwrap_err(), MmError::OutOfMemory);
            ram.clear_fault();
            assert_eq!(ram.frames_in_use(), frames, "attempt {n}");
            assert_eq!(rec.with_events(|e| e.len()), 0, "attempt {n}: no hook before every frame is there");
            assert_eq!(k.pgd_list(&mut []), 0);
        }
    });
}

/// Real threads: pgds created while another CPU installs and removes kernel page tables all
/// end up agreeing with `swapper_pg_dir` on the kernel range (their copies are kept in sync).
fn concurrent_pgd_alloc_and_kernel_updates_keep_every_copy_in_sync<M: PagingMode>() {
    for round in 0..10 {
        with_unshared::<M, _>(|k, ram, _| race_pgd_alloc_against_kernel_updates(k, ram, round, 12, 8));
    }
}

/// `reserve_top_address`: the linear map and the vmalloc area end below the reserved top.
fn a_reserved_top_lowers_the_end_of_the_vmalloc_area<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let reserve = 0u32.wrapping_sub(0xF580_0000) + 2 * 4096;
    let opts = InitOptions { reserve_top: reserve, ..InitOptions::default() };
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, opts).unwrap();
    assert!(k.vmalloc_end() <= 0xF580_0000 - 2 * 4096 && k.vmalloc_end() > k.vmalloc_start());
    // The end falls on a directory-entry boundary: the last whole 4 MiB (2 MiB in PAE) below.
    assert_eq!(k.vmalloc_end(), if M::PAE { 0xF560_0000 } else { 0xF540_0000 });
    let f = ram.alloc_frame().unwrap();
    assert_eq!(k.map_kernel_page(0xF580_0000, f, PAGE_KERNEL), Err(MmError::OutOfRange(0xF580_0000)));
    assert_eq!(k.map_kernel_page(0xF500_0000, f, PAGE_KERNEL), Ok(()));
    k.unmap_kernel_page(0xF500_0000).unwrap();
    ram.free_frame(f);
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

both_modes!(
    pgd_alloc_copies_the_kernel_pmd_and_lists_the_pgd_under_pgd_lock,
    kernel_range_updates_reach_each_pgds_copy_of_the_kernel_pmd,
    pgd_alloc_out_of_memory_announces_nothing,
    concurrent_pgd_alloc_and_kernel_updates_keep_every_copy_in_sync,
    a_reserved_top_lowers_the_end_of_the_vmalloc_area,
);
