//! The recording adapter, the run-time ops table and the native stores.
use paravirt_core::{
    native, EntryRef, Hook, HookKind, Inspect, ParavirtOps, Pfn, Pmd, PmdSlot, Pte, PteSlot, PvMmuOps, Recorder, Slot,
    TwoLevel,
};
use std::ptr::NonNull;
use std::sync::Mutex;

type M = TwoLevel;

/// A backend that logs what reaches it, to check forwarding.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl PvMmuOps<M> for Log {
    fn alloc_pt(&self, pfn: Pfn) {
        self.0.lock().unwrap().push(format!("alloc_pt {pfn}"));
    }
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        self.0.lock().unwrap().push(format!("clone {pfn} {clone_pfn} {start} {count}"));
    }
    fn set_pmd(&self, slot: PmdSlot, val: Pmd) {
        self.0.lock().unwrap().push(format!("set_pmd {}={val}", slot.id()));
        native::set(slot, val)
    }
    fn write_cr3(&self, cr3: u32) -> u32 {
        cr3 + 0x1000
    }
}

impl Inspect for Log {
    fn backend_name(&self) -> &'static str {
        "log"
    }
    fn pages_held(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A slot over `buf` (8-byte aligned, room for either width), table 0x9, index 0.
fn slot<E: paravirt_core::Entry>(buf: &mut [u64; 2], wide: bool) -> Slot<E> {
    // SAFETY: `buf` outlives every use of the slot in these tests and is 8-byte aligned.
    unsafe { Slot::new(NonNull::from(&mut buf[0]).cast::<u32>(), Pfn::new(9), 0, wide) }
}

#[test]
fn recorder_logs_in_call_order_and_forwards_every_call() {
    let rec: Recorder<Log, 16> = Recorder::new(Log::default());
    let mut buf = [0u64; 2];
    rec.alloc_pt(Pfn::new(1));
    rec.alloc_pd_clone(Pfn::new(2), Pfn::new(3), 768, 256);
    rec.set_pmd(slot(&mut buf, true), Pmd::from_raw(0x1_0000_2067));
    assert_eq!(rec.write_cr3(0x5000), 0x6000, "return values come from the backend");
    let hooks: Vec<Hook> = rec.with_events(|e| e.iter().map(|e| e.hook).collect());
    assert_eq!(
        hooks,
        vec![
            Hook::AllocPt { pfn: Pfn::new(1) },
            Hook::AllocPdClone { pfn: Pfn::new(2), clone_pfn: Pfn::new(3), start: 768, count: 256 },
            Hook::SetPmd { slot: EntryRef { table: Pfn::new(9), index: 0 }, val: Pmd::from_raw(0x1_0000_2067) },
            Hook::WriteCr3 { cr3: 0x5000 },
        ]
    );
    assert_eq!(rec.inner().0.lock().unwrap().len(), 3);
    assert_eq!(buf[0], 0x1_0000_2067, "the backend performed the store");
    assert_eq!(rec.pages_held(), 3, "Inspect is forwarded");
    assert_eq!(hooks[1].to_string(), "alloc_pd_clone(0x2, 0x3, 0x300, 0x100)");
    assert_eq!(hooks[2].to_string(), "set_pmd(0x9[0], 0x100002067)");
}

#[test]
fn recorder_counts_calls_beyond_its_capacity() {
    let rec: Recorder<Log, 2> = Recorder::new(Log::default());
    for i in 0..5 {
        rec.alloc_pt(Pfn::new(i));
    }
    PvMmuOps::<M>::release_pt(&rec, Pfn::new(0));
    assert_eq!(rec.len(), 2);
    assert_eq!(rec.dropped(), 4);
    assert_eq!(rec.calls(HookKind::AllocPt), 5);
    assert_eq!(rec.calls(HookKind::ReleasePt), 1);
    rec.set_enabled(false);
    rec.alloc_pt(Pfn::new(9));
    assert_eq!(rec.calls(HookKind::AllocPt), 5, "disabled recording still forwards but does not count");
    assert_eq!(rec.inner().0.lock().unwrap().len(), 6);
    rec.clear();
    assert!(rec.is_empty());
    assert_eq!(rec.calls(HookKind::AllocPt), 0);
}

#[test]
fn hook_kinds_are_the_one_list_in_order_with_linux_names() {
    assert_eq!(HookKind::COUNT, 20);
    assert_eq!(HookKind::ALL[0].name(), "alloc_pt");
    assert_eq!("release_pd".parse::<HookKind>(), Ok(HookKind::ReleasePd));
    assert!("release_pte".parse::<HookKind>().is_err(), "a typo is an error, not a silent zero");
    for (i, k) in HookKind::ALL.iter().enumerate() {
        assert_eq!(*k as usize, i);
        assert_eq!(k.name().parse::<HookKind>(), Ok(*k));
    }
    let seed: Vec<&str> = HookKind::ALL.iter().filter(|k| k.is_page_type_hook()).map(|k| k.name()).collect();
    assert_eq!(seed, ["alloc_pt", "alloc_pd", "alloc_pd_clone", "release_pt", "release_pd"]);
}

#[test]
fn recorder_stores_the_probe_answer_with_each_event() {
    static FLAG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let rec: Recorder<Log, 8> = Recorder::new(Log::default());
    rec.set_probe(&|| FLAG.load(std::sync::atomic::Ordering::SeqCst));
    rec.alloc_pt(Pfn::new(1));
    FLAG.store(true, std::sync::atomic::Ordering::SeqCst);
    rec.alloc_pt(Pfn::new(2));
    let probes: Vec<bool> = rec.with_events(|e| e.iter().map(|e| e.probe).collect());
    assert_eq!(probes, vec![false, true]);
}

#[test]
fn ops_table_dispatches_to_the_backend_chosen_at_run_time() {
    let log: &'static Log = Box::leak(Box::default());
    let ops: ParavirtOps<M> = ParavirtOps::from_backend("log", log);
    assert_eq!(ops.name(), "log");
    ops.alloc_pt(Pfn::new(7));
    ops.alloc_pd_clone(Pfn::new(8), Pfn::new(1), 3, 1);
    let mut buf = [0u64; 2];
    ops.set_pmd(slot(&mut buf, false), Pmd::from_raw(0x3067));
    assert_eq!(ops.write_cr3(0x1000), 0x2000);
    assert_eq!(*log.0.lock().unwrap(), vec!["alloc_pt 0x7", "clone 0x8 0x1 3 1", "set_pmd 0x9[0]=0x3067"]);
    assert_eq!(buf[0], 0x3067);
}

#[test]
fn native_ops_table_is_bare_metal() {
    let ops = ParavirtOps::<M>::native();
    let mut buf = [0u64; 2];
    ops.alloc_pt(Pfn::new(1));
    ops.release_pd(Pfn::new(1));
    let s: PteSlot = slot(&mut buf, true);
    ops.set_pte(s, Pte::from_raw(0x8000_0000_0000_1063));
    assert_eq!(s.read(), Pte::from_raw(0x8000_0000_0000_1063));
    ops.pte_clear(Pfn::new(0), 0, s);
    assert_eq!(buf, [0; 2]);
    assert_eq!(ops.write_cr3(0x4000), 0x4000);
    assert_eq!(ops.read_cr3(0x4000), 0x4000);
    assert!(ops.allows_large_pages());
    assert!(ops.shared_kernel_pmd());
}

#[test]
fn pae_entries_are_written_with_one_store() {
    let mut buf = [0xFFFF_FFFF_FFFF_FFFFu64, 0];
    let s: PteSlot = slot(&mut buf, true);
    native::set(s, Pte::from_raw(0x0000_0001_0000_0063));
    assert_eq!(buf[0], 0x0000_0001_0000_0063);
    native::set(s, Pte::from_raw(0x8000_0002_0000_1063));
    assert_eq!(s.read().raw(), 0x8000_0002_0000_1063);
    native::clear(s);
    assert_eq!(buf, [0; 2]);
    let t: PteSlot = slot(&mut buf, false);
    native::set(t, Pte::from_raw(0x1063));
    assert_eq!(buf[0], 0x1063, "a two-level entry is the low 4 bytes");
}

#[test]
fn pv_layer_reports_whether_hooks_are_compiled_in() {
    assert_eq!(paravirt_core::pv::ENABLED, cfg!(feature = "paravirt"));
    let log = Log::default();
    paravirt_core::pv::Pv::<M, _>::new(&log).alloc_pt(Pfn::new(4));
    let expected = if paravirt_core::pv::ENABLED { 1 } else { 0 };
    assert_eq!(log.0.lock().unwrap().len(), expected, "with paravirt off the hook is do {{ }} while (0)");
}

#[test]
fn with_inspect_takes_hooks_from_the_table_and_inspect_from_the_backend() {
    let log: &'static Log = Box::leak(Box::default());
    let ops: &'static ParavirtOps<M> = Box::leak(Box::new(ParavirtOps::from_backend("log", log)));
    let both = paravirt_core::WithInspect { hooks: ops, inspect: log };
    PvMmuOps::<M>::alloc_pt(&both, Pfn::new(3));
    assert_eq!(PvMmuOps::<M>::write_cr3(&both, 0x1000), 0x2000);
    assert_eq!(*log.0.lock().unwrap(), vec!["alloc_pt 0x3"]);
    assert_eq!(both.backend_name(), "log");
    assert_eq!(both.pages_held(), 1);
}

/// A backend whose properties differ from bare metal (Xen PV's answers).
struct NoSharing;

impl PvMmuOps<M> for NoSharing {
    fn allows_large_pages(&self) -> bool {
        false
    }
    fn shared_kernel_pmd(&self) -> bool {
        false
    }
}

#[test]
fn properties_reach_the_call_site_through_every_adapter() {
    static B: NoSharing = NoSharing;
    static REC: Recorder<&NoSharing, 4> = Recorder::new(&B);
    let ops: ParavirtOps<M> = ParavirtOps::from_backend("no-sharing", &REC);
    for (large, shared) in [
        (PvMmuOps::<M>::allows_large_pages(&&B), PvMmuOps::<M>::shared_kernel_pmd(&&B)),
        (REC.allows_large_pages(), REC.shared_kernel_pmd()),
        (ops.allows_large_pages(), ops.shared_kernel_pmd()),
    ] {
        assert!(!large && !shared);
    }
    let pv = paravirt_core::pv::Pv::<M, _>::new(&ops);
    assert_eq!(pv.shared_kernel_pmd(), !paravirt_core::pv::ENABLED);
    assert_eq!(REC.calls(HookKind::AllocPt), 0, "properties are not hook calls");
}

/// Drops every call whose hook is in the list.
struct DropKinds(&'static [HookKind]);

impl paravirt_core::Gate for DropKinds {
    fn pass(&self, hook: &Hook) -> bool {
        !self.0.contains(&hook.kind())
    }
}

#[test]
fn a_gate_drops_chosen_calls_and_forwards_the_rest() {
    let g = paravirt_core::Gated {
        inner: Log::default(),
        gate: DropKinds(&[HookKind::AllocPt, HookKind::SetPmd, HookKind::WriteCr3]),
    };
    let mut buf = [0u64; 2];
    g.alloc_pt(Pfn::new(1));
    g.alloc_pd_clone(Pfn::new(2), Pfn::new(3), 768, 256);
    g.set_pmd(slot(&mut buf, false), Pmd::from_raw(0x2067));
    assert_eq!(buf[0], 0, "a dropped entry write stores nothing");
    assert_eq!(g.write_cr3(0x5000), 0x5000, "a dropped write_cr3 returns the native value");
    assert_eq!(*g.inner.0.lock().unwrap(), vec!["clone 0x2 0x3 768 256".to_string()]);
    assert_eq!(g.backend_name(), "log", "Inspect comes from the backend");
    let pass = paravirt_core::Gated { inner: Log::default(), gate: DropKinds(&[]) };
    assert_eq!(pass.write_cr3(0x5000), 0x6000);
}
