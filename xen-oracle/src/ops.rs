//! The operations, in the guest's terms, with a text form that prints and parses back.
//!
//! | text | operation |
//! | --- | --- |
//! | `mu P3[60]=P4:63` | `mmu_update` of entry 60 of frame `P3` to frame `P4` with flags `0x63` (`mu.2 ...`: command 2, `MMU_PT_UPDATE_PRESERVE_AD`) |
//! | `pin1 P3` .. `pin4 P3` | `MMUEXT_PIN_L1_TABLE` .. `MMUEXT_PIN_L4_TABLE` |
//! | `unpin P3`, `base P3` | `MMUEXT_UNPIN_TABLE`, `MMUEXT_NEW_BASEPTR` |
//! | `flush`, `invlpg w0.0.0.60` | `MMUEXT_TLB_FLUSH_LOCAL`, `MMUEXT_INVLPG_LOCAL` |
//! | `uvm k3=P3:61/2` | `update_va_mapping` of a virtual address with flags `UVMF_*` (2: `INVLPG`) |
//! | `rd P3[0]` | read an entry (observation) |
//! | `ld w0.1.0.60` | read the word at a virtual address: the value, or `fault` (observation) |
//! | `wr P3` | can the frame be mapped writable now: the return code of a trial mapping (observation) |
//!
//! Frames: `P0`..`P11` (the pool), `R` (the root Xen built and pinned, the base pointer at
//! start), `K` (the L3 that the root's kernel slot 511 points at), `F` (a RAM frame the domain
//! does not own). Values: `frame:flags` with the flags in hex (`-:0` for zero). Virtual
//! addresses: `kN` (where `PN` is mapped in the kernel's own mappings) and `wA.B.C.D` (the
//! address with those L4, L3, L2 and L1 indices).

use core::fmt;

/// A frame, by the guest's name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Pool frame `Pn` (`n < POOL`).
    P(u8),
    /// The root Xen built and pinned (`start_info.pt_base`).
    R,
    /// The L3 the root's kernel slot points at.
    K,
    /// A RAM frame the domain does not own.
    F,
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::P(n) => write!(f, "P{n}"),
            Frame::R => f.write_str("R"),
            Frame::K => f.write_str("K"),
            Frame::F => f.write_str("F"),
        }
    }
}

/// An entry value in the guest's terms: a frame (or none: address 0) and the other bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Val {
    /// The frame the address bits name (`None`: address 0).
    pub frame: Option<Frame>,
    /// Every bit outside the address (bits 0..11 and 52..63).
    pub flags: u64,
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.frame {
            Some(fr) => write!(f, "{fr}:{:x}", self.flags),
            None => write!(f, "-:{:x}", self.flags),
        }
    }
}

/// A virtual address in the guest's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Va {
    /// Where pool frame `Pn` is mapped by the kernel's own (boot) mappings.
    K(u8),
    /// The address with L4, L3, L2 and L1 indices `[a, b, c, d]`.
    W([u16; 4]),
}

impl Va {
    /// The address of a [`Va::W`] window.
    pub const fn window(ix: [u16; 4]) -> u64 {
        ((ix[0] as u64) << 39) | ((ix[1] as u64) << 30) | ((ix[2] as u64) << 21) | ((ix[3] as u64) << 12)
    }
}

impl fmt::Display for Va {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Va::K(n) => write!(f, "k{n}"),
            Va::W(ix) => write!(f, "w{}.{}.{}.{}", ix[0], ix[1], ix[2], ix[3]),
        }
    }
}

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `mmu_update` of entry `index` of `table` to `val`, with command `cmd` in `ptr`'s low
    /// bits (0 `MMU_NORMAL_PT_UPDATE`, 2 `MMU_PT_UPDATE_PRESERVE_AD`, 3 `NO_TRANSLATE`, ...).
    Mu {
        /// The frame written.
        table: Frame,
        /// The entry index (0..512).
        index: u16,
        /// The new value.
        val: Val,
        /// The command.
        cmd: u8,
    },
    /// `MMUEXT_PIN_Ln_TABLE` (`level` 1..=4).
    Pin {
        /// The level.
        level: u8,
        /// The frame.
        frame: Frame,
    },
    /// `MMUEXT_UNPIN_TABLE`.
    Unpin(Frame),
    /// `MMUEXT_NEW_BASEPTR`.
    Base(Frame),
    /// `MMUEXT_TLB_FLUSH_LOCAL`.
    Flush,
    /// `MMUEXT_INVLPG_LOCAL`.
    Invlpg(Va),
    /// `update_va_mapping(va, val, flags)`.
    Uvm {
        /// The address whose L1 entry changes.
        va: Va,
        /// The new L1 entry.
        val: Val,
        /// `UVMF_*`: 1 `TLB_FLUSH`, 2 `INVLPG`, 4 `ALL`.
        flags: u8,
    },
    /// Observation: an entry's value.
    Rd {
        /// The frame read.
        table: Frame,
        /// The entry index.
        index: u16,
    },
    /// Observation: the word at a virtual address, or a fault.
    Ld(Va),
    /// Observation: whether the frame can be mapped writable now.
    Wr(Frame),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Mu { table, index, val, cmd: 0 } => write!(f, "mu {table}[{index}]={val}"),
            Op::Mu { table, index, val, cmd } => write!(f, "mu.{cmd} {table}[{index}]={val}"),
            Op::Pin { level, frame } => write!(f, "pin{level} {frame}"),
            Op::Unpin(fr) => write!(f, "unpin {fr}"),
            Op::Base(fr) => write!(f, "base {fr}"),
            Op::Flush => f.write_str("flush"),
            Op::Invlpg(va) => write!(f, "invlpg {va}"),
            Op::Uvm { va, val, flags } => write!(f, "uvm {va}={val}/{flags}"),
            Op::Rd { table, index } => write!(f, "rd {table}[{index}]"),
            Op::Ld(va) => write!(f, "ld {va}"),
            Op::Wr(fr) => write!(f, "wr {fr}"),
        }
    }
}

/// Why a line of operation text did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError;

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an operation")
    }
}

fn num(s: &str, radix: u32) -> Result<u64, ParseError> {
    u64::from_str_radix(s, radix).map_err(|_| ParseError)
}

fn frame(s: &str) -> Result<Frame, ParseError> {
    match s {
        "R" => Ok(Frame::R),
        "K" => Ok(Frame::K),
        "F" => Ok(Frame::F),
        _ => {
            let n = num(s.strip_prefix('P').ok_or(ParseError)?, 10)?;
            if (n as usize) < crate::POOL {
                Ok(Frame::P(n as u8))
            } else {
                Err(ParseError)
            }
        }
    }
}

fn val(s: &str) -> Result<Val, ParseError> {
    let (fr, flags) = s.split_once(':').ok_or(ParseError)?;
    let frame = if fr == "-" { None } else { Some(frame(fr)?) };
    let flags = num(flags, 16)?;
    if flags & crate::ADDR_MASK != 0 {
        return Err(ParseError);
    }
    Ok(Val { frame, flags })
}

fn va(s: &str) -> Result<Va, ParseError> {
    if let Some(n) = s.strip_prefix('k') {
        let n = num(n, 10)?;
        return if (n as usize) < crate::POOL { Ok(Va::K(n as u8)) } else { Err(ParseError) };
    }
    let rest = s.strip_prefix('w').ok_or(ParseError)?;
    let mut ix = [0u16; 4];
    let mut parts = rest.split('.');
    for slot in &mut ix {
        let n = num(parts.next().ok_or(ParseError)?, 10)?;
        if n >= 512 {
            return Err(ParseError);
        }
        *slot = n as u16;
    }
    if parts.next().is_some() {
        return Err(ParseError);
    }
    Ok(Va::W(ix))
}

/// `P3[60]` → (`P3`, 60).
fn slot(s: &str) -> Result<(Frame, u16), ParseError> {
    let (fr, rest) = s.split_once('[').ok_or(ParseError)?;
    let idx = num(rest.strip_suffix(']').ok_or(ParseError)?, 10)?;
    if idx >= 512 {
        return Err(ParseError);
    }
    Ok((frame(fr)?, idx as u16))
}

impl core::str::FromStr for Op {
    type Err = ParseError;

    /// Parses the text form ([`Display`](fmt::Display) prints it back).
    fn from_str(s: &str) -> Result<Op, ParseError> {
        let s = s.trim();
        let (word, arg) = s.split_once(' ').unwrap_or((s, ""));
        let arg = arg.trim();
        Ok(match word {
            "flush" if arg.is_empty() => Op::Flush,
            "invlpg" => Op::Invlpg(va(arg)?),
            "unpin" => Op::Unpin(frame(arg)?),
            "base" => Op::Base(frame(arg)?),
            "wr" => Op::Wr(frame(arg)?),
            "ld" => Op::Ld(va(arg)?),
            "rd" => {
                let (table, index) = slot(arg)?;
                Op::Rd { table, index }
            }
            "uvm" => {
                let (v, rest) = arg.split_once('=').ok_or(ParseError)?;
                let (value, flags) = rest.split_once('/').ok_or(ParseError)?;
                Op::Uvm { va: va(v)?, val: val(value)?, flags: num(flags, 10)? as u8 }
            }
            _ if word.starts_with("pin") => {
                let level = num(&word[3..], 10)?;
                if !(1..=4).contains(&level) {
                    return Err(ParseError);
                }
                Op::Pin { level: level as u8, frame: frame(arg)? }
            }
            _ if word == "mu" || word.starts_with("mu.") => {
                let cmd = if word == "mu" { 0 } else { num(&word[3..], 10)? };
                if cmd > 7 {
                    return Err(ParseError);
                }
                let (sl, value) = arg.split_once('=').ok_or(ParseError)?;
                let (table, index) = slot(sl)?;
                Op::Mu { table, index, val: val(value)?, cmd: cmd as u8 }
            }
            _ => return Err(ParseError),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_prints_and_parses_back() {
        for text in [
            "mu P3[60]=P4:63",
            "mu.2 R[0]=-:0",
            "pin4 P11",
            "unpin K",
            "base R",
            "flush",
            "invlpg w0.1.0.60",
            "uvm k3=P3:8000000000000061/6",
            "rd F[511]",
            "ld k0",
            "wr P0",
        ] {
            let op: Op = text.parse().unwrap();
            assert_eq!(std::format!("{op}"), text);
        }
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in ["mu P12[0]=-:0", "pin5 P0", "rd P0[512]", "uvm w0.0.0=-:0/0", "mu P0[0]=-:1000", "bogus"] {
            assert_eq!(text.parse::<Op>(), Err(ParseError), "{text}");
        }
    }
}
