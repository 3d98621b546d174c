//! loom models of `pgd_lock` around `alloc_pd_clone` (run with `RUSTFLAGS="--cfg loom"`, see
//! `cargo xtask loom`): every interleaving of `pgd_alloc` (copy of the kernel part, the clone
//! hook, `pgd_list_add`, all under `pgd_lock`) with a kernel-range update (write
//! `swapper_pg_dir`, then walk `pgd_list` under `pgd_lock`) and with `pgd_free` leaves every
//! live pgd agreeing with `swapper_pg_dir`. With the `bug-clone-outside-lock` feature the
//! copy happens before the lock is taken, and loom must find the interleaving that loses the
//! update.
//!
//! The same models run in PAE under the Xen model, which does not share the kernel pmd: there
//! `pgd_alloc` lists the pgd and copies `swapper_pg_dir`'s kernel pmd in one `pgd_lock`
//! critical section, and the kernel-range update reaches each copy through `pgd_list` (with
//! `mmu_update` into the pinned `swapper_pg_dir`).
#![cfg(loom)]

use backend_native::Native;
use backend_xen::{Hypervisor, Policy, Xen};
use i386_mm::*;
use loom::sync::Arc;
use mm_testkit::EmulatedRam;
use paravirt_core::{Inspect, Pfn};

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

/// Frames of the model machines (and of the Xen model's frame table).
const FRAMES: usize = 1024;

type XenOnRam = Xen<'static, Pae, &'static EmulatedRam, FRAMES>;

/// A kernel configuration the models run on.
trait Machine: Sized + 'static {
    /// The paging mode.
    type M: PagingMode;
    /// The backend.
    type B: PvMmuOps<Self::M> + Inspect + Send + Sync + 'static;
    /// A fresh backend over `ram`.
    fn backend(ram: &'static EmulatedRam) -> Self::B;
}

/// Two-level paging on bare metal.
struct TwoLevelNative;
impl Machine for TwoLevelNative {
    type M = TwoLevel;
    type B = Native;
    fn backend(_: &'static EmulatedRam) -> Native {
        Native
    }
}

/// PAE under the Xen model: a kernel pmd per pgd, PAE pgds on `pgd_list`.
struct PaeXen;
impl Machine for PaeXen {
    type M = Pae;
    type B = &'static XenOnRam;
    fn backend(ram: &'static EmulatedRam) -> &'static XenOnRam {
        let hv: &'static Hypervisor<Pae, &'static EmulatedRam, FRAMES> = Box::leak(Box::new(Hypervisor::new(ram)));
        Box::leak(Box::new(Xen::new(hv, Policy::Panic)))
    }
}

type Kern<X> = KernelMm<<X as Machine>::M, <X as Machine>::B, &'static EmulatedRam, NullCpu>;

fn ram() -> &'static EmulatedRam {
    Box::leak(Box::new(EmulatedRam::new(FRAMES as u32, 256)))
}

fn boot<X: Machine>(ram: &'static EmulatedRam) -> Arc<Kern<X>> {
    let opts = InitOptions { pse: true, lowmem_end: Some(Pfn::new(256)), ..InitOptions::default() };
    let k = KernelMm::pagetable_init(ram, X::backend(ram), NullCpu, opts).unwrap();
    k.activate_swapper();
    Arc::new(k)
}

fn agrees<X: Machine>(k: &Kern<X>, pgd: Pfn, va: u32) -> bool {
    k.translate_root(pgd, va).map(|t| t.pa) == k.translate_root(k.swapper_pg_dir(), va).map(|t| t.pa)
}

fn finish<X: Machine>(k: Arc<Kern<X>>, ram: &EmulatedRam) {
    let k = Arc::try_unwrap(k).ok().expect("threads joined");
    k.load_boot_root();
    let (backend, _, _) = k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!((backend.pages_held(), backend.violations()), (0, 0));
    assert_eq!(ram.frames_in_use(), 0);
}

/// `pgd_alloc` racing a kernel-range update: the new pgd must see the new kernel page table.
fn clone_races_kernel_update<X: Machine>() {
    let ram = ram();
    loom::model(move || {
        let k = boot::<X>(ram);
        let data = ram.alloc_frame().unwrap();
        let k2 = k.clone();
        let updater = loom::thread::spawn(move || {
            k2.map_kernel_page(VMALLOC_START, data, PAGE_KERNEL).unwrap();
        });
        let a = k.create().unwrap();
        updater.join().unwrap();
        assert!(agrees::<X>(&k, a.pgd(), VMALLOC_START), "pgd {:?} missed the kernel-range update", a.pgd());
        k.destroy(a);
        k.unmap_kernel_page(VMALLOC_START).unwrap();
        ram.free_frame(data);
        finish::<X>(k, ram);
    });
}

#[test]
#[cfg(not(feature = "bug-clone-outside-lock"))]
fn pgd_ctor_under_pgd_lock_never_loses_a_kernel_update() {
    clone_races_kernel_update::<TwoLevelNative>();
}

/// Xen PAE (`shared_kernel_pmd = 0`): the kernel pmd's copy, made under `pgd_lock` with the pgd
/// already on `pgd_list`, never misses a kernel-range update.
#[test]
#[cfg(not(feature = "bug-clone-outside-lock"))]
fn pae_under_xen_the_kernel_pmd_copy_never_loses_a_kernel_update() {
    clone_races_kernel_update::<PaeXen>();
}

#[test]
#[cfg(feature = "bug-clone-outside-lock")]
fn loom_catches_the_clone_made_outside_pgd_lock() {
    let err = std::panic::catch_unwind(clone_races_kernel_update::<TwoLevelNative>)
        .expect_err("loom must find the interleaving where the copy misses the update");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("missed the kernel-range update"), "loom failed for another reason: {msg}");
}

/// `pgd_free` and `pgd_alloc` racing removals and additions of kernel page tables.
fn dtor_races_removal<X: Machine>() {
    let ram = ram();
    loom::model(move || {
        let k = boot::<X>(ram);
        let data = ram.alloc_frame().unwrap();
        k.map_kernel_page(VMALLOC_START, data, PAGE_KERNEL).unwrap();
        let old = k.create().unwrap();
        let k2 = k.clone();
        let updater = loom::thread::spawn(move || {
            k2.unmap_kernel_page(VMALLOC_START).unwrap();
        });
        k.destroy(old);
        let new = k.create().unwrap();
        updater.join().unwrap();
        assert!(agrees::<X>(&k, new.pgd(), VMALLOC_START), "stale kernel entry survived a removal");
        assert_eq!(k.translate(&new, VMALLOC_START), None);
        k.destroy(new);
        ram.free_frame(data);
        finish::<X>(k, ram);
    });
}

#[test]
#[cfg(not(feature = "bug-clone-outside-lock"))]
fn pgd_dtor_and_removal_sync_keep_every_live_pgd_consistent() {
    dtor_races_removal::<TwoLevelNative>();
}

/// Xen PAE: `pgd_free` takes the pgd off `pgd_list` before releasing its kernel pmd's copy, and
/// removals reach every listed copy.
#[test]
#[cfg(not(feature = "bug-clone-outside-lock"))]
fn pae_under_xen_pgd_free_and_removal_sync_keep_every_copy_consistent() {
    dtor_races_removal::<PaeXen>();
}
