//! The backend value: the guest side of a Xen PV domain (Linux's Xen MMU code), holding a
//! reference to the [`Hypervisor`] it issues hypercalls to, its own per-page state, and the
//! violations it caught.

use crate::error::{SetupError, TeardownError, XenError};
use crate::guest::{GuestState, ANNOUNCED, PINNED, RO};
use crate::hypervisor::Hypervisor;
use crate::stats::XenStats;
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::sync::Lock;
use paravirt_core::{HookKind, Pfn, Policy, Violations};

/// Violations kept in full by a [`Xen`] backend; later ones are only counted.
pub const MAX_VIOLATIONS: usize = 16;

/// The Xen PV MMU backend for paging mode `M`: Linux's Xen MMU hooks (guest side), driving the
/// [`Hypervisor`] model of Xen's page-type rules over the guest's physical memory `P`.
///
/// The guest keeps a few flags per page (Linux's `PG_pinned`, "announced", "made read-only"),
/// in a record per frame of RAM that [`init`](Self::init) reserves in frames of `P` (as Linux
/// allocates `mem_map` for all of RAM at boot), so every hook is O(1) in the number of tables
/// alive and none allocates; [`teardown`](Self::teardown) gives them back. Until `init`, a
/// hook that must set a flag is refused with [`XenError::Capacity`].
///
/// It implements [`PvMmuOps<M>`](paravirt_core::PvMmuOps) for its own mode only: a `Xen`
/// built for PAE cannot serve a two-level kernel. Hand `&Xen` (or `Xen`) to
/// `i386_mm::KernelMm` as its backend. The hypercalls are the hypervisor's
/// ([`hypervisor`](Self::hypervisor)), so a test can drive it directly too.
///
/// Protocol violations caught inside a hook (a refused hypercall, or a guest-side protocol
/// error) are reported to a [`Violations`] log under the [`Policy`] given at construction:
/// `Policy::Panic` panics with `xen: <hook>: <rule> [...]` (Linux `BUG()`s on a failed
/// hypercall), `Policy::Record` keeps the first [`MAX_VIOLATIONS`] and skips the refused
/// update.
///
/// # Panics
/// Under [`Policy::Panic`], every hook panics on the first violation it catches, with
/// `xen: <hook>: <rule> [<origin> rule <name>]` (see [`Violations::report`]). A hook may also panic
/// if the kernel hands it a frame that the memory `P` does not manage
/// ([`PhysMem::frame_ptr`](i386_paging::PhysMem::frame_ptr)'s contract).
///
/// # Example
///
/// A two-level page directory and one page table, linked while unpinned (a direct store),
/// pinned when the directory is loaded, then a PTE that would map the page table writable:
/// the hypervisor refuses it and the backend records the violation.
///
/// ```
/// # use core::ptr::NonNull;
/// # use core::sync::atomic::{AtomicU32, Ordering};
/// # use i386_paging::PhysMem;
/// # #[repr(C, align(4096))]
/// # struct Frame([u8; 4096]);
/// # /// Sixteen frames of "RAM", handed out in order and never reused.
/// # struct Ram { frames: Box<[core::cell::UnsafeCell<Frame>]>, next: AtomicU32 }
/// # // SAFETY: each frame is a separate, page-aligned heap allocation that lives as long as the
/// # // value; it is reached only through raw pointers; frames are handed out at most once.
/// # unsafe impl PhysMem for Ram {
/// #     fn alloc_frame(&self) -> Option<Pfn> {
/// #         let n = self.next.fetch_add(1, Ordering::Relaxed);
/// #         ((n as usize) < self.frames.len()).then(|| Pfn::new(n))
/// #     }
/// #     fn free_frame(&self, _: Pfn) {}
/// #     fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
/// #         NonNull::new(self.frames[pfn.as_usize()].get().cast()).unwrap()
/// #     }
/// #     fn max_pfn(&self) -> Pfn { Pfn::new(self.frames.len() as u32) }
/// #     fn frames_in_use(&self) -> usize { self.next.load(Ordering::Relaxed) as usize }
/// # }
/// # let ram = Ram {
/// #     frames: (0..16).map(|_| core::cell::UnsafeCell::new(Frame([0; 4096]))).collect(),
/// #     next: AtomicU32::new(0),
/// # };
/// use backend_xen::{HookKind, Hypervisor, Origin, Policy, PvMmuOps, Rule, Xen, XenError};
/// use i386_paging::{alloc_zeroed, slot, Pfn, Pmd, Pte, TwoLevel, PAGE_KERNEL, PAGE_TABLE};
///
/// let hv = Hypervisor::<TwoLevel, _>::boot(&ram)?; // frame table: 2 frames (a leaf, a directory)
/// let xen = Xen::boot(&hv, Policy::Record)?; // the guest's page flags: 2 frames
/// let (pgd, pt) = (alloc_zeroed(&ram).unwrap(), alloc_zeroed(&ram).unwrap());
/// xen.alloc_pd(pgd);
/// xen.alloc_pt(pt);
/// // SAFETY (for both slots): entries of frames of `ram`, which outlives them.
/// xen.set_pmd(unsafe { slot::<TwoLevel, _, _>(&ram, pgd, 0) }, Pmd::new(pt, PAGE_TABLE));
/// assert_eq!(xen.stats().direct_writes, 1, "an unpinned table is written directly");
///
/// // Loading the directory pins its tree (the page table first) and installs it.
/// let cr3 = pgd.phys().as_u64() as u32;
/// assert_eq!(xen.write_cr3(cr3), cr3);
/// assert!(hv.is_pinned(pt) && hv.is_pinned(pgd));
/// assert_eq!(hv.base(), Some(pgd));
///
/// // A page table may never be mapped writable: refused, recorded, not written.
/// // SAFETY: an entry of a frame of `ram`, which outlives it.
/// let pte = unsafe { slot::<TwoLevel, Pte, _>(&ram, pt, 1) };
/// xen.set_pte(pte, Pte::new(pt, PAGE_KERNEL));
/// let v = xen.violation_log().get(0).unwrap();
/// assert_eq!(v.hook, HookKind::SetPte);
/// assert!(matches!(v.rule, XenError::WritablePageTable { target, .. } if target == pt));
/// assert_eq!(v.rule.origin(), Origin::Hypervisor);
/// assert_eq!(pte.read(), Pte::EMPTY);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Xen<'h, M: PagingMode, P: PhysMem> {
    pub(crate) hv: &'h Hypervisor<M, P>,
    pub(crate) guest: Lock<GuestState>,
    pub(crate) log: Violations<XenError, MAX_VIOLATIONS>,
}

impl<'h, M: PagingMode, P: PhysMem> Xen<'h, M, P> {
    paravirt_core::const_unless_loom! {
        /// The guest side of the domain run by `hv`, reacting to violations with `policy`. Its
        /// per-page flags are not reserved yet: call [`init`](Self::init) (or use
        /// [`boot`](Self::boot)). `const`, so a kernel can keep it in a `static`.
        pub fn new(hv: &'h Hypervisor<M, P>, policy: Policy) -> Self {
            Xen { hv, guest: Lock::new(GuestState::new()), log: Violations::new("xen", policy) }
        }
    }

    /// The guest side of `hv`'s domain ([`new`](Self::new)) with its per-page flags reserved
    /// ([`init`](Self::init)).
    ///
    /// # Errors
    /// As [`init`](Self::init).
    pub fn boot(hv: &'h Hypervisor<M, P>, policy: Policy) -> Result<Self, SetupError> {
        let x = Self::new(hv, policy);
        x.init()?;
        Ok(x)
    }

    /// Reserves the guest's per-page flags: a record per frame of RAM (`[0, mem.max_pfn())`)
    /// in frames of the domain's memory (one frame per 256 frames of RAM, plus a directory
    /// frame per 128K frames). Call it once, before the first hook.
    ///
    /// # Errors
    /// [`SetupError::OutOfMemory`] if the memory cannot supply the frames (every frame taken is
    /// given back), [`SetupError::AlreadySetUp`] if they are reserved already.
    pub fn init(&self) -> Result<(), SetupError> {
        let mut g = self.guest.lock();
        if g.is_reserved() {
            return Err(SetupError::AlreadySetUp);
        }
        g.reserve(self.hv.mem()).map_err(|_| SetupError::OutOfMemory)
    }

    /// Gives the per-page flags' frames back, once the kernel released every table and made
    /// every page writable again (after `KernelMm::shutdown`). The hypervisor's frame table
    /// is [`Hypervisor::free_frametable`]'s.
    ///
    /// # Errors
    /// [`TeardownError::FramesHeld`] while a page still has a flag, [`TeardownError::NotSetUp`]
    /// if the flags are not reserved; nothing changes either way.
    pub fn teardown(&self) -> Result<(), TeardownError> {
        let mut g = self.guest.lock();
        if !g.is_reserved() {
            return Err(TeardownError::NotSetUp);
        }
        let held = g.flagged(self.hv.mem()).count();
        if held != 0 {
            return Err(TeardownError::FramesHeld { held });
        }
        g.free(self.hv.mem());
        Ok(())
    }

    /// Frames of the domain's memory the per-page flags take (0 before [`init`](Self::init) and
    /// after [`teardown`](Self::teardown)).
    pub fn flag_frames(&self) -> usize {
        self.guest.lock().frames(self.hv.mem())
    }

    /// The hypervisor this guest runs on (its hypercalls, frame table, base pointer, trace).
    pub fn hypervisor(&self) -> &'h Hypervisor<M, P> {
        self.hv
    }

    /// The violation policy.
    pub fn policy(&self) -> Policy {
        self.log.policy()
    }

    /// The violations caught inside hooks: the first [`MAX_VIOLATIONS`] in full, all counted
    /// ([`Violations::total`], [`Violations::checker_total`]).
    pub fn violation_log(&self) -> &Violations<XenError, MAX_VIOLATIONS> {
        &self.log
    }

    /// Whether the guest made frame `pfn` read-only in its linear map (and has not made it
    /// writable again).
    pub fn is_read_only(&self, pfn: Pfn) -> bool {
        self.guest.lock().has(self.hv.mem(), pfn, RO)
    }

    /// Whether frame `pfn` was announced with `alloc_pt` / `alloc_pd` / `alloc_pd_clone` and
    /// not released since.
    pub fn is_announced(&self, pfn: Pfn) -> bool {
        self.guest.lock().has(self.hv.mem(), pfn, ANNOUNCED)
    }

    /// Whether frame `pfn` is part of a tree the guest pinned (Linux's `PagePinned`): entry
    /// writes into it go through `mmu_update`. Whether the guest pinned the frame itself with
    /// a hypercall is [`Hypervisor::is_pinned`].
    pub fn guest_pinned(&self, pfn: Pfn) -> bool {
        self.guest.lock().has(self.hv.mem(), pfn, PINNED)
    }

    /// Pages the guest made read-only that still are.
    pub fn read_only_pages(&self) -> usize {
        self.guest.lock().stats.read_only as usize
    }

    /// A snapshot of every counter, guest and hypervisor side.
    pub fn stats(&self) -> XenStats {
        let g = self.guest.lock();
        self.hv.with_state(|hv| XenStats {
            mmu_update: hv.stats.mmu_update,
            mmuext: hv.stats.mmuext,
            update_va_mapping: hv.stats.update_va_mapping,
            refusals: {
                // Protocol errors the guest side caught itself count with the refusals.
                let mut r = hv.stats.refusals;
                for (r, g) in r.iter_mut().zip(g.guest_errors.iter()) {
                    *r += g;
                }
                r
            },
            pins: hv.stats.pins,
            validations: hv.stats.validations,
            devalidations: hv.stats.devalidations,
            max_pinned: hv.stats.max_pinned,
            ptwr: hv.stats.ptwr,
            pinned: hv.pinned_counts(self.hv.mem()),
            hooks: g.stats.hooks,
            direct_writes: g.stats.direct_writes,
            read_only: g.stats.read_only,
            max_read_only: g.stats.max_read_only,
        })
    }

    /// Reports `error`, caught inside `hook`, under the policy.
    ///
    /// # Panics
    /// Under [`Policy::Panic`], with `xen: <hook>: <rule> [...]`.
    pub(crate) fn report(&self, hook: HookKind, error: XenError) {
        self.log.report(hook, error);
    }

    /// Reports a protocol error the guest side caught itself (no hypercall refused it).
    pub(crate) fn guest_error(&self, g: &mut GuestState, hook: HookKind, error: XenError) {
        g.guest_errors[error.errno().index()] += 1;
        self.report(hook, error);
    }

    /// Reports `r`'s error, if any; returns whether it succeeded.
    pub(crate) fn check(&self, hook: HookKind, r: Result<(), XenError>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.report(hook, e);
                false
            }
        }
    }
}
