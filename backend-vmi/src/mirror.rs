//! Mirroring one guest entry into its shadow, at once or, for an update VMI may defer
//! (`VMI_PAGE_DEFER`), at the next flush.
//!
//! A shadow L1 holds the guest's PTEs as they are; a shadow L2 holds the guest's directory
//! entries with each linked page table replaced by that table's shadow (flags kept), and
//! large-page (PSE) or non-present entries as they are. So the CPU, given the shadow root,
//! walks shadow tables only and reaches the same frames with the same permissions.

use crate::rule::{Found, VmiRule};
use crate::shadow::{self, linked, relink};
use crate::state::{Pending, State, PENDING_UPDATES};
use crate::stats::Check;
use crate::types::PageType;
use i386_paging::PhysMem;
use paravirt_core::{Entry, PagingMode, Pfn, Pmd, Pte};

impl<M: PagingMode> State<M> {
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
        let Some(t) = self.pages.get(mem, table) else { return };
        if t.ty.is_l2() {
            let new = self.shadow_dir_entry(mem, found, table, index, Pmd::from_raw(g.raw()));
            let old: Pmd = shadow::load::<M, _, P>(mem, t.shadow, index);
            if let Some(cs) = linked(old) {
                self.pages.update_by_shadow(mem, cs, |ch| ch.links = ch.links.saturating_sub(1));
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
    fn shadow_dir_entry<P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        found: &mut Found<'_>,
        table: Pfn,
        index: u32,
        g: Pmd,
    ) -> Pmd {
        let Some(child) = linked(g) else { return g };
        self.checks.count(Check::ChildAnnounced);
        match self.pages.get(mem, child) {
            Some(ch) if ch.ty.is_l1() => {
                self.pages.update(mem, child, |ch| ch.links += 1);
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

impl<M: PagingMode> State<M> {
    /// Queues the shadow update of entry `index` of page table `table` (virtual address
    /// `addr`); with the queue full, the queued ones are applied first, as a flush would.
    pub(crate) fn defer<P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        found: &mut Found<'_>,
        table: Pfn,
        index: u32,
        addr: u32,
    ) {
        let p = Pending { table, index, addr: addr & !0xfff };
        if self.pending.iter().flatten().any(|q| *q == p) {
            return;
        }
        if self.pending.iter().all(Option::is_some) {
            self.apply_pending(mem, found, |_| true);
        }
        if let Some(slot) = self.pending.iter_mut().find(|q| q.is_none()) {
            *slot = Some(p);
        }
        self.deferred += 1;
    }

    /// Applies the deferred updates `which` selects: each shadow entry is set from the guest
    /// entry as it is now.
    pub(crate) fn apply_pending<P: PhysMem + ?Sized>(
        &mut self,
        mem: &P,
        found: &mut Found<'_>,
        which: impl Fn(&Pending) -> bool,
    ) {
        for i in 0..PENDING_UPDATES {
            let Some(p) = self.pending[i] else { continue };
            if !which(&p) {
                continue;
            }
            self.pending[i] = None;
            if self.pages.get(mem, p.table).is_some() {
                let g: Pte = shadow::load::<M, _, P>(mem, p.table, p.index);
                self.mirror(mem, found, p.table, p.index, g);
            }
        }
    }

    /// Deferred updates not applied yet.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.iter().flatten().count()
    }
}
