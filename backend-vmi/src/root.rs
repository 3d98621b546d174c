//! Roots: what `write_cr3` hands the CPU, and the per-vCPU shadow PDPT of PAE.
//!
//! Two-level: the root is a typed L2, and the CPU gets its shadow. PAE: the root is a 4-entry
//! PDPT that is never typed ("cached entirely by the processor"); the backend keeps one
//! shadow PDPT frame per vCPU, rebuilt from the guest PDPT at every `write_cr3` (each entry
//! linking the shadow of its pmd) and patched on `set_pud` into the loaded guest PDPT.
//!
//! CR3 values are physical addresses (plus flag bits in the low 12 bits, or the low 5 in PAE);
//! `Loaded::base` is an index of 8-byte entries inside the PDPT's frame.

use crate::rule::{Found, VmiRule};
use crate::shadow::{self, relink_pud};
use crate::state::{Loaded, State};
use crate::stats::Check;
use crate::types::PageType;
use i386_paging::{read_raw, PhysMem};
use paravirt_core::{PagingMode, Pfn, PhysAddr, Pud, PDPT_ALLOWED};

impl<M: PagingMode> State<M> {
    /// What guest PDPT entry `g` becomes in the shadow PDPT: `Ok((entry, linked pmd))`, or
    /// `Err((pmd, its type))` when it links a page that is not a typed L2.
    ///
    /// An entry linking an untyped page that is all zeroes (2.6.2x's `pagetable_init` points
    /// the unused PDPT slots at `empty_zero_page`) is kept as it is: the page maps nothing,
    /// and `vmi_check_page_type` does not look at the PDP level at all.
    pub(crate) fn pdpt_entry<P: PhysMem + ?Sized>(
        &self,
        mem: &P,
        g: Pud,
    ) -> Result<(Pud, Option<Pfn>), (Pfn, PageType)> {
        if !g.is_present() {
            return Ok((g, None));
        }
        let child = g.pfn();
        match self.pages.get(mem, child) {
            Some(t) if t.ty.is_l2() => Ok((relink_pud(g, t.shadow), Some(child))),
            None if self.zero_page(mem, child) => Ok((g, None)),
            other => Err((child, other.map_or(PageType::NORMAL, |t| t.ty))),
        }
    }

    /// Whether `pfn` is an untyped page of RAM whose every entry is zero (an empty pmd, such
    /// as `empty_zero_page`).
    pub(crate) fn zero_page<P: PhysMem + ?Sized>(&self, mem: &P, pfn: Pfn) -> bool {
        pfn < mem.max_pfn()
            && self.pages.get(mem, pfn).is_none()
            && self.pages.by_shadow(mem, pfn).is_none()
            && (0..crate::shadow::entries::<M>()).all(|i| read_raw::<M, P>(mem, pfn, i) == 0)
    }

    /// Forgets the loaded root: drops the shadow PDPT's links and clears its entries.
    pub(crate) fn unload<P: PhysMem + ?Sized>(&mut self, mem: &P) {
        for i in 0..4 {
            self.pdpt_unlink(mem, i);
        }
        if let Some(f) = self.pdpt {
            for i in 0..4 {
                shadow::clear::<M, Pud, P>(mem, f, i);
            }
        }
        self.loaded = None;
    }

    fn pdpt_unlink<P: PhysMem + ?Sized>(&mut self, mem: &P, i: usize) {
        if let Some(pmd) = self.pdpt_links[i].take() {
            self.pages.update(mem, pmd, |t| t.links = t.links.saturating_sub(1));
        }
    }

    /// Sets shadow PDPT entry `i` (0..4) from guest entry `g` (an entry linking no typed L2
    /// becomes empty; the caller reports it).
    pub(crate) fn pdpt_set<P: PhysMem + ?Sized>(&mut self, mem: &P, i: usize, g: Pud) {
        let Some(frame) = self.pdpt else { return };
        self.pdpt_unlink(mem, i);
        let (v, child) = self.pdpt_entry(mem, g).unwrap_or((Pud::EMPTY, None));
        if let Some(pmd) = child {
            self.pages.update(mem, pmd, |t| t.links += 1);
            self.pdpt_links[i] = Some(pmd);
        }
        shadow::store::<M, _, P>(mem, frame, i as u32, v);
        self.pdpt_updates += 1;
    }

    /// Checks a PDPT entry's reserved bits and what it links (for `set_pud` and `write_cr3`);
    /// `true` if it passes.
    pub(crate) fn check_pdpt_entry<P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        found: &mut Found<'_>,
        pdpt: Pfn,
        index: u32,
        g: Pud,
    ) -> bool {
        if !g.is_present() {
            return true;
        }
        self.checks.count(Check::PdptEntry);
        let mut ok = true;
        // Anything besides the address and PRESENT | PWT | PCD is reserved.
        if g.with_flags(g.flags() & PDPT_ALLOWED) != g {
            found.push(VmiRule::BadPdptEntry { pdpt, index, value: g.raw() });
            ok = false;
        }
        self.checks.count(Check::ChildAnnounced);
        if let Err((child, child_type)) = self.pdpt_entry(mem, g) {
            found.push(VmiRule::UnannouncedChild { table: pdpt, index, child, child_type });
            ok = false;
        }
        ok
    }

    /// `write_cr3`: the CR3 value the CPU must load for the guest's CR3 value `cr3`.
    pub(crate) fn load_root<P: PhysMem + ?Sized>(&mut self, mem: &P, found: &mut Found<'_>, cr3: u32) -> u32 {
        self.checks.count(Check::RootKnown);
        if !M::PAE {
            let root = Pfn::containing(PhysAddr::new(cr3 as u64));
            return match self.pages.get(mem, root) {
                Some(t) if t.ty.is_l2() => {
                    let hw = t.shadow.phys().as_u64() as u32 | (cr3 & 0xfff);
                    self.loaded = Some(Loaded { root, base: 0, cr3 });
                    hw
                }
                _ => {
                    found.push(VmiRule::UnknownRoot { cr3 });
                    self.loaded = None;
                    cr3
                }
            };
        }
        let Some(frame) = self.pdpt else {
            found.push(VmiRule::NoShadowPdpt { cr3 });
            self.loaded = None;
            return cr3;
        };
        let pa = PhysAddr::new((cr3 & !0x1f) as u64);
        let root = Pfn::containing(pa);
        let base = pa.page_offset() / 8;
        self.checks.count(Check::PfnInRange);
        if root >= mem.max_pfn() {
            found.push(VmiRule::UnknownRoot { cr3 });
            self.unload(mem);
            return cr3;
        }
        self.checks.count(Check::PdptUntyped);
        if let Some(t) = self.pages.get(mem, root) {
            found.push(VmiRule::PdptTyped { pfn: root, flags: t.ty });
            self.unload(mem);
            return cr3;
        }
        let mut g = [Pud::EMPTY; 4];
        let mut known = 0;
        for (i, e) in (0u32..).zip(g.iter_mut()) {
            *e = shadow::load::<M, _, P>(mem, root, base + i);
            if self.check_pdpt_entry(mem, found, root, base + i, *e)
                && self.pdpt_entry(mem, *e).is_ok_and(|(_, c)| c.is_some())
            {
                known += 1;
            }
        }
        if known == 0 {
            found.push(VmiRule::UnknownRoot { cr3 });
            self.unload(mem);
            return cr3;
        }
        self.unload(mem);
        for (i, e) in g.iter().enumerate() {
            self.pdpt_set(mem, i, *e);
        }
        self.loaded = Some(Loaded { root, base, cr3 });
        frame.phys().as_u64() as u32
    }

    /// `read_cr3`: the guest's view of the CPU's CR3 value `hw`.
    pub(crate) fn guest_cr3<P: PhysMem + ?Sized>(&self, mem: &P, hw: u32) -> u32 {
        if M::PAE {
            match (self.pdpt, self.loaded) {
                (Some(f), Some(l)) if f.phys().as_u64() == (hw & !0x1f) as u64 => l.cr3,
                _ => hw,
            }
        } else {
            match self.pages.by_shadow(mem, Pfn::containing(PhysAddr::new(hw as u64))) {
                Some(t) if t.ty.is_l2() => t.pfn.phys().as_u64() as u32 | (hw & 0xfff),
                _ => hw,
            }
        }
    }
}
