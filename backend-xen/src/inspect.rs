//! `Inspect` for [`Xen`]: what the model holds, and the cross-check of its view against the
//! guest's page tables.

use crate::guest::HV_PIN;
use crate::types::PageInfo;
use crate::xen::Xen;
use core::fmt::{self, Write};
use i386_paging::{PagingMode, PhysMem};
use paravirt_core::Inspect;

impl<M: PagingMode, P: PhysMem> Inspect for Xen<'_, M, P> {
    fn backend_name(&self) -> &'static str {
        "xen"
    }

    /// Frames the model still holds: validated or pinned tables, pages announced and not
    /// released, pages the guest made read-only. Zero after a full teardown. O(frames of RAM).
    fn pages_held(&self) -> usize {
        let g = self.guest.lock();
        let mem = self.hv.mem();
        self.hv.with_state(|hv| {
            let held = |f: PageInfo| f.pinned || (f.ty.is_table() && f.count > 0);
            let flagged = g.flagged(mem).filter(|&(pfn, f)| f != 0 || held(hv.info(mem, pfn))).count();
            let only_hv = hv.held(mem).filter(|&(pfn, f)| held(f) && g.raw(mem, pfn) == 0).count();
            flagged + only_hv
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
            let mem = self.hv.mem();
            let mut ok = hv.verify::<M, P>(mem, out);
            // A frame pinned on one side only has a record on that side, and is met once.
            let guest_pins = g.flagged(mem).filter(|&(_, f)| f & HV_PIN != 0).map(|(pfn, _)| pfn);
            let hv_pins = hv.held(mem).filter(|(_, i)| i.pinned).map(|(pfn, _)| pfn);
            for pfn in guest_pins.chain(hv_pins) {
                let guest = g.raw(mem, pfn) & HV_PIN != 0;
                let pinned = hv.info(mem, pfn).pinned;
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
