//! x86 port I/O (`in`/`out`), used by the serial console and the exit device.

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
/// Writing to an I/O port can reprogram hardware (including devices that do
/// DMA); the caller must know what the device at `port` does with `value`.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the effect on the device; no memory is touched.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the effect on the device; no memory is touched.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading some device registers has side effects (for example acknowledging
/// an interrupt); the caller must know what the device at `port` does.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the effect on the device; no memory is touched.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) }
    value
}
