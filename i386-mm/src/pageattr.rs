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

use crate::cpu::Cpu;
use crate::entry::{entry_flags, entry_present, leaf_flags_allowed, PteFlags, PAGE_KERNEL};
use crate::error::MmError;
use crate::kernel::{CpaTable, KernelMm, KernelRange};
use crate::mode::{PagingMode, PAGE_OFFSET};
use crate::phys::{alloc_zeroed, lowmem_va, slot, PhysMem};
use paravirt_core::{native, pv, EntrySlot, Pfn, PvMmuOps};

/// Where `lookup_address` found a kernel address.
#[derive(Clone, Copy, Debug)]
pub struct Kpte {
    /// The entry mapping the address: a PTE, or the directory entry of a large page.
    pub slot: EntrySlot,
    /// Whether `slot` is a large-page directory entry (`pte_huge`).
    pub large: bool,
}

impl<M: PagingMode, B: PvMmuOps, P: PhysMem, C: Cpu> KernelMm<M, B, P, C> {
    /// `lookup_address(address)` in `swapper_pg_dir`.
    pub fn lookup_address(&self, va: u32) -> Option<Kpte> {
        let pmd = self.kernel_pmd_slot(va)?;
        // SAFETY: `pmd` is an entry of the kernel's directory.
        let e = unsafe { native::read_entry(pmd) };
        if !entry_present(e) {
            return None;
        }
        if entry_flags(e).contains(PteFlags::PSE) {
            return Some(Kpte { slot: pmd, large: true });
        }
        let pt = Pfn::from_phys(e & M::ADDR_MASK);
        Some(Kpte { slot: slot(&self.mem, pt, M::pte_index(va), M::PAE), large: false })
    }

    /// `split_large_page(address, prot, ref_prot)`: allocates a page table, announces it with
    /// `alloc_pt`, and fills every entry with `set_pte`: the page at `va` gets `prot`, the rest
    /// of the large page keeps `ref_prot`. The caller links it.
    pub fn split_large_page(&self, va: u32, prot: PteFlags, ref_prot: PteFlags) -> Result<Pfn, MmError> {
        let base = alloc_zeroed(&self.mem).ok_or(MmError::OutOfMemory)?;
        pv::paravirt_alloc_pt(&self.backend, base);
        let address = (va - PAGE_OFFSET) as u64;
        let mut addr = address & M::large_page_mask() as u64;
        for i in 0..M::PTRS_PER_PTE {
            let p = if addr == address { prot } else { ref_prot };
            let s = slot(&self.mem, base, i, M::PAE);
            // SAFETY: `s` is an entry of the table just announced.
            unsafe { pv::set_pte(&self.backend, s, addr | p.bits()) };
            addr += 4096;
        }
        Ok(base)
    }

    /// `set_pmd_pte(kpte, address, pte)`: writes the kernel directory entry in
    /// `swapper_pg_dir`, then (two-level) in every pgd on `pgd_list` under `pgd_lock`.
    fn set_pmd_pte(&self, kpmd: EntrySlot, va: u32, val: u64) {
        // SAFETY: `kpmd` is an entry of the kernel's directory.
        unsafe { pv::set_pmd(&self.backend, kpmd, val) };
        self.sync_kernel_pgd(M::pgd_index(va));
    }

    /// `revert_page(kpte_page, address)`: restores the large-page mapping of `va` everywhere.
    pub fn revert_page(&self, va: u32) {
        let Some(kpmd) = self.kernel_pmd_slot(va) else { return };
        let pa = ((va & M::large_page_mask()) - PAGE_OFFSET) as u64;
        self.set_pmd_pte(kpmd, va, pa | (PAGE_KERNEL | PteFlags::PSE).bits());
    }

    /// `change_page_attr(page, 1, prot)` for the linear-map page of `pfn` (`__change_page_attr`).
    ///
    /// A protection other than `PAGE_KERNEL` splits a covering large page (announced with
    /// `alloc_pt`) or rewrites the PTE (`set_pte_atomic`); `PAGE_KERNEL` restores the PTE, and
    /// when no changed page remains in a split table, the large page is reverted and the table
    /// released (`release_pt`) and queued for [`global_flush_tlb`](Self::global_flush_tlb).
    /// Call `global_flush_tlb` afterwards, as in Linux.
    pub fn change_page_attr(&self, pfn: Pfn, prot: PteFlags) -> Result<(), MmError> {
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
        let kpte_page;
        if prot != PAGE_KERNEL {
            if !kpte.large {
                kpte_page = kpte.slot.table;
                let slot_free = st.cpa.iter().any(|c| c.is_none() || c.is_some_and(|c| c.pfn == kpte_page));
                if !slot_free {
                    return Err(MmError::TooManySplits);
                }
                // SAFETY: `kpte.slot` is a PTE of the kernel's linear map.
                unsafe { pv::set_pte_atomic(&self.backend, kpte.slot, pfn.phys() | prot.bits()) };
                cpa_entry(&mut st, kpte_page, false).changed += 1;
            } else {
                if !st.cpa.iter().any(Option::is_none) {
                    return Err(MmError::TooManySplits);
                }
                let split = self.split_large_page(va, prot, PAGE_KERNEL)?;
                self.set_pmd_pte(kpte.slot, va, split.phys() | PAGE_KERNEL.bits());
                kpte_page = split;
                cpa_entry(&mut st, kpte_page, true).changed += 1;
            }
        } else {
            if kpte.large {
                return Err(MmError::AttrNotChanged(pfn));
            }
            kpte_page = kpte.slot.table;
            let Some(entry) = st.cpa.iter_mut().flatten().find(|c| c.pfn == kpte_page && c.changed > 0) else {
                return Err(MmError::AttrNotChanged(pfn));
            };
            entry.changed -= 1;
            // SAFETY: `kpte.slot` is a PTE of the kernel's linear map.
            unsafe { pv::set_pte_atomic(&self.backend, kpte.slot, pfn.phys() | PAGE_KERNEL.bits()) };
        }
        let idx = st.cpa.iter().position(|c| c.is_some_and(|c| c.pfn == kpte_page));
        if let Some(i) = idx {
            let c = st.cpa[i].unwrap_or(CpaTable { pfn: kpte_page, changed: 0, split: false });
            if c.changed == 0 {
                st.cpa[i] = None;
                if c.split && self.pse {
                    self.revert_page(va);
                    pv::paravirt_release_pt(&self.backend, kpte_page);
                    let d = st.deferred.iter_mut().find(|d| d.is_none()).expect("df_list has a slot per cpa table");
                    *d = Some(kpte_page);
                }
            }
        }
        drop(st);
        self.flush_tlb_single(va);
        Ok(())
    }

    /// `global_flush_tlb`: flushes every TLB entry, then frees the page tables `revert_page`
    /// released (`df_list`).
    pub fn global_flush_tlb(&self) {
        let mut st = self.kernel_lock.lock();
        self.flush_tlb_kernel();
        for d in st.deferred.iter_mut() {
            if let Some(p) = d.take() {
                self.mem.free_frame(p);
            }
        }
    }

    /// Page tables of the kernel range currently split by `change_page_attr`.
    pub fn split_tables(&self) -> usize {
        self.kernel_lock.lock().cpa.iter().flatten().filter(|c| c.split).count()
    }

    /// Page tables released by `revert_page` still waiting for `global_flush_tlb`.
    pub fn deferred_frees(&self) -> usize {
        self.kernel_lock.lock().deferred.iter().flatten().count()
    }
}

fn cpa_entry(st: &mut KernelRange, pfn: Pfn, split: bool) -> &mut CpaTable {
    let i = match st.cpa.iter().position(|c| c.is_some_and(|c| c.pfn == pfn)) {
        Some(i) => i,
        None => {
            let i = st.cpa.iter().position(Option::is_none).expect("caller checked for a free slot");
            st.cpa[i] = Some(CpaTable { pfn, changed: 0, split });
            i
        }
    };
    st.cpa[i].as_mut().expect("present")
}
