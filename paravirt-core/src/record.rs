//! A recording adapter: wraps any backend and logs every hook call, in order.

use crate::{EntrySlot, Inspect, Pfn, PvMmuOps};
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;

/// One hook call with its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // field names are the hook arguments documented on `PvMmuOps`
pub enum Hook {
    AllocPt(Pfn),
    AllocPd(Pfn),
    AllocPdClone { pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32 },
    ReleasePt(Pfn),
    ReleasePd(Pfn),
    SetPte { table: Pfn, index: u32, val: u64 },
    SetPteAt { mm: Pfn, addr: u32, table: Pfn, index: u32, val: u64 },
    SetPteAtomic { table: Pfn, index: u32, val: u64 },
    SetPtePresent { mm: Pfn, addr: u32, table: Pfn, index: u32, val: u64 },
    SetPmd { table: Pfn, index: u32, val: u64 },
    SetPud { table: Pfn, index: u32, val: u64 },
    PteClear { mm: Pfn, addr: u32, table: Pfn, index: u32 },
    PmdClear { table: Pfn, index: u32 },
    ExitMmap(Pfn),
    WriteCr3(u32),
    ReadCr3,
    FlushTlbUser,
    FlushTlbKernel,
    FlushTlbSingle(u32),
}

impl Hook {
    /// The Linux name of the hook.
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Number of distinct hooks.
    pub const COUNT: usize = 19;

    /// All hook names, in [`index`](Self::index) order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "alloc_pt",
        "alloc_pd",
        "alloc_pd_clone",
        "release_pt",
        "release_pd",
        "set_pte",
        "set_pte_at",
        "set_pte_atomic",
        "set_pte_present",
        "set_pmd",
        "set_pud",
        "pte_clear",
        "pmd_clear",
        "exit_mmap",
        "write_cr3",
        "read_cr3",
        "flush_tlb_user",
        "flush_tlb_kernel",
        "flush_tlb_single",
    ];

    /// A dense index of the hook kind, `0..Hook::COUNT`.
    pub fn index(&self) -> usize {
        match self {
            Hook::AllocPt(_) => 0,
            Hook::AllocPd(_) => 1,
            Hook::AllocPdClone { .. } => 2,
            Hook::ReleasePt(_) => 3,
            Hook::ReleasePd(_) => 4,
            Hook::SetPte { .. } => 5,
            Hook::SetPteAt { .. } => 6,
            Hook::SetPteAtomic { .. } => 7,
            Hook::SetPtePresent { .. } => 8,
            Hook::SetPmd { .. } => 9,
            Hook::SetPud { .. } => 10,
            Hook::PteClear { .. } => 11,
            Hook::PmdClear { .. } => 12,
            Hook::ExitMmap(_) => 13,
            Hook::WriteCr3(_) => 14,
            Hook::ReadCr3 => 15,
            Hook::FlushTlbUser => 16,
            Hook::FlushTlbKernel => 17,
            Hook::FlushTlbSingle(_) => 18,
        }
    }

    /// Whether this is one of the seed's five page-type hooks.
    pub fn is_page_type_hook(&self) -> bool {
        matches!(
            self,
            Hook::AllocPt(_) | Hook::AllocPd(_) | Hook::AllocPdClone { .. } | Hook::ReleasePt(_) | Hook::ReleasePd(_)
        )
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Hook::AllocPt(p) | Hook::AllocPd(p) | Hook::ReleasePt(p) | Hook::ReleasePd(p) | Hook::ExitMmap(p) => {
                write!(f, "{}({})", self.name(), p)
            }
            Hook::AllocPdClone { pfn, clone_pfn, start, count } => {
                write!(f, "alloc_pd_clone({pfn}, {clone_pfn}, {start}, {count})")
            }
            Hook::SetPte { table, index, val }
            | Hook::SetPteAtomic { table, index, val }
            | Hook::SetPmd { table, index, val }
            | Hook::SetPud { table, index, val }
            | Hook::SetPteAt { table, index, val, .. }
            | Hook::SetPtePresent { table, index, val, .. } => {
                write!(f, "{}({}[{}] = {:#x})", self.name(), table, index, val)
            }
            Hook::PteClear { table, index, .. } | Hook::PmdClear { table, index } => {
                write!(f, "{}({}[{}])", self.name(), table, index)
            }
            Hook::WriteCr3(v) => write!(f, "write_cr3({v:#x})"),
            Hook::FlushTlbSingle(a) => write!(f, "flush_tlb_single({a:#x})"),
            Hook::ReadCr3 | Hook::FlushTlbUser | Hook::FlushTlbKernel => f.write_str(self.name()),
        }
    }
}

/// A recorded call: the hook and whether the context probe (normally "is `pgd_lock` held?")
/// answered yes when it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The call.
    pub hook: Hook,
    /// What the probe installed with [`Recorder::set_probe`] answered (false without one).
    pub probe: bool,
}

struct Log<const N: usize> {
    events: [Event; N],
    len: usize,
    dropped: usize,
}

/// Wraps a backend `B`, forwards every call to it, and records the call in a log of `N`
/// events (no heap; calls beyond `N` are counted in [`dropped`](Self::dropped)).
///
/// The call is recorded *before* it is forwarded, so the log keeps the order in which the
/// kernel made the calls even when the backend reacts to them.
pub struct Recorder<B, const N: usize> {
    inner: B,
    log: Mutex<Log<N>>,
    probe: spin::Once<&'static (dyn Fn() -> bool + Sync)>,
    enabled: core::sync::atomic::AtomicBool,
    counts: [AtomicU32; Hook::COUNT],
}

const FILLER: Event = Event { hook: Hook::ReadCr3, probe: false };

impl<B, const N: usize> Recorder<B, N> {
    /// Wraps `inner`; recording starts enabled.
    pub const fn new(inner: B) -> Self {
        Recorder {
            inner,
            log: Mutex::new(Log { events: [FILLER; N], len: 0, dropped: 0 }),
            probe: spin::Once::new(),
            enabled: core::sync::atomic::AtomicBool::new(true),
            counts: [const { AtomicU32::new(0) }; Hook::COUNT],
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Installs a probe evaluated at every call and stored in [`Event::probe`]; `i386-mm`
    /// tests use "is `pgd_lock` held?". Only the first probe installed is kept.
    pub fn set_probe(&self, probe: &'static (dyn Fn() -> bool + Sync)) {
        self.probe.call_once(|| probe);
    }

    /// Turns recording on or off (calls are always forwarded).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Forgets every recorded event and count.
    pub fn clear(&self) {
        let mut log = self.log.lock();
        log.len = 0;
        log.dropped = 0;
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Calls of the hook named `name` since the last [`clear`](Self::clear), counted even
    /// when the log is full.
    pub fn calls(&self, name: &str) -> u32 {
        Hook::NAMES.iter().position(|n| *n == name).map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Number of events recorded.
    pub fn len(&self) -> usize {
        self.log.lock().len
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of calls that did not fit in the log.
    pub fn dropped(&self) -> usize {
        self.log.lock().dropped
    }

    /// Runs `f` on the recorded events, oldest first.
    pub fn with_events<R>(&self, f: impl FnOnce(&[Event]) -> R) -> R {
        let log = self.log.lock();
        f(&log.events[..log.len])
    }

    /// Number of recorded events whose hook satisfies `pred`.
    pub fn count(&self, pred: impl Fn(&Hook) -> bool) -> usize {
        self.with_events(|ev| ev.iter().filter(|e| pred(&e.hook)).count())
    }

    fn record(&self, hook: Hook) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        self.counts[hook.index()].fetch_add(1, Ordering::Relaxed);
        let probe = self.probe.get().is_some_and(|p| p());
        let mut log = self.log.lock();
        if log.len < N {
            let i = log.len;
            log.events[i] = Event { hook, probe };
            log.len += 1;
        } else {
            log.dropped += 1;
        }
    }
}

impl<B: PvMmuOps, const N: usize> PvMmuOps for Recorder<B, N> {
    fn alloc_pt(&self, pfn: Pfn) {
        self.record(Hook::AllocPt(pfn));
        self.inner.alloc_pt(pfn)
    }
    fn alloc_pd(&self, pfn: Pfn) {
        self.record(Hook::AllocPd(pfn));
        self.inner.alloc_pd(pfn)
    }
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        self.record(Hook::AllocPdClone { pfn, clone_pfn, start, count });
        self.inner.alloc_pd_clone(pfn, clone_pfn, start, count)
    }
    fn release_pt(&self, pfn: Pfn) {
        self.record(Hook::ReleasePt(pfn));
        self.inner.release_pt(pfn)
    }
    fn release_pd(&self, pfn: Pfn) {
        self.record(Hook::ReleasePd(pfn));
        self.inner.release_pd(pfn)
    }
    unsafe fn set_pte(&self, slot: EntrySlot, val: u64) {
        self.record(Hook::SetPte { table: slot.table, index: slot.index, val });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte(slot, val) }
    }
    unsafe fn set_pte_at(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        self.record(Hook::SetPteAt { mm, addr, table: slot.table, index: slot.index, val });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte_at(mm, addr, slot, val) }
    }
    unsafe fn set_pte_atomic(&self, slot: EntrySlot, val: u64) {
        self.record(Hook::SetPteAtomic { table: slot.table, index: slot.index, val });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte_atomic(slot, val) }
    }
    unsafe fn set_pte_present(&self, mm: Pfn, addr: u32, slot: EntrySlot, val: u64) {
        self.record(Hook::SetPtePresent { mm, addr, table: slot.table, index: slot.index, val });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pte_present(mm, addr, slot, val) }
    }
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        self.record(Hook::SetPmd { table: slot.table, index: slot.index, val });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pmd(slot, val) }
    }
    unsafe fn set_pud(&self, slot: EntrySlot, val: u64) {
        self.record(Hook::SetPud { table: slot.table, index: slot.index, val });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.set_pud(slot, val) }
    }
    unsafe fn pte_clear(&self, mm: Pfn, addr: u32, slot: EntrySlot) {
        self.record(Hook::PteClear { mm, addr, table: slot.table, index: slot.index });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.pte_clear(mm, addr, slot) }
    }
    unsafe fn pmd_clear(&self, slot: EntrySlot) {
        self.record(Hook::PmdClear { table: slot.table, index: slot.index });
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.pmd_clear(slot) }
    }
    fn exit_mmap(&self, mm: Pfn) {
        self.record(Hook::ExitMmap(mm));
        self.inner.exit_mmap(mm)
    }
    fn write_cr3(&self, cr3: u32) -> u32 {
        self.record(Hook::WriteCr3(cr3));
        self.inner.write_cr3(cr3)
    }
    fn read_cr3(&self, hw: u32) -> u32 {
        self.record(Hook::ReadCr3);
        self.inner.read_cr3(hw)
    }
    fn flush_tlb_user(&self) {
        self.record(Hook::FlushTlbUser);
        self.inner.flush_tlb_user()
    }
    fn flush_tlb_kernel(&self) {
        self.record(Hook::FlushTlbKernel);
        self.inner.flush_tlb_kernel()
    }
    fn flush_tlb_single(&self, addr: u32) {
        self.record(Hook::FlushTlbSingle(addr));
        self.inner.flush_tlb_single(addr)
    }
    fn allows_large_pages(&self) -> bool {
        self.inner.allows_large_pages()
    }
}

impl<B: Inspect, const N: usize> Inspect for Recorder<B, N> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn pages_held(&self) -> usize {
        self.inner.pages_held()
    }
    fn violations(&self) -> usize {
        self.inner.violations()
    }
    fn verify(&self, out: &mut dyn core::fmt::Write) -> bool {
        self.inner.verify(out)
    }
    fn page_tables_read_only(&self) -> bool {
        self.inner.page_tables_read_only()
    }
    /// Writes the calls per hook (non-zero ones), then the backend's own statistics.
    fn write_stats(&self, out: &mut dyn core::fmt::Write) -> fmt::Result {
        write!(out, "hook calls:")?;
        for (i, name) in Hook::NAMES.iter().enumerate() {
            let n = self.counts[i].load(Ordering::Relaxed);
            if n != 0 {
                write!(out, " {name}={n}")?;
            }
        }
        writeln!(out)?;
        self.inner.write_stats(out)
    }
}
