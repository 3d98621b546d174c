//! Faults found in the call sites, each pinned by the input that showed it.
mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Runs `f` over a booted 8 MiB machine (`pse` chooses large pages) with swapper_pg_dir
/// loaded and recording cleared.
fn with_8mib<M: PagingMode>(pse: bool, f: impl FnOnce(&K<'_, M>, &EmulatedRam, &Rec)) {
    let ram = EmulatedRam::new(2048, 256);
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let cpu = HostCpu::<M>::new(&ram);
    let k =
        KernelMm::pagetable_init(&ram, &*rec, &cpu, InitOptions { pse, lowmem_end: None, ..InitOptions::default() })
            .unwrap();
    assert_eq!(k.uses_large_pages(), pse);
    k.activate_swapper();
    rec.clear();
    f(&k, &ram, &rec)
}

/// What `change_page_attr` can change, for the pages given: their translations, the split
/// tables, the deferred frees and the frames in use.
fn cpa_state<M: PagingMode>(k: &K<'_, M>, ram: &EmulatedRam, pfns: &[Pfn]) -> impl PartialEq + std::fmt::Debug {
    let t: Vec<_> = pfns.iter().map(|&p| k.translate_root(k.swapper_pg_dir(), lowmem_va(p))).collect();
    (t, k.split_tables(), k.deferred_frees(), ram.frames_in_use())
}

fn writable<M: PagingMode>(k: &K<'_, M>, pfn: Pfn) -> bool {
    let va = lowmem_va(pfn);
    let old = k.cpu().read_u32(va).unwrap();
    k.cpu().write_u32(va, old).is_ok()
}

// Fault 5: `change_page_attr` counted changes per page table, so restoring a page that was
// never changed undid the change of another page in the same table.

fn restoring_an_unchanged_page_next_to_a_changed_one_is_refused_and_changes_nothing<M: PagingMode>(pse: bool) {
    with_8mib::<M>(pse, |k, ram, rec| {
        let (changed, untouched) = (Pfn::new(0x345), Pfn::new(0x346));
        k.change_page_attr(changed, PAGE_KERNEL_RO).unwrap().ignore();
        k.global_flush_tlb();
        assert_eq!(k.split_tables(), usize::from(pse));
        assert!(!writable(k, changed));
        let before = cpa_state(k, ram, &[changed, untouched]);
        rec.clear();

        assert_eq!(k.change_page_attr(untouched, PAGE_KERNEL), Err(MmError::AttrNotChanged(untouched)));
        assert!(hooks(rec).is_empty(), "a refused call makes no hook call: {:?}", hooks(rec));
        k.global_flush_tlb();
        assert_eq!(cpa_state(k, ram, &[changed, untouched]), before, "nothing changed");
        assert!(!writable(k, changed), "the changed page stays read-only");
        assert!(writable(k, untouched));

        // The changed page is restored on its own, and with it the large page.
        k.change_page_attr(changed, PAGE_KERNEL).unwrap().ignore();
        k.global_flush_tlb();
        assert!(writable(k, changed));
        assert_eq!(k.split_tables(), 0);
        assert_eq!(k.deferred_frees(), 0);
        let t = k.translate_root(k.swapper_pg_dir(), lowmem_va(changed)).unwrap();
        assert_eq!(t.large, pse);
        assert_eq!(k.change_page_attr(changed, PAGE_KERNEL), Err(MmError::AttrNotChanged(changed)));
    });
}

fn restoring_an_unchanged_page_in_a_split_large_page_is_refused<M: PagingMode>() {
    restoring_an_unchanged_page_next_to_a_changed_one_is_refused_and_changes_nothing::<M>(true);
}

fn restoring_an_unchanged_page_in_a_boot_page_table_is_refused<M: PagingMode>() {
    restoring_an_unchanged_page_next_to_a_changed_one_is_refused_and_changes_nothing::<M>(false);
}

fn a_page_changed_twice_is_restored_by_one_call<M: PagingMode>(pse: bool) {
    with_8mib::<M>(pse, |k, ram, rec| {
        let p = Pfn::new(0x345);
        let frames = ram.frames_in_use();
        k.change_page_attr(p, PAGE_KERNEL_RO).unwrap().ignore();
        k.change_page_attr(p, PAGE_KERNEL_RO).unwrap().ignore();
        k.global_flush_tlb();
        rec.clear();
        k.change_page_attr(p, PAGE_KERNEL).unwrap().ignore();
        k.global_flush_tlb();
        assert!(writable(k, p));
        assert_eq!(rec.calls(HookKind::ReleasePt), u32::from(pse), "the split table goes with the last change");
        assert_eq!(k.split_tables(), 0);
        assert_eq!(ram.frames_in_use(), frames);
        assert_eq!(k.change_page_attr(p, PAGE_KERNEL), Err(MmError::AttrNotChanged(p)));
    });
}

fn a_page_changed_twice_in_a_split_large_page_is_restored_by_one_call<M: PagingMode>() {
    a_page_changed_twice_is_restored_by_one_call::<M>(true);
}

fn a_page_changed_twice_in_a_boot_page_table_is_restored_by_one_call<M: PagingMode>() {
    a_page_changed_twice_is_restored_by_one_call::<M>(false);
}

// Fault 2: `pgd_dtor` released the pgd before taking it off `pgd_list`, so a kernel-range
// update on another CPU in between wrote into a page the backend no longer took for a table.

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// What another CPU saw at the moment `release_pd` was called: whether the released table was
/// still on `pgd_list`, and whether a kernel-range update made then wrote into it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    released: Pfn,
    on_pgd_list: bool,
    written_by_kernel_update: bool,
}

// Fault 2: `pgd_dtor` released the pgd while it was still on `pgd_list`, so a kernel-range
// update on another CPU in between wrote into a page the backend no longer took for a table.
fn a_kernel_update_at_release_pd_does_not_reach_the_released_table<M: PagingMode>() {
    let ram = leak(EmulatedRam::sixteen_mib());
    let rec: &'static Rec = leak(Recorder::new(Native));
    let cpu = leak(HostCpu::<M>::new(ram));
    let k: &'static K<'static, M> = leak(KernelMm::pagetable_init(ram, rec, cpu, InitOptions::default()).unwrap());
    k.activate_swapper();
    let mut a = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    k.map(&mut a, 0x4000_0000, f, PteFlags::RW | PteFlags::USER).unwrap();
    k.activate(&a);
    let g = ram.alloc_frame().unwrap();
    let seen: &'static Mutex<Option<Seen>> = leak(Mutex::new(None));
    let fired: &'static AtomicBool = leak(AtomicBool::new(false));
    let pgd = a.pgd();
    // Right after the first release_pd returns, another CPU makes a kernel-range update that
    // needs a new page table.
    rec.clear();
    // Right after the first release_pd returns, another CPU starts a kernel-range update that
    // needs a new page table (it waits for pgd_lock if the releasing CPU still holds it).
    let other: &'static Mutex<Option<std::thread::JoinHandle<()>>> = leak(Mutex::new(None));
    rec.set_after(leak(move |h: &Hook| {
        if matches!(h, Hook::ReleasePd { .. }) && !fired.swap(true, Ordering::SeqCst) {
            *other.lock().unwrap() = Some(std::thread::spawn(move || {
                let released = pgd;
                let mut list = [Pfn::new(0); 64];
                let n = k.pgd_list(&mut list);
                k.map_kernel_page(0xE000_0000, g, PAGE_KERNEL).unwrap();
                let index = TwoLevel::pgd_index(0xE000_0000);
                let theirs = raw::<TwoLevel>(ram, k.swapper_pg_dir(), index);
                *seen.lock().unwrap() = Some(Seen {
                    released,
                    on_pgd_list: list[..n].contains(&released),
                    // (In PAE the pgd is a PDPT no kernel-range update touches.)
                    written_by_kernel_update: !M::PAE && raw::<TwoLevel>(ram, released, index) == theirs,
                });
            }));
        }
    }));
    k.destroy(a);
    other.lock().unwrap().take().expect("release_pd ran").join().unwrap();
    let seen = seen.lock().unwrap().take().expect("the other CPU ran");
    assert_eq!(seen, Seen { released: pgd, on_pgd_list: false, written_by_kernel_update: false });
    // The update reached swapper_pg_dir and every later pgd.
    let b = k.create().unwrap();
    assert_eq!(k.translate(&b, 0xE000_0000).map(|t| t.pa), Some(g.phys().as_u64()));
    k.destroy(b);
    assert_eq!(k.unmap_kernel_page(0xE000_0000), Ok(g));
    ram.free_frame(f);
    ram.free_frame(g);
}

both_modes!(
    a_kernel_update_at_release_pd_does_not_reach_the_released_table,
    restoring_an_unchanged_page_in_a_split_large_page_is_refused,
    restoring_an_unchanged_page_in_a_boot_page_table_is_refused,
    a_page_changed_twice_in_a_split_large_page_is_restored_by_one_call,
    a_page_changed_twice_in_a_boot_page_table_is_restored_by_one_call,
);
