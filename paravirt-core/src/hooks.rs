//! The hook list: written once, here, like Linux's `struct pv_mmu_ops`.
//!
//! [`for_each_hook!`] hands the list to a generator macro. Everything that enumerates the hooks
//! is generated from it: the [`PvMmuOps`](crate::PvMmuOps) trait and its native defaults, the
//! forwarding impls, the call-site layer [`Pv`](crate::pv::Pv), the recorded call
//! [`Hook`](crate::Hook) and its kind [`HookKind`](crate::HookKind), the
//! [`Recorder`](crate::Recorder), the gating adapter [`Gated`](crate::Gated) and the run-time
//! table [`ParavirtOps`](crate::ParavirtOps).
//!
//! Each entry is `Variant => fn name(&self, args...) -> ret { native default }`, with its docs
//! and aliases above it. The defaults are the bare-metal behaviour; where a default calls
//! another hook, the docs say so, so a backend author knows what one override catches.

/// Calls `$gen!` with `[extra tokens]` followed by the list of paravirt MMU hooks.
macro_rules! for_each_hook {
    ($gen:ident $($extra:tt)*) => {
        $gen! {
            [$($extra)*]
            /// `pfn` is becoming a last-level page table (a PTE page): zeroed, not yet linked.
            ///
            /// Linux: `paravirt_alloc_pt` (2.6.21), later `paravirt_alloc_pte`.
            #[doc(alias = "paravirt_alloc_pt")]
            #[doc(alias = "alloc_pte")]
            #[doc(alias = "paravirt_alloc_pte")]
            AllocPt => fn alloc_pt(&self, pfn: Pfn) {
                let _ = pfn;
            }

            /// `pfn` is becoming a page directory: the two-level `swapper_pg_dir` at boot, or a
            /// PAE pmd; zeroed (or, for the kernel pmd, filled) and not yet linked.
            ///
            /// Linux: `paravirt_alloc_pd`, later `paravirt_alloc_pmd`.
            #[doc(alias = "paravirt_alloc_pd")]
            #[doc(alias = "alloc_pmd")]
            #[doc(alias = "paravirt_alloc_pmd")]
            AllocPd => fn alloc_pd(&self, pfn: Pfn) {
                let _ = pfn;
            }

            /// `pfn` is becoming a two-level page directory whose entries
            /// `[start, start + count)` were just copied from `clone_pfn` (always
            /// `swapper_pg_dir`); the rest of it is zero. Called under `pgd_lock`, so a shadow
            /// can be cloned from the same snapshot.
            ///
            /// Linux: `paravirt_alloc_pd_clone`, later `paravirt_alloc_pmd_clone`.
            #[doc(alias = "paravirt_alloc_pd_clone")]
            #[doc(alias = "alloc_pmd_clone")]
            #[doc(alias = "paravirt_alloc_pmd_clone")]
            AllocPdClone => fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
                let _ = (pfn, clone_pfn, start, count);
            }

            /// The PTE page `pfn`, already unlinked, is about to be freed.
            ///
            /// Linux: `paravirt_release_pt`, later `paravirt_release_pte`.
            #[doc(alias = "paravirt_release_pt")]
            #[doc(alias = "release_pte")]
            #[doc(alias = "paravirt_release_pte")]
            ReleasePt => fn release_pt(&self, pfn: Pfn) {
                let _ = pfn;
            }

            /// The directory `pfn` (two-level pgd, or PAE pmd), already unlinked and off
            /// `pgd_list`, is about to be freed.
            ///
            /// Linux: `paravirt_release_pd`, later `paravirt_release_pmd`.
            #[doc(alias = "paravirt_release_pd")]
            #[doc(alias = "release_pmd")]
            #[doc(alias = "paravirt_release_pmd")]
            ReleasePd => fn release_pd(&self, pfn: Pfn) {
                let _ = pfn;
            }

            /// Writes a last-level entry (`set_pte`). Default: one native store
            /// ([`native::set`](crate::native::set)).
            SetPte => fn set_pte(&self, slot: PteSlot, val: Pte) {
                $crate::native::set(slot, val)
            }

            /// Writes a last-level entry of the address space rooted at `mm` for the virtual
            /// address `addr` (`set_pte_at`). Default: calls [`set_pte`](Self::set_pte).
            SetPteAt => fn set_pte_at(&self, mm: Pfn, addr: u32, slot: PteSlot, val: Pte) {
                let _ = (mm, addr);
                self.set_pte(slot, val)
            }

            /// Writes a last-level entry atomically with respect to the hardware walker
            /// (`set_pte_atomic`: one 64-bit store in PAE). Default: calls
            /// [`set_pte`](Self::set_pte), whose native store is already one store.
            SetPteAtomic => fn set_pte_atomic(&self, slot: PteSlot, val: Pte) {
                self.set_pte(slot, val)
            }

            /// Writes a last-level entry known to go from not present to present
            /// (`set_pte_present`). Default: calls [`set_pte_at`](Self::set_pte_at).
            SetPtePresent => fn set_pte_present(&self, mm: Pfn, addr: u32, slot: PteSlot, val: Pte) {
                self.set_pte_at(mm, addr, slot, val)
            }

            /// Writes a directory entry (`set_pmd`): a two-level pgd entry (the pmd is folded)
            /// or a PAE pmd entry, pointing at a page table or mapping a large page. Default:
            /// one native store.
            SetPmd => fn set_pmd(&self, slot: PmdSlot, val: Pmd) {
                $crate::native::set(slot, val)
            }

            /// Writes a PAE top-level (PDPT) entry (`set_pud`, reached through `set_pgd` in
            /// PAE). Default: one native store.
            #[doc(alias = "set_pgd")]
            SetPud => fn set_pud(&self, slot: PudSlot, val: Pud) {
                $crate::native::set(slot, val)
            }

            /// Clears a last-level entry (`pte_clear`). Default: one native store of zero.
            PteClear => fn pte_clear(&self, mm: Pfn, addr: u32, slot: PteSlot) {
                let _ = (mm, addr);
                $crate::native::clear(slot)
            }

            /// Clears a directory entry (`pmd_clear`). Default: one native store of zero.
            PmdClear => fn pmd_clear(&self, slot: PmdSlot) {
                $crate::native::clear(slot)
            }

            /// The address space rooted at `mm` is being torn down; its user mappings and page
            /// tables are about to be freed (`arch_exit_mmap`, a later Linux hook: Xen unpins
            /// the tree here so the teardown writes go direct).
            ExitMmap => fn exit_mmap(&self, mm: Pfn) {
                let _ = mm;
            }

            /// The kernel is loading `cr3` (physical address of a root table). Returns the value
            /// the CPU must really load: the same value natively, a shadow root under a
            /// shadowing backend, the root the hypervisor really installed under Xen.
            WriteCr3 => fn write_cr3(&self, cr3: u32) -> u32 {
                cr3
            }

            /// The kernel reads CR3; `hw` is what the CPU holds. Returns the guest's view.
            ReadCr3 => fn read_cr3(&self, hw: u32) -> u32 {
                hw
            }

            /// Non-global TLB entries are being flushed (`__flush_tlb`, `flush_tlb_user`).
            FlushTlbUser => fn flush_tlb_user(&self) {}

            /// All TLB entries, global ones included, are being flushed (`__flush_tlb_global`,
            /// `flush_tlb_kernel`).
            FlushTlbKernel => fn flush_tlb_kernel(&self) {}

            /// The TLB entry for the virtual address `addr` is being flushed
            /// (`__flush_tlb_single`).
            FlushTlbSingle => fn flush_tlb_single(&self, addr: u32) {
                let _ = addr;
            }

            /// The other CPUs in `cpumask` (bit `n` = CPU `n`) must flush the TLB entry of the
            /// virtual address `addr`, or every entry, global ones included, when `addr` is
            /// [`TLB_FLUSH_ALL`](crate::TLB_FLUSH_ALL), before the
            /// caller reuses the page or the page table. Returns `true` when the backend did it
            /// (Xen: one `MMUEXT_TLB_FLUSH_MULTI` or `MMUEXT_INVLPG_MULTI` with the vCPU mask);
            /// `false` (the default, bare metal and VMI) leaves it to the kernel's IPIs
            /// (`i386_paging::Cpu::flush_tlb_others`).
            ///
            /// Linux: `paravirt_ops.flush_tlb_others` (2.6.21), `native_flush_tlb_others`.
            #[doc(alias = "paravirt_flush_tlb_others")]
            FlushTlbOthers => fn flush_tlb_others(&self, cpumask: u32, addr: u32) -> bool {
                let _ = (cpumask, addr);
                false
            }
        }
    };
}

pub(crate) use for_each_hook;
