//! The frame table follows RAM: 10,000 live, pinned address spaces under the Xen model, hooks
//! whose cost does not grow with the tables alive, and frames beyond RAM still foreign.

mod common;
use common::*;
use mm_testkit::CountingMem;

/// Address spaces the scale test keeps alive at once.
const SPACES: usize = 10_000;
/// 256 MiB of RAM, the first 1 MiB never handed out.
const RAM_FRAMES: u32 = 65_536;
/// A user address every space maps (one page table each).
const VA: u32 = 0x0804_8000;
/// A user address in another page table's range (its table is made and freed by map+unmap).
const VA_OTHER: u32 = 0x4000_0000;

type Mem<'r> = CountingMem<&'r EmulatedRam>;
type Hv<'a, 'r, M> = Hypervisor<M, &'a Mem<'r>>;
type Guest<'a, 'r, M> = Xen<'a, M, &'a Mem<'r>>;
type Kernel<'a, 'r, M> = KernelMm<M, &'a Guest<'a, 'r, M>, &'a Mem<'r>, &'a HostCpu<'r, M>>;

/// Frames of memory `protect` and `map`+`unmap` (with a page table made, pinned, unpinned and
/// freed) reach in the pinned space `mm`: records, entries and zeroing they touch.
fn reached<M: PagingMode>(k: &Kernel<'_, '_, M>, mem: &Mem<'_>, mm: &mut AddressSpace<M>, data: Pfn) -> (u64, u64) {
    mem.reset();
    k.protect(mm, VA, PteFlags::USER).unwrap();
    k.protect(mm, VA, PteFlags::USER | PteFlags::RW).unwrap();
    let protect = mem.reached();
    mem.reset();
    k.map(mm, VA_OTHER, data, PteFlags::USER | PteFlags::RW).unwrap();
    assert_eq!(k.unmap(mm, VA_OTHER).unwrap(), data);
    (protect, mem.reached())
}

/// Two-level mode: 10,000 address spaces, each with a page table mapping one page and each
/// loaded once (so its tree is pinned and validated), cross-check clean; every hook reaches the
/// same frames with 10 trees pinned as with 10,000 (each lookup is one record of the frame
/// table or of the guest's page flags); then every space destroyed: nothing pinned, typed or
/// flagged, and once the frame table and the flags go back every frame is free.
#[test]
fn ten_thousand_pinned_address_spaces_two_level() {
    let ram = EmulatedRam::new(RAM_FRAMES, 256);
    let mem = CountingMem::new(&ram);
    let base = ram.frames_in_use();
    let hv = Hv::<TwoLevel>::boot(&mem).unwrap();
    let xen = Guest::<TwoLevel>::boot(&hv, Policy::Record).unwrap();
    assert_eq!((hv.frametable_frames(), xen.flag_frames()), (257, 257), "65,536 records each: 256 leaves, 1 directory");
    let ptwr = |fault: Fault, val: u32| hv.ptwr_do_page_fault(fault.addr, u64::from(val), 4).is_ok();
    let cpu = HostCpu::<TwoLevel>::new(&ram).with_write_fault_handler(&ptwr);
    let opts = InitOptions { reserve_top: hv.reserve_top(), ..InitOptions::default() };
    let k = KernelMm::pagetable_init(&mem, &xen, &cpu, opts).unwrap();
    k.activate_swapper();
    let data = ram.alloc_frame().unwrap();
    let mut spaces = Vec::with_capacity(SPACES);
    let mut few = (0, 0);
    for i in 0..SPACES {
        let mut mm = k.create().unwrap();
        k.map(&mut mm, VA, data, PteFlags::USER | PteFlags::RW).unwrap();
        k.activate(&mm);
        spaces.push(mm);
        if i + 1 == 10 {
            few = reached(&k, &mem, &mut spaces[0], data);
        }
    }
    let many = reached(&k, &mem, &mut spaces[0], data);
    assert_eq!(few, many, "frames reached by protect, map+unmap: 10 trees pinned vs 10,000");
    println!(
        "frames reached with 10 and {SPACES} spaces: protect {} / {}, map+unmap {} / {}",
        few.0, many.0, few.1, many.1
    );
    let pinned = hv.pinned_tables();
    assert_eq!(pinned.l2, SPACES + 1, "each pgd pinned, and swapper_pg_dir");
    assert!(pinned.l1 >= SPACES, "each space's page table pinned, and the kernel's: {pinned:?}");
    assert_eq!(
        hv.page_info(data).count,
        SPACES as u32 + 1,
        "the shared page is mapped writable by every space and the linear map"
    );
    let (ok, report) = verify(&xen);
    assert!(ok, "{report}");
    assert_eq!(xen.violations(), 0, "{:?}", xen.violation_log().get(0));
    k.activate_swapper();
    for mm in spaces {
        k.destroy(mm);
    }
    ram.free_frame(data);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!((xen.pages_held(), hv.typed_frames(), hv.pinned_tables().total()), (0, 0, 0));
    assert_eq!(xen.read_only_pages(), 0);
    xen.teardown().unwrap();
    hv.free_frametable().unwrap();
    assert_eq!(ram.frames_in_use(), base, "every frame back");
}

/// Every frame of RAM has a record, so the only frames refused as beyond the table are those
/// beyond RAM, and they are foreign (`-EINVAL`), as in Xen; the refusal changes nothing.
fn frames_beyond_ram_are_foreign<M: PagingMode>() {
    booted::<M>(Policy::Record, |e| {
        let beyond = e.ram.max_pfn();
        let mut done = 0;
        let r = e.hv.mmu_update(&[MmuUpdate::normal(beyond.phys(), 0)], &mut done);
        assert_eq!((r, done), (Err(XenError::ForeignFrame { pfn: beyond }), 0));
        assert_eq!(r.unwrap_err().errno(), Errno::Inval);
        assert_eq!(e.hv.page_info(beyond), PageInfo::default());
        let last = Pfn::new(beyond.as_u32() - 1);
        let mut done = 0;
        assert_eq!(
            e.hv.mmu_update(&[MmuUpdate::normal(last.phys(), 0)], &mut done),
            Ok(()),
            "the last frame of RAM has a record"
        );
        shutdown_clean(e);
    });
}

/// Setting up twice is refused, as is giving back what is in use or was never set up; nothing
/// changes.
fn setup_and_teardown_refusals_change_nothing<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let base = ram.frames_in_use();
    let hv = Hypervisor::<M, _>::boot(&ram).unwrap();
    let xen = Xen::boot(&hv, Policy::Record).unwrap();
    let held = ram.frames_in_use();
    assert_eq!(held - base, hv.frametable_frames() + xen.flag_frames());
    assert_eq!((hv.init_frametable(), xen.init()), (Err(SetupError::AlreadySetUp), Err(SetupError::AlreadySetUp)));
    let pt = alloc_zeroed(&ram).unwrap();
    xen.alloc_pt(pt);
    assert_eq!(xen.teardown(), Err(TeardownError::FramesHeld { held: 1 }));
    xen.release_pt(pt);
    ram.free_frame(pt);
    assert_eq!(ram.frames_in_use(), held, "refusals kept everything");
    xen.teardown().unwrap();
    hv.free_frametable().unwrap();
    assert_eq!((xen.teardown(), hv.free_frametable()), (Err(TeardownError::NotSetUp), Err(TeardownError::NotSetUp)));
    assert_eq!(ram.frames_in_use(), base);
    // Out of memory while reserving: refused, everything given back.
    let tiny = EmulatedRam::new(300, 256);
    let hv = Hypervisor::<M, _>::new(&tiny);
    tiny.fail_nth_alloc(2);
    assert_eq!(hv.init_frametable(), Err(SetupError::OutOfMemory));
    assert_eq!((tiny.frames_in_use(), hv.frametable_frames()), (0, 0));
}

both_modes!(frames_beyond_ram_are_foreign, setup_and_teardown_refusals_change_nothing);
