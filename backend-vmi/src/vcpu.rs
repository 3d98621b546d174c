//! Several vCPUs: each has its own loaded root and, in PAE, its own shadow PDPT (the frame
//! its CR3 points at), as VMI keeps per-vCPU paging state. The state of the vCPU making a
//! call is kept in `State`'s `loaded`, `pdpt` and `pdpt_links`; [`State::switch_vcpu`] parks
//! the previous vCPU's and brings the caller's in, under the backend's lock, so every
//! operation sees the calling vCPU's root while the page types and shadows stay shared.
//! A table loaded on any vCPU cannot be released; a `write_cr3` on one vCPU leaves every
//! other vCPU's root and shadow PDPT as they were.

use crate::state::{Loaded, State};
use i386_paging::{zero_frame, PhysMem};
use paravirt_core::{PagingMode, Pfn};

/// vCPUs the backend keeps state for.
pub const MAX_VCPUS: usize = 8;

/// One vCPU's paging state while another vCPU's is current.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Parked {
    pdpt: Option<Pfn>,
    pdpt_links: [Option<Pfn>; 4],
    loaded: Option<Loaded>,
}

/// The vCPUs' parked states and which one is current.
pub(crate) struct Vcpus {
    pub(crate) current: usize,
    parked: [Parked; MAX_VCPUS],
}

impl Vcpus {
    pub(crate) const fn new() -> Self {
        Vcpus { current: 0, parked: [Parked { pdpt: None, pdpt_links: [None; 4], loaded: None }; MAX_VCPUS] }
    }
}

impl<M: PagingMode> State<M> {
    /// Makes vCPU `id` current (ids at or above [`MAX_VCPUS`] share the last one). In PAE a
    /// vCPU gets its shadow PDPT frame from `mem` the first time it becomes current (vCPU 0's
    /// is reserved by `Vmi::new`), unless the backend was torn down.
    pub(crate) fn switch_vcpu<P: PhysMem + ?Sized>(&mut self, mem: &P, id: usize) {
        self.switch_to(id.min(MAX_VCPUS - 1));
        if M::PAE && self.pdpt.is_none() && !self.torn_down {
            if let Some(f) = mem.alloc_frame().filter(|f| f.phys().as_u64() <= u32::MAX as u64) {
                // SAFETY: the frame was just allocated: the backend owns it alone.
                unsafe { zero_frame(mem, f) };
                self.pdpt = Some(f);
            }
        }
    }

    /// Whether `root` is the root loaded on any vCPU.
    pub(crate) fn loaded_anywhere(&self, root: Pfn) -> bool {
        self.loaded.is_some_and(|l| l.root == root)
            || self.vcpus.parked.iter().any(|p| p.loaded.is_some_and(|l| l.root == root))
    }

    /// Forgets `root` on every vCPU that has it loaded (the address space is being torn down:
    /// no vCPU runs in it any more).
    pub(crate) fn unload_everywhere<P: PhysMem + ?Sized>(&mut self, mem: &P, root: Pfn) {
        let me = self.vcpus.current;
        for id in 0..MAX_VCPUS {
            self.switch_to(id);
            if self.loaded.is_some_and(|l| l.root == root) {
                self.unload(mem);
            }
        }
        self.switch_to(me);
    }

    /// Unloads every vCPU's root and hands back every shadow PDPT frame (teardown).
    pub(crate) fn release_all_pdpts<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        for id in 0..MAX_VCPUS {
            self.switch_to(id);
            self.unload(mem);
            if let Some(f) = self.pdpt.take() {
                mem.free_frame(f);
            }
        }
        self.switch_to(0);
    }

    fn switch_to(&mut self, id: usize) {
        if id != self.vcpus.current {
            let cur = self.vcpus.current;
            self.vcpus.parked[cur] =
                Parked { pdpt: self.pdpt.take(), pdpt_links: self.pdpt_links, loaded: self.loaded.take() };
            let p = core::mem::take(&mut self.vcpus.parked[id]);
            (self.pdpt, self.pdpt_links, self.loaded) = (p.pdpt, p.pdpt_links, p.loaded);
            self.vcpus.current = id;
        }
    }
}
