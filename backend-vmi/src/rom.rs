//! VMI's two ROM calls, `AllocatePage` and `ReleasePage`, with the debug checks of
//! `vmi_set_page_type` / `vmi_check_page_type` (`CONFIG_DEBUG_PAGE_TYPE`) and the shadow
//! pager's own.

use crate::rule::{Found, VmiRule};
use crate::shadow::{self, entries, linked, Tracked};
use crate::state::State;
use crate::stats::Check;
use crate::types::PageType;
use i386_paging::{read_raw, zero_frame, PhysMem};
use paravirt_core::{PagingMode, Pfn, Pmd, Pte};

/// `AllocatePage`'s clone arguments: the source L2's frame and the entry range
/// `[start, start + count)` to copy (ignored without `CLONE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct CloneArgs {
    pub(crate) source: Pfn,
    pub(crate) start: u32,
    pub(crate) count: u32,
}

impl<M: PagingMode> State<M> {
    /// `AllocatePage(pfn, flags, clone)`: checks, types `pfn` and builds its shadow from the
    /// pool.
    ///
    /// Checks, in order (each refusal leaves the page untyped): the flags name `PT` or `PD`
    /// (`PDP` is refused: the PAE PDPT is never typed); the page is in RAM and untyped and is
    /// not the loaded PDPT; with `CLONE`, the source is an L2 with the same `PAE` bit and the
    /// range fits; with `ZEROED`, the page is zero (with `CLONE` only its user entries
    /// `[0, USER_PTRS_PER_PGD)`: reported, not refused); a shadow frame is free. The shadow
    /// then starts as the guest page mirrored, except that with `CLONE` the range is copied
    /// from the source's *shadow*.
    pub(crate) fn allocate<P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        found: &mut Found<'_>,
        pfn: Pfn,
        flags: PageType,
        clone: CloneArgs,
    ) {
        self.checks.count(Check::Flags);
        if flags.contains(PageType::PDP) {
            return found.push(VmiRule::PdptTyped { pfn, flags });
        }
        if !(flags.is_l1() || flags.is_l2()) {
            return found.push(VmiRule::BadFlags { pfn, flags });
        }
        self.checks.count(Check::PfnInRange);
        if pfn >= mem.max_pfn() {
            return found.push(VmiRule::PfnOutOfRange { pfn });
        }
        self.checks.count(Check::AllocUntyped);
        if let Some(t) = self.pages.get(mem, pfn) {
            return found.push(VmiRule::AllocTyped { pfn, current: t.ty, requested: flags });
        }
        if M::PAE {
            self.checks.count(Check::PdptUntyped);
            if self.loaded_anywhere(pfn) {
                return found.push(VmiRule::PdptTyped { pfn, flags });
            }
        }
        let n = entries::<M>();
        let mut source = None;
        if flags.contains(PageType::CLONE) {
            self.checks.count(Check::CloneSourceL2);
            let src = match self.pages.get(mem, clone.source) {
                Some(t) if t.ty.is_l2() => t,
                other => {
                    let source_type = other.map_or(PageType::NORMAL, |t| t.ty);
                    return found.push(VmiRule::CloneSourceNotL2 { pfn, source: clone.source, source_type });
                }
            };
            self.checks.count(Check::ClonePae);
            if src.ty.contains(PageType::PAE) != flags.contains(PageType::PAE) {
                return found.push(VmiRule::ClonePaeMismatch {
                    pfn,
                    source: clone.source,
                    source_type: src.ty,
                    requested: flags,
                });
            }
            self.checks.count(Check::CloneRange);
            match clone.start.checked_add(clone.count) {
                Some(end) if end <= n => source = Some((src.shadow, clone.start..end)),
                _ => return found.push(VmiRule::CloneRange { pfn, start: clone.start, count: clone.count }),
            }
        }
        // `vmi_set_page_type` before `vmi_apply_boot_page_allocations` only records the type
        // (`record_page_type`): "swapper_pg_dir ... already has data on it".
        if flags.contains(PageType::ZEROED) && !self.boot_phase {
            self.checks.count(Check::Zeroed);
            let limit = if flags.contains(PageType::CLONE) { M::USER_PTRS_PER_PGD.min(n) } else { n };
            if let Some((index, value)) = (0..limit).map(|i| (i, read_raw::<M, P>(mem, pfn, i))).find(|&(_, v)| v != 0)
            {
                found.push(VmiRule::NotZeroed { pfn, index, value });
            }
        }
        self.checks.count(Check::Capacity);
        let Some(sh) = self.pool.take(mem) else {
            return found.push(VmiRule::CapacityExhausted { pfn, capacity: self.pool.total() });
        };
        if !self.pages.insert(mem, Tracked { pfn, ty: flags, shadow: sh, links: 0, pdpt_slot: 0 }) {
            // Only a frame the backend uses as a shadow itself, typed through the ROM call,
            // can get here (the map covers all of RAM and `pfn` is untyped).
            self.pool.give(mem, sh);
            return found.push(VmiRule::CapacityExhausted { pfn, capacity: self.pool.total() });
        }
        // SAFETY: `sh` is a pool frame: no shadow uses it and no shadow entry or CR3 links it
        // (a shadow goes back to the pool only once unlinked), so the backend owns it alone
        // and no walker reads it while it is zeroed.
        unsafe { zero_frame(mem, sh) };
        self.created += 1;
        self.peak = self.peak.max(self.pages.len());
        for i in 0..n {
            match &source {
                Some((src_shadow, range)) if range.contains(&i) => self.copy_cloned(mem, *src_shadow, sh, i),
                _ if flags.is_l2() => {
                    let g: Pmd = shadow::load::<M, _, P>(mem, pfn, i);
                    if g != Pmd::EMPTY {
                        self.mirror(mem, found, pfn, i, g);
                    }
                }
                _ => {
                    let g: Pte = shadow::load::<M, _, P>(mem, pfn, i);
                    if g != Pte::EMPTY {
                        self.mirror(mem, found, pfn, i, g);
                    }
                }
            }
        }
    }

    /// Copies entry `i` of the clone source's shadow `src` into the new shadow `dst`, counting
    /// the link it makes.
    fn copy_cloned<P: PhysMem + ?Sized>(&mut self, mem: &P, src: Pfn, dst: Pfn, i: u32) {
        let mut v: Pmd = shadow::load::<M, _, P>(mem, src, i);
        if v == Pmd::EMPTY {
            return;
        }
        if let Some(child_shadow) = linked(v) {
            // The source's shadow links no shadow: copy nothing, verify() will name the entry.
            if !self.pages.update_by_shadow(mem, child_shadow, |child| child.links += 1) {
                v = Pmd::EMPTY;
            }
        }
        shadow::store::<M, _, P>(mem, dst, i, v);
        self.mirrored += 1;
    }

    /// `ReleasePage(pfn, flags)`: the page goes back to `NORMAL` and its shadow to the pool.
    /// Checks (each refusal keeps the page typed): the page is typed, `flags` names its level
    /// (or none), it is not the loaded root, and no shadow entry links it any more.
    pub(crate) fn release<P: PhysMem + ?Sized>(&mut self, mem: &P, found: &mut Found<'_>, pfn: Pfn, flags: PageType) {
        self.checks.count(Check::ReleaseTyped);
        let Some(t) = self.pages.get(mem, pfn) else {
            // Before `vmi_apply_boot_page_allocations` the release is only recorded.
            if self.boot_phase {
                return;
            }
            return found.push(VmiRule::ReleaseUntyped { pfn, requested: flags });
        };
        self.checks.count(Check::ReleaseLevel);
        if !flags.level().is_empty() && flags.level() != t.ty.level() {
            return found.push(VmiRule::ReleaseWrongLevel { pfn, current: t.ty, requested: flags });
        }
        self.checks.count(Check::ReleaseNotLoaded);
        if self.loaded_anywhere(pfn) {
            return found.push(VmiRule::ReleaseLoaded { pfn });
        }
        self.checks.count(Check::ReleaseUnlinked);
        if t.links != 0 {
            return found.push(VmiRule::ReleaseLinked { pfn, links: t.links });
        }
        if t.ty.is_l2() {
            for i in 0..entries::<M>() {
                let s: Pmd = shadow::load::<M, _, P>(mem, t.shadow, i);
                if let Some(cs) = linked(s) {
                    self.pages.update_by_shadow(mem, cs, |child| child.links = child.links.saturating_sub(1));
                }
            }
        }
        self.pages.remove(mem, pfn);
        self.pool.give(mem, t.shadow);
        self.freed += 1;
    }
}
