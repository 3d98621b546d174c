//! Exact hook sequences per call site, against the seed's order (REFERENCE.md section 2).
mod common;
use common::*;

fn pagetable_init_announces_every_table_before_linking_it<M: PagingMode>() {
    for pse in [true, false] {
        let ram = EmulatedRam::new(2048, 256); // 8 MiB: every event fits in the log
        let rec: Box<Rec> = Box::new(Recorder::new(Native));
        let cpu = HostCpu::<M>::new(&ram);
        let k = KernelMm::<M, _, _, _>::pagetable_init(
            &ram,
            &*rec,
            &cpu,
            InitOptions { pse, lowmem_end: None, ..InitOptions::default() },
        )
        .unwrap();
        let swapper = k.swapper_pg_dir();
        let hs = hooks(&rec);
        if M::PAE {
            // one_md_table_init: alloc_pd(pmd) then set_pgd(swapper[3], pmd | PRESENT); the PDPT itself is never announced.
            let AllocPd { pfn: pmd } = hs[0] else { panic!("first hook {:?}", hs[0]) };
            assert_eq!(
                hs[1],
                Hook::SetPud { slot: EntryRef { table: swapper, index: 3 }, val: Pud::new(pmd, PteFlags::PRESENT) }
            );
            assert!(!hs.contains(&Hook::AllocPd { pfn: swapper }));
        } else {
            assert_eq!(hs[0], Hook::AllocPd { pfn: swapper }, "pagetable_init announces swapper_pg_dir first");
        }
        let mut announced = std::collections::HashSet::new();
        for h in &hs {
            match *h {
                Hook::AllocPt { pfn: p } | Hook::AllocPd { pfn: p } => assert!(announced.insert(p)),
                Hook::SetPmd { val, .. } if !val.is_large() => {
                    assert!(announced.contains(&val.pfn()), "linked before announced: {h}")
                }
                Hook::SetPte { slot, .. } => {
                    assert!(announced.contains(&slot.table), "write into unannounced {:?}", slot.table)
                }
                _ => {}
            }
        }
        let tables = rec.calls(HookKind::AllocPt);
        let per_table = M::PTRS_PER_PTE * 4096;
        if pse {
            assert_eq!(tables, 0, "8 MiB is a whole number of large pages");
            assert_eq!(rec.calls(HookKind::SetPmd), (8 << 20) / M::LARGE_PAGE_SIZE);
        } else {
            assert_eq!(tables, (8 << 20) / per_table);
            assert_eq!(rec.calls(HookKind::SetPte), 2048);
        }
        assert_eq!(rec.dropped(), 0);
        assert_eq!(ram.frames_in_use(), 1 + M::PAE as usize + tables as usize);
    }
}
use Hook::AllocPd;

fn pgd_alloc_sequence_matches_the_seed<M: PagingMode>() {
    // The lock probe needs 'static objects.
    let ram: &'static EmulatedRam = Box::leak(Box::new(EmulatedRam::new(2048, 256)));
    let rec: &'static Rec = Box::leak(Box::new(Recorder::new(Native)));
    let cpu: &'static HostCpu<'static, M> = Box::leak(Box::new(HostCpu::new(ram)));
    let k: &'static K<'static, M> =
        Box::leak(Box::new(KernelMm::pagetable_init(ram, rec, cpu, InitOptions::default()).unwrap()));
    rec.set_probe(Box::leak(Box::new(|| k.pgd_lock_is_held())));
    rec.clear();
    let a = k.create().unwrap();
    let pgd = a.pgd();
    let ev: Vec<Event> = rec.with_events(|e| e.to_vec());
    if M::PAE {
        let pmds = pae_user_pmds(ram, pgd);
        let want: Vec<Hook> = (0..3)
            .flat_map(|i| {
                [
                    Hook::AllocPd { pfn: pmds[i] },
                    Hook::SetPud {
                        slot: EntryRef { table: pgd, index: i as u32 },
                        val: Pud::new(pmds[i], PteFlags::PRESENT),
                    },
                ]
            })
            .collect();
        assert_eq!(ev.iter().map(|e| e.hook).collect::<Vec<_>>(), want);
        assert!(ev.iter().all(|e| !e.probe), "PAE pgd_alloc takes no pgd_lock");
        let mut list = [Pfn::new(0); 4];
        assert_eq!(k.pgd_list(&mut list), 0, "PAE pgds are not on pgd_list");
    } else {
        let swapper = k.swapper_pg_dir();
        assert_eq!(
            ev,
            vec![Event {
                hook: Hook::AllocPdClone { pfn: pgd, clone_pfn: swapper, start: 768, count: 256 },
                probe: true
            }],
            "one alloc_pd_clone, made while pgd_lock is held"
        );
        let mut list = [Pfn::new(0); 4];
        assert_eq!(k.pgd_list(&mut list), 1);
        assert_eq!(list[0], pgd);
        // The kernel part is a copy of swapper_pg_dir, the user part is zero.
        for i in 0..1024 {
            let want = if i < 768 { 0 } else { raw::<M>(ram, swapper, i) };
            assert_eq!(raw::<M>(ram, pgd, i), want, "entry {i}");
        }
    }
    rec.clear();
    k.destroy(a);
    let ev: Vec<Event> = rec.with_events(|e| e.to_vec());
    assert_eq!(ev[0].hook, Hook::ExitMmap { mm: pgd });
    let pt: Vec<Event> = ev.into_iter().filter(|e| e.hook.kind().is_page_type_hook()).collect();
    if M::PAE {
        let pmds = pae_user_pmds(ram, pgd);
        let _ = pmds; // freed frames are poisoned; compare against what pgd_alloc installed instead
        assert_eq!(pt.len(), 3);
        assert!(pt.iter().all(|e| matches!(e.hook, Hook::ReleasePd { .. }) && !e.probe));
    } else {
        assert_eq!(
            pt,
            vec![Event { hook: Hook::ReleasePd { pfn: pgd }, probe: true }],
            "pgd_dtor takes the pgd off pgd_list, then releases it, under pgd_lock"
        );
        let mut list = [Pfn::new(0); 4];
        assert_eq!(k.pgd_list(&mut list), 0);
    }
}

fn pgd_free_releases_each_pmd_before_freeing_it<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let a = k.create().unwrap();
        let pgd = a.pgd();
        let pmds = if M::PAE { pae_user_pmds(ram, pgd) } else { vec![] };
        let before = ram.frames_in_use() - k.metadata_frames();
        rec.clear();
        k.destroy(a);
        let pt = page_type_hooks(rec);
        // (The last pgd off pgd_list also gives back the list's metadata frames.)
        let after = ram.frames_in_use() - k.metadata_frames();
        if M::PAE {
            assert_eq!(pt, pmds.iter().map(|&p| Hook::ReleasePd { pfn: p }).collect::<Vec<_>>());
            assert_eq!(after, before - 4);
        } else {
            assert_eq!(pt, vec![Hook::ReleasePd { pfn: pgd }]);
            assert_eq!(after, before - 1);
        }
        for p in pmds.iter().chain([&pgd]) {
            assert!(!ram.is_allocated(*p));
        }
    });
}

fn pmd_populate_announces_then_links_then_writes<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        rec.clear();
        k.map(&mut a, 0x0804_8000, f, PteFlags::RW | PteFlags::USER).unwrap();
        let hs = hooks(rec);
        let Hook::AllocPt { pfn: pt } = hs[0] else { panic!("{:?}", hs) };
        let (dir, idx) = walk::pmd_table::<M, _>(ram, a.pgd(), 0x0804_8000).unwrap();
        assert_eq!(
            hs,
            vec![
                Hook::AllocPt { pfn: pt },
                Hook::SetPmd { slot: EntryRef { table: dir, index: idx }, val: Pmd::new(pt, PAGE_TABLE) },
                Hook::SetPteAt {
                    mm: a.pgd(),
                    addr: 0x0804_8000,
                    slot: EntryRef { table: pt, index: M::pte_index(0x0804_8000) },
                    val: Pte::new(f, PteFlags::PRESENT | PteFlags::RW | PteFlags::USER)
                },
            ]
        );
        // A second page in the same table: no page-type hook at all.
        rec.clear();
        let g = ram.alloc_frame().unwrap();
        k.map(&mut a, 0x0804_9000, g, PteFlags::USER).unwrap();
        assert!(page_type_hooks(rec).is_empty());
        assert_eq!(rec.calls(HookKind::SetPteAt), 1);
        k.unmap(&mut a, 0x0804_8000).unwrap();
        k.unmap(&mut a, 0x0804_9000).unwrap();
        k.destroy(a);
    });
}

fn unmapping_the_last_page_releases_the_table_before_freeing_it<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        k.map(&mut a, 0x4000_0000, f, PteFlags::RW | PteFlags::USER).unwrap();
        k.activate(&a);
        let (pmd, pte) = {
            let (dir, idx) = walk::pmd_table::<M, _>(ram, a.pgd(), 0x4000_0000).unwrap();
            let e: Pmd = read_entry::<M, _, _>(ram, dir, idx);
            ((dir, idx), e.pfn())
        };
        rec.clear();
        assert_eq!(k.unmap(&mut a, 0x4000_0000), Ok(f));
        let hs = hooks(rec);
        assert_eq!(
            hs,
            vec![
                Hook::PteClear { mm: a.pgd(), addr: 0x4000_0000, slot: EntryRef { table: pte, index: 0 } },
                Hook::PmdClear { slot: EntryRef { table: pmd.0, index: pmd.1 } },
                Hook::ReleasePt { pfn: pte },
                Hook::FlushTlbUser {},
            ]
        );
        assert!(!ram.is_allocated(pte), "table freed after the flush");
        assert_eq!(k.cpu().read_u32(0x4000_0000).unwrap_err().vector, 14, "the gather's flush covered the page");
        k.destroy(a);
    });
}

fn destroy_calls_exit_mmap_then_releases_every_table<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let frames: Vec<Pfn> = (0..4).map(|_| ram.alloc_frame().unwrap()).collect();
        for (i, f) in frames.iter().enumerate() {
            k.map(&mut a, 0x1000_0000 * i as u32 + 0x1000, *f, PteFlags::USER).unwrap();
        }
        let tables: Vec<Pfn> = rec.with_events(|e| {
            e.iter().filter_map(|e| if let Hook::AllocPt { pfn: p } = e.hook { Some(p) } else { None }).collect()
        });
        assert_eq!(tables.len(), 4);
        rec.clear();
        let pgd = a.pgd();
        k.destroy(a);
        let hs = hooks(rec);
        assert_eq!(hs[0], Hook::ExitMmap { mm: pgd });
        let released: Vec<Pfn> =
            hs.iter().filter_map(|h| if let Hook::ReleasePt { pfn: p } = h { Some(*p) } else { None }).collect();
        assert_eq!(released, tables);
        assert_eq!(rec.calls(HookKind::PteClear), 4);
        assert_eq!(rec.calls(HookKind::PmdClear), 4);
        for t in tables {
            assert!(!ram.is_allocated(t));
        }
        for f in frames {
            assert!(ram.is_allocated(f), "data frames belong to the caller");
            ram.free_frame(f);
        }
    });
}

fn dyn_ops_table_makes_the_same_calls_as_static_dispatch<M: PagingMode>() {
    let run = |dynamic: bool| -> Vec<Hook> {
        let ram = EmulatedRam::sixteen_mib();
        let rec: &'static Rec = Box::leak(Box::new(Recorder::new(Native)));
        let cpu = HostCpu::<M>::new(&ram);
        let ops = paravirt_core::ParavirtOps::from_backend("recorder", rec);
        let script = |k: &KernelMm<M, &dyn PvMmuOps<M>, &EmulatedRam, &HostCpu<'_, M>>| {
            let mut a = k.create().unwrap();
            let f = ram.alloc_frame().unwrap();
            k.map(&mut a, 0x2000, f, PteFlags::USER).unwrap();
            k.activate(&a);
            k.unmap(&mut a, 0x2000).unwrap();
            k.destroy(a);
        };
        let b: &dyn PvMmuOps<M> = if dynamic { &ops } else { rec };
        let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, b, &cpu, InitOptions::default()).unwrap();
        script(&k);
        hooks(rec)
    };
    let s = run(false);
    let d = run(true);
    assert!(s.len() > 10);
    assert_eq!(s, d);
}

both_modes!(
    pagetable_init_announces_every_table_before_linking_it,
    pgd_alloc_sequence_matches_the_seed,
    pgd_free_releases_each_pmd_before_freeing_it,
    pmd_populate_announces_then_links_then_writes,
    unmapping_the_last_page_releases_the_table_before_freeing_it,
    destroy_calls_exit_mmap_then_releases_every_table,
    dyn_ops_table_makes_the_same_calls_as_static_dispatch,
);
