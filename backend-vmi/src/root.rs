//! Roots: what `write_cr3` hands the CPU, and the per-vCPU shadow PDPT of PAE.
//!
//! Two-level: the root is a typed L2, and the CPU gets its shadow. PAE: the root is a 4-entry
//! PDPT that is never typed ("cached entirely by the processor"); the backend keeps one
//! shadow PDPT frame per vCPU, rebuilt from the guest PDPT at every `write_cr3` (each entry
//! linking the shadow of its pmd) and patched on `set_pud` into the loaded guest PDPT.

use crate::backend::{Loaded, State, Vmi};
use crate::shadow;
use crate::stats::Check;
use crate::types::PageType;
use crate::violation::{Pending, Violation};
use i386_mm::{entry_present, PagingMode, Pfn, PhysMem, PDPT_ALLOWED};

/// What a guest PDPT entry becomes in the shadow PDPT: `Ok((value, linked pmd))`, or
/// `Err((pmd, its type))` when it links a page that is not a typed L2.
pub(crate) fn pdpt_entry<M: PagingMode, const MAX: usize>(
    st: &State<MAX>,
    g: u64,
) -> Result<(u64, Option<Pfn>), (Pfn, PageType)> {
    if !entry_present(g) {
        return Ok((g, None));
    }
    let child = Pfn::from_phys(g & M::ADDR_MASK);
    match st.pages.get(child) {
        Some(t) if t.ty.is_l2() => Ok((shadow::relink::<M>(g, t.shadow), Some(child))),
        other => Err((child, other.map_or(PageType::NORMAL, |t| t.ty))),
    }
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// Forgets the loaded root: drops the shadow PDPT's links and zeroes it.
    pub(crate) fn unload(&self, st: &mut State<MAX>) {
        for i in 0..4 {
            self.pdpt_unlink(st, i);
        }
        if let Some(f) = st.pdpt {
            for i in 0..4 {
                // SAFETY: the shadow PDPT is our frame; 4 entries.
                unsafe { shadow::write::<M, P>(&self.mem, f, i, 0) };
            }
        }
        st.loaded = None;
    }

    fn pdpt_unlink(&self, st: &mut State<MAX>, i: usize) {
        if let Some(pmd) = st.pdpt_links[i].take() {
            if let Some(t) = st.pages.get_mut(pmd) {
                t.links = t.links.saturating_sub(1);
            }
        }
    }

    /// Sets shadow PDPT entry `i` from guest value `g` (an entry linking no typed L2 becomes
    /// empty; the caller reports it).
    pub(crate) fn pdpt_set(&self, st: &mut State<MAX>, i: usize, g: u64) {
        let Some(frame) = st.pdpt else { return };
        self.pdpt_unlink(st, i);
        let (v, child) = pdpt_entry::<M, MAX>(st, g).unwrap_or((0, None));
        if let Some(pmd) = child {
            if let Some(t) = st.pages.get_mut(pmd) {
                t.links += 1;
            }
            st.pdpt_links[i] = Some(pmd);
        }
        // SAFETY: the shadow PDPT is our frame, `i < 4`.
        unsafe { shadow::write::<M, P>(&self.mem, frame, i as u32, v) };
        st.pdpt_updates += 1;
    }

    /// Checks a PDPT entry's reserved bits and what it links (for `set_pud` and `write_cr3`).
    pub(crate) fn check_pdpt_entry(&self, st: &State<MAX>, pend: &mut Pending, pdpt: Pfn, index: u32, g: u64) -> bool {
        if !entry_present(g) {
            return true;
        }
        self.counters.check(Check::PdptEntry);
        let mut ok = true;
        if (g & !M::ADDR_MASK) & !PDPT_ALLOWED.bits() != 0 {
            pend.push(Violation::BadPdptEntry { pdpt, index, value: g });
            ok = false;
        }
        self.counters.check(Check::ChildAnnounced);
        if let Err((child, child_type)) = pdpt_entry::<M, MAX>(st, g) {
            pend.push(Violation::UnannouncedChild { table: pdpt, index, child, child_type });
            ok = false;
        }
        ok
    }

    /// `write_cr3`: the value the CPU must load for guest root `cr3`.
    pub(crate) fn load_root(&self, st: &mut State<MAX>, pend: &mut Pending, cr3: u32) -> u32 {
        self.counters.check(Check::RootKnown);
        if !M::PAE {
            let root = Pfn::from_phys((cr3 & !0xfff) as u64);
            return match st.pages.get(root) {
                Some(t) if t.ty.is_l2() => {
                    let hw = t.shadow.phys() as u32 | (cr3 & 0xfff);
                    st.loaded = Some(Loaded { root, base: 0, cr3 });
                    hw
                }
                _ => {
                    pend.push(Violation::UnknownRoot { cr3 });
                    st.loaded = None;
                    cr3
                }
            };
        }
        let Some(frame) = st.pdpt else {
            pend.push(Violation::NoShadowPdpt { cr3 });
            st.loaded = None;
            return cr3;
        };
        let pa = (cr3 & !0x1f) as u64;
        let root = Pfn::from_phys(pa);
        let base = ((pa & 0xfff) / 8) as u32;
        self.counters.check(Check::PfnInRange);
        if root >= self.mem.max_pfn() {
            pend.push(Violation::UnknownRoot { cr3 });
            self.unload(st);
            return cr3;
        }
        self.counters.check(Check::PdptUntyped);
        if let Some(t) = st.pages.get(root) {
            pend.push(Violation::PdptTyped { pfn: root, flags: t.ty });
            self.unload(st);
            return cr3;
        }
        let mut g = [0u64; 4];
        let mut known = 0;
        for (i, e) in g.iter_mut().enumerate() {
            *e = i386_mm::read_entry(&self.mem, root, base + i as u32, true);
            if self.check_pdpt_entry(st, pend, root, base + i as u32, *e) && entry_present(*e) {
                known += 1;
            }
        }
        if known == 0 {
            pend.push(Violation::UnknownRoot { cr3 });
            self.unload(st);
            return cr3;
        }
        self.unload(st);
        for (i, e) in g.iter().enumerate() {
            self.pdpt_set(st, i, *e);
        }
        st.loaded = Some(Loaded { root, base, cr3 });
        frame.phys() as u32
    }

    /// `read_cr3`: the guest's view of the CPU's CR3 value `hw`.
    pub(crate) fn guest_cr3(&self, st: &State<MAX>, hw: u32) -> u32 {
        if M::PAE {
            match (st.pdpt, st.loaded) {
                (Some(f), Some(l)) if f.phys() == (hw & !0x1f) as u64 => l.cr3,
                _ => hw,
            }
        } else {
            match st.pages.by_shadow(Pfn::from_phys((hw & !0xfff) as u64)) {
                Some(t) if t.ty.is_l2() => t.pfn.phys() as u32 | (hw & 0xfff),
                _ => hw,
            }
        }
    }
}
