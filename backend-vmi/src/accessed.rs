//! Accessed and dirty bits: the CPU walks the shadows, so it sets `_PAGE_ACCESSED` and
//! `_PAGE_DIRTY` there, never in the guest's tables. A shadow-paging hypervisor copies them
//! back so the guest's page reclaim and writeback see them.

use crate::backend::Vmi;
use crate::root::pdpt_entry;
use crate::shadow::{self, entries, linked, relink};
use i386_mm::{entry_present, PagingMode, PhysMem, PteFlags};
use paravirt_core::native;

/// The bits a hardware walker sets by itself.
const HW_BITS: u64 = PteFlags::ACCESSED.bits() | PteFlags::DIRTY.bits();

impl<M: PagingMode, P: PhysMem, const MAX: usize> Vmi<M, P, MAX> {
    /// Copies the accessed/dirty bits the CPU set in shadow entries into the matching guest
    /// entries, and drops the `ACCESSED` bit some walkers (QEMU's) set in the shadow PDPT,
    /// where real processors never write. Returns the guest entries updated.
    ///
    /// Only an entry whose shadow agrees with the guest except for those bits is touched, so
    /// a divergence (or a table freed behind the backend's back) is left for
    /// [`verify_each`](Self::verify_each) to report. `Inspect::verify` calls it
    /// first; on the host simulator nothing sets these bits.
    pub fn sync_accessed_dirty(&self) -> usize {
        let st = self.state.lock();
        let mem = &self.mem;
        let mut updated = 0;
        for t in st.pages.iter() {
            for i in 0..entries::<M>() {
                let s = shadow::read::<M, P>(mem, t.shadow, i);
                let g = shadow::read::<M, P>(mem, t.pfn, i);
                if !entry_present(s) || !entry_present(g) || s & HW_BITS & !g == 0 {
                    continue;
                }
                let expected = match linked::<M>(g).filter(|_| t.ty.is_l2()) {
                    None => g,
                    Some(child) => match st.pages.get(child) {
                        Some(c) if c.ty.is_l1() => relink::<M>(g, c.shadow),
                        _ => continue,
                    },
                };
                if (s | HW_BITS) != (expected | HW_BITS) {
                    continue;
                }
                let slot = i386_mm::slot(mem, t.pfn, i, M::PAE);
                // SAFETY: entry `i` of a typed guest table, a frame of RAM that still holds
                // the table (its entry agrees with the shadow); under the backend's lock no
                // hook writes it concurrently.
                unsafe { native::set_entry(slot, g | (s & HW_BITS)) };
                updated += 1;
            }
        }
        if let (true, Some(frame), Some(l)) = (M::PAE, st.pdpt, st.loaded) {
            for i in 0..4 {
                let s = i386_mm::read_entry(mem, frame, i, true);
                let g = i386_mm::read_entry(mem, l.root, l.base + i, true);
                let accessed = PteFlags::ACCESSED.bits();
                if s & accessed != 0 && pdpt_entry::<M, MAX>(&st, g).is_ok_and(|(e, _)| e == s & !accessed) {
                    // SAFETY: the shadow PDPT is our frame, `i < 4`.
                    unsafe { shadow::write::<M, P>(mem, frame, i, s & !accessed) };
                }
            }
        }
        updated
    }
}
