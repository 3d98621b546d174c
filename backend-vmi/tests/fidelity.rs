//! Where the model answers as `arch/i386/kernel/vmi.c` (Linux 2.6.21) does, and where it
//! deliberately checks more (checker rules, [`Origin::Checker`]): each test names the function
//! whose answer it pins.
mod common;
use common::*;

const UA: u32 = 0x4000_0000;

/// `vmi_set_pte` checks `VMI_PAGE_PTE | VMI_PAGE_PD` ("because of set_pmd_pte, this can be
/// called on PT or PD layers") and `vmi_set_pte_atomic` checks nothing, so Linux would not
/// object to either write below. The model reports them (`WrongLevel`, `WriteUntyped`) as
/// checker rules, never as VMI's own, and mirrors the write by the table's real level, so the
/// shadow stays exact.
fn set_pte_on_a_directory_and_unchecked_set_pte_atomic_are_checker_rules<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pd, pt, untyped) = (zeroed(&ram), zeroed(&ram), zeroed(&ram));
    v.alloc_pd(pd);
    v.alloc_pt(pt);
    // set_pmd_pte's way of installing a large page: set_pte on a directory entry.
    let big = large(0x40_0000, PAGE_KERNEL);
    v.set_pte(at::<M, Pte>(&ram, pd, 1), Pte::from_raw(big.raw()));
    v.set_pte_atomic(at::<M, Pte>(&ram, untyped, 2), Pte::new(pt, PAGE_KERNEL_RO));
    let found = violations(&v);
    assert_eq!(
        found.iter().map(|x| (x.hook, x.rule)).collect::<Vec<_>>(),
        vec![
            (HookKind::SetPte, VmiRule::WrongLevel { table: pd, index: 1, current: l2::<M>() }),
            (HookKind::SetPteAtomic, VmiRule::WriteUntyped { table: untyped, index: 2 }),
        ]
    );
    assert!(found.iter().all(|x| x.rule.origin() == Origin::Checker), "not VMI's own checks");
    assert_eq!(v.violation_log().checker_total(), 2);
    assert_eq!(pmd::<M>(&ram, v.shadow_of(pd).unwrap(), 1), big, "mirrored as the directory entry it is");
    v.clear_violations();
    assert_clean(&v, "after the writes");
}

/// Linux 2.6.21's `pagetable_init` points every PAE PDPT slot at `empty_zero_page` first, and
/// `vmi_check_page_type` skips the PDP level ("PAE can have multiple roots per page"): a PDPT
/// entry linking a page of zeroes is no violation, and the shadow PDPT links it as it is (it
/// maps nothing).
fn pdpt_slots_linking_a_page_of_zeroes_load_without_violation<M: PagingMode>() {
    if !M::PAE {
        return;
    }
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &v, &cpu, InitOptions::default()).unwrap();
    let swapper = k.swapper_pg_dir();
    let zero = zeroed(&ram);
    for i in 0..3 {
        v.set_pud(at::<M, Pud>(&ram, swapper, i), pdpt_entry(zero));
    }
    k.activate_swapper();
    assert_clean(&v, "write_cr3 of a PDPT with empty_zero_page slots");
    assert_eq!(pud::<M>(&ram, v.shadow_pdpt().unwrap(), 0), pdpt_entry(zero));
    assert_eq!(cpu.read_u32(PAGE_OFFSET + 0x2000), Ok(ram.read_u32(0x2000)));
    assert!(cpu.read_u32(0x0040_0000).is_err(), "the zero page maps nothing");
    for i in 0..3 {
        v.set_pud(at::<M, Pud>(&ram, swapper, i), Pud::EMPTY);
    }
    ram.free_frame(zero);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_clean(&v, "shutdown");
    v.teardown().unwrap();
}

/// `vmi_release_pt` / `vmi_release_pd` end in `vmi_set_page_type(pfn, VMI_PAGE_NORMAL)`, which
/// checks only `BUG_ON(page->type == VMI_PAGE_NORMAL)`: a release of an untyped page is VMI's
/// rule; a release naming the wrong level is the model's (a checker rule), refused so the page
/// keeps its type and shadow.
fn release_checks_only_that_the_page_is_typed_the_level_is_a_checker_rule<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let (pt, untyped) = (zeroed(&ram), zeroed(&ram));
    v.alloc_pt(pt);
    v.release_pd(pt);
    v.release_pt(untyped);
    let found = violations(&v);
    assert_eq!(found[0].rule, VmiRule::ReleaseWrongLevel { pfn: pt, current: l1::<M>(), requested: l2::<M>() });
    assert_eq!(found[0].rule.origin(), Origin::Checker);
    assert_eq!(found[1].rule, VmiRule::ReleaseUntyped { pfn: untyped, requested: l1::<M>() });
    assert_eq!(found[1].rule.origin(), Origin::Hypervisor);
    assert_eq!(v.page_type(pt), l1::<M>());
    v.clear_violations();
    v.release_pt(pt);
    assert_clean(&v, "released");
}

/// `vmi_set_page_type` before `vmi_apply_boot_page_allocations` only records the type
/// (`record_page_type`): `swapper_pg_dir` "already has data on it", so nothing is checked
/// then. After it, every allocation and release is checked.
fn boot_allocations_are_recorded_not_checked_until_applied<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram).with_boot_recording();
    let (with_data, pt) = (zeroed(&ram), zeroed(&ram));
    ram.write_u32(entry_pa::<M>(with_data, 5), 2); // not present: links nothing
    v.alloc_pd(with_data);
    v.release_pt(pt);
    assert_clean(&v, "boot: recorded, not checked");
    assert_eq!(v.page_type(with_data), l2::<M>());
    assert_eq!(raw::<M>(&ram, v.shadow_of(with_data).unwrap(), 5), 2, "shadowed all the same");
    v.apply_boot_page_allocations();
    ram.write_u32(entry_pa::<M>(pt, 3), 2);
    v.alloc_pt(pt);
    v.release_pt(pt);
    v.release_pt(pt);
    take_violations(
        &v,
        &[
            (HookKind::AllocPt, VmiRule::NotZeroed { pfn: pt, index: 3, value: 2 }),
            (HookKind::ReleasePt, VmiRule::ReleaseUntyped { pfn: pt, requested: l1::<M>() }),
        ],
    );
}

/// `VMI_PAGE_DEFER` ("may queue update until TLB inval", `vmi_flags_addr_defer`): with
/// deferral on, a change of a present PTE of the loaded address space reaches the shadow at the
/// next `InvalPage` / `FlushTLB` / CR3 load. A kernel that forgets the flush leaves a stale
/// shadow, the CPU still using the old translation, and `verify` reports it.
fn a_missing_flush_leaves_a_stale_shadow_when_updates_are_deferred<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram).with_deferred_updates();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &v, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let mut a = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    k.map(&mut a, UA, f, PteFlags::RW | PteFlags::USER).unwrap();
    k.activate(&a);
    assert_eq!(v.pending_updates(), 0, "a new mapping is filled at once");
    cpu.write_u32(UA, 1).unwrap();
    // Read-only, written through the hook with no flush after it.
    let pt = pt_of::<M>(&ram, a.pgd(), UA);
    let idx = M::pte_index(UA);
    v.set_pte_at(a.pgd(), UA, at::<M, Pte>(&ram, pt, idx), Pte::new(f, PteFlags::PRESENT | PteFlags::USER));
    assert_eq!(v.pending_updates(), 1);
    let d = divergences(&v);
    assert!(
        d.iter().any(|d| matches!(d, Divergence::Entry { table, index, .. } if *table == pt && *index == idx)),
        "{d:?}"
    );
    cpu.write_u32(UA, 2).expect("the stale shadow still maps the page writable");
    // The flush makes it real.
    k.flush_tlb_single(UA);
    assert_eq!(v.pending_updates(), 0);
    assert_clean(&v, "after InvalPage");
    assert!(cpu.write_u32(UA, 3).is_err());
    // i386-mm's own protect flushes: never stale.
    k.protect(&mut a, UA, PteFlags::RW | PteFlags::USER).unwrap();
    assert_clean(&v, "protect flushes");
    cpu.write_u32(UA, 4).unwrap();
    assert!(v.stats().updates_deferred >= 2);
    k.destroy(a);
    ram.free_frame(f);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_clean(&v, "shutdown");
    v.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// The whole i386-mm scenario under a VMI that defers: the kernel flushes where Linux does, so
/// every shadow is exact at every step.
fn the_scenario_flushes_every_deferred_update<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram).with_deferred_updates();
    let cpu = HostCpu::<M>::new(&ram);
    let cfg = mm_scenario::Config { ptdump: false, ..Default::default() };
    let mut out = String::new();
    let s = mm_scenario::run::<M, _, _, _>(&ram, &v, &cpu, &cfg, &mut out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(s.held_after, 0);
    assert_eq!(v.pending_updates(), 0);
    v.teardown().unwrap();
}

both_modes!(
    set_pte_on_a_directory_and_unchecked_set_pte_atomic_are_checker_rules,
    pdpt_slots_linking_a_page_of_zeroes_load_without_violation,
    release_checks_only_that_the_page_is_typed_the_level_is_a_checker_rule,
    boot_allocations_are_recorded_not_checked_until_applied,
    a_missing_flush_leaves_a_stale_shadow_when_updates_are_deferred,
    the_scenario_flushes_every_deferred_update,
);
