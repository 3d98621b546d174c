//! Every validation rule of the hypervisor model refusing its bad case, with the typed error
//! naming the frame and the rule.

mod common;
use common::*;
use paravirt_core::native;

fn make_writable_and_free<M: PagingMode>(e: &Env<'_, M>, f: Pfn) {
    e.hv.update_va_mapping(lowmem_va(f), Pte::new(f, PAGE_KERNEL), UvmFlags::INVLPG).unwrap();
    e.ram.free_frame(f);
}

fn a_writable_mapping_of_a_page_table_is_refused_anywhere<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (mut a, f) = e.space_with_page(UA);
        let l1 = l1_of::<M>(e.ram, a.pgd(), UA);
        let idx = M::pte_index(UA + 0x1000);

        // A user mapping of the page table, writable: refused inside set_pte_at.
        e.k.map(&mut a, UA + 0x1000, l1, PteFlags::RW | PteFlags::USER).unwrap();
        let v = violations(e.xen);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].hook, HookKind::SetPteAt);
        assert_eq!(
            v[0].rule,
            XenError::WritablePageTable { table: l1, index: idx, target: l1, target_type: PageType::L1 }
        );
        // Xen 4.17 answers -EBUSY here (the real-Xen oracle; get_page_from_l1e's type get).
        assert_eq!(v[0].rule.errno(), Errno::Busy);
        assert_eq!(v[0].rule.origin(), Origin::Hypervisor);
        assert_eq!(e.xen.violation_log().checker_total(), 0);
        assert!(e.k.translate(&a, UA + 0x1000).is_none(), "the refused entry was not written");
        // The root, too.
        let r = update::<M>(e.hv, l1, idx, Pte::new(a.pgd(), PteFlags::PRESENT | PteFlags::RW).raw());
        assert!(
            matches!(r, Err(XenError::WritablePageTable { target, target_type, .. }) if target == a.pgd() && target_type == root_ty::<M>())
        );
        // In the linear map: update_va_mapping cannot make it writable either.
        let r = e.hv.update_va_mapping(lowmem_va(l1), Pte::new(l1, PAGE_KERNEL), UvmFlags::INVLPG);
        assert!(matches!(r, Err(XenError::WritablePageTable { target, .. }) if target == l1));
        assert!(!linear_writable::<M>(e.ram, a.pgd(), l1));
        // Read-only is fine: any frame of the domain may be mapped, just never writable.
        update::<M>(e.hv, l1, idx, Pte::new(l1, PteFlags::PRESENT).raw()).unwrap();
        update::<M>(e.hv, l1, idx, 0).unwrap();

        e.xen.violation_log().clear();
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn a_directory_entry_must_reference_a_page_that_validates_as_l1<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        e.k.activate(&a);
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        assert!(e.hv.page_info(dir).ty.is_l2() && e.xen.guest_pinned(dir));

        // A page mapped writable (by the linear map) cannot become a page table.
        let g = alloc_zeroed(e.ram).unwrap();
        let r = update::<M>(e.hv, dir, idx, Pmd::new(g, PAGE_TABLE).raw());
        assert_eq!(r, Err(XenError::MappedWritable { pfn: g, mappings: 1 }));
        assert_eq!(read_entry::<M, Pmd, _>(e.ram, dir, idx), Pmd::EMPTY);

        // A page that already is a directory cannot be an L1.
        let other_dir =
            if M::PAE { dir_of::<M>(e.ram, e.k.swapper_pg_dir(), PAGE_OFFSET).0 } else { e.k.swapper_pg_dir() };
        let PageInfo { ty: has, count, .. } = e.hv.page_info(other_dir);
        assert_eq!(has, if M::PAE { PageType::PaeXenL2 } else { PageType::L2 });
        let r = update::<M>(e.hv, dir, idx, Pmd::new(other_dir, PAGE_TABLE).raw());
        assert_eq!(r, Err(XenError::TypeConflict { pfn: other_dir, want: PageType::L1, has, count }));

        // A read-only page whose own entries break the L1 rule does not validate either, and
        // validation is rolled back.
        let h = ro_frame(&e);
        let kl1 = l1_of::<M>(e.ram, e.k.swapper_pg_dir(), PAGE_OFFSET);
        // `h` is no table yet: the test writes its entry itself.
        let s = slot_of::<M, Pte>(e.ram, h, 5);
        native::set(s, Pte::new(kl1, PteFlags::PRESENT | PteFlags::RW));
        let r = update::<M>(e.hv, dir, idx, Pmd::new(h, PAGE_TABLE).raw());
        assert_eq!(r, Err(XenError::WritablePageTable { table: h, index: 5, target: kl1, target_type: PageType::L1 }));
        assert_eq!(e.hv.page_info(h), PageInfo::default());

        // A read-only page with valid entries validates as L1 through the entry alone (not
        // pinned), and is devalidated when the entry goes.
        native::clear(s);
        update::<M>(e.hv, dir, idx, Pmd::new(h, PAGE_TABLE).raw()).unwrap();
        assert_eq!(e.hv.page_info(h), PageInfo { ty: PageType::L1, count: 1, pinned: false });
        update::<M>(e.hv, dir, idx, 0).unwrap();
        assert_eq!(e.hv.page_info(h), PageInfo::default());

        make_writable_and_free(&e, h);
        e.ram.free_frame(g);
        e.k.destroy(a);
        shutdown_clean(e);
    });
}

/// `new_guest_cr3` takes a `PGT_root_page_table` reference with
/// `get_page_and_type_from_pagenr`: an unpinned root is validated on the spot, and a root
/// whose tables are still writable, or a frame of another type, is refused.
fn new_baseptr_validates_an_unpinned_root_and_refuses_another_type<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        let swapper = e.k.swapper_pg_dir();
        let want = root_ty::<M>();
        // The tree is still writable (the kernel loaded it without pinning it first).
        let r = ext::<M>(e.hv, MmuextOp::NewBaseptr(a.pgd()));
        assert_eq!(r, Err(XenError::MappedWritable { pfn: a.pgd(), mappings: 1 }));
        assert_eq!(r.unwrap_err().origin(), Origin::Hypervisor, "Xen refuses a root mapped writable");
        let kl1 = l1_of::<M>(e.ram, swapper, PAGE_OFFSET);
        let r = ext::<M>(e.hv, MmuextOp::NewBaseptr(kl1));
        assert_eq!(r, Err(XenError::TypeConflict { pfn: kl1, want, has: PageType::L1, count: 2 }));
        if M::PAE {
            let kpmd = dir_of::<M>(e.ram, swapper, PAGE_OFFSET).0;
            let r = ext::<M>(e.hv, MmuextOp::NewBaseptr(kpmd));
            assert!(matches!(r, Err(XenError::TypeConflict { pfn, has: PageType::PaeXenL2, .. }) if pfn == kpmd));
        }
        // A batch stops at the refusal; the base pointer is unchanged.
        let mut done = 9;
        let ops = [MmuextOp::TlbFlushLocal, MmuextOp::NewBaseptr(a.pgd()), MmuextOp::TlbFlushLocal];
        assert!(e.hv.mmuext_op(&ops, &mut done).is_err());
        assert_eq!(done, 1);
        assert_eq!(e.hv.base(), Some(swapper));
        assert_eq!(e.hv.page_info(swapper).count, 2);

        // Read-only but not pinned: validated by the base pointer's reference alone.
        let own: Vec<Pfn> = tables::<M>(e.ram, a.pgd())
            .into_iter()
            .map(|t| t.0)
            .filter(|&t| {
                t == a.pgd()
                    || (M::PAE && e.ram.is_allocated(t) && !e.hv.is_pinned(t) && e.hv.page_info(t).ty != PageType::L1)
            })
            .collect();
        assert_eq!(own.len(), if M::PAE { 5 } else { 1 }, "the root, and in PAE its four pmds");
        for &t in &own {
            e.hv.update_va_mapping(lowmem_va(t), Pte::new(t, PAGE_KERNEL_RO), UvmFlags::INVLPG).unwrap();
        }
        ext::<M>(e.hv, MmuextOp::NewBaseptr(a.pgd())).unwrap();
        assert_eq!(e.hv.base(), Some(a.pgd()));
        assert_eq!(e.hv.page_info(a.pgd()), PageInfo { ty: want, count: 1, pinned: false });
        assert_eq!(e.hv.page_info(swapper).count, 1, "the old root lost the base pointer's reference");
        ext::<M>(e.hv, MmuextOp::NewBaseptr(swapper)).unwrap();
        assert_eq!(e.hv.page_info(a.pgd()), PageInfo::default(), "devalidated with the last reference");
        for &t in &own {
            e.hv.update_va_mapping(lowmem_va(t), Pte::new(t, PAGE_KERNEL), UvmFlags::INVLPG).unwrap();
        }
        e.k.destroy(a);
        shutdown_clean(e);
    });
}

fn unpinning_an_unpinned_page_and_pinning_twice_are_refused<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let g = e.ram.alloc_frame().unwrap();
        assert_eq!(ext::<M>(e.hv, MmuextOp::UnpinTable(g)), Err(XenError::NotPinned { pfn: g }));
        let kl1 = l1_of::<M>(e.ram, e.k.swapper_pg_dir(), PAGE_OFFSET);
        assert_eq!(ext::<M>(e.hv, MmuextOp::PinL1Table(kl1)), Err(XenError::AlreadyPinned { pfn: kl1 }));
        assert_eq!(e.hv.page_info(kl1), PageInfo { ty: PageType::L1, count: 2, pinned: true });
        e.ram.free_frame(g);
        shutdown_clean(e);
    });
}

fn pinning_a_page_that_is_mapped_writable_is_refused<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let g = alloc_zeroed(e.ram).unwrap();
        let pte = Pte::new(g, PAGE_KERNEL);
        assert_eq!(ext::<M>(e.hv, MmuextOp::PinL1Table(g)), Err(XenError::MappedWritable { pfn: g, mappings: 1 }));
        assert_eq!(e.hv.page_info(g), PageInfo { ty: PageType::Writable, count: 1, pinned: false });
        // Read-only first (what the guest side does), then the pin succeeds.
        e.hv.update_va_mapping(lowmem_va(g), pte.with_flags(PAGE_KERNEL - PteFlags::RW), UvmFlags::INVLPG).unwrap();
        ext::<M>(e.hv, MmuextOp::PinL1Table(g)).unwrap();
        assert_eq!(e.hv.page_info(g), PageInfo { ty: PageType::L1, count: 1, pinned: true });
        // A direct store that would map the table itself writable: Xen does not emulate it
        // (`ptwr_emulated_update` fails `get_page_from_l1e`), the fault stays.
        let fault = e.cpu.write_u32(lowmem_va(g), Pte::new(g, PAGE_KERNEL).raw() as u32).unwrap_err();
        assert_eq!(fault.error_code & PF_PROT, PF_PROT);
        assert_eq!(read_entry::<M, Pte, _>(e.ram, g, 0), Pte::EMPTY);
        ext::<M>(e.hv, MmuextOp::UnpinTable(g)).unwrap();
        assert_eq!(e.hv.page_info(g), PageInfo::default());
        e.hv.update_va_mapping(lowmem_va(g), pte, UvmFlags::INVLPG).unwrap();
        e.ram.free_frame(g);
        shutdown_clean(e);
    });
}

/// `do_mmuext_op`: "Ignore pinning of invalid paging levels", and `MMUEXT_PIN_L4_TABLE` from a
/// 32-bit guest is a no-op; unknown commands are refused.
fn pins_of_a_level_the_mode_lacks_are_ignored_and_unknown_commands_refused<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let g = ro_frame(&e);
        assert_eq!(ext::<M>(e.hv, MmuextOp::PinL4Table(g)), Ok(()));
        assert_eq!(e.hv.page_info(g), PageInfo::default(), "ignored: nothing typed, nothing pinned");
        if M::PAE {
            // An L3 must hold Xen's L2 in slot 3 (`create_pae_xen_mappings`).
            assert_eq!(ext::<M>(e.hv, MmuextOp::PinL3Table(g)), Err(XenError::PaeL3SlotEmpty { table: g }));
        } else {
            assert_eq!(ext::<M>(e.hv, MmuextOp::PinL3Table(g)), Ok(()));
        }
        assert_eq!(e.hv.page_info(g), PageInfo::default());
        assert_eq!(MmuextOp::from_raw(99, 0), Err(XenError::BadCommand { cmd: 99 }));
        assert_eq!(MmuextOp::from_raw(MMUEXT_NEW_BASEPTR, 7), Ok(MmuextOp::NewBaseptr(Pfn::new(7))));
        assert_eq!(MmuextOp::from_raw(MMUEXT_INVLPG_LOCAL, 0x1000).map(|o| o.cmd()), Ok(7));
        let mut done = 0;
        let r = e.hv.mmu_update(&[MmuUpdate { ptr: g.phys().as_u64() | MMU_MACHPHYS_UPDATE, val: 0 }], &mut done);
        assert_eq!(r, Err(XenError::BadCommand { cmd: 1 }));
        assert_eq!(r.unwrap_err().errno().code(), -38);
        make_writable_and_free(&e, g);
        shutdown_clean(e);
    });
}

fn large_pages_foreign_frames_and_reserved_pdpt_bits_are_refused<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (a, f) = e.space_with_page(UA);
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        let r = update::<M>(e.hv, dir, idx, Pmd::large(PhysAddr::new(0), PAGE_KERNEL).raw());
        assert_eq!(r, Err(XenError::LargePage { table: dir, index: idx }));

        let l1 = l1_of::<M>(e.ram, a.pgd(), UA);
        let beyond = Pfn::new(FRAMES as u32 + 16);
        let r = update::<M>(e.hv, l1, 7, Pte::new(beyond, PteFlags::PRESENT).raw());
        assert_eq!(r, Err(XenError::ForeignFrame { pfn: beyond }));
        // Xen 4.17: a frame the domain does not own is -EINVAL (the real-Xen oracle).
        assert_eq!(r.unwrap_err().errno(), Errno::Inval);

        if M::PAE {
            let e1: Pud = read_entry::<M, _, _>(e.ram, a.pgd(), 1);
            let r = update::<M>(e.hv, a.pgd(), 1, e1.union(PteFlags::RW).raw());
            let level = PageType::L3;
            assert_eq!(r, Err(XenError::DisallowedFlags { table: a.pgd(), index: 1, level, bits: 0x2 }));
            let r = update::<M>(e.hv, a.pgd(), 4, 0);
            assert_eq!(r, Err(XenError::BadIndex { table: a.pgd(), index: 4 }));
        }
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn update_va_mapping_needs_the_linear_map_and_a_mapped_address<M: PagingMode>() {
    machine::<M>(Policy::Record, |e| {
        let r = e.hv.update_va_mapping(lowmem_va(Pfn::new(300)), Pte::EMPTY, UvmFlags::empty());
        assert_eq!(r, Err(XenError::NoLinearMap));
        e.k.activate_swapper();
        let r = e.hv.update_va_mapping(0x0040_0000, Pte::EMPTY, UvmFlags::empty());
        assert_eq!(r, Err(XenError::NotMapped { va: 0x0040_0000 }));
        let r = e.hv.set_pt_base(Pfn::new(300));
        assert_eq!(r, Err(XenError::PtBaseAlreadySet { pfn: e.k.swapper_pg_dir() }));
        assert_eq!(r.unwrap_err().origin(), Origin::Checker, "the model's own stand-in for the domain builder");
        shutdown_clean(e);
    });
}

fn change_page_attr_cannot_make_a_pinned_table_writable<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let swapper = e.k.swapper_pg_dir();
        let kl1 = l1_of::<M>(e.ram, swapper, PAGE_OFFSET);
        let flush = e.k.change_page_attr(kl1, PAGE_KERNEL_RO).unwrap();
        assert_eq!(e.xen.violations(), 0, "read-only over read-only is fine");
        flush.ignore();
        e.k.change_page_attr(kl1, PAGE_KERNEL).unwrap().ignore();
        let v = violations(e.xen);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].hook, HookKind::SetPteAtomic);
        assert!(
            matches!(v[0].rule, XenError::WritablePageTable { target, target_type: PageType::L1, .. } if target == kl1)
        );
        assert!(!linear_writable::<M>(e.ram, swapper, kl1));
        e.k.global_flush_tlb();
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

fn refusals_are_counted_by_errno_class<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let s0 = e.xen.stats();
        let g = e.ram.alloc_frame().unwrap();
        let _ = ext::<M>(e.hv, MmuextOp::UnpinTable(g));
        let _ = ext::<M>(e.hv, MmuextOp::PinL1Table(g));
        let _ = ext::<M>(e.hv, MmuextOp::PinL1Table(Pfn::new(FRAMES as u32 + 1)));
        let s1 = e.xen.stats();
        assert_eq!(s1.refused() - s0.refused(), 3);
        assert_eq!(s1.refusals[Errno::Inval.index()] - s0.refusals[Errno::Inval.index()], 3);
        assert_eq!(s1.refusals[Errno::Perm.index()] - s0.refusals[Errno::Perm.index()], 0);
        assert_eq!(s1.mmuext[MMUEXT_PIN_L1_TABLE as usize] - s0.mmuext[MMUEXT_PIN_L1_TABLE as usize], 2);
        let mut out = String::new();
        e.xen.write_stats(&mut out).unwrap();
        assert!(out.contains("EINVAL=3") && out.contains("EPERM=0"), "{out}");
        e.ram.free_frame(g);
        shutdown_clean(e);
    });
}

/// Before `init_frametable` no frame has a record: the first hypercall that needs one is
/// refused with a typed `Capacity` error (reported under the policy), never a panic.
fn a_frame_table_not_set_up_is_a_reported_capacity_error<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let hv = Hypervisor::<M, _>::new(&ram);
    let xen = Xen::boot(&hv, Policy::Record).unwrap();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &xen, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let v = xen.violation_log().get(0).expect("pinning needs the frame table");
    assert_eq!(v.hook, HookKind::WriteCr3);
    assert!(matches!(v.rule, XenError::Capacity { .. }), "{v}");
    assert_eq!(hv.frametable_frames(), 0);
    assert_eq!(v.rule.errno(), Errno::NoMem);
    assert!(xen.stats().refusals[Errno::NoMem.index()] > 0);
}

both_modes!(
    a_writable_mapping_of_a_page_table_is_refused_anywhere,
    a_directory_entry_must_reference_a_page_that_validates_as_l1,
    new_baseptr_validates_an_unpinned_root_and_refuses_another_type,
    unpinning_an_unpinned_page_and_pinning_twice_are_refused,
    pinning_a_page_that_is_mapped_writable_is_refused,
    pins_of_a_level_the_mode_lacks_are_ignored_and_unknown_commands_refused,
    large_pages_foreign_frames_and_reserved_pdpt_bits_are_refused,
    update_va_mapping_needs_the_linear_map_and_a_mapped_address,
    change_page_attr_cannot_make_a_pinned_table_writable,
    refusals_are_counted_by_errno_class,
    a_frame_table_not_set_up_is_a_reported_capacity_error,
);
