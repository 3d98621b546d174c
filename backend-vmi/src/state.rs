//! Everything the backend keeps behind its lock. The operations on it live in `mirror.rs`
//! (entry mirroring), `rom.rs` (`AllocatePage` / `ReleasePage`), `root.rs` (CR3 and the shadow
//! PDPT), `accessed.rs` (A/D propagation) and `verify.rs` (cross-checks); `backend.rs` wraps
//! them in the lock.

use crate::shadow::{Pool, Tracker};
use crate::stats::CheckCounts;
use core::marker::PhantomData;
use paravirt_core::{HookKind, PagingMode, Pfn};

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

/// Deferred shadow updates the backend holds at most (`VMI_PAGE_DEFER`); one more flushes them.
pub const PENDING_UPDATES: usize = 32;

/// A shadow update deferred until a TLB flush (`VMI_PAGE_DEFER`): the guest entry `index` of
/// page table `table`, mapping the virtual address `addr` of the loaded address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) table: Pfn,
    pub(crate) index: u32,
    pub(crate) addr: u32,
}

/// The backend's state for paging mode `M`: a record per frame of RAM, and the shadow pool.
pub(crate) struct State<M: PagingMode> {
    pub(crate) pages: Tracker,
    pub(crate) pool: Pool,
    /// The current vCPU's shadow PDPT frame (PAE, until teardown).
    pub(crate) pdpt: Option<Pfn>,
    /// The guest pmd each shadow PDPT entry links (each counted in that pmd's `links`).
    pub(crate) pdpt_links: [Option<Pfn>; 4],
    /// The current vCPU's loaded root.
    pub(crate) loaded: Option<Loaded>,
    pub(crate) checks: CheckCounts,
    pub(crate) created: u64,
    pub(crate) freed: u64,
    pub(crate) peak: usize,
    pub(crate) pdpt_updates: u64,
    pub(crate) mirrored: u64,
    /// Before `vmi_apply_boot_page_allocations`: allocations are recorded, not checked.
    pub(crate) boot_phase: bool,
    /// Updates of the loaded address space's PTEs may be deferred until a flush.
    pub(crate) defer: bool,
    /// Calls of each hook that ran under the lock (counted there, with no atomic operation of
    /// their own); the flushes that find nothing deferred count in `Vmi::calls` instead.
    pub(crate) calls: [u32; HookKind::COUNT],
    pub(crate) pending: [Option<Pending>; PENDING_UPDATES],
    pub(crate) deferred: u64,
    /// The reserved frames went back (`Vmi::teardown`).
    pub(crate) torn_down: bool,
    /// The other vCPUs' loaded roots and shadow PDPTs (the fields above hold the current one's).
    pub(crate) vcpus: crate::vcpu::Vcpus,
    _mode: PhantomData<M>,
}

impl<M: PagingMode> State<M> {
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
            boot_phase: false,
            defer: false,
            calls: [0; HookKind::COUNT],
            pending: [None; PENDING_UPDATES],
            deferred: 0,
            torn_down: false,
            vcpus: crate::vcpu::Vcpus::new(),
            _mode: PhantomData,
        }
    }
}
