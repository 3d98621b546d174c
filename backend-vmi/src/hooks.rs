//! The paravirt hooks: `arch/i386/kernel/vmi.c`'s `vmi_allocate_pt`, `vmi_allocate_pd`,
//! `vmi_allocate_pd_clone`, `vmi_release_pt`, `vmi_release_pd`, and the entry writes and CR3
//! loads a shadowing hypervisor must see.

use crate::backend::Vmi;
use crate::shadow::entries;
use crate::stats::{Check, HookKind};
use crate::types::PageType;
use crate::violation::Violation;
use i386_mm::{entry_present, PagingMode, Pfn, PhysMem};
use paravirt_core::{native, EntrySlot, PvMmuOps};

/// What an entry hook writes.
#[derive(Clone, Copy)]
enum Write {
    /// A value (`set_*`).
    Set(u64),
    /// Zero (`*_clear`, low half first in PAE).
    Clear,
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// An entry write into a page table (`want_l1`) or a directory: performed on the guest
    /// natively, checked, and mirrored into the table's shadow.
    ///
    /// # Safety
    /// `slot` must describe a valid, aligned entry (the `PvMmuOps` contract).
    unsafe fn entry_hook(&self, hook: HookKind, slot: EntrySlot, w: Write, want_l1: bool) {
        self.counters.call(hook);
        let _ = self.locked(|st, pend| {
            // SAFETY: the caller's contract: `slot` is a valid entry.
            unsafe {
                match w {
                    Write::Set(v) => native::set_entry(slot, v),
                    Write::Clear => native::clear_entry(slot),
                }
            }
            self.counters.check(Check::WriteTyped);
            let Some(ty) = st.pages.get(slot.table).map(|t| t.ty) else {
                return pend.push(Violation::WriteUntyped { table: slot.table, index: slot.index, hook: hook.name() });
            };
            self.counters.check(Check::WriteLevel);
            if ty.is_l1() != want_l1 {
                pend.push(Violation::WrongLevel {
                    table: slot.table,
                    index: slot.index,
                    hook: hook.name(),
                    current: ty,
                });
            }
            if slot.index < entries::<M>() {
                let g = match w {
                    Write::Set(v) => v,
                    Write::Clear => 0,
                };
                self.mirror(st, pend, slot.table, slot.index, g);
            }
        });
    }
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> PvMmuOps for Vmi<M, P, MAX> {
    /// `vmi_allocate_pt`: types the page L1 (`PT | ZEROED`, `| PAE`) and shadows it.
    fn alloc_pt(&self, pfn: Pfn) {
        self.counters.call(HookKind::AllocPt);
        let _ = self.locked(|st, pend| self.allocate(st, pend, pfn, PageType::l1::<M>(), (Pfn(0), 0, 0)));
    }

    /// `vmi_allocate_pd`: types the page L2 (`PD | ZEROED`, `| PAE`) and shadows it:
    /// `swapper_pg_dir` in two-level mode, a pmd in PAE.
    fn alloc_pd(&self, pfn: Pfn) {
        self.counters.call(HookKind::AllocPd);
        let _ = self.locked(|st, pend| self.allocate(st, pend, pfn, PageType::l2::<M>(), (Pfn(0), 0, 0)));
    }

    /// `vmi_allocate_pd_clone`: types the page `L2 | CLONE` after checking the source is an
    /// L2 of the same mode, and copies entries `[start, start + count)` of the source's
    /// shadow into the new shadow.
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        self.counters.call(HookKind::AllocPdClone);
        let _ =
            self.locked(|st, pend| self.allocate(st, pend, pfn, PageType::l2_clone::<M>(), (clone_pfn, start, count)));
    }

    /// `vmi_release_pt`: back to `NORMAL`, shadow freed.
    fn release_pt(&self, pfn: Pfn) {
        self.counters.call(HookKind::ReleasePt);
        let _ = self.locked(|st, pend| self.release(st, pend, pfn, PageType::l1::<M>()));
    }

    /// `vmi_release_pd`: back to `NORMAL`, shadow freed.
    fn release_pd(&self, pfn: Pfn) {
        self.counters.call(HookKind::ReleasePd);
        let _ = self.locked(|st, pend| self.release(st, pend, pfn, PageType::l2::<M>()));
    }

    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::SetPte, slot, Write::Set(val), true) }
    }

    unsafe fn set_pte_at(&self, _mm: Pfn, _addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::SetPteAt, slot, Write::Set(val), true) }
    }

    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::SetPteAtomic, slot, Write::Set(val), true) }
    }

    unsafe fn set_pte_present(&self, _mm: Pfn, _addr: u32, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::SetPtePresent, slot, Write::Set(val), true) }
    }

    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::SetPmd, slot, Write::Set(val), false) }
    }

    /// A PAE PDPT entry: written natively; the PDPT must be untyped, the entry must hold only
    /// allowed bits and link an announced pmd; if it is the loaded PDPT, the per-vCPU shadow
    /// PDPT is patched. In two-level mode there is no PDPT: a violation.
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        self.counters.call(HookKind::SetPud);
        let _ = self.locked(|st, pend| {
            // SAFETY: the caller's contract: `slot` is a valid entry.
            unsafe { native::set_entry(slot, val) };
            if !M::PAE {
                self.counters.check(Check::WriteLevel);
                let current = st.pages.get(slot.table).map_or(PageType::NORMAL, |t| t.ty);
                return pend.push(Violation::WrongLevel {
                    table: slot.table,
                    index: slot.index,
                    hook: HookKind::SetPud.name(),
                    current,
                });
            }
            self.counters.check(Check::PdptUntyped);
            if let Some(t) = st.pages.get(slot.table) {
                return pend.push(Violation::PdptTyped { pfn: slot.table, flags: t.ty });
            }
            if self.check_pdpt_entry(st, pend, slot.table, slot.index, val) && entry_present(val) {
                if let Some(pmd) = st.pages.get_mut(Pfn::from_phys(val & M::ADDR_MASK)) {
                    pmd.pdpt_slot = (slot.index % 4) as u8;
                }
            }
            if let Some(l) = st.loaded {
                if l.root == slot.table && (l.base..l.base + 4).contains(&slot.index) {
                    self.pdpt_set(st, (slot.index - l.base) as usize, val);
                }
            }
        });
    }

    unsafe fn pte_clear(&self, _mm: Pfn, _addr: u32, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::PteClear, slot, Write::Clear, true) }
    }

    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        // SAFETY: forwarded caller contract.
        unsafe { self.entry_hook(HookKind::PmdClear, slot, Write::Clear, false) }
    }

    /// The address space rooted at `mm` is being torn down. If it is still the loaded root
    /// (only `KernelMm::shutdown` does this, after loading a boot root behind the backend's
    /// back), the backend forgets it: nothing it shadows is in CR3 any more.
    fn exit_mmap(&self, mm: Pfn) {
        self.counters.call(HookKind::ExitMmap);
        let _ = self.locked(|st, _| {
            if st.loaded.is_some_and(|l| l.root == mm) {
                self.unload(st);
            }
        });
    }

    /// Returns the shadow root for the CPU (two-level: the L2's shadow; PAE: the per-vCPU
    /// shadow PDPT, rebuilt from the guest PDPT). An unknown root is a violation, and the CPU
    /// then gets the guest root itself.
    fn write_cr3(&self, cr3: u32) -> u32 {
        self.counters.call(HookKind::WriteCr3);
        self.locked(|st, pend| self.load_root(st, pend, cr3)).0
    }

    /// Maps a shadow root back to the guest root (other values pass through).
    fn read_cr3(&self, hw: u32) -> u32 {
        self.counters.call(HookKind::ReadCr3);
        self.guest_cr3(&self.state.lock(), hw)
    }

    fn flush_tlb_user(&self) {
        self.counters.call(HookKind::FlushTlbUser);
    }

    fn flush_tlb_kernel(&self) {
        self.counters.call(HookKind::FlushTlbKernel);
    }

    fn flush_tlb_single(&self, _addr: u32) {
        self.counters.call(HookKind::FlushTlbSingle);
    }

    /// VMI shadows large (PSE) directory entries as they are.
    fn allows_large_pages(&self) -> bool {
        true
    }
}
