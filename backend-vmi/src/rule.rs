//! VMI's rules, and how the rules a call broke reach the shared violation log.
//!
//! A rule is either one that VMI itself enforces (a `BUG_ON` of `vmi_set_page_type` /
//! `vmi_check_page_type` in `arch/i386/kernel/vmi.c`: [`Origin::Hypervisor`]) or one of this
//! project's shadow-pager checks ([`Origin::Checker`]).

use crate::types::PageType;
use core::fmt;
use paravirt_core::{HookKind, Origin, Pfn, Policy, Rule, Violations};

/// Violations kept in full in the backend's log (later ones are only counted).
pub const RECORDED_VIOLATIONS: usize = 32;

/// The backend's violation log.
pub(crate) type Log = Violations<VmiRule, RECORDED_VIOLATIONS>;

/// A broken rule of the VMI page-type protocol, naming the page and what was found.
///
/// Reported through [`paravirt_core::Violations`] as a [`paravirt_core::Violation`], which adds
/// the hook that was running. [`Rule::origin`] tells the `BUG_ON`s of the real `vmi.c`
/// ([`Origin::Hypervisor`]) from this project's shadow-pager rules ([`Origin::Checker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmiRule {
    /// `alloc_*` on a page that is already typed (`vmi_set_page_type`: `BUG_ON(page->type)`).
    /// Refused: the page keeps its type and its shadow.
    AllocTyped {
        /// The page.
        pfn: Pfn,
        /// Its current type.
        current: PageType,
        /// The type asked for.
        requested: PageType,
    },
    /// `release_*` on a page that is not typed (`vmi_set_page_type(pfn, VMI_PAGE_NORMAL)`:
    /// `BUG_ON(page->type == VMI_PAGE_NORMAL)`).
    ReleaseUntyped {
        /// The page.
        pfn: Pfn,
        /// The type the release named.
        requested: PageType,
    },
    /// `release_pt` on a directory or `release_pd` on a page table. Refused (VMI itself only
    /// checks that the page is typed).
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
    /// A page announced `ZEROED` is not zero (with `CLONE`: its user part is not)
    /// (`check_zeroed_page`: `BUG_ON(ptr[i])`). Reported, not refused.
    NotZeroed {
        /// The page.
        pfn: Pfn,
        /// The first non-zero entry.
        index: u32,
        /// Its raw value.
        value: u64,
    },
    /// `alloc_pd_clone` from a source that is not an L2 (`vmi_check_page_type(clonepfn,
    /// VMI_PAGE_L2)`: `BUG_ON((type & page->type) == 0)`). Refused: the page stays untyped.
    CloneSourceNotL2 {
        /// The page being announced.
        pfn: Pfn,
        /// The clone source.
        source: Pfn,
        /// The source's type (`NORMAL` if untyped).
        source_type: PageType,
    },
    /// `alloc_pd_clone` from an L2 whose `PAE` bit differs from the new page's
    /// (`vmi_check_page_type`: `BUG_ON((page->type ^ type) & VMI_PAGE_PAE)`). Refused.
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
    /// A PAE PDPT typed, or a typed page used as one: "the PAE PDPT is never typed" (VMI
    /// itself silently skips `PDP`; a shadow pager cannot shadow a PDPT as a table).
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
        /// Its raw value.
        value: u64,
    },
    /// An entry written into a page that is not a typed page table. Written, not shadowed.
    WriteUntyped {
        /// The table written.
        table: Pfn,
        /// The entry.
        index: u32,
    },
    /// A PTE hook on a directory, a directory hook on a page table, or `set_pud` in
    /// two-level mode. Written, and shadowed by the table's real level.
    WrongLevel {
        /// The table written.
        table: Pfn,
        /// The entry.
        index: u32,
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
    /// A page beyond the end of RAM. Refused.
    PfnOutOfRange {
        /// The page.
        pfn: Pfn,
    },
    /// The shadow-frame pool (sized from RAM at construction, [`Vmi::capacity`](crate::Vmi::capacity))
    /// has no free frame: the page cannot be shadowed. Refused; nothing changes, and the page
    /// can be announced once another table is released.
    CapacityExhausted {
        /// The page that could not be shadowed.
        pfn: Pfn,
        /// Shadow frames the pool holds (free or in use).
        capacity: usize,
    },
    /// PAE `write_cr3` after [`teardown`](crate::Vmi::teardown) gave the per-vCPU PDPT back.
    NoShadowPdpt {
        /// The value written to CR3.
        cr3: u32,
    },
}

impl VmiRule {
    /// What the rule demands, in words (the start of the [`Display`](fmt::Display) text).
    pub const fn description(&self) -> &'static str {
        match self {
            VmiRule::AllocTyped { .. } => "allocation needs an untyped page",
            VmiRule::ReleaseUntyped { .. } => "release needs a typed page",
            VmiRule::ReleaseWrongLevel { .. } => "release names the wrong level",
            VmiRule::ReleaseLinked { .. } => "release of a table still linked",
            VmiRule::ReleaseLoaded { .. } => "release of the loaded root",
            VmiRule::NotZeroed { .. } => "ZEROED page is not zero",
            VmiRule::CloneSourceNotL2 { .. } => "clone source must be an L2",
            VmiRule::ClonePaeMismatch { .. } => "clone source must have the same PAE bit",
            VmiRule::CloneRange { .. } => "clone range beyond the table",
            VmiRule::BadFlags { .. } => "page type needs exactly one level",
            VmiRule::PdptTyped { .. } => "the PAE PDPT is never typed",
            VmiRule::BadPdptEntry { .. } => "PDPT entry with reserved bits",
            VmiRule::WriteUntyped { .. } => "entry write into an untyped page",
            VmiRule::WrongLevel { .. } => "entry hook of the wrong level",
            VmiRule::UnannouncedChild { .. } => "link to an unannounced table",
            VmiRule::UnknownRoot { .. } => "unknown root loaded",
            VmiRule::PfnOutOfRange { .. } => "page beyond the end of RAM",
            VmiRule::CapacityExhausted { .. } => "shadow pool exhausted",
            VmiRule::NoShadowPdpt { .. } => "no per-vCPU shadow PDPT",
        }
    }
}

impl Rule for VmiRule {
    fn name(&self) -> &'static str {
        match self {
            VmiRule::AllocTyped { .. } => "alloc-typed",
            VmiRule::ReleaseUntyped { .. } => "release-untyped",
            VmiRule::ReleaseWrongLevel { .. } => "release-wrong-level",
            VmiRule::ReleaseLinked { .. } => "release-linked",
            VmiRule::ReleaseLoaded { .. } => "release-loaded",
            VmiRule::NotZeroed { .. } => "not-zeroed",
            VmiRule::CloneSourceNotL2 { .. } => "clone-source-not-l2",
            VmiRule::ClonePaeMismatch { .. } => "clone-pae-mismatch",
            VmiRule::CloneRange { .. } => "clone-range",
            VmiRule::BadFlags { .. } => "bad-flags",
            VmiRule::PdptTyped { .. } => "pdpt-typed",
            VmiRule::BadPdptEntry { .. } => "bad-pdpt-entry",
            VmiRule::WriteUntyped { .. } => "write-untyped",
            VmiRule::WrongLevel { .. } => "wrong-level",
            VmiRule::UnannouncedChild { .. } => "unannounced-child",
            VmiRule::UnknownRoot { .. } => "unknown-root",
            VmiRule::PfnOutOfRange { .. } => "pfn-out-of-range",
            VmiRule::CapacityExhausted { .. } => "capacity-exhausted",
            VmiRule::NoShadowPdpt { .. } => "no-shadow-pdpt",
        }
    }

    /// The page the violation is about (the table for an entry write, the root frame for a
    /// CR3 violation).
    fn pfn(&self) -> Pfn {
        match *self {
            VmiRule::AllocTyped { pfn, .. }
            | VmiRule::ReleaseUntyped { pfn, .. }
            | VmiRule::ReleaseWrongLevel { pfn, .. }
            | VmiRule::ReleaseLinked { pfn, .. }
            | VmiRule::ReleaseLoaded { pfn }
            | VmiRule::NotZeroed { pfn, .. }
            | VmiRule::CloneSourceNotL2 { pfn, .. }
            | VmiRule::ClonePaeMismatch { pfn, .. }
            | VmiRule::CloneRange { pfn, .. }
            | VmiRule::BadFlags { pfn, .. }
            | VmiRule::PdptTyped { pfn, .. }
            | VmiRule::PfnOutOfRange { pfn }
            | VmiRule::CapacityExhausted { pfn, .. } => pfn,
            VmiRule::BadPdptEntry { pdpt, .. } => pdpt,
            VmiRule::WriteUntyped { table, .. }
            | VmiRule::WrongLevel { table, .. }
            | VmiRule::UnannouncedChild { table, .. } => table,
            VmiRule::UnknownRoot { cr3 } | VmiRule::NoShadowPdpt { cr3 } => {
                Pfn::containing(paravirt_core::PhysAddr::new(cr3 as u64))
            }
        }
    }

    /// [`Origin::Hypervisor`] for what `vmi.c` `BUG_ON`s (`AllocTyped`, `ReleaseUntyped`,
    /// `NotZeroed`, `CloneSourceNotL2`, `ClonePaeMismatch`); [`Origin::Checker`] for the rest.
    fn origin(&self) -> Origin {
        match self {
            VmiRule::AllocTyped { .. }
            | VmiRule::ReleaseUntyped { .. }
            | VmiRule::NotZeroed { .. }
            | VmiRule::CloneSourceNotL2 { .. }
            | VmiRule::ClonePaeMismatch { .. } => Origin::Hypervisor,
            VmiRule::ReleaseWrongLevel { .. }
            | VmiRule::ReleaseLinked { .. }
            | VmiRule::ReleaseLoaded { .. }
            | VmiRule::CloneRange { .. }
            | VmiRule::BadFlags { .. }
            | VmiRule::PdptTyped { .. }
            | VmiRule::BadPdptEntry { .. }
            | VmiRule::WriteUntyped { .. }
            | VmiRule::WrongLevel { .. }
            | VmiRule::UnannouncedChild { .. }
            | VmiRule::UnknownRoot { .. }
            | VmiRule::PfnOutOfRange { .. }
            | VmiRule::CapacityExhausted { .. }
            | VmiRule::NoShadowPdpt { .. } => Origin::Checker,
        }
    }
}

impl fmt::Display for VmiRule {
    /// `description: details` (pfns in hex).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.description())?;
        match *self {
            VmiRule::AllocTyped { pfn, current, requested } => {
                write!(f, "pfn {pfn} announced as {requested} but already {current}")
            }
            VmiRule::ReleaseUntyped { pfn, requested } => write!(f, "pfn {pfn} released as {requested}"),
            VmiRule::ReleaseWrongLevel { pfn, current, requested } => {
                write!(f, "pfn {pfn} is {current}, released as {requested}")
            }
            VmiRule::ReleaseLinked { pfn, links } => write!(f, "pfn {pfn} still linked by {links} shadow entries"),
            VmiRule::ReleaseLoaded { pfn } => write!(f, "pfn {pfn} is the root in CR3"),
            VmiRule::NotZeroed { pfn, index, value } => write!(f, "pfn {pfn} entry {index} is {value:#x}"),
            VmiRule::CloneSourceNotL2 { pfn, source, source_type } => {
                write!(f, "pfn {pfn} cloned from pfn {source}, which is {source_type}")
            }
            VmiRule::ClonePaeMismatch { pfn, source, source_type, requested } => {
                write!(f, "pfn {pfn} ({requested}) cloned from pfn {source} ({source_type})")
            }
            VmiRule::CloneRange { pfn, start, count } => {
                write!(f, "pfn {pfn} cloned entries [{start}, {start} + {count})")
            }
            VmiRule::BadFlags { pfn, flags } => write!(f, "pfn {pfn} announced as {flags}"),
            VmiRule::PdptTyped { pfn, flags } => write!(f, "pfn {pfn} used as a PDPT and typed {flags}"),
            VmiRule::BadPdptEntry { pdpt, index, value } => write!(f, "PDPT pfn {pdpt} entry {index} = {value:#x}"),
            VmiRule::WriteUntyped { table, index } => {
                write!(f, "pfn {table} entry {index}, which is not a page table")
            }
            VmiRule::WrongLevel { table, index, current } => write!(f, "pfn {table} entry {index}, which is {current}"),
            VmiRule::UnannouncedChild { table, index, child, child_type } => {
                write!(f, "pfn {table} entry {index} links pfn {child}, which is {child_type}")
            }
            VmiRule::UnknownRoot { cr3 } => write!(f, "write_cr3({cr3:#x})"),
            VmiRule::PfnOutOfRange { pfn } => write!(f, "pfn {pfn}"),
            VmiRule::CapacityExhausted { pfn, capacity } => {
                write!(f, "pfn {pfn} cannot be shadowed ({capacity} shadow frames, none free)")
            }
            VmiRule::NoShadowPdpt { cr3 } => write!(f, "write_cr3({cr3:#x}) after teardown"),
        }
    }
}

impl core::error::Error for VmiRule {}

/// The rules one call broke, found while the state lock is held.
///
/// Inside a hook, each rule is reported to the log with that hook: at once under
/// [`Policy::Record`], and under [`Policy::Panic`] once the call is over and the state lock
/// dropped (the first rule then panics, like `BUG()`). Outside a hook (the ROM calls of
/// [`Vmi::allocate_page`](crate::Vmi::allocate_page) and
/// [`Vmi::release_page`](crate::Vmi::release_page)) nothing is logged: the first rule is the
/// call's error.
pub(crate) struct Found<'a> {
    sink: Option<(&'a Log, HookKind)>,
    first: Option<VmiRule>,
}

impl<'a> Found<'a> {
    /// Rules broken inside `hook`, reported to `log`.
    pub(crate) const fn in_hook(log: &'a Log, hook: HookKind) -> Self {
        Found { sink: Some((log, hook)), first: None }
    }

    /// Rules broken by a call that is not a hook: returned, not logged.
    pub(crate) const fn returned() -> Self {
        Found { sink: None, first: None }
    }

    /// Notes that `rule` was broken.
    pub(crate) fn push(&mut self, rule: VmiRule) {
        if self.first.is_none() {
            self.first = Some(rule);
        }
        if let Some((log, hook)) = self.sink {
            if log.policy() == Policy::Record {
                log.report(hook, rule);
            }
        }
    }

    /// Ends the call (with the state lock dropped): the first rule broken, if any.
    ///
    /// # Panics
    /// Under [`Policy::Panic`], inside a hook that broke a rule.
    pub(crate) fn finish(self) -> Result<(), VmiRule> {
        match (self.sink, self.first) {
            (_, None) => Ok(()),
            (Some((log, hook)), Some(rule)) if log.policy() == Policy::Panic => {
                log.report(hook, rule);
                Err(rule)
            }
            (_, Some(rule)) => Err(rule),
        }
    }
}
