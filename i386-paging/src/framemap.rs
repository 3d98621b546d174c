//! Per-frame records kept in frames of RAM: Linux's `mem_map` (a `struct page` per frame) and
//! Xen's `frame_table`, with no heap and a capacity that follows the RAM given.
//!
//! A [`FrameMap`] is a radix tree of two levels: a fixed array of [`DIRS`] directory frames,
//! each holding the frames of up to [`LEAVES_PER_DIR`] leaves, each leaf holding
//! [`RECORDS_PER_LEAF`] records of 16 bytes. Every lookup is O(1) and every pfn a 32-bit
//! [`Pfn`] can name below 64 GiB has a place.
//!
//! Two ways to hold the frames:
//! - on demand ([`FrameMap::set`]): a leaf (and its directory frame) is allocated the first time
//!   a frame in its range gets a record and freed when its last record is cleared, so an idle
//!   map holds nothing (the guest kernel's `pgd_list` links);
//! - reserved up front ([`FrameMap::reserve`]): every leaf covering `[0, end)` is allocated at
//!   once and kept until [`FrameMap::clear`], so a store never allocates (a hypervisor's frame
//!   table, which must not take guest memory inside a hypercall).
//!
//! A frame's record is stored as four `u32` words; all-zero words mean "no record". The map is
//! not `Sync` by itself: its owner keeps it behind the lock that guards the records.

use crate::phys::{alloc_zeroed, PhysMem};
use paravirt_core::Pfn;

/// A record a [`FrameMap`] keeps per frame: 16 bytes, as four words.
pub trait Record: Copy {
    /// The record of a frame that has none.
    const EMPTY: Self;
    /// The record as words; a record that holds nothing must encode as all zero.
    fn to_words(self) -> [u32; 4];
    /// The record the words encode (`[0; 4]` is [`EMPTY`](Self::EMPTY)).
    fn from_words(w: [u32; 4]) -> Self;
}

/// Records per leaf frame (16 bytes each).
pub const RECORDS_PER_LEAF: u32 = 4096 / 16;
/// Leaf slots per directory frame (each slot: the leaf's frame and its count of used records).
pub const LEAVES_PER_DIR: u32 = 4096 / 8;
/// Directory frames: enough for every pfn below 64 GiB of RAM (2^24 frames).
pub const DIRS: usize = (1 << 24) / (RECORDS_PER_LEAF as usize * LEAVES_PER_DIR as usize);

const _: () = assert!(RECORDS_PER_LEAF == 256 && DIRS == 128);

/// A frame for the map could not be allocated (on-demand map), or the frame lies outside the
/// range a reserved map covers. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoFrame;

impl core::fmt::Display for NoFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no frame for the per-frame records")
    }
}

impl core::error::Error for NoFrame {}

/// Records of type `T`, one per frame, in frames of RAM. See the module documentation.
pub struct FrameMap<T: Record> {
    dirs: [Option<Pfn>; DIRS],
    /// Used records per directory frame (to free it when empty, on demand).
    used: [u32; DIRS],
    /// Reserved up front: frames are never freed before [`clear`](Self::clear), never
    /// allocated by a store.
    reserved: bool,
    _t: core::marker::PhantomData<T>,
}

impl<T: Record> Default for FrameMap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Record> FrameMap<T> {
    /// An empty map holding no frames.
    pub const fn new() -> Self {
        FrameMap { dirs: [None; DIRS], used: [0; DIRS], reserved: false, _t: core::marker::PhantomData }
    }

    fn split(pfn: Pfn) -> Option<(usize, u32, u32)> {
        let p = pfn.as_u32();
        let leaf = p / RECORDS_PER_LEAF;
        let d = (leaf / LEAVES_PER_DIR) as usize;
        (d < DIRS).then_some((d, leaf % LEAVES_PER_DIR, p % RECORDS_PER_LEAF))
    }

    /// Pointer to leaf slot `slot` of directory frame `dir` (leaf pfn, used records).
    fn dir_slot<P: PhysMem + ?Sized>(mem: &P, dir: Pfn, slot: u32) -> *mut [u32; 2] {
        mem.frame_ptr(dir).as_ptr().cast::<[u32; 2]>().wrapping_add(slot as usize)
    }

    fn record<P: PhysMem + ?Sized>(mem: &P, leaf: Pfn, index: u32) -> *mut [u32; 4] {
        mem.frame_ptr(leaf).as_ptr().cast::<[u32; 4]>().wrapping_add(index as usize)
    }

    /// The leaf frame a directory slot names (stored plus one, so that zero means none).
    fn leaf_of(slot: [u32; 2]) -> Option<Pfn> {
        slot[0].checked_sub(1).map(Pfn::new)
    }

    /// The words stored for frame `pfn` (`[0; 4]`: no record).
    fn words<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> [u32; 4] {
        let Some((d, s, i)) = Self::split(pfn) else { return [0; 4] };
        let Some(dir) = self.dirs[d] else { return [0; 4] };
        // SAFETY: the slot lies inside a directory frame this map allocated and owns.
        let Some(leaf) = Self::leaf_of(unsafe { Self::dir_slot(mem, dir, s).read() }) else { return [0; 4] };
        // SAFETY: the record lies inside a leaf frame this map allocated and owns.
        unsafe { Self::record(mem, leaf, i).read() }
    }

    /// The record of frame `pfn` ([`Record::EMPTY`] if it has none).
    pub fn get<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> T {
        match self.words(mem, pfn) {
            [0, 0, 0, 0] => T::EMPTY,
            w => T::from_words(w),
        }
    }

    /// Whether frame `pfn` has a record.
    pub fn contains<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> bool {
        self.words(mem, pfn) != [0; 4]
    }

    /// Sets the record of `pfn` ([`Record::EMPTY`] clears it). On demand, allocates its leaf
    /// (and directory frame) on first use and frees them when their last record is cleared.
    ///
    /// # Errors
    /// [`NoFrame`] when a leaf or directory frame cannot be allocated (on demand), or `pfn`
    /// lies outside the range reserved (reserved map); only when the record is not empty.
    /// Nothing changed.
    pub fn set<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, rec: T) -> Result<(), NoFrame> {
        let w = rec.to_words();
        let empty = w == [0; 4];
        let Some((d, s, i)) = Self::split(pfn) else {
            return if empty { Ok(()) } else { Err(NoFrame) };
        };
        let dir = match self.dirs[d] {
            Some(dir) => dir,
            None if empty => return Ok(()),
            None if self.reserved => return Err(NoFrame),
            None => {
                let dir = alloc_zeroed(mem).ok_or(NoFrame)?;
                self.dirs[d] = Some(dir);
                dir
            }
        };
        let slot = Self::dir_slot(mem, dir, s);
        // SAFETY: the slot lies inside a directory frame this map owns.
        let [stored, mut used] = unsafe { slot.read() };
        let leaf = match Self::leaf_of([stored, used]) {
            Some(leaf) => leaf,
            None if empty => return Ok(()),
            None => match (!self.reserved).then(|| alloc_zeroed(mem)).flatten() {
                Some(l) => l,
                None => {
                    self.release_dir_if_unused(mem, d);
                    return Err(NoFrame);
                }
            },
        };
        let r = Self::record(mem, leaf, i);
        // SAFETY: the record lies inside a leaf frame this map owns (a fresh leaf is zeroed:
        // every record empty).
        let was_used = unsafe { r.read() } != [0; 4];
        // SAFETY: as above.
        unsafe { r.write(w) };
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
        let mut stored = leaf.as_u32() + 1;
        if used == 0 && !self.reserved {
            mem.free_frame(leaf);
            stored = 0;
        }
        // SAFETY: as for the read of the slot.
        unsafe { slot.write([stored, used]) };
        self.release_dir_if_unused(mem, d);
        Ok(())
    }

    /// Changes the record of `pfn` with `f` (reading [`Record::EMPTY`] if it has none): one
    /// walk of the tree when the frame's leaf exists and the record stays empty or stays
    /// non-empty, otherwise as [`set`](Self::set). O(1).
    ///
    /// # Errors
    /// As [`set`](Self::set), when the record becomes non-empty and no leaf can hold it.
    /// Nothing changed.
    pub fn update<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, f: impl FnOnce(&mut T)) -> Result<(), NoFrame> {
        let leaf = Self::split(pfn).and_then(|(d, s, i)| {
            // SAFETY: the slot lies inside a directory frame this map allocated and owns.
            let slot = unsafe { Self::dir_slot(mem, self.dirs[d]?, s).read() };
            Some((Self::leaf_of(slot)?, i))
        });
        let Some((leaf, i)) = leaf else {
            let mut rec = T::EMPTY;
            f(&mut rec);
            return self.set(mem, pfn, rec);
        };
        let r = Self::record(mem, leaf, i);
        // SAFETY: the record lies inside a leaf frame this map owns.
        let old = unsafe { r.read() };
        let mut rec = if old == [0; 4] { T::EMPTY } else { T::from_words(old) };
        f(&mut rec);
        let new = rec.to_words();
        if (old == [0; 4]) != (new == [0; 4]) {
            // The frame gains or loses its record: the counts (and, on demand, the frames)
            // change with it.
            return self.set(mem, pfn, rec);
        }
        // SAFETY: as for the read.
        unsafe { r.write(new) };
        Ok(())
    }

    fn release_dir_if_unused<P: PhysMem + ?Sized>(&mut self, mem: &P, d: usize) {
        if self.used[d] == 0 && !self.reserved {
            if let Some(dir) = self.dirs[d].take() {
                mem.free_frame(dir);
            }
        }
    }

    /// Allocates every leaf and directory frame covering frames `[0, end)` and keeps them until
    /// [`clear`](Self::clear): from then on [`set`](Self::set) never allocates, and refuses a
    /// frame at or past `end`'s leaf. `end` is rounded up to a whole leaf (256 frames).
    ///
    /// # Errors
    /// [`NoFrame`] if `mem` cannot supply the frames, or the map already holds some; every
    /// frame taken is given back.
    pub fn reserve<P: PhysMem + ?Sized>(&mut self, mem: &P, end: Pfn) -> Result<(), NoFrame> {
        if self.dirs.iter().any(Option::is_some) {
            return Err(NoFrame);
        }
        let leaves = end.as_u32().div_ceil(RECORDS_PER_LEAF);
        if leaves as usize > DIRS * LEAVES_PER_DIR as usize {
            return Err(NoFrame);
        }
        self.reserved = true;
        for l in 0..leaves {
            let (d, s) = ((l / LEAVES_PER_DIR) as usize, l % LEAVES_PER_DIR);
            let dir = match self.dirs[d] {
                Some(dir) => dir,
                None => match alloc_zeroed(mem) {
                    Some(dir) => *self.dirs[d].insert(dir),
                    None => {
                        self.clear(mem);
                        return Err(NoFrame);
                    }
                },
            };
            let Some(leaf) = alloc_zeroed(mem) else {
                self.clear(mem);
                return Err(NoFrame);
            };
            // SAFETY: the slot lies inside a directory frame this map owns.
            unsafe { Self::dir_slot(mem, dir, s).write([leaf.as_u32() + 1, 0]) };
        }
        Ok(())
    }

    /// Frees every leaf and directory frame, forgetting all records; the map is empty and on
    /// demand again.
    pub fn clear<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        for d in 0..DIRS {
            if let Some(dir) = self.dirs[d].take() {
                for s in 0..LEAVES_PER_DIR {
                    // SAFETY: the slot lies inside a directory frame this map owns.
                    if let Some(leaf) = Self::leaf_of(unsafe { Self::dir_slot(mem, dir, s).read() }) {
                        mem.free_frame(leaf);
                    }
                }
                mem.free_frame(dir);
            }
            self.used[d] = 0;
        }
        self.reserved = false;
    }

    /// Calls `f` with every frame that has a record, and the record, in pfn order. O(frames
    /// covered by the map's leaves).
    pub fn for_each<P: PhysMem + ?Sized>(&self, mem: &P, mut f: impl FnMut(Pfn, T)) {
        for (pfn, rec) in self.iter(mem) {
            f(pfn, rec)
        }
    }

    /// Every frame that has a record, with the record, in pfn order (as
    /// [`for_each`](Self::for_each), as an iterator).
    pub fn iter<'a, P: PhysMem + ?Sized>(&'a self, mem: &'a P) -> Iter<'a, T, P> {
        Iter { map: self, mem, next: 0 }
    }

    /// Records held now.
    pub fn len(&self) -> usize {
        self.used.iter().map(|&u| u as usize).sum()
    }

    /// Whether no frame has a record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames the map holds (directory and leaf frames).
    pub fn frames<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        let mut n = 0;
        for dir in self.dirs.iter().flatten() {
            n += 1;
            for s in 0..LEAVES_PER_DIR {
                // SAFETY: the slot lies inside a directory frame this map owns.
                if Self::leaf_of(unsafe { Self::dir_slot(mem, *dir, s).read() }).is_some() {
                    n += 1;
                }
            }
        }
        n
    }
}

/// The iterator of [`FrameMap::iter`].
pub struct Iter<'a, T: Record, P: PhysMem + ?Sized> {
    map: &'a FrameMap<T>,
    mem: &'a P,
    /// The next pfn to look at (64-bit: the end is 2^24).
    next: u64,
}

impl<T: Record, P: PhysMem + ?Sized> Iterator for Iter<'_, T, P> {
    type Item = (Pfn, T);

    fn next(&mut self) -> Option<(Pfn, T)> {
        const END: u64 = DIRS as u64 * LEAVES_PER_DIR as u64 * RECORDS_PER_LEAF as u64;
        const PER_DIR: u64 = LEAVES_PER_DIR as u64 * RECORDS_PER_LEAF as u64;
        while self.next < END {
            let p = self.next as u32;
            let leaf_no = p / RECORDS_PER_LEAF;
            let d = (leaf_no / LEAVES_PER_DIR) as usize;
            let Some(dir) = self.map.dirs[d].filter(|_| self.map.used[d] != 0) else {
                self.next = (d as u64 + 1) * PER_DIR;
                continue;
            };
            // SAFETY: the slot lies inside a directory frame the map owns.
            let slot = unsafe { FrameMap::<T>::dir_slot(self.mem, dir, leaf_no % LEAVES_PER_DIR).read() };
            let Some(leaf) = FrameMap::<T>::leaf_of(slot).filter(|_| slot[1] != 0) else {
                self.next = (u64::from(leaf_no) + 1) * u64::from(RECORDS_PER_LEAF);
                continue;
            };
            self.next += 1;
            // SAFETY: the record lies inside a leaf frame the map owns.
            let w = unsafe { FrameMap::<T>::record(self.mem, leaf, p % RECORDS_PER_LEAF).read() };
            if w != [0; 4] {
                return Some((Pfn::new(p), T::from_words(w)));
            }
        }
        None
    }
}
