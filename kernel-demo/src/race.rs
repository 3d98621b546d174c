//! The race `pgd_lock` exists for, on real processors: every AP creates,
//! uses and destroys address spaces while the BSP changes the kernel range.
//!
//! - Each AP loops: `create` an address space, map two user pages (one page
//!   table), switch CR3
//!   into it, write and read them back through its own MMU, then check the
//!   kernel range it sees against `swapper_pg_dir`: it reads each published
//!   vmalloc-area page through its own page tables and must find the value the
//!   BSP wrote there (a missing kernel entry faults, a stale one reads another
//!   value); then it switches back to `swapper_pg_dir` and `destroy`s the space.
//! - The BSP meanwhile maps and unmaps vmalloc-area pages, two in each of 32
//!   large-page-sized regions, so each round installs 32 page tables (synced
//!   into every pgd on `pgd_list`) and removes them again (flushed on every CPU
//!   by IPI before they are freed), and splits and reverts a large page of the
//!   linear map with `change_page_attr`.
//!
//! A published page is described by a sequence count (odd while it is not
//! mapped or changes), its address and its value; an AP trusts a read only if the count was even
//! and unchanged around it. At the end the BSP tears everything down, the
//! backend's `verify` must be clean and it must hold nothing.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use i386_mm::{InitOptions, KernelMm};
use i386_paging::{Cpu, PhysMem};
use paravirt_core::{Inspect, PagingMode, Pfn, PteFlags, PvMmuOps, PAGE_KERNEL, PAGE_KERNEL_RO};

use crate::backend::{Mode, WithBackend};
use crate::percpu::MAX_CPUS;
use crate::phys::KernelPhys;
use crate::serial::Serial;
use crate::x86cpu::X86Cpu;
use crate::{kprintln, shootdown, smp};

/// Address-space lifecycles the APs complete together, at least.
pub const LIFECYCLES: u64 = 10_000;
/// Kernel-range updates (maps, unmaps, attribute changes) the BSP makes, at least.
pub const KERNEL_UPDATES: u64 = 10_000;
/// Vmalloc-area pages the BSP maps and unmaps each round.
const SLOTS: usize = i386_mm::UNMAP_BATCH;
/// Pages per large-page-sized region (the first installs the region's page table).
const PER_REGION: usize = 2;
/// Rounds between two `change_page_attr` split/revert pairs.
const CPA_EVERY: u64 = 8;

/// One published vmalloc-area page.
struct Slot {
    seq: AtomicU32,
    va: AtomicU32,
    val: AtomicU32,
}

static PUBLISHED: [Slot; SLOTS] =
    [const { Slot { seq: AtomicU32::new(1), va: AtomicU32::new(0), val: AtomicU32::new(0) } }; SLOTS];
static LIFECYCLES_DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CHECKS_DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// APs that reached their share of lifecycles.
static APS_FINISHED: AtomicU32 = AtomicU32::new(0);
/// Set when the BSP reached its count of updates.
static BSP_FINISHED: AtomicBool = AtomicBool::new(false);

/// What went wrong on which CPU.
#[derive(Clone, Copy, Debug)]
pub struct Inconsistency {
    /// The CPU that saw it.
    pub cpu: usize,
    /// What it saw.
    pub what: &'static str,
    /// Virtual address.
    pub va: u32,
}

/// The race's counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Address-space lifecycles over all APs.
    pub lifecycles: u64,
    /// Kernel-range updates by the BSP.
    pub updates: u64,
    /// Kernel-range checks the APs made through their own MMU.
    pub checks: u64,
}

/// The race, run with whichever backend this kernel has.
pub struct Race<'a> {
    /// Physical memory.
    pub phys: &'a KernelPhys,
    /// The processor (per-CPU state inside).
    pub cpu: &'a X86Cpu,
    /// Bytes at the top left to the hypervisor.
    pub reserve_top: u32,
}

fn fail(cpu: usize, what: &'static str, va: u32) -> ! {
    panic!("race: CPU {cpu}: {what} at {va:#010x}");
}

fn signature(cpu: usize, n: u64) -> u32 {
    0xA500_0000 ^ ((cpu as u32) << 20) ^ (n as u32 & 0xF_FFFF)
}

impl WithBackend for Race<'_> {
    type Output = Totals;

    fn run<B: PvMmuOps<Mode> + Inspect + Sync>(self, backend: &B) -> Totals {
        let opts = InitOptions { pse: true, lowmem_end: Some(self.phys.max_pfn()), reserve_top: self.reserve_top };
        let k = KernelMm::<Mode, _, _, _>::pagetable_init(self.phys, backend, self.cpu, opts)
            .unwrap_or_else(|e| panic!("race: pagetable_init: {e}"));
        k.activate_swapper();
        let aps = smp::cpus_online() as u64 - 1;
        let per_ap = LIFECYCLES.div_ceil(aps.max(1));
        let ap = |n: usize| ap_loop(&k, n, per_ap);
        let updates = smp::run_on_aps(&ap, || bsp_loop(&k, aps));
        if !k.backend().verify(&mut Serial) {
            panic!("race: backend verification failed after the race");
        }
        let v = k.backend().violations();
        assert_eq!(v, 0, "race: backend recorded {v} protocol violation(s)");
        let totals = Totals {
            lifecycles: LIFECYCLES_DONE.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            updates,
            checks: CHECKS_DONE.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        };
        k.load_boot_root();
        let (b, _, _) = k.shutdown().unwrap_or_else(|(_, e)| panic!("race: shutdown: {e}"));
        let held = b.pages_held();
        assert_eq!(held, 0, "race: backend still holds {held} page(s) after the teardown");
        totals
    }
}

/// One AP: address-space lifecycles, at least `per_ap` of them and for as
/// long as the BSP is still changing the kernel range.
fn ap_loop<B: PvMmuOps<Mode>, C: Cpu>(k: &KernelMm<Mode, B, &KernelPhys, C>, n: usize, per_ap: u64) {
    // Two pages under one page table.
    let user = [0x0804_8000u32, 0x0804_9000];
    let mut counted = false;
    let mut i = 0u64;
    while i < per_ap || !BSP_FINISHED.load(Ordering::Acquire) {
        if i == per_ap && !counted {
            APS_FINISHED.fetch_add(1, Ordering::AcqRel);
            counted = true;
        }
        let mut a = k.create().unwrap_or_else(|e| panic!("race: CPU {n}: create: {e}"));
        let mut frames = [Pfn::new(0); 2];
        for (f, &va) in frames.iter_mut().zip(&user) {
            *f = k.mem().alloc_frame().unwrap_or_else(|| fail(n, "out of frames", va));
            k.map(&mut a, va, *f, PteFlags::RW | PteFlags::USER).unwrap_or_else(|e| panic!("race: CPU {n}: map: {e}"));
        }
        k.activate(&a);
        for &va in &user {
            let sig = signature(n, i) ^ va;
            k.cpu().write_u32(va, sig).unwrap_or_else(|_| fail(n, "user page not writable", va));
            if k.cpu().read_u32(va) != Ok(sig) {
                fail(n, "user page reads back wrong", va);
            }
        }
        for slot in &PUBLISHED {
            check_slot(k.cpu(), n, slot);
        }
        k.activate_swapper();
        k.destroy(a);
        for f in frames {
            k.mem().free_frame(f);
        }
        LIFECYCLES_DONE[n].fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    if !counted {
        APS_FINISHED.fetch_add(1, Ordering::AcqRel);
    }
    // Off every table i386-mm built: the BSP frees them at the end.
    k.cpu().load_boot_root();
}

/// Reads one published page through this CPU's MMU.
fn check_slot<C: Cpu>(cpu: &C, n: usize, slot: &Slot) {
    let seq = slot.seq.load(Ordering::Acquire);
    if seq & 1 == 1 {
        return;
    }
    let (va, val) = (slot.va.load(Ordering::Acquire), slot.val.load(Ordering::Acquire));
    let got = cpu.read_u32(va);
    if slot.seq.load(Ordering::Acquire) != seq {
        return; // changed meanwhile: nothing to conclude
    }
    CHECKS_DONE[n].fetch_add(1, Ordering::Relaxed);
    match got {
        Ok(v) if v == val => {}
        Ok(_) => fail(n, "kernel entry stale (vmalloc page reads another value)", va),
        Err(_) => fail(n, "kernel entry missing (vmalloc page faults)", va),
    }
}

/// The BSP: kernel-range updates until every AP is done and the count is
/// reached; returns the count. Each round maps [`PER_REGION`] pages in each
/// of `SLOTS / PER_REGION` large-page-sized regions (a page table installed
/// and synced into every pgd for each region) and publishes them, then
/// withdraws and unmaps them all with one shootdown; every [`CPA_EVERY`] rounds it splits and reverts a
/// large page of the linear map with `change_page_attr`.
fn bsp_loop<B: PvMmuOps<Mode>, C: Cpu>(k: &KernelMm<Mode, B, &KernelPhys, C>, aps: u64) -> u64 {
    let stride = <Mode as PagingMode>::LARGE_PAGE_SIZE;
    let base = (k.vmalloc_start() + stride - 1) & !(stride - 1);
    // Page `s` of the round: region `s / PER_REGION`, page `s % PER_REGION` in it.
    let vas: [u32; SLOTS] =
        core::array::from_fn(|s| base + (s / PER_REGION) as u32 * stride + (s % PER_REGION) as u32 * 4096);
    let cpa = k.mem().alloc_frame().expect("race: a frame for change_page_attr");
    let mut updates = 0u64;
    let mut round = 0u64;
    while updates < KERNEL_UPDATES || u64::from(APS_FINISHED.load(Ordering::Acquire)) < aps {
        let mut frames = [Pfn::new(0); SLOTS];
        for (s, (&va, frame)) in vas.iter().zip(frames.iter_mut()).enumerate() {
            let f = k.mem().alloc_frame().expect("race: a frame for a vmalloc page");
            let val = 0x6B00_0000 ^ ((round as u32) << 4) ^ s as u32;
            // SAFETY: a frame just allocated, written through the kernel's pointer to it.
            unsafe { k.mem().frame_ptr(f).cast::<u32>().as_ptr().write_volatile(val) };
            k.map_kernel_page(va, f, PAGE_KERNEL).unwrap_or_else(|e| panic!("race: map_kernel_page: {e}"));
            *frame = f;
            let slot = &PUBLISHED[s];
            slot.va.store(va, Ordering::Release);
            slot.val.store(val, Ordering::Release);
            slot.seq.fetch_add(1, Ordering::AcqRel); // even: stable
            updates += 1;
        }
        for slot in &PUBLISHED {
            slot.seq.fetch_add(1, Ordering::AcqRel); // odd: changing
        }
        let mut got = [Pfn::new(0); SLOTS];
        k.unmap_kernel_pages(&vas, &mut got).unwrap_or_else(|e| panic!("race: unmap_kernel_pages: {e}"));
        assert_eq!(got, frames, "race: unmap_kernel_pages returned other frames");
        for f in frames {
            k.mem().free_frame(f);
        }
        updates += SLOTS as u64;
        if round % CPA_EVERY == CPA_EVERY - 1 {
            k.change_page_attr(cpa, PAGE_KERNEL_RO).unwrap_or_else(|e| panic!("race: change_page_attr: {e}")).flush(k);
            k.change_page_attr(cpa, PAGE_KERNEL).unwrap_or_else(|e| panic!("race: change_page_attr: {e}")).flush(k);
            updates += 2;
        }
        round += 1;
        if round.is_multiple_of(64) {
            kprintln!("race: BSP at {updates} kernel-range updates");
        }
    }
    BSP_FINISHED.store(true, Ordering::Release);
    k.mem().free_frame(cpa);
    updates
}

/// Per-CPU report lines and the totals.
pub fn report(t: &Totals) {
    for n in 0..smp::cpus_online() {
        kprintln!(
            "race: cpu{n}: lifecycles={} checks={} ipis_sent={} ipis_handled={}",
            LIFECYCLES_DONE[n].load(Ordering::Relaxed),
            CHECKS_DONE[n].load(Ordering::Relaxed),
            shootdown::sent(n),
            shootdown::handled(n)
        );
    }
    let sent: u64 = (0..smp::cpus_online()).map(shootdown::sent).sum();
    kprintln!(
        "smp-summary: cpus={} lifecycles={} updates={} checks={} ipis={}",
        smp::cpus_online(),
        t.lifecycles,
        t.updates,
        t.checks,
        sent
    );
}

/// Runs the race with the backend this kernel was built with, prints the
/// per-CPU counts and the summary line, and exits QEMU: status 33 if the
/// totals were reached with every frame back, 35 otherwise.
#[cfg(not(feature = "boot-select"))]
pub fn run() -> ! {
    let phys = KernelPhys;
    // SAFETY: as in `scenario_main`: the CPU goes only to the race's KernelMm, whose
    // linear map covers every frame in use; its writes target only that kernel's pages.
    let cpu = unsafe { X86Cpu::new() };
    let before = phys.frames_in_use();
    kprintln!(
        "race: {} CPUs, backend {}, {} paging: {} lifecycles on the APs, {} kernel-range updates on the BSP",
        smp::cpus_online(),
        crate::config::BACKEND,
        <Mode as PagingMode>::NAME,
        LIFECYCLES,
        KERNEL_UPDATES
    );
    let race = Race { phys: &phys, cpu: &cpu, reserve_top: crate::backend::RESERVE_TOP };
    let t = crate::backend::with_backend(&phys, race);
    report(&t);
    let after = phys.frames_in_use();
    if after != before || t.lifecycles < LIFECYCLES || t.updates < KERNEL_UPDATES {
        kprintln!("*** RACE FAILED: frames {before} -> {after}, totals {t:?}");
        crate::exit::exit_failure()
    }
    kprintln!(
        "kernel-demo: SMP race passed ({} backend, {} paging)",
        crate::config::BACKEND,
        <Mode as PagingMode>::NAME
    );
    crate::exit::exit_success()
}
