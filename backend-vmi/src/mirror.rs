//! Mirroring one guest entry into its shadow.
//!
//! A shadow L1 holds the guest's PTEs as they are; a shadow L2 holds the guest's directory
//! entries with each linked page table replaced by that table's shadow (flags kept), and
//! large-page (PSE) or non-present entries as they are. So the CPU, given the shadow root,
//! walks shadow tables only and reaches the same frames with the same permissions.

use crate::rule::{Found, VmiRule};
use crate::shadow::{self, linked, relink};
use crate::state::State;
use crate::stats::Check;
use crate::types::PageType;
use i386_paging::PhysMem;
use paravirt_core::{Entry, PagingMode, Pfn, Pmd, Pte};

impl<M: PagingMode, const MAX: usize> State<M, MAX> {
    /// Sets the shadow of entry `index` of typed table `table` from the guest value `g`, read
    /// at the table's real level (a value written by a hook of the other level is reread as
    /// the table's own: `WrongLevel` has been reported by then). Does nothing for an untyped
    /// table. Keeps `links` right.
    ///
    /// # Panics
    /// If `index` is past the end of a table.
    pub(crate) fn mirror<E: Entry, P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        found: &mut Found<'_>,
        table: Pfn,
        index: u32,
        g: E,
    ) {
        let Some(t) = self.pages.get(table).copied() else { return };
        if t.ty.is_l2() {
            let new = self.shadow_dir_entry(found, table, index, Pmd::from_raw(g.raw()));
            let old: Pmd = shadow::load::<M, _, P>(mem, t.shadow, index);
            if let Some(ch) = linked(old).and_then(|cs| self.pages.by_shadow_mut(cs)) {
                ch.links = ch.links.saturating_sub(1);
            }
            shadow::store::<M, _, P>(mem, t.shadow, index, new);
        } else {
            shadow::store::<M, _, P>(mem, t.shadow, index, Pte::from_raw(g.raw()));
        }
        self.mirrored += 1;
    }

    /// What guest directory entry `g` (entry `index` of L2 `table`) becomes in the shadow: as
    /// it is, or for a link to a page table a link to its shadow (counted in its `links`). A
    /// link to anything but a typed L1 is reported and becomes an empty entry.
    fn shadow_dir_entry(&mut self, found: &mut Found<'_>, table: Pfn, index: u32, g: Pmd) -> Pmd {
        let Some(child) = linked(g) else { return g };
        self.checks.count(Check::ChildAnnounced);
        match self.pages.get_mut(child) {
            Some(ch) if ch.ty.is_l1() => {
                ch.links += 1;
                relink(g, ch.shadow)
            }
            other => {
                let child_type = other.map_or(PageType::NORMAL, |ch| ch.ty);
                found.push(VmiRule::UnannouncedChild { table, index, child, child_type });
                Pmd::EMPTY
            }
        }
    }
}
