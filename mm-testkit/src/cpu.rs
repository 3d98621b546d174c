//! A processor model over emulated RAM, with a TLB.

use crate::EmulatedRam;
use i386_paging::{read_entry, Cpu, Fault, PagingMode, Pfn, PhysAddr, Pmd, Pte, PteFlags, Pud, PF_PROT, PF_WRITE};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// What the CPU's page-fault handler does with a write that faulted on a read-only page: given
/// the fault and the 32-bit value the store wrote, returns whether it handled the store (a
/// hypervisor that emulated it, like Xen's `ptwr_do_page_fault`); then the write counts as
/// done. Otherwise the fault is the access's result.
pub type WriteFaultHandler<'r> = &'r (dyn Fn(Fault, u32) -> bool + Sync);

/// One cached translation: what a TLB entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    /// Physical address of the page (4 KiB) or large page the entry maps.
    pub base: u64,
    /// Effective permissions (`RW` and `USER` only if every level grants them, `NX` if any
    /// level sets it) and the leaf's other bits.
    pub flags: PteFlags,
    /// Whether the entry maps a large page (4 MiB two-level, 2 MiB PAE).
    pub large: bool,
    /// Whether the entry survives CR3 loads (`GLOBAL` in the leaf with CR4.PGE set).
    pub global: bool,
}

/// A paging-structure cache entry: a directory entry that points at a page table, cached so
/// the walk of another address under it starts at the page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PdeEntry {
    /// The page table's frame.
    pt: Pfn,
    /// Permissions granted by the levels above the page table.
    acc: PteFlags,
}

/// What the walk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Walked {
    entry: TlbEntry,
    /// The page table the leaf came from (none for a large page).
    pt: Option<PdeEntry>,
}

/// One use of a stale TLB entry: a cached translation that the tables in memory no longer
/// give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleHit {
    /// The virtual address accessed.
    pub va: u32,
    /// Physical address the TLB gave.
    pub cached_pa: u64,
    /// Physical address the tables give now, if they map `va` at all.
    pub current_pa: Option<u64>,
    /// Whether the access was a write.
    pub write: bool,
}

struct State {
    cr3: u32,
    /// CR4.PGE: `GLOBAL` leaves survive CR3 loads.
    pge: bool,
    /// PAE: the four PDPT entries, loaded from memory when CR3 is loaded (and when CR4.PGE
    /// changes), not re-read by each walk.
    pdptes: [u64; 4],
    /// 4 KiB translations by virtual page number.
    small: BTreeMap<u32, TlbEntry>,
    /// Large-page translations by the virtual address of the large page.
    large: BTreeMap<u32, TlbEntry>,
    /// Paging-structure cache: directory entries pointing at page tables, by the virtual
    /// address of the region they cover.
    pde: BTreeMap<u32, PdeEntry>,
    cr3_loads: u64,
    invlpgs: u64,
    flushes: u64,
    hits: u64,
    misses: u64,
    stale: Vec<StaleHit>,
}

/// A CPU with paging on and a TLB: CR3 (with PAE's PDPT registers), CR4.PGE, CR0.WP, a
/// translation cache and a paging-structure cache.
///
/// Each `HostCpu` is one virtual CPU with its own TLB; several may share one [`EmulatedRam`].
/// The TLB behaves as Intel's SDM (§4.10) lets a processor behave:
///
/// - an access that hits the TLB uses the cached translation and permissions without reading
///   the tables, so a changed entry is seen only after the right flush;
/// - a miss walks the tables (starting from a cached directory entry if there is one, so a
///   page table unlinked without a flush is still walked), and caches the translation and the
///   directory entry; nothing is cached for an address that faults, and a fault drops what was
///   cached for its address;
/// - `invlpg` drops the translations of one address (global ones too) and the whole
///   paging-structure cache; a CR3 load ([`Cpu::write_cr3`], [`Cpu::flush_tlb`]) drops
///   everything but global translations and, in PAE, reloads the four PDPT registers (a walk
///   never reads the PDPT in memory); [`Cpu::flush_tlb_global`] (a CR4.PGE toggle) drops
///   everything;
/// - supervisor writes to read-only pages fault (CR0.WP set); such a fault goes to the
///   write-fault handler first, if one was given
///   ([`with_write_fault_handler`](Self::with_write_fault_handler)). Accessed and dirty bits
///   are not written back.
///
/// Every use of a stale entry (a translation the tables no longer give, or give with fewer
/// permissions) is recorded ([`stale_hits`](Self::stale_hits)). Reaching a frame that is
/// free in [`EmulatedRam`] through a stale entry, a data page through a cached translation
/// or a page table through a cached directory entry, is a use after free the tests must never
/// commit: the access panics with `HostCpu: ... freed frame ...`.
pub struct HostCpu<'r, M: PagingMode> {
    ram: &'r EmulatedRam,
    st: Mutex<State>,
    on_write_fault: Option<WriteFaultHandler<'r>>,
    handled: AtomicU64,
    _m: PhantomData<M>,
}

impl<'r, M: PagingMode> HostCpu<'r, M> {
    /// A CPU over `ram` with CR3 = 0, CR4.PGE set and an empty TLB.
    pub fn new(ram: &'r EmulatedRam) -> Self {
        HostCpu {
            ram,
            st: Mutex::new(State {
                cr3: 0,
                pge: true,
                pdptes: [0; 4],
                small: BTreeMap::new(),
                large: BTreeMap::new(),
                pde: BTreeMap::new(),
                cr3_loads: 0,
                invlpgs: 0,
                flushes: 0,
                hits: 0,
                misses: 0,
                stale: Vec::new(),
            }),
            on_write_fault: None,
            handled: AtomicU64::new(0),
            _m: PhantomData,
        }
    }

    /// The CPU with `handler` as its page-fault handler for writes to read-only pages (a
    /// protection fault on a write): a handled store counts as done.
    pub fn with_write_fault_handler(mut self, handler: WriteFaultHandler<'r>) -> Self {
        self.on_write_fault = Some(handler);
        self
    }

    /// Write faults the handler took care of so far.
    pub fn handled_write_faults(&self) -> u64 {
        self.handled.load(Ordering::SeqCst)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// CR3 loads so far.
    pub fn cr3_loads(&self) -> u64 {
        self.state().cr3_loads
    }

    /// `invlpg`s so far.
    pub fn invlpgs(&self) -> u64 {
        self.state().invlpgs
    }

    /// Full flushes so far ([`Cpu::flush_tlb`] and [`Cpu::flush_tlb_global`]).
    pub fn flushes(&self) -> u64 {
        self.state().flushes
    }

    /// Accesses served from the TLB, and accesses that walked the tables.
    pub fn tlb_hits_and_misses(&self) -> (u64, u64) {
        let st = self.state();
        (st.hits, st.misses)
    }

    /// Every use of a stale TLB entry so far, oldest first.
    pub fn stale_hits(&self) -> Vec<StaleHit> {
        self.state().stale.clone()
    }

    /// The translation the TLB holds for virtual address `va`, if any.
    pub fn cached(&self, va: u32) -> Option<TlbEntry> {
        let st = self.state();
        Self::lookup(&st, va)
    }

    /// Translations cached (4 KiB and large) and directory entries cached.
    pub fn tlb_len(&self) -> (usize, usize) {
        let st = self.state();
        (st.small.len() + st.large.len(), st.pde.len())
    }

    /// Whether CR4.PGE is set.
    pub fn pge(&self) -> bool {
        self.state().pge
    }

    /// Writes CR4.PGE. Changing it flushes the whole TLB, global entries included, and (PAE)
    /// reloads the PDPT registers.
    pub fn set_pge(&self, on: bool) {
        let mut st = self.state();
        if st.pge != on {
            st.pge = on;
            st.small.clear();
            st.large.clear();
            st.pde.clear();
            self.load_pdptes(&mut st);
        }
    }

    /// Reads the 32-bit word at virtual address `va` as the kernel through the tables in
    /// memory alone, bypassing (and leaving alone) the TLB: what a CPU with an empty TLB would
    /// read.
    ///
    /// # Errors
    /// The fault such an access would raise.
    pub fn read_u32_uncached(&self, va: u32) -> Result<u32, Fault> {
        let st = self.state();
        let w = self.walk(&st, va, false, None)?;
        Ok(self.ram.read_u32(pa_of(&w.entry, va, M::large_page_mask())))
    }

    fn large_base(va: u32) -> u32 {
        va & M::large_page_mask()
    }

    fn lookup(st: &State, va: u32) -> Option<TlbEntry> {
        st.small.get(&(va >> 12)).or_else(|| st.large.get(&Self::large_base(va))).copied()
    }

    /// Drops the cached translations of `va` (both sizes) and the directory entry of its
    /// region.
    fn drop_va(st: &mut State, va: u32) {
        st.small.remove(&(va >> 12));
        st.large.remove(&Self::large_base(va));
        st.pde.remove(&Self::large_base(va));
    }

    /// A CR3 load: every non-global translation and the paging-structure cache go.
    fn flush_non_global(st: &mut State) {
        st.small.retain(|_, e| e.global);
        st.large.retain(|_, e| e.global);
        st.pde.clear();
    }

    fn load_pdptes(&self, st: &mut State) {
        if !M::PAE {
            return;
        }
        let base = (st.cr3 & !0x1f) as u64;
        for (i, e) in st.pdptes.iter_mut().enumerate() {
            let pa = base + 8 * i as u64;
            *e = self.ram.read_u32(pa) as u64 | (self.ram.read_u32(pa + 4) as u64) << 32;
        }
    }

    /// Panics if `pfn` is a frame the allocator holds as free: it was reached through a stale
    /// cache entry after its free.
    fn check_not_freed(&self, pfn: Pfn, what: &str, va: u32) {
        if self.ram.is_free(pfn) {
            panic!("HostCpu: {what} for {va:#010x} reaches freed frame {pfn:?} (a flush is missing before the free)");
        }
    }

    /// Walks the tables for `va` as the page walker does: PAE from the PDPT registers, then
    /// from `via` (a cached directory entry) if given, else from the directory in memory.
    fn walk(&self, st: &State, va: u32, write: bool, via: Option<PdeEntry>) -> Result<Walked, Fault> {
        let err = if write { PF_WRITE } else { 0 };
        let not_present = Fault { vector: 14, error_code: err, addr: va };
        let (pt, acc) = match via {
            Some(p) => (p.pt, p.acc),
            None => {
                let dir = if M::PAE {
                    let pdpte = Pud::from_raw(st.pdptes[(va >> 30) as usize]);
                    if !pdpte.is_present() {
                        return Err(not_present);
                    }
                    pdpte.pfn()
                } else {
                    Pfn::containing(PhysAddr::new(st.cr3 as u64))
                };
                let idx = if M::PAE { M::pmd_index(va) } else { M::pgd_index(va) };
                let pde: Pmd = read_entry::<M, _, _>(self.ram, dir, idx);
                if !pde.is_present() {
                    return Err(not_present);
                }
                let acc = combine(PteFlags::RW | PteFlags::USER, pde.flags());
                if pde.is_large() {
                    let flags = (pde.flags() - RW_USER_NX) | acc;
                    let entry = TlbEntry {
                        base: pde.large_base::<M>().as_u64(),
                        flags,
                        large: true,
                        global: st.pge && pde.flags().contains(PteFlags::GLOBAL),
                    };
                    return permit(Walked { entry, pt: None }, va, write);
                }
                (pde.pfn(), acc)
            }
        };
        let pte: Pte = read_entry::<M, _, _>(self.ram, pt, M::pte_index(va));
        if !pte.is_present() {
            return Err(not_present);
        }
        let eff = combine(acc, pte.flags());
        let entry = TlbEntry {
            base: pte.addr().as_u64(),
            flags: (pte.flags() - RW_USER_NX) | eff,
            large: false,
            global: st.pge && pte.flags().contains(PteFlags::GLOBAL),
        };
        permit(Walked { entry, pt: Some(PdeEntry { pt, acc }) }, va, write)
    }

    /// One access: the TLB, else a walk that fills it.
    fn access(&self, va: u32, write: bool) -> Result<u64, Fault> {
        let mut st = self.state();
        let mask = M::large_page_mask();
        if let Some(e) = Self::lookup(&st, va) {
            st.hits += 1;
            let pa = pa_of(&e, va, mask);
            let now = self.walk(&st, va, false, None).ok().map(|w| w.entry);
            let stale = match now {
                None => true,
                Some(n) => pa_of(&n, va, mask) != pa || !n.flags.contains(e.flags & (PteFlags::RW | PteFlags::USER)),
            };
            if stale {
                st.stale.push(StaleHit { va, cached_pa: pa, current_pa: now.map(|n| pa_of(&n, va, mask)), write });
                self.check_not_freed(Pfn::containing(PhysAddr::new(pa)), "stale TLB entry", va);
            }
            if write && !e.flags.contains(PteFlags::RW) {
                Self::drop_va(&mut st, va);
                return Err(Fault { vector: 14, error_code: PF_WRITE | PF_PROT, addr: va });
            }
            return Ok(pa);
        }
        st.misses += 1;
        let via = st.pde.get(&Self::large_base(va)).copied();
        if let Some(p) = via {
            self.check_not_freed(p.pt, "cached directory entry (page table)", va);
        }
        match self.walk(&st, va, write, via) {
            Ok(w) => {
                if w.entry.large {
                    st.large.insert(Self::large_base(va), w.entry);
                } else {
                    st.small.insert(va >> 12, w.entry);
                }
                if let Some(p) = w.pt {
                    st.pde.insert(Self::large_base(va), p);
                }
                Ok(pa_of(&w.entry, va, mask))
            }
            Err(f) => {
                Self::drop_va(&mut st, va);
                Err(f)
            }
        }
    }
}

const RW_USER_NX: PteFlags = PteFlags::RW.union(PteFlags::USER).union(PteFlags::NX);

/// Permissions accumulated down the walk: `RW` and `USER` if both grant them, `NX` if either
/// sets it.
fn combine(acc: PteFlags, e: PteFlags) -> PteFlags {
    let mut f = acc & RW_USER_NX;
    f.set(PteFlags::RW, acc.contains(PteFlags::RW) && e.contains(PteFlags::RW));
    f.set(PteFlags::USER, acc.contains(PteFlags::USER) && e.contains(PteFlags::USER));
    f.set(PteFlags::NX, acc.contains(PteFlags::NX) || e.contains(PteFlags::NX));
    f
}

/// A supervisor write to a read-only page faults (CR0.WP).
fn permit(w: Walked, va: u32, write: bool) -> Result<Walked, Fault> {
    if write && !w.entry.flags.contains(PteFlags::RW) {
        return Err(Fault { vector: 14, error_code: PF_WRITE | PF_PROT, addr: va });
    }
    Ok(w)
}

fn pa_of(e: &TlbEntry, va: u32, large_mask: u32) -> u64 {
    let off = if e.large { va & !large_mask } else { va & 0xfff };
    e.base + off as u64
}

impl<M: PagingMode> Cpu for HostCpu<'_, M> {
    fn write_cr3(&self, cr3: u32) {
        let mut st = self.state();
        st.cr3 = cr3;
        st.cr3_loads += 1;
        Self::flush_non_global(&mut st);
        self.load_pdptes(&mut st);
    }
    fn read_cr3(&self) -> u32 {
        self.state().cr3
    }
    fn load_boot_root(&self) {
        self.write_cr3(0);
    }
    fn invlpg(&self, va: u32) {
        let mut st = self.state();
        st.invlpgs += 1;
        st.small.remove(&(va >> 12));
        st.large.remove(&Self::large_base(va));
        st.pde.clear();
    }
    fn flush_tlb(&self) {
        let mut st = self.state();
        st.flushes += 1;
        Self::flush_non_global(&mut st);
        self.load_pdptes(&mut st);
    }
    fn flush_tlb_global(&self) {
        let mut st = self.state();
        st.flushes += 1;
        st.small.clear();
        st.large.clear();
        st.pde.clear();
        self.load_pdptes(&mut st);
    }
    fn read_u32(&self, va: u32) -> Result<u32, Fault> {
        let pa = self.access(va, false)?;
        Ok(self.ram.read_u32(pa))
    }
    fn write_u32(&self, va: u32, val: u32) -> Result<(), Fault> {
        match self.access(va, true) {
            Ok(pa) => {
                self.ram.write_u32(pa, val);
                Ok(())
            }
            Err(f) if f.error_code & PF_PROT != 0 && self.on_write_fault.is_some_and(|h| h(f, val)) => {
                self.handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(f) => Err(f),
        }
    }
}
