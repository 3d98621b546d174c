//! The model's own stores into a pinned PAE table (inside `mmu_update`) are single 64-bit
//! stores: a present→present change is never visible half-written.
mod common;
use common::*;
use mm_testkit::StoreLog;

const UA: u32 = 0x4000_1000;

#[test]
fn pae_mmu_update_of_a_pinned_pte_goes_from_old_to_new_in_one_store() {
    booted::<Pae>(Policy::Panic, |e| {
        let mut a = e.k.create().unwrap();
        let f = e.ram.alloc_frame().unwrap();
        e.k.map(&mut a, UA, f, PteFlags::RW | PteFlags::USER | PteFlags::NX).unwrap();
        e.k.activate(&a); // pins the tree: entry writes go through mmu_update now
        let (dir, idx) = walk::pmd_table::<Pae, _>(e.ram, a.pgd(), UA).unwrap();
        let l1 = read_entry::<Pae, Pmd, _>(e.ram, dir, idx).pfn();
        let addr = e.ram.frame_ptr(l1).as_ptr() as usize + Pae::pte_index(UA) as usize * 8;
        let old = read_raw::<Pae, _>(e.ram, l1, Pae::pte_index(UA));
        assert_eq!(old, Pte::new(f, PteFlags::PRESENT | PteFlags::RW | PteFlags::USER | PteFlags::NX).raw());
        let new = Pte::new(f, PteFlags::PRESENT | PteFlags::USER).raw();
        let log = StoreLog::start();
        e.k.protect(&mut a, UA, PteFlags::USER).unwrap();
        let seen = log.values_at(addr, old);
        drop(log);
        assert_eq!(seen, [old, new], "one store by the hypervisor, no torn value");
        assert_eq!(e.xen.violations(), 0);
        assert_eq!(e.k.unmap(&mut a, UA), Ok(f));
        e.k.destroy(a);
        e.ram.free_frame(f);
    });
}
