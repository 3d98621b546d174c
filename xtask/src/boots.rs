//! The kernel demo in QEMU: the configuration matrix (every backend × paging mode, then the
//! one `boot-select` image per paging mode booted once per backend, chosen on its command line
//! and reached through a `ParavirtOps` table), the bug demonstrations (a missing `alloc_pt`
//! caught by the VMI and Xen backends on real paging) and the crash tests (each fatal CPU
//! exception reported, never a silent triple fault).
//!
//! Every configuration is a separate feature build of `kernel-demo` ([`qemu::build_kernel`],
//! release mode, one shared target directory) booted under a time limit ([`qemu::boot`]).
//! Only QEMU status 33 counts as success. The kernel prints one machine-readable line at the
//! end of a successful scenario, which the summary table is made from:
//!
//! ```text
//! summary: backend=vmi mode=pae steps=10 frames=513/551/513 held=32/0 faults=1 split=yes oom=4 user_pages=18 churned=1000
//! ```

use mm_scenario::Summary;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::qemu::{self, BootConfig, BootOutcome, Machine, BOOT_SELECT};

/// Backends of the matrix, in table order.
pub const BACKENDS: [&str; 3] = ["native", "vmi", "xen"];

/// Hard limit per boot: QEMU is killed after this long (a hung kernel).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a configuration should take: a successful boot slower than this is flagged in the
/// table (the scenario itself takes well under a second).
pub const BOOT_BUDGET: Duration = Duration::from_secs(5);

/// QEMU status of the kernel's failure exit (`(0x11 << 1) | 1`).
pub const FAILURE_STATUS: i32 = 35;

/// Lines of serial output quoted in an error.
const TAIL_LINES: usize = 25;

/// The kernel's `summary:` line (the last one in a serial log), parsed with
/// [`Summary`]'s `FromStr`.
pub fn kernel_summary(serial: &str) -> Option<Summary> {
    serial.lines().rev().find_map(|l| l.trim().strip_prefix("summary:"))?.parse().ok()
}

/// What a boot must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Run the scenario to its end: QEMU status 33.
    Pass,
    /// A planned failure: the kernel panics (status 35) with a message containing this text.
    Panic(&'static str),
}

/// The panic a boot-select image must take when its command line names no known backend.
const UNKNOWN_BACKEND_PANIC: &str = "unknown backend `backend=bogus`";

/// One boot of the matrix.
struct Row {
    cfg: BootConfig,
    /// For a [`BOOT_SELECT`] image: the backend its command line chose (`backend=...`).
    chosen: Option<&'static str>,
    /// The boot, or why there was none (build failure, QEMU missing).
    outcome: Result<BootOutcome, String>,
    /// What the boot must do.
    expect: Expect,
}

impl Row {
    fn passed(&self) -> bool {
        match (&self.outcome, self.expect) {
            (Ok(o), Expect::Pass) => o.success,
            (Ok(o), Expect::Panic(text)) => panicked_with(o, text),
            (Err(_), _) => false,
        }
    }

    /// The table's backend column: `xen`, or `xen (ops table)` for a boot-select boot.
    fn backend(&self) -> String {
        match self.chosen {
            Some(b) => format!("{b} (ops table)"),
            None => self.cfg.backend.to_string(),
        }
    }

    /// The configuration's label, with the command line if there is one.
    fn label(&self) -> String {
        match self.chosen {
            Some(b) => format!("{} -append backend={b}", self.cfg.label()),
            None => self.cfg.label(),
        }
    }
}

fn mode_name(pae: bool) -> &'static str {
    if pae {
        "pae"
    } else {
        "two-level"
    }
}

/// The last `n` lines of `text`, indented.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().fold(String::new(), |mut out, l| {
        let _ = writeln!(out, "    | {l}");
        out
    })
}

/// Whether the kernel took its failure exit (status 35) through the panic handler with a
/// message containing `text`.
fn panicked_with(o: &BootOutcome, text: &str) -> bool {
    o.status == Some(FAILURE_STATUS) && o.serial.contains("KERNEL PANIC") && o.serial.contains(text)
}

/// Builds and boots `cfg` on `machine`, printing the serial output when `verbose`.
fn build_and_boot(
    root: &Path,
    cfg: &BootConfig,
    cmdline: &str,
    machine: Machine,
    verbose: bool,
) -> Result<BootOutcome, String> {
    println!("xtask: building kernel-demo {}", cfg.label());
    let elf = qemu::build_kernel(root, cfg)?;
    boot_and_show(&elf, cfg, cmdline, machine, Expect::Pass, verbose)
}

/// Boots the image `elf` built for `cfg` on `machine` with `cmdline` (empty: none), printing
/// the serial output when `verbose`, framed as a planned failure when `expect` is a panic.
fn boot_and_show(
    elf: &Path,
    cfg: &BootConfig,
    cmdline: &str,
    machine: Machine,
    expect: Expect,
    verbose: bool,
) -> Result<BootOutcome, String> {
    let outcome = qemu::boot(elf, cmdline, machine, BOOT_TIMEOUT)?;
    if verbose {
        let extra = if cmdline.is_empty() { String::new() } else { format!(", -append {cmdline}") };
        let planned = match expect {
            Expect::Pass => "",
            Expect::Panic(_) => ": a planned kernel panic, EXPECTED to fail",
        };
        println!("\n=== kernel-demo {} (QEMU{extra}){planned} ===", cfg.label());
        print!("{}", outcome.serial);
        let verdict = match expect {
            Expect::Pass => "",
            Expect::Panic(text) if panicked_with(&outcome, text) => ": the expected failure",
            Expect::Panic(_) => ": NOT the expected panic",
        };
        println!(
            "=== QEMU status {} ({}) after {:.2} s{verdict} ===\n",
            outcome.status.map_or_else(|| "none".to_string(), |s| s.to_string()),
            qemu::describe_status(outcome.status),
            outcome.elapsed.as_secs_f64()
        );
    }
    Ok(outcome)
}

/// Why a boot did not succeed, with the tail of its serial log.
fn failure_report(label: &str, outcome: &Result<BootOutcome, String>) -> String {
    match outcome {
        Err(e) => format!("{label}: {e}"),
        Ok(o) => format!(
            "{label}: QEMU status {} ({}) after {:.2} s; serial log tail:\n{}",
            o.status.map_or_else(|| "none".to_string(), |s| s.to_string()),
            qemu::describe_status(o.status),
            o.elapsed.as_secs_f64(),
            tail(&o.serial, TAIL_LINES)
        ),
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<18} {:<10} {:<15} {:>8}  {:>5}  {:>21}  {:>14}  {:>6}",
        "backend", "mode", "result", "QEMU", "steps", "frames start/peak/end", "backend pk/end", "faults"
    );
    for r in rows {
        let mode = mode_name(r.cfg.pae);
        let (result, time) = match &r.outcome {
            Ok(o) if matches!(r.expect, Expect::Panic(_)) => (
                if r.passed() { "panic, expected" } else { "NOT PANICKED" },
                format!("{:.2} s", o.elapsed.as_secs_f64()),
            ),
            Ok(o) if o.success && o.elapsed > BOOT_BUDGET => ("ok,slow", format!("{:.2} s", o.elapsed.as_secs_f64())),
            Ok(o) if o.success => ("ok", format!("{:.2} s", o.elapsed.as_secs_f64())),
            Ok(o) if o.status.is_none() => ("TIMEOUT", format!("{:.2} s", o.elapsed.as_secs_f64())),
            Ok(o) => ("FAILED", format!("{:.2} s", o.elapsed.as_secs_f64())),
            Err(_) => ("NO BOOT", "-".to_string()),
        };
        let summary = r.outcome.as_ref().ok().filter(|o| o.success).and_then(|o| kernel_summary(&o.serial));
        match summary {
            Some(s) => println!(
                "{:<18} {:<10} {:<15} {:>8}  {:>5}  {:>21}  {:>14}  {:>6}",
                r.backend(),
                mode,
                result,
                time,
                s.steps,
                format!("{} / {} / {}", s.frames_before, s.frames_peak, s.frames_after),
                format!("{} / {}", s.held_peak, s.held_after),
                s.faults_seen
            ),
            None => println!(
                "{:<18} {:<10} {:<15} {:>8}  {:>5}  {:>21}  {:>14}  {:>6}",
                r.backend(),
                mode,
                result,
                time,
                "-",
                "-",
                "-",
                "-"
            ),
        }
    }
}

/// Builds and boots the kernel demo for every backend and paging mode (or only the
/// `(backend, pae)` pairs of `only`) on `machine`, each under [`BOOT_TIMEOUT`]. Without `only`,
/// also builds the `boot-select` image once per paging mode and boots it once per backend
/// ([`boot_select_rows`], rows `vmi (ops table)`...), then boots it with `backend=bogus`, a
/// planned panic ([`unknown_backend_row`]). Prints each boot's serial output when `verbose`
/// (the planned panic framed as expected), and always a summary table (backend, mode, result,
/// QEMU wall time, scenario steps, frames start/peak/end, backend pages peak/end, faults seen).
/// Fails unless every boot did what it must: QEMU status 33 and a summary line (for a
/// boot-select boot, naming the chosen backend and the ops-table dispatch), or for the planned
/// panic, status 35 and the panic naming the unknown backend; the error names each failed
/// configuration with the tail of its serial log.
pub fn run_matrix(
    root: &Path,
    only: Option<&[(&'static str, bool)]>,
    machine: Machine,
    verbose: bool,
) -> Result<(), String> {
    crate::prereq::ensure_prerequisites()?;
    let configs: Vec<BootConfig> = match only {
        Some(pairs) => pairs
            .iter()
            .map(|&(backend, pae)| {
                if BACKENDS.contains(&backend) {
                    Ok(BootConfig { backend, pae, extra_features: vec![] })
                } else {
                    Err(format!("unknown backend `{backend}` (expected native, vmi or xen)"))
                }
            })
            .collect::<Result<_, _>>()?,
        None => BACKENDS
            .iter()
            .flat_map(|&backend| [false, true].map(|pae| BootConfig { backend, pae, extra_features: vec![] }))
            .collect(),
    };
    let mut rows: Vec<Row> = configs
        .into_iter()
        .map(|cfg| {
            let outcome = build_and_boot(root, &cfg, "", machine, verbose);
            Row { cfg, chosen: None, outcome, expect: Expect::Pass }
        })
        .collect();
    if only.is_none() {
        rows.extend(boot_select_rows(root, machine, verbose));
        rows.push(unknown_backend_row(root, machine, verbose));
    }
    print_table(&rows);
    let mut failures = Vec::new();
    for r in &rows {
        if !r.passed() {
            let report = failure_report(&r.label(), &r.outcome);
            match r.expect {
                Expect::Pass => failures.push(report),
                Expect::Panic(text) => failures
                    .push(format!("expected a kernel panic naming `{text}` and status {FAILURE_STATUS}: {report}")),
            }
        } else if let (Ok(o), Expect::Pass) = (&r.outcome, r.expect) {
            if kernel_summary(&o.serial).is_none() {
                failures.push(format!("{}: status 33 but no parsable `summary:` line", r.label()));
            } else if let Some(b) = r.chosen {
                if let Err(e) = check_boot_select(b, &o.serial) {
                    failures.push(format!("{}: {e}\n{}", r.label(), tail(&o.serial, TAIL_LINES)));
                }
            }
        }
    }
    let planned = rows.iter().filter(|r| matches!(r.expect, Expect::Panic(_))).count();
    if failures.is_empty() {
        match planned {
            0 => println!("xtask: {} kernel boot(s) passed", rows.len()),
            n => {
                println!("xtask: {} kernel boot(s) passed, and {n} planned panic(s) failed as expected", rows.len() - n)
            }
        }
        Ok(())
    } else {
        Err(format!("{} of {} kernel boot(s) failed:\n{}", failures.len(), rows.len(), failures.join("\n")))
    }
}

/// Builds the `boot-select` image (every backend in one kernel) once per paging mode and boots
/// each image once per backend with `-append backend=...`: the rows of the matrix in which the
/// backend is chosen at boot and reached through the kernel's `ParavirtOps` table.
fn boot_select_rows(root: &Path, machine: Machine, verbose: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for pae in [false, true] {
        let cfg = BootConfig { backend: BOOT_SELECT, pae, extra_features: vec![] };
        println!("xtask: building kernel-demo {}", cfg.label());
        let elf = qemu::build_kernel(root, &cfg);
        for backend in BACKENDS {
            let outcome = match &elf {
                Ok(elf) => boot_and_show(elf, &cfg, &format!("backend={backend}"), machine, Expect::Pass, verbose),
                Err(e) => Err(e.clone()),
            };
            rows.push(Row { cfg: cfg.clone(), chosen: Some(backend), outcome, expect: Expect::Pass });
        }
    }
    rows
}

/// Checks the serial log of a boot-select boot that chose `backend`: the kernel says it chose
/// it from the command line, that it filled the ops table with it and dispatches through the
/// table, and its summary line names it.
fn check_boot_select(backend: &str, serial: &str) -> Result<(), String> {
    let chosen = format!("boot-select: backend={backend} chosen from the command line");
    let filled = format!("paravirt_ops: filled at boot with `{backend}`");
    let dispatch = "indirect call through the ParavirtOps table";
    let summary = format!("summary: backend={backend} ");
    if !serial.lines().any(|l| l.starts_with(&chosen)) {
        return Err(format!("no `{chosen}` line: the kernel did not report its boot-time choice"));
    }
    if !serial.lines().any(|l| l.starts_with(&filled) && l.contains(dispatch)) {
        return Err(format!("no `{filled}...{dispatch}` line: ops-table dispatch not reported"));
    }
    if !serial.lines().any(|l| l.starts_with(&summary)) {
        return Err(format!("the summary line does not name the chosen backend (`{summary}`)"));
    }
    Ok(())
}

/// The planned panic: the two-level `boot-select` image booted with `backend=bogus` must take
/// the kernel's failure exit with a panic naming the unknown backend (a typo must not boot on
/// bare metal).
fn unknown_backend_row(root: &Path, machine: Machine, verbose: bool) -> Row {
    let cfg = BootConfig { backend: BOOT_SELECT, pae: false, extra_features: vec![] };
    let expect = Expect::Panic(UNKNOWN_BACKEND_PANIC);
    // Already built by `boot_select_rows`: this only copies the image.
    let outcome = qemu::build_kernel(root, &cfg)
        .and_then(|elf| boot_and_show(&elf, &cfg, "backend=bogus", machine, expect, verbose));
    Row { cfg, chosen: Some("bogus"), outcome, expect }
}

/// The deliberate bug the demonstration builds enable (`i386-mm/bug-missing-alloc-pt`):
/// `pmd_populate` links a page table without announcing it with `alloc_pt`.
pub const BUG_FEATURE: &str = "bug-missing-alloc-pt";

/// What each backend's report of the missing `alloc_pt` must contain: the backend's prefix and
/// the rule broken (the pfn is checked separately).
const BUG_REPORTS: [(&str, &str, &str); 2] = [
    // vmi: link to an unannounced table: pfn 0x35e entry 32 links pfn 0x360, which is NORMAL
    ("vmi", "vmi:", "unannounced table"),
    // backend-xen: write_cr3: EBUSY: page table linked without alloc_pt/alloc_pd (pfn 0x1b5 reached as l1)
    ("xen", "xen:", "without alloc_pt"),
];

/// Checks a bug-demonstration boot: the kernel's failure exit (not a triple fault, not a
/// timeout), the panic banner, then the backend's report naming the rule and a pfn, and no
/// successful end of the scenario. Returns the report line.
fn check_bug_report(backend: &str, o: &BootOutcome) -> Result<String, String> {
    let (_, prefix, rule) =
        BUG_REPORTS.iter().find(|(b, _, _)| *b == backend).ok_or_else(|| format!("no bug demo for {backend}"))?;
    if o.status != Some(FAILURE_STATUS) {
        return Err(format!(
            "expected the kernel's failure exit (status {FAILURE_STATUS}), got status {} ({})",
            o.status.map_or_else(|| "none".to_string(), |s| s.to_string()),
            qemu::describe_status(o.status)
        ));
    }
    let at = o
        .serial
        .find("KERNEL PANIC")
        .ok_or("no `KERNEL PANIC` line: the violation was not reported through the panic handler")?;
    // The report: the panic banner and what follows it.
    let report = &o.serial[at..];
    let line = report
        .lines()
        .find(|l| l.contains(prefix))
        .ok_or_else(|| format!("the panic is not a `{prefix}` report:\n{}", tail(report, 8)))?;
    if !line.contains(rule) {
        return Err(format!("the report does not name the rule `{rule}`:\n{}", tail(report, 8)));
    }
    if !has_pfn(line) {
        return Err(format!("the report does not name the pfn:\n{}", tail(report, 8)));
    }
    if o.serial.contains("summary:") || o.serial.contains("scenario passed") {
        return Err("the scenario ran to its end despite the bug".to_string());
    }
    Ok(line.trim().to_string())
}

/// Whether `text` names a page frame: `pfn` (any case) followed by a hexadecimal or decimal
/// number.
fn has_pfn(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.match_indices("pfn").any(|(i, _)| {
        let rest = text[i + 3..].trim_start_matches([' ', '(', ':', '=']);
        let rest = rest.strip_prefix("0x").unwrap_or(rest);
        rest.chars().next().is_some_and(|c| c.is_ascii_hexdigit())
    })
}

/// Boots the bug-demonstration builds (feature `bug-missing-alloc-pt`) under the VMI and Xen
/// backends in both paging modes and asserts that each kernel catches the missing `alloc_pt`:
/// the serial log holds the panic report naming the backend, the rule and the pfn, and QEMU
/// exits with the kernel's failure status 35 (not 0, a triple fault; not a timeout). The native
/// backend cannot notice the bug (bare metal has no hook to miss), so it is not booted. Then
/// runs [`run_crash_tests`]. Prints each boot's serial output when `verbose`.
pub fn run_bug_demos(root: &Path, verbose: bool) -> Result<(), String> {
    crate::prereq::ensure_prerequisites()?;
    println!(
        "xtask: bug demo `{BUG_FEATURE}`: pmd_populate links a page table without alloc_pt \
         (native: undetectable on bare metal, not booted)"
    );
    let mut failures = Vec::new();
    for backend in ["vmi", "xen"] {
        for pae in [false, true] {
            let cfg = BootConfig { backend, pae, extra_features: vec![BUG_FEATURE.to_string()] };
            let checked = build_and_boot(root, &cfg, "", Machine::default(), verbose).and_then(|o| {
                check_bug_report(backend, &o).map_err(|e| format!("{e}\n{}", tail(&o.serial, TAIL_LINES)))
            });
            match checked {
                Ok(line) => println!("  caught  {:<10} {:<10} {line}", backend, mode_name(pae)),
                Err(e) => {
                    println!("  MISSED  {:<10} {:<10}", backend, mode_name(pae));
                    failures.push(format!("{}: {e}", cfg.label()));
                }
            }
        }
    }
    if let Err(e) = run_crash_tests(root, verbose) {
        failures.push(e);
    }
    if failures.is_empty() {
        println!("xtask: every bug demonstration was caught and reported");
        Ok(())
    } else {
        Err(format!("{} bug demonstration(s) failed:\n{}", failures.len(), failures.join("\n")))
    }
}

/// The kernel's deliberate fatal faults (`crash=` on its command line) and the report line
/// each must print.
const CRASHES: [(&str, &str); 5] = [
    ("ud", "FATAL CPU EXCEPTION 6"),
    ("pf", "FATAL CPU EXCEPTION 14"),
    ("gp", "FATAL CPU EXCEPTION 13"),
    ("df", "FATAL CPU EXCEPTION 8"),
    ("panic", "KERNEL PANIC: panicked at"),
];

/// Boots the native two-level kernel once per deliberate fatal fault (`crash=ud|pf|gp|df|panic`)
/// and asserts the exception report and QEMU status 35 for each (a triple fault would give 0).
pub fn run_crash_tests(root: &Path, verbose: bool) -> Result<(), String> {
    let cfg = BootConfig { backend: "native", pae: false, extra_features: vec![] };
    println!("xtask: building kernel-demo {}", cfg.label());
    let elf = qemu::build_kernel(root, &cfg)?;
    let mut failures = Vec::new();
    for (kind, expected) in CRASHES {
        let cmdline = format!("crash={kind}");
        let o = qemu::boot(&elf, &cmdline, Machine::default(), BOOT_TIMEOUT)?;
        if verbose {
            println!("\n=== kernel-demo {} -append {cmdline} ===\n{}", cfg.label(), o.serial);
        }
        if o.status == Some(FAILURE_STATUS) && o.serial.contains(expected) {
            println!("  crash={kind:<6} reported: {expected}");
        } else {
            failures.push(format!(
                "crash={kind}: expected `{expected}` and status {FAILURE_STATUS}, got status {}:\n{}",
                o.status.map_or_else(|| "none".to_string(), |s| s.to_string()),
                tail(&o.serial, 10)
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_line() {
        let log = "x\nsummary: backend=vmi mode=pae steps=10 frames=0/45/0 held=20/0 faults=1 split=yes oom=4 user_pages=18 churned=1000\nend\n";
        let s = kernel_summary(log).expect("parsed");
        assert_eq!((s.steps, s.frames_before, s.frames_peak, s.frames_after), (10, 0, 45, 0));
        assert_eq!((s.held_peak, s.held_after, s.faults_seen, s.split), (20, 0, 1, true));
        assert_eq!(kernel_summary("no summary here"), None);
        assert_eq!(kernel_summary("summary: frames=1/2"), None);
    }

    #[test]
    fn finds_pfns() {
        assert!(has_pfn("unannounced page table pfn 0x12c"));
        assert!(has_pfn("at Pfn(0x12c)"));
        assert!(has_pfn("pfn=300"));
        assert!(!has_pfn("no frame named"));
        assert!(!has_pfn("pfn zero"));
    }

    #[test]
    fn checks_the_boot_select_log() {
        let log = "boot-select: backend=xen chosen from the command line: Xen PV MMU model\n\
                   paravirt_ops: filled at boot with `xen`; every page-table hook is an indirect call \
                   through the ParavirtOps table\n\
                   summary: backend=xen mode=pae steps=10\n";
        assert_eq!(check_boot_select("xen", log), Ok(()));
        assert!(check_boot_select("vmi", log).is_err());
        assert!(check_boot_select("xen", &log.replace("ParavirtOps table", "vtable")).is_err());
    }

    #[test]
    fn a_planned_panic_passes_only_as_that_panic() {
        let row = |status: Option<i32>, serial: &str| Row {
            cfg: BootConfig { backend: BOOT_SELECT, pae: false, extra_features: vec![] },
            chosen: Some("bogus"),
            outcome: Ok(BootOutcome {
                status,
                success: status == Some(33),
                serial: serial.to_string(),
                elapsed: Duration::ZERO,
            }),
            expect: Expect::Panic(UNKNOWN_BACKEND_PANIC),
        };
        let panic = "KERNEL PANIC: panicked at src/select.rs: unknown backend `backend=bogus`";
        assert!(row(Some(FAILURE_STATUS), panic).passed());
        assert!(!row(Some(33), "summary: backend=native mode=two-level steps=10").passed(), "booted instead");
        assert!(!row(Some(FAILURE_STATUS), "KERNEL PANIC: panicked at another place").passed(), "another panic");
        assert!(!row(Some(0), panic).passed(), "triple fault");
        assert!(!row(None, panic).passed(), "timeout");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "    | b\n    | c\n");
    }
}
