//! Where a page-table entry lives, and the native (bare-metal) way to store into it.

use crate::Pfn;

/// The location of one page-table entry, as handed to the entry-write hooks.
///
/// Linux passes a bare `pte_t *`; a shadowing or pinning backend then recovers the table with
/// `__pa(ptep) >> PAGE_SHIFT`. Here the caller passes the table frame and index alongside the
/// pointer, so a backend needs no reverse mapping and the native path simply ignores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySlot {
    /// Kernel-visible pointer to the entry (4 bytes, or 8 bytes when `wide`).
    pub ptr: *mut u32,
    /// Frame of the table holding the entry.
    pub table: Pfn,
    /// Index of the entry inside its table.
    pub index: u32,
    /// `true` for a PAE (64-bit) entry, `false` for a two-level (32-bit) entry.
    pub wide: bool,
}

// SAFETY: an `EntrySlot` is only an address; every access through it happens in `unsafe`
// functions whose callers guarantee the entry is valid for the access.
unsafe impl Send for EntrySlot {}
// SAFETY: as above, sharing the address itself is harmless.
unsafe impl Sync for EntrySlot {}

impl EntrySlot {
    /// Physical address of the entry (what a hypervisor's `mmu_update` calls `ptr`).
    #[inline(always)]
    pub fn phys(&self) -> u64 {
        self.table.phys() + self.index as u64 * if self.wide { 8 } else { 4 }
    }
}

/// The native entry accessors: what bare metal does, and what every hook defaults to.
pub mod native {
    use super::EntrySlot;

    /// Stores `val` into the entry: one 32-bit store for a two-level entry; for PAE the high
    /// half first, then the low half (which holds the present bit), so a hardware walker never
    /// sees a present entry with a stale high half (Linux's PAE `native_set_pte`).
    ///
    /// # Safety
    /// `slot.ptr` must be valid for writes of the entry's width and suitably aligned.
    #[inline(always)]
    pub unsafe fn set_entry(slot: EntrySlot, val: u64) {
        if slot.wide {
            // SAFETY: the caller guarantees 8 writable, aligned bytes at `ptr`.
            unsafe {
                slot.ptr.add(1).write_volatile((val >> 32) as u32);
                slot.ptr.write_volatile(val as u32);
            }
        } else {
            // SAFETY: the caller guarantees 4 writable, aligned bytes at `ptr`.
            unsafe { slot.ptr.write_volatile(val as u32) }
        }
    }

    /// Clears the entry: for PAE the low half (present bit) first, then the high half
    /// (Linux's PAE `native_pte_clear`).
    ///
    /// # Safety
    /// As for [`set_entry`].
    #[inline(always)]
    pub unsafe fn clear_entry(slot: EntrySlot) {
        if slot.wide {
            // SAFETY: the caller guarantees 8 writable, aligned bytes at `ptr`.
            unsafe {
                slot.ptr.write_volatile(0);
                slot.ptr.add(1).write_volatile(0);
            }
        } else {
            // SAFETY: the caller guarantees 4 writable, aligned bytes at `ptr`.
            unsafe { slot.ptr.write_volatile(0) }
        }
    }

    /// Reads the entry (low half first for PAE).
    ///
    /// # Safety
    /// `slot.ptr` must be valid for reads of the entry's width and suitably aligned.
    #[inline(always)]
    pub unsafe fn read_entry(slot: EntrySlot) -> u64 {
        if slot.wide {
            // SAFETY: the caller guarantees 8 readable, aligned bytes at `ptr`.
            unsafe {
                let lo = slot.ptr.read_volatile() as u64;
                let hi = slot.ptr.add(1).read_volatile() as u64;
                (hi << 32) | lo
            }
        } else {
            // SAFETY: the caller guarantees 4 readable, aligned bytes at `ptr`.
            unsafe { slot.ptr.read_volatile() as u64 }
        }
    }
}
