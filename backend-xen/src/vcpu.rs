//! Several vCPUs: Xen keeps a base pointer per vCPU (`v->arch.guest_table`, set by
//! `new_guest_cr3`), each holding its own root-type reference, so a root in use on any vCPU
//! stays validated. The calling vCPU's base pointer is `HvState::base`; the others are parked
//! here and [`HvState::switch_vcpu`] swaps them under the hypervisor lock.
//!
//! Unpinning a root that is another vCPU's base pointer is refused
//! ([`XenError::UnpinLoaded`]): Linux's `xen_exit_mmap` first makes every CPU leave the mm
//! (`xen_drop_mm_ref`), so a tree unpinned while still loaded somewhere is a guest bug that
//! would leave that vCPU on a tree whose tables the guest is about to write directly.

use crate::error::XenError;
use crate::frames::HvState;
use crate::table::root_type;
use i386_paging::PhysMem;
use paravirt_core::{PagingMode, Pfn};

/// vCPUs the model keeps a base pointer for.
pub const MAX_VCPUS: usize = 8;

/// The other vCPUs' base pointers.
pub(crate) struct Bases {
    current: usize,
    parked: [Option<Pfn>; MAX_VCPUS],
}

impl Bases {
    pub(crate) const fn new() -> Self {
        Bases { current: 0, parked: [None; MAX_VCPUS] }
    }
}

impl HvState {
    /// Makes vCPU `id`'s base pointer current (ids at or above [`MAX_VCPUS`] share the last).
    pub(crate) fn switch_vcpu(&mut self, id: usize) {
        let id = id.min(MAX_VCPUS - 1);
        if id != self.bases.current {
            self.bases.parked[self.bases.current] = self.base.take();
            self.base = self.bases.parked[id].take();
            self.bases.current = id;
        }
    }

    /// A vCPU other than the current one whose base pointer is `pfn`.
    pub(crate) fn loaded_elsewhere(&self, pfn: Pfn) -> Option<usize> {
        self.bases.parked.iter().enumerate().find(|&(i, b)| i != self.bases.current && *b == Some(pfn)).map(|(i, _)| i)
    }

    /// Refuses to unpin `pfn` while another vCPU runs on it.
    pub(crate) fn check_unpin_loaded(&self, pfn: Pfn) -> Result<(), XenError> {
        match self.loaded_elsewhere(pfn) {
            Some(vcpu) => Err(XenError::UnpinLoaded { pfn, vcpu: vcpu as u32 }),
            None => Ok(()),
        }
    }

    /// Every vCPU leaves the model's tables (the domain's own tables are being torn down):
    /// each base pointer's reference is dropped.
    pub(crate) fn leave_all_bases<M: PagingMode, P: PhysMem>(&mut self, mem: &P) {
        let me = self.bases.current;
        for id in 0..MAX_VCPUS {
            self.switch_vcpu(id);
            if let Some(old) = self.base.take() {
                self.put_page_type::<M, P>(mem, old, root_type::<M>());
            }
        }
        self.switch_vcpu(me);
    }
}
