//! Shadow tables: the tracking table (typed page → shadow frame), the pool of shadow frames,
//! and the entry arithmetic of mirroring (typed entries only, one store per entry).
//!
//! Every typed page has exactly one shadow frame. A shadow L1 holds the guest's PTEs as they
//! are; a shadow L2 holds the guest's directory entries with the address of each linked page
//! table replaced by the address of that table's shadow (flags kept), and large-page (PSE)
//! or non-present entries as they are. So the CPU, given the shadow root, walks shadow tables
//! only and reaches the same frames with the same permissions.

use crate::types::PageType;
use i386_paging::{read_entry, slot, PhysMem};
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

impl Tracked {
    const EMPTY: Tracked =
        Tracked { pfn: Pfn::new(0), ty: PageType::NORMAL, shadow: Pfn::new(0), links: 0, pdpt_slot: 0 };
}

/// The typed pages, sorted by guest frame (binary search on every entry write). Fixed
/// capacity, no heap.
pub(crate) struct Tracker<const MAX: usize> {
    items: [Tracked; MAX],
    len: usize,
}

impl<const MAX: usize> Tracker<MAX> {
    pub(crate) const fn new() -> Self {
        Tracker { items: [Tracked::EMPTY; MAX], len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len == MAX
    }

    fn find(&self, pfn: Pfn) -> Result<usize, usize> {
        self.items[..self.len].binary_search_by_key(&pfn, |t| t.pfn)
    }

    /// The record of `pfn`, if typed.
    pub(crate) fn get(&self, pfn: Pfn) -> Option<&Tracked> {
        self.find(pfn).ok().map(|i| &self.items[i])
    }

    /// The record of `pfn`, if typed, mutably.
    pub(crate) fn get_mut(&mut self, pfn: Pfn) -> Option<&mut Tracked> {
        self.find(pfn).ok().map(|i| &mut self.items[i])
    }

    /// The record whose shadow is `shadow` (a linear search: only on directory writes).
    pub(crate) fn by_shadow(&self, shadow: Pfn) -> Option<&Tracked> {
        self.iter().find(|t| t.shadow == shadow)
    }

    /// As [`by_shadow`](Self::by_shadow), mutably.
    pub(crate) fn by_shadow_mut(&mut self, shadow: Pfn) -> Option<&mut Tracked> {
        self.items[..self.len].iter_mut().find(|t| t.shadow == shadow)
    }

    /// Adds a record for an untyped page; false when full.
    pub(crate) fn insert(&mut self, t: Tracked) -> bool {
        if self.is_full() {
            return false;
        }
        let Err(at) = self.find(t.pfn) else { return false };
        self.items.copy_within(at..self.len, at + 1);
        self.items[at] = t;
        self.len += 1;
        true
    }

    /// Removes the record of `pfn`.
    pub(crate) fn remove(&mut self, pfn: Pfn) -> Option<Tracked> {
        let at = self.find(pfn).ok()?;
        let t = self.items[at];
        self.items.copy_within(at + 1..self.len, at);
        self.len -= 1;
        Some(t)
    }

    /// Every record, by guest frame.
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, Tracked> {
        self.items[..self.len].iter()
    }
}

/// Frames reserved from physical memory when the backend is built, one per page it can
/// track. Shadows come from here, so the guest's allocator (and its fault injection) is
/// never called from inside a hook, as a hypervisor's memory is not the guest's.
pub(crate) struct Pool<const MAX: usize> {
    free: [Pfn; MAX],
    nfree: usize,
    total: usize,
}

impl<const MAX: usize> Pool<MAX> {
    pub(crate) const fn new() -> Self {
        Pool { free: [Pfn::new(0); MAX], nfree: 0, total: 0 }
    }

    /// Adds a frame reserved from physical memory.
    pub(crate) fn add(&mut self, f: Pfn) {
        self.free[self.nfree] = f;
        self.nfree += 1;
        self.total += 1;
    }

    /// Removes a free frame for good (teardown).
    pub(crate) fn drain_one(&mut self) -> Option<Pfn> {
        let f = self.take()?;
        self.total -= 1;
        Some(f)
    }

    /// Takes a frame for a shadow.
    pub(crate) fn take(&mut self) -> Option<Pfn> {
        self.nfree = self.nfree.checked_sub(1)?;
        Some(self.free[self.nfree])
    }

    /// Gives a shadow frame back.
    pub(crate) fn give(&mut self, f: Pfn) {
        self.free[self.nfree] = f;
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
