//! The tables agree with an independent model after random operation sequences (proptest,
//! with shrinking): address spaces created and destroyed, user pages mapped, unmapped and
//! protected, kernel-range pages mapped and unmapped, `change_page_attr` and its revert,
//! address spaces activated, allocation failures injected, in both paging modes under every
//! backend (native, VMI, Xen).
//!
//! After every step: every translation agrees with the oracle through the software walk and,
//! for the loaded root, through the host CPU (TLB included); the backend's `verify` is clean
//! and it recorded no violation; every frame in use is accounted for (the test's pages, the
//! boot tables, each address space's root, pmds and page tables, kernel-range tables, split
//! and deferred tables). At the end everything is torn down and every frame comes back.
//!
//! A failure prints the shrunk operation sequence; its seed is kept in
//! `proptest-regressions/oracle.txt` and replayed first by every later run.
mod common;
use backend_vmi::Vmi;
use backend_xen::{Hypervisor, Xen};
use common::*;
use paravirt_core::{Inspect, Policy};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Cases per paging mode and backend; `MM_PROPTEST_CASES` may ask for fewer (the mutation
/// runs) or more.
const CASES: u32 = 256;

fn cases() -> u32 {
    std::env::var("MM_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(CASES)
}
/// Address spaces alive at most.
const SPACES: usize = 3;
/// Pages whose linear-map protection `change_page_attr` changes.
const CPA_PAGES: usize = 3;

/// User pages the sequences touch: a few page tables that fill, empty and get freed (the
/// last one at the top of user space, in PAE's third user pmd).
const USER_VAS: [u32; 8] =
    [0x0804_8000, 0x0804_9000, 0x0804_a000, 0x0840_0000, 0x4000_0000, 0x4000_1000, 0xBFFF_E000, 0xBFFF_F000];
/// Kernel-range (vmalloc) pages of the 16 MiB test machines (the area starts at 0xc1800000
/// and, under the Xen model, ends below Xen's own area).
const KERNEL_VAS: [u32; 4] = [0xE040_0000, 0xE040_1000, 0xE100_0000, 0xEFFF_F000];

/// One step of a sequence. Indices are taken modulo what exists.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `create`, the `oom`th allocation it makes failing (if any).
    Create { oom: Option<u8> },
    /// `destroy`.
    Destroy { space: usize },
    /// `map` of a fresh frame.
    Map { space: usize, va: usize, rw: bool, oom: bool },
    /// `unmap`.
    Unmap { space: usize, va: usize },
    /// `protect`.
    Protect { space: usize, va: usize, rw: bool },
    /// `map_kernel_page` of a fresh frame.
    MapKernel { va: usize, global: bool, oom: bool },
    /// `unmap_kernel_page`.
    UnmapKernel { va: usize },
    /// `change_page_attr` to read-only, or back to `PAGE_KERNEL` (the revert); the token is
    /// flushed or left to a later flush.
    Cpa { page: usize, read_only: bool, flush: bool, oom: bool },
    /// `activate` an address space, or `swapper_pg_dir`.
    Activate { space: Option<usize> },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SPACES;
    prop_oneof![
        2 => proptest::option::weighted(0.3, 1u8..=4).prop_map(|oom| Op::Create { oom }),
        1 => s.clone().prop_map(|space| Op::Destroy { space }),
        6 => (s.clone(), 0..USER_VAS.len(), any::<bool>(), proptest::bool::weighted(0.1))
            .prop_map(|(space, va, rw, oom)| Op::Map { space, va, rw, oom }),
        4 => (s.clone(), 0..USER_VAS.len()).prop_map(|(space, va)| Op::Unmap { space, va }),
        2 => (s.clone(), 0..USER_VAS.len(), any::<bool>()).prop_map(|(space, va, rw)| Op::Protect { space, va, rw }),
        2 => (0..KERNEL_VAS.len(), any::<bool>(), proptest::bool::weighted(0.1))
            .prop_map(|(va, global, oom)| Op::MapKernel { va, global, oom }),
        2 => (0..KERNEL_VAS.len()).prop_map(|va| Op::UnmapKernel { va }),
        2 => (0..CPA_PAGES, any::<bool>(), any::<bool>(), proptest::bool::weighted(0.1))
            .prop_map(|(page, read_only, flush, oom)| Op::Cpa { page, read_only, flush, oom }),
        2 => proptest::option::of(s).prop_map(|space| Op::Activate { space }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..48)
}

/// The model: what each address space and the kernel range map, which linear-map pages are
/// read-only, and which frames the test holds.
struct Model<M: PagingMode> {
    spaces: Vec<(AddressSpace<M>, Oracle)>,
    kernel: Oracle,
    cpa: [(Pfn, bool); CPA_PAGES],
    next_tag: u32,
}

/// A fresh frame holding a tag in its first word, so a read through the CPU tells which
/// frame it reached.
fn tagged(ram: &EmulatedRam, model_tag: &mut u32) -> Pfn {
    let f = ram.alloc_frame().expect("the test machine has frames to spare");
    *model_tag += 1;
    ram.write_u32(f.phys().as_u64(), *model_tag);
    f
}

fn user_flags(rw: bool) -> PteFlags {
    if rw {
        PteFlags::USER | PteFlags::RW
    } else {
        PteFlags::USER
    }
}

/// Runs `f` with the `n`th allocation from now failing, then cancels a failure not consumed.
fn with_oom<R>(ram: &EmulatedRam, n: Option<u8>, f: impl FnOnce() -> R) -> R {
    if let Some(n) = n {
        ram.fail_nth_alloc(n as u64);
    }
    let r = f();
    ram.clear_fault();
    r
}

type Kern<'a, M, B> = KernelMm<M, &'a B, &'a EmulatedRam, &'a HostCpu<'a, M>>;

fn step<M: PagingMode, B: PvMmuOps<M> + Inspect>(k: &Kern<'_, M, B>, ram: &EmulatedRam, m: &mut Model<M>, op: Op) {
    let n = m.spaces.len();
    match op {
        Op::Create { oom } => {
            if n == SPACES {
                return;
            }
            match with_oom(ram, oom, || k.create()) {
                Ok(a) => m.spaces.push((a, Oracle::new())),
                Err(MmError::OutOfMemory) => assert!(oom.is_some(), "create ran out of memory"),
                Err(e) => panic!("create: {e}"),
            }
        }
        Op::Destroy { space } if n > 0 => {
            let (a, o) = m.spaces.remove(space % n);
            k.destroy(a);
            for (_, f, _) in o.iter() {
                ram.free_frame(f);
            }
        }
        Op::Map { space, va, rw, oom } if n > 0 => {
            let (a, o) = &mut m.spaces[space % n];
            let va = USER_VAS[va];
            let f = tagged(ram, &mut m.next_tag);
            match with_oom(ram, oom.then_some(1), || k.map(a, va, f, user_flags(rw))) {
                Ok(()) => assert!(o.map(va, f, user_flags(rw)), "{va:#x} mapped twice"),
                Err(e) => {
                    match e {
                        MmError::AlreadyMapped(v) => assert!(v == va && o.lookup(va).is_some()),
                        MmError::OutOfMemory => assert!(oom, "map ran out of memory"),
                        e => panic!("map: {e}"),
                    }
                    ram.free_frame(f);
                }
            }
        }
        Op::Unmap { space, va } if n > 0 => {
            let (a, o) = &mut m.spaces[space % n];
            let va = USER_VAS[va];
            match k.unmap(a, va) {
                Ok(f) => {
                    assert_eq!(o.unmap(va), Some(f));
                    ram.free_frame(f);
                }
                Err(MmError::NotMapped(v)) => assert!(v == va && o.lookup(va).is_none()),
                Err(e) => panic!("unmap: {e}"),
            }
        }
        Op::Protect { space, va, rw } if n > 0 => {
            let (a, o) = &mut m.spaces[space % n];
            let va = USER_VAS[va];
            match k.protect(a, va, user_flags(rw)) {
                Ok(()) => assert!(o.protect(va, user_flags(rw))),
                Err(MmError::NotMapped(v)) => assert!(v == va && o.lookup(va).is_none()),
                Err(e) => panic!("protect: {e}"),
            }
        }
        Op::MapKernel { va, global, oom } => {
            let va = KERNEL_VAS[va];
            // Xen refuses GLOBAL in an L1 entry of a 32-bit guest (`l1_disallow_mask`), so under
            // the Xen model kernel pages are never global (as Linux on Xen maps them).
            let global = global && k.backend().backend_name() != "xen";
            let flags = if global { PAGE_KERNEL | PteFlags::GLOBAL } else { PAGE_KERNEL };
            let f = tagged(ram, &mut m.next_tag);
            match with_oom(ram, oom.then_some(1), || k.map_kernel_page(va, f, flags)) {
                Ok(()) => assert!(m.kernel.map(va, f, flags)),
                Err(e) => {
                    match e {
                        MmError::AlreadyMapped(v) => assert!(v == va && m.kernel.lookup(va).is_some()),
                        MmError::OutOfMemory => assert!(oom, "map_kernel_page ran out of memory"),
                        e => panic!("map_kernel_page: {e}"),
                    }
                    ram.free_frame(f);
                }
            }
        }
        Op::UnmapKernel { va } => {
            let va = KERNEL_VAS[va];
            match k.unmap_kernel_page(va) {
                Ok(f) => {
                    assert_eq!(m.kernel.unmap(va), Some(f));
                    ram.free_frame(f);
                }
                Err(MmError::NotMapped(v)) => assert!(v == va && m.kernel.lookup(va).is_none()),
                Err(e) => panic!("unmap_kernel_page: {e}"),
            }
        }
        Op::Cpa { page, read_only, flush, oom } => {
            let (f, ro) = m.cpa[page];
            let prot = if read_only { PAGE_KERNEL_RO } else { PAGE_KERNEL };
            match with_oom(ram, oom.then_some(1), || k.change_page_attr(f, prot)) {
                Ok(token) => {
                    assert!(read_only || ro, "restored a page that was never changed");
                    m.cpa[page].1 = read_only;
                    if flush {
                        token.flush(k);
                    } else {
                        token.ignore();
                    }
                }
                Err(MmError::AttrNotChanged(p)) => assert!(p == f && !read_only && !ro),
                Err(MmError::OutOfMemory) => assert!(oom, "change_page_attr ran out of memory"),
                Err(e) => panic!("change_page_attr: {e}"),
            }
        }
        Op::Activate { space: Some(s) } if n > 0 => k.activate(&m.spaces[s % n].0),
        Op::Activate { .. } => k.activate_swapper(),
        _ => {}
    }
}

/// What `va` must translate to: (physical address, writable).
fn expect(o: &Oracle, va: u32) -> Option<(u64, bool)> {
    o.lookup(va).map(|(pa, f)| (pa, f.contains(PteFlags::RW)))
}

fn check<M: PagingMode, B: PvMmuOps<M> + Inspect>(k: &Kern<'_, M, B>, ram: &EmulatedRam, m: &Model<M>, base: usize) {
    // The software walk, every address space and the kernel's root.
    let swapper = k.swapper_pg_dir();
    let mut roots: Vec<(Pfn, Option<&Oracle>)> = m.spaces.iter().map(|(a, o)| (a.pgd(), Some(o))).collect();
    roots.push((swapper, None));
    for &(root, o) in &roots {
        for va in USER_VAS {
            let want = o.and_then(|o| expect(o, va));
            let got = k.translate_root(root, va).map(|t| (t.pa, t.flags.contains(PteFlags::RW)));
            assert_eq!(got, want, "root {root} user {va:#x}");
        }
        for va in KERNEL_VAS {
            let got = k.translate_root(root, va).map(|t| (t.pa, t.flags.contains(PteFlags::RW)));
            assert_eq!(got, expect(&m.kernel, va), "root {root} kernel {va:#x}");
        }
        for (f, ro) in m.cpa {
            let t = k.translate_root(root, lowmem_va(f)).expect("the linear map");
            assert_eq!((t.pa, t.flags.contains(PteFlags::RW)), (f.phys().as_u64(), !ro), "root {root} {f}");
        }
    }
    for (a, o) in &m.spaces {
        assert_eq!(a.mapped_pages(), o.len());
    }
    // The CPU (TLB included) on the loaded root: reads reach the right frame, writes fault
    // exactly where the mapping is read-only.
    let active = k.active_root().expect("a root is loaded");
    let o = m.spaces.iter().find(|(a, _)| a.pgd() == active).map(|(_, o)| o);
    let cpu = k.cpu();
    let probe = |va: u32, want: Option<(u64, bool)>| match want {
        None => assert!(cpu.read_u32(va).is_err(), "{va:#x} reachable through the CPU"),
        Some((pa, rw)) => {
            let tag = ram.read_u32(pa);
            assert_eq!(cpu.read_u32(va), Ok(tag), "{va:#x} through the CPU");
            assert_eq!(cpu.write_u32(va, tag).is_ok(), rw, "{va:#x} writable through the CPU");
        }
    };
    for va in USER_VAS {
        probe(va, o.and_then(|o| expect(o, va)));
    }
    for va in KERNEL_VAS {
        probe(va, expect(&m.kernel, va));
    }
    for (f, ro) in m.cpa {
        probe(lowmem_va(f), Some((f.phys().as_u64(), !ro)));
    }
    assert!(cpu.stale_hits().is_empty(), "stale TLB entries used: {:?}", cpu.stale_hits());
    // The backend agrees and saw no violation.
    let mut report = String::new();
    assert!(k.backend().verify(&mut report), "{report}");
    assert_eq!(k.backend().violations(), 0);
    // Every frame accounted for.
    let region = |va: u32| va >> M::PMD_SHIFT;
    let tables = |o: &Oracle| o.iter().map(|(va, _, _)| region(va)).collect::<BTreeSet<_>>().len();
    let per_space = k.pgd_alloc_frames() as usize;
    let data: usize = m.spaces.iter().map(|(_, o)| o.len()).sum::<usize>() + m.kernel.len() + CPA_PAGES;
    let want = base
        + data
        + m.spaces.iter().map(|(_, o)| per_space + tables(o)).sum::<usize>()
        + tables(&m.kernel)
        + k.split_tables()
        + k.deferred_frees()
        + k.metadata_frames();
    assert_eq!(ram.frames_in_use(), want, "frames in use");
}

/// Boots, runs `ops` checking after every step, tears everything down.
fn run<M: PagingMode, B: PvMmuOps<M> + Inspect>(ram: &EmulatedRam, backend: &B, ops: &[Op]) {
    let cpu = HostCpu::<M>::new(ram);
    let k: Kern<'_, M, B> = KernelMm::pagetable_init(ram, backend, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let base = ram.frames_in_use();
    let mut tag = 0;
    let mut m = Model::<M> {
        spaces: vec![],
        kernel: Oracle::new(),
        cpa: std::array::from_fn(|_| (tagged(ram, &mut tag), false)),
        next_tag: tag,
    };
    check(&k, ram, &m, base);
    for &op in ops {
        step(&k, ram, &mut m, op);
        check(&k, ram, &m, base);
    }
    k.activate_swapper();
    for (a, o) in m.spaces.drain(..) {
        k.destroy(a);
        for (_, f, _) in o.iter() {
            ram.free_frame(f);
        }
    }
    for (va, f, _) in m.kernel.iter() {
        assert_eq!(k.unmap_kernel_page(va), Ok(f));
        ram.free_frame(f);
    }
    for (f, ro) in m.cpa {
        if ro {
            k.change_page_attr(f, PAGE_KERNEL).unwrap().ignore();
        }
    }
    k.global_flush_tlb();
    for (f, _) in m.cpa {
        ram.free_frame(f);
    }
    assert_eq!(ram.frames_in_use(), base);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(backend.pages_held(), 0);
    assert_eq!(backend.violations(), 0);
    assert!(cpu.stale_hits().is_empty());
}

/// The test machine: 8 MiB, the first 1 MiB reserved (VMI takes 513 frames for its shadows).
fn machine() -> EmulatedRam {
    EmulatedRam::new(2048, 256)
}

fn native<M: PagingMode>(ops: &[Op]) {
    let ram = machine();
    run::<M, _>(&ram, &Native, ops);
    assert_eq!(ram.frames_in_use(), 0);
}

fn vmi<M: PagingMode>(ops: &[Op]) {
    let ram = machine();
    let vmi = Vmi::<M, _>::new(&ram, Policy::Record).unwrap();
    run::<M, _>(&ram, &vmi, ops);
    vmi.teardown().unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

fn xen<M: PagingMode>(ops: &[Op]) {
    let ram = machine();
    let hv: Box<Hypervisor<M, &EmulatedRam>> = Box::new(Hypervisor::boot(&ram).unwrap());
    let xen = Xen::boot(&*hv, Policy::Record).unwrap();
    run::<M, _>(&ram, &xen, ops);
    xen.teardown().unwrap();
    hv.free_frametable().unwrap();
    assert_eq!(ram.frames_in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn two_level_native_agrees_with_the_oracle(ops in ops()) { native::<TwoLevel>(&ops) }
    #[test]
    fn pae_native_agrees_with_the_oracle(ops in ops()) { native::<Pae>(&ops) }
    #[test]
    fn two_level_vmi_agrees_with_the_oracle(ops in ops()) { vmi::<TwoLevel>(&ops) }
    #[test]
    fn pae_vmi_agrees_with_the_oracle(ops in ops()) { vmi::<Pae>(&ops) }
    #[test]
    fn two_level_xen_agrees_with_the_oracle(ops in ops()) { xen::<TwoLevel>(&ops) }
    #[test]
    fn pae_xen_agrees_with_the_oracle(ops in ops()) { xen::<Pae>(&ops) }
}

fn linear_map_translates_every_low_page<M: PagingMode>() {
    for pse in [true, false] {
        with_kernel::<M, _>(pse, |k, _, _| {
            let root = k.swapper_pg_dir();
            for pfn in (0..k.lowmem_end().as_u32()).step_by(7) {
                let t = k.translate_root(root, lowmem_va(Pfn::new(pfn)) + 4).unwrap();
                assert_eq!(t.pa, Pfn::new(pfn).phys().as_u64() + 4);
                assert_eq!(t.large, pse);
                assert!(t.flags.contains(PteFlags::RW) && !t.flags.contains(PteFlags::USER));
            }
            assert_eq!(k.translate_root(root, lowmem_va(k.lowmem_end())), None);
            assert_eq!(k.translate_root(root, 0x1000), None, "no identity map in the kernel's root");
        });
    }
}

fn every_address_space_sees_the_kernel_linear_map<M: PagingMode>() {
    with_kernel::<M, _>(false, |k, ram, _| {
        let spaces: Vec<_> = (0..3).map(|_| k.create().unwrap()).collect();
        let f = ram.alloc_frame().unwrap();
        // SAFETY: the frame is allocated to this test.
        unsafe { ram.frame_ptr(f).cast::<u32>().as_ptr().write(0xFEED) };
        for a in &spaces {
            k.activate(a);
            assert_eq!(k.cpu().read_u32(lowmem_va(f)), Ok(0xFEED));
            assert_eq!(k.cpu().read_u32(0x0804_8000).unwrap_err().vector, 14);
        }
        for a in spaces {
            k.destroy(a);
        }
    });
}

both_modes!(linear_map_translates_every_low_page, every_address_space_sees_the_kernel_linear_map);
