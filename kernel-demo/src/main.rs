//! `kernel-demo`: a small multiboot v1 kernel for `qemu-system-i386` on which
//! the workspace's paravirt page-table hooks run against real (emulated)
//! hardware paging.
//!
//! The kernel is a higher-half kernel like Linux on i386: linked at
//! `0xC010_0000` (`PAGE_OFFSET` + 1 MiB), loaded at physical 1 MiB. A small
//! low boot stub ([`boot`]) enables SSE, maps the first 64 MiB of RAM both at 0
//! and at `PAGE_OFFSET` with large pages (PSE 4 MiB pages, or 2 MiB pages with
//! the `pae` feature), turns paging on and calls [`kmain`] in the high half,
//! which then drops the identity map. The backend (`native`, `vmi`, `xen`) and
//! the paging mode (`pae`) are chosen by cargo features. Results go to the
//! serial port; the kernel ends QEMU through `isa-debug-exit` with status 33
//! on success and 35 on failure (see [`exit`]).

#![no_std]
#![no_main]

pub mod boot;
pub mod config;
pub mod cpu;
pub mod crashtest;
pub mod exit;
pub mod frames;
pub mod gdt;
pub mod idt;
pub mod layout;
pub mod mem;
pub mod multiboot;
mod panic;
pub mod port;
pub mod probe;
pub mod serial;
pub mod sync;

use crate::layout::{PAGE_OFFSET, PAGE_SIZE};

/// High-half entry, called by the boot stub with the multiboot magic (EAX at
/// entry) and the physical address of the multiboot information (EBX).
extern "C" fn kmain(magic: u32, info_phys: u32) -> ! {
    serial::init();
    gdt::init();
    idt::init();

    kprintln!(
        "kernel-demo: backend {} ({})",
        config::BACKEND,
        config::BACKEND_DESCRIPTION
    );
    kprintln!("paging mode: {}", config::PAGING_MODE);

    // SAFETY: `magic` and `info_phys` are the loader's EAX/EBX, passed through
    // untouched by the boot stub, and nothing has written below the kernel's
    // own image since entry.
    let boot =
        unsafe { multiboot::parse(magic, info_phys) }.unwrap_or_else(|e| panic!("multiboot: {e}"));
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

    let reserved_end = layout::kernel_phys_end().max(boot.structures_end);
    frames::init(&boot, reserved_end);
    kprintln!(
        "frame allocator: {} frames free above {:#x}, below {:#x} ({} in use)",
        frames::frames_free(),
        reserved_end,
        layout::BOOT_MAP_SIZE,
        frames::frames_in_use()
    );

    cpu::set_write_protect(true);
    kprintln!("CR0.WP set: supervisor writes to read-only pages now fault");

    boot::drop_identity_map();
    kprintln!(
        "identity map dropped (CR3 {:#x}): 0..{:#x} is free for user mappings",
        cpu::read_cr3(),
        PAGE_OFFSET
    );

    probe_demo();
    frame_allocator_self_test();
    crashtest::run_from_cmdline(boot.cmdline());

    kprintln!("kernel-demo: all checks passed");
    exit::exit_success()
}

/// Shows the recoverable-fault mechanism (see [`probe`]).
fn probe_demo() {
    kprintln!("probe: {} exception-table entries", probe::ex_table_len());

    // (1) A write to a mapped, writable high-half page succeeds.
    let pfn = frames::alloc_zeroed().expect("a free frame for the probe demo");
    let va = pfn.virt_ptr() as u32;
    // SAFETY: the frame was just allocated for this demo; nothing else uses it.
    match unsafe { probe::probe_write_u32(va, 0xC0FF_EE00) } {
        Ok(()) => kprintln!("probe: write to {va:#010x} ({pfn}) succeeded"),
        Err(fault) => panic!("probe write to a mapped page faulted: {fault}"),
    }
    let back = probe::probe_read_u32(va).unwrap_or_else(|f| panic!("probe read faulted: {f}"));
    assert_eq!(
        back, 0xC0FF_EE00,
        "probe read returned what the probe wrote"
    );
    frames::free(pfn).expect("freeing the probe frame");

    // (2) A write to an unmapped user address raises #PF and is recovered.
    let unmapped = 0x0040_0000;
    // SAFETY: nothing is mapped at 0x0040_0000 any more; the write can only fault.
    match unsafe { probe::probe_write_u32(unmapped, 0xDEAD_BEEF) } {
        Ok(()) => panic!("probe write to unmapped {unmapped:#x} did not fault"),
        Err(fault) => {
            kprintln!("probe: write to {unmapped:#010x} faulted and was recovered: {fault}");
            assert!(
                fault.vector == idt::PF
                    && fault.addr == unmapped
                    && fault.is_not_present()
                    && fault.is_write(),
                "unexpected fault {fault:?}"
            );
        }
    }

    // (3) The old identity mapping of the kernel image is gone too.
    let old_identity = layout::KERNEL_PHYS_BASE;
    match probe::probe_read_u32(old_identity) {
        Ok(value) => panic!("identity map still present: read {value:#x} at {old_identity:#x}"),
        Err(fault) => {
            kprintln!("probe: read of {old_identity:#010x} faulted and was recovered: {fault}");
            assert!(
                fault.is_not_present() && !fault.is_write(),
                "unexpected fault {fault:?}"
            );
        }
    }
}

/// Allocates every free frame (touching each one through the linear map),
/// checks that allocation then fails cleanly, and frees them all again.
fn frame_allocator_self_test() {
    let in_use_before = frames::frames_in_use();
    let free_before = frames::frames_free();
    // Chain the frames through their first word: no extra memory needed.
    let mut head: Option<frames::Pfn> = None;
    let mut count = 0u32;
    while let Ok(pfn) = frames::alloc() {
        let link = head.map_or(u32::MAX, |p| p.0);
        // SAFETY: the frame was just allocated and is mapped writable in the
        // linear map; only this function uses it until it is freed below.
        unsafe { pfn.virt_ptr().cast::<u32>().write(link) };
        head = Some(pfn);
        count += 1;
    }
    assert_eq!(count, free_before, "every free frame could be allocated");
    assert_eq!(frames::frames_free(), 0);
    assert_eq!(
        frames::alloc(),
        Err(frames::OutOfFrames),
        "alloc fails cleanly when empty"
    );
    while let Some(pfn) = head {
        // SAFETY: `pfn` is one of the frames allocated above, whose first word holds the link.
        let link = unsafe { pfn.virt_ptr().cast::<u32>().read() };
        frames::free(pfn).expect("freeing an allocated frame");
        head = (link != u32::MAX).then_some(frames::Pfn(link));
    }
    assert_eq!(
        frames::frames_in_use(),
        in_use_before,
        "every frame came back"
    );
    let some = frames::alloc().expect("a frame after the self-test");
    frames::free(some).expect("free");
    assert_eq!(
        frames::free(some),
        Err(frames::FreeError::NotAllocated(some)),
        "double free is refused"
    );
    kprintln!(
        "frames: allocated all {count} free frames ({} KiB), alloc then failed cleanly, all returned; {} in use",
        count * (PAGE_SIZE / 1024),
        frames::frames_in_use()
    );
}
