//! VMI's debug checks, each firing on the wrong sequence (and only there).
mod common;
use common::*;

fn alloc_of_a_typed_page_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    v.alloc_pt(p);
    let sh = v.shadow_of(p);
    v.alloc_pt(p);
    v.alloc_pd(p);
    let q = zeroed(&ram);
    v.alloc_pd(q);
    v.alloc_pd_clone(p, q, M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
    let current = l1::<M>();
    take_violations(
        &v,
        &[
            (HookKind::AllocPt, VmiRule::AllocTyped { pfn: p, current, requested: l1::<M>() }),
            (HookKind::AllocPd, VmiRule::AllocTyped { pfn: p, current, requested: l2::<M>() }),
            (HookKind::AllocPdClone, VmiRule::AllocTyped { pfn: p, current, requested: PageType::l2_clone::<M>() }),
        ],
    );
    assert_eq!(v.page_type(p), current, "refused: the type stays");
    assert_eq!(v.shadow_of(p), sh, "refused: the shadow stays");
    assert_eq!(v.stats().shadows_live, 2);
    assert_clean(&v, "after refusals");
}

fn release_of_an_untyped_page_is_a_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    v.release_pt(p);
    v.release_pd(p);
    take_violations(
        &v,
        &[
            (HookKind::ReleasePt, VmiRule::ReleaseUntyped { pfn: p, requested: l1::<M>() }),
            (HookKind::ReleasePd, VmiRule::ReleaseUntyped { pfn: p, requested: l2::<M>() }),
        ],
    );
    // Released once is untyped again: a double release is caught too.
    v.alloc_pt(p);
    v.release_pt(p);
    v.release_pt(p);
    take_violations(&v, &[(HookKind::ReleasePt, VmiRule::ReleaseUntyped { pfn: p, requested: l1::<M>() })]);
    assert_eq!(v.stats().checks(Check::ReleaseTyped), 4);
}

fn release_naming_the_wrong_level_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pt, pd) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pt(pt);
    v.alloc_pd(pd);
    v.release_pd(pt);
    v.release_pt(pd);
    take_violations(
        &v,
        &[
            (HookKind::ReleasePd, VmiRule::ReleaseWrongLevel { pfn: pt, current: l1::<M>(), requested: l2::<M>() }),
            (HookKind::ReleasePt, VmiRule::ReleaseWrongLevel { pfn: pd, current: l2::<M>(), requested: l1::<M>() }),
        ],
    );
    assert_eq!((v.page_type(pt), v.page_type(pd)), (l1::<M>(), l2::<M>()));
}

fn zeroed_page_that_is_not_zero_is_reported<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    let val = 0x0012_3000 | 0x63;
    ram.write_u32(entry_pa::<M>(p, 7), val as u32);
    v.alloc_pt(p);
    take_violations(&v, &[(HookKind::AllocPt, VmiRule::NotZeroed { pfn: p, index: 7, value: val })]);
    // Reported, not refused: the page is typed and its shadow mirrors what is there.
    assert_eq!(v.page_type(p), l1::<M>());
    assert_eq!(raw::<M>(&ram, v.shadow_of(p).unwrap(), 7), val);
    assert_clean(&v, "non-zero L1 mirrored");
    let q = zeroed(&ram);
    ram.write_u32(entry_pa::<M>(q, M::PTRS_PER_PTE - 1), 2); // not present: links nothing
    v.alloc_pd(q);
    take_violations(&v, &[(HookKind::AllocPd, VmiRule::NotZeroed { pfn: q, index: M::PTRS_PER_PTE - 1, value: 2 })]);
}

fn clone_zeroed_check_covers_only_the_user_words<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (start, count) = (M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
    let src = zeroed(&ram);
    v.alloc_pd(src);
    v.set_pmd(at::<M, _>(&ram, src, start), large(0x40_0000, PAGE_KERNEL));
    let ok = zeroed(&ram);
    // The kernel words are not zero (copied from the source): fine with CLONE.
    ram.write_u32(entry_pa::<M>(ok, start), 0x40_00e3);
    v.alloc_pd_clone(ok, src, start, count);
    assert_clean(&v, "clone with kernel words");
    let bad = zeroed(&ram);
    ram.write_u32(entry_pa::<M>(bad, start), 0x40_00e3);
    ram.write_u32(entry_pa::<M>(bad, start - 1), 0x80_00e3);
    v.alloc_pd_clone(bad, src, start, count);
    take_violations(
        &v,
        &[(HookKind::AllocPdClone, VmiRule::NotZeroed { pfn: bad, index: start - 1, value: 0x80_00e3 })],
    );
}

fn clone_of_a_non_l2_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (start, count) = (M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
    let (pt, untyped, dst) = (zeroed(&ram), zeroed(&ram), zeroed(&ram));
    v.alloc_pt(pt);
    v.alloc_pd_clone(dst, pt, start, count);
    v.alloc_pd_clone(dst, untyped, start, count);
    take_violations(
        &v,
        &[
            (HookKind::AllocPdClone, VmiRule::CloneSourceNotL2 { pfn: dst, source: pt, source_type: l1::<M>() }),
            (
                HookKind::AllocPdClone,
                VmiRule::CloneSourceNotL2 { pfn: dst, source: untyped, source_type: PageType::NORMAL },
            ),
        ],
    );
    assert_eq!(v.page_type(dst), PageType::NORMAL, "refused: the new pgd stays untyped");
    assert_eq!(v.shadow_of(dst), None);
    assert_eq!(v.stats().shadows_live, 1);
}

fn clone_with_a_pae_mismatch_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (src, dst) = (zeroed(&ram), zeroed(&ram));
    // An L2 of the other mode, through the ROM call (the hooks never produce one).
    let other = PageType::L2 | if M::PAE { PageType::empty() } else { PageType::PAE };
    assert_eq!(v.allocate_page(src, other, Pfn::new(0), 0, 0), Ok(()));
    v.alloc_pd_clone(dst, src, M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
    take_violations(
        &v,
        &[(
            HookKind::AllocPdClone,
            VmiRule::ClonePaeMismatch {
                pfn: dst,
                source: src,
                source_type: other,
                requested: PageType::l2_clone::<M>(),
            },
        )],
    );
    assert_eq!(v.page_type(dst), PageType::NORMAL);
    assert_eq!(v.stats().checks(Check::ClonePae), 1);
}

fn clone_range_beyond_the_table_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (src, dst) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(src);
    v.alloc_pd_clone(dst, src, M::USER_PTRS_PER_PGD, M::PTRS_PER_PTE);
    v.alloc_pd_clone(dst, src, u32::MAX, 2);
    take_violations(
        &v,
        &[
            (
                HookKind::AllocPdClone,
                VmiRule::CloneRange { pfn: dst, start: M::USER_PTRS_PER_PGD, count: M::PTRS_PER_PTE },
            ),
            (HookKind::AllocPdClone, VmiRule::CloneRange { pfn: dst, start: u32::MAX, count: 2 }),
        ],
    );
    assert_eq!(v.page_type(dst), PageType::NORMAL);
}

fn pdpt_is_never_typed<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    let pdp = PageType::PDP | PageType::ZEROED | PageType::PAE;
    assert_eq!(v.allocate_page(p, pdp, Pfn::new(0), 0, 0), Err(VmiRule::PdptTyped { pfn: p, flags: pdp }));
    for flags in [PageType::NORMAL, PageType::PT | PageType::PD, PageType::PML4 | PageType::ZEROED] {
        assert_eq!(v.allocate_page(p, flags, Pfn::new(0), 0, 0), Err(VmiRule::BadFlags { pfn: p, flags }));
    }
    assert_eq!(v.page_type(p), PageType::NORMAL);
    assert_eq!(v.violation_count(), 0, "a ROM call returns its refusal; only hooks report");
    // A typed page written as a PDPT.
    let (pd, pmd) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pd(pmd);
    v.set_pud(at::<M, _>(&ram, pd, 0), pdpt_entry(pmd));
    let want = if M::PAE {
        VmiRule::PdptTyped { pfn: pd, flags: l2::<M>() }
    } else {
        VmiRule::WrongLevel { table: pd, index: 0, current: l2::<M>() }
    };
    take_violations(&v, &[(HookKind::SetPud, want)]);
    if M::PAE {
        // The loaded PDPT cannot be announced as a table.
        let pdpt = zeroed(&ram);
        v.set_pud(at::<M, _>(&ram, pdpt, 0), pdpt_entry(pmd));
        v.write_cr3(pdpt.phys().as_u64() as u32);
        v.alloc_pd(pdpt);
        take_violations(&v, &[(HookKind::AllocPd, VmiRule::PdptTyped { pfn: pdpt, flags: l2::<M>() })]);
        // PDPT entries may hold only PRESENT, PWT, PCD and the address.
        let bad = pdpt_entry(pmd).union(PteFlags::RW);
        v.set_pud(at::<M, _>(&ram, pdpt, 1), bad);
        take_violations(&v, &[(HookKind::SetPud, VmiRule::BadPdptEntry { pdpt, index: 1, value: bad.raw() })]);
    }
}

fn capacity_exhaustion_is_reported<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let base = ram.frames_in_use();
    let v: Vmi<M, &EmulatedRam> = Vmi::with_shadow_frames(&ram, Policy::Record, 4).unwrap();
    assert_eq!(v.capacity(), 4);
    // 4096 frames of RAM: 16 leaves of records and their directory frame.
    assert_eq!(v.reserved_frames(), 4 + 17 + M::PAE as usize);
    assert_eq!(ram.frames_in_use(), base + v.reserved_frames());
    let pages: Vec<Pfn> = (0..5).map(|_| zeroed(&ram)).collect();
    for &p in &pages {
        v.alloc_pt(p);
    }
    assert_eq!(
        v.violation(0),
        Some(Violation { hook: HookKind::AllocPt, rule: VmiRule::CapacityExhausted { pfn: pages[4], capacity: 4 } })
    );
    assert_eq!(v.violation_count(), 1);
    assert_eq!(v.page_type(pages[4]), PageType::NORMAL);
    assert_eq!(v.stats().pool_free, 0);
    v.release_pt(pages[0]);
    v.alloc_pt(pages[4]);
    assert_eq!(v.violation_count(), 1, "a freed slot is reused");
}

fn page_beyond_ram_is_refused<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = ram.max_pfn();
    v.alloc_pt(p);
    take_violations(&v, &[(HookKind::AllocPt, VmiRule::PfnOutOfRange { pfn: p })]);
}

fn violation_log_keeps_the_first_n_and_counts_all<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let untyped =
        |pfn| Violation { hook: HookKind::ReleasePt, rule: VmiRule::ReleaseUntyped { pfn, requested: l1::<M>() } };
    for i in 0..40 {
        v.release_pt(Pfn::new(0x300 + i));
    }
    assert_eq!(v.violation_count(), 40);
    assert_eq!(v.violations(), 40);
    assert_eq!(v.violation(0), Some(untyped(Pfn::new(0x300))));
    assert_eq!(v.violation(RECORDED_VIOLATIONS - 1), Some(untyped(Pfn::new(0x300 + RECORDED_VIOLATIONS as u32 - 1))));
    assert_eq!(v.violation(RECORDED_VIOLATIONS), None);
    assert_eq!(v.stats().violations, 40);
    assert_eq!(v.violation_log().checker_total(), 0, "releasing an untyped page is a BUG_ON of VMI itself");
    let shown = v.violation(0).unwrap().to_string();
    assert!(shown.contains("release needs a typed page") && shown.contains("0x300"), "{shown}");
    assert!(shown.starts_with("release_pt: ") && shown.ends_with("[hypervisor rule release-untyped]"), "{shown}");
}

/// What real `vmi.c` `BUG_ON`s is a hypervisor rule; the shadow pager's own rules are checker
/// rules (the README's table).
fn each_rule_names_its_origin<M: PagingMode>() {
    let p = Pfn::new(0x42);
    let (t, n) = (l1::<M>(), PageType::NORMAL);
    let hypervisor = [
        VmiRule::AllocTyped { pfn: p, current: t, requested: t },
        VmiRule::ReleaseUntyped { pfn: p, requested: t },
        VmiRule::NotZeroed { pfn: p, index: 1, value: 2 },
        VmiRule::CloneSourceNotL2 { pfn: p, source: p, source_type: n },
        VmiRule::ClonePaeMismatch { pfn: p, source: p, source_type: t, requested: t },
    ];
    let checker = [
        VmiRule::ReleaseWrongLevel { pfn: p, current: t, requested: t },
        VmiRule::ReleaseLinked { pfn: p, links: 1 },
        VmiRule::ReleaseLoaded { pfn: p },
        VmiRule::CloneRange { pfn: p, start: 0, count: 0 },
        VmiRule::BadFlags { pfn: p, flags: n },
        VmiRule::PdptTyped { pfn: p, flags: t },
        VmiRule::BadPdptEntry { pdpt: p, index: 0, value: 0 },
        VmiRule::WriteUntyped { table: p, index: 0 },
        VmiRule::WrongLevel { table: p, index: 0, current: t },
        VmiRule::UnannouncedChild { table: p, index: 0, child: p, child_type: n },
        VmiRule::UnknownRoot { cr3: 0x42_000 },
        VmiRule::PfnOutOfRange { pfn: p },
        VmiRule::CapacityExhausted { pfn: p, capacity: 1 },
        VmiRule::NoShadowPdpt { cr3: 0x42_000 },
    ];
    for r in hypervisor {
        assert_eq!((r.origin(), r.pfn()), (Origin::Hypervisor, p), "{r}");
    }
    for r in checker {
        assert_eq!((r.origin(), r.pfn()), (Origin::Checker, p), "{r}");
    }
    let mut names: Vec<_> = hypervisor.iter().chain(checker.iter()).map(|r| r.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), hypervisor.len() + checker.len(), "rule names are distinct");
    // The log counts checker violations apart.
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let q = zeroed(&ram);
    v.release_pt(q); // hypervisor
    v.set_pte(at::<M, _>(&ram, q, 0), Pte::EMPTY); // checker
    assert_eq!((v.violation_log().total(), v.violation_log().checker_total()), (2, 1));
}

both_modes!(
    each_rule_names_its_origin,
    alloc_of_a_typed_page_is_refused,
    release_of_an_untyped_page_is_a_violation,
    release_naming_the_wrong_level_is_refused,
    zeroed_page_that_is_not_zero_is_reported,
    clone_zeroed_check_covers_only_the_user_words,
    clone_of_a_non_l2_is_refused,
    clone_with_a_pae_mismatch_is_refused,
    clone_range_beyond_the_table_is_refused,
    pdpt_is_never_typed,
    capacity_exhaustion_is_reported,
    page_beyond_ram_is_refused,
    violation_log_keeps_the_first_n_and_counts_all,
);

/// `Policy::Panic` is Linux's `BUG()`: the first violation stops the kernel.
fn panic_policy_panics_on_the_first_violation<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = Vmi::<M, &EmulatedRam>::new(&ram, Policy::Panic).unwrap();
    let p = zeroed(&ram);
    v.alloc_pt(p);
    assert_eq!(v.policy(), Policy::Panic);
    v.alloc_pt(p);
}

#[test]
#[should_panic(expected = "vmi: alloc_pt: allocation needs an untyped page")]
fn panic_policy_panics_on_the_first_violation_two_level() {
    panic_policy_panics_on_the_first_violation::<TwoLevel>()
}

#[test]
#[should_panic(expected = "vmi: alloc_pt: allocation needs an untyped page")]
fn panic_policy_panics_on_the_first_violation_pae() {
    panic_policy_panics_on_the_first_violation::<Pae>()
}
