//! Several vCPUs: a base pointer per vCPU, a root loaded on any vCPU keeps its reference, an
//! unpin of a root another vCPU runs on is refused, and the multicast flushes reach the
//! platform's flush with the vCPU mask.

mod common;
use common::*;
use std::cell::Cell;

thread_local! {
    /// The vCPU the calling test thread plays.
    static CPU: Cell<usize> = const { Cell::new(0) };
    /// The last multicast flush the platform was asked for: (mask, address).
    static FLUSHED: Cell<Option<(u32, u32)>> = const { Cell::new(None) };
}

fn cpu() -> usize {
    CPU.with(Cell::get)
}

fn on(n: usize) {
    CPU.with(|c| c.set(n));
}

fn record_flush(mask: u32, addr: u32) {
    FLUSHED.with(|f| f.set(Some((mask, addr))));
}

/// [`machine`] with a vCPU number source and a recording multicast flush, swapper loaded on
/// vCPU 0.
fn smp_machine<M: PagingMode>(f: impl FnOnce(Env<'_, M>)) {
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::new(&ram).with_vcpu_id(cpu).with_flush_multi(record_flush);
    hv.init_frametable().expect("frame table");
    let xen = X::<M>::boot(&hv, Policy::Record).expect("guest page flags");
    let ptwr = |fault: Fault, val: u32| hv.ptwr_do_page_fault(fault.addr, u64::from(val), 4).is_ok();
    let cpu = HostCpu::<M>::new(&ram).with_write_fault_handler(&ptwr);
    let opts = InitOptions { reserve_top: hv.reserve_top(), ..InitOptions::default() };
    let k = KernelMm::pagetable_init(&ram, &xen, &cpu, opts).expect("pagetable_init");
    on(0);
    k.activate_swapper();
    f(Env { ram: &ram, hv: &hv, xen: &xen, cpu: &cpu, k });
}

fn each_vcpu_has_its_base_pointer_and_a_loaded_root_cannot_be_unpinned<M: PagingMode>() {
    smp_machine::<M>(|e| {
        let swapper = e.k.swapper_pg_dir();
        on(1);
        let a = e.k.create().unwrap();
        e.k.activate(&a);
        assert_eq!(e.hv.base(), Some(a.pgd()), "vCPU 1 runs on its address space");
        assert!(e.hv.is_pinned(a.pgd()));
        on(0);
        assert_eq!(e.hv.base(), Some(swapper), "vCPU 1's NEW_BASEPTR left vCPU 0's base alone");
        assert_eq!(e.hv.page_info(swapper).count, 2, "pin + vCPU 0's base pointer");
        assert_eq!(
            ext::<M>(e.hv, MmuextOp::UnpinTable(a.pgd())),
            Err(XenError::UnpinLoaded { pfn: a.pgd(), vcpu: 1 }),
            "vCPU 1 still runs on it"
        );
        assert!(e.hv.is_pinned(a.pgd()), "the refused unpin changed nothing");
        on(1);
        e.k.activate_swapper();
        e.k.destroy(a);
        on(0);
        shutdown_clean(e);
    });
}

fn multicast_flushes_reach_the_platform_with_the_vcpu_mask<M: PagingMode>() {
    smp_machine::<M>(|e| {
        assert!(e.xen.flush_tlb_others(0b1110, paravirt_core::TLB_FLUSH_ALL), "Xen flushes, the guest sends no IPI");
        assert_eq!(FLUSHED.with(Cell::get), Some((0b1110, paravirt_core::TLB_FLUSH_ALL)));
        assert!(e.xen.flush_tlb_others(0b10, 0xC800_0000));
        assert_eq!(FLUSHED.with(Cell::get), Some((0b10, 0xC800_0000)));
        let s = e.xen.stats();
        assert_eq!((s.mmuext[MMUEXT_TLB_FLUSH_MULTI as usize], s.mmuext[MMUEXT_INVLPG_MULTI as usize]), (1, 1));
        shutdown_clean(e);
    });
}

both_modes!(
    each_vcpu_has_its_base_pointer_and_a_loaded_root_cannot_be_unpinned,
    multicast_flushes_reach_the_platform_with_the_vcpu_mask,
);
