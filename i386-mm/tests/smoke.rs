//! Smoke test: boot tables, one address space, one mapping, teardown, in both modes.
use backend_native::Native;
use i386_mm::*;
use mm_testkit::{EmulatedRam, HostCpu};

fn run<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    assert_eq!(cpu.read_u32(PAGE_OFFSET + 0x1000).unwrap(), 0);
    let mut a = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    k.map(&mut a, 0x4000_0000, f, PteFlags::RW | PteFlags::USER).unwrap();
    k.activate(&a);
    cpu.write_u32(0x4000_0010, 0xdead_beef).unwrap();
    assert_eq!(cpu.read_u32(lowmem_va(f) + 0x10).unwrap(), 0xdead_beef);
    assert_eq!(k.unmap(&mut a, 0x4000_0000).unwrap(), f);
    k.destroy(a);
    ram.free_frame(f);
    let swapper = k.swapper_pg_dir();
    let (k, e) = k.shutdown().err().expect("swapper_pg_dir is loaded: refused");
    assert_eq!(e, MmError::RootLoaded(swapper));
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

#[test]
fn smoke_two_level() {
    run::<TwoLevel>();
}
#[test]
fn smoke_pae() {
    run::<Pae>();
}
