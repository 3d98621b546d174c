//! Bad input at every public entry point: a typed error, and no state change at all (every
//! allocated frame's contents, frame 0, every translation of every root, the hook trace,
//! `pgd_list`, the split and deferred tables, CR3 and the TLB flush counters).
mod common;
use common::*;
use std::hash::{Hash, Hasher};

/// Everything a refused call must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Allocated frames, each with a hash of its contents.
    frames: Vec<(Pfn, u64)>,
    /// Frame 0 (reserved, never allocated: the BIOS area).
    frame0: u64,
    /// Every table and mapping under each root, in address order.
    maps: Vec<Vec<walk::Visit>>,
    live: usize,
    list: Vec<Pfn>,
    splits: usize,
    deferred: usize,
    active: Option<Pfn>,
    /// CR3, CR3 loads, invlpgs, full flushes.
    cpu: (u32, u64, u64, u64),
}

fn frame_hash(ram: &EmulatedRam, f: Pfn) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for o in (0..4096).step_by(4) {
        ram.read_u32(f.phys().as_u64() + o).hash(&mut h);
    }
    h.finish()
}

fn snapshot<M: PagingMode, P: PhysMem>(
    k: &KernelMm<M, &Rec, P, &HostCpu<'_, M>>,
    ram: &EmulatedRam,
    roots: &[Pfn],
) -> Snapshot {
    let n = k.pgd_list(&mut []);
    let mut list = vec![Pfn::new(0); n];
    k.pgd_list(&mut list);
    let cpu = k.cpu();
    Snapshot {
        frames: ram.allocated().into_iter().map(|f| (f, frame_hash(ram, f))).collect(),
        frame0: frame_hash(ram, Pfn::new(0)),
        maps: std::iter::once(k.swapper_pg_dir())
            .chain(roots.iter().copied())
            .map(|r| {
                let mut v = vec![];
                walk::visit::<M, _>(ram, r, 0, u32::MAX, &mut |x| v.push(x));
                v
            })
            .collect(),
        live: k.live_address_spaces(),
        list,
        splits: k.split_tables(),
        deferred: k.deferred_frees(),
        active: k.active_root(),
        cpu: (cpu.read_cr3(), cpu.cr3_loads(), cpu.invlpgs(), cpu.flushes()),
    }
}

/// Runs `bad`, which must fail with `want`, and checks that no hook ran and nothing changed.
fn refused<M: PagingMode, P: PhysMem, T: std::fmt::Debug>(
    k: &KernelMm<M, &Rec, P, &HostCpu<'_, M>>,
    ram: &EmulatedRam,
    roots: &[Pfn],
    want: MmError,
    bad: impl FnOnce() -> Result<T, MmError>,
) {
    refused_undone(k, ram, roots, want, bad);
    assert!(hooks(k.backend()).is_empty(), "{want:?}: hooks called: {:?}", hooks(k.backend()));
}

/// As [`refused`], for a call that may announce pages before it fails (PAE `pgd_alloc`'s
/// `out_oom`): each page it announced it released again, and nothing changed.
fn refused_undone<M: PagingMode, P: PhysMem, T: std::fmt::Debug>(
    k: &KernelMm<M, &Rec, P, &HostCpu<'_, M>>,
    ram: &EmulatedRam,
    roots: &[Pfn],
    want: MmError,
    bad: impl FnOnce() -> Result<T, MmError>,
) {
    let before = snapshot(k, ram, roots);
    let rec = *k.backend();
    rec.clear();
    let got = bad();
    assert!(matches!(&got, Err(e) if *e == want), "{want:?}: got {got:?}");
    let mut announced: Vec<Pfn> = page_type_hooks(rec)
        .iter()
        .filter_map(|h| if let Hook::AllocPd { pfn } = h { Some(*pfn) } else { None })
        .collect();
    let mut released: Vec<Pfn> = page_type_hooks(rec)
        .iter()
        .filter_map(|h| if let Hook::ReleasePd { pfn } = h { Some(*pfn) } else { None })
        .collect();
    announced.sort();
    released.sort();
    assert_eq!(announced, released, "{want:?}: announced and released differ");
    assert_eq!(page_type_hooks(rec).len(), 2 * announced.len(), "{want:?}: {:?}", page_type_hooks(rec));
    assert!(before == snapshot(k, ram, roots), "{want:?}: state changed");
}

const UVA: u32 = 0x0804_8000;
/// A kernel address in the vmalloc area of the 16 MiB test machine (it starts at 0xc1800000).
const KVA: u32 = 0xE040_0000;

/// A kernel, one address space with `UVA` mapped, one kernel-range page at `KVA`, and a frame
/// for the test to offer.
fn with_setup<M: PagingMode>(pse: bool, f: impl FnOnce(&K<'_, M>, &EmulatedRam, &mut AddressSpace<M>, Pfn)) {
    with_kernel::<M, _>(pse, |k, ram, _| {
        let mut a = k.create().unwrap();
        let (page, kpage, free) = (ram.alloc_frame().unwrap(), ram.alloc_frame().unwrap(), ram.alloc_frame().unwrap());
        k.map(&mut a, UVA, page, PteFlags::USER | PteFlags::RW).unwrap();
        k.map_kernel_page(KVA, kpage, PAGE_KERNEL).unwrap();
        k.activate(&a);
        f(k, ram, &mut a, free);
        assert_eq!(a.mapped_pages(), 1);
        k.destroy(a);
        assert_eq!(k.unmap_kernel_page(KVA), Ok(kpage));
    });
}

fn map_refuses_bad_input<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, f| {
        let r = [a.pgd()];
        let user = PteFlags::USER;
        let max = ram.max_pfn();
        refused(k, ram, &r, MmError::Unaligned(UVA + 0x10), || k.map(a, UVA + 0x10, f, user));
        refused(k, ram, &r, MmError::Unaligned(1), || k.map(a, 1, f, user));
        refused(k, ram, &r, MmError::OutOfRange(TASK_SIZE), || k.map(a, TASK_SIZE, f, user));
        refused(k, ram, &r, MmError::OutOfRange(0xFFFF_F000), || k.map(a, 0xFFFF_F000, f, user));
        refused(k, ram, &r, MmError::OutOfRange(KVA), || k.map(a, KVA, f, user));
        refused(k, ram, &r, MmError::PfnOutOfRange(max), || k.map(a, UVA + 0x1000, max, user));
        let far = Pfn::new(0xF_FFFF);
        refused(k, ram, &r, MmError::PfnOutOfRange(far), || k.map(a, UVA + 0x1000, far, user));
        for bad in [PteFlags::PSE, PteFlags::GLOBAL] {
            refused(k, ram, &r, MmError::BadFlags((user | bad).bits()), || k.map(a, UVA + 0x1000, f, user | bad));
        }
        if !M::PAE {
            refused(k, ram, &r, MmError::BadFlags(PteFlags::NX.bits()), || k.map(a, UVA + 0x1000, f, PteFlags::NX));
        }
        refused(k, ram, &r, MmError::AlreadyMapped(UVA), || k.map(a, UVA, f, user));
        // Out of memory for a new page table.
        refused(k, ram, &r, MmError::OutOfMemory, || {
            ram.fail_nth_alloc(1);
            let got = k.map(a, 0x4000_0000, f, user);
            ram.clear_fault();
            got
        });
    });
}

fn unmap_refuses_bad_input<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let r = [a.pgd()];
        refused(k, ram, &r, MmError::Unaligned(UVA + 4), || k.unmap(a, UVA + 4));
        refused(k, ram, &r, MmError::OutOfRange(TASK_SIZE), || k.unmap(a, TASK_SIZE));
        refused(k, ram, &r, MmError::OutOfRange(KVA), || k.unmap(a, KVA));
        refused(k, ram, &r, MmError::NotMapped(UVA + 0x1000), || k.unmap(a, UVA + 0x1000));
        refused(k, ram, &r, MmError::NotMapped(0x7000_0000), || k.unmap(a, 0x7000_0000));
    });
}

fn protect_refuses_bad_input<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let r = [a.pgd()];
        let user = PteFlags::USER;
        refused(k, ram, &r, MmError::Unaligned(UVA + 4), || k.protect(a, UVA + 4, user));
        refused(k, ram, &r, MmError::OutOfRange(TASK_SIZE), || k.protect(a, TASK_SIZE, user));
        for bad in [PteFlags::PSE, PteFlags::GLOBAL] {
            refused(k, ram, &r, MmError::BadFlags((user | bad).bits()), || k.protect(a, UVA, user | bad));
        }
        refused(k, ram, &r, MmError::NotMapped(UVA + 0x1000), || k.protect(a, UVA + 0x1000, user));
        refused(k, ram, &r, MmError::NotMapped(0x7000_0000), || k.protect(a, 0x7000_0000, user));
    });
}

fn map_kernel_page_refuses_bad_input<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, f| {
        let r = [a.pgd()];
        let max = ram.max_pfn();
        for va in [0x1000, UVA, PAGE_OFFSET, k.vmalloc_start() - 0x1000, VMALLOC_END, 0xFFFF_F000] {
            refused(k, ram, &r, MmError::OutOfRange(va), || k.map_kernel_page(va, f, PAGE_KERNEL));
        }
        refused(k, ram, &r, MmError::Unaligned(KVA + 1), || k.map_kernel_page(KVA + 1, f, PAGE_KERNEL));
        refused(k, ram, &r, MmError::PfnOutOfRange(max), || k.map_kernel_page(KVA + 0x1000, max, PAGE_KERNEL));
        for bad in [PteFlags::USER, PteFlags::PSE] {
            let flags = PAGE_KERNEL | bad;
            refused(k, ram, &r, MmError::BadFlags(flags.bits()), || k.map_kernel_page(KVA + 0x1000, f, flags));
        }
        refused(k, ram, &r, MmError::AlreadyMapped(KVA), || k.map_kernel_page(KVA, f, PAGE_KERNEL));
        refused(k, ram, &r, MmError::OutOfMemory, || {
            ram.fail_nth_alloc(1);
            let got = k.map_kernel_page(k.vmalloc_start(), f, PAGE_KERNEL);
            ram.clear_fault();
            got
        });
    });
}

fn unmap_kernel_page_refuses_bad_input<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let r = [a.pgd()];
        refused(k, ram, &r, MmError::Unaligned(KVA + 8), || k.unmap_kernel_page(KVA + 8));
        refused(k, ram, &r, MmError::OutOfRange(UVA), || k.unmap_kernel_page(UVA));
        // A kernel address outside the vmalloc area (the linear map, above the area) holds no
        // vmalloc mapping: nothing to unmap, and the linear map is never touched.
        for va in [PAGE_OFFSET, VMALLOC_END] {
            refused(k, ram, &r, MmError::NotMapped(va), || k.unmap_kernel_page(va));
        }
        refused(k, ram, &r, MmError::NotMapped(KVA + 0x1000), || k.unmap_kernel_page(KVA + 0x1000));
        refused(k, ram, &r, MmError::NotMapped(k.vmalloc_start()), || k.unmap_kernel_page(k.vmalloc_start()));
    });
}

fn unmap_kernel_pages_refuses_bad_input<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let r = [a.pgd()];
        let mut got = [Pfn::new(0); 2];
        refused(k, ram, &r, MmError::Unaligned(KVA + 8), || k.unmap_kernel_pages(&[KVA + 8], &mut got));
        // Every address is checked before anything changes: the mapped KVA first stays mapped.
        refused(k, ram, &r, MmError::OutOfRange(UVA), || k.unmap_kernel_pages(&[KVA, UVA], &mut got));
        for va in [PAGE_OFFSET, VMALLOC_END] {
            refused(k, ram, &r, MmError::NotMapped(va), || k.unmap_kernel_pages(&[KVA, va], &mut got));
        }
        refused(k, ram, &r, MmError::AlreadyMapped(KVA), || k.unmap_kernel_pages(&[KVA, KVA], &mut got));
        refused(k, ram, &r, MmError::NotMapped(KVA + 0x1000), || k.unmap_kernel_pages(&[KVA, KVA + 0x1000], &mut got));
        let start = k.vmalloc_start();
        refused(k, ram, &r, MmError::NotMapped(start), || k.unmap_kernel_pages(&[start], &mut got));
        assert_eq!(got, [Pfn::new(0); 2], "no frame reported for a refused batch");
    });
}

fn change_page_attr_refuses_bad_input<M: PagingMode>() {
    for pse in [true, false] {
        with_setup::<M>(pse, |k, ram, a, f| {
            let r = [a.pgd()];
            let end = k.lowmem_end();
            refused(k, ram, &r, MmError::PfnOutOfRange(end), || k.change_page_attr(end, PAGE_KERNEL_RO));
            for bad in [PteFlags::USER, PteFlags::PSE, PteFlags::NX] {
                let prot = PAGE_KERNEL_RO | bad;
                if bad == PteFlags::NX && M::PAE {
                    continue;
                }
                refused(k, ram, &r, MmError::BadFlags(prot.bits()), || k.change_page_attr(f, prot));
            }
            refused(k, ram, &r, MmError::BadFlags(PteFlags::RW.bits()), || k.change_page_attr(f, PteFlags::RW));
            refused(k, ram, &r, MmError::AttrNotChanged(f), || k.change_page_attr(f, PAGE_KERNEL));
            if pse {
                refused(k, ram, &r, MmError::OutOfMemory, || {
                    ram.fail_nth_alloc(1);
                    let got = k.change_page_attr(f, PAGE_KERNEL_RO);
                    ram.clear_fault();
                    got
                });
            }
        });
    }
}

/// Low memory ending short of RAM: the frames above it have no linear-map page to change.
fn change_page_attr_refuses_frames_above_low_memory<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let cpu = HostCpu::<M>::new(&ram);
    let opts = InitOptions { pse: true, lowmem_end: Some(Pfn::new(2048)), reserve_top: 0 };
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &*rec, &cpu, opts).unwrap();
    k.activate_swapper();
    for p in [2048, 3000, 4095] {
        let pfn = Pfn::new(p);
        refused(&k, &ram, &[], MmError::PfnOutOfRange(pfn), || k.change_page_attr(pfn, PAGE_KERNEL_RO));
    }
}

/// A kernel PTE whose accessed and dirty bits differ from `PAGE_KERNEL`'s still holds
/// `PAGE_KERNEL`: the CPU sets and clears those bits, so restoring it is refused.
fn change_page_attr_ignores_accessed_and_dirty_bits<M: PagingMode>() {
    with_setup::<M>(false, |k, ram, a, f| {
        let Some(Kpte::Pte(pte)) = k.lookup_address(lowmem_va(f)) else { panic!("a 4 KiB mapping") };
        let plain = PteFlags::PRESENT | PteFlags::RW;
        paravirt_core::native::set(pte, Pte::new(f, plain));
        refused(k, ram, &[a.pgd()], MmError::AttrNotChanged(f), || k.change_page_attr(f, PAGE_KERNEL));
        paravirt_core::native::set(pte, Pte::new(f, PAGE_KERNEL));
    });
}

fn create_refuses_when_out_of_memory<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let allocations = if M::PAE { 4 } else { 1 };
        for n in 1..=allocations {
            refused_undone(k, ram, &[a.pgd()], MmError::OutOfMemory, || {
                ram.fail_nth_alloc(n);
                let got = k.create();
                ram.clear_fault();
                got
            });
            refused_undone(k, ram, &[a.pgd()], MmError::OutOfMemory, || {
                ram.fail_nth_alloc(n);
                let got = k.pgd_alloc();
                ram.clear_fault();
                got
            });
        }
    });
}

/// `one_md_table_init` exists only in PAE (two-level: `WrongMode`); out of memory it is
/// refused in PAE; `one_page_table_init` and `split_large_page` out of memory likewise.
fn low_level_call_sites_refuse_when_out_of_memory<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let r = [a.pgd()];
        let pud: PudSlot = test_slot::<M, _>(ram, a.pgd(), 1);
        if M::PAE {
            // A PDPT of the test's own, so the empty slot it offers is really empty.
            let root = ram.alloc_frame().unwrap();
            paravirt_core::native::clear(test_slot::<M, Pud>(ram, root, 0));
            let slot: PudSlot = test_slot::<M, _>(ram, root, 0);
            refused(k, ram, &r, MmError::OutOfMemory, || {
                ram.fail_nth_alloc(1);
                // SAFETY: the slot is an empty PDPT entry of a root this test owns.
                let got = unsafe { k.one_md_table_init(slot) };
                ram.clear_fault();
                got
            });
            ram.free_frame(root);
        } else {
            // SAFETY: refused before it touches the slot.
            refused(k, ram, &r, MmError::WrongMode, || unsafe { k.one_md_table_init(pud) });
        }
        let (dir, idx) = walk::pmd_table::<M, _>(ram, a.pgd(), 0x4000_0000).unwrap();
        let pmd: PmdSlot = test_slot::<M, _>(ram, dir, idx);
        assert!(!pmd.read().is_present());
        refused(k, ram, &r, MmError::OutOfMemory, || {
            ram.fail_nth_alloc(1);
            // SAFETY: an empty directory entry of the test's address space.
            let got = unsafe { k.one_page_table_init(pmd) };
            ram.clear_fault();
            got
        });
        refused(k, ram, &r, MmError::OutOfMemory, || {
            ram.fail_nth_alloc(1);
            // SAFETY: a linear-map address; nothing is allocated to link or release.
            let got = unsafe { k.split_large_page(PAGE_OFFSET, PAGE_KERNEL_RO, PAGE_KERNEL) };
            ram.clear_fault();
            got
        });
    });
}

type Owned<'a, M> = KernelMm<M, &'a Rec, &'a EmulatedRam, &'a HostCpu<'a, M>>;

fn shutdown_refused<'a, M: PagingMode>(
    k: Owned<'a, M>,
    ram: &EmulatedRam,
    roots: &[Pfn],
    want: MmError,
) -> Owned<'a, M> {
    let before = snapshot(&k, ram, roots);
    k.backend().clear();
    let (k, e) = k.shutdown().err().expect("refused");
    assert_eq!(e, want);
    assert!(hooks(k.backend()).is_empty());
    assert!(before == snapshot(&k, ram, roots), "{want:?}: state changed");
    k
}

/// `shutdown` returns the kernel unchanged while address spaces live or its root is loaded.
fn shutdown_refuses_and_changes_nothing<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::<M, _, _, _>::pagetable_init(&ram, &*rec, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let a = k.create().unwrap();
    let k = shutdown_refused(k, &ram, &[a.pgd()], MmError::AddressSpacesAlive(1));
    k.destroy(a);
    let swapper = k.swapper_pg_dir();
    let k = shutdown_refused(k, &ram, &[], MmError::RootLoaded(swapper));
    assert_eq!(cpu.read_u32(PAGE_OFFSET), Ok(0), "the loaded root still walks");
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

/// The queries answer without changing anything, for addresses nothing maps.
fn queries_change_nothing<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let before = snapshot(k, ram, &[a.pgd()]);
        k.backend().clear();
        assert!(k.lookup_address(UVA).is_none(), "no user mapping in swapper_pg_dir");
        assert!(matches!(k.lookup_address(KVA + 0x1000), Some(Kpte::Pte(p)) if !p.read().is_present()));
        assert!(k.lookup_address(k.vmalloc_start() + 0x0800_0000).is_none());
        assert_eq!(k.translate(a, UVA + 0x1000), None);
        assert_eq!(k.translate(a, 0x7000_0000), None);
        assert_eq!(k.translate_root(k.swapper_pg_dir(), UVA), None);
        let mut none: [Pfn; 0] = [];
        assert_eq!(k.pgd_list(&mut none), if M::PAE { 0 } else { 1 }, "the count, with no room to copy");
        assert_eq!(k.live_address_spaces(), 1);
        k.tlb_finish_mmu(MmuGather::new());
        assert!(hooks(k.backend()).is_empty());
        assert!(before == snapshot(k, ram, &[a.pgd()]));
    });
}

/// An address with no page table under it reaches no table: frame 0 (the BIOS area, never
/// a page table) holding a present-looking entry is not mistaken for one.
fn an_address_without_a_page_table_reaches_no_table<M: PagingMode>() {
    with_setup::<M>(true, |k, ram, a, _| {
        let va = 0x7000_0000;
        let at = (M::ENTRY_SIZE * M::pte_index(va)) as u64;
        ram.write_u32(at, 0x0010_0067);
        refused(k, ram, &[a.pgd()], MmError::NotMapped(va), || k.unmap(a, va));
        refused(k, ram, &[a.pgd()], MmError::NotMapped(va), || k.protect(a, va, PteFlags::USER));
        ram.write_u32(at, 0);
    });
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

#[test]
fn errors_print_addresses_in_hex() {
    assert_eq!(format!("{:?}", MmError::OutOfRange(0xC000_0000)), "OutOfRange(0xc0000000)");
    assert_eq!(format!("{:?}", MmError::PfnOutOfRange(Pfn::new(0x1234))), "PfnOutOfRange(pfn 0x1234)");
    assert_eq!(MmError::NotMapped(0x1000).to_string(), "address 0x00001000 is not mapped");
    let e: &dyn std::error::Error = &MmError::OutOfMemory;
    assert_eq!(e.to_string(), "out of memory");
}

both_modes!(
    shutdown_is_refused_while_a_root_it_built_is_loaded,
    one_md_table_init_is_pae_only,
    map_refuses_bad_input,
    unmap_refuses_bad_input,
    protect_refuses_bad_input,
    map_kernel_page_refuses_bad_input,
    unmap_kernel_page_refuses_bad_input,
    unmap_kernel_pages_refuses_bad_input,
    change_page_attr_refuses_bad_input,
    change_page_attr_refuses_frames_above_low_memory,
    change_page_attr_ignores_accessed_and_dirty_bits,
    create_refuses_when_out_of_memory,
    low_level_call_sites_refuse_when_out_of_memory,
    shutdown_refuses_and_changes_nothing,
    queries_change_nothing,
    an_address_without_a_page_table_reaches_no_table,
);
