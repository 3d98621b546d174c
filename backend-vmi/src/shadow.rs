//! Shadow tables: the tracking table (typed page → shadow frame and back, one record per frame
//! of RAM), the pool of shadow frames, and the entry arithmetic of mirroring (typed entries
//! only, one store per entry).
//!
//! Every typed page has exactly one shadow frame. A shadow L1 holds the guest's PTEs as they
//! are; a shadow L2 holds the guest's directory entries with the address of each linked page
//! table replaced by the address of that table's shadow (flags kept), and large-page (PSE)
//! or non-present entries as they are. So the CPU, given the shadow root, walks shadow tables
//! only and reaches the same frames with the same permissions.

use crate::types::PageType;
use i386_paging::{read_entry, slot, FrameMap, NoFrame, PhysMem, Record};
use paravirt_core::{native, Entry, PagingMode, Pfn, Pmd, PteFlags, Pud};

/// A typed page and its shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tracked {
    /// The guest page.
    pub(crate) pfn: Pfn,
    /// Its VMI type.
    pub(crate) ty: PageType,
    /// Its shadow frame.
    pub(crate) shadow: Pfn,
    /// Shadow entries pointing at `shadow`: from shadow L2s, and from the per-vCPU shadow
    /// PDPT. A table may be released only when this is zero.
    pub(crate) links: u32,
    /// PAE pmd: the PDPT slot (0..4) a `set_pud` last linked it at, so `verify` walks it at
    /// its real addresses.
    pub(crate) pdpt_slot: u8,
}

/// What the backend keeps per frame, in a [`FrameMap`] (16 bytes, four words): whether the
/// frame is a typed guest page (its type, PDPT slot, shadow frame and links), and whether it
/// is the shadow of a typed page (the guest page: the reverse map). A frame can be both only
/// when a caller of the ROM calls types a frame the backend uses as a shadow.
///
/// Words: `[1 | type << 8 | pdpt_slot << 16, shadow pfn, links, shadowed pfn + 1]`; the first
/// three are zero for a frame that is not typed, the last for a frame that is no shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameRecord {
    /// The frame as a typed guest page (`pfn` is not stored: it is the frame's own).
    typed: Option<Tracked>,
    /// The guest page whose shadow this frame is.
    shadow_of: Option<Pfn>,
}

impl Record for FrameRecord {
    const EMPTY: Self = FrameRecord { typed: None, shadow_of: None };

    fn to_words(self) -> [u32; 4] {
        let [w0, w1, w2] = match self.typed {
            Some(t) => [1 | u32::from(t.ty.bits()) << 8 | u32::from(t.pdpt_slot) << 16, t.shadow.as_u32(), t.links],
            None => [0; 3],
        };
        [w0, w1, w2, self.shadow_of.map_or(0, |p| p.as_u32() + 1)]
    }

    fn from_words(w: [u32; 4]) -> Self {
        let typed = (w[0] & 1 != 0).then(|| Tracked {
            pfn: Pfn::new(0),
            ty: PageType::from_bits_retain((w[0] >> 8) as u8),
            shadow: Pfn::new(w[1]),
            links: w[2],
            pdpt_slot: (w[0] >> 16) as u8,
        });
        FrameRecord { typed, shadow_of: w[3].checked_sub(1).map(Pfn::new) }
    }
}

/// The typed pages: one [`FrameRecord`] per frame in a [`FrameMap`] reserved over every frame
/// of RAM when the backend is built, so every lookup, by guest frame or by shadow frame, is
/// O(1) and no hook ever allocates. Records are copies: a change is a read, a change and a
/// write ([`update`](Self::update)).
pub(crate) struct Tracker {
    map: FrameMap<FrameRecord>,
    /// Typed pages (the map's records count shadows too).
    typed: usize,
}

impl Tracker {
    pub(crate) const fn new() -> Self {
        Tracker { map: FrameMap::new(), typed: 0 }
    }

    /// Reserves the records of frames `[0, end)`.
    ///
    /// # Errors
    /// [`NoFrame`] when `mem` cannot supply the map's frames (every frame taken is given back).
    pub(crate) fn reserve<P: PhysMem + ?Sized>(&mut self, mem: &P, end: Pfn) -> Result<(), NoFrame> {
        self.map.reserve(mem, end)
    }

    /// Gives the map's frames back (every record forgotten).
    pub(crate) fn clear<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        self.map.clear(mem);
        self.typed = 0;
    }

    /// Frames the map holds.
    pub(crate) fn frames<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        self.map.frames(mem)
    }

    pub(crate) fn len(&self) -> usize {
        self.typed
    }

    /// The record of `pfn`, if typed. O(1).
    pub(crate) fn get<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> Option<Tracked> {
        self.map.get(mem, pfn).typed.map(|t| Tracked { pfn, ..t })
    }

    /// The record whose shadow is `shadow`. O(1): the shadow frame's record names its page.
    pub(crate) fn by_shadow<P: PhysMem + ?Sized>(&self, mem: &P, shadow: Pfn) -> Option<Tracked> {
        let pfn = self.map.get(mem, shadow).shadow_of?;
        self.get(mem, pfn).filter(|t| t.shadow == shadow)
    }

    /// Changes the record of `pfn` with `f`, if typed (`f` must not change `pfn` or
    /// `shadow`). Returns whether it was typed. O(1).
    pub(crate) fn update<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn, f: impl FnOnce(&mut Tracked)) -> bool {
        let mut typed = false;
        // A typed frame has a record already: the change is made in place, allocates nothing
        // and cannot fail.
        let _ = self.map.update(mem, pfn, |rec| {
            if let Some(t) = rec.typed.as_mut() {
                t.pfn = pfn;
                f(t);
                typed = true;
            }
        });
        typed
    }

    /// As [`update`](Self::update), for the page whose shadow is `shadow`.
    pub(crate) fn update_by_shadow<P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        shadow: Pfn,
        f: impl FnOnce(&mut Tracked),
    ) -> bool {
        match self.by_shadow(mem, shadow) {
            Some(t) => self.update(mem, t.pfn, f),
            None => false,
        }
    }

    /// Adds the record of an untyped page `t.pfn` and the reverse record of its shadow; false
    /// (nothing changed) when the page is typed already or a frame lies outside the map.
    pub(crate) fn insert<P: PhysMem + ?Sized>(&mut self, mem: &P, t: Tracked) -> bool {
        let mut rec = self.map.get(mem, t.pfn);
        let mut srec = self.map.get(mem, t.shadow);
        if rec.typed.is_some() || t.pfn == t.shadow {
            return false;
        }
        rec.typed = Some(t);
        srec.shadow_of = Some(t.pfn);
        if self.map.set(mem, t.shadow, srec).is_err() {
            return false;
        }
        if self.map.set(mem, t.pfn, rec).is_err() {
            srec.shadow_of = None;
            // Restores the record just stored, which had its frame: cannot fail.
            let _ = self.map.set(mem, t.shadow, srec);
            return false;
        }
        self.typed += 1;
        true
    }

    /// Removes the record of `pfn` and its shadow's reverse record.
    pub(crate) fn remove<P: PhysMem + ?Sized>(&mut self, mem: &P, pfn: Pfn) -> Option<Tracked> {
        let t = self.get(mem, pfn)?;
        // Both frames have records: clearing them allocates nothing and cannot fail.
        let mut srec = self.map.get(mem, t.shadow);
        srec.shadow_of = None;
        let _ = self.map.set(mem, t.shadow, srec);
        let mut rec = self.map.get(mem, pfn);
        rec.typed = None;
        let _ = self.map.set(mem, pfn, rec);
        self.typed -= 1;
        Some(t)
    }

    /// Every record, by guest frame. O(frames of RAM): for statistics and cross-checks, never
    /// in a hook.
    pub(crate) fn iter<'a, P: PhysMem + ?Sized>(&'a self, mem: &'a P) -> impl Iterator<Item = Tracked> + 'a {
        self.map.iter(mem).filter_map(|(pfn, r)| r.typed.map(|t| Tracked { pfn, ..t }))
    }
}

/// Frames reserved from physical memory when the backend is built, for the shadows. Shadows
/// come from here, so the guest's allocator (and its fault injection) is never called from
/// inside a hook, as a hypervisor's memory is not the guest's.
///
/// The free frames form a list through the frames themselves: the first word of a free frame
/// holds the next free frame's pfn shifted left by one (so that, read as a page-table entry,
/// it is not present). Taking and giving back are O(1); a frame is zeroed when taken.
pub(crate) struct Pool {
    head: Option<Pfn>,
    nfree: usize,
    total: usize,
}

impl Pool {
    pub(crate) const fn new() -> Self {
        Pool { head: None, nfree: 0, total: 0 }
    }

    /// Adds a frame reserved from physical memory.
    pub(crate) fn add<P: PhysMem + ?Sized>(&mut self, mem: &P, f: Pfn) {
        self.give(mem, f);
        self.total += 1;
    }

    /// Removes a free frame for good (teardown).
    pub(crate) fn drain_one<P: PhysMem + ?Sized>(&mut self, mem: &P) -> Option<Pfn> {
        let f = self.take(mem)?;
        self.total -= 1;
        Some(f)
    }

    /// Takes a frame for a shadow (its first word still holds the list's link: the caller
    /// zeroes it).
    pub(crate) fn take<P: PhysMem + ?Sized>(&mut self, mem: &P) -> Option<Pfn> {
        let f = self.head?;
        self.nfree -= 1;
        // SAFETY: `f` is a free pool frame: the backend owns it alone and nothing else reads
        // or writes it.
        let link = unsafe { mem.frame_ptr(f).as_ptr().cast::<u32>().read() };
        self.head = (self.nfree > 0).then(|| Pfn::new(link >> 1));
        Some(f)
    }

    /// Gives a frame back (a shadow no entry links any more, or a frame just reserved).
    pub(crate) fn give<P: PhysMem + ?Sized>(&mut self, mem: &P, f: Pfn) {
        let link = self.head.map_or(0, |h| h.as_u32() << 1);
        // SAFETY: `f` comes back to the pool: no shadow uses it and no shadow entry or CR3
        // links it, so the backend owns it alone; the frame is page-aligned, so its first word
        // is aligned.
        unsafe { mem.frame_ptr(f).as_ptr().cast::<u32>().write(link) };
        self.head = Some(f);
        self.nfree += 1;
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn free(&self) -> usize {
        self.nfree
    }
}

/// Entries in one table page (the PAE PDPT aside): 1024 in two-level mode, 512 in PAE.
#[inline]
pub(crate) const fn entries<M: PagingMode>() -> u32 {
    M::PTRS_PER_PTE
}

/// Reads entry `index` of the table in frame `table` as an entry of level `E`.
///
/// # Panics
/// If `table` is not a frame of `mem` or `index` is past the end of a table.
#[inline]
pub(crate) fn load<M: PagingMode, E: Entry, P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32) -> E {
    read_entry::<M, E, P>(mem, table, index)
}

/// Stores `val` into entry `index` of the table in frame `table` with [`native::set`]: one
/// store of the entry's width (64 bits in PAE), so the CPU walking that table never sees a
/// half-written entry.
///
/// # Panics
/// If `table` is not a frame of `mem` or `index` is past the end of a table.
#[inline]
pub(crate) fn store<M: PagingMode, E: Entry, P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32, val: E) {
    // SAFETY: the slot is used for this one store only, while `mem` (and so the frame) is
    // borrowed.
    let s = unsafe { slot::<M, E, P>(mem, table, index) };
    native::set(s, val)
}

/// Clears entry `index` of the table in frame `table` with [`native::clear`] (one store).
///
/// # Panics
/// As for [`store`].
#[inline]
pub(crate) fn clear<M: PagingMode, E: Entry, P: PhysMem + ?Sized>(mem: &P, table: Pfn, index: u32) {
    // SAFETY: as in `store`.
    let s = unsafe { slot::<M, E, P>(mem, table, index) };
    native::clear(s)
}

/// The table a directory entry links: `Some` for a present entry that is not a large page.
#[inline]
pub(crate) fn linked(e: Pmd) -> Option<Pfn> {
    (e.is_present() && !e.is_large()).then(|| e.pfn())
}

/// A directory entry rewritten to link `shadow` instead, with the guest entry's flags.
#[inline]
pub(crate) fn relink(e: Pmd, shadow: Pfn) -> Pmd {
    Pmd::new(shadow, e.flags())
}

/// A PDPT entry rewritten to link `shadow` instead, with the guest entry's flags.
#[inline]
pub(crate) fn relink_pud(e: Pud, shadow: Pfn) -> Pud {
    Pud::new(shadow, e.flags())
}

/// The typed-entry methods the level-generic code needs, forwarding to the inherent methods of
/// [`Pte`](paravirt_core::Pte), [`Pmd`] and [`Pud`].
pub(crate) trait Decode: Entry {
    /// `is_present`.
    fn present(self) -> bool;
    /// `flags`.
    fn flag_bits(self) -> PteFlags;
    /// `union`.
    fn plus(self, f: PteFlags) -> Self;
}

macro_rules! decode {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            #[inline]
            fn present(self) -> bool {
                self.is_present()
            }
            #[inline]
            fn flag_bits(self) -> PteFlags {
                self.flags()
            }
            #[inline]
            fn plus(self, f: PteFlags) -> Self {
                self.union(f)
            }
        }
    )*};
}
decode!(paravirt_core::Pte, Pmd, Pud);
