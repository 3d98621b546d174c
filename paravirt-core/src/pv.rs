//! The call-site layer: what `i386-mm` writes at every hook point.
//!
//! With the `paravirt` feature (the default) each function forwards to the backend, statically
//! dispatched. Without it, each hook function is empty and each entry write is a plain store,
//! exactly like Linux's stub block in `asm-i386/pgalloc.h`:
//!
//! ```c
//! #define paravirt_alloc_pt(pfn) do { } while (0)
//! ```
//!
//! Both versions are `#[inline(always)]`, so with the native backend the generated code of the
//! two builds is identical (the workspace's `asm-check` compares it).

use crate::{EntrySlot, Pfn};

cfg_if::cfg_if! {
    if #[cfg(feature = "paravirt")] {
        use crate::PvMmuOps;

        /// Whether hook calls reach the backend in this build.
        pub const ENABLED: bool = true;

        /// `paravirt_alloc_pt(pfn)`.
        #[inline(always)]
        pub fn paravirt_alloc_pt<B: PvMmuOps + ?Sized>(b: &B, pfn: Pfn) {
            b.alloc_pt(pfn)
        }
        /// `paravirt_alloc_pd(pfn)`.
        #[inline(always)]
        pub fn paravirt_alloc_pd<B: PvMmuOps + ?Sized>(b: &B, pfn: Pfn) {
            b.alloc_pd(pfn)
        }
        /// `paravirt_alloc_pd_clone(pfn, clonepfn, start, count)`.
        #[inline(always)]
        pub fn paravirt_alloc_pd_clone<B: PvMmuOps + ?Sized>(
            b: &B, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32,
        ) {
            b.alloc_pd_clone(pfn, clone_pfn, start, count)
        }
        /// `paravirt_release_pt(pfn)`.
        #[inline(always)]
        pub fn paravirt_release_pt<B: PvMmuOps + ?Sized>(b: &B, pfn: Pfn) {
            b.release_pt(pfn)
        }
        /// `paravirt_release_pd(pfn)`.
        #[inline(always)]
        pub fn paravirt_release_pd<B: PvMmuOps + ?Sized>(b: &B, pfn: Pfn) {
            b.release_pd(pfn)
        }
        /// `set_pte(ptep, pte)`.
        ///
        /// # Safety
        /// `slot` must describe a valid, aligned entry of a live page table.
        #[inline(always)]
        pub unsafe fn set_pte<B: PvMmuOps + ?Sized>(b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { b.set_pte(slot, val) }
        }
        /// `set_pte_at(mm, addr, ptep, pte)`.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pte_at<B: PvMmuOps + ?Sized>(
            b: &B, mm: Pfn, addr: u32, slot: EntrySlot, val: u64,
        ) {
            // SAFETY: forwarded caller contract.
            unsafe { b.set_pte_at(mm, addr, slot, val) }
        }
        /// `set_pte_atomic(ptep, pte)`.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pte_atomic<B: PvMmuOps + ?Sized>(b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { b.set_pte_atomic(slot, val) }
        }
        /// `set_pte_present(mm, addr, ptep, pte)`.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pte_present<B: PvMmuOps + ?Sized>(
            b: &B, mm: Pfn, addr: u32, slot: EntrySlot, val: u64,
        ) {
            // SAFETY: forwarded caller contract.
            unsafe { b.set_pte_present(mm, addr, slot, val) }
        }
        /// `set_pmd(pmdp, pmd)`.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pmd<B: PvMmuOps + ?Sized>(b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { b.set_pmd(slot, val) }
        }
        /// `set_pud(pudp, pud)` (PAE `set_pgd`).
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pud<B: PvMmuOps + ?Sized>(b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { b.set_pud(slot, val) }
        }
        /// `pte_clear(mm, addr, ptep)`.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn pte_clear<B: PvMmuOps + ?Sized>(b: &B, mm: Pfn, addr: u32, slot: EntrySlot) {
            // SAFETY: forwarded caller contract.
            unsafe { b.pte_clear(mm, addr, slot) }
        }
        /// `pmd_clear(pmdp)`.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn pmd_clear<B: PvMmuOps + ?Sized>(b: &B, slot: EntrySlot) {
            // SAFETY: forwarded caller contract.
            unsafe { b.pmd_clear(slot) }
        }
        /// `arch_exit_mmap(mm)`.
        #[inline(always)]
        pub fn exit_mmap<B: PvMmuOps + ?Sized>(b: &B, mm: Pfn) {
            b.exit_mmap(mm)
        }
        /// `write_cr3(x)`: returns the value the CPU must load.
        #[inline(always)]
        pub fn write_cr3<B: PvMmuOps + ?Sized>(b: &B, cr3: u32) -> u32 {
            b.write_cr3(cr3)
        }
        /// `read_cr3()`: the guest's view of the CPU's CR3 value `hw`.
        #[inline(always)]
        pub fn read_cr3<B: PvMmuOps + ?Sized>(b: &B, hw: u32) -> u32 {
            b.read_cr3(hw)
        }
        /// `__flush_tlb()`.
        #[inline(always)]
        pub fn flush_tlb_user<B: PvMmuOps + ?Sized>(b: &B) {
            b.flush_tlb_user()
        }
        /// `__flush_tlb_global()`.
        #[inline(always)]
        pub fn flush_tlb_kernel<B: PvMmuOps + ?Sized>(b: &B) {
            b.flush_tlb_kernel()
        }
        /// `__flush_tlb_single(addr)`.
        #[inline(always)]
        pub fn flush_tlb_single<B: PvMmuOps + ?Sized>(b: &B, addr: u32) {
            b.flush_tlb_single(addr)
        }
        /// Whether large (PSE) pages may be used for the kernel's linear map.
        #[inline(always)]
        pub fn allows_large_pages<B: PvMmuOps + ?Sized>(b: &B) -> bool {
            b.allows_large_pages()
        }
    } else {
        use crate::native;

        /// Whether hook calls reach the backend in this build.
        pub const ENABLED: bool = false;

        /// `paravirt_alloc_pt(pfn)`: `do { } while (0)`.
        #[inline(always)]
        pub fn paravirt_alloc_pt<B: ?Sized>(_b: &B, _pfn: Pfn) {}
        /// `paravirt_alloc_pd(pfn)`: `do { } while (0)`.
        #[inline(always)]
        pub fn paravirt_alloc_pd<B: ?Sized>(_b: &B, _pfn: Pfn) {}
        /// `paravirt_alloc_pd_clone(...)`: `do { } while (0)`.
        #[inline(always)]
        pub fn paravirt_alloc_pd_clone<B: ?Sized>(
            _b: &B, _pfn: Pfn, _clone_pfn: Pfn, _start: u32, _count: u32,
        ) {
        }
        /// `paravirt_release_pt(pfn)`: `do { } while (0)`.
        #[inline(always)]
        pub fn paravirt_release_pt<B: ?Sized>(_b: &B, _pfn: Pfn) {}
        /// `paravirt_release_pd(pfn)`: `do { } while (0)`.
        #[inline(always)]
        pub fn paravirt_release_pd<B: ?Sized>(_b: &B, _pfn: Pfn) {}
        /// `set_pte`: a plain store.
        ///
        /// # Safety
        /// `slot` must describe a valid, aligned entry of a live page table.
        #[inline(always)]
        pub unsafe fn set_pte<B: ?Sized>(_b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { native::set_entry(slot, val) }
        }
        /// `set_pte_at`: a plain store.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pte_at<B: ?Sized>(_b: &B, _mm: Pfn, _addr: u32, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { native::set_entry(slot, val) }
        }
        /// `set_pte_atomic`: a plain store.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pte_atomic<B: ?Sized>(_b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { native::set_entry(slot, val) }
        }
        /// `set_pte_present`: a plain store.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pte_present<B: ?Sized>(
            _b: &B, _mm: Pfn, _addr: u32, slot: EntrySlot, val: u64,
        ) {
            // SAFETY: forwarded caller contract.
            unsafe { native::set_entry(slot, val) }
        }
        /// `set_pmd`: a plain store.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pmd<B: ?Sized>(_b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { native::set_entry(slot, val) }
        }
        /// `set_pud`: a plain store.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn set_pud<B: ?Sized>(_b: &B, slot: EntrySlot, val: u64) {
            // SAFETY: forwarded caller contract.
            unsafe { native::set_entry(slot, val) }
        }
        /// `pte_clear`: a plain store of zero.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn pte_clear<B: ?Sized>(_b: &B, _mm: Pfn, _addr: u32, slot: EntrySlot) {
            // SAFETY: forwarded caller contract.
            unsafe { native::clear_entry(slot) }
        }
        /// `pmd_clear`: a plain store of zero.
        ///
        /// # Safety
        /// As for [`set_pte`].
        #[inline(always)]
        pub unsafe fn pmd_clear<B: ?Sized>(_b: &B, slot: EntrySlot) {
            // SAFETY: forwarded caller contract.
            unsafe { native::clear_entry(slot) }
        }
        /// `arch_exit_mmap(mm)`: nothing.
        #[inline(always)]
        pub fn exit_mmap<B: ?Sized>(_b: &B, _mm: Pfn) {}
        /// `write_cr3`: the CPU loads what the kernel asked for.
        #[inline(always)]
        pub fn write_cr3<B: ?Sized>(_b: &B, cr3: u32) -> u32 {
            cr3
        }
        /// `read_cr3`: the CPU's value.
        #[inline(always)]
        pub fn read_cr3<B: ?Sized>(_b: &B, hw: u32) -> u32 {
            hw
        }
        /// `__flush_tlb()`: nothing beyond the hardware flush.
        #[inline(always)]
        pub fn flush_tlb_user<B: ?Sized>(_b: &B) {}
        /// `__flush_tlb_global()`: nothing beyond the hardware flush.
        #[inline(always)]
        pub fn flush_tlb_kernel<B: ?Sized>(_b: &B) {}
        /// `__flush_tlb_single(addr)`: nothing beyond the hardware flush.
        #[inline(always)]
        pub fn flush_tlb_single<B: ?Sized>(_b: &B, _addr: u32) {}
        /// Large pages are always allowed on bare metal.
        #[inline(always)]
        pub fn allows_large_pages<B: ?Sized>(_b: &B) -> bool {
            true
        }
    }
}
