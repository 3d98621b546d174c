//! Accessed and dirty bits: the CPU walks the shadows, so it sets `_PAGE_ACCESSED` and
//! `_PAGE_DIRTY` there, never in the guest's tables. A shadow-paging hypervisor copies them
//! back so the guest's page reclaim and writeback see them.

use crate::shadow::{self, entries, linked, relink, Decode};
use crate::state::State;
use i386_paging::PhysMem;
use paravirt_core::{PagingMode, Pfn, Pmd, Pte, PteFlags, Pud};

/// The bits a hardware walker sets by itself.
const HW_BITS: PteFlags = PteFlags::ACCESSED.union(PteFlags::DIRTY);

/// The guest entry `g` with the accessed/dirty bits the CPU set in its shadow `s`, if `s`
/// sets one that `g` lacks and otherwise agrees with `expected` (what `g` mirrors to).
fn with_hw_bits<E: Decode>(g: E, s: E, expected: E) -> Option<E> {
    let new = (s.flag_bits() & HW_BITS) - g.flag_bits();
    (g.present() && s.present() && !new.is_empty() && s.plus(HW_BITS) == expected.plus(HW_BITS)).then(|| g.plus(new))
}

impl<M: PagingMode> State<M> {
    /// See [`Vmi::sync_accessed_dirty`](crate::Vmi::sync_accessed_dirty). Returns the guest
    /// entries updated.
    pub(crate) fn sync_accessed_dirty<P: PhysMem + ?Sized>(&self, mem: &P) -> usize {
        let mut updated = 0;
        for t in self.pages.iter(mem) {
            for i in 0..entries::<M>() {
                let done = if t.ty.is_l2() {
                    self.sync_dir_entry(mem, t.pfn, t.shadow, i)
                } else {
                    sync_pte::<M, P>(mem, t.pfn, t.shadow, i)
                };
                updated += done as usize;
            }
        }
        if let (true, Some(frame), Some(l)) = (M::PAE, self.pdpt, self.loaded) {
            for i in 0..4 {
                let s: Pud = shadow::load::<M, _, P>(mem, frame, i);
                let g: Pud = shadow::load::<M, _, P>(mem, l.root, l.base + i);
                let cleaned = s.with_flags(s.flags() - PteFlags::ACCESSED);
                if s != cleaned && self.pdpt_entry(mem, g).is_ok_and(|(e, _)| e == cleaned) {
                    shadow::store::<M, _, P>(mem, frame, i, cleaned);
                }
            }
        }
        updated
    }

    /// Entry `i` of the L2 `table` whose shadow is `sh`: copies the A/D bits back if the
    /// shadow agrees otherwise (a link to something that is not a typed L1 is left alone).
    fn sync_dir_entry<P: PhysMem + ?Sized>(&self, mem: &P, table: Pfn, sh: Pfn, i: u32) -> bool {
        let s: Pmd = shadow::load::<M, _, P>(mem, sh, i);
        let g: Pmd = shadow::load::<M, _, P>(mem, table, i);
        let expected = match linked(g) {
            None => g,
            Some(child) => match self.pages.get(mem, child) {
                Some(c) if c.ty.is_l1() => relink(g, c.shadow),
                _ => return false,
            },
        };
        let Some(new) = with_hw_bits(g, s, expected) else { return false };
        shadow::store::<M, _, P>(mem, table, i, new);
        true
    }
}

/// Entry `i` of the L1 `table` whose shadow is `sh`: copies the A/D bits back if the shadow
/// agrees otherwise.
fn sync_pte<M: PagingMode, P: PhysMem + ?Sized>(mem: &P, table: Pfn, sh: Pfn, i: u32) -> bool {
    let s: Pte = shadow::load::<M, _, P>(mem, sh, i);
    let g: Pte = shadow::load::<M, _, P>(mem, table, i);
    let Some(new) = with_hw_bits(g, s, g) else { return false };
    shadow::store::<M, _, P>(mem, table, i, new);
    true
}
