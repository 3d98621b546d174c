//! Bad input gets a typed error and changes nothing.
mod common;
use common::*;

/// Runs `bad` and checks it failed with `want` without a hook, a frame or a mapping changing.
fn refused<M: PagingMode, T: std::fmt::Debug + PartialEq>(
    k: &K<'_, M>,
    ram: &EmulatedRam,
    rec: &Rec,
    a: &AddressSpace<M>,
    want: MmError,
    bad: impl FnOnce() -> Result<T, MmError>,
) {
    let frames = ram.frames_in_use();
    let before: Vec<_> = (0..8).map(|i| k.translate(a, 0x0804_8000 + i * 0x1000)).collect();
    rec.clear();
    assert_eq!(bad(), Err(want));
    assert!(hooks(rec).is_empty(), "{want:?}: hooks called: {:?}", hooks(rec));
    assert_eq!(ram.frames_in_use(), frames);
    let after: Vec<_> = (0..8).map(|i| k.translate(a, 0x0804_8000 + i * 0x1000)).collect();
    assert_eq!(before, after);
}

fn map_rejects_bad_input_with_typed_errors<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        k.map(&mut a, 0x0804_8000, f, PteFlags::RW | PteFlags::USER).unwrap();
        let g = ram.alloc_frame().unwrap();
        let aa = &mut a as *mut AddressSpace<M>;
        // SAFETY: a test-local alias used only inside each closure, one at a time.
        let m = || unsafe { &mut *aa };
        refused(k, ram, rec, m(), MmError::Unaligned(0x0804_8010), || k.map(m(), 0x0804_8010, g, PteFlags::USER));
        refused(k, ram, rec, m(), MmError::OutOfRange(0xC000_0000), || k.map(m(), 0xC000_0000, g, PteFlags::USER));
        refused(k, ram, rec, m(), MmError::PfnOutOfRange(Pfn::new(4096)), || {
            k.map(m(), 0x0804_9000, Pfn::new(4096), PteFlags::USER)
        });
        refused(k, ram, rec, m(), MmError::AlreadyMapped(0x0804_8000), || k.map(m(), 0x0804_8000, g, PteFlags::USER));
        refused(k, ram, rec, m(), MmError::BadFlags((PteFlags::USER | PteFlags::PSE).bits()), || {
            k.map(m(), 0x0804_9000, g, PteFlags::USER | PteFlags::PSE)
        });
        refused(k, ram, rec, m(), MmError::NotMapped(0x0804_9000), || k.unmap(m(), 0x0804_9000).map(|_| ()));
        refused(k, ram, rec, m(), MmError::NotMapped(0x7000_0000), || k.unmap(m(), 0x7000_0000).map(|_| ()));
        refused(k, ram, rec, m(), MmError::Unaligned(0x0804_8004), || k.unmap(m(), 0x0804_8004).map(|_| ()));
        refused(k, ram, rec, m(), MmError::NotMapped(0x0804_a000), || k.protect(m(), 0x0804_a000, PteFlags::USER));
        if !M::PAE {
            refused(k, ram, rec, m(), MmError::BadFlags(PteFlags::NX.bits()), || {
                k.map(m(), 0x0804_9000, g, PteFlags::NX)
            });
        }
        assert_eq!(a.mapped_pages(), 1);
        k.unmap(&mut a, 0x0804_8000).unwrap();
        k.destroy(a);
    });
}

fn kernel_range_calls_reject_bad_input<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        refused(k, ram, rec, &a, MmError::OutOfRange(0x1000), || k.map_kernel_page(0x1000, f, PAGE_KERNEL));
        refused(k, ram, rec, &a, MmError::OutOfRange(PAGE_OFFSET), || k.map_kernel_page(PAGE_OFFSET, f, PAGE_KERNEL));
        refused(k, ram, rec, &a, MmError::Unaligned(k.vmalloc_start() + 1), || {
            k.map_kernel_page(k.vmalloc_start() + 1, f, PAGE_KERNEL)
        });
        refused(k, ram, rec, &a, MmError::BadFlags(PAGE_TABLE.bits()), || {
            k.map_kernel_page(k.vmalloc_start(), f, PAGE_TABLE)
        });
        refused(k, ram, rec, &a, MmError::NotMapped(k.vmalloc_start()), || {
            k.unmap_kernel_page(k.vmalloc_start()).map(|_| ())
        });
        k.map_kernel_page(k.vmalloc_start(), f, PAGE_KERNEL).unwrap();
        refused(k, ram, rec, &a, MmError::AlreadyMapped(k.vmalloc_start()), || {
            k.map_kernel_page(k.vmalloc_start(), f, PAGE_KERNEL)
        });
        refused(k, ram, rec, &a, MmError::AttrNotChanged(f), || k.change_page_attr(f, PAGE_KERNEL));
        refused(k, ram, rec, &a, MmError::PfnOutOfRange(Pfn::new(5000)), || {
            k.change_page_attr(Pfn::new(5000), PAGE_KERNEL_RO)
        });
        refused(k, ram, rec, &a, MmError::BadFlags(PteFlags::RW.bits()), || k.change_page_attr(f, PteFlags::RW));
        assert_eq!(k.unmap_kernel_page(k.vmalloc_start()), Ok(f));
        k.destroy(a);
    });
}

fn shutdown_is_refused_while_address_spaces_live<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default()).unwrap();
    let a = k.create().unwrap();
    let (k, e) = k.shutdown().err().expect("refused");
    assert_eq!(e, MmError::AddressSpacesAlive(1));
    k.destroy(a);
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

fn protect_makes_a_user_page_read_only_for_the_walker<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let mut a = k.create().unwrap();
        let f = ram.alloc_frame().unwrap();
        k.map(&mut a, 0x0804_8000, f, PteFlags::RW | PteFlags::USER).unwrap();
        k.activate(&a);
        k.cpu().write_u32(0x0804_8000, 7).unwrap();
        rec.clear();
        k.protect(&mut a, 0x0804_8000, PteFlags::USER).unwrap();
        assert_eq!(rec.calls(HookKind::SetPteAt), 1);
        assert_eq!(rec.calls(HookKind::FlushTlbSingle), 1, "the active address space is flushed");
        let fault = k.cpu().write_u32(0x0804_8000, 8).unwrap_err();
        assert_eq!(fault.error_code, PF_PROT | PF_WRITE);
        assert_eq!(k.cpu().read_u32(0x0804_8000), Ok(7));
        k.unmap(&mut a, 0x0804_8000).unwrap();
        k.destroy(a);
    });
}

#[test]
fn address_spaces_are_limited_by_ram_alone_and_running_out_leaks_nothing() {
    let ram = EmulatedRam::new(2048, 256); // 8 MiB
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let cpu = HostCpu::<TwoLevel>::new(&ram);
    let k = KernelMm::<TwoLevel, _, _, _>::pagetable_init(&ram, &*rec, &cpu, InitOptions::default()).unwrap();
    let boot = ram.frames_in_use();
    let mut spaces = Vec::new();
    let refused = loop {
        let frames = ram.frames_in_use();
        rec.clear();
        match k.create() {
            Ok(a) => spaces.push(a),
            Err(e) => {
                assert!(hooks(&rec).is_empty(), "refused before alloc_pd_clone");
                assert_eq!(ram.frames_in_use(), frames, "nothing leaked");
                break e;
            }
        }
    };
    assert_eq!(refused, MmError::OutOfMemory);
    assert_eq!(k.live_address_spaces(), spaces.len());
    assert!(spaces.len() > 1700, "every free frame became a pgd: {}", spaces.len());
    let mut list = vec![Pfn::new(0); spaces.len()];
    assert_eq!(k.pgd_list(&mut list), spaces.len());
    for a in spaces {
        k.destroy(a);
    }
    assert_eq!(k.metadata_frames(), 0, "pgd_list's metadata frames are freed with the last pgd");
    assert_eq!(ram.frames_in_use(), boot);
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// Ten thousand live two-level address spaces, and a kernel-range update that reaches every
/// one of them through `pgd_list`.
#[test]
fn ten_thousand_address_spaces_all_see_a_kernel_range_update() {
    let ram = EmulatedRam::new(12288, 256); // 48 MiB
    let cpu = HostCpu::<TwoLevel>::new(&ram);
    let k = KernelMm::<TwoLevel, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default()).unwrap();
    let spaces: Vec<_> = (0..10_000).map(|_| k.create().unwrap()).collect();
    let f = ram.alloc_frame().unwrap();
    let va = k.vmalloc_start();
    k.map_kernel_page(va, f, PAGE_KERNEL).unwrap();
    for a in &spaces {
        assert_eq!(k.translate(a, va).map(|t| t.pa), Some(f.phys().as_u64()));
    }
    for a in spaces {
        k.destroy(a);
    }
    assert_eq!(k.unmap_kernel_page(va), Ok(f));
    ram.free_frame(f);
    assert_eq!(k.metadata_frames(), 0);
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// `shutdown` frees `swapper_pg_dir`: while CR3 holds it (or any root this kernel built), it is
/// refused with a typed error and nothing changes.
fn shutdown_is_refused_while_a_root_it_built_is_loaded<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, Native, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let frames = ram.frames_in_use();
    let (k, e) = k.shutdown().err().expect("refused");
    assert_eq!(e, MmError::RootLoaded(k.swapper_pg_dir()));
    assert_eq!(ram.frames_in_use(), frames, "nothing freed");
    assert_eq!(cpu.read_u32(PAGE_OFFSET), Ok(0), "the loaded root still walks");
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// `one_md_table_init` exists only in PAE: in two-level mode it is refused before it allocates,
/// announces or writes anything.
fn one_md_table_init_is_pae_only<M: PagingMode>() {
    with_kernel::<M, _>(true, |k, ram, rec| {
        let pgd = k.swapper_pg_dir();
        let frames = ram.frames_in_use();
        let before = raw::<M>(ram, pgd, 1);
        let s: PudSlot = test_slot::<M, _>(ram, pgd, 1);
        // SAFETY: entry 1 of swapper_pg_dir is an empty user slot nothing else touches.
        let got = unsafe { k.one_md_table_init(s) };
        if M::PAE {
            let pmd = got.unwrap();
            assert_eq!(hooks(rec)[0], Hook::AllocPd { pfn: pmd });
            k.mem().free_frame(pmd); // (the test owns the slot: undo by hand)
            ram.write_u32(s.phys().as_u64(), 0);
        } else {
            assert_eq!(got, Err(MmError::WrongMode));
            assert!(hooks(rec).is_empty());
            assert_eq!(ram.frames_in_use(), frames);
            assert_eq!(raw::<M>(ram, pgd, 1), before);
        }
    });
}

both_modes!(
    shutdown_is_refused_while_a_root_it_built_is_loaded,
    one_md_table_init_is_pae_only,
    map_rejects_bad_input_with_typed_errors,
    kernel_range_calls_reject_bad_input,
    shutdown_is_refused_while_address_spaces_live,
    protect_makes_a_user_page_read_only_for_the_walker,
);

#[test]
fn errors_print_addresses_in_hex() {
    assert_eq!(format!("{:?}", MmError::OutOfRange(0xC000_0000)), "OutOfRange(0xc0000000)");
    assert_eq!(format!("{:?}", MmError::PfnOutOfRange(Pfn::new(0x1234))), "PfnOutOfRange(pfn 0x1234)");
    assert_eq!(MmError::NotMapped(0x1000).to_string(), "address 0x00001000 is not mapped");
    let e: &dyn std::error::Error = &MmError::OutOfMemory;
    assert_eq!(e.to_string(), "out of memory");
}
