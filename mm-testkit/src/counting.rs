//! [`CountingMem`]: physical memory that counts the frames reached, so a test can show that an
//! operation touches the same number of frames whatever the number of tables alive (each
//! per-frame record a backend reads or writes is one frame reached).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use i386_paging::{FaultInject, PhysMem};
use paravirt_core::Pfn;

/// A [`PhysMem`] forwarding to `inner` that counts the calls of
/// [`frame_ptr`](PhysMem::frame_ptr): every read or write of a frame's contents (an entry, a
/// zeroing, a per-frame record) goes through one.
pub struct CountingMem<P: PhysMem> {
    inner: P,
    reached: AtomicU64,
}

impl<P: PhysMem> CountingMem<P> {
    /// Counts the frames `inner` is asked for, from zero.
    pub fn new(inner: P) -> Self {
        CountingMem { inner, reached: AtomicU64::new(0) }
    }

    /// `frame_ptr` calls since construction or the last [`reset`](Self::reset).
    pub fn reached(&self) -> u64 {
        self.reached.load(Ordering::Relaxed)
    }

    /// Starts counting from zero again.
    pub fn reset(&self) {
        self.reached.store(0, Ordering::Relaxed)
    }

    /// The memory counted.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

// SAFETY: every method forwards to `inner`, which upholds the contract; counting changes
// nothing it returns.
unsafe impl<P: PhysMem> PhysMem for CountingMem<P> {
    fn alloc_frame(&self) -> Option<Pfn> {
        self.inner.alloc_frame()
    }
    fn free_frame(&self, pfn: Pfn) {
        self.inner.free_frame(pfn)
    }
    fn frame_ptr(&self, pfn: Pfn) -> NonNull<u8> {
        self.reached.fetch_add(1, Ordering::Relaxed);
        self.inner.frame_ptr(pfn)
    }
    fn max_pfn(&self) -> Pfn {
        self.inner.max_pfn()
    }
    fn frames_in_use(&self) -> usize {
        self.inner.frames_in_use()
    }
    fn privileged<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inner.privileged(f)
    }
}

impl<P: PhysMem + FaultInject> FaultInject for CountingMem<P> {
    fn fail_nth_alloc(&self, n: u64) {
        self.inner.fail_nth_alloc(n)
    }
    fn clear_fault(&self) {
        self.inner.clear_fault()
    }
}
