//! `change_page_attr`: split a large page, change one page, revert, free after the flush.
mod common;
use common::*;

fn split_then_revert_round_trip<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let spaces: Vec<_> = (0..2).map(|_| k.create().unwrap()).collect();
        let f = ram.alloc_frame().unwrap();
        let va = lowmem_va(f);
        let frames = ram.frames_in_use() - k.metadata_frames();
        rec.clear();
        k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().ignore();
        let hs = hooks(rec);
        let Hook::AllocPt { pfn: split } = hs[0] else { panic!("split_large_page announces first: {hs:?}") };
        // All PTRS_PER_PTE entries are written into the announced table before it is linked.
        let writes = &hs[1..1 + M::PTRS_PER_PTE as usize];
        assert!(writes.iter().all(|h| matches!(h, Hook::SetPte { slot, .. } if slot.table == split)));
        let base = ((va - PAGE_OFFSET) & M::large_page_mask()) as u64;
        for (i, h) in writes.iter().enumerate() {
            let pa = base + i as u64 * 4096;
            let want = if pa == f.phys().as_u64() { PAGE_KERNEL_RO } else { PAGE_KERNEL };
            let val = Pte::new(Pfn::containing(PhysAddr::new(pa)), want);
            assert_eq!(*h, Hook::SetPte { slot: EntryRef { table: split, index: i as u32 }, val });
        }
        let links: Vec<Pfn> = hs[1 + M::PTRS_PER_PTE as usize..]
            .iter()
            .filter_map(|h| if let Hook::SetPmd { slot, val } = h { Some((slot.table, *val)) } else { None })
            .map(|(t, v)| {
                assert_eq!(v, Pmd::new(split, PAGE_KERNEL));
                t
            })
            .collect();
        // swapper_pg_dir, then (two-level) every pgd on pgd_list; PAE shares the kernel pmd.
        assert_eq!(links.len(), if M::PAE { 1 } else { 3 });
        assert_eq!((ram.frames_in_use() - k.metadata_frames()), frames + 1);
        k.global_flush_tlb();
        assert_eq!(k.split_tables(), 1);
        for a in &spaces {
            let t = k.translate(a, va).unwrap();
            assert!(!t.large && !t.flags.contains(PteFlags::RW));
            let t = k.translate(a, va ^ 0x1000).unwrap();
            assert!(!t.large && t.flags.contains(PteFlags::RW), "the rest keeps PAGE_KERNEL");
        }
        k.activate(&spaces[1]);
        assert!(k.cpu().write_u32(va, 1).is_err());

        rec.clear();
        k.change_page_attr(f, PAGE_KERNEL).unwrap().ignore();
        let hs = hooks(rec);
        let rel = hs.iter().position(|h| *h == Hook::ReleasePt { pfn: split }).expect("released");
        let reverts: Vec<usize> = hs
            .iter()
            .enumerate()
            .filter(|(_, h)| matches!(h, Hook::SetPmd { val, .. } if val.is_large()))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(reverts.len(), links.len());
        assert!(reverts.iter().all(|&i| i < rel), "unlinked everywhere before release_pt");
        assert!(ram.is_allocated(split), "the frame waits for global_flush_tlb");
        assert_eq!(k.deferred_frees(), 1);
        k.global_flush_tlb();
        assert!(!ram.is_allocated(split));
        assert_eq!((ram.frames_in_use() - k.metadata_frames()), frames);
        for a in &spaces {
            let t = k.translate(a, va).unwrap();
            assert!(t.large && t.flags.contains(PteFlags::RW));
        }
        assert!(k.cpu().write_u32(va, 1).is_ok());
        for a in spaces {
            k.destroy(a);
        }
    });
}

fn split_table_reverts_only_when_its_last_changed_page_is_restored<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let f = ram.alloc_frame().unwrap();
        let g = ram.alloc_frame().unwrap();
        k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().ignore();
        rec.clear();
        k.change_page_attr(g, PAGE_KERNEL_RO).unwrap().ignore();
        assert!(page_type_hooks(rec).is_empty(), "second page reuses the split table");
        assert_eq!(rec.calls(HookKind::SetPteAtomic), 1);
        k.change_page_attr(f, PAGE_KERNEL).unwrap().ignore();
        assert_eq!(k.split_tables(), 1);
        assert_eq!(rec.calls(HookKind::ReleasePt), 0);
        k.change_page_attr(g, PAGE_KERNEL).unwrap().ignore();
        assert_eq!(rec.calls(HookKind::ReleasePt), 1);
        k.global_flush_tlb();
        assert_eq!(k.split_tables(), 0);
        assert_eq!(k.change_page_attr(g, PAGE_KERNEL), Err(MmError::AttrNotChanged(g)));
    });
}

fn without_large_pages_the_pte_changes_in_place<M: PagingMode>() {
    with_kernel::<M, _>(false, |k, ram, rec| {
        let f = ram.alloc_frame().unwrap();
        let frames = ram.frames_in_use() - k.metadata_frames();
        k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().ignore();
        k.global_flush_tlb();
        assert!(page_type_hooks(rec).is_empty());
        assert_eq!(rec.calls(HookKind::SetPteAtomic), 1);
        assert_eq!((ram.frames_in_use() - k.metadata_frames()), frames);
        assert!(k.cpu().write_u32(lowmem_va(f), 1).is_err());
        k.change_page_attr(f, PAGE_KERNEL).unwrap().ignore();
        assert!(page_type_hooks(rec).is_empty(), "boot page tables are never released");
        assert!(k.cpu().write_u32(lowmem_va(f), 1).is_ok());
    });
}

both_modes!(
    split_then_revert_round_trip,
    split_table_reverts_only_when_its_last_changed_page_is_restored,
    without_large_pages_the_pte_changes_in_place,
);
