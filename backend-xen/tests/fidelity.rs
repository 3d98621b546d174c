//! The model answers as the real Xen does (`xen/arch/x86/mm.c`, Xen 3.x for 32-bit guests) and
//! as Linux's Xen code does (`arch/x86/xen/mmu.c`): each test names the function whose answer
//! it pins.

mod common;
use common::*;
use paravirt_core::native;

fn give_back<M: PagingMode>(e: &Env<'_, M>, f: Pfn) {
    e.hv.update_va_mapping(lowmem_va(f), Pte::new(f, PAGE_KERNEL), UvmFlags::INVLPG).unwrap();
    e.ram.free_frame(f);
}

// ---- 1. The PAE kernel pmd --------------------------------------------------------------

/// `alloc_l3_table` + `create_pae_xen_mappings`: slot 3 of a PAE L3 holds an L2 typed
/// `PGT_pae_xen_l2` that no other L3 may hold ("PAE L3 3rd slot is shared"), and `mod_l3_entry`
/// refuses a guest update of slot 3 of a validated L3. So Linux under Xen gives every pgd its
/// own kernel pmd (`shared_kernel_pmd = 0`), which the kernel here does for this backend.
fn pae_slot_3_holds_an_l2_of_its_own_that_no_other_l3_may_share<M: PagingMode>() {
    if !M::PAE {
        return;
    }
    booted::<M>(Policy::Record, |e| {
        assert!(!e.k.shares_kernel_pmd());
        let swapper = e.k.swapper_pg_dir();
        let kpmd = pmd_of(e.ram, swapper, 3);
        assert_eq!(e.hv.page_info(kpmd), PageInfo { ty: PageType::PaeXenL2, count: 1, pinned: false });
        let (a, f) = e.space_with_page(UA);
        let own = pmd_of(e.ram, a.pgd(), 3);
        assert_ne!(own, kpmd, "pgd_alloc copied the kernel pmd");
        assert_eq!(e.hv.page_info(own), PageInfo { ty: PageType::PaeXenL2, count: 1, pinned: false });

        // An L3 that shares swapper_pg_dir's kernel pmd: "PAE L3 3rd slot is shared".
        let l3 = ro_frame(&e);
        native::set(slot_of::<M, Pud>(e.ram, l3, 3), Pud::new(kpmd, PteFlags::PRESENT));
        let r = ext::<M>(e.hv, MmuextOp::PinL3Table(l3));
        assert_eq!(r, Err(XenError::PaeL3SlotShared { table: l3, l2: kpmd }));
        assert_eq!(r.unwrap_err().origin(), Origin::Hypervisor);
        assert_eq!(e.hv.page_info(l3), PageInfo::default(), "rolled back");
        assert_eq!(e.hv.page_info(kpmd).count, 1);
        // Without slot 3: "PAE L3 3rd slot is empty".
        native::clear(slot_of::<M, Pud>(e.ram, l3, 3));
        assert_eq!(ext::<M>(e.hv, MmuextOp::PinL3Table(l3)), Err(XenError::PaeL3SlotEmpty { table: l3 }));

        // The slot-3 L2 is a type of its own: not a plain L2 elsewhere, not pinnable as one.
        let r = ext::<M>(e.hv, MmuextOp::PinL2Table(kpmd));
        assert!(matches!(r, Err(XenError::TypeConflict { want: PageType::L2, has: PageType::PaeXenL2, .. })), "{r:?}");
        let r = update::<M>(e.hv, a.pgd(), 1, Pud::new(kpmd, PteFlags::PRESENT).raw());
        assert!(matches!(r, Err(XenError::TypeConflict { want: PageType::L2, has: PageType::PaeXenL2, .. })), "{r:?}");
        // A pmd pinned as a plain L2 first cannot then become slot 3 of an L3: Linux never pins
        // a pmd, and `PIN_L3` of such a tree fails.
        let plain = ro_frame(&e);
        ext::<M>(e.hv, MmuextOp::PinL2Table(plain)).unwrap();
        native::set(slot_of::<M, Pud>(e.ram, l3, 3), Pud::new(plain, PteFlags::PRESENT));
        let r = ext::<M>(e.hv, MmuextOp::PinL3Table(l3));
        assert!(matches!(r, Err(XenError::TypeConflict { want: PageType::PaeXenL2, has: PageType::L2, .. })), "{r:?}");
        ext::<M>(e.hv, MmuextOp::UnpinTable(plain)).unwrap();

        // Slot 3 of a validated L3 is Xen's: `mod_l3_entry` refuses, slots 0..2 are the guest's.
        let r = update::<M>(e.hv, a.pgd(), 3, Pud::new(own, PteFlags::PRESENT).raw());
        assert_eq!(r, Err(XenError::PaeL3Slot3Update { table: a.pgd() }));
        let e0: Pud = read_entry::<M, _, _>(e.ram, a.pgd(), 0);
        update::<M>(e.hv, a.pgd(), 0, e0.raw()).unwrap();

        native::clear(slot_of::<M, Pud>(e.ram, l3, 3));
        give_back(&e, l3);
        give_back(&e, plain);
        e.xen.violation_log().clear();
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

// ---- 2. Flag masks ----------------------------------------------------------------------

/// `get_page_from_l1e` / `mod_l1_entry`: an L1 entry may not carry `l1_disallow_mask` (GLOBAL,
/// PAT, and for a domain without I/O capabilities PCD and PWT); Linux then `BUG()`s (here: the
/// violation, the entry not written).
fn l1_entries_with_global_or_cache_attributes_are_refused<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let f = e.ram.alloc_frame().unwrap();
        let va = e.k.vmalloc_start() + 0x0020_0000;
        e.k.map_kernel_page(va, f, PteFlags::GLOBAL | PteFlags::RW).unwrap();
        let v = violations(e.xen);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].hook, HookKind::SetPte);
        assert!(matches!(v[0].rule, XenError::DisallowedFlags { level: PageType::L1, bits: 0x100, .. }), "{v:?}");
        assert_eq!((v[0].rule.origin(), v[0].rule.errno()), (Origin::Hypervisor, Errno::Inval));
        assert!(e.k.translate_root(e.k.swapper_pg_dir(), va).is_none(), "not written");
        e.xen.violation_log().clear();
        // PWT/PCD: refused to an unprivileged domain.
        let l1 = l1_of::<M>(e.ram, e.k.swapper_pg_dir(), va);
        let idx = M::pte_index(va);
        for bits in [PteFlags::PWT, PteFlags::PCD] {
            let r = update::<M>(e.hv, l1, idx, Pte::new(f, PteFlags::PRESENT | bits).raw());
            assert!(matches!(r, Err(XenError::DisallowedFlags { .. })), "{r:?}");
        }
        // The available bits 9-11 are the guest's.
        update::<M>(e.hv, l1, idx, Pte::new(f, PteFlags::PRESENT).raw() | 0xe00).unwrap();
        update::<M>(e.hv, l1, idx, 0).unwrap();
        assert_eq!(e.k.unmap_kernel_page(va), Err(MmError::NotMapped(va)));
        e.ram.free_frame(f);
        // The empty page table stays until shutdown.
        shutdown_clean(e);
    });
}

/// `l1_disallow_mask(d)`: a domain with I/O capabilities may set the cache attributes.
fn a_domain_with_io_capabilities_may_set_cache_attributes<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::new(&ram).with_io_capabilities();
    hv.init_frametable().unwrap();
    let xen = X::<M>::boot(&hv, Policy::Panic).unwrap();
    let cpu = HostCpu::<M>::new(&ram);
    let opts = InitOptions { reserve_top: hv.reserve_top(), ..InitOptions::default() };
    let k = KernelMm::pagetable_init(&ram, &xen, &cpu, opts).unwrap();
    k.activate_swapper();
    let f = ram.alloc_frame().unwrap();
    let va = k.vmalloc_start();
    k.map_kernel_page(va, f, PteFlags::RW | PteFlags::PCD | PteFlags::PWT).unwrap();
    assert_eq!(xen.violations(), 0);
    assert_eq!(k.unmap_kernel_page(va), Ok(f));
    ram.free_frame(f);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(xen.pages_held(), 0);
}

/// `get_page_from_l2e` (`L2_DISALLOW_MASK`: GLOBAL, PSE, PCD, PWT) and `get_page_from_l3e`
/// (`L3_DISALLOW_MASK`: a PAE L3 entry holds PRESENT and bits 9-11 only; PWT and PCD, which the
/// processor allows in a PDPT entry, are refused).
fn directory_and_l3_entries_follow_their_masks<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (a, f) = e.space_with_page(UA);
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UA);
        let old: Pmd = read_entry::<M, _, _>(e.ram, dir, idx);
        for bits in [PteFlags::GLOBAL, PteFlags::PWT, PteFlags::PCD] {
            let r = update::<M>(e.hv, dir, idx, old.union(bits).raw());
            let level = e.hv.page_info(dir).ty;
            assert_eq!(r, Err(XenError::DisallowedFlags { table: dir, index: idx, level, bits: bits.bits() }));
        }
        assert_eq!(read_entry::<M, Pmd, _>(e.ram, dir, idx), old);
        if M::PAE {
            let e1: Pud = read_entry::<M, _, _>(e.ram, a.pgd(), 1);
            for bits in [PteFlags::PWT, PteFlags::PCD, PteFlags::USER] {
                let r = update::<M>(e.hv, a.pgd(), 1, e1.union(bits).raw());
                assert!(matches!(r, Err(XenError::DisallowedFlags { level: PageType::L3, .. })), "{r:?}");
            }
            update::<M>(e.hv, a.pgd(), 1, e1.raw() | 0xe00).unwrap();
            update::<M>(e.hv, a.pgd(), 1, e1.raw()).unwrap();
        }
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

// ---- 3. Xen-private L2 slots ------------------------------------------------------------

/// `mod_l2_entry`: "Illegal L2 update attempt in Xen-private area" for the slots from
/// `HYPERVISOR_VIRT_START` up (every two-level L2; the PAE L2 of slot 3). A kernel that
/// reserves the top (`xen_reserve_top` → `reserve_top_address`) never maps there; one that
/// forgot is caught at its first mapping there. `alloc_l2_table` skips those slots.
fn the_top_of_the_address_space_is_xens<M: PagingMode>() {
    // A kernel that did not reserve the top of the address space.
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::boot(&ram).unwrap();
    let xen = X::<M>::boot(&hv, Policy::Record).unwrap();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::pagetable_init(&ram, &xen, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let f = ram.alloc_frame().unwrap();
    let va = hv.virt_start() + 0x0040_0000;
    assert!(va < k.vmalloc_end());
    k.map_kernel_page(va, f, PAGE_KERNEL).unwrap();
    let v: Vec<_> = xen.violation_log().iter().collect();
    let (dir, idx) = walk::pmd_table::<M, _>(&ram, k.swapper_pg_dir(), va).unwrap();
    assert_eq!((v[0].hook, v[0].rule), (HookKind::SetPmd, XenError::XenPrivateSlot { table: dir, index: idx }));
    assert_eq!(v[0].rule.origin(), Origin::Hypervisor);
    assert!(!read_entry::<M, Pmd, _>(&ram, dir, idx).is_present(), "refused");

    // The same kernel with the top reserved stops short of it.
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::boot(&ram).unwrap();
    let xen = X::<M>::boot(&hv, Policy::Record).unwrap();
    let cpu = HostCpu::<M>::new(&ram);
    let opts = InitOptions { reserve_top: hv.reserve_top(), ..InitOptions::default() };
    let k = KernelMm::pagetable_init(&ram, &xen, &cpu, opts).unwrap();
    k.activate_swapper();
    assert!(k.vmalloc_end() <= hv.virt_start());
    let f = ram.alloc_frame().unwrap();
    assert_eq!(k.map_kernel_page(va, f, PAGE_KERNEL), Err(MmError::OutOfRange(va)));
    // Validation does not look at Xen's slots: whatever the guest left there (Xen writes its own
    // mappings into them) does not stop a pin.
    let a = k.create().unwrap();
    let (dir, idx) = walk::pmd_table::<M, _>(&ram, a.pgd(), va).unwrap();
    native::set(slot_of::<M, Pmd>(&ram, dir, idx), Pmd::new(f, PAGE_TABLE | PteFlags::GLOBAL));
    k.activate(&a);
    assert_eq!(hv.base(), Some(a.pgd()));
    native::clear(slot_of::<M, Pmd>(&ram, dir, idx));
    k.activate_swapper();
    // The private slot changed behind Xen's back: the checksum reports it at the unpin.
    k.destroy(a);
    assert!(xen.violation_log().iter().all(|v| matches!(v.rule, XenError::TableModified { .. })));
    xen.violation_log().clear();
    ram.free_frame(f);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(xen.pages_held(), 0);
}

// ---- 4. update_va_mapping through an unvalidated L1 -------------------------------------

/// `do_update_va_mapping`: the PTE is found through the current page tables (`guest_map_l1e`)
/// and changed by `mod_l1_entry`; an L1 that is not a validated page table is refused
/// (`-EINVAL`), never written as a plain store.
fn update_va_mapping_needs_a_validated_l1<M: PagingMode>() {
    machine::<M>(Policy::Record, |e| {
        let swapper = e.k.swapper_pg_dir();
        // The linear map is known (the builder's part) but nothing is validated yet.
        e.hv.set_pt_base(swapper).unwrap();
        let f = e.ram.alloc_frame().unwrap();
        let va = lowmem_va(f);
        let l1 = l1_of::<M>(e.ram, swapper, va);
        let before: Pte = read_entry::<M, _, _>(e.ram, l1, M::pte_index(va));
        let r = e.hv.update_va_mapping(va, Pte::new(f, PAGE_KERNEL_RO), UvmFlags::INVLPG);
        assert_eq!(r, Err(XenError::UnvalidatedL1 { va, l1 }));
        assert_eq!(r.unwrap_err().origin(), Origin::Hypervisor);
        assert_eq!(read_entry::<M, Pte, _>(e.ram, l1, M::pte_index(va)), before, "nothing stored");
        // Once the tree is pinned, the same call goes through.
        e.k.activate_swapper();
        e.hv.update_va_mapping(va, Pte::new(f, PAGE_KERNEL_RO), UvmFlags::INVLPG).unwrap();
        e.hv.update_va_mapping(va, Pte::new(f, PAGE_KERNEL), UvmFlags::INVLPG).unwrap();
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

// ---- 6. Direct stores into a pinned L1 --------------------------------------------------

/// `ptwr_do_page_fault` + `ptwr_emulated_update`: a direct store into a read-only mapping of a
/// validated L1 faults, and Xen emulates it: merged into the whole entry (a 4-byte store into a
/// PAE entry), validated like `mmu_update`, written. A store the entry rules refuse is not
/// emulated (the fault stays); nor is one into a directory, or into a read-only page that is
/// not a validated L1.
fn direct_stores_into_a_validated_l1_are_emulated_and_validated<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let (a, f) = e.space_with_page(UA);
        let l1 = l1_of::<M>(e.ram, a.pgd(), UA);
        let g = e.ram.alloc_frame().unwrap();
        let idx = M::pte_index(UA) + 1;
        let va = lowmem_va(l1) + idx * M::ENTRY_SIZE;
        e.hv.clear_trace();
        // A new read-only mapping of `g`, stored directly (low half in PAE).
        let new = Pte::new(g, PteFlags::PRESENT | PteFlags::USER);
        e.cpu.write_u32(va, new.raw() as u32).unwrap();
        assert_eq!(read_entry::<M, Pte, _>(e.ram, l1, idx), new);
        assert_eq!(e.k.translate(&a, UA + 0x1000).map(|t| t.pa), Some(g.phys().as_u64()));
        let c = calls(e.hv);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].call, Hypercall::Ptwr { va, val: new.raw() & 0xffff_ffff, bytes: 4 });
        assert_eq!(e.xen.stats().ptwr, 1);
        // Made writable by a direct store: validated, the writable type counted.
        let rw = new.union(PteFlags::RW);
        e.cpu.write_u32(va, rw.raw() as u32).unwrap();
        assert_eq!(e.hv.page_info(g), PageInfo { ty: PageType::Writable, count: 2, pinned: false });
        // Mapping a page table writable: refused, the fault stays, nothing changes.
        let bad = Pte::new(l1, PteFlags::PRESENT | PteFlags::RW);
        let fault = e.cpu.write_u32(va, bad.raw() as u32).unwrap_err();
        assert_eq!(fault.error_code & (PF_PROT | PF_WRITE), PF_PROT | PF_WRITE);
        assert_eq!(read_entry::<M, Pte, _>(e.ram, l1, idx), rw);
        if M::PAE {
            // The upper half first, with an entry that does not validate: written with PRESENT
            // cleared ("the guest has simply got the two writes the wrong way round").
            e.cpu.write_u32(va + 4, 0x0000_0100).unwrap();
            let now: Pte = read_entry::<M, _, _>(e.ram, l1, idx);
            assert!(!now.is_present());
            assert_eq!(now.raw() >> 32, 0x100);
            e.cpu.write_u32(va + 4, 0).unwrap();
            e.cpu.write_u32(va, 0).unwrap();
        } else {
            e.cpu.write_u32(va, 0).unwrap();
        }
        assert_eq!(read_entry::<M, Pte, _>(e.ram, l1, idx), Pte::EMPTY);
        assert_eq!(e.hv.page_info(g), PageInfo { ty: PageType::Writable, count: 1, pinned: false });
        // Not a validated L1: the root, and an ordinary page made read-only.
        for t in [a.pgd(), ro_frame(&e)] {
            assert_eq!(e.hv.ptwr_do_page_fault(lowmem_va(t), 0, 4), Err(XenError::NotPtwr { va: lowmem_va(t) }));
            assert!(e.cpu.write_u32(lowmem_va(t), 0).is_err());
        }
        assert!(verify(e.xen).0, "the emulated stores kept every checksum");
        e.k.destroy(a);
        e.ram.free_frame(f);
        e.ram.free_frame(g);
        let t = e.ram.alloc_frame().unwrap();
        e.ram.free_frame(t);
        shutdown_clean_except_ro(e);
    });
}

/// Tears down like [`shutdown_clean`], giving back the page the test made read-only by hand.
fn shutdown_clean_except_ro<M: PagingMode>(e: Env<'_, M>) {
    let swapper = e.k.swapper_pg_dir();
    let mut ro = Vec::new();
    walk::visit::<M, _>(e.ram, swapper, PAGE_OFFSET, u32::MAX, &mut |x| {
        if let walk::Visit::Map { va, t, .. } = x {
            let pfn = Pfn::containing(PhysAddr::new(t.pa));
            if va == lowmem_va(pfn) && !t.flags.contains(PteFlags::RW) && !e.xen.is_read_only(pfn) {
                ro.push(pfn);
            }
        }
    });
    for f in ro {
        give_back(&e, f);
    }
    shutdown_clean(e);
}

// ---- 7. exit_mmap of the loaded root ----------------------------------------------------

/// `xen_exit_mmap` → `xen_drop_mm_ref`: an address space still loaded is switched away from
/// (to `swapper_pg_dir`) before it is unpinned; the normal path, not a violation.
fn exit_mmap_of_the_loaded_root_switches_to_swapper_first<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let (a, f) = e.space_with_page(UA);
        assert_eq!(e.hv.base(), Some(a.pgd()));
        e.hv.clear_trace();
        e.xen.exit_mmap(a.pgd());
        assert_eq!(e.xen.violations(), 0);
        assert_eq!(e.hv.base(), Some(e.k.swapper_pg_dir()));
        let c = calls(e.hv);
        assert_eq!(c[0].call, Hypercall::MmuextOp(MmuextOp::NewBaseptr(e.k.swapper_pg_dir())));
        assert_eq!(c[1].call, Hypercall::MmuextOp(MmuextOp::UnpinTable(a.pgd())));
        assert!(!e.hv.is_pinned(a.pgd()) && !e.xen.is_read_only(a.pgd()));
        e.k.activate_swapper();
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

// ---- 8. Levels and linear page tables ---------------------------------------------------

/// `get_l2_linear_pagetable`: an L2 entry without `_PAGE_RW` may link an L2 (the table itself,
/// no reference taken, or another validated L2, one type reference): a linear page table.
/// With `_PAGE_RW` it is refused.
fn read_only_linear_page_tables_are_accepted<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        e.k.activate(&a);
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        let info = e.hv.page_info(dir);
        // Self-map.
        update::<M>(e.hv, dir, idx, Pmd::new(dir, PteFlags::PRESENT).raw()).unwrap();
        assert_eq!(e.hv.page_info(dir), info, "no reference for the table itself");
        // Another validated L2.
        let other = if M::PAE { pmd_of(e.ram, a.pgd(), 3) } else { e.k.swapper_pg_dir() };
        let before = e.hv.page_info(other);
        update::<M>(e.hv, dir, idx, Pmd::new(other, PteFlags::PRESENT | PteFlags::USER).raw()).unwrap();
        assert_eq!(e.hv.page_info(other).count, before.count + 1);
        // Writable: refused.
        let r = update::<M>(e.hv, dir, idx, Pmd::new(other, PAGE_TABLE).raw());
        assert!(matches!(r, Err(XenError::TypeConflict { want: PageType::L1, .. })), "{r:?}");
        update::<M>(e.hv, dir, idx, 0).unwrap();
        assert_eq!(e.hv.page_info(other), before);
        e.k.activate_swapper();
        e.k.destroy(a);
        shutdown_clean(e);
    });
}

both_modes!(
    pae_slot_3_holds_an_l2_of_its_own_that_no_other_l3_may_share,
    l1_entries_with_global_or_cache_attributes_are_refused,
    a_domain_with_io_capabilities_may_set_cache_attributes,
    directory_and_l3_entries_follow_their_masks,
    the_top_of_the_address_space_is_xens,
    update_va_mapping_needs_a_validated_l1,
    direct_stores_into_a_validated_l1_are_emulated_and_validated,
    exit_mmap_of_the_loaded_root_switches_to_swapper_first,
    read_only_linear_page_tables_are_accepted,
);

/// The example under `Policy::Panic`: `map_kernel_page(va, pfn, GLOBAL | RW)` under a
/// pinned `swapper_pg_dir` is refused by Xen (`get_page_from_l1e`: "Bad L1 flags"), and Linux
/// `BUG()`s.
fn a_global_kernel_mapping_stops_the_kernel<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let f = e.ram.alloc_frame().unwrap();
        let _ = e.k.map_kernel_page(e.k.vmalloc_start(), f, PteFlags::GLOBAL | PteFlags::RW);
    });
}

#[test]
#[should_panic(expected = "xen: set_pte: EINVAL: entry sets flags Xen forbids at its level")]
fn two_level_a_global_kernel_mapping_stops_the_kernel() {
    a_global_kernel_mapping_stops_the_kernel::<TwoLevel>();
}

#[test]
#[should_panic(expected = "[hypervisor rule disallowed-flags]")]
fn pae_a_global_kernel_mapping_stops_the_kernel() {
    a_global_kernel_mapping_stops_the_kernel::<Pae>();
}
