//! The host side: the operations on the 4-level hypervisor model of `backend-xen`
//! ([`Pv64`]), over emulated machine memory laid out like the guest's world.
//!
//! | frame | what |
//! | --- | --- |
//! | 1 `R` | the root, built and pinned like dom0's by [`Pv64::build`] |
//! | 2 `K`, 3, 4 | the kernel's L3, L2, L1 (slot 511, 510, 0): the L1 maps frames 1..32 at `KBASE + pfn * 4096` |
//! | 5 | the probe page |
//! | 8..20 | the pool `P0..P11` |
//! | 32..40 | RAM the domain does not own: `F` is 36, Xen's own slots point at 37 |
//! | 40, 41 | the hypervisor's frame table (a directory and a leaf of records), allocated from the machine |
//!
//! The TLB is a processor's: a load fills it from a walk of the current tables (every level
//! present and user-accessible), later loads use it until the hypervisor flushes it or
//! invalidates the address ([`Pv64::take_tlb`]).

use crate::interp::Machine;
use crate::ops::Frame;
use crate::{ADDR_MASK, P, US};
use backend_xen::level4::{Pv64, GUEST_KERNEL};
use i386_paging::PhysMem;
use mm_testkit::EmulatedRam;
use paravirt_core::Pfn;
use std::collections::BTreeMap;

/// Where the kernel's own mappings start.
pub const KBASE: u64 = 0xffff_ffff_8000_0000;
/// Frames of the model's world (the frame table's two frames follow them).
const FRAMES: u32 = 40;
/// Frames of the machine: the world, then the frame table's directory and leaf.
const MACHINE: u32 = FRAMES + 2;
/// Frames the domain owns.
const OWNED: u32 = 32;
const ROOT: u32 = 1;
const KERN: u32 = 2;
const KL2: u32 = 3;
const KL1: u32 = 4;
const PROBE: u32 = 5;
const POOL0: u32 = 8;
const FOREIGN: u32 = 36;
const XEN: u32 = 37;

/// The model as a [`Machine`].
pub struct Model {
    hv: Pv64<EmulatedRam>,
    /// Page number → frame, filled by loads.
    tlb: BTreeMap<u64, u32>,
    probe_pte: u64,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// A fresh domain: the root built and loaded, every pool frame zero and mapped writable.
    ///
    /// # Panics
    /// If the model refuses its own initial tables (a bug).
    pub fn new() -> Model {
        // Only the frame table's frames are handed out by the allocator; the world's frames are
        // laid out by number.
        let ram = EmulatedRam::new(MACHINE, FRAMES);
        let put = |pfn: u32, idx: usize, val: u64| {
            // SAFETY: the frame is 4096 bytes of emulated RAM; idx < 512.
            unsafe { ram.frame_ptr(Pfn::new(pfn)).cast::<u64>().add(idx).write(val) }
        };
        let table = P | 0x2 | US | 0x20 | 0x40;
        put(ROOT, 511, (u64::from(KERN) << 12) | table);
        put(KERN, 510, (u64::from(KL2) << 12) | table);
        put(KL2, 0, (u64::from(KL1) << 12) | table);
        for pfn in 1..OWNED {
            let rw = if (ROOT..=KL1).contains(&pfn) { 0 } else { 0x2 | 0x40 };
            put(KL1, pfn as usize, (u64::from(pfn) << 12) | P | US | 0x20 | rw | GUEST_KERNEL);
        }
        let hv = Pv64::new(ram, OWNED, Pfn::new(XEN)).expect("the frame table fits the machine");
        hv.build(Pfn::new(ROOT)).expect("the model's initial tables validate");
        let probe_pte = hv.read(Pfn::new(KL1), PROBE);
        Model { hv, tlb: BTreeMap::new(), probe_pte }
    }

    /// The hypervisor model.
    pub fn hv(&self) -> &Pv64<EmulatedRam> {
        &self.hv
    }

    fn tlb_work(&mut self) {
        let w = self.hv.take_tlb();
        if w.flushes > 0 {
            self.tlb.clear();
        }
        if let Some(va) = w.invlpg {
            self.tlb.remove(&(va >> 12));
        }
    }

    fn rc(&mut self, r: Result<(), backend_xen::level4::Refusal>) -> i64 {
        self.tlb_work();
        match r {
            Ok(()) => 0,
            Err(e) => e.errno(),
        }
    }

    /// The frame `va` translates to in the current tables, as the processor walks them.
    fn walk(&self, va: u64) -> Option<u32> {
        let mut table = self.hv.base()?;
        for shift in [39u32, 30, 21, 12] {
            let e = self.hv.read(table, ((va >> shift) & 511) as u32);
            if e & P == 0 || e & US == 0 {
                return None;
            }
            let next = ((e & ADDR_MASK) >> 12) as u32;
            if next >= FRAMES {
                return None;
            }
            table = Pfn::new(next);
        }
        Some(table.as_u32())
    }
}

impl Machine for Model {
    fn mfn(&self, f: Frame) -> u64 {
        u64::from(match f {
            Frame::P(n) => POOL0 + u32::from(n),
            Frame::R => ROOT,
            Frame::K => KERN,
            Frame::F => FOREIGN,
        })
    }

    fn kva(&self, n: u8) -> u64 {
        KBASE + (u64::from(POOL0) + u64::from(n)) * 4096
    }

    fn mmu_update(&mut self, ptr: u64, val: u64) -> i64 {
        let r = self.hv.mmu_update(ptr, val);
        self.rc(r)
    }

    fn mmuext(&mut self, cmd: u32, arg: u64) -> i64 {
        let r = self.hv.mmuext_op(cmd, arg);
        self.rc(r)
    }

    fn update_va_mapping(&mut self, va: u64, val: u64, flags: u64) -> i64 {
        let r = self.hv.update_va_mapping(va, val, flags);
        self.rc(r)
    }

    fn read_entry(&mut self, f: Frame, index: u16) -> u64 {
        match f {
            Frame::F => 0,
            _ => self.hv.read(Pfn::new(self.mfn(f) as u32), u32::from(index)),
        }
    }

    fn load(&mut self, va: u64) -> Option<u64> {
        let page = va >> 12;
        let frame = match self.tlb.get(&page) {
            Some(&f) => f,
            None => {
                let f = self.walk(va)?;
                self.tlb.insert(page, f);
                f
            }
        };
        Some(self.hv.read(Pfn::new(frame), ((va & 0xfff) >> 3) as u32))
    }

    fn probe_va(&self) -> u64 {
        KBASE + u64::from(PROBE) * 4096
    }

    fn probe_pte(&self) -> u64 {
        self.probe_pte
    }
}

/// Runs every job of a command line on fresh models (one per sequence) and returns the
/// lines, as the guest prints them (without the `XO|` prefix).
pub fn run(cmdline: &str) -> std::vec::Vec<std::string::String> {
    use std::string::ToString;
    let mut lines = std::vec::Vec::new();
    for tok in cmdline.split_whitespace() {
        let jobs: std::vec::Vec<std::string::String> = match tok.parse::<crate::gen::Job>() {
            Ok(crate::gen::Job::Random(a, b)) => (a..=b).map(|s| std::format!("r{s}-{s}")).collect(),
            _ => std::vec![tok.to_string()],
        };
        for job in jobs {
            let mut m = Model::new();
            crate::gen::run_jobs(&mut m, &mut crate::interp::State::default(), &job, &mut |l| {
                lines.push(l.to_string())
            });
        }
    }
    lines
}
