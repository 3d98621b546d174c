//! Cross-checking shadows against the guest: entry by entry, then translation by translation
//! through `i386_paging::walk`, which starts at any table (a PAE pmd is walked on its own).
//!
//! Entry values in a [`Divergence`] are raw entries (`pte_t`, `pmd_t` or a PDPT entry, by the
//! table's level), as they would be printed by a page-table dump.

use crate::shadow::{self, entries, linked, relink};
use crate::state::State;
use crate::types::PageType;
use core::fmt;
use i386_paging::walk::{translate_from, visit_pmd, Level, Visit};
use i386_paging::{PhysMem, Translation};
use paravirt_core::{PagingMode, Pfn, Pmd, Pte, Pud};

/// One way a shadow disagrees with its guest table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// A shadow entry differs from what the guest entry mirrors to (for a directory entry
    /// linking a page table: the link to that table's shadow, same flags).
    Entry {
        /// The guest table.
        table: Pfn,
        /// Its shadow.
        shadow: Pfn,
        /// The entry.
        index: u32,
        /// The guest entry.
        guest: u64,
        /// The shadow entry.
        shadow_value: u64,
        /// What the shadow entry should be.
        expected: u64,
    },
    /// A guest directory entry links a page that is not an announced table of the level
    /// below, so it has no shadow to link (a table linked without `alloc_*`, or an entry
    /// written behind the backend's back).
    UnshadowedLink {
        /// The guest directory (a PDPT in PAE for the loaded root).
        table: Pfn,
        /// The entry.
        index: u32,
        /// The guest entry.
        guest: u64,
        /// The page it links.
        child: Pfn,
        /// That page's type (`NORMAL` if untyped).
        child_type: PageType,
    },
    /// The per-vCPU shadow PDPT disagrees with the loaded guest PDPT.
    Pdpt {
        /// The guest PDPT.
        pdpt: Pfn,
        /// The entry (relative to the guest PDPT's frame).
        index: u32,
        /// The guest entry.
        guest: u64,
        /// The shadow PDPT entry.
        shadow_value: u64,
        /// What it should be.
        expected: u64,
    },
    /// Translating `va` through the guest root and through the shadow root differs. In PAE
    /// each pmd is walked alone, at the addresses of the PDPT slot a `set_pud` last linked it
    /// at (slot 0 if none did), and the loaded PDPT as a whole.
    Translation {
        /// The guest root (two-level pgd, PAE pmd or loaded PDPT).
        root: Pfn,
        /// The virtual address.
        va: u32,
        /// Through the guest tables.
        guest: Option<Translation>,
        /// Through the shadows.
        shadow: Option<Translation>,
    },
}

struct T(Option<Translation>);

impl fmt::Display for T {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unmapped"),
            Some(t) => {
                write!(f, "pa {:#x} flags {:#x}", t.pa, t.flags.bits())?;
                if t.large {
                    f.write_str(" (large)")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Divergence::Entry { table, shadow, index, guest, shadow_value, expected } => write!(
                f,
                "table pfn {table} index {index}: guest {guest:#x}, shadow {shadow_value:#x} \
                 (expected {expected:#x}, shadow pfn {shadow})"
            ),
            Divergence::UnshadowedLink { table, index, guest, child, child_type } => write!(
                f,
                "table pfn {table} index {index}: guest {guest:#x} links pfn {child}, which is {child_type}, \
                 not shadowed"
            ),
            Divergence::Pdpt { pdpt, index, guest, shadow_value, expected } => write!(
                f,
                "PDPT pfn {pdpt} index {index}: guest {guest:#x}, shadow {shadow_value:#x} (expected {expected:#x})"
            ),
            Divergence::Translation { root, va, guest, shadow } => {
                write!(f, "root pfn {root} va {va:#010x}: guest {}, shadow {}", T(guest), T(shadow))
            }
        }
    }
}

impl<M: PagingMode> State<M> {
    /// See [`Vmi::verify_each`](crate::Vmi::verify_each): calls `emit` with each divergence.
    pub(crate) fn verify<P: PhysMem + ?Sized>(&self, mem: &P, emit: &mut dyn FnMut(Divergence)) {
        self.check_entries(mem, emit);
        self.check_translations(mem, emit);
    }

    fn check_entries<P: PhysMem + ?Sized>(&self, mem: &P, emit: &mut dyn FnMut(Divergence)) {
        for t in self.pages.iter(mem) {
            for index in 0..entries::<M>() {
                let (guest, shadow_value, expected) = if t.ty.is_l2() {
                    let guest: Pmd = shadow::load::<M, _, P>(mem, t.pfn, index);
                    let shadow_value: Pmd = shadow::load::<M, _, P>(mem, t.shadow, index);
                    let expected = match linked(guest) {
                        None => guest,
                        Some(child) => match self.pages.get(mem, child) {
                            Some(c) if c.ty.is_l1() => relink(guest, c.shadow),
                            other => {
                                let child_type = other.map_or(PageType::NORMAL, |c| c.ty);
                                let guest = guest.raw();
                                emit(Divergence::UnshadowedLink { table: t.pfn, index, guest, child, child_type });
                                continue;
                            }
                        },
                    };
                    (guest.raw(), shadow_value.raw(), expected.raw())
                } else {
                    let guest: Pte = shadow::load::<M, _, P>(mem, t.pfn, index);
                    let shadow_value: Pte = shadow::load::<M, _, P>(mem, t.shadow, index);
                    (guest.raw(), shadow_value.raw(), guest.raw())
                };
                if shadow_value != expected {
                    emit(Divergence::Entry { table: t.pfn, shadow: t.shadow, index, guest, shadow_value, expected });
                }
            }
        }
        if let (true, Some(frame), Some(l)) = (M::PAE, self.pdpt, self.loaded) {
            for i in 0..4 {
                let index = l.base + i;
                let guest: Pud = shadow::load::<M, _, P>(mem, l.root, index);
                let shadow_value: Pud = shadow::load::<M, _, P>(mem, frame, i);
                let (guest_raw, shadow_raw) = (guest.raw(), shadow_value.raw());
                match self.pdpt_entry(mem, guest) {
                    Ok((expected, _)) if expected != shadow_value => emit(Divergence::Pdpt {
                        pdpt: l.root,
                        index,
                        guest: guest_raw,
                        shadow_value: shadow_raw,
                        expected: expected.raw(),
                    }),
                    Ok(_) => {}
                    Err((child, child_type)) => {
                        emit(Divergence::UnshadowedLink { table: l.root, index, guest: guest_raw, child, child_type })
                    }
                }
            }
        }
    }

    /// Whether every link of directory `table` (guest side, or shadow side when `shadow`)
    /// reaches a typed L1 (or its shadow), so the walker only reads tables the backend knows.
    fn walkable_l2<P: PhysMem + ?Sized>(&self, mem: &P, table: Pfn, shadow: bool) -> bool {
        (0..entries::<M>()).all(|i| match linked(shadow::load::<M, _, P>(mem, table, i)) {
            None => true,
            Some(p) if shadow => self.pages.by_shadow(mem, p).is_some_and(|t| t.ty.is_l1()),
            Some(p) => self.pages.get(mem, p).is_some_and(|t| t.ty.is_l1()),
        })
    }

    /// PAE: whether every present entry of a 4-entry PDPT reaches a walkable L2 (or an
    /// untyped page of zeroes, which maps nothing).
    fn walkable_pdpt<P: PhysMem + ?Sized>(&self, mem: &P, pdpt: &[Pud; 4], shadow: bool) -> bool {
        pdpt.iter().filter(|e| e.is_present()).all(|e| {
            let p = e.pfn();
            let t = if shadow { self.pages.by_shadow(mem, p) } else { self.pages.get(mem, p) };
            t.is_some_and(|t| t.ty.is_l2() && self.walkable_l2(mem, p, shadow)) || self.zero_page(mem, p)
        })
    }

    fn check_translations<P: PhysMem + ?Sized>(&self, mem: &P, emit: &mut dyn FnMut(Divergence)) {
        for t in self.pages.iter(mem).filter(|t| t.ty.is_l2()) {
            if self.walkable_l2(mem, t.pfn, false) && self.walkable_l2(mem, t.shadow, true) {
                // Two-level: the L2 is a root covering everything. PAE: a pmd covers the 1 GiB
                // of the PDPT slot it was last linked at.
                let base = if M::PAE { (t.pdpt_slot as u32 % 4) << M::PGDIR_SHIFT } else { 0 };
                compare::<M, P>(mem, Some(t.pfn), Some(t.shadow), base, t.pfn, emit);
            }
        }
        if let (true, Some(frame), Some(l)) = (M::PAE, self.pdpt, self.loaded) {
            let g: [Pud; 4] = core::array::from_fn(|i| shadow::load::<M, _, P>(mem, l.root, l.base + i as u32));
            let s: [Pud; 4] = core::array::from_fn(|i| shadow::load::<M, _, P>(mem, frame, i as u32));
            if self.walkable_pdpt(mem, &g, false) && self.walkable_pdpt(mem, &s, true) {
                for (i, (g, s)) in (0u32..).zip(g.iter().zip(s.iter())) {
                    let present = |e: &Pud| e.is_present().then(|| e.pfn());
                    compare::<M, P>(mem, present(g), present(s), i << M::PGDIR_SHIFT, l.root, emit);
                }
            }
        }
    }
}

/// Compares two directory-entry tables covering the same addresses from `base` (the pgd in
/// two-level mode, with `base` 0; a PAE pmd, with `base` the start of its 1 GiB): every
/// mapping under `guest` translates the same under `shadow`, and `shadow` maps nothing
/// `guest` does not. A missing table (`None`, a PDPT entry not present) maps nothing. `root`
/// names the guest root in the report.
fn compare<M: PagingMode, P: PhysMem + ?Sized>(
    mem: &P,
    guest: Option<Pfn>,
    shadow: Option<Pfn>,
    base: u32,
    root: Pfn,
    emit: &mut dyn FnMut(Divergence),
) {
    let hi = if M::PAE { base | ((1 << M::PGDIR_SHIFT) - 1) } else { u32::MAX };
    let through = |table: Option<Pfn>, va: u32| table.and_then(|t| translate_from::<M, P>(mem, Level::Pmd, t, va));
    if let Some(g) = guest {
        visit_pmd::<M, P>(mem, g, base, base, hi, &mut |v| {
            if let Visit::Map { va, t, .. } = v {
                let s = through(shadow, va);
                if s != Some(t) {
                    emit(Divergence::Translation { root, va, guest: Some(t), shadow: s });
                }
            }
        });
    }
    if let Some(s) = shadow {
        visit_pmd::<M, P>(mem, s, base, base, hi, &mut |v| {
            if let Visit::Map { va, t, .. } = v {
                if through(guest, va).is_none() {
                    emit(Divergence::Translation { root, va, guest: None, shadow: Some(t) });
                }
            }
        });
    }
}
