//! The CPU's exception vectors and how to name them: shared by the IDT, which reports fatal
//! exceptions, and the probes, which recover expected ones.

use core::fmt;

/// Vector of the divide error (#DE).
pub const DE: u8 = 0;
/// Vector of the invalid-opcode exception (#UD).
pub const UD: u8 = 6;
/// Vector of the double fault (#DF).
pub const DF: u8 = 8;
/// Vector of the general-protection fault (#GP).
pub const GP: u8 = 13;
/// Vector of the page fault (#PF).
pub const PF: u8 = 14;

/// Short name and description of an exception vector.
pub fn vector_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range exceeded",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack-segment fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 floating-point",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating-point",
        _ => "reserved exception",
    }
}

/// Decoded page-fault error code (`P`, `W/R`, `U/S`, `RSVD`, `I/D` bits).
pub struct PageFaultError(pub u32);

impl fmt::Display for PageFaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(if e & 1 != 0 { "protection violation" } else { "not present" })?;
        f.write_str(if e & 2 != 0 { ", write" } else { ", read" })?;
        f.write_str(if e & 4 != 0 { ", user" } else { ", supervisor" })?;
        if e & 8 != 0 {
            f.write_str(", reserved bit set")?;
        }
        if e & 16 != 0 {
            f.write_str(", instruction fetch")?;
        }
        Ok(())
    }
}
