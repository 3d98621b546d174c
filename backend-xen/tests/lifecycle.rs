//! Pin / unpin lifecycles: which hook pins what, in which order, and what teardown gives back.

mod common;
use common::*;

/// The first root loaded is the domain's initial page table: its tables are mapped read-only
/// as Xen's domain builder maps them (no hypercall), then `xen_pgd_pin` pins the page tables
/// and the root, bottom-up, and `NEW_BASEPTR` installs it. A PAE pmd is never pinned: the L3
/// validates it, the kernel pmd in slot 3 as `PGT_pae_xen_l2` (`alloc_l3_table`).
fn activate_swapper_pins_the_kernel_tree_read_only_first_then_bottom_up<M: PagingMode>() {
    machine::<M>(Policy::Panic, |e| {
        let swapper = e.k.swapper_pg_dir();
        assert!(!e.k.uses_large_pages(), "Xen PV has no PSE: the linear map is 4 KiB pages");
        assert_eq!(e.hv.pinned_tables().total(), 0);
        e.hv.clear_trace();
        e.k.activate_swapper();

        let tree = tables::<M>(e.ram, swapper);
        let (l1s, dirs) = if M::PAE { (8, 1) } else { (4, 0) };
        assert_eq!(tree.len(), 1 + dirs + l1s);
        let p = e.hv.pinned_tables();
        assert_eq!((p.l1, p.l2, p.l3), if M::PAE { (8, 0, 1) } else { (4, 1, 0) });
        assert_eq!(e.hv.base(), Some(swapper));
        assert_eq!(e.hv.pt_base(), Some(swapper));
        let pinned = guest_pinned_tables::<M>(e.ram, swapper);
        for &(t, _) in &tree {
            assert_eq!(e.hv.is_pinned(t), pinned.contains(&t), "{t:?}");
            assert!(e.xen.is_read_only(t) && e.xen.guest_pinned(t));
            assert!(!linear_writable::<M>(e.ram, swapper, t), "table {t:?} still writable");
        }
        // Pin count + parent reference for the page tables; the parent's reference alone for
        // a PAE pmd; pin + base pointer for the root.
        for &(t, level) in &tree[1..] {
            let want = if level == walk::Level::Pmd {
                PageInfo { ty: PageType::PaeXenL2, count: 1, pinned: false }
            } else {
                PageInfo { ty: PageType::L1, count: 2, pinned: true }
            };
            assert_eq!(e.hv.page_info(t), want, "{t:?}");
        }
        assert_eq!(e.hv.page_info(swapper), PageInfo { ty: root_ty::<M>(), count: 2, pinned: true });

        // No update_va_mapping: the builder made the tables read-only. Then pins with each
        // table after those below it, the root last, then the base pointer.
        let c = calls(e.hv);
        let n = pinned.len();
        assert_eq!(c.len(), n + 1, "{c:?}");
        let pins: Vec<Pfn> = c[..n]
            .iter()
            .map(|x| match x.call {
                Hypercall::MmuextOp(MmuextOp::PinL1Table(p) | MmuextOp::PinL2Table(p) | MmuextOp::PinL3Table(p)) => p,
                other => panic!("expected a pin, got {other:?}"),
            })
            .collect();
        assert_eq!(*pins.last().unwrap(), swapper);
        assert_eq!(c[n].call, Hypercall::MmuextOp(MmuextOp::NewBaseptr(swapper)));
        assert!(c.iter().all(|x| x.error.is_none()));
        assert!(verify(e.xen).0);
        shutdown_clean(e);
    });
}

fn activating_an_address_space_pins_its_own_tables_and_shares_the_kernel_ones<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let mut a = e.k.create().unwrap();
        let (f1, f2) = (e.ram.alloc_frame().unwrap(), e.ram.alloc_frame().unwrap());
        e.k.map(&mut a, UA, f1, PteFlags::RW | PteFlags::USER).unwrap();
        e.k.map(&mut a, UB, f2, PteFlags::RW | PteFlags::USER).unwrap();
        let (la, lb) = (l1_of::<M>(e.ram, a.pgd(), UA), l1_of::<M>(e.ram, a.pgd(), UB));
        assert!(!e.hv.is_pinned(a.pgd()) && !e.hv.is_pinned(la));
        let before = e.hv.pinned_tables();

        e.k.activate(&a);
        assert_eq!(e.hv.base(), Some(a.pgd()));
        for t in [a.pgd(), la, lb] {
            assert!(e.hv.is_pinned(t) && e.xen.is_read_only(t), "{t:?}");
        }
        let after = e.hv.pinned_tables();
        // Own tables only: the root and two page tables (PAE pmds are validated through the
        // root, not pinned).
        assert_eq!(after.total() - before.total(), 3);
        // The shared kernel page table holds one more reference: from this root's entry (PAE:
        // from this root's own copy of the kernel pmd, typed `PGT_pae_xen_l2`).
        let shared = l1_of::<M>(e.ram, a.pgd(), PAGE_OFFSET);
        assert_eq!(e.hv.page_info(shared).count, 3, "pin + swapper + this root");
        if M::PAE {
            let kpmd = pmd_of(e.ram, a.pgd(), 3);
            assert_ne!(kpmd, pmd_of(e.ram, e.k.swapper_pg_dir(), 3));
            assert_eq!(e.hv.page_info(kpmd), PageInfo { ty: PageType::PaeXenL2, count: 1, pinned: false });
            assert!(e.xen.is_read_only(kpmd) && e.xen.guest_pinned(kpmd));
        }
        // The user frames are mapped writable twice: the user PTE and the linear map.
        assert_eq!(e.hv.page_info(f1), PageInfo { ty: PageType::Writable, count: 2, pinned: false });

        e.cpu.write_u32(UA + 8, 0xfeed_f00d).unwrap();
        e.cpu.write_u32(UB + 8, 0xdead_beef).unwrap();
        assert_eq!(e.cpu.read_u32(lowmem_va(f1) + 8).unwrap(), 0xfeed_f00d);
        assert_eq!(e.cpu.read_u32(lowmem_va(f2) + 8).unwrap(), 0xdead_beef);

        e.k.destroy(a);
        assert_eq!(e.hv.page_info(shared).count, 2);
        assert_eq!(e.hv.pinned_tables(), before);
        assert_eq!(e.hv.page_info(f1), PageInfo { ty: PageType::Writable, count: 1, pinned: false });
        e.ram.free_frame(f1);
        e.ram.free_frame(f2);
        shutdown_clean(e);
    });
}

fn exit_mmap_unpins_the_user_tree_and_makes_its_pages_writable_so_teardown_writes_go_direct<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let kernel_only = (e.hv.pinned_tables(), e.xen.read_only_pages(), e.xen.pages_held());
        let (a, f) = e.space_with_page(UA);
        e.k.activate_swapper();
        let (pgd, l1) = (a.pgd(), l1_of::<M>(e.ram, a.pgd(), UA));
        // The address space's own tables: the root, its page table, and in PAE its user pmds.
        let mut own = vec![pgd, l1];
        if M::PAE {
            own.extend((0..4).map(|i| pmd_of(e.ram, pgd, i)));
        }
        let kernel = guest_pinned_tables::<M>(e.ram, e.k.swapper_pg_dir());
        assert!(own.iter().all(|&t| e.xen.guest_pinned(t) && e.xen.is_read_only(t)));

        e.xen.exit_mmap(pgd);
        for &t in &own {
            assert!(
                !e.hv.is_pinned(t) && !e.xen.guest_pinned(t) && !e.xen.is_read_only(t),
                "{t:?} still pinned or read-only"
            );
            assert!(linear_writable::<M>(e.ram, e.k.swapper_pg_dir(), t));
        }
        assert!(kernel.iter().all(|&t| e.hv.is_pinned(t) && e.xen.is_read_only(t)), "shared tables stay pinned");
        assert_eq!((e.hv.pinned_tables(), e.xen.read_only_pages()), (kernel_only.0, kernel_only.1));
        let direct = e.xen.stats().direct_writes;
        let updates = e.xen.stats().mmu_update;
        // `destroy` calls exit_mmap again (harmless: nothing left pinned), then clears directly.
        e.k.destroy(a);
        assert!(e.xen.stats().direct_writes > direct);
        assert_eq!(e.xen.stats().mmu_update, updates, "no teardown write went through the hypervisor");
        assert_eq!(e.xen.pages_held(), kernel_only.2);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn linking_an_announced_table_into_a_pinned_one_makes_it_read_only_then_pins_then_updates<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let mut a = e.k.create().unwrap();
        e.k.activate(&a);
        let f = e.ram.alloc_frame().unwrap();
        e.hv.clear_trace();
        e.k.map(&mut a, UB, f, PteFlags::RW | PteFlags::USER).unwrap();
        let l1 = l1_of::<M>(e.ram, a.pgd(), UB);
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        let pte_pa = entry_pa::<M>(l1, M::pte_index(UB));
        let c: Vec<Hypercall> = calls(e.hv).into_iter().map(|x| x.call).collect();
        let ro = Hypercall::UpdateVaMapping {
            va: lowmem_va(l1),
            val: Pte::new(l1, PAGE_KERNEL - PteFlags::RW),
            flags: UvmFlags::INVLPG,
        };
        assert_eq!(
            c,
            vec![
                ro,
                Hypercall::MmuextOp(MmuextOp::PinL1Table(l1)),
                Hypercall::MmuUpdate(MmuUpdate::normal(entry_pa::<M>(dir, idx), Pmd::new(l1, PAGE_TABLE).raw())),
                Hypercall::MmuUpdate(MmuUpdate::normal(
                    pte_pa,
                    Pte::new(f, PteFlags::PRESENT | PteFlags::RW | PteFlags::USER).raw()
                )),
            ]
        );
        assert_eq!(e.hv.page_info(l1), PageInfo { ty: PageType::L1, count: 2, pinned: true });
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn release_pt_of_a_pinned_table_unpins_it_then_makes_it_writable<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let (mut a, f) = e.space_with_page(UB);
        let l1 = l1_of::<M>(e.ram, a.pgd(), UB);
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        e.hv.clear_trace();
        assert_eq!(e.k.unmap(&mut a, UB).unwrap(), f);
        let c: Vec<Hypercall> = calls(e.hv).into_iter().map(|x| x.call).collect();
        let pte_pa = entry_pa::<M>(l1, M::pte_index(UB));
        assert_eq!(
            c,
            vec![
                Hypercall::MmuUpdate(MmuUpdate::normal(pte_pa, 0)),
                Hypercall::MmuUpdate(MmuUpdate::normal(entry_pa::<M>(dir, idx), 0)),
                Hypercall::MmuextOp(MmuextOp::UnpinTable(l1)),
                Hypercall::UpdateVaMapping {
                    va: lowmem_va(l1),
                    val: Pte::new(l1, PAGE_KERNEL),
                    flags: UvmFlags::INVLPG
                },
            ]
        );
        assert!(!e.ram.is_allocated(l1), "the page table went back to the allocator");
        assert!(!e.hv.is_pinned(l1) && !e.xen.is_read_only(l1) && !e.xen.is_announced(l1));
        // Back in the pool it is an ordinary page mapped writable by the linear map.
        assert_eq!(e.hv.page_info(l1), PageInfo { ty: PageType::Writable, count: 1, pinned: false });
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn unpinned_tables_are_written_directly_and_pinned_ones_through_mmu_update<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let mut a = e.k.create().unwrap();
        let (f1, f2) = (e.ram.alloc_frame().unwrap(), e.ram.alloc_frame().unwrap());
        let s0 = e.xen.stats();
        e.k.map(&mut a, UA, f1, PteFlags::RW | PteFlags::USER).unwrap();
        let s1 = e.xen.stats();
        assert_eq!(s1.mmu_update, s0.mmu_update, "nothing of an unpinned tree goes through the hypervisor");
        assert_eq!(s1.direct_writes - s0.direct_writes, 2, "set_pmd and set_pte_at, both direct");
        e.k.activate(&a);
        let s2 = e.xen.stats();
        e.k.map(&mut a, UA + 0x1000, f2, PteFlags::RW | PteFlags::USER).unwrap();
        let s3 = e.xen.stats();
        assert_eq!(s3.direct_writes, s2.direct_writes);
        assert_eq!(s3.mmu_update - s2.mmu_update, 1);
        assert_eq!(s3.calls(HookKind::SetPteAt) - s2.calls(HookKind::SetPteAt), 1);
        e.k.destroy(a);
        e.ram.free_frame(f1);
        e.ram.free_frame(f2);
        shutdown_clean(e);
    });
}

fn map_kernel_page_after_the_address_spaces_exist_reaches_each_of_them<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let mut spaces: Vec<_> = (0..3).map(|_| e.k.create().unwrap()).collect();
        e.k.activate(&spaces[0]);
        e.k.activate(&spaces[1]);
        e.k.activate_swapper();
        let kva = e.k.vmalloc_start() + 0x0040_0000;
        let kf = e.ram.alloc_frame().unwrap();
        let updates = e.xen.stats().mmu_update;
        e.k.map_kernel_page(kva, kf, PAGE_KERNEL).unwrap();
        let kl1 = l1_of::<M>(e.ram, e.k.swapper_pg_dir(), kva);
        assert!(e.hv.is_pinned(kl1) && e.xen.is_read_only(kl1));
        // Swapper and the two pinned pgds reference it through mmu_update, the unpinned third
        // got a direct store: in two-level mode in their pgds, in PAE in their own copies of
        // the kernel pmd (`vmalloc_sync_all` walking `pgd_list`, `shared_kernel_pmd = 0`).
        let refs = 3;
        assert_eq!(e.hv.page_info(kl1).count, 1 + refs);
        assert_eq!(e.xen.stats().mmu_update - updates, refs as u64 + 1, "directory entries + the PTE");
        e.cpu.write_u32(kva, 0xC0DE_CAFE).unwrap();
        for a in &spaces {
            e.k.activate(a);
            assert_eq!(e.cpu.read_u32(kva).unwrap(), 0xC0DE_CAFE);
        }
        assert_eq!(e.hv.page_info(kl1).count, 5, "the third pgd, pinned now, validated its entry");
        e.k.activate_swapper();
        assert_eq!(e.k.unmap_kernel_page(kva).unwrap(), kf);
        assert!(!e.ram.is_allocated(kl1));
        assert_eq!(e.hv.page_info(kl1).ty, PageType::Writable);
        for a in spaces.drain(..) {
            e.k.destroy(a);
        }
        e.ram.free_frame(kf);
        shutdown_clean(e);
    });
}

fn change_page_attr_to_read_only_and_back_goes_through_mmu_update<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let data = e.ram.alloc_frame().unwrap();
        assert_eq!(e.hv.page_info(data).count, 1, "the linear map's writable mapping");
        let updates = e.xen.stats().mmu_update;
        e.k.change_page_attr(data, PAGE_KERNEL_RO).unwrap().flush(&e.k);
        assert_eq!(e.xen.stats().mmu_update - updates, 1);
        assert_eq!(e.hv.page_info(data), PageInfo::default(), "no writable mapping left");
        let fault = e.cpu.write_u32(lowmem_va(data), 1).unwrap_err();
        assert_eq!(fault.error_code & (PF_PROT | PF_WRITE), PF_PROT | PF_WRITE);
        e.k.change_page_attr(data, PAGE_KERNEL).unwrap().flush(&e.k);
        assert_eq!(e.hv.page_info(data).count, 1);
        e.cpu.write_u32(lowmem_va(data), 2).unwrap();
        e.ram.free_frame(data);
        assert!(verify(e.xen).0);
        shutdown_clean(e);
    });
}

fn pgd_alloc_out_of_memory_leaves_nothing_announced<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let held = e.xen.pages_held();
        let attempts = if M::PAE { 4 } else { 1 };
        for n in 1..=attempts {
            e.ram.fail_nth_alloc(n);
            assert_eq!(e.k.create().unwrap_err(), MmError::OutOfMemory);
            e.ram.clear_fault();
            assert_eq!(e.xen.pages_held(), held);
        }
        shutdown_clean(e);
    });
}

both_modes!(
    activate_swapper_pins_the_kernel_tree_read_only_first_then_bottom_up,
    activating_an_address_space_pins_its_own_tables_and_shares_the_kernel_ones,
    exit_mmap_unpins_the_user_tree_and_makes_its_pages_writable_so_teardown_writes_go_direct,
    linking_an_announced_table_into_a_pinned_one_makes_it_read_only_then_pins_then_updates,
    release_pt_of_a_pinned_table_unpins_it_then_makes_it_writable,
    unpinned_tables_are_written_directly_and_pinned_ones_through_mmu_update,
    map_kernel_page_after_the_address_spaces_exist_reaches_each_of_them,
    change_page_attr_to_read_only_and_back_goes_through_mmu_update,
    pgd_alloc_out_of_memory_leaves_nothing_announced,
);
