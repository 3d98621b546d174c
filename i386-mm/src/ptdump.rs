//! A ptdump-style dump of an address space (like Linux's `CONFIG_X86_PTDUMP`): coalesced
//! ranges with their permissions, then the page-table pages that make up the tree.

use core::fmt::{self, Write};
use i386_paging::walk::{visit, Level, Visit};
use i386_paging::PhysMem;
use paravirt_core::{PagingMode, Pfn, PteFlags, PAGE_OFFSET};

struct Run {
    start: u32,
    end: u64,
    pa: u64,
    flags: PteFlags,
    large: bool,
}

fn size(bytes: u64) -> (u64, &'static str) {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        (bytes >> 20, "M")
    } else {
        (bytes >> 10, "K")
    }
}

fn flush_run(out: &mut dyn Write, r: &Run) -> fmt::Result {
    let (n, unit) = size(r.end - r.start as u64);
    let rw = if r.flags.contains(PteFlags::RW) { "RW" } else { "ro" };
    let us = if r.flags.contains(PteFlags::USER) { "USR" } else { "   " };
    let nx = if r.flags.contains(PteFlags::NX) { "NX" } else { "x " };
    let kind = if r.large { "pse" } else { "pte" };
    writeln!(
        out,
        "  {:#010x}-{:#010x} {:>5}{} {} {} {} {} -> {:#010x}",
        r.start, r.end, n, unit, rw, us, nx, kind, r.pa
    )
}

/// Writes the mappings and tables of the tree rooted at `root` (virtual ranges, physical
/// addresses, permissions).
///
/// # Errors
/// What `out` returns.
///
/// # Panics
/// If a table reached is not a frame of `mem`.
pub fn dump<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, root: Pfn, out: &mut dyn Write) -> fmt::Result {
    let mut run: Option<Run> = None;
    let mut tables = [0usize; 3];
    let mut listed = [Pfn::new(0); 12];
    let mut nlisted = 0;
    let mut res = Ok(());
    let mut header_kernel = false;
    writeln!(out, "---[ User Space ]---")?;
    visit::<M, P>(mem, root, 0, u32::MAX, &mut |v| {
        if res.is_err() {
            return;
        }
        match v {
            Visit::Table { level, pfn, .. } => {
                tables[match level {
                    Level::Pgd => 0,
                    Level::Pmd => 1,
                    Level::Pte => 2,
                }] += 1;
                if level != Level::Pgd && nlisted < listed.len() {
                    listed[nlisted] = pfn;
                    nlisted += 1;
                }
            }
            Visit::Map { va, size, t } => {
                if let Some(r) = run.as_mut() {
                    let contiguous = r.end == va as u64 && r.pa + (r.end - r.start as u64) == t.pa;
                    if contiguous && r.flags == t.flags && r.large == t.large && (va >= PAGE_OFFSET) == header_kernel {
                        r.end += size as u64;
                        return;
                    }
                    res = flush_run(out, r);
                }
                if va >= PAGE_OFFSET && !header_kernel {
                    header_kernel = true;
                    if res.is_ok() {
                        res = writeln!(out, "---[ Kernel Mapping ]---");
                    }
                }
                run = Some(Run { start: va, end: va as u64 + size as u64, pa: t.pa, flags: t.flags, large: t.large });
            }
        }
    });
    res?;
    if let Some(r) = run.as_ref() {
        flush_run(out, r)?;
    }
    writeln!(
        out,
        "---[ Page tables ]--- pgd {} ({} entries), pmd pages {}, pte pages {}",
        root,
        M::PTRS_PER_PGD,
        tables[1],
        tables[2]
    )?;
    write!(out, "  table frames:")?;
    for p in &listed[..nlisted] {
        write!(out, " {p}")?;
    }
    if tables[1] + tables[2] > nlisted {
        write!(out, " ...")?;
    }
    writeln!(out)
}
