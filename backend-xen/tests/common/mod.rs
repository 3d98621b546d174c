//! Shared set-up for the backend-xen tests: a 16 MiB emulated machine, the Xen hypervisor model
//! over it and the guest side on top, the kernel's boot tables, and a macro that runs each test
//! in both paging modes.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use backend_xen::*;
pub use i386_mm::*;
pub use mm_testkit::{EmulatedRam, HostCpu};

/// Frames of the test machine (16 MiB).
pub const FRAMES: usize = 4096;

/// The hypervisor over emulated RAM.
pub type H<'a, M> = Hypervisor<M, &'a EmulatedRam>;
/// The backend (the guest side) on it.
pub type X<'a, M> = Xen<'a, M, &'a EmulatedRam>;
/// The kernel over it.
pub type K<'a, M> = KernelMm<M, &'a X<'a, M>, &'a EmulatedRam, &'a HostCpu<'a, M>>;

/// Each test body runs once per paging mode.
pub use mm_testkit::both_modes;

/// Everything a test needs, borrowed from [`machine`].
pub struct Env<'a, M: PagingMode> {
    pub ram: &'a EmulatedRam,
    pub hv: &'a H<'a, M>,
    pub xen: &'a X<'a, M>,
    pub cpu: &'a HostCpu<'a, M>,
    pub k: K<'a, M>,
}

impl<M: PagingMode> Env<'_, M> {
    /// A new address space with one fresh frame mapped read-write at user address `va`,
    /// loaded (so its tree is pinned). Returns the space and the frame.
    pub fn space_with_page(&self, va: u32) -> (AddressSpace<M>, Pfn) {
        let mut a = self.k.create().unwrap();
        let f = self.ram.alloc_frame().unwrap();
        self.k.map(&mut a, va, f, PteFlags::RW | PteFlags::USER).unwrap();
        self.k.activate(&a);
        (a, f)
    }
}

/// Builds the machine, the model (with `policy`) and the kernel's boot tables
/// (`pagetable_init`, not yet activated, with the top of the address space reserved for Xen),
/// then runs `f`. The CPU hands a write fault on a read-only page to the hypervisor
/// (`ptwr_do_page_fault`), which emulates a store into a validated L1.
pub fn machine<M: PagingMode>(policy: Policy, f: impl FnOnce(Env<'_, M>)) {
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::boot(&ram).expect("frame table");
    let xen = X::<M>::boot(&hv, policy).expect("page flags");
    let ptwr = |fault: Fault, val: u32| hv.ptwr_do_page_fault(fault.addr, u64::from(val), 4).is_ok();
    let cpu = HostCpu::<M>::new(&ram).with_write_fault_handler(&ptwr);
    let opts = InitOptions { reserve_top: hv.reserve_top(), ..InitOptions::default() };
    let k = KernelMm::pagetable_init(&ram, &xen, &cpu, opts).expect("pagetable_init");
    f(Env { ram: &ram, hv: &hv, xen: &xen, cpu: &cpu, k });
}

/// [`machine`] with `swapper_pg_dir` loaded.
pub fn booted<M: PagingMode>(policy: Policy, f: impl FnOnce(Env<'_, M>)) {
    machine::<M>(policy, |e| {
        e.k.activate_swapper();
        f(e)
    });
}

/// The page table mapping `va` under `root`.
pub fn l1_of<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> Pfn {
    let (dir, idx) = walk::pmd_table::<M, _>(ram, root, va).expect("directory present");
    let e: Pmd = read_entry::<M, _, _>(ram, dir, idx);
    assert!(e.is_present() && !e.is_large(), "no page table for {va:#x}");
    e.pfn()
}

/// The pmd a PAE root's entry `index` points at.
pub fn pmd_of(ram: &EmulatedRam, root: Pfn, index: u32) -> Pfn {
    let e: Pud = read_entry::<Pae, _, _>(ram, root, index);
    assert!(e.is_present(), "no pmd in slot {index}");
    e.pfn()
}

/// Physical address of entry `index` of `table` (what `mmu_update` names).
pub fn entry_pa<M: PagingMode>(table: Pfn, index: u32) -> PhysAddr {
    PhysAddr::new(table.phys().as_u64() + index as u64 * M::ENTRY_SIZE as u64)
}

/// The slot of entry `index` of `table`, in emulated RAM that outlives every test's use of it.
pub fn slot_of<M: PagingMode, E: Entry>(ram: &EmulatedRam, table: Pfn, index: u32) -> Slot<E> {
    // SAFETY: `table` is a frame of `ram` (`slot` checks), and `ram` lives for the whole test,
    // longer than any slot a test makes.
    unsafe { slot::<M, E, _>(ram, table, index) }
}

/// The directory (two-level pgd or PAE pmd) and index whose entry maps `va` under `root`.
pub fn dir_of<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> (Pfn, u32) {
    walk::pmd_table::<M, _>(ram, root, va).expect("directory present")
}

/// Every page-table page of the tree under `root` (the root included), in walk order.
pub fn tables<M: PagingMode>(ram: &EmulatedRam, root: Pfn) -> Vec<(Pfn, walk::Level)> {
    let mut v = Vec::new();
    walk::visit::<M, _>(ram, root, 0, u32::MAX, &mut |x| {
        if let walk::Visit::Table { level, pfn, .. } = x {
            if !v.iter().any(|&(p, _)| p == pfn) {
                v.push((pfn, level));
            }
        }
    });
    v
}

/// The tables of the tree under `root` the guest pins with a hypercall of its own: the root
/// and the page tables (Linux's `xen_pgd_pin` never pins a PAE pmd: it is validated through
/// its L3 entry, the one in slot 3 as Xen's `PGT_pae_xen_l2`).
pub fn guest_pinned_tables<M: PagingMode>(ram: &EmulatedRam, root: Pfn) -> Vec<Pfn> {
    tables::<M>(ram, root).into_iter().filter(|t| t.1 != walk::Level::Pmd || !M::PAE).map(|t| t.0).collect()
}

/// The PAE pmds of the tree under `root` (none in two-level mode).
pub fn pmds<M: PagingMode>(ram: &EmulatedRam, root: Pfn) -> Vec<Pfn> {
    tables::<M>(ram, root).into_iter().filter(|t| M::PAE && t.1 == walk::Level::Pmd).map(|t| t.0).collect()
}

/// Whether the kernel's linear map (as seen through `root`) maps `pfn` writable.
pub fn linear_writable<M: PagingMode>(ram: &EmulatedRam, root: Pfn, pfn: Pfn) -> bool {
    walk::translate::<M, _>(ram, root, lowmem_va(pfn)).expect("in the linear map").flags.contains(PteFlags::RW)
}

/// The hypercalls traced since the last `clear_trace`, flushes left out.
pub fn calls<M: PagingMode>(hv: &H<'_, M>) -> Vec<TraceEntry> {
    let mut buf = [TraceEntry { call: Hypercall::MmuextOp(MmuextOp::TlbFlushLocal), error: None }; TRACE_LEN];
    let n = hv.trace(&mut buf).min(TRACE_LEN);
    buf[..n]
        .iter()
        .copied()
        .filter(|e| !matches!(e.call, Hypercall::MmuextOp(MmuextOp::TlbFlushLocal | MmuextOp::InvlpgLocal(_))))
        .collect()
}

/// The violations recorded so far (the first [`MAX_VIOLATIONS`]).
pub fn violations<M: PagingMode>(xen: &X<'_, M>) -> Vec<Violation<XenError>> {
    xen.violation_log().iter().collect()
}

/// The root level's page type in mode `M`.
pub fn root_ty<M: PagingMode>() -> PageType {
    if M::PAE {
        PageType::L3
    } else {
        PageType::L2
    }
}

/// A report from `verify`, with its verdict.
pub fn verify(x: &dyn Inspect) -> (bool, String) {
    let mut s = String::new();
    let ok = x.verify(&mut s);
    (ok, s)
}

/// Tears everything down (`load_boot_root`, `shutdown`) and checks the model holds nothing and
/// every frame is back.
pub fn shutdown_clean<M: PagingMode>(e: Env<'_, M>) {
    let Env { ram, hv, xen, k, .. } = e;
    k.load_boot_root();
    if let Err((_, err)) = k.shutdown() {
        panic!("shutdown refused: {err}");
    }
    let (ok, report) = verify(xen);
    assert!(ok, "{report}");
    assert_eq!(xen.violations(), 0, "{:?}", violations(xen));
    assert_eq!(xen.pages_held(), 0);
    assert_eq!(hv.pinned_tables().total(), 0);
    assert_eq!(xen.read_only_pages(), 0);
    assert_eq!(hv.typed_frames(), 0);
    assert_eq!(hv.base(), None);
    assert_eq!(hv.pt_base(), None);
    // The guest's page flags and the frame table go back: every frame is free again.
    assert!(xen.flag_frames() > 0 && hv.frametable_frames() > 0);
    xen.teardown().unwrap();
    hv.free_frametable().unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// A user address in the first user page table.
pub const UA: u32 = 0x0804_8000;
/// A user address under another pgd entry than [`UA`].
pub const UB: u32 = 0x4000_0000;

/// One `mmu_update` of entry `index` of `table` (a pfn) to `val`.
pub fn update<M: PagingMode>(hv: &H<'_, M>, table: Pfn, index: u32, val: u64) -> Result<(), XenError> {
    let mut done = 0;
    hv.mmu_update(&[MmuUpdate::normal(entry_pa::<M>(table, index), val)], &mut done)
}

/// One `mmuext_op`.
pub fn ext<M: PagingMode>(hv: &H<'_, M>, op: MmuextOp) -> Result<(), XenError> {
    let mut done = 0;
    hv.mmuext_op(&[op], &mut done)
}

/// A zeroed frame made read-only in the linear map, ready to become a table.
pub fn ro_frame<M: PagingMode>(e: &Env<'_, M>) -> Pfn {
    let f = alloc_zeroed(e.ram).unwrap();
    e.hv.update_va_mapping(lowmem_va(f), Pte::new(f, PAGE_KERNEL_RO), UvmFlags::INVLPG).unwrap();
    f
}
