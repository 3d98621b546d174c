//! Page types per hook, the flag values, and shadows created and freed with them.
mod common;
use common::*;

fn page_type_flags_have_vmi_values<M: PagingMode>() {
    assert_eq!(PageType::PT.bits(), 0x01);
    assert_eq!(PageType::PD.bits(), 0x02);
    assert_eq!(PageType::PDP.bits(), 0x04);
    assert_eq!(PageType::PML4.bits(), 0x08);
    assert_eq!(PageType::PAE.bits(), 0x10);
    assert_eq!(PageType::CLONE.bits(), 0x20);
    assert_eq!(PageType::ZEROED.bits(), 0x40);
    assert_eq!(PageType::NORMAL.bits(), 0x00);
    assert_eq!(PageType::L1.bits(), 0x41);
    assert_eq!(PageType::L2.bits(), 0x42);
    let pae = if M::PAE { 0x10 } else { 0 };
    assert_eq!(PageType::l1::<M>().bits(), 0x41 | pae);
    assert_eq!(PageType::l2::<M>().bits(), 0x42 | pae);
    assert_eq!(PageType::l2_clone::<M>().bits(), 0x62 | pae);
    assert!(PageType::l1::<M>().is_l1() && !PageType::l1::<M>().is_l2());
    assert!(PageType::l2_clone::<M>().is_l2());
    assert!(PageType::l2_clone::<M>().same_kind(PageType::l2::<M>()));
    assert!(!PageType::l1::<M>().same_kind(PageType::l2::<M>()));
    assert_eq!(PageType::NORMAL.to_string(), "NORMAL");
    let want = if M::PAE { "PD|PAE|CLONE|ZEROED" } else { "PD|CLONE|ZEROED" };
    assert_eq!(PageType::l2_clone::<M>().to_string(), want);
}

fn alloc_pt_types_the_page_l1_with_a_zero_shadow<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let pt = zeroed(&ram);
    assert_eq!(v.page_type(pt), PageType::NORMAL);
    v.alloc_pt(pt);
    assert_eq!(v.page_type(pt), l1::<M>());
    let sh = v.shadow_of(pt).expect("shadowed");
    assert_ne!(sh, pt);
    assert!((0..M::PTRS_PER_PTE).all(|i| raw::<M>(&ram, sh, i) == 0));
    let s = v.stats();
    assert_eq!((s.typed_l1, s.typed_l2, s.shadows_live, s.shadows_created), (1, 0, 1, 1));
    assert_eq!(s.calls(HookKind::AllocPt), 1);
    assert_eq!(s.checks(Check::AllocUntyped), 1);
    assert_eq!(s.checks(Check::Zeroed), 1);
    assert_eq!(v.pages_held(), 2, "the page and its shadow");
    assert_clean(&v, "alloc_pt");
}

fn alloc_pd_types_the_page_l2_with_a_zero_shadow<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let pd = zeroed(&ram);
    v.alloc_pd(pd);
    assert_eq!(v.page_type(pd), l2::<M>());
    let sh = v.shadow_of(pd).expect("shadowed");
    assert!((0..M::PTRS_PER_PTE).all(|i| raw::<M>(&ram, sh, i) == 0));
    let s = v.stats();
    assert_eq!((s.typed_l1, s.typed_l2, s.typed_clone, s.shadows_live), (0, 1, 0, 1));
    assert_eq!(s.calls(HookKind::AllocPd), 1);
    assert_clean(&v, "alloc_pd");
}

fn alloc_pd_clone_types_l2_clone_and_copies_the_source_shadow_range<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (start, count) = (M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
    let src = zeroed(&ram);
    let pt = zeroed(&ram);
    v.alloc_pd(src);
    v.alloc_pt(pt);
    v.set_pmd(at::<M, _>(&ram, src, start), table_entry(pt));
    v.set_pmd(at::<M, _>(&ram, src, start + count - 1 + (count == 1) as u32), large(0x40_0000, PAGE_KERNEL)); // PSE
    v.set_pmd(at::<M, _>(&ram, src, 0), large(0x80_0000, PAGE_KERNEL | PteFlags::USER)); // user part: not cloned
    let dst = zeroed(&ram);
    for i in start..start + count {
        // What pgd_ctor copies from swapper_pg_dir, under pgd_lock: a frame not yet a page
        // table, written natively.
        paravirt_core::native::set(at::<M, Pmd>(&ram, dst, i), pmd::<M>(&ram, src, i));
    }
    v.alloc_pd_clone(dst, src, start, count);
    assert_eq!(v.page_type(dst), PageType::l2_clone::<M>());
    let (ssrc, sdst) = (v.shadow_of(src).unwrap(), v.shadow_of(dst).unwrap());
    for i in 0..M::PTRS_PER_PTE {
        let want = if (start..start + count).contains(&i) { raw::<M>(&ram, ssrc, i) } else { 0 };
        assert_eq!(raw::<M>(&ram, sdst, i), want, "shadow entry {i}");
    }
    let sh_pt = v.shadow_of(pt).unwrap();
    assert_eq!(pmd::<M>(&ram, sdst, start), table_entry(sh_pt), "links the page table's shadow");
    assert_eq!(v.links_to(pt), Some(2), "linked from both shadows");
    let s = v.stats();
    assert_eq!((s.typed_l2, s.typed_clone), (2, 1));
    assert_eq!(s.checks(Check::CloneSourceL2), 1);
    assert_eq!(s.checks(Check::ClonePae), 1);
    assert_clean(&v, "alloc_pd_clone");
}

fn release_pt_and_release_pd_make_pages_normal_and_free_their_shadows<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pt, pd) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pt(pt);
    v.alloc_pd(pd);
    assert_eq!(v.stats().pool_free, v.capacity() - 2);
    v.release_pt(pt);
    v.release_pd(pd);
    for p in [pt, pd] {
        assert_eq!(v.page_type(p), PageType::NORMAL);
        assert_eq!(v.shadow_of(p), None);
    }
    let s = v.stats();
    assert_eq!((s.shadows_live, s.shadows_created, s.shadows_freed, s.shadows_peak), (0, 2, 2, 2));
    assert_eq!(s.pool_free, v.capacity());
    assert_eq!((s.calls(HookKind::ReleasePt), s.calls(HookKind::ReleasePd)), (1, 1));
    assert_eq!(v.pages_held(), 0);
    assert_clean(&v, "release");
    // A released page can be announced again, at either level.
    v.alloc_pd(pt);
    assert_eq!(v.page_type(pt), l2::<M>());
    v.release_pd(pt);
    assert_clean(&v, "re-announce");
}

fn teardown_gives_every_reserved_frame_back<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let base = ram.frames_in_use();
    let v = vmi::<M>(&ram);
    // The pool is sized from RAM (4096 frames: 256 shadows); the records of 4096 frames take
    // 16 leaves and a directory frame.
    assert_eq!(v.capacity(), default_shadow_frames(ram.max_pfn()));
    assert_eq!(v.capacity(), 4096 / RAM_FRAMES_PER_SHADOW as usize);
    assert_eq!(v.reserved_frames(), v.capacity() + 17 + M::PAE as usize);
    assert_eq!(ram.frames_in_use(), base + v.reserved_frames());
    assert_eq!(v.shadow_pdpt().is_some(), M::PAE);
    let pt = zeroed(&ram);
    v.alloc_pt(pt);
    assert_eq!(v.teardown(), Err(TeardownError::PagesTyped { typed: 1 }));
    assert_eq!(v.violation_count(), 0, "refused by its return value: teardown is not a hook, nothing is logged");
    assert_eq!(ram.frames_in_use(), base + v.reserved_frames() + 1, "refused: everything kept");
    v.release_pt(pt);
    ram.free_frame(pt);
    assert_eq!(v.teardown(), Ok(()));
    assert_eq!(ram.frames_in_use(), base);
    assert_eq!(v.shadow_pdpt(), None);
    assert_eq!((v.stats().pool_frames, v.reserved_frames(), v.capacity()), (0, 0, 0));
    // After teardown nothing can be announced any more: said, not silent.
    let p = zeroed(&ram);
    v.alloc_pt(p);
    take_violations(&v, &[(HookKind::AllocPt, VmiRule::CapacityExhausted { pfn: p, capacity: v.capacity() })]);
}

fn backend_is_shareable_between_cpus<M: PagingMode>() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<V<'_, M>>();
    // Fixed size, no heap: what the kernel demo keeps in a static or on its stack.
    assert!(core::mem::size_of::<V<'_, M>>() < 16 * 1024);
}

both_modes!(
    page_type_flags_have_vmi_values,
    alloc_pt_types_the_page_l1_with_a_zero_shadow,
    alloc_pd_types_the_page_l2_with_a_zero_shadow,
    alloc_pd_clone_types_l2_clone_and_copies_the_source_shadow_range,
    release_pt_and_release_pd_make_pages_normal_and_free_their_shadows,
    teardown_gives_every_reserved_frame_back,
    backend_is_shareable_between_cpus,
);
