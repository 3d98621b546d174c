//! Per-frame metadata in frames of RAM, the way Linux keeps `pgd_list`'s links and
//! `change_page_attr`'s counts in each page table's `struct page`: capacity follows the RAM the
//! kernel is given, with no heap and no fixed limit.
//!
//! A [`MemMap`] is an on-demand [`FrameMap`] of [`Meta`] records: leaves are allocated from
//! [`PhysMem`] the first time a frame in their range gets metadata and freed when the last
//! record in them is cleared, so an idle kernel holds none. Every lookup is O(1).
//!
//! All access happens under the lock that owns the records (`pgd_lock` for the list links, the
//! kernel-range lock for `change_page_attr`'s counts); the frames themselves are reached only
//! through raw pointers, as [`PhysMem`]'s contract requires.

use crate::error::MmError;
use i386_paging::{FrameMap, PhysMem, Record};
use paravirt_core::Pfn;

/// One frame's metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Meta {
    /// Next frame on the list this frame is on ([`NIL`] at the end).
    pub(crate) next: u32,
    /// Previous frame on the list ([`NIL`] at the head).
    pub(crate) prev: u32,
    /// A count kept for this frame (`change_page_attr`: pages of this page table whose
    /// protection is changed).
    pub(crate) count: u32,
    /// Bits for this frame ([`ON_LIST`], [`SPLIT`]). A frame with no bits and no count has no
    /// metadata.
    pub(crate) flags: u32,
}

/// No frame (end of a list).
pub(crate) const NIL: u32 = u32::MAX;
/// The frame is on a list (its links are valid).
pub(crate) const ON_LIST: u32 = 1;
/// `change_page_attr`: the page table was made by splitting a large page.
pub(crate) const SPLIT: u32 = 2;
/// `change_page_attr`: the page table waits on `df_list` for `global_flush_tlb`.
pub(crate) const DEFERRED: u32 = 4;

const _: () = assert!(core::mem::size_of::<Meta>() == 16);

impl Record for Meta {
    const EMPTY: Self = EMPTY;

    fn to_words(self) -> [u32; 4] {
        if in_use(self) {
            [self.next, self.prev, self.count, self.flags]
        } else {
            [0; 4]
        }
    }

    fn from_words(w: [u32; 4]) -> Self {
        Meta { next: w[0], prev: w[1], count: w[2], flags: w[3] }
    }
}

/// The per-frame metadata of a kernel, on demand: leaves come and go with their records, so an
/// idle kernel holds none. Not `Sync` by itself: each record is accessed under the lock of the
/// structure it belongs to.
pub(crate) struct MemMap(FrameMap<Meta>);

impl MemMap {
    pub(crate) const fn new() -> Self {
        MemMap(FrameMap::new())
    }

    /// The metadata of `pfn` (all zero, with [`NIL`] links, if it has none).
    pub(crate) fn get<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> Meta {
        self.0.get(mem, pfn)
    }

    /// Sets the metadata of `pfn`, allocating its leaf (and directory frame) on first use and
    /// freeing them when their last record returns to empty.
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`] when a leaf or directory frame cannot be allocated (only when
    /// `meta` is not empty); nothing changed.
    pub(crate) fn set<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, meta: Meta) -> Result<(), MmError> {
        self.0.set(mem, pfn, meta).map_err(|_| MmError::OutOfMemory)
    }

    /// Changes or clears the record of `pfn`, which already has one: never allocates. (A frame
    /// without a record is left without one.)
    pub(crate) fn update<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, meta: Meta) {
        debug_assert!(in_use(self.get(mem, pfn)) || !in_use(meta), "{pfn:?} has no record to update");
        if self.0.contains(mem, pfn) {
            // The record's leaf exists: the store cannot allocate, so cannot fail.
            let _ = self.0.set(mem, pfn, meta);
        }
    }

    /// Frees every leaf and directory frame, forgetting all records (a kernel being torn down).
    pub(crate) fn clear<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        self.0.clear(mem)
    }

    /// Frames the map holds (directory and leaf frames).
    pub(crate) fn frames<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        self.0.frames(mem)
    }
}

/// What `get` answers for a frame without metadata.
pub(crate) const EMPTY: Meta = Meta { next: NIL, prev: NIL, count: 0, flags: 0 };

/// Whether a record holds anything: a frame with no flags and no count has no metadata.
fn in_use(m: Meta) -> bool {
    m.flags != 0 || m.count != 0
}
