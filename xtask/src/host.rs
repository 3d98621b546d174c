//! The scenario on the host simulator: emulated RAM, a software page walker as the CPU, every
//! backend wrapped in a recorder so the hook trace can be summarised.

use backend_native::Native;
use i386_mm::scenario::{self, Config, Summary};
use i386_mm::{Pae, PagingMode, TwoLevel};
use mm_testkit::{EmulatedRam, HostCpu};
use paravirt_core::{Inspect, PvMmuOps, Recorder};

/// One row of the summary table.
pub struct Row {
    pub backend: &'static str,
    pub mode: &'static str,
    pub result: Result<Summary, String>,
}

const LOG: usize = 4096;

fn run_one<M: PagingMode, B: PvMmuOps + Inspect>(backend: B, ram: &EmulatedRam, verbose: bool) -> Row {
    let name = backend.backend_name();
    let rec: Box<Recorder<B, LOG>> = Box::new(Recorder::new(backend));
    let cpu = HostCpu::<M>::new(ram);
    let mut out = String::new();
    let r = scenario::run::<M, _, _, _>(ram, &*rec, &cpu, &Config::default(), &mut out);
    if verbose || r.is_err() {
        println!("\n=== {name} / {} (host simulator) ===", M::NAME);
        print!("{out}");
        let page_type: Vec<String> = rec
            .with_events(|ev| ev.iter().filter(|e| e.hook.is_page_type_hook()).map(|e| e.hook.to_string()).collect());
        println!(
            "page-type hooks: alloc_pt={} alloc_pd={} alloc_pd_clone={} release_pt={} release_pd={}",
            rec.calls("alloc_pt"),
            rec.calls("alloc_pd"),
            rec.calls("alloc_pd_clone"),
            rec.calls("release_pt"),
            rec.calls("release_pd")
        );
        println!("first page-type hooks: {}", page_type.iter().take(6).cloned().collect::<Vec<_>>().join(", "));
        if let Err(e) = &r {
            println!("FAILED: {e}");
        }
    }
    Row { backend: name, mode: M::NAME, result: r.map_err(|e| e.to_string()) }
}

fn rows(verbose: bool) -> Vec<Row> {
    vec![
        run_one::<TwoLevel, _>(Native, &EmulatedRam::sixteen_mib(), verbose),
        run_one::<Pae, _>(Native, &EmulatedRam::sixteen_mib(), verbose),
    ]
}

/// Runs every backend in both modes; prints the reports when `verbose`, always the table.
pub fn demo(verbose: bool) -> Result<(), String> {
    let rows = rows(verbose);
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
