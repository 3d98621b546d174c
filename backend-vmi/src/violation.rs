//! Protocol violations: what the VMI debug checks catch, and what happens then.

use crate::types::PageType;
use core::fmt;
use paravirt_core::Pfn;

/// A broken rule of the VMI page-type protocol, naming the page and the rule.
///
/// The first group mirrors the `BUG_ON`s of `vmi_set_page_type` / `vmi_check_page_type` in
/// `arch/i386/kernel/vmi.c`; the rest are what a shadowing hypervisor needs on top (a write
/// into a table it was never told about, a link to an unannounced table, an unknown root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `alloc_*` on a page that is already typed (allocation needs an untyped page). Refused:
    /// the page keeps its type and its shadow.
    AllocTyped {
        /// The page.
        pfn: Pfn,
        /// Its current type.
        current: PageType,
        /// The type asked for.
        requested: PageType,
    },
    /// `release_*` on a page that is not typed (release needs a typed page).
    ReleaseUntyped {
        /// The page.
        pfn: Pfn,
        /// The type the release named.
        requested: PageType,
    },
    /// `release_pt` on a directory or `release_pd` on a page table. Refused.
    ReleaseWrongLevel {
        /// The page.
        pfn: Pfn,
        /// Its current type.
        current: PageType,
        /// The type the release named.
        requested: PageType,
    },
    /// Release of a table some typed directory (or the loaded PDPT) still links: its shadow
    /// would be freed under a live shadow entry. Refused.
    ReleaseLinked {
        /// The page.
        pfn: Pfn,
        /// Shadow entries still pointing at its shadow.
        links: u32,
    },
    /// Release of the root currently loaded in CR3. Refused.
    ReleaseLoaded {
        /// The page.
        pfn: Pfn,
    },
    /// A page announced `ZEROED` is not zero (with `CLONE`: its user part is not).
    NotZeroed {
        /// The page.
        pfn: Pfn,
        /// The first non-zero entry.
        index: u32,
        /// Its value.
        value: u64,
    },
    /// `alloc_pd_clone` from a source that is not an L2 (`vmi_check_page_type(clonepfn,
    /// VMI_PAGE_L2)`). Refused: the page stays untyped.
    CloneSourceNotL2 {
        /// The page being announced.
        pfn: Pfn,
        /// The clone source.
        source: Pfn,
        /// The source's type (`NORMAL` if untyped).
        source_type: PageType,
    },
    /// `alloc_pd_clone` from an L2 whose `PAE` bit differs from the new page's. Refused.
    ClonePaeMismatch {
        /// The page being announced.
        pfn: Pfn,
        /// The clone source.
        source: Pfn,
        /// The source's type.
        source_type: PageType,
        /// The type asked for.
        requested: PageType,
    },
    /// `alloc_pd_clone` with a range beyond the table. Refused.
    CloneRange {
        /// The page being announced.
        pfn: Pfn,
        /// First entry to clone.
        start: u32,
        /// Entries to clone.
        count: u32,
    },
    /// `AllocatePage` flags without exactly one of `PT` / `PD` (or with `PML4`). Refused.
    BadFlags {
        /// The page.
        pfn: Pfn,
        /// The flags.
        flags: PageType,
    },
    /// A PAE PDPT typed, or a typed page used as one: "the PAE PDPT is never typed".
    PdptTyped {
        /// The page.
        pfn: Pfn,
        /// Its (requested or current) type.
        flags: PageType,
    },
    /// A PAE PDPT entry with bits the processor reserves (only `PRESENT`, `PWT`, `PCD` and
    /// the address are allowed).
    BadPdptEntry {
        /// The PDPT.
        pdpt: Pfn,
        /// The entry.
        index: u32,
        /// The value written.
        value: u64,
    },
    /// An entry written into a page that is not a typed page table. Written, not shadowed.
    WriteUntyped {
        /// The table written.
        table: Pfn,
        /// The entry.
        index: u32,
        /// The hook that wrote it.
        hook: &'static str,
    },
    /// A PTE hook on a directory, a directory hook on a page table, or `set_pud` in
    /// two-level mode. Written and shadowed by the table's real level.
    WrongLevel {
        /// The table written.
        table: Pfn,
        /// The entry.
        index: u32,
        /// The hook.
        hook: &'static str,
        /// The table's type.
        current: PageType,
    },
    /// A directory entry links a table that was never announced (or not as the level below).
    /// Caught at the linking write; the guest entry is written, the shadow entry left empty.
    UnannouncedChild {
        /// The directory written.
        table: Pfn,
        /// The entry.
        index: u32,
        /// The table it links.
        child: Pfn,
        /// That table's type (`NORMAL` if untyped).
        child_type: PageType,
    },
    /// `write_cr3` of a root the backend does not know (not a typed L2; in PAE a PDPT linking
    /// no announced pmd). The CPU is given the guest root, unshadowed.
    UnknownRoot {
        /// The value written to CR3.
        cr3: u32,
    },
    /// A page beyond the end of RAM.
    PfnOutOfRange {
        /// The page.
        pfn: Pfn,
    },
    /// The tracking table or the shadow-frame pool is full. Refused.
    CapacityExhausted {
        /// The page that could not be tracked.
        pfn: Pfn,
        /// Pages the backend can track.
        capacity: usize,
    },
    /// PAE `write_cr3` after [`teardown`](crate::Vmi::teardown) gave the per-vCPU PDPT back.
    NoShadowPdpt {
        /// The value written to CR3.
        cr3: u32,
    },
    /// [`teardown`](crate::Vmi::teardown) while pages are still typed.
    TeardownWithLivePages {
        /// Pages still typed.
        pages: usize,
    },
}

impl Violation {
    /// The page the violation is about (the root frame for CR3 violations).
    pub fn pfn(&self) -> Pfn {
        match *self {
            Violation::AllocTyped { pfn, .. }
            | Violation::ReleaseUntyped { pfn, .. }
            | Violation::ReleaseWrongLevel { pfn, .. }
            | Violation::ReleaseLinked { pfn, .. }
            | Violation::ReleaseLoaded { pfn }
            | Violation::NotZeroed { pfn, .. }
            | Violation::CloneSourceNotL2 { pfn, .. }
            | Violation::ClonePaeMismatch { pfn, .. }
            | Violation::CloneRange { pfn, .. }
            | Violation::BadFlags { pfn, .. }
            | Violation::PdptTyped { pfn, .. }
            | Violation::PfnOutOfRange { pfn }
            | Violation::CapacityExhausted { pfn, .. } => pfn,
            Violation::BadPdptEntry { pdpt, .. } => pdpt,
            Violation::WriteUntyped { table, .. }
            | Violation::WrongLevel { table, .. }
            | Violation::UnannouncedChild { table, .. } => table,
            Violation::UnknownRoot { cr3 } | Violation::NoShadowPdpt { cr3 } => Pfn::from_phys(cr3 as u64),
            Violation::TeardownWithLivePages { .. } => Pfn(0),
        }
    }

    /// A short name of the rule broken.
    pub fn rule(&self) -> &'static str {
        match self {
            Violation::AllocTyped { .. } => "allocation needs an untyped page",
            Violation::ReleaseUntyped { .. } => "release needs a typed page",
            Violation::ReleaseWrongLevel { .. } => "release names the wrong level",
            Violation::ReleaseLinked { .. } => "release of a table still linked",
            Violation::ReleaseLoaded { .. } => "release of the loaded root",
            Violation::NotZeroed { .. } => "ZEROED page is not zero",
            Violation::CloneSourceNotL2 { .. } => "clone source must be an L2",
            Violation::ClonePaeMismatch { .. } => "clone source must have the same PAE bit",
            Violation::CloneRange { .. } => "clone range beyond the table",
            Violation::BadFlags { .. } => "page type needs exactly one level",
            Violation::PdptTyped { .. } => "the PAE PDPT is never typed",
            Violation::BadPdptEntry { .. } => "PDPT entry with reserved bits",
            Violation::WriteUntyped { .. } => "entry write into an untyped page",
            Violation::WrongLevel { .. } => "entry hook of the wrong level",
            Violation::UnannouncedChild { .. } => "link to an unannounced table",
            Violation::UnknownRoot { .. } => "unknown root loaded",
            Violation::PfnOutOfRange { .. } => "page beyond the end of RAM",
            Violation::CapacityExhausted { .. } => "tracking capacity exhausted",
            Violation::NoShadowPdpt { .. } => "no per-vCPU shadow PDPT",
            Violation::TeardownWithLivePages { .. } => "teardown with typed pages",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vmi: {}: ", self.rule())?;
        match *self {
            Violation::AllocTyped { pfn, current, requested } => {
                write!(f, "pfn {pfn} announced as {requested} but already {current}")
            }
            Violation::ReleaseUntyped { pfn, requested } => write!(f, "pfn {pfn} released as {requested}"),
            Violation::ReleaseWrongLevel { pfn, current, requested } => {
                write!(f, "pfn {pfn} is {current}, released as {requested}")
            }
            Violation::ReleaseLinked { pfn, links } => write!(f, "pfn {pfn} still linked by {links} shadow entries"),
            Violation::ReleaseLoaded { pfn } => write!(f, "pfn {pfn} is the root in CR3"),
            Violation::NotZeroed { pfn, index, value } => write!(f, "pfn {pfn} entry {index} is {value:#x}"),
            Violation::CloneSourceNotL2 { pfn, source, source_type } => {
                write!(f, "pfn {pfn} cloned from pfn {source}, which is {source_type}")
            }
            Violation::ClonePaeMismatch { pfn, source, source_type, requested } => {
                write!(f, "pfn {pfn} ({requested}) cloned from pfn {source} ({source_type})")
            }
            Violation::CloneRange { pfn, start, count } => {
                write!(f, "pfn {pfn} cloned entries [{start}, {start} + {count})")
            }
            Violation::BadFlags { pfn, flags } => write!(f, "pfn {pfn} announced as {flags}"),
            Violation::PdptTyped { pfn, flags } => write!(f, "pfn {pfn} used as a PDPT and typed {flags}"),
            Violation::BadPdptEntry { pdpt, index, value } => write!(f, "PDPT pfn {pdpt} entry {index} = {value:#x}"),
            Violation::WriteUntyped { table, index, hook } => {
                write!(f, "{hook} into pfn {table} entry {index}, which is not a page table")
            }
            Violation::WrongLevel { table, index, hook, current } => {
                write!(f, "{hook} into pfn {table} entry {index}, which is {current}")
            }
            Violation::UnannouncedChild { table, index, child, child_type } => {
                write!(f, "pfn {table} entry {index} links pfn {child}, which is {child_type}")
            }
            Violation::UnknownRoot { cr3 } => write!(f, "write_cr3({cr3:#x})"),
            Violation::PfnOutOfRange { pfn } => write!(f, "pfn {pfn}"),
            Violation::CapacityExhausted { pfn, capacity } => {
                write!(f, "pfn {pfn} cannot be tracked (capacity {capacity})")
            }
            Violation::NoShadowPdpt { cr3 } => write!(f, "write_cr3({cr3:#x}) after teardown"),
            Violation::TeardownWithLivePages { pages } => write!(f, "{pages} page(s) still typed"),
        }
    }
}

/// What the backend does when a check fails. It is never silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Panic with the violation, like Linux's `BUG()`.
    Panic,
    /// Keep the first [`RECORDED_VIOLATIONS`] violations, count all, and carry on as well as
    /// the broken rule allows (for tests and for a demo that reports instead of dying).
    Record,
}

/// Violations kept in full under [`Policy::Record`] (later ones are only counted).
pub const RECORDED_VIOLATIONS: usize = 32;

/// The record kept under [`Policy::Record`]: the first violations and the total.
pub(crate) struct ViolationLog {
    first: [Option<Violation>; RECORDED_VIOLATIONS],
    total: usize,
}

impl ViolationLog {
    pub(crate) const fn new() -> Self {
        ViolationLog { first: [None; RECORDED_VIOLATIONS], total: 0 }
    }

    pub(crate) fn push(&mut self, v: Violation) {
        if let Some(slot) = self.first.get_mut(self.total) {
            *slot = Some(v);
        }
        self.total += 1;
    }

    /// Counts `n` more violations that were not kept.
    pub(crate) fn count_more(&mut self, n: usize) {
        self.total += n;
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn get(&self, i: usize) -> Option<Violation> {
        self.first.get(i).copied().flatten()
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::new();
    }
}

/// Violations found while the state lock is held, reported once it is dropped (so a
/// [`Policy::Panic`] never leaves the lock held).
pub(crate) struct Pending {
    found: [Option<Violation>; 8],
    n: usize,
}

impl Pending {
    pub(crate) const fn new() -> Self {
        Pending { found: [None; 8], n: 0 }
    }

    /// Notes a violation (beyond eight in one call, the excess is only counted).
    pub(crate) fn push(&mut self, v: Violation) {
        if let Some(slot) = self.found.get_mut(self.n) {
            *slot = Some(v);
        }
        self.n += 1;
    }

    pub(crate) fn first(&self) -> Option<Violation> {
        self.found[0]
    }

    /// The violations noted.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Violation> + '_ {
        self.found.iter().flatten().copied()
    }

    /// Violations noted beyond the eight kept.
    pub(crate) fn overflow(&self) -> usize {
        self.n.saturating_sub(self.found.len())
    }
}
