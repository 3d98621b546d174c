//! COM1 serial console (16550 UART at port `0x3F8`, driven by the `uart_16550` crate): the
//! kernel's only output.
//!
//! Sending is polled port I/O and a handle holds nothing but the port number, so each print
//! makes its own handle: printing needs no lock and works from exception handlers and the panic
//! handler alike. Every `\n` goes out as `\r\n` so a raw terminal shows clean lines (the QEMU
//! runner drops the `\r`).

use core::fmt;

use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550, Uart16550Tty};

/// Base I/O port of COM1.
const COM1: u16 = 0x3F8;

/// A handle on COM1.
fn com1() -> Uart16550<PioBackend> {
    // SAFETY: ports 0x3F8..0x3FF are COM1's eight registers on the PC (QEMU's `pc` machine has
    // the UART there), reserved for it for the kernel's whole life; the driver only reads and
    // writes those registers, so several handles touch no memory and cannot conflict.
    unsafe { Uart16550::new_port(COM1) }.expect("COM1's eight ports fit below 0x10000")
}

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
///
/// # Panics
/// If no UART answers at COM1.
pub fn init() {
    let config = Config { baud_rate: BaudRate::Baud115200, ..Config::DEFAULT };
    com1().init(config).unwrap_or_else(|e| panic!("COM1: {e}"));
}

/// A zero-sized handle implementing [`fmt::Write`] over COM1 (`\n` sent as `\r\n`).
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Uart16550Tty::from_inner(com1()).write_str(s)
    }
}

/// Implementation detail of [`kprint!`](crate::kprint) and [`kprintln!`](crate::kprintln).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Serial output cannot fail.
    let _ = fmt::Write::write_fmt(&mut Serial, args);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::serial::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
