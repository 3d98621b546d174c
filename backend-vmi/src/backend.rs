//! The backend type: construction and teardown, the ROM calls, accessors, and the lock every
//! operation on the state runs under.

use crate::rom::CloneArgs;
use crate::rule::{Found, Log, VmiRule, RECORDED_VIOLATIONS};
use crate::state::State;
use crate::stats::{CallCounts, Stats};
use crate::types::PageType;
use crate::verify::Divergence;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use i386_paging::{zero_frame, PhysMem};
use paravirt_core::sync::Lock;
use paravirt_core::{HookKind, PagingMode, Pfn, Policy, Violation, Violations};

/// Frames of RAM per shadow frame [`Vmi::new`] reserves: the default pool is 1/16 of RAM
/// ([`default_shadow_frames`]).
pub const RAM_FRAMES_PER_SHADOW: u32 = 16;

/// The smallest pool [`Vmi::new`] reserves, whatever the RAM (frames).
pub const MIN_SHADOW_FRAMES: usize = 64;

/// The shadow frames [`Vmi::new`] reserves for RAM of `max_pfn` frames: one per
/// [`RAM_FRAMES_PER_SHADOW`] frames, at least [`MIN_SHADOW_FRAMES`].
///
/// Every page table the kernel announces takes one shadow frame, so the pool bounds the page
/// tables alive at once. A sixteenth of RAM (6.25 %) holds page tables for far more than a
/// kernel usually keeps (Linux's page tables are typically well under 2 % of RAM; the linear
/// map of 896 MiB needs 224 two-level tables, 0.1 %), while giving up little of the guest's
/// memory, which is where a shadow pool comes from in this model (a real VMI hypervisor keeps
/// shadows in its own memory). A kernel that needs more (thousands of address spaces in a
/// small RAM: each pgd is a table) sizes the pool with [`Vmi::with_shadow_frames`]. The
/// minimum covers a small kernel's boot tables on tiny RAM.
pub const fn default_shadow_frames(max_pfn: Pfn) -> usize {
    let n = (max_pfn.as_u32() / RAM_FRAMES_PER_SHADOW) as usize;
    if n < MIN_SHADOW_FRAMES {
        MIN_SHADOW_FRAMES
    } else {
        n
    }
}

/// Why [`Vmi::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// Physical memory could not supply the per-frame records, the shadow-frame pool or the
    /// per-vCPU PDPT; every frame taken was given back.
    OutOfMemory,
    /// The per-vCPU shadow PDPT landed above 4 GiB (physical), where a 32-bit CR3 cannot
    /// reach it; every frame taken was given back.
    PdptAbove4G,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::OutOfMemory => f.write_str("vmi: out of memory for the shadow frames"),
            InitError::PdptAbove4G => f.write_str("vmi: shadow PDPT above 4 GiB"),
        }
    }
}

impl core::error::Error for InitError {}

/// Why [`Vmi::teardown`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeardownError {
    /// Pages are still typed (the kernel has not released every table).
    PagesTyped {
        /// How many.
        typed: usize,
    },
    /// The reserved frames were already given back by an earlier teardown.
    AlreadyTornDown,
}

impl fmt::Display for TeardownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TeardownError::PagesTyped { typed } => {
                write!(f, "vmi: teardown with typed pages: {typed} page(s) still typed")
            }
            TeardownError::AlreadyTornDown => f.write_str("vmi: teardown after teardown: nothing left to give back"),
        }
    }
}

impl core::error::Error for TeardownError {}

/// The VMI backend: VMware's page-type protocol with its debug checks, over real shadow page
/// tables that the CPU walks.
///
/// Generic over the paging mode `M` (it implements `PvMmuOps<M>` for that mode only) and
/// physical memory `P` (its records and shadow frames come from it). Capacity follows RAM:
/// at construction the backend reserves a 16-byte record for every frame below
/// `mem.max_pfn()` (in frames of `mem`, an [`i386_paging::FrameMap`], as Linux's `mem_map`:
/// the page's type, its shadow, the shadow's links, and for a shadow frame the page it
/// shadows), so every lookup in a hook is O(1) whatever the number of tables alive, and a pool
/// of shadow frames sized from RAM ([`default_shadow_frames`], or
/// [`with_shadow_frames`](Self::with_shadow_frames)): the one bound left, the memory a
/// hypervisor sets aside for shadows. When the pool is empty an `alloc_*` is refused with
/// [`VmiRule::CapacityExhausted`] and nothing changes. Hooks take `&self`; the state sits
/// behind one [`spin::Mutex`]. Hand `&Vmi` to `i386_mm::KernelMm` as its backend, and call
/// [`teardown`](Self::teardown) at the end to give the reserved frames back (dropping the
/// backend without it leaks them).
///
/// Units: a [`Pfn`] names a 4 KiB physical frame (`pfn << 12` is its physical address); CR3
/// values are physical addresses plus flag bits; virtual addresses appear only in the
/// `mm`/`addr` arguments of some hooks (ignored) and in the walks of
/// [`verify_each`](Self::verify_each) ([`Divergence::Translation`]).
///
/// # Panics
/// Under [`Policy::Panic`], a hook that breaks a [`VmiRule`] panics once it has released the
/// backend's lock, with `vmi: <hook>: <rule> [<origin> rule <name>]` (Linux's `BUG()`).
/// A hook also panics if it must read a guest frame that is below `mem.max_pfn()` but not a
/// frame of `mem` (`alloc_*` reads the page it types, PAE `write_cr3` the PDPT):
/// [`PhysMem::frame_ptr`] panics for those.
///
/// # Example
///
/// A backend over a tiny physical memory of eight static frames, one page table announced,
/// written through the hook and mirrored into its shadow:
///
/// ```
/// use backend_vmi::{PageType, Vmi};
/// use core::ptr::NonNull;
/// use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
/// use i386_paging::{alloc_zeroed, read_entry, slot, PhysMem};
/// use paravirt_core::{Inspect, Pfn, Policy, Pte, PvMmuOps, TwoLevel, PAGE_KERNEL};
///
/// #[repr(C, align(4096))]
/// struct Frames(core::cell::UnsafeCell<[[u8; 4096]; 8]>);
/// // SAFETY: the frames are reached only through raw pointers (PhysMem's contract).
/// unsafe impl Sync for Frames {}
///
/// /// Eight frames, handed out once each (enough for the records of 8 frames, 4 shadow frames
/// /// and two pages).
/// struct Tiny { frames: &'static Frames, next: AtomicUsize, freed: AtomicUsize }
///
/// // SAFETY: `frame_ptr` returns page-aligned, writable frames of `frames` and panics for any
/// // other pfn; nothing references them; a frame is handed out at most once.
/// unsafe impl PhysMem for Tiny {
///     fn alloc_frame(&self) -> Option<Pfn> {
///         let n = self.next.fetch_add(1, Relaxed);
///         (n < 8).then(|| Pfn::new(n as u32))
///     }
///     fn free_frame(&self, _pfn: Pfn) {
///         self.freed.fetch_add(1, Relaxed);
///     }
///     fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
///         assert!(pfn.as_usize() < 8, "not a frame of this memory");
///         let base = self.frames.0.get().cast::<[u8; 4096]>();
///         NonNull::new(base.wrapping_add(pfn.as_usize()).cast()).unwrap()
///     }
///     fn max_pfn(&self) -> Pfn {
///         Pfn::new(8)
///     }
///     fn frames_in_use(&self) -> usize {
///         self.next.load(Relaxed).min(8) - self.freed.load(Relaxed)
///     }
/// }
///
/// static FRAMES: Frames = Frames(core::cell::UnsafeCell::new([[0; 4096]; 8]));
/// let mem = Tiny { frames: &FRAMES, next: AtomicUsize::new(0), freed: AtomicUsize::new(0) };
/// // Reserves 2 frames of records (a directory and a leaf) and 4 shadow frames.
/// let vmi: Vmi<TwoLevel, &Tiny> = Vmi::with_shadow_frames(&mem, Policy::Panic, 4)?;
/// assert_eq!((vmi.capacity(), vmi.reserved_frames()), (4, 6));
///
/// let pt = alloc_zeroed(&mem).unwrap();
/// vmi.alloc_pt(pt); // VMI's `vmi_allocate_pt`: typed L1, shadowed
/// assert_eq!(vmi.page_type(pt), PageType::L1);
///
/// let page = alloc_zeroed(&mem).unwrap();
/// // SAFETY: entry 3 of `pt`, a frame of `mem`, which outlives the slot.
/// let s = unsafe { slot::<TwoLevel, Pte, _>(&mem, pt, 3) };
/// vmi.set_pte(s, Pte::new(page, PAGE_KERNEL));
/// let shadow = vmi.shadow_of(pt).unwrap();
/// assert_eq!(read_entry::<TwoLevel, Pte, _>(&mem, shadow, 3), Pte::new(page, PAGE_KERNEL));
///
/// assert!(vmi.verify(&mut String::new()));
/// vmi.release_pt(pt);
/// vmi.teardown()?; // the 6 reserved frames go back
/// assert_eq!(mem.frames_in_use(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Vmi<M: PagingMode, P: PhysMem> {
    pub(crate) mem: P,
    pub(crate) state: Lock<State<M>>,
    pub(crate) log: Log,
    pub(crate) calls: CallCounts,
    /// Deferred updates are on ([`with_deferred_updates`](Self::with_deferred_updates)): a
    /// flush hook takes the lock only then.
    pub(crate) defer: AtomicBool,
    /// The calling vCPU's number.
    pub(crate) vcpu_id: fn() -> usize,
}

/// The vCPU number of a backend told nothing else: 0.
fn vcpu_zero() -> usize {
    0
}

impl<M: PagingMode, P: PhysMem> Vmi<M, P> {
    /// Builds the backend over `mem` with a pool of [`default_shadow_frames`]`(mem.max_pfn())`
    /// shadow frames; see [`with_shadow_frames`](Self::with_shadow_frames).
    ///
    /// # Errors
    /// As [`with_shadow_frames`](Self::with_shadow_frames).
    pub fn new(mem: P, policy: Policy) -> Result<Self, InitError> {
        let n = default_shadow_frames(mem.max_pfn());
        Self::with_shadow_frames(mem, policy, n)
    }

    /// Builds the backend over `mem`: reserves the per-frame records of every frame below
    /// `mem.max_pfn()` (one frame per 256 frames of RAM, plus a directory frame per 128K
    /// frames), `shadow_frames` shadow frames and, in PAE, the per-vCPU shadow PDPT frame
    /// (zeroed). Violations caught in the hooks are reported under `policy`. Everything
    /// reserved is counted in [`reserved_frames`](Self::reserved_frames).
    ///
    /// # Errors
    /// [`InitError::OutOfMemory`] if `mem` cannot supply the frames, [`InitError::PdptAbove4G`]
    /// if the PDPT frame is not below 4 GiB; every frame taken is given back either way.
    pub fn with_shadow_frames(mem: P, policy: Policy, shadow_frames: usize) -> Result<Self, InitError> {
        let mut st = State::<M>::new();
        let give_back = |st: &mut State<M>, mem: &P| {
            while let Some(f) = st.pool.drain_one(mem) {
                mem.free_frame(f);
            }
            if let Some(f) = st.pdpt.take() {
                mem.free_frame(f);
            }
            st.pages.clear(mem);
        };
        if M::PAE {
            let Some(f) = mem.alloc_frame() else { return Err(InitError::OutOfMemory) };
            st.pdpt = Some(f);
            if f.phys().as_u64() > u32::MAX as u64 {
                give_back(&mut st, &mem);
                return Err(InitError::PdptAbove4G);
            }
            // SAFETY: the frame was just allocated: the backend owns it alone.
            unsafe { zero_frame(&mem, f) };
        }
        if st.pages.reserve(&mem, mem.max_pfn()).is_err() {
            give_back(&mut st, &mem);
            return Err(InitError::OutOfMemory);
        }
        for _ in 0..shadow_frames {
            let Some(f) = mem.alloc_frame() else {
                give_back(&mut st, &mem);
                return Err(InitError::OutOfMemory);
            };
            st.pool.add(&mem, f);
        }
        Ok(Vmi {
            mem,
            state: Lock::new(st),
            log: Violations::new("vmi", policy),
            calls: CallCounts::new(),
            defer: AtomicBool::new(false),
            vcpu_id: vcpu_zero,
        })
    }

    /// Records boot-time allocations without checking them until
    /// [`apply_boot_page_allocations`](Self::apply_boot_page_allocations), as `vmi.c`'s
    /// `vmi_set_page_type` does before `vmi_apply_boot_page_allocations` (`record_page_type`:
    /// `mem_map` is not set up yet, and `swapper_pg_dir` "already has data on it"): a `ZEROED`
    /// page is not checked for zeroes, and a release of an untyped page is only recorded. The
    /// shadows are built all the same (the ROM call is made). Without it, the model checks from
    /// the first allocation, a checker's strictness.
    pub fn with_boot_recording(self) -> Self {
        self.lock_vcpu().boot_phase = true;
        self
    }

    /// `vmi_apply_boot_page_allocations`: the types recorded at boot are in force, and every
    /// later allocation and release is checked.
    pub fn apply_boot_page_allocations(&self) {
        self.lock_vcpu().boot_phase = false;
    }

    /// Lets VMI defer shadow updates until a TLB flush (`VMI_PAGE_DEFER`: "may queue update
    /// until TLB inval"): a change of a present PTE of the loaded address space made by
    /// `set_pte_at`, `set_pte_present` or `pte_clear` reaches the shadow (the entry the CPU
    /// walks) only at the next `flush_tlb_single` of its address (`InvalPage`),
    /// `flush_tlb_user` / `flush_tlb_kernel` (`FlushTLB`) or `write_cr3`; a release of the
    /// table applies its own first. A kernel that forgets a flush then leaves a stale shadow,
    /// as a real TLB would keep a stale translation; [`verify_each`](Self::verify_each)
    /// reports it. A not-present shadow entry is filled at once (on hardware the CPU's fault
    /// would make the hypervisor fill it).
    pub fn with_deferred_updates(self) -> Self {
        self.lock_vcpu().defer = true;
        self.defer.store(true, Ordering::Relaxed);
        self
    }

    /// Shadow updates deferred and not applied yet ([`with_deferred_updates`](Self::with_deferred_updates)).
    pub fn pending_updates(&self) -> usize {
        self.lock_vcpu().pending_count()
    }

    /// Gives back the shadow-frame pool, the per-vCPU shadow PDPT and the per-frame records.
    /// After it, any allocation is refused for lack of capacity and a PAE `write_cr3` for lack
    /// of a PDPT.
    ///
    /// # Errors
    /// [`TeardownError::PagesTyped`] if pages are still typed (call it after
    /// `KernelMm::shutdown`), [`TeardownError::AlreadyTornDown`] the second time; either way
    /// everything is kept. Not a hook: nothing is logged, whatever the policy.
    pub fn teardown(&self) -> Result<(), TeardownError> {
        let mut st = self.state.lock();
        if st.torn_down {
            return Err(TeardownError::AlreadyTornDown);
        }
        let typed = st.pages.len();
        if typed != 0 {
            return Err(TeardownError::PagesTyped { typed });
        }
        st.pending = [None; crate::state::PENDING_UPDATES];
        st.torn_down = true;
        st.release_all_pdpts(&self.mem);
        while let Some(f) = st.pool.drain_one(&self.mem) {
            self.mem.free_frame(f);
        }
        st.pages.clear(&self.mem);
        Ok(())
    }

    /// VMI's ROM call `AllocatePage(pfn, flags, clone_pfn, start, count)`: types the frame
    /// `pfn` and builds its shadow. The `alloc_*` hooks call it with the flags of their level
    /// (and report what it finds under the policy); called directly it takes any flags (so
    /// tests can build sequences the hooks never produce) and logs nothing.
    ///
    /// Checks, in order (each refusal leaves the page untyped): the flags name `PT` or `PD`
    /// (`PDP` is refused: the PAE PDPT is never typed); the page is in RAM and untyped and is
    /// not the loaded PDPT; with `CLONE`, `clone_pfn` is an L2 with the same `PAE` bit and
    /// entries `[start, start + count)` fit; with `ZEROED`, the page is zero (with `CLONE`
    /// only its user entries `[0, USER_PTRS_PER_PGD)`: reported, not refused); a shadow
    /// frame is free in the pool ([`VmiRule::CapacityExhausted`] otherwise). The shadow then starts as the guest page mirrored, except that with
    /// `CLONE` entries `[start, start + count)` are copied from the source's *shadow*.
    ///
    /// # Errors
    /// The first rule broken. Only [`VmiRule::NotZeroed`] and [`VmiRule::UnannouncedChild`]
    /// (a non-zero directory linking an unannounced table) leave the page typed.
    ///
    /// # Panics
    /// If `pfn` is below `mem.max_pfn()` but not a frame of `mem` ([`PhysMem::frame_ptr`]
    /// panics).
    #[doc(alias = "vmi_allocate_page")]
    pub fn allocate_page(
        &self,
        pfn: Pfn,
        flags: PageType,
        clone_pfn: Pfn,
        start: u32,
        count: u32,
    ) -> Result<(), VmiRule> {
        let clone = CloneArgs { source: clone_pfn, start, count };
        self.locked(None, |st, found| st.allocate(&self.mem, found, pfn, flags, clone)).1
    }

    /// VMI's ROM call `ReleasePage(pfn, flags)`: the frame `pfn` goes back to `NORMAL` and its
    /// shadow is freed. Called directly it logs nothing.
    ///
    /// # Errors
    /// The rule broken, the page then staying typed: it must be typed
    /// ([`VmiRule::ReleaseUntyped`]), `flags` must name its level or none
    /// ([`VmiRule::ReleaseWrongLevel`]), it must not be the loaded root
    /// ([`VmiRule::ReleaseLoaded`]) and no shadow entry may link it
    /// ([`VmiRule::ReleaseLinked`]).
    #[doc(alias = "vmi_release_page")]
    pub fn release_page(&self, pfn: Pfn, flags: PageType) -> Result<(), VmiRule> {
        self.locked(None, |st, found| st.release(&self.mem, found, pfn, flags)).1
    }

    /// Copies the accessed/dirty bits the CPU set in shadow entries into the matching guest
    /// entries, and drops the `ACCESSED` bit some walkers (QEMU's) set in the shadow PDPT,
    /// where real processors never write. Returns the guest entries updated.
    ///
    /// Only an entry whose shadow agrees with the guest except for those bits is touched, so
    /// a divergence (or a table freed behind the backend's back) is left for
    /// [`verify_each`](Self::verify_each) to report. `Inspect::verify` calls it first; on the
    /// host simulator nothing sets these bits. Every store is one [`paravirt_core::native`]
    /// store.
    pub fn sync_accessed_dirty(&self) -> usize {
        self.lock_vcpu().sync_accessed_dirty(&self.mem)
    }

    /// Cross-checks every shadow against its guest table and calls `f` with each
    /// [`Divergence`]; returns how many there were (0: the shadows are exact).
    ///
    /// First entry by entry: every typed table against its shadow (directory entries modulo
    /// the guest→shadow mapping of the tables they link), and in PAE the per-vCPU shadow
    /// PDPT against the loaded guest PDPT. Then translation by translation, for virtual
    /// addresses, with `i386_paging::walk` starting at any table: for every root the backend
    /// knows (two-level: every L2; PAE: every pmd, and the loaded PDPT), every address mapped
    /// through the guest side translates the same through the shadow side, and the shadow
    /// maps nothing more. A tree whose guest or shadow side links an unshadowed table is not
    /// walked (the entry check named it).
    ///
    /// Runs under the backend's lock: `f` must not call the backend (it would spin for ever).
    ///
    /// # Panics
    /// Only if `f` does: every table read was read when it was typed, so it is a frame of
    /// `mem`.
    pub fn verify_each(&self, f: &mut dyn FnMut(&Divergence)) -> usize {
        let st = self.lock_vcpu();
        let mut n = 0;
        st.verify(&self.mem, &mut |d| {
            n += 1;
            f(&d);
        });
        n
    }

    /// The policy chosen at construction.
    pub fn policy(&self) -> Policy {
        self.log.policy()
    }

    /// Physical memory the shadows live in.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// Page tables the backend can shadow at once: the shadow frames reserved at
    /// construction (0 after [`teardown`](Self::teardown)).
    pub fn capacity(&self) -> usize {
        self.state.lock().pool.total()
    }

    /// Frames of `mem` the backend holds for itself: the shadow pool (free or in use), the
    /// per-frame records and, in PAE, the shadow PDPT (0 after [`teardown`](Self::teardown)).
    pub fn reserved_frames(&self) -> usize {
        let st = self.state.lock();
        st.pool.total() + st.pages.frames(&self.mem) + st.pdpt.is_some() as usize
    }

    /// The type of the frame `pfn` (`NORMAL` when untyped). O(1).
    pub fn page_type(&self, pfn: Pfn) -> PageType {
        self.lock_vcpu().pages.get(&self.mem, pfn).map_or(PageType::NORMAL, |t| t.ty)
    }

    /// The frame holding the shadow of the frame `pfn`, if it is typed. O(1).
    pub fn shadow_of(&self, pfn: Pfn) -> Option<Pfn> {
        self.lock_vcpu().pages.get(&self.mem, pfn).map(|t| t.shadow)
    }

    /// Shadow entries that link the shadow of the frame `pfn` (`None` if untyped). O(1).
    pub fn links_to(&self, pfn: Pfn) -> Option<u32> {
        self.lock_vcpu().pages.get(&self.mem, pfn).map(|t| t.links)
    }

    /// The frame of the guest root last loaded with `write_cr3`, if it is still loaded.
    pub fn loaded_root(&self) -> Option<Pfn> {
        self.lock_vcpu().loaded.map(|l| l.root)
    }

    /// The per-vCPU shadow PDPT frame (PAE, until teardown).
    pub fn shadow_pdpt(&self) -> Option<Pfn> {
        self.lock_vcpu().pdpt
    }

    /// Pages typed right now.
    pub fn typed_pages(&self) -> usize {
        self.lock_vcpu().pages.len()
    }

    /// A snapshot of the state and counters. O(frames of RAM): it counts the records.
    pub fn stats(&self) -> Stats {
        let st = self.lock_vcpu();
        let (mut typed_l1, mut typed_l2, mut typed_clone) = (0, 0, 0);
        for t in st.pages.iter(&self.mem) {
            typed_l1 += t.ty.is_l1() as usize;
            typed_l2 += t.ty.is_l2() as usize;
            typed_clone += t.ty.contains(PageType::CLONE) as usize;
        }
        let s = Stats {
            typed_l1,
            typed_l2,
            typed_clone,
            shadows_live: st.pages.len(),
            shadows_created: st.created,
            shadows_freed: st.freed,
            shadows_peak: st.peak,
            pool_frames: st.pool.total(),
            pool_free: st.pool.free(),
            shadow_pdpt: st.pdpt.is_some(),
            pdpt_updates: st.pdpt_updates,
            entries_mirrored: st.mirrored,
            updates_deferred: st.deferred,
            updates_pending: st.pending_count(),
            calls: core::array::from_fn(|i| self.calls.snapshot()[i] + st.calls[i]),
            checks: st.checks.snapshot(),
            violations: 0,
        };
        drop(st);
        Stats { violations: self.violation_count(), ..s }
    }

    /// Violations reported by the hooks so far (all of them, kept in full or not).
    pub fn violation_count(&self) -> usize {
        self.log.total()
    }

    /// The `i`th violation reported by the hooks (the first [`RECORDED_VIOLATIONS`] are kept).
    pub fn violation(&self, i: usize) -> Option<Violation<VmiRule>> {
        self.log.get(i)
    }

    /// The shared violation log the hooks report to (`Violations::iter`, `checker_total`,
    /// `write_all`...).
    pub fn violation_log(&self) -> &Violations<VmiRule, RECORDED_VIOLATIONS> {
        &self.log
    }

    /// Forgets every violation reported.
    pub fn clear_violations(&self) {
        self.log.clear()
    }

    /// Runs `f` under the state lock, the rules it finds reported with `hook` (or only
    /// returned, outside a hook). Returns `f`'s result and the first rule broken.
    ///
    /// # Panics
    /// Under [`Policy::Panic`], inside a hook, once the lock is dropped, if a rule was broken.
    pub(crate) fn locked<R>(
        &self,
        hook: Option<HookKind>,
        f: impl FnOnce(&mut State<M>, &mut Found<'_>) -> R,
    ) -> (R, Result<(), VmiRule>) {
        let mut found = match hook {
            Some(h) => Found::in_hook(&self.log, h),
            None => Found::returned(),
        };
        let r = {
            let mut st = self.lock_vcpu();
            if let Some(h) = hook {
                st.calls[h as usize] += 1;
            }
            f(&mut st, &mut found)
        };
        (r, found.finish())
    }

    /// Takes the state lock with the calling vCPU's paging state current.
    pub(crate) fn lock_vcpu(&self) -> paravirt_core::sync::LockGuard<'_, State<M>> {
        let mut st = self.state.lock();
        st.switch_vcpu(&self.mem, (self.vcpu_id)());
        st
    }

    /// Tells the backend how to find the calling vCPU's number (Linux's
    /// `smp_processor_id()`; numbers at or above [`MAX_VCPUS`](crate::MAX_VCPUS) share the
    /// last state). Without it every call is vCPU 0's.
    pub fn with_vcpu_id(mut self, vcpu_id: fn() -> usize) -> Self {
        self.vcpu_id = vcpu_id;
        self
    }
}
