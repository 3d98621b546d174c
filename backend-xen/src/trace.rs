//! A fixed-size trace of the most recent hypercalls, so tests can assert exact sequences
//! (read-only first, then pin, then the update).

use crate::error::XenError;
use crate::hypercall::Hypercall;

/// Hypercalls the trace keeps (the most recent ones).
pub const TRACE_LEN: usize = 64;

/// One traced hypercall and its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// The request.
    pub call: Hypercall,
    /// `None` if it succeeded, the refusal otherwise.
    pub error: Option<XenError>,
}

/// A ring of the last [`TRACE_LEN`] hypercalls.
pub(crate) struct Trace {
    ring: [Option<TraceEntry>; TRACE_LEN],
    next: usize,
    len: usize,
}

impl Trace {
    pub(crate) const fn new() -> Self {
        Trace { ring: [None; TRACE_LEN], next: 0, len: 0 }
    }

    pub(crate) fn push(&mut self, e: TraceEntry) {
        self.ring[self.next] = Some(e);
        self.next = (self.next + 1) % TRACE_LEN;
        self.len = (self.len + 1).min(TRACE_LEN);
    }

    pub(crate) fn clear(&mut self) {
        *self = Trace::new();
    }

    /// Copies the entries, oldest first, into `out`; returns how many were kept.
    pub(crate) fn copy_to(&self, out: &mut [TraceEntry]) -> usize {
        let start = (self.next + TRACE_LEN - self.len) % TRACE_LEN;
        let mut n = 0;
        for k in 0..self.len {
            if n == out.len() {
                break;
            }
            if let Some(e) = self.ring[(start + k) % TRACE_LEN] {
                out[n] = e;
                n += 1;
            }
        }
        self.len
    }
}
