//! The guest side: what Linux's Xen MMU code (`arch/x86/xen/mmu.c`, later `mmu_pv.c`) does
//! in each hook, issuing hypercalls to the [`Hypervisor`](crate::Hypervisor).
//!
//! | Linux | here |
//! | --- | --- |
//! | `xen_alloc_pt` / `xen_alloc_pd` (`xen_alloc_ptpage`) | `alloc_ptpage`: record the page as announced (the seed's hook has no `mm`, so pinning waits for the link) |
//! | `xen_set_pmd` / `xen_set_pud` (`*_hyper`) | `set_dir`: into a pinned table, first make an announced child read-only and pin it, then `mmu_update`; into an unpinned one, a direct store |
//! | `xen_set_pte`, `xen_pte_clear`, `xen_pmd_clear` | `set_entry`: `mmu_update` if the table is pinned, a direct store otherwise |
//! | `xen_release_pt` / `xen_release_pd` (`xen_release_ptpage`) | `release_ptpage`: if pinned, unpin; then make the page writable |
//! | `xen_pgd_pin` | `pin_tree`: every table read-only first, then page tables and the root pinned bottom-up, the root last (pmds never pinned) |
//! | `xen_pgd_unpin` | `unpin_tree`: unpin top-down, then make the pages writable |
//! | `xen_write_cr3` | `xen_write_cr3`: pin the tree if needed, then `NEW_BASEPTR`; returns the root really installed |
//! | `xen_exit_mmap` | `xen_exit_mmap`: switch away from the root if it is loaded (`xen_drop_mm_ref`), then unpin the tree's own pages so teardown writes go direct |
//! | `make_lowmem_page_readonly` / `_readwrite` | `make_readonly` / `make_writable`: `update_va_mapping` of the page's linear-map PTE |
//!
//! Every entry the guest writes itself (into a table that is not pinned) is one
//! [`native::set`] / [`native::clear`] of the entry's width.

use crate::error::XenError;
use crate::guest::{GuestState, ANNOUNCED, HV_PIN, PINNED, RO};
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
    /// The address space's own tables: the root, the PAE pmds (each pgd has its own kernel
    /// pmd under Xen) and the page tables of the user part (the kernel's page tables are
    /// shared with `swapper_pg_dir` and belong to its tree).
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

impl<M: PagingMode, P: PhysMem> Xen<'_, M, P> {
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
    pub(crate) fn make_readonly(&self, g: &mut GuestState, pfn: Pfn) -> Result<(), XenError> {
        if g.has(self.hv.mem(), pfn, RO) || pfn.as_u32() >= LOWMEM_LIMIT {
            return Ok(());
        }
        let root = g.kernel_root.ok_or(XenError::NoLinearMap)?;
        let va = lowmem_va(pfn);
        if let Some(pte) = self.linear_pte(root, va)? {
            self.hv.update_va_mapping(va, without(pte, PteFlags::RW), UvmFlags::INVLPG)?;
            g.set(self.hv.mem(), pfn, RO)?;
        }
        Ok(())
    }

    /// `make_lowmem_page_readwrite(__va(pfn))`: `update_va_mapping` of the page's linear-map
    /// PTE with `_PAGE_RW` again. If the linear map is gone (the kernel's tables were torn
    /// down) there is no mapping left to restore.
    pub(crate) fn make_writable(&self, g: &mut GuestState, pfn: Pfn) -> Result<(), XenError> {
        if !g.has(self.hv.mem(), pfn, RO) {
            return Ok(());
        }
        if let Some(root) = g.kernel_root {
            let va = lowmem_va(pfn);
            if let Some(pte) = self.linear_pte(root, va)? {
                self.hv.update_va_mapping(va, pte.union(PteFlags::RW), UvmFlags::INVLPG)?;
            }
        }
        g.clear(self.hv.mem(), pfn, RO);
        Ok(())
    }

    /// Visits `table` (of type `ty`, at `depth` below the walk's start) and the tables below
    /// it: all of them for [`Scope::Whole`]; for [`Scope::User`] the address space's own
    /// tables only (`kernel` says the walk is under a kernel slot of the root).
    fn walk(&self, table: Pfn, ty: PageType, scope: Scope, order: Order, f: Visit<'_>) -> Result<(), XenError> {
        self.walk_at(table, ty, 0, scope, order, 0, false, f)
    }

    /// [`walk`](Self::walk) from a table mapping the addresses from `base` (a virtual
    /// address). Like Linux's `__xen_pgd_walk`, which stops below `FIXADDR_TOP`, it does not
    /// go into Xen's area (from [`Hypervisor::virt_start`](crate::Hypervisor::virt_start) up).
    #[allow(clippy::too_many_arguments)]
    fn walk_at(
        &self,
        table: Pfn,
        ty: PageType,
        base: u32,
        scope: Scope,
        order: Order,
        depth: u32,
        kernel: bool,
        f: Visit<'_>,
    ) -> Result<(), XenError> {
        let mem = self.hv.mem();
        if order == Order::Pre {
            f(table, ty, depth)?;
        }
        // A pgd's own kernel pmd (PAE) links the kernel's page tables, which are not its own.
        let descend = !(scope == Scope::User && kernel);
        let shift = match ty {
            PageType::L3 => M::PGDIR_SHIFT,
            _ if M::PAE => M::PMD_SHIFT,
            _ => M::PGDIR_SHIFT,
        };
        if let (Some(cty), true) = (ty.child(), descend) {
            for i in 0..entries::<M>(ty) {
                let Decoded::Table { pfn: c } = decode(ty, read::<M, P>(mem, table, i)) else { continue };
                let va = base.wrapping_add(i << shift);
                if c >= mem.max_pfn() || va >= self.hv.virt_start() {
                    continue;
                }
                let child_kernel = kernel || (depth == 0 && ty == root_type::<M>() && i >= M::USER_PTRS_PER_PGD);
                // Two-level: the kernel part of a pgd links the kernel's page tables. PAE: the
                // kernel pmd is the pgd's own copy (Xen refuses a shared one).
                if scope == Scope::User && child_kernel && !(M::PAE && depth == 0) {
                    continue;
                }
                self.walk_at(c, cty, va, scope, order, depth + 1, child_kernel, f)?;
            }
        }
        if order == Order::Post {
            f(table, ty, depth)?;
        }
        Ok(())
    }

    /// Whether the guest pins a table of type `ty` with a hypercall of its own: the root, and
    /// page tables (Linux pins PTE pages when it uses split page-table locks). A PAE pmd is
    /// never pinned: it is validated through its L3 entry, and the L2 of slot 3 could not be
    /// (Xen types it `PGT_pae_xen_l2`).
    fn pinned_by_guest(ty: PageType) -> bool {
        ty == PageType::L1 || ty == root_type::<M>()
    }

    /// `xen_pgd_pin` (and pinning a linked subtree): makes every table of the tree not yet in
    /// a pinned tree read-only, then pins bottom-up the ones the guest pins itself
    /// ([`pinned_by_guest`](Self::pinned_by_guest)), the root last, marking every table
    /// `PG_pinned`. A table below the start of the walk that was never announced is reported
    /// (the seed's rule: announce before linking).
    pub(crate) fn pin_tree(
        &self,
        g: &mut GuestState,
        hook: HookKind,
        root: Pfn,
        ty: PageType,
        scope: Scope,
    ) -> Result<(), XenError> {
        self.walk(root, ty, scope, Order::Pre, &mut |t, tty, depth| {
            if g.has(self.hv.mem(), t, PINNED) {
                return Ok(());
            }
            if depth > 0 && !g.has(self.hv.mem(), t, ANNOUNCED) {
                self.guest_error(g, hook, XenError::NotAnnounced { pfn: t, level: tty });
            }
            self.make_readonly(g, t)
        })?;
        self.walk(root, ty, scope, Order::Post, &mut |t, tty, _| {
            if g.has(self.hv.mem(), t, PINNED) {
                return Ok(());
            }
            if Self::pinned_by_guest(tty) {
                if let Some(pin) = MmuextOp::pin(tty, t) {
                    self.hv.mmuext_one(pin)?;
                }
                g.set(self.hv.mem(), t, HV_PIN)?;
            }
            g.set(self.hv.mem(), t, PINNED)
        })
    }

    /// `xen_pgd_unpin`: unpins the tables the guest pinned, top-down (the root first, so its
    /// references on the tables below go before theirs), clears `PG_pinned` on every table of
    /// the tree, then makes every page it made read-only writable again. Failures are reported
    /// and the walk goes on.
    pub(crate) fn unpin_tree(&self, g: &mut GuestState, hook: HookKind, root: Pfn, ty: PageType, scope: Scope) {
        self.unpin_only(g, hook, root, ty, scope);
        let _ = self.walk(root, ty, scope, Order::Pre, &mut |t, _, _| {
            let r = self.make_writable(g, t);
            self.check(hook, r);
            Ok(())
        });
    }

    /// The unpinning half of [`unpin_tree`](Self::unpin_tree).
    fn unpin_only(&self, g: &mut GuestState, hook: HookKind, root: Pfn, ty: PageType, scope: Scope) {
        let _ = self.walk(root, ty, scope, Order::Pre, &mut |t, _, _| {
            if g.has(self.hv.mem(), t, HV_PIN) {
                g.clear(self.hv.mem(), t, HV_PIN);
                let r = self.hv.mmuext_one(MmuextOp::UnpinTable(t));
                self.check(hook, r);
            }
            g.clear(self.hv.mem(), t, PINNED);
            Ok(())
        });
    }

    /// `xen_alloc_pt` / `xen_alloc_pd` (and `alloc_pd_clone`): records the page as
    /// announced. The seed's hook has no `mm`, so the page is pinned when a `set_pmd` /
    /// `set_pud` links it into a pinned table, or when its tree is loaded. A page still pinned
    /// was freed without its release hook. A page announced already keeps its flags as they
    /// are (the announcement is reported, and changes nothing).
    pub(crate) fn alloc_ptpage(&self, g: &mut GuestState, hook: HookKind, pfn: Pfn, flag: u8) {
        if g.has(self.hv.mem(), pfn, PINNED | HV_PIN) {
            self.guest_error(g, hook, XenError::AllocWhilePinned { pfn });
        }
        if g.has(self.hv.mem(), pfn, ANNOUNCED) {
            return self.guest_error(g, hook, XenError::AlreadyAnnounced { pfn });
        }
        if let Err(e) = g.set(self.hv.mem(), pfn, flag) {
            self.guest_error(g, hook, e);
        }
    }

    /// `xen_release_pt` / `xen_release_pd` (`xen_release_ptpage`): a page that was never
    /// announced is reported (a checker rule); then, as Linux does, if the page is in a pinned
    /// tree it leaves it (a page table the guest pinned is unpinned), and it is made writable
    /// again.
    pub(crate) fn release_ptpage(&self, g: &mut GuestState, hook: HookKind, pfn: Pfn) {
        if !g.has(self.hv.mem(), pfn, ANNOUNCED) {
            self.guest_error(g, hook, XenError::ReleaseNotAnnounced { pfn });
        }
        g.clear(self.hv.mem(), pfn, ANNOUNCED);
        g.clear(self.hv.mem(), pfn, PINNED);
        if g.has(self.hv.mem(), pfn, HV_PIN) {
            g.clear(self.hv.mem(), pfn, HV_PIN);
            let r = self.hv.mmuext_one(MmuextOp::UnpinTable(pfn));
            self.check(hook, r);
        }
        let r = self.make_writable(g, pfn);
        self.check(hook, r);
    }

    /// `xen_set_pte` and friends: `mmu_update` into a table of a pinned tree, a direct store
    /// (one [`native::set`], or [`native::clear`] for an empty entry) into any other.
    pub(crate) fn set_entry<E: Entry>(&self, g: &mut GuestState, hook: HookKind, slot: Slot<E>, val: E) {
        if g.has(self.hv.mem(), slot.table(), PINNED) {
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

    /// `xen_set_pmd` / `xen_set_pud`: into a table of a pinned tree, the announced table
    /// `child` (of type `child_ty`) that `val` points at, if it is not in a pinned tree yet, is
    /// made read-only and pinned (with its own subtree) first, then the entry goes in through
    /// `mmu_update`; into any other table, a direct store.
    pub(crate) fn set_dir<E: Entry>(
        &self,
        g: &mut GuestState,
        hook: HookKind,
        slot: Slot<E>,
        val: E,
        child: Option<(Pfn, PageType)>,
    ) {
        if let Some((c, child_ty)) = child {
            if g.has(self.hv.mem(), slot.table(), PINNED)
                && g.has(self.hv.mem(), c, ANNOUNCED)
                && !g.has(self.hv.mem(), c, PINNED)
            {
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
    /// ([`Hypervisor::set_pt_base`](crate::Hypervisor::set_pt_base), which maps its tables
    /// read-only as the domain builder does); a root not pinned yet has its whole tree pinned
    /// (`xen_pgd_pin`, which Linux runs from `xen_activate_mm`); then `MMUEXT_NEW_BASEPTR`.
    ///
    /// Returns the root the CPU must load: the one Xen really installed. After a refused
    /// `NEW_BASEPTR` (under `Policy::Record`) that is the previous base pointer, still in
    /// force (or `cr3` itself if Xen never installed one).
    pub(crate) fn xen_write_cr3(&self, g: &mut GuestState, cr3: u32) -> u32 {
        const HOOK: HookKind = HookKind::WriteCr3;
        let root = Pfn::containing(paravirt_core::PhysAddr::new(cr3 as u64));
        if g.kernel_root.is_none() {
            g.kernel_root = Some(root);
            if self.hv.pt_base() != Some(root) {
                let r = self.hv.set_pt_base(root);
                self.check(HOOK, r);
            }
            // The builder mapped the tree's tables read-only: the guest knows them as such.
            let _ = self.walk(root, root_type::<M>(), Scope::Whole, Order::Pre, &mut |t, _, _| {
                if let Ok(Some(pte)) = self.linear_pte(root, lowmem_va(t)) {
                    if !pte.flags().contains(PteFlags::RW) {
                        g.set(self.hv.mem(), t, RO)?;
                    }
                }
                Ok(())
            });
        }
        if !g.has(self.hv.mem(), root, PINNED) {
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

    /// `xen_exit_mmap`: first `xen_drop_mm_ref`: if the CPU runs on `mm`, it is switched to
    /// `swapper_pg_dir` (`NEW_BASEPTR` of the kernel's root). Then, if `mm` is pinned,
    /// `xen_pgd_unpin`: the tree's own tables are unpinned and made writable, so the teardown
    /// that follows writes directly. Its own tables: the root, the PAE pmds (the kernel pmd's
    /// copy included) and the page tables of the user part; the kernel's page tables are
    /// shared with `swapper_pg_dir`.
    ///
    /// For the kernel's own root (only `KernelMm::shutdown`, beyond Linux, which never tears
    /// `swapper_pg_dir` down) the vCPU leaves it, the whole tree is unpinned and its pages are
    /// given back writable the way a domain's memory is at its destruction; the linear map is
    /// then gone and the model forgets it.
    pub(crate) fn xen_exit_mmap(&self, g: &mut GuestState, mm: Pfn) {
        const HOOK: HookKind = HookKind::ExitMmap;
        let kernel = g.kernel_root == Some(mm);
        if self.hv.base() == Some(mm) {
            match g.kernel_root {
                Some(k) if !kernel => {
                    let r = self.hv.mmuext_one(MmuextOp::NewBaseptr(k));
                    self.check(HOOK, r);
                }
                // The kernel's tables are being torn down after it loaded a root the model
                // does not manage (`KernelMm::shutdown`): drop the base pointer's reference.
                _ => self.hv.leave_base(),
            }
        }
        if !kernel {
            if g.has(self.hv.mem(), mm, PINNED) {
                self.unpin_tree(g, HOOK, mm, root_type::<M>(), Scope::User);
            }
            return;
        }
        self.unpin_only(g, HOOK, mm, root_type::<M>(), Scope::Whole);
        let _ = self.walk(mm, root_type::<M>(), Scope::Whole, Order::Pre, &mut |t, _, _| {
            if g.has(self.hv.mem(), t, RO) {
                let r = self.hv.relinquish_writable(t);
                if self.check(HOOK, r) {
                    g.clear(self.hv.mem(), t, RO);
                }
            }
            Ok(())
        });
        g.kernel_root = None;
        self.hv.forget_pt_base();
    }
}
