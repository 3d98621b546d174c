//! Bad input at the guest side's page-type hooks: a recorded violation naming the rule and
//! the pfn, and no state change (the hypervisor's frame table, pins, base
//! pointer, the guest's announced and read-only pages, every allocated frame's contents).
mod common;
use common::*;
use std::hash::{Hash, Hasher};

#[derive(Debug, PartialEq)]
struct Snapshot {
    frames: Vec<(Pfn, u64)>,
    typed: usize,
    pinned: usize,
    read_only: usize,
    held: usize,
    base: Option<Pfn>,
    pages: Vec<(bool, bool, bool)>,
}

fn snapshot<M: PagingMode>(e: &Env<'_, M>, watch: &[Pfn]) -> Snapshot {
    Snapshot {
        frames: e
            .ram
            .allocated()
            .into_iter()
            .map(|f| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (0..4096).step_by(4).for_each(|o| e.ram.read_u32(f.phys().as_u64() + o).hash(&mut h));
                (f, h.finish())
            })
            .collect(),
        typed: e.hv.typed_frames(),
        pinned: e.hv.pinned_tables().total(),
        read_only: e.xen.read_only_pages(),
        held: e.xen.pages_held(),
        base: e.hv.base(),
        pages: watch.iter().map(|&p| (e.xen.is_announced(p), e.xen.is_read_only(p), e.hv.is_pinned(p))).collect(),
    }
}

/// Runs `bad`, which must record exactly `want`, and checks nothing changed.
fn violates<M: PagingMode>(e: &Env<'_, M>, watch: &[Pfn], want: &[(HookKind, XenError)], bad: impl FnOnce()) {
    let before = snapshot(e, watch);
    e.xen.violation_log().clear();
    bad();
    let got: Vec<_> = violations(e.xen).into_iter().map(|v| (v.hook, v.rule)).collect();
    assert_eq!(got, want);
    for (_, rule) in want {
        assert!(watch.contains(&rule.pfn()), "{rule}: names a page the test watches");
    }
    assert!(before == snapshot(e, watch), "{want:?}: state changed");
    e.xen.violation_log().clear();
}

fn page_type_hooks_refuse_bad_pages<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (pt, never) = (alloc_zeroed(e.ram).unwrap(), alloc_zeroed(e.ram).unwrap());
        e.xen.alloc_pt(pt);
        let w = [pt, never];
        violates(&e, &w, &[(HookKind::ReleasePt, XenError::ReleaseNotAnnounced { pfn: never })], || {
            e.xen.release_pt(never)
        });
        violates(&e, &w, &[(HookKind::ReleasePd, XenError::ReleaseNotAnnounced { pfn: never })], || {
            e.xen.release_pd(never)
        });
        violates(&e, &w, &[(HookKind::AllocPt, XenError::AlreadyAnnounced { pfn: pt })], || e.xen.alloc_pt(pt));
        violates(&e, &w, &[(HookKind::AllocPd, XenError::AlreadyAnnounced { pfn: pt })], || e.xen.alloc_pd(pt));
        let swapper = e.k.swapper_pg_dir();
        violates(
            &e,
            &[pt, never, swapper],
            &[(HookKind::AllocPdClone, XenError::AlreadyAnnounced { pfn: pt })],
            || e.xen.alloc_pd_clone(pt, swapper, M::USER_PTRS_PER_PGD, M::PTRS_PER_PGD - M::USER_PTRS_PER_PGD),
        );
        e.xen.release_pt(pt);
        e.ram.free_frame(pt);
        e.ram.free_frame(never);
        shutdown_clean(e);
    });
}

/// `exit_mmap` of the root loaded in CR3 is no bad input: Linux's `xen_exit_mmap` switches to
/// `swapper_pg_dir` (`xen_drop_mm_ref`) and then unpins, and so does the model, reporting
/// nothing.
fn exit_mmap_of_the_loaded_root_is_reported_then_switched_away_from<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let (a, f) = e.space_with_page(0x0804_8000);
        let root = a.pgd();
        e.xen.exit_mmap(root);
        let got: Vec<_> = violations(e.xen).into_iter().map(|v| (v.hook, v.rule)).collect();
        assert_eq!(got, []);
        assert_eq!(e.hv.base(), Some(e.k.swapper_pg_dir()));
        assert!(!e.hv.is_pinned(root));
        e.xen.violation_log().clear();
        e.k.activate_swapper();
        e.k.destroy(a);
        e.ram.free_frame(f);
        shutdown_clean(e);
    });
}

both_modes!(page_type_hooks_refuse_bad_pages, exit_mmap_of_the_loaded_root_is_reported_then_switched_away_from);
