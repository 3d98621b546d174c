//! The host CPU's TLB behaves as the hardware's: cached translations outlive table changes
//! until the right flush, global pages survive CR3 loads with CR4.PGE, PAE walks start from
//! the PDPT registers, and a freed frame reached through a stale entry is caught.

use i386_paging::{
    alloc_zeroed, read_entry, slot, Cpu, PagingMode, Pfn, PhysMem, Pmd, Pte, PteFlags, Pud, PAGE_TABLE, PF_PROT,
    PF_WRITE,
};
use mm_testkit::{both_modes, EmulatedRam, HostCpu};
use paravirt_core::native;

const VA: u32 = 0x0040_1000;
const RW: PteFlags = PteFlags::PRESENT.union(PteFlags::RW);
const RO: PteFlags = PteFlags::PRESENT;

/// A root with hand-built tables (the test kit sits below the mm code, so it builds its own).
struct Tables<'r, M: PagingMode> {
    ram: &'r EmulatedRam,
    root: Pfn,
    _m: std::marker::PhantomData<M>,
}

impl<'r, M: PagingMode> Tables<'r, M> {
    fn new(ram: &'r EmulatedRam) -> Self {
        let root = alloc_zeroed(ram).unwrap();
        if M::PAE {
            for i in 0..4 {
                let pmd = alloc_zeroed(ram).unwrap();
                // SAFETY: entry `i` of a frame of `ram`, used while `ram` lives.
                native::set(unsafe { slot::<M, Pud, _>(ram, root, i) }, Pud::new(pmd, PteFlags::PRESENT));
            }
        }
        Tables { ram, root, _m: std::marker::PhantomData }
    }

    fn cr3(&self) -> u32 {
        self.root.phys().as_u64() as u32
    }

    /// The directory table and index holding `va`'s directory entry.
    fn dir(&self, va: u32) -> (Pfn, u32) {
        if M::PAE {
            (read_entry::<M, Pud, _>(self.ram, self.root, va >> 30).pfn(), M::pmd_index(va))
        } else {
            (self.root, M::pgd_index(va))
        }
    }

    fn pmd_slot(&self, va: u32) -> i386_paging::PmdSlot {
        let (t, i) = self.dir(va);
        // SAFETY: a frame of `ram`, used while `ram` lives.
        unsafe { slot::<M, Pmd, _>(self.ram, t, i) }
    }

    /// The page table under `va`, linked if missing.
    fn pt(&self, va: u32) -> Pfn {
        let s = self.pmd_slot(va);
        let e = s.read();
        if e.is_present() {
            return e.pfn();
        }
        let pt = alloc_zeroed(self.ram).unwrap();
        native::set(s, Pmd::new(pt, PAGE_TABLE));
        pt
    }

    fn pte_slot(&self, va: u32) -> i386_paging::PteSlot {
        let pt = self.pt(va);
        // SAFETY: a frame of `ram`, used while `ram` lives.
        unsafe { slot::<M, Pte, _>(self.ram, pt, M::pte_index(va)) }
    }

    fn map(&self, va: u32, pfn: Pfn, flags: PteFlags) {
        native::set(self.pte_slot(va), Pte::new(pfn, flags));
    }

    fn unmap(&self, va: u32) {
        native::clear(self.pte_slot(va));
    }

    /// A data frame holding `tag` in its first word.
    fn frame(&self, tag: u32) -> Pfn {
        let f = alloc_zeroed(self.ram).unwrap();
        self.ram.write_u32(f.phys().as_u64(), tag);
        f
    }
}

fn with_machine<M: PagingMode>(f: impl FnOnce(&EmulatedRam, &Tables<'_, M>, &HostCpu<'_, M>)) {
    let ram = EmulatedRam::new(1024, 256);
    let t = Tables::<M>::new(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    cpu.write_cr3(t.cr3());
    f(&ram, &t, &cpu);
}

fn a_cached_translation_outlives_a_remap_until_invlpg<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        let (a, b) = (t.frame(0xA), t.frame(0xB));
        t.map(VA, a, RW);
        assert_eq!(cpu.read_u32(VA), Ok(0xA));
        t.map(VA, b, RW);
        assert_eq!(cpu.read_u32(VA), Ok(0xA), "the TLB still holds the old frame");
        assert_eq!(cpu.read_u32_uncached(VA), Ok(0xB));
        assert_eq!(cpu.stale_hits().len(), 1);
        cpu.invlpg(VA);
        assert_eq!(cpu.read_u32(VA), Ok(0xB));
        assert_eq!(cpu.stale_hits().len(), 1, "no stale use after the flush");
    });
}

fn an_unmapped_page_stays_reachable_until_flushed<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        t.map(VA, t.frame(7), RW);
        assert_eq!(cpu.read_u32(VA), Ok(7));
        t.unmap(VA);
        assert_eq!(cpu.read_u32(VA), Ok(7));
        cpu.flush_tlb();
        assert_eq!(cpu.read_u32(VA).unwrap_err().vector, 14);
    });
}

fn a_write_through_a_cached_read_only_entry_faults_until_the_fault_drops_it<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        t.map(VA, t.frame(1), RO);
        assert_eq!(cpu.read_u32(VA), Ok(1));
        t.map(VA, read_entry::<M, Pte, _>(t.ram, t.pt(VA), M::pte_index(VA)).pfn(), RW);
        let f = cpu.write_u32(VA, 2).unwrap_err();
        assert_eq!(f.error_code, PF_WRITE | PF_PROT, "a spurious fault from the cached read-only entry");
        assert_eq!(cpu.write_u32(VA, 2), Ok(()), "the fault dropped the entry: the walk sees RW");
    });
}

fn a_protection_downgrade_needs_a_flush<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        let f = t.frame(0);
        t.map(VA, f, RW);
        assert_eq!(cpu.write_u32(VA, 1), Ok(()));
        t.map(VA, f, RO);
        assert_eq!(cpu.write_u32(VA, 2), Ok(()), "stale RW entry: the write goes through");
        assert!(cpu.stale_hits()[0].write);
        cpu.invlpg(VA);
        assert_eq!(cpu.write_u32(VA, 3).unwrap_err().error_code, PF_WRITE | PF_PROT);
    });
}

fn a_cr3_load_keeps_global_entries_only_with_pge<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        let (g, l) = (0x0080_0000, 0x0080_1000);
        t.map(g, t.frame(0x6), RW | PteFlags::GLOBAL);
        t.map(l, t.frame(0x1), RW);
        assert!(cpu.pge());
        assert_eq!((cpu.read_u32(g), cpu.read_u32(l)), (Ok(6), Ok(1)));
        t.unmap(g);
        t.unmap(l);
        cpu.write_cr3(t.cr3());
        assert_eq!(cpu.read_u32(g), Ok(6), "a global entry survives a CR3 load");
        assert_eq!(cpu.read_u32(l).unwrap_err().vector, 14);
        cpu.flush_tlb();
        assert_eq!(cpu.read_u32(g), Ok(6), "and a CR3 reload");
        cpu.invlpg(g);
        assert_eq!(cpu.read_u32(g).unwrap_err().vector, 14, "invlpg drops a global entry");

        t.map(g, t.frame(0x7), RW | PteFlags::GLOBAL);
        assert_eq!(cpu.read_u32(g), Ok(7));
        t.unmap(g);
        cpu.flush_tlb_global();
        assert_eq!(cpu.read_u32(g).unwrap_err().vector, 14, "a CR4.PGE toggle drops everything");

        cpu.set_pge(false);
        t.map(g, t.frame(0x8), RW | PteFlags::GLOBAL);
        assert_eq!(cpu.read_u32(g), Ok(8));
        t.unmap(g);
        cpu.write_cr3(t.cr3());
        assert_eq!(cpu.read_u32(g).unwrap_err().vector, 14, "without PGE the G bit means nothing");
    });
}

fn a_cached_directory_entry_walks_an_unlinked_page_table<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        let (a, b) = (VA, VA + 0x1000);
        t.map(a, t.frame(0xA), RW);
        t.map(b, t.frame(0xB), RW);
        assert_eq!(cpu.read_u32(a), Ok(0xA));
        // Unlink the page table without a flush: the walk for `b` still starts at it.
        native::clear(t.pmd_slot(a));
        assert_eq!(cpu.read_u32_uncached(b).unwrap_err().vector, 14);
        assert_eq!(cpu.read_u32(b), Ok(0xB), "the paging-structure cache still points at the table");
        assert_eq!(cpu.tlb_len(), (2, 1));
        cpu.invlpg(a);
        assert_eq!(cpu.tlb_len(), (1, 0), "invlpg drops the whole paging-structure cache");
        assert_eq!(cpu.read_u32(b), Ok(0xB), "but not the translation of another address");
        cpu.invlpg(b);
        assert_eq!(cpu.read_u32(b).unwrap_err().vector, 14);
    });
}

fn a_large_page_is_one_entry<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        let base = 4 * M::LARGE_PAGE_SIZE;
        let pa = i386_paging::PhysAddr::new(0);
        native::set(t.pmd_slot(base), Pmd::large(pa, RW));
        t.ram.write_u32(0x3000, 0x33);
        assert_eq!(cpu.read_u32(base + 0x3000), Ok(0x33));
        assert!(cpu.cached(base + 0x5000).is_some_and(|e| e.large), "one entry covers the large page");
        native::clear(t.pmd_slot(base));
        cpu.invlpg(base + 0x5000);
        assert_eq!(cpu.read_u32(base + 0x3000).unwrap_err().vector, 14, "invlpg of any address in it drops it");
    });
}

fn each_vcpu_has_its_own_tlb<M: PagingMode>() {
    with_machine::<M>(|ram, t, cpu0| {
        let cpu1 = HostCpu::<M>::new(ram);
        cpu1.write_cr3(t.cr3());
        t.map(VA, t.frame(5), RW);
        assert_eq!((cpu0.read_u32(VA), cpu1.read_u32(VA)), (Ok(5), Ok(5)));
        t.unmap(VA);
        cpu0.invlpg(VA);
        assert_eq!(cpu0.read_u32(VA).unwrap_err().vector, 14);
        assert_eq!(cpu1.read_u32(VA), Ok(5), "a flush on one vCPU leaves the other's TLB alone");
    });
}

fn a_freed_data_page_behind_a_stale_entry_panics<M: PagingMode>() {
    with_machine::<M>(|ram, t, cpu| {
        let f = t.frame(9);
        t.map(VA, f, RW);
        assert_eq!(cpu.read_u32(VA), Ok(9));
        t.unmap(VA);
        ram.free_frame(f);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu.read_u32(VA)));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("stale TLB entry") && msg.contains("freed frame"), "{msg}");
    });
}

fn a_freed_page_table_behind_a_cached_directory_entry_panics<M: PagingMode>() {
    with_machine::<M>(|ram, t, cpu| {
        t.map(VA, t.frame(1), RW);
        t.map(VA + 0x1000, t.frame(2), RW);
        assert_eq!(cpu.read_u32(VA), Ok(1));
        let pt = t.pt(VA);
        native::clear(t.pmd_slot(VA));
        ram.free_frame(pt);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu.read_u32(VA + 0x1000)));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(msg.contains("cached directory entry") && msg.contains("freed frame"), "{msg}");
    });
}

fn the_tlb_fills_on_a_miss_and_not_on_a_fault<M: PagingMode>() {
    with_machine::<M>(|_, t, cpu| {
        assert_eq!(cpu.read_u32(VA).unwrap_err().vector, 14);
        assert_eq!(cpu.tlb_len(), (0, 0), "nothing cached for a faulting address");
        t.map(VA, t.frame(3), RW);
        assert_eq!(cpu.read_u32(VA), Ok(3), "a not-present entry is never cached");
        assert_eq!(cpu.read_u32(VA), Ok(3));
        assert_eq!(cpu.tlb_hits_and_misses(), (1, 2));
        assert_eq!(cpu.tlb_len(), (1, 1));
    });
}

/// PAE: the four PDPT entries are loaded with CR3; a walk never reads them from memory.
#[test]
fn pae_walks_start_from_the_pdpt_registers_loaded_with_cr3() {
    with_machine::<i386_paging::Pae>(|ram, t, cpu| {
        t.map(VA, t.frame(4), RW);
        // SAFETY: entry 0 of the root, a frame of `ram`.
        let s = unsafe { slot::<i386_paging::Pae, Pud, _>(ram, t.root, 0) };
        let old = s.read();
        native::clear(s);
        assert_eq!(cpu.read_u32(VA), Ok(4), "the PDPT register still holds the entry");
        cpu.invlpg(VA);
        assert_eq!(cpu.read_u32(VA), Ok(4), "invlpg does not reload the PDPT registers");
        cpu.flush_tlb();
        assert_eq!(cpu.read_u32(VA).unwrap_err().vector, 14, "a CR3 reload does");
        native::set(s, old);
        cpu.set_pge(false);
        assert_eq!(cpu.read_u32(VA), Ok(4), "so does a CR4.PGE change");
    });
}

both_modes!(
    a_cached_translation_outlives_a_remap_until_invlpg,
    an_unmapped_page_stays_reachable_until_flushed,
    a_write_through_a_cached_read_only_entry_faults_until_the_fault_drops_it,
    a_protection_downgrade_needs_a_flush,
    a_cr3_load_keeps_global_entries_only_with_pge,
    a_cached_directory_entry_walks_an_unlinked_page_table,
    a_large_page_is_one_entry,
    each_vcpu_has_its_own_tlb,
    a_freed_data_page_behind_a_stale_entry_panics,
    a_freed_page_table_behind_a_cached_directory_entry_panics,
    the_tlb_fills_on_a_miss_and_not_on_a_fault,
);
