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
use crate::table::{
    checksum, decode, disallow_mask, entries, first_private_slot, hv_store, mix, read, root_type, Decoded,
};
use crate::trace::Trace;
use crate::types::{PageInfo, PageType, PinnedCounts};
use core::fmt::Write;
use i386_paging::{
    lowmem_va, read_entry, walk, FrameMap, NoFrame, PagingMode, PhysMem, Pmd, Pte, PteFlags, Pud, Record,
};
use paravirt_core::Pfn;

/// One frame's hypervisor state, Xen's `struct page_info` (the part of `type_info` the model
/// keeps): its type information plus the checksum of its contents while it is a validated
/// table.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) info: PageInfo,
    pub(crate) sum: u64,
}

impl Record for Frame {
    const EMPTY: Frame = Frame { info: PageInfo { ty: PageType::None, count: 0, pinned: false }, sum: 0 };

    /// `[type | pinned << 8, type count, checksum low, checksum high]`: all zero for an
    /// untyped, unpinned frame.
    fn to_words(self) -> [u32; 4] {
        let w0 = self.info.ty as u32 | u32::from(self.info.pinned) << 8;
        [w0, self.info.count, self.sum as u32, (self.sum >> 32) as u32]
    }

    fn from_words(w: [u32; 4]) -> Frame {
        let ty = match w[0] & 0xff {
            1 => PageType::Writable,
            2 => PageType::L1,
            3 => PageType::L2,
            4 => PageType::L3,
            5 => PageType::PaeXenL2,
            _ => PageType::None,
        };
        let info = PageInfo { ty, count: w[1], pinned: w[0] & 0x100 != 0 };
        Frame { info, sum: u64::from(w[2]) | u64::from(w[3]) << 32 }
    }
}

/// How this hypervisor is configured for the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HvConfig {
    /// `HYPERVISOR_VIRT_START`: the first virtual address of Xen's own area, whose L2 slots
    /// the guest may not touch.
    pub(crate) virt_start: u32,
    /// The domain has I/O capabilities (`iomem_caps` / `ioport_caps` not empty), so its L1
    /// entries may carry the cache attributes PAT, PCD and PWT.
    pub(crate) io_caps: bool,
}

/// Xen's view of the domain: the frame table, the base pointer and the domain's initial
/// page table (where the linear map lives).
pub(crate) struct HvState {
    /// Xen's `frame_table`: a [`Frame`] per frame of RAM, in frames of the domain's memory,
    /// reserved by [`init_frametable`](Self::init_frametable) (O(1) per lookup).
    pub(crate) frames: FrameMap<Frame>,
    /// The frames the table covers, `[0, covered)` (zero before `init_frametable` and after
    /// `free_frametable`).
    pub(crate) covered: Pfn,
    pub(crate) cfg: HvConfig,
    /// The calling vCPU's root installed with `MMUEXT_NEW_BASEPTR` (holds one type reference).
    pub(crate) base: Option<Pfn>,
    /// The other vCPUs' base pointers (`vcpu.rs`).
    pub(crate) bases: crate::vcpu::Bases,
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

/// `_PAGE_PSE` in a directory entry.
const PSE: u64 = PteFlags::PSE.bits();

impl HvState {
    pub(crate) const fn new(cfg: HvConfig) -> Self {
        HvState {
            frames: FrameMap::new(),
            covered: Pfn::new(0),
            cfg,
            base: None,
            bases: crate::vcpu::Bases::new(),
            pt_base: None,
            anomalies: 0,
            pinned_now: 0,
            stats: HvStats::new(),
            trace: Trace::new(),
        }
    }

    /// Xen's `init_frametable`: reserves the frame table's records for every frame of RAM,
    /// `[0, mem.max_pfn())`, in frames of `mem`, so no hypercall ever allocates.
    ///
    /// # Errors
    /// [`NoFrame`] if `mem` cannot supply them or the table exists already; every frame taken
    /// is given back.
    pub(crate) fn init_frametable<P: PhysMem>(&mut self, mem: &P) -> Result<(), NoFrame> {
        if self.covered != Pfn::new(0) {
            return Err(NoFrame);
        }
        self.frames.reserve(mem, mem.max_pfn())?;
        self.covered = mem.max_pfn();
        Ok(())
    }

    /// Gives the frame table's frames back; every frame is beyond the table afterwards.
    pub(crate) fn free_frametable<P: PhysMem>(&mut self, mem: &P) {
        self.frames.clear(mem);
        self.covered = Pfn::new(0);
    }

    /// Frames of memory the frame table holds.
    pub(crate) fn frametable_frames<P: PhysMem>(&self, mem: &P) -> usize {
        self.frames.frames(mem)
    }

    /// `pfn` itself, if it is RAM of the domain the frame table covers.
    pub(crate) fn check_frame<P: PhysMem>(&self, mem: &P, pfn: Pfn) -> Result<Pfn, XenError> {
        if pfn >= mem.max_pfn() {
            return Err(XenError::ForeignFrame { pfn });
        }
        if pfn >= self.covered {
            return Err(XenError::Capacity { pfn });
        }
        Ok(pfn)
    }

    /// A frame's record (all zero beyond the table). O(1).
    fn frame<P: PhysMem>(&self, mem: &P, pfn: Pfn) -> Frame {
        self.frames.get(mem, pfn)
    }

    /// Changes the record of `pfn`, a frame [`check_frame`](Self::check_frame) accepted. O(1).
    fn update<P: PhysMem>(&mut self, mem: &P, pfn: Pfn, f: impl FnOnce(&mut Frame)) {
        // The table is reserved over every frame `check_frame` accepts: the change allocates
        // nothing and cannot fail.
        let _ = self.frames.update(mem, pfn, f);
    }

    /// A frame's type information (all zero beyond the table). O(1).
    pub(crate) fn info<P: PhysMem>(&self, mem: &P, pfn: Pfn) -> PageInfo {
        self.frame(mem, pfn).info
    }

    /// Every frame with a record (typed, counted or pinned), in pfn order. O(frames of RAM).
    pub(crate) fn held<'a, P: PhysMem>(&'a self, mem: &'a P) -> impl Iterator<Item = (Pfn, PageInfo)> + 'a {
        self.frames.iter(mem).map(|(pfn, f)| (pfn, f.info))
    }

    /// Whether `pfn` is a validated table (a page-table type with references).
    pub(crate) fn validated<P: PhysMem>(&self, mem: &P, pfn: Pfn) -> Option<PageType> {
        let i = self.info(mem, pfn);
        (i.ty.is_table() && i.count > 0).then_some(i.ty)
    }

    /// The guest's slots of a table of type `ty`: all of them, except the Xen-private top of a
    /// two-level L2 or of the PAE L2 in slot 3 (`is_guest_l2_slot`).
    pub(crate) fn guest_slots<M: PagingMode>(&self, ty: PageType) -> u32 {
        first_private_slot::<M>(ty, self.cfg.virt_start).min(entries::<M>(ty))
    }

    /// `get_page_type(page, want)`: takes one type reference, validating the page as a table
    /// of type `want` if this is its first one. A page with live references of another type
    /// (a plain L2 asked for as the L2 of a PAE L3's slot 3, or the reverse, included) is
    /// refused.
    pub(crate) fn get_page_type<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        pfn: Pfn,
        want: PageType,
    ) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        let info = self.info(mem, i);
        if info.count > 0 {
            if info.ty == want {
                let count = info.count.checked_add(1).ok_or(XenError::CountOverflow { pfn })?;
                self.update(mem, i, |f| f.info.count = count);
                return Ok(());
            }
            if info.ty == PageType::Writable && want.is_table() {
                return Err(XenError::MappedWritable { pfn, mappings: info.count });
            }
            return Err(XenError::TypeConflict { pfn, want, has: info.ty, count: info.count });
        }
        // First reference: the page takes the type now, so an entry of the table being
        // validated cannot reference the table itself under another type.
        self.update(mem, i, |f| {
            f.info.ty = want;
            f.info.count = 1;
        });
        if want.is_table() {
            match self.validate::<M, P>(mem, pfn, want) {
                Ok(sum) => {
                    self.update(mem, i, |f| f.sum = sum);
                    self.stats.validations += 1;
                }
                Err(e) => {
                    self.update(mem, i, |f| {
                        f.info.ty = PageType::None;
                        f.info.count = 0;
                    });
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
        let info = self.info(mem, i);
        if info.count == 0 || info.ty != ty {
            self.anomalies += 1;
            return;
        }
        self.update(mem, i, |f| f.info.count -= 1);
        if info.count > 1 {
            return;
        }
        if ty.is_table() {
            // If the table changed behind the hypervisor's back, the entries read here may not
            // be the ones that took references: mismatched puts are counted as anomalies and
            // reported by `verify` (and `unpin` reports the change itself).
            for idx in 0..self.guest_slots::<M>(ty) {
                let e = read::<M, P>(mem, pfn, idx);
                self.put_entry::<M, P>(mem, pfn, ty, idx, e);
            }
            self.stats.devalidations += 1;
        }
        self.update(mem, i, |f| {
            f.info.ty = PageType::None;
            f.sum = 0;
        });
    }

    /// Validates every guest entry of `table` as a table of type `ty`, taking the references
    /// its entries need (`alloc_l1_table`, `alloc_l2_table`, `alloc_l3_table`); on a refusal
    /// gives back the ones already taken. A PAE L3 must hold in slot 3 an L2 no other L3 holds
    /// (`create_pae_xen_mappings`). Returns the checksum of the whole table.
    fn validate<M: PagingMode, P: PhysMem>(&mut self, mem: &P, table: Pfn, ty: PageType) -> Result<u64, XenError> {
        let n = self.guest_slots::<M>(ty);
        for idx in 0..n {
            let e = read::<M, P>(mem, table, idx);
            if let Err(err) = self.get_entry::<M, P>(mem, table, ty, idx, e) {
                self.unvalidate::<M, P>(mem, table, ty, idx);
                return Err(err);
            }
        }
        if ty == PageType::L3 {
            // Slot 3 was validated as a PaeXenL2 above, so it is present.
            let l2 = Pud::from_raw(read::<M, P>(mem, table, 3)).pfn();
            if self.info(mem, l2).count != 1 {
                self.unvalidate::<M, P>(mem, table, ty, n);
                return Err(XenError::PaeL3SlotShared { table, l2 });
            }
        }
        Ok(checksum::<M, P>(mem, table, ty))
    }

    /// Gives back the references entries `[0, upto)` of `table` took while it was validated.
    fn unvalidate<M: PagingMode, P: PhysMem>(&mut self, mem: &P, table: Pfn, ty: PageType, upto: u32) {
        for back in (0..upto).rev() {
            let e = read::<M, P>(mem, table, back);
            self.put_entry::<M, P>(mem, table, ty, back, e);
        }
    }

    /// The type the table an entry of a `ty` table at `index` links must have: L1 under an
    /// L2, L2 under a PAE L3, the `PGT_pae_xen_l2` L2 in slot 3.
    fn child_type(ty: PageType, index: u32) -> Option<PageType> {
        match ty {
            PageType::L3 if index == 3 => Some(PageType::PaeXenL2),
            other => other.child(),
        }
    }

    /// The references the raw entry `e` at `table[index]` must hold in a validated table of
    /// type `ty` (`get_page_from_l1e` / `l2e` / `l3e`): its flags pass the level's disallow
    /// mask, an L1 entry maps a frame of the domain (writable only if it may be), a directory
    /// entry links a table of the level below, or (`get_l2_linear_pagetable`) an L2 entry
    /// without `_PAGE_RW` links a validated L2: a linear page table.
    fn get_entry<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        table: Pfn,
        ty: PageType,
        index: u32,
        e: u64,
    ) -> Result<(), XenError> {
        if ty == PageType::L3 && index == 3 && e & PteFlags::PRESENT.bits() == 0 {
            return Err(XenError::PaeL3SlotEmpty { table });
        }
        if e & PteFlags::PRESENT.bits() == 0 {
            return Ok(());
        }
        if ty.is_l2() && e & PSE != 0 {
            return Err(XenError::LargePage { table, index });
        }
        let bits = e & disallow_mask::<M>(ty, self.cfg.io_caps);
        if bits != 0 {
            return Err(XenError::DisallowedFlags { table, index, level: ty, bits });
        }
        match decode(ty, e) {
            Decoded::Empty | Decoded::Large => Ok(()),
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
            Decoded::Table { pfn } => {
                let Some(child) = Self::child_type(ty, index) else { return Ok(()) };
                match self.get_page_type::<M, P>(mem, pfn, child) {
                    Ok(()) => Ok(()),
                    Err(err) if ty.is_l2() => self.get_l2_linear_pagetable(mem, table, pfn, e).map_err(|()| err),
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// `get_l2_linear_pagetable`: an L2 entry that links an L2 is accepted if it is read-only
    /// and the L2 is the table itself (no reference) or another validated L2 (one more type
    /// reference).
    fn get_l2_linear_pagetable<P: PhysMem>(&mut self, mem: &P, table: Pfn, pfn: Pfn, e: u64) -> Result<(), ()> {
        if e & PteFlags::RW.bits() != 0 {
            return Err(());
        }
        if pfn == table {
            return Ok(());
        }
        let i = self.check_frame(mem, pfn).map_err(|_| ())?;
        let info = self.info(mem, i);
        if !info.ty.is_l2() || info.count == 0 {
            return Err(());
        }
        let count = info.count.checked_add(1).ok_or(())?;
        self.update(mem, i, |f| f.info.count = count);
        Ok(())
    }

    /// Drops the references the raw entry `e` at `table[index]` of a validated table of type
    /// `ty` held (`put_page_from_l1e` / `l2e` / `l3e`).
    fn put_entry<M: PagingMode, P: PhysMem>(&mut self, mem: &P, table: Pfn, ty: PageType, index: u32, e: u64) {
        if e & PteFlags::PRESENT.bits() == 0 || (ty.is_l2() && e & PSE != 0) {
            return;
        }
        match decode(ty, e) {
            Decoded::Page { pfn, writable: true } => self.put_page_type::<M, P>(mem, pfn, PageType::Writable),
            Decoded::Table { pfn } if ty.is_l2() => {
                if pfn == table {
                    return; // a linear self-mapping holds no reference
                }
                // An L1, or through a linear page table another L2.
                let has = self.info(mem, pfn).ty;
                let want = if has.is_l2() { has } else { PageType::L1 };
                self.put_page_type::<M, P>(mem, pfn, want)
            }
            Decoded::Table { pfn } => {
                if let Some(child) = Self::child_type(ty, index) {
                    self.put_page_type::<M, P>(mem, pfn, child)
                }
            }
            Decoded::Empty | Decoded::Large | Decoded::Page { writable: false, .. } => {}
        }
    }

    /// The checked `*ptr = val` of `mod_l1_entry` / `mod_l2_entry` / `mod_l3_entry`: the slot
    /// must be the guest's (not Xen-private, not the final slot of a PAE L3), the new entry is
    /// validated (taking its references), stored, then the old entry's references dropped.
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
        if ty.is_l2() && index >= self.guest_slots::<M>(ty) {
            return Err(XenError::XenPrivateSlot { table, index });
        }
        if ty == PageType::L3 && index >= 3 {
            return Err(XenError::PaeL3Slot3Update { table });
        }
        self.apply_entry::<M, P>(mem, table, ty, index, val)
    }

    /// Validates the new entry, stores it, drops the old one's references, keeps the checksum.
    fn apply_entry<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        table: Pfn,
        ty: PageType,
        index: u32,
        val: u64,
    ) -> Result<(), XenError> {
        let old = read::<M, P>(mem, table, index);
        self.get_entry::<M, P>(mem, table, ty, index, val)?;
        hv_store::<M, P>(mem, table, ty, index, val);
        self.put_entry::<M, P>(mem, table, ty, index, old);
        self.update(mem, table, |f| f.sum = f.sum.wrapping_sub(mix(index, old)).wrapping_add(mix(index, val)));
        Ok(())
    }

    /// `ptwr_do_page_fault` + `ptwr_emulated_update`: the guest stored `bytes` bytes of `val`
    /// at the virtual address `addr` through a read-only mapping and faulted. If that mapping
    /// (in the current base pointer's tables) is a read-only mapping of a validated L1, the
    /// store is emulated: a store of less than an entry is merged with the rest of the entry,
    /// the new entry is validated like `mod_l1_entry` and written (one store), and the old
    /// one's references are dropped. A PAE upper-half store whose entry does not validate is
    /// written with `_PAGE_PRESENT` cleared ("the guest has simply got the two writes the
    /// wrong way round").
    pub(crate) fn ptwr<M: PagingMode, P: PhysMem>(
        &mut self,
        mem: &P,
        addr: u32,
        val: u64,
        bytes: u32,
    ) -> Result<(), XenError> {
        let bail = XenError::NotPtwr { va: addr };
        let root = self.base.ok_or(bail)?;
        let (dir, di) = walk::pmd_table::<M, P>(mem, root, addr).ok_or(bail)?;
        let pde: Pmd = read_entry::<M, _, P>(mem, dir, di);
        if !pde.is_present() || pde.is_large() || self.check_frame(mem, pde.pfn()).is_err() {
            return Err(bail);
        }
        let pte: Pte = read_entry::<M, _, P>(mem, pde.pfn(), M::pte_index(addr));
        if !pte.is_present() || pte.flags().contains(PteFlags::RW) || self.check_frame(mem, pte.pfn()).is_err() {
            return Err(bail);
        }
        let l1 = pte.pfn();
        if self.validated(mem, l1) != Some(PageType::L1) {
            return Err(bail);
        }
        // Only naturally aligned stores of at most one entry.
        if !matches!(bytes, 1 | 2 | 4 | 8) || bytes > M::ENTRY_SIZE || addr & (bytes - 1) != 0 {
            return Err(bail);
        }
        let off = addr & 0xfff;
        let index = off / M::ENTRY_SIZE;
        let shift = (off % M::ENTRY_SIZE) * 8;
        let mut new = val;
        if bytes != M::ENTRY_SIZE {
            let full = read::<M, P>(mem, l1, index);
            let mask = (u64::MAX >> (64 - bytes * 8)) << shift;
            new = (full & !mask) | ((val << shift) & mask);
        }
        self.stats.ptwr += 1;
        match self.apply_entry::<M, P>(mem, l1, PageType::L1, index, new) {
            Err(_) if M::PAE && bytes == 4 && shift == 32 && new & PteFlags::PRESENT.bits() != 0 => {
                let fixed = new & !PteFlags::PRESENT.bits();
                self.apply_entry::<M, P>(mem, l1, PageType::L1, index, fixed)
            }
            r => r,
        }
    }

    /// `MMUEXT_PIN_Ln_TABLE`: takes a type reference for the pin, validating the table (and,
    /// through its entries, every table below it) if it is not validated yet.
    pub(crate) fn pin<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn, ty: PageType) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        if self.info(mem, i).pinned {
            return Err(XenError::AlreadyPinned { pfn });
        }
        self.get_page_type::<M, P>(mem, pfn, ty)?;
        self.update(mem, i, |f| f.info.pinned = true);
        self.stats.pins[ty.level_index()] += 1;
        self.pinned_now += 1;
        self.stats.max_pinned = self.stats.max_pinned.max(self.pinned_now);
        Ok(())
    }

    /// `MMUEXT_UNPIN_TABLE`: drops the pin's reference. If the table's contents changed
    /// behind the hypervisor's back the unpin still happens, and the change is reported.
    pub(crate) fn unpin<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn) -> Result<(), XenError> {
        let i = self.check_frame(mem, pfn)?;
        let f = self.frame(mem, i);
        if !f.info.pinned {
            return Err(XenError::NotPinned { pfn });
        }
        self.check_unpin_loaded(pfn)?;
        self.update(mem, i, |f| f.info.pinned = false);
        self.pinned_now -= 1;
        let modified = f.info.ty.is_table() && checksum::<M, P>(mem, pfn, f.info.ty) != f.sum;
        self.put_page_type::<M, P>(mem, pfn, f.info.ty);
        if modified {
            return Err(XenError::TableModified { table: pfn, level: f.info.ty });
        }
        Ok(())
    }

    /// `MMUEXT_NEW_BASEPTR` (`new_guest_cr3`): the base pointer takes a root-type reference on
    /// the new root (`get_page_and_type_from_pagenr(mfn, PGT_root_page_table)`), validating it
    /// if it is not validated yet: no pin is needed. Then the reference on the old root goes.
    pub(crate) fn new_baseptr<M: PagingMode, P: PhysMem>(&mut self, mem: &P, pfn: Pfn) -> Result<(), XenError> {
        self.get_page_type::<M, P>(mem, pfn, root_type::<M>())?;
        if let Some(old) = self.base.replace(pfn) {
            self.put_page_type::<M, P>(mem, old, root_type::<M>());
        }
        Ok(())
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

    /// Calls `f` with every table of the tree rooted at `root` (the root first), each once.
    pub(crate) fn tree<M: PagingMode, P: PhysMem>(&self, mem: &P, root: Pfn, f: &mut dyn FnMut(Pfn)) {
        fn go<M: PagingMode, P: PhysMem>(mem: &P, t: Pfn, ty: PageType, f: &mut dyn FnMut(Pfn)) {
            f(t);
            if let Some(child) = ty.child() {
                for i in 0..entries::<M>(ty) {
                    if let Decoded::Table { pfn } = decode(ty, read::<M, P>(mem, t, i)) {
                        if pfn < mem.max_pfn() {
                            go::<M, P>(mem, pfn, child, f);
                        }
                    }
                }
            }
        }
        go::<M, P>(mem, root, root_type::<M>(), f);
    }

    /// Pinned tables by level. O(frames of RAM).
    pub(crate) fn pinned_counts<P: PhysMem>(&self, mem: &P) -> PinnedCounts {
        let mut c = PinnedCounts::default();
        for (_, info) in self.held(mem).filter(|(_, i)| i.pinned) {
            match info.ty {
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
        for (pfn, f) in self.frames.iter(mem) {
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
            for idx in 0..self.guest_slots::<M>(ty) {
                let e = read::<M, P>(mem, pfn, idx);
                if let Some(rule) = self.entry_rule::<M, P>(mem, pfn, ty, idx, e) {
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

    /// Whether the raw entry `e` at `table[index]` of a validated table of type `ty` breaks
    /// its rule under the current types (a read-only check, used by `verify`).
    fn entry_rule<M: PagingMode, P: PhysMem>(
        &self,
        mem: &P,
        table: Pfn,
        ty: PageType,
        index: u32,
        e: u64,
    ) -> Option<&'static str> {
        if ty == PageType::L3 && index == 3 && e & PteFlags::PRESENT.bits() == 0 {
            return Some("slot 3 of a PAE l3 is empty");
        }
        if e & PteFlags::PRESENT.bits() == 0 {
            return None;
        }
        if ty.is_l2() && e & PSE != 0 {
            return Some("large page in a PV directory");
        }
        if e & disallow_mask::<M>(ty, self.cfg.io_caps) != 0 {
            return Some("flags Xen forbids at this level");
        }
        let (t, writable) = match decode(ty, e) {
            Decoded::Empty | Decoded::Large => return None,
            Decoded::Page { pfn, writable } => (pfn, writable),
            Decoded::Table { pfn } => (pfn, false),
        };
        if self.check_frame(mem, t).is_err() {
            return Some("references a frame outside the domain");
        }
        let ti = self.info(mem, t);
        let linear = ty.is_l2() && e & PteFlags::RW.bits() == 0 && (t == table || (ti.ty.is_l2() && ti.count > 0));
        match Self::child_type(ty, index) {
            _ if ty == PageType::L1 => (writable && ti.ty != PageType::Writable)
                .then_some("writable mapping not counted (a page-table page mapped writable?)"),
            Some(PageType::L1) if ti.ty != PageType::L1 && !linear => {
                Some("references a page that is not a validated l1")
            }
            Some(want) if want != PageType::L1 && ti.ty != want => {
                Some("references a page that is not a validated l2 of that slot")
            }
            _ => None,
        }
    }
}
