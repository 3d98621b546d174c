//! The panic handler (print to serial, exit QEMU with failure) and the
//! `rust_eh_personality` symbol the prebuilt `core` expects.

use core::panic::PanicInfo;

use crate::{exit, kprintln};

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    kprintln!();
    kprintln!("*** KERNEL PANIC: {info}");
    exit::exit_failure()
}

/// Referenced by the prebuilt (unwinding) `core`; never called, since the
/// kernel is built with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
