//! Deliberate fatal faults, selected on the kernel command line with
//! `crash=ud|pf|gp|df|panic` (QEMU: `-append crash=pf`), so the runner can
//! check that each fatal path prints its report and exits with failure.

use core::arch::asm;

use crate::{idt, kprintln};

/// Runs the crash named by a `crash=` word on `cmdline`, if any. Returns
/// only if there is none; an unknown kind panics (a typo must not pass).
pub fn run_from_cmdline(cmdline: &str) {
    let Some(kind) = cmdline.split_ascii_whitespace().find_map(|w| w.strip_prefix("crash=")) else {
        return;
    };
    kprintln!("crashtest: triggering `{kind}` on purpose");
    match kind {
        // SAFETY: `ud2` only raises #UD, whose handler reports it and exits QEMU.
        "ud" => unsafe { asm!("ud2", options(nomem, nostack)) },
        // SAFETY: nothing is mapped at 5 MiB after the identity map is dropped, so
        // the store only raises #PF, whose handler reports it and exits QEMU.
        "pf" => unsafe { asm!("mov dword ptr [{0}], 1", in(reg) 0x0050_0000u32, options(nostack)) },
        // SAFETY: loading a selector beyond the GDT limit only raises
        // #GP(selector), whose handler reports it and exits QEMU.
        "gp" => unsafe { asm!("mov ds, {0:x}", in(reg) 0x80u32, options(nostack)) },
        "df" => {
            // Break the #GP gate so that delivering #GP raises another #GP:
            // the CPU turns that into #DF, which has a working gate.
            idt::break_gate_for_test(idt::GP);
            // SAFETY: the load raises #GP, whose broken delivery ends in the #DF
            // handler, which reports it and exits QEMU.
            unsafe { asm!("mov ds, {0:x}", in(reg) 0x80u32, options(nostack)) }
        }
        "panic" => panic!("crashtest panic"),
        other => panic!("unknown crash kind `{other}` (expected ud, pf, gp, df or panic)"),
    }
    panic!("crashtest `{kind}` did not trap");
}
