//! Building the kernel demo and booting it in `qemu-system-i386`.
//!
//! The kernel (`kernel-demo/`) is its own cargo workspace that always builds
//! for `i686-unknown-linux-gnu` (its `.cargo/config.toml` sets the target, the
//! linker and the rustflags), so [`build_kernel`] runs cargo *inside* that
//! directory. [`boot`] runs QEMU with the serial port on stdout and the
//! `isa-debug-exit` device, under a time limit. Only exit status 33 (the
//! kernel wrote 0x10 to port 0xf4) counts as success: with `-no-reboot` a
//! triple fault makes QEMU exit with status 0, and the kernel's failure code
//! gives status 35.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The rustup target the kernel builds for.
pub const KERNEL_TARGET: &str = "i686-unknown-linux-gnu";

/// The QEMU binary that boots the kernel.
pub const QEMU: &str = "qemu-system-i386";

/// QEMU exit status meaning "the kernel reported success" (`(0x10 << 1) | 1`).
pub const SUCCESS_STATUS: i32 = 33;

/// The [`BootConfig::backend`] of the image that holds every backend and picks one at boot
/// (kernel-demo feature `boot-select`, command line `backend=native|vmi|xen`).
pub const BOOT_SELECT: &str = "boot-select";

/// Which kernel to build: backend and paging mode, as cargo features.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// `"native"`, `"vmi"` or `"xen"`; or [`BOOT_SELECT`]: the image with every backend,
    /// chosen at boot by `backend=` on the command line.
    pub backend: &'static str,
    /// Build with three-level PAE paging (feature `pae`).
    pub pae: bool,
    /// Further cargo features of `kernel-demo`.
    pub extra_features: Vec<String>,
}

impl BootConfig {
    /// The cargo features selecting this configuration (`native` has none).
    pub fn features(&self) -> Result<Vec<String>, String> {
        let mut features = Vec::new();
        match self.backend {
            "native" => {}
            "vmi" | "xen" | BOOT_SELECT => features.push(self.backend.to_string()),
            other => return Err(format!("unknown backend `{other}` (expected native, vmi, xen or {BOOT_SELECT})")),
        }
        if self.pae {
            features.push("pae".to_string());
        }
        features.extend(self.extra_features.iter().cloned());
        Ok(features)
    }

    /// Short name such as `native/non-PAE` or `xen/PAE` (extra features appended with `+`).
    pub fn label(&self) -> String {
        let mut label = format!("{}/{}", self.backend, if self.pae { "PAE" } else { "non-PAE" });
        for f in &self.extra_features {
            label.push('+');
            label.push_str(f);
        }
        label
    }

    /// File name of this configuration's kernel image, e.g. `kernel-demo-xen-pae`,
    /// `kernel-demo-boot-select-2level` or
    /// `kernel-demo-vmi-2level-bug-missing-alloc-pt`: every configuration keeps its own ELF,
    /// since cargo overwrites `release/kernel-demo` on each build.
    pub fn image_name(&self) -> String {
        let mut name = format!("kernel-demo-{}-{}", self.backend, if self.pae { "pae" } else { "2level" });
        for f in &self.extra_features {
            name.push('-');
            name.push_str(f);
        }
        name
    }
}

/// What happened when the kernel was booted.
#[derive(Clone, Debug)]
pub struct BootOutcome {
    /// QEMU's exit status, or `None` if it was killed at the time limit (or by a signal).
    pub status: Option<i32>,
    /// True only for status 33: the kernel ran to its end and reported success.
    pub success: bool,
    /// Everything the kernel printed on the serial port (`\r` removed).
    pub serial: String,
    /// Wall-clock time from starting QEMU to its exit (or to the kill).
    pub elapsed: Duration,
}

/// Builds `kernel-demo` in release mode for `cfg` and returns the path of a copy of the ELF
/// named after the configuration ([`BootConfig::image_name`]), so several configurations can
/// be built before any is booted.
///
/// Cargo runs in `root/kernel-demo` so that the kernel's own
/// `.cargo/config.toml` applies; flags inherited from an outer cargo
/// (`RUSTFLAGS`, a target-dir override, a build target) are removed because
/// they would replace the kernel's target settings. Every configuration shares
/// the kernel's target directory, so the workspace crates are compiled once per
/// feature set and only the kernel crate is rebuilt when switching backends.
pub fn build_kernel(root: &Path, cfg: &BootConfig) -> Result<PathBuf, String> {
    let dir = root.join("kernel-demo");
    let target_dir = dir.join("target");
    let features = cfg.features()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&dir)
        .args(["build", "--release", "--quiet", "--target", KERNEL_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--features")
        .arg(features.join(","));
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo in {}: {e}", dir.display()))?;
    if !status.success() {
        return Err(format!(
            "building kernel-demo ({}, features [{}]) failed: {status}",
            cfg.label(),
            features.join(",")
        ));
    }
    let release = target_dir.join(KERNEL_TARGET).join("release");
    let elf = release.join("kernel-demo");
    if !elf.is_file() {
        return Err(format!("cargo succeeded but {} does not exist", elf.display()));
    }
    let copy = release.join(cfg.image_name());
    std::fs::copy(&elf, &copy).map_err(|e| format!("cannot copy {} to {}: {e}", elf.display(), copy.display()))?;
    Ok(copy)
}

/// The QEMU arguments that boot `elf` (serial on stdout, no display, exit
/// device on port 0xf4, 128 MiB, no reboot on triple fault).
pub fn qemu_args(elf: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "-nodefaults",
        "-machine",
        "pc",
        "-cpu",
        "qemu32",
        "-m",
        "128",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(elf.display().to_string());
    args
}

/// Boots `elf` in QEMU, killing it after `timeout`, and returns its status
/// and serial output. An `Err` means QEMU could not be run at all; a kernel
/// failure is an `Ok` outcome with `success == false`.
pub fn boot(elf: &Path, timeout: Duration) -> Result<BootOutcome, String> {
    boot_with_cmdline(elf, "", timeout)
}

/// Like [`boot`], passing `cmdline` to the kernel (`-append`), e.g.
/// `crash=pf` to make the kernel take a deliberate fatal fault.
pub fn boot_with_cmdline(elf: &Path, cmdline: &str, timeout: Duration) -> Result<BootOutcome, String> {
    boot_with_args(elf, &[], cmdline, timeout)
}

/// Like [`boot_with_cmdline`], with `extra` QEMU arguments after the usual ones (e.g.
/// `-smp 4 -accel tcg,thread=multi`).
pub fn boot_with_args(elf: &Path, extra: &[&str], cmdline: &str, timeout: Duration) -> Result<BootOutcome, String> {
    if !elf.is_file() {
        return Err(format!("kernel image {} does not exist", elf.display()));
    }
    let mut cmd = Command::new(QEMU);
    cmd.args(qemu_args(elf));
    cmd.args(extra);
    if !cmdline.is_empty() {
        cmd.args(["-append", cmdline]);
    }
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;

    // Drain both pipes on threads so QEMU never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if start.elapsed() >= timeout => {
                // Kill only the QEMU we started, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                return Err(format!("waiting for {QEMU}: {e}"));
            }
        }
    };
    let elapsed = start.elapsed();
    let serial_bytes = stdout.join().unwrap_or_default();
    let stderr_bytes = stderr.join().unwrap_or_default();
    let mut serial = String::from_utf8_lossy(&serial_bytes).replace('\r', "");
    let stderr_text = String::from_utf8_lossy(&stderr_bytes);
    if !stderr_text.trim().is_empty() {
        serial.push_str("\n[qemu stderr]\n");
        serial.push_str(stderr_text.trim_end());
        serial.push('\n');
    }
    Ok(BootOutcome { status, success: status == Some(SUCCESS_STATUS), serial, elapsed })
}

/// Explains a QEMU exit status in words.
pub fn describe_status(status: Option<i32>) -> &'static str {
    match status {
        Some(SUCCESS_STATUS) => "success",
        Some(35) => "kernel reported failure (panic or fatal exception)",
        Some(0) => "triple fault or shutdown without the exit device",
        Some(_) => "unexpected QEMU exit status",
        None => "killed at the time limit (hung kernel)",
    }
}
