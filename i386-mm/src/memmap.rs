//! Per-frame metadata in frames of RAM, the way Linux keeps `pgd_list`'s links and
//! `change_page_attr`'s counts in each page table's `struct page`: capacity follows the RAM the
//! kernel is given, with no heap and no fixed limit.
//!
//! A [`MemMap`] is a radix tree of two levels: a fixed array of directory frames, each holding
//! the frames of up to [`LEAVES_PER_DIR`] leaves, each leaf holding [`ENTRIES_PER_LEAF`]
//! metadata records. Leaves (and directory frames) are allocated from [`PhysMem`] the first time
//! a frame in their range gets metadata and freed when the last record in them is cleared, so an
//! idle kernel holds none. Every lookup is O(1).
//!
//! All access happens under the lock that owns the records (`pgd_lock` for the list links, the
//! kernel-range lock for `change_page_attr`'s counts); the frames themselves are reached only
//! through raw pointers, as [`PhysMem`]'s contract requires.

use crate::error::MmError;
use i386_paging::{alloc_zeroed, PhysMem};
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

const META_SIZE: usize = core::mem::size_of::<Meta>();
/// Records per leaf frame.
pub(crate) const ENTRIES_PER_LEAF: u32 = (4096 / META_SIZE) as u32;
/// Leaf slots per directory frame (each slot: the leaf's frame and its count of used records).
pub(crate) const LEAVES_PER_DIR: u32 = 4096 / 8;
/// Directory frames: enough for every 32-bit pfn a PAE kernel can name (64 GiB of RAM).
const DIRS: usize = (1 << 24) / (ENTRIES_PER_LEAF as usize * LEAVES_PER_DIR as usize);

const _: () = assert!(META_SIZE == 16 && ENTRIES_PER_LEAF == 256 && DIRS == 128);

/// The per-frame metadata of a kernel. Not `Sync` by itself: each record is accessed under the
/// lock of the structure it belongs to.
pub(crate) struct MemMap {
    dirs: [Option<Pfn>; DIRS],
    /// Used records per directory frame (to free it when empty).
    used: [u32; DIRS],
}

impl MemMap {
    pub(crate) const fn new() -> Self {
        MemMap { dirs: [None; DIRS], used: [0; DIRS] }
    }

    fn split(pfn: Pfn) -> (usize, u32, u32) {
        let p = pfn.as_u32();
        let leaf = p / ENTRIES_PER_LEAF;
        ((leaf / LEAVES_PER_DIR) as usize, leaf % LEAVES_PER_DIR, p % ENTRIES_PER_LEAF)
    }

    /// Pointer to directory slot `slot` of directory frame `dir` (leaf pfn, used records).
    fn dir_slot<P: PhysMem + ?Sized>(mem: &P, dir: Pfn, slot: u32) -> *mut [u32; 2] {
        mem.frame_ptr(dir).as_ptr().cast::<[u32; 2]>().wrapping_add(slot as usize)
    }

    fn record<P: PhysMem + ?Sized>(mem: &P, leaf: Pfn, index: u32) -> *mut Meta {
        mem.frame_ptr(leaf).as_ptr().cast::<Meta>().wrapping_add(index as usize)
    }

    /// The metadata of `pfn` (all zero, with [`NIL`] links, if it has none).
    pub(crate) fn get<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> Meta {
        let (d, s, i) = Self::split(pfn);
        let Some(dir) = self.dirs.get(d).copied().flatten() else { return EMPTY };
        // SAFETY: the slot lies inside a directory frame this map allocated and owns.
        let [leaf, _] = unsafe { Self::dir_slot(mem, dir, s).read() };
        if leaf == 0 {
            return EMPTY;
        }
        // SAFETY: the record lies inside a leaf frame this map allocated and owns.
        let m = unsafe { Self::record(mem, Pfn::new(leaf), i).read() };
        if in_use(m) {
            m
        } else {
            EMPTY
        }
    }

    /// Sets the metadata of `pfn`, allocating its leaf (and directory frame) on first use and
    /// freeing them when their last record returns to empty.
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`] when a leaf or directory frame cannot be allocated (only when
    /// `meta` is not empty); nothing changed.
    pub(crate) fn set<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, meta: Meta) -> Result<(), MmError> {
        self.store(mem, pfn, meta, true)
    }

    /// Changes or clears the record of `pfn`, which already has one: never allocates. (A frame
    /// without a record is left without one.)
    pub(crate) fn update<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, meta: Meta) {
        debug_assert!(in_use(self.get(mem, pfn)) || !in_use(meta), "{pfn:?} has no record to update");
        // Without allocation `store` cannot fail.
        let _ = self.store(mem, pfn, meta, false);
    }

    fn store<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, meta: Meta, alloc: bool) -> Result<(), MmError> {
        let (d, s, i) = Self::split(pfn);
        let empty = !in_use(meta) || !alloc && !in_use(self.get(mem, pfn));
        let meta = if empty { EMPTY } else { meta };
        let dir = match self.dirs[d] {
            Some(dir) => dir,
            None if empty => return Ok(()),
            None => {
                let dir = alloc_zeroed(mem).ok_or(MmError::OutOfMemory)?;
                self.dirs[d] = Some(dir);
                dir
            }
        };
        let slot = Self::dir_slot(mem, dir, s);
        // SAFETY: the slot lies inside a directory frame this map owns.
        let [mut leaf, mut used] = unsafe { slot.read() };
        if leaf == 0 {
            if empty {
                return Ok(());
            }
            match alloc_zeroed(mem) {
                Some(l) => leaf = l.as_u32(),
                None => {
                    self.release_dir_if_unused(mem, d);
                    return Err(MmError::OutOfMemory);
                }
            }
        }
        let rec = Self::record(mem, Pfn::new(leaf), i);
        // SAFETY: the record lies inside a leaf frame this map owns (a fresh leaf is zeroed:
        // every record unused).
        let was_used = in_use(unsafe { rec.read() });
        // SAFETY: as above; an unused record is stored as zeroes.
        unsafe { rec.write(if empty { Meta::default() } else { meta }) };
        match (was_used, !empty) {
            (false, true) => {
                used += 1;
                self.used[d] += 1;
            }
            (true, false) => {
                used -= 1;
                self.used[d] -= 1;
            }
            _ => {}
        }
        if used == 0 {
            mem.free_frame(Pfn::new(leaf));
            leaf = 0;
        }
        // SAFETY: as for the read of the slot.
        unsafe { slot.write([leaf, used]) };
        self.release_dir_if_unused(mem, d);
        Ok(())
    }

    fn release_dir_if_unused<P: PhysMem + ?Sized>(&mut self, mem: &P, d: usize) {
        if self.used[d] == 0 {
            if let Some(dir) = self.dirs[d].take() {
                mem.free_frame(dir);
            }
        }
    }

    /// Frees every leaf and directory frame, forgetting all records (a kernel being torn down).
    pub(crate) fn clear<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        for d in 0..DIRS {
            if let Some(dir) = self.dirs[d].take() {
                for s in 0..LEAVES_PER_DIR {
                    // SAFETY: the slot lies inside a directory frame this map owns.
                    let [leaf, _] = unsafe { Self::dir_slot(mem, dir, s).read() };
                    if leaf != 0 {
                        mem.free_frame(Pfn::new(leaf));
                    }
                }
                mem.free_frame(dir);
            }
            self.used[d] = 0;
        }
    }

    /// Frames the map holds (directory and leaf frames).
    pub(crate) fn frames<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        let mut n = 0;
        for dir in self.dirs.iter().flatten() {
            n += 1;
            for s in 0..LEAVES_PER_DIR {
                // SAFETY: the slot lies inside a directory frame this map owns.
                if unsafe { Self::dir_slot(mem, *dir, s).read() }[0] != 0 {
                    n += 1;
                }
            }
        }
        n
    }
}

/// What `get` answers for a frame without metadata.
pub(crate) const EMPTY: Meta = Meta { next: NIL, prev: NIL, count: 0, flags: 0 };

/// Whether a record holds anything: a frame with no flags and no count has no metadata.
fn in_use(m: Meta) -> bool {
    m.flags != 0 || m.count != 0
}
