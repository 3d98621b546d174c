//! TLB shootdown: a kernel-range unmap and `change_page_attr` make every other CPU flush
//! (`flush_tlb_others`) before the page or the table is reused. Two host CPUs share the
//! emulated RAM; the second caches kernel translations, and a missing shootdown shows as its
//! stale TLB hit.

mod common;
use common::*;
use i386_paging::Fault;
use paravirt_core::TLB_FLUSH_ALL;
use std::cell::RefCell;

/// CPU 0 of a two-CPU machine: its own [`HostCpu`], plus CPU 1 reached by "IPI".
struct Smp<'r, M: PagingMode> {
    me: HostCpu<'r, M>,
    other: &'r HostCpu<'r, M>,
    shootdowns: RefCell<Vec<u32>>,
}

impl<M: PagingMode> Cpu for Smp<'_, M> {
    fn write_cr3(&self, cr3: u32) {
        self.me.write_cr3(cr3)
    }
    fn read_cr3(&self) -> u32 {
        self.me.read_cr3()
    }
    fn load_boot_root(&self) {
        self.me.load_boot_root()
    }
    fn invlpg(&self, va: u32) {
        self.me.invlpg(va)
    }
    fn flush_tlb(&self) {
        self.me.flush_tlb()
    }
    fn flush_tlb_global(&self) {
        self.me.flush_tlb_global()
    }
    fn other_cpus(&self) -> u32 {
        0b10
    }
    fn flush_tlb_others(&self, mask: u32, addr: u32) {
        assert_eq!(mask, 0b10);
        self.shootdowns.borrow_mut().push(addr);
        if addr == TLB_FLUSH_ALL {
            self.other.flush_tlb_global();
        } else {
            self.other.invlpg(addr);
        }
    }
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        self.me.read_u32(va)
    }
    fn write_u32(&self, va: u32, val: u32) -> Result<(), Fault> {
        self.me.write_u32(va, val)
    }
}

type SK<'a, M> = KernelMm<M, &'a Rec, &'a EmulatedRam, &'a Smp<'a, M>>;

fn with_two_cpus<M: PagingMode>(f: impl FnOnce(&SK<'_, M>, &EmulatedRam, &HostCpu<'_, M>, &Smp<'_, M>)) {
    let ram = EmulatedRam::sixteen_mib();
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let other = HostCpu::<M>::new(&ram);
    other.set_pge(true);
    let cpu = Smp { me: HostCpu::<M>::new(&ram), other: &other, shootdowns: RefCell::new(Vec::new()) };
    let k = KernelMm::pagetable_init(&ram, &*rec, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    other.write_cr3(k.swapper_pg_dir().phys().as_u64() as u32);
    f(&k, &ram, &other, &cpu);
    other.load_boot_root();
    k.load_boot_root();
    k.shutdown().map_err(|(_, e)| e).unwrap();
}

fn tagged(ram: &EmulatedRam, tag: u32) -> Pfn {
    let f = ram.alloc_frame().unwrap();
    ram.write_u32(f.phys().as_u64(), tag);
    f
}

fn unmap_kernel_pages_flushes_the_other_cpus_once_before_freeing_the_tables<M: PagingMode>() {
    with_two_cpus::<M>(|k, ram, other, cpu| {
        let region = M::LARGE_PAGE_SIZE;
        let base = (k.vmalloc_start() + region - 1) & !(region - 1);
        let vas = [base, base + 0x1000, base + region];
        let before = ram.frames_in_use();
        let frames: Vec<Pfn> = (0..3).map(|i| tagged(ram, 0x100 + i)).collect();
        for (&va, &f) in vas.iter().zip(&frames) {
            k.map_kernel_page(va, f, PAGE_KERNEL).unwrap();
            let tag = ram.read_u32(f.phys().as_u64());
            assert_eq!(other.read_u32(va), Ok(tag), "CPU 1 caches the page");
            assert_eq!(k.cpu().read_u32(va), Ok(tag), "CPU 0 caches the page");
        }
        let mut got = [Pfn::new(0); 3];
        assert_eq!(k.unmap_kernel_pages(&[vas[0], vas[0]], &mut got), Err(MmError::AlreadyMapped(vas[0])));
        assert_eq!(k.unmap_kernel_pages(&[vas[0], base + 0x2000], &mut got), Err(MmError::NotMapped(base + 0x2000)));
        assert!(cpu.shootdowns.borrow().is_empty(), "a refused batch changes nothing");
        k.unmap_kernel_pages(&vas, &mut got).unwrap();
        assert_eq!(got.to_vec(), frames);
        assert_eq!(*cpu.shootdowns.borrow(), [TLB_FLUSH_ALL], "one shootdown for the batch");
        for &va in &vas {
            assert!(other.read_u32(va).is_err(), "CPU 1 still translates {va:#x}");
            assert!(k.cpu().read_u32(va).is_err(), "CPU 0 still translates {va:#x}");
        }
        assert!(other.stale_hits().is_empty() && cpu.me.stale_hits().is_empty());
        for f in frames {
            ram.free_frame(f);
        }
        assert_eq!(ram.frames_in_use(), before, "both page tables freed");
    });
}

fn unmap_kernel_page_and_change_page_attr_reach_the_other_cpus<M: PagingMode>() {
    with_two_cpus::<M>(|k, ram, other, cpu| {
        let va = k.vmalloc_start();
        let (f, g) = (tagged(ram, 1), tagged(ram, 2));
        k.map_kernel_page(va, f, PAGE_KERNEL).unwrap();
        k.map_kernel_page(va + 0x1000, g, PAGE_KERNEL).unwrap();
        assert_eq!(other.read_u32(va), Ok(1));
        assert_eq!(k.unmap_kernel_page(va), Ok(f));
        assert_eq!(*cpu.shootdowns.borrow(), [va], "the table stays: one address");
        assert!(other.read_u32(va).is_err());
        assert_eq!(k.unmap_kernel_page(va + 0x1000), Ok(g));
        assert_eq!(*cpu.shootdowns.borrow(), [va, TLB_FLUSH_ALL], "the table goes: everything");
        cpu.shootdowns.borrow_mut().clear();
        let p = tagged(ram, 3);
        let lva = lowmem_va(p);
        assert_eq!(other.read_u32(lva), Ok(3), "CPU 1 caches the linear-map page");
        let token = k.change_page_attr(p, PAGE_KERNEL_RO).unwrap();
        assert_eq!(*cpu.shootdowns.borrow(), [lva], "the page, before the caller's flush");
        assert!(other.write_u32(lva, 4).is_err(), "CPU 1 still writes through the old entry");
        token.flush(k);
        assert_eq!(*cpu.shootdowns.borrow(), [lva, TLB_FLUSH_ALL], "the page, then global_flush_tlb");
        k.change_page_attr(p, PAGE_KERNEL).unwrap().flush(k);
        assert!(other.stale_hits().is_empty());
        for x in [f, g, p] {
            ram.free_frame(x);
        }
    });
}

both_modes!(
    unmap_kernel_pages_flushes_the_other_cpus_once_before_freeing_the_tables,
    unmap_kernel_page_and_change_page_attr_reach_the_other_cpus,
);
