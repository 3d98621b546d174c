//! `pgd_dtor` takes the pgd off `pgd_list` before `release_pd`: a kernel-range update made at
//! the moment of the release (another CPU) never writes into the released page. The seed's
//! order (release, then unlist) made VMI report `WriteUntyped` at index 896 from `set_pmd`.
mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

const UA: u32 = 0x4000_0000;
/// A kernel address whose directory entry (896 in two-level mode) has no page table at boot.
const KVA: u32 = 0xE000_0000;

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

type R<M> = Recorder<&'static V<'static, M>, 64>;
type Kern<M> = KernelMm<M, &'static R<M>, &'static EmulatedRam, &'static HostCpu<'static, M>>;

fn a_kernel_update_at_release_pd_is_no_violation<M: PagingMode>() {
    let ram = leak(EmulatedRam::sixteen_mib());
    let v = leak(vmi::<M>(ram));
    let rec: &'static R<M> = leak(Recorder::new(v));
    let cpu = leak(HostCpu::<M>::new(ram));
    let k: &'static Kern<M> = leak(KernelMm::pagetable_init(ram, rec, cpu, InitOptions::default()).unwrap());
    k.activate_swapper();
    let mut a = k.create().unwrap();
    let f = ram.alloc_frame().unwrap();
    k.map(&mut a, UA, f, PteFlags::RW | PteFlags::USER).unwrap();
    k.activate(&a);
    assert_clean(v, "activate");
    let g = ram.alloc_frame().unwrap();
    let fired: &'static AtomicBool = leak(AtomicBool::new(false));
    let at: &'static Mutex<Option<u32>> = leak(Mutex::new(None));
    rec.clear();
    // Right after the first release_pd returns from VMI, another CPU starts installing a kernel
    // page table, which reaches every pgd on pgd_list (it waits for pgd_lock if the releasing
    // CPU still holds it).
    let other: &'static Mutex<Option<std::thread::JoinHandle<()>>> = leak(Mutex::new(None));
    rec.set_after(leak(move |h: &Hook| {
        if matches!(h, Hook::ReleasePd { .. }) && !fired.swap(true, Ordering::SeqCst) {
            *other.lock().unwrap() = Some(std::thread::spawn(move || {
                k.map_kernel_page(KVA, g, PteFlags::RW).unwrap();
                *at.lock().unwrap() = Some(rec.calls(HookKind::SetPmd));
            }));
        }
    }));
    let pgd = a.pgd();
    k.destroy(a);
    other.lock().unwrap().take().expect("release_pd ran").join().unwrap();
    assert!(at.lock().unwrap().is_some(), "the other CPU ran at release_pd");
    assert_clean(v, "kernel-range update at release_pd");
    // Released: no longer a directory (its frame may already be the new kernel page table).
    assert!(!v.page_type(pgd).contains(PageType::PD), "{:?}", v.page_type(pgd));
    assert_eq!(k.unmap_kernel_page(KVA), Ok(g));
    ram.free_frame(f);
    ram.free_frame(g);
    assert_clean(v, "teardown");
}

fn address_spaces_churning_against_kernel_range_updates_make_no_violation<M: PagingMode>() {
    const ROUNDS: usize = 300;
    let ram = EmulatedRam::sixteen_mib();
    let v = vmi::<M>(&ram);
    let cpu = HostCpu::<M>::new(&ram);
    let k = KernelMm::pagetable_init(&ram, &v, &cpu, InitOptions::default()).unwrap();
    k.activate_swapper();
    let f = ram.alloc_frame().unwrap();
    let g = ram.alloc_frame().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                k.map_kernel_page(KVA, g, PteFlags::RW).unwrap();
                assert_eq!(k.unmap_kernel_page(KVA), Ok(g));
            }
        });
        for _ in 0..ROUNDS {
            let mut a = k.create().unwrap();
            k.map(&mut a, UA, f, PteFlags::RW | PteFlags::USER).unwrap();
            k.activate(&a);
            k.destroy(a);
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_clean(&v, "churn");
    ram.free_frame(f);
    ram.free_frame(g);
    k.load_boot_root();
    k.shutdown().map_err(|e| e.1).unwrap();
    assert_eq!(v.pages_held(), 0);
}

both_modes!(
    a_kernel_update_at_release_pd_is_no_violation,
    address_spaces_churning_against_kernel_range_updates_make_no_violation
);
