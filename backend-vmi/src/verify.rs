//! Cross-checking shadows against the guest: entry by entry, then translation by translation
//! through `i386_mm::walk`.

use crate::backend::{State, Vmi};
use crate::root::pdpt_entry;
use crate::shadow::{self, entries, linked, relink};
use crate::types::PageType;
use core::cell::UnsafeCell;
use core::fmt;
use i386_mm::walk::{translate, visit, Visit};
use i386_mm::{entry_present, PagingMode, Pfn, PhysMem, Translation};

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
    /// each pmd is walked alone, at the PDPT slot a `set_pud` last linked it at (slot 0 if
    /// none did), and the loaded PDPT as a whole.
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

/// Fake frames standing for the two 4-entry PDPTs of [`Overlay`].
const GUEST_ROOT: Pfn = Pfn(u32::MAX);
const SHADOW_ROOT: Pfn = Pfn(u32::MAX - 1);

/// Physical memory plus two PDPTs that live in the overlay itself, so the PAE walker can walk
/// a lone pmd (or a PDPT that is not frame-aligned). Only read by the walker.
struct Overlay<'a, P: PhysMem> {
    inner: &'a P,
    roots: UnsafeCell<[[u64; 4]; 2]>,
}

impl<P: PhysMem> PhysMem for Overlay<'_, P> {
    fn alloc_frame(&self) -> Option<Pfn> {
        None
    }
    fn free_frame(&self, pfn: Pfn) {
        self.inner.free_frame(pfn)
    }
    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        let roots = self.roots.get() as *mut [u64; 4];
        match pfn {
            GUEST_ROOT => roots as *mut u8,
            SHADOW_ROOT => roots.wrapping_add(1) as *mut u8,
            _ => self.inner.frame_ptr(pfn),
        }
    }
    fn max_pfn(&self) -> Pfn {
        self.inner.max_pfn()
    }
    fn frames_in_use(&self) -> usize {
        self.inner.frames_in_use()
    }
}

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// Cross-checks every shadow against its guest table and calls `f` with each
    /// [`Divergence`]; returns how many there were (0: the shadows are exact).
    ///
    /// First entry by entry: every typed table against its shadow (directory entries modulo
    /// the guest→shadow mapping of the tables they link), and in PAE the per-vCPU shadow
    /// PDPT against the loaded guest PDPT. Then translation by translation with
    /// `i386_mm::walk`: for every root the backend knows (two-level: every L2; PAE: every
    /// pmd, and the loaded PDPT), every address mapped through the guest root translates the
    /// same through the shadow root, and the shadow maps nothing more. A tree whose guest or
    /// shadow side links an unshadowed table is not walked (the entry check named it).
    ///
    /// Runs under the backend's lock: `f` must not call the backend.
    pub fn verify_each(&self, f: &mut dyn FnMut(&Divergence)) -> usize {
        let st = self.state.lock();
        let mut n = 0;
        let mut emit = |d: Divergence| {
            n += 1;
            f(&d);
        };
        self.check_entries(&st, &mut emit);
        self.check_translations(&st, &mut emit);
        n
    }

    fn check_entries(&self, st: &State<MAX>, emit: &mut dyn FnMut(Divergence)) {
        let mem = &self.mem;
        for t in st.pages.iter() {
            for index in 0..entries::<M>() {
                let guest = shadow::read::<M, P>(mem, t.pfn, index);
                let shadow_value = shadow::read::<M, P>(mem, t.shadow, index);
                let expected = match linked::<M>(guest).filter(|_| t.ty.is_l2()) {
                    None => guest,
                    Some(child) => match st.pages.get(child) {
                        Some(c) if c.ty.is_l1() => relink::<M>(guest, c.shadow),
                        other => {
                            let child_type = other.map_or(PageType::NORMAL, |c| c.ty);
                            emit(Divergence::UnshadowedLink { table: t.pfn, index, guest, child, child_type });
                            continue;
                        }
                    },
                };
                if shadow_value != expected {
                    emit(Divergence::Entry { table: t.pfn, shadow: t.shadow, index, guest, shadow_value, expected });
                }
            }
        }
        if let (true, Some(frame), Some(l)) = (M::PAE, st.pdpt, st.loaded) {
            for i in 0..4 {
                let index = l.base + i;
                let guest = i386_mm::read_entry(mem, l.root, index, true);
                let shadow_value = i386_mm::read_entry(mem, frame, i, true);
                match pdpt_entry::<M, MAX>(st, guest) {
                    Ok((expected, _)) if expected != shadow_value => {
                        emit(Divergence::Pdpt { pdpt: l.root, index, guest, shadow_value, expected })
                    }
                    Ok(_) => {}
                    Err((child, child_type)) => {
                        emit(Divergence::UnshadowedLink { table: l.root, index, guest, child, child_type })
                    }
                }
            }
        }
    }

    /// Whether every link of directory `table` (guest side, or shadow side when `shadow`)
    /// reaches a typed L1 (or its shadow), so the walker only reads tables the backend knows.
    fn walkable_l2(&self, st: &State<MAX>, table: Pfn, shadow: bool) -> bool {
        (0..entries::<M>()).all(|i| match linked::<M>(shadow::read::<M, P>(&self.mem, table, i)) {
            None => true,
            Some(p) if shadow => st.pages.by_shadow(p).is_some_and(|t| t.ty.is_l1()),
            Some(p) => st.pages.get(p).is_some_and(|t| t.ty.is_l1()),
        })
    }

    /// PAE: whether every present entry of a 4-entry PDPT reaches a walkable L2.
    fn walkable_pdpt(&self, st: &State<MAX>, pdpt: &[u64; 4], shadow: bool) -> bool {
        pdpt.iter().filter(|e| entry_present(**e)).all(|&e| {
            let p = Pfn::from_phys(e & M::ADDR_MASK);
            let t = if shadow { st.pages.by_shadow(p) } else { st.pages.get(p) };
            t.is_some_and(|t| t.ty.is_l2() && self.walkable_l2(st, p, shadow))
        })
    }

    fn check_translations(&self, st: &State<MAX>, emit: &mut dyn FnMut(Divergence)) {
        if !M::PAE {
            for t in st.pages.iter().filter(|t| t.ty.is_l2()) {
                if self.walkable_l2(st, t.pfn, false) && self.walkable_l2(st, t.shadow, true) {
                    compare::<M, P>(&self.mem, t.pfn, t.shadow, t.pfn, emit);
                }
            }
            return;
        }
        let overlay = Overlay { inner: &self.mem, roots: UnsafeCell::new([[0; 4]; 2]) };
        let set = |g: [u64; 4], s: [u64; 4]| {
            // SAFETY: nothing else accesses the overlay's roots while they are replaced (the
            // walker only runs between calls).
            unsafe { *overlay.roots.get() = [g, s] };
        };
        for t in st.pages.iter().filter(|t| t.ty.is_l2()) {
            if self.walkable_l2(st, t.pfn, false) && self.walkable_l2(st, t.shadow, true) {
                let (mut g, mut s) = ([0; 4], [0; 4]);
                g[t.pdpt_slot as usize % 4] = t.pfn.phys() | 1;
                s[t.pdpt_slot as usize % 4] = t.shadow.phys() | 1;
                set(g, s);
                compare::<M, _>(&overlay, GUEST_ROOT, SHADOW_ROOT, t.pfn, emit);
            }
        }
        if let (Some(frame), Some(l)) = (st.pdpt, st.loaded) {
            let mut g = [0u64; 4];
            let mut s = [0u64; 4];
            for i in 0..4 {
                g[i] = i386_mm::read_entry(&self.mem, l.root, l.base + i as u32, true);
                s[i] = i386_mm::read_entry(&self.mem, frame, i as u32, true);
            }
            if self.walkable_pdpt(st, &g, false) && self.walkable_pdpt(st, &s, true) {
                set(g, s);
                compare::<M, _>(&overlay, GUEST_ROOT, SHADOW_ROOT, l.root, emit);
            }
        }
    }
}

/// Every mapping under `guest` translates the same under `shadow`, and `shadow` maps nothing
/// `guest` does not.
fn compare<M: PagingMode, Q: PhysMem>(mem: &Q, guest: Pfn, shadow: Pfn, root: Pfn, emit: &mut dyn FnMut(Divergence)) {
    visit::<M, Q>(mem, guest, 0, u32::MAX, &mut |v| {
        if let Visit::Map { va, t, .. } = v {
            let s = translate::<M, Q>(mem, shadow, va);
            if s != Some(t) {
                emit(Divergence::Translation { root, va, guest: Some(t), shadow: s });
            }
        }
    });
    visit::<M, Q>(mem, shadow, 0, u32::MAX, &mut |v| {
        if let Visit::Map { va, t, .. } = v {
            if translate::<M, Q>(mem, guest, va).is_none() {
                emit(Divergence::Translation { root, va, guest: None, shadow: Some(t) });
            }
        }
    });
}
