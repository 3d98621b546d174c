//! `cargo xtask xen-oracle`: the Xen model against real Xen, operation by operation.
//!
//! Real Xen (Debian's `xen-hypervisor-4.17-amd64`, the pinned [`XEN_VERSION`], extracted
//! without installing it) boots under `qemu-system-x86_64` with the PV guest
//! `xen-oracle-guest` as dom0; the guest runs the jobs of its command line (the battery,
//! seeded random sequences) as hypercalls and prints one line per operation. The same jobs
//! run on the host through the 4-level model (`xen_oracle::model`). Every line where the two
//! differ is printed with Xen's answer and the model's; a random sequence that differs is
//! shrunk (greedy one-operation removal, each round one boot) to the shortest sequence that
//! still differs.
//!
//! When QEMU or the Xen package cannot be had, the run says so and is skipped, not failed.

use crate::root;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use xen_oracle::gen::masked_seq;
use xen_oracle::{ops::Op, SEQ_LEN};

/// The Xen hypervisor package and the version the model is measured against.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The pinned version of [`XEN_PACKAGE`] (Debian bookworm-security).
pub const XEN_VERSION: &str = "4.17.7+13-g2445b30a44-0+deb12u1";
/// The QEMU that runs Xen.
const QEMU64: &str = "qemu-system-x86_64";
/// Random seeds the test suite runs.
pub const TEST_SEEDS: u64 = 200;

/// Why the oracle cannot run here (said, then skipped).
pub struct Skip(pub String);

/// The directory for the extracted hypervisor and the logs.
fn cache() -> PathBuf {
    root().join("target").join("xen-oracle")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The hypervisor image (`xen-4.17-amd64`, a multiboot ELF), downloaded and extracted once.
pub fn hypervisor() -> Result<PathBuf, Skip> {
    let dir = cache();
    let elf = dir.join(format!("xen-{XEN_VERSION}.elf"));
    if elf.is_file() {
        return Ok(elf);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Skip(format!("cannot create {}: {e}", dir.display())))?;
    for tool in ["apt-get", "dpkg-deb", "zcat"] {
        if !on_path(tool) {
            return Err(Skip(format!("{tool} is not available to fetch {XEN_PACKAGE}")));
        }
    }
    let want = format!("{XEN_PACKAGE}={XEN_VERSION}");
    let download = || Command::new("apt-get").args(["download", &want]).current_dir(&dir).output();
    let mut out = download().map_err(|e| Skip(format!("cannot run apt-get: {e}")))?;
    if !out.status.success() {
        println!("xen-oracle: `apt-get download {want}` failed; running `apt-get update` once");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        out = download().map_err(|e| Skip(format!("cannot run apt-get: {e}")))?;
    }
    if !out.status.success() {
        return Err(Skip(format!(
            "cannot download {want} (pinned version): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| Skip(format!("{}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb") && p.to_string_lossy().contains(XEN_PACKAGE))
        .ok_or_else(|| Skip("apt-get download left no .deb".into()))?;
    let x = dir.join("extract");
    let st = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x).status();
    if !st.is_ok_and(|s| s.success()) {
        return Err(Skip(format!("dpkg-deb -x {} failed", deb.display())));
    }
    let gz = x.join("boot").join("xen-4.17-amd64.gz");
    let out = Command::new("zcat").arg(&gz).output().map_err(|e| Skip(format!("zcat: {e}")))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(Skip(format!("cannot unpack {}", gz.display())));
    }
    std::fs::write(&elf, &out.stdout).map_err(|e| Skip(format!("cannot write {}: {e}", elf.display())))?;
    println!("xen-oracle: {want} extracted to {}", elf.display());
    Ok(elf)
}

/// Builds the PV guest (its own workspace, `x86_64-unknown-none`) and returns its ELF.
pub fn build_guest() -> Result<PathBuf, String> {
    let dir = root().join("xen-oracle-guest");
    let mut cmd = crate::cargo();
    cmd.current_dir(&dir).args(["build", "--release", "--quiet"]);
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR"]
    {
        cmd.env_remove(var);
    }
    let st = cmd.status().map_err(|e| format!("cannot build the guest: {e}"))?;
    if !st.success() {
        return Err(format!("building xen-oracle-guest failed: {st}"));
    }
    Ok(dir.join("target").join("x86_64-unknown-none").join("release").join("xen-oracle-guest"))
}

/// Everything needed to boot real Xen, or why not.
pub struct Oracle {
    xen: PathBuf,
    guest: PathBuf,
}

impl Oracle {
    /// QEMU, the hypervisor and the guest, or why they cannot be had.
    pub fn prepare() -> Result<Result<Oracle, Skip>, String> {
        if !on_path(QEMU64) {
            if let Err(e) = crate::prereq::ensure_qemu() {
                return Ok(Err(Skip(format!("{QEMU64} is missing and could not be installed: {e}"))));
            }
            if !on_path(QEMU64) {
                return Ok(Err(Skip(format!("{QEMU64} is missing"))));
            }
        }
        let xen = match hypervisor() {
            Ok(x) => x,
            Err(s) => return Ok(Err(s)),
        };
        let guest = build_guest()?;
        Ok(Ok(Oracle { xen, guest }))
    }

    /// Boots Xen with the guest running `jobs`; the guest's lines (without the `XO|` prefix).
    pub fn boot(&self, jobs: &str) -> Result<Vec<String>, String> {
        let initrd = format!("{} {jobs}", self.guest.display());
        let mut child = Command::new(QEMU64)
            .args(["-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1", "-serial", "stdio"])
            .args(["-display", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
            .arg("-kernel")
            .arg(&self.xen)
            .args(["-append", "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=64M"])
            .args(["-initrd", &initrd])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {QEMU64}: {e}"))?;
        let mut stdout = child.stdout.take().expect("piped");
        let reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break st.code();
            }
            if start.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(5));
        };
        let serial = reader.join().unwrap_or_default().replace('\r', "");
        let log = cache().join("last-boot.log");
        let _ = std::fs::write(&log, &serial);
        if status != Some(33) {
            return Err(format!(
                "Xen run of `{jobs}` ended with QEMU status {status:?} (33 expected); serial log in {}",
                log.display()
            ));
        }
        Ok(serial
            .lines()
            .filter_map(|l| l.strip_prefix("XO|"))
            .filter(|l| !l.starts_with("info "))
            .map(str::to_string)
            .collect())
    }
}

/// One line where Xen and the model differ.
pub struct Diff {
    /// `sequence#n operation`.
    pub what: String,
    /// Xen's answer.
    pub xen: String,
    /// The model's answer.
    pub model: String,
}

fn split(line: &str) -> (&str, &str) {
    line.split_once(" -> ").unwrap_or((line, ""))
}

/// Compares two transcripts line by line; returns the operation lines compared and the
/// differences.
pub fn compare(xen: &[String], model: &[String]) -> (usize, Vec<Diff>) {
    let xen: Vec<&String> = xen.iter().filter(|l| *l != "done").collect();
    let mut diffs = Vec::new();
    let mut ops = 0;
    for i in 0..xen.len().max(model.len()) {
        let (x, m) = (
            xen.get(i).map(|s| s.as_str()).unwrap_or("<missing>"),
            model.get(i).map(|s| s.as_str()).unwrap_or("<missing>"),
        );
        if !x.starts_with("==") {
            ops += 1;
        }
        if x != m {
            let (wx, ax) = split(x);
            let (wm, am) = split(m);
            let what = if wx == wm { wx.to_string() } else { format!("{wx} | model: {wm}") };
            diffs.push(Diff { what, xen: ax.to_string(), model: am.to_string() });
        }
    }
    (ops, diffs)
}

/// The sequence a line belongs to (`r17`, `battery`).
fn sequence(what: &str) -> &str {
    what.split('#').next().unwrap_or("")
}

/// Shrinks random sequence `seed`: removes one operation at a time while the result still
/// differs; each round boots Xen once with every candidate. Returns the mask of the
/// shortest sequence found and its differences.
pub fn shrink(oracle: &Oracle, seed: u64) -> Result<(u32, Vec<Diff>), String> {
    let mut mask: u32 = (1 << SEQ_LEN) - 1;
    let mut best = Vec::new();
    loop {
        let bits: Vec<u32> = (0..SEQ_LEN as u32).filter(|b| mask & (1 << b) != 0).collect();
        let candidates: Vec<u32> = bits.iter().map(|b| mask & !(1 << b)).collect();
        let jobs: Vec<String> = candidates.iter().map(|m| format!("s{seed}.{m:x}")).collect();
        let cmd = jobs.join(" ");
        let xen = oracle.boot(&cmd)?;
        let model = xen_oracle::model::run(&cmd);
        let mut improved = false;
        for (c, job) in candidates.iter().zip(&jobs) {
            let pick = |lines: &[String]| -> Vec<String> {
                lines
                    .iter()
                    .filter(|l| l.starts_with(&format!("{job}#")) || l.ends_with(&format!(" {job}")))
                    .cloned()
                    .collect()
            };
            let (_, d) = compare(&pick(&xen), &pick(&model));
            if !d.is_empty() {
                mask = *c;
                best = d;
                improved = true;
                break;
            }
        }
        if !improved {
            return Ok((mask, best));
        }
    }
}

/// Prints a shrunk sequence: its operations, then its differences.
fn print_shrunk(seed: u64, mask: u32, diffs: &[Diff]) {
    let mut ops = [Op::Flush; SEQ_LEN];
    let n = masked_seq(seed, mask, &mut ops);
    println!("  shortest sequence that differs (`s{seed}.{mask:x}`, {n} operations):");
    for op in &ops[..n] {
        println!("    {op}");
    }
    for d in diffs {
        println!("    DIFF {}\n      xen:   {}\n      model: {}", d.what, d.xen, d.model);
    }
}

/// The outcome of one oracle run.
pub struct Report {
    /// Lines that differ.
    pub diffs: usize,
}

/// Runs the battery and random seeds `1..=seeds` on real Xen and on the model and prints
/// every difference (shrinking up to `shrink_max` differing random sequences).
pub fn run(oracle: &Oracle, seeds: u64, shrink_max: usize) -> Result<Report, String> {
    let jobs = if seeds > 0 { format!("b r1-{seeds}") } else { "b".to_string() };
    let t = Instant::now();
    let xen = oracle.boot(&jobs)?;
    let boot_secs = t.elapsed().as_secs_f64();
    let model = xen_oracle::model::run(&jobs);
    let (ops, diffs) = compare(&xen, &model);
    for d in &diffs {
        println!("DIFF {}\n  xen:   {}\n  model: {}", d.what, d.xen, d.model);
    }
    let mut seqs: Vec<&str> = diffs.iter().map(|d| sequence(&d.what)).collect();
    seqs.dedup();
    for s in seqs.iter().filter(|s| s.starts_with('r')).take(shrink_max) {
        if let Ok(seed) = s[1..].parse::<u64>() {
            let (mask, d) = shrink(oracle, seed)?;
            print_shrunk(seed, mask, &d);
        }
    }
    println!(
        "xen-oracle: {ops} operations compared (battery + {seeds} random sequences of {SEQ_LEN}), {} differences in {} sequences; Xen {XEN_VERSION} run took {boot_secs:.1}s",
        diffs.len(),
        seqs.len()
    );
    Ok(Report { diffs: diffs.len() })
}

/// `cargo xtask xen-oracle`: compares the model with real Xen for the battery and `args.seeds`
/// random sequences (shrinking up to `args.shrink` that differ), or records Xen's transcript.
pub fn main(args: &crate::cli::OracleArgs) -> Result<(), String> {
    let (seeds, shrink_max, record) = (args.seeds, args.shrink, args.record.clone());
    let oracle = match Oracle::prepare()? {
        Ok(o) => o,
        Err(Skip(why)) => {
            println!("xen-oracle: SKIPPED: {why}");
            return Ok(());
        }
    };
    if let Some(file) = record {
        return record_transcript(&oracle, seeds, &file);
    }
    let r = run(&oracle, seeds, shrink_max)?;
    if r.diffs == 0 {
        Ok(())
    } else {
        Err(format!("{} line(s) differ between Xen and the model", r.diffs))
    }
}

/// Writes Xen's transcript of the battery and seeds `1..=seeds` to `file` (the recording the
/// model-only test compares against).
fn record_transcript(oracle: &Oracle, seeds: u64, file: &Path) -> Result<(), String> {
    let lines = oracle.boot(&format!("b r1-{seeds}"))?;
    let mut text = format!("# Xen {XEN_VERSION} ({XEN_PACKAGE}), 64-bit PV dom0: `b r1-{seeds}`\n");
    for l in lines.iter().filter(|l| *l != "done") {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    println!("xen-oracle: recorded {} lines to {}", lines.len(), file.display());
    Ok(())
}

/// The test-suite step: the battery and [`TEST_SEEDS`] seeds against real Xen when it can
/// be had (a clear skip otherwise).
pub fn test_step() -> Result<(), String> {
    let oracle = match Oracle::prepare()? {
        Ok(o) => o,
        Err(Skip(why)) => {
            println!("xen-oracle: SKIPPED (the model-only comparison with the recorded transcript still runs in cargo test): {why}");
            return Ok(());
        }
    };
    let r = run(&oracle, TEST_SEEDS, 1)?;
    if r.diffs == 0 {
        Ok(())
    } else {
        Err(format!("{} line(s) differ between Xen and the model", r.diffs))
    }
}
