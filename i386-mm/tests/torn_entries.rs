//! A PAE entry changed from present to present is never visible half-written: every value the
//! entry takes (replayed from the store log) is the old entry, the new one, or not present.
mod common;
use common::*;
use mm_testkit::StoreLog;

/// Host address of the PTE mapping `va` under `root`.
fn pte_addr<M: PagingMode>(ram: &EmulatedRam, root: Pfn, va: u32) -> usize {
    let (dir, idx) = walk::pmd_table::<M, _>(ram, root, va).unwrap();
    let pt = read_entry::<M, Pmd, _>(ram, dir, idx).pfn();
    ram.frame_ptr(pt).as_ptr() as usize + (M::pte_index(va) * M::ENTRY_SIZE) as usize
}

/// Asserts every value in `seen` is `old`, `new`, or not present.
fn no_torn_value(seen: &[u64], old: u64, new: u64) {
    for &v in seen {
        assert!(v == old || v == new || v & 1 == 0, "walker could see {v:#x}, neither {old:#x} nor {new:#x}");
    }
}

#[test]
fn pae_protect_goes_from_old_to_new_entry_in_one_store() {
    with_kernel::<Pae, _>(true, |k, ram, _| {
        let mut a = k.create().unwrap();
        let f = Pfn::new(0x106);
        k.map(&mut a, 0x4000_1000, f, PteFlags::RW | PteFlags::USER | PteFlags::NX).unwrap();
        let addr = pte_addr::<Pae>(ram, a.pgd(), 0x4000_1000);
        let old = raw::<Pae>(
            ram,
            read_entry::<Pae, Pmd, _>(ram, walk::pmd_table::<Pae, _>(ram, a.pgd(), 0x4000_1000).unwrap().0, 0).pfn(),
            1,
        );
        assert_eq!(old, 0x8000_0000_0010_6007);
        let log = StoreLog::start();
        k.protect(&mut a, 0x4000_1000, PteFlags::USER).unwrap();
        let seen = log.values_at(addr, old);
        drop(log);
        assert_eq!(seen, [0x8000_0000_0010_6007, 0x10_6005], "one store, no intermediate value");
        no_torn_value(&seen, old, 0x10_6005);
        assert_eq!(k.unmap(&mut a, 0x4000_1000), Ok(f));
        k.destroy(a);
    });
}

#[test]
fn pae_change_page_attr_rewrites_a_kernel_pte_in_one_store() {
    with_kernel::<Pae, _>(false, |k, ram, _| {
        let f = ram.alloc_frame().unwrap();
        let addr = pte_addr::<Pae>(ram, k.swapper_pg_dir(), lowmem_va(f));
        let old = (Pte::new(f, PAGE_KERNEL)).raw();
        let log = StoreLog::start();
        k.change_page_attr(f, PAGE_KERNEL_RO | PteFlags::NX).unwrap().flush(k);
        let new = Pte::new(f, PAGE_KERNEL_RO | PteFlags::NX).raw();
        k.change_page_attr(f, PAGE_KERNEL).unwrap().flush(k);
        let seen = log.values_at(addr, old);
        drop(log);
        assert_eq!(seen, [old, new, old]);
        no_torn_value(&seen, old, new);
        no_torn_value(&seen, new, old);
    });
}

#[test]
fn pae_split_and_revert_replace_the_kernel_directory_entry_in_one_store() {
    with_kernel::<Pae, _>(true, |k, ram, _| {
        let f = ram.alloc_frame().unwrap();
        let va = lowmem_va(f);
        let (dir, idx) = walk::pmd_table::<Pae, _>(ram, k.swapper_pg_dir(), va).unwrap();
        let addr = ram.frame_ptr(dir).as_ptr() as usize + idx as usize * 8;
        let large = raw::<Pae>(ram, dir, idx);
        let log = StoreLog::start();
        k.change_page_attr(f, PAGE_KERNEL_RO).unwrap().flush(k);
        let split = raw::<Pae>(ram, dir, idx);
        k.change_page_attr(f, PAGE_KERNEL).unwrap().flush(k);
        let seen = log.values_at(addr, large);
        drop(log);
        assert_eq!(seen, [large, split, large], "large → table → large, one store each");
    });
}
