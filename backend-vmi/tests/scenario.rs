//! The whole i386-mm scenario under VMI: every correct sequence is accepted silently, the
//! shadows stay exact after every step, the CPU walks the shadows, and teardown leaves
//! nothing behind.
mod common;
use common::*;
use std::fmt::Write as _;

type Rec<'r, M> = Recorder<&'r V<'r, M>, 4096>;

const USER: [u32; 2] = [0x0804_8000, 0x4000_0000];

fn user_va(j: usize) -> u32 {
    USER[j % 2] + (j / 2) as u32 * 0x1000
}

/// The CPU's root: what the backend handed it for the loaded guest root.
fn shadow_root<M: PagingMode>(v: &V<'_, M>, guest: Pfn) -> u64 {
    if M::PAE {
        v.shadow_pdpt().unwrap().phys().as_u64()
    } else {
        v.shadow_of(guest).unwrap().phys().as_u64()
    }
}

fn whole_i386_mm_scenario_under_vmi_verifies_after_every_step<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let base = ram.frames_in_use();
    let v = vmi::<M>(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &v, &cpu, InitOptions::default()).unwrap();
    let swapper = k.swapper_pg_dir();
    assert_clean(&v, "pagetable_init");
    if M::PAE {
        assert_eq!(v.page_type(swapper), PageType::NORMAL, "the PDPT is never typed");
        let kpmd = pud::<M>(&ram, swapper, 3).pfn();
        assert_eq!(v.page_type(kpmd), l2::<M>());
    } else {
        assert_eq!(v.page_type(swapper), l2::<M>());
    }

    // Paging on: the CPU walks the shadow of swapper_pg_dir.
    k.activate_swapper();
    assert_eq!(cpu.read_cr3() as u64, shadow_root(&v, swapper));
    assert_ne!(cpu.read_cr3() as u64, swapper.phys().as_u64());
    assert_eq!(v.read_cr3(cpu.read_cr3()) as u64, swapper.phys().as_u64());
    let probe = ram.alloc_frame().unwrap();
    ram.write_u32(probe.phys().as_u64() + 8, 0x1234_5678);
    assert_eq!(cpu.read_u32(lowmem_va(probe) + 8), Ok(0x1234_5678));
    ram.free_frame(probe);
    assert_clean(&v, "activate_swapper");

    // Address spaces with user mappings.
    let mut spaces = Vec::new();
    let mut frames = Vec::new();
    for i in 0..3 {
        let mut a = k.create().unwrap();
        assert_clean(&v, "create");
        if M::PAE {
            for pmd in (0..3).map(|s| pud::<M>(&ram, a.pgd(), s).pfn()) {
                assert_eq!(v.page_type(pmd), l2::<M>());
            }
        } else {
            assert_eq!(v.page_type(a.pgd()), PageType::l2_clone::<M>());
        }
        let mut fs = Vec::new();
        for j in 0..6 {
            let f = ram.alloc_frame().unwrap();
            k.map(&mut a, user_va(j), f, PteFlags::RW | PteFlags::USER).unwrap();
            fs.push(f);
        }
        assert_eq!(v.page_type(pt_of::<M>(&ram, a.pgd(), user_va(0))), l1::<M>());
        assert_clean(&v, "map");
        let _ = i;
        spaces.push(a);
        frames.push(fs);
    }
    for (i, a) in spaces.iter().enumerate() {
        k.activate(a);
        assert_eq!(cpu.read_cr3() as u64, shadow_root(&v, a.pgd()), "CR3 holds the shadow root");
        for j in 0..6 {
            cpu.write_u32(user_va(j), 0x5a00_0000 | (i as u32) << 8 | j as u32).unwrap();
        }
    }
    for (i, a) in spaces.iter().enumerate() {
        k.activate(a);
        for (j, f) in frames[i].iter().enumerate() {
            let sig = 0x5a00_0000 | (i as u32) << 8 | j as u32;
            assert_eq!(cpu.read_u32(user_va(j)), Ok(sig));
            assert_eq!(cpu.read_u32(lowmem_va(*f)), Ok(sig));
            assert_eq!(ram.read_u32(f.phys().as_u64()), sig, "the shadow PTE reaches the guest's frame");
        }
    }
    assert_clean(&v, "address spaces written and read through the shadows");
    let peak = v.stats();

    // A kernel-range update after the address spaces exist reaches each of them.
    let kva = k.vmalloc_start() + 0x0040_0000;
    let kf = ram.alloc_frame().unwrap();
    ram.write_u32(kf.phys().as_u64(), 0xc0de_cafe);
    k.map_kernel_page(kva, kf, PAGE_KERNEL).unwrap();
    assert_clean(&v, "map_kernel_page");
    for a in &spaces {
        k.activate(a);
        assert_eq!(cpu.read_u32(kva), Ok(0xc0de_cafe));
    }
    k.activate_swapper();
    assert_eq!(cpu.read_u32(kva), Ok(0xc0de_cafe));

    // change_page_attr: split, read-only through every shadow root, then revert.
    let data = ram.alloc_frame().unwrap();
    let flush = k.change_page_attr(data, PAGE_KERNEL_RO).unwrap();
    assert_clean(&v, "change_page_attr split");
    flush.flush(&k); // global_flush_tlb
    assert_eq!(k.split_tables(), 1);
    assert_eq!(cpu.write_u32(lowmem_va(data), 1).map_err(|f| f.error_code), Err(PF_PROT | PF_WRITE));
    k.activate(&spaces[1]);
    assert_eq!(cpu.write_u32(lowmem_va(data), 1).map_err(|f| f.error_code), Err(PF_PROT | PF_WRITE));
    assert_clean(&v, "global_flush_tlb");
    let flush = k.change_page_attr(data, PAGE_KERNEL).unwrap();
    assert_clean(&v, "change_page_attr revert");
    flush.flush(&k); // global_flush_tlb
    assert_eq!((k.split_tables(), k.deferred_frees()), (0, 0));
    assert_eq!(cpu.write_u32(lowmem_va(data), 2), Ok(()));
    ram.free_frame(data);
    assert_clean(&v, "revert + global_flush_tlb");

    // Unmap every other page: emptied page tables go through release_pt.
    for (i, a) in spaces.iter_mut().enumerate() {
        for j in (0..6).step_by(2) {
            let f = k.unmap(a, user_va(j)).unwrap();
            assert_eq!(f, frames[i][j]);
            ram.free_frame(f);
            frames[i][j] = Pfn::new(0);
            assert_clean(&v, "unmap");
        }
    }
    // Destroy everything.
    for (a, fs) in spaces.into_iter().zip(frames) {
        k.destroy(a);
        assert_clean(&v, "destroy");
        for f in fs.into_iter().filter(|f| f.as_u32() != 0) {
            ram.free_frame(f);
        }
    }
    assert_eq!(k.unmap_kernel_page(kva), Ok(kf));
    ram.free_frame(kf);
    assert_clean(&v, "unmap_kernel_page");
    let before_shutdown = v.stats();
    k.load_boot_root();
    let _parts = k.shutdown().map_err(|e| e.1).unwrap();
    assert_clean(&v, "shutdown");
    assert_eq!(v.pages_held(), 0);
    assert_eq!(v.typed_pages(), 0);
    let end = v.stats();
    assert_eq!((end.shadows_live, end.shadows_created), (0, end.shadows_freed));
    assert_eq!(end.pool_free, end.pool_frames);
    assert_eq!(v.loaded_root(), None);
    assert_eq!(ram.frames_in_use(), base + v.reserved_frames(), "only the backend's reserve is left");
    v.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), base);
    println!(
        "{}: peak {} typed ({} L1, {} L2, {} clones); before shutdown {} live; {} shadows created, {} checks \
         evaluated over {} kinds, {} entries mirrored, {} PDPT updates\n{end}",
        M::NAME,
        peak.shadows_live,
        peak.typed_l1,
        peak.typed_l2,
        peak.typed_clone,
        before_shutdown.shadows_live,
        end.shadows_created,
        end.checks_total(),
        end.checks_exercised(),
        end.entries_mirrored,
        end.pdpt_updates
    );
}

fn backend_sees_every_hook_the_kernel_makes_in_order<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let rec: Box<Rec<'_, M>> = Box::new(Recorder::new(&v));
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &*rec, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    rec.clear();
    let boot = v.stats();
    let mut a = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    k.map(&mut a, user_va(1), f, PteFlags::RW | PteFlags::USER).unwrap();
    let pt = pt_of::<M>(&ram, a.pgd(), user_va(1));
    k.activate(&a);
    assert_eq!(cpu.read_u32(user_va(1)), Ok(0));
    assert_eq!(k.unmap(&mut a, user_va(1)), Ok(f));
    k.destroy(a);
    ram.free_frame(f);
    assert_clean(&v, "lifecycle");
    // The page-type hooks in the seed's order, and the backend accepted each.
    let seq: Vec<Hook> =
        rec.with_events(|e| e.iter().map(|e| e.hook).filter(|h| h.kind().is_page_type_hook()).collect());
    if M::PAE {
        assert!(matches!(seq[..3], [Hook::AllocPd { .. }, Hook::AllocPd { .. }, Hook::AllocPd { .. }]), "{seq:?}");
        assert_eq!(seq[3..5], [Hook::AllocPt { pfn: pt }, Hook::ReleasePt { pfn: pt }]);
        assert!(
            matches!(seq[5..], [Hook::ReleasePd { .. }, Hook::ReleasePd { .. }, Hook::ReleasePd { .. }]),
            "{seq:?}"
        );
    } else {
        let Hook::AllocPdClone { pfn, clone_pfn, start, count } = seq[0] else { panic!("{seq:?}") };
        assert_eq!((clone_pfn, start, count), (k.swapper_pg_dir(), 768, 256));
        assert_eq!(seq[1..], [Hook::AllocPt { pfn: pt }, Hook::ReleasePt { pfn: pt }, Hook::ReleasePd { pfn }]);
    }
    // Every link in the log follows the announcement of what it links, and no release comes
    // while a directory the backend shadows still links the table.
    rec.with_events(|events| {
        let mut announced = std::collections::HashSet::new();
        for e in events {
            match e.hook {
                Hook::AllocPt { pfn: p } | Hook::AllocPd { pfn: p } | Hook::AllocPdClone { pfn: p, .. } => {
                    assert!(announced.insert(p), "{} announced twice", e.hook);
                }
                Hook::ReleasePt { pfn: p } | Hook::ReleasePd { pfn: p } => {
                    assert!(announced.remove(&p), "{} released unannounced", e.hook);
                }
                Hook::SetPmd { val, .. } if val.is_present() && !val.is_large() => {
                    assert!(announced.contains(&val.pfn()), "{} links an unannounced table", e.hook);
                }
                Hook::SetPud { val, .. } if val.is_present() => {
                    assert!(announced.contains(&val.pfn()), "{} links an unannounced table", e.hook);
                }
                _ => {}
            }
        }
    });
    // The backend counted exactly the calls the recorder saw.
    let s = v.stats();
    for h in HookKind::ALL {
        assert_eq!(s.calls(h) - boot.calls(h), rec.calls(h), "{h}");
    }
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(v.pages_held(), 0);
    assert_clean(&v, "shutdown");
}

fn shared_scenario_runs_clean_under_vmi<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let base = ram.frames_in_use();
    let v = vmi::<M>(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    let mut out = String::new();
    let cfg = mm_scenario::Config { ptdump: false, ..Default::default() };
    let r = mm_scenario::run::<M, _, _, _>(&ram, &v, &cpu, &cfg, &mut out);
    let s = r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(s.held_after, 0);
    assert_eq!(s.frames_after, s.frames_before);
    assert!(s.split, "VMI allows large pages, so change_page_attr splits one");
    v.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), base);
    let _ = writeln!(out, "{}", v.stats());
    println!("{out}");
}

fn pgd_alloc_out_of_memory_unwinds_without_leaving_anything_typed<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &v, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let before = (ram.frames_in_use(), v.pages_held(), v.stats().shadows_live);
    for n in 1..=(1 + 3 * M::PAE as u64) {
        ram.fail_nth_alloc(n);
        assert_eq!(k.create().map(|a| a.pgd()), Err(MmError::OutOfMemory), "failure at allocation {n}");
        ram.clear_fault();
        assert_eq!((ram.frames_in_use(), v.pages_held(), v.stats().shadows_live), before, "leak at {n}");
        assert_clean(&v, "out_oom unwind");
    }
    let a = k.create().unwrap();
    k.destroy(a);
    assert_clean(&v, "create after oom");
}

fn pagetable_init_without_pse_shadows_every_kernel_page_table<M: PagingMode>() {
    let ram = EmulatedRam::new(2048, 256); // 8 MiB
    let base = ram.frames_in_use();
    let v = vmi::<M>(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(
        &ram,
        &v,
        &cpu,
        InitOptions { pse: false, lowmem_end: None, ..InitOptions::default() },
    )
    .unwrap();
    let tables = (8 << 20) / (M::PTRS_PER_PTE as usize * 4096);
    let s = v.stats();
    assert_eq!(s.typed_l1, tables);
    assert_eq!(s.calls(HookKind::SetPte), 2048);
    assert_clean(&v, "4 KiB kernel map");
    k.activate_swapper();
    let last = Pfn::new(ram.max_pfn().as_u32() - 1);
    ram.write_u32(last.phys().as_u64(), 0xfeed);
    assert_eq!(cpu.read_u32(lowmem_va(last)), Ok(0xfeed));
    let a = k.create().unwrap();
    k.activate(&a);
    assert_eq!(cpu.read_u32(lowmem_va(last)), Ok(0xfeed), "the kernel map through a clone's shadow");
    k.destroy(a);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_clean(&v, "shutdown");
    assert_eq!(v.pages_held(), 0);
    v.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), base);
}

both_modes!(
    whole_i386_mm_scenario_under_vmi_verifies_after_every_step,
    backend_sees_every_hook_the_kernel_makes_in_order,
    shared_scenario_runs_clean_under_vmi,
    pgd_alloc_out_of_memory_unwinds_without_leaving_anything_typed,
    pagetable_init_without_pse_shadows_every_kernel_page_table,
);
