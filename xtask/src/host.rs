//! The scenario on the host simulator: emulated RAM, a software page walker as the CPU, every
//! backend wrapped in a recorder so the hook trace can be summarised.

use backend_native::Native;
use backend_vmi::Vmi;
use backend_xen::{Hypervisor, Xen};
use i386_mm::{Fault, Pae, PagingMode, PhysMem, TwoLevel};
use mm_scenario::{self as scenario, Config, Summary};
use mm_testkit::{EmulatedRam, HostCpu};
use paravirt_core::{HookKind, Inspect, Policy, PvMmuOps, Recorder};

use crate::cli::{Backend, Mode};

/// One row of the summary table.
pub struct Row {
    pub backend: &'static str,
    pub mode: &'static str,
    pub result: Result<Summary, String>,
}

const LOG: usize = 4096;

fn run_one<M: PagingMode, B: PvMmuOps<M> + Inspect>(backend: B, ram: &EmulatedRam, verbose: bool) -> Row {
    run_on::<M, B>(backend, ram, &HostCpu::<M>::new(ram), &Config::default(), verbose)
}

fn run_on<M: PagingMode, B: PvMmuOps<M> + Inspect>(
    backend: B,
    ram: &EmulatedRam,
    cpu: &HostCpu<'_, M>,
    cfg: &Config,
    verbose: bool,
) -> Row {
    let name = backend.backend_name();
    let rec: Box<Recorder<B, LOG>> = Box::new(Recorder::new(backend));
    let mut out = String::new();
    let mut r = scenario::run::<M, _, _, _>(ram, &*rec, cpu, cfg, &mut out);
    let stale = cpu.stale_hits();
    if r.is_ok() && !stale.is_empty() {
        out.push_str(&format!("stale TLB entries used: {stale:?}\n"));
        r = Err(scenario::ScenarioError::Check { step: "tlb", what: "stale TLB entry used", va: stale[0].va });
    }
    if verbose || r.is_err() {
        println!("\n=== {name} / {} (host simulator) ===", M::NAME);
        print!("{out}");
        let page_type: Vec<String> = rec.with_events(|ev| {
            ev.iter().filter(|e| e.hook.kind().is_page_type_hook()).map(|e| e.hook.to_string()).collect()
        });
        let counts: Vec<String> =
            HookKind::ALL.iter().filter(|k| k.is_page_type_hook()).map(|&k| format!("{k}={}", rec.calls(k))).collect();
        println!("page-type hooks: {}", counts.join(" "));
        println!("first page-type hooks: {}", page_type.iter().take(6).cloned().collect::<Vec<_>>().join(", "));
        if let Err(e) = &r {
            println!("FAILED: {e}");
        }
    }
    Row { backend: name, mode: M::NAME, result: r.map_err(|e| e.to_string()) }
}

/// VMI: the backend reserves its shadow frames at construction (before the scenario's
/// baseline) and gives them back with `teardown` once the scenario has released every table.
fn run_vmi<M: PagingMode>(verbose: bool) -> Row {
    let ram = EmulatedRam::sixteen_mib();
    let vmi = match Vmi::<M, _>::new(&ram, Policy::Record) {
        Ok(v) => v,
        Err(e) => return Row { backend: "vmi", mode: M::NAME, result: Err(format!("{e:?}")) },
    };
    let mut row = run_one::<M, _>(&vmi, &ram, verbose);
    if row.result.is_ok() {
        if let Err(v) = vmi.teardown() {
            row.result = Err(format!("teardown: {v}"));
        } else if ram.frames_in_use() != 0 {
            row.result = Err(format!("{} frames still in use after teardown", ram.frames_in_use()));
        }
    }
    row
}

/// Xen: the model's frame table is the hypervisor's per-frame state, and the guest keeps its
/// page flags per frame too, both reserved in RAM before the scenario's baseline and given
/// back once it has released every table; the kernel reserves the top of the address space
/// for Xen, and the CPU hands a write fault on a read-only page to it (`ptwr_do_page_fault`).
fn run_xen<M: PagingMode>(verbose: bool) -> Row {
    let ram = EmulatedRam::sixteen_mib();
    let hv = match Hypervisor::<M, _>::boot(&ram) {
        Ok(hv) => Box::new(hv),
        Err(e) => return Row { backend: "xen", mode: M::NAME, result: Err(e.to_string()) },
    };
    let xen = match Xen::boot(&hv, Policy::Record) {
        Ok(x) => x,
        Err(e) => return Row { backend: "xen", mode: M::NAME, result: Err(e.to_string()) },
    };
    let ptwr = |f: Fault, val: u32| hv.ptwr_do_page_fault(f.addr, u64::from(val), 4).is_ok();
    let cpu = HostCpu::<M>::new(&ram).with_write_fault_handler(&ptwr);
    let cfg = Config { reserve_top: hv.reserve_top(), churn: 1000, ..Config::default() };
    let mut row = run_on::<M, _>(&xen, &ram, &cpu, &cfg, verbose);
    if row.result.is_ok() {
        if let Err(e) = xen.teardown().and_then(|()| hv.free_frametable()) {
            row.result = Err(format!("teardown: {e}"));
        } else if ram.frames_in_use() != 0 {
            row.result = Err(format!("{} frames still in use after teardown", ram.frames_in_use()));
        }
    }
    row
}

/// Runs `backend` in `mode`.
fn run_chosen(backend: Backend, mode: Mode, verbose: bool) -> Row {
    match (backend, mode) {
        (Backend::Native, Mode::TwoLevel) => run_one::<TwoLevel, _>(Native, &EmulatedRam::sixteen_mib(), verbose),
        (Backend::Native, Mode::Pae) => run_one::<Pae, _>(Native, &EmulatedRam::sixteen_mib(), verbose),
        (Backend::Vmi, Mode::TwoLevel) => run_vmi::<TwoLevel>(verbose),
        (Backend::Vmi, Mode::Pae) => run_vmi::<Pae>(verbose),
        (Backend::Xen, Mode::TwoLevel) => run_xen::<TwoLevel>(verbose),
        (Backend::Xen, Mode::Pae) => run_xen::<Pae>(verbose),
    }
}

/// Runs each backend and mode of `selection`; prints the reports when `verbose`, always the
/// table. Fails if a run failed.
pub fn demo(selection: &[(Backend, Mode)], verbose: bool) -> Result<(), String> {
    let rows: Vec<Row> = selection.iter().map(|&(backend, mode)| run_chosen(backend, mode, verbose)).collect();
    println!("\nbackend  mode       result  steps  user pages  frames (start/peak/end)  backend pages (peak/end)  faults  split");
    let mut failed = 0;
    for r in &rows {
        match &r.result {
            Ok(s) => println!(
                "{:<8} {:<10} ok      {:>5}  {:>10}  {:>6} / {:>4} / {:>4}       {:>5} / {:<3}                 {:>6}  {}",
                r.backend,
                r.mode,
                s.steps,
                s.user_pages,
                s.frames_before,
                s.frames_peak,
                s.frames_after,
                s.held_peak,
                s.held_after,
                s.faults_seen,
                if s.split { "yes" } else { "no" }
            ),
            Err(e) => {
                failed += 1;
                println!("{:<8} {:<10} FAILED  {e}", r.backend, r.mode);
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} host scenario run(s) failed"))
    }
}
