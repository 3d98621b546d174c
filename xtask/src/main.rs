//! Workspace automation.
//!
//! - `cargo xtask test`: formatting, clippy, every host test, the `no_std` builds, the host
//!   scenario under every backend and mode, and the kernel boots in QEMU.
//! - `cargo xtask asm-check`: the native backend's code is identical to hooks compiled out.
//! - `cargo xtask bench [--runs N] [FILTER]`: the criterion benches (per call site and backend,
//!   and scaling), each variant's median and ratio, and whether their order repeats over runs.
//! - `cargo xtask xen-oracle`: the Xen model's 4-level mode against real Xen 4.17 (QEMU),
//!   operation by operation (the battery and seeded random sequences, shrunk when they differ).
//! - `cargo xtask loom`: the loom models of `pgd_lock` (also part of `test`).
//! - `cargo xtask matrix`: the missing-hook matrix (each page-type hook call site dropped
//!   once, under VMI and Xen, both modes); fails if a call site is caught by no backend.
//! - `cargo xtask mutants`: cargo-mutants over i386-mm's call-site files (installed when
//!   missing); prints caught / missed / equivalent and fails on a missed mutant not listed in
//!   `mutants-equivalent.md`.
//! - `cargo xtask flush-sites`: removes each TLB flush of i386-mm in turn; a test must fail
//!   for every one.
//! - `cargo xtask demo`: boots the kernel demo in QEMU for every backend and paging mode and
//!   prints what each boot reported and a summary table; `--backend` and `--mode` (repeatable,
//!   comma lists) choose which; `--host` runs the same scenario on the host simulator with a
//!   hook-trace summary; `--smp N` and `--mem MIB` shape the virtual machine.
//!
//! The command line is [`cli`]'s (clap): `cargo xtask --help`, `cargo xtask demo --help`.
//!
//! Missing prerequisites (the i686 and bare-metal Rust targets, QEMU) are installed with a
//! message saying so.

mod asm;
mod bench;
mod boots;
mod cli;
mod flush_sites;
mod host;
mod matrix;
mod mutants;
mod oracle;
mod package;
mod prereq;
mod qemu;
mod smp;

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use cli::{Backend, Cli, Cmd, DemoArgs, Mode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Runs a command (in the workspace root unless it names a directory), echoing it; Ok if it
/// exits 0.
fn run(cmd: &mut Command) -> Result<(), String> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let shown = format!("{cmd:?}").replace('"', "");
    println!("$ {shown}");
    let status = cmd.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Crates below the guest's mm code: the hypervisor models and the test kit must not depend
/// on `i386-mm` (paging definitions come from `paravirt-core` and `i386-paging`).
const BELOW_I386_MM: &[&str] =
    &["paravirt-core", "i386-paging", "backend-native", "backend-vmi", "backend-xen", "mm-testkit"];

/// Checks [`BELOW_I386_MM`] with `cargo tree` (normal dependencies).
fn layering() -> Result<(), String> {
    for krate in BELOW_I386_MM {
        let out = cargo()
            .current_dir(root())
            .args(["tree", "-p", krate, "-e", "normal", "--prefix", "none"])
            .output()
            .map_err(|e| format!("cannot run cargo tree: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        if tree.lines().any(|l| l.starts_with("i386-mm ")) {
            return Err(format!("{krate} depends on i386-mm:\n{tree}"));
        }
        println!("layering: {krate} does not depend on i386-mm");
    }
    Ok(())
}

/// The libraries that must build without std.
const NO_STD_CRATES: &[&str] = &[
    "paravirt-core",
    "i386-paging",
    "backend-native",
    "backend-vmi",
    "backend-xen",
    "backend-select",
    "i386-mm",
    "mm-scenario",
];

struct Suite {
    passed: Vec<(String, f64)>,
    failed: Vec<(String, String)>,
}

impl Suite {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        println!("\n==> {name}");
        let t = Instant::now();
        match f() {
            Ok(()) => self.passed.push((name.to_string(), t.elapsed().as_secs_f64())),
            Err(e) => {
                println!("!!! {name}: {e}");
                self.failed.push((name.to_string(), e));
            }
        }
    }
}

fn test() -> Result<(), String> {
    prereq::ensure_targets()?;
    prereq::ensure_qemu()?;
    let mut s = Suite { passed: vec![], failed: vec![] };
    s.step("cargo fmt --check", || run(cargo().args(["fmt", "--all", "--check"])));
    s.step("cargo clippy -D warnings", || {
        run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
    });
    s.step("cargo test --workspace", || run(cargo().args(["test", "--workspace"])));
    s.step("flush sites: each TLB flush removed in turn is caught", flush_sites::check);
    s.step("missing-hook matrix: every call site caught by a backend", matrix::check);
    s.step("layering: models and test kit below i386-mm", layering);
    s.step("backend-select: the backend picked by each feature", || {
        for f in ["vmi", "xen"] {
            run(cargo().args(["test", "--quiet", "-p", "backend-select", "--features", f]))?;
        }
        Ok(())
    });
    s.step("cargo doc -D warnings", || {
        run(cargo().env("RUSTDOCFLAGS", "-D warnings").args(["doc", "--workspace", "--no-deps", "--quiet"]))
    });
    s.step("cargo package: the libraries build from their packaged sources", package::check);
    s.step("kernel-demo: fmt and clippy for every feature set", kernel_lints);
    s.step("no_std builds (x86_64-unknown-none)", || {
        let mut c = cargo();
        c.args(["build", "--target", "x86_64-unknown-none"]);
        for k in NO_STD_CRATES {
            c.args(["-p", k]);
        }
        run(&mut c)?;
        run(cargo().args(["build", "--target", "x86_64-unknown-none", "-p", "paravirt-core", "--no-default-features"]))
    });
    s.step("loom models of pgd_lock", loom);
    s.step("asm-check: native hooks cost nothing", asm::asm_check);
    s.step("host scenario, every backend and mode", || {
        let all: Vec<(Backend, Mode)> = Backend::ALL.iter().flat_map(|&b| Mode::ALL.map(|m| (b, m))).collect();
        host::demo(&all, false)
    });
    s.step("kernel-demo: boot every backend and mode in QEMU", || {
        boots::run_matrix(&root(), None, qemu::Machine::default(), false)
    });
    s.step("kernel-demo: 1 GiB of RAM, one boot per backend", || {
        let one_gib = qemu::Machine { mem_mib: 1024, ..qemu::Machine::default() };
        boots::run_matrix(&root(), Some(&[("native", false), ("vmi", true), ("xen", true)]), one_gib, false)
    });
    s.step("kernel-demo: bug builds caught, crash reports", || boots::run_bug_demos(&root(), false));
    s.step("kernel-demo: SMP race on 4 CPUs, every backend and mode; SMP bug builds caught", || smp::test(&root()));
    s.step("xen-oracle-guest: fmt and clippy", || {
        let dir = root().join("xen-oracle-guest");
        run(cargo().current_dir(&dir).args(["fmt", "--check"]))?;
        run(cargo().current_dir(&dir).env_remove("RUSTFLAGS").args([
            "clippy",
            "--quiet",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))
    });
    s.step("xen-oracle: the model against Xen's recorded answers", || {
        run(cargo().args(["test", "-q", "-p", "xen-oracle", "--features", "model"]))
    });
    s.step("xen-oracle: the model against real Xen (battery + 200 seeds)", oracle::test_step);
    s.step("bench smoke (each criterion bench once)", || {
        run(cargo().args([
            "bench",
            "-p",
            "benches",
            "--no-default-features",
            "--bench",
            "call_sites",
            "--",
            "--test",
        ]))?;
        run(cargo().args(["bench", "-p", "benches", "--", "--test"]))
    });
    println!("\n==> summary");
    for (n, t) in &s.passed {
        println!("  ok    {n} ({t:.1}s)");
    }
    for (n, e) in &s.failed {
        println!("  FAIL  {n}: {e}");
    }
    println!("xtask: {} passed, {} failed", s.passed.len(), s.failed.len());
    if s.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} step(s) failed", s.failed.len()))
    }
}

/// The kernel demo is its own workspace: check its formatting and lint each build.
fn kernel_lints() -> Result<(), String> {
    let dir = root().join("kernel-demo");
    run(cargo().current_dir(&dir).args(["fmt", "--check"]))?;
    for features in ["", "pae", "vmi", "vmi,pae", "xen", "xen,pae", "boot-select", "boot-select,pae"] {
        let mut c = cargo();
        c.current_dir(&dir).env_remove("RUSTFLAGS").args([
            "clippy",
            "--quiet",
            "--release",
            "--target",
            "i686-unknown-linux-gnu",
        ]);
        if !features.is_empty() {
            c.args(["--features", features]);
        }
        run(c.args(["--", "-D", "warnings"]))?;
    }
    conflicting_features_refused(&dir)
}

/// `vmi` and `xen` together must stop the kernel's build with its own `compile_error!` only (no
/// other error before or after it).
fn conflicting_features_refused(dir: &Path) -> Result<(), String> {
    const MESSAGE: &str = "features `vmi` and `xen` each select a backend";
    println!("$ cargo build --release --features vmi,xen (in kernel-demo; must fail with one error)");
    let out = cargo()
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .args(["build", "--release", "--target", qemu::KERNEL_TARGET, "--features", "vmi,xen"])
        .output()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> =
        stderr.lines().filter(|l| l.starts_with("error") && !l.starts_with("error: could not compile")).collect();
    match errors.as_slice() {
        [only] if !out.status.success() && only.contains(MESSAGE) => Ok(()),
        _ => Err(format!("--features vmi,xen must fail with the compile_error! alone, got:\n{stderr}")),
    }
}

/// Wrong orderings the loom models must catch, each built only under `cfg(loom)`.
const LOOM_BUGS: &[&str] = &[
    "loom-bug-copy-outside-lock",
    "loom-bug-list-add-outside-lock",
    "loom-bug-clone-hook-outside-lock",
    "loom-bug-release-before-unlist",
    "loom-bug-pae-halves",
];

/// The loom models (`i386-mm/tests/loom_models.rs`): every correct ordering passes, then each
/// wrong ordering is built and loom must catch it. Prints per model the verdict, the
/// interleavings explored, the preemption bound and the time.
fn loom() -> Result<(), String> {
    let target = root().join("target").join("loom");
    let mut rows = Vec::new();
    for features in std::iter::once(None).chain(LOOM_BUGS.iter().map(|f| Some(*f))) {
        let mut c = cargo();
        c.current_dir(root()).env("RUSTFLAGS", "--cfg loom").env("CARGO_TARGET_DIR", &target).args([
            "test",
            "--release",
            "-p",
            "i386-mm",
            "--test",
            "loom_models",
        ]);
        if let Some(f) = features {
            c.args(["--features", f]);
        }
        c.args(["--", "--nocapture", "--test-threads", "1"]);
        println!("$ loom models{}", features.map(|f| format!(" with {f}")).unwrap_or_default());
        let out = c.output().map_err(|e| format!("cannot run cargo test: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut name = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("test ") {
                name = rest.split(" ...").next().unwrap_or("").to_string();
            }
            if let Some(pos) = line.find("loom: ") {
                rows.push(format!("  ok      {name:<72} {}", &line[pos + 6..]));
            }
            if let Some(pos) = line.find("loom caught it: ") {
                let msg: String = line[pos + 16..].chars().take(90).collect();
                rows.push(format!("  caught  {name:<72} {msg}"));
            }
        }
        if !out.status.success() {
            println!("{text}{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!("loom models failed{}", features.map(|f| format!(" with {f}")).unwrap_or_default()));
        }
    }
    println!("\nloom models (verdict, model, interleavings explored):");
    for r in &rows {
        println!("{r}");
    }
    Ok(())
}

/// `cargo xtask demo`: the chosen backends × modes on the host simulator (`--host`) or in QEMU
/// (without a filter: every static build, the ops-table boots and the planned panic).
fn demo(args: &DemoArgs) -> Result<(), String> {
    let selection = args.selection();
    let machine = args.machine();
    if machine.cpus > 1 {
        let pairs: Vec<(&'static str, bool)> = selection.iter().map(|(b, m)| (b.name(), m.pae())).collect();
        return smp::demo(&root(), machine, &pairs);
    }
    if args.host {
        return host::demo(&selection, true);
    }
    prereq::ensure_targets()?;
    let pairs: Vec<(&'static str, bool)> = selection.iter().map(|(b, m)| (b.name(), m.pae())).collect();
    let only = if args.unfiltered() { None } else { Some(&pairs[..]) };
    boots::run_matrix(&root(), only, args.machine(), true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Test => test(),
        Cmd::Demo(args) => demo(args),
        Cmd::Loom => loom(),
        Cmd::XenOracle(args) => oracle::main(args),
        Cmd::FlushSites => flush_sites::check(),
        Cmd::Matrix => matrix::check(),
        Cmd::Mutants => mutants::mutants(),
        Cmd::Bench(args) => bench::bench(args.runs, args.filter.as_deref()),
        Cmd::AsmCheck => prereq::ensure_targets().and_then(|()| asm::asm_check()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
