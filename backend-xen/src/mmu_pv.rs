//! The guest side: what Linux's Xen MMU code (`arch/x86/xen/mmu.c`, later `mmu_pv.c`) does
//! in each hook, issuing hypercalls to the [`Hypervisor`](crate::Hypervisor).
//!
//! | Linux | here |
//! | --- | --- |
//! | `xen_alloc_pt` / `xen_alloc_pd` (`xen_alloc_ptpage`) | `alloc_ptpage`: record the page as announced (the seed's hook has no `mm`, so pinning waits for the link) |
//! | `xen_set_pmd` / `xen_set_pud` (`*_hyper`) | `set_dir`: into a pinned table, first make an announced child read-only and pin it, then `mmu_update`; into an unpinned one, a direct store |
//! | `xen_set_pte`, `xen_pte_clear`, `xen_pmd_clear` | `set_entry`: `mmu_update` if the table is pinned, a direct store otherwise |
//! | `xen_release_pt` / `xen_release_pd` (`xen_release_ptpage`) | `release_ptpage`: if pinned, unpin; then make the page writable |
//! | `xen_pgd_pin` | `pin_tree`: every table read-only first, then pins bottom-up, top level last |
//! | `xen_pgd_unpin` | `unpin_tree`: unpin top-down, then make the pages writable |
//! | `xen_write_cr3` | `xen_write_cr3`: pin the tree if needed, then `NEW_BASEPTR`; returns the root really installed |
//! | `xen_exit_mmap` | `xen_exit_mmap`: unpin the tree's own pages so teardown writes go direct |
//! | `make_lowmem_page_readonly` / `_readwrite` | `make_readonly` / `make_writable`: `update_va_mapping` of the page's linear-map PTE |
//!
//! Every entry the guest writes itself (into a table that is not pinned) is one
//! [`native::set`] / [`native::clear`] of the entry's width.

use crate::error::XenError;
use crate::guest::{GuestState, ANNOUNCED, PINNED, RO};
use crate::hypercall::{MmuUpdate, MmuextOp, UvmFlags};
use crate::table::{decode, entries, read, root_type, Decoded};
use crate::types::PageType;
use crate::xen::Xen;
use i386_paging::{lowmem_va, read_entry, walk, PagingMode, PhysMem, Pmd, Pte, PteFlags, PAGE_OFFSET};
use paravirt_core::{native, Entry, HookKind, Pfn, Slot};

/// Frames the linear map can reach (`PAGE_OFFSET` up to 4 GiB).
const LOWMEM_LIMIT: u32 = (0u32.wrapping_sub(PAGE_OFFSET)) >> 12;

/// How much of a tree a walk covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The whole tree.
    Whole,
    /// The root and what its user entries reach (the kernel range is shared with
    /// `swapper_pg_dir` and belongs to its tree).
    User,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Parents before children.
    Pre,
    /// Children before parents.
    Post,
}

type Visit<'a> = &'a mut dyn FnMut(Pfn, PageType, u32) -> Result<(), XenError>;

/// `pte` without the bits of `flags` (the address and every other bit kept as they are).
fn without(pte: Pte, flags: PteFlags) -> Pte {
    Pte::from_raw(pte.raw() & !flags.bits())
}

impl<M: PagingMode, P: PhysMem, const N: usize> Xen<'_, M, P, N> {
    /// The PTE mapping the virtual address `va` in the kernel's tables under `root`, read the
    /// way the guest reads its own page tables (`None` if `va` is not mapped).
    fn linear_pte(&self, root: Pfn, va: u32) -> Result<Option<Pte>, XenError> {
        let mem = self.hv.mem();
        let Some((dir, idx)) = walk::pmd_table::<M, P>(mem, root, va) else { return Ok(None) };
        let pde: Pmd = read_entry::<M, _, P>(mem, dir, idx);
        if !pde.is_present() {
            return Ok(None);
        }
        if pde.is_large() {
            return Err(XenError::LargePage { table: dir, index: idx });
        }
        let pte: Pte = read_entry::<M, _, P>(mem, pde.pfn(), M::pte_index(va));
        Ok(pte.is_present().then_some(pte))
    }

    /// `make_lowmem_page_readonly(__va(pfn))`: `update_va_mapping` of the page's linear-map
    /// PTE without `_PAGE_RW`. A page outside the linear map has no kernel mapping to change.
    pub(crate) fn make_readonly(&self, g: &mut GuestState<N>, pfn: Pfn) -> Result<(), XenError> {
        if g.has(pfn, RO) || pfn.as_u32() >= LOWMEM_LIMIT {
            return Ok(());
        }
        let root = g.kernel_root.ok_or(XenError::NoLinearMap)?;
        let va = lowmem_va(pfn);
        if let Some(pte) = self.linear_pte(root, va)? {
            self.hv.update_va_mapping(va, without(pte, PteFlags::RW), UvmFlags::INVLPG)?;
            g.set(pfn, RO)?;
        }
        Ok(())
    }

    /// `make_lowmem_page_readwrite(__va(pfn))`: `update_va_mapping` of the page's linear-map
    /// PTE with `_PAGE_RW` again. If the linear map is gone (the kernel's tables were torn
    /// down) there is no mapping left to restore.
    pub(crate) fn make_writable(&self, g: &mut GuestState<N>, pfn: Pfn) -> Result<(), XenError> {
        if !g.has(pfn, RO) {
            return Ok(());
        }
        if let Some(root) = g.kernel_root {
            let va = lowmem_va(pfn);
            if let Some(pte) = self.linear_pte(root, va)? {
                self.hv.update_va_mapping(va, pte.union(PteFlags::RW), UvmFlags::INVLPG)?;
            }
        }
        g.clear(pfn, RO);
        Ok(())
    }

    /// Visits `table` (of type `ty`, its first `limit` entries) and every table below it.
    fn walk(
        &self,
        table: Pfn,
        ty: PageType,
        limit: u32,
        order: Order,
        depth: u32,
        f: Visit<'_>,
    ) -> Result<(), XenError> {
        let mem = self.hv.mem();
        if order == Order::Pre {
            f(table, ty, depth)?;
        }
        if let Some(cty) = ty.child() {
            for i in 0..limit {
                let Decoded::Table { pfn: c, .. } = decode(ty, read::<M, P>(mem, table, i)) else { continue };
                if c >= mem.max_pfn() {
                    continue;
                }
                self.walk(c, cty, entries::<M>(cty), order, depth + 1, f)?;
            }
        }
        if order == Order::Post {
            f(table, ty, depth)?;
        }
        Ok(())
    }

    fn limit(ty: PageType, scope: Scope) -> u32 {
        match scope {
            Scope::Whole => entries::<M>(ty),
            Scope::User => M::USER_PTRS_PER_PGD.min(entries::<M>(ty)),
        }
    }

    /// `xen_pgd_pin` (and pinning a linked subtree): makes every not-yet-pinned table of the
    /// tree read-only, then pins them bottom-up, the top level last. A table below the root
    /// that was never announced is reported (the seed's rule: announce before linking).
    pub(crate) fn pin_tree(
        &self,
        g: &mut GuestState<N>,
        hook: HookKind,
        root: Pfn,
        ty: PageType,
        scope: Scope,
    ) -> Result<(), XenError> {
        let limit = Self::limit(ty, scope);
        self.walk(root, ty, limit, Order::Pre, 0, &mut |t, tty, depth| {
            if g.has(t, PINNED) {
                return Ok(());
            }
            if depth > 0 && !g.has(t, ANNOUNCED) {
                self.guest_error(g, hook, XenError::NotAnnounced { pfn: t, level: tty });
            }
            self.make_readonly(g, t)
        })?;
        self.walk(root, ty, limit, Order::Post, 0, &mut |t, tty, _| {
            if g.has(t, PINNED) {
                return Ok(());
            }
            if let Some(pin) = MmuextOp::pin(tty, t) {
                self.hv.mmuext_one(pin)?;
            }
            g.set(t, PINNED)
        })
    }

    /// `xen_pgd_unpin`: unpins the tree top-down (the root first, so its references on the
    /// tables below go before theirs), then makes every page it made read-only writable
    /// again. Failures are reported and the walk goes on.
    pub(crate) fn unpin_tree(&self, g: &mut GuestState<N>, hook: HookKind, root: Pfn, ty: PageType, scope: Scope) {
        let limit = Self::limit(ty, scope);
        let _ = self.walk(root, ty, limit, Order::Pre, 0, &mut |t, _, _| {
            if g.has(t, PINNED) {
                g.clear(t, PINNED);
                let r = self.hv.mmuext_one(MmuextOp::UnpinTable(t));
                self.check(hook, r);
            }
            Ok(())
        });
        let _ = self.walk(root, ty, limit, Order::Pre, 0, &mut |t, _, _| {
            let r = self.make_writable(g, t);
            self.check(hook, r);
            Ok(())
        });
    }

    /// `xen_alloc_pt` / `xen_alloc_pd` (and `alloc_pd_clone`): records the page as
    /// announced. The seed's hook has no `mm`, so the page is pinned when a `set_pmd` /
    /// `set_pud` links it into a pinned table, or when its tree is loaded. A page still pinned
    /// was freed without its release hook.
    pub(crate) fn alloc_ptpage(&self, g: &mut GuestState<N>, hook: HookKind, pfn: Pfn, flag: u8) {
        if g.has(pfn, PINNED) {
            self.guest_error(g, hook, XenError::AllocWhilePinned { pfn });
        }
        if g.has(pfn, ANNOUNCED) {
            self.guest_error(g, hook, XenError::AlreadyAnnounced { pfn });
        }
        if let Err(e) = g.set(pfn, flag) {
            self.guest_error(g, hook, e);
        }
    }

    /// `xen_release_pt` / `xen_release_pd`: a page that was never announced is reported (a
    /// checker rule); then, as Linux does, if the page is pinned, unpin it, and make it
    /// writable again.
    pub(crate) fn release_ptpage(&self, g: &mut GuestState<N>, hook: HookKind, pfn: Pfn) {
        if !g.has(pfn, ANNOUNCED) {
            self.guest_error(g, hook, XenError::ReleaseNotAnnounced { pfn });
        }
        g.clear(pfn, ANNOUNCED);
        if g.has(pfn, PINNED) {
            g.clear(pfn, PINNED);
            let r = self.hv.mmuext_one(MmuextOp::UnpinTable(pfn));
            self.check(hook, r);
        }
        let r = self.make_writable(g, pfn);
        self.check(hook, r);
    }

    /// `xen_set_pte` and friends: `mmu_update` into a pinned table, a direct store (one
    /// [`native::set`], or [`native::clear`] for an empty entry) into an unpinned one.
    pub(crate) fn set_entry<E: Entry>(&self, g: &mut GuestState<N>, hook: HookKind, slot: Slot<E>, val: E) {
        if g.has(slot.table(), PINNED) {
            let r = self.hv.mmu_update_one(MmuUpdate::normal(slot.phys(), val.raw()));
            self.check(hook, r);
        } else {
            if val.raw() == 0 {
                native::clear(slot);
            } else {
                native::set(slot, val);
            }
            g.stats.direct_writes += 1;
        }
    }

    /// `xen_set_pmd` / `xen_set_pud`: into a pinned table, the announced table `child` (of
    /// type `child_ty`) that `val` points at, if it is not pinned yet, is made read-only and
    /// pinned (with its own subtree) first, then the entry goes in through `mmu_update`; into
    /// an unpinned table, a direct store.
    pub(crate) fn set_dir<E: Entry>(
        &self,
        g: &mut GuestState<N>,
        hook: HookKind,
        slot: Slot<E>,
        val: E,
        child: Option<(Pfn, PageType)>,
    ) {
        if let Some((c, child_ty)) = child {
            if g.has(slot.table(), PINNED) && g.has(c, ANNOUNCED) && !g.has(c, PINNED) {
                let r = self.pin_tree(g, hook, c, child_ty, Scope::Whole);
                if !self.check(hook, r) {
                    return;
                }
            }
        }
        self.set_entry(g, hook, slot, val)
    }

    /// `xen_write_cr3` for the root at physical address `cr3`: the first root loaded is the
    /// kernel's own and becomes the domain's initial page table
    /// ([`Hypervisor::set_pt_base`](crate::Hypervisor::set_pt_base)); a root not pinned yet
    /// has its whole tree pinned; then `MMUEXT_NEW_BASEPTR`.
    ///
    /// Returns the root the CPU must load: the one Xen really installed. After a refused
    /// `NEW_BASEPTR` (under `Policy::Record`) that is the previous base pointer, still in
    /// force (or `cr3` itself if Xen never installed one).
    pub(crate) fn xen_write_cr3(&self, g: &mut GuestState<N>, cr3: u32) -> u32 {
        const HOOK: HookKind = HookKind::WriteCr3;
        let root = Pfn::containing(paravirt_core::PhysAddr::new(cr3 as u64));
        if g.kernel_root.is_none() {
            g.kernel_root = Some(root);
            if self.hv.pt_base() != Some(root) {
                let r = self.hv.set_pt_base(root);
                self.check(HOOK, r);
            }
        }
        if !g.has(root, PINNED) {
            let r = self.pin_tree(g, HOOK, root, root_type::<M>(), Scope::Whole);
            self.check(HOOK, r);
        }
        let r = self.hv.mmuext_one(MmuextOp::NewBaseptr(root));
        if self.check(HOOK, r) {
            return cr3;
        }
        match self.hv.base() {
            Some(installed) => installed.phys().as_u64() as u32,
            None => cr3,
        }
    }

    /// `xen_exit_mmap` (`xen_pgd_unpin`): unpins the tree rooted at `mm` and makes its own
    /// pages writable, so the teardown that follows writes directly. For a user address space
    /// its own pages are the root and what the user entries reach (kernel tables are shared
    /// with `swapper_pg_dir`); for the kernel's own root, the whole tree, after which the
    /// linear map is gone and the model forgets it.
    pub(crate) fn xen_exit_mmap(&self, g: &mut GuestState<N>, mm: Pfn) {
        const HOOK: HookKind = HookKind::ExitMmap;
        let kernel = g.kernel_root == Some(mm);
        if self.hv.base() == Some(mm) {
            if kernel {
                // The kernel's tables are being torn down after it loaded a root the model
                // does not manage (`KernelMm::shutdown`): drop the base pointer's reference.
                self.hv.leave_base();
            } else {
                self.guest_error(g, HOOK, XenError::ExitActiveRoot { pfn: mm });
                if let Some(k) = g.kernel_root {
                    let r = self.hv.mmuext_one(MmuextOp::NewBaseptr(k));
                    self.check(HOOK, r);
                }
            }
        }
        let scope = if kernel { Scope::Whole } else { Scope::User };
        self.unpin_tree(g, HOOK, mm, root_type::<M>(), scope);
        if kernel {
            g.kernel_root = None;
            self.hv.forget_pt_base();
        }
    }
}
