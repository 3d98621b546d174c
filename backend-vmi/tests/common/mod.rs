//! Shared set-up for the VMI backend tests.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use backend_vmi::*;
pub use i386_mm::*;
pub use mm_testkit::{EmulatedRam, HostCpu};
pub use paravirt_core::{Hook, HookKind, Inspect, Recorder};

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

/// The slot of entry `i` of `table`, at the level the hook it is passed to takes.
pub fn at<M: PagingMode, E: Entry>(ram: &EmulatedRam, table: Pfn, i: u32) -> Slot<E> {
    // SAFETY: every test keeps its emulated RAM alive until it ends, and uses the slot only
    // before then.
    unsafe { slot::<M, E, _>(ram, table, i) }
}

/// Entry `i` of `table` as a `pte_t`.
pub fn pte<M: PagingMode>(ram: &EmulatedRam, table: Pfn, i: u32) -> Pte {
    read_entry::<M, Pte, _>(ram, table, i)
}

/// Entry `i` of `table` as a `pmd_t`.
pub fn pmd<M: PagingMode>(ram: &EmulatedRam, table: Pfn, i: u32) -> Pmd {
    read_entry::<M, Pmd, _>(ram, table, i)
}

/// Entry `i` of `table` as a PDPT entry.
pub fn pud<M: PagingMode>(ram: &EmulatedRam, table: Pfn, i: u32) -> Pud {
    read_entry::<M, Pud, _>(ram, table, i)
}

/// Entry `i` of `table`, raw (what a [`Divergence`] reports).
pub fn raw<M: PagingMode>(ram: &EmulatedRam, table: Pfn, i: u32) -> u64 {
    read_raw::<M, _>(ram, table, i)
}

/// Physical address of entry `i` of `table` (for writes behind the backend's back).
pub fn entry_pa<M: PagingMode>(table: Pfn, i: u32) -> u64 {
    table.phys().as_u64() + (i * M::ENTRY_SIZE) as u64
}

/// Every divergence `verify_each` reports.
pub fn divergences<M: PagingMode>(v: &V<'_, M>) -> Vec<Divergence> {
    let mut out = Vec::new();
    v.verify_each(&mut |d| out.push(*d));
    out
}

/// Every violation recorded.
pub fn violations<M: PagingMode>(v: &V<'_, M>) -> Vec<Violation<VmiRule>> {
    v.violation_log().iter().collect()
}

/// Asserts the backend verifies clean and recorded no violation.
#[track_caller]
pub fn assert_clean<M: PagingMode>(v: &V<'_, M>, step: &str) {
    let mut report = String::new();
    let ok = v.verify(&mut report);
    assert!(ok, "{step} ({}): shadows diverge:\n{report}", M::NAME);
    assert_eq!(v.violation_count(), 0, "{step} ({}): violations {:?}", M::NAME, violations(v));
}

/// Asserts exactly these violations (hook, rule) were recorded, then forgets them.
#[track_caller]
pub fn take_violations<M: PagingMode>(v: &V<'_, M>, want: &[(HookKind, VmiRule)]) {
    let want: Vec<_> = want.iter().map(|&(hook, rule)| Violation { hook, rule }).collect();
    assert_eq!(violations(v), want, "({})", M::NAME);
    assert_eq!(v.violation_count(), want.len());
    v.clear_violations();
}

/// A directory entry linking page table `pt`.
pub fn table_entry(pt: Pfn) -> Pmd {
    Pmd::new(pt, PAGE_TABLE)
}

/// A PDPT entry linking pmd `pmd`.
pub fn pdpt_entry(pmd: Pfn) -> Pud {
    Pud::new(pmd, PteFlags::PRESENT)
}

/// A large-page directory entry mapping `pa` with `flags`.
pub fn large(pa: u64, flags: PteFlags) -> Pmd {
    Pmd::large(PhysAddr::new(pa), flags)
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
pub fn dir_slot<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> PmdSlot {
    let (t, i) = walk::pmd_table::<M, _>(ram, root, va).expect("pmd present");
    at::<M, Pmd>(ram, t, i)
}

/// The page table mapping user address `va` under `root`.
pub fn pt_of<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> Pfn {
    let s = dir_slot::<M>(ram, root, va);
    s.read().pfn()
}
