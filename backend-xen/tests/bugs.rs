//! Bug classes the model catches: a table linked without `alloc_pt`, a table freed or
//! released while still in use, a direct write to a pinned table (through the CPU, and
//! behind the MMU's back).

mod common;
use common::*;

/// Links `pt` at `va`'s directory entry of `root` through the backend's `set_pmd`, without the
/// `alloc_pt` that `pmd_populate` would have made first.
fn link_without_alloc_pt<M: PagingMode>(e: &Env<'_, M>, root: Pfn, va: u32, pt: Pfn) {
    let (dir, idx) = dir_of::<M>(e.ram, root, va);
    e.xen.set_pmd(slot_of::<M, Pmd>(e.ram, dir, idx), Pmd::new(pt, PAGE_TABLE));
}

fn a_table_linked_without_alloc_pt_under_a_pinned_tree_is_refused<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        e.k.activate(&a);
        let pt = alloc_zeroed(e.ram).unwrap();
        link_without_alloc_pt(&e, a.pgd(), UB, pt);
        let v = violations(e.xen);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].hook, HookKind::SetPmd);
        assert_eq!(v[0].rule, XenError::MappedWritable { pfn: pt, mappings: 1 });
        assert_eq!(v[0].rule.origin(), Origin::Hypervisor);
        assert!(v[0].to_string().contains("a page mapped writable cannot become a page table"));
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        assert_eq!(read_entry::<M, Pmd, _>(e.ram, dir, idx), Pmd::EMPTY, "the refused link was not made");
        assert!(!e.hv.is_pinned(pt) && !e.xen.is_read_only(pt));
        assert!(verify(e.xen).0, "the model stayed consistent");
        e.ram.free_frame(pt);
        e.k.destroy(a);
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

fn a_table_linked_without_alloc_pt_panics_under_the_panic_policy<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let a = e.k.create().unwrap();
        e.k.activate(&a);
        let pt = alloc_zeroed(e.ram).unwrap();
        link_without_alloc_pt(&e, a.pgd(), UB, pt);
    });
}

#[test]
#[should_panic(expected = "xen: set_pmd: EINVAL: a page mapped writable cannot become a page table")]
fn two_level_a_table_linked_without_alloc_pt_panics_under_the_panic_policy() {
    a_table_linked_without_alloc_pt_panics_under_the_panic_policy::<TwoLevel>();
}

#[test]
#[should_panic(expected = "xen: set_pmd: EINVAL: a page mapped writable cannot become a page table")]
fn pae_a_table_linked_without_alloc_pt_panics_under_the_panic_policy() {
    a_table_linked_without_alloc_pt_panics_under_the_panic_policy::<Pae>();
}

fn a_table_linked_without_alloc_pt_before_pinning_is_caught_when_the_tree_is_pinned<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        let pt = alloc_zeroed(e.ram).unwrap();
        link_without_alloc_pt(&e, a.pgd(), UB, pt);
        assert_eq!(e.xen.violations(), 0, "an unpinned tree is written directly");
        e.k.activate(&a);
        let v = violations(e.xen);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].hook, HookKind::WriteCr3);
        assert_eq!(v[0].rule, XenError::NotAnnounced { pfn: pt, level: PageType::L1 });
        assert_eq!(v[0].rule.errno(), Errno::Busy);
        assert_eq!(v[0].rule.origin(), Origin::Checker, "Xen itself pins an unannounced table");
        assert_eq!(e.xen.violation_log().checker_total(), 1);
        // Like Linux, the tree is pinned anyway.
        assert!(e.hv.is_pinned(pt) && e.xen.is_read_only(pt));
        e.k.destroy(a);
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

fn a_table_freed_while_still_pinned_is_caught<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (a, _f) = e.space_with_page(UB);
        let l1 = l1_of::<M>(e.ram, a.pgd(), UB);
        // The bug: the table is unlinked and freed without `release_pt`.
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        e.xen.pmd_clear(slot_of::<M, Pmd>(e.ram, dir, idx));
        e.ram.free_frame(l1);
        assert!(e.hv.is_pinned(l1) && e.xen.pages_held() > 0);
        // The allocator poisons freed frames: the pinned table changed behind Xen's back.
        let (ok, report) = verify(e.xen);
        assert!(!ok);
        assert!(report.contains(&format!("l1 table {l1} changed without mmu_update")), "{report}");
        // Reused as a page table: announced while still pinned.
        let again = alloc_zeroed(e.ram).unwrap();
        assert_eq!(again, l1, "the allocator hands out the lowest free frame");
        e.xen.alloc_pt(again);
        let v = violations(e.xen);
        assert_eq!(v[0].rule, XenError::AllocWhilePinned { pfn: l1 });
        assert_eq!(v[1].rule, XenError::AlreadyAnnounced { pfn: l1 }, "and it was never released");
        assert!(v.iter().all(|v| v.hook == HookKind::AllocPt && v.rule.origin() == Origin::Checker));
        // Reused as data and mapped writable anywhere: refused.
        let mut b = e.k.create().unwrap();
        let g = e.ram.alloc_frame().unwrap();
        e.k.map(&mut b, UA, g, PteFlags::RW | PteFlags::USER).unwrap();
        e.k.activate(&b);
        e.k.map(&mut b, UA + 0x1000, l1, PteFlags::RW | PteFlags::USER).unwrap();
        let v = violations(e.xen);
        assert!(matches!(v[2].rule, XenError::WritablePageTable { target, .. } if target == l1), "{v:?}");
        assert!(e.k.translate(&b, UA + 0x1000).is_none());
    });
}

fn releasing_a_table_still_linked_into_a_pinned_tree_is_caught<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (a, f) = e.space_with_page(UB);
        let l1 = l1_of::<M>(e.ram, a.pgd(), UB);
        // The bug: release before unlink. The unpin goes through (the directory still holds a
        // reference), but making the page writable is refused: it is still a page table.
        e.xen.release_pt(l1);
        let v = violations(e.xen);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].hook, HookKind::ReleasePt);
        assert!(matches!(v[0].rule, XenError::WritablePageTable { target, .. } if target == l1));
        assert_eq!(e.hv.page_info(l1), PageInfo { ty: PageType::L1, count: 1, pinned: false });
        assert!(e.xen.is_read_only(l1), "still read-only, still held");
        // Teardown still converges: exit_mmap unpins the root, which drops the last reference.
        e.k.destroy(a);
        e.ram.free_frame(f);
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

/// Every page-table page of a loaded tree is read-only (CR0.WP): a direct store faults. Xen
/// emulates the store when the page is a validated L1 (`ptwr_do_page_fault`, here the same
/// value written back, which validates); into a directory or a PAE root the fault stays.
fn a_direct_write_to_a_pinned_directory_faults_through_the_cpu<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let (a, f) = e.space_with_page(UA);
        let mut all = tables::<M>(e.ram, a.pgd());
        all.extend(tables::<M>(e.ram, e.k.swapper_pg_dir()));
        for root in [a.pgd(), e.k.swapper_pg_dir()] {
            if root == a.pgd() {
                e.k.activate(&a);
            } else {
                e.k.activate_swapper();
            }
            for &(t, _) in &all {
                let va = lowmem_va(t);
                let old = e.cpu.read_u32(va).expect("page tables stay readable");
                if e.hv.page_info(t).ty == PageType::L1 {
                    let emulated = e.cpu.handled_write_faults();
                    e.cpu.write_u32(va, old).expect("a store into a validated l1 is emulated");
                    assert_eq!(e.cpu.handled_write_faults(), emulated + 1);
                    continue;
                }
                let fault = e.cpu.write_u32(va, old).expect_err("a pinned directory is read-only");
                assert_eq!((fault.vector, fault.error_code & (PF_PROT | PF_WRITE)), (14, PF_PROT | PF_WRITE));
                assert_eq!(fault.addr, va);
            }
        }
        // An ordinary page is writable.
        e.cpu.write_u32(lowmem_va(f), 1).unwrap();
        assert!(verify(e.xen).0, "the emulated stores kept every checksum");
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn a_write_that_bypasses_the_mmu_is_reported_by_verify_and_at_unpin<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (a, f) = e.space_with_page(UA);
        let l1 = l1_of::<M>(e.ram, a.pgd(), UA);
        let kl1 = l1_of::<M>(e.ram, e.k.swapper_pg_dir(), PAGE_OFFSET);
        let pa = entry_pa::<M>(l1, 9).as_u64();
        assert!(verify(e.xen).0);

        // Behind every backend's back: a writable mapping of a kernel page table.
        e.ram.write_u32(pa, Pte::new(kl1, PteFlags::PRESENT | PteFlags::RW).raw() as u32);
        let (ok, report) = verify(e.xen);
        assert!(!ok);
        assert!(report.contains(&format!("l1 table {l1} changed without mmu_update")), "{report}");
        assert!(
            report.contains(&format!("l1 table {l1}[9]")) && report.contains("writable mapping not counted"),
            "{report}"
        );
        e.ram.write_u32(pa, 0);
        assert!(verify(e.xen).0, "restored");

        // A harmless change still shows, and the unpin at teardown reports it.
        e.ram.write_u32(pa, Pte::new(f, PteFlags::PRESENT).raw() as u32);
        assert!(!verify(e.xen).0);
        e.k.destroy(a);
        let v = violations(e.xen);
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].hook, v[0].rule),
            (HookKind::ExitMmap, XenError::TableModified { table: l1, level: PageType::L1 })
        );
        assert_eq!(v[0].rule.origin(), Origin::Checker, "the model's checksum, not a Xen refusal");
        e.ram.free_frame(f);
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

fn the_violation_log_keeps_the_first_entries_and_counts_every_one<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        e.k.activate(&a);
        let pt = alloc_zeroed(e.ram).unwrap();
        for _ in 0..MAX_VIOLATIONS + 4 {
            link_without_alloc_pt(&e, a.pgd(), UB, pt);
        }
        assert_eq!(e.xen.violations(), MAX_VIOLATIONS + 4);
        let log = e.xen.violation_log();
        assert_eq!(log.total(), MAX_VIOLATIONS + 4);
        assert_eq!(log.iter().count(), MAX_VIOLATIONS);
        assert!(log.iter().all(|v| v.hook == HookKind::SetPmd));
        assert!(log.get(MAX_VIOLATIONS).is_none());
        let mut text = String::new();
        log.write_all(&mut text).unwrap();
        assert_eq!(text.lines().count(), MAX_VIOLATIONS);
        assert!(text.lines().all(|l| l.starts_with("xen: set_pmd: EINVAL")), "{text}");
        e.ram.free_frame(pt);
        e.k.destroy(a);
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

both_modes!(
    a_table_linked_without_alloc_pt_under_a_pinned_tree_is_refused,
    a_table_linked_without_alloc_pt_before_pinning_is_caught_when_the_tree_is_pinned,
    a_table_freed_while_still_pinned_is_caught,
    releasing_a_table_still_linked_into_a_pinned_tree_is_caught,
    a_direct_write_to_a_pinned_directory_faults_through_the_cpu,
    a_write_that_bypasses_the_mmu_is_reported_by_verify_and_at_unpin,
    the_violation_log_keeps_the_first_entries_and_counts_every_one,
);
