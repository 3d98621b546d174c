//! The hypervisor's state: Xen's frame table with page types, type counts and pins, and the
//! validation that keeps every table in use consistent with them.
//!
//! This mirrors `xen/arch/x86/mm.c`: [`HvState::get_page_type`] / [`HvState::put_page_type`]
//! (`get_page_type` / `put_page_type`), validation and devalidation of a table when its type
//! count leaves and returns to zero (`alloc_l1_table`, `free_l1_table`...), the per-entry
//! reference rules (`get_page_from_l1e`, `get_page_from_l2e`, `get_page_from_l3e`), the
//! checked entry update of `mod_l1_entry` / `mod_l2_entry` / `mod_l3_entry`, pinning
//! (`MMUEXT_PIN_*`, `MMUEXT_UNPIN_TABLE`) and the base pointer (`new_guest_cr3`).
//!
//! Everything here runs under the hypervisor lock of a [`Hypervisor`](crate::Hypervisor),
//! whose hypercalls are the only way in.

use crate::error::XenError;
use crate::stats::HvStats;
use crate::table::{checksum, decode, entries, hv_store, mix, read, root_type, Decoded};
use crate::trace::Trace;
use crate::types::{PageInfo, PageType, PinnedCounts};
use core::fmt::Write;
use i386_paging::{lowmem_va, read_entry, walk, PagingMode, PhysMem, Pmd, Pte, PteFlags};
use paravirt_core::Pfn;

/// One frame's hypervisor state: its type information plus the checksum of its contents
/// while it is a validated table.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) info: PageInfo,
    pub(crate) sum: u64,
}

impl Frame {
    const EMPTY: Frame = Frame { info: PageInfo { ty: PageType::None, count: 0, pinned: false }, sum: 0 };
}

/// Xen's view of the domain: the frame table, the base pointer and the domain's initial
/// page table (where the linear map lives).
pub(crate) struct HvState<const N: usize> {
    pub(crate) frames: [Frame; N],
    /// The root installed with `MMUEXT_NEW_BASEPTR` (holds one type reference).
    pub(crate) base: Option<Pfn>,
    /// The domain's initial page table (`start_info.pt_base`): the root whose kernel range
    /// holds the linear map that `update_va_mapping` edits.
    pub(crate) pt_base: Option<Pfn>,
    /// References dropped that did not match the frame's type or count (only possible when a
    /// validated table was changed behind the hypervisor's back).
    pub(crate) anomalies: u32,
    /// Tables pinned now.
    pinned_now: u64,
    pub(crate) stats: HvStats,
    pub(crate) trace: Trace,
}

impl<const N: usize> HvState<N> {
    pub(crate) const fn new() -> Self {
        HvState {
            frames: [Frame::EMPTY; N],
            base: None,
            pt_base: None,
            anomalies: 0,
            pinned_now: 0,
            stats: HvStats::new(),
            trace: Trace::new(),
        }
    }

    /// The index of `pfn` in the frame table, if it is RAM of the domain the table covers.
    pub(crate) fn check_frame<P: PhysMem>(&self, mem: &P, pfn: Pfn) -> Result<usize, XenError> {
        if pfn >= mem.max_pfn() {
            return Err(XenError::ForeignFrame { pfn });
        }
        if pfn.as_usize() >= N {
            return Err(XenError::Capacity { pfn });
        }
        Ok(pfn.as_usize())
    }

    /// A frame's type information (all zero beyond the table).
    pub(crate) fn info(&self, pfn: Pfn) -> PageInfo {
        self.frames.get(pfn.as_usize()).map_or(PageInfo::default(), |f| f.info)
    }

    /// Whether `pfn` is a validated table (a page-table type with references).
    pub(crate) fn validated(&self, pfn: Pfn) -> Option<PageType> {
        let i = self.info(pfn);
        (i.ty.is_table() && i.count > 0).then_some(i.ty)
    }

    /// `get_page_type(page, want)`: takes one type reference, validating the page as a table
    /// of type `want` if this is its first one.
    pub(crate) fn get_page_type<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        pfn: Pfn,
        want: PageType,
    ) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        let info = self.frames[i].info;
        if info.count > 0 {
            if info.ty == want {
                self.frames[i].info.count = info.count.checked_add(1).ok_or(XenError::CountOverflow { pfn })?;
                return Ok(());
            }
            if info.ty == PageType::Writable && want.is_table() {
                return Err(XenError::MappedWritable { pfn, mappings: info.count });
            }
            return Err(XenError::TypeConflict { pfn, want, has: info.ty, count: info.count });
        }
        // First reference: the page takes the type now, so an entry of the table being
        // validated cannot reference the table itself under another type.
        self.frames[i].info.ty = want;
        self.frames[i].info.count = 1;
        if want.is_table() {
            match self.validate::<M, P>(mem, pfn, want) {
                Ok(sum) => {
                    self.frames[i].sum = sum;
                    self.stats.validations += 1;
                }
                Err(e) => {
                    self.frames[i].info.ty = PageType::None;
                    self.frames[i].info.count = 0;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `put_page_type(page)`: drops one type reference; the last one releases the type and,
    /// for a table, devalidates it (dropping the references its entries hold).
    pub(crate) fn put_page_type<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn, ty: PageType) {
        let Ok(i) = self.check_frame(mem, pfn) else {
            self.anomalies += 1;
            return;
        };
        let info = self.frames[i].info;
        if info.count == 0 || info.ty != ty {
            self.anomalies += 1;
            return;
        }
        self.frames[i].info.count -= 1;
        if info.count > 1 {
            return;
        }
        if ty.is_table() {
            // If the table changed behind the hypervisor's back, the entries read here may not
            // be the ones that took references: mismatched puts are counted as anomalies and
            // reported by `verify` (and `unpin` reports the change itself).
            for idx in 0..entries::<M>(ty) {
                let e = read::<M, P>(mem, pfn, idx);
                self.put_entry::<M, P>(mem, ty, e);
            }
            self.stats.devalidations += 1;
        }
        self.frames[i].info.ty = PageType::None;
        self.frames[i].sum = 0;
    }

    /// Validates every entry of `table` as a table of type `ty`, taking the references its
    /// entries need; on a refusal gives back the ones already taken. Returns the checksum.
    fn validate<M: PagingMode, P: PhysMem>(&mut self, mem: &P, table: Pfn, ty: PageType) -> Result<u64, XenError> {
        let n = entries::<M>(ty);
        let mut sum = 0u64;
        for idx in 0..n {
            let e = read::<M, P>(mem, table, idx);
            if let Err(err) = self.get_entry::<M, P>(mem, table, ty, idx, e) {
                for back in (0..idx).rev() {
                    let e = read::<M, P>(mem, table, back);
                    self.put_entry::<M, P>(mem, ty, e);
                }
                return Err(err);
            }
            sum = sum.wrapping_add(mix(idx, e));
        }
        Ok(sum)
    }

    /// The references the raw entry `e` at `table[index]` must hold in a validated table of
    /// type `ty` (`get_page_from_l1e` / `l2e` / `l3e`).
    fn get_entry<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        table: Pfn,
        ty: PageType,
        index: u32,
        e: u64,
    ) -> Result<(), XenError> {
        match decode(ty, e) {
            Decoded::Empty => Ok(()),
            Decoded::Page { pfn, writable } => {
                self.check_frame(mem, pfn)?;
                if !writable {
                    return Ok(());
                }
                self.get_page_type::<M, P>(mem, pfn, PageType::Writable).map_err(|err| match err {
                    XenError::TypeConflict { has, .. } => {
                        XenError::WritablePageTable { table, index, target: pfn, target_type: has }
                    }
                    other => other,
                })
            }
            Decoded::Large => Err(XenError::LargePage { table, index }),
            Decoded::Table { reserved: true, .. } => {
                Err(XenError::ReservedBits { table, index, val: paravirt_core::Pud::from_raw(e) })
            }
            Decoded::Table { pfn, reserved: false } => match ty.child() {
                Some(child) => self.get_page_type::<M, P>(mem, pfn, child),
                None => Ok(()),
            },
        }
    }

    /// Drops the references the raw entry `e` of a validated table of type `ty` held.
    fn put_entry<M: PagingMode, P: PhysMem>(&mut self, mem: &P, ty: PageType, e: u64) {
        match decode(ty, e) {
            Decoded::Page { pfn, writable: true } => self.put_page_type::<M, P>(mem, pfn, PageType::Writable),
            Decoded::Table { pfn, .. } => {
                if let Some(child) = ty.child() {
                    self.put_page_type::<M, P>(mem, pfn, child)
                }
            }
            Decoded::Empty | Decoded::Large | Decoded::Page { writable: false, .. } => {}
        }
    }

    /// The checked `*ptr = val` of `mod_lN_entry`: validates the new entry (taking its
    /// references), stores it, then drops the references of the old one.
    pub(crate) fn update_entry<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        table: Pfn,
        ty: PageType,
        index: u32,
        val: u64,
    ) -> Result<(), XenError> {
        if index >= entries::<M>(ty) {
            return Err(XenError::BadIndex { table, index });
        }
        let old = read::<M, P>(mem, table, index);
        self.get_entry::<M, P>(mem, table, ty, index, val)?;
        hv_store::<M, P>(mem, table, ty, index, val);
        self.put_entry::<M, P>(mem, ty, old);
        let f = &mut self.frames[table.as_usize()];
        f.sum = f.sum.wrapping_sub(mix(index, old)).wrapping_add(mix(index, val));
        Ok(())
    }

    /// `MMUEXT_PIN_Ln_TABLE`: takes a type reference for the pin, validating the table (and,
    /// through its entries, every table below it) if it is not validated yet.
    pub(crate) fn pin<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn, ty: PageType) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        if self.frames[i].info.pinned {
            return Err(XenError::AlreadyPinned { pfn });
        }
        self.get_page_type::<M, P>(mem, pfn, ty)?;
        self.frames[i].info.pinned = true;
        self.stats.pins[ty.level_index()] += 1;
        self.pinned_now += 1;
        self.stats.max_pinned = self.stats.max_pinned.max(self.pinned_now);
        Ok(())
    }

    /// `MMUEXT_UNPIN_TABLE`: drops the pin's reference. If the table's contents changed
    /// behind the hypervisor's back the unpin still happens, and the change is reported.
    pub(crate) fn unpin<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        let f = self.frames[i];
        if !f.info.pinned {
            return Err(XenError::NotPinned { pfn });
        }
        self.frames[i].info.pinned = false;
        self.pinned_now -= 1;
        let modified = f.info.ty.is_table() && checksum::<M, P>(mem, pfn, f.info.ty) != f.sum;
        self.put_page_type::<M, P>(mem, pfn, f.info.ty);
        if modified {
            return Err(XenError::TableModified { table: pfn, level: f.info.ty });
        }
        Ok(())
    }

    /// `MMUEXT_NEW_BASEPTR` (`new_guest_cr3`): the root must be pinned at the root level; the
    /// base pointer takes a type reference on it and drops the one on the old root.
    pub(crate) fn new_baseptr<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        let want = root_type::<M>();
        let info = self.frames[i].info;
        if !info.pinned || info.ty != want {
            return Err(XenError::BaseNotPinned { pfn, want, has: info.ty });
        }
        self.frames[i].info.count = info.count.checked_add(1).ok_or(XenError::CountOverflow { pfn })?;
        if let Some(old) = self.base.replace(pfn) {
            self.put_page_type::<M, P>(mem, old, want);
        }
        Ok(())
    }

    /// The vCPU stops running on the model's tables (the kernel loaded a root the model does
    /// not manage, as `KernelMm::shutdown` requires): the base pointer's reference is dropped.
    pub(crate) fn leave_base<M: PagingMode, P: PhysMem>(&mut self, mem: &P) {
        if let Some(old) = self.base.take() {
            self.put_page_type::<M, P>(mem, old, root_type::<M>());
        }
    }

    /// The L1 and index of the PTE that maps `va` in the linear map (`pt_base`'s tree).
    pub(crate) fn linear_slot<M: PagingMode, P: PhysMem>(&self, mem: &P, va: u32) -> Result<(Pfn, u32), XenError> {
        let root = self.pt_base.ok_or(XenError::NoLinearMap)?;
        let (dir, idx) = walk::pmd_table::<M, P>(mem, root, va).ok_or(XenError::NotMapped { va })?;
        let pde: Pmd = read_entry::<M, _, P>(mem, dir, idx);
        if !pde.is_present() {
            return Err(XenError::NotMapped { va });
        }
        if pde.is_large() {
            return Err(XenError::LargePage { table: dir, index: idx });
        }
        let l1 = pde.pfn();
        self.check_frame(mem, l1)?;
        Ok((l1, M::pte_index(va)))
    }

    /// Pinned tables by level.
    pub(crate) fn pinned_counts(&self) -> PinnedCounts {
        let mut c = PinnedCounts::default();
        for f in self.frames.iter().filter(|f| f.info.pinned) {
            match f.info.ty {
                PageType::L1 => c.l1 += 1,
                PageType::L2 => c.l2 += 1,
                PageType::L3 => c.l3 += 1,
                _ => {}
            }
        }
        c
    }

    /// Re-checks every validated table: its contents still match what was validated (no
    /// write bypassed `mmu_update`), each entry still obeys its level's rule, a pinned table
    /// is a table, and (once the linear map is known) no pinned table is mapped writable in
    /// it. Writes one line per problem; returns whether there was none.
    pub(crate) fn verify<M: PagingMode, P: PhysMem>(&self, mem: &P, out: &mut dyn Write) -> bool {
        let mut ok = true;
        let mut lines = 0usize;
        let mut say = |args: core::fmt::Arguments<'_>| {
            ok = false;
            if lines < 32 {
                let _ = out.write_fmt(args);
                let _ = out.write_str("\n");
            }
            lines += 1;
        };
        let limit = mem.max_pfn().as_usize().min(N);
        for (i, f) in self.frames.iter().enumerate().take(limit) {
            let pfn = Pfn::new(i as u32);
            let ty = f.info.ty;
            if f.info.pinned && !ty.is_table() {
                say(format_args!("xen: pfn {pfn} is pinned but has type {ty}"));
            }
            if !(ty.is_table() && f.info.count > 0) {
                continue;
            }
            let now = checksum::<M, P>(mem, pfn, ty);
            if now != f.sum {
                say(format_args!(
                    "xen: {ty} table {pfn} changed without mmu_update (checksum {:#018x}, validated {:#018x})",
                    now, f.sum
                ));
            }
            for idx in 0..entries::<M>(ty) {
                let e = read::<M, P>(mem, pfn, idx);
                if let Some(rule) = self.entry_rule::<P>(mem, ty, e) {
                    say(format_args!("xen: {ty} table {pfn}[{idx}] = {e:#x}: {rule}"));
                }
            }
            if f.info.pinned {
                if let Ok((l1, idx)) = self.linear_slot::<M, P>(mem, lowmem_va(pfn)) {
                    let pte: Pte = read_entry::<M, _, P>(mem, l1, idx);
                    if pte.is_present() && pte.flags().contains(PteFlags::RW) {
                        say(format_args!(
                            "xen: pinned {ty} table {pfn} is mapped writable by linear-map l1 {l1}[{idx}] = {pte}"
                        ));
                    }
                }
            }
        }
        if self.anomalies != 0 {
            say(format_args!(
                "xen: {} type reference(s) dropped that did not match the frame's type (a validated table changed behind the hypervisor's back)",
                self.anomalies
            ));
        }
        ok
    }

    /// Whether the raw entry `e` of a validated table of type `ty` breaks its rule under the
    /// current types (a read-only check, used by `verify`).
    fn entry_rule<P: PhysMem>(&self, mem: &P, ty: PageType, e: u64) -> Option<&'static str> {
        let (t, writable) = match decode(ty, e) {
            Decoded::Empty => return None,
            Decoded::Large => return Some("large page in a PV directory"),
            Decoded::Table { reserved: true, .. } => return Some("reserved bits set"),
            Decoded::Page { pfn, writable } => (pfn, writable),
            Decoded::Table { pfn, reserved: false } => (pfn, false),
        };
        if self.check_frame(mem, t).is_err() {
            return Some("references a frame outside the domain");
        }
        let ti = self.info(t);
        match ty {
            PageType::L1 if writable && ti.ty != PageType::Writable => {
                Some("writable mapping not counted (a page-table page mapped writable?)")
            }
            PageType::L2 if ti.ty != PageType::L1 => Some("references a page that is not a validated l1"),
            PageType::L3 if ti.ty != PageType::L2 => Some("references a page that is not a validated l2"),
            _ => None,
        }
    }
}
