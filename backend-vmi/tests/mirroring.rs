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
    let nx = if M::PAE { PteFlags::NX.bits() } else { 0 };
    let vals = [0x0010_0000 | 0x67, 0x0020_0000 | 0x25 | nx, 0x0030_0000 | 0x63, 0x0040_0000 | 0x07];
    // SAFETY: entries of emulated frames.
    unsafe {
        v.set_pte(at::<M>(&ram, pt, 1), vals[0]);
        v.set_pte_at(Pfn(1), 0x2000, at::<M>(&ram, pt, 2), vals[1]);
        v.set_pte_atomic(at::<M>(&ram, pt, 3), vals[2]);
        v.set_pte_present(Pfn(1), 0x4000, at::<M>(&ram, pt, 4), vals[3]);
    }
    for (i, &val) in vals.iter().enumerate() {
        let i = i as u32 + 1;
        assert_eq!(entry::<M>(&ram, pt, i), val, "guest entry {i}");
        assert_eq!(entry::<M>(&ram, sh, i), val, "shadow entry {i}");
    }
    assert_clean(&v, "set_pte*");
    // SAFETY: as above.
    unsafe { v.pte_clear(Pfn(1), 0x2000, at::<M>(&ram, pt, 2)) };
    assert_eq!((entry::<M>(&ram, pt, 2), entry::<M>(&ram, sh, 2)), (0, 0));
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
    let pse = M::LARGE_PAGE_SIZE as u64 | (PAGE_KERNEL | PteFlags::PSE).bits();
    // SAFETY: entries of emulated frames.
    unsafe {
        v.set_pmd(at::<M>(&ram, pd, 5), table_entry(pt));
        v.set_pmd(at::<M>(&ram, pd, 6), pse);
    }
    assert_eq!(entry::<M>(&ram, pd, 5), table_entry(pt), "the guest links the guest table");
    assert_eq!(entry::<M>(&ram, spd, 5), table_entry(spt), "the shadow links its shadow, flags kept");
    assert_eq!(entry::<M>(&ram, spd, 6), pse, "a large page is copied as is");
    assert_eq!(v.links_to(pt), Some(1));
    assert_clean(&v, "set_pmd");
    // Relinking the same entry to the same table keeps one link; clearing drops it.
    // SAFETY: as above.
    unsafe { v.set_pmd(at::<M>(&ram, pd, 5), table_entry(pt) & !PteFlags::USER.bits()) };
    assert_eq!(v.links_to(pt), Some(1));
    // SAFETY: as above.
    unsafe { v.pmd_clear(at::<M>(&ram, pd, 5)) };
    assert_eq!((entry::<M>(&ram, pd, 5), entry::<M>(&ram, spd, 5)), (0, 0));
    assert_eq!(v.links_to(pt), Some(0));
    v.release_pt(pt);
    assert_clean(&v, "pmd_clear then release_pt");
}

fn write_into_an_untyped_table_is_a_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    // SAFETY: entries of emulated frames.
    unsafe {
        v.set_pte(at::<M>(&ram, p, 3), 0x5000 | 0x63);
        v.set_pmd(at::<M>(&ram, p, 4), 0x40_0000 | 0xe3);
        v.pte_clear(Pfn(0), 0, at::<M>(&ram, p, 3));
    }
    take_violations(
        &v,
        &[
            Violation::WriteUntyped { table: p, index: 3, hook: "set_pte" },
            Violation::WriteUntyped { table: p, index: 4, hook: "set_pmd" },
            Violation::WriteUntyped { table: p, index: 3, hook: "pte_clear" },
        ],
    );
    assert_eq!(entry::<M>(&ram, p, 4), 0x40_0000 | 0xe3, "written natively all the same");
}

fn entry_hook_of_the_wrong_level_is_a_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    // SAFETY: entries of emulated frames.
    unsafe {
        v.set_pte(at::<M>(&ram, pd, 1), 0x40_0000 | 0xe3);
        v.set_pmd(at::<M>(&ram, pt, 2), 0x5000 | 0x63);
    }
    take_violations(
        &v,
        &[
            Violation::WrongLevel { table: pd, index: 1, hook: "set_pte", current: l2::<M>() },
            Violation::WrongLevel { table: pt, index: 2, hook: "set_pmd", current: l1::<M>() },
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
    // SAFETY: entries of emulated frames.
    unsafe { v.set_pmd(at::<M>(&ram, pd, 9), table_entry(pt)) };
    take_violations(
        &v,
        &[Violation::UnannouncedChild { table: pd, index: 9, child: pt, child_type: PageType::NORMAL }],
    );
    assert_eq!(entry::<M>(&ram, pd, 9), table_entry(pt), "the guest entry is written");
    assert_eq!(entry::<M>(&ram, v.shadow_of(pd).unwrap(), 9), 0, "the shadow cannot follow");
    assert_eq!(
        divergences(&v),
        [Divergence::UnshadowedLink {
            table: pd,
            index: 9,
            guest: table_entry(pt),
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
            guest: table_entry(pt),
            shadow_value: 0,
            expected: table_entry(spt)
        }
    );
    // A directory linked where a page table belongs.
    // SAFETY: as above.
    unsafe { v.set_pmd(at::<M>(&ram, pd, 10), table_entry(other_pd)) };
    take_violations(
        &v,
        &[Violation::UnannouncedChild { table: pd, index: 10, child: other_pd, child_type: l2::<M>() }],
    );
}

fn release_of_a_table_still_linked_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    // SAFETY: entries of emulated frames.
    unsafe { v.set_pmd(at::<M>(&ram, pd, 0), table_entry(pt)) };
    v.release_pt(pt);
    take_violations(&v, &[Violation::ReleaseLinked { pfn: pt, links: 1 }]);
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
    // SAFETY: an entry of an emulated frame.
    unsafe { v.set_pud(slot(ram, pdpt, 0, true), pd.phys() | 1) };
    (pdpt, pd)
}

fn write_cr3_returns_the_shadow_root_and_read_cr3_maps_it_back<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (root, pd) = make_root::<M>(&ram, &v);
    let hw = v.write_cr3(root.phys() as u32);
    let want = if M::PAE { v.shadow_pdpt().unwrap() } else { v.shadow_of(pd).unwrap() };
    assert_eq!(hw as u64, want.phys());
    assert_eq!(v.read_cr3(hw), root.phys() as u32);
    assert_eq!(v.read_cr3(0x1234_5000), 0x1234_5000, "a foreign value passes through");
    assert_eq!(v.loaded_root(), Some(root));
    if M::PAE {
        let spdpt = v.shadow_pdpt().unwrap();
        assert_eq!(entry::<M>(&ram, spdpt, 0), v.shadow_of(pd).unwrap().phys() | 1);
        assert_eq!(v.links_to(pd), Some(1), "the loaded shadow PDPT links the pmd's shadow");
        // set_pud into the loaded PDPT patches the shadow PDPT.
        let pmd2 = zeroed(&ram);
        v.alloc_pd(pmd2);
        // SAFETY: an entry of an emulated frame.
        unsafe { v.set_pud(slot(&ram, root, 2, true), pmd2.phys() | 1) };
        assert_eq!(entry::<M>(&ram, spdpt, 2), v.shadow_of(pmd2).unwrap().phys() | 1);
        // SAFETY: as above.
        unsafe { v.set_pud(slot(&ram, root, 2, true), 0) };
        assert_eq!(entry::<M>(&ram, spdpt, 2), 0);
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
    let cr3 = nothing.phys() as u32;
    assert_eq!(v.write_cr3(cr3), cr3, "the CPU gets the guest root, unshadowed");
    take_violations(&v, &[Violation::UnknownRoot { cr3 }]);
    assert_eq!(v.loaded_root(), None);
    let cr3 = pt.phys() as u32;
    v.write_cr3(cr3);
    let want = if M::PAE { Violation::PdptTyped { pfn: pt, flags: l1::<M>() } } else { Violation::UnknownRoot { cr3 } };
    take_violations(&v, &[want]);
    if M::PAE {
        // A PDPT linking a page that is not an announced pmd.
        let pdpt = zeroed(&ram);
        ram.write_u32(pdpt.phys() + 8, (nothing.phys() | 1) as u32);
        let cr3 = pdpt.phys() as u32;
        v.write_cr3(cr3);
        take_violations(
            &v,
            &[
                Violation::UnannouncedChild { table: pdpt, index: 1, child: nothing, child_type: PageType::NORMAL },
                Violation::UnknownRoot { cr3 },
            ],
        );
    }
    assert_eq!(v.stats().checks(Check::RootKnown), 2 + M::PAE as u32);
}

fn release_of_the_loaded_root_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (root, pd) = make_root::<M>(&ram, &v);
    v.write_cr3(root.phys() as u32);
    v.release_pd(pd);
    let want =
        if M::PAE { Violation::ReleaseLinked { pfn: pd, links: 1 } } else { Violation::ReleaseLoaded { pfn: pd } };
    take_violations(&v, &[want]);
    assert_eq!(v.page_type(pd), l2::<M>());
    // Loading another root first makes the release legal.
    let (root2, pd2) = make_root::<M>(&ram, &v);
    v.write_cr3(root2.phys() as u32);
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
    let pte = 0x0012_3000 | 0x07;
    let pde = pt.phys() | 0x07;
    // SAFETY: entries of emulated frames.
    unsafe {
        v.set_pmd(at::<M>(&ram, pd, 2), pde);
        v.set_pte(at::<M>(&ram, pt, 4), pte);
    }
    // What a hardware walk does: A in the shadow directory entry, A|D in the shadow PTE.
    let (spd, spt) = (v.shadow_of(pd).unwrap(), v.shadow_of(pt).unwrap());
    ram.write_u32(entry_pa::<M>(spd, 2), (entry::<M>(&ram, spd, 2) | 0x20) as u32);
    ram.write_u32(entry_pa::<M>(spt, 4), (pte | 0x60) as u32);
    let entries = |v: &V<'_, M>| divergences(v).into_iter().filter(|d| matches!(d, Divergence::Entry { .. })).count();
    assert_eq!(entries(&v), 2);
    assert_eq!(v.sync_accessed_dirty(), 2);
    assert_eq!(entry::<M>(&ram, pt, 4), pte | 0x60);
    assert_eq!(entry::<M>(&ram, pd, 2), pde | 0x20);
    assert_clean(&v, "after sync");
    // Any other difference is left alone for verify() to report.
    ram.write_u32(entry_pa::<M>(spt, 4), ((pte | 0x60) & !0x2) as u32);
    assert_eq!(v.sync_accessed_dirty(), 0);
    assert_eq!(entries(&v), 1);
}

both_modes!(
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
