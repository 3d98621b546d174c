//! The missing-hook matrix: for every page-type hook call site of i386-mm, in each paging mode,
//! a lifecycle script runs with that one call dropped (mm-testkit's `DropHooks`) under VMI and
//! under Xen; a cell is caught when the backend recorded a violation naming the page whose
//! hook was dropped, with the rule it broke.
//!
//! The script: boot (`pagetable_init`), two address spaces (`pgd_alloc`), user pages
//! (`pmd_populate`), a kernel-range page (`pmd_populate_kernel`), `change_page_attr` and its
//! revert (`split_large_page`, `revert_page`), an unmap that empties a table and a kernel
//! unmap (`pte_free_tlb`, `unmap_kernel_page`), `pgd_alloc` out of memory (`out_oom`),
//! `destroy` (`pte_free_tlb`, `pgd_free`, `pgd_dtor`), a second address space reusing the
//! freed frames, `shutdown` (`free_kernel_tables`), then a second boot on the same backend and
//! memory, which reuses every frame the first one gave back. The drop is armed only while
//! the operation that reaches the call site runs.

use backend_vmi::Vmi;
use backend_xen::{Hypervisor, Xen};
use i386_mm::{lowmem_va, Cpu, FaultInject, InitOptions, KernelMm, MmError, Pae, PagingMode, PhysMem, TwoLevel};
use mm_testkit::{dropping, DropHooks, Dropping, EmulatedRam, HostCpu, Which};
use paravirt_core::{HookKind, Inspect, Pfn, Policy, PteFlags, PvMmuOps, Rule, PAGE_KERNEL, PAGE_KERNEL_RO};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The operation of the script a call site is reached from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Boot,
    Create,
    Map,
    MapKernel,
    Split,
    Revert,
    Unmap,
    UnmapKernel,
    Oom,
    Destroy,
    Shutdown,
}

/// Which paging modes a call site exists in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Modes {
    Both,
    TwoLevelOnly,
    PaeOnly,
}

/// A hook call site of i386-mm: where it is, how the script reaches it, and which call of
/// which hook it makes there.
pub struct Site {
    /// `function: hook (what)`.
    pub name: &'static str,
    modes: Modes,
    /// Large pages allowed at boot (VMI maps low memory with them; Xen never does).
    pse: bool,
    phase: Phase,
    kind: HookKind,
}

/// Every page-type hook call site of i386-mm.
pub const SITES: &[Site] = &[
    Site {
        name: "pagetable_init: alloc_pd(swapper_pg_dir)",
        modes: Modes::TwoLevelOnly,
        pse: true,
        phase: Phase::Boot,
        kind: HookKind::AllocPd,
    },
    Site {
        name: "one_md_table_init: alloc_pd (kernel pmd)",
        modes: Modes::PaeOnly,
        pse: true,
        phase: Phase::Boot,
        kind: HookKind::AllocPd,
    },
    Site {
        name: "one_page_table_init: alloc_pt (boot table)",
        modes: Modes::Both,
        pse: false,
        phase: Phase::Boot,
        kind: HookKind::AllocPt,
    },
    Site {
        name: "pgd_ctor: alloc_pd_clone",
        modes: Modes::TwoLevelOnly,
        pse: true,
        phase: Phase::Create,
        kind: HookKind::AllocPdClone,
    },
    Site {
        name: "pgd_alloc: alloc_pd (user pmd)",
        modes: Modes::PaeOnly,
        pse: true,
        phase: Phase::Create,
        kind: HookKind::AllocPd,
    },
    Site {
        name: "pmd_populate: alloc_pt (user table)",
        modes: Modes::Both,
        pse: true,
        phase: Phase::Map,
        kind: HookKind::AllocPt,
    },
    Site {
        name: "pmd_populate_kernel: alloc_pt (vmalloc table)",
        modes: Modes::Both,
        pse: true,
        phase: Phase::MapKernel,
        kind: HookKind::AllocPt,
    },
    Site {
        name: "split_large_page: alloc_pt",
        modes: Modes::Both,
        pse: true,
        phase: Phase::Split,
        kind: HookKind::AllocPt,
    },
    Site {
        name: "revert_page: release_pt",
        modes: Modes::Both,
        pse: true,
        phase: Phase::Revert,
        kind: HookKind::ReleasePt,
    },
    Site {
        name: "pte_free_tlb: release_pt (unmap)",
        modes: Modes::Both,
        pse: true,
        phase: Phase::Unmap,
        kind: HookKind::ReleasePt,
    },
    Site {
        name: "pte_free_tlb: release_pt (destroy)",
        modes: Modes::Both,
        pse: true,
        phase: Phase::Destroy,
        kind: HookKind::ReleasePt,
    },
    Site {
        name: "unmap_kernel_page: release_pt",
        modes: Modes::Both,
        pse: true,
        phase: Phase::UnmapKernel,
        kind: HookKind::ReleasePt,
    },
    Site {
        name: "pgd_dtor: release_pd (pgd)",
        modes: Modes::TwoLevelOnly,
        pse: true,
        phase: Phase::Destroy,
        kind: HookKind::ReleasePd,
    },
    Site {
        name: "pgd_free: release_pd (user pmd)",
        modes: Modes::PaeOnly,
        pse: true,
        phase: Phase::Destroy,
        kind: HookKind::ReleasePd,
    },
    Site {
        name: "pgd_alloc out_oom: release_pd (user pmd)",
        modes: Modes::PaeOnly,
        pse: true,
        phase: Phase::Oom,
        kind: HookKind::ReleasePd,
    },
    Site {
        name: "shutdown: release_pt (kernel table)",
        modes: Modes::Both,
        pse: false,
        phase: Phase::Shutdown,
        kind: HookKind::ReleasePt,
    },
    Site {
        name: "shutdown: release_pd (kernel pmd)",
        modes: Modes::PaeOnly,
        pse: true,
        phase: Phase::Shutdown,
        kind: HookKind::ReleasePd,
    },
    Site {
        name: "shutdown: release_pd (swapper_pg_dir)",
        modes: Modes::TwoLevelOnly,
        pse: true,
        phase: Phase::Shutdown,
        kind: HookKind::ReleasePd,
    },
];

/// A violation as the matrix shows it.
struct Report {
    hook: HookKind,
    rule: &'static str,
    pfn: Pfn,
    /// The rule as the backend prints it (it may name other frames too).
    text: String,
}

impl Report {
    /// Whether the violation names frame `pfn`, as the frame it concerns or in its text.
    fn names(&self, pfn: Pfn) -> bool {
        if self.pfn == pfn {
            return true;
        }
        let want = pfn.to_string();
        self.text
            .match_indices(&want)
            .any(|(i, _)| !self.text[i + want.len()..].starts_with(|c: char| c.is_ascii_hexdigit()))
    }
}

/// A checking backend: its hooks, and the violations it recorded.
trait Checked<M: PagingMode>: PvMmuOps<M> + Inspect {
    fn reports(&self) -> Vec<Report>;
}

impl<M: PagingMode> Checked<M> for Vmi<M, &EmulatedRam> {
    fn reports(&self) -> Vec<Report> {
        self.violation_log()
            .iter()
            .map(|v| Report { hook: v.hook, rule: v.rule.name(), pfn: v.rule.pfn(), text: v.rule.to_string() })
            .collect()
    }
}

impl<M: PagingMode> Checked<M> for Xen<'_, M, &EmulatedRam> {
    fn reports(&self) -> Vec<Report> {
        self.violation_log()
            .iter()
            .map(|v| Report { hook: v.hook, rule: v.rule.name(), pfn: v.rule.pfn(), text: v.rule.to_string() })
            .collect()
    }
}

/// One cell of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// The backend recorded a violation naming the dropped page: `rule pfn (hook)`.
    Caught(String),
    /// Not caught; what the backend saw instead, if anything.
    Missed(String),
    /// The call site is never reached under this backend.
    NotReached,
}

type K<'a, M, B> = KernelMm<M, &'a Dropping<&'a B>, &'a EmulatedRam, &'a HostCpu<'a, M>>;

/// Runs the lifecycle script; the drop is armed during `phase` only.
fn script<M: PagingMode, B: PvMmuOps<M> + Inspect>(
    ram: &EmulatedRam,
    b: &Dropping<&B>,
    cpu: &HostCpu<'_, M>,
    pse: bool,
    phase: Phase,
) -> Result<(), MmError> {
    b.gate.arm(phase == Phase::Boot);
    let k: K<'_, M, B> = KernelMm::pagetable_init(ram, b, cpu, InitOptions { pse, lowmem_end: None, reserve_top: 0 })?;
    b.gate.arm(false);
    k.activate_swapper();
    let (uva, uva2, kva) = (0x0804_8000, 0x4000_0000, k.vmalloc_start() + 0x0040_0000);
    let frames: Vec<Pfn> = (0..4).map(|_| ram.alloc_frame().expect("a frame")).collect();
    // The armed operation, then (for that one) page tables built over the frames it may have
    // freed, so a page freed without its release_* is announced again.
    let during = |p: Phase, f: &mut dyn FnMut() -> Result<(), MmError>| {
        b.gate.arm(p == phase);
        let r = f();
        b.gate.arm(false);
        r?;
        if p == phase {
            churn(&k, frames[0])?;
        }
        Ok(())
    };
    let mut spaces = vec![];
    during(Phase::Create, &mut || {
        spaces.push(k.create()?);
        spaces.push(k.create()?);
        Ok(())
    })?;
    let [a, b2] = &mut spaces[..] else { unreachable!() };
    during(Phase::Map, &mut || {
        k.map(a, uva, frames[0], PteFlags::USER | PteFlags::RW)?;
        k.map(a, uva2, frames[1], PteFlags::USER | PteFlags::RW)
    })?;
    k.map(b2, uva, frames[2], PteFlags::USER)?;
    k.activate(a);
    let _ = k.cpu().write_u32(uva, 1);
    during(Phase::MapKernel, &mut || k.map_kernel_page(kva, frames[3], PAGE_KERNEL))?;
    let _ = k.cpu().read_u32(kva);
    k.activate_swapper();
    let data = ram.alloc_frame().expect("a frame");
    during(Phase::Split, &mut || k.change_page_attr(data, PAGE_KERNEL_RO).map(|f| f.flush(&k)))?;
    let _ = k.cpu().write_u32(lowmem_va(data), 1);
    during(Phase::Revert, &mut || k.change_page_attr(data, PAGE_KERNEL).map(|f| f.flush(&k)))?;
    ram.free_frame(data);
    k.activate(a);
    during(Phase::Unmap, &mut || k.unmap(a, uva2).map(|_| ()))?;
    during(Phase::UnmapKernel, &mut || k.unmap_kernel_page(kva).map(|_| ()))?;
    during(Phase::Oom, &mut || {
        ram.fail_nth_alloc(if M::PAE { 3 } else { 1 });
        let r = k.create();
        ram.clear_fault();
        match r {
            Ok(s) => {
                k.destroy(s);
                Ok(())
            }
            Err(MmError::OutOfMemory) => Ok(()),
            Err(e) => Err(e),
        }
    })?;
    k.activate_swapper();
    let (a, b2) = (spaces.remove(0), spaces.remove(0));
    let mut a = Some(a);
    during(Phase::Destroy, &mut || {
        k.destroy(a.take().expect("once"));
        Ok(())
    })?;
    k.destroy(b2);
    // A new address space reuses the frames just freed.
    let mut c = k.create()?;
    k.map(&mut c, uva, frames[0], PteFlags::USER)?;
    k.map(&mut c, uva2, frames[1], PteFlags::USER)?;
    k.activate(&c);
    let _ = k.cpu().read_u32(uva);
    k.destroy(c);
    k.load_boot_root();
    b.gate.arm(phase == Phase::Shutdown);
    let r = k.shutdown().map(|_| ()).map_err(|e| e.1);
    b.gate.arm(false);
    r?;
    // A second boot on the same backend and memory reuses every frame the first gave back.
    let k: K<'_, M, B> = KernelMm::pagetable_init(ram, b, cpu, InitOptions { pse, lowmem_end: None, reserve_top: 0 })?;
    k.activate_swapper();
    let mut d = k.create()?;
    k.map(&mut d, uva, frames[0], PteFlags::USER)?;
    k.map_kernel_page(kva, frames[3], PAGE_KERNEL)?;
    k.activate(&d);
    let _ = k.cpu().read_u32(uva);
    k.unmap_kernel_page(kva)?;
    k.activate_swapper();
    k.destroy(d);
    k.load_boot_root();
    k.shutdown().map(|_| ()).map_err(|e| e.1)?;
    for f in frames {
        ram.free_frame(f);
    }
    Ok(())
}

/// Builds and destroys an address space of `CHURN_TABLES` page tables (all mapping `frame`),
/// so the lowest free frames become page tables again.
fn churn<M: PagingMode, B: PvMmuOps<M> + Inspect>(k: &K<'_, M, B>, frame: Pfn) -> Result<(), MmError> {
    const CHURN_TABLES: u32 = 24;
    let mut c = k.create()?;
    for i in 0..CHURN_TABLES {
        k.map(&mut c, 0x0100_0000 + (i << M::PMD_SHIFT), frame, PteFlags::USER)?;
    }
    k.activate(&c);
    let _ = k.cpu().read_u32(0x0100_0000);
    k.activate_swapper();
    k.destroy(c);
    Ok(())
}

/// Runs the script with `site`'s call dropped and classifies what the backend recorded.
fn run_cell<M: PagingMode, B: Checked<M>>(ram: &EmulatedRam, backend: &B, site: &Site) -> Cell {
    let b = dropping(backend, DropHooks::new().with(site.kind, Which::Nth(1)));
    b.gate.arm(false);
    let cpu = HostCpu::<M>::new(ram);
    let outcome = catch_unwind(AssertUnwindSafe(|| script::<M, B>(ram, &b, &cpu, site.pse, site.phase)));
    let dropped = b.gate.dropped_pfns();
    let Some(&pfn) = dropped.first() else { return Cell::NotReached };
    let reports = backend.reports();
    if let Some(r) = reports.iter().find(|r| r.names(pfn)) {
        return Cell::Caught(format!("{} {} ({})", r.rule, pfn, r.hook));
    }
    let mut seen = String::new();
    if let Some(r) = reports.first() {
        let _ = write!(seen, "saw {} {} ({}), ", r.rule, r.pfn, r.hook);
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = write!(seen, "stopped: {e}, ");
        }
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            let _ = write!(seen, "panicked: {}, ", msg.unwrap_or_default());
        }
    }
    let _ = write!(seen, "dropped {pfn}");
    Cell::Missed(seen)
}

fn vmi_cell<M: PagingMode>(site: &Site) -> Cell {
    let ram = EmulatedRam::sixteen_mib();
    let vmi = Vmi::<M, _>::new(&ram, Policy::Record).expect("shadow frames");
    run_cell::<M, _>(&ram, &vmi, site)
}

fn xen_cell<M: PagingMode>(site: &Site) -> Cell {
    let ram = EmulatedRam::sixteen_mib();
    let hv: Box<Hypervisor<M, &EmulatedRam>> = Box::new(Hypervisor::boot(&ram).expect("frame table"));
    let xen = Xen::boot(&hv, Policy::Record).expect("page flags");
    run_cell::<M, _>(&ram, &xen, site)
}

/// One row: a call site in one mode, with its VMI and Xen cells.
pub struct Row {
    /// The call site.
    pub site: &'static str,
    /// `two-level` or `pae`.
    pub mode: &'static str,
    /// Under VMI.
    pub vmi: Cell,
    /// Under Xen.
    pub xen: Cell,
}

fn rows_for<M: PagingMode>(out: &mut Vec<Row>) {
    for site in SITES {
        let applies = match site.modes {
            Modes::Both => true,
            Modes::TwoLevelOnly => !M::PAE,
            Modes::PaeOnly => M::PAE,
        };
        if applies {
            out.push(Row { site: site.name, mode: M::NAME, vmi: vmi_cell::<M>(site), xen: xen_cell::<M>(site) });
        }
    }
}

/// Every row of the matrix, both modes.
pub fn rows() -> Vec<Row> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = vec![];
    rows_for::<TwoLevel>(&mut out);
    rows_for::<Pae>(&mut out);
    std::panic::set_hook(hook);
    out
}

fn show(c: &Cell) -> String {
    match c {
        Cell::Caught(s) => format!("caught: {s}"),
        Cell::Missed(s) => format!("NOT CAUGHT ({s})"),
        Cell::NotReached => "not reached".into(),
    }
}

/// Prints the matrix; fails if a call site is caught by no backend.
pub fn check() -> Result<(), String> {
    let rows = rows();
    let w = rows.iter().map(|r| r.site.len()).max().unwrap_or(0);
    println!("{:<w$}  {:<9}  {:<48}  xen", "call site (hook dropped once)", "mode", "vmi");
    let mut uncaught = vec![];
    let (mut caught, mut missed, mut na) = (0, 0, 0);
    for r in &rows {
        println!("{:<w$}  {:<9}  {:<48}  {}", r.site, r.mode, show(&r.vmi), show(&r.xen));
        for c in [&r.vmi, &r.xen] {
            match c {
                Cell::Caught(_) => caught += 1,
                Cell::Missed(_) => missed += 1,
                Cell::NotReached => na += 1,
            }
        }
        if !matches!(r.vmi, Cell::Caught(_)) && !matches!(r.xen, Cell::Caught(_)) {
            uncaught.push(format!("{} ({})", r.site, r.mode));
        }
    }
    println!(
        "missing-hook matrix: {} call sites x 2 backends: {caught} caught, {missed} not caught, {na} not reached; {} call site(s) caught by no backend",
        rows.len(),
        uncaught.len()
    );
    if uncaught.is_empty() {
        Ok(())
    } else {
        Err(format!("call sites no backend catches: {}", uncaught.join(", ")))
    }
}
