//! Low memory laid out as Linux i386 does, across RAM sizes: the linear map ends at 896 MiB
//! (`MAXMEM`), the vmalloc area starts 8 to 16 MiB above `high_memory`, and RAM beyond low
//! memory is not linearly mapped.
mod common;
use common::*;

const MIB: u64 = 1 << 20;

/// Boots a kernel over `bytes` of RAM and checks the layout. The machine holds 16 MiB; the
/// rest exists only in the memory map (`Sparse`), which is all the layout depends on: the
/// kernel's page tables and the test's frames come from the real 16 MiB.
fn layout_for<M: PagingMode>(bytes: u64, pse: bool) {
    let frames = (bytes >> 12) as u32;
    let real = EmulatedRam::new(4096, 256);
    let ram = Sparse { ram: &real, max: Pfn::new(frames) };
    let cpu = HostCpu::<M>::new(&real);
    let k = KernelMm::<M, _, _, _>::pagetable_init(
        &ram,
        Native,
        &cpu,
        InitOptions { pse, lowmem_end: None, reserve_top: 0 },
    )
    .unwrap();
    let low = bytes.min(MAXMEM as u64);
    assert_eq!(k.lowmem_end().phys().as_u64(), low, "{bytes:#x} bytes of RAM");
    assert_eq!(k.high_memory() as u64, PAGE_OFFSET as u64 + low);
    let vs = k.vmalloc_start();
    assert_eq!(vs, vmalloc_start(k.high_memory()));
    assert!(vs >= k.high_memory() + VMALLOC_OFFSET && vs < k.high_memory() + 2 * VMALLOC_OFFSET);
    assert_eq!(vs % VMALLOC_OFFSET, 0);
    let root = k.swapper_pg_dir();
    // Every 1 MiB of low memory (and its last page) is linearly mapped to its own frame.
    let step = (MIB as u32) >> 12;
    for pfn in (0..k.lowmem_end().as_u32()).step_by(step as usize).chain([k.lowmem_end().as_u32() - 1]) {
        let t = k.translate_root(root, lowmem_va(Pfn::new(pfn))).expect("low memory is mapped");
        assert_eq!(t.pa, Pfn::new(pfn).phys().as_u64());
    }
    // Nothing past high_memory: not the gap, not RAM beyond low memory.
    for va in [k.high_memory(), vs - 0x1000] {
        assert_eq!(k.translate_root(root, va), None, "{va:#x} must be unmapped");
    }
    // The vmalloc area works from its first page; the page below it is refused.
    let f = ram.alloc_frame().unwrap();
    k.map_kernel_page(vs, f, PAGE_KERNEL).unwrap();
    assert_eq!(k.translate_root(root, vs).map(|t| t.pa), Some(f.phys().as_u64()));
    assert_eq!(k.map_kernel_page(vs - 0x1000, f, PAGE_KERNEL), Err(MmError::OutOfRange(vs - 0x1000)));
    assert_eq!(k.unmap_kernel_page(vs), Ok(f));
    ram.free_frame(f);
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(real.frames_in_use(), 0);
}

fn low_memory_and_the_vmalloc_area_follow_ram<M: PagingMode>() {
    // 4 KiB pages everywhere (the most tables), large pages at the edges.
    for mib in [16u64, 64, 512, 896, 1024, 2048, 4096] {
        layout_for::<M>(mib * MIB, false);
    }
    for mib in [16u64, 1024, 4096] {
        layout_for::<M>(mib * MIB, true);
    }
    layout_for::<M>(0x2000_1000, false); // 512 MiB and one page
}

/// The reported input: 512 MiB + 4 KiB of RAM, so low memory reaches 0xe0001000. An address in
/// the linear map is no vmalloc mapping: unmapping it is `NotMapped` and leaves the linear map
/// alone; mapping it is refused.
fn a_linear_map_address_is_not_in_the_vmalloc_area<M: PagingMode>() {
    for pse in [false, true] {
        let real = EmulatedRam::new(4096, 256);
        let ram = Sparse { ram: &real, max: Pfn::new(0x20001) };
        let cpu = HostCpu::<M>::new(&real);
        let k = KernelMm::<M, _, _, _>::pagetable_init(
            &ram,
            Native,
            &cpu,
            InitOptions { pse, lowmem_end: None, reserve_top: 0 },
        )
        .unwrap();
        let root = k.swapper_pg_dir();
        let before = k.translate_root(root, 0xE000_0000);
        assert_eq!(before.map(|t| t.pa), Some(0x2000_0000), "frame 0x20000 is linearly mapped");
        assert_eq!(k.unmap_kernel_page(0xE000_0000), Err(MmError::NotMapped(0xE000_0000)));
        assert_eq!(k.translate_root(root, 0xE000_0000), before, "the linear map is untouched");
        let f = ram.alloc_frame().unwrap();
        assert_eq!(k.map_kernel_page(0xE000_0000, f, PAGE_KERNEL), Err(MmError::OutOfRange(0xE000_0000)));
        assert_eq!(k.vmalloc_start(), 0xE100_0000, "(0xe0001000 + 16 MiB - 1) rounded down to 8 MiB");
        ram.free_frame(f);
    }
}

both_modes!(low_memory_and_the_vmalloc_area_follow_ram, a_linear_map_address_is_not_in_the_vmalloc_area);
