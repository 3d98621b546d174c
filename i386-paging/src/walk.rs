//! A software page walker: translates through any table, the way the CPU does.
//!
//! It is independent of the code that builds tables (it only reads entries), so tests use it
//! as the hardware's view; backends use it to compare guest and shadow tables, and the host CPU
//! model uses it for every access. A walk can start at the root or at any lower table (a PAE
//! pmd on its own, say), so every caller uses this one walker.

use crate::phys::{read_entry, PhysMem};
use paravirt_core::{PagingMode, Pfn, Pmd, Pte, PteFlags, Pud};

/// The result of a successful walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address `va` maps to.
    pub pa: u64,
    /// Effective permissions: `RW` and `USER` only if every level grants them, `NX` if any
    /// level sets it; the other bits come from the leaf entry.
    pub flags: PteFlags,
    /// Whether the leaf is a large (PSE) directory entry.
    pub large: bool,
}

/// A page-table level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// The root (`pgd`; the PDPT in PAE).
    Pgd,
    /// A PAE middle directory (`pmd`). In two-level mode the pmd is folded into the pgd.
    Pmd,
    /// A last-level page table.
    Pte,
}

/// What [`visit`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// A table reached (the starting table itself included).
    Table {
        /// Its level.
        level: Level,
        /// Its frame.
        pfn: Pfn,
        /// First virtual address it covers.
        va: u32,
    },
    /// A mapping of `size` bytes at `va`.
    Map {
        /// Virtual address.
        va: u32,
        /// Bytes mapped (4 KiB or a large page).
        size: u32,
        /// Where and how.
        t: Translation,
    },
}

const RW_USER_NX: PteFlags = PteFlags::RW.union(PteFlags::USER).union(PteFlags::NX);

fn combine(acc: PteFlags, e: PteFlags) -> PteFlags {
    let mut f = acc;
    f.set(PteFlags::RW, acc.contains(PteFlags::RW) && e.contains(PteFlags::RW));
    f.set(PteFlags::USER, acc.contains(PteFlags::USER) && e.contains(PteFlags::USER));
    f.set(PteFlags::NX, acc.contains(PteFlags::NX) || e.contains(PteFlags::NX));
    f
}

fn leaf(acc: PteFlags, e: PteFlags, pa: u64, large: bool) -> Translation {
    let acc = combine(acc, e);
    Translation { pa, flags: (e - RW_USER_NX) | acc, large }
}

/// The index of `va` in a directory-entry table (the pgd itself in two-level mode, a pmd in
/// PAE).
#[inline(always)]
pub fn pmd_index<M: PagingMode>(va: u32) -> u32 {
    if M::PAE {
        M::pmd_index(va)
    } else {
        M::pgd_index(va)
    }
}

/// The frame of the directory-entry table and index that map `va` (the pgd itself in
/// two-level mode, a pmd in PAE), or `None` if the PAE pgd entry is not present.
///
/// # Panics
/// If `root` is not a frame of `mem`.
pub fn pmd_table<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, va: u32) -> Option<(Pfn, u32)> {
    if M::PAE {
        let e: Pud = read_entry::<M, _, _>(mem, root, M::pgd_index(va));
        e.is_present().then(|| (e.pfn(), M::pmd_index(va)))
    } else {
        Some((root, M::pgd_index(va)))
    }
}

/// Translates `va` through the tables rooted at `root`.
///
/// # Panics
/// If a table reached is not a frame of `mem`.
pub fn translate<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, va: u32) -> Option<Translation> {
    translate_from::<M, P>(mem, Level::Pgd, root, va)
}

/// Translates `va` starting at `table`, a table of level `level` that covers `va` (for
/// [`Level::Pmd`] in two-level mode, `table` is the pgd).
///
/// # Panics
/// If a table reached is not a frame of `mem`.
pub fn translate_from<M: PagingMode, P: PhysMem + ?Sized>(
    mem: &P,
    level: Level,
    table: Pfn,
    va: u32,
) -> Option<Translation> {
    let acc = PteFlags::RW | PteFlags::USER;
    let (pmd, acc) = match level {
        Level::Pgd => (pmd_table::<M, P>(mem, table, va)?.0, acc),
        Level::Pmd => (table, acc),
        Level::Pte => return pte_leaf::<M, P>(mem, table, va, acc),
    };
    let pde: Pmd = read_entry::<M, _, _>(mem, pmd, pmd_index::<M>(va));
    if !pde.is_present() {
        return None;
    }
    if pde.is_large() {
        let off = (va & !M::large_page_mask()) as u64;
        return Some(leaf(acc, pde.flags(), pde.large_base::<M>().as_u64() + off, true));
    }
    pte_leaf::<M, P>(mem, pde.pfn(), va, combine(acc, pde.flags()))
}

fn pte_leaf<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, pt: Pfn, va: u32, acc: PteFlags) -> Option<Translation> {
    let pte: Pte = read_entry::<M, _, _>(mem, pt, M::pte_index(va));
    pte.is_present().then(|| leaf(acc, pte.flags(), pte.addr().as_u64() + (va & 0xfff) as u64, false))
}

/// Visits every table and mapping under `root` whose range intersects `[lo, hi]` (inclusive),
/// in address order. Large-page mappings are reported once.
///
/// # Panics
/// If a table reached is not a frame of `mem`.
pub fn visit<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, lo: u32, hi: u32, f: &mut impl FnMut(Visit)) {
    f(Visit::Table { level: Level::Pgd, pfn: root, va: 0 });
    if !M::PAE {
        visit_pmd::<M, P>(mem, root, 0, lo, hi, f);
        return;
    }
    for gi in M::pgd_index(lo)..=M::pgd_index(hi) {
        let e: Pud = read_entry::<M, _, _>(mem, root, gi);
        if e.is_present() {
            let gva = gi << M::PGDIR_SHIFT;
            f(Visit::Table { level: Level::Pmd, pfn: e.pfn(), va: gva });
            visit_pmd::<M, P>(mem, e.pfn(), gva, lo.max(gva), hi.min(gva | !(u32::MAX << M::PGDIR_SHIFT)), f);
        }
    }
}

/// Visits the directory-entry table `pmd` (the pgd in two-level mode, a PAE pmd covering
/// `[base, base + 1 GiB)`) and everything under it whose range intersects `[lo, hi]`. The
/// table itself is not reported.
///
/// # Panics
/// If a table reached is not a frame of `mem`.
pub fn visit_pmd<M: PagingMode, P: PhysMem + ?Sized>(
    mem: &P,
    pmd: Pfn,
    base: u32,
    lo: u32,
    hi: u32,
    f: &mut impl FnMut(Visit),
) {
    let acc = PteFlags::RW | PteFlags::USER;
    for mi in pmd_index::<M>(lo)..=pmd_index::<M>(hi) {
        let mva = base | (mi << M::PMD_SHIFT);
        let pde: Pmd = read_entry::<M, _, _>(mem, pmd, mi);
        if !pde.is_present() {
            continue;
        }
        if pde.is_large() {
            let t = leaf(acc, pde.flags(), pde.large_base::<M>().as_u64(), true);
            f(Visit::Map { va: mva, size: M::LARGE_PAGE_SIZE, t });
            continue;
        }
        let acc2 = combine(acc, pde.flags());
        f(Visit::Table { level: Level::Pte, pfn: pde.pfn(), va: mva });
        let pfirst = if mva == lo & M::large_page_mask() { M::pte_index(lo) } else { 0 };
        let plast = if mva == hi & M::large_page_mask() { M::pte_index(hi) } else { M::PTRS_PER_PTE - 1 };
        for pi in pfirst..=plast {
            let pte: Pte = read_entry::<M, _, _>(mem, pde.pfn(), pi);
            if pte.is_present() {
                let t = leaf(acc2, pte.flags(), pte.addr().as_u64(), false);
                f(Visit::Map { va: mva | (pi << 12), size: 4096, t });
            }
        }
    }
}
