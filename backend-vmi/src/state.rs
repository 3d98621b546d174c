//! Everything the backend keeps behind its lock. The operations on it live in `mirror.rs`
//! (entry mirroring), `rom.rs` (`AllocatePage` / `ReleasePage`), `root.rs` (CR3 and the shadow
//! PDPT), `accessed.rs` (A/D propagation) and `verify.rs` (cross-checks); `backend.rs` wraps
//! them in the lock.

use crate::shadow::{Pool, Tracker};
use crate::stats::CheckCounts;
use core::marker::PhantomData;
use paravirt_core::{PagingMode, Pfn};

/// The root loaded with `write_cr3` (guest view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// Frame of the guest root (L2 in two-level mode, PDPT in PAE).
    pub(crate) root: Pfn,
    /// PAE: index (in 8-byte entries) of the PDPT's first entry inside its frame.
    pub(crate) base: u32,
    /// The guest's CR3 value (a physical address plus flag bits).
    pub(crate) cr3: u32,
}

/// The backend's state for paging mode `M`, tracking up to `MAX` pages.
pub(crate) struct State<M: PagingMode, const MAX: usize> {
    pub(crate) pages: Tracker<MAX>,
    pub(crate) pool: Pool<MAX>,
    /// The per-vCPU shadow PDPT frame (PAE, until teardown).
    pub(crate) pdpt: Option<Pfn>,
    /// The guest pmd each shadow PDPT entry links (each counted in that pmd's `links`).
    pub(crate) pdpt_links: [Option<Pfn>; 4],
    pub(crate) loaded: Option<Loaded>,
    pub(crate) checks: CheckCounts,
    pub(crate) created: u64,
    pub(crate) freed: u64,
    pub(crate) peak: usize,
    pub(crate) pdpt_updates: u64,
    pub(crate) mirrored: u64,
    /// The reserved frames went back (`Vmi::teardown`).
    pub(crate) torn_down: bool,
    _mode: PhantomData<M>,
}

impl<M: PagingMode, const MAX: usize> State<M, MAX> {
    /// Nothing tracked, an empty pool, no shadow PDPT.
    pub(crate) const fn new() -> Self {
        State {
            pages: Tracker::new(),
            pool: Pool::new(),
            pdpt: None,
            pdpt_links: [None; 4],
            loaded: None,
            checks: CheckCounts::new(),
            created: 0,
            freed: 0,
            peak: 0,
            pdpt_updates: 0,
            mirrored: 0,
            torn_down: false,
            _mode: PhantomData,
        }
    }
}
