//! The backend type: its state, construction and teardown, accessors, and how violations
//! are reported.

use crate::shadow::{Pool, Tracker};
use crate::stats::{Check, Counters, Stats};
use crate::types::PageType;
use crate::violation::{Pending, Policy, Violation, ViolationLog};
use core::fmt;
use core::marker::PhantomData;
use i386_mm::{zero_frame, PagingMode, Pfn, PhysMem};
use spin::Mutex;

/// Pages a [`Vmi`] tracks unless told otherwise (and shadow frames it reserves).
pub const DEFAULT_CAPACITY: usize = 512;

/// Why [`Vmi::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// Physical memory could not supply the shadow-frame pool or the per-vCPU PDPT; every
    /// frame taken was given back.
    OutOfMemory,
    /// The per-vCPU shadow PDPT landed above 4 GiB, where a 32-bit CR3 cannot reach it.
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

/// The root loaded with `write_cr3` (guest view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// Frame of the guest root (L2 in two-level mode, PDPT in PAE).
    pub(crate) root: Pfn,
    /// PAE: index (in 8-byte entries) of the PDPT's first entry inside its frame.
    pub(crate) base: u32,
    /// The guest's CR3 value.
    pub(crate) cr3: u32,
}

/// Everything behind the backend's lock.
pub(crate) struct State<const MAX: usize> {
    pub(crate) pages: Tracker<MAX>,
    pub(crate) pool: Pool<MAX>,
    /// The per-vCPU shadow PDPT frame (PAE, until teardown).
    pub(crate) pdpt: Option<Pfn>,
    /// The guest pmd each shadow PDPT entry links (each counted in that pmd's `links`).
    pub(crate) pdpt_links: [Option<Pfn>; 4],
    pub(crate) loaded: Option<Loaded>,
    pub(crate) created: u64,
    pub(crate) freed: u64,
    pub(crate) peak: usize,
    pub(crate) pdpt_updates: u64,
    pub(crate) mirrored: u64,
}

/// The VMI backend: VMware's page-type protocol with its debug checks, over real shadow page
/// tables that the CPU walks.
///
/// Generic over the paging mode `M`, physical memory `P` (shadow frames come from it) and the
/// number of pages it can track, `MAX` (that many shadow frames are reserved at
/// construction). Hooks take `&self`; the state sits behind one [`spin::Mutex`]. Hand
/// `&Vmi` to `i386_mm::KernelMm` as its backend, and call [`teardown`](Self::teardown) at
/// the end to give the reserved frames back (dropping the backend without it leaks them).
pub struct Vmi<M: PagingMode, P: PhysMem, const MAX: usize = DEFAULT_CAPACITY> {
    pub(crate) mem: P,
    policy: Policy,
    pub(crate) state: Mutex<State<MAX>>,
    log: Mutex<ViolationLog>,
    pub(crate) counters: Counters,
    _mode: PhantomData<M>,
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// Builds the backend over `mem`: reserves `MAX` shadow frames and, in PAE, the per-vCPU
    /// shadow PDPT frame (zeroed). Violations are handled according to `policy`.
    pub fn new(mem: P, policy: Policy) -> Result<Self, InitError> {
        let mut st = State {
            pages: Tracker::new(),
            pool: Pool::new(),
            pdpt: None,
            pdpt_links: [None; 4],
            loaded: None,
            created: 0,
            freed: 0,
            peak: 0,
            pdpt_updates: 0,
            mirrored: 0,
        };
        let give_back = |st: &mut State<MAX>, mem: &P| {
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
            if f.phys() > u32::MAX as u64 {
                give_back(&mut st, &mem);
                return Err(InitError::PdptAbove4G);
            }
            zero_frame(&mem, f);
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
            policy,
            state: Mutex::new(st),
            log: Mutex::new(ViolationLog::new()),
            counters: Counters::new(),
            _mode: PhantomData,
        })
    }

    /// Gives back the shadow-frame pool and the per-vCPU shadow PDPT. Allowed only once no
    /// page is typed (after `KernelMm::shutdown`); otherwise reports
    /// [`Violation::TeardownWithLivePages`] and keeps everything. After it, any allocation is
    /// refused for lack of capacity and a PAE `write_cr3` for lack of a PDPT.
    pub fn teardown(&self) -> Result<(), Violation> {
        self.locked(|st, pend| {
            let typed = st.pages.len();
            if typed != 0 {
                pend.push(Violation::TeardownWithLivePages { pages: typed });
                return;
            }
            self.unload(st);
            if let Some(f) = st.pdpt.take() {
                self.mem.free_frame(f);
            }
            while let Some(f) = st.pool.drain_one() {
                self.mem.free_frame(f);
            }
        })
        .1
    }

    /// The policy chosen at construction.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Physical memory the shadows live in.
    pub fn mem(&self) -> &P {
        &self.mem
    }

    /// Pages the backend can track (`MAX`).
    pub const fn capacity(&self) -> usize {
        MAX
    }

    /// The type of `pfn` (`NORMAL` when untyped).
    pub fn page_type(&self, pfn: Pfn) -> PageType {
        self.state.lock().pages.get(pfn).map_or(PageType::NORMAL, |t| t.ty)
    }

    /// The shadow of `pfn`, if it is typed.
    pub fn shadow_of(&self, pfn: Pfn) -> Option<Pfn> {
        self.state.lock().pages.get(pfn).map(|t| t.shadow)
    }

    /// Shadow entries that link the shadow of `pfn` (`None` if untyped).
    pub fn links_to(&self, pfn: Pfn) -> Option<u32> {
        self.state.lock().pages.get(pfn).map(|t| t.links)
    }

    /// The guest root last loaded with `write_cr3`, if it is still loaded.
    pub fn loaded_root(&self) -> Option<Pfn> {
        self.state.lock().loaded.map(|l| l.root)
    }

    /// The per-vCPU shadow PDPT frame (PAE, until teardown).
    pub fn shadow_pdpt(&self) -> Option<Pfn> {
        self.state.lock().pdpt
    }

    /// Pages typed right now.
    pub fn typed_pages(&self) -> usize {
        self.state.lock().pages.len()
    }

    /// A snapshot of the state and counters.
    pub fn stats(&self) -> Stats {
        let st = self.state.lock();
        let mut s = Stats {
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
            calls: [0; crate::stats::HookKind::COUNT],
            checks: [0; Check::COUNT],
            violations: 0,
        };
        drop(st);
        self.counters.snapshot(&mut s.calls, &mut s.checks);
        s.violations = self.violation_count();
        s
    }

    /// Violations detected so far (all of them, recorded or not).
    pub fn violation_count(&self) -> usize {
        self.log.lock().total()
    }

    /// The `i`th violation recorded (the first [`RECORDED_VIOLATIONS`] are kept).
    ///
    /// [`RECORDED_VIOLATIONS`]: crate::RECORDED_VIOLATIONS
    pub fn violation(&self, i: usize) -> Option<Violation> {
        self.log.lock().get(i)
    }

    /// Forgets every violation recorded.
    pub fn clear_violations(&self) {
        self.log.lock().clear()
    }

    /// Runs `f` under the state lock, then reports what it found (after the lock is dropped,
    /// so a panic never leaves it held). Returns `f`'s result and the first violation.
    pub(crate) fn locked<R>(&self, f: impl FnOnce(&mut State<MAX>, &mut Pending) -> R) -> (R, Result<(), Violation>) {
        let mut pend = Pending::new();
        let r = {
            let mut st = self.state.lock();
            f(&mut st, &mut pend)
        };
        (r, self.report(&pend))
    }

    fn report(&self, pend: &Pending) -> Result<(), Violation> {
        let Some(first) = pend.first() else { return Ok(()) };
        match self.policy {
            Policy::Panic => panic!("{first}"),
            Policy::Record => {
                let mut log = self.log.lock();
                for v in pend.iter() {
                    log.push(v);
                }
                log.count_more(pend.overflow());
            }
        }
        Err(first)
    }
}
