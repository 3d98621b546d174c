//! The whole i386-mm scenario under the Xen model, ending clean: nothing pinned, nothing
//! read-only, nothing typed, every frame back.

mod common;
use common::*;

const SPACES: usize = 3;
const PAGES: usize = 4;

fn user_va(j: usize) -> u32 {
    [0x0804_8000u32, 0x4000_0000][j % 2] + (j / 2) as u32 * 0x1000
}

fn step<M: PagingMode>(xen: &X<'_, M>, what: &str) {
    let (ok, report) = verify(xen);
    assert!(ok, "after {what}: {report}");
    assert_eq!(xen.violations(), 0, "after {what}: {:?}", violations(xen));
}

fn the_whole_i386_mm_scenario_runs_under_xen_and_ends_clean<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::boot(&ram).unwrap();
    let xen = X::<M>::boot(&hv, Policy::Panic).unwrap();
    let ptwr = |fault: Fault, val: u32| hv.ptwr_do_page_fault(fault.addr, u64::from(val), 4).is_ok();
    let cpu = HostCpu::<M>::new(&ram).with_write_fault_handler(&ptwr);
    let frames_before = ram.frames_in_use();

    let opts = InitOptions { reserve_top: hv.reserve_top(), ..InitOptions::default() };
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &xen, &cpu, opts).unwrap();
    assert_eq!(k.shares_kernel_pmd(), !M::PAE, "Xen: a kernel pmd per PAE pgd");
    assert!(!k.uses_large_pages());
    step(&xen, "pagetable_init");
    k.activate_swapper();
    step(&xen, "activate_swapper");
    let kernel_tables = guest_pinned_tables::<M>(&ram, k.swapper_pg_dir()).len();
    assert_eq!(hv.pinned_tables().total(), kernel_tables);
    for pmd in pmds::<M>(&ram, k.swapper_pg_dir()) {
        assert_eq!(hv.page_info(pmd), PageInfo { ty: PageType::PaeXenL2, count: 1, pinned: false });
    }

    // Address spaces with user pages, written and read back through the CPU's page walk.
    let mut spaces: Vec<_> = (0..SPACES).map(|_| k.create().unwrap()).collect();
    let mut frames = [[Pfn::new(0); PAGES]; SPACES];
    for (a, row) in spaces.iter_mut().zip(frames.iter_mut()) {
        for (j, f) in row.iter_mut().enumerate() {
            *f = ram.alloc_frame().unwrap();
            k.map(a, user_va(j), *f, PteFlags::RW | PteFlags::USER).unwrap();
        }
    }
    for (i, a) in spaces.iter().enumerate() {
        k.activate(a);
        for j in 0..PAGES {
            cpu.write_u32(user_va(j), 0x5A00_0000 | (i << 8 | j) as u32).unwrap();
        }
    }
    for (i, a) in spaces.iter().enumerate() {
        k.activate(a);
        for (j, f) in frames[i].iter().enumerate() {
            let want = 0x5A00_0000 | (i << 8 | j) as u32;
            assert_eq!(cpu.read_u32(user_va(j)).unwrap(), want);
            assert_eq!(cpu.read_u32(lowmem_va(*f)).unwrap(), want);
        }
        assert!(hv.is_pinned(a.pgd()) && !linear_writable::<M>(&ram, a.pgd(), a.pgd()));
    }
    step(&xen, "address spaces");
    let held_peak = xen.pages_held();

    // A kernel mapping made after the address spaces exist is visible from each.
    let kva = k.vmalloc_start() + 0x0040_0000;
    let kf = ram.alloc_frame().unwrap();
    k.map_kernel_page(kva, kf, PAGE_KERNEL).unwrap();
    cpu.write_u32(kva, 0xC0DE_CAFE).unwrap();
    for a in &spaces {
        k.activate(a);
        assert_eq!(cpu.read_u32(kva).unwrap(), 0xC0DE_CAFE);
    }
    step(&xen, "map_kernel_page");

    // change_page_attr to read-only and back.
    k.activate_swapper();
    let data = ram.alloc_frame().unwrap();
    k.change_page_attr(data, PAGE_KERNEL_RO).unwrap().flush(&k);
    let fault = cpu.write_u32(lowmem_va(data), 1).unwrap_err();
    assert_eq!(fault.error_code & (PF_PROT | PF_WRITE), PF_PROT | PF_WRITE);
    k.change_page_attr(data, PAGE_KERNEL).unwrap().flush(&k);
    cpu.write_u32(lowmem_va(data), 2).unwrap();
    ram.free_frame(data);
    step(&xen, "change_page_attr");

    // A direct write to a pinned directory faults; one into a pinned page table is emulated
    // (`ptwr_do_page_fault`).
    let pgd0 = spaces[0].pgd();
    let l1 = l1_of::<M>(&ram, pgd0, user_va(0));
    for t in [pgd0, k.swapper_pg_dir()] {
        let old = cpu.read_u32(lowmem_va(t)).unwrap();
        let fault = cpu.write_u32(lowmem_va(t), old).unwrap_err();
        assert_eq!(fault.error_code & (PF_PROT | PF_WRITE), PF_PROT | PF_WRITE);
    }
    let old = cpu.read_u32(lowmem_va(l1)).unwrap();
    cpu.write_u32(lowmem_va(l1), old).unwrap();
    assert_eq!(xen.stats().ptwr, 1);
    step(&xen, "direct write");

    // Unmap every other page (emptied page tables are released), destroy everything.
    for (a, row) in spaces.iter_mut().zip(frames.iter_mut()) {
        for j in (0..PAGES).step_by(2) {
            assert_eq!(k.unmap(a, user_va(j)).unwrap(), row[j]);
            ram.free_frame(row[j]);
            row[j] = Pfn::new(0);
        }
    }
    step(&xen, "unmap");
    for (a, row) in spaces.drain(..).zip(frames.iter()) {
        k.destroy(a);
        row.iter().filter(|f| f.as_u32() != 0).for_each(|&f| ram.free_frame(f));
    }
    assert_eq!(k.unmap_kernel_page(kva).unwrap(), kf);
    ram.free_frame(kf);
    step(&xen, "destroy");
    assert_eq!(hv.pinned_tables().total(), kernel_tables, "only the kernel's tables remain pinned");

    k.load_boot_root();
    if let Err((_, err)) = k.shutdown() {
        panic!("shutdown refused: {err}");
    }
    let s = xen.stats();
    let mut out = String::new();
    xen.write_stats(&mut out).unwrap();
    eprintln!("--- backend-xen scenario, {}, after shutdown ---\n{out}", M::NAME);
    let (ok, report) = verify(&xen);
    assert!(ok, "{report}");
    assert_eq!(xen.violations(), 0);
    assert_eq!(xen.pages_held(), 0);
    assert_eq!(hv.pinned_tables().total(), 0);
    assert_eq!(xen.read_only_pages(), 0);
    assert_eq!(hv.typed_frames(), 0);
    assert_eq!(ram.frames_in_use(), frames_before);
    assert!(held_peak > kernel_tables);
    assert_eq!(s.refused(), 0, "a correct kernel draws no refusal");
    assert!(s.pins[0] > 0 && (s.pins[1] > 0) != M::PAE && (s.pins[2] > 0) == M::PAE, "PAE pmds are never pinned");
    eprintln!(
        "{}: kernel tables {kernel_tables}, peak pinned {}, pins l1/l2/l3 {:?}, peak read-only {}, \
         hypercalls {} (mmu_update {}, update_va_mapping {}, mmuext {:?}), direct writes {}, held peak {held_peak}",
        M::NAME,
        s.max_pinned,
        s.pins,
        s.max_read_only,
        s.hypercalls(),
        s.mmu_update,
        s.update_va_mapping,
        s.mmuext,
        s.direct_writes
    );
}

fn the_shared_i386_mm_scenario_passes_under_xen<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let hv = H::<M>::boot(&ram).unwrap();
    let xen = X::<M>::boot(&hv, Policy::Record).unwrap();
    let ptwr = |fault: Fault, val: u32| hv.ptwr_do_page_fault(fault.addr, u64::from(val), 4).is_ok();
    let cpu = HostCpu::<M>::new(&ram).with_write_fault_handler(&ptwr);
    let mut out = String::new();
    let cfg = mm_scenario::Config { ptdump: false, reserve_top: hv.reserve_top(), ..mm_scenario::Config::default() };
    let r = mm_scenario::run::<M, _, _, _>(&ram, &xen, &cpu, &cfg, &mut out);
    let summary = r.unwrap_or_else(|e| panic!("{e}\n{out}\nviolations: {:?}", violations(&xen)));
    assert_eq!(summary.held_after, 0);
    assert_eq!(summary.frames_after, summary.frames_before);
    assert_eq!(summary.faults_seen, 2, "read-only kernel page and pinned pgd both faulted\n{out}");
    assert_eq!(xen.violations(), 0);
}

both_modes!(the_whole_i386_mm_scenario_runs_under_xen_and_ends_clean, the_shared_i386_mm_scenario_passes_under_xen);
