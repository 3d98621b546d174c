//! Entry writes reach the guest natively and the shadow by mirroring; CR3 loads hand the CPU
//! the shadow root.
mod common;
use common::*;

fn pte_writes_reach_guest_and_shadow_as_is<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let pt = zeroed(&ram);
    v.alloc_pt(pt);
    let sh = v.shadow_of(pt).unwrap();
    let nx = if M::PAE { PteFlags::NX } else { PteFlags::empty() };
    let bits = PteFlags::from_bits_truncate;
    let vals = [
        Pte::new(Pfn::new(0x100), bits(0x67)),
        Pte::new(Pfn::new(0x200), bits(0x25) | nx),
        Pte::new(Pfn::new(0x300), bits(0x63)),
        Pte::new(Pfn::new(0x400), bits(0x07)),
    ];
    v.set_pte(at::<M, _>(&ram, pt, 1), vals[0]);
    v.set_pte_at(Pfn::new(1), 0x2000, at::<M, _>(&ram, pt, 2), vals[1]);
    v.set_pte_atomic(at::<M, _>(&ram, pt, 3), vals[2]);
    v.set_pte_present(Pfn::new(1), 0x4000, at::<M, _>(&ram, pt, 4), vals[3]);
    for (i, &val) in (1..).zip(vals.iter()) {
        assert_eq!(pte::<M>(&ram, pt, i), val, "guest entry {i}");
        assert_eq!(pte::<M>(&ram, sh, i), val, "shadow entry {i}");
    }
    assert_clean(&v, "set_pte*");
    v.pte_clear(Pfn::new(1), 0x2000, at::<M, _>(&ram, pt, 2));
    assert_eq!((pte::<M>(&ram, pt, 2), pte::<M>(&ram, sh, 2)), (Pte::EMPTY, Pte::EMPTY));
    let s = v.stats();
    for h in [HookKind::SetPte, HookKind::SetPteAt, HookKind::SetPteAtomic, HookKind::SetPtePresent, HookKind::PteClear]
    {
        assert_eq!(s.calls(h), 1, "{h}");
    }
    assert_eq!(s.checks(Check::WriteTyped), 5);
    assert_clean(&v, "pte_clear");
}

fn directory_entries_link_the_child_shadow_and_large_pages_are_copied<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    let (spd, spt) = (v.shadow_of(pd).unwrap(), v.shadow_of(pt).unwrap());
    let pse = large(M::LARGE_PAGE_SIZE as u64, PAGE_KERNEL);
    v.set_pmd(at::<M, _>(&ram, pd, 5), table_entry(pt));
    v.set_pmd(at::<M, _>(&ram, pd, 6), pse);
    assert_eq!(pmd::<M>(&ram, pd, 5), table_entry(pt), "the guest links the guest table");
    assert_eq!(pmd::<M>(&ram, spd, 5), table_entry(spt), "the shadow links its shadow, flags kept");
    assert_eq!(pmd::<M>(&ram, spd, 6), pse, "a large page is copied as is");
    assert_eq!(v.links_to(pt), Some(1));
    assert_clean(&v, "set_pmd");
    // Relinking the same entry to the same table keeps one link; clearing drops it.
    v.set_pmd(at::<M, _>(&ram, pd, 5), table_entry(pt).with_flags(PAGE_TABLE - PteFlags::USER));
    assert_eq!(v.links_to(pt), Some(1));
    v.pmd_clear(at::<M, _>(&ram, pd, 5));
    assert_eq!((pmd::<M>(&ram, pd, 5), pmd::<M>(&ram, spd, 5)), (Pmd::EMPTY, Pmd::EMPTY));
    assert_eq!(v.links_to(pt), Some(0));
    v.release_pt(pt);
    assert_clean(&v, "pmd_clear then release_pt");
}

fn write_into_an_untyped_table_is_a_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    v.set_pte(at::<M, _>(&ram, p, 3), Pte::new(Pfn::new(5), PAGE_KERNEL));
    v.set_pmd(at::<M, _>(&ram, p, 4), large(0x40_0000, PAGE_KERNEL));
    v.pte_clear(Pfn::new(0), 0, at::<M, _>(&ram, p, 3));
    take_violations(
        &v,
        &[
            (HookKind::SetPte, VmiRule::WriteUntyped { table: p, index: 3 }),
            (HookKind::SetPmd, VmiRule::WriteUntyped { table: p, index: 4 }),
            (HookKind::PteClear, VmiRule::WriteUntyped { table: p, index: 3 }),
        ],
    );
    assert_eq!(pmd::<M>(&ram, p, 4), large(0x40_0000, PAGE_KERNEL), "written natively all the same");
}

fn entry_hook_of_the_wrong_level_is_a_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    // A large-page directory value through set_pte, a PTE value through set_pmd: the raw
    // values of the other level, as a confused kernel would pass them.
    v.set_pte(at::<M, _>(&ram, pd, 1), Pte::from_raw(large(0x40_0000, PAGE_KERNEL).raw()));
    v.set_pmd(at::<M, _>(&ram, pt, 2), Pmd::from_raw(Pte::new(Pfn::new(5), PAGE_KERNEL).raw()));
    take_violations(
        &v,
        &[
            (HookKind::SetPte, VmiRule::WrongLevel { table: pd, index: 1, current: l2::<M>() }),
            (HookKind::SetPmd, VmiRule::WrongLevel { table: pt, index: 2, current: l1::<M>() }),
        ],
    );
    assert_clean(&v, "still mirrored by the table's real level");
}

fn directory_write_linking_an_unannounced_table_is_caught_at_that_write<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt, other_pd) = (zeroed(&ram), zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pd(other_pd);
    v.set_pmd(at::<M, _>(&ram, pd, 9), table_entry(pt));
    take_violations(
        &v,
        &[(
            HookKind::SetPmd,
            VmiRule::UnannouncedChild { table: pd, index: 9, child: pt, child_type: PageType::NORMAL },
        )],
    );
    assert_eq!(pmd::<M>(&ram, pd, 9), table_entry(pt), "the guest entry is written");
    assert_eq!(pmd::<M>(&ram, v.shadow_of(pd).unwrap(), 9), Pmd::EMPTY, "the shadow cannot follow");
    assert_eq!(
        divergences(&v),
        [Divergence::UnshadowedLink {
            table: pd,
            index: 9,
            guest: table_entry(pt).raw(),
            child: pt,
            child_type: PageType::NORMAL
        }]
    );
    // Announcing it afterwards is too late for that entry: verify still names it.
    v.alloc_pt(pt);
    let sh = v.shadow_of(pd).unwrap();
    let spt = v.shadow_of(pt).unwrap();
    assert_eq!(
        divergences(&v)[0],
        Divergence::Entry {
            table: pd,
            shadow: sh,
            index: 9,
            guest: table_entry(pt).raw(),
            shadow_value: 0,
            expected: table_entry(spt).raw()
        }
    );
    // A directory linked where a page table belongs.
    v.set_pmd(at::<M, _>(&ram, pd, 10), table_entry(other_pd));
    take_violations(
        &v,
        &[(
            HookKind::SetPmd,
            VmiRule::UnannouncedChild { table: pd, index: 10, child: other_pd, child_type: l2::<M>() },
        )],
    );
}

fn release_of_a_table_still_linked_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    v.set_pmd(at::<M, _>(&ram, pd, 0), table_entry(pt));
    v.release_pt(pt);
    take_violations(&v, &[(HookKind::ReleasePt, VmiRule::ReleaseLinked { pfn: pt, links: 1 })]);
    assert_eq!(v.page_type(pt), l1::<M>(), "refused: no shadow entry may point at a freed shadow");
    assert_clean(&v, "refused release");
    // Releasing the directory drops its links.
    v.release_pd(pd);
    assert_eq!(v.links_to(pt), Some(0));
    v.release_pt(pt);
    assert_clean(&v, "released bottom-up");
    assert_eq!(v.pages_held(), 0);
}

/// Builds a root the CPU can load: two-level an L2, PAE a PDPT linking one pmd at slot 0.
fn make_root<M: PagingMode>(ram: &EmulatedRam, v: &V<'_, M>) -> (Pfn, Pfn) {
    let pd = zeroed(ram);
    v.alloc_pd(pd);
    if !M::PAE {
        return (pd, pd);
    }
    let pdpt = zeroed(ram);
    v.set_pud(at::<M, _>(ram, pdpt, 0), pdpt_entry(pd));
    (pdpt, pd)
}

fn write_cr3_returns_the_shadow_root_and_read_cr3_maps_it_back<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (root, pd) = make_root::<M>(&ram, &v);
    let cr3 = root.phys().as_u64() as u32;
    let hw = v.write_cr3(cr3);
    let want = if M::PAE { v.shadow_pdpt().unwrap() } else { v.shadow_of(pd).unwrap() };
    assert_eq!(hw as u64, want.phys().as_u64());
    assert_eq!(v.read_cr3(hw), cr3);
    assert_eq!(v.read_cr3(0x1234_5000), 0x1234_5000, "a foreign value passes through");
    assert_eq!(v.loaded_root(), Some(root));
    if M::PAE {
        let spdpt = v.shadow_pdpt().unwrap();
        assert_eq!(pud::<M>(&ram, spdpt, 0), pdpt_entry(v.shadow_of(pd).unwrap()));
        assert_eq!(v.links_to(pd), Some(1), "the loaded shadow PDPT links the pmd's shadow");
        // set_pud into the loaded PDPT patches the shadow PDPT.
        let pmd2 = zeroed(&ram);
        v.alloc_pd(pmd2);
        v.set_pud(at::<M, _>(&ram, root, 2), pdpt_entry(pmd2));
        assert_eq!(pud::<M>(&ram, spdpt, 2), pdpt_entry(v.shadow_of(pmd2).unwrap()));
        v.set_pud(at::<M, _>(&ram, root, 2), Pud::EMPTY);
        assert_eq!(pud::<M>(&ram, spdpt, 2), Pud::EMPTY);
        assert!(v.stats().pdpt_updates >= 6);
    }
    assert_clean(&v, "write_cr3");
    // exit_mmap of the loaded root (KernelMm::shutdown) forgets it.
    v.exit_mmap(root);
    assert_eq!(v.loaded_root(), None);
    v.release_pd(pd);
    assert_clean(&v, "release after exit_mmap");
}

fn write_cr3_of_an_unknown_root_is_a_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (nothing, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pt(pt);
    let cr3 = nothing.phys().as_u64() as u32;
    assert_eq!(v.write_cr3(cr3), cr3, "the CPU gets the guest root, unshadowed");
    take_violations(&v, &[(HookKind::WriteCr3, VmiRule::UnknownRoot { cr3 })]);
    assert_eq!(v.loaded_root(), None);
    let cr3 = pt.phys().as_u64() as u32;
    v.write_cr3(cr3);
    let want = if M::PAE { VmiRule::PdptTyped { pfn: pt, flags: l1::<M>() } } else { VmiRule::UnknownRoot { cr3 } };
    take_violations(&v, &[(HookKind::WriteCr3, want)]);
    if M::PAE {
        // A PDPT linking a page that is not an announced pmd (nor a page of zeroes).
        ram.write_u32(entry_pa::<M>(nothing, 7), 2);
        let pdpt = zeroed(&ram);
        ram.write_u32(entry_pa::<M>(pdpt, 1), pdpt_entry(nothing).raw() as u32);
        let cr3 = pdpt.phys().as_u64() as u32;
        v.write_cr3(cr3);
        take_violations(
            &v,
            &[
                (
                    HookKind::WriteCr3,
                    VmiRule::UnannouncedChild { table: pdpt, index: 1, child: nothing, child_type: PageType::NORMAL },
                ),
                (HookKind::WriteCr3, VmiRule::UnknownRoot { cr3 }),
            ],
        );
    }
    assert_eq!(v.stats().checks(Check::RootKnown), 2 + M::PAE as u32);
}

fn release_of_the_loaded_root_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (root, pd) = make_root::<M>(&ram, &v);
    v.write_cr3(root.phys().as_u64() as u32);
    v.release_pd(pd);
    let want = if M::PAE { VmiRule::ReleaseLinked { pfn: pd, links: 1 } } else { VmiRule::ReleaseLoaded { pfn: pd } };
    take_violations(&v, &[(HookKind::ReleasePd, want)]);
    assert_eq!(v.page_type(pd), l2::<M>());
    // Loading another root first makes the release legal.
    let (root2, pd2) = make_root::<M>(&ram, &v);
    v.write_cr3(root2.phys().as_u64() as u32);
    v.release_pd(pd);
    assert_clean(&v, "release after switching away");
    let _ = pd2;
}

fn accessed_and_dirty_bits_set_by_the_cpu_in_shadows_are_copied_back<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    let urw = PteFlags::PRESENT | PteFlags::RW | PteFlags::USER;
    let (a, ad) = (PteFlags::ACCESSED, PteFlags::ACCESSED | PteFlags::DIRTY);
    let pte_val = Pte::new(Pfn::new(0x123), urw);
    let pde = Pmd::new(pt, urw);
    v.set_pmd(at::<M, _>(&ram, pd, 2), pde);
    v.set_pte(at::<M, _>(&ram, pt, 4), pte_val);
    // What a hardware walk does: A in the shadow directory entry, A|D in the shadow PTE.
    let (spd, spt) = (v.shadow_of(pd).unwrap(), v.shadow_of(pt).unwrap());
    ram.write_u32(entry_pa::<M>(spd, 2), pmd::<M>(&ram, spd, 2).union(a).raw() as u32);
    ram.write_u32(entry_pa::<M>(spt, 4), pte_val.union(ad).raw() as u32);
    let entries = |v: &V<'_, M>| divergences(v).into_iter().filter(|d| matches!(d, Divergence::Entry { .. })).count();
    assert_eq!(entries(&v), 2);
    assert_eq!(v.sync_accessed_dirty(), 2);
    assert_eq!(pte::<M>(&ram, pt, 4), pte_val.union(ad));
    assert_eq!(pmd::<M>(&ram, pd, 2), pde.union(a));
    assert_clean(&v, "after sync");
    // Any other difference is left alone for verify() to report.
    let read_only = pte_val.union(ad).with_flags(pte_val.union(ad).flags() - PteFlags::RW);
    ram.write_u32(entry_pa::<M>(spt, 4), read_only.raw() as u32);
    assert_eq!(v.sync_accessed_dirty(), 0);
    assert_eq!(entries(&v), 1);
}

/// A present→present change is one store of the entry's width in the guest table and in the
/// shadow the CPU walks: no walker of either can see a half-written entry (in PAE the old and
/// new values differ in both halves, so two 32-bit stores would show a third value).
fn present_to_present_changes_are_one_store_in_guest_and_shadow<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt1, pt2) = (zeroed(&ram), zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt1);
    v.alloc_pt(pt2);
    let nx = if M::PAE { PteFlags::NX } else { PteFlags::empty() };
    let old = Pte::new(Pfn::new(0x123), PAGE_KERNEL);
    let new = Pte::new(Pfn::new(0x456), PAGE_KERNEL_RO | nx);
    v.set_pte(at::<M, _>(&ram, pt1, 7), old);
    v.set_pmd(at::<M, _>(&ram, pd, 3), table_entry(pt1));
    let (spd, spt1, spt2) = (v.shadow_of(pd).unwrap(), v.shadow_of(pt1).unwrap(), v.shadow_of(pt2).unwrap());
    let addr = |t: Pfn, i: u32| ram.frame_ptr(t).as_ptr() as usize + (i * M::ENTRY_SIZE) as usize;
    let watched = [addr(pt1, 7), addr(spt1, 7), addr(pd, 3), addr(spd, 3)];

    let log = mm_testkit::StoreLog::start();
    v.set_pte(at::<M, _>(&ram, pt1, 7), new);
    v.set_pmd(at::<M, _>(&ram, pd, 3), table_entry(pt2));
    let stores: Vec<_> = log.stores().into_iter().filter(|s| watched.iter().any(|&a| s.addr / 8 == a / 8)).collect();
    assert_eq!(stores.len(), 4, "one store per entry: {stores:?}");
    assert!(stores.iter().all(|s| s.wide == M::PAE), "{stores:?}");
    assert_eq!(log.values_at(watched[0], old.raw()), [old.raw(), new.raw()], "guest PTE");
    assert_eq!(log.values_at(watched[1], old.raw()), [old.raw(), new.raw()], "shadow PTE");
    let (g1, g2) = (table_entry(pt1).raw(), table_entry(pt2).raw());
    assert_eq!(log.values_at(watched[2], g1), [g1, g2], "guest directory entry");
    let (s1, s2) = (table_entry(spt1).raw(), table_entry(spt2).raw());
    assert_eq!(log.values_at(watched[3], s1), [s1, s2], "shadow directory entry");
    drop(log);
    assert_eq!((v.links_to(pt1), v.links_to(pt2)), (Some(0), Some(1)));
    assert_clean(&v, "relinked");
}

both_modes!(
    present_to_present_changes_are_one_store_in_guest_and_shadow,
    pte_writes_reach_guest_and_shadow_as_is,
    directory_entries_link_the_child_shadow_and_large_pages_are_copied,
    write_into_an_untyped_table_is_a_violation,
    entry_hook_of_the_wrong_level_is_a_violation,
    directory_write_linking_an_unannounced_table_is_caught_at_that_write,
    release_of_a_table_still_linked_is_refused,
    write_cr3_returns_the_shadow_root_and_read_cr3_maps_it_back,
    write_cr3_of_an_unknown_root_is_a_violation,
    release_of_the_loaded_root_is_refused,
    accessed_and_dirty_bits_set_by_the_cpu_in_shadows_are_copied_back,
);
