//! Changing the protection of kernel pages: `arch/i386/mm/pageattr.c`.
//!
//! A large page covering the target is split into a page table (`split_large_page`, announced
//! with `alloc_pt` before any entry is written); when the last changed page in a split table
//! returns to `PAGE_KERNEL`, `revert_page` restores the large page and the table is released
//! with `release_pt`, then freed by [`global_flush_tlb`](KernelMm::global_flush_tlb).
//!
//! Order at revert: the seed calls `release_pt` before `revert_page` unlinks the table; this
//! crate unlinks first (as later kernels do), then releases, then queues the page on the
//! deferred-free list. Either way the frame never reaches the allocator before its release.
//!
//! Each page's protection is tracked on its own: a page counts as changed while its PTE holds
//! anything but `PAGE_KERNEL`, and a split table is reverted only when none of its pages is.

use crate::error::MmError;
use crate::flags::leaf_flags_allowed;
use crate::kernel::KernelMm;
use crate::memmap::{Meta, DEFERRED, EMPTY, NIL, SPLIT};
use i386_paging::{alloc_zeroed, lowmem_va, Cpu, PhysMem};
use paravirt_core::{
    PagingMode, Pfn, PhysAddr, Pmd, PmdSlot, Pte, PteFlags, PteSlot, PvMmuOps, PAGE_KERNEL, PAGE_OFFSET,
};

/// Where `lookup_address` found a kernel address.
#[derive(Clone, Copy, Debug)]
pub enum Kpte {
    /// A 4 KiB mapping: its PTE.
    Pte(PteSlot),
    /// A large-page mapping: its directory entry (`pte_huge`).
    Large(PmdSlot),
}

/// The TLB flush `change_page_attr` leaves to its caller (Linux: "call `global_flush_tlb()`
/// afterwards"), as a value that must be used, like `x86_64`'s `MapperFlushAll`.
#[must_use = "the change is not visible on every CPU, and reverted tables are not freed, until global_flush_tlb runs: call flush(), or ignore() if a later flush covers it"]
#[derive(Debug, PartialEq, Eq)]
pub struct CpaFlush(());

impl CpaFlush {
    /// Runs [`KernelMm::global_flush_tlb`].
    pub fn flush<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu>(self, k: &KernelMm<M, B, P, C>) {
        k.global_flush_tlb();
    }

    /// Leaves the flush to a later [`KernelMm::global_flush_tlb`] (batching several changes).
    pub fn ignore(self) {}
}

/// Whether a kernel PTE holds a protection other than `PAGE_KERNEL` (accessed and dirty bits,
/// which the CPU sets, do not count).
fn pte_changed(e: Pte) -> bool {
    let ad = PteFlags::ACCESSED | PteFlags::DIRTY;
    e.flags() - ad != PAGE_KERNEL - ad
}

impl<M: PagingMode, B: PvMmuOps<M>, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// `lookup_address(address)` in `swapper_pg_dir`: the entry mapping kernel virtual address
    /// `va`, if any.
    pub fn lookup_address(&self, va: u32) -> Option<Kpte> {
        let pmd = self.kernel_pmd_slot(va)?;
        let e = pmd.read();
        if !e.is_present() {
            return None;
        }
        if e.is_large() {
            return Some(Kpte::Large(pmd));
        }
        Some(Kpte::Pte(self.pte_slot(e.pfn(), M::pte_index(va))))
    }

    /// `split_large_page(address, prot, ref_prot)`: allocates a page table, announces it with
    /// `alloc_pt`, and fills every entry with `set_pte`: the page at kernel virtual address
    /// `va` gets `prot`, the rest of the large page keeps `ref_prot`. The caller links it.
    ///
    /// # Errors
    /// [`MmError::OutOfMemory`], with nothing changed.
    ///
    /// # Safety
    /// `va` must lie in the linear map (`PAGE_OFFSET` up), and the caller must link or release
    /// the returned table.
    pub unsafe fn split_large_page(&self, va: u32, prot: PteFlags, ref_prot: PteFlags) -> Result<Pfn, MmError> {
        self.split(va, prot, ref_prot)
    }

    fn split(&self, va: u32, prot: PteFlags, ref_prot: PteFlags) -> Result<Pfn, MmError> {
        let base = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        self.pv().alloc_pt(base);
        let address = (va - PAGE_OFFSET) as u64;
        let mut addr = address & M::large_page_mask() as u64;
        for i in 0..M::PTRS_PER_PTE {
            let p = if addr == address { prot } else { ref_prot };
            self.pv().set_pte(self.pte_slot(base, i), Pte::new(Pfn::containing(PhysAddr::new(addr)), p));
            addr += 4096;
        }
        Ok(base)
    }

    /// `set_pmd_pte(kpte, address, pte)`: writes the kernel directory entry in
    /// `swapper_pg_dir`, then (unless the PAE kernel pmd is shared) in every pgd on `pgd_list`
    /// under `pgd_lock`.
    fn set_pmd_pte(&self, kpmd: PmdSlot, va: u32, val: Pmd) {
        self.pv().set_pmd(kpmd, val);
        self.sync_kernel_pmd(va);
    }

    /// `revert_page(kpte_page, address)`: restores the large-page mapping of kernel virtual
    /// address `va` everywhere.
    ///
    /// # Safety
    /// The caller must then release and free the page table the entry pointed at (it is
    /// unlinked from every pgd here), and `va` must lie in the linear map.
    pub unsafe fn revert_page(&self, va: u32) {
        self.revert(va)
    }

    fn revert(&self, va: u32) {
        let Some(kpmd) = self.kernel_pmd_slot(va) else { return };
        let pa = ((va & M::large_page_mask()) - PAGE_OFFSET) as u64;
        self.set_pmd_pte(kpmd, va, Pmd::large(PhysAddr::new(pa), PAGE_KERNEL));
    }

    /// `change_page_attr(page, 1, prot)` for the linear-map page of `pfn` (`__change_page_attr`).
    ///
    /// A protection other than `PAGE_KERNEL` splits a covering large page (announced with
    /// `alloc_pt`) or rewrites the PTE (`set_pte_atomic`, one store); `PAGE_KERNEL` restores
    /// the PTE of a page that was changed, and when no changed page remains in a split table,
    /// the large page is reverted and the table released (`release_pt`) and queued for
    /// [`global_flush_tlb`](Self::global_flush_tlb). The returned [`CpaFlush`] must be used.
    ///
    /// # Errors
    /// [`MmError::PfnOutOfRange`] (not low memory), [`MmError::BadFlags`],
    /// [`MmError::NotMapped`], [`MmError::OutOfMemory`] (a split table, or the frame recording
    /// how many pages of a table are changed, could not be allocated), and
    /// [`MmError::AttrNotChanged`] when restoring `PAGE_KERNEL` on a page whose protection was
    /// never changed; nothing changed in every case.
    ///
    pub fn change_page_attr(&self, pfn: Pfn, prot: PteFlags) -> Result<CpaFlush, MmError> {
        if pfn >= self.lowmem_end {
            return Err(MmError::PfnOutOfRange(pfn));
        }
        let allowed = leaf_flags_allowed::<M>(false);
        if !allowed.contains(prot) || !prot.contains(PteFlags::PRESENT) {
            return Err(MmError::BadFlags(prot.bits()));
        }
        let va = lowmem_va(pfn);
        let mut st = self.kernel_lock.lock();
        let kpte = self.lookup_address(va).ok_or(MmError::NotMapped(va))?;
        let mem = &self.mem;
        if prot != PAGE_KERNEL {
            match kpte {
                Kpte::Pte(pte) => {
                    if !pte_changed(pte.read()) {
                        // One more changed page in this table; recorded first, so running out
                        // of memory for the record changes nothing.
                        let t = pte.table();
                        let m = st.cpa.get(mem, t);
                        st.cpa.set(mem, t, Meta { count: m.count + 1, ..m })?;
                    }
                    self.pv().set_pte_atomic(pte, Pte::new(pfn, prot));
                }
                Kpte::Large(pmd) => {
                    let split = self.split(va, prot, PAGE_KERNEL)?;
                    let rec = Meta { count: 1, flags: SPLIT, ..EMPTY };
                    if let Err(e) = st.cpa.set(mem, split, rec) {
                        // Never linked: release and free it, nothing changed.
                        self.pv().release_pt(split);
                        self.mem.free_frame(split);
                        return Err(e);
                    }
                    st.split += 1;
                    self.set_pmd_pte(pmd, va, Pmd::new(split, PAGE_KERNEL));
                }
            }
        } else {
            let Kpte::Pte(pte) = kpte else {
                return Err(MmError::AttrNotChanged(pfn));
            };
            if !pte_changed(pte.read()) {
                return Err(MmError::AttrNotChanged(pfn));
            }
            self.pv().set_pte_atomic(pte, Pte::new(pfn, PAGE_KERNEL));
            let t = pte.table();
            let m = st.cpa.get(mem, t);
            if m.count == 1 {
                if m.flags & SPLIT != 0 {
                    st.split -= 1;
                }
                if m.flags & SPLIT != 0 && self.pse {
                    // The last changed page of a split table: restore the large page
                    // everywhere, release the table, and queue it on `df_list` for
                    // `global_flush_tlb` (the record's link, no allocation).
                    self.revert(va);
                    self.pv().release_pt(t);
                    let head = st.deferred;
                    st.cpa.update(mem, t, Meta { next: head, prev: NIL, count: 0, flags: DEFERRED });
                    st.deferred = t.as_u32();
                    st.deferred_len += 1;
                } else {
                    st.cpa.update(mem, t, EMPTY);
                }
            } else if m.count > 1 {
                st.cpa.update(mem, t, Meta { count: m.count - 1, ..m });
            }
        }
        drop(st);
        self.flush_tlb_single(va);
        self.flush_tlb_others(va);
        Ok(CpaFlush(()))
    }

    /// `global_flush_tlb`: flushes every TLB entry on every CPU (`flush_tlb_others`), then
    /// frees the page tables `revert_page` released (`df_list`).
    pub fn global_flush_tlb(&self) {
        let mut st = self.kernel_lock.lock();
        self.flush_tlb_kernel();
        self.flush_tlb_others(paravirt_core::TLB_FLUSH_ALL);
        let mut cur = core::mem::replace(&mut st.deferred, NIL);
        st.deferred_len = 0;
        while cur != NIL {
            let t = Pfn::new(cur);
            cur = st.cpa.get(&self.mem, t).next;
            st.cpa.update(&self.mem, t, EMPTY);
            self.mem.free_frame(t);
        }
    }

    /// Page tables of the kernel range currently split by `change_page_attr`.
    pub fn split_tables(&self) -> usize {
        self.kernel_lock.lock().split
    }

    /// Page tables released by `revert_page` still waiting for `global_flush_tlb`.
    pub fn deferred_frees(&self) -> usize {
        self.kernel_lock.lock().deferred_len
    }
}
