//! An independent model of one address space.

use i386_paging::{Pfn, PteFlags};
use std::collections::BTreeMap;

/// What a correct address space maps: page-aligned virtual address → (frame, flags). Built
/// from the operations a test performs, never from the tables under test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Oracle {
    map: BTreeMap<u32, (Pfn, PteFlags)>,
}

impl Oracle {
    /// An empty address space.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records a mapping; returns false if `va` was already mapped.
    pub fn map(&mut self, va: u32, pfn: Pfn, flags: PteFlags) -> bool {
        self.map.insert(va, (pfn, flags | PteFlags::PRESENT)).is_none()
    }
    /// Removes a mapping, returning its frame.
    pub fn unmap(&mut self, va: u32) -> Option<Pfn> {
        self.map.remove(&va).map(|(p, _)| p)
    }
    /// Changes a mapping's flags; false if unmapped.
    pub fn protect(&mut self, va: u32, flags: PteFlags) -> bool {
        match self.map.get_mut(&va) {
            Some(e) => {
                e.1 = flags | PteFlags::PRESENT;
                true
            }
            None => false,
        }
    }
    /// Where `va` (any offset) should translate to.
    pub fn lookup(&self, va: u32) -> Option<(u64, PteFlags)> {
        self.map.get(&(va & !0xfff)).map(|&(p, f)| (p.phys().as_u64() + (va & 0xfff) as u64, f))
    }
    /// Every mapping.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Pfn, PteFlags)> + '_ {
        self.map.iter().map(|(&v, &(p, f))| (v, p, f))
    }
    /// Number of pages mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
