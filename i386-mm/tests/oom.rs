//! Out of memory at every allocation: each announced page is released, every frame comes back.
mod common;
use common::*;

fn pae_pgd_alloc_oom_releases_every_pmd<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let attempts = if M::PAE { 4 } else { 1 };
        for n in 1..=attempts {
            let frames = ram.frames_in_use();
            rec.clear();
            ram.fail_nth_alloc(n);
            assert_eq!(k.create().map(|a| a.pgd()), Err(MmError::OutOfMemory), "failure at allocation {n}");
            assert_eq!(ram.frames_in_use(), frames, "frames leaked at allocation {n}");
            let pt = page_type_hooks(rec);
            // Every pmd announced was released, in reverse order (`out_oom`).
            let allocs: Vec<Pfn> =
                pt.iter().filter_map(|h| if let Hook::AllocPd { pfn: p } = h { Some(*p) } else { None }).collect();
            let releases: Vec<Pfn> =
                pt.iter().filter_map(|h| if let Hook::ReleasePd { pfn: p } = h { Some(*p) } else { None }).collect();
            assert_eq!(allocs.len(), (n as usize).saturating_sub(2));
            assert_eq!(releases, allocs.iter().rev().copied().collect::<Vec<_>>());
            assert!(!pt.iter().any(|h| matches!(h, Hook::AllocPdClone { .. } | Hook::ReleasePt { pfn: _ })) || !M::PAE);
            for p in &allocs {
                assert!(!ram.is_allocated(*p));
            }
            let mut list = [Pfn::new(0); 4];
            assert_eq!(k.pgd_list(&mut list), 0, "a failed pgd is not left on pgd_list");
            assert_eq!(k.live_address_spaces(), 0);
        }
        // The next allocation succeeds normally.
        let a = k.create().unwrap();
        k.destroy(a);
    });
}

fn map_oom_on_new_page_table_changes_nothing<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        let frames = ram.frames_in_use();
        rec.clear();
        ram.fail_nth_alloc(1);
        assert_eq!(k.map(&mut a, 0x0804_8000, f, PteFlags::USER), Err(MmError::OutOfMemory));
        assert!(hooks(rec).is_empty(), "no hook before the allocation succeeded");
        assert_eq!(ram.frames_in_use(), frames);
        assert_eq!(k.translate(&a, 0x0804_8000), None);
        assert_eq!(a.mapped_pages(), 0);
        k.map(&mut a, 0x0804_8000, f, PteFlags::USER).unwrap();
        k.destroy(a);
    });
}

fn pagetable_init_oom_at_every_allocation_leaks_nothing<M: PagingMode>() {
    for pse in [true, false] {
        let mut n = 1;
        loop {
            let ram = EmulatedRam::new(1024, 256);
            let rec: Box<Rec> = Box::new(Recorder::new(Native));
            let cpu = HostCpu::<M>::new(&ram);
            ram.fail_nth_alloc(n);
            match KernelMm::<M, _, _, _>::pagetable_init(
                &ram,
                &*rec,
                &cpu,
                InitOptions { pse, lowmem_end: None, ..InitOptions::default() },
            ) {
                Ok(k) => {
                    assert!(n > 1);
                    ram.clear_fault();
                    k.shutdown().map_err(|e| e.1).unwrap();
                    assert_eq!(ram.frames_in_use(), 0);
                    break;
                }
                Err(e) => {
                    assert_eq!(e, MmError::OutOfMemory);
                    assert_eq!(ram.frames_in_use(), 0, "pse={pse}: leak after failing allocation {n}");
                    let pt = page_type_hooks(&rec);
                    let allocs =
                        pt.iter().filter(|h| matches!(h, Hook::AllocPt { pfn: _ } | Hook::AllocPd { pfn: _ })).count();
                    let releases = pt
                        .iter()
                        .filter(|h| matches!(h, Hook::ReleasePt { pfn: _ } | Hook::ReleasePd { pfn: _ }))
                        .count();
                    assert_eq!(allocs, releases, "pse={pse}: every announced table released (n={n})");
                }
            }
            n += 1;
        }
    }
}

fn split_oom_changes_nothing<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let f = ram.alloc_frame().unwrap();
        let frames = ram.frames_in_use();
        rec.clear();
        ram.fail_nth_alloc(1);
        assert_eq!(k.change_page_attr(f, PAGE_KERNEL_RO), Err(MmError::OutOfMemory));
        assert!(hooks(rec).is_empty());
        assert_eq!(ram.frames_in_use(), frames);
        assert_eq!(k.split_tables(), 0);
        let t = k.translate_root(k.swapper_pg_dir(), lowmem_va(f)).unwrap();
        assert!(t.large && t.flags.contains(PteFlags::RW));
    });
}

fn kernel_map_oom_changes_nothing<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        let frames = ram.frames_in_use();
        rec.clear();
        ram.fail_nth_alloc(1);
        assert_eq!(k.map_kernel_page(k.vmalloc_start(), f, PAGE_KERNEL), Err(MmError::OutOfMemory));
        assert!(hooks(rec).is_empty());
        assert_eq!(ram.frames_in_use(), frames);
        assert_eq!(k.translate(&a, k.vmalloc_start()), None);
        k.destroy(a);
    });
}

both_modes!(
    pae_pgd_alloc_oom_releases_every_pmd,
    map_oom_on_new_page_table_changes_nothing,
    pagetable_init_oom_at_every_allocation_leaks_nothing,
    split_oom_changes_nothing,
    kernel_map_oom_changes_nothing,
);
