//! Capacity follows RAM: 10,000 live address spaces under VMI, a pool sized small running out
//! with a typed refusal, and hooks whose cost does not grow with the tables alive.

mod common;
use common::*;
use mm_testkit::CountingMem;

/// Address spaces the scale test keeps alive at once.
const SPACES: usize = 10_000;
/// 256 MiB of RAM, the first 1 MiB never handed out.
const FRAMES: u32 = 65_536;
/// A user address every space maps (one page table each).
const VA: u32 = 0x0804_8000;
/// A user address in another page table's range (its table is made and freed by map+unmap).
const VA_OTHER: u32 = 0x4000_0000;

type Mem<'r> = CountingMem<&'r EmulatedRam>;
type K<'a, 'r, M> = KernelMm<M, &'a Vmi<M, &'a Mem<'r>>, &'a Mem<'r>, &'a HostCpu<'r, M>>;

/// Frames of memory `protect` and `map`+`unmap` (with a page table made and freed) reach in
/// space `mm`: the per-frame records, entries and zeroing they touch.
fn reached<M: PagingMode>(k: &K<'_, '_, M>, mem: &Mem<'_>, mm: &mut AddressSpace<M>, data: Pfn) -> (u64, u64) {
    mem.reset();
    k.protect(mm, VA, PteFlags::USER).unwrap();
    k.protect(mm, VA, PteFlags::USER | PteFlags::RW).unwrap();
    let protect = mem.reached();
    mem.reset();
    k.map(mm, VA_OTHER, data, PteFlags::USER | PteFlags::RW).unwrap();
    assert_eq!(k.unmap(mm, VA_OTHER).unwrap(), data);
    (protect, mem.reached())
}

/// Two-level mode: 10,000 address spaces, each with a page table mapping one page, cross-check
/// clean, then every one destroyed: the backend holds nothing and every frame comes back. Each
/// hook reaches the same frames with 10 spaces alive as with 10,000 (every lookup is one
/// per-frame record, never a search), and no `alloc_*` allocates.
#[test]
fn ten_thousand_address_spaces_two_level() {
    let ram = EmulatedRam::new(FRAMES, 256);
    let mem = CountingMem::new(&ram);
    let base = ram.frames_in_use();
    // Every space has two tables (pgd, page table): 20,000 shadows, plus the kernel's.
    let v = Vmi::<TwoLevel, _>::with_shadow_frames(&mem, Policy::Record, 2 * SPACES + 64).unwrap();
    assert_eq!(v.capacity(), 2 * SPACES + 64);
    assert_eq!(v.reserved_frames(), 2 * SPACES + 64 + 257, "65,536 frames of records: 256 leaves, 1 directory");
    let cpu = HostCpu::<TwoLevel>::new(&ram);
    let k = KernelMm::pagetable_init(&mem, &v, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let data = ram.alloc_frame().unwrap();
    let mut spaces = Vec::with_capacity(SPACES);
    let mut few = (0, 0);
    for i in 0..SPACES {
        let mut mm = k.create().unwrap();
        k.map(&mut mm, VA, data, PteFlags::USER | PteFlags::RW).unwrap();
        spaces.push(mm);
        if i + 1 == 10 {
            few = reached(&k, &mem, &mut spaces[0], data);
        }
    }
    let many = reached(&k, &mem, &mut spaces[0], data);
    assert_eq!(few, many, "frames reached by protect, map+unmap: 10 spaces alive vs 10,000");
    println!(
        "frames reached with 10 and {SPACES} spaces: protect {} / {}, map+unmap {} / {}",
        few.0, many.0, few.1, many.1
    );
    let s = v.stats();
    assert_eq!(v.typed_pages(), s.typed_l1 + s.typed_l2);
    assert!(s.typed_l2 > SPACES && s.typed_l1 >= SPACES, "{s}");
    assert_eq!(s.typed_clone, SPACES);
    let mut report = String::new();
    assert!(v.verify(&mut report), "{report}");
    assert_eq!(v.violations(), 0, "{:?}", v.violation(0));
    for mm in spaces {
        k.destroy(mm);
    }
    ram.free_frame(data);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!((v.pages_held(), v.typed_pages()), (0, 0));
    assert_eq!(v.stats().pool_free, v.capacity());
    v.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), base, "every frame back");
}

/// A pool sized small runs out: the `alloc_pd_clone` of the next address space is refused with
/// `CapacityExhausted` (a typed report, no panic under the record policy), nothing changes in
/// the backend, and once a space is destroyed the kernel creates one again.
fn small_pool_is_exhausted_and_recovers<M: PagingMode>() {
    let ram = EmulatedRam::sixteen_mib();
    let base = ram.frames_in_use();
    let v = Vmi::<M, _>::with_shadow_frames(&ram, Policy::Record, 64).unwrap();
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::pagetable_init(&ram, &v, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let free = || v.stats().pool_free;
    let before = free();
    let mut spaces = vec![k.create().unwrap()];
    let per_space = before - free();
    while free() >= per_space {
        spaces.push(k.create().unwrap());
    }
    // The shadows left, taken by tables announced directly.
    let fillers: Vec<Pfn> = (0..free()).map(|_| alloc_zeroed(&ram).unwrap()).collect();
    for &f in &fillers {
        v.alloc_pt(f);
    }
    assert_eq!(free(), 0);
    let (typed, free) = (v.typed_pages(), v.stats().pool_free);
    let held = v.pages_held();
    // Out of shadows: the hook is refused, the kernel's table is not shadowed.
    let p = alloc_zeroed(&ram).unwrap();
    v.alloc_pt(p);
    take_violations(&v, &[(HookKind::AllocPt, VmiRule::CapacityExhausted { pfn: p, capacity: 64 })]);
    assert_eq!((v.page_type(p), v.shadow_of(p)), (PageType::NORMAL, None));
    assert_eq!((v.typed_pages(), v.stats().pool_free, v.pages_held()), (typed, free, held), "nothing changed");
    ram.free_frame(p);
    // Releasing one space gives its shadows back: the next space is shadowed again.
    k.destroy(spaces.pop().unwrap());
    let again = k.create().unwrap();
    assert_eq!(v.violations(), 0, "{:?}", v.violation(0));
    assert_eq!((v.typed_pages(), v.stats().pool_free), (typed, 0), "the new space took the shadows given back");
    spaces.push(again);
    let mut report = String::new();
    assert!(v.verify(&mut report), "{report}");
    for f in fillers {
        v.release_pt(f);
        ram.free_frame(f);
    }
    for mm in spaces {
        k.destroy(mm);
    }
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    v.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), base);
}

/// The records and the pool come from the memory given: when it cannot supply them,
/// construction fails with `OutOfMemory` and gives back everything it took.
fn construction_out_of_memory_gives_everything_back<M: PagingMode>() {
    let ram = EmulatedRam::new(512, 256);
    let base = ram.frames_in_use();
    assert_eq!(Vmi::<M, _>::with_shadow_frames(&ram, Policy::Record, 300).err(), Some(InitError::OutOfMemory));
    assert_eq!(ram.frames_in_use(), base);
    for n in 1..4 {
        ram.fail_nth_alloc(n);
        assert_eq!(Vmi::<M, _>::with_shadow_frames(&ram, Policy::Record, 8).err(), Some(InitError::OutOfMemory));
        ram.clear_fault();
        assert_eq!(ram.frames_in_use(), base, "allocation {n} failed");
    }
}

both_modes!(small_pool_is_exhausted_and_recovers, construction_out_of_memory_gives_everything_back);
