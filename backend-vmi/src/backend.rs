//! The backend type: construction and teardown, the ROM calls, accessors, and the lock every
//! operation on the state runs under.

use crate::rom::CloneArgs;
use crate::rule::{Found, Log, VmiRule, RECORDED_VIOLATIONS};
use crate::state::State;
use crate::stats::{CallCounts, Stats};
use crate::types::PageType;
use crate::verify::Divergence;
use core::fmt;
use i386_paging::{zero_frame, PhysMem};
use paravirt_core::sync::Lock;
use paravirt_core::{HookKind, PagingMode, Pfn, Policy, Violation, Violations};

/// Pages a [`Vmi`] tracks unless told otherwise (and shadow frames it reserves).
pub const DEFAULT_CAPACITY: usize = 512;

/// Why [`Vmi::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// Physical memory could not supply the shadow-frame pool or the per-vCPU PDPT; every
    /// frame taken was given back.
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
/// Generic over the paging mode `M` (it implements `PvMmuOps<M>` for that mode only),
/// physical memory `P` (shadow frames come from it) and the number of pages it can track,
/// `MAX` (that many shadow frames are reserved at construction). Hooks take `&self`; the
/// state sits behind one [`spin::Mutex`]. Hand `&Vmi` to `i386_mm::KernelMm` as its backend,
/// and call [`teardown`](Self::teardown) at the end to give the reserved frames back
/// (dropping the backend without it leaks them).
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
/// /// Eight frames, handed out once each (enough for a backend of capacity 4 and two pages).
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
/// let vmi: Vmi<TwoLevel, &Tiny, 4> = Vmi::new(&mem, Policy::Panic)?; // reserves 4 frames
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
/// vmi.teardown()?; // the 4 reserved frames go back
/// assert_eq!(mem.frames_in_use(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Vmi<M: PagingMode, P: PhysMem, const MAX: usize = DEFAULT_CAPACITY> {
    pub(crate) mem: P,
    pub(crate) state: Lock<State<M, MAX>>,
    pub(crate) log: Log,
    pub(crate) calls: CallCounts,
    /// The calling vCPU's number.
    pub(crate) vcpu_id: fn() -> usize,
}

/// The vCPU number of a backend told nothing else: 0.
fn vcpu_zero() -> usize {
    0
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// Builds the backend over `mem`: reserves `MAX` shadow frames and, in PAE, the per-vCPU
    /// shadow PDPT frame (zeroed). Violations caught in the hooks are reported under
    /// `policy`.
    ///
    /// # Errors
    /// [`InitError::OutOfMemory`] if `mem` cannot supply the frames, [`InitError::PdptAbove4G`]
    /// if the PDPT frame is not below 4 GiB; every frame taken is given back either way.
    pub fn new(mem: P, policy: Policy) -> Result<Self, InitError> {
        let mut st = State::<M, MAX>::new();
        let give_back = |st: &mut State<M, MAX>, mem: &P| {
            while let Some(f) = st.pool.drain_one() {
                mem.free_frame(f);
            }
            if let Some(f) = st.pdpt.take() {
                mem.free_frame(f);
            }
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
        for _ in 0..MAX {
            let Some(f) = mem.alloc_frame() else {
                give_back(&mut st, &mem);
                return Err(InitError::OutOfMemory);
            };
            st.pool.add(f);
        }
        Ok(Vmi {
            mem,
            state: Lock::new(st),
            log: Violations::new("vmi", policy),
            calls: CallCounts::new(),
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
        self
    }

    /// Shadow updates deferred and not applied yet ([`with_deferred_updates`](Self::with_deferred_updates)).
    pub fn pending_updates(&self) -> usize {
        self.lock_vcpu().pending_count()
    }

    /// Gives back the shadow-frame pool and the per-vCPU shadow PDPT. After it, any allocation
    /// is refused for lack of capacity and a PAE `write_cr3` for lack of a PDPT.
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
        while let Some(f) = st.pool.drain_one() {
            self.mem.free_frame(f);
        }
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
    /// only its user entries `[0, USER_PTRS_PER_PGD)`: reported, not refused); a tracking
    /// slot is free. The shadow then starts as the guest page mirrored, except that with
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

    /// Pages the backend can track (`MAX`).
    pub const fn capacity(&self) -> usize {
        MAX
    }

    /// The type of the frame `pfn` (`NORMAL` when untyped).
    pub fn page_type(&self, pfn: Pfn) -> PageType {
        self.lock_vcpu().pages.get(pfn).map_or(PageType::NORMAL, |t| t.ty)
    }

    /// The frame holding the shadow of the frame `pfn`, if it is typed.
    pub fn shadow_of(&self, pfn: Pfn) -> Option<Pfn> {
        self.lock_vcpu().pages.get(pfn).map(|t| t.shadow)
    }

    /// Shadow entries that link the shadow of the frame `pfn` (`None` if untyped).
    pub fn links_to(&self, pfn: Pfn) -> Option<u32> {
        self.lock_vcpu().pages.get(pfn).map(|t| t.links)
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

    /// A snapshot of the state and counters.
    pub fn stats(&self) -> Stats {
        let st = self.lock_vcpu();
        let s = Stats {
            typed_l1: st.pages.iter().filter(|t| t.ty.is_l1()).count(),
            typed_l2: st.pages.iter().filter(|t| t.ty.is_l2()).count(),
            typed_clone: st.pages.iter().filter(|t| t.ty.contains(PageType::CLONE)).count(),
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
            calls: self.calls.snapshot(),
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
        f: impl FnOnce(&mut State<M, MAX>, &mut Found<'_>) -> R,
    ) -> (R, Result<(), VmiRule>) {
        let mut found = match hook {
            Some(h) => Found::in_hook(&self.log, h),
            None => Found::returned(),
        };
        let r = {
            let mut st = self.lock_vcpu();
            f(&mut st, &mut found)
        };
        (r, found.finish())
    }

    /// Takes the state lock with the calling vCPU's paging state current.
    pub(crate) fn lock_vcpu(&self) -> paravirt_core::sync::LockGuard<'_, State<M, MAX>> {
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
