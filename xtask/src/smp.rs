//! The SMP boots: the kernel demo on several vCPUs (`-smp N -accel tcg,thread=multi`) with
//! `smp-race` on its command line, so the APs create and destroy address spaces while the BSP
//! changes the kernel range (`kernel-demo/src/race.rs`).
//!
//! `cargo xtask demo --smp N` boots every backend × paging mode and prints one row per boot;
//! `cargo xtask test` runs the same six boots with four CPUs and the negative boots: the
//! deliberate ordering bugs (`bug-clone-outside-lock`, and the seed's `pgd_dtor` order,
//! `bug-release-before-unlist`) must make the kernel fail (a CPU finds a kernel entry missing
//! or stale, or the backend reports the violation) within the boot's time limit.

use std::path::Path;
use std::time::Duration;

use crate::boots::BACKENDS;
use crate::qemu::{self, BootConfig, BootOutcome, Machine};

/// Time limit of one SMP boot.
pub const SMP_TIMEOUT: Duration = Duration::from_secs(120);
/// Boots of a negative build before it counts as not caught.
pub const NEGATIVE_RUNS: usize = 3;
/// Lifecycles and kernel-range updates each passing boot must reach.
pub const MIN_TOTAL: u64 = 10_000;

/// The kernel's `smp-summary:` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmpSummary {
    /// CPUs online.
    pub cpus: u64,
    /// Address-space lifecycles over all APs.
    pub lifecycles: u64,
    /// Kernel-range updates by the BSP.
    pub updates: u64,
    /// Kernel-range checks the APs made through their own MMU.
    pub checks: u64,
    /// Shootdown IPIs sent.
    pub ipis: u64,
}

/// Parses `smp-summary: cpus=4 lifecycles=.. updates=.. checks=.. ipis=..` from the serial
/// output.
pub fn parse_summary(serial: &str) -> Option<SmpSummary> {
    let line = serial.lines().find_map(|l| l.strip_prefix("smp-summary: "))?;
    let mut s = SmpSummary::default();
    for word in line.split_whitespace() {
        let (k, v) = word.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "cpus" => s.cpus = v,
            "lifecycles" => s.lifecycles = v,
            "updates" => s.updates = v,
            "checks" => s.checks = v,
            "ipis" => s.ipis = v,
            _ => return None,
        }
    }
    Some(s)
}

fn boot_smp(root: &Path, cfg: &BootConfig, machine: Machine) -> Result<BootOutcome, String> {
    let elf = qemu::build_kernel(root, cfg)?;
    qemu::boot(&elf, "smp-race", machine, SMP_TIMEOUT)
}

/// One row of the table.
struct Row {
    label: String,
    summary: Option<SmpSummary>,
    verdict: String,
    secs: f64,
}

fn verdict(o: &BootOutcome, s: Option<SmpSummary>, cpus: usize) -> Result<(), String> {
    if !o.success {
        let why = o
            .serial
            .lines()
            .find(|l| l.starts_with("race: CPU") || l.starts_with("vmi:") || l.starts_with("xen:"))
            .unwrap_or_else(|| qemu::describe_status(o.status));
        return Err(why.to_string());
    }
    let s = s.ok_or("status 33 but no smp-summary line")?;
    if s.cpus != cpus as u64 {
        return Err(format!("{} CPUs online, {cpus} expected", s.cpus));
    }
    if s.lifecycles < MIN_TOTAL || s.updates < MIN_TOTAL {
        return Err(format!("totals below {MIN_TOTAL}: {s:?}"));
    }
    Ok(())
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<16} {:>4} {:>10} {:>8} {:>7} {:>7}  {:<8} verdict",
        "boot", "cpus", "lifecycles", "updates", "checks", "ipis", "seconds"
    );
    for r in rows {
        let s = r.summary.unwrap_or_default();
        println!(
            "{:<16} {:>4} {:>10} {:>8} {:>7} {:>7}  {:<8.1} {}",
            r.label, s.cpus, s.lifecycles, s.updates, s.checks, s.ipis, r.secs, r.verdict
        );
    }
}

/// Four vCPUs, the default RAM: the machine of `cargo xtask test`'s SMP boots.
pub fn four_cpus() -> Machine {
    Machine { cpus: 4, ..Machine::default() }
}

/// Boots each (backend, PAE) of `configs` on `machine` with the race and prints a row per
/// boot.
///
/// # Errors
/// The boots that did not pass.
pub fn demo(root: &Path, machine: Machine, configs: &[(&'static str, bool)]) -> Result<(), String> {
    crate::prereq::ensure_prerequisites()?;
    let cpus = machine.cpus as usize;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &(backend, pae) in configs {
        let cfg = BootConfig { backend, pae, extra_features: vec![] };
        let (summary, verdict, secs) = match boot_smp(root, &cfg, machine) {
            Ok(o) => {
                let s = parse_summary(&o.serial);
                match verdict(&o, s, cpus) {
                    Ok(()) => (s, "pass".to_string(), o.elapsed.as_secs_f64()),
                    Err(e) => {
                        failures.push(format!("{}: {e}", cfg.label()));
                        (s, format!("FAIL: {e}"), o.elapsed.as_secs_f64())
                    }
                }
            }
            Err(e) => {
                failures.push(format!("{}: {e}", cfg.label()));
                (None, format!("FAIL: {e}"), 0.0)
            }
        };
        rows.push(Row { label: cfg.label(), summary, verdict, secs });
    }
    print_rows(&rows);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// The negative builds: (backend, feature). The seed's `pgd_dtor` order runs under VMI only:
/// on bare metal nothing looks at a page's type, and under Xen `release_pd` unpins the pgd and
/// makes it writable, after which a kernel-range update's write into it is a plain, legal
/// store (Xen has nothing to refuse).
pub const NEGATIVES: &[(&str, &str)] = &[
    ("native", "bug-clone-outside-lock"),
    ("vmi", "bug-clone-outside-lock"),
    ("xen", "bug-clone-outside-lock"),
    ("vmi", "bug-release-before-unlist"),
];

/// Boots each negative build (two-level paging, four CPUs) up to [`NEGATIVE_RUNS`] times and
/// requires the kernel's failure exit with a race or backend report; prints the run that
/// caught it.
///
/// # Errors
/// The builds that were not caught.
pub fn negatives(root: &Path) -> Result<(), String> {
    let mut failures = Vec::new();
    for &(backend, feature) in NEGATIVES {
        let cfg = BootConfig { backend, pae: false, extra_features: vec![feature.to_string()] };
        let mut caught = None;
        for run in 1..=NEGATIVE_RUNS {
            let o = boot_smp(root, &cfg, four_cpus())?;
            if o.status == Some(35) {
                let why = o
                    .serial
                    .lines()
                    .find(|l| l.starts_with("race: CPU") || l.starts_with("vmi:") || l.starts_with("xen:"))
                    .map(str::to_string);
                if let Some(why) = why {
                    caught = Some((run, why, o.elapsed.as_secs_f64()));
                    break;
                }
            }
        }
        match caught {
            Some((run, why, secs)) => println!("{:<40} caught on run {run} after {secs:.1} s: {why}", cfg.label()),
            None => {
                println!("{:<40} NOT caught in {NEGATIVE_RUNS} runs", cfg.label());
                failures.push(format!("{}: not caught in {NEGATIVE_RUNS} runs", cfg.label()));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// `cargo xtask test`'s SMP step: the six boots on four CPUs, then the negative boots.
///
/// # Errors
/// Any boot that did not pass, any negative build not caught.
pub fn test(root: &Path) -> Result<(), String> {
    let all: Vec<(&'static str, bool)> = BACKENDS.iter().flat_map(|&b| [(b, false), (b, true)]).collect();
    let positive = demo(root, four_cpus(), &all);
    let negative = negatives(root);
    match (positive, negative) {
        (Ok(()), Ok(())) => Ok(()),
        (a, b) => Err([a.err(), b.err()].into_iter().flatten().collect::<Vec<_>>().join("\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_parses_and_refuses_garbage() {
        let serial = "x\nsmp-summary: cpus=4 lifecycles=23554 updates=10022 checks=1434 ipis=1019\n";
        assert_eq!(
            parse_summary(serial),
            Some(SmpSummary { cpus: 4, lifecycles: 23554, updates: 10022, checks: 1434, ipis: 1019 })
        );
        assert_eq!(parse_summary("smp-summary: cpus=four"), None);
        assert_eq!(parse_summary("smp-summary: cpus=4 bogus=1"), None);
        assert_eq!(parse_summary("no summary"), None);
    }
}
