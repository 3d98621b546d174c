//! Statistics: calls per hook, checks exercised, pages by type, shadows.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use paravirt_core::HookKind;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)*
        }

        impl $name {
            /// Every value, in index order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Number of values.
            pub const COUNT: usize = Self::ALL.len();

            /// The name printed in statistics.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$v => $s,)*
                }
            }

            /// Dense index, `0..COUNT`.
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    /// A debug check, for the "checks exercised" counters: each is counted every time it is
    /// evaluated, whether it passes or not.
    Check {
        /// Allocation needs an untyped page.
        AllocUntyped = "alloc_untyped",
        /// Flags name exactly one level (`PT` or `PD`), never `PDP`/`PML4`.
        Flags = "flags",
        /// A `ZEROED` page is zero (with `CLONE`: its user words).
        Zeroed = "zeroed",
        /// A clone source is an L2.
        CloneSourceL2 = "clone_source_l2",
        /// A clone source has the same `PAE` bit.
        ClonePae = "clone_pae",
        /// A clone range lies inside the table.
        CloneRange = "clone_range",
        /// Release needs a typed page.
        ReleaseTyped = "release_typed",
        /// Release names the page's level.
        ReleaseLevel = "release_level",
        /// A released table is no longer linked.
        ReleaseUnlinked = "release_unlinked",
        /// A released table is not the loaded root.
        ReleaseNotLoaded = "release_not_loaded",
        /// An entry write targets a typed table.
        WriteTyped = "write_typed",
        /// An entry hook matches the table's level.
        WriteLevel = "write_level",
        /// A directory entry links an announced table of the level below.
        ChildAnnounced = "child_announced",
        /// A PAE PDPT is never typed.
        PdptUntyped = "pdpt_untyped",
        /// A PAE PDPT entry holds only allowed bits.
        PdptEntry = "pdpt_entry",
        /// The root loaded with `write_cr3` is known.
        RootKnown = "root_known",
        /// The page lies in RAM.
        PfnInRange = "pfn_in_range",
        /// A shadow frame is free in the pool.
        Capacity = "capacity",
    }
}

/// Evaluations per check, kept in the backend's state (every check runs under its lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckCounts([u32; Check::COUNT]);

impl CheckCounts {
    pub(crate) const fn new() -> Self {
        CheckCounts([0; Check::COUNT])
    }

    /// Counts one evaluation of `c`.
    #[inline]
    pub(crate) fn count(&mut self, c: Check) {
        self.0[c.index()] = self.0[c.index()].saturating_add(1);
    }

    pub(crate) fn snapshot(&self) -> [u32; Check::COUNT] {
        self.0
    }
}

/// Calls per hook, counted without a lock (some hooks take none).
pub(crate) struct CallCounts([AtomicU32; HookKind::COUNT]);

impl CallCounts {
    pub(crate) const fn new() -> Self {
        CallCounts([const { AtomicU32::new(0) }; HookKind::COUNT])
    }

    /// Counts one call of `h`.
    #[inline]
    pub(crate) fn count(&self, h: HookKind) {
        self.0[h as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> [u32; HookKind::COUNT] {
        core::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// A snapshot of the backend's state and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Pages typed L1 (`PT`).
    pub typed_l1: usize,
    /// Pages typed L2 (`PD`), clones included.
    pub typed_l2: usize,
    /// Of the L2 pages, those announced with `alloc_pd_clone`.
    pub typed_clone: usize,
    /// Shadow tables alive (one per typed page).
    pub shadows_live: usize,
    /// Shadow tables created since construction.
    pub shadows_created: u64,
    /// Shadow tables freed since construction.
    pub shadows_freed: u64,
    /// Most shadow tables alive at once.
    pub shadows_peak: usize,
    /// Shadow frames reserved from physical memory at construction.
    pub pool_frames: usize,
    /// Of those, frames not holding a shadow.
    pub pool_free: usize,
    /// Whether the per-vCPU shadow PDPT frame is held (PAE, until teardown).
    pub shadow_pdpt: bool,
    /// Times the shadow PDPT was rebuilt (`write_cr3`) or patched (`set_pud` on the loaded
    /// PDPT).
    pub pdpt_updates: u64,
    /// Shadow entries written by mirroring.
    pub entries_mirrored: u64,
    /// Shadow updates deferred until a flush (`VMI_PAGE_DEFER`) so far.
    pub updates_deferred: u64,
    /// Of those, not applied yet.
    pub updates_pending: usize,
    /// Calls per hook, indexed by `HookKind as usize`.
    pub calls: [u32; HookKind::COUNT],
    /// Evaluations per check, indexed by [`Check::index`].
    pub checks: [u32; Check::COUNT],
    /// Violations detected in all.
    pub violations: usize,
}

impl Stats {
    /// Calls of hook `h`.
    pub fn calls(&self, h: HookKind) -> u32 {
        self.calls[h as usize]
    }

    /// Evaluations of check `c`.
    pub fn checks(&self, c: Check) -> u32 {
        self.checks[c.index()]
    }

    /// Evaluations of all checks.
    pub fn checks_total(&self) -> u64 {
        self.checks.iter().map(|&c| c as u64).sum()
    }

    /// Kinds of check evaluated at least once.
    pub fn checks_exercised(&self) -> usize {
        self.checks.iter().filter(|&&c| c != 0).count()
    }
}

impl fmt::Display for Stats {
    /// One line per item: pages by type, shadows, hook calls, checks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "vmi pages: typed L1={} L2={} (clones {}), shadows live={} created={} freed={} peak={}",
            self.typed_l1,
            self.typed_l2,
            self.typed_clone,
            self.shadows_live,
            self.shadows_created,
            self.shadows_freed,
            self.shadows_peak
        )?;
        writeln!(
            f,
            "vmi frames: shadow pool {} ({} free), per-vCPU PDPT {}, PDPT updates {}, entries mirrored {}, deferred {} ({} pending)",
            self.pool_frames,
            self.pool_free,
            if self.shadow_pdpt { "held" } else { "none" },
            self.pdpt_updates,
            self.entries_mirrored,
            self.updates_deferred,
            self.updates_pending
        )?;
        f.write_str("vmi hooks:")?;
        for h in HookKind::ALL {
            let n = self.calls(h);
            if n != 0 {
                write!(f, " {h}={n}")?;
            }
        }
        writeln!(f)?;
        write!(f, "vmi checks ({} kinds, {} evaluations):", self.checks_exercised(), self.checks_total())?;
        for c in Check::ALL {
            let n = self.checks(*c);
            if n != 0 {
                write!(f, " {c}={n}")?;
            }
        }
        writeln!(f)?;
        writeln!(f, "vmi violations: {}", self.violations)
    }
}
