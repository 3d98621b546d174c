//! VMI's two ROM calls, `AllocatePage` and `ReleasePage`, with the debug checks of
//! `vmi_set_page_type` / `vmi_check_page_type` (`CONFIG_DEBUG_PAGE_TYPE`).

use crate::backend::{State, Vmi};
use crate::shadow::{self, entries, linked, Tracked};
use crate::stats::Check;
use crate::types::PageType;
use crate::violation::{Pending, Violation};
use i386_mm::{zero_frame, PagingMode, Pfn, PhysMem};

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// VMI's `AllocatePage(pfn, flags, clone_pfn, start, count)`: types `pfn` and builds its
    /// shadow. The hooks call it with the flags of their level; it is public so a caller can
    /// pass any flags (and so tests can build sequences the hooks never produce).
    ///
    /// Checks, in order (each refusal leaves the page untyped): the flags name `PT` or `PD`
    /// (`PDP` is refused: the PAE PDPT is never typed); the page is in RAM and untyped and is
    /// not the loaded PDPT; with `CLONE`, `clone_pfn` is an L2 with the same `PAE` bit and
    /// `[start, start + count)` fits; with `ZEROED`, the page is zero (with `CLONE` only its
    /// user entries `[0, USER_PTRS_PER_PGD)`: reported, not refused); a tracking slot is
    /// free. The shadow then starts as the guest page mirrored, except that with `CLONE`
    /// entries `[start, start + count)` are copied from the source's *shadow*.
    #[doc(alias = "vmi_allocate_page")]
    pub fn allocate_page(
        &self,
        pfn: Pfn,
        flags: PageType,
        clone_pfn: Pfn,
        start: u32,
        count: u32,
    ) -> Result<(), Violation> {
        self.locked(|st, pend| self.allocate(st, pend, pfn, flags, (clone_pfn, start, count))).1
    }

    /// VMI's `ReleasePage(pfn, flags)`: the page goes back to `NORMAL` and its shadow is
    /// freed. Checks (each refusal keeps the page typed): the page is typed, `flags` names its
    /// level (or none), it is not the loaded root, and no shadow entry links it any more.
    #[doc(alias = "vmi_release_page")]
    pub fn release_page(&self, pfn: Pfn, flags: PageType) -> Result<(), Violation> {
        self.locked(|st, pend| self.release(st, pend, pfn, flags)).1
    }

    pub(crate) fn allocate(
        &self,
        st: &mut State<MAX>,
        pend: &mut Pending,
        pfn: Pfn,
        flags: PageType,
        (clone_pfn, start, count): (Pfn, u32, u32),
    ) {
        let c = &self.counters;
        c.check(Check::Flags);
        if flags.contains(PageType::PDP) {
            return pend.push(Violation::PdptTyped { pfn, flags });
        }
        if !(flags.is_l1() || flags.is_l2()) {
            return pend.push(Violation::BadFlags { pfn, flags });
        }
        c.check(Check::PfnInRange);
        if pfn >= self.mem.max_pfn() {
            return pend.push(Violation::PfnOutOfRange { pfn });
        }
        c.check(Check::AllocUntyped);
        if let Some(t) = st.pages.get(pfn) {
            return pend.push(Violation::AllocTyped { pfn, current: t.ty, requested: flags });
        }
        if M::PAE {
            c.check(Check::PdptUntyped);
            if st.loaded.is_some_and(|l| l.root == pfn) {
                return pend.push(Violation::PdptTyped { pfn, flags });
            }
        }
        let n = entries::<M>();
        let mut source = None;
        if flags.contains(PageType::CLONE) {
            c.check(Check::CloneSourceL2);
            let src = match st.pages.get(clone_pfn) {
                Some(t) if t.ty.is_l2() => *t,
                other => {
                    let source_type = other.map_or(PageType::NORMAL, |t| t.ty);
                    return pend.push(Violation::CloneSourceNotL2 { pfn, source: clone_pfn, source_type });
                }
            };
            c.check(Check::ClonePae);
            if src.ty.contains(PageType::PAE) != flags.contains(PageType::PAE) {
                return pend.push(Violation::ClonePaeMismatch {
                    pfn,
                    source: clone_pfn,
                    source_type: src.ty,
                    requested: flags,
                });
            }
            c.check(Check::CloneRange);
            match start.checked_add(count) {
                Some(end) if end <= n => source = Some((src.shadow, start..end)),
                _ => return pend.push(Violation::CloneRange { pfn, start, count }),
            }
        }
        if flags.contains(PageType::ZEROED) {
            c.check(Check::Zeroed);
            let limit = if flags.contains(PageType::CLONE) { M::USER_PTRS_PER_PGD.min(n) } else { n };
            if let Some((index, value)) =
                (0..limit).map(|i| (i, shadow::read::<M, P>(&self.mem, pfn, i))).find(|&(_, v)| v != 0)
            {
                pend.push(Violation::NotZeroed { pfn, index, value });
            }
        }
        c.check(Check::Capacity);
        if st.pages.is_full() || st.pool.free() == 0 {
            return pend.push(Violation::CapacityExhausted { pfn, capacity: MAX });
        }
        let Some(sh) = st.pool.take() else { return };
        zero_frame(&self.mem, sh);
        st.pages.insert(Tracked { pfn, ty: flags, shadow: sh, links: 0, pdpt_slot: 0 });
        st.created += 1;
        st.peak = st.peak.max(st.pages.len());
        for i in 0..n {
            match &source {
                Some((src_shadow, range)) if range.contains(&i) => {
                    let mut v = shadow::read::<M, P>(&self.mem, *src_shadow, i);
                    if v == 0 {
                        continue;
                    }
                    if let Some(child_shadow) = linked::<M>(v) {
                        match st.pages.by_shadow_mut(child_shadow) {
                            Some(child) => child.links += 1,
                            // The source's shadow links no shadow: copy nothing, verify() will
                            // name the entry.
                            None => v = 0,
                        }
                    }
                    // SAFETY: `sh` is our shadow frame, `i < entries`.
                    unsafe { shadow::write::<M, P>(&self.mem, sh, i, v) };
                    st.mirrored += 1;
                }
                _ => {
                    let g = shadow::read::<M, P>(&self.mem, pfn, i);
                    if g != 0 {
                        self.mirror(st, pend, pfn, i, g);
                    }
                }
            }
        }
    }

    pub(crate) fn release(&self, st: &mut State<MAX>, pend: &mut Pending, pfn: Pfn, flags: PageType) {
        let c = &self.counters;
        c.check(Check::ReleaseTyped);
        let Some(t) = st.pages.get(pfn).copied() else {
            return pend.push(Violation::ReleaseUntyped { pfn, requested: flags });
        };
        c.check(Check::ReleaseLevel);
        if !flags.level().is_empty() && flags.level() != t.ty.level() {
            return pend.push(Violation::ReleaseWrongLevel { pfn, current: t.ty, requested: flags });
        }
        c.check(Check::ReleaseNotLoaded);
        if st.loaded.is_some_and(|l| l.root == pfn) {
            return pend.push(Violation::ReleaseLoaded { pfn });
        }
        c.check(Check::ReleaseUnlinked);
        if t.links != 0 {
            return pend.push(Violation::ReleaseLinked { pfn, links: t.links });
        }
        if t.ty.is_l2() {
            for i in 0..entries::<M>() {
                let s = shadow::read::<M, P>(&self.mem, t.shadow, i);
                if let Some(child) = linked::<M>(s).and_then(|cs| st.pages.by_shadow_mut(cs)) {
                    child.links = child.links.saturating_sub(1);
                }
            }
        }
        st.pages.remove(pfn);
        st.pool.give(t.shadow);
        st.freed += 1;
    }
}
