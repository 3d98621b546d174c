//! Installs what a fresh Debian machine lacks, saying so.

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
