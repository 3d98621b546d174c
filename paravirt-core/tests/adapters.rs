//! The recording adapter and the run-time ops table.
use paravirt_core::{native, EntrySlot, Hook, Inspect, ParavirtOps, Pfn, PvMmuOps, Recorder};
use std::sync::Mutex;

/// A backend that logs what reaches it, to check forwarding.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl PvMmuOps for Log {
    fn alloc_pt(&self, pfn: Pfn) {
        self.0.lock().unwrap().push(format!("alloc_pt {pfn}"));
    }
    fn alloc_pd_clone(&self, pfn: Pfn, clone_pfn: Pfn, start: u32, count: u32) {
        self.0.lock().unwrap().push(format!("clone {pfn} {clone_pfn} {start} {count}"));
    }
    unsafe fn set_pmd(&self, slot: EntrySlot, val: u64) {
        self.0.lock().unwrap().push(format!("set_pmd {}[{}]={val:#x}", slot.table, slot.index));
        // SAFETY: forwarded caller contract.
        unsafe { native::set_entry(slot, val) }
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

fn slot(buf: &mut [u32; 4], wide: bool) -> EntrySlot {
    EntrySlot { ptr: buf.as_mut_ptr(), table: Pfn(9), index: 0, wide }
}

#[test]
fn recorder_logs_in_call_order_and_forwards_every_call() {
    let rec: Recorder<Log, 16> = Recorder::new(Log::default());
    let mut buf = [0u32; 4];
    rec.alloc_pt(Pfn(1));
    rec.alloc_pd_clone(Pfn(2), Pfn(3), 768, 256);
    // SAFETY: `buf` has room for an 8-byte entry.
    unsafe { rec.set_pmd(slot(&mut buf, true), 0x1_0000_2067) };
    assert_eq!(rec.write_cr3(0x5000), 0x6000, "return values come from the backend");
    let hooks: Vec<Hook> = rec.with_events(|e| e.iter().map(|e| e.hook).collect());
    assert_eq!(
        hooks,
        vec![
            Hook::AllocPt(Pfn(1)),
            Hook::AllocPdClone { pfn: Pfn(2), clone_pfn: Pfn(3), start: 768, count: 256 },
            Hook::SetPmd { table: Pfn(9), index: 0, val: 0x1_0000_2067 },
            Hook::WriteCr3(0x5000),
        ]
    );
    assert_eq!(rec.inner().0.lock().unwrap().len(), 3);
    assert_eq!(buf, [0x2067, 1, 0, 0], "the backend performed the store");
    assert_eq!(rec.pages_held(), 3, "Inspect is forwarded");
    assert_eq!(hooks[1].to_string(), "alloc_pd_clone(0x2, 0x3, 768, 256)");
}

#[test]
fn recorder_counts_calls_beyond_its_capacity() {
    let rec: Recorder<Log, 2> = Recorder::new(Log::default());
    for i in 0..5 {
        rec.alloc_pt(Pfn(i));
    }
    rec.release_pt(Pfn(0));
    assert_eq!(rec.len(), 2);
    assert_eq!(rec.dropped(), 4);
    assert_eq!(rec.calls("alloc_pt"), 5);
    assert_eq!(rec.calls("release_pt"), 1);
    rec.set_enabled(false);
    rec.alloc_pt(Pfn(9));
    assert_eq!(rec.calls("alloc_pt"), 5, "disabled recording still forwards but does not count");
    assert_eq!(rec.inner().0.lock().unwrap().len(), 6);
    rec.clear();
    assert!(rec.is_empty());
    assert_eq!(rec.calls("alloc_pt"), 0);
}

#[test]
fn recorder_stores_the_probe_answer_with_each_event() {
    static FLAG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let rec: Recorder<Log, 8> = Recorder::new(Log::default());
    rec.set_probe(&|| FLAG.load(std::sync::atomic::Ordering::SeqCst));
    rec.alloc_pt(Pfn(1));
    FLAG.store(true, std::sync::atomic::Ordering::SeqCst);
    rec.alloc_pt(Pfn(2));
    let probes: Vec<bool> = rec.with_events(|e| e.iter().map(|e| e.probe).collect());
    assert_eq!(probes, vec![false, true]);
}

#[test]
fn ops_table_dispatches_to_the_backend_chosen_at_run_time() {
    let log: &'static Log = Box::leak(Box::default());
    let ops = ParavirtOps::from_backend("log", log);
    assert_eq!(ops.name(), "log");
    ops.alloc_pt(Pfn(7));
    ops.alloc_pd_clone(Pfn(8), Pfn(1), 3, 1);
    let mut buf = [0u32; 4];
    // SAFETY: `buf` has room for a 4-byte entry.
    unsafe { ops.set_pmd(slot(&mut buf, false), 0x3067) };
    assert_eq!(ops.write_cr3(0x1000), 0x2000);
    assert_eq!(*log.0.lock().unwrap(), vec!["alloc_pt 0x7", "clone 0x8 0x1 3 1", "set_pmd 0x9[0]=0x3067"]);
    assert_eq!(buf[0], 0x3067);
}

#[test]
fn native_ops_table_is_bare_metal() {
    let ops = ParavirtOps::native();
    let mut buf = [0u32; 4];
    ops.alloc_pt(Pfn(1));
    ops.release_pd(Pfn(1));
    // SAFETY: `buf` has room for an 8-byte entry.
    unsafe {
        ops.set_pte(slot(&mut buf, true), 0x8000_0000_0000_1063);
    }
    assert_eq!(buf, [0x1063, 0x8000_0000, 0, 0]);
    // SAFETY: as above.
    unsafe { ops.pte_clear(Pfn(0), 0, slot(&mut buf, true)) };
    assert_eq!(buf, [0; 4]);
    assert_eq!(ops.write_cr3(0x4000), 0x4000);
    assert_eq!(ops.read_cr3(0x4000), 0x4000);
    assert!(ops.allows_large_pages());
}

#[test]
fn pae_store_order_is_high_half_first_and_clear_low_half_first() {
    // Watches the other half at each step to see the order of the 32-bit stores.
    let mut buf = [0xFFFF_FFFFu32, 0xFFFF_FFFF, 0, 0];
    let s = slot(&mut buf, true);
    // SAFETY: `buf` has room for an 8-byte entry.
    unsafe { native::set_entry(s, 0x0000_0001_0000_0063) };
    assert_eq!(buf[..2], [0x63, 1]);
    // A reader that sees the low half present must see the new high half: write a new value
    // whose high half differs and check the intermediate state the reader could observe.
    let mut half = [0u32; 4];
    let s = slot(&mut half, true);
    // SAFETY: as above.
    unsafe {
        s.ptr.add(1).write_volatile(0x2); // what set_entry does first
        assert_eq!(native::read_entry(s) & 1, 0, "not present until the low half lands");
        native::set_entry(s, 0x0000_0002_0000_1063);
        assert_eq!(native::read_entry(s), 0x0000_0002_0000_1063);
        native::clear_entry(s);
    }
    assert_eq!(half, [0; 4]);
}

#[test]
fn pv_layer_reports_whether_hooks_are_compiled_in() {
    assert_eq!(paravirt_core::pv::ENABLED, cfg!(feature = "paravirt"));
    let log = Log::default();
    paravirt_core::pv::paravirt_alloc_pt(&log, Pfn(4));
    let expected = if paravirt_core::pv::ENABLED { 1 } else { 0 };
    assert_eq!(log.0.lock().unwrap().len(), expected, "with paravirt off the hook is do {{ }} while (0)");
}

#[test]
fn with_inspect_takes_hooks_from_the_table_and_inspect_from_the_backend() {
    let log: &'static Log = Box::leak(Box::default());
    let ops: &'static ParavirtOps = Box::leak(Box::new(ParavirtOps::from_backend("log", log)));
    let both = paravirt_core::WithInspect { hooks: ops, inspect: log };
    both.alloc_pt(Pfn(3));
    assert_eq!(both.write_cr3(0x1000), 0x2000);
    assert_eq!(*log.0.lock().unwrap(), vec!["alloc_pt 0x3"]);
    assert_eq!(both.backend_name(), "log");
    assert_eq!(both.pages_held(), 1);
}
