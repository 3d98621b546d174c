//! Several vCPUs: each keeps its own loaded root and (PAE) shadow PDPT; a root loaded on any
//! vCPU cannot be released; a `write_cr3` on one vCPU does not disturb another.

mod common;
use common::*;
use std::cell::Cell;

thread_local! {
    /// The vCPU the calling test thread plays.
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// The backend's `smp_processor_id()`: the test thread's vCPU.
fn cpu() -> usize {
    CPU.with(Cell::get)
}

fn on(n: usize) {
    CPU.with(|c| c.set(n));
}

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

fn each_vcpu_keeps_its_root_and_a_root_loaded_anywhere_stays<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram).with_vcpu_id(cpu);
    let (a, pd_a) = make_root::<M>(&ram, &v);
    let (b, pd_b) = make_root::<M>(&ram, &v);
    on(0);
    let hw0 = v.write_cr3(a.phys().as_u64() as u32);
    on(1);
    let hw1 = v.write_cr3(b.phys().as_u64() as u32);
    assert_eq!(v.loaded_root(), Some(b), "vCPU 1 sees its own root");
    if M::PAE {
        assert_ne!(hw0, hw1, "one shadow PDPT per vCPU");
        let s1 = v.shadow_pdpt().unwrap();
        assert_eq!(pud::<M>(&ram, s1, 0), pdpt_entry(v.shadow_of(pd_b).unwrap()));
    } else {
        assert_eq!(hw1 as u64, v.shadow_of(pd_b).unwrap().phys().as_u64());
    }
    on(0);
    assert_eq!(v.loaded_root(), Some(a), "vCPU 1's write_cr3 left vCPU 0's root alone");
    if M::PAE {
        let s0 = v.shadow_pdpt().unwrap();
        assert_eq!(s0.phys().as_u64(), hw0 as u64);
        assert_eq!(pud::<M>(&ram, s0, 0), pdpt_entry(v.shadow_of(pd_a).unwrap()), "vCPU 0's PDPT untouched");
    }
    assert_clean(&v, "two vCPUs, two roots");
    // vCPU 0 releases `b`, loaded on vCPU 1: refused.
    let before = v.stats().violations;
    v.release_pd(pd_b);
    if !M::PAE {
        assert_eq!(v.stats().violations, before + 1, "b is loaded on vCPU 1");
        assert!(violations(&v).iter().any(|x| x.rule == VmiRule::ReleaseLoaded { pfn: b }));
    }
    // exit_mmap forgets the roots on every vCPU; then releases are clean.
    v.exit_mmap(a);
    v.exit_mmap(b);
    on(1);
    assert_eq!(v.loaded_root(), None, "exit_mmap on vCPU 0 unloaded b from vCPU 1");
}

fn release_of_a_root_loaded_on_another_vcpu_is_refused<M: PagingMode>() {
    if M::PAE {
        return; // a PAE root (the PDPT) is never announced, so never released
    }
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram).with_vcpu_id(cpu);
    let (a, _) = make_root::<M>(&ram, &v);
    on(2);
    v.write_cr3(a.phys().as_u64() as u32);
    on(3);
    v.release_pd(a);
    assert_eq!(violations(&v).last().map(|x| x.rule), Some(VmiRule::ReleaseLoaded { pfn: a }));
}

both_modes!(
    each_vcpu_keeps_its_root_and_a_root_loaded_anywhere_stays,
    release_of_a_root_loaded_on_another_vcpu_is_refused,
);
