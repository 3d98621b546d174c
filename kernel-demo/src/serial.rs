//! COM1 serial console (16550 UART at port `0x3F8`): the kernel's only output.
//!
//! The port is stateless polled I/O, so printing needs no lock and works from
//! exception handlers and the panic handler alike. Every `\n` goes out as
//! `\r\n` so a raw terminal shows clean lines (the QEMU runner drops the `\r`).

use core::fmt;

use crate::port::{inb, outb};

/// Base I/O port of COM1.
const COM1: u16 = 0x3F8;
/// Line status register offset and its "transmit holding register empty" bit.
const LSR: u16 = 5;
const LSR_THR_EMPTY: u8 = 0x20;

/// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: these are the standard 16550 initialisation writes to COM1's own
    // registers; the UART does no DMA and its interrupts stay disabled.
    unsafe {
        outb(COM1 + 1, 0x00); // IER: no interrupts
        outb(COM1 + 3, 0x80); // LCR: DLAB on
        outb(COM1, 0x01); // divisor low: 115200 baud
        outb(COM1 + 1, 0x00); // divisor high
        outb(COM1 + 3, 0x03); // LCR: 8 bits, no parity, 1 stop, DLAB off
        outb(COM1 + 2, 0xC7); // FCR: enable and clear FIFOs
        outb(COM1 + 4, 0x03); // MCR: DTR + RTS
    }
}

/// Sends one byte, waiting for the transmitter.
pub fn write_byte(byte: u8) {
    // SAFETY: polling the line status register and writing the data register of
    // COM1 only transmits the byte.
    unsafe {
        while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, byte);
    }
}

/// A zero-sized handle implementing [`fmt::Write`] over COM1.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                write_byte(b'\r');
            }
            write_byte(byte);
        }
        Ok(())
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
