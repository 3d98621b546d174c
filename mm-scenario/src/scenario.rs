//! The demonstration scenario, shared by the host demo and the bare-metal kernel.
//!
//! It drives every call site through one backend and checks each step through the
//! processor's own page walk ([`Cpu::read_u32`] / [`Cpu::write_u32`]): on the host a software
//! walker over emulated RAM, in the kernel demo the real MMU of `qemu-system-i386`. After every
//! step the backend cross-checks itself ([`Inspect::verify`]); at the end every address space
//! and every kernel table is torn down and the backend must hold nothing, with the frame count
//! back where it started.

use crate::Summary;
use core::fmt::{self, Write};
use i386_mm::{AddressSpace, InitOptions, KernelMm, MmError};
use i386_paging::{lowmem_va, Cpu, FaultInject, PhysMem, PF_PROT, PF_WRITE};
use paravirt_core::{Inspect, PagingMode, Pfn, PteFlags, PvMmuOps, PAGE_KERNEL, PAGE_KERNEL_RO};

/// Address spaces the scenario creates at most.
pub const MAX_SPACES: usize = 4;
/// User pages mapped per address space at most.
pub const MAX_PAGES: usize = 8;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Address spaces to create (at most [`MAX_SPACES`]).
    pub address_spaces: usize,
    /// User pages to map in each (at most [`MAX_PAGES`]); they straddle two page tables.
    pub pages_per_space: usize,
    /// Map low memory up to this frame (`None`: all RAM).
    pub lowmem_end: Option<Pfn>,
    /// Print a ptdump of the first address space.
    pub ptdump: bool,
    /// Bytes at the top of the address space reserved for a hypervisor
    /// ([`InitOptions::reserve_top`]).
    pub reserve_top: u32,
    /// Address spaces to create and destroy after the kernel-range update (a process churn:
    /// up to [`CHURN_LIVE`] alive at once, each with a page mapped, entered through CR3 and
    /// checked to see the kernel range); 0 skips the step.
    pub churn: usize,
}

/// Address spaces alive at once during the churn step.
pub const CHURN_LIVE: usize = 16;

impl Default for Config {
    fn default() -> Self {
        Config { address_spaces: 3, pages_per_space: 6, lowmem_end: None, ptdump: true, reserve_top: 0, churn: 0 }
    }
}

/// Why the scenario stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioError {
    /// An `i386-mm` operation failed.
    Mm {
        /// The step.
        step: &'static str,
        /// The error.
        err: MmError,
    },
    /// The backend's cross-check failed (its report was printed).
    Verify {
        /// The step after which it failed.
        step: &'static str,
    },
    /// The backend recorded protocol violations.
    Violations {
        /// The step after which they were seen.
        step: &'static str,
        /// How many.
        count: usize,
    },
    /// An access through the page walk did not behave as the mapping says.
    Check {
        /// The step.
        step: &'static str,
        /// What was expected.
        what: &'static str,
        /// The virtual address.
        va: u32,
    },
    /// Writing the report failed.
    Output,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScenarioError::Mm { step, err } => write!(f, "{step}: {err}"),
            ScenarioError::Verify { step } => write!(f, "{step}: backend verification failed"),
            ScenarioError::Violations { step, count } => {
                write!(f, "{step}: backend recorded {count} protocol violation(s)")
            }
            ScenarioError::Check { step, what, va } => write!(f, "{step}: {what} at {va:#010x}"),
            ScenarioError::Output => f.write_str("output failed"),
        }
    }
}

impl From<fmt::Error> for ScenarioError {
    fn from(_: fmt::Error) -> Self {
        ScenarioError::Output
    }
}

const USER_BASES: [u32; 2] = [0x0804_8000, 0x4000_0000];

fn user_va(j: usize) -> u32 {
    USER_BASES[j % 2] + (j / 2) as u32 * 0x1000
}

fn signature(i: usize, j: usize) -> u32 {
    0x5A00_0000 | ((i as u32) << 16) | j as u32
}

struct Ctx<'o, B> {
    out: &'o mut dyn Write,
    steps: usize,
    _b: core::marker::PhantomData<B>,
}

impl<B: Inspect> Ctx<'_, B> {
    fn done(&mut self, backend: &B, step: &'static str, detail: fmt::Arguments<'_>) -> Result<(), ScenarioError> {
        if !backend.verify(self.out) {
            return Err(ScenarioError::Verify { step });
        }
        let v = backend.violations();
        if v != 0 {
            return Err(ScenarioError::Violations { step, count: v });
        }
        self.steps += 1;
        writeln!(self.out, "[ok] {step}: {detail}")?;
        Ok(())
    }
}

fn mm(step: &'static str) -> impl Fn(MmError) -> ScenarioError {
    move |err| ScenarioError::Mm { step, err }
}

/// Runs the scenario on `mem`, `backend` and `cpu`, writing a report to `out`.
///
/// # Errors
/// The first step that failed: an `i386-mm` error, a backend cross-check or violation, a check
/// made through the CPU's page walk, or `out` refusing the report.
///
/// # Panics
/// If `mem` hands out a frame it does not manage (a broken [`PhysMem`]).
pub fn run<M, B, P, C>(mem: P, backend: B, cpu: C, cfg: &Config, out: &mut dyn Write) -> Result<Summary, ScenarioError>
where
    M: PagingMode,
    B: PvMmuOps<M> + Inspect,
    P: PhysMem + FaultInject,
    C: Cpu,
{
    let nspaces = cfg.address_spaces.min(MAX_SPACES);
    let npages = cfg.pages_per_space.min(MAX_PAGES);
    let mut s = Summary { frames_before: mem.frames_in_use(), ..Summary::default() };
    let mut cx: Ctx<'_, B> = Ctx { out, steps: 0, _b: core::marker::PhantomData };

    // 1. Boot page tables.
    let opts = InitOptions { pse: true, lowmem_end: cfg.lowmem_end, reserve_top: cfg.reserve_top };
    let k: KernelMm<M, B, P, C> = KernelMm::pagetable_init(mem, backend, cpu, opts).map_err(mm("pagetable_init"))?;
    let lowmem_mib = k.lowmem_end().phys().as_u64() >> 20;
    let large = if k.uses_large_pages() { "large pages" } else { "4 KiB pages" };
    cx.done(
        k.backend(),
        "pagetable_init",
        format_args!(
            "swapper_pg_dir at {}, {} MiB of low memory mapped with {}",
            k.swapper_pg_dir(),
            lowmem_mib,
            large
        ),
    )?;

    // 2. Paging on the kernel's own tables, checked through the linear map.
    k.activate_swapper();
    let probe =
        k.mem().alloc_frame().ok_or(ScenarioError::Mm { step: "activate_swapper", err: MmError::OutOfMemory })?;
    // SAFETY: a frame just allocated, written through the kernel's pointer to it.
    unsafe { k.mem().frame_ptr(probe).cast::<u32>().as_ptr().write_volatile(0x1234_5678) };
    let got = k.cpu().read_u32(lowmem_va(probe)).ok();
    k.mem().free_frame(probe);
    if got != Some(0x1234_5678) {
        return Err(ScenarioError::Check {
            step: "activate_swapper",
            what: "linear map does not reach RAM",
            va: lowmem_va(probe),
        });
    }
    cx.done(k.backend(), "activate_swapper", format_args!("CR3 = {:#x}, linear map reads RAM", k.cpu().read_cr3()))?;

    // 3. Address spaces with user pages, written and read through the page walk.
    let mut spaces: [Option<AddressSpace<M>>; MAX_SPACES] = [const { None }; MAX_SPACES];
    let mut frames = [[Pfn::new(0); MAX_PAGES]; MAX_SPACES];
    for (space, row) in spaces.iter_mut().zip(frames.iter_mut()).take(nspaces) {
        let mut a = k.create().map_err(mm("create"))?;
        for (j, slot) in row.iter_mut().enumerate().take(npages) {
            let f = k.mem().alloc_frame().ok_or(ScenarioError::Mm { step: "map", err: MmError::OutOfMemory })?;
            *slot = f;
            k.map(&mut a, user_va(j), f, PteFlags::RW | PteFlags::USER).map_err(mm("map"))?;
            s.user_pages += 1;
        }
        *space = Some(a);
    }
    for (i, a) in spaces.iter().enumerate().take(nspaces) {
        let a = a.as_ref().expect("created above");
        k.activate(a);
        for j in 0..npages {
            k.cpu().write_u32(user_va(j), signature(i, j)).map_err(|_| ScenarioError::Check {
                step: "map",
                what: "user page not writable through the page walk",
                va: user_va(j),
            })?;
        }
    }
    for (i, a) in spaces.iter().enumerate().take(nspaces) {
        k.activate(a.as_ref().expect("created above"));
        for (j, f) in frames[i].iter().enumerate().take(npages) {
            let via_user = k.cpu().read_u32(user_va(j)).ok();
            let via_kernel = k.cpu().read_u32(lowmem_va(*f)).ok();
            if via_user != Some(signature(i, j)) || via_kernel != Some(signature(i, j)) {
                return Err(ScenarioError::Check { step: "map", what: "signature lost", va: user_va(j) });
            }
        }
    }
    s.frames_peak = k.mem().frames_in_use();
    s.held_peak = k.backend().pages_held();
    cx.done(
        k.backend(),
        "address spaces",
        format_args!("{nspaces} created, {npages} pages each, written and read back through CR3 switches"),
    )?;

    // 4. A kernel-range update made after the address spaces exist reaches each of them.
    let kva = k.vmalloc_start() + 0x0040_0000;
    let kframe =
        k.mem().alloc_frame().ok_or(ScenarioError::Mm { step: "map_kernel_page", err: MmError::OutOfMemory })?;
    // SAFETY: a frame just allocated.
    unsafe { k.mem().frame_ptr(kframe).cast::<u32>().as_ptr().write_volatile(0xC0DE_CAFE) };
    k.map_kernel_page(kva, kframe, PAGE_KERNEL).map_err(mm("map_kernel_page"))?;
    for a in spaces.iter().take(nspaces) {
        k.activate(a.as_ref().expect("created above"));
        if k.cpu().read_u32(kva).ok() != Some(0xC0DE_CAFE) {
            return Err(ScenarioError::Check { step: "map_kernel_page", what: "kernel-range update missing", va: kva });
        }
    }
    cx.done(
        k.backend(),
        "kernel-range update",
        format_args!("{kva:#010x} mapped after the fact, visible in all {nspaces}"),
    )?;

    // 4b. Process churn: address spaces come and go while the kernel range stays visible.
    if cfg.churn > 0 {
        churn(&k, cfg.churn, kva)?;
        s.churned = cfg.churn;
        cx.done(
            k.backend(),
            "address-space churn",
            format_args!("{} created and destroyed, up to {CHURN_LIVE} alive, each sees {kva:#010x}", cfg.churn),
        )?;
    }

    // 5. change_page_attr: a read-only kernel page faults on write; reverting restores it.
    k.activate_swapper();
    let data =
        k.mem().alloc_frame().ok_or(ScenarioError::Mm { step: "change_page_attr", err: MmError::OutOfMemory })?;
    k.change_page_attr(data, PAGE_KERNEL_RO).map_err(mm("change_page_attr"))?.flush(&k);
    s.split = k.split_tables() > 0;
    let va = lowmem_va(data);
    match k.cpu().write_u32(va, 1) {
        Err(f) if f.vector == 14 && f.error_code & (PF_PROT | PF_WRITE) == PF_PROT | PF_WRITE => {
            s.faults_seen += 1;
            writeln!(cx.out, "     write to read-only kernel page faulted as expected: {f}")?;
        }
        _ => {
            return Err(ScenarioError::Check {
                step: "change_page_attr",
                what: "write to read-only page did not fault",
                va,
            })
        }
    }
    k.change_page_attr(data, PAGE_KERNEL).map_err(mm("change_page_attr"))?.flush(&k);
    if k.split_tables() != 0 || k.deferred_frees() != 0 {
        return Err(ScenarioError::Check { step: "revert_page", what: "split table not reverted", va });
    }
    k.cpu().write_u32(va, 2).map_err(|_| ScenarioError::Check {
        step: "revert_page",
        what: "page still read-only",
        va,
    })?;
    k.mem().free_frame(data);
    let how = if s.split { "large page split, then reverted" } else { "4 KiB PTE changed, then restored" };
    cx.done(k.backend(), "change_page_attr", format_args!("{how}"))?;

    // 6. A direct write to a page-table page: faults when the backend keeps tables read-only;
    //    into a page table, the backend may emulate it (Xen's `ptwr_do_page_fault`).
    let pgd0 = spaces[0].as_ref().map(|a| a.pgd()).unwrap_or(k.swapper_pg_dir());
    let tva = lowmem_va(pgd0);
    let old = k.cpu().read_u32(tva).map_err(|_| ScenarioError::Check {
        step: "direct write",
        what: "page table unreadable",
        va: tva,
    })?;
    let r = k.cpu().write_u32(tva, old);
    if k.backend().page_tables_read_only() {
        match r {
            Err(f) => {
                s.faults_seen += 1;
                writeln!(cx.out, "     direct write to pinned pgd {pgd0} faulted as expected: {f}")?;
            }
            Ok(()) => {
                return Err(ScenarioError::Check {
                    step: "direct write",
                    what: "write to a pinned page table did not fault",
                    va: tva,
                })
            }
        }
    } else if r.is_err() {
        return Err(ScenarioError::Check { step: "direct write", what: "writable page table faulted", va: tva });
    }
    // The same value written back into the first user page table of address space 0.
    let pt0 = spaces[0].as_ref().and_then(|a| {
        let (dir, idx) = i386_paging::walk::pmd_table::<M, P>(k.mem(), a.pgd(), user_va(0))?;
        let e: paravirt_core::Pmd = i386_paging::read_entry::<M, _, P>(k.mem(), dir, idx);
        e.is_present().then(|| e.pfn())
    });
    if let Some(pt) = pt0 {
        let pva = lowmem_va(pt);
        let emulated = k.backend().emulated_writes();
        let ok = k.cpu().read_u32(pva).and_then(|v| k.cpu().write_u32(pva, v)).is_ok();
        let emulated = k.backend().emulated_writes() - emulated;
        if !ok || (k.backend().page_tables_read_only() && emulated != 1) {
            return Err(ScenarioError::Check {
                step: "direct write",
                what: "store into a page table not emulated",
                va: pva,
            });
        }
        if emulated != 0 {
            writeln!(cx.out, "     direct write to pinned page table {pt} faulted and was emulated by the backend")?;
        }
    }
    cx.done(
        k.backend(),
        "direct write",
        format_args!("page tables read-only: {}", k.backend().page_tables_read_only()),
    )?;

    // 7. Out of memory inside pgd_alloc at every allocation: nothing leaks.
    let attempts = u64::from(k.pgd_alloc_frames());
    for n in 1..=attempts {
        let before = (k.mem().frames_in_use(), k.backend().pages_held());
        k.mem().fail_nth_alloc(n);
        let r = k.create();
        k.mem().clear_fault();
        match r {
            Err(MmError::OutOfMemory) => {}
            Ok(a) => {
                k.destroy(a);
                return Err(ScenarioError::Check { step: "pgd_alloc oom", what: "injected failure not seen", va: 0 });
            }
            Err(e) => return Err(ScenarioError::Mm { step: "pgd_alloc oom", err: e }),
        }
        if (k.mem().frames_in_use(), k.backend().pages_held()) != before {
            return Err(ScenarioError::Check { step: "pgd_alloc oom", what: "frames or backend pages leaked", va: 0 });
        }
        s.oom_checked += 1;
    }
    cx.done(
        k.backend(),
        "pgd_alloc out of memory",
        format_args!("failure injected at each of {attempts} allocation(s), nothing leaked"),
    )?;

    if cfg.ptdump {
        if let Some(a) = spaces[0].as_ref() {
            writeln!(cx.out, "ptdump of address space 0:")?;
            i386_mm::ptdump::dump::<M, P>(k.mem(), a.pgd(), cx.out)?;
        }
    }

    // 8. Unmap half of the pages: emptied page tables go back through release_pt.
    for (i, a) in spaces.iter_mut().enumerate().take(nspaces) {
        let a = a.as_mut().expect("created above");
        for j in (0..npages).step_by(2) {
            let f = k.unmap(a, user_va(j)).map_err(mm("unmap"))?;
            if f != frames[i][j] || k.translate(a, user_va(j)).is_some() {
                return Err(ScenarioError::Check { step: "unmap", what: "mapping survived unmap", va: user_va(j) });
            }
            k.mem().free_frame(f);
            frames[i][j] = Pfn::new(0);
        }
    }
    cx.done(k.backend(), "unmap", format_args!("every other page unmapped, its page table freed when empty"))?;

    // 9. Teardown.
    for (i, a) in spaces.iter_mut().enumerate().take(nspaces) {
        if let Some(a) = a.take() {
            k.destroy(a);
        }
        for f in frames[i].iter().take(npages) {
            if f.as_u32() != 0 {
                k.mem().free_frame(*f);
            }
        }
    }
    let kf = k.unmap_kernel_page(kva).map_err(mm("unmap_kernel_page"))?;
    k.mem().free_frame(kf);
    cx.done(k.backend(), "destroy", format_args!("every address space destroyed"))?;
    writeln!(cx.out, "backend statistics before shutdown:")?;
    k.backend().write_stats(cx.out)?;
    k.load_boot_root();
    let (backend, mem, _cpu) = k.shutdown().map_err(|(_, e)| ScenarioError::Mm { step: "shutdown", err: e })?;
    s.held_after = backend.pages_held();
    s.frames_after = mem.frames_in_use();
    if !backend.verify(cx.out) {
        return Err(ScenarioError::Verify { step: "shutdown" });
    }
    if backend.violations() != 0 {
        return Err(ScenarioError::Violations { step: "shutdown", count: backend.violations() });
    }
    if s.held_after != 0 || s.frames_after != s.frames_before {
        writeln!(
            cx.out,
            "[FAIL] shutdown: backend holds {} page(s), frames in use {} (started at {})",
            s.held_after, s.frames_after, s.frames_before
        )?;
        return Err(ScenarioError::Check { step: "shutdown", what: "backend state or frames left behind", va: 0 });
    }
    cx.steps += 1;
    writeln!(
        cx.out,
        "[ok] shutdown: backend holds nothing, frames in use back to {} (peak {}, backend peak {} pages)",
        s.frames_after, s.frames_peak, s.held_peak
    )?;
    s.steps = cx.steps;
    Ok(s)
}

/// Creates and destroys `n` address spaces, [`CHURN_LIVE`] at a time: each gets one user page
/// holding its number, is entered with `activate`, and must read its own page and the kernel
/// page at `kva` (0xC0DE_CAFE) through the CPU's walk. Everything is freed again.
fn churn<M, B, P, C>(k: &KernelMm<M, B, P, C>, n: usize, kva: u32) -> Result<(), ScenarioError>
where
    M: PagingMode,
    B: PvMmuOps<M> + Inspect,
    P: PhysMem,
    C: Cpu,
{
    let check = |what: &'static str, va: u32| ScenarioError::Check { step: "address-space churn", what, va };
    let mut live: [Option<(AddressSpace<M>, Pfn)>; CHURN_LIVE] = [const { None }; CHURN_LIVE];
    let mut result = Ok(());
    for i in 0..n {
        let slot = &mut live[i % CHURN_LIVE];
        if let Some((mut a, f)) = slot.take() {
            k.activate_swapper();
            let _ = k.unmap(&mut a, user_va(0));
            k.destroy(a);
            k.mem().free_frame(f);
        }
        let Some(f) = k.mem().alloc_frame() else {
            result = Err(ScenarioError::Mm { step: "address-space churn", err: MmError::OutOfMemory });
            break;
        };
        let mut a = match k.create() {
            Ok(a) => a,
            Err(err) => {
                k.mem().free_frame(f);
                result = Err(ScenarioError::Mm { step: "address-space churn", err });
                break;
            }
        };
        if let Err(err) = k.map(&mut a, user_va(0), f, PteFlags::RW | PteFlags::USER) {
            k.destroy(a);
            k.mem().free_frame(f);
            result = Err(ScenarioError::Mm { step: "address-space churn", err });
            break;
        }
        k.activate(&a);
        *slot = Some((a, f));
        let tag = 0xC4_0000 | i as u32;
        if k.cpu().write_u32(user_va(0), tag).is_err() || k.cpu().read_u32(user_va(0)).ok() != Some(tag) {
            result = Err(check("user page not reachable through the page walk", user_va(0)));
            break;
        }
        if k.cpu().read_u32(kva).ok() != Some(0xC0DE_CAFE) {
            result = Err(check("kernel range missing in a new address space", kva));
            break;
        }
    }
    k.activate_swapper();
    for (mut a, f) in live.iter_mut().filter_map(Option::take) {
        let _ = k.unmap(&mut a, user_va(0));
        k.destroy(a);
        k.mem().free_frame(f);
    }
    result
}
