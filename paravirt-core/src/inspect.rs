//! What a backend tells about itself: the protocol checker's view for tests and the demo.

use core::fmt::{self, Write};

/// State and checks a backend exposes so tests and the demo can assert what it holds.
///
/// Every method has a default for a backend that keeps no state (native).
pub trait Inspect {
    /// Short name (`"native"`, `"vmi"`, `"xen"`).
    fn backend_name(&self) -> &'static str;

    /// Pages the backend still tracks: typed, shadowed or pinned page tables and the frames it
    /// allocated for itself. Zero after a full teardown.
    fn pages_held(&self) -> usize {
        0
    }

    /// Protocol violations detected so far (with a record-and-continue policy).
    fn violations(&self) -> usize {
        0
    }

    /// Cross-checks the backend's view against the guest's page tables (VMI: every shadow
    /// against its guest table; Xen: every pinned table still validates). On a mismatch writes
    /// a report naming the table, index and both values to `out` and returns `false`.
    fn verify(&self, out: &mut dyn Write) -> bool {
        let _ = out;
        true
    }

    /// Whether page-table pages are mapped read-only in the kernel's own linear map, so that
    /// a direct write to one must fault (Xen).
    fn page_tables_read_only(&self) -> bool {
        false
    }

    /// Direct stores into page-table pages that faulted and that the backend emulated (Xen's
    /// `ptwr_do_page_fault` for a validated L1), so far.
    fn emulated_writes(&self) -> u64 {
        0
    }

    /// Writes one-line-per-item statistics (pages by type, calls per hook...).
    ///
    /// # Errors
    /// What `out` returns.
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        writeln!(out, "{}: no state", self.backend_name())
    }
}

impl<T: Inspect + ?Sized> Inspect for &T {
    fn backend_name(&self) -> &'static str {
        (**self).backend_name()
    }
    fn pages_held(&self) -> usize {
        (**self).pages_held()
    }
    fn violations(&self) -> usize {
        (**self).violations()
    }
    fn verify(&self, out: &mut dyn Write) -> bool {
        (**self).verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        (**self).page_tables_read_only()
    }
    fn emulated_writes(&self) -> u64 {
        (**self).emulated_writes()
    }
    fn write_stats(&self, out: &mut dyn Write) -> fmt::Result {
        (**self).write_stats(out)
    }
}
