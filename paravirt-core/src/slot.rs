//! Where a page-table entry lives, and the native (bare-metal) way to store into it.

use crate::{Entry, Pfn, PhysAddr, Pmd, Pte, Pud};
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

/// The location of one entry of level `E` ([`Pte`], [`Pmd`] or [`Pud`]) of a live page table,
/// as handed to the entry-write hooks.
///
/// Linux passes a bare `pte_t *`; a shadowing or pinning backend then recovers the table with
/// `__pa(ptep) >> PAGE_SHIFT`. A slot carries the table frame and index alongside the pointer,
/// so a backend needs no reverse mapping and the native path simply ignores them.
///
/// A slot can only be made with the `unsafe` [`Slot::new`], whose caller promises that the
/// pointer stays valid: this is what lets the hooks, and [`native`] stores, be safe functions.
pub struct Slot<E: Entry> {
    ptr: NonNull<u32>,
    table: Pfn,
    index: u32,
    wide: bool,
    _entry: PhantomData<E>,
}

/// A slot of a last-level entry (`pte_t *`).
pub type PteSlot = Slot<Pte>;
/// A slot of a directory entry (`pmd_t *`).
pub type PmdSlot = Slot<Pmd>;
/// A slot of a PAE top-level entry (`pud_t *`).
pub type PudSlot = Slot<Pud>;

impl<E: Entry> Clone for Slot<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E: Entry> Copy for Slot<E> {}

impl<E: Entry> PartialEq for Slot<E> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr && self.table == other.table && self.index == other.index && self.wide == other.wide
    }
}
impl<E: Entry> Eq for Slot<E> {}

impl<E: Entry> fmt::Debug for Slot<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", E::C_NAME, self.table, self.index)
    }
}

// SAFETY: a slot is an address whose validity `Slot::new`'s caller guaranteed for every thread
// that uses it; entry stores are single volatile (or atomic) accesses, as on hardware.
unsafe impl<E: Entry> Send for Slot<E> {}
// SAFETY: as above.
unsafe impl<E: Entry> Sync for Slot<E> {}

impl<E: Entry> Slot<E> {
    /// The slot of entry `index` of the table in frame `table`, reached through `ptr`.
    ///
    /// # Safety
    /// For as long as this slot or any copy of it is used, `ptr` must be valid for volatile
    /// reads and writes of the entry's width (8 bytes when `wide`, else 4), aligned to that
    /// width, and must be entry `index` of the page table in frame `table`; nothing else may
    /// hold a Rust reference to those bytes.
    #[inline(always)]
    pub const unsafe fn new(ptr: NonNull<u32>, table: Pfn, index: u32, wide: bool) -> Self {
        Slot { ptr, table, index, wide, _entry: PhantomData }
    }

    /// The frame of the table holding the entry.
    #[inline(always)]
    pub const fn table(&self) -> Pfn {
        self.table
    }

    /// The index of the entry inside its table.
    #[inline(always)]
    pub const fn index(&self) -> u32 {
        self.index
    }

    /// `true` for a PAE (64-bit) entry, `false` for a two-level (32-bit) entry.
    #[inline(always)]
    pub const fn wide(&self) -> bool {
        self.wide
    }

    /// The table and index, without the pointer (what recorders and reports keep).
    #[inline(always)]
    pub const fn id(&self) -> EntryRef {
        EntryRef { table: self.table, index: self.index }
    }

    /// Physical address of the entry (what a hypervisor's `mmu_update` calls `ptr`).
    #[inline(always)]
    pub const fn phys(&self) -> PhysAddr {
        PhysAddr::new(self.table.phys().as_u64() + self.index as u64 * if self.wide { 8 } else { 4 })
    }

    /// The current value of the entry (one volatile load per half; see [`native::read`]).
    #[inline(always)]
    pub fn read(&self) -> E {
        native::read(*self)
    }

    /// The kernel-visible pointer to the entry.
    #[inline(always)]
    pub const fn as_ptr(&self) -> *mut u32 {
        self.ptr.as_ptr()
    }
}

/// An entry named by its table and index (a [`Slot`] without the pointer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EntryRef {
    /// The table's frame.
    pub table: Pfn,
    /// The entry's index in it.
    pub index: u32,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.table, self.index)
    }
}

/// The native entry accessors: what bare metal does, and what every hook defaults to.
///
/// A PAE entry is written with one 64-bit store (Linux's `set_64bit`, `cmpxchg8b` on i386),
/// never as two halves: a present→present change written half at a time is visible to the
/// hardware walker as a third value that is neither the old nor the new entry (FreeBSD
/// r342769). A two-level entry is one 32-bit store.
pub mod native {
    use super::Slot;
    use crate::Entry;
    use core::sync::atomic::{AtomicU64, Ordering};

    #[cfg(feature = "store-log")]
    pub use super::observe::{set_store_observer, StoreObserver};

    /// Stores `val` into the entry: one store of the entry's width.
    #[inline(always)]
    pub fn set<E: Entry>(slot: Slot<E>, val: E) {
        store(slot.ptr.as_ptr(), slot.wide, val.raw());
    }

    /// Clears the entry: one store of zero of the entry's width.
    #[inline(always)]
    pub fn clear<E: Entry>(slot: Slot<E>) {
        store(slot.ptr.as_ptr(), slot.wide, 0);
    }

    /// Reads the entry: one load of the entry's width.
    #[inline(always)]
    pub fn read<E: Entry>(slot: Slot<E>) -> E {
        let p = slot.ptr.as_ptr();
        let raw = if slot.wide {
            // SAFETY: `Slot::new`'s caller guaranteed 8 readable bytes, 8-aligned, at `p`,
            // referenced by nothing else; the hardware walker reads them with one access too.
            unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.load(Ordering::Relaxed)
        } else {
            // SAFETY: `Slot::new`'s caller guaranteed 4 readable, aligned bytes at `p`.
            unsafe { p.read_volatile() as u64 }
        };
        E::from_raw(raw)
    }

    /// One store of `raw` at `p`, 8 bytes when `wide`, else 4. `p` comes from a [`Slot`],
    /// whose maker guaranteed it valid, aligned and reference-free.
    #[inline(always)]
    fn store(p: *mut u32, wide: bool, raw: u64) {
        #[cfg(feature = "store-log")]
        super::observe::before_store(p as usize, wide, raw);
        #[cfg(all(loom, feature = "loom-bug-pae-halves"))]
        if wide {
            // SAFETY: as below; the deliberate bug writes the two halves separately.
            unsafe {
                p.write_volatile(raw as u32);
                // Between the halves, loom runs the other threads (as a hardware walker may).
                loom::thread::yield_now();
                p.add(1).write_volatile((raw >> 32) as u32);
            }
            return;
        }
        if wide {
            // SAFETY: `Slot::new`'s caller guaranteed 8 writable bytes, 8-aligned, at `p`,
            // referenced by nothing else.
            unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(raw, Ordering::Relaxed);
        } else {
            // SAFETY: `Slot::new`'s caller guaranteed 4 writable, aligned bytes at `p`.
            unsafe { p.write_volatile(raw as u32) }
        }
    }
}

/// A store log for tests: every native entry store is reported, with its address, width and
/// value, before it happens. Built only with the `store-log` feature (the test kit turns it
/// on), so kernels and the zero-cost comparison never contain it.
#[cfg(feature = "store-log")]
mod observe {
    use core::sync::atomic::{AtomicPtr, Ordering};

    /// Receives `(address, wide, value)` for every native entry store.
    pub type StoreObserver = fn(usize, bool, u64);

    static OBSERVER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

    /// Installs `f` as the observer of every native entry store (or removes it with `None`).
    pub fn set_store_observer(f: Option<StoreObserver>) {
        OBSERVER.store(f.map_or(core::ptr::null_mut(), |f| f as *mut ()), Ordering::SeqCst);
    }

    pub(super) fn before_store(addr: usize, wide: bool, raw: u64) {
        let f = OBSERVER.load(Ordering::SeqCst);
        if !f.is_null() {
            // SAFETY: only `set_store_observer` writes `OBSERVER`, always from a `StoreObserver`.
            let f: StoreObserver = unsafe { core::mem::transmute::<*mut (), StoreObserver>(f) };
            f(addr, wide, raw);
        }
    }
}
