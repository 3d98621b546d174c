//! The guest side: what Linux's Xen MMU code (`arch/x86/xen/mmu.c`, later `mmu_pv.c`) does
//! in each hook, issuing hypercalls to the hypervisor model.
//!
//! | Linux | here |
//! | --- | --- |
//! | `xen_alloc_pt` / `xen_alloc_pd` (`xen_alloc_ptpage`) | [`Xen::alloc_ptpage`]: record the page as announced (the seed's hook has no `mm`, so pinning waits for the link) |
//! | `xen_set_pmd` / `xen_set_pud` (`*_hyper`) | [`Xen::set_dir`]: into a pinned table, first make an announced child read-only and pin it, then `mmu_update`; into an unpinned one, a direct store |
//! | `xen_set_pte`, `xen_pte_clear`, `xen_pmd_clear` | [`Xen::set_entry`]: `mmu_update` if the table is pinned, a direct store otherwise |
//! | `xen_release_pt` / `xen_release_pd` (`xen_release_ptpage`) | [`Xen::release_ptpage`]: if pinned, unpin; then make the page writable |
//! | `xen_pgd_pin` | [`Xen::pin_tree`]: every table read-only first, then pins bottom-up, top level last |
//! | `xen_pgd_unpin` | [`Xen::unpin_tree`]: unpin top-down, then make the pages writable |
//! | `xen_write_cr3` | [`Xen::xen_write_cr3`]: pin the tree if needed, then `NEW_BASEPTR` |
//! | `xen_exit_mmap` | [`Xen::xen_exit_mmap`]: unpin the tree's own pages so teardown writes go direct |
//! | `make_lowmem_page_readonly` / `_readwrite` | [`Xen::make_readonly`] / [`Xen::make_writable`]: `update_va_mapping` of the page's linear-map PTE |

use crate::error::{Errno, XenError};
use crate::hypercall::{MmuUpdate, MmuextOp, UvmFlags};
use crate::hypervisor::RW;
use crate::policy::{Policy, Violation, ViolationLog};
use crate::stats::GuestStats;
use crate::table::{entries, large, present, read, root_type, store_entry, target};
use crate::types::PageType;
use crate::xen::Xen;
use i386_mm::{lowmem_va, walk, PagingMode, PhysMem, PAGE_OFFSET};
use paravirt_core::{EntrySlot, Pfn};

/// Guest flag: announced with `alloc_pt`.
pub(crate) const ANNOUNCED_PT: u8 = 1;
/// Guest flag: announced with `alloc_pd`.
pub(crate) const ANNOUNCED_PD: u8 = 2;
/// Either announcement.
pub(crate) const ANNOUNCED: u8 = ANNOUNCED_PT | ANNOUNCED_PD;
/// Guest flag: pinned (Linux's `PG_pinned`).
pub(crate) const PINNED: u8 = 4;
/// Guest flag: made read-only in the linear map by the guest.
pub(crate) const RO: u8 = 8;

/// Frames the linear map can reach (`PAGE_OFFSET` up to 4 GiB).
const LOWMEM_LIMIT: u32 = (0u32.wrapping_sub(PAGE_OFFSET)) >> 12;

/// The guest kernel's per-page state (the bits of Linux's `struct page` the Xen code uses).
pub(crate) struct GuestState<const N: usize> {
    flags: [u8; N],
    /// The kernel's own root (`init_mm.pgd`), learnt from the first `write_cr3`.
    pub(crate) kernel_root: Option<Pfn>,
    pub(crate) log: ViolationLog,
    pub(crate) stats: GuestStats,
    /// Protocol errors the guest side caught itself, by errno class.
    pub(crate) guest_errors: [u64; Errno::COUNT],
}

impl<const N: usize> GuestState<N> {
    pub(crate) const fn new() -> Self {
        GuestState {
            flags: [0; N],
            kernel_root: None,
            log: ViolationLog::new(),
            stats: GuestStats::new(),
            guest_errors: [0; Errno::COUNT],
        }
    }

    /// Whether `pfn` has any of the flags in `bits`.
    pub(crate) fn has(&self, pfn: Pfn, bits: u8) -> bool {
        self.flags.get(pfn.0 as usize).is_some_and(|f| f & bits != 0)
    }

    /// The raw flags of frame index `i`.
    pub(crate) fn raw(&self, i: usize) -> u8 {
        self.flags[i]
    }

    fn set(&mut self, pfn: Pfn, bits: u8) -> Result<(), XenError> {
        let f = self.flags.get_mut(pfn.0 as usize).ok_or(XenError::Capacity { pfn })?;
        if bits & RO != 0 && *f & RO == 0 {
            self.stats.read_only += 1;
            self.stats.max_read_only = self.stats.max_read_only.max(self.stats.read_only);
        }
        *f |= bits;
        Ok(())
    }

    fn clear(&mut self, pfn: Pfn, bits: u8) {
        if let Some(f) = self.flags.get_mut(pfn.0 as usize) {
            if bits & RO != 0 && *f & RO != 0 {
                self.stats.read_only -= 1;
            }
            *f &= !bits;
        }
    }
}

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

impl<M: PagingMode, P: PhysMem, const N: usize> Xen<'_, M, P, N> {
    /// Records a violation and reacts according to the policy.
    pub(crate) fn report(&self, g: &mut GuestState<N>, op: &'static str, error: XenError) {
        g.log.push(Violation { op, error });
        if self.policy == Policy::Panic {
            panic!("backend-xen: {op}: {error}");
        }
    }

    /// Reports a protocol error the guest side caught itself (no hypercall refused it).
    fn guest_error(&self, g: &mut GuestState<N>, op: &'static str, error: XenError) {
        g.guest_errors[error.errno().index()] += 1;
        self.report(g, op, error);
    }

    /// Reports `r`'s error, if any; returns whether it succeeded.
    fn check(&self, g: &mut GuestState<N>, op: &'static str, r: Result<(), XenError>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                self.report(g, op, e);
                false
            }
        }
    }

    /// The PTE mapping `va` in the kernel's tables, read the way the guest reads its own page
    /// tables (`None` if `va` is not mapped).
    fn linear_pte(&self, root: Pfn, va: u32) -> Result<Option<u64>, XenError> {
        let Some((dir, idx)) = walk::pmd_table::<M, P>(&self.mem, root, va) else { return Ok(None) };
        let pde = read::<M, P>(&self.mem, dir, idx);
        if !present(pde) {
            return Ok(None);
        }
        if large(pde) {
            return Err(XenError::LargePage { table: dir, index: idx });
        }
        let pte = read::<M, P>(&self.mem, target::<M>(pde), M::pte_index(va));
        Ok(present(pte).then_some(pte))
    }

    /// `make_lowmem_page_readonly(__va(pfn))`: `update_va_mapping` of the page's linear-map
    /// PTE without `_PAGE_RW`. A page outside the linear map has no kernel mapping to change.
    pub(crate) fn make_readonly(&self, g: &mut GuestState<N>, pfn: Pfn) -> Result<(), XenError> {
        if g.has(pfn, RO) || pfn.0 >= LOWMEM_LIMIT {
            return Ok(());
        }
        let root = g.kernel_root.ok_or(XenError::NoLinearMap)?;
        let va = lowmem_va(pfn);
        if let Some(pte) = self.linear_pte(root, va)? {
            self.update_va_mapping(va, pte & !RW, UvmFlags::INVLPG)?;
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
                self.update_va_mapping(va, pte | RW, UvmFlags::INVLPG)?;
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
        if order == Order::Pre {
            f(table, ty, depth)?;
        }
        if let Some(cty) = ty.child() {
            for i in 0..limit {
                let e = read::<M, P>(&self.mem, table, i);
                if !present(e) || (ty == PageType::L2 && large(e)) {
                    continue;
                }
                let c = target::<M>(e);
                if c >= self.mem.max_pfn() {
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
        op: &'static str,
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
                self.guest_error(g, op, XenError::NotAnnounced { pfn: t, level: tty });
            }
            self.make_readonly(g, t)
        })?;
        self.walk(root, ty, limit, Order::Post, 0, &mut |t, tty, _| {
            if g.has(t, PINNED) {
                return Ok(());
            }
            if let Some(pin) = MmuextOp::pin(tty, t) {
                self.mmuext_one(pin)?;
            }
            g.set(t, PINNED)
        })
    }

    /// `xen_pgd_unpin`: unpins the tree top-down (the root first, so its references on the
    /// tables below go before theirs), then makes every page it made read-only writable
    /// again. Failures are reported and the walk goes on.
    pub(crate) fn unpin_tree(&self, g: &mut GuestState<N>, op: &'static str, root: Pfn, ty: PageType, scope: Scope) {
        let limit = Self::limit(ty, scope);
        let _ = self.walk(root, ty, limit, Order::Pre, 0, &mut |t, _, _| {
            if g.has(t, PINNED) {
                g.clear(t, PINNED);
                let r = self.mmuext_one(MmuextOp::UnpinTable(t));
                self.check(g, op, r);
            }
            Ok(())
        });
        let _ = self.walk(root, ty, limit, Order::Pre, 0, &mut |t, _, _| {
            let r = self.make_writable(g, t);
            self.check(g, op, r);
            Ok(())
        });
    }

    /// `xen_alloc_pt` / `xen_alloc_pd`: records the page as announced. The seed's hook has
    /// no `mm`, so the page is pinned when a `set_pmd` / `set_pud` links it into a pinned
    /// table. A page still pinned was freed without its release hook.
    pub(crate) fn alloc_ptpage(&self, g: &mut GuestState<N>, op: &'static str, pfn: Pfn, flag: u8) {
        if g.has(pfn, PINNED) {
            self.guest_error(g, op, XenError::AllocWhilePinned { pfn });
        }
        if g.has(pfn, ANNOUNCED) {
            self.guest_error(g, op, XenError::AlreadyAnnounced { pfn });
        }
        if let Err(e) = g.set(pfn, flag) {
            self.guest_error(g, op, e);
        }
    }

    /// `xen_release_pt` / `xen_release_pd`: if the page is pinned, unpin it; then make it
    /// writable again.
    pub(crate) fn release_ptpage(&self, g: &mut GuestState<N>, op: &'static str, pfn: Pfn) {
        g.clear(pfn, ANNOUNCED);
        if g.has(pfn, PINNED) {
            g.clear(pfn, PINNED);
            let r = self.mmuext_one(MmuextOp::UnpinTable(pfn));
            self.check(g, op, r);
        }
        let r = self.make_writable(g, pfn);
        self.check(g, op, r);
    }

    /// `xen_set_pte` and friends: `mmu_update` into a pinned table, a direct store into an
    /// unpinned one.
    ///
    /// # Safety
    /// `slot` must describe a valid, aligned entry of a live page table.
    pub(crate) unsafe fn set_entry(&self, g: &mut GuestState<N>, op: &'static str, slot: EntrySlot, val: u64) {
        if g.has(slot.table, PINNED) {
            let r = self.mmu_update_one(MmuUpdate::normal(slot.phys(), val));
            self.check(g, op, r);
        } else {
            // SAFETY: forwarded caller contract; the table is not pinned, so the guest's own
            // mapping of it is writable.
            unsafe { store_entry(slot, val) };
            g.stats.direct_writes += 1;
        }
    }

    /// `xen_set_pmd` / `xen_set_pud`: into a pinned table, an announced child that is not
    /// pinned yet is made read-only and pinned (as `child`, with its own subtree) first, then
    /// the entry goes in through `mmu_update`; into an unpinned table, a direct store.
    ///
    /// # Safety
    /// As for [`set_entry`](Self::set_entry).
    pub(crate) unsafe fn set_dir(
        &self,
        g: &mut GuestState<N>,
        op: &'static str,
        slot: EntrySlot,
        val: u64,
        child: PageType,
    ) {
        if g.has(slot.table, PINNED) && present(val) && !(child == PageType::L1 && large(val)) {
            let c = target::<M>(val);
            if g.has(c, ANNOUNCED) && !g.has(c, PINNED) {
                let r = self.pin_tree(g, op, c, child, Scope::Whole);
                if !self.check(g, op, r) {
                    return;
                }
            }
        }
        // SAFETY: forwarded caller contract.
        unsafe { self.set_entry(g, op, slot, val) }
    }

    /// `xen_write_cr3`: the first root loaded is the kernel's own and becomes the domain's
    /// initial page table ([`Xen::set_pt_base`]); a root not pinned yet has its whole tree
    /// pinned; then `MMUEXT_NEW_BASEPTR`.
    pub(crate) fn xen_write_cr3(&self, g: &mut GuestState<N>, cr3: u32) -> u32 {
        let root = Pfn::from_phys(cr3 as u64);
        if g.kernel_root.is_none() {
            g.kernel_root = Some(root);
            if self.pt_base() != Some(root) {
                let r = self.set_pt_base(root);
                self.check(g, "write_cr3", r);
            }
        }
        if !g.has(root, PINNED) {
            let r = self.pin_tree(g, "write_cr3", root, root_type::<M>(), Scope::Whole);
            self.check(g, "write_cr3", r);
        }
        let r = self.mmuext_one(MmuextOp::NewBaseptr(root));
        self.check(g, "write_cr3", r);
        cr3
    }

    /// `xen_exit_mmap` (`xen_pgd_unpin`): unpins the tree and makes its own pages writable,
    /// so the teardown that follows writes directly. For a user address space its own pages
    /// are the root and what the user entries reach (kernel tables are shared with
    /// `swapper_pg_dir`); for the kernel's own root, the whole tree, after which the linear
    /// map is gone and the model forgets it.
    pub(crate) fn xen_exit_mmap(&self, g: &mut GuestState<N>, mm: Pfn) {
        let kernel = g.kernel_root == Some(mm);
        if self.base() == Some(mm) {
            if kernel {
                // The kernel's tables are being torn down after it loaded a root the model
                // does not manage (`KernelMm::shutdown`): drop the base pointer's reference.
                self.table.hv.lock().leave_base::<M, P>(&self.mem);
            } else {
                self.guest_error(g, "exit_mmap", XenError::ExitActiveRoot { pfn: mm });
                if let Some(k) = g.kernel_root {
                    let r = self.mmuext_one(MmuextOp::NewBaseptr(k));
                    self.check(g, "exit_mmap", r);
                }
            }
        }
        let scope = if kernel { Scope::Whole } else { Scope::User };
        self.unpin_tree(g, "exit_mmap", mm, root_type::<M>(), scope);
        if kernel {
            g.kernel_root = None;
            self.table.hv.lock().pt_base = None;
        }
    }
}
