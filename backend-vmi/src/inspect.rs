//! What the backend tells tests and the demo (`paravirt_core::Inspect`).

use crate::backend::Vmi;
use core::fmt::{self, Write};
use i386_paging::PhysMem;
use paravirt_core::{Inspect, PagingMode};

/// Divergences [`Inspect::verify`] writes out in full (the rest are counted).
pub const VERIFY_REPORT_LINES: usize = 16;

impl<M: PagingMode, P: PhysMem> Inspect for Vmi<M, P> {
    fn backend_name(&self) -> &'static str {
        "vmi"
    }

    /// Typed pages plus their live shadows (the reserved pool and the per-vCPU PDPT are a
    /// fixed cost given back by [`Vmi::teardown`], not counted): zero after a full teardown.
    fn pages_held(&self) -> usize {
        2 * self.typed_pages()
    }

    /// Violations the hooks reported (see [`Vmi::violation_log`]).
    fn violations(&self) -> usize {
        self.violation_count()
    }

    /// [`Vmi::verify_each`], writing the first [`VERIFY_REPORT_LINES`] divergences (table,
    /// index and both values) and a count of the rest.
    /// First propagates the accessed/dirty bits the CPU set in the shadows it walks into the
    /// guest's entries (what a shadow pager does continuously; see
    /// [`Vmi::sync_accessed_dirty`]), then compares every shadow with its guest table.
    fn verify(&self, out: &mut dyn Write) -> bool {
        self.sync_accessed_dirty();
        let mut written = 0;
        let n = self.verify_each(&mut |d| {
            if written < VERIFY_REPORT_LINES {
                let _ = writeln!(out, "vmi verify: {d}");
                written += 1;
            }
        });
        if n > VERIFY_REPORT_LINES {
            let _ = writeln!(out, "vmi verify: ... and {} more", n - VERIFY_REPORT_LINES);
        }
        n == 0
    }

    /// The [`Stats`](crate::Stats) snapshot, through its `Display`.
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        write!(out, "{}", self.stats())
    }
}
