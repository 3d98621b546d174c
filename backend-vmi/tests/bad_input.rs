//! Bad input at every public entry point of the backend: a recorded violation naming the
//! rule and the pfn (a hook) or a typed error (the ROM calls, `teardown`), and no state change:
//! every page's type and shadow, the tracked and pooled counts, the loaded root, every
//! allocated frame's contents.
mod common;
use common::*;
use std::hash::{Hash, Hasher};

#[derive(Debug, PartialEq)]
struct Snapshot {
    frames: Vec<(Pfn, u64)>,
    typed: usize,
    held: usize,
    shadows_live: usize,
    pool: usize,
    loaded: Option<Pfn>,
    pages: Vec<(PageType, Option<Pfn>)>,
}

fn snapshot<M: PagingMode>(ram: &EmulatedRam, v: &V<'_, M>, watch: &[Pfn]) -> Snapshot {
    let s = v.stats();
    Snapshot {
        frames: ram
            .allocated()
            .into_iter()
            .map(|f| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (0..4096).step_by(4).for_each(|o| ram.read_u32(f.phys().as_u64() + o).hash(&mut h));
                (f, h.finish())
            })
            .collect(),
        typed: v.typed_pages(),
        held: v.pages_held(),
        shadows_live: s.shadows_live,
        pool: s.pool_frames,
        loaded: v.loaded_root(),
        pages: watch.iter().map(|&p| (v.page_type(p), v.shadow_of(p))).collect(),
    }
}

/// Runs `bad` (hooks that must each record one violation, the ones in `want`, in order) and
/// checks nothing changed.
fn violates<M: PagingMode>(
    ram: &EmulatedRam,
    v: &V<'_, M>,
    watch: &[Pfn],
    want: &[(HookKind, VmiRule)],
    bad: impl FnOnce(),
) {
    let before = snapshot(ram, v, watch);
    v.clear_violations();
    bad();
    let got: Vec<_> = (0..v.violation_count()).filter_map(|i| v.violation(i)).map(|x| (x.hook, x.rule)).collect();
    assert_eq!(got, want);
    for (_, rule) in want {
        assert!(watch.contains(&rule.pfn()), "{rule}: names a page the test watches");
    }
    assert!(before == snapshot(ram, v, watch), "{want:?}: state changed");
    v.clear_violations();
}

fn l1<M: PagingMode>() -> PageType {
    PageType::l1::<M>()
}

fn l2<M: PagingMode>() -> PageType {
    PageType::l2::<M>()
}

fn page_type_hooks_refuse_bad_pages<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pt, pd, never) = (zeroed(&ram), zeroed(&ram), zeroed(&ram));
    v.alloc_pt(pt);
    v.alloc_pd(pd);
    let w = [pt, pd, never];
    // Release of a page never announced, under either hook.
    violates(
        &ram,
        &v,
        &w,
        &[(HookKind::ReleasePt, VmiRule::ReleaseUntyped { pfn: never, requested: l1::<M>() })],
        || v.release_pt(never),
    );
    violates(
        &ram,
        &v,
        &w,
        &[(HookKind::ReleasePd, VmiRule::ReleaseUntyped { pfn: never, requested: l2::<M>() })],
        || v.release_pd(never),
    );
    // Release naming the other level.
    violates(
        &ram,
        &v,
        &w,
        &[(HookKind::ReleasePd, VmiRule::ReleaseWrongLevel { pfn: pt, current: l1::<M>(), requested: l2::<M>() })],
        || v.release_pd(pt),
    );
    // A second announcement of a page already typed.
    violates(
        &ram,
        &v,
        &w,
        &[(HookKind::AllocPt, VmiRule::AllocTyped { pfn: pt, current: l1::<M>(), requested: l1::<M>() })],
        || v.alloc_pt(pt),
    );
    // A clone range past the end of the table, and a clone from a page that is not an L2.
    let count = M::PTRS_PER_PTE;
    violates(
        &ram,
        &v,
        &w,
        &[(HookKind::AllocPdClone, VmiRule::CloneRange { pfn: never, start: M::USER_PTRS_PER_PGD, count })],
        || v.alloc_pd_clone(never, pd, M::USER_PTRS_PER_PGD, count),
    );
    violates(
        &ram,
        &v,
        &w,
        &[(HookKind::AllocPdClone, VmiRule::CloneSourceNotL2 { pfn: never, source: pt, source_type: l1::<M>() })],
        || v.alloc_pd_clone(never, pt, M::USER_PTRS_PER_PGD, M::PTRS_PER_PGD - M::USER_PTRS_PER_PGD),
    );
    v.release_pt(pt);
    v.release_pd(pd);
    assert_eq!(v.violation_count(), 0);
    v.teardown().unwrap();
}

fn rom_calls_refuse_bad_flags_with_a_typed_error<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    let before = snapshot(&ram, &v, &[p]);
    assert!(matches!(v.release_page(p, l1::<M>()), Err(VmiRule::ReleaseUntyped { pfn, .. }) if pfn == p));
    assert!(v.allocate_page(p, PageType::PDP, p, 0, 0).is_err(), "a PDPT is never typed");
    assert_eq!(v.violation_count(), 0, "the ROM calls answer, they log nothing");
    assert!(before == snapshot(&ram, &v, &[p]));
    v.teardown().unwrap();
}

/// `teardown` with pages typed, then a second `teardown`: typed errors, nothing changes.
fn teardown_twice_is_a_typed_error<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let p = zeroed(&ram);
    v.alloc_pt(p);
    let before = snapshot(&ram, &v, &[p]);
    assert_eq!(v.teardown(), Err(TeardownError::PagesTyped { typed: 1 }));
    assert!(before == snapshot(&ram, &v, &[p]));
    v.release_pt(p);
    assert_eq!(v.teardown(), Ok(()));
    let before = snapshot(&ram, &v, &[p]);
    assert_eq!(v.teardown(), Err(TeardownError::AlreadyTornDown));
    assert!(before == snapshot(&ram, &v, &[p]));
    assert_eq!(TeardownError::AlreadyTornDown.to_string(), "vmi: teardown after teardown: nothing left to give back");
    ram.free_frame(p);
    assert_eq!(ram.frames_in_use(), 0);
}

both_modes!(
    page_type_hooks_refuse_bad_pages,
    rom_calls_refuse_bad_flags_with_a_typed_error,
    teardown_twice_is_a_typed_error,
);
