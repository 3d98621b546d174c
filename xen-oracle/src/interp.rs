//! The interpreter: runs operations on a [`Machine`] and prints one line per operation.
//!
//! The same code runs inside the PV guest (on real hypercalls) and on the host (on the
//! model), so the two transcripts differ only where the machines answer differently.
//!
//! A line is `<sequence>#<n> <operation> -> <result>`; the result is `rc=<return code>`
//! for a hypercall (with `now=<entry>` after an `mmu_update`), the value for an observation,
//! or `skip` for an operation the guest must not issue (one that would unmap its own code:
//! see [`guard`]). Entry values print as `frame:flags` with the frame by name (`?` for a frame
//! the operations do not name) and the accessed and dirty bits left out (the processor sets
//! them as it walks).

use crate::ops::{Frame, Op, Va, Val};
use crate::{A, ADDR_MASK, D, KERNEL_SLOT, NX, P, POOL, RW};
use core::fmt::{self, Write};

/// `MMUEXT_PIN_L1_TABLE` (levels 2..4 follow).
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// `MMUEXT_UNPIN_TABLE`.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// `MMUEXT_NEW_BASEPTR`.
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// `MMUEXT_INVLPG_LOCAL`.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// `UVMF_INVLPG`.
pub const UVMF_INVLPG: u64 = 2;

/// What the operations run on: the real hypervisor (from inside the guest) or the model.
///
/// Frame numbers are machine frame numbers as the entries hold them; return codes are Xen's
/// (0 or a negative errno).
pub trait Machine {
    /// The machine frame number of a named frame.
    fn mfn(&self, f: Frame) -> u64;
    /// The virtual address where pool frame `Pn` is mapped by the kernel's own mappings.
    fn kva(&self, n: u8) -> u64;
    /// `mmu_update` of one request.
    fn mmu_update(&mut self, ptr: u64, val: u64) -> i64;
    /// `mmu_update` of several requests; the return code of the first refusal (or 0).
    fn mmu_update_batch(&mut self, reqs: &[(u64, u64)]) -> i64 {
        for &(ptr, val) in reqs {
            let rc = self.mmu_update(ptr, val);
            if rc != 0 {
                return rc;
            }
        }
        0
    }
    /// `mmuext_op` of one operation (`arg` a machine frame number or a virtual address).
    fn mmuext(&mut self, cmd: u32, arg: u64) -> i64;
    /// `update_va_mapping(va, val, flags)`.
    fn update_va_mapping(&mut self, va: u64, val: u64, flags: u64) -> i64;
    /// Reads entry `index` of a named frame (0 for a frame the guest cannot read).
    fn read_entry(&mut self, f: Frame, index: u16) -> u64;
    /// Reads the word at `va` through the processor's translation (TLB included); `None`
    /// if that faults.
    fn load(&mut self, va: u64) -> Option<u64>;
    /// The page the writability probe remaps (a page of the kernel's own).
    fn probe_va(&self) -> u64;
    /// The probe page's own L1 entry, restored after each probe.
    fn probe_pte(&self) -> u64;
}

/// What the interpreter remembers between operations: the current base pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// The root loaded now.
    pub base: Frame,
}

impl Default for State {
    fn default() -> Self {
        State { base: Frame::R }
    }
}

/// Every named frame, for turning a machine frame number back into a name.
fn named() -> impl Iterator<Item = Frame> {
    (0..POOL as u8).map(Frame::P).chain([Frame::R, Frame::K, Frame::F])
}

/// An entry value in the guest's terms (accessed and dirty bits left out).
pub struct Entry<'a, M: Machine + ?Sized>(pub &'a M, pub u64);

impl<M: Machine + ?Sized> fmt::Display for Entry<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.1;
        let flags = raw & !ADDR_MASK & !(A | D);
        let mfn = (raw & ADDR_MASK) >> 12;
        if mfn == 0 {
            return write!(f, "-:{flags:x}");
        }
        match named().find(|&fr| self.0.mfn(fr) == mfn) {
            Some(fr) => write!(f, "{fr}:{flags:x}"),
            None => write!(f, "?:{flags:x}"),
        }
    }
}

/// The raw value of `v` on machine `m`.
pub fn raw<M: Machine + ?Sized>(m: &M, v: Val) -> u64 {
    v.frame.map_or(0, |f| m.mfn(f) << 12) | v.flags
}

/// The address of `va` on machine `m`.
pub fn addr<M: Machine + ?Sized>(m: &M, va: Va) -> u64 {
    match va {
        Va::K(n) => m.kva(n),
        Va::W(ix) => Va::window(ix),
    }
}

/// Whether the guest may issue `op` (reading the machine where it must): an operation that
/// could unmap the guest's own code or stack is not issued and prints `skip`.
///
/// - The kernel L3 `K` is never written; slot 511 (the kernel's) of any table is written only
///   with `K`, present and writable, without NX.
/// - `NEW_BASEPTR` of a pool frame needs its slot 511 to be such an entry.
/// - `update_va_mapping` of a kernel address keeps the page mapped, at the same frame.
pub fn guard<M: Machine + ?Sized>(m: &mut M, op: &Op) -> bool {
    let kernel_ok = |v: Val| v.frame == Some(Frame::K) && v.flags & (P | RW | NX) == P | RW;
    match *op {
        Op::Mu { table: Frame::K, .. } => false,
        Op::Mu { index, val, .. } if index == KERNEL_SLOT => kernel_ok(val),
        Op::Base(f @ Frame::P(_)) => {
            let e = m.read_entry(f, KERNEL_SLOT);
            e & ADDR_MASK == m.mfn(Frame::K) << 12 && e & (P | RW | NX) == P | RW
        }
        Op::Uvm { va: Va::K(n), val, .. } => val.frame == Some(Frame::P(n)) && val.flags & P != 0,
        _ => true,
    }
}

/// Runs one operation and writes its result (the part of the line after `->`).
///
/// # Errors
/// Only those of `out`.
pub fn run_op<M: Machine + ?Sized>(m: &mut M, st: &mut State, op: &Op, out: &mut dyn Write) -> fmt::Result {
    if !guard(m, op) {
        return out.write_str("skip");
    }
    match *op {
        Op::Mu { table, index, val, cmd } => {
            let ptr = (m.mfn(table) << 12) + u64::from(index) * 8 + u64::from(cmd);
            let rc = m.mmu_update(ptr, raw(m, val));
            write!(out, "rc={rc}")?;
            if !(256..=271).contains(&index) && table != Frame::F {
                let now = m.read_entry(table, index);
                write!(out, " now={}", Entry(m, now))?;
            }
            Ok(())
        }
        Op::Pin { level, frame } => {
            let rc = m.mmuext(MMUEXT_PIN_L1_TABLE + u32::from(level) - 1, m.mfn(frame));
            write!(out, "rc={rc}")
        }
        Op::Unpin(f) => {
            let rc = m.mmuext(MMUEXT_UNPIN_TABLE, m.mfn(f));
            write!(out, "rc={rc}")
        }
        Op::Base(f) => {
            let rc = m.mmuext(MMUEXT_NEW_BASEPTR, m.mfn(f));
            if rc == 0 {
                st.base = f;
            }
            write!(out, "rc={rc}")
        }
        Op::Flush => {
            let rc = m.mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0);
            write!(out, "rc={rc}")
        }
        Op::Invlpg(va) => {
            let rc = m.mmuext(MMUEXT_INVLPG_LOCAL, addr(m, va));
            write!(out, "rc={rc}")
        }
        Op::Uvm { va, val, flags } => {
            let rc = m.update_va_mapping(addr(m, va), raw(m, val), u64::from(flags));
            write!(out, "rc={rc}")
        }
        Op::Rd { table, index } => {
            let e = m.read_entry(table, index);
            write!(out, "{}", Entry(m, e))
        }
        Op::Ld(va) => match m.load(addr(m, va)) {
            Some(v) => write!(out, "{}", Entry(m, v)),
            None => out.write_str("fault"),
        },
        Op::Wr(f) => {
            let rc = writable_probe(m, f);
            write!(out, "rc={rc}")
        }
    }
}

/// Can frame `f` be mapped writable now: maps it writable at the probe page and, if that
/// worked, puts the probe page back. Returns the return code of the trial.
pub fn writable_probe<M: Machine + ?Sized>(m: &mut M, f: Frame) -> i64 {
    let va = m.probe_va();
    let rc = m.update_va_mapping(va, (m.mfn(f) << 12) | P | RW | A | D, UVMF_INVLPG);
    if rc == 0 {
        let back = m.probe_pte();
        let rc2 = m.update_va_mapping(va, back, UVMF_INVLPG);
        if rc2 != 0 {
            return 1000 + rc2;
        }
    }
    rc
}

/// Slots of the root `R` the operations may fill (the windows' L4 slots and the generator's
/// indices).
pub const ROOT_SLOTS: [u16; 5] = [0, 1, 60, 61, 255];

/// Brings the machine back to the state every sequence starts from: the root loaded and
/// pinned, `K` unpinned, every pool frame zero, holding no type but its kernel mapping's
/// and mapped writable by the kernel, the TLB flushed. Writes `reset ok` or the step that
/// failed.
///
/// # Errors
/// Only those of `out`.
pub fn reset<M: Machine + ?Sized>(m: &mut M, st: &mut State, out: &mut dyn Write) -> fmt::Result {
    let r = m.mfn(Frame::R) << 12;
    for s in ROOT_SLOTS {
        m.mmu_update(r + u64::from(s) * 8, 0);
    }
    if st.base != Frame::R {
        let rc = m.mmuext(MMUEXT_NEW_BASEPTR, m.mfn(Frame::R));
        if rc != 0 {
            return write!(out, "reset failed: base R rc={rc}");
        }
        st.base = Frame::R;
    }
    m.mmuext(MMUEXT_PIN_L1_TABLE + 3, m.mfn(Frame::R));
    m.mmuext(MMUEXT_UNPIN_TABLE, m.mfn(Frame::K));
    let mut batch = [(0u64, 0u64); 256];
    let mut clear = |m: &mut M, n: u8, from: u16, to: u16| {
        let base = m.mfn(Frame::P(n)) << 12;
        let len = usize::from(to - from);
        for (i, slot) in batch.iter_mut().take(len).enumerate() {
            *slot = (base + (u64::from(from) + i as u64) * 8, 0);
        }
        m.mmu_update_batch(&batch[..len])
    };
    for n in 0..POOL as u8 {
        clear(m, n, 0, 256);
        clear(m, n, 272, 512);
    }
    for n in 0..POOL as u8 {
        m.mmuext(MMUEXT_UNPIN_TABLE, m.mfn(Frame::P(n)));
    }
    // A table Xen left partially validated (a nested validation failure: see backend-xen's
    // `level4`) holds its references until it is validated again: pin and unpin every pool
    // frame at each upper level, read-only, so such a table completes and lets go.
    for n in 0..POOL as u8 {
        m.update_va_mapping(m.kva(n), (m.mfn(Frame::P(n)) << 12) | P | A, UVMF_INVLPG);
    }
    for n in 0..POOL as u8 {
        for level in 2..=4 {
            if m.mmuext(MMUEXT_PIN_L1_TABLE + level - 1, m.mfn(Frame::P(n))) == 0 {
                m.mmuext(MMUEXT_UNPIN_TABLE, m.mfn(Frame::P(n)));
            }
        }
    }
    for n in 0..POOL as u8 {
        for (from, to) in [(0, 256), (256, 512)] {
            let rc = clear(m, n, from, to);
            if rc != 0 {
                return write!(out, "reset failed: clear P{n} rc={rc}");
            }
        }
    }
    for n in 0..POOL as u8 {
        let rc = m.update_va_mapping(m.kva(n), (m.mfn(Frame::P(n)) << 12) | P | RW | A | D, UVMF_INVLPG);
        if rc != 0 {
            return write!(out, "reset failed: map P{n} writable rc={rc}");
        }
    }
    m.mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0);
    for n in 0..POOL as u8 {
        let rc = writable_probe(m, Frame::P(n));
        if rc != 0 {
            return write!(out, "reset failed: P{n} not writable rc={rc}");
        }
    }
    out.write_str("reset ok")
}

/// Runs a named sequence: a header line, the reset line, one line per operation, an end line.
/// Each line goes to `line` (without a newline). `st` carries the base pointer from one
/// sequence to the next on the same machine.
pub fn run_seq<M: Machine + ?Sized>(m: &mut M, st: &mut State, name: &str, ops: &[Op], line: &mut dyn FnMut(&str)) {
    let mut buf = Line::new();
    let _ = write!(buf, "== {name}");
    line(buf.take());
    let _ = write!(buf, "{name}#- ");
    let _ = reset(m, st, &mut buf);
    line(buf.take());
    for (i, op) in ops.iter().enumerate() {
        let _ = write!(buf, "{name}#{i} {op} -> ");
        let _ = run_op(m, st, op, &mut buf);
        line(buf.take());
    }
    let _ = write!(buf, "== end {name}");
    line(buf.take());
}

/// A fixed-capacity line buffer (no allocation); text past its capacity is dropped.
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Self {
        Line { buf: [0; 256], len: 0 }
    }

    /// The text so far, emptying the buffer for the next line.
    pub fn take(&mut self) -> &str {
        let len = core::mem::take(&mut self.len);
        core::str::from_utf8(&self.buf[..len]).unwrap_or("<utf8>")
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
