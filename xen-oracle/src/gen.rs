//! The operations to run: the named battery and the seeded random sequences.
//!
//! Both are produced the same way on both sides (the guest from its command line, the host
//! from the runner's arguments), so only a name, a seed range or a seed and a mask travel on
//! the guest's command line (at most 1024 bytes).

use crate::ops::{Frame, Op, Va, Val};
use crate::{NX, SEQ_LEN, WINDOW_L1};

/// The battery: every level pinned and unpinned with valid and invalid contents, writable
/// mappings of page-table frames, frames not owned, `mmu_update` into pinned and unpinned
/// tables at each level with each flag-mask case, `NEW_BASEPTR` of pinned and unpinned roots,
/// `update_va_mapping` with each flag, linear page-table entries, type counts seen through
/// `wr`, the TLB keeping a stale translation until `INVLPG_LOCAL`, and the errno of every
/// refusal. One operation per line; `#` starts a comment.
pub const BATTERY: &str = "
# --- an L1 in P0 mapping the data page P5; data words to tell frames apart
mu P5[0]=P7:1           # ptr is a plain data page: Xen just stores
mu P6[0]=P8:1
mu P0[60]=P5:63
pin1 P0                 # P0 is still mapped writable by the kernel: refused
wr P0
uvm k0=P0:61/2          # kernel mapping of P0 read-only
wr P0                   # untyped again: may be mapped writable
pin1 P0
rd P0[60]               # validation adds _PAGE_USER and the guest-kernel bit
wr P0                   # a pinned L1 is never mapped writable
uvm k0=P0:63/2
pin1 P0                 # already pinned
wr P5                   # P5 is a writable page
mu P0[61]=P0:63         # L1 maps itself writable
mu P0[61]=P0:61         # ... read-only
mu P0[62]=F:61          # frame the domain does not own
mu P0[62]=R:63          # the root writable
mu P0[62]=R:61
mu P0[63]=P5:e3         # PAT in an L1
mu P0[63]=P5:8000000000000063
mu P0[63]=P5:4010000000000e63
mu P0[63]=P5:16b        # G, PWT
mu P0[63]=P5:77         # PCD, user
rd P0[63]
mu.2 P0[63]=P5:63       # MMU_PT_UPDATE_PRESERVE_AD
mu.3 P0[63]=-:0         # MMU_PT_UPDATE_NO_TRANSLATE
mu.5 P0[63]=P5:63       # no such command
mu.1 F[0]=-:0           # MMU_MACHPHYS_UPDATE of a frame not owned
# --- an L2 in P1 over P0
mu P1[0]=P0:63          # unpinned table: a plain store
uvm k1=P1:61/0
pin2 P1
wr P1
wr P0
mu P1[1]=P5:63          # a writable page as an L1
mu P1[1]=P0:e3          # PSE
mu P1[1]=P0:6b          # PWT
mu P1[1]=P0:73          # PCD
mu P1[1]=P0:163         # G
mu P1[1]=F:63           # not owned
mu P1[1]=P0:8010000000000e67
rd P1[1]
mu P1[1]=P1:63          # linear L2 with write permission
mu P1[1]=P1:61          # read-only linear L2 (itself)
mu P1[1]=-:0
# --- an L3 in P2 over P1, an L4 in P3 over P2 with the kernel slot
mu P2[0]=P1:63
uvm k2=P2:61/0
pin3 P2
mu P2[1]=P0:63          # an L1 as an L2
mu P2[1]=P2:61          # read-only linear L3
mu P2[1]=P2:e3          # PSE in an L3
mu P2[1]=-:0
mu P3[0]=P2:63
mu P3[511]=K:63
pin4 P3                 # still mapped writable
uvm k3=P3:61/0
pin4 P3
wr P3
mu P3[256]=P2:63        # a slot of Xen's
mu P3[1]=P2:163         # G in an L4
mu P3[1]=P3:61          # read-only linear L4 (itself)
mu P3[1]=R:61           # read-only linear L4 (the root)
wr R
mu P3[1]=-:0
unpin P2                # still referenced by P3: allowed
wr P2
unpin P2
# --- the root: windows, the TLB
mu R[0]=P2:63           # w0.0.0.60 now reaches P0[60] -> P5
ld w0.0.0.60
ld w0.0.0.61
mu P0[60]=P6:63         # an L1 update does not flush the TLB
ld w0.0.0.60            # stale: still P5
invlpg w0.0.0.60
ld w0.0.0.60
mu P0[60]=P5:63
ld w0.0.0.60            # stale: still P6
mu R[1]=-:0             # an upper-level update flushes
ld w0.0.0.60
uvm w0.0.0.61=P6:63/0
ld w0.0.0.61
uvm w0.0.0.61=P5:63/0   # no flush: stale
ld w0.0.0.61
uvm w0.0.0.61=P6:63/2   # UVMF_INVLPG
ld w0.0.0.61
uvm w0.0.0.61=P5:63/1   # UVMF_TLB_FLUSH
ld w0.0.0.61
uvm w0.0.0.61=P6:63/6   # INVLPG, ALL
ld w0.0.0.61
uvm w0.0.0.61=P5:63/5   # TLB_FLUSH, ALL
ld w0.0.0.61
uvm w0.0.0.61=P5:63/3
uvm w0.0.0.61=P0:63/2   # a page table writable through uvm
uvm w1.0.0.60=P5:63/0   # no L1 there
uvm k4=P4:61/0
uvm k4=P4:63/0
flush
ld w0.0.0.61
# --- base pointers
base P3                 # pinned L4 with the kernel slot
ld w0.0.0.60
unpin P3                # the base pointer still holds it
wr P3
base R
wr P3
mu P4[511]=K:63
mu P4[0]=P2:63
base P4                 # not a table yet: validated by NEW_BASEPTR, but still mapped writable
uvm k4=P4:61/0
base P4                 # unpinned root: validated and loaded
ld w0.0.0.60
base P4                 # the same root again
pin4 P4
base R
unpin P4
wr P4
base P1                 # an L2 as the root
base F                  # not owned
base K                  # an L3
# --- pinning errors and unpinning
pin1 F
unpin F
unpin P5                # never pinned
pin2 P0                 # an L1 as an L2
pin3 K                  # the kernel L3 can be pinned
unpin K
pin1 P5                 # a writable page
mu P0[60]=-:0
wr P5
unpin P0
wr P0
unpin P1
";

/// The battery's operations, parsed (`None` for a line that does not parse: a bug caught by
/// the crate's tests).
pub fn battery() -> impl Iterator<Item = Option<Op>> {
    BATTERY.lines().filter_map(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        (!l.is_empty()).then(|| l.parse().ok())
    })
}

/// A small deterministic random generator (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Pool frames the random sequences use (fewer than the pool, so they meet each other).
const RANDOM_POOL: u64 = 6;

/// Entry indices the random sequences write (the windows' indices at every level).
const INDICES: [u16; 4] = [0, 1, WINDOW_L1[0], WINDOW_L1[1]];

/// Flags the random sequences write: valid and invalid at each level.
const FLAGS: [u64; 14] =
    [0x63, 0x63, 0x67, 0x61, 0x61, 0x23, 0x0, 0x62, 0xe3, 0x6b, 0x73, 0x163, NX | 0x63, (1 << 52) | 0x63];

fn frame(rng: &mut Rng) -> Frame {
    match rng.below(20) {
        0 => Frame::R,
        1 => Frame::K,
        2 => Frame::F,
        _ => Frame::P(rng.below(RANDOM_POOL) as u8),
    }
}

fn window(rng: &mut Rng) -> Va {
    Va::W([rng.below(2) as u16, rng.below(2) as u16, rng.below(2) as u16, rng.pick(&WINDOW_L1)])
}

fn val(rng: &mut Rng) -> Val {
    let flags = rng.pick(&FLAGS);
    let frame = if flags == 0 { None } else { Some(frame(rng)) };
    Val { frame, flags }
}

/// One random operation.
pub fn random_op(rng: &mut Rng) -> Op {
    match rng.below(100) {
        0..=34 => {
            let table = match rng.below(10) {
                0 => Frame::R,
                _ => Frame::P(rng.below(RANDOM_POOL) as u8),
            };
            let (index, val) = match rng.below(30) {
                0 => (256, val(rng)),
                1 => (crate::KERNEL_SLOT, Val { frame: Some(Frame::K), flags: 0x63 }),
                _ => (rng.pick(&INDICES), val(rng)),
            };
            let cmd = if rng.below(25) == 0 { 2 } else { 0 };
            Op::Mu { table, index, val, cmd }
        }
        35..=48 => Op::Pin { level: 1 + rng.below(4) as u8, frame: frame(rng) },
        49..=55 => Op::Unpin(frame(rng)),
        56..=59 => Op::Base(if rng.below(3) == 0 { Frame::R } else { frame(rng) }),
        60..=62 => Op::Flush,
        63..=66 => Op::Invlpg(window(rng)),
        67..=76 => {
            let flags = rng.pick(&[0u8, 1, 2, 3, 5, 6]);
            if rng.below(10) < 4 {
                let n = rng.below(RANDOM_POOL) as u8;
                let flags_pte = rng.pick(&[0x61, 0x61, 0x63, 0x67, NX | 0x61]);
                Op::Uvm { va: Va::K(n), val: Val { frame: Some(Frame::P(n)), flags: flags_pte }, flags }
            } else {
                Op::Uvm { va: window(rng), val: val(rng), flags }
            }
        }
        77..=84 => Op::Rd { table: Frame::P(rng.below(RANDOM_POOL) as u8), index: rng.pick(&INDICES) },
        85..=92 => Op::Ld(if rng.below(8) == 0 { Va::K(rng.below(RANDOM_POOL) as u8) } else { window(rng) }),
        _ => Op::Wr(frame(rng)),
    }
}

/// A table tower the structured operations build: pool frames for an L4, L3, L2 and L1,
/// two data frames, and the indices that connect them (so that a window reaches the data).
struct Tower {
    t: [u8; 4],
    data: [u8; 2],
    ix: [u16; 4],
}

impl Tower {
    fn new(rng: &mut Rng) -> Tower {
        let mut frames = [0u8, 1, 2, 3, 4, 5];
        for i in (1..frames.len()).rev() {
            frames.swap(i, rng.below(i as u64 + 1) as usize);
        }
        Tower {
            t: [frames[0], frames[1], frames[2], frames[3]],
            data: [frames[4], frames[5]],
            ix: [rng.below(2) as u16, rng.below(2) as u16, rng.below(2) as u16, rng.pick(&WINDOW_L1)],
        }
    }

    /// One structured operation: a step of building, validating, loading or tearing down
    /// the tower, or an observation through it.
    fn op(&self, rng: &mut Rng) -> Op {
        let p = |n: u8| Frame::P(n);
        let good = |rng: &mut Rng| rng.pick(&[0x63u64, 0x63, 0x67, 0x61, 0x23, 0x163, 0x6b, NX | 0x63]);
        let [l4, l3, l2, l1] = self.t;
        let win = Va::W(self.ix);
        match rng.below(16) {
            0 => Op::Mu {
                table: p(l1),
                index: self.ix[3],
                val: Val { frame: Some(p(rng.pick(&self.data))), flags: good(rng) },
                cmd: 0,
            },
            1 => Op::Mu { table: p(l2), index: self.ix[2], val: Val { frame: Some(p(l1)), flags: good(rng) }, cmd: 0 },
            2 => Op::Mu { table: p(l3), index: self.ix[1], val: Val { frame: Some(p(l2)), flags: good(rng) }, cmd: 0 },
            3 => Op::Mu { table: p(l4), index: self.ix[0], val: Val { frame: Some(p(l3)), flags: good(rng) }, cmd: 0 },
            4 => Op::Mu {
                table: p(l4),
                index: crate::KERNEL_SLOT,
                val: Val { frame: Some(Frame::K), flags: 0x63 },
                cmd: 0,
            },
            5 => {
                Op::Mu { table: Frame::R, index: self.ix[0], val: Val { frame: Some(p(l3)), flags: good(rng) }, cmd: 0 }
            }
            6 | 7 => {
                let n = rng.pick(&self.t);
                Op::Uvm { va: Va::K(n), val: Val { frame: Some(p(n)), flags: 0x61 }, flags: 2 }
            }
            8 | 9 => {
                let level = 1 + rng.below(4) as u8;
                let frame = if rng.below(4) == 0 { p(rng.pick(&self.t)) } else { p(self.t[4 - level as usize]) };
                Op::Pin { level, frame }
            }
            10 => Op::Unpin(p(rng.pick(&self.t))),
            11 => Op::Base(if rng.below(2) == 0 { p(l4) } else { Frame::R }),
            12 | 13 => Op::Ld(win),
            14 => {
                let flags = rng.pick(&[0u8, 1, 2, 5, 6]);
                Op::Uvm { va: win, val: Val { frame: Some(p(rng.pick(&self.data))), flags: good(rng) }, flags }
            }
            _ => match rng.below(3) {
                0 => Op::Invlpg(win),
                1 => Op::Wr(p(rng.pick(&self.t))),
                _ => Op::Mu {
                    table: p(rng.pick(&self.t)),
                    index: rng.pick(&self.ix),
                    val: Val { frame: None, flags: 0 },
                    cmd: 0,
                },
            },
        }
    }
}

impl Tower {
    /// The steps that build the tower, validate it and hook it into the root, in order.
    fn build(&self) -> [Op; 15] {
        let p = |n: u8| Frame::P(n);
        let v = |f: Frame, flags: u64| Val { frame: Some(f), flags };
        let [l4, l3, l2, l1] = self.t;
        let ro = |n: u8| Op::Uvm { va: Va::K(n), val: v(p(n), 0x61), flags: 2 };
        [
            Op::Mu { table: p(self.data[0]), index: 0, val: v(p(self.data[1]), 1), cmd: 0 },
            Op::Mu { table: p(l1), index: self.ix[3], val: v(p(self.data[0]), 0x63), cmd: 0 },
            Op::Mu { table: p(l2), index: self.ix[2], val: v(p(l1), 0x63), cmd: 0 },
            Op::Mu { table: p(l3), index: self.ix[1], val: v(p(l2), 0x63), cmd: 0 },
            Op::Mu { table: p(l4), index: self.ix[0], val: v(p(l3), 0x63), cmd: 0 },
            Op::Mu { table: p(l4), index: crate::KERNEL_SLOT, val: v(Frame::K, 0x63), cmd: 0 },
            ro(l1),
            ro(l2),
            ro(l3),
            ro(l4),
            Op::Pin { level: 1, frame: p(l1) },
            Op::Pin { level: 2, frame: p(l2) },
            Op::Pin { level: 3, frame: p(l3) },
            Op::Pin { level: 4, frame: p(l4) },
            Op::Mu { table: Frame::R, index: self.ix[0], val: v(p(l3), 0x63), cmd: 0 },
        ]
    }
}

/// The random sequence of `seed` ([`SEQ_LEN`] operations).
///
/// Odd seeds build a table tower first (a random prefix of the steps that build, pin and hook it, each
/// kept with probability 7/8), then mix structured operations on it (two thirds) with
/// [`random_op`]; even seeds are [`random_op`] only.
pub fn random_seq(seed: u64) -> [Op; SEQ_LEN] {
    let mut rng = Rng::new(seed);
    let tower = Tower::new(&mut rng);
    let mut ops = [Op::Flush; SEQ_LEN];
    let mut n = 0;
    if seed % 2 == 1 {
        let steps = tower.build();
        let keep = rng.below(steps.len() as u64 + 1) as usize;
        for op in &steps[..keep] {
            if rng.below(8) != 0 && n < SEQ_LEN - 4 {
                ops[n] = *op;
                n += 1;
            }
        }
    }
    for slot in &mut ops[n..] {
        *slot = if seed % 2 == 1 && rng.below(3) != 0 { tower.op(&mut rng) } else { random_op(&mut rng) };
    }
    ops
}

/// The random sequence of `seed` keeping only the operations whose bit is set in `mask`
/// (bit `i` for operation `i`), in order, into `out`; returns how many were kept.
pub fn masked_seq(seed: u64, mask: u32, out: &mut [Op; SEQ_LEN]) -> usize {
    let mut n = 0;
    for (i, op) in random_seq(seed).into_iter().enumerate() {
        if mask & (1 << i) != 0 {
            out[n] = op;
            n += 1;
        }
    }
    n
}

/// What one command-line token asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// `b`: the battery.
    Battery,
    /// `rA-B`: random seeds `A..=B`.
    Random(u64, u64),
    /// `sSEED.MASK`: the random sequence of `SEED` keeping the operations in `MASK` (hex).
    Masked(u64, u32),
}

impl core::str::FromStr for Job {
    type Err = crate::ops::ParseError;

    fn from_str(s: &str) -> Result<Job, Self::Err> {
        let bad = crate::ops::ParseError;
        if s == "b" {
            return Ok(Job::Battery);
        }
        if let Some(r) = s.strip_prefix('r') {
            let (a, b) = r.split_once('-').ok_or(bad)?;
            return Ok(Job::Random(a.parse().map_err(|_| bad)?, b.parse().map_err(|_| bad)?));
        }
        if let Some(r) = s.strip_prefix('s') {
            let (seed, mask) = r.split_once('.').ok_or(bad)?;
            return Ok(Job::Masked(seed.parse().map_err(|_| bad)?, u32::from_str_radix(mask, 16).map_err(|_| bad)?));
        }
        Err(bad)
    }
}

/// Runs every job of a command line (`b r1-200 s17.fffff` ...) on `m`, each sequence from
/// a reset, handing every line to `line`. Unknown tokens are reported as a line. `st` is
/// the machine's interpreter state (its base pointer), kept across calls.
pub fn run_jobs<M: crate::interp::Machine + ?Sized>(
    m: &mut M,
    st: &mut crate::interp::State,
    cmdline: &str,
    line: &mut dyn FnMut(&str),
) {
    use core::fmt::Write;
    for tok in cmdline.split_whitespace() {
        let mut name = crate::interp::Line::new();
        match tok.parse::<Job>() {
            Ok(Job::Battery) => {
                let mut ops = [Op::Flush; 256];
                let mut n = 0;
                for op in battery().flatten() {
                    if n < ops.len() {
                        ops[n] = op;
                        n += 1;
                    }
                }
                crate::interp::run_seq(m, st, "battery", &ops[..n], line);
            }
            Ok(Job::Random(a, b)) => {
                for seed in a..=b {
                    let _ = write!(name, "r{seed}");
                    let ops = random_seq(seed);
                    crate::interp::run_seq(m, st, name.take(), &ops, line);
                }
            }
            Ok(Job::Masked(seed, mask)) => {
                let mut ops = [Op::Flush; SEQ_LEN];
                let n = masked_seq(seed, mask, &mut ops);
                let _ = write!(name, "s{seed}.{mask:x}");
                crate::interp::run_seq(m, st, name.take(), &ops[..n], line);
            }
            Err(_) => {
                let _ = write!(name, "?? unknown job {tok}");
                line(name.take());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_battery_parses_and_has_at_least_sixty_operations() {
        let ops: std::vec::Vec<_> = battery().collect();
        assert!(ops.iter().all(Option::is_some), "a battery line does not parse");
        assert!(ops.len() >= 60, "{} operations", ops.len());
    }

    #[test]
    fn random_sequences_are_deterministic_and_print_as_they_parse() {
        for seed in 0..50 {
            assert_eq!(random_seq(seed), random_seq(seed));
            for op in random_seq(seed) {
                let text = std::format!("{op}");
                assert_eq!(text.parse::<Op>(), Ok(op), "{text}");
            }
        }
    }

    #[test]
    fn jobs_parse() {
        assert_eq!("b".parse(), Ok(Job::Battery));
        assert_eq!("r1-200".parse(), Ok(Job::Random(1, 200)));
        assert_eq!("s17.f0f".parse(), Ok(Job::Masked(17, 0xf0f)));
    }
}
