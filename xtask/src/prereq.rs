//! Installs what a fresh Debian machine lacks, saying so.

use crate::qemu::QEMU;
use std::path::PathBuf;
use std::process::Command;

/// Rust targets the build needs: the kernel's and the bare-metal check's.
const TARGETS: &[&str] = &["i686-unknown-linux-gnu", "x86_64-unknown-none"];

/// Adds any missing rustup target.
pub fn ensure_targets() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup not found ({e}); install Rust with rustup"))?;
    let installed = String::from_utf8_lossy(&out.stdout);
    for t in TARGETS {
        if !installed.lines().any(|l| l.trim() == *t) {
            println!("xtask: installing missing Rust target {t} (rustup target add {t})");
            let st = Command::new("rustup")
                .args(["target", "add", t])
                .status()
                .map_err(|e| format!("rustup target add {t}: {e}"))?;
            if !st.success() {
                return Err(format!("rustup target add {t} failed ({st}); add it by hand"));
            }
        }
    }
    Ok(())
}

/// Installs the Debian package `qemu-system-x86` when `qemu-system-i386` is missing.
pub fn ensure_qemu() -> Result<(), String> {
    if find_on_path(QEMU).is_some() {
        return Ok(());
    }
    println!("xtask: {QEMU} is not on PATH; installing the Debian package qemu-system-x86");
    // apt-get needs root: use sudo when not root and sudo exists.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let sudo = !is_root && find_on_path("sudo").is_some();
    for args in [&["update"][..], &["install", "-y", "qemu-system-x86"][..]] {
        let mut cmd = if sudo { Command::new("sudo") } else { Command::new("apt-get") };
        if sudo {
            cmd.arg("apt-get");
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        println!("xtask: running `{}apt-get {}`", if sudo { "sudo " } else { "" }, args.join(" "));
        let status = cmd.status().map_err(|e| {
            format!("cannot run apt-get ({e}); install QEMU yourself: `apt-get install qemu-system-x86`")
        })?;
        if !status.success() {
            return Err(format!(
                "`apt-get {}` failed ({status}); install QEMU yourself (Debian/Ubuntu: `sudo apt-get install qemu-system-x86`)",
                args.join(" ")
            ));
        }
    }
    if find_on_path(QEMU).is_none() {
        return Err(format!("qemu-system-x86 was installed but {QEMU} is still not on PATH"));
    }
    Ok(())
}

/// Full path of `program` if it is an executable file in a `PATH` directory.
fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Installs what booting the kernel needs and is missing (the Rust targets, the
/// `qemu-system-x86` Debian package), saying what it does.
pub fn ensure_prerequisites() -> Result<(), String> {
    ensure_targets()?;
    ensure_qemu()
}
