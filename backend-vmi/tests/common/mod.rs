//! Shared set-up for the VMI backend tests.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use backend_vmi::*;
pub use i386_mm::*;
pub use mm_testkit::{EmulatedRam, HostCpu};
pub use paravirt_core::{Hook, Inspect, Recorder};

/// The backend under test, over emulated RAM.
pub type V<'r, M> = Vmi<M, &'r EmulatedRam>;

/// A record-and-continue backend over `ram`.
pub fn vmi<M: PagingMode>(ram: &EmulatedRam) -> V<'_, M> {
    Vmi::<M, &EmulatedRam>::new(ram, Policy::Record).expect("shadow pool")
}

/// A zeroed frame.
pub fn zeroed(ram: &EmulatedRam) -> Pfn {
    alloc_zeroed(ram).expect("frame")
}

/// The slot of entry `i` of `table`.
pub fn at<M: PagingMode>(ram: &EmulatedRam, table: Pfn, i: u32) -> EntrySlot {
    slot(ram, table, i, M::PAE)
}

/// Entry `i` of `table`.
pub fn entry<M: PagingMode>(ram: &EmulatedRam, table: Pfn, i: u32) -> u64 {
    read_entry(ram, table, i, M::PAE)
}

/// Physical address of entry `i` of `table` (for writes behind the backend's back).
pub fn entry_pa<M: PagingMode>(table: Pfn, i: u32) -> u64 {
    table.phys() + (i * M::ENTRY_SIZE) as u64
}

/// Every divergence `verify_each` reports.
pub fn divergences<M: PagingMode>(v: &V<'_, M>) -> Vec<Divergence> {
    let mut out = Vec::new();
    v.verify_each(&mut |d| out.push(*d));
    out
}

/// Every violation recorded.
pub fn violations<M: PagingMode>(v: &V<'_, M>) -> Vec<Violation> {
    (0..RECORDED_VIOLATIONS).map_while(|i| v.violation(i)).collect()
}

/// Asserts the backend verifies clean and recorded no violation.
#[track_caller]
pub fn assert_clean<M: PagingMode>(v: &V<'_, M>, step: &str) {
    let mut report = String::new();
    let ok = v.verify(&mut report);
    assert!(ok, "{step} ({}): shadows diverge:\n{report}", M::NAME);
    assert_eq!(v.violation_count(), 0, "{step} ({}): violations {:?}", M::NAME, violations(v));
}

/// Asserts exactly these violations were recorded, then forgets them.
#[track_caller]
pub fn take_violations<M: PagingMode>(v: &V<'_, M>, want: &[Violation]) {
    assert_eq!(violations(v), want, "({})", M::NAME);
    assert_eq!(v.violation_count(), want.len());
    v.clear_violations();
}

/// A directory entry linking page table `pt`.
pub fn table_entry(pt: Pfn) -> u64 {
    pt.phys() | PAGE_TABLE.bits()
}

/// The type `alloc_pt` gives in mode `M`.
pub fn l1<M: PagingMode>() -> PageType {
    PageType::l1::<M>()
}

/// The type `alloc_pd` gives in mode `M`.
pub fn l2<M: PagingMode>() -> PageType {
    PageType::l2::<M>()
}

/// Each test body runs once per paging mode.
pub use mm_testkit::both_modes;

/// The directory slot mapping `va` under `root` (the pgd entry in two-level mode, the pmd
/// entry in PAE).
pub fn dir_slot<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> EntrySlot {
    let (t, i) = i386_mm::walk::pmd_table::<M, _>(ram, root, va).expect("pmd present");
    slot(ram, t, i, M::PAE)
}

/// The page table mapping user address `va` under `root`.
pub fn pt_of<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> Pfn {
    let s = dir_slot::<M>(ram, root, va);
    Pfn::from_phys(entry::<M>(ram, s.table, s.index) & M::ADDR_MASK)
}
