//! Shadow tables: the tracking table (typed page → shadow frame), the pool of shadow frames,
//! and the entry arithmetic of mirroring.
//!
//! Every typed page has exactly one shadow frame. A shadow L1 holds the guest's PTEs as they
//! are; a shadow L2 holds the guest's directory entries with the address of each linked page
//! table replaced by the address of that table's shadow (flags kept), and large-page (PSE)
//! or non-present entries as they are. So the CPU, given the shadow root, walks shadow tables
//! only and reaches the same frames with the same permissions.

use crate::backend::{State, Vmi};
use crate::stats::Check;
use crate::types::PageType;
use crate::violation::{Pending, Violation};
use i386_mm::{entry_flags, entry_present, PagingMode, Pfn, PhysMem, PteFlags};
use paravirt_core::native;

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
    const EMPTY: Tracked = Tracked { pfn: Pfn(0), ty: PageType::NORMAL, shadow: Pfn(0), links: 0, pdpt_slot: 0 };
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
        Pool { free: [Pfn(0); MAX], nfree: 0, total: 0 }
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
    4096 / M::ENTRY_SIZE
}

/// Reads entry `i` of the table in frame `table`.
#[inline]
pub(crate) fn read<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, table: Pfn, i: u32) -> u64 {
    i386_mm::read_entry(mem, table, i, M::PAE)
}

/// Writes entry `i` of the table in frame `table` (for PAE: high half first when setting,
/// low half first when clearing, as the native accessors do).
///
/// # Safety
/// `table` must be a frame of RAM the backend owns (a shadow or the shadow PDPT), and
/// `i < entries::<M>()`.
#[inline]
pub(crate) unsafe fn write<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, table: Pfn, i: u32, v: u64) {
    let slot = i386_mm::slot(mem, table, i, M::PAE);
    // SAFETY: the caller guarantees the entry lies in a frame we own.
    unsafe {
        if v == 0 {
            native::clear_entry(slot)
        } else {
            native::set_entry(slot, v)
        }
    }
}

/// The table a directory entry links: `Some` for a present entry that is not a large page.
#[inline]
pub(crate) fn linked<M: PagingMode>(e: u64) -> Option<Pfn> {
    if entry_present(e) && !entry_flags(e).contains(PteFlags::PSE) {
        Some(Pfn::from_phys(e & M::ADDR_MASK))
    } else {
        None
    }
}

/// A directory entry rewritten to link `shadow` instead, with the guest's flags.
#[inline]
pub(crate) fn relink<M: PagingMode>(e: u64, shadow: Pfn) -> u64 {
    shadow.phys() | (e & !M::ADDR_MASK)
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// Sets the shadow of entry `index` of typed table `table` from guest value `g`: as is in
    /// an L1; in an L2, a link to a page table becomes a link to its shadow (a link to
    /// anything else is a violation and leaves the shadow entry empty). Keeps `links` right.
    pub(crate) fn mirror(&self, st: &mut State<MAX>, pend: &mut Pending, table: Pfn, index: u32, g: u64) {
        let Some(t) = st.pages.get(table).copied() else { return };
        let old = read::<M, P>(&self.mem, t.shadow, index);
        let new = if t.ty.is_l2() {
            match linked::<M>(g) {
                None => g,
                Some(child) => {
                    self.counters.check(Check::ChildAnnounced);
                    match st.pages.get_mut(child) {
                        Some(ch) if ch.ty.is_l1() => {
                            ch.links += 1;
                            relink::<M>(g, ch.shadow)
                        }
                        other => {
                            let child_type = other.map_or(PageType::NORMAL, |ch| ch.ty);
                            pend.push(Violation::UnannouncedChild { table, index, child, child_type });
                            0
                        }
                    }
                }
            }
        } else {
            g
        };
        if t.ty.is_l2() {
            if let Some(ch) = linked::<M>(old).and_then(|cs| st.pages.by_shadow_mut(cs)) {
                ch.links = ch.links.saturating_sub(1);
            }
        }
        // SAFETY: `t.shadow` is our shadow frame; callers pass `index < entries`.
        unsafe { write::<M, P>(&self.mem, t.shadow, index, new) };
        st.mirrored += 1;
    }
}
