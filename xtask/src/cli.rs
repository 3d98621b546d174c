//! The command line of `cargo xtask`: one subcommand per job, each with its own `--help`.
//!
//! Options take `--opt value` and `--opt=value`; the demo's filters combine (any subset of
//! backends × paging modes, repeated or comma-separated, with or without `--host`), and a bad
//! value is refused with the list of valid ones.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::qemu::{Machine, DEFAULT_MEM_MIB};

/// Workspace automation: tests, the kernel demo in QEMU, loom, mutation testing, benches.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", arg_required_else_help = true)]
pub struct Cli {
    /// The job to run.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The jobs.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run everything CI runs.
    ///
    /// fmt, clippy, host tests, flush sites, the missing-hook matrix, layering, docs, kernel
    /// lints, no_std builds, loom, asm-check, the host scenario, the QEMU boots and bug
    /// demonstrations, packaging, the Xen oracle and a bench smoke run.
    Test,
    /// Boot the kernel demo in QEMU (or run it on the host) and print what happened.
    ///
    /// Every backend and paging mode, or the ones chosen; prints each serial log and a summary
    /// table, and exits 0 only if every boot did what it must.
    Demo(DemoArgs),
    /// Run the loom models of `pgd_lock`.
    ///
    /// The correct orderings must hold in every interleaving explored, and each wrong ordering
    /// must be caught.
    Loom,
    /// Run the missing-hook matrix.
    ///
    /// Each page-type hook call site of i386-mm is dropped once, under VMI and Xen, in both
    /// modes; fails if a call site is caught by no backend.
    Matrix,
    /// Remove each TLB flush of i386-mm in turn; a test must fail for every one.
    FlushSites,
    /// Mutation-test i386-mm's call-site files with cargo-mutants.
    ///
    /// cargo-mutants is installed when missing; fails on a missed mutant not listed in
    /// `mutants-equivalent.md`.
    Mutants,
    /// Check that the native backend's call sites compile to the code of hooks compiled out.
    ///
    /// Compares the machine code of the call sites over the native backend with and without
    /// the `paravirt` feature (they must be identical).
    AsmCheck,
    /// Run the criterion benches and print each variant's median and ratio.
    ///
    /// A group per call site (variants paravirt-off, native-static, native-ops-table, vmi, xen;
    /// both paging modes) and the scaling groups (live address spaces, live tables). With
    /// `--runs N`, runs them N times and says per group whether the order of the variants was
    /// the same every time, with the spread of each median. HTML reports with plots land in
    /// `target/criterion/report/index.html`.
    Bench(BenchArgs),
    /// Compare the Xen model's 4-level mode with real Xen 4.17 under QEMU, operation by
    /// operation.
    XenOracle(OracleArgs),
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run the benches this many times (the order of the variants is compared across runs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub runs: u32,
    /// Only benches whose name matches this regular expression (criterion's filter), e.g.
    /// `protect/pae` or `^scaling_`.
    pub filter: Option<String>,
}

/// A hook backend of the kernel demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Backend {
    /// Bare metal: every hook is the native default.
    Native,
    /// VMware's VMI: page types and shadow page tables.
    Vmi,
    /// The model of Xen's PV MMU: pinned, read-only page tables.
    Xen,
}

impl Backend {
    /// Every backend, in table order.
    pub const ALL: [Backend; 3] = [Backend::Native, Backend::Vmi, Backend::Xen];

    /// The name the kernel demo's features and the tables use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::Vmi => "vmi",
            Backend::Xen => "xen",
        }
    }
}

/// An i386 paging mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Mode {
    /// Non-PAE two-level paging (4 KiB and 4 MiB pages).
    TwoLevel,
    /// Three-level PAE paging (4 KiB and 2 MiB pages).
    Pae,
}

impl Mode {
    /// Both modes, in table order.
    pub const ALL: [Mode; 2] = [Mode::TwoLevel, Mode::Pae];

    /// Whether this is PAE.
    pub fn pae(self) -> bool {
        self == Mode::Pae
    }
}

/// Options of `cargo xtask demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the scenario on the host simulator (emulated RAM, software page walker) instead of
    /// QEMU, with a hook-trace summary per run.
    #[arg(long)]
    pub host: bool,
    /// Only these backends (repeat the option or give a comma list).
    ///
    /// Without `--backend` and `--mode`, a QEMU run also boots the image that picks its backend
    /// at boot (through a `ParavirtOps` table) once per backend and mode, and ends with a planned
    /// kernel panic (`backend=bogus`), shown as an expected failure.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "BACKEND")]
    pub backend: Vec<Backend>,
    /// Only these paging modes (repeat the option or give a comma list).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "MODE")]
    pub mode: Vec<Mode>,
    /// Virtual CPUs QEMU gives the kernel (`-smp N`; above 1 also `-accel tcg,thread=multi`).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "host",
          value_parser = clap::value_parser!(u32).range(1..=255))]
    pub smp: u32,
    /// RAM QEMU gives the kernel, in MiB (`-m MIB`).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEM_MIB, conflicts_with = "host",
          value_parser = clap::value_parser!(u32).range(16..=3072))]
    pub mem: u32,
}

impl DemoArgs {
    /// Whether no backend or mode was chosen (the full run).
    pub fn unfiltered(&self) -> bool {
        self.backend.is_empty() && self.mode.is_empty()
    }

    /// The chosen backends × modes, in table order, each once (all when none was chosen).
    pub fn selection(&self) -> Vec<(Backend, Mode)> {
        let pick = |chosen: &[Backend]| if chosen.is_empty() { Backend::ALL.to_vec() } else { chosen.to_vec() };
        let mut backends = pick(&self.backend);
        let mut modes = if self.mode.is_empty() { Mode::ALL.to_vec() } else { self.mode.clone() };
        backends.sort();
        backends.dedup();
        modes.sort();
        modes.dedup();
        backends.iter().flat_map(|&b| modes.iter().map(move |&m| (b, m))).collect()
    }

    /// The virtual machine QEMU boots.
    pub fn machine(&self) -> Machine {
        Machine { cpus: self.smp, mem_mib: self.mem }
    }
}

/// Options of `cargo xtask xen-oracle`.
#[derive(Debug, Args)]
pub struct OracleArgs {
    /// Random operation sequences to run after the battery (seeds 1..=N).
    #[arg(long, value_name = "N", default_value_t = crate::oracle::TEST_SEEDS)]
    pub seeds: u64,
    /// Random sequences that differ from Xen to shrink to a shortest differing sequence.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub shrink: usize,
    /// Write Xen's transcript of the battery and the seeds to FILE instead of comparing.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
    }

    fn demo(args: &[&str]) -> DemoArgs {
        let mut all = vec!["demo"];
        all.extend_from_slice(args);
        match parse(&all).unwrap_or_else(|e| panic!("{args:?}: {e}")).command {
            Cmd::Demo(d) => d,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_and_option_is_described() {
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            assert!(sub.get_about().is_some(), "subcommand {} has no help text", sub.get_name());
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && a.get_long() != Some("help")) {
                assert!(arg.get_help().is_some(), "{} --{:?} has no help text", sub.get_name(), arg.get_long());
            }
        }
    }

    #[test]
    fn help_asked_of_a_subcommand_is_help_not_a_run() {
        for sub in ["test", "loom", "demo", "matrix", "flush-sites", "mutants", "asm-check", "bench", "xen-oracle"] {
            let err = parse(&[sub, "--help"]).expect_err(sub);
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{sub} --help");
        }
        assert_eq!(parse(&["help", "demo"]).expect_err("help demo").kind(), ErrorKind::DisplayHelp);
        assert_eq!(parse(&["-h"]).expect_err("-h").kind(), ErrorKind::DisplayHelp);
    }

    #[test]
    fn no_subcommand_shows_the_help() {
        let err = parse(&[]).expect_err("no subcommand");
        assert_eq!(err.kind(), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    }

    #[test]
    fn options_take_equals_or_a_separate_value() {
        assert_eq!(demo(&["--backend=vmi"]).backend, [Backend::Vmi]);
        assert_eq!(demo(&["--backend", "vmi"]).backend, [Backend::Vmi]);
        assert_eq!(demo(&["--mode=pae"]).mode, [Mode::Pae]);
        assert_eq!(demo(&["--mode", "two-level"]).mode, [Mode::TwoLevel]);
        let d = demo(&["--smp=4", "--mem", "256"]);
        assert_eq!(d.machine(), Machine { cpus: 4, mem_mib: 256 });
    }

    #[test]
    fn filters_combine() {
        assert_eq!(
            demo(&["--backend", "vmi"]).selection(),
            [(Backend::Vmi, Mode::TwoLevel), (Backend::Vmi, Mode::Pae)]
        );
        assert_eq!(
            demo(&["--mode", "pae"]).selection(),
            [(Backend::Native, Mode::Pae), (Backend::Vmi, Mode::Pae), (Backend::Xen, Mode::Pae)]
        );
        let d = demo(&["--backend", "xen,native", "--backend=vmi", "--mode", "pae", "--mode=pae"]);
        assert_eq!(d.selection(), [(Backend::Native, Mode::Pae), (Backend::Vmi, Mode::Pae), (Backend::Xen, Mode::Pae)]);
        assert!(!d.unfiltered());
        let all = demo(&[]);
        assert!(all.unfiltered());
        assert_eq!(all.selection().len(), 6);
        let host = demo(&["--host", "--backend", "vmi", "--mode", "pae"]);
        assert!(host.host);
        assert_eq!(host.selection(), [(Backend::Vmi, Mode::Pae)]);
    }

    #[test]
    fn defaults_are_one_cpu_and_the_standard_ram() {
        assert_eq!(demo(&[]).machine(), Machine { cpus: 1, mem_mib: DEFAULT_MEM_MIB });
        assert_eq!(demo(&[]).machine(), Machine::default());
    }

    #[test]
    fn bad_values_name_the_valid_ones() {
        let err = parse(&["demo", "--backend", "bogus"]).expect_err("bogus backend").to_string();
        assert!(err.contains("bogus") && err.contains("native, vmi, xen"), "{err}");
        let err = parse(&["demo", "--mode=three-level"]).expect_err("bad mode").to_string();
        assert!(err.contains("two-level, pae"), "{err}");
        let err = parse(&["demo", "--smp", "0"]).expect_err("0 cpus").to_string();
        assert!(err.contains("1..=255"), "{err}");
        let err = parse(&["demo", "--frobnicate"]).expect_err("unknown option").to_string();
        assert!(err.contains("--frobnicate"), "{err}");
    }

    #[test]
    fn machine_options_do_not_apply_to_the_host_run() {
        let err = parse(&["demo", "--host", "--smp", "2"]).expect_err("--smp with --host");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = parse(&["demo", "--mem=64", "--host"]).expect_err("--mem with --host");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn xen_oracle_options() {
        match parse(&["xen-oracle", "--seeds=5", "--shrink", "0", "--record", "t.txt"]).expect("parsed").command {
            Cmd::XenOracle(o) => {
                assert_eq!((o.seeds, o.shrink), (5, 0));
                assert_eq!(o.record.as_deref(), Some(std::path::Path::new("t.txt")));
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["xen-oracle"]).expect("parsed").command {
            Cmd::XenOracle(o) => assert_eq!((o.seeds, o.shrink, o.record), (crate::oracle::TEST_SEEDS, 3, None)),
            other => panic!("parsed as {other:?}"),
        }
    }
}
