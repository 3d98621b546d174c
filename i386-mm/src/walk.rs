//! A software page walker: translates through any root, the way the CPU does.
//!
//! It is independent of the code that builds tables (it only reads entries), so tests use it
//! as the hardware's view; backends use it to compare guest and shadow roots, and the host CPU
//! model uses it for every access.

use crate::entry::{entry_flags, entry_present, PteFlags};
use crate::mode::PagingMode;
use crate::phys::{read_entry, PhysMem};
use paravirt_core::Pfn;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The root (`pgd`; the PDPT in PAE).
    Pgd,
    /// A PAE middle directory (`pmd`).
    Pmd,
    /// A last-level page table.
    Pte,
}

/// What [`visit`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// A table reached from the root (the root itself included).
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

fn combine(acc: PteFlags, e: PteFlags) -> PteFlags {
    let mut f = acc;
    f.set(PteFlags::RW, acc.contains(PteFlags::RW) && e.contains(PteFlags::RW));
    f.set(PteFlags::USER, acc.contains(PteFlags::USER) && e.contains(PteFlags::USER));
    f.set(PteFlags::NX, acc.contains(PteFlags::NX) || e.contains(PteFlags::NX));
    f
}

/// The frame of the directory-entry table and index that map `va` (the pgd itself in
/// two-level mode, a pmd in PAE), or `None` if the PAE pgd entry is not present.
pub fn pmd_table<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, va: u32) -> Option<(Pfn, u32)> {
    if M::PAE {
        let e = read_entry(mem, root, M::pgd_index(va), true);
        if !entry_present(e) {
            return None;
        }
        Some((Pfn::from_phys(e & M::ADDR_MASK), M::pmd_index(va)))
    } else {
        Some((root, M::pgd_index(va)))
    }
}

/// Translates `va` through the tables rooted at `root`.
pub fn translate<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, va: u32) -> Option<Translation> {
    let (pmd, idx) = pmd_table::<M, P>(mem, root, va)?;
    let pde = read_entry(mem, pmd, idx, M::PAE);
    if !entry_present(pde) {
        return None;
    }
    let acc = PteFlags::RW | PteFlags::USER;
    let acc = combine(acc, entry_flags(pde));
    if entry_flags(pde).contains(PteFlags::PSE) {
        let base = pde & M::LARGE_ADDR_MASK;
        let off = (va & !M::large_page_mask()) as u64;
        let flags = (entry_flags(pde) - (PteFlags::RW | PteFlags::USER | PteFlags::NX)) | acc;
        return Some(Translation { pa: base + off, flags, large: true });
    }
    let pt = Pfn::from_phys(pde & M::ADDR_MASK);
    let pte = read_entry(mem, pt, M::pte_index(va), M::PAE);
    if !entry_present(pte) {
        return None;
    }
    let acc = combine(acc, entry_flags(pte));
    let flags = (entry_flags(pte) - (PteFlags::RW | PteFlags::USER | PteFlags::NX)) | acc;
    Some(Translation { pa: (pte & M::ADDR_MASK) + (va & 0xfff) as u64, flags, large: false })
}

/// Visits every table and mapping under `root` whose range intersects `[lo, hi]` (inclusive),
/// in address order. Large-page mappings are reported once.
pub fn visit<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, lo: u32, hi: u32, f: &mut impl FnMut(Visit)) {
    f(Visit::Table { level: Level::Pgd, pfn: root, va: 0 });
    let acc0 = PteFlags::RW | PteFlags::USER;
    for gi in M::pgd_index(lo)..=M::pgd_index(hi) {
        let gva = gi << M::PGDIR_SHIFT;
        let (pmd, acc1, first, last) = if M::PAE {
            let e = read_entry(mem, root, gi, true);
            if !entry_present(e) {
                continue;
            }
            let pmd = Pfn::from_phys(e & M::ADDR_MASK);
            f(Visit::Table { level: Level::Pmd, pfn: pmd, va: gva });
            let first = if gi == M::pgd_index(lo) { M::pmd_index(lo) } else { 0 };
            let last = if gi == M::pgd_index(hi) { M::pmd_index(hi) } else { M::PTRS_PER_PMD - 1 };
            (pmd, acc0, first, last)
        } else {
            (root, acc0, gi, gi)
        };
        for mi in first..=last {
            let mva = if M::PAE { gva | (mi << M::PMD_SHIFT) } else { gva };
            let pde = read_entry(mem, pmd, mi, M::PAE);
            if !entry_present(pde) {
                continue;
            }
            let acc2 = combine(acc1, entry_flags(pde));
            if entry_flags(pde).contains(PteFlags::PSE) {
                let flags = (entry_flags(pde) - (PteFlags::RW | PteFlags::USER | PteFlags::NX)) | acc2;
                let t = Translation { pa: pde & M::LARGE_ADDR_MASK, flags, large: true };
                f(Visit::Map { va: mva, size: M::LARGE_PAGE_SIZE, t });
                continue;
            }
            let pt = Pfn::from_phys(pde & M::ADDR_MASK);
            f(Visit::Table { level: Level::Pte, pfn: pt, va: mva });
            let pfirst = if mva == lo & M::large_page_mask() { M::pte_index(lo) } else { 0 };
            let plast = if mva == hi & M::large_page_mask() { M::pte_index(hi) } else { M::PTRS_PER_PTE - 1 };
            for pi in pfirst..=plast {
                let pte = read_entry(mem, pt, pi, M::PAE);
                if !entry_present(pte) {
                    continue;
                }
                let acc3 = combine(acc2, entry_flags(pte));
                let flags = (entry_flags(pte) - (PteFlags::RW | PteFlags::USER | PteFlags::NX)) | acc3;
                let t = Translation { pa: pte & M::ADDR_MASK, flags, large: false };
                f(Visit::Map { va: mva | (pi << 12), size: 4096, t });
            }
        }
    }
}
