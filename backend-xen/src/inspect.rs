//! `Inspect` for [`Xen`]: what the model holds, and the cross-check of its view against the
//! guest's page tables.

use crate::guest::HV_PIN;
use crate::xen::Xen;
use core::fmt::{self, Write};
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::{Inspect, Pfn};

impl<M: PagingMode, P: PhysMem, const N: usize> Inspect for Xen<'_, M, P, N> {
    fn backend_name(&self) -> &'static str {
        "xen"
    }

    /// Frames the model still holds: validated or pinned tables, pages announced and not
    /// released, pages the guest made read-only. Zero after a full teardown.
    fn pages_held(&self) -> usize {
        let g = self.guest.lock();
        self.hv.with_state(|hv| {
            (0..N)
                .filter(|&i| {
                    let f = hv.frames[i].info;
                    g.raw(i) != 0 || f.pinned || (f.ty.is_table() && f.count > 0)
                })
                .count()
        })
    }

    /// Violations caught inside hooks so far (hypervisor refusals and checker rules).
    fn violations(&self) -> usize {
        self.log.total()
    }

    /// Every validated table still validates and matches what was validated (no write
    /// bypassed `mmu_update`), no pinned table is mapped writable in the linear map, and the
    /// tables the guest pinned are the ones the hypervisor holds pinned.
    fn verify(&self, out: &mut dyn Write) -> bool {
        let g = self.guest.lock();
        self.hv.with_state(|hv| {
            let mut ok = hv.verify::<M, P>(self.hv.mem(), out);
            for i in 0..N {
                let pfn = Pfn::new(i as u32);
                let guest = g.raw(i) & HV_PIN != 0;
                let pinned = hv.frames[i].info.pinned;
                if guest != pinned {
                    ok = false;
                    let _ = writeln!(
                        out,
                        "xen: pfn {pfn}: guest thinks pinned = {guest}, hypervisor has pinned = {pinned}"
                    );
                }
            }
            ok
        })
    }

    fn page_tables_read_only(&self) -> bool {
        true
    }

    /// Stores into validated L1s emulated by the hypervisor (`ptwr_emulated_update`).
    fn emulated_writes(&self) -> u64 {
        self.hv.with_state(|hv| hv.stats.ptwr)
    }

    /// [`XenStats`](crate::XenStats) (its `Display`), then the mode, frames held and violations.
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        write!(out, "{}", self.stats())?;
        writeln!(
            out,
            "xen: {} paging, frames held {}, violations {} ({} checker)",
            M::NAME,
            self.pages_held(),
            self.log.total(),
            self.log.checker_total()
        )
    }
}
