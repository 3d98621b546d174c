//! Leaving QEMU with a status code through the `isa-debug-exit` device.
//!
//! QEMU is started with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`;
//! writing `v` to port `0xf4` makes QEMU exit with status `(v << 1) | 1`.
//! A triple fault under `-no-reboot` exits with status 0, so a runner must
//! treat only [`ExitCode::Success`] (status 33) as success.

/// I/O port of QEMU's `isa-debug-exit` device.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Values written to the exit device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything passed: QEMU exits with status 33.
    Success = 0x10,
    /// A check failed, the kernel panicked or took an unexpected exception:
    /// QEMU exits with status 35.
    Failure = 0x11,
}

impl ExitCode {
    /// The exit status QEMU reports for this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

// The statuses the runner (`cargo xtask`) checks for.
const _: () = assert!(ExitCode::Success.qemu_status() == 33 && ExitCode::Failure.qemu_status() == 35);

/// Exits QEMU with `code`. If no exit device is present, halts for ever.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device (or nothing, on other machines);
    // writing to it only ends the virtual machine.
    unsafe { x86::io::outl(DEBUG_EXIT_PORT, code as u32) };
    halt_forever()
}

/// Exits QEMU with status 33.
pub fn exit_success() -> ! {
    exit(ExitCode::Success)
}

/// Exits QEMU with status 35.
pub fn exit_failure() -> ! {
    exit(ExitCode::Failure)
}

/// Stops the CPU: interrupts off, then `hlt` in a loop.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` touches no memory; with interrupts off nothing resumes us.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
