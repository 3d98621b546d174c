//! Faults later kernels fixed in this code, replayed against the model:
//!
//! - after a refused `MMUEXT_NEW_BASEPTR` (under `Policy::Record`), `write_cr3` answers the
//!   root Xen really has installed, so the CPU and the guest's idea of CR3 follow it (Linux's
//!   "deal with stale cr3 values when unpinning pagetables");
//! - `release_pt` / `release_pd` of a page that was never announced (or already released) is
//!   reported as a checker violation: the real Xen has nothing to object to, but the kernel
//!   broke the hook protocol.

mod common;
use common::*;

/// An address space whose tree cannot be pinned: its page table maps a kernel page table
/// writable (written while the tree was unpinned, so directly). Returns the space, its user
/// frame, the page table and the index of the bad entry.
fn unpinnable_space<M: PagingMode>(e: &Env<'_, M>) -> (AddressSpace<M>, Pfn, Pfn, u32) {
    let mut a = e.k.create().unwrap();
    let f = e.ram.alloc_frame().unwrap();
    e.k.map(&mut a, UA, f, PteFlags::RW | PteFlags::USER).unwrap();
    let l1 = l1_of::<M>(e.ram, a.pgd(), UA);
    let kl1 = l1_of::<M>(e.ram, e.k.swapper_pg_dir(), PAGE_OFFSET);
    let idx = M::pte_index(UA) + 1;
    e.xen.set_pte(slot_of::<M, Pte>(e.ram, l1, idx), Pte::new(kl1, PteFlags::PRESENT | PteFlags::RW));
    assert_eq!(e.xen.violations(), 0, "an unpinned table is written directly");
    (a, f, l1, idx)
}

fn write_cr3_answers_the_root_xen_kept_after_a_refused_new_baseptr<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let swapper = e.k.swapper_pg_dir();
        let (a, f, l1, idx) = unpinnable_space(&e);
        let loads = e.cpu.cr3_loads();

        e.k.activate(&a);
        let v = violations(e.xen);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().all(|v| v.hook == HookKind::WriteCr3));
        assert!(matches!(v[0].rule, XenError::WritablePageTable { table, .. } if table == l1), "{v:?}");
        // NEW_BASEPTR validates the unpinned root itself (`new_guest_cr3`): refused the same way.
        assert!(matches!(v[1].rule, XenError::WritablePageTable { table, .. } if table == l1), "{v:?}");
        let last = calls(e.hv).into_iter().last().unwrap();
        assert_eq!((last.call, last.error), (Hypercall::MmuextOp(MmuextOp::NewBaseptr(a.pgd())), Some(v[1].rule)));
        // Xen kept the old base pointer; the CPU and the kernel follow it.
        assert_eq!(e.hv.base(), Some(swapper));
        assert_eq!(e.hv.page_info(swapper).count, 2, "pin + the base pointer, still");
        assert_eq!(e.cpu.cr3_loads(), loads + 1);
        assert_eq!(e.cpu.read_cr3(), swapper.phys().as_u64() as u32, "the CPU loaded the root Xen has");
        assert_eq!(e.k.active_root(), Some(swapper), "the guest's idea of CR3 follows");
        assert!(e.cpu.read_u32(UA).is_err(), "the refused space's mappings are not in force");

        // The hook itself answers the installed root, not the one asked for.
        let asked = a.pgd().phys().as_u64() as u32;
        assert_eq!(e.xen.write_cr3(asked), swapper.phys().as_u64() as u32);
        assert_eq!(e.hv.base(), Some(swapper));

        // Fixed, the same space loads.
        e.xen.violation_log().clear();
        e.xen.set_pte(slot_of::<M, Pte>(e.ram, l1, idx), Pte::EMPTY);
        e.k.activate(&a);
        assert_eq!(e.xen.violations(), 0, "{:?}", violations(e.xen));
        assert_eq!(e.hv.base(), Some(a.pgd()));
        assert_eq!(e.k.active_root(), Some(a.pgd()));
        e.cpu.write_u32(UA, 0x600d_f00d).unwrap();
        assert_eq!(e.xen.write_cr3(swapper.phys().as_u64() as u32), swapper.phys().as_u64() as u32);

        e.k.activate_swapper();
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn write_cr3_answers_the_root_asked_for_when_xen_never_had_one<M: PagingMode>() {
    machine::<M>(Policy::Record, |e| {
        // Nothing loaded yet, so Xen has no base pointer. A root whose tree holds a PSE entry
        // (which no PV guest may have) cannot be pinned, so its NEW_BASEPTR is refused.
        let a = e.k.create().unwrap();
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        e.xen.set_pmd(slot_of::<M, Pmd>(e.ram, dir, idx), Pmd::large(PhysAddr::new(0), PAGE_KERNEL));
        let asked = a.pgd().phys().as_u64() as u32;
        assert_eq!(e.xen.write_cr3(asked), asked, "no base pointer to fall back on");
        assert_eq!(e.hv.base(), None);
        assert!(violations(e.xen).iter().any(|v| matches!(v.rule, XenError::LargePage { .. })));
        assert_eq!(
            violations(e.xen).iter().filter(|v| matches!(v.rule, XenError::LargePage { .. })).count(),
            2,
            "the pin, then NEW_BASEPTR's own validation"
        );
    });
}

fn release_of_a_page_never_announced_is_a_checker_violation<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let s0 = e.xen.stats();
        let f = alloc_zeroed(e.ram).unwrap();
        e.xen.release_pt(f);
        e.xen.release_pd(f);
        let v = violations(e.xen);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].hook, v[0].rule), (HookKind::ReleasePt, XenError::ReleaseNotAnnounced { pfn: f }));
        assert_eq!((v[1].hook, v[1].rule), (HookKind::ReleasePd, XenError::ReleaseNotAnnounced { pfn: f }));
        assert_eq!(v[0].rule.origin(), Origin::Checker);
        assert_eq!(v[0].rule.errno(), Errno::Busy);
        assert_eq!(v[0].rule.pfn(), f);
        assert_eq!(v[0].rule.name(), "release-not-announced");
        assert_eq!(e.xen.violation_log().checker_total(), 2);
        let s1 = e.xen.stats();
        assert_eq!(s1.refusals[Errno::Busy.index()] - s0.refusals[Errno::Busy.index()], 2);
        assert_eq!(s1.hypercalls(), s0.hypercalls(), "nothing to unpin or make writable");

        // Announced, released once: fine. Released again: reported.
        e.xen.alloc_pt(f);
        e.xen.release_pt(f);
        assert_eq!(e.xen.violations(), 2);
        e.xen.release_pt(f);
        assert_eq!(violations(e.xen)[2].rule, XenError::ReleaseNotAnnounced { pfn: f });

        e.xen.violation_log().clear();
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn the_kernel_announces_every_page_it_releases<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let (mut a, f) = e.space_with_page(UA);
        // Two-level: the pgd is announced by alloc_pd_clone (pgd_ctor) and released by
        // pgd_dtor. PAE: the user pmds by alloc_pd; the PDPT is neither announced nor released.
        assert_eq!(e.xen.is_announced(a.pgd()), !M::PAE);
        if M::PAE {
            assert!((0..3).all(|i| e.xen.is_announced(pmd_of(e.ram, a.pgd(), i))));
        }
        assert!(e.xen.is_announced(l1_of::<M>(e.ram, a.pgd(), UA)));
        assert_eq!(e.k.unmap(&mut a, UA).unwrap(), f);
        e.k.activate_swapper();
        e.k.destroy(a);
        assert_eq!(e.xen.violations(), 0);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

fn a_table_linked_without_alloc_pt_is_caught_again_at_its_release<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let a = e.k.create().unwrap();
        let pt = alloc_zeroed(e.ram).unwrap();
        let (dir, idx) = dir_of::<M>(e.ram, a.pgd(), UB);
        e.xen.set_pmd(slot_of::<M, Pmd>(e.ram, dir, idx), Pmd::new(pt, PAGE_TABLE));
        assert_eq!(e.xen.violations(), 0, "an unpinned tree is written directly");
        e.k.destroy(a);
        let v = violations(e.xen);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].hook, v[0].rule), (HookKind::ReleasePt, XenError::ReleaseNotAnnounced { pfn: pt }));
        assert!(!e.ram.is_allocated(pt), "the teardown still freed it");
        e.xen.violation_log().clear();
        shutdown_clean(e);
    });
}

fn release_of_a_page_never_announced_panics_under_the_panic_policy<M: PagingMode>() {
    booted::<M>(Policy::Panic, |e| {
        let f = alloc_zeroed(e.ram).unwrap();
        e.xen.release_pd(f);
    });
}

#[test]
#[should_panic(expected = "xen: release_pd: EBUSY: page released that was never announced (pfn ")]
fn two_level_release_of_a_page_never_announced_panics_under_the_panic_policy() {
    release_of_a_page_never_announced_panics_under_the_panic_policy::<TwoLevel>();
}

#[test]
#[should_panic(expected = "[checker rule release-not-announced]")]
fn pae_release_of_a_page_never_announced_panics_under_the_panic_policy() {
    release_of_a_page_never_announced_panics_under_the_panic_policy::<Pae>();
}

both_modes!(
    write_cr3_answers_the_root_xen_kept_after_a_refused_new_baseptr,
    write_cr3_answers_the_root_asked_for_when_xen_never_had_one,
    release_of_a_page_never_announced_is_a_checker_violation,
    the_kernel_announces_every_page_it_releases,
    a_table_linked_without_alloc_pt_is_caught_again_at_its_release,
);
