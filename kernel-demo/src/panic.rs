//! The panic handler (print to serial, exit QEMU with failure) and the
//! `rust_eh_personality` symbol the prebuilt `core` expects.
//!
//! Only the first CPU to panic reports (Linux's `panic_cpu`): a second one
//! spins, so two reports never interleave on the serial line.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::{exit, kprintln};

/// Set by the first CPU that panics.
static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::AcqRel) {
        // Another CPU is reporting and will end the machine.
        loop {
            core::hint::spin_loop();
        }
    }
    kprintln!();
    kprintln!("*** KERNEL PANIC: {info}");
    exit::exit_failure()
}

/// Referenced by the prebuilt (unwinding) `core`; never called, since the
/// kernel is built with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
