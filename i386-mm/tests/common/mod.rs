//! Shared set-up for the i386-mm integration tests.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub use backend_native::Native;
pub use i386_mm::*;
pub use mm_testkit::{EmulatedRam, HostCpu, Oracle};
pub use paravirt_core::{EntryRef, Event, Hook, HookKind, Recorder};

/// Events a test can record.
pub const LOG: usize = 4096;
/// The recording backend used by the tests.
pub type Rec = Recorder<Native, LOG>;
/// The kernel under test.
pub type K<'a, M> = KernelMm<M, &'a Rec, &'a EmulatedRam, &'a HostCpu<'a, M>>;

/// Runs `f` over a fresh 16 MiB machine with the boot tables built (`pse` chooses large pages)
/// and swapper_pg_dir loaded; recording is cleared after boot. Afterwards checks nothing else.
pub fn with_kernel<M: PagingMode, R>(pse: bool, f: impl FnOnce(&K<'_, M>, &EmulatedRam, &Rec) -> R) -> R {
    let ram = EmulatedRam::sixteen_mib();
    let rec: Box<Rec> = Box::new(Recorder::new(Native));
    let cpu = HostCpu::<M>::new(&ram);
    let k =
        KernelMm::pagetable_init(&ram, &*rec, &cpu, InitOptions { pse, lowmem_end: None, ..InitOptions::default() })
            .unwrap();
    k.activate_swapper();
    rec.clear();
    f(&k, &ram, &rec)
}

/// The recorded hooks, without their lock flag.
pub fn hooks(rec: &Rec) -> Vec<Hook> {
    rec.with_events(|e| e.iter().map(|e| e.hook).collect())
}

/// The recorded seed hooks only (alloc_*, release_*).
pub fn page_type_hooks(rec: &Rec) -> Vec<Hook> {
    rec.with_events(|e| e.iter().map(|e| e.hook).filter(|h| h.kind().is_page_type_hook()).collect())
}

/// The pmd frames of a PAE pgd's user slots.
pub fn pae_user_pmds(ram: &EmulatedRam, pgd: Pfn) -> Vec<Pfn> {
    (0..3).map(|i| read_entry::<Pae, Pud, _>(ram, pgd, i).pfn()).collect()
}

/// Each test body runs once per paging mode.
pub use mm_testkit::both_modes;

/// The slot of entry `index` of table `table` in `ram`, for a test that drives a low-level
/// call site directly.
pub fn test_slot<M: PagingMode, E: Entry>(ram: &EmulatedRam, table: Pfn, index: u32) -> Slot<E> {
    // SAFETY: `ram` outlives every test body that uses the slot.
    unsafe { slot::<M, E, _>(ram, table, index) }
}

/// A raw entry of mode `M`'s width, read from `ram`.
pub fn raw<M: PagingMode>(ram: &EmulatedRam, table: Pfn, index: u32) -> u64 {
    read_raw::<M, _>(ram, table, index)
}

/// A bare-metal backend that, like Xen, does not let PAE pgds share the kernel pmd.
pub struct Unshared;

impl<M: PagingMode> PvMmuOps<M> for Unshared {
    fn shared_kernel_pmd(&self) -> bool {
        false
    }
}

/// The recording backend over [`Unshared`].
pub type URec = Recorder<Unshared, LOG>;
/// A kernel over it.
pub type UK<'a, M> = KernelMm<M, &'a URec, &'a EmulatedRam, &'a HostCpu<'a, M>>;

/// As [`with_kernel`] (with large pages), over [`Unshared`], with a probe answering whether
/// `pgd_lock` is held (so the kernel, RAM and recorder live for the whole process).
pub fn with_unshared<M: PagingMode, R>(
    f: impl FnOnce(&'static UK<'static, M>, &'static EmulatedRam, &'static URec) -> R,
) -> R {
    let ram: &'static EmulatedRam = Box::leak(Box::new(EmulatedRam::sixteen_mib()));
    let rec: &'static URec = Box::leak(Box::new(Recorder::new(Unshared)));
    let cpu: &'static HostCpu<'static, M> = Box::leak(Box::new(HostCpu::new(ram)));
    let k: &'static UK<'static, M> =
        Box::leak(Box::new(KernelMm::pagetable_init(ram, rec, cpu, InitOptions::default()).unwrap()));
    rec.set_probe(Box::leak(Box::new(|| k.pgd_lock_is_held())));
    k.activate_swapper();
    rec.clear();
    f(k, ram, rec)
}

/// Emulated RAM reporting `max` as the end of RAM: frames past the real ones appear only in
/// the kernel's linear map (the code under test never reads or writes them), so a test can
/// boot with more low memory than the machine holds (the 1 GiB cap, many page tables).
pub struct Sparse<'r> {
    /// The frames that exist.
    pub ram: &'r EmulatedRam,
    /// What `max_pfn` answers.
    pub max: Pfn,
}

// SAFETY: every call goes to `ram`, whose `frame_ptr` panics for any frame it does not hold
// (the frames between its end and `max` included); allocation and accounting are its own.
unsafe impl PhysMem for Sparse<'_> {
    fn alloc_frame(&self) -> Option<Pfn> {
        self.ram.alloc_frame()
    }
    fn free_frame(&self, pfn: Pfn) {
        self.ram.free_frame(pfn)
    }
    fn frame_ptr(&self, pfn: Pfn) -> std::ptr::NonNull<u8> {
        self.ram.frame_ptr(pfn)
    }
    fn max_pfn(&self) -> Pfn {
        self.max
    }
    fn frames_in_use(&self) -> usize {
        self.ram.frames_in_use()
    }
}

/// One round of the pgd_alloc race: another thread creates `spaces` address spaces while this
/// one maps `tables` kernel page tables (one per large page from the vmalloc area's start) and
/// unmaps every third; then every new pgd must agree with swapper_pg_dir at those addresses.
/// Destroys the spaces and unmaps what is left; the frames stay allocated in `ram`.
pub fn race_pgd_alloc_against_kernel_updates<M, B, C>(
    k: &KernelMm<M, B, &EmulatedRam, C>,
    ram: &EmulatedRam,
    round: u32,
    tables: u32,
    spaces: usize,
) where
    M: PagingMode,
    B: PvMmuOps<M> + Sync,
    C: Cpu + Sync,
{
    let frames: Vec<Pfn> = (0..tables).map(|_| ram.alloc_frame().unwrap()).collect();
    let va = |i: u32| k.vmalloc_start() + i * M::LARGE_PAGE_SIZE;
    let made = std::thread::scope(|s| {
        let maker = s.spawn(|| (0..spaces).map(|_| k.create().unwrap()).collect::<Vec<_>>());
        for (i, f) in (0..tables).zip(&frames) {
            k.map_kernel_page(va(i), *f, PAGE_KERNEL).unwrap();
            if i % 3 == 2 {
                k.unmap_kernel_page(va(i)).unwrap();
            }
        }
        maker.join().unwrap()
    });
    for a in &made {
        for i in 0..tables {
            let want = k.translate_root(k.swapper_pg_dir(), va(i)).map(|t| t.pa);
            assert_eq!(k.translate(a, va(i)).map(|t| t.pa), want, "round {round}: pgd {:?} va {:#x}", a.pgd(), va(i));
        }
    }
    for a in made {
        k.destroy(a);
    }
    for i in (0..tables).filter(|i| i % 3 != 2) {
        k.unmap_kernel_page(va(i)).unwrap();
    }
}
