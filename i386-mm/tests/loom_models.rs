//! loom models of `pgd_lock` around `alloc_pd_clone`, over the real call sites of `i386-mm`
//! (whose `pgd_lock` is loom's mutex under `cfg(loom)`) and the real backends (whose state
//! locks are loom's too): VMI keeps real shadow page tables, so the seed's sentence, "We need to
//! clone the root for non-PAE mode while it is protected under the pgd lock to correctly copy
//! the shadow", is checked on the shadow itself.
//!
//! Run with `cargo xtask loom` (every model, then each deliberately wrong ordering, which loom
//! must catch), or by hand:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p i386-mm --test loom_models`
//! (add `--features loom-bug-…` for a wrong ordering). Without `--cfg loom` this file is empty.
#![cfg(loom)]
#![allow(dead_code)] // each wrong ordering builds only the models it breaks

use backend_vmi::{Vmi, VmiRule};
use backend_xen::{Hypervisor, Xen};
use i386_mm::*;
use loom::sync::Arc;
use mm_testkit::EmulatedRam;
use paravirt_core::{Inspect, Policy};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A processor that does nothing: the models check tables with the software walker.
struct NullCpu;
impl Cpu for NullCpu {
    fn write_cr3(&self, _: u32) {}
    fn read_cr3(&self) -> u32 {
        0
    }
    fn load_boot_root(&self) {}
    fn invlpg(&self, _: u32) {}
    fn flush_tlb(&self) {}
    fn flush_tlb_global(&self) {}
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        Err(Fault { vector: 14, error_code: 0, addr: va })
    }
    fn write_u32(&self, va: u32, _: u32) -> Result<(), Fault> {
        Err(Fault { vector: 14, error_code: 2, addr: va })
    }
}

/// Shadow frames VMI reserves in the models.
const SHADOWS: usize = 48;
type Ram = &'static EmulatedRam;
type V = Vmi<TwoLevel, Ram>;
type KVmi = KernelMm<TwoLevel, &'static V, Ram, NullCpu>;
type H = Hypervisor<TwoLevel, Ram>;
type X = Xen<'static, TwoLevel, Ram>;
type KXen = KernelMm<TwoLevel, &'static X, Ram, NullCpu>;
type HPae = Hypervisor<Pae, Ram>;
type XPae = Xen<'static, Pae, Ram>;
type KXenPae = KernelMm<Pae, &'static XPae, Ram, NullCpu>;

/// RAM shared by every execution of a model (4 MiB; each execution gives every frame back).
fn ram() -> Ram {
    Box::leak(Box::new(EmulatedRam::new(1024, 256)))
}

/// Low memory the models' kernels map: 1 MiB, one page table.
fn opts() -> InitOptions {
    InitOptions { pse: true, lowmem_end: Some(Pfn::new(256)), reserve_top: 0 }
}

/// Runs `f` under loom with at most `bound` preemptions (`None`: every interleaving), and
/// returns how many executions loom explored.
fn explore(bound: Option<usize>, f: impl Fn() + Send + Sync + 'static) -> usize {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    RUNS.store(0, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = bound;
    // A backend hook takes its lock once per entry written (a split writes a whole table), so
    // an execution has far more than loom's default 1,000 branch points.
    b.max_branches = 1_000_000;
    // The models run on a thread of their own with a large stack: the Xen model's state is
    // built on the stack before it moves into its lock, more than loom's first thread holds.
    let f = std::sync::Arc::new(f);
    b.check(move || {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let f = f.clone();
        loom::thread::Builder::new().stack_size(8 << 20).spawn(move || f()).unwrap().join().unwrap();
    });
    let n = RUNS.load(Ordering::SeqCst);
    let bound = bound.map_or("none, exhaustive".to_string(), |b| b.to_string());
    println!("loom: {n} interleavings explored (preemption bound {bound}) in {:.2} s", started.elapsed().as_secs_f64());
    n
}

/// A fresh VMI backend recording violations, for one execution of a model (leaked: loom runs
/// the model many times, each with its own backend).
fn vmi(ram: Ram) -> &'static V {
    Box::leak(Box::new(Vmi::with_shadow_frames(ram, Policy::Record, SHADOWS).expect("shadow pool")))
}

/// A two-level kernel over a fresh VMI backend.
fn boot_vmi(ram: Ram) -> (&'static V, Arc<KVmi>) {
    let v = vmi(ram);
    let k = Arc::new(KernelMm::pagetable_init(ram, v, NullCpu, opts()).unwrap());
    k.activate_swapper();
    (v, k)
}

/// Tears the VMI kernel down and checks VMI holds nothing and every frame came back.
fn finish_vmi(v: &V, k: Arc<KVmi>, ram: Ram) {
    let k = Arc::try_unwrap(k).ok().expect("threads joined");
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(v.pages_held(), 0, "VMI still holds pages");
    v.teardown().expect("teardown");
    assert_eq!(ram.frames_in_use(), 0, "frames leaked");
}

/// The kernel range of `pgd` equals `swapper_pg_dir`'s, in the guest tables and (under VMI)
/// in the shadows, and VMI's cross-check is clean. Panics naming what diverged.
fn kernel_range_agrees(k: &KVmi, v: &V, pgd: Pfn, what: &str) {
    let ram = k.mem();
    let swapper = k.swapper_pg_dir();
    for i in TwoLevel::USER_PTRS_PER_PGD..TwoLevel::PTRS_PER_PGD {
        let (g, s) = (read_raw::<TwoLevel, _>(*ram, pgd, i), read_raw::<TwoLevel, _>(*ram, swapper, i));
        assert_eq!(g, s, "guest pgd {pgd:?} missed the kernel-range update ({what}) at entry {i}");
    }
    let (sp, ss) = (v.shadow_of(pgd).expect("pgd shadowed"), v.shadow_of(swapper).expect("swapper shadowed"));
    for i in TwoLevel::USER_PTRS_PER_PGD..TwoLevel::PTRS_PER_PGD {
        let (a, b) = (read_raw::<TwoLevel, _>(*ram, sp, i), read_raw::<TwoLevel, _>(*ram, ss, i));
        assert_eq!(a, b, "shadow of pgd {pgd:?} missed the kernel-range update ({what}) at entry {i}");
    }
    let mut report = String::new();
    assert!(v.verify(&mut report), "VMI cross-check after {what}: {report}");
    assert_eq!(v.violations(), 0, "VMI violations after {what}: {:?}", v.violation(0));
}

/// 1 (and the seed's case): `pgd_alloc` racing a kernel-range addition, under VMI.
fn pgd_alloc_races_kernel_addition(ram: Ram) {
    let (v, k) = boot_vmi(ram);
    let data = ram.alloc_frame().unwrap();
    let k2 = k.clone();
    let t = loom::thread::spawn(move || k2.map_kernel_page(k2.vmalloc_start(), data, PAGE_KERNEL).unwrap());
    let a = k.create().unwrap();
    t.join().unwrap();
    kernel_range_agrees(&k, v, a.pgd(), "addition");
    k.destroy(a);
    k.unmap_kernel_page(k.vmalloc_start()).unwrap();
    ram.free_frame(data);
    finish_vmi(v, k, ram);
}

#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m1_pgd_alloc_racing_a_kernel_addition_keeps_guest_and_shadow_in_step() {
    let ram = ram();
    explore(None, move || pgd_alloc_races_kernel_addition(ram));
}

/// 2: the same racing a removal (present → not present must propagate too).
#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m2_pgd_alloc_racing_a_kernel_removal_keeps_guest_and_shadow_in_step() {
    let ram = ram();
    explore(None, move || {
        let (v, k) = boot_vmi(ram);
        let data = ram.alloc_frame().unwrap();
        k.map_kernel_page(k.vmalloc_start(), data, PAGE_KERNEL).unwrap();
        let k2 = k.clone();
        let t = loom::thread::spawn(move || assert_eq!(k2.unmap_kernel_page(k2.vmalloc_start()), Ok(data)));
        let a = k.create().unwrap();
        t.join().unwrap();
        kernel_range_agrees(&k, v, a.pgd(), "removal");
        assert_eq!(k.translate(&a, k.vmalloc_start()), None, "stale kernel entry survived a removal");
        k.destroy(a);
        ram.free_frame(data);
        finish_vmi(v, k, ram);
    });
}

/// 3: two `pgd_alloc`s racing one kernel-range update.
#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m3_two_pgd_allocs_racing_one_update_both_see_it() {
    let ram = ram();
    explore(None, move || {
        let (v, k) = boot_vmi(ram);
        let data = ram.alloc_frame().unwrap();
        let (k2, k3) = (k.clone(), k.clone());
        let t = loom::thread::spawn(move || k2.map_kernel_page(k2.vmalloc_start(), data, PAGE_KERNEL).unwrap());
        let u = loom::thread::spawn(move || k3.create().unwrap());
        let a = k.create().unwrap();
        t.join().unwrap();
        let b = u.join().unwrap();
        kernel_range_agrees(&k, v, a.pgd(), "update racing two allocations");
        kernel_range_agrees(&k, v, b.pgd(), "update racing two allocations");
        k.destroy(a);
        k.destroy(b);
        k.unmap_kernel_page(k.vmalloc_start()).unwrap();
        ram.free_frame(data);
        finish_vmi(v, k, ram);
    });
}

/// 4: `pgd_free` racing an update, the freed pgd frame reused at once as a data page: the
/// update never writes into it after its destructor ran, and VMI never sees a write into a
/// released table. With `loom-bug-release-before-unlist` (the seed's `pgd_dtor` order) VMI
/// catches the write.
fn pgd_free_races_update(ram: Ram) {
    const PATTERN: u32 = 0x5A5A_5A5A;
    let (v, k) = boot_vmi(ram);
    let data = ram.alloc_frame().unwrap();
    let a = k.create().unwrap();
    let pgd = a.pgd();
    let k2 = k.clone();
    let t = loom::thread::spawn(move || k2.map_kernel_page(k2.vmalloc_start(), data, PAGE_KERNEL).unwrap());
    k.destroy(a);
    // Reuse the freed pgd frame at once as a data page.
    let reused = loop {
        let f = ram.alloc_frame().unwrap();
        if f == pgd {
            break f;
        }
        ram.free_frame(f);
        panic!("the freed pgd was not the next frame handed out");
    };
    for i in 0..1024u64 {
        ram.write_u32(reused.phys().as_u64() + i * 4, PATTERN);
    }
    t.join().unwrap();
    let rule = v.violation(0).map(|x| x.rule);
    assert!(
        !matches!(rule, Some(VmiRule::WriteUntyped { .. })),
        "VMI saw a kernel-range update write into released table {pgd:?}: {rule:?}"
    );
    assert_eq!(v.violations(), 0, "VMI violations: {rule:?}");
    for i in 0..1024u64 {
        assert_eq!(ram.read_u32(reused.phys().as_u64() + i * 4), PATTERN, "the update wrote into the reused frame");
    }
    ram.free_frame(reused);
    k.unmap_kernel_page(k.vmalloc_start()).unwrap();
    ram.free_frame(data);
    finish_vmi(v, k, ram);
}

#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m4_pgd_free_racing_an_update_never_writes_into_the_released_pgd() {
    let ram = ram();
    explore(None, move || pgd_free_races_update(ram));
}

/// 5: `change_page_attr` split and revert (the directory entry written into every pgd on the
/// list) racing `pgd_alloc`, under VMI. Preemption bound 2: a split writes 1,024 entries, each
/// taking VMI's lock, so each is a preemption point; with bound 3 the model does not finish in
/// five minutes on two cores (bound 2: about 3,000 interleavings, 8 s).
#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m5_change_page_attr_split_and_revert_racing_pgd_alloc() {
    let ram = ram();
    explore(Some(2), move || {
        let v = vmi(ram);
        // 4 MiB of low memory: one large page, so change_page_attr splits it.
        let o = InitOptions { pse: true, lowmem_end: Some(Pfn::new(1024)), reserve_top: 0 };
        let k = Arc::new(KernelMm::pagetable_init(ram, v, NullCpu, o).unwrap());
        k.activate_swapper();
        let f = ram.alloc_frame().unwrap();
        let k2 = k.clone();
        let t = loom::thread::spawn(move || {
            k2.change_page_attr(f, PAGE_KERNEL_RO).unwrap().flush(&k2);
            k2.change_page_attr(f, PAGE_KERNEL).unwrap().flush(&k2);
        });
        let a = k.create().unwrap();
        t.join().unwrap();
        kernel_range_agrees(&k, v, a.pgd(), "split and revert");
        assert!(k.translate(&a, lowmem_va(f)).is_some_and(|t| t.large), "revert reached the new pgd");
        k.destroy(a);
        ram.free_frame(f);
        finish_vmi(v, k, ram);
    });
}

/// 6: Xen: pinning a tree (its tables made read-only, then pinned) racing a kernel-range update
/// that writes into that tree's pgd: no direct write lands on a table that is read-only, no
/// violation, and pin counts balance.
#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m6_xen_pinning_a_tree_racing_a_kernel_update() {
    let ram = ram();
    explore(None, move || {
        let hv: &'static H = Box::leak(Box::new(Hypervisor::boot(ram).expect("frame table")));
        let x: &'static X = Box::leak(Box::new(Xen::boot(hv, Policy::Record).expect("page flags")));
        let k: Arc<KXen> = Arc::new(KernelMm::pagetable_init(ram, x, NullCpu, opts()).unwrap());
        k.activate_swapper();
        let pinned_before = hv.pinned_tables();
        let mut a = k.create().unwrap();
        let page = ram.alloc_frame().unwrap();
        k.map(&mut a, 0x4000_0000, page, PteFlags::USER | PteFlags::RW).unwrap();
        let data = ram.alloc_frame().unwrap();
        let k2 = k.clone();
        let t = loom::thread::spawn(move || k2.map_kernel_page(k2.vmalloc_start(), data, PAGE_KERNEL).unwrap());
        k.activate(&a); // pins a's tree
        t.join().unwrap();
        let mut report = String::new();
        assert!(x.verify(&mut report), "Xen cross-check: {report}");
        assert_eq!(x.violations(), 0, "Xen violations: {:?}", x.violation_log().get(0));
        assert!(k.translate(&a, k.vmalloc_start()).is_some(), "the pinned tree missed the kernel-range update");
        k.activate_swapper();
        assert_eq!(k.unmap(&mut a, 0x4000_0000), Ok(page));
        k.destroy(a);
        k.unmap_kernel_page(k.vmalloc_start()).unwrap();
        ram.free_frame(page);
        ram.free_frame(data);
        assert_eq!(hv.pinned_tables(), pinned_before, "pin counts balance");
        let k = Arc::try_unwrap(k).ok().expect("threads joined");
        k.load_boot_root();
        k.shutdown().map_err(|e| e.1).unwrap();
        x.teardown().expect("page flags back");
        hv.free_frametable().expect("frame table back");
        assert_eq!(ram.frames_in_use(), 0, "frames leaked");
    });
}

/// 7: PAE: a present→present entry update racing a reader standing in for the hardware walker
/// (one 64-bit read, as the walker does): the reader sees the old or the new entry, never a
/// mix. With `loom-bug-pae-halves` the store is two halves and loom finds the torn value.
fn pae_entry_update_races_walker() {
    let old = Pte::new(Pfn::new(0x106), PteFlags::PRESENT | PteFlags::RW | PteFlags::USER | PteFlags::NX);
    let new = Pte::new(Pfn::new(0x2_0107), PteFlags::PRESENT | PteFlags::USER);
    let cell: &'static mut [u64; 1] = Box::leak(Box::new([old.raw()]));
    // SAFETY: the leaked cell lives for ever, is 8-byte aligned, and is reached only through
    // this slot (one writer thread, one reader thread, as a CPU and its page walker).
    let slot: PteSlot = unsafe { Slot::new(core::ptr::NonNull::from(&mut cell[0]).cast(), Pfn::new(1), 0, true) };
    // Loom switches threads only at its own operations: an atomic on each side lets it run the
    // walker before, after, or (if the store has one) inside the store.
    let step = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
    let step2 = step.clone();
    let walker = loom::thread::spawn(move || {
        step2.load(std::sync::atomic::Ordering::SeqCst);
        let seen = slot.read();
        assert!(seen == old || seen == new, "torn entry: the walker saw {seen:?}, neither {old:?} nor {new:?}");
    });
    step.store(1, std::sync::atomic::Ordering::SeqCst);
    paravirt_core::native::set(slot, new);
    step.store(2, std::sync::atomic::Ordering::SeqCst);
    walker.join().unwrap();
}

#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m7_pae_present_to_present_update_is_never_seen_half_written() {
    explore(None, pae_entry_update_races_walker);
}

/// A PAE kernel over the Xen model, which does not share the kernel pmd: each pgd has its own
/// copy, listed on `pgd_list` and kept in sync by kernel-range updates.
fn boot_pae_xen(ram: Ram) -> (&'static XPae, Arc<KXenPae>) {
    let hv: &'static HPae = Box::leak(Box::new(Hypervisor::boot(ram).expect("frame table")));
    let x: &'static XPae = Box::leak(Box::new(Xen::boot(hv, Policy::Record).expect("page flags")));
    let o = InitOptions { reserve_top: hv.reserve_top(), ..opts() };
    let k = Arc::new(KernelMm::pagetable_init(ram, x, NullCpu, o).unwrap());
    k.activate_swapper();
    (x, k)
}

/// The pgd's copy of the kernel pmd agrees with swapper_pg_dir's at `va`, and Xen is content.
fn pae_copy_agrees(k: &KXenPae, x: &XPae, pgd: Pfn, va: u32, what: &str) {
    let (mine, theirs) =
        (k.translate_root(pgd, va).map(|t| t.pa), k.translate_root(k.swapper_pg_dir(), va).map(|t| t.pa));
    assert_eq!(mine, theirs, "pgd {pgd:?}'s kernel pmd copy missed the kernel-range update ({what})");
    let mut report = String::new();
    assert!(x.verify(&mut report), "Xen cross-check after {what}: {report}");
    assert_eq!(x.violations(), 0, "Xen violations after {what}: {:?}", x.violation_log().get(0));
}

fn finish_pae_xen(k: Arc<KXenPae>, ram: Ram) {
    let k = Arc::try_unwrap(k).ok().expect("threads joined");
    k.load_boot_root();
    let (x, _, _) = k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(x.pages_held(), 0, "Xen still holds pages");
    x.teardown().expect("page flags back");
    x.hypervisor().free_frametable().expect("frame table back");
    assert_eq!(ram.frames_in_use(), 0, "frames leaked");
}

/// 8: PAE under Xen: `pgd_alloc` (listing the pgd and copying the kernel pmd under
/// `pgd_lock`) racing a kernel-range addition: the copy never misses it.
#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m8_pae_xen_pgd_alloc_racing_a_kernel_addition_keeps_every_pmd_copy_in_step() {
    let ram = ram();
    explore(None, move || {
        let (x, k) = boot_pae_xen(ram);
        let data = ram.alloc_frame().unwrap();
        let k2 = k.clone();
        let t = loom::thread::spawn(move || k2.map_kernel_page(k2.vmalloc_start(), data, PAGE_KERNEL).unwrap());
        let a = k.create().unwrap();
        t.join().unwrap();
        pae_copy_agrees(&k, x, a.pgd(), k.vmalloc_start(), "addition");
        k.destroy(a);
        k.unmap_kernel_page(k.vmalloc_start()).unwrap();
        ram.free_frame(data);
        finish_pae_xen(k, ram);
    });
}

/// 9: the same with `pgd_free` and a removal: no stale entry survives in any copy.
#[test]
#[cfg(not(any(
    feature = "loom-bug-copy-outside-lock",
    feature = "loom-bug-list-add-outside-lock",
    feature = "loom-bug-clone-hook-outside-lock",
    feature = "loom-bug-release-before-unlist",
    feature = "loom-bug-pae-halves"
)))]
fn m9_pae_xen_pgd_free_and_alloc_racing_a_kernel_removal() {
    let ram = ram();
    explore(Some(3), move || {
        let (x, k) = boot_pae_xen(ram);
        let data = ram.alloc_frame().unwrap();
        let va = k.vmalloc_start();
        k.map_kernel_page(va, data, PAGE_KERNEL).unwrap();
        let old = k.create().unwrap();
        let k2 = k.clone();
        let t = loom::thread::spawn(move || assert_eq!(k2.unmap_kernel_page(k2.vmalloc_start()), Ok(data)));
        k.destroy(old);
        let new = k.create().unwrap();
        t.join().unwrap();
        pae_copy_agrees(&k, x, new.pgd(), va, "removal");
        assert_eq!(k.translate(&new, va), None, "stale kernel entry survived a removal");
        k.destroy(new);
        ram.free_frame(data);
        finish_pae_xen(k, ram);
    });
}

/// Runs `model` expecting loom to find a failing interleaving whose panic message contains
/// `want`; fails if loom finds nothing or fails for another reason.
#[allow(dead_code)] // used by the wrong orderings only
fn caught(model: impl Fn() + Send + Sync + 'static, want: &[&str]) {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| explore(None, model)))
        .expect_err("loom must find the interleaving that breaks the model");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(want.iter().any(|w| msg.contains(w)), "loom failed for another reason: {msg}");
    println!("loom caught it: {msg}");
}

#[test]
#[cfg(feature = "loom-bug-copy-outside-lock")]
fn n1_loom_catches_the_kernel_part_copied_before_taking_pgd_lock() {
    let ram = ram();
    caught(move || pgd_alloc_races_kernel_addition(ram), &["missed the kernel-range update"]);
}

#[test]
#[cfg(feature = "loom-bug-list-add-outside-lock")]
fn n2_loom_catches_pgd_list_add_after_dropping_pgd_lock() {
    let ram = ram();
    caught(move || pgd_alloc_races_kernel_addition(ram), &["missed the kernel-range update"]);
}

#[test]
#[cfg(feature = "loom-bug-clone-hook-outside-lock")]
fn n3_loom_catches_the_shadow_cloned_after_dropping_pgd_lock() {
    // The guest copy is made under the lock, so the guest agrees: only the shadow misses the
    // update. This is the seed's sentence as a test.
    let ram = ram();
    // The pgd is on pgd_list before VMI knows it as a page table: the update's write into it
    // is caught (or, in another interleaving, the shadow misses the update).
    caught(move || pgd_alloc_races_kernel_addition(ram), &["shadow of pgd", "WriteUntyped"]);
}

#[test]
#[cfg(feature = "loom-bug-release-before-unlist")]
fn n4_loom_catches_the_seeds_pgd_dtor_order() {
    let ram = ram();
    caught(move || pgd_free_races_update(ram), &["VMI saw a kernel-range update write into released table"]);
}

#[test]
#[cfg(feature = "loom-bug-pae-halves")]
fn n5_loom_catches_a_pae_entry_written_in_halves() {
    caught(pae_entry_update_races_walker, &["torn entry"]);
}
