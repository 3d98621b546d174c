//! Bug classes: the backend is a checker. Each test builds a wrong sequence on top of a
//! correct kernel and shows where it is caught.
mod common;
use common::*;

struct Machine<'r, M: PagingMode> {
    k: KernelMm<M, &'r V<'r, M>, &'r EmulatedRam, &'r HostCpu<'r, M>>,
}

/// A fresh 16 MiB machine with a recording VMI backend and the kernel's boot tables loaded:
/// binds the RAM, the backend, the CPU and the booted kernel to the names given.
macro_rules! booted {
    ($ram:ident, $v:ident, $cpu:ident, $m:ident) => {
        let $ram = EmulatedRam::sixteen_mib();
        let $v = vmi::<M>(&$ram);
        let $cpu = HostCpu::<M>::new(&$ram);
        let $m = boot(&$ram, &$v, &$cpu);
    };
}

fn boot<'r, M: PagingMode>(ram: &'r EmulatedRam, v: &'r V<'r, M>, cpu: &'r HostCpu<'r, M>) -> Machine<'r, M> {
    let k = KernelMm::<M, _, _, _>::pagetable_init(ram, v, cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    assert_clean(v, "boot");
    Machine { k }
}

const VA: u32 = 0x4000_0000;

fn poison<M: PagingMode>() -> u64 {
    if M::PAE {
        0xa5a5_a5a5_a5a5_a5a5
    } else {
        0xa5a5_a5a5
    }
}

fn table_linked_without_alloc_pt_is_caught_at_the_linking_write<M: PagingMode>() {
    booted!(ram, v, cpu, m);
    let mut a = m.k.create().unwrap();
    let dir = dir_slot::<M>(&ram, a.pgd(), VA);
    // pmd_populate without paravirt_alloc_pt (i386-mm's `bug-missing-alloc-pt`).
    let pt = zeroed(&ram);
    v.set_pmd(dir, table_entry(pt));
    let rule =
        VmiRule::UnannouncedChild { table: dir.table(), index: dir.index(), child: pt, child_type: PageType::NORMAL };
    assert_eq!(violations(&v), [Violation { hook: HookKind::SetPmd, rule }], "caught at the linking write, not later");
    // The kernel carries on: its PTE write goes into a table the backend never heard of.
    let f = ram.alloc_frame().unwrap();
    m.k.map(&mut a, VA, f, PteFlags::RW | PteFlags::USER).unwrap();
    assert_eq!(
        v.violation(1),
        Some(Violation {
            hook: HookKind::SetPteAt,
            rule: VmiRule::WriteUntyped { table: pt, index: M::pte_index(VA) }
        })
    );
    // The guest tables map VA, but the CPU walks the shadows: a real page fault.
    assert!(m.k.translate(&a, VA).is_some());
    m.k.activate(&a);
    let fault = cpu.read_u32(VA).unwrap_err();
    assert_eq!((fault.vector, fault.addr), (14, VA));
    assert!(divergences(&v).contains(&Divergence::UnshadowedLink {
        table: dir.table(),
        index: dir.index(),
        guest: table_entry(pt).raw(),
        child: pt,
        child_type: PageType::NORMAL
    }));
    let mut report = String::new();
    assert!(!v.verify(&mut report));
    assert!(report.contains(&format!("table pfn {} index {}", dir.table(), dir.index())), "{report}");
}

fn table_freed_without_release_is_caught<M: PagingMode>() {
    booted!(ram, v, cpu, m);
    let mut a = m.k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    m.k.map(&mut a, VA, f, PteFlags::RW | PteFlags::USER).unwrap();
    let pt = pt_of::<M>(&ram, a.pgd(), VA);
    let dir = dir_slot::<M>(&ram, a.pgd(), VA);
    // Unlinked properly, but freed without `release_pt` (a missing __pte_free_tlb hook).
    v.pmd_clear(dir);
    ram.free_frame(pt);
    assert_clean_violations(&v);
    // The freed table is poisoned; its shadow still holds the old entries: verify names it.
    let ds = divergences(&v);
    let sh = v.shadow_of(pt).unwrap();
    assert!(
        ds.contains(&Divergence::Entry {
            table: pt,
            shadow: sh,
            index: 1,
            guest: poison::<M>(),
            shadow_value: 0,
            expected: poison::<M>()
        }),
        "{:?}",
        &ds[..3]
    );
    // The frame comes back as a new page table: announced while still typed.
    let va2 = VA + M::LARGE_PAGE_SIZE;
    m.k.map(&mut a, va2, f, PteFlags::RW | PteFlags::USER).unwrap();
    assert_eq!(pt_of::<M>(&ram, a.pgd(), va2), pt, "the allocator handed the same frame back");
    let rule = VmiRule::AllocTyped { pfn: pt, current: l1::<M>(), requested: l1::<M>() };
    assert_eq!(v.violation(0), Some(Violation { hook: HookKind::AllocPt, rule }));
}

/// No violation so far (the bug is silent at the hooks: only verify() can see it).
#[track_caller]
fn assert_clean_violations<M: PagingMode>(v: &V<'_, M>) {
    assert_eq!(v.violation_count(), 0, "{:?}", violations(v));
}

fn entry_written_behind_the_backends_back_is_reported_by_verify<M: PagingMode>() {
    booted!(ram, v, cpu, m);
    let mut a = m.k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    m.k.map(&mut a, VA, f, PteFlags::RW | PteFlags::USER).unwrap();
    assert_clean(&v, "map");
    let pt = pt_of::<M>(&ram, a.pgd(), VA);
    let index = M::pte_index(VA) + 1;
    let val = Pte::new(f, PteFlags::from_bits_truncate(0x67));
    ram.write_u32(entry_pa::<M>(pt, index), val.raw() as u32);
    assert_clean_violations(&v);
    let ds = divergences(&v);
    let sh = v.shadow_of(pt).unwrap();
    let val_raw = val.raw();
    assert_eq!(
        ds[0],
        Divergence::Entry { table: pt, shadow: sh, index, guest: val_raw, shadow_value: 0, expected: val_raw }
    );
    // The translation check sees the same thing from the root.
    let root = if M::PAE { dir_slot::<M>(&ram, a.pgd(), VA).table() } else { a.pgd() };
    let va = VA + 0x1000;
    assert!(
        ds.iter().any(|d| matches!(d, Divergence::Translation { root: r, va: x, guest: Some(_), shadow: None }
            if *r == root && *x == va)),
        "{ds:?}"
    );
    let mut report = String::new();
    assert!(!v.verify(&mut report));
    assert!(report.contains(&format!("table pfn {pt} index {index}: guest {val_raw:#x}, shadow 0x0")), "{report}");
    // The CPU walks the shadow, so the sneaked-in mapping does not exist for it.
    m.k.activate(&a);
    assert!(m.k.translate(&a, va).is_some());
    assert_eq!(cpu.read_u32(va).map_err(|f| f.vector), Err(14));
    // Written back through the hook, the shadow agrees again.
    v.set_pte(at::<M, _>(&ram, pt, index), val);
    assert_clean(&v, "rewritten through set_pte");
    assert_eq!(cpu.read_u32(va), cpu.read_u32(VA));
}

fn directory_entry_changed_behind_the_backends_back_is_reported<M: PagingMode>() {
    booted!(ram, v, cpu, m);
    // Drop a large page of the kernel's linear map directly in the directory.
    let dir = dir_slot::<M>(&ram, m.k.swapper_pg_dir(), PAGE_OFFSET);
    let (table, index) = (dir.table(), dir.index());
    let old = raw::<M>(&ram, table, index);
    ram.write_u32(entry_pa::<M>(table, index), 0);
    let sh = v.shadow_of(table).unwrap();
    let ds = divergences(&v);
    assert_eq!(ds[0], Divergence::Entry { table, shadow: sh, index, guest: 0, shadow_value: old, expected: 0 });
    assert!(ds.iter().any(|d| matches!(d, Divergence::Translation { guest: None, shadow: Some(_), .. })));
}

fn clone_from_a_page_table_is_refused_and_the_pgd_cannot_be_loaded<M: PagingMode>() {
    booted!(ram, v, cpu, m);
    let mut a = m.k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    m.k.map(&mut a, VA, f, PteFlags::RW | PteFlags::USER).unwrap();
    let pt = pt_of::<M>(&ram, a.pgd(), VA);
    // A pgd_ctor cloning from the wrong page.
    let pgd = zeroed(&ram);
    v.alloc_pd_clone(pgd, pt, M::USER_PTRS_PER_PGD, M::KERNEL_PGD_PTRS);
    let rule = VmiRule::CloneSourceNotL2 { pfn: pgd, source: pt, source_type: l1::<M>() };
    assert_eq!(v.violation(0), Some(Violation { hook: HookKind::AllocPdClone, rule }));
    assert_eq!(v.page_type(pgd), PageType::NORMAL);
    let cr3 = pgd.phys().as_u64() as u32;
    assert_eq!(v.write_cr3(cr3), cr3);
    assert_eq!(v.violation(1), Some(Violation { hook: HookKind::WriteCr3, rule: VmiRule::UnknownRoot { cr3 } }));
}

both_modes!(
    table_linked_without_alloc_pt_is_caught_at_the_linking_write,
    table_freed_without_release_is_caught,
    entry_written_behind_the_backends_back_is_reported_by_verify,
    directory_entry_changed_behind_the_backends_back_is_reported,
    clone_from_a_page_table_is_refused_and_the_pgd_cannot_be_loaded,
);
