//! `kernel-demo`: a small multiboot v1 kernel for `qemu-system-i386` on which
//! the workspace's paravirt page-table hooks run against real (emulated)
//! hardware paging.
//!
//! The kernel is a higher-half kernel like Linux on i386: linked at
//! `0xC010_0000` (`PAGE_OFFSET` + 1 MiB), loaded at physical 1 MiB. A small
//! low boot stub ([`boot`]) enables SSE, maps the first 896 MiB of physical memory (Linux's `MAXMEM`) both at 0
//! and at `PAGE_OFFSET` with large pages (PSE 4 MiB pages, or 2 MiB pages with
//! the `pae` feature), turns paging on and calls [`kmain`] in the high half,
//! which then drops the identity map. The backend (`native`, `vmi`, `xen`) and
//! the paging mode (`pae`) are chosen by cargo features. Results go to the
//! serial port; the kernel ends QEMU through `isa-debug-exit` with status 33
//! on success and 35 on failure (see [`exit`]).
//!
//! [`kmain`] then runs the workspace's scenario ([`scenario_main`]):
//! `i386-mm` builds its own `swapper_pg_dir` and address spaces in frames from
//! the kernel's allocator ([`phys`]), announces every page table to the
//! backend ([`backend`]: native, VMI or the Xen model, with their panic
//! policy), and the real MMU translates every check ([`x86cpu`]): under VMI
//! CR3 holds the shadow root, under Xen pinned tables are read-only in the
//! linear map and CR0.WP makes a direct write to one fault (a store into a
//! validated page table is then emulated by the model, as Xen's
//! `ptwr_do_page_fault` does: [`emulate`]). A backend that
//! catches a missing hook panics with the rule and the pfn (see the
//! `bug-missing-alloc-pt` feature). `crash=ud|pf|gp|df|panic` on the command
//! line takes a deliberate fatal fault first ([`crashtest`]).
//!
//! With the `boot-select` feature one image holds all three backends and picks
//! one at boot from the command line (`backend=native|vmi|xen`, default
//! native), then reaches it only through a run-time `ParavirtOps` table, as
//! Linux fills `paravirt_ops` at boot (modules `select`, `paravirt_ops` and
//! `dispatch`).

#![no_std]
#![no_main]

pub mod backend;
pub mod boot;
pub mod bootmap;
pub mod config;
pub mod cpu;
pub mod crashtest;
#[cfg(feature = "boot-select")]
pub mod dispatch;
pub mod emulate;
pub mod exception;
pub mod exit;
pub mod gdt;
pub mod idt;
pub mod lapic;
pub mod layout;
pub mod madt;
pub mod mem;
pub mod multiboot;
mod panic;
#[cfg(feature = "boot-select")]
pub mod paravirt_ops;
pub mod percpu;
pub mod phys;
pub mod probe;
#[cfg(not(feature = "boot-select"))]
pub mod race;
pub mod scenario_main;
#[cfg(feature = "boot-select")]
pub mod select;
pub mod serial;
pub mod shootdown;
pub mod smp;
pub mod sync;
pub mod trampoline;
pub mod x86cpu;

use crate::layout::PAGE_OFFSET;

/// High-half entry, called by the boot stub with the multiboot magic (EAX at
/// entry) and the physical address of the multiboot information (EBX).
extern "C" fn kmain(magic: u32, info_phys: u32) -> ! {
    serial::init();
    gdt::init();
    // SAFETY: first thing on the BSP (CPU 0), interrupts off; the kernel runs in
    // ring 0 only, so the TSS's stack pointer is never used.
    unsafe { percpu::load(0, 0) };
    idt::init();

    kprintln!("kernel-demo: backend {} ({})", config::BACKEND, config::BACKEND_DESCRIPTION);
    kprintln!("paging mode: {}", config::PAGING_MODE);

    // SAFETY: `magic` and `info_phys` are the loader's EAX/EBX, passed through
    // untouched by the boot stub, and nothing has written below the kernel's
    // own image since entry.
    let boot = unsafe { multiboot::parse(magic, info_phys) }.unwrap_or_else(|e| panic!("multiboot: {e}"));
    kprintln!(
        "kernel image: phys {:#x}..{:#x}, virt {:#x}..",
        layout::kernel_phys_start(),
        layout::kernel_phys_end(),
        layout::kernel_phys_start() + PAGE_OFFSET
    );
    kprintln!("multiboot memory map ({} entries):", boot.regions().len());
    for region in boot.regions() {
        kprintln!("  {region}");
    }
    kprintln!("usable RAM: {} KiB", boot.usable_bytes() / 1024);
    kprintln!("command line: {:?}", boot.cmdline());
    #[cfg(feature = "boot-select")]
    let backend = {
        let (kind, named) = select::BackendKind::from_cmdline(boot.cmdline());
        let how = if named { "from the command line" } else { "by default (no `backend=` on the command line)" };
        kprintln!("boot-select: backend={} chosen {how}: {}", kind.name(), kind.description());
        kind
    };

    let reserved_end = layout::kernel_phys_end().max(boot.structures_end);
    let added = phys::init(&boot, reserved_end);
    kprintln!(
        "frame allocator: {} frames free above {:#x}, below {:#x} ({} in use)",
        phys::frames_free(),
        reserved_end,
        layout::BOOT_MAP_SIZE,
        added - phys::frames_free()
    );

    // SAFETY: once, on the BSP, with the boot root loaded and its identity half still
    // present; the multiboot structures are where the loader said.
    let cpus = unsafe { smp::boot_aps(&boot, info_phys) };

    cpu::set_write_protect(true);
    boot::drop_identity_map();
    // The low half maps nothing any more: a read of the kernel's load address faults.
    match probe::probe_read_u32(layout::KERNEL_PHYS_BASE) {
        Err(fault) if fault.is_not_present() => {}
        other => panic!("identity map still present after dropping it: {other:?}"),
    }
    kprintln!(
        "CR0.WP on, identity map dropped (CR3 {:#x}): 0..{:#x} is free for user mappings",
        cpu::read_cr3(),
        PAGE_OFFSET
    );

    crashtest::run_from_cmdline(boot.cmdline());

    #[cfg(not(feature = "boot-select"))]
    if cpus > 1 && boot.cmdline().split_whitespace().any(|w| w == "smp-race") {
        race::run();
    }
    #[cfg(not(feature = "boot-select"))]
    scenario_main::run();
    #[cfg(feature = "boot-select")]
    {
        let _ = cpus;
        scenario_main::run_selected(backend)
    }
}
