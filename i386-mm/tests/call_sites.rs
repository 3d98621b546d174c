//! The Linux-named call sites driven directly (as the rest of a kernel would call them), and
//! the edges of the boot-time linear map and of the address-space API.
mod common;
use common::*;

/// Low memory is capped at MAXMEM, 896 MiB (the 3G/1G split leaves the kernel 1 GiB of
/// addresses, 128 MiB of which stay for the vmalloc area and the fixmaps).
fn low_memory_is_capped_at_maxmem<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let mem = Sparse { ram: &ram, max: Pfn::new(0x5_0000) };
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&mem, Native, &cpu, InitOptions::default()).unwrap();
    assert_eq!(k.lowmem_end(), Pfn::new(0x3_8000));
    let last = k.translate_root(k.swapper_pg_dir(), lowmem_va(Pfn::new(0x3_7FFF)) + 8).unwrap();
    assert_eq!(last.pa, 0x37FF_F008);
    assert_eq!(k.translate_root(k.swapper_pg_dir(), lowmem_va(Pfn::new(0x3_8000))), None);
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// Low memory ending inside a page table: mapped up to its end and not one page further.
fn low_memory_ending_inside_a_page_table_maps_nothing_past_it<M: PagingMode>() {
    for pse in [true, false] {
        let ram = EmulatedRam::sixteen_mib();
        let cpu = HostCpu::<M>::new(&ram);
        let opts = InitOptions { pse, lowmem_end: Some(Pfn::new(1000)), reserve_top: 0 };
        let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, opts).unwrap();
        let root = k.swapper_pg_dir();
        for p in [0, 511, 512, 999] {
            assert_eq!(k.translate_root(root, lowmem_va(Pfn::new(p))).map(|t| t.pa), Some(p as u64 * 4096));
        }
        assert_eq!(k.translate_root(root, lowmem_va(Pfn::new(1000))), None, "pse {pse}");
        assert_eq!(k.translate_root(root, lowmem_va(Pfn::new(1023))), None, "pse {pse}");
        k.shutdown().map_err(|e| e.1).unwrap();
        assert_eq!(ram.frames_in_use(), 0);
    }
}

/// A page in the page table that maps the tail of low memory (no large page covers it) is
/// changed in place and restored in place: the boot table is never reverted nor released.
fn change_page_attr_never_reverts_a_boot_page_table<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let cpu = HostCpu::<M>::new(&ram);
    let opts = InitOptions { pse: true, lowmem_end: Some(Pfn::new(1000)), reserve_top: 0 };
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &*rec, &cpu, opts).unwrap();
    k.activate_swapper();
    let f = Pfn::new(900);
    let Some(Kpte::Pte(pte)) = k.lookup_address(lowmem_va(f)) else { panic!("the tail is mapped by a page table") };
    rec.clear();
    k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().flush(&k);
    k.change_page_attr(f, PAGE_KERNEL).unwrap().flush(&k);
    assert!(page_type_hooks(&rec).is_empty(), "{:?}", page_type_hooks(&rec));
    assert!(matches!(k.lookup_address(lowmem_va(f)), Some(Kpte::Pte(p)) if p.table() == pte.table()));
    assert_eq!(k.translate_root(k.swapper_pg_dir(), lowmem_va(Pfn::new(1000))), None);
    assert_eq!(k.cpu().write_u32(lowmem_va(f), 1), Ok(()));
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
}

/// `PRESENT` may be given or left out: the page is mapped either way.
fn map_and_protect_take_present_in_their_flags<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, _| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        let p = PteFlags::PRESENT | PteFlags::USER;
        k.map(&mut a, 0x0804_8000, f, p).unwrap();
        assert_eq!(k.translate(&a, 0x0804_8000).map(|t| t.pa), Some(f.phys().as_u64()));
        k.protect(&mut a, 0x0804_8000, p | PteFlags::RW).unwrap();
        assert!(k.translate(&a, 0x0804_8000).is_some_and(|t| t.flags.contains(PteFlags::RW)));
        k.map_kernel_page(k.vmalloc_start(), f, PAGE_KERNEL).unwrap();
        assert!(k.translate(&a, k.vmalloc_start()).is_some());
        assert_eq!(k.unmap_kernel_page(k.vmalloc_start()), Ok(f));
        k.destroy(a);
        ram.free_frame(f);
    });
}

/// `destroy` clears every user entry with the virtual address it maps (what `pte_clear`'s
/// `addr` tells a backend).
fn destroy_clears_each_entry_with_its_address<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        let vas = [0x0000_1000, 0x0804_8000, 0x0804_9000, 0x4020_3000, 0x8000_0000, 0xBFFF_F000];
        for va in vas {
            k.map(&mut a, va, f, PteFlags::USER).unwrap();
        }
        rec.clear();
        k.destroy(a);
        let cleared: Vec<u32> = hooks(rec)
            .iter()
            .filter_map(|h| if let Hook::PteClear { addr, .. } = h { Some(*addr) } else { None })
            .collect();
        assert_eq!(cleared, vas);
        ram.free_frame(f);
    });
}

/// `pmd_populate` and `pmd_populate_kernel` announce the table, then link it; `pte_free_tlb`
/// releases it and frees it at `tlb_finish_mmu`.
fn pmd_populate_and_pte_free_tlb_called_directly<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let a = k.create().unwrap();
        let sites: [(Pfn, u32, bool); 2] =
            [(a.pgd(), 0x0804_8000, false), (k.swapper_pg_dir(), k.vmalloc_start() + 0x0040_0000, true)];
        for (root, va, kernel) in sites {
            let (dir, idx) = walk::pmd_table::<M, _>(ram, root, va).unwrap();
            let pmd: PmdSlot = test_slot::<M, _>(ram, dir, idx);
            let pt = alloc_zeroed(ram).unwrap();
            rec.clear();
            // SAFETY: an empty directory entry of a root this test drives, and a zeroed frame
            // nothing links.
            unsafe {
                if kernel {
                    k.pmd_populate_kernel(pmd, pt)
                } else {
                    k.pmd_populate(pmd, pt)
                }
            };
            let want = vec![Hook::AllocPt { pfn: pt }, Hook::SetPmd { slot: pmd.id(), val: Pmd::new(pt, PAGE_TABLE) }];
            assert_eq!(hooks(rec), want);
            PvMmuOps::<M>::pmd_clear(k.backend(), pmd);
            let mut tlb = MmuGather::new();
            // SAFETY: the table was just unlinked.
            unsafe { k.pte_free_tlb(&mut tlb, pt) };
            assert_eq!(tlb.pending(), [pt]);
            assert!(ram.is_allocated(pt), "freed only after the flush");
            k.tlb_finish_mmu(tlb);
            assert!(!ram.is_allocated(pt));
        }
        k.destroy(a);
    });
}

/// `pgd_ctor` / `pgd_dtor` on a frame of the caller's, and `pgd_free` of a root from
/// `pgd_alloc`.
fn pgd_ctor_dtor_and_free_called_directly<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let pgd = alloc_zeroed(ram).unwrap();
        // SAFETY: a frame this test just allocated.
        unsafe { k.pgd_ctor(pgd) }.unwrap();
        let mut list = [Pfn::new(0); 4];
        let on_list = k.pgd_list(&mut list) == 1 && list[0] == pgd;
        assert_eq!(on_list, !M::PAE);
        let kernel = M::USER_PTRS_PER_PGD;
        assert_eq!(raw::<M>(ram, pgd, kernel), raw::<M>(ram, k.swapper_pg_dir(), kernel));
        rec.clear();
        // SAFETY: built by pgd_ctor above, loaded nowhere.
        unsafe { k.pgd_dtor(pgd) };
        assert_eq!(k.pgd_list(&mut list), 0);
        assert_eq!(hooks(rec), if M::PAE { vec![] } else { vec![Hook::ReleasePd { pfn: pgd }] });
        ram.free_frame(pgd);

        let pgd = k.pgd_alloc().unwrap();
        let pmds: Vec<Pfn> = if M::PAE { pae_user_pmds(ram, pgd) } else { vec![] };
        assert_eq!(k.live_address_spaces(), 1);
        rec.clear();
        // SAFETY: from pgd_alloc, loaded nowhere, no user page tables.
        unsafe { k.pgd_free(pgd) };
        let released: Vec<Pfn> = page_type_hooks(rec)
            .iter()
            .map(|h| match h {
                Hook::ReleasePd { pfn } => *pfn,
                h => panic!("{h:?}"),
            })
            .collect();
        assert_eq!(released, if M::PAE { pmds } else { vec![pgd] });
        assert_eq!(k.live_address_spaces(), 0);
        assert!(!ram.is_allocated(pgd));
    });
}

/// `split_large_page` fills a table for the large page around an address (the page itself
/// with `prot`, the others `ref_prot`), and `revert_page` puts the large page back for any
/// address in it, each large page its own physical range.
fn split_large_page_and_revert_page_called_directly<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let large = M::LARGE_PAGE_SIZE;
        for n in [0u32, 1, 2] {
            let va = PAGE_OFFSET + n * large + 5 * 4096;
            let Some(Kpte::Large(pmd)) = k.lookup_address(va) else { panic!("a large page") };
            let before = pmd.read();
            rec.clear();
            // SAFETY: a linear-map address; the table is linked and released below.
            let pt = unsafe { k.split_large_page(va, PAGE_KERNEL_RO, PAGE_KERNEL) }.unwrap();
            assert_eq!(hooks(rec)[0], Hook::AllocPt { pfn: pt });
            for i in [0, 5, 6, M::PTRS_PER_PTE - 1] {
                let e: Pte = read_entry::<M, _, _>(ram, pt, i);
                let prot = if i == 5 { PAGE_KERNEL_RO } else { PAGE_KERNEL };
                assert_eq!(e, Pte::new(Pfn::new(n * (large >> 12) + i), prot));
            }
            PvMmuOps::<M>::set_pmd(k.backend(), pmd, Pmd::new(pt, PAGE_KERNEL));
            // SAFETY: linear-map address; the table is released and freed right after.
            unsafe { k.revert_page(va + 0x1000) };
            assert_eq!(pmd.read(), before, "large page {n} maps its own physical range again");
            PvMmuOps::<M>::release_pt(k.backend(), pt);
            ram.free_frame(pt);
        }
    });
}

/// `one_page_table_init` on an entry that already links a table returns that table and
/// announces nothing; `one_md_table_init` (PAE) announces a pmd, then links it.
fn one_page_table_init_and_one_md_table_init_called_directly<M: PagingMode>() {
    with_kernel::<M, _>(false, |k, ram, rec| {
        let va = PAGE_OFFSET + 0x0010_0000;
        let Some(Kpte::Pte(pte)) = k.lookup_address(va) else { panic!("a page table") };
        let (dir, idx) = walk::pmd_table::<M, _>(ram, k.swapper_pg_dir(), va).unwrap();
        // SAFETY: a kernel directory entry that links a page table; nothing is written.
        assert_eq!(unsafe { k.one_page_table_init(test_slot::<M, _>(ram, dir, idx)) }, Ok(pte.table()));
        assert!(hooks(rec).is_empty());
        if M::PAE {
            let root = alloc_zeroed(ram).unwrap();
            let s: PudSlot = test_slot::<M, _>(ram, root, 0);
            // SAFETY: an empty PDPT entry of a root this test owns.
            let pmd = unsafe { k.one_md_table_init(s) }.unwrap();
            assert_eq!(
                hooks(rec),
                vec![Hook::AllocPd { pfn: pmd }, Hook::SetPud { slot: s.id(), val: Pud::new(pmd, PteFlags::PRESENT) }]
            );
            PvMmuOps::<M>::release_pd(k.backend(), pmd);
            ram.free_frame(pmd);
            ram.free_frame(root);
        }
    });
}

both_modes!(
    low_memory_is_capped_at_maxmem,
    low_memory_ending_inside_a_page_table_maps_nothing_past_it,
    change_page_attr_never_reverts_a_boot_page_table,
    map_and_protect_take_present_in_their_flags,
    destroy_clears_each_entry_with_its_address,
    pmd_populate_and_pte_free_tlb_called_directly,
    pgd_ctor_dtor_and_free_called_directly,
    split_large_page_and_revert_page_called_directly,
    one_page_table_init_and_one_md_table_init_called_directly,
);
