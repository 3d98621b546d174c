//! `Inspect` for [`Xen`]: what the model holds, and the cross-check of its view against the
//! guest's page tables.

use crate::guest::PINNED;
use crate::xen::Xen;
use core::fmt::{self, Write};
use i386_mm::{PagingMode, PhysMem};
use paravirt_core::{Inspect, Pfn};

impl<M: PagingMode, P: PhysMem, const N: usize> Inspect for Xen<'_, M, P, N> {
    fn backend_name(&self) -> &'static str {
        "xen"
    }

    /// Frames the model still holds: validated or pinned tables, pages announced and not
    /// released, pages the guest made read-only. Zero after a full teardown.
    fn pages_held(&self) -> usize {
        let g = self.table.guest.lock();
        let hv = self.table.hv.lock();
        (0..N)
            .filter(|&i| {
                let f = hv.frames[i].info;
                g.raw(i) != 0 || f.pinned || (f.ty.is_table() && f.count > 0)
            })
            .count()
    }

    fn violations(&self) -> usize {
        self.table.guest.lock().log.total()
    }

    /// Every validated table still validates and matches what was validated (no write
    /// bypassed `mmu_update`), no pinned table is mapped writable in the linear map, and the
    /// guest's pinned / read-only flags agree with the hypervisor.
    fn verify(&self, out: &mut dyn Write) -> bool {
        let g = self.table.guest.lock();
        let hv = self.table.hv.lock();
        let mut ok = hv.verify::<M, P>(&self.mem, out);
        for i in 0..N {
            let pfn = Pfn(i as u32);
            let flags = g.raw(i);
            let pinned = hv.frames[i].info.pinned;
            if (flags & PINNED != 0) != pinned {
                ok = false;
                let _ = writeln!(
                    out,
                    "xen: pfn {pfn}: guest thinks pinned = {}, hypervisor has pinned = {pinned}",
                    flags & PINNED != 0
                );
            }
        }
        ok
    }

    fn page_tables_read_only(&self) -> bool {
        true
    }

    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        self.stats().write(out)?;
        writeln!(out, "xen: {} paging, frames held {}, violations {}", M::NAME, self.pages_held(), self.violations())
    }
}
